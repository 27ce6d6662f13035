#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Hashing
import HostAddress
public import Logging
import S3API
public import ServiceLifecycle
import UnixSignals
public import StorageEngine

/// Settings of one storage node.
public struct NodeConfiguration: Sendable {
    /// All state lives here.
    public var dataDirectory: String = "./cloud-data"
    /// Where S3 listens, `host:port`.
    public var s3Address: String = "127.0.0.1:9000"
    /// Virtual-hosted-style addressing: `bucket.<domain>`.
    public var domain: String?
    /// The region reported to clients.
    public var region: String = "us-east-1"
    /// Root credentials; when nil they are loaded from, or generated into, the data directory.
    public var rootAccessKey: String?
    public var rootSecretKey: String?
    /// Engine settings (block size, compression, sync).
    public var compression: BlockCompression = .lz4
    public var syncWrites: Bool = true
    /// How often unreferenced blocks and stale uploads are collected.
    public var garbageCollectionInterval: Duration = .seconds(600)
    /// Unreferenced blocks are kept this long before deletion.
    public var garbageGracePeriod: Duration = .seconds(3600)
    /// Multipart uploads older than this are aborted by the collector. Default 7 days.
    public var staleUploadAge: Duration = .seconds(7 * 24 * 3600)
    /// Cluster membership and replication; nil runs the node alone.
    public var cluster: ClusterSettings?

    public init() {}

    /// Splits `host:port` (IPv6 as `[::1]:9000`); an empty host means every interface.
    static func split(_ address: String) throws -> (host: String, port: Int) {
        guard let (host, port) = HostPort.split(address) else {
            throw NodeError("the address '\(address)' is not host:port")
        }
        return (host.isEmpty ? "0.0.0.0" : host, port)
    }
}

/// A failure to start or run the node, with a message for the operator.
public struct NodeError: Error, CustomStringConvertible, Sendable {
    public var description: String

    public init(_ description: String) { self.description = description }
}

/// The root key pair of a node.
public struct RootCredentials: Sendable {
    public var accessKey: String
    public var secretKey: String
    /// True when this start generated the pair (it is then printed once).
    public var generated: Bool

    static let fileName = "root-credentials"

    /// The pair kept in `dataDirectory/root-credentials`, or nil when there is none.
    /// - Throws: ``NodeError`` when the file is damaged.
    public static func load(dataDirectory: String) throws -> RootCredentials? {
        let path = dataDirectory + "/" + fileName
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        var values: [String: String] = [:]
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
            if let equals = line.firstIndex(of: "=") {
                values[String(line[..<equals])] = String(line[line.index(after: equals)...])
            }
        }
        guard let access = values["access_key"], let secret = values["secret_key"] else {
            throw NodeError("\(path) is damaged: expected access_key= and secret_key= lines")
        }
        return RootCredentials(accessKey: access, secretKey: secret, generated: false)
    }

    /// The configured pair, or the one kept in the data directory, or a new one saved there (0600).
    static func resolve(_ configuration: NodeConfiguration) throws -> RootCredentials {
        if let access = configuration.rootAccessKey, let secret = configuration.rootSecretKey {
            guard !access.isEmpty, secret.count >= 8 else {
                throw NodeError("CLOUD_ROOT_ACCESS_KEY must not be empty and CLOUD_ROOT_SECRET_KEY must have at least 8 characters")
            }
            return RootCredentials(accessKey: access, secretKey: secret, generated: false)
        }
        if configuration.rootAccessKey != nil || configuration.rootSecretKey != nil {
            throw NodeError("set both CLOUD_ROOT_ACCESS_KEY and CLOUD_ROOT_SECRET_KEY, or neither")
        }
        if let saved = try load(dataDirectory: configuration.dataDirectory) { return saved }
        let path = configuration.dataDirectory + "/" + fileName
        let accessAlphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
        let secretAlphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
        var generator = SystemRandomNumberGenerator()
        let access = "CK" + String((0..<18).map { _ in accessAlphabet.randomElement(using: &generator)! })
        let secret = String((0..<40).map { _ in secretAlphabet.randomElement(using: &generator)! })
        let text = "access_key=\(access)\nsecret_key=\(secret)\n"
        let tmp = path + ".tmp"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw NodeError("cannot write \(tmp): \(String(cString: strerror(errno)))") }
        let written = text.withCString { write(fd, $0, strlen($0)) }
        fsync(fd)
        close(fd)
        guard written == text.utf8.count, rename(tmp, path) == 0 else {
            throw NodeError("cannot write \(path): \(String(cString: strerror(errno)))")
        }
        return RootCredentials(accessKey: access, secretKey: secret, generated: true)
    }
}

/// One storage node: the engine, the S3 listener and the background services.
public struct StorageNode: Sendable {
    public let configuration: NodeConfiguration
    public let engine: StorageEngine
    public let credentials: RootCredentials
    let metrics = NodeMetrics()
    let logger: Logger
    /// The clustered side, when the node is part of a cluster.
    public let cluster: ClusterNode?

    /// Opens the data directory and resolves the credentials.
    public init(configuration: NodeConfiguration, logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger
        var engineConfiguration = StorageEngine.Configuration(dataDirectory: configuration.dataDirectory)
        engineConfiguration.compression = configuration.compression
        engineConfiguration.syncWrites = configuration.syncWrites
        engineConfiguration.garbageGracePeriod = configuration.garbageGracePeriod
        do {
            self.engine = try StorageEngine(configuration: engineConfiguration)
        } catch {
            throw NodeError("cannot open the data directory \(configuration.dataDirectory): \(error)")
        }
        self.credentials = try RootCredentials.resolve(configuration)
        if let settings = configuration.cluster {
            self.cluster = try ClusterNode(
                settings: settings, s3Address: configuration.s3Address, dataDirectory: configuration.dataDirectory,
                engine: self.engine, logger: logger)
        } else {
            self.cluster = nil
        }
    }

    /// The long-running services of the node, for one ServiceGroup.
    public func services() throws -> [any Service] {
        let (host, port) = try NodeConfiguration.split(self.configuration.s3Address)
        var s3Configuration = S3Configuration()
        s3Configuration.region = self.configuration.region
        s3Configuration.domain = self.configuration.domain
        let store: any ObjectStore = self.cluster?.store ?? self.engine
        // Tenants' S3 keys: replicated records in a cluster (so a key works on every node), the local
        // engine on a node that runs alone.
        let keys: any AccessKeyStore = self.cluster?.store ?? self.engine
        let handler = S3Handler(
            engine: store,
            credentials: TenantCredentialStore(
                rootAccessKey: self.credentials.accessKey, rootSecretKey: self.credentials.secretKey, keys: keys),
            configuration: s3Configuration,
            logger: self.logger,
            admin: StorageAdmin(
                rootAccessKey: self.credentials.accessKey, cluster: self.cluster,
                tenants: TenantAdmin(store: store, keys: keys, now: { Date() }))
        )
        let engine = self.engine
        let cluster = self.cluster
        let routes = HTTPServer.Routes(
            handler: handler,
            metrics: self.metrics,
            ready: {
                do {
                    _ = try await engine.setting("ready-check")
                } catch {
                    return (false, "metadata store unavailable: \(error)")
                }
                return cluster?.readiness ?? (true, "ready")
            },
            stored: { engine.stored },
            extraMetrics: { cluster?.prometheusMetrics() ?? "" }
        )
        guard let cluster else {
            return [
                HTTPServer(host: host, port: port, routes: routes, logger: self.logger),
                GarbageCollector(
                    engine: self.engine,
                    interval: self.configuration.garbageCollectionInterval,
                    staleUploadAge: self.configuration.staleUploadAge,
                    logger: self.logger
                ),
            ]
        }
        // Clustered: blocks are referenced from other nodes' records, so the local collector (which
        // counts only local references) must not run; cluster-wide collection comes with durability.
        return cluster.services() + [HTTPServer(host: host, port: port, routes: routes, logger: self.logger)]
    }

    /// Runs the node until SIGTERM or SIGINT, then shuts down gracefully.
    /// - Parameter extraServices: More services for the same group (`cloud dev` adds the control plane).
    public func run(extraServices: [any Service] = []) async throws {
        try await self.engine.start()
        var configuration = ServiceGroupConfiguration(
            services: (try self.services() + extraServices).map { ServiceGroupConfiguration.ServiceConfiguration(service: $0) },
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: self.logger
        )
        // In-flight requests get this long to finish after SIGTERM; then they are cancelled.
        configuration.maximumGracefulShutdownDuration = .seconds(20)
        configuration.maximumCancellationDuration = .seconds(5)
        let group = ServiceGroup(configuration: configuration)
        do {
            try await group.run()
        } catch {
            await self.engine.shutdown()
            throw error
        }
        await self.engine.shutdown()
    }
}

/// Periodically deletes unreferenced blocks (after their grace period) and aborts stale uploads.
struct GarbageCollector: Service {
    let engine: StorageEngine
    let interval: Duration
    let staleUploadAge: Duration
    let logger: Logger

    func run() async throws {
        // A first pass soon after start removes what a crash left behind.
        var delay: Duration = .seconds(30)
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            let wait = delay
            do {
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: wait) }
            } catch {
                return
            }
            if Task.isShuttingDownGracefully { return }
            delay = self.interval
            do {
                let aborted = try await self.engine.abortStaleUploads(olderThan: self.staleUploadAge)
                let deleted = try await self.engine.collectGarbage()
                if aborted > 0 || deleted > 0 {
                    self.logger.info("garbage collected", metadata: ["blocks-deleted": "\(deleted)", "uploads-aborted": "\(aborted)"])
                }
            } catch {
                self.logger.warning("garbage collection failed", metadata: ["error": "\(error)"])
            }
        }
    }
}
