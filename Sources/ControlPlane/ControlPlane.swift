public import ServiceContract
import Database
import HostAddress
public import Logging
public import ServiceLifecycle

/// Settings of the control plane.
public struct ControlPlaneConfiguration: Sendable {
    /// Where the REST API listens, `host:port`.
    public var apiAddress: String = "127.0.0.1:8080"
    /// Where all control-plane state lives: a SQLite file path (`cloud dev`: `<data-dir>/control.sqlite`)
    /// or `postgres://user:password@host:port/database` (see ``DatabaseLocation``).
    public var database: String = "./cloud-data/control.sqlite"
    /// API behaviour (password cost, lockout, key grace, body size).
    public var api = ControlAPIConfiguration()
    /// The cloud services this control plane hosts (storage, secrets, …), each one module on the
    /// service contract.
    public var services: [any CloudService] = []
    /// Quota defaults that replace the services' declared ones (`--quota RESOURCE=N`).
    public var quotaDefaults = QuotaDefaults()
    /// Whether this process runs background tasks (`--task-workers 0`: it only serves the API).
    public var runTasks = true
    /// The task runner (concurrency, lease, backoff); the built-in housekeeping schedules are added.
    public var tasks = TaskRunnerConfiguration()
    /// Registers the test-only task kind `test.sleep-and-record` (`CLOUD_TEST_TASKS=1`).
    public var testTasks = false

    public init() {}

    /// Checks the settings a person typed.
    /// - Throws: ``ControlPlaneError`` naming the first bad one.
    public func validate() throws(ControlPlaneError) {
        guard HostPort.split(self.apiAddress) != nil else {
            throw ControlPlaneError("--api-address '\(self.apiAddress)' is not host:port")
        }
        do {
            _ = try DatabaseLocation(parsing: self.database)
        } catch {
            throw ControlPlaneError("--database: \(error)")
        }
        try self.tasks.validate()
        _ = try ServiceCatalog(services: self.services)
    }
}

/// A failure to start the control plane, with a message for the operator.
public struct ControlPlaneError: Error, Sendable, CustomStringConvertible {
    public var description: String

    public init(_ description: String) { self.description = description }
}

/// The control plane: identity, API keys, tenants and RBAC behind a REST API.
///
/// Terms: a *user* logs in with email and password and gets *API keys*; each key acts in one
/// *tenant* (project), where the user's *role bindings* decide what the key may do. Every route
/// declares the permission it needs in ``ControlAPI``'s route table.
public struct ControlServer: Sendable {
    public let configuration: ControlPlaneConfiguration
    public let store: ControlStore
    public let api: ControlAPI
    let logger: Logger

    /// Opens the database and applies pending migrations.
    /// - Throws: ``ControlPlaneError`` when the address is malformed or the database cannot be opened.
    public init(configuration: ControlPlaneConfiguration, logger: Logger) async throws {
        try configuration.validate()
        self.configuration = configuration
        self.logger = logger
        let shown = DatabaseLocation.redacted(configuration.database)
        do {
            let database = try DatabaseLocation(parsing: configuration.database).open(logger: logger)
            let store = ControlStore(
                database: database, quotaDefaults: configuration.quotaDefaults, catalog: try ServiceCatalog(services: configuration.services))
            let applied: Int
            do {
                applied = try await store.migrate()
            } catch {
                await database.close()
                throw error
            }
            if applied > 0 { logger.info("control-plane database migrated", metadata: ["migrations": "\(applied)"]) }
            if configuration.testTasks { try await ControlTasks.prepareTestTasks(database) }
            self.store = store
        } catch {
            throw ControlPlaneError("cannot open the control-plane database \(shown): \(error)")
        }
        self.api = try ControlAPI(store: self.store, configuration: configuration.api, logger: logger)
    }

    /// Closes the database's connections (after the services stopped).
    public func close() async {
        await self.store.database.close()
    }

    /// The long-running services (the API listener and, unless turned off, the task runner), for the
    /// process's ServiceGroup.
    public func services() -> [any Service] {
        let (host, port) = HostPort.split(self.configuration.apiAddress)!
        var services: [any Service] = [APIServer(host: host.isEmpty ? "0.0.0.0" : host, port: port, api: self.api, logger: self.logger)]
        let catalog = self.store.catalog
        for service in catalog.services { services += service.services(self.api.environment) }
        if self.configuration.runTasks {
            var handlers = ControlTasks.handlers() + catalog.taskHandlers
            if self.configuration.testTasks { handlers.append(ControlTasks.sleepAndRecordHandler()) }
            var tasks = self.configuration.tasks
            tasks.schedules += ControlTasks.schedules + catalog.schedules
            services.append(TaskRunner(queue: self.api.tasks, handlers: handlers, configuration: tasks, logger: self.logger))
        }
        return services
    }
}
