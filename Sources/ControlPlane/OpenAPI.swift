public import ServiceContract

/// The OpenAPI 3.1 document, generated from the router (the host's routes and every service's) so
/// the two cannot disagree. Each operation carries its permission as `x-permission` and its service
/// as its tag; the services' response shapes become components.
enum OpenAPI {

    /// Errors particular to one operation (by operation id), beyond those every route of its kind can
    /// answer (see ``errors(_:)``).
    private static let specificErrors: [String: [(Int, String)]] = [
        "healthReady": [(503, "not_ready")],
        "register": [(400, "weak_password"), (409, "email_taken"), (503, "unavailable")],
        "login": [(401, "invalid_credentials"), (404, "not_found"), (409, "quota_exceeded"), (429, "too_many_attempts"), (503, "unavailable")],
        "createKey": [(404, "not_found"), (409, "quota_exceeded")],
        "forgotPassword": [(429, "too_many_requests"), (503, "unavailable")],
        "resetPassword": [(400, "invalid_token"), (400, "weak_password"), (429, "too_many_requests"), (503, "unavailable")],
        "addMember": [(409, "quota_exceeded")],
        "removeMember": [(409, "last_admin")],
        "rotateKey": [(409, "key_replaced")],
        "regenerateKey": [(409, "key_replaced")],
        "createRole": [(409, "role_exists"), (409, "builtin_role")],
        "updateRole": [(409, "builtin_role")],
        "deleteRole": [(409, "builtin_role"), (409, "role_in_use")],
        "createBinding": [(404, "not_found"), (409, "binding_exists"), (409, "quota_exceeded")],
        "deleteBinding": [(409, "last_admin")],
        "listTasks": [(400, "invalid_request")],
        "retryTask": [(409, "task_not_dead")],
    ]

    /// The error statuses and codes an operation can answer: those of its body, its key, its
    /// permission and its path parameters, and its own (``specificErrors``); in status order.
    static func errors(_ route: RouteSpec) -> [(status: Int, codes: [String])] {
        var pairs: [(Int, String)] = []
        if route.body != nil || route.paginated {
            pairs += [(400, "invalid_json"), (400, "invalid_request"), (413, "payload_too_large"), (415, "unsupported_media_type")]
        }
        if route.access != .anonymous { pairs += [(401, "unauthorized"), (503, "unavailable")] }
        if case .permission = route.access { pairs.append((403, "forbidden")) }
        if route.access == .platformAdmin { pairs.append((403, "forbidden")) }
        if route.path.contains("{") { pairs.append((404, "not_found")) }
        if route.creates {
            pairs += [(409, "request_in_progress"), (422, "idempotency_key_reused")]
            if route.revealsSecret { pairs.append((409, "already_created")) }
        }
        if route.conditional { pairs.append((412, "precondition_failed")) }
        pairs += Self.specificErrors[route.operationID] ?? []
        pairs += route.errors.map { ($0.status, $0.code) }
        var result: [(status: Int, codes: [String])] = []
        for (status, code) in pairs.sorted(by: { $0.0 < $1.0 }) {
            if let index = result.firstIndex(where: { $0.status == status }) {
                if !result[index].codes.contains(code) { result[index].codes.append(code) }
            } else {
                result.append((status, [code]))
            }
        }
        return result
    }

    /// The document for these routes.
    static func document(_ router: Router) -> JSONValue {
        var paths: [(String, JSONValue)] = []
        var components = Self.schemas
        for entry in router.entries {
            let route = entry.spec
            let operation = Self.operation(route, tag: entry.owner)
            if let index = paths.firstIndex(where: { $0.0 == route.path }), case .object(var members) = paths[index].1 {
                members.append((route.method.lowercased(), operation))
                paths[index].1 = .object(members)
            } else {
                paths.append((route.path, .object([(route.method.lowercased(), operation)])))
            }
            if case .shape(let component) = route.response {
                for nested in component.closure where !components.contains(where: { $0.0 == nested.name }) {
                    components.append((nested.name, nested.schema))
                }
            }
        }
        var tags: [JSONValue] = [.object([("name", .string(ServiceCatalog.hostName)), ("description", .string("Identity, API keys, tenants, RBAC, quotas and tasks."))])]
        for service in router.services {
            tags.append(.object([("name", .string(service.name)), ("description", .string(service.summary))]))
        }
        return .object([
            ("openapi", .string("3.1.0")),
            (
                "info",
                .object([
                    ("title", .string("The Cloud control plane")), ("version", .string("0.2.0")),
                    (
                        "description",
                        .string(
                            "Identity, API keys, RBAC and the cloud services. Errors are {\"error\": {\"code\", \"message\"}}. "
                                + "Lists page with ?limit= and ?next_token=; creates honour Idempotency-Key; "
                                + "conditional updates and deletes honour If-Match.")
                    ),
                ])
            ),
            ("tags", .array(tags)),
            ("paths", .object(paths)),
            (
                "components",
                .object([
                    (
                        "securitySchemes",
                        .object([("apiKey", .object([("type", .string("apiKey")), ("in", .string("header")), ("name", .string("X-API-Key"))]))])
                    ),
                    ("schemas", .object(components)),
                ])
            ),
        ])
    }

    private static func ref(_ name: String) -> JSONValue { .object([("$ref", .string("#/components/schemas/\(name)"))]) }

    private static func content(_ schema: JSONValue) -> JSONValue {
        .object([("application/json", .object([("schema", schema)]))])
    }

    private static func parameter(_ name: String, in location: String, required: Bool, _ description: String) -> JSONValue {
        .object([
            ("name", .string(name)), ("in", .string(location)), ("required", .bool(required)), ("description", .string(description)),
            ("schema", .object([("type", .string("string"))])),
        ])
    }

    private static func operation(_ route: RouteSpec, tag: String) -> JSONValue {
        var members: [(String, JSONValue)] = [
            ("operationId", .string(route.operationID)), ("summary", .string(route.summary)), ("tags", .array([.string(tag)])),
            ("x-permission", .string(route.access.description)),
            ("security", route.access == .anonymous ? .array([]) : .array([.object([("apiKey", .array([]))])])),
        ]
        var parameters: [JSONValue] = route.segments.filter { $0.hasPrefix("{") }.map { segment in
            .object([
                ("name", .string(String(segment.dropFirst().dropLast()))), ("in", .string("path")), ("required", .bool(true)),
                ("schema", .object([("type", .string("string"))])),
            ])
        }
        if route.paginated {
            parameters.append(Self.parameter("limit", in: "query", required: false, "Items per page, 1 to 1000 (default 100)."))
            parameters.append(Self.parameter("next_token", in: "query", required: false, "The next_token of the previous page."))
        }
        for item in route.query { parameters.append(Self.parameter(item.name, in: "query", required: false, item.description)) }
        if route.creates {
            parameters.append(
                Self.parameter(
                    "Idempotency-Key", in: "header", required: false,
                    "Retrying with the same key returns the first answer (for 24 hours) and never creates twice."))
        }
        if route.conditional {
            parameters.append(Self.parameter("If-Match", in: "header", required: false, "The ETag last read; 412 when the resource changed since."))
        }
        if !parameters.isEmpty { members.append(("parameters", .array(parameters))) }
        if let type = route.rawBodyType {
            members.append(("requestBody", .object([("required", .bool(true)), ("content", .object([(type, .object([("schema", .object([("type", .string("object"))]))]))]))])))
        } else if let body = route.body {
            members.append(("requestBody", .object([("required", .bool(body.fields.contains(where: \.required))), ("content", Self.content(Self.schema(body)))])))
        }
        let success: JSONValue =
            switch route.response {
            case .named(let name): .object([("description", .string("Success.")), ("content", Self.content(Self.ref(name)))])
            case .shape(let component): .object([("description", .string("Success.")), ("content", Self.content(component.reference))])
            case .text(let contentType, let description):
                .object([
                    ("description", .string(description)),
                    ("content", .object([(contentType, .object([("schema", .object([("type", .string("string"))]))]))])),
                ])
            case .empty: .object([("description", .string("Done; no body."))])
            case .anyObject:
                .object([("description", .string("Success.")), ("content", Self.content(.object([("type", .string("object"))])))])
            }
        var responses: [(String, JSONValue)] = [(String(route.success), success)]
        for (status, codes) in Self.errors(route) {
            responses.append((
                String(status),
                .object([
                    ("description", .string(codes.joined(separator: ", "))), ("x-error-codes", .array(codes.map { .string($0) })),
                    ("content", Self.content(Self.ref("Error"))),
                ])
            ))
        }
        responses.append(("default", .object([("description", .string("An error.")), ("content", Self.content(Self.ref("Error")))])))
        members.append(("responses", .object(responses)))
        return .object(members)
    }

    private static func schema(_ body: BodySchema) -> JSONValue {
        let properties: [(String, JSONValue)] = body.fields.map { field -> (String, JSONValue) in
            var members: [(String, JSONValue)] = []
            switch field.type {
            case .string: members = [("type", .string("string")), ("maxLength", .int(Int64(field.maxLength)))]
            case .integer: members = [("type", .string("integer"))]
            case .boolean: members = [("type", .string("boolean"))]
            case .stringArray: members = [("type", .string("array")), ("items", .object([("type", .string("string"))]))]
            case .stringMap:
                members = [
                    ("type", .string("object")), ("additionalProperties", .object([("type", .string("string"))])),
                    ("maxProperties", .int(Int64(field.maxLength))),
                ]
            }
            members.append(("description", .string(field.description)))
            return (field.name, .object(members))
        }
        return .object([
            ("type", .string("object")), ("additionalProperties", .bool(false)),
            ("required", .array(body.fields.filter(\.required).map { .string($0.name) })),
            ("properties", .object(properties)),
        ])
    }

    private static func object(_ properties: [(String, String)], required: [String]? = nil) -> JSONValue {
        .object([
            ("type", .string("object")),
            ("required", .array((required ?? properties.map(\.0)).map { .string($0) })),
            (
                "properties",
                .object(
                    properties.map { pair -> (String, JSONValue) in
                        let (name, type) = pair
                        if type.hasPrefix("#") { return (name, Self.ref(String(type.dropFirst()))) }
                        if type.hasPrefix("[]#") {
                            return (name, .object([("type", .string("array")), ("items", Self.ref(String(type.dropFirst(3))))]))
                        }
                        if type == "[]string" { return (name, .object([("type", .string("array")), ("items", .object([("type", .string("string"))]))])) }
                        if type.hasSuffix("?") { return (name, .object([("type", .array([.string(String(type.dropLast())), .string("null")]))])) }
                        return (name, .object([("type", .string(type))]))
                    })
            ),
        ])
    }

    private static let schemas: [(String, JSONValue)] = [
        (
            "Error",
            .object([
                ("type", .string("object")), ("required", .array([.string("error")])),
                ("properties", .object([("error", Self.object([("code", "string"), ("message", "string")]))])),
            ])
        ),
        ("Health", Self.object([("status", "string")])),
        ("User", Self.object([("id", "string"), ("email", "string"), ("name", "string"), ("created_at", "string")])),
        ("Tenant", Self.object([("id", "string"), ("name", "string"), ("personal", "boolean"), ("created_at", "string")])),
        (
            "Key",
            Self.object(
                [
                    ("id", "string"), ("name", "string"), ("prefix", "string"), ("tenant_id", "string"), ("created_at", "string"),
                    ("expires_at", "string?"), ("revoked_at", "string"), ("replaced_by", "string"), ("current", "boolean"),
                ], required: ["id", "name", "prefix", "tenant_id", "created_at", "expires_at"])
        ),
        (
            "NewKey",
            Self.object(
                [("api_key", "string"), ("key", "#Key"), ("previous", "#Key"), ("user", "#User"), ("tenant", "#Tenant")],
                required: ["api_key", "key"])
        ),
        ("KeyList", Self.object([("keys", "[]#Key"), ("next_token", "string?")])),
        ("Registration", Self.object([("user", "#User"), ("tenant", "#Tenant")])),
        (
            "Me",
            Self.object([
                ("user", "#User"), ("tenant", "#Tenant"), ("roles", "[]string"), ("permissions", "[]string"), ("tenants", "[]#Tenant"),
                ("key", "#Key"),
            ])
        ),
        (
            "Role",
            Self.object([("id", "string"), ("name", "string"), ("description", "string"), ("permissions", "[]string"), ("builtin", "boolean")])
        ),
        ("RoleList", Self.object([("roles", "[]#Role"), ("next_token", "string?")])),
        ("Binding", Self.object([("id", "string"), ("user_id", "string"), ("user", "string"), ("role", "string"), ("created_at", "string")])),
        ("BindingList", Self.object([("bindings", "[]#Binding"), ("next_token", "string?")])),
        (
            "MyTenant",
            Self.object([
                ("id", "string"), ("name", "string"), ("personal", "boolean"), ("created_at", "string"), ("roles", "[]string"),
                ("current", "boolean"),
            ])
        ),
        ("TenantList", Self.object([("tenants", "[]#MyTenant"), ("next_token", "string?")])),
        (
            "Member",
            Self.object([("user_id", "string"), ("email", "string"), ("name", "string"), ("roles", "[]string"), ("joined_at", "string")])
        ),
        ("MemberList", Self.object([("members", "[]#Member"), ("next_token", "string?")])),
        ("Quota", Self.object([("resource", "string"), ("limit", "integer"), ("default", "boolean"), ("used", "integer?")])),
        ("Quotas", Self.object([("tenant_id", "string"), ("quotas", "[]#Quota")])),
        ("Accepted", Self.object([("status", "string"), ("message", "string")])),
        ("PasswordReset", Self.object([("user", "#User"), ("revoked_keys", "integer")])),
        (
            "Task",
            .object([
                ("type", .string("object")),
                (
                    "required",
                    .array(
                        ["id", "kind", "state", "payload", "attempts", "max_attempts", "run_at", "created_at", "updated_at"].map {
                            .string($0)
                        })
                ),
                (
                    "properties",
                    .object([
                        ("id", .object([("type", .string("string"))])),
                        ("kind", .object([("type", .string("string"))])),
                        ("state", .object([("type", .string("string")), ("enum", .array(TaskState.allCases.map { .string($0.rawValue) }))])),
                        ("payload", .object([("description", .string("Any JSON: the task's input."))])),
                        ("result", .object([("description", .string("Any JSON: what the handler returned, once succeeded."))])),
                        ("idempotency_key", .object([("type", .array([.string("string"), .string("null")]))])),
                        ("attempts", .object([("type", .string("integer"))])),
                        ("max_attempts", .object([("type", .string("integer"))])),
                        ("last_error", .object([("type", .array([.string("string"), .string("null")]))])),
                        ("run_at", .object([("type", .string("string"))])),
                        ("created_at", .object([("type", .string("string"))])),
                        ("updated_at", .object([("type", .string("string"))])),
                        ("started_at", .object([("type", .array([.string("string"), .string("null")]))])),
                        ("finished_at", .object([("type", .array([.string("string"), .string("null")]))])),
                        (
                            "lease",
                            .object([
                                ("description", .string("While running: {owner, fence, expires_at}; else null.")),
                                ("type", .array([.string("object"), .string("null")])),
                            ])
                        ),
                    ])
                ),
            ])
        ),
        ("TaskList", Self.object([("tasks", "[]#Task"), ("next_token", "string?")])),
    ]
}

extension ControlAPI {
    /// The OpenAPI 3.1 document `GET /openapi.json` serves for these services, generated from the
    /// route table (for `cloud openapi`, which writes docs/api.md from it).
    /// - Throws: ``ControlPlaneError`` when the services' declarations conflict.
    public static func openAPIDocument(services: [any CloudService]) throws(ControlPlaneError) -> JSONValue {
        let catalog = try ServiceCatalog(services: services)
        return OpenAPI.document(try Router(host: Self.hostRoutes(quotas: catalog.quotaResources), services: services))
    }

    /// The document this API serves.
    public var openAPIDocument: JSONValue { self.document }
}
