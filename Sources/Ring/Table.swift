extension Ring {
    /// The read-only lookup index of one ``Ring/Layout``: where a key lives and who stands in for it.
    ///
    /// Built once per layout (O(P·N + nodes)); every lookup is pure and allocation-free except
    /// ``handoffs(of:)``. A shell SHOULD build the table when a layout arrives and swap the whole value in
    /// atomically.
    public struct Table: Sendable {
        /// The layout this table indexes.
        public let layout: Layout
        /// `32 - partitionPower`: how far a 32-bit hash prefix is shifted to give a partition.
        @usableFromInline let shift: UInt32
        /// The replicas of each partition, in slot order.
        @usableFromInline let replicaLists: [[NodeID]]
        /// The partitions of each node index, ascending.
        let partitionsByNode: [[PartitionID]]
        /// Node index by id.
        let indexByID: [NodeID: Int]
        /// Zone index of each node (zones sorted by name), -1 for nodes of capacity 0.
        let zoneOf: [Int]
        /// The number of distinct zones of data nodes.
        let zoneCount: Int
        /// Tie-break keys of each node.
        let keys: [UInt64]

        /// Indexes `layout`.
        public init(_ layout: Layout) {
            self.layout = layout
            self.shift = UInt32(32 - layout.partitionPower)
            let replicas = layout.replicaCount
            let ids = layout.nodes.map(\.id)
            var lists: [[NodeID]] = []
            lists.reserveCapacity(layout.partitionCount)
            var byNode = [[PartitionID]](repeating: [], count: ids.count)
            for partition in 0..<layout.partitionCount {
                var list: [NodeID] = []
                list.reserveCapacity(replicas)
                for slot in 0..<replicas {
                    let node = Int(layout.slots[partition * replicas + slot])
                    list.append(ids[node])
                    byNode[node].append(PartitionID(partition))
                }
                lists.append(list)
            }
            self.replicaLists = lists
            self.partitionsByNode = byNode
            var index: [NodeID: Int] = [:]
            for (position, id) in ids.enumerated() { index[id] = position }
            self.indexByID = index
            let rules = Placement.zoneRules(nodes: layout.nodes, replicationFactor: layout.replicationFactor)
            self.zoneOf = rules.zoneOf
            self.zoneCount = rules.zoneCount
            self.keys = ids.map { Mixing.key(of: $0.rawValue.utf8) }
        }

        /// The number of partitions, 2^p.
        public var partitionCount: Int { replicaLists.count }

        /// Replicas per partition (see ``Ring/Layout/replicaCount``).
        public var replicaCount: Int { layout.replicaCount }

        /// The layout version this table was built from.
        public var version: UInt64 { layout.version }

        /// The partition of a key, from its SHA-256 (or any uniformly distributed hash).
        ///
        /// Uses the top p bits of the first four bytes read big-endian; a hash shorter than four bytes is
        /// padded with zero bytes.
        /// - Parameter hash: the key's hash; the caller computes it (the ring does no hashing of its own).
        /// - Returns: a partition in `0 ..< partitionCount`.
        @inlinable
        public func partition(for hash: some Collection<UInt8>) -> PartitionID {
            var prefix: UInt32 = 0
            var index = hash.startIndex
            for _ in 0..<4 {
                prefix <<= 8
                if index != hash.endIndex {
                    prefix |= UInt32(hash[index])
                    hash.formIndex(after: &index)
                }
            }
            return PartitionID(rawValue: prefix >> shift)
        }

        /// The nodes that hold `partition`: ``replicaCount`` distinct nodes, in distinct zones when there
        /// are at least that many zones, in a fixed order (the first is a natural coordinator).
        /// - Parameter partition: MUST be below ``partitionCount``.
        @inlinable
        public func replicas(of partition: PartitionID) -> [NodeID] {
            replicaLists[Int(partition.rawValue)]
        }

        /// The data nodes that are not replicas of `partition`, in the order a coordinator SHOULD try them
        /// when a replica is unavailable (hinted handoff).
        ///
        /// The order is fixed for a given table: nodes from zones not yet used (by the replicas and the
        /// handoffs before them) come first, zone by zone in round-robin; within a zone, nodes follow a
        /// fixed pseudo-random rank of (node id, partition), so the extra load of a failed node spreads over
        /// the cluster. Nodes of capacity 0 are never handoffs.
        /// - Parameter partition: MUST be below ``partitionCount``.
        /// - Returns: every other data node, each once.
        public func handoffs(of partition: PartitionID) -> [NodeID] {
            let index = Int(partition.rawValue)
            let replicas = replicaLists[index]
            var used = [Int](repeating: 0, count: zoneCount)
            var isReplica = [Bool](repeating: false, count: zoneOf.count)
            for id in replicas {
                let node = indexByID[id]!
                isReplica[node] = true
                used[zoneOf[node]] += 1
            }
            var candidates = [[(node: Int, rank: UInt64)]](repeating: [], count: zoneCount)
            var total = 0
            for node in zoneOf.indices where zoneOf[node] >= 0 && !isReplica[node] {
                candidates[zoneOf[node]].append((node, Mixing.score(partition: index, key: keys[node])))
                total += 1
            }
            for zone in candidates.indices {
                candidates[zone].sort { $0.rank != $1.rank ? $0.rank < $1.rank : $0.node < $1.node }
            }
            var next = [Int](repeating: 0, count: zoneCount)
            var result: [NodeID] = []
            result.reserveCapacity(total)
            while result.count < total {
                var best = -1
                for zone in 0..<zoneCount where next[zone] < candidates[zone].count {
                    if best < 0 || used[zone] < used[best]
                        || (used[zone] == used[best]
                            && candidates[zone][next[zone]].rank < candidates[best][next[best]].rank)
                    {
                        best = zone
                    }
                }
                result.append(layout.nodes[candidates[best][next[best]].node].id)
                next[best] += 1
                used[best] += 1
            }
            return result
        }

        /// ``replicas(of:)`` followed by ``handoffs(of:)``: every data node once, in preference order.
        public func preferenceList(of partition: PartitionID) -> [NodeID] {
            replicas(of: partition) + handoffs(of: partition)
        }

        /// The partitions `node` holds a replica of, ascending; empty for an unknown node or one of capacity 0.
        public func partitions(of node: NodeID) -> [PartitionID] {
            guard let index = indexByID[node] else { return [] }
            return partitionsByNode[index]
        }
    }
}
