extension Ring {
    /// Makes the next layout from the previous one plus operator changes.
    ///
    /// Stage changes with ``apply(_:)``, then call ``build()``. Building is deterministic: the same base
    /// layout and the same changes give an equal layout (and byte-equal encoding) on every machine; no
    /// random source is needed, ties are broken by a fixed hash of node ids and partition numbers.
    /// Building starts from the base layout's assignment and moves as few replica slots as it can (see
    /// `docs/ring.md`), so ``Ring/moves(from:to:)`` of the two tables is what an operator must expect to copy.
    public struct Builder: Sendable {
        /// The layout the changes apply to.
        public let base: Layout
        /// The staged nodes, sorted by id.
        public private(set) var nodes: [Node]
        /// The staged replication factor N.
        public private(set) var replicationFactor: Int

        /// Starts staging changes on top of `base`.
        public init(_ base: Layout) {
            self.base = base
            self.nodes = base.nodes
            self.replicationFactor = base.replicationFactor
        }

        /// Stages one change.
        /// - Parameter change: the change; it is checked against the staged state.
        /// - Throws: ``LayoutError/duplicateNode``, ``LayoutError/unknownNode``, ``LayoutError/invalidNode``,
        ///   ``LayoutError/tooManyNodes`` or ``LayoutError/invalidReplicationFactor``; the staged state is
        ///   unchanged then.
        public mutating func apply(_ change: Change) throws(LayoutError) {
            switch change {
            case .add(let node):
                try Self.validate(node)
                let position = insertionIndex(of: node.id)
                guard position == nodes.count || nodes[position].id != node.id else { throw .duplicateNode }
                guard nodes.count < Layout.maxNodes else { throw .tooManyNodes }
                nodes.insert(node, at: position)
            case .remove(let id):
                let position = insertionIndex(of: id)
                guard position < nodes.count, nodes[position].id == id else { throw .unknownNode }
                nodes.remove(at: position)
            case .update(let node):
                try Self.validate(node)
                let position = insertionIndex(of: node.id)
                guard position < nodes.count, nodes[position].id == node.id else { throw .unknownNode }
                nodes[position] = node
            case .setReplicationFactor(let factor):
                guard Layout.replicationFactors.contains(factor) else { throw .invalidReplicationFactor }
                replicationFactor = factor
            }
        }

        /// Stages `changes` in order; stops at the first refused one (earlier ones stay staged).
        public mutating func apply(_ changes: some Sequence<Change>) throws(LayoutError) {
            for change in changes { try apply(change) }
        }

        /// Rebalances and returns the next layout (version `base.version + 1`).
        ///
        /// Every partition gets `min(N, data nodes)` distinct replicas placed by the zone rules; each data
        /// node gets a share of replica slots proportional to its capacity within those rules, and a node
        /// never holds two replicas of one partition, so a node with more than 1/N of the capacity is
        /// capped at one replica of every partition. Costs O(P·N·nodes) for the greedy passes plus a
        /// breadth-first search per slot they leave unplaced, and, only when those needed chains of moves, a
        /// few hop-limited Bellman-Ford rounds over the nodes to hand extra copies back.
        /// - Returns: the new layout.
        public func build() -> Layout {
            let placement = Placement.assign(
                nodes: nodes, replicationFactor: replicationFactor, partitionCount: base.partitionCount,
                previous: base)
            return Layout(
                version: base.version &+ 1, replicationFactor: replicationFactor,
                partitionPower: base.partitionPower, nodes: nodes, replicaCount: placement.replicaCount,
                slots: placement.slots)
        }

        /// The index at which `id` is or would be inserted in the sorted `nodes`.
        private func insertionIndex(of id: NodeID) -> Int {
            var low = 0
            var high = nodes.count
            while low < high {
                let middle = (low + high) / 2
                if nodes[middle].id < id { low = middle + 1 } else { high = middle }
            }
            return low
        }

        /// Checks the id and zone limits of `node`.
        static func validate(_ node: Node) throws(LayoutError) {
            let idBytes = node.id.rawValue.utf8.count
            guard idBytes > 0, idBytes <= Layout.maxNameBytes, node.zone.utf8.count <= Layout.maxNameBytes else {
                throw .invalidNode
            }
        }
    }
}
