/// What a route needs from its caller. Every route states one; there is no default.
public enum Access: Sendable, Equatable, CustomStringConvertible {
    /// Anyone: health, the OpenAPI document, register and login.
    case anonymous
    /// A valid API key; the route acts only on the caller's own things (their profile, their keys).
    case authenticated
    /// A valid API key whose user's roles in the key's tenant grant this permission.
    case permission(Permission)
    /// A valid API key of a platform operator (`--platform-admin EMAIL`), whatever the key's tenant.
    case platformAdmin

    public var description: String {
        switch self {
        case .anonymous: "anonymous"
        case .authenticated: "authenticated"
        case .platformAdmin: "platform-admin"
        case .permission(let permission): permission.description
        }
    }
}

/// One entry of the route table: method, path template, the access it needs, its body schema,
/// its documentation and its handler.
struct Route: Sendable {
    let method: String
    /// `/auth/keys/{id}/rotate`.
    let path: String
    let operationID: String
    let summary: String
    let access: Access
    /// Nil: the route takes no body (a body with fields is refused as unknown fields).
    let body: BodySchema?
    /// The status of a success.
    let success: Int
    /// The component schema of a success body, nil for 204.
    let responseSchema: String?
    let handler: @Sendable (ControlAPI, RouteContext) async throws -> APIResponse

    var segments: [Substring] { self.path.split(separator: "/") }

    /// The path parameters when `path` fits this route's template, else nil.
    func match(_ path: String) -> [String: String]? {
        let template = self.segments
        let actual = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
        let trimmed = actual.last == "" && actual.count > 1 ? Array(actual.dropLast()) : Array(actual)
        guard trimmed.count == template.count else { return nil }
        var parameters: [String: String] = [:]
        for (pattern, value) in zip(template, trimmed) {
            if pattern.hasPrefix("{") && pattern.hasSuffix("}") {
                guard !value.isEmpty else { return nil }
                parameters[String(pattern.dropFirst().dropLast())] = String(value).removingPercentEncodingSafely()
            } else if pattern != value {
                return nil
            }
        }
        return parameters
    }
}

/// What a handler gets: the request, its path parameters, its validated body and, unless the
/// route is anonymous, the authenticated caller.
struct RouteContext: Sendable {
    let request: APIRequest
    let parameters: [String: String]
    let body: RequestBody
    let caller: Caller?

    /// The caller of a route that is not anonymous.
    var authenticated: Caller {
        get throws(APIError) {
            guard let caller else { throw APIError.missingKey }
            return caller
        }
    }

    func parameter(_ name: String) -> String { self.parameters[name] ?? "" }
}

/// The authenticated user, the key they used, the tenant it acts in and what they may do there.
struct Caller: Sendable {
    let user: UserRecord
    let key: APIKeyRecord
    let tenant: TenantRecord
    let roles: [String]
    let permissions: [Permission]
}

extension ControlAPI {
    /// The route table: the only place routes, their permissions and their documentation are
    /// declared. The server dispatches from it and /openapi.json is generated from it.
    static let routes: [Route] = [
        Route(
            method: "GET", path: "/health/live", operationID: "healthLive", summary: "The process is up.",
            access: .anonymous, body: nil, success: 200, responseSchema: "Health",
            handler: { api, _ in .json(200, .object([("status", .string("live"))])) }),
        Route(
            method: "GET", path: "/health/ready", operationID: "healthReady",
            summary: "The database and the storage node answer (503 with the reason when one does not).",
            access: .anonymous, body: nil, success: 200, responseSchema: "Health",
            handler: { api, _ in try await api.ready() }),
        Route(
            method: "GET", path: "/openapi.json", operationID: "openAPI", summary: "This API's OpenAPI 3 document.",
            access: .anonymous, body: nil, success: 200, responseSchema: nil,
            handler: { _, _ in .json(200, OpenAPI.document) }),
        Route(
            method: "GET", path: "/metrics", operationID: "metrics",
            summary: "Prometheus text: requests, latency, security events (aggregates only, like the storage node's /metrics).",
            access: .anonymous, body: nil, success: 200, responseSchema: nil,
            handler: { api, context in try await api.metricsText(context) }),

        Route(
            method: "POST", path: "/auth/register", operationID: "register",
            summary: "Create a user, with a personal tenant in which they are admin.",
            access: .anonymous,
            body: BodySchema([
                .string("email", maxLength: 254, "The login; unique, case-insensitive."),
                .string("name", maxLength: 100, "The name shown to others."),
                .string("password", maxLength: 256, "At least 10 characters; not the email, not a common password."),
            ]),
            success: 201, responseSchema: "Registration",
            handler: { api, context in try await api.register(context) }),
        Route(
            method: "POST", path: "/auth/login", operationID: "login",
            summary: "Check the password and return a new API key (locked for a while after repeated failures).",
            access: .anonymous,
            body: BodySchema([
                .string("email", maxLength: 254, "The user's email."),
                .string("password", maxLength: 256, "The user's password."),
                .string("tenant_id", required: false, maxLength: 64, "The tenant the key acts in; default the personal tenant."),
                .string("key_name", required: false, maxLength: 100, "A name for the new key; default \"login\"."),
            ]),
            success: 200, responseSchema: "NewKey",
            handler: { api, context in try await api.login(context) }),
        Route(
            method: "POST", path: "/auth/forgot-password", operationID: "forgotPassword",
            summary: "Mail a one-time password-reset token (202 whether or not the email is registered; 5 a minute per email and per address).",
            access: .anonymous,
            body: BodySchema([.string("email", maxLength: 254, "The account's email.")]),
            success: 202, responseSchema: "Accepted",
            handler: { api, context in try await api.forgotPassword(context) }),
        Route(
            method: "POST", path: "/auth/reset-password", operationID: "resetPassword",
            summary: "Set a new password with a reset token; revokes all the user's API keys and ends a lockout.",
            access: .anonymous,
            body: BodySchema([
                .string("token", maxLength: 100, "The token from the reset mail."),
                .string("password", maxLength: 256, "The new password (the rules of registration)."),
            ]),
            success: 200, responseSchema: "PasswordReset",
            handler: { api, context in try await api.resetPassword(context) }),
        Route(
            method: "GET", path: "/auth/me", operationID: "me",
            summary: "The caller: user, tenant of the key, roles and permissions there, tenants.",
            access: .authenticated, body: nil, success: 200, responseSchema: "Me",
            handler: { api, context in try await api.me(context) }),
        Route(
            method: "POST", path: "/auth/keys", operationID: "createKey",
            summary: "Create another API key for the caller, in the tenant of the calling key or another of the caller's.",
            access: .authenticated,
            body: BodySchema([
                .string("name", required: false, maxLength: 100, "A name to recognise the key by."),
                .integer("expires_in_seconds", "Lifetime; default unlimited (60 to 315360000)."),
                .string("tenant_id", required: false, maxLength: 64, "The tenant the key acts in (one you are a member of); default the calling key's."),
            ]),
            success: 201, responseSchema: "NewKey",
            handler: { api, context in try await api.createKey(context) }),
        Route(
            method: "GET", path: "/auth/keys", operationID: "listKeys",
            summary: "The caller's keys that are neither revoked nor expired (never the keys themselves).",
            access: .authenticated, body: nil, success: 200, responseSchema: "KeyList",
            handler: { api, context in try await api.listKeys(context) }),
        Route(
            method: "POST", path: "/auth/keys/{id}/rotate", operationID: "rotateKey",
            summary: "Replace a key with a new one; the old one stays valid for a grace period.",
            access: .authenticated,
            body: BodySchema([.integer("grace_seconds", "How long the old key keeps working; default 86400, at most 2592000.")]),
            success: 201, responseSchema: "NewKey",
            handler: { api, context in try await api.replaceKey(context, rotate: true) }),
        Route(
            method: "POST", path: "/auth/keys/{id}/regenerate", operationID: "regenerateKey",
            summary: "Replace a key with a new one; the old one stops working now.",
            access: .authenticated, body: nil, success: 201, responseSchema: "NewKey",
            handler: { api, context in try await api.replaceKey(context, rotate: false) }),
        Route(
            method: "DELETE", path: "/auth/keys/{id}", operationID: "deleteKey", summary: "Revoke a key now.",
            access: .authenticated, body: nil, success: 204, responseSchema: nil,
            handler: { api, context in try await api.deleteKey(context) }),

        Route(
            method: "GET", path: "/rbac/roles", operationID: "listRoles",
            summary: "The built-in roles and the tenant's own.",
            access: .permission(Permission("role:read")!), body: nil, success: 200, responseSchema: "RoleList",
            handler: { api, context in try await api.listRoles(context) }),
        Route(
            method: "POST", path: "/rbac/roles", operationID: "createRole",
            summary: "Create a role in the tenant (only with permissions the caller holds).",
            access: .permission(Permission("role:create")!),
            body: BodySchema([
                .string("name", maxLength: 63, "Lowercase letters, digits, - and _; unique in the tenant."),
                .strings("permissions", "Patterns resource:action, * allowed in either part."),
                .string("description", required: false, maxLength: 500, "What the role is for."),
            ]),
            success: 201, responseSchema: "Role",
            handler: { api, context in try await api.createRole(context) }),
        Route(
            method: "GET", path: "/rbac/roles/{name}", operationID: "getRole", summary: "One role.",
            access: .permission(Permission("role:read")!), body: nil, success: 200, responseSchema: "Role",
            handler: { api, context in try await api.getRole(context) }),
        Route(
            method: "PUT", path: "/rbac/roles/{name}", operationID: "updateRole",
            summary: "Change a role's permissions or description (built-in roles cannot change).",
            access: .permission(Permission("role:update")!),
            body: BodySchema([
                .strings("permissions", required: false, "The new permission list."),
                .string("description", required: false, maxLength: 500, "The new description."),
            ]),
            success: 200, responseSchema: "Role",
            handler: { api, context in try await api.updateRole(context) }),
        Route(
            method: "DELETE", path: "/rbac/roles/{name}", operationID: "deleteRole",
            summary: "Delete a role that no binding uses.",
            access: .permission(Permission("role:delete")!), body: nil, success: 204, responseSchema: nil,
            handler: { api, context in try await api.deleteRole(context) }),
        Route(
            method: "POST", path: "/rbac/bindings", operationID: "createBinding",
            summary: "Give a user a role in the tenant (making them a member).",
            access: .permission(Permission("binding:create")!),
            body: BodySchema([
                .string("user", maxLength: 254, "The user's email."),
                .string("role", maxLength: 63, "The role's name."),
            ]),
            success: 201, responseSchema: "Binding",
            handler: { api, context in try await api.createBinding(context) }),
        Route(
            method: "GET", path: "/rbac/bindings", operationID: "listBindings", summary: "The tenant's bindings.",
            access: .permission(Permission("binding:read")!), body: nil, success: 200, responseSchema: "BindingList",
            handler: { api, context in try await api.listBindings(context) }),
        Route(
            method: "DELETE", path: "/rbac/bindings/{id}", operationID: "deleteBinding",
            summary: "Remove a binding (not the tenant's last admin binding).",
            access: .permission(Permission("binding:delete")!), body: nil, success: 204, responseSchema: nil,
            handler: { api, context in try await api.deleteBinding(context) }),

        Route(
            method: "POST", path: "/tenants", operationID: "createTenant",
            summary: "Create a tenant (project); the caller becomes its admin.",
            access: .authenticated,
            body: BodySchema([.string("name", maxLength: 100, "A name for people; need not be unique.")]),
            success: 201, responseSchema: "MyTenant",
            handler: { api, context in try await api.createTenant(context) }),
        Route(
            method: "GET", path: "/tenants", operationID: "listTenants",
            summary: "The tenants the caller is a member of, with their roles there.",
            access: .authenticated, body: nil, success: 200, responseSchema: "TenantList",
            handler: { api, context in try await api.listTenants(context) }),
        Route(
            method: "GET", path: "/tenants/{id}", operationID: "getTenant",
            summary: "One of the caller's tenants (404 for any other).",
            access: .authenticated, body: nil, success: 200, responseSchema: "MyTenant",
            handler: { api, context in try await api.getTenant(context) }),
        Route(
            method: "GET", path: "/tenants/{id}/members", operationID: "listMembers",
            summary: "The members of the key's tenant and their roles.",
            access: .permission(Permission("member:read")!), body: nil, success: 200, responseSchema: "MemberList",
            handler: { api, context in try await api.listMembers(context) }),
        Route(
            method: "POST", path: "/tenants/{id}/members", operationID: "addMember",
            summary: "Add a registered user to the key's tenant with roles (bindings; only roles the caller could grant).",
            access: .permission(Permission("member:create")!),
            body: BodySchema([
                .string("email", maxLength: 254, "The user's email; they must have registered."),
                .strings("roles", "Role names in this tenant."),
            ]),
            success: 201, responseSchema: "Member",
            handler: { api, context in try await api.addMember(context) }),
        Route(
            method: "DELETE", path: "/tenants/{id}/members/{user_id}", operationID: "removeMember",
            summary: "Remove a member: their bindings go and their keys in this tenant are revoked (not the last admin).",
            access: .permission(Permission("member:delete")!), body: nil, success: 204, responseSchema: nil,
            handler: { api, context in try await api.removeMember(context) }),
        Route(
            method: "GET", path: "/tenants/{id}/quotas", operationID: "getQuotas",
            summary: "The key's tenant's quotas and what it uses of them.",
            access: .permission(Permission("quota:read")!), body: nil, success: 200, responseSchema: "Quotas",
            handler: { api, context in try await api.getQuotas(context) }),
        Route(
            method: "PUT", path: "/admin/tenants/{id}/quotas", operationID: "setQuotas",
            summary: "Set any tenant's quotas (platform operators only).",
            access: .platformAdmin,
            body: BodySchema([
                .integer("max_buckets", "Buckets."),
                .integer("max_storage_bytes", "Bytes stored."),
                .integer("max_api_keys", "Active API keys acting in the tenant."),
                .integer("max_members", "Members."),
            ]),
            success: 200, responseSchema: "Quotas",
            handler: { api, context in try await api.setQuotas(context) }),
        Route(
            method: "GET", path: "/tasks", operationID: "listTasks",
            summary: "The tenant's background tasks, newest first (?state=queued|running|succeeded|dead, ?kind=, ?limit= up to 1000).",
            access: .permission(Permission("task:read")!), body: nil, success: 200, responseSchema: "TaskList",
            handler: { api, context in try await api.listTasks(context) }),
        Route(
            method: "GET", path: "/tasks/{id}", operationID: "getTask", summary: "One background task of the tenant.",
            access: .permission(Permission("task:read")!), body: nil, success: 200, responseSchema: "Task",
            handler: { api, context in try await api.getTask(context) }),
        Route(
            method: "POST", path: "/tasks/{id}/retry", operationID: "retryTask",
            summary: "Queue a dead task again, now, with a fresh set of attempts.",
            access: .permission(Permission("task:retry")!), body: nil, success: 200, responseSchema: "Task",
            handler: { api, context in try await api.retryTask(context) }),
    ] + storageRoutes
}
