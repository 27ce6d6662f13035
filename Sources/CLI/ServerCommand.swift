import ArgumentParser
import ControlPlane
import Secrets
import ServiceContract
import Storage
import Foundation
import Logging
import ServiceLifecycle
import UnixSignals

/// `cloud server`: the control plane alone, against a shared database and a storage cluster, so that
/// several of them can run behind a load balancer.
struct Server: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the control plane alone: its REST API on a shared database (PostgreSQL or a SQLite file), serving a storage cluster.",
        discussion: """
            The database URL may hold a password: prefer CLOUD_DATABASE_URL to --database so that it does not
            show in the process list. Several `cloud server` processes may share one PostgreSQL database; each
            applies pending migrations under a lock at start.
            """
    )

    @Option(help: "Address the REST API listens on, host:port.")
    var apiAddress: String = "127.0.0.1:8080"

    @Option(help: "The database: postgres://user:password@host:port/database (?host=/socket/dir for a Unix socket) or a SQLite file path. Default: CLOUD_DATABASE_URL, else ./cloud-data/control.sqlite.")
    var database: String?

    @OptionGroup(title: "Storage cluster (the service behind /storage/…; /health/ready checks it)")
    var storage: StorageServiceOptions

    @Option(help: "Background tasks this process runs at once; 0: none (the process only serves the API).")
    var taskWorkers: Int = 16

    @Option(help: "Seconds a worker's lease on a task lasts without a heartbeat: after a crash, its tasks wait this long before another process takes them over.")
    var taskLease: Int = 30

    @Option(help: "Directory of compute volume files and their mount points (every process of one deployment names the same one, on the engines' machine). Default: none, and volume requests answer 503.")
    var volumesDir: String?

    @Option(help: "Directory of virtual machines' disks, serial consoles and prepared images (on the libvirt hosts' machine: this one). Default: none, and instances on libvirt hosts fail with the reason.")
    var machinesDir: String?

    @Option(help: "Address of the console gateway (WebSocket links to virtual machines' consoles), host:port, on the libvirt hosts' machine. Default: none, and consoles give their VNC address only.")
    var consoleAddress: String?

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    @OptionGroup var control: ControlPlaneOptions

    /// The configuration; `masterKey` is the secrets service's (nil while only validating).
    func makeConfiguration(masterKey: MasterKey? = nil) throws -> ControlPlaneConfiguration {
        var configuration = ControlPlaneConfiguration()
        configuration.apiAddress = self.apiAddress
        let environment = ProcessInfo.processInfo.environment
        configuration.database = self.database ?? environment["CLOUD_DATABASE_URL"].flatMap { $0.isEmpty ? nil : $0 } ?? "./cloud-data/control.sqlite"
        guard self.taskWorkers >= 0, self.taskWorkers <= 256 else { throw ValidationError("--task-workers must be 0 to 256") }
        guard self.taskLease >= 3, self.taskLease <= 3600 else { throw ValidationError("--task-lease must be 3 to 3600 seconds") }
        configuration.runTasks = self.taskWorkers > 0
        configuration.tasks.concurrency = max(1, self.taskWorkers)
        configuration.tasks.leaseDuration = .seconds(self.taskLease)
        configuration.tasks.heartbeatInterval = .milliseconds(self.taskLease * 1000 / 3)
        // Hidden, for the integration tests: the kind test.sleep-and-record and a quicker poll.
        if environment["CLOUD_TEST_TASKS"] == "1" {
            configuration.testTasks = true
            configuration.tasks.pollInterval = .milliseconds(100)
        }
        configuration.services = HostedServices.make(
            storage: try self.storage.configuration(environment: environment), masterKey: masterKey, volumes: self.volumesDir, machines: self.machinesDir,
            console: try HostedServices.console(self.consoleAddress), metrics: configuration.api.metricsRegistry)
        try self.control.apply(to: &configuration, defaultOutbox: nil)
        do {
            try configuration.validate()
        } catch {
            throw ValidationError(error.description)
        }
        return configuration
    }

    func validate() throws {
        _ = try self.makeConfiguration()
    }

    func run() async throws {
        let logger = try makeLogger(level: self.logLevel)
        var configuration = try self.makeConfiguration()
        if configuration.database.hasPrefix("/") == false, !configuration.database.contains("://") {
            let directory = (configuration.database as NSString).deletingLastPathComponent
            if !directory.isEmpty { try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) }
        }
        configuration = try self.makeConfiguration(masterKey: try self.control.masterKey(defaultFile: "./cloud-data/master.key", logger: logger))
        let server: ControlServer
        do {
            server = try await ControlServer(configuration: configuration, logger: logger)
        } catch let error as ControlPlaneError {
            throw ValidationError(error.description)
        }
        var group = ServiceGroupConfiguration(
            services: server.services().map { ServiceGroupConfiguration.ServiceConfiguration(service: $0) },
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger
        )
        group.maximumGracefulShutdownDuration = .seconds(20)
        group.maximumCancellationDuration = .seconds(5)
        logger.notice("control plane starting", metadata: ["api": "\(configuration.apiAddress)"])
        try await ServiceGroup(configuration: group).run()
        await server.close()
        logger.notice("control plane stopped")
    }
}
