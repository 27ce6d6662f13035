import Ring

/// SplitMix64, so every run measures the same hashes and layouts.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}

enum Units {
    static let terabyte: UInt64 = 1_000_000_000_000
}

func nanoseconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) * 1e9 + Double(duration.components.attoseconds) / 1e9
}

func format(_ value: Double, _ digits: Int = 1) -> String {
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    // Integer rounding: `Double.rounded()` would need libm, which this Foundation-free package does not link.
    let units = Int(value * scale + 0.5)
    let whole = units / Int(scale)
    let fraction = String(units % Int(scale))
    return digits == 0 ? String(whole) : "\(whole)." + String(repeating: "0", count: digits - fraction.count) + fraction
}

// MARK: Lookup cost

func lookupBenchmark() throws {
    let clock = ContinuousClock()
    let nodes = (0..<12).map {
        Ring.Node(id: Ring.NodeID("node-\($0)"), zone: "zone-\($0 % 4)", capacity: UInt64(4 + $0 % 3) * Units.terabyte)
    }
    let layout = try Ring.Layout(replicationFactor: 3, partitionPower: 10).applying(nodes.map { .add($0) })
    let table = layout.table
    var rng = SplitMix64(state: 42)
    let hashes: [[UInt8]] = (0..<4096).map { _ in (0..<32).map { _ in UInt8.random(in: 0...255, using: &rng) } }
    let iterations = 10_000_000
    var checksum = 0
    // Warm-up.
    for index in 0..<100_000 {
        let partition = table.partition(for: hashes[index & 4095])
        checksum &+= table.replicas(of: partition).count
    }
    let elapsed = clock.measure {
        for index in 0..<iterations {
            let partition = table.partition(for: hashes[index & 4095])
            let replicas = table.replicas(of: partition)
            checksum &+= Int(partition.rawValue) &+ replicas.count
        }
    }
    let perLookup = nanoseconds(elapsed) / Double(iterations)
    print("lookup: \(iterations) x partition(for:)+replicas(of:) in \(elapsed): \(format(perLookup, 2)) ns/lookup (checksum \(checksum))")

    var handoffCount = 0
    let handoffIterations = 200_000
    let handoffTime = clock.measure {
        for index in 0..<handoffIterations {
            handoffCount &+= table.handoffs(of: Ring.PartitionID(index & 1023)).count
        }
    }
    print("handoffs(of:) with 12 nodes: \(format(nanoseconds(handoffTime) / Double(handoffIterations), 0)) ns/call (\(handoffCount))")

    let bigNodes = (0..<100).map {
        Ring.Node(id: Ring.NodeID("node-\($0)"), zone: "zone-\($0 % 8)", capacity: UInt64(1 + $0 % 7) * Units.terabyte)
    }
    var big: Ring.Layout = layout
    let buildTime = clock.measure {
        big = try! Ring.Layout(replicationFactor: 3, partitionPower: 12).applying(bigNodes.map { .add($0) })
    }
    print("build: 100 nodes, 8 zones, 4096 partitions, N=3 from scratch: \(buildTime)")
    let addTime = clock.measure {
        _ = try! big.applying([.add(Ring.Node(id: "node-new", zone: "zone-3", capacity: 4 * Units.terabyte))])
    }
    print("build: adding a node to it: \(addTime)")
    let removeTime = clock.measure {
        _ = try! big.applying([.remove("node-37")])
    }
    print("build: removing a node from it: \(removeTime)")
}

// MARK: Placement survey

/// Random layouts like the property tests, but more and larger (release mode).
func survey(power: Int, layouts: Int) throws {
    var worstBalance = 0.0
    var worstSlots = 0.0
    var worstLarge = 0.0
    var balanced = 0
    var worstAdd = 0.0, sumAdd = 0.0, adds = 0
    var worstRemove = 0.0, sumRemove = 0.0, removes = 0
    var worstBound = 0.0
    var addsOver = 0, removesOver = 0
    // Balance after the add and the remove (where shares fit), to see what relaxing quotas costs.
    var changedBalanced = 0, worstChangedSlots = 0.0, worstChangedLarge = 0.0
    func recordChanged(_ table: Ring.Table) {
        guard fits(table.layout) else { return }
        changedBalanced += 1
        let gap = deviation(table)
        worstChangedSlots = max(worstChangedSlots, gap.slots)
        worstChangedLarge = max(worstChangedLarge, gap.relativeLarge)
    }
    var rng = SplitMix64(state: 7)
    for _ in 0..<layouts {
        let count = Int.random(in: 3...30, using: &rng)
        let zones = Int.random(in: 1...min(6, count), using: &rng)
        let factor = [1, 2, 3, 3, 3][Int.random(in: 0..<5, using: &rng)]
        let nodes = (0..<count).map { index in
            Ring.Node(
                id: Ring.NodeID("n\(index)"), zone: "z\(index < zones ? index : Int.random(in: 0..<zones, using: &rng))",
                capacity: UInt64.random(in: 1...8, using: &rng) * Units.terabyte)
        }
        let layout = try Ring.Layout(replicationFactor: factor, partitionPower: power).applying(nodes.map { .add($0) })
        let table = layout.table
        if fits(layout) {
            balanced += 1
            let gap = deviation(table)
            worstBalance = max(worstBalance, gap.relative)
            worstSlots = max(worstSlots, gap.slots)
            worstLarge = max(worstLarge, gap.relativeLarge)
        }
        // Add one node, in an existing zone or a new one.
        let zone = Bool.random(using: &rng) ? "z\(Int.random(in: 0..<zones, using: &rng))" : "znew"
        let added = Ring.Node(id: "added", zone: zone, capacity: UInt64.random(in: 1...8, using: &rng) * Units.terabyte)
        let grown = try layout.applying([.add(added)]).table
        let movedAdd = moved(table, grown)
        recordChanged(grown)
        worstBound = max(worstBound, Double(movedAdd) / Double(max(1, mustGain(table, grown))))
        if zone != "znew" && grown.replicaCount == table.replicaCount {
            let ratio = Double(movedAdd) / Double(grown.partitions(of: "added").count)
            worstAdd = max(worstAdd, ratio)
            if ratio > 1.2 { addsOver += 1 }
            sumAdd += ratio
            adds += 1
        }
        // Remove one node whose zone keeps other nodes.
        let gone = nodes[Int.random(in: 0..<count, using: &rng)]
        let shrunk = try layout.applying([.remove(gone.id)]).table
        let movedRemove = moved(table, shrunk)
        recordChanged(shrunk)
        worstBound = max(worstBound, Double(movedRemove) / Double(max(1, mustGain(table, shrunk))))
        if nodes.contains(where: { $0.zone == gone.zone && $0.id != gone.id }) && shrunk.replicaCount == table.replicaCount {
            let ratio = Double(movedRemove) / Double(table.partitions(of: gone.id).count)
            worstRemove = max(worstRemove, ratio)
            if ratio > 1.2 { removesOver += 1 }
            sumRemove += ratio
            removes += 1
        }
    }
    print("survey 2^\(power) partitions, \(layouts) random layouts (3-30 nodes, 1-6 zones, 1-8 TB, N 1-3):")
    print("  balance: \(balanced) layouts where proportional shares fit the zone rules; worst |slots - ideal| = \(format(worstSlots, 2)) slots; relative: \(format(worstBalance * 100, 2))% overall, \(format(worstLarge * 100, 2))% for nodes with ideal >= 20 slots")
    print("  add a node to an existing zone: moved / new node's slots: worst \(format(worstAdd, 3)), mean \(format(sumAdd / Double(max(adds, 1)), 3)) over \(adds), \(addsOver) above 1.2")
    print("  remove a node (zone keeps others): moved / removed node's slots: worst \(format(worstRemove, 3)), mean \(format(sumRemove / Double(max(removes, 1)), 3)) over \(removes), \(removesOver) above 1.2")
    print("  any add/remove: moved / slots nodes must gain: worst \(format(worstBound, 3))")
    print("  balance after the add and the remove: \(changedBalanced) layouts where shares fit; worst |slots - ideal| = \(format(worstChangedSlots, 2)) slots; \(format(worstChangedLarge * 100, 2))% for nodes with ideal >= 20 slots")
}

func moved(_ old: Ring.Table, _ new: Ring.Table) -> Int {
    Ring.moves(from: old, to: new).reduce(0) { $0 + $1.to.count }
}

func mustGain(_ old: Ring.Table, _ new: Ring.Table) -> Int {
    new.layout.nodes.reduce(0) { $0 + max(0, new.partitions(of: $1.id).count - old.partitions(of: $1.id).count) }
}

func deviation(_ table: Ring.Table) -> (relative: Double, slots: Double, relativeLarge: Double) {
    let data = table.layout.nodes.filter { $0.capacity > 0 }
    let total = Double(data.reduce(0) { $0 + $1.capacity })
    let slots = Double(table.replicaCount * table.partitionCount)
    var result = (relative: 0.0, slots: 0.0, relativeLarge: 0.0)
    for node in data {
        let ideal = slots * Double(node.capacity) / total
        let gap = abs(Double(table.partitions(of: node.id).count) - ideal)
        result.relative = max(result.relative, gap / ideal)
        result.slots = max(result.slots, gap)
        if ideal >= 20 { result.relativeLarge = max(result.relativeLarge, gap / ideal) }
    }
    return result
}

/// Whether capacity-proportional shares fit: no node above 1/R of the capacity, every zone's share within
/// its per-partition bounds.
func fits(_ layout: Ring.Layout) -> Bool {
    let data = layout.nodes.filter { $0.capacity > 0 }
    let replicas = min(layout.replicationFactor, data.count)
    let total = Double(data.reduce(0) { $0 + $1.capacity })
    if data.contains(where: { Double(replicas) * Double($0.capacity) / total > 1 }) { return false }
    var members: [String: Int] = [:]
    var capacity: [String: Double] = [:]
    for node in data {
        members[node.zone, default: 0] += 1
        capacity[node.zone, default: 0] += Double(node.capacity)
    }
    var cap = 1
    while members.values.reduce(0, { $0 + min($1, cap) }) < replicas { cap += 1 }
    let upper = members.mapValues { min($0, cap) }
    let upperSum = upper.values.reduce(0, +)
    for (zone, high) in upper {
        let low = max(members.count <= replicas ? 1 : 0, replicas - (upperSum - high))
        let share = Double(replicas) * capacity[zone]! / total
        if share > Double(high) || share < Double(low) { return false }
    }
    return true
}

try lookupBenchmark()
try survey(power: 8, layouts: 300)
try survey(power: 10, layouts: 100)
