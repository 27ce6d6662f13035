import Ring
import Testing

/// Properties over many seeded random layouts (256 partitions, N in 1...3, 3 to 14 nodes, 1 to 5 zones).
@Suite struct PropertyTests {
    static let seeds: [UInt64] = Array(1...40)

    /// A random layout plus the generator state after drawing it.
    static func randomLayout(seed: UInt64) throws -> (Ring.Layout, SplitMix64) {
        var rng = SplitMix64(seed: seed)
        let replicas = [1, 2, 3, 3, 3][Int.random(in: 0..<5, using: &rng)]
        let layout = try build(randomNodes(&rng), replicas: replicas)
        return (layout, rng)
    }

    @Test(arguments: seeds)
    func determinism(seed: UInt64) throws {
        var rng = SplitMix64(seed: seed)
        let nodes = randomNodes(&rng)
        let first = try build(nodes)
        let again = try build(nodes)
        let shuffled = try build(nodes.shuffled(using: &rng))
        #expect(first == again)
        #expect(first.encoded() == again.encoded())
        #expect(first == shuffled)  // the order of staged changes does not matter
        // And the next step from equal layouts is equal too.
        let extra = node("extra", "z0", 3)
        #expect(try first.applying([.add(extra)]).encoded() == shuffled.applying([.add(extra)]).encoded())
    }

    @Test(arguments: seeds)
    func distinctnessAndZoneSpread(seed: UInt64) throws {
        let (layout, _) = try Self.randomLayout(seed: seed)
        let table = layout.table
        let rules = ExpectedZones(layout)
        for partition in 0..<table.partitionCount {
            let replicas = table.replicas(of: Ring.PartitionID(partition))
            #expect(rules.allows(replicas), "partition \(partition): \(replicas)")
        }
        #expect(slotCounts(table).values.reduce(0, +) == table.partitionCount * table.replicaCount)
    }

    @Test(arguments: seeds)
    func balanceWhereCapacitiesAllowIt(seed: UInt64) throws {
        let (layout, _) = try Self.randomLayout(seed: seed)
        guard proportionalSharesFit(layout) else { return }
        let table = layout.table
        let total = Double(layout.nodes.reduce(0) { $0 + $1.capacity })
        let slots = Double(table.partitionCount * table.replicaCount)
        for node in layout.nodes {
            let ideal = slots * Double(node.capacity) / total
            let actual = Double(table.partitions(of: node.id).count)
            #expect(abs(actual - ideal) <= max(0.05 * ideal, 1), "\(node.id): \(actual) vs \(ideal)")
        }
    }

    @Test(arguments: seeds)
    func movementOnAdd(seed: UInt64) throws {
        let (layout, state) = try Self.randomLayout(seed: seed)
        var rng = state
        let zones = Set(layout.nodes.map(\.zone)).sorted()
        let zone = Bool.random(using: &rng) ? zones.randomElement(using: &rng)! : "new-zone"
        let added = node("added", zone, UInt64.random(in: 1...8, using: &rng))
        let old = layout.table
        let new = try layout.applying([.add(added)]).table
        let moved = movedSlots(old, new)
        let ideal = new.partitions(of: added.id).count
        #expect(Double(moved) <= 1.2 * Double(mustGain(old, new)), "moved \(moved), ideal \(ideal)")
        if zones.contains(zone) && new.replicaCount == old.replicaCount {
            #expect(Double(moved) <= 1.2 * Double(ideal), "moved \(moved), ideal \(ideal)")
        }
    }

    @Test(arguments: seeds)
    func movementOnRemove(seed: UInt64) throws {
        let (layout, state) = try Self.randomLayout(seed: seed)
        var rng = state
        let gone = layout.nodes.randomElement(using: &rng)!
        let old = layout.table
        let new = try layout.applying([.remove(gone.id)]).table
        let moved = movedSlots(old, new)
        let ideal = old.partitions(of: gone.id).count
        #expect(Double(moved) <= 1.2 * Double(mustGain(old, new)), "moved \(moved), ideal \(ideal)")
        let zoneStays = layout.nodes.contains { $0.zone == gone.zone && $0.id != gone.id }
        if zoneStays && new.replicaCount == old.replicaCount {
            #expect(Double(moved) <= 1.2 * Double(ideal), "moved \(moved), ideal \(ideal)")
        }
    }

    @Test(arguments: seeds)
    func handoffOrder(seed: UInt64) throws {
        let (layout, _) = try Self.randomLayout(seed: seed)
        let table = layout.table
        let dataNodes = Set(layout.nodes.filter { $0.capacity > 0 }.map(\.id))
        for index in stride(from: 0, to: table.partitionCount, by: 7) {
            let partition = Ring.PartitionID(index)
            let replicas = table.replicas(of: partition)
            let handoffs = table.handoffs(of: partition)
            #expect(handoffs == table.handoffs(of: partition))
            #expect(Set(handoffs).count == handoffs.count)
            #expect(Set(handoffs).isDisjoint(with: replicas))
            #expect(Set(handoffs).union(replicas) == dataNodes)
            // Zones the replicas do not use come first, each once, before any zone repeats.
            let usedZones = Set(replicas.map { layout.node($0)!.zone })
            let freshZones = Set(handoffs.map { layout.node($0)!.zone }).subtracting(usedZones)
            let head = handoffs.prefix(freshZones.count).map { layout.node($0)!.zone }
            #expect(Set(head) == freshZones && head.count == freshZones.count)
        }
    }

    @Test(arguments: seeds)
    func encodingRoundTrip(seed: UInt64) throws {
        let (layout, _) = try Self.randomLayout(seed: seed)
        let bytes = layout.encoded()
        let decoded = try Ring.Layout(decoding: bytes)
        #expect(decoded == layout)
        #expect(decoded.encoded() == bytes)
    }

    /// Slots that nodes must gain whatever the algorithm: the sum of their count increases.
    func mustGain(_ old: Ring.Table, _ new: Ring.Table) -> Int {
        new.layout.nodes.reduce(0) { sum, node in
            sum + max(0, new.partitions(of: node.id).count - old.partitions(of: node.id).count)
        }
    }
}

/// A longer walk: a cluster grown and shrunk one node at a time keeps every property at every step.
@Suite struct EvolutionTests {
    @Test(arguments: [UInt64(101), 202, 303])
    func growAndShrink(seed: UInt64) throws {
        var rng = SplitMix64(seed: seed)
        var layout = try Ring.Layout(replicationFactor: 3, partitionPower: 7)
        var live: [Ring.NodeID] = []
        for step in 0..<24 {
            let change: Ring.Change
            if live.count < 4 || (step < 16 && Bool.random(using: &rng)) {
                let added = node("s\(step)", "z\(Int.random(in: 0..<4, using: &rng))", UInt64.random(in: 1...4, using: &rng))
                live.append(added.id)
                change = .add(added)
            } else if Bool.random(using: &rng) {
                let id = live.remove(at: Int.random(in: 0..<live.count, using: &rng))
                change = .remove(id)
            } else {
                let id = live.randomElement(using: &rng)!
                let zone = layout.node(id)!.zone
                change = .update(Ring.Node(id: id, zone: zone, capacity: UInt64.random(in: 1...4, using: &rng) * terabyte))
            }
            let next = try layout.applying([change])
            #expect(next.version == layout.version + 1)
            let rules = ExpectedZones(next)
            let table = next.table
            for partition in 0..<table.partitionCount {
                #expect(rules.allows(table.replicas(of: Ring.PartitionID(partition))))
            }
            layout = next
        }
    }
}

/// Movement, balance and the rules in the larger, zone-constrained layouts of the `bench/ring` survey
/// (3 to 30 nodes over 1 to 6 zones, 256 partitions), where removals used to need chains of moves.
/// CPU-heavy: serialized, so that its cases do not occupy every cooperative thread of the test
/// process at once (other suites' network tests need one to answer within their deadlines).
@Suite(.serialized) struct LargeLayoutTests {
    static let seeds: [UInt64] = Array(1...48)

    /// A random layout of up to 30 nodes and 6 zones plus the generator state after drawing it.
    static func randomLayout(seed: UInt64) throws -> (Ring.Layout, SplitMix64) {
        var rng = SplitMix64(seed: seed &+ 1_000)
        let replicas = [1, 2, 3, 3, 3][Int.random(in: 0..<5, using: &rng)]
        let layout = try build(randomNodes(&rng, maxNodes: 30, maxZones: 6), replicas: replicas)
        return (layout, rng)
    }

    /// The zone rules in every partition, and balance within max(5 %, 1 slot) where shares fit.
    static func expectRulesAndBalance(_ layout: Ring.Layout) {
        let table = layout.table
        let rules = ExpectedZones(layout)
        for partition in 0..<table.partitionCount {
            #expect(rules.allows(table.replicas(of: Ring.PartitionID(partition))), "partition \(partition)")
        }
        guard proportionalSharesFit(layout) else { return }
        let total = Double(layout.nodes.reduce(0) { $0 + $1.capacity })
        let slots = Double(table.partitionCount * table.replicaCount)
        for node in layout.nodes {
            let ideal = slots * Double(node.capacity) / total
            let actual = Double(table.partitions(of: node.id).count)
            #expect(abs(actual - ideal) <= max(0.05 * ideal, 1), "\(node.id): \(actual) vs \(ideal)")
        }
    }

    /// Removing a node whose zone keeps other nodes moves at most 1.2 × its slots, or, where the zone
    /// rules and the balance bound make that impossible, exactly the fewest slots any valid, balanced
    /// assignment needs (an independent min-cost-flow computation).
    @Test(arguments: seeds)
    func movementOnRemove(seed: UInt64) throws {
        let (layout, state) = try Self.randomLayout(seed: seed)
        var rng = state
        let gone = layout.nodes.randomElement(using: &rng)!
        let old = layout.table
        let next = try layout.applying([.remove(gone.id)])
        let new = next.table
        Self.expectRulesAndBalance(next)
        let moved = movedSlots(old, new)
        let ideal = old.partitions(of: gone.id).count
        let zoneStays = layout.nodes.contains { $0.zone == gone.zone && $0.id != gone.id }
        guard zoneStays && new.replicaCount == old.replicaCount else { return }
        if moved * 5 > ideal * 6 {
            let minimum = minimumMoves(from: old, to: next.nodes, replicationFactor: next.replicationFactor)
            #expect(minimum == moved, "moved \(moved), ideal \(ideal), minimum \(String(describing: minimum))")
        }
    }

    @Test(arguments: seeds)
    func movementOnAdd(seed: UInt64) throws {
        let (layout, state) = try Self.randomLayout(seed: seed)
        var rng = state
        let zones = Set(layout.nodes.map(\.zone)).sorted()
        let added = node("added", zones.randomElement(using: &rng)!, UInt64.random(in: 1...8, using: &rng))
        let old = layout.table
        let next = try layout.applying([.add(added)])
        let new = next.table
        Self.expectRulesAndBalance(next)
        guard new.replicaCount == old.replicaCount else { return }
        let moved = movedSlots(old, new)
        let ideal = new.partitions(of: added.id).count
        #expect(moved * 5 <= ideal * 6, "moved \(moved), ideal \(ideal)")
    }

    /// Removing two nodes in either order, or building twice, gives byte-equal layouts.
    @Test(arguments: seeds.prefix(16))
    func determinismOfRemovals(seed: UInt64) throws {
        let (layout, state) = try Self.randomLayout(seed: seed)
        var rng = state
        let ids = layout.nodes.map(\.id).shuffled(using: &rng)
        let first = try layout.applying([.remove(ids[0]), .remove(ids[1])])
        let second = try layout.applying([.remove(ids[1]), .remove(ids[0])])
        #expect(first.encoded() == second.encoded())
        #expect(try layout.applying([.remove(ids[0])]).encoded() == layout.applying([.remove(ids[0])]).encoded())
    }

    /// The survey's one removal above 1.2 ×: 20 nodes in zones of 6, 5 and 9, N = 2, 256 partitions;
    /// removing a 30-slot node moves 37 slots, which is the minimum any assignment within the zone rules
    /// and the balance bound allows.
    @Test func surveyWorstRemovalIsTheMinimum() throws {
        let (nodes, factor, gone) = surveyRemoval(power: 8, layout: 82)
        #expect(nodes.count == 20 && factor == 2)
        let layout = try build(nodes, replicas: factor, power: 8)
        let next = try layout.applying([.remove(gone)])
        Self.expectRulesAndBalance(next)
        let moved = movedSlots(layout.table, next.table)
        #expect(layout.table.partitions(of: gone).count == 30)
        #expect(moved == 37)
        #expect(minimumMoves(from: layout.table, to: next.nodes, replicationFactor: factor) == 37)
    }

    /// Replays the draws of `bench/ring`'s survey up to layout `index`: its nodes, N and removed node.
    func surveyRemoval(power: Int, layout index: Int) -> ([Ring.Node], Int, Ring.NodeID) {
        var rng = SplitMix64(seed: 7)
        for current in 0...index {
            let count = Int.random(in: 3...30, using: &rng)
            let zones = Int.random(in: 1...min(6, count), using: &rng)
            let factor = [1, 2, 3, 3, 3][Int.random(in: 0..<5, using: &rng)]
            let nodes = (0..<count).map { position in
                Ring.Node(
                    id: Ring.NodeID("n\(position)"),
                    zone: "z\(position < zones ? position : Int.random(in: 0..<zones, using: &rng))",
                    capacity: UInt64.random(in: 1...8, using: &rng) * terabyte)
            }
            if Bool.random(using: &rng) { _ = Int.random(in: 0..<zones, using: &rng) }
            _ = UInt64.random(in: 1...8, using: &rng)
            let gone = nodes[Int.random(in: 0..<count, using: &rng)].id
            if current == index { return (nodes, factor, gone) }
        }
        fatalError("unreachable")
    }
}
