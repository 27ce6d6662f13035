/// Data placement for the storage cluster: which nodes hold the replicas of a key.
///
/// Terms:
/// - A **node** is a storage daemon with a stable ``Ring/NodeID``, a failure-domain **zone** and a
///   **capacity** in bytes. A node with capacity 0 stays in the layout but holds no data (draining,
///   or a gateway).
/// - The key space is cut into 2^p fixed **partitions** (``Ring/PartitionID``). A key is placed by the
///   top p bits of the first four bytes (big-endian) of a SHA-256 that the caller computes.
/// - The **layout** (``Ring/Layout``) is the versioned, operator-made description of the cluster: the
///   nodes, the replication factor N, the partition power p and the assignment of every partition to
///   its N replica nodes. It is produced only by ``Ring/Builder`` and travels between nodes in its
///   binary encoding, so every node reads the same ring from the same layout without recomputing it.
/// - A **table** (``Ring/Table``) is the read-only lookup index built from a layout: partition of a
///   hash, replicas of a partition, handoff nodes, partitions of a node.
///
/// Placement rules (see `docs/ring.md`): replicas of a partition are N distinct nodes; with at least N
/// zones they are in N distinct zones, with fewer zones every zone holds at least one and the replicas
/// are spread as evenly over the zones as the nodes allow; within those rules each node holds a number
/// of replica slots proportional to its capacity; a change moves close to the minimum number of slots.
///
/// How this differs from the sources it follows: like OpenStack Swift's `RingBuilder` and Garage's
/// layout, the assignment is computed once by a builder and shipped, not derived from hashing on every
/// node; unlike Swift's builder it needs no random seed (ties are broken by a fixed hash of the node id
/// and the partition), and unlike Garage it uses a greedy fill with shortest augmenting paths instead of
/// a full min-cost flow. The module does no I/O and has no clock or random source.
public enum Ring {}

extension Ring {
    /// The stable identity of a storage node in the layout.
    ///
    /// Equality, hashing and ordering compare the UTF-8 bytes, so the order of nodes (and thus the
    /// layout encoding) is the same on every platform and Unicode version.
    public struct NodeID: Sendable, Hashable, Comparable, Codable, CustomStringConvertible,
        ExpressibleByStringLiteral
    {
        /// The id as text (at most ``Ring/Layout/maxNameBytes`` UTF-8 bytes, not empty, in a valid layout).
        public let rawValue: String

        /// Wraps `rawValue` as a node id.
        public init(_ rawValue: String) { self.rawValue = rawValue }

        /// Creates an id from a string literal (handy in tests and tables).
        public init(stringLiteral value: String) { self.rawValue = value }

        /// Decodes the id from a single string value.
        public init(from decoder: any Decoder) throws {
            self.rawValue = try decoder.singleValueContainer().decode(String.self)
        }

        /// Encodes the id as a single string value.
        public func encode(to encoder: any Encoder) throws {
            var container = encoder.singleValueContainer()
            try container.encode(rawValue)
        }

        /// The id text.
        public var description: String { rawValue }

        /// Byte-wise equality of the UTF-8 forms.
        public static func == (lhs: NodeID, rhs: NodeID) -> Bool { lhs.rawValue.utf8.elementsEqual(rhs.rawValue.utf8) }

        /// Byte-wise lexicographic order of the UTF-8 forms.
        public static func < (lhs: NodeID, rhs: NodeID) -> Bool {
            lhs.rawValue.utf8.lexicographicallyPrecedes(rhs.rawValue.utf8)
        }

        /// Hashes the UTF-8 bytes (consistent with `==`).
        public func hash(into hasher: inout Hasher) {
            hasher.combine(rawValue.utf8.count)
            for byte in rawValue.utf8 { hasher.combine(byte) }
        }
    }

    /// A storage node as the layout knows it: identity, failure domain and capacity.
    public struct Node: Sendable, Hashable, Codable {
        /// The node's stable identity.
        public var id: NodeID
        /// The failure domain (rack, room, site) the node is in; compared byte-wise. Empty is a valid zone.
        public var zone: String
        /// Usable capacity in bytes; the node's share of replica slots is proportional to it. 0 means the
        /// node holds no data.
        public var capacity: UInt64

        /// Creates a node description.
        /// - Parameters:
        ///   - id: the stable id; MUST be unique in the layout.
        ///   - zone: the failure domain.
        ///   - capacity: usable bytes; 0 for a node that holds nothing.
        public init(id: NodeID, zone: String, capacity: UInt64) {
            self.id = id
            self.zone = zone
            self.capacity = capacity
        }
    }

    /// The index of one of the 2^p fixed partitions of the key space.
    public struct PartitionID: Sendable, Hashable, Comparable, Codable, CustomStringConvertible {
        /// The partition number, in `0 ..< 2^p`.
        public let rawValue: UInt32

        /// Wraps a partition number.
        @inlinable
        public init(rawValue: UInt32) { self.rawValue = rawValue }

        /// Wraps a partition number given as `Int`; MUST be in `0 ..< 2^32`.
        public init(_ value: Int) { self.rawValue = UInt32(value) }

        /// Numeric order.
        public static func < (lhs: PartitionID, rhs: PartitionID) -> Bool { lhs.rawValue < rhs.rawValue }

        /// The partition number as text.
        public var description: String { String(rawValue) }
    }

    /// How one partition's replica set changes between two tables.
    public struct Move: Sendable, Hashable, CustomStringConvertible {
        /// The partition whose replicas change.
        public var partition: PartitionID
        /// Nodes that hold the partition in the old table but not in the new one (old replica order).
        public var from: [NodeID]
        /// Nodes that hold the partition in the new table but not in the old one (new replica order).
        public var to: [NodeID]

        /// Creates a move record.
        public init(partition: PartitionID, from: [NodeID], to: [NodeID]) {
            self.partition = partition
            self.from = from
            self.to = to
        }

        /// `partition: a, b -> c, d`, for operator output.
        public var description: String {
            let old = from.isEmpty ? "-" : from.map(\.rawValue).joined(separator: ", ")
            let new = to.isEmpty ? "-" : to.map(\.rawValue).joined(separator: ", ")
            return "\(partition.rawValue): \(old) -> \(new)"
        }
    }

    /// The replica moves that turn `old` into `new`, one entry per partition whose replica set changes.
    ///
    /// A partition whose replicas only change order is not listed. The number of replica slots that change
    /// owner is the sum of `to.count` over the result.
    /// - Parameters:
    ///   - old: the table in force.
    ///   - new: the proposed table; MUST have the same partition power as `old`.
    /// - Returns: the moves in partition order.
    public static func moves(from old: Table, to new: Table) -> [Move] {
        precondition(old.partitionCount == new.partitionCount, "tables must have the same partition power")
        var result: [Move] = []
        for index in 0..<old.partitionCount {
            let partition = PartitionID(index)
            let before = old.replicas(of: partition)
            let after = new.replicas(of: partition)
            let leaving = before.filter { !after.contains($0) }
            let arriving = after.filter { !before.contains($0) }
            if !leaving.isEmpty || !arriving.isEmpty {
                result.append(Move(partition: partition, from: leaving, to: arriving))
            }
        }
        return result
    }
}
