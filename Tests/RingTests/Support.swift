import Ring

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny seeded generator so property tests are reproducible.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}

let terabyte: UInt64 = 1_000_000_000_000

func node(_ id: String, _ zone: String, _ terabytes: UInt64) -> Ring.Node {
    Ring.Node(id: Ring.NodeID(id), zone: zone, capacity: terabytes * terabyte)
}

/// A layout with `nodes` added to the empty layout in one build.
func build(_ nodes: [Ring.Node], replicas: Int = 3, power: Int = 8) throws -> Ring.Layout {
    try Ring.Layout(replicationFactor: replicas, partitionPower: power).applying(nodes.map { .add($0) })
}

/// Replica slots per node id (data nodes only, 0 included).
func slotCounts(_ table: Ring.Table) -> [Ring.NodeID: Int] {
    var counts: [Ring.NodeID: Int] = [:]
    for node in table.layout.nodes where node.capacity > 0 { counts[node.id] = table.partitions(of: node.id).count }
    return counts
}

/// Replica slots that change owner between two tables.
func movedSlots(_ old: Ring.Table, _ new: Ring.Table) -> Int {
    Ring.moves(from: old, to: new).reduce(0) { $0 + $1.to.count }
}

/// The zone rules, recomputed independently of the module: per-zone cap and floor for one partition.
struct ExpectedZones {
    var zoneOf: [Ring.NodeID: String] = [:]
    var upper: [String: Int] = [:]
    var lower: [String: Int] = [:]
    var replicas = 0

    init(_ layout: Ring.Layout) {
        var members: [String: Int] = [:]
        for node in layout.nodes where node.capacity > 0 {
            zoneOf[node.id] = node.zone
            members[node.zone, default: 0] += 1
        }
        replicas = min(layout.replicationFactor, zoneOf.count)
        guard replicas > 0 else { return }
        var cap = 1
        while members.values.reduce(0, { $0 + min($1, cap) }) < replicas { cap += 1 }
        for (zone, count) in members { upper[zone] = min(count, cap) }
        let upperSum = upper.values.reduce(0, +)
        for (zone, high) in upper {
            lower[zone] = max(members.count <= replicas ? 1 : 0, replicas - (upperSum - high))
        }
    }

    /// Whether a replica list keeps the rules: right size, distinct nodes, zone counts within bounds.
    func allows(_ replicas: [Ring.NodeID]) -> Bool {
        guard replicas.count == self.replicas, Set(replicas).count == replicas.count else { return false }
        var held: [String: Int] = [:]
        for id in replicas {
            guard let zone = zoneOf[id] else { return false }
            held[zone, default: 0] += 1
        }
        return upper.allSatisfy { zone, high in (lower[zone]!...high).contains(held[zone, default: 0]) }
    }
}

/// A random set of nodes: 3 to `maxNodes` nodes over 1 to `maxZones` zones, capacities 1 to 8 TB.
func randomNodes(_ rng: inout SplitMix64, maxNodes: Int = 14, maxZones: Int = 5, prefix: String = "n") -> [Ring.Node] {
    let count = Int.random(in: 3...maxNodes, using: &rng)
    let zones = Int.random(in: 1...min(maxZones, count), using: &rng)
    return (0..<count).map { index in
        let zone = index < zones ? index : Int.random(in: 0..<zones, using: &rng)
        return node("\(prefix)\(index)", "z\(zone)", UInt64.random(in: 1...8, using: &rng))
    }
}

/// Whether capacity-proportional shares fit the zone rules and the one-replica-per-partition cap, so
/// that balance within 5% can be expected.
func proportionalSharesFit(_ layout: Ring.Layout) -> Bool {
    let rules = ExpectedZones(layout)
    let data = layout.nodes.filter { $0.capacity > 0 }
    let total = Double(data.reduce(0) { $0 + $1.capacity })
    let replicas = Double(rules.replicas)
    for node in data where replicas * Double(node.capacity) / total > 1 { return false }
    var zoneCapacity: [String: Double] = [:]
    for node in data { zoneCapacity[node.zone, default: 0] += Double(node.capacity) }
    for (zone, capacity) in zoneCapacity {
        let share = replicas * capacity / total
        if share > Double(rules.upper[zone]!) || share < Double(rules.lower[zone]!) { return false }
    }
    return true
}

/// The largest relative gap between a node's slots and its capacity-proportional share.
func maxBalanceDeviation(_ table: Ring.Table) -> Double {
    let data = table.layout.nodes.filter { $0.capacity > 0 }
    let total = Double(data.reduce(0) { $0 + $1.capacity })
    let slots = Double(table.replicaCount * table.partitionCount)
    var worst = 0.0
    for node in data {
        let ideal = slots * Double(node.capacity) / total
        let actual = Double(table.partitions(of: node.id).count)
        worst = max(worst, abs(actual - ideal) / ideal)
    }
    return worst
}
