public import Database

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

/// What a successful answer carries, for the OpenAPI document.
public enum ResponseBody: Sendable {
    /// No body (204).
    case empty
    /// A JSON object described by a shape (its component and those it nests).
    case shape(SchemaComponent)
    /// A JSON object described by a named component of the host's own schemas.
    case named(String)
    /// A JSON object of no fixed shape.
    case anyObject
    /// Text of this content type (Prometheus' exposition format).
    case text(contentType: String, description: String)
}

/// A documented query parameter.
public struct QueryParameter: Sendable {
    public var name: String
    public var description: String

    public init(_ name: String, _ description: String) {
        self.name = name
        self.description = description
    }
}

/// Everything about a route except the code that answers it: method, path template, access, body,
/// answer and documentation. The router dispatches on it and `/openapi.json` is generated from it.
public struct RouteSpec: Sendable {
    public var method: String
    /// `/secrets/{name}/versions`; parameters in braces.
    public var path: String
    /// Unique across the API (`createSecret`).
    public var operationID: String
    public var summary: String
    public var access: Access
    /// Nil: the route takes no body (a body with fields is refused as unknown fields).
    public var body: BodySchema?
    /// The status of a success.
    public var success: Int
    public var response: ResponseBody
    /// Errors particular to this route, beyond those every route of its kind answers (its body's,
    /// its key's, its permission's, its path's, and the conventions'): `(409, "secret_exists")`.
    public var errors: [(status: Int, code: String)]
    /// Query parameters beyond the conventions' (`limit` and `next_token` of a list).
    public var query: [QueryParameter]
    /// A list: the host documents `limit` and `next_token`, and the handler pages with ``RouteContext/page()``.
    public var paginated: Bool
    /// An update or delete that honours `If-Match` (412 `precondition_failed` on a lost update).
    public var conditional: Bool
    /// The largest request body this route takes, in bytes; nil: the host's default (64 KiB). A
    /// larger body is refused with 413 before it is read.
    public var maximumBodyBytes: Int?
    /// The answer shows a secret once (a new key): the host does not keep it for `Idempotency-Key`
    /// replays; a retry answers 409 `already_created` instead of making a second one.
    public var revealsSecret = false
    /// The route reads its body itself, of this content type (the SQS endpoint's
    /// `application/x-amz-json-1.0`): the host neither parses nor checks it, and the handler answers
    /// in its own protocol. Nil for JSON routes, whose body ``body`` describes.
    public var rawBodyType: String?

    public init(
        method: String, path: String, operationID: String, summary: String, access: Access, body: BodySchema? = nil,
        success: Int, response: ResponseBody, errors: [(status: Int, code: String)] = [], query: [QueryParameter] = [],
        paginated: Bool = false, conditional: Bool = false
    ) {
        self.method = method
        self.path = path
        self.operationID = operationID
        self.summary = summary
        self.access = access
        self.body = body
        self.success = success
        self.response = response
        self.errors = errors
        self.query = query
        self.paginated = paginated
        self.conditional = conditional
    }

    /// A POST that makes something (201): the host honours `Idempotency-Key` on it.
    public var creates: Bool { self.method == "POST" && self.success == 201 }

    /// The template's segments (`["secrets", "{name}"]`).
    public var segments: [Substring] { self.path.split(separator: "/") }

    /// The template with parameter names blanked (`/secrets/{}`): two routes of one method collide
    /// when these are equal.
    public var shape: String {
        "/" + self.segments.map { $0.hasPrefix("{") ? "{}" : String($0) }.joined(separator: "/")
    }

    /// The path parameters when `path` fits this route's template, else nil.
    public func match(_ path: String) -> [String: String]? {
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

/// A service's route: its ``RouteSpec`` and its handler.
public struct Route: Sendable {
    public var spec: RouteSpec
    public var handler: @Sendable (RouteContext) async throws -> APIResponse

    public init(_ spec: RouteSpec, handler: @escaping @Sendable (RouteContext) async throws -> APIResponse) {
        self.spec = spec
        self.handler = handler
    }

    /// A route from its parts (see ``RouteSpec``).
    public init(
        method: String, path: String, operationID: String, summary: String, access: Access, body: BodySchema? = nil,
        success: Int, response: ResponseBody, errors: [(status: Int, code: String)] = [], query: [QueryParameter] = [],
        paginated: Bool = false, conditional: Bool = false,
        handler: @escaping @Sendable (RouteContext) async throws -> APIResponse
    ) {
        self.spec = RouteSpec(
            method: method, path: path, operationID: operationID, summary: summary, access: access, body: body,
            success: success, response: response, errors: errors, query: query, paginated: paginated, conditional: conditional)
        self.handler = handler
    }
}

/// The authenticated caller: who they are, the tenant their key acts in and what they may do there.
public struct Caller: Sendable {
    public var userID: String
    /// Lowercased.
    public var email: String
    /// The tenant the key acts in: every service route acts in this tenant only.
    public var tenantID: String
    public var keyID: String
    /// The names of the roles bound to the user in the tenant, sorted.
    public var roles: [String]
    /// The union of those roles' permissions.
    public var permissions: [Permission]

    public init(userID: String, email: String, tenantID: String, keyID: String, roles: [String], permissions: [Permission]) {
        self.userID = userID
        self.email = email
        self.tenantID = tenantID
        self.keyID = keyID
        self.roles = roles
        self.permissions = permissions
    }

    /// Whether the caller's roles grant `permission` (for answers that depend on it, such as a value
    /// shown only with `secret:read-value`).
    public func holds(_ permission: Permission) -> Bool { Permission.allows(self.permissions, permission) }
}

/// Stores the answer of a create that came with an `Idempotency-Key` (given by the host).
public protocol IdempotencyRecorder: Sendable {
    /// Stores `response` as the answer to every retry of the request, inside `session` (the
    /// transaction that created the resource), so the resource and the stored answer commit together.
    func record(_ response: APIResponse, in session: any SQLSession) async throws
}

/// What a handler gets: the request, its path parameters, its validated body, the authenticated
/// caller (unless the route is anonymous) and the service environment.
public struct RouteContext: Sendable {
    public let request: APIRequest
    public let parameters: [String: String]
    public let body: RequestBody
    public let caller: Caller?
    public let environment: ServiceEnvironment
    /// Set by the host when a create carries an `Idempotency-Key` that this request claimed.
    public let idempotency: (any IdempotencyRecorder)?

    public init(
        request: APIRequest, parameters: [String: String], body: RequestBody, caller: Caller?, environment: ServiceEnvironment,
        idempotency: (any IdempotencyRecorder)? = nil
    ) {
        self.request = request
        self.parameters = parameters
        self.body = body
        self.caller = caller
        self.environment = environment
        self.idempotency = idempotency
    }

    /// The caller of a route that is not anonymous.
    public var authenticated: Caller {
        get throws(APIError) {
            guard let caller else { throw APIError.missingKey }
            return caller
        }
    }

    /// A path parameter ("" when absent).
    public func parameter(_ name: String) -> String { self.parameters[name] ?? "" }

    /// Runs the writes of a create or change in one transaction and returns the answer built inside it.
    /// When the request carries an `Idempotency-Key`, the answer is stored in the same transaction, so
    /// a retry after a crash finds either both the resource and its answer or neither.
    public func transaction(_ body: @escaping @Sendable (any SQLSession) async throws -> APIResponse) async throws -> APIResponse {
        let recorder = self.idempotency
        let database = self.environment.database
        // A task enqueued in it runs at once in this process once it has committed.
        return try await self.environment.tasks.ringingAfter {
            try await database.transaction { db in
                let response = try await body(db)
                if (200..<300).contains(response.status) { try await recorder?.record(response, in: db) }
                return response
            }
        }
    }
}
