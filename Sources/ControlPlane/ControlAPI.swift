import Foundation
public import Logging
public import NIOPosix

/// Settings of the control plane's API.
public struct ControlAPIConfiguration: Sendable {
    /// scrypt cost for new password hashes.
    public var passwordHashing: PasswordHasher.Parameters = .interactive
    /// When logins are refused after failures.
    public var lockout = LockoutPolicy()
    /// How long a rotated key keeps working when the request does not say, in seconds (1 day).
    public var defaultRotationGrace: Int64 = 86_400
    /// The longest grace period a rotation may ask for, in seconds (30 days).
    public var maximumRotationGrace: Int64 = 30 * 86_400
    /// Request bodies larger than this are refused with 413. The API's bodies are small JSON.
    public var maximumBodyBytes: Int = 64 * 1024
    /// What `/health/ready` checks besides the database (`cloud dev` adds the storage node).
    public var readinessChecks: [ReadinessCheck] = []
    /// The storage cluster behind `/storage/…` (S3 keys and buckets of tenants); nil answers those
    /// routes with 503 `storage_unavailable`.
    public var storage: (any StorageService)?
    /// Emails (lowercased) of the platform operators: they may set any tenant's quotas
    /// (`/admin/*`). `--platform-admin EMAIL`; nobody by default.
    public var platformAdmins: Set<String> = []
    /// Where password-reset mails go.
    public var mail: MailDelivery = .none
    /// The sender of the control plane's mail.
    public var mailFrom: String = "The Cloud <no-reply@localhost>"
    /// How long a password-reset token is valid, in seconds (30 minutes).
    public var resetTokenLifetime: Int64 = 30 * 60
    /// `POST /auth/forgot-password`: at most this many requests per email and per client address
    /// within `forgotPasswordWindow` seconds.
    public var forgotPasswordLimit: Int = 5
    public var forgotPasswordWindow: Int64 = 60
    /// `POST /auth/reset-password`: at most this many attempts per client address within
    /// `forgotPasswordWindow` seconds (tokens are unguessable; this only bounds the noise).
    public var resetPasswordLimit: Int = 10

    public init() {}
}

/// A dependency `/health/ready` checks.
public struct ReadinessCheck: Sendable {
    /// Shown in the answer (`storage`).
    public var name: String
    /// Nil when the dependency answers, else why not.
    public var check: @Sendable () async -> String?

    public init(name: String, check: @escaping @Sendable () async -> String?) {
        self.name = name
        self.check = check
    }
}

/// The control plane's REST API without sockets: requests in, responses out.
///
/// Dispatch follows ``routes``: find the route (404, or 405 with `Allow`), authenticate the
/// `X-API-Key` unless the route is anonymous (401), check the route's permission against the
/// caller's roles in the key's tenant (403), validate the body against the route's schema (400),
/// then run the handler. Anything unexpected is a 500 whose details go to the log only.
public final class ControlAPI: Sendable {
    let store: ControlStore
    /// The task queue in the same database.
    public let tasks: TaskQueue
    let configuration: ControlAPIConfiguration
    let logger: Logger
    let threadPool: NIOThreadPool
    /// Unix seconds; injected so tests can move time.
    let now: @Sendable () -> Int64
    /// Verified against when the email is unknown, so that a login costs the same either way.
    let decoyHash: String
    /// Counters for `/metrics`.
    public let metrics = ControlMetrics()

    /// - Parameters:
    ///   - store: The database.
    ///   - threadPool: Where password hashing runs (default NIO's singleton pool).
    ///   - now: The clock, unix seconds (default the wall clock); tests move it.
    public init(
        store: ControlStore, configuration: ControlAPIConfiguration = ControlAPIConfiguration(), logger: Logger,
        threadPool: NIOThreadPool? = nil, now: (@Sendable () -> Int64)? = nil
    ) {
        self.store = store
        self.tasks = TaskQueue(database: store.database)
        self.configuration = configuration
        self.logger = logger
        self.threadPool = threadPool ?? .singleton
        self.now = now ?? { WallClock.unixNow() }
        self.decoyHash = PasswordHasher.hash("decoy password that nobody has", parameters: configuration.passwordHashing)
    }

    /// Answers one request.
    /// - Returns: The response; the route's operation id (or a placeholder) for logs.
    public func handle(_ request: APIRequest) async -> (APIResponse, operation: String) {
        var allowed: [String] = []
        var found: (Route, [String: String])?
        for route in Self.routes {
            guard let parameters = route.match(request.path) else { continue }
            if route.method == request.method || (request.method == "HEAD" && route.method == "GET") {
                found = (route, parameters)
                break
            }
            allowed.append(route.method)
        }
        guard let (route, parameters) = found else {
            if allowed.isEmpty {
                return (.error(.notFound("no route \(request.method) \(request.path); see /openapi.json")), "unknown")
            }
            var error = APIError(
                status: 405, code: "method_not_allowed", message: "\(request.path) accepts \(allowed.joined(separator: ", "))")
            error.headers = [("Allow", allowed.joined(separator: ", "))]
            return (.error(error), "unknown")
        }
        do {
            let caller = try await self.authorize(request, access: route.access)
            let body = try self.parseBody(request, schema: route.body)
            let context = RouteContext(request: request, parameters: parameters, body: body, caller: caller)
            return (try await route.handler(self, context), route.operationID)
        } catch let error as APIError {
            return (.error(error), route.operationID)
        } catch let error as QuotaExceeded {
            self.metrics.count(.quotaRefusals)
            return (.error(.quotaExceeded(error)), route.operationID)
        } catch let error as ControlStoreError {
            self.metrics.count(.databaseErrors)
            self.logger.error("database failed", metadata: ["request-id": "\(request.requestID)", "error": "\(error)"])
            return (.error(.unavailable("the database is unavailable; retry later")), route.operationID)
        } catch {
            self.logger.error("request failed", metadata: ["request-id": "\(request.requestID)", "error": "\(error)"])
            return (.error(.internalError), route.operationID)
        }
    }

    /// The routes as (method, path, access), for tests and docs.
    public static var routeTable: [(method: String, path: String, access: Access)] {
        Self.routes.map { ($0.method, $0.path, $0.access) }
    }

    private func parseBody(_ request: APIRequest, schema: BodySchema?) throws(APIError) -> RequestBody {
        guard !request.body.isEmpty else { return try (schema ?? BodySchema([])).validate([]) }
        if let type = request.headers["content-type"]?.lowercased(), !type.hasPrefix("application/json"), !type.isEmpty {
            throw APIError.unsupportedMediaType
        }
        return try (schema ?? BodySchema([])).validate(request.body)
    }

    // MARK: - Authentication and authorization

    /// Compared against when a presented key's id is unknown.
    private static let decoyKeyHash = APIKey.hash("ck_decoy_key_that_matches_nothing")

    private func authorize(_ request: APIRequest, access: Access) async throws -> Caller? {
        if access == .anonymous { return nil }
        guard let presented = request.headers["x-api-key"], !presented.isEmpty else { throw APIError.missingKey }
        let found = try await APIKey.id(of: presented).asyncMap { try await self.store.credentials(keyID: $0) } ?? nil
        // The hash is compared whether or not the id exists, so the answer takes as long either way.
        let matches = APIKey.matches(presented, storedHash: found?.key.keyHash ?? Self.decoyKeyHash)
        guard let found, matches, found.key.isValid(at: self.now()), found.isMember else {
            throw APIError.invalidKey
        }
        if case .permission(let required) = access, !Permission.allows(found.permissions, required) {
            throw APIError.forbidden(required)
        }
        if access == .platformAdmin, !self.configuration.platformAdmins.contains(found.user.email) {
            throw APIError.forbidden(message: "this route is for platform operators (cloud server --platform-admin EMAIL)")
        }
        return Caller(user: found.user, key: found.key, tenant: found.tenant, roles: found.roles, permissions: found.permissions)
    }

    /// Refuses to hand out what the caller does not hold: every permission must be allowed to them.
    func checkGrantable(_ permissions: [Permission], by caller: Caller) throws(APIError) {
        for permission in permissions where !Permission.allows(caller.permissions, permission) {
            throw APIError.forbidden(message: "you cannot grant \(permission), which your roles in this tenant do not grant you")
        }
    }

    // MARK: - Health

    func ready() async throws -> APIResponse {
        var checks: [(String, JSONValue)] = []
        do {
            try await self.store.ping()
            checks.append(("database", .string("ok")))
        } catch {
            return .error(APIError(status: 503, code: "not_ready", message: "the database does not answer: \(error)"))
        }
        for dependency in self.configuration.readinessChecks {
            if let problem = await dependency.check() {
                return .error(APIError(status: 503, code: "not_ready", message: "\(dependency.name): \(problem)"))
            }
            checks.append((dependency.name, .string("ok")))
        }
        return .json(200, .object([("status", .string("ready")), ("checks", .object(checks))]))
    }

    // MARK: - Identity

    static func normalizeEmail(_ text: String) throws(APIError) -> String {
        let email = text.trimmingSpaces().lowercased()
        let parts = email.split(separator: "@", omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty, parts[1].contains("."), !parts[1].hasPrefix("."), !parts[1].hasSuffix("."),
            !email.contains(where: { $0.isWhitespace || $0.isNewline }), email.count <= 254
        else { throw APIError.invalidRequest("\"email\" is not an email address") }
        return email
    }

    func register(_ context: RouteContext) async throws -> APIResponse {
        let email = try Self.normalizeEmail(context.body.string("email") ?? "")
        let name = (context.body.string("name") ?? "").trimmingSpaces()
        guard !name.isEmpty else { throw APIError.invalidRequest("\"name\" must not be empty") }
        let password = context.body.string("password") ?? ""
        if let problem = PasswordPolicy.problem(with: password, email: email, name: name) {
            throw APIError(status: 400, code: "weak_password", message: problem)
        }
        let parameters = self.configuration.passwordHashing
        let hash = try await self.threadPool.runIfActive { PasswordHasher.hash(password, parameters: parameters) }
        let now = self.now()
        let user = UserRecord(id: SecureRandom.identifier(prefix: "usr_"), email: email, name: name, passwordHash: hash, createdAt: now)
        let tenant = TenantRecord(id: SecureRandom.identifier(prefix: "tnt_"), name: email, personalUserID: user.id, createdAt: now)
        do {
            try await self.store.register(user: user, tenant: tenant, adminBindingID: SecureRandom.identifier(prefix: "rb_"))
        } catch let error as ControlStoreError where error.isDuplicate {
            throw APIError.conflict("email_taken", "a user with this email exists; log in instead")
        }
        self.logger.info("user registered", metadata: ["request-id": "\(context.request.requestID)", "user-id": "\(user.id)"])
        return .json(201, .object([("user", Self.json(user)), ("tenant", Self.json(tenant))]))
    }

    func login(_ context: RouteContext) async throws -> APIResponse {
        let email = (context.body.string("email") ?? "").trimmingSpaces().lowercased()
        let password = context.body.string("password") ?? ""
        let now = self.now()
        let policy = self.configuration.lockout
        let failures = try await self.store.loginFailures(email: email, since: now - policy.window)
        if let until = policy.lockedUntil(failures: failures, now: now) {
            self.metrics.count(.lockedLogins)
            var error = APIError(
                status: 429, code: "too_many_attempts",
                message: "too many failed logins for this email; try again in \(until - now) seconds")
            error.headers = [("Retry-After", String(until - now))]
            throw error
        }
        let user = try await self.store.user(email: email)
        let stored = user?.passwordHash ?? self.decoyHash
        let correct = try await self.threadPool.runIfActive { PasswordHasher.verify(password, against: stored) }
        guard let user, correct else {
            try await self.store.recordLogin(email: email, clientAddress: context.request.clientAddress, succeeded: false, at: now)
            self.metrics.count(.loginFailures)
            if policy.lockedUntil(failures: failures + [now], now: now) != nil { self.metrics.count(.lockouts) }
            self.logger.notice(
                "login failed", metadata: ["request-id": "\(context.request.requestID)", "client": "\(context.request.clientAddress)"])
            throw APIError(status: 401, code: "invalid_credentials", message: "the email or the password is wrong")
        }
        try await self.store.recordLogin(email: email, clientAddress: context.request.clientAddress, succeeded: true, at: now)
        let tenant: TenantRecord
        if let tenantID = context.body.string("tenant_id") {
            tenant = try await self.memberTenant(tenantID, userID: user.id)
        } else {
            let tenants = try await self.store.tenants(ofUser: user.id)
            guard let first = tenants.first(where: { $0.personalUserID == user.id }) ?? tenants.first else {
                throw APIError.forbidden(message: "you are not a member of any tenant")
            }
            tenant = first
        }
        let (record, key) = Self.newKey(user: user.id, tenant: tenant.id, name: context.body.string("key_name") ?? "login", now: now)
        try await self.insertKeyWithinQuota(record)
        self.logger.info(
            "login", metadata: ["request-id": "\(context.request.requestID)", "user-id": "\(user.id)", "key-id": "\(record.id)"])
        return .json(
            200,
            .object([
                ("api_key", .string(key)), ("key", Self.json(record)), ("user", Self.json(user)), ("tenant", Self.json(tenant)),
            ]))
    }

    func me(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let tenants = try await self.store.tenants(ofUser: caller.user.id)
        return .json(
            200,
            .object([
                ("user", Self.json(caller.user)), ("tenant", Self.json(caller.tenant)),
                ("roles", .array(caller.roles.map { .string($0) })),
                ("permissions", .array(caller.permissions.map { .string($0.description) })),
                ("tenants", .array(tenants.map(Self.json))), ("key", Self.json(caller.key)),
            ]))
    }

    static func newKey(user: String, tenant: String, name: String, now: Int64, expiresAt: Int64? = nil) -> (APIKeyRecord, String) {
        let (id, key) = APIKey.generate()
        let record = APIKeyRecord(
            id: id, userID: user, tenantID: tenant, name: name, keyHash: APIKey.hash(key), createdAt: now, expiresAt: expiresAt)
        return (record, key)
    }

    func createKey(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let now = self.now()
        var expiresAt: Int64?
        if let lifetime = context.body.integer("expires_in_seconds") {
            guard (60...315_360_000).contains(lifetime) else {
                throw APIError.invalidRequest("\"expires_in_seconds\" must be between 60 and 315360000")
            }
            expiresAt = now + lifetime
        }
        let name = context.body.string("name")?.trimmingSpaces() ?? "api key"
        var tenant = caller.tenant
        if let tenantID = context.body.string("tenant_id") { tenant = try await self.memberTenant(tenantID, userID: caller.user.id) }
        let (record, key) = Self.newKey(user: caller.user.id, tenant: tenant.id, name: name.isEmpty ? "api key" : name, now: now, expiresAt: expiresAt)
        try await self.insertKeyWithinQuota(record)
        return .json(201, .object([("api_key", .string(key)), ("key", Self.json(record))]))
    }

    func listKeys(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let keys = try await self.store.keys(ofUser: caller.user.id, now: self.now())
        return .json(200, .object([("keys", .array(keys.map { Self.json($0, current: $0.id == caller.key.id) }))]))
    }

    /// The caller's key named by the path, when it is still valid; 404 otherwise (also for other users' keys).
    private func ownKey(_ context: RouteContext, caller: Caller) async throws -> APIKeyRecord {
        let id = context.parameter("id")
        guard let key = try await self.store.key(id: id), key.userID == caller.user.id, key.isValid(at: self.now()) else {
            throw APIError.notFound("you have no active key \(id)")
        }
        return key
    }

    func replaceKey(_ context: RouteContext, rotate: Bool) async throws -> APIResponse {
        let caller = try context.authenticated
        let old = try await self.ownKey(context, caller: caller)
        if let replacement = old.replacedBy {
            // A rotated key in its grace period: its successor is the one to rotate.
            throw APIError.conflict("key_replaced", "the key \(old.id) was already replaced by \(replacement); rotate or regenerate that one")
        }
        let now = self.now()
        var grace: Int64 = 0
        if rotate {
            grace = context.body.integer("grace_seconds") ?? self.configuration.defaultRotationGrace
            guard (0...self.configuration.maximumRotationGrace).contains(grace) else {
                throw APIError.invalidRequest("\"grace_seconds\" must be between 0 and \(self.configuration.maximumRotationGrace)")
            }
        }
        let (record, key) = Self.newKey(user: old.userID, tenant: old.tenantID, name: old.name, now: now, expiresAt: old.expiresAt)
        do {
            try await self.store.replaceKey(
                oldID: old.id, expiresAt: rotate ? now + grace : nil, revokedAt: rotate ? nil : now, newKey: record)
        } catch let error as ControlStoreError where error.isNotFound {
            throw APIError.notFound("you have no active key \(old.id)")
        }
        self.metrics.count(.keysCreated)
        var previous = old
        previous.replacedBy = record.id
        if rotate {
            previous.expiresAt = min(old.expiresAt ?? Int64.max, now + grace)
        } else {
            previous.revokedAt = now
        }
        self.logger.info(
            rotate ? "key rotated" : "key regenerated",
            metadata: ["request-id": "\(context.request.requestID)", "key-id": "\(old.id)", "new-key-id": "\(record.id)"])
        return .json(201, .object([("api_key", .string(key)), ("key", Self.json(record)), ("previous", Self.json(previous))]))
    }

    func deleteKey(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let key = try await self.ownKey(context, caller: caller)
        do {
            try await self.store.revokeKey(id: key.id, at: self.now())
        } catch let error as ControlStoreError where error.isNotFound {
            throw APIError.notFound("you have no active key \(key.id)")
        }
        self.logger.info("key revoked", metadata: ["request-id": "\(context.request.requestID)", "key-id": "\(key.id)"])
        return .noContent
    }

    // MARK: - RBAC

    func listRoles(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let roles = try await self.store.roles(tenantID: caller.tenant.id)
        return .json(200, .object([("roles", .array(roles.map(Self.json)))]))
    }

    private func parsePermissions(_ items: [String]) throws(APIError) -> [Permission] {
        switch Permission.parseList(items.flatMap { $0.split(separator: ",").map(String.init) }) {
        case .success(let permissions):
            guard !permissions.isEmpty else { throw APIError.invalidRequest("\"permissions\" must not be empty") }
            return permissions
        case .failure(let invalid):
            throw APIError.invalidRequest(
                "not permissions of the form resource:action: \(invalid.items.map { "\"\($0)\"" }.joined(separator: ", "))")
        }
    }

    func createRole(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let name = context.body.string("name") ?? ""
        guard Self.isValidRoleName(name) else {
            throw APIError.invalidRequest("\"name\" must be 1 to 63 lowercase letters, digits, - or _, starting with a letter or digit")
        }
        if BuiltinRole(rawValue: name) != nil {
            throw APIError.conflict("builtin_role", "\(name) is a built-in role, which cannot be redefined; choose another name")
        }
        let permissions = try self.parsePermissions(context.body.strings("permissions") ?? [])
        try self.checkGrantable(permissions, by: caller)
        let role = RoleRecord(
            id: SecureRandom.identifier(prefix: "role_"), tenantID: caller.tenant.id, name: name,
            description: context.body.string("description") ?? "", permissions: permissions, createdAt: self.now())
        do {
            try await self.store.insertRole(role)
        } catch let error as ControlStoreError where error.isDuplicate {
            throw APIError.conflict("role_exists", "a role named \(name) exists in this tenant")
        }
        return .json(201, Self.json(role))
    }

    static func isValidRoleName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, name.unicodeScalars.count <= 63 else { return false }
        let lowerOrDigit: (Unicode.Scalar) -> Bool = { ("a"..."z").contains($0) || ("0"..."9").contains($0) }
        return lowerOrDigit(first) && name.unicodeScalars.allSatisfy { lowerOrDigit($0) || $0 == "-" || $0 == "_" }
    }

    private func namedRole(_ context: RouteContext, caller: Caller) async throws -> RoleRecord {
        let name = context.parameter("name")
        guard let role = try await self.store.role(tenantID: caller.tenant.id, name: name) else {
            throw APIError.notFound("no role named \(name) in this tenant")
        }
        return role
    }

    func getRole(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        return .json(200, Self.json(try await self.namedRole(context, caller: caller)))
    }

    func updateRole(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        var role = try await self.namedRole(context, caller: caller)
        guard !role.isBuiltin else { throw APIError.conflict("builtin_role", "the built-in role \(role.name) cannot be changed") }
        let newPermissions = context.body.strings("permissions")
        let newDescription = context.body.string("description")
        guard newPermissions != nil || newDescription != nil else {
            throw APIError.invalidRequest("give \"permissions\", \"description\" or both")
        }
        if let newPermissions {
            role.permissions = try self.parsePermissions(newPermissions)
            try self.checkGrantable(role.permissions, by: caller)
        }
        if let newDescription { role.description = newDescription }
        try await self.store.updateRole(role)
        return .json(200, Self.json(role))
    }

    func deleteRole(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let role = try await self.namedRole(context, caller: caller)
        guard !role.isBuiltin else { throw APIError.conflict("builtin_role", "the built-in role \(role.name) cannot be deleted") }
        do {
            try await self.store.deleteRole(id: role.id)
        } catch let error as ControlStoreError where error.isInUse {
            throw APIError.conflict("role_in_use", "the role \(role.name) is bound to users; remove those bindings first")
        }
        return .noContent
    }

    func createBinding(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let email = (context.body.string("user") ?? "").trimmingSpaces().lowercased()
        let roleName = context.body.string("role") ?? ""
        guard let user = try await self.store.user(email: email) else {
            throw APIError.notFound("no user with the email \(email); they must register first")
        }
        guard let role = try await self.store.role(tenantID: caller.tenant.id, name: roleName) else {
            throw APIError.notFound("no role named \(roleName) in this tenant")
        }
        try self.checkGrantable(role.permissions, by: caller)
        if try await !self.store.isMember(userID: user.id, tenantID: caller.tenant.id) {
            try await self.store.checkQuota(
                tenantID: caller.tenant.id, resource: .members, current: try await self.store.memberCount(tenantID: caller.tenant.id))
        }
        var binding = BindingRecord(
            id: SecureRandom.identifier(prefix: "rb_"), tenantID: caller.tenant.id, userID: user.id, roleID: role.id, createdAt: self.now())
        do {
            try await self.store.insertBinding(binding)
        } catch let error as ControlStoreError where error.isDuplicate {
            throw APIError.conflict("binding_exists", "\(email) already has the role \(roleName) in this tenant")
        }
        binding.userEmail = user.email
        binding.roleName = role.name
        self.logger.info(
            "role bound",
            metadata: ["request-id": "\(context.request.requestID)", "binding-id": "\(binding.id)", "role": "\(role.name)"])
        return .json(201, Self.json(binding))
    }

    func listBindings(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let bindings = try await self.store.bindings(tenantID: caller.tenant.id)
        return .json(200, .object([("bindings", .array(bindings.map(Self.json)))]))
    }

    func deleteBinding(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let id = context.parameter("id")
        guard let binding = try await self.store.binding(id: id, tenantID: caller.tenant.id) else {
            throw APIError.notFound("no binding \(id) in this tenant")
        }
        if binding.roleID == BuiltinRole.admin.id {
            let admins = try await self.store.bindings(tenantID: caller.tenant.id).filter { $0.roleID == BuiltinRole.admin.id }
            if admins.count <= 1 {
                throw APIError.conflict("last_admin", "this is the tenant's last admin binding; bind another admin first")
            }
        }
        do {
            try await self.store.deleteBinding(id: id)
        } catch let error as ControlStoreError where error.isNotFound {
            throw APIError.notFound("no binding \(id) in this tenant")
        }
        return .noContent
    }

    // MARK: - JSON shapes

    static func time(_ seconds: Int64) -> JSONValue {
        .string(Date(timeIntervalSince1970: TimeInterval(seconds)).formatted(.iso8601))
    }

    static func json(_ user: UserRecord) -> JSONValue {
        .object([("id", .string(user.id)), ("email", .string(user.email)), ("name", .string(user.name)), ("created_at", time(user.createdAt))])
    }

    static func json(_ tenant: TenantRecord) -> JSONValue {
        .object([
            ("id", .string(tenant.id)), ("name", .string(tenant.name)), ("personal", .bool(tenant.personalUserID != nil)),
            ("created_at", time(tenant.createdAt)),
        ])
    }

    static func json(_ key: APIKeyRecord) -> JSONValue { Self.json(key, current: nil) }

    static func json(_ key: APIKeyRecord, current: Bool?) -> JSONValue {
        var members: [(String, JSONValue)] = [
            ("id", .string(key.id)), ("name", .string(key.name)), ("prefix", .string(APIKey.prefix + key.id)),
            ("tenant_id", .string(key.tenantID)), ("created_at", time(key.createdAt)),
            ("expires_at", key.expiresAt.map(time) ?? .null),
        ]
        if let revokedAt = key.revokedAt { members.append(("revoked_at", time(revokedAt))) }
        if let replacedBy = key.replacedBy { members.append(("replaced_by", .string(replacedBy))) }
        if let current { members.append(("current", .bool(current))) }
        return .object(members)
    }

    static func json(_ role: RoleRecord) -> JSONValue {
        .object([
            ("id", .string(role.id)), ("name", .string(role.name)), ("description", .string(role.description)),
            ("permissions", .array(role.permissions.map { .string($0.description) })), ("builtin", .bool(role.isBuiltin)),
        ])
    }

    static func json(_ binding: BindingRecord) -> JSONValue {
        .object([
            ("id", .string(binding.id)), ("user_id", .string(binding.userID)), ("user", .string(binding.userEmail)),
            ("role", .string(binding.roleName)), ("created_at", time(binding.createdAt)),
        ])
    }
}

extension Optional {
    /// `map` with an async transform.
    func asyncMap<U>(_ transform: (Wrapped) async throws -> U) async rethrows -> U? {
        guard let value = self else { return nil }
        return try await transform(value)
    }
}
