import ArgumentParser
import Gossip
import Replication
import StorageNode

/// The flags that make a node part of a cluster.
struct ClusterOptions: ParsableArguments {
    @Option(help: "Node-to-node address (replication, block transfer), host:port.")
    var rpcAddress: String?

    @Option(help: "Gossip address (UDP, and TCP for state sync on the same port), host:port.")
    var gossipAddress: String?

    @Option(help: "Gossip address of any member to join through (repeatable).")
    var join: [String] = []

    @Option(help: "This node's id (default: the one kept in the data directory, or a new one).")
    var nodeID: String?

    @Option(help: "Failure domain of this node (rack, room, site).")
    var zone: String = "default"

    @Option(help: "Capacity this node offers, e.g. 500G, 2T (partitions are shared in proportion).")
    var capacity: String = "1T"

    @Option(help: "Replicas of every object (N).")
    var replication: Int = 3

    @Option(help: "Replicas that must acknowledge a write (W).")
    var writeQuorum: Int = 2

    @Option(help: "Replicas that must answer a read (R); 1 is the degraded mode for disaster recovery.")
    var readQuorum: Int = 2

    @Flag(help: "Add members that join to the layout automatically (test and dev clusters).")
    var autoLayout = false

    @Option(help: "Gossip timing: lan (default), wan, or local (fast, for one host).")
    var gossipProfile: String = "lan"

    @Option(help: "Seconds between anti-entropy and rebalancing rounds (0: off); a round also starts soon after a member returns or the layout changes.")
    var repairInterval: Double = 60

    @Option(help: "MiB per second that repair and rebalancing may move (0: unlimited).")
    var repairRateMib: Int = 64
    @Option(help: "Scrub reads block files at most this fast, in MiB per second.")
    var scrubRateMib: Int = 32

    @Option(help: "Seconds from the end of one scrub pass to the start of the next (604800: 7 days; 0 disables scrub).")
    var scrubInterval: Double = 7 * 86_400

    @Option(help: "Free space (MiB) below which this node's disk counts as full: it then takes no writes.")
    var minFreeMib: Int = 256

    @Option(help: "Seconds between garbage collection passes (unreferenced blocks, tombstones, stale uploads); 0 disables.")
    var gcInterval: Int = 600

    @Option(help: "Seconds a tombstone, an unreferenced block or a hint is kept before garbage collection may take it.")
    var gcGrace: Int = 86_400

    @Option(help: "Seconds after which an unfinished multipart upload is aborted.")
    var uploadExpiry: Int = 7 * 86_400

    var isClustered: Bool { self.rpcAddress != nil || self.gossipAddress != nil || !self.join.isEmpty }

    func makeSettings(secret: String?) throws -> ClusterSettings? {
        guard self.isClustered else { return nil }
        var settings = ClusterSettings()
        guard let secret, secret.utf8.count >= 16 else {
            throw ValidationError("a clustered node needs CLOUD_CLUSTER_SECRET (at least 16 characters, the same on every node)")
        }
        settings.secret = Array(secret.utf8)
        guard let rpcAddress = self.rpcAddress, let gossipAddress = self.gossipAddress else {
            throw ValidationError("a clustered node needs both --rpc-address and --gossip-address")
        }
        settings.rpcAddress = rpcAddress
        settings.gossipAddress = gossipAddress
        settings.seeds = self.join
        settings.nodeID = self.nodeID
        settings.zone = self.zone
        guard let capacity = Self.parseSize(self.capacity) else {
            throw ValidationError("--capacity must be a size such as 500G or 2T")
        }
        settings.capacity = capacity
        do {
            settings.policy = try Replication.QuorumPolicy(replicas: self.replication, writeQuorum: self.writeQuorum, readQuorum: self.readQuorum)
        } catch {
            throw ValidationError(error.description)
        }
        settings.autoLayout = self.autoLayout
        guard self.repairInterval >= 0, self.repairRateMib >= 0 else {
            throw ValidationError("--repair-interval and --repair-rate-mib must not be negative")
        }
        settings.repairInterval = .milliseconds(Int64(self.repairInterval * 1000))
        settings.repairBytesPerSecond = self.repairRateMib << 20
        guard self.gcInterval >= 0, self.gcGrace >= 0, self.uploadExpiry > 0 else {
            throw ValidationError("--gc-interval and --gc-grace must be 0 or more seconds, --upload-expiry more than 0")
        }
        settings.gcInterval = .seconds(self.gcInterval)
        settings.gcGrace = .seconds(self.gcGrace)
        settings.uploadExpiry = .seconds(self.uploadExpiry)
        switch self.gossipProfile {
        case "lan": settings.gossip = .lan
        case "wan": settings.gossip = .wan
        case "local": settings.gossip = .localTest
        default: throw ValidationError("--gossip-profile must be lan, wan or local")
        }
        guard (1...1 << 20).contains(self.scrubRateMib) else { throw ValidationError("--scrub-rate-mib must be 1 to 1048576") }
        settings.scrubBytesPerSecond = self.scrubRateMib << 20
        guard self.scrubInterval >= 0, self.scrubInterval < 1e12 else {
            throw ValidationError("--scrub-interval must be a number of seconds (0 disables scrub)")
        }
        settings.scrubInterval = self.scrubInterval == 0 ? nil : .milliseconds(Int64(self.scrubInterval * 1000))
        guard self.minFreeMib >= 0, self.minFreeMib <= 1 << 40 else { throw ValidationError("--min-free-mib must be 0 to 2^40") }
        settings.minFreeBytes = UInt64(self.minFreeMib) << 20
        return settings
    }

    /// `500G`, `2T`, `1.5T`, `1048576` (bytes); binary units.
    static func parseSize(_ text: String) -> UInt64? {
        let units: [Character: Double] = ["K": 0x1p10, "M": 0x1p20, "G": 0x1p30, "T": 0x1p40, "P": 0x1p50]
        var body = text.uppercased()
        if body.hasSuffix("B") { body.removeLast() }
        if body.hasSuffix("I") { body.removeLast() }
        var multiplier = 1.0
        if let last = body.last, let unit = units[last] {
            multiplier = unit
            body.removeLast()
        }
        guard let value = Double(body), value > 0, value * multiplier < 0x1p63 else { return nil }
        return UInt64(value * multiplier)
    }
}
