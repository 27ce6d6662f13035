public import Database
public import Logging
public import ServiceLifecycle

/// One cloud service (storage, secrets, queues, …) as the control plane hosts it.
///
/// A service declares, in one place, everything the host needs: its name, permissions and the
/// built-in roles that grant them, migrations, routes, task handlers and schedules, quotas,
/// readiness checks and long-running parts. The host (`ControlPlane`) builds one router from all
/// services (refusing collisions), applies each service's migrations under its own name, computes the
/// built-in roles from the permission declarations, runs the task handlers in its task runner and
/// the long-running parts in its ServiceGroup. A service never reaches into the host: what it needs
/// at run time comes in a ``ServiceEnvironment``.
///
/// Naming rules, checked by the contract test for every registered service:
/// - routes start with `/<name>` (or one of ``routePrefixes``),
/// - task kinds with `<name>.`, tables with `<name>_`,
/// - every permission a route needs is declared in ``permissions``, and its resource part is one
///   that no other service declares.
public protocol CloudService: Sendable {
    /// Lowercase letters and digits: `storage`, `secrets`, `queues`.
    var name: String { get }
    /// One line for the API reference's section of this service.
    var summary: String { get }
    /// The permissions its routes need, each with the built-in roles that grant it.
    var permissions: [PermissionSpec] { get }
    /// Its schema, versioned on its own (`schema_migrations` is keyed by service and version).
    var migrations: [Migration] { get }
    /// Its REST routes.
    var routes: [Route] { get }
    /// The handlers of its task kinds (`<name>.<operation>`).
    var tasks: [TaskHandler] { get }
    /// Tasks the host enqueues periodically (once per period across all processes).
    var schedules: [TaskSchedule] { get }
    /// The quotas it enforces through ``ServiceEnvironment/quotas``.
    var quotas: [QuotaSpec] { get }
    /// The path prefixes its routes may use; default `["/<name>"]`.
    var routePrefixes: [String] { get }
    /// What `/health/ready` checks for this service (an external system it needs).
    var readinessChecks: [ReadinessCheck] { get }
    /// Its long-running parts (reconcilers, listeners), for the host's ServiceGroup.
    func services(_ environment: ServiceEnvironment) -> [any Service]
}

extension CloudService {
    public var migrations: [Migration] { [] }
    public var tasks: [TaskHandler] { [] }
    public var schedules: [TaskSchedule] { [] }
    public var quotas: [QuotaSpec] { [] }
    public var routePrefixes: [String] { ["/" + self.name] }
    public var readinessChecks: [ReadinessCheck] { [] }
    public func services(_ environment: ServiceEnvironment) -> [any Service] { [] }
}

/// A permission a service's routes need, and which built-in roles grant it. `admin` grants
/// everything (`*:*`); `viewer` and `developer` grant every `read` (`*:read`) whatever is declared here.
public struct PermissionSpec: Sendable, Equatable {
    public var permission: Permission
    /// For `cloud roles` and the docs.
    public var description: String
    /// The built-in roles besides `admin` that grant it.
    public var grantedTo: Set<BuiltinRole>

    /// - Precondition: `permission` is concrete (no `*`).
    public init(_ permission: String, _ description: String, grantedTo: Set<BuiltinRole>) {
        guard let parsed = Permission(permission), parsed.resource != "*", parsed.action != "*" else {
            preconditionFailure("a declared permission is concrete resource:action, not '\(permission)'")
        }
        self.permission = parsed
        self.description = description
        self.grantedTo = grantedTo
    }
}

/// A dependency `/health/ready` checks.
public struct ReadinessCheck: Sendable {
    /// Shown in the answer (`storage`).
    public var name: String
    /// Whether the control plane cannot serve without it: a required check's problem makes
    /// `/health/ready` answer 503; any other check's problem is named in a 200 answer whose status
    /// is `degraded` (a compute host down does not take the API out of a load balancer).
    public var required: Bool
    /// Nil when the dependency answers, else why not; it may read the control plane's database.
    public var check: @Sendable (any SQLDatabase) async -> String?

    /// A check of something outside the database.
    public init(name: String, required: Bool = true, check: @escaping @Sendable () async -> String?) {
        self.init(name: name, required: required, reading: { _ in await check() })
    }

    /// A check that reads the control plane's database (a service's hosts and their states).
    public init(name: String, required: Bool = true, reading check: @escaping @Sendable (any SQLDatabase) async -> String?) {
        self.name = name
        self.required = required
        self.check = check
    }
}

/// The wall clock as services read it; injected so tests move time.
public struct ServiceClock: Sendable {
    /// Unix milliseconds.
    public let unixMilliseconds: @Sendable () -> Int64

    public init(unixMilliseconds: @escaping @Sendable () -> Int64) { self.unixMilliseconds = unixMilliseconds }

    /// Unix seconds.
    public func unixSeconds() -> Int64 { self.unixMilliseconds() / 1000 }
}

/// What the host gives a service at run time.
public struct ServiceEnvironment: Sendable {
    /// The control plane's database (SQLite or PostgreSQL; the same SQL runs on both).
    public var database: any SQLDatabase
    /// The durable task queue in the same database; ``TaskQueue/enqueue(_:in:)`` joins a transaction.
    public var tasks: TaskQueue
    /// Atomic per-tenant quota checks.
    public var quotas: any QuotaLedger
    public var logger: Logger
    public var clock: ServiceClock

    public init(database: any SQLDatabase, tasks: TaskQueue, quotas: any QuotaLedger, logger: Logger, clock: ServiceClock) {
        self.database = database
        self.tasks = tasks
        self.quotas = quotas
        self.logger = logger
        self.clock = clock
    }
}

/// A service's own error type: each domain has one, mapped to its wire error here, in one place.
/// The host answers any thrown error of such a type with ``apiError``.
public protocol APIErrorConvertible: Error {
    /// The status, code and message to answer.
    var apiError: APIError { get }
}
