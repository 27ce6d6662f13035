extension Ring {
    /// The versioned cluster layout: nodes, replication factor, partition power and the assignment of
    /// every partition to its replica nodes.
    ///
    /// A layout is an immutable value made only by ``Ring/Builder`` (or decoded from its binary form).
    /// It carries the assignment itself, so a node never recomputes placement: every node that holds the
    /// same layout looks up the same replicas. Layouts are ordered by ``version``; see ``merged(with:)``
    /// for the rule gossip uses to pick one.
    public struct Layout: Sendable, Hashable {
        /// Allowed partition powers: 2^4 to 2^12 partitions.
        public static let partitionPowers: ClosedRange<Int> = 4...12
        /// Allowed replication factors.
        public static let replicationFactors: ClosedRange<Int> = 1...16
        /// The most nodes a layout may list (the assignment stores node indexes as 16-bit numbers).
        public static let maxNodes = 4096
        /// The longest node id or zone name, in UTF-8 bytes.
        public static let maxNameBytes = 255

        /// Increases by one with every built layout; 0 is the empty layout a cluster starts from.
        public let version: UInt64
        /// The configured number of replicas N of every partition.
        public let replicationFactor: Int
        /// The partition power p: the key space has 2^p partitions. Fixed for the life of a cluster.
        public let partitionPower: Int
        /// All nodes of the layout, sorted by id (including nodes of capacity 0, which hold nothing).
        public let nodes: [Node]
        /// Replicas actually stored per partition: `min(replicationFactor, nodes with capacity > 0)`.
        ///
        /// It is below ``replicationFactor`` only while the cluster has fewer data nodes than N; the ring
        /// then keeps one replica per data node rather than refusing to place data.
        public let replicaCount: Int
        /// Partition-major assignment: the replicas of partition `i` are `slots[i * replicaCount ..< (i + 1) * replicaCount]`,
        /// as indexes into ``nodes``.
        let slots: [UInt16]

        /// Creates the empty layout (version 0, no nodes) that a new cluster starts from.
        /// - Parameters:
        ///   - replicationFactor: N, in ``replicationFactors``.
        ///   - partitionPower: p, in ``partitionPowers``; default 8 (256 partitions).
        /// - Throws: ``LayoutError/invalidReplicationFactor`` or ``LayoutError/invalidPartitionPower``.
        public init(replicationFactor: Int = 3, partitionPower: Int = 8) throws(LayoutError) {
            guard Self.replicationFactors.contains(replicationFactor) else { throw .invalidReplicationFactor }
            guard Self.partitionPowers.contains(partitionPower) else { throw .invalidPartitionPower }
            self.init(
                version: 0, replicationFactor: replicationFactor, partitionPower: partitionPower, nodes: [],
                replicaCount: 0, slots: [])
        }

        /// Memberwise; callers guarantee the invariants (builder and decoder).
        init(
            version: UInt64, replicationFactor: Int, partitionPower: Int, nodes: [Node], replicaCount: Int,
            slots: [UInt16]
        ) {
            self.version = version
            self.replicationFactor = replicationFactor
            self.partitionPower = partitionPower
            self.nodes = nodes
            self.replicaCount = replicaCount
            self.slots = slots
        }

        /// The number of partitions, 2^``partitionPower``.
        public var partitionCount: Int { 1 << partitionPower }

        /// The node with `id`, if it is in the layout.
        public func node(_ id: NodeID) -> Node? {
            nodes.firstIndex { $0.id == id }.map { nodes[$0] }
        }

        /// Applies `changes` in order and rebalances, giving the next version.
        ///
        /// Shorthand for a ``Ring/Builder`` that applies every change and builds.
        /// - Parameter changes: the changes, applied in order.
        /// - Returns: a layout with ``version`` one higher; equal inputs give equal (and byte-equal encoded) results.
        /// - Throws: the first ``LayoutError`` a change raises; nothing is applied then.
        public func applying(_ changes: [Change]) throws(LayoutError) -> Layout {
            var builder = Builder(self)
            for change in changes { try builder.apply(change) }
            return builder.build()
        }

        /// Builds the lookup table of this layout.
        public var table: Table { Table(self) }

        /// The layout to keep when two nodes hold different ones (a CRDT merge: commutative, associative,
        /// idempotent).
        ///
        /// The higher ``version`` wins; two different layouts with the same version (two operators built
        /// concurrently) are ordered by their binary encoding, the byte-wise larger one winning, so every
        /// node settles on the same one.
        /// - Parameter other: the layout received from a peer.
        /// - Returns: `self` or `other`.
        public func merged(with other: Layout) -> Layout {
            if version != other.version { return version > other.version ? self : other }
            if self == other { return self }
            return encoded().lexicographicallyPrecedes(other.encoded()) ? other : self
        }
    }

    /// One operator change to a layout.
    public enum Change: Sendable, Hashable {
        /// Adds a node; its id MUST NOT be in the layout yet.
        case add(Node)
        /// Removes the node with this id; its replicas move to the other nodes.
        case remove(NodeID)
        /// Replaces the zone and capacity of the node with the same id (capacity 0 drains it).
        case update(Node)
        /// Sets the replication factor N (in ``Ring/Layout/replicationFactors``).
        case setReplicationFactor(Int)
    }

    /// Why a layout change or a layout decoding was refused.
    ///
    /// Equality compares the kind only; new kinds may be added.
    public struct LayoutError: Error, Sendable, Hashable, CustomStringConvertible {
        private enum Code: Sendable, Hashable {
            case duplicateNode, unknownNode, invalidNode, tooManyNodes
            case invalidReplicationFactor, invalidPartitionPower, malformedEncoding
        }

        private let code: Code

        private init(_ code: Code) { self.code = code }

        /// An added node's id is already in the layout.
        public static let duplicateNode = LayoutError(.duplicateNode)
        /// A removed or updated node id is not in the layout.
        public static let unknownNode = LayoutError(.unknownNode)
        /// A node id is empty or an id or zone is longer than ``Ring/Layout/maxNameBytes``.
        public static let invalidNode = LayoutError(.invalidNode)
        /// The layout would list more than ``Ring/Layout/maxNodes`` nodes.
        public static let tooManyNodes = LayoutError(.tooManyNodes)
        /// The replication factor is outside ``Ring/Layout/replicationFactors``.
        public static let invalidReplicationFactor = LayoutError(.invalidReplicationFactor)
        /// The partition power is outside ``Ring/Layout/partitionPowers``.
        public static let invalidPartitionPower = LayoutError(.invalidPartitionPower)
        /// Bytes that are not a valid layout encoding (truncated, unknown format, broken invariants).
        public static let malformedEncoding = LayoutError(.malformedEncoding)

        /// A short, fixed description (safe for logs and metric labels).
        public var description: String {
            switch code {
            case .duplicateNode: "node already in the layout"
            case .unknownNode: "node not in the layout"
            case .invalidNode: "invalid node id or zone"
            case .tooManyNodes: "too many nodes in the layout"
            case .invalidReplicationFactor: "replication factor out of range"
            case .invalidPartitionPower: "partition power out of range"
            case .malformedEncoding: "malformed layout encoding"
            }
        }
    }
}
