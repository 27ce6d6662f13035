import Ring

/// An independent, exact lower bound on movement: the fewest replica slots that must change owner to go
/// from `old` to any assignment of `nodes` that keeps the zone rules and holds every data node within
/// `tolerance` of its capacity share (the balance bound the property tests assert).
///
/// Solved as a min-cost flow with lower bounds over source -> partition (exactly R) -> (partition, zone)
/// (the zone's per-partition bounds) -> node (cost 0 if the node held the partition in `old`, else 1)
/// -> sink (the node's count range), by successive shortest paths (SPFA). Slow but simple; tests only
/// use it for the rare layouts where the 1.2 × bound is not met, to show that the builder still reaches
/// the true minimum. Returns nil when no assignment meets the ranges.
func minimumMoves(from old: Ring.Table, to nodes: [Ring.Node], replicationFactor: Int) -> Int? {
    let partitions = old.partitionCount
    let data = nodes.filter { $0.capacity > 0 }
    let zoneNames = Array(Set(data.map(\.zone))).sorted()
    let replicas = min(replicationFactor, data.count)
    let zoneOf = data.map { zoneNames.firstIndex(of: $0.zone)! }
    var members = [Int](repeating: 0, count: zoneNames.count)
    for zone in zoneOf { members[zone] += 1 }
    var cap = 1
    while members.reduce(0, { $0 + min($1, cap) }) < replicas { cap += 1 }
    let upper = members.map { min($0, cap) }
    let upperSum = upper.reduce(0, +)
    let lower = upper.map { max(zoneNames.count <= replicas ? 1 : 0, replicas - (upperSum - $0)) }
    let total = Double(data.reduce(0) { $0 + $1.capacity })
    let zones = zoneNames.count

    var flow = MinCostFlow(vertices: 2 + partitions * (1 + zones) + data.count)
    let source = 0
    let sink = 1
    let zoneBase = 2 + partitions
    let nodeBase = zoneBase + partitions * zones
    for partition in 0..<partitions {
        flow.add(source, 2 + partition, low: replicas, high: replicas, cost: 0)
        for zone in 0..<zones {
            flow.add(2 + partition, zoneBase + partition * zones + zone, low: lower[zone], high: upper[zone], cost: 0)
        }
        let before = old.replicas(of: Ring.PartitionID(partition))
        for (index, node) in data.enumerated() {
            flow.add(
                zoneBase + partition * zones + zoneOf[index], nodeBase + index, low: 0, high: 1,
                cost: before.contains(node.id) ? 0 : 1)
        }
    }
    for (index, node) in data.enumerated() {
        let share = Double(replicas * partitions) * Double(node.capacity) / total
        let slack = max(0.05 * share, 1)
        let low = max(0, Int((share - slack).rounded(.up)))
        let high = min(partitions, Int((share + slack).rounded(.down)))
        flow.add(nodeBase + index, sink, low: low, high: high, cost: 0)
    }
    flow.add(sink, source, low: 0, high: replicas * partitions, cost: 0)
    return flow.solve()
}

/// Min-cost circulation with lower bounds: lower bounds become vertex excesses, then successive shortest
/// paths from a super source to a super sink (all costs are non-negative, so no negative cycle exists).
struct MinCostFlow {
    struct Edge {
        var to: Int
        var capacity: Int
        var cost: Int
    }

    var edges: [Edge] = []
    var adjacency: [[Int]]
    var excess: [Int]
    var fixedCost = 0

    init(vertices: Int) {
        adjacency = Array(repeating: [], count: vertices + 2)
        excess = Array(repeating: 0, count: vertices + 2)
    }

    mutating func add(_ from: Int, _ to: Int, low: Int, high: Int, cost: Int) {
        precondition(low <= high)
        excess[to] += low
        excess[from] -= low
        fixedCost += low * cost
        link(from, to, capacity: high - low, cost: cost)
    }

    private mutating func link(_ from: Int, _ to: Int, capacity: Int, cost: Int) {
        adjacency[from].append(edges.count)
        edges.append(Edge(to: to, capacity: capacity, cost: cost))
        adjacency[to].append(edges.count)
        edges.append(Edge(to: from, capacity: 0, cost: -cost))
    }

    mutating func solve() -> Int? {
        let count = adjacency.count
        let superSource = count - 2
        let superSink = count - 1
        var needed = 0
        for vertex in 0..<(count - 2) {
            if excess[vertex] > 0 {
                link(superSource, vertex, capacity: excess[vertex], cost: 0)
                needed += excess[vertex]
            } else if excess[vertex] < 0 {
                link(vertex, superSink, capacity: -excess[vertex], cost: 0)
            }
        }
        var cost = fixedCost
        var sent = 0
        while true {
            var distance = [Int](repeating: Int.max, count: count)
            var queued = [Bool](repeating: false, count: count)
            var via = [Int](repeating: -1, count: count)
            var queue = [superSource]
            var head = 0
            distance[superSource] = 0
            queued[superSource] = true
            while head < queue.count {
                let vertex = queue[head]
                head += 1
                queued[vertex] = false
                for index in adjacency[vertex] where edges[index].capacity > 0 {
                    let next = edges[index].to
                    let candidate = distance[vertex] + edges[index].cost
                    if candidate < distance[next] {
                        distance[next] = candidate
                        via[next] = index
                        if !queued[next] {
                            queued[next] = true
                            queue.append(next)
                        }
                    }
                }
                if head > 8192 {
                    queue.removeFirst(head)
                    head = 0
                }
            }
            guard distance[superSink] < Int.max else { break }
            var amount = Int.max
            var vertex = superSink
            while vertex != superSource {
                amount = min(amount, edges[via[vertex]].capacity)
                vertex = edges[via[vertex] ^ 1].to
            }
            vertex = superSink
            while vertex != superSource {
                edges[via[vertex]].capacity -= amount
                edges[via[vertex] ^ 1].capacity += amount
                vertex = edges[via[vertex] ^ 1].to
            }
            sent += amount
            cost += amount * distance[superSink]
        }
        return sent == needed ? cost : nil
    }
}
