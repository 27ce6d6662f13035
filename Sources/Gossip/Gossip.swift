/// SWIM failure detection and dissemination with the Lifeguard refinements, as a pure state machine.
///
/// Terms:
/// - A **member** is one process of the cluster: a stable ``Gossip/NodeID`` plus a per-process `uid`, so a
///   restarted process is a new member (its old entry is superseded, never "refuted").
/// - An **incarnation** (``Gossip/Incarnation``) is a counter only the member itself raises, to refute a
///   suspicion about it or to announce new metadata (SWIM §4.2).
/// - A **protocol period** is one probe: a direct `ping`, after the probe timeout `pingRequest`s through
///   `k` other members, and at the end of the period a suspicion if no `ack` came back (SWIM §4.1, §4.3).
/// - **Updates** (alive / suspect / dead / left / state) are piggybacked on every packet, each at most
///   `retransmitMultiplier · ⌈log10(n+1)⌉` times (SWIM §4.1, memberlist `retransmitLimit`), and also sent
///   on a short gossip interval to a few random members (memberlist's gossip fan-out).
/// - **Lifeguard** (arXiv 1707.00788): the local health multiplier stretches our own timeouts when we seem
///   to be the slow one (IV.A), the suspicion timeout starts long and shrinks with independent
///   confirmations (IV.B), and a suspected member hears about it in the ping we send it (buddy system, IV.C).
/// - **Cluster state** (the layout) is a set of `(key, version, bytes)` entries merged as a CRDT: the higher
///   version wins, equal versions are broken by comparing the bytes. Packets carry only a digest of large
///   entries; the full bytes travel over the shell's TCP push-pull.
///
/// How this differs from the paper: dead members are kept as tombstones for a while (so stale alive
/// messages cannot resurrect them), a dead report learned by push-pull is downgraded to a suspicion
/// (memberlist), and indirect-probe relays answer with a `nack` when the target stayed silent (Lifeguard).
///
/// The module does no I/O: the shell feeds events into ``Gossip/Instance`` and executes the returned
/// ``Gossip/Action``s. It never reads a clock or a random source of its own.
public enum Gossip {}

extension Gossip {
    /// An incarnation number (SWIM §4.2): raised only by the member it describes.
    public typealias Incarnation = UInt64

    /// A sequence number that matches an `ack` or `nack` to the probe that asked for it.
    public typealias SequenceNumber = UInt64

    /// The stable identity of a node (its configured name). At most 255 bytes of UTF-8.
    public struct NodeID: Hashable, Comparable, Sendable, CustomStringConvertible,
        ExpressibleByStringLiteral
    {
        /// The id as configured.
        public var rawValue: String

        /// Creates an id. - Parameter rawValue: the node's name; MUST be at most 255 bytes of UTF-8.
        public init(_ rawValue: String) {
            precondition(rawValue.utf8.count <= 255, "a NodeID MUST be at most 255 bytes")
            self.rawValue = rawValue
        }

        /// Creates an id from a literal.
        public init(stringLiteral value: String) { self.init(value) }

        public var description: String { rawValue }

        public static func < (lhs: NodeID, rhs: NodeID) -> Bool { lhs.rawValue < rhs.rawValue }
    }

    /// One process of a node: the stable id plus the per-process `uid`.
    ///
    /// The shell SHOULD choose a `uid` that grows across restarts of one node (for example its start time in
    /// microseconds); when two processes claim one id, the higher `uid` wins (see ``Gossip/Instance``).
    public struct NodeRef: Hashable, Sendable, CustomStringConvertible {
        /// The node's stable id.
        public var id: NodeID
        /// The process's unique id.
        public var uid: UInt64

        /// Creates a reference.
        public init(id: NodeID, uid: UInt64) {
            self.id = id
            self.uid = uid
        }

        public var description: String { "\(id)#\(uid)" }
    }

    /// A point in time on the shell's monotonic clock, in nanoseconds since an epoch the shell picks.
    public struct Time: Hashable, Comparable, Sendable, CustomStringConvertible {
        /// Nanoseconds since the shell's epoch.
        public var nanoseconds: Int64

        /// Creates a time. - Parameter nanoseconds: nanoseconds since the shell's epoch.
        public init(nanoseconds: Int64) { self.nanoseconds = nanoseconds }

        /// The epoch.
        public static let zero = Time(nanoseconds: 0)

        public static func < (lhs: Time, rhs: Time) -> Bool { lhs.nanoseconds < rhs.nanoseconds }

        /// `lhs` moved forward by `rhs`.
        public static func + (lhs: Time, rhs: Duration) -> Time {
            Time(nanoseconds: lhs.nanoseconds &+ rhs.gossipNanoseconds)
        }

        /// The duration from `rhs` to `lhs`.
        public static func - (lhs: Time, rhs: Time) -> Duration {
            .nanoseconds(lhs.nanoseconds &- rhs.nanoseconds)
        }

        public var description: String { "\(Double(nanoseconds) / 1e9)s" }
    }

    /// Where a member can be reached and what it offers. Every string is at most 255 bytes of UTF-8.
    public struct Metadata: Hashable, Sendable {
        /// The UDP address for gossip packets (opaque to this module, e.g. `"10.0.0.5:7946"`).
        public var gossipAddress: String
        /// The TCP address of the internal RPC port (push-pull, replication).
        public var rpcAddress: String
        /// The S3 endpoint address.
        public var s3Address: String
        /// The failure zone (rack, room, site); empty when unknown.
        public var zone: String
        /// Usable capacity in bytes (0 when unknown).
        public var capacity: UInt64

        /// Creates metadata. Each string MUST be at most 255 bytes of UTF-8.
        public init(
            gossipAddress: String, rpcAddress: String, s3Address: String = "", zone: String = "",
            capacity: UInt64 = 0
        ) {
            self.gossipAddress = gossipAddress
            self.rpcAddress = rpcAddress
            self.s3Address = s3Address
            self.zone = zone
            self.capacity = capacity
        }

        var isValid: Bool {
            gossipAddress.utf8.count <= 255 && rpcAddress.utf8.count <= 255 && s3Address.utf8.count <= 255
                && zone.utf8.count <= 255
        }
    }

    /// A member's liveness as seen locally. Raw values are part of the wire format and never change.
    public enum MemberState: UInt8, Hashable, Sendable, CaseIterable, CustomStringConvertible {
        /// Answering probes (or not yet suspected).
        case alive = 0
        /// Missed a probe; declared dead unless it refutes before its suspicion timeout.
        case suspect = 1
        /// Confirmed failed.
        case dead = 2
        /// Left gracefully.
        case left = 3

        public var description: String {
            switch self {
            case .alive: "alive"
            case .suspect: "suspect"
            case .dead: "dead"
            case .left: "left"
            }
        }
    }

    /// A member as the local instance sees it.
    public struct Member: Hashable, Sendable, CustomStringConvertible {
        /// The node's stable id.
        public var id: NodeID
        /// The process's unique id.
        public var uid: UInt64
        /// The latest incarnation heard.
        public var incarnation: Incarnation
        /// The latest state.
        public var state: MemberState
        /// Addresses, zone and capacity.
        public var metadata: Metadata

        /// Creates a member.
        public init(id: NodeID, uid: UInt64, incarnation: Incarnation, state: MemberState, metadata: Metadata) {
            self.id = id
            self.uid = uid
            self.incarnation = incarnation
            self.state = state
            self.metadata = metadata
        }

        /// The id and uid.
        public var ref: NodeRef { NodeRef(id: id, uid: uid) }
        /// The UDP gossip address.
        public var gossipAddress: String { metadata.gossipAddress }
        /// The TCP RPC address.
        public var rpcAddress: String { metadata.rpcAddress }
        /// The S3 address.
        public var s3Address: String { metadata.s3Address }
        /// The zone.
        public var zone: String { metadata.zone }
        /// The capacity in bytes.
        public var capacity: UInt64 { metadata.capacity }

        public var description: String { "\(id)#\(uid)@\(incarnation):\(state)" }
    }

    /// One versioned entry of the replicated cluster state (for example the layout).
    public struct StateEntry: Hashable, Sendable {
        /// The key (at most 255 bytes of UTF-8).
        public var key: String
        /// The version; higher wins.
        public var version: UInt64
        /// The opaque value.
        public var bytes: [UInt8]

        /// Creates an entry.
        public init(key: String, version: UInt64, bytes: [UInt8]) {
            self.key = key
            self.version = version
            self.bytes = bytes
        }

        /// The digest piggybacked in packets (FNV-1a 64 of the bytes; detects change, not tampering: the
        /// packets themselves are authenticated).
        public var digest: UInt64 { Gossip.digest(bytes) }

        /// The CRDT order: `true` when `self` should replace `other` (higher version, or equal version and
        /// lexicographically greater bytes).
        public func supersedes(_ other: StateEntry) -> Bool {
            if version != other.version { return version > other.version }
            return bytes.lexicographicallyPrecedes(other.bytes) == false && bytes != other.bytes
        }
    }

    /// FNV-1a 64 of `bytes`: the change-detection digest of a state entry.
    public static func digest(_ bytes: [UInt8]) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        return hash
    }
}

extension Duration {
    /// The duration in whole nanoseconds (saturating at the `Int64` range).
    var gossipNanoseconds: Int64 {
        let (seconds, attoseconds) = components
        let (product, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return seconds < 0 ? .min : .max }
        return product &+ attoseconds / 1_000_000_000
    }

    /// `self` multiplied by a non-negative real factor.
    func gossipScaled(by factor: Double) -> Duration {
        .nanoseconds(Int64((Double(gossipNanoseconds) * factor).rounded()))
    }
}
