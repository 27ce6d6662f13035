import ArgumentParser
import ControlPlane
import Secrets
import ServiceContract
import Storage
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Logging
import ServiceLifecycle
import StorageEngine
import StorageNode

/// Options shared by the daemons that run a storage node.
struct NodeOptions: ParsableArguments {
    @Option(help: "Directory that holds all state (metadata, blocks, generated credentials).")
    var dataDir: String = "./cloud-data"

    @Option(help: "Address the S3 API listens on, host:port.")
    var s3Address: String = "127.0.0.1:9000"

    @Option(help: "Domain for virtual-hosted-style requests (bucket.<domain>); path style always works.")
    var domain: String?

    @Option(help: "Region reported to S3 clients.")
    var region: String = "us-east-1"

    @Option(help: "Block compression: none, lz4 or zstd (used only where it saves at least 1/8).")
    var compression: String = "lz4"

    @Flag(help: "Do not fsync blocks and metadata: faster, safe against a process crash but not a power loss.")
    var noFsync = false

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical. Access logs are at debug.")
    var logLevel: String = "info"

    @OptionGroup(title: "Cluster (any of --rpc-address, --gossip-address, --join makes the node clustered; needs CLOUD_CLUSTER_SECRET)")
    var cluster: ClusterOptions

    func makeConfiguration() throws -> NodeConfiguration {
        var configuration = NodeConfiguration()
        configuration.dataDirectory = self.dataDir
        configuration.s3Address = self.s3Address
        configuration.domain = self.domain
        configuration.region = self.region
        guard let compression = BlockCompression(rawValue: self.compression) else {
            throw ValidationError("--compression must be none, lz4 or zstd")
        }
        configuration.compression = compression
        configuration.syncWrites = !self.noFsync
        let environment = ProcessInfo.processInfo.environment
        configuration.rootAccessKey = environment["CLOUD_ROOT_ACCESS_KEY"].flatMap { $0.isEmpty ? nil : $0 }
        configuration.rootSecretKey = environment["CLOUD_ROOT_SECRET_KEY"].flatMap { $0.isEmpty ? nil : $0 }
        configuration.cluster = try self.cluster.makeSettings(secret: environment["CLOUD_CLUSTER_SECRET"])
        return configuration
    }

    func makeLogger() throws -> Logger { try CLI.makeLogger(level: self.logLevel) }

    /// Runs the node; `extraServices` adds services (opened after the node, so its data directory exists).
    func runNode(extraServices: (StorageNode, Logger) async throws -> [any Service] = { _, _ in [] }) async throws {
        let logger = try self.makeLogger()
        let configuration = try self.makeConfiguration()
        let node: StorageNode
        do {
            node = try StorageNode(configuration: configuration, logger: logger)
        } catch let error as NodeError {
            throw ValidationError(error.description)
        }
        if node.credentials.generated {
            // Printed once, on the start that generated them; kept in the data directory (0600).
            print("Generated root credentials (shown this once; kept in \(configuration.dataDirectory)/root-credentials, mode 0600):")
            print("  access key: \(node.credentials.accessKey)")
            print("  secret key: \(node.credentials.secretKey)")
            fflush(nil)
        }
        var metadata: Logger.Metadata = [
            "data-dir": "\(configuration.dataDirectory)", "s3": "\(configuration.s3Address)", "access-key": "\(node.credentials.accessKey)",
        ]
        if let cluster = node.cluster, let settings = configuration.cluster {
            metadata["node-id"] = "\(cluster.nodeID)"
            metadata["rpc"] = "\(settings.rpcAddress)"
            metadata["gossip"] = "\(settings.gossipAddress)"
            metadata["quorum"] = "\(settings.policy)"
        }
        let extra = try await extraServices(node, logger)
        logger.notice("storage node starting", metadata: metadata)
        try await node.run(extraServices: extra)
        logger.notice("storage node stopped")
    }
}

/// Sets up logging to standard error at `level` and returns the process's logger.
func makeLogger(level: String) throws -> Logger {
    guard let level = Logger.Level(rawValue: level) else {
        throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical")
    }
    LoggingSystem.bootstrap { label in
        var handler = StreamLogHandler.standardError(label: label)
        handler.logLevel = level
        return handler
    }
    var logger = Logger(label: "cloud")
    logger.logLevel = level
    return logger
}

/// `cloud dev`: everything on one host with embedded state.
struct Dev: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the platform on this host for development: a storage node and the control plane, with embedded state."
    )

    @OptionGroup var options: NodeOptions

    @Option(help: "Address the control plane's REST API listens on, host:port. Its state is <data-dir>/control.sqlite.")
    var apiAddress: String = "127.0.0.1:8080"

    @Option(help: "Address of the console gateway (WebSocket links to virtual machines' consoles), host:port; port 0 takes a free one.")
    var consoleAddress: String = "127.0.0.1:0"

    @OptionGroup var control: ControlPlaneOptions

    func validate() throws {
        _ = try HostedServices.console(self.consoleAddress)
        var configuration = ControlPlaneConfiguration()
        configuration.apiAddress = self.apiAddress
        do {
            try configuration.validate()
        } catch {
            throw ValidationError(error.description)
        }
    }

    func run() async throws {
        let apiAddress = self.apiAddress
        let consoleAddress = self.consoleAddress
        let control = self.control
        try await self.options.runNode { node, logger in
            var configuration = ControlPlaneConfiguration()
            configuration.apiAddress = apiAddress
            configuration.database = node.configuration.dataDirectory + "/control.sqlite"
            // The storage service is the node beside it, administered with its root key; /health/ready
            // checks it.
            configuration.services = HostedServices.make(
                storage: StorageServiceConfiguration(
                    endpoint: "http://" + Self.localAddress(node.configuration.s3Address), accessKey: node.credentials.accessKey,
                    secretKey: node.credentials.secretKey, region: node.configuration.region),
                masterKey: try control.masterKey(defaultFile: node.configuration.dataDirectory + "/master.key", logger: logger),
                volumes: node.configuration.dataDirectory + "/volumes", machines: node.configuration.dataDirectory + "/machines",
                console: try HostedServices.console(consoleAddress), metrics: configuration.api.metricsRegistry)
            try control.apply(to: &configuration, defaultOutbox: node.configuration.dataDirectory + "/outbox")
            do {
                return try await ControlServer(configuration: configuration, logger: logger).services()
            } catch let error as ControlPlaneError {
                throw ValidationError(error.description)
            }
        }
    }

    /// `host:port` to reach a listener bound to `address` from this host (wildcards become loopback).
    static func localAddress(_ address: String) -> String {
        if address.hasPrefix("0.0.0.0:") { return "127.0.0.1:" + address.dropFirst("0.0.0.0:".count) }
        if address.hasPrefix("[::]:") { return "[::1]:" + address.dropFirst("[::]:".count) }
        if address.hasPrefix(":") { return "127.0.0.1" + address }
        return address
    }
}

/// `cloud node`: the storage daemon of one host.
struct Node: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the storage daemon of this host: alone, or as a member of a cluster (see docs/cluster.md)."
    )

    @OptionGroup var options: NodeOptions

    func run() async throws {
        try await self.options.runNode()
    }
}
