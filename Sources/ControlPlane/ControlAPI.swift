import Database
import Foundation
import Synchronization
public import Logging
public import NIOPosix
public import Prometheus
public import ServiceContract

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
    /// The process's metrics registry, which `/metrics` shows: the API's metrics and those of the
    /// services given the same registry (``ServiceMetrics``).
    public var metricsRegistry = PrometheusCollectorRegistry()

    public init() {}
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
    public let metrics: ControlMetrics
    /// The host's routes and every service's.
    let router: Router
    /// What the services' handlers get.
    public let environment: ServiceEnvironment
    /// `GET /openapi.json`.
    let document: JSONValue

    /// - Parameters:
    ///   - store: The database, with the catalog of hosted services.
    ///   - threadPool: Where password hashing runs (default NIO's singleton pool).
    ///   - now: The clock, unix seconds (default the wall clock); tests move it.
    ///   - serviceClock: The clock of the task queue and the services, unix milliseconds (default the
    ///     wall clock); tests of time-driven services (cron) move it.
    /// - Throws: ``ControlPlaneError`` when routes collide.
    public init(
        store: ControlStore, configuration: ControlAPIConfiguration = ControlAPIConfiguration(), logger: Logger,
        threadPool: NIOThreadPool? = nil, now: (@Sendable () -> Int64)? = nil, serviceClock: (@Sendable () -> Int64)? = nil
    ) throws(ControlPlaneError) {
        self.store = store
        let now = now ?? { WallClock.unixNow() }
        let tasks = TaskQueue(database: store.database, now: serviceClock)
        self.tasks = tasks
        self.configuration = configuration
        self.metrics = ControlMetrics(registry: configuration.metricsRegistry)
        self.logger = logger
        self.threadPool = threadPool ?? .singleton
        self.now = now
        self.decoyHash = PasswordHasher.hash("decoy password that nobody has", parameters: configuration.passwordHashing)
        let catalog = store.catalog
        self.router = try Router(host: Self.hostRoutes(quotas: catalog.quotaResources), services: catalog.services)
        self.document = OpenAPI.document(self.router)
        self.environment = ServiceEnvironment(
            database: store.database, tasks: tasks,
            quotas: HostQuotaLedger(quotas: catalog.quotas, defaults: store.quotaDefaults, dialect: store.database.dialect),
            logger: logger, clock: ServiceClock(unixMilliseconds: tasks.now))
    }

    /// Answers one request.
    /// - Returns: The response; the route's operation id (or a placeholder) for logs.
    public func handle(_ request: APIRequest) async -> (APIResponse, operation: String) {
        let entry: Router.Entry
        let parameters: [String: String]
        switch self.router.find(method: request.method, path: request.path) {
        case .success(let found): (entry, parameters) = found
        case .failure(let mismatch):
            if mismatch.allowed.isEmpty {
                return (.error(.notFound("no route \(request.method) \(request.path); see /openapi.json")), "unknown")
            }
            var error = APIError(
                status: 405, code: "method_not_allowed", message: "\(request.path) accepts \(mismatch.allowed.joined(separator: ", "))")
            error.headers = [("Allow", mismatch.allowed.joined(separator: ", "))]
            return (.error(error), "unknown")
        }
        let operation = entry.spec.operationID
        var claim: Idempotency.Claim?
        do {
            let caller = try await self.authorize(request, access: entry.spec.access)
            let body = entry.spec.rawBodyType != nil ? RequestBody(values: [:]) : try self.parseBody(request, schema: entry.spec.body)
            if entry.spec.creates, let caller, let key = try Idempotency.key(of: request) {
                let outcome = try await self.storeCall {
                    try await Idempotency.claim(
                        self.store.database, tenantID: caller.tenantID, userID: caller.userID, key: key,
                        hash: Idempotency.requestHash(request), now: self.tasks.now())
                }
                switch outcome {
                case .claimed(let claimed):
                    claimed.revealsSecret.withLock { $0 = entry.spec.revealsSecret }
                    claim = claimed
                case .replay(let response): return (response, operation)
                case .inProgress:
                    var error = APIError.conflict(
                        "request_in_progress", "a request with this Idempotency-Key is still running; retry in a moment")
                    error.headers = [("Retry-After", "1")]
                    throw error
                case .mismatch:
                    throw APIError(
                        status: 422, code: "idempotency_key_reused",
                        message: "this Idempotency-Key was used for another request (method, path or body); use a new key")
                case .secretNotKept:
                    throw APIError.conflict(
                        "already_created",
                        "a request with this Idempotency-Key already created the resource; its secret was shown once and is not kept")
                }
            }
            let context = RouteContext(
                request: request, parameters: parameters, body: body, caller: caller, environment: self.environment, idempotency: claim)
            let response: APIResponse
            switch entry.handler {
            case .host(let handler): response = try await handler(self, context)
            case .service(let handler): response = try await handler(context)
            }
            if let claim { try await self.storeCall { try await claim.finish(response, database: self.store.database) } }
            return (response, operation)
        } catch {
            if let claim {
                do { try await claim.finish(nil, database: self.store.database) } catch {
                    self.logger.warning("idempotency key not released", metadata: ["request-id": "\(request.requestID)", "error": "\(error)"])
                }
            }
            return (self.answer(error, request: request), operation)
        }
    }

    /// The one place errors become answers: API errors as they are, each service's domain errors
    /// through their ``APIErrorConvertible`` mapping, quota refusals as 409, database failures as 503,
    /// anything else as a 500 whose details go to the log only.
    private func answer(_ error: any Error, request: APIRequest) -> APIResponse {
        switch error {
        case let error as APIError:
            return .error(error)
        case let error as any APIErrorConvertible:
            return .error(error.apiError)
        case let error as QuotaExceeded:
            self.metrics.count(.quotaRefusals)
            return .error(.quotaExceeded(error))
        case is ControlStoreError, is DatabaseError:
            return self.databaseFailed(error, request: request)
        case let queueError as TaskQueueError where queueError.isUnavailable:
            return self.databaseFailed(error, request: request)
        default:
            self.logger.error("request failed", metadata: ["request-id": "\(request.requestID)", "error": "\(error)"])
            return .error(.internalError)
        }
    }

    /// A database failure: 503, counted, its details in the log only.
    private func databaseFailed(_ error: any Error, request: APIRequest) -> APIResponse {
        self.metrics.count(.databaseErrors)
        self.logger.error("database failed", metadata: ["request-id": "\(request.requestID)", "error": "\(error)"])
        return .error(.unavailable("the database is unavailable; retry later"))
    }

    /// Database failures of the host's own calls as ``ControlStoreError``s.
    private func storeCall<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as DatabaseError {
            throw ControlStoreError.unavailable(error.message)
        }
    }

    /// The largest body the route of this request takes: its own ``RouteSpec/maximumBodyBytes``, else
    /// the configured default (the listener reads bodies before dispatch, and refuses larger ones with 413).
    public func bodyLimit(method: String, target: String) -> Int {
        let path = String(target.prefix { $0 != "?" })
        if case .success(let (entry, _)) = self.router.find(method: method, path: path), let limit = entry.spec.maximumBodyBytes {
            return limit
        }
        return self.configuration.maximumBodyBytes
    }

    /// The routes as (method, path, access), for tests and docs.
    public var routeTable: [(method: String, path: String, access: Access)] {
        self.router.entries.map { ($0.spec.method, $0.spec.path, $0.spec.access) }
    }

    /// The routes with the service that owns each (`core` for the host's).
    public var routes: [(owner: String, spec: RouteSpec)] { self.router.entries.map { ($0.owner, $0.spec) } }

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
        return Caller(
            userID: found.user.id, email: found.user.email, tenantID: found.tenant.id, keyID: found.key.id, roles: found.roles,
            permissions: found.permissions)
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
        var degraded = false
        for dependency in self.configuration.readinessChecks + self.store.catalog.services.flatMap(\.readinessChecks) {
            guard let problem = await dependency.check(self.store.database) else {
                checks.append((dependency.name, .string("ok")))
                continue
            }
            if dependency.required {
                return .error(APIError(status: 503, code: "not_ready", message: "\(dependency.name): \(problem)"))
            }
            degraded = true
            checks.append((dependency.name, .string(problem)))
        }
        return .json(200, .object([("status", .string(degraded ? "degraded" : "ready")), ("checks", .object(checks))]))
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
        let client = context.request.clientAddress
        let failures = try await self.store.loginFailures(email: email, clientAddress: client, since: now - policy.window)
        let clientFailures = try await self.store.loginFailures(clientAddress: client, since: now - policy.window)
        let locks = [
            policy.lockedUntil(failures: failures, now: now).map { ($0, "too many failed logins for this email from your address") },
            policy.lockedUntil(failures: clientFailures, now: now, limit: policy.maximumClientFailures).map {
                ($0, "too many failed logins from your address")
            },
        ].compactMap { $0 }
        if let (until, why) = locks.max(by: { $0.0 < $1.0 }) {
            self.metrics.count(.lockedLogins)
            var error = APIError(status: 429, code: "too_many_attempts", message: "\(why); try again in \(until - now) seconds")
            error.headers = [("Retry-After", String(until - now))]
            throw error
        }
        let user = try await self.store.user(email: email)
        let stored = user?.passwordHash ?? self.decoyHash
        let correct = try await self.threadPool.runIfActive { PasswordHasher.verify(password, against: stored) }
        guard let user, correct else {
            try await self.store.recordLogin(email: email, clientAddress: context.request.clientAddress, succeeded: false, at: now)
            self.metrics.count(.loginFailures)
            if policy.lockedUntil(failures: failures + [now], now: now) != nil
                || policy.lockedUntil(failures: clientFailures + [now], now: now, limit: policy.maximumClientFailures) != nil
            {
                self.metrics.count(.lockouts)
            }
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
        guard let credentials = try await self.store.credentials(keyID: caller.keyID) else { throw APIError.invalidKey }
        let tenants = try await self.store.tenants(ofUser: caller.userID)
        return .json(
            200,
            .object([
                ("user", Self.json(credentials.user)), ("tenant", Self.json(credentials.tenant)),
                ("roles", .array(caller.roles.map { .string($0) })),
                ("permissions", .array(caller.permissions.map { .string($0.description) })),
                ("tenants", .array(tenants.map(Self.json))), ("key", Self.json(credentials.key)),
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
        let tenantID = context.body.string("tenant_id") ?? caller.tenantID
        if tenantID != caller.tenantID { _ = try await self.memberTenant(tenantID, userID: caller.userID) }
        let (record, key) = Self.newKey(user: caller.userID, tenant: tenantID, name: name.isEmpty ? "api key" : name, now: now, expiresAt: expiresAt)
        try await self.insertKeyWithinQuota(record)
        return .json(201, .object([("api_key", .string(key)), ("key", Self.json(record))]))
    }

    func listKeys(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let keys = try await self.store.keys(ofUser: caller.userID, now: self.now())
        let (page, next) = try Self.paged(context, keys, id: \.id)
        return .json(200, .object([("keys", .array(page.map { Self.json($0, current: $0.id == caller.keyID) })), Self.next(next)]))
    }

    /// The caller's key named by the path, when it is still valid; 404 otherwise (also for other users' keys).
    private func ownKey(_ context: RouteContext, caller: Caller) async throws -> APIKeyRecord {
        let id = context.parameter("id")
        guard let key = try await self.store.key(id: id), key.userID == caller.userID, key.isValid(at: self.now()) else {
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
        let roles = try await self.store.roles(tenantID: caller.tenantID)
        let (page, next) = try Self.paged(context, roles, id: \.id)
        return .json(200, .object([("roles", .array(page.map(Self.json))), Self.next(next)]))
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
            id: SecureRandom.identifier(prefix: "role_"), tenantID: caller.tenantID, name: name,
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
        guard let role = try await self.store.role(tenantID: caller.tenantID, name: name) else {
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
        guard let role = try await self.store.role(tenantID: caller.tenantID, name: roleName) else {
            throw APIError.notFound("no role named \(roleName) in this tenant")
        }
        try self.checkGrantable(role.permissions, by: caller)
        if try await !self.store.isMember(userID: user.id, tenantID: caller.tenantID) {
            try await self.store.checkQuota(
                tenantID: caller.tenantID, resource: .members, current: try await self.store.memberCount(tenantID: caller.tenantID))
        }
        var binding = BindingRecord(
            id: SecureRandom.identifier(prefix: "rb_"), tenantID: caller.tenantID, userID: user.id, roleID: role.id, createdAt: self.now())
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
        let bindings = try await self.store.bindings(tenantID: caller.tenantID)
        let (page, next) = try Self.paged(context, bindings, id: \.id)
        return .json(200, .object([("bindings", .array(page.map(Self.json))), Self.next(next)]))
    }

    func deleteBinding(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let id = context.parameter("id")
        guard let binding = try await self.store.binding(id: id, tenantID: caller.tenantID) else {
            throw APIError.notFound("no binding \(id) in this tenant")
        }
        if binding.roleID == BuiltinRole.admin.id {
            let admins = try await self.store.bindings(tenantID: caller.tenantID).filter { $0.roleID == BuiltinRole.admin.id }
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

extension ControlAPI {
    /// One page of a short list the host holds in memory, in its order: `next_token` names the last
    /// item given.
    /// - Throws: ``APIError`` 400 for a bad limit or token, or a token whose item is gone (the list
    ///   changed between pages: start again).
    static func paged<T>(_ context: RouteContext, _ items: [T], id: (T) -> String) throws(APIError) -> ([T], String?) {
        let page = try context.page()
        var rest = items[...]
        if let after = page.after {
            guard let index = items.firstIndex(where: { id($0) == after }) else {
                throw APIError.invalidRequest("next_token names an item that is gone: the list changed; start again without it")
            }
            rest = items[(index + 1)...]
        }
        return page.finish(Array(rest.prefix(page.fetchLimit)), key: id)
    }

    /// The `next_token` member of a list answer.
    static func next(_ token: String?) -> (String, JSONValue) { ("next_token", token.map(JSONValue.string) ?? .null) }
}

extension Optional {
    /// `map` with an async transform.
    func asyncMap<U>(_ transform: (Wrapped) async throws -> U) async rethrows -> U? {
        guard let value = self else { return nil }
        return try await transform(value)
    }
}
