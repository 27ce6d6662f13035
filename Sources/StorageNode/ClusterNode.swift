#if canImport(Glibc)
import Glibc
#endif
public import Cluster
import ClusterRPC
import Foundation
public import Gossip
import Hashing
import Logging
import Membership
import NIOCore
public import Replication
import Ring
import S3API
import ServiceLifecycle
import StorageEngine
import Synchronization

/// How a node takes part in a cluster (`cloud node --rpc-address … --gossip-address …`).
public struct ClusterSettings: Sendable {
    /// This node's stable id; nil: the one kept in the data directory, or a new one saved there.
    public var nodeID: String?
    /// Node-to-node calls (replication, block transfer), `host:port`; also what other nodes dial.
    public var rpcAddress: String = "127.0.0.1:9001"
    /// SWIM gossip (UDP) and push-pull (TCP) on the same port, `host:port`.
    public var gossipAddress: String = "127.0.0.1:9002"
    /// Gossip addresses of members to join through; empty for the first node.
    public var seeds: [String] = []
    /// Failure domain (rack, room, site); replicas of a partition go to distinct zones where possible.
    public var zone: String = "default"
    /// Bytes this node offers; partitions are shared in proportion.
    public var capacity: UInt64 = 1 << 40
    /// N, W and R.
    public var policy: Replication.QuorumPolicy = try! Replication.QuorumPolicy()
    /// A node that sees an alive member missing from the layout adds it (the lowest-id layout member acts).
    public var autoLayout = false
    /// The cluster secret: authenticates gossip packets and node-to-node calls.
    public var secret: [UInt8] = []
    /// Gossip timing.
    public var gossip: Gossip.Configuration = .lan
    /// 2^power partitions, fixed when the first layout is made.
    public var partitionPower = 8
    /// Time between anti-entropy and rebalancing rounds (a round also starts soon after a member
    /// comes back or the layout changes); zero turns repair off.
    public var repairInterval: Duration = .seconds(60)
    /// Bytes per second repair and rebalancing may move; 0: unlimited.
    public var repairBytesPerSecond = 64 << 20
    /// Scrub reads block files at most this fast, in bytes per second (`--scrub-rate-mib`).
    public var scrubBytesPerSecond = Scrub.Configuration().bytesPerSecond
    /// From the end of one scrub pass to the start of the next; nil disables scrub (`--scrub-interval`).
    public var scrubInterval: Duration? = Scrub.Configuration().interval
    /// Below this much free space the data directory counts as full and the node takes no writes
    /// (`--min-free-mib`). Default 256 MiB: room for SQLite's journal and the writes in flight.
    public var minFreeBytes: UInt64 = 256 << 20
    /// How often the data directory's free space and writability are checked.
    public var diskCheckInterval: Duration = .seconds(5)
    /// Cluster-wide garbage collection: seconds between passes (zero disables it), how old garbage
    /// must be before it goes, and when an unfinished multipart upload is aborted (see
    /// `Cluster.GarbageCollector`).
    public var gcInterval: Duration = .seconds(600)
    public var gcGrace: Duration = .seconds(86_400)
    public var uploadExpiry: Duration = .seconds(7 * 86_400)

    public init() {}

    /// Scrub's settings.
    var scrub: Scrub.Configuration {
        var configuration = Scrub.Configuration()
        configuration.bytesPerSecond = self.scrubBytesPerSecond
        configuration.interval = self.scrubInterval
        return configuration
    }
}

/// Sends cluster calls to the node's peers over RPC, and calls to itself straight to its handler.
struct NodeTransport: ClusterTransport {
    let view: ClusterView
    let client: RPCClient
    let local: ClusterRequestHandler

    func call(_ node: String, method: String, body: ByteBuffer, bodyDigest: [UInt8]?, timeout: Duration) async throws -> ByteBuffer {
        if node == self.view.localID {
            return try await self.local.handle(method: method, body: body, bodyDigest: bodyDigest)
        }
        guard let address = self.view.address(of: node) else {
            throw ClusterError("no address known for node \(node)")
        }
        return try await self.client.call(address, method: method, body: body, bodyDigest: bodyDigest, timeout: timeout)
    }
}

/// The clustered side of a storage node: membership, the layout, the RPC listener and the replicated store.
public final class ClusterNode: Sendable {
    static let layoutKey = "layout"
    static let layoutSetting = "cluster.layout"
    /// Gossip state key prefix of each node's repair progress (`repair/<node id>`).
    static let repairKeyPrefix = "repair/"

    let settings: ClusterSettings
    public let nodeID: String
    public let view: ClusterView
    public let store: ClusterStore
    let engine: StorageEngine
    let membership: MembershipService
    let rpcServer: RPCServer
    let rpcClient: RPCClient
    let logger: Logger
    let hints: HintReplayer
    /// Anti-entropy and rebalancing.
    public let antiEntropy: AntiEntropy
    /// Set when a round should start before the interval ends (a member came back, a new layout).
    let repairRequested = Mutex(false)
    /// The data directory's disk state (full, read-only) and what was announced of it.
    let disk: DiskMonitor
    let scrubber: Scrubber
    /// Cluster-wide garbage collection (``GCService`` runs it).
    let collector: Cluster.GarbageCollector
    /// Hints held at the last replay pass, for `/metrics`.
    let pendingHints = Mutex(0)
    /// The last state seen of each member, to log changes once.
    private let memberStates = Mutex<[String: Gossip.MemberState]>([:])
    /// Membership events, registered before gossip starts so none is missed.
    let events: AsyncStream<MembershipEvent>
    private let eventSink: AsyncStream<MembershipEvent>.Continuation

    init(settings: ClusterSettings, s3Address: String, dataDirectory: String, engine: StorageEngine, logger: Logger) throws {
        guard !settings.secret.isEmpty else {
            throw NodeError("a clustered node needs the cluster secret: set CLOUD_CLUSTER_SECRET (the same on every node)")
        }
        _ = try NodeConfiguration.split(settings.rpcAddress)
        _ = try NodeConfiguration.split(settings.gossipAddress)
        self.settings = settings
        self.engine = engine
        self.logger = logger
        let nodeID = try settings.nodeID ?? Self.resolveNodeID(dataDirectory: dataDirectory)
        self.nodeID = nodeID
        let view = ClusterView(localID: nodeID)
        self.view = view
        self.rpcClient = RPCClient(secret: settings.secret, maxConnectionsPerPeer: 32, logger: logger)
        let disk = DiskMonitor(directory: dataDirectory, minFreeBytes: settings.minFreeBytes, node: nodeID)
        self.disk = disk
        view.setDiskState(nodeID, disk.check().state)
        let local = ClusterRequestHandler(
            engine: engine, node: nodeID, diskState: { view.diskState(of: nodeID) }, layoutVersion: { view.table?.version ?? 0 })
        let transport = NodeTransport(view: view, client: self.rpcClient, local: local)
        self.hints = HintReplayer(
            engine: engine, view: view, transport: transport, expiry: settings.gcInterval > .zero ? settings.gcGrace : nil)
        var repair = AntiEntropy.Settings()
        repair.bytesPerSecond = settings.repairBytesPerSecond
        self.antiEntropy = AntiEntropy(engine: engine, view: view, transport: transport, settings: repair)
        self.store = ClusterStore(engine: engine, replicator: Replicator(view: view, transport: transport, policy: settings.policy))
        self.scrubber = Scrubber(store: self.store)
        var collection = Cluster.GarbageCollector.Configuration()
        collection.interval = settings.gcInterval
        collection.grace = settings.gcGrace
        collection.uploadExpiry = settings.uploadExpiry
        self.collector = Cluster.GarbageCollector(store: self.store, configuration: collection)
        self.rpcServer = RPCServer(
            configuration: RPCServerConfiguration(bindAddress: settings.rpcAddress, secret: settings.secret),
            digestHandler: { method, body, digest in
                do {
                    return try await local.handle(method: method, body: body, bodyDigest: digest)
                } catch let refused as WriteRefused {
                    throw RPCRemoteError(code: refused.code, message: refused.description)
                }
            },
            logger: logger
        )
        let metadata = Gossip.Metadata(
            gossipAddress: settings.gossipAddress, rpcAddress: settings.rpcAddress, s3Address: s3Address,
            zone: settings.zone, capacity: settings.capacity)
        let uid = UInt64(Date().timeIntervalSince1970 * 1_000_000)
        self.membership = MembershipService(
            configuration: MembershipConfiguration(
                nodeID: nodeID, uid: uid, bindAddress: settings.gossipAddress, metadata: metadata, seeds: settings.seeds,
                secret: settings.secret, gossip: settings.gossip),
            logger: logger
        )
        view.update(nodeID, ClusterView.Peer(rpcAddress: settings.rpcAddress, reachable: true))
        (self.events, self.eventSink) = AsyncStream<MembershipEvent>.makeStream()
        let sink = self.eventSink
        self.membership.observe { sink.yield($0) }
    }

    /// Stops delivering membership events (at shutdown).
    func finishEvents() { self.eventSink.finish() }

    /// The node id kept in `DATA_DIR/node-id`, or a new random one saved there.
    static func resolveNodeID(dataDirectory: String) throws -> String {
        let path = dataDirectory + "/node-id"
        if let data = FileManager.default.contents(atPath: path) {
            let id = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            guard !id.isEmpty, id.utf8.count <= 64 else { throw NodeError("\(path) is damaged: expected a node id") }
            return id
        }
        var generator = SystemRandomNumberGenerator()
        let id = "n" + Hex.encode((0..<6).map { _ in UInt8.random(in: 0...255, using: &generator) })
        do {
            try Data((id + "\n").utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw NodeError("cannot write \(path): \(error)")
        }
        return id
    }

    /// The services to run, in start order (they stop in reverse: gossip leaves first, the RPC
    /// listener stops last so that in-flight replication finishes).
    func services() -> [any Service] {
        [
            self.rpcServer, LayoutService(node: self), HintService(node: self), RepairService(node: self), GCService(node: self),
            DiskService(node: self), ScrubService(node: self), self.membership,
        ]
    }

    // MARK: Layout

    /// Loads the layout this node saved, before serving.
    func loadLayout() async throws {
        guard let text = try await self.engine.setting(Self.layoutSetting), let bytes = Hex.decode(text) else { return }
        do {
            self.view.install(try Ring.Layout(decoding: bytes))
        } catch {
            self.logger.warning("the saved layout is unreadable; waiting for one from the cluster", metadata: ["error": "\(error)"])
        }
    }

    /// Takes a layout heard from the cluster or made here: merges it with the current one, installs
    /// and saves the winner, and gossips it when it is new to us.
    func adopt(_ layout: Ring.Layout, publish: Bool) async {
        let merged = self.view.layout.map { $0.merged(with: layout) } ?? layout
        let installed = self.view.install(merged)
        if installed {
            self.requestRepair()
            self.logger.notice("layout installed", metadata: ["version": "\(merged.version)", "nodes": "\(merged.nodes.count)"])
            do {
                try await self.engine.setSetting(Self.layoutSetting, Hex.encode(merged.encoded()))
            } catch {
                self.logger.error("cannot save the layout", metadata: ["error": "\(error)"])
            }
        }
        if installed || publish {
            await self.membership.publishState(key: Self.layoutKey, version: merged.version, bytes: merged.encoded())
        }
    }

    /// Applies operator changes to the current layout (or a new one) and spreads the result.
    func change(_ changes: [Ring.Change]) async throws -> (old: Ring.Layout?, new: Ring.Layout) {
        let current = self.view.layout
        let base = try current ?? Ring.Layout(replicationFactor: self.settings.policy.replicas, partitionPower: self.settings.partitionPower)
        let next = try base.applying(changes)
        await self.adopt(next, publish: true)
        return (current, next)
    }

    /// Reacts to membership: peers' addresses and reachability, and layouts from other nodes.
    func handle(_ event: MembershipEvent) async {
        switch event {
        case .memberChanged(let member):
            guard member.id.rawValue != self.nodeID else { return }
            let reachable = member.state == .alive || member.state == .suspect
            let id = member.id.rawValue
            let previous = self.memberStates.withLock { states in
                defer { states[id] = member.state }
                return states[id]
            }
            if reachable && previous != .alive && previous != .suspect { self.requestRepair() }
            if previous != member.state {
                self.logger.notice(
                    "member \(member.state)",
                    metadata: ["member": "\(id)", "incarnation": "\(member.incarnation)", "rpc": "\(member.rpcAddress)"])
            }
            self.view.update(id, ClusterView.Peer(rpcAddress: member.rpcAddress, reachable: reachable))
        case .stateUpdated(let entry):
            if let node = DiskStateAnnouncer.node(fromKey: entry.key) {
                await self.heardDiskState(of: node, entry)
                return
            }
            guard entry.key == Self.layoutKey else { return }
            do {
                await self.adopt(try Ring.Layout(decoding: entry.bytes), publish: false)
            } catch {
                self.logger.warning("ignoring an unreadable layout from the cluster", metadata: ["error": "\(error)"])
            }
        }
    }

    /// With `--auto-layout`: alive members missing from the layout are added by the lowest-id
    /// alive member of the layout (before any layout exists, by a node started without `--join`).
    func reconcileLayout() async {
        guard self.settings.autoLayout else { return }
        let alive = self.membership.members.filter { $0.state == .alive }
        let layout = self.view.layout
        let inLayout = Set(layout?.nodes.map(\.id.rawValue) ?? [])
        let missing = alive.filter { !inLayout.contains($0.id.rawValue) }
        guard !missing.isEmpty else { return }
        // A node that joins through seeds takes the cluster's layout; only a node started without
        // seeds makes the first one (two competing first layouts would place data differently).
        if layout == nil && !self.settings.seeds.isEmpty { return }
        let leaders = layout == nil ? [self.nodeID] : alive.map(\.id.rawValue).filter { inLayout.contains($0) }
        guard leaders.min() == self.nodeID else { return }
        let changes = missing.sorted { $0.id < $1.id }.map {
            Ring.Change.add(Ring.Node(id: Ring.NodeID($0.id.rawValue), zone: $0.zone, capacity: $0.capacity))
        }
        do {
            let (_, next) = try await self.change(changes)
            self.logger.notice("auto-layout added nodes", metadata: ["nodes": "\(missing.map(\.id.rawValue))", "version": "\(next.version)"])
        } catch {
            self.logger.warning("auto-layout could not add nodes", metadata: ["error": "\(error)"])
        }
    }

    /// The Prometheus text of the cluster layer (gossip).
    func prometheusMetrics() -> String {
        var text = self.membership.prometheusMetrics()
        let layout = self.view.layout
        text += "# HELP cloud_layout_version The version of the layout this node uses.\n# TYPE cloud_layout_version gauge\n"
        text += "cloud_layout_version \(layout?.version ?? 0)\n"
        text += "# HELP cloud_hints_pending Writes held for unreachable replicas (hinted handoff).\n# TYPE cloud_hints_pending gauge\n"
        text += "cloud_hints_pending \(self.pendingHints.withLock { $0 })\n"
        let progress = self.antiEntropy.progress
        let gauges: [(String, String, Int)] = [
            ("cloud_partitions_out_of_sync", "Partitions whose replicas differed from this node's in the last repair round.", progress.partitionsOutOfSync),
            ("cloud_rebalance_partitions_pending", "Partitions this node holds but no longer owns, still to hand over.", progress.partitionsToMove),
            ("cloud_rebalance_bytes_pending", "Bytes of the partitions still to hand over.", progress.bytesToMove),
        ]
        for (name, help, value) in gauges {
            text += "# HELP \(name) \(help)\n# TYPE \(name) gauge\n\(name) \(value)\n"
        }
        let counters: [(String, String, Int)] = [
            ("cloud_repair_rounds_total", "Anti-entropy rounds finished.", progress.rounds),
            ("cloud_repair_records_total", "Records stored here or sent to repair a replica.", progress.recordsRepaired),
            ("cloud_repair_blocks_total", "Blocks stored here or sent to repair a replica.", progress.blocksRepaired),
            ("cloud_repair_bytes_total", "Bytes of the records and blocks repaired.", progress.bytesRepaired),
            ("cloud_rebalance_bytes_sent_total", "Bytes sent to new owners of partitions this node no longer owns.", progress.bytesHandedOver),
            ("cloud_rebalance_partitions_total", "Partitions handed over to their new owners and dropped here.", progress.partitionsHandedOver),
        ]
        for (name, help, value) in counters {
            text += "# HELP \(name) \(help)\n# TYPE \(name) counter\n\(name) \(value)\n"
        }
        text += self.disk.prometheusMetrics(state: self.view.diskState(of: self.nodeID))
        text += self.scrubber.prometheusMetrics()
        text += self.collector.prometheusMetrics()
        return text
    }

    /// Asks for a repair round soon (a member came back, or the layout changed).
    func requestRepair() { self.repairRequested.withLock { $0 = true } }

    /// Another member's last published repair progress: partitions and bytes still to move, and
    /// partitions out of sync.
    func repairProgress(of id: String) -> (toMove: Int, bytesToMove: Int, outOfSync: Int)? {
        let text: String
        if id == self.nodeID {
            let progress = self.antiEntropy.progress
            return (progress.partitionsToMove, progress.bytesToMove, progress.partitionsOutOfSync)
        }
        guard let entry = self.membership.state(Self.repairKeyPrefix + id) else { return nil }
        text = String(decoding: entry.bytes, as: UTF8.self)
        let fields = text.split(separator: " ").compactMap { Int($0) }
        guard fields.count == 3 else { return nil }
        return (fields[0], fields[1], fields[2])
    }

    /// Ready when a layout is known.
    var readiness: (Bool, String) {
        guard let layout = self.view.layout else { return (false, "no layout yet") }
        return (true, "ready (layout version \(layout.version), \(layout.nodes.count) nodes)")
    }
}

/// Feeds membership events into the node and runs the auto-layout loop.
struct LayoutService: Service {
    let node: ClusterNode

    func run() async throws {
        let node = self.node
        let events = node.events
        try await node.loadLayout()
        await withGracefulShutdownHandler {
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    for await event in events { await node.handle(event) }
                }
                group.addTask {
                    // Publish the saved layout once gossip runs, then keep the layout complete.
                    _ = try? await node.membership.waitUntilBound()
                    if let layout = node.view.layout { await node.adopt(layout, publish: true) }
                    while !Task.isCancelled {
                        await node.reconcileLayout()
                        try? await Task.sleep(for: .seconds(1))
                    }
                }
                await group.next()
                group.cancelAll()
            }
        } onGracefulShutdown: {
            node.finishEvents()
        }
    }
}

/// Replays hinted writes to their owners every two seconds.
struct HintService: Service {
    let node: ClusterNode

    func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(2)) }
            } catch {
                return
            }
            do {
                let handed = try await self.node.hints.replay()
                let pending = try await self.node.engine.hintCount()
                self.node.pendingHints.withLock { $0 = pending }
                if handed > 0 {
                    self.node.logger.notice("hinted writes handed back", metadata: ["count": "\(handed)", "pending": "\(pending)"])
                }
            } catch {
                self.node.logger.warning("hint replay failed", metadata: ["error": "\(error)"])
            }
        }
    }
}

/// Runs anti-entropy and rebalancing rounds every `repairInterval`, and soon after a member comes
/// back or the layout changes; publishes this node's progress through gossip for `cloud storage status`.
struct RepairService: Service {
    let node: ClusterNode

    func run() async throws {
        let interval = self.node.settings.repairInterval
        guard interval > .zero else { return }
        let clock = ContinuousClock()
        var last = clock.now
        var published = ""
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: .milliseconds(250)) }
            } catch {
                return
            }
            let requested = self.node.repairRequested.withLock { $0 }
            let elapsed = clock.now - last
            guard elapsed >= interval || (requested && elapsed >= .seconds(1)) else { continue }
            self.node.repairRequested.withLock { $0 = false }
            last = clock.now
            let before = self.node.antiEntropy.progress
            do {
                try await self.node.antiEntropy.round()
            } catch {
                self.node.logger.warning("repair round failed", metadata: ["error": "\(error)"])
            }
            let after = self.node.antiEntropy.progress
            if after.recordsRepaired != before.recordsRepaired || after.blocksRepaired != before.blocksRepaired
                || after.partitionsHandedOver != before.partitionsHandedOver
            {
                self.node.logger.notice(
                    "repair round",
                    metadata: [
                        "records": "\(after.recordsRepaired - before.recordsRepaired)",
                        "blocks": "\(after.blocksRepaired - before.blocksRepaired)",
                        "handedOver": "\(after.partitionsHandedOver - before.partitionsHandedOver)",
                        "toMove": "\(after.partitionsToMove)",
                    ])
            }
            let text = "\(after.partitionsToMove) \(after.bytesToMove) \(after.partitionsOutOfSync)"
            if text != published {
                published = text
                await self.node.membership.publishState(
                    key: ClusterNode.repairKeyPrefix + self.node.nodeID, version: UInt64(Date().timeIntervalSince1970 * 1000),
                    bytes: Array(text.utf8))
            }
        }
    }
}
