/// The placement algorithm behind ``Ring/Builder/build()``. See `docs/ring.md` for the plain-words version.
///
/// 1. Zone rules: from the data nodes (capacity > 0) per zone, the per-partition bounds `lower[z] ...
///    upper[z]` on how many replicas zone `z` may hold (``zoneRules(nodes:replicationFactor:)``).
/// 2. Quotas: the exact number of replica slots each node must end with: shares proportional to
///    capacity, clamped to one replica per partition, if they keep every zone within its bounds;
///    otherwise zone totals proportional to zone capacity clamped to the zone bounds, then node shares
///    within each zone; rounded to integers preferring the node's current count, so that rounding does
///    not shuffle slots on every change (``quotas(nodes:rules:partitionCount:current:)``).
/// 3. Assignment: keep the previous assignment, open holes where a node left or a rule is broken, then
///    greedily fill holes and shed excess slots directly to nodes below quota, and finish the rest with
///    shortest augmenting paths (``Assigner``).
/// 4. Relaxing: where the quotas forced chains of moves, exchanges that copy fewer partitions let nodes
///    end elsewhere in their band (within one slot of the exact share), or, while the copies exceed
///    1.2 × the ideal, within their tolerance (1/21 of the share) (``Assigner/relax(targets:ideal:)``).
enum Placement {
    /// The per-partition zone bounds of a set of nodes.
    struct ZoneRules: Sendable {
        /// Zone index of each node, or -1 for a node with capacity 0.
        var zoneOf: [Int]
        /// Number of data nodes in each zone (zones sorted by their UTF-8 name).
        var members: [Int]
        /// Most replicas of one partition a zone may hold.
        var upper: [Int]
        /// Fewest replicas of one partition a zone must hold.
        var lower: [Int]
        /// Replicas per partition: `min(N, data nodes)`.
        var replicaCount: Int

        var zoneCount: Int { members.count }
    }

    /// The placement result: replicas per partition and the partition-major node indexes.
    struct Result: Sendable {
        var replicaCount: Int
        var slots: [UInt16]
    }

    /// Computes the zone bounds.
    ///
    /// `upper[z] = min(members[z], c)` with `c` the smallest per-zone cap that still fits R replicas (1
    /// when there are at least R zones): replicas are spread as evenly over zones as the nodes allow.
    /// `lower[z]` is 1 when there are at most R zones (every zone holds a copy) and at least what the
    /// other zones cannot hold.
    static func zoneRules(nodes: [Ring.Node], replicationFactor: Int) -> ZoneRules {
        var names: [[UInt8]] = nodes.lazy.filter { $0.capacity > 0 }.map { Array($0.zone.utf8) }
        names.sort { $0.lexicographicallyPrecedes($1) }
        var zones: [[UInt8]] = []
        for name in names where zones.last != name { zones.append(name) }
        var index: [[UInt8]: Int] = [:]
        for (position, name) in zones.enumerated() { index[name] = position }

        var zoneOf = [Int](repeating: -1, count: nodes.count)
        var members = [Int](repeating: 0, count: zones.count)
        for (position, node) in nodes.enumerated() where node.capacity > 0 {
            let zone = index[Array(node.zone.utf8)]!
            zoneOf[position] = zone
            members[zone] += 1
        }
        let replicaCount = min(replicationFactor, names.count)
        var cap = 1
        while members.reduce(0, { $0 + min($1, cap) }) < replicaCount { cap += 1 }
        let upper = members.map { min($0, cap) }
        let upperSum = upper.reduce(0, +)
        let everyZone = zones.count <= replicaCount ? 1 : 0
        let lower = upper.map { max(everyZone, replicaCount - (upperSum - $0)) }
        return ZoneRules(zoneOf: zoneOf, members: members, upper: upper, lower: lower, replicaCount: replicaCount)
    }

    /// Each node's slot targets: the quota the greedy passes aim for, the rounding band around its exact
    /// share, and the wider tolerance that placement may use to avoid extra moves.
    struct Targets: Sendable {
        /// The integer target (within one slot of the exact share).
        var quota: [Int]
        /// The exact share rounded down and up: any count in this band is within one slot of the share.
        var bandLow: [Int]
        var bandHigh: [Int]
        /// The counts a node may end with when holding it there saves a move: the band widened to the
        /// counts within 1/21 (about 4.8 %) of the exact share. Equal to the quota for a node held at a
        /// bound (capped at one replica per partition, or a zone at its per-partition limit).
        var low: [Int]
        var high: [Int]
    }

    /// The number of replica slots each node should hold (0 for nodes of capacity 0), see ``Targets``.
    /// - Parameters:
    ///   - current: each node's slot count in the previous assignment, used to break rounding ties.
    static func quotas(nodes: [Ring.Node], rules: ZoneRules, partitionCount: Int, current: [Int]) -> [Int] {
        targets(nodes: nodes, rules: rules, partitionCount: partitionCount, current: current).quota
    }

    /// The slot targets of every node (all 0 for nodes of capacity 0).
    static func targets(nodes: [Ring.Node], rules: ZoneRules, partitionCount: Int, current: [Int]) -> Targets {
        let zoneCount = rules.zoneCount
        let zero = [Int](repeating: 0, count: nodes.count)
        var targets = Targets(quota: zero, bandLow: zero, bandHigh: zero, low: zero, high: zero)
        func record(_ node: Int, count: Int, share: Share) {
            targets.quota[node] = count
            guard share.denominator > 0 else {
                targets.bandLow[node] = count
                targets.bandHigh[node] = count
                targets.low[node] = count
                targets.high[node] = count
                return
            }
            let (num, den) = (share.numerator, share.denominator)
            let floor = Int(num / den)
            let ceil = floor + (num % den == 0 ? 0 : 1)
            targets.bandLow[node] = floor
            targets.bandHigh[node] = ceil
            // c within 1/21 of the share: 20·num/21 <= c·den <= 22·num/21.
            let lowest = Int((20 * num + 21 * den - 1) / (21 * den))
            let highest = Int(22 * num / (21 * den))
            targets.low[node] = max(0, min(floor, lowest))
            targets.high[node] = min(partitionCount, max(ceil, highest))
        }

        // When plain capacity-proportional shares already keep every zone within its bounds, round once
        // over all nodes (each quota within one slot of its exact share).
        let data = nodes.indices.filter { rules.zoneOf[$0] >= 0 }
        let direct = apportioned(
            total: rules.replicaCount * partitionCount, weights: data.map { UInt128(nodes[$0].capacity) },
            lower: [Int](repeating: 0, count: data.count),
            upper: [Int](repeating: partitionCount, count: data.count), current: data.map { current[$0] })
        var zoneSums = [Int](repeating: 0, count: zoneCount)
        for (position, node) in data.enumerated() { zoneSums[rules.zoneOf[node]] += direct.counts[position] }
        if zoneSums.indices.allSatisfy({
            (rules.lower[$0] * partitionCount...rules.upper[$0] * partitionCount).contains(zoneSums[$0])
        }) {
            for (position, node) in data.enumerated() {
                record(node, count: direct.counts[position], share: direct.shares[position])
            }
            return targets
        }

        // Otherwise the zone bounds bind: split the slots over zones first, then within each zone.
        var zoneWeight = [UInt128](repeating: 0, count: zoneCount)
        var zoneCurrent = [Int](repeating: 0, count: zoneCount)
        for (position, node) in nodes.enumerated() where rules.zoneOf[position] >= 0 {
            zoneWeight[rules.zoneOf[position]] += UInt128(node.capacity)
            zoneCurrent[rules.zoneOf[position]] += current[position]
        }
        let zoneTotals = apportion(
            total: rules.replicaCount * partitionCount, weights: zoneWeight,
            lower: rules.lower.map { $0 * partitionCount }, upper: rules.upper.map { $0 * partitionCount },
            current: zoneCurrent)

        for zone in 0..<zoneCount {
            let members = nodes.indices.filter { rules.zoneOf[$0] == zone }
            let shares = apportioned(
                total: zoneTotals[zone], weights: members.map { UInt128(nodes[$0].capacity) },
                lower: [Int](repeating: 0, count: members.count),
                upper: [Int](repeating: partitionCount, count: members.count),
                current: members.map { current[$0] })
            for (position, member) in members.enumerated() {
                record(member, count: shares.counts[position], share: shares.shares[position])
            }
        }
        return targets
    }

    /// An exact share `numerator / denominator`; denominator 0 means the value was fixed at a bound.
    struct Share: Sendable {
        var numerator: UInt128
        var denominator: UInt128
    }

    /// Splits `total` into integers proportional to `weights`, each within `lower[i] ... upper[i]`.
    ///
    /// Water-filling in exact arithmetic: find the scale at which the clamped proportional shares sum to
    /// `total` (fixing, each round, the side whose bound violations weigh more), then round the free
    /// shares down and give the leftover units to shares that are below their `current` value first, then
    /// to the largest fractional parts, then to the lowest index.
    /// - Precondition: `sum(lower) <= total <= sum(upper)`, and every weight > 0.
    static func apportion(total: Int, weights: [UInt128], lower: [Int], upper: [Int], current: [Int]) -> [Int] {
        apportioned(total: total, weights: weights, lower: lower, upper: upper, current: current).counts
    }

    /// ``apportion(total:weights:lower:upper:current:)`` plus the exact share behind each integer.
    static func apportioned(total: Int, weights: [UInt128], lower: [Int], upper: [Int], current: [Int])
        -> (counts: [Int], shares: [Share])
    {
        let count = weights.count
        var shares = [Share](repeating: Share(numerator: 0, denominator: 0), count: count)
        var result = [Int](repeating: 0, count: count)
        var fixed = [Bool](repeating: false, count: count)
        var remaining = total
        while true {
            var weight: UInt128 = 0
            for index in 0..<count where !fixed[index] { weight += weights[index] }
            if weight == 0 { break }
            let units = UInt128(max(remaining, 0))
            var over: UInt128 = 0
            var under: UInt128 = 0
            for index in 0..<count where !fixed[index] {
                let share = units * weights[index]
                let high = UInt128(upper[index]) * weight
                let low = UInt128(lower[index]) * weight
                if share > high { over += share - high } else if share < low { under += low - share }
            }
            if over == 0 && under == 0 { break }
            let fixHigh = over >= under
            for index in 0..<count where !fixed[index] {
                let share = units * weights[index]
                if fixHigh ? share > UInt128(upper[index]) * weight : share < UInt128(lower[index]) * weight {
                    fixed[index] = true
                    result[index] = fixHigh ? upper[index] : lower[index]
                    remaining -= result[index]
                }
            }
        }

        var weight: UInt128 = 0
        for index in 0..<count where !fixed[index] { weight += weights[index] }
        guard weight > 0 else { return (result, shares) }
        let units = UInt128(max(remaining, 0))
        var fractions: [(index: Int, remainder: UInt128)] = []
        var leftover = remaining
        for index in 0..<count where !fixed[index] {
            let share = units * weights[index]
            shares[index] = Share(numerator: share, denominator: weight)
            result[index] = Int(share / weight)
            leftover -= result[index]
            let remainder = share % weight
            if remainder > 0 { fractions.append((index, remainder)) }
        }
        fractions.sort { a, b in
            let stickyA = current[a.index] > result[a.index]
            let stickyB = current[b.index] > result[b.index]
            if stickyA != stickyB { return stickyA }
            if a.remainder != b.remainder { return a.remainder > b.remainder }
            return a.index < b.index
        }
        for fraction in fractions.prefix(max(leftover, 0)) { result[fraction.index] += 1 }
        return (result, shares)
    }

    /// Places the replicas of every partition on `nodes`, starting from `previous`'s assignment.
    /// - Parameters:
    ///   - nodes: the new node list, sorted by id.
    ///   - replicationFactor: N.
    ///   - partitionCount: 2^p; MUST equal `previous.partitionCount`.
    ///   - previous: the layout being changed (its assignment is kept where it can be).
    static func assign(nodes: [Ring.Node], replicationFactor: Int, partitionCount: Int, previous: Ring.Layout)
        -> Result
    {
        let rules = zoneRules(nodes: nodes, replicationFactor: replicationFactor)
        let replicas = rules.replicaCount
        guard replicas > 0 else { return Result(replicaCount: 0, slots: []) }

        // Old node index -> new node index (-1 when gone or holding nothing now).
        var remap = [Int](repeating: -1, count: previous.nodes.count)
        var cursor = 0
        for (oldIndex, old) in previous.nodes.enumerated() {
            while cursor < nodes.count && nodes[cursor].id < old.id { cursor += 1 }
            if cursor < nodes.count && nodes[cursor].id == old.id && rules.zoneOf[cursor] >= 0 {
                remap[oldIndex] = cursor
            }
        }
        let oldReplicas = previous.replicaCount
        var rows: [[Int]] = []
        rows.reserveCapacity(partitionCount)
        var current = [Int](repeating: 0, count: nodes.count)
        for partition in 0..<partitionCount {
            var row: [Int] = []
            row.reserveCapacity(max(oldReplicas, replicas))
            for slot in 0..<oldReplicas {
                let node = remap[Int(previous.slots[partition * oldReplicas + slot])]
                row.append(node)
                if node >= 0 { current[node] += 1 }
            }
            rows.append(row)
        }

        let targets = targets(nodes: nodes, rules: rules, partitionCount: partitionCount, current: current)
        let quota = targets.quota
        var assigner = Assigner(
            rules: rules, quota: quota, count: current,
            keys: nodes.map { Mixing.key(of: $0.id.rawValue.utf8) }, partitionCount: partitionCount,
            previous: rows)
        for partition in 0..<partitionCount {
            assigner.loadRow(rows[partition], partition: partition)
            assigner.repair(partition: partition)
        }
        // The copies this change needs at the least: every hole, and every slot a node lacks for its quota.
        let holes = assigner.slots.reduce(0) { $0 + ($1 < 0 ? 1 : 0) }
        let lacking = assigner.dataNodes.reduce(0) { $0 + max(0, quota[$1] - assigner.count[$1]) }
        assigner.fillHoles()
        assigner.shed()
        assigner.route()
        assigner.relax(targets: targets, ideal: max(holes, lacking))
        assert(assigner.isValid(), "placement broke a zone rule")
        return Result(replicaCount: replicas, slots: assigner.slots.map { UInt16($0) })
    }
}

extension Placement {
    /// The mutable state of one rebalance: the partition-major slot table (-1 is a hole) and live counts.
    struct Assigner {
        let partitionCount: Int
        let replicas: Int
        let zoneOf: [Int]
        let upper: [Int]
        let lower: [Int]
        /// Zones with a lower bound above 0 (few: at most R).
        let boundedZones: [Int]
        /// Data nodes, in index order.
        let dataNodes: [Int]
        let quota: [Int]
        let keys: [UInt64]
        /// The previous replicas of each partition (new node indexes, -1 for gone nodes).
        let previous: [[Int]]
        var count: [Int]
        var slots: [Int]

        init(rules: ZoneRules, quota: [Int], count: [Int], keys: [UInt64], partitionCount: Int, previous: [[Int]]) {
            self.partitionCount = partitionCount
            self.replicas = rules.replicaCount
            self.zoneOf = rules.zoneOf
            self.upper = rules.upper
            self.lower = rules.lower
            self.boundedZones = rules.lower.indices.filter { rules.lower[$0] > 0 }
            self.dataNodes = rules.zoneOf.indices.filter { rules.zoneOf[$0] >= 0 }
            self.quota = quota
            self.keys = keys
            self.previous = previous
            self.count = count
            self.slots = [Int](repeating: -1, count: partitionCount * rules.replicaCount)
        }

        // MARK: Comparisons

        /// Whether `a` holds more slots relative to its quota than `b` (count/quota, quota 0 = infinite).
        func isMoreLoaded(_ a: Int, than b: Int) -> Bool {
            count[a] * quota[b] > count[b] * quota[a]
        }

        /// Whether under-quota node `a` should get a slot of `partition` before under-quota node `b`:
        /// larger missing fraction of its quota first, then the lower fixed rank.
        func isHungrier(_ a: Int, than b: Int, partition: Int) -> Bool {
            let lhs = (quota[a] - count[a]) * quota[b]
            let rhs = (quota[b] - count[b]) * quota[a]
            if lhs != rhs { return lhs > rhs }
            let rankA = Mixing.score(partition: partition, key: keys[a])
            let rankB = Mixing.score(partition: partition, key: keys[b])
            if rankA != rankB { return rankA < rankB }
            return a < b
        }

        // MARK: Rules

        /// Whether node `node` may take slot `slot` of `partition` (replacing its occupant, if any) with the
        /// partition still completable under the zone rules.
        func canPlace(_ node: Int, partition: Int, slot: Int) -> Bool {
            let base = partition * replicas
            let zone = zoneOf[node]
            var sameZone = 1
            var holes = 0
            for other in 0..<replicas where other != slot {
                let occupant = slots[base + other]
                if occupant < 0 {
                    holes += 1
                } else if occupant == node {
                    return false
                } else if zoneOf[occupant] == zone {
                    sameZone += 1
                }
            }
            if sameZone > upper[zone] { return false }
            if boundedZones.isEmpty { return true }
            var missing = 0
            for bounded in boundedZones {
                var held = bounded == zone ? 1 : 0
                for other in 0..<replicas where other != slot {
                    let occupant = slots[base + other]
                    if occupant >= 0 && zoneOf[occupant] == bounded { held += 1 }
                }
                missing += max(0, lower[bounded] - held)
            }
            return missing <= holes
        }

        /// The number of replicas zone `zone` holds in `partition`.
        func held(zone: Int, partition: Int) -> Int {
            var held = 0
            for slot in 0..<replicas {
                let occupant = slots[partition * replicas + slot]
                if occupant >= 0 && zoneOf[occupant] == zone { held += 1 }
            }
            return held
        }

        /// Whether every partition is full and keeps the zone rules.
        func isValid() -> Bool {
            for partition in 0..<partitionCount {
                let row = slots[partition * replicas..<(partition + 1) * replicas]
                if row.contains(-1) || Set(row).count != replicas { return false }
                for zone in upper.indices {
                    let held = held(zone: zone, partition: partition)
                    if held > upper[zone] || held < lower[zone] { return false }
                }
            }
            return true
        }

        // MARK: Starting point

        /// Installs the previous replicas of `partition`, trimmed or padded with holes to R slots.
        ///
        /// When R shrank, holes go first, then the most loaded nodes (later slots on ties).
        mutating func loadRow(_ previous: [Int], partition: Int) {
            var row = previous
            while row.count > replicas {
                if let hole = row.lastIndex(of: -1) {
                    row.remove(at: hole)
                    continue
                }
                var victim = 0
                for position in row.indices where !isMoreLoaded(row[victim], than: row[position]) {
                    victim = position
                }
                count[row[victim]] -= 1
                row.remove(at: victim)
            }
            while row.count < replicas { row.append(-1) }
            for (slot, node) in row.enumerated() { slots[partition * replicas + slot] = node }
        }

        /// Opens holes in `partition` until its replicas can be completed within the zone rules: first
        /// replicas above a zone's upper bound, then replicas of over-represented zones while bounded zones
        /// lack more replicas than there are holes. The most loaded node goes first.
        mutating func repair(partition: Int) {
            let base = partition * replicas
            while true {
                var victim = -1
                for slot in 0..<replicas {
                    let node = slots[base + slot]
                    guard node >= 0, held(zone: zoneOf[node], partition: partition) > upper[zoneOf[node]] else {
                        continue
                    }
                    if victim < 0 || !isMoreLoaded(slots[base + victim], than: node) { victim = slot }
                }
                if victim < 0 {
                    var missing = 0
                    for zone in boundedZones {
                        missing += max(0, lower[zone] - held(zone: zone, partition: partition))
                    }
                    let holes = (0..<replicas).reduce(0) { $0 + (slots[base + $1] < 0 ? 1 : 0) }
                    guard missing > holes else { return }
                    for slot in 0..<replicas {
                        let node = slots[base + slot]
                        guard node >= 0, held(zone: zoneOf[node], partition: partition) > lower[zoneOf[node]] else {
                            continue
                        }
                        if victim < 0 || !isMoreLoaded(slots[base + victim], than: node) { victim = slot }
                    }
                }
                guard victim >= 0 else { return }
                count[slots[base + victim]] -= 1
                slots[base + victim] = -1
            }
        }

        // MARK: Greedy passes

        /// The node below quota that may take `slot` of `partition`, if any: one that held the partition in
        /// the previous layout (it still has the data) first, then the hungriest.
        /// - Parameter heldOnly: consider only nodes that held the partition before.
        func bestTaker(partition: Int, slot: Int, heldOnly: Bool = false) -> Int? {
            var best = -1
            var bestHeld = false
            let before = previous[partition]
            for node in dataNodes where count[node] < quota[node] && canPlace(node, partition: partition, slot: slot) {
                let held = before.contains(node)
                if heldOnly && !held { continue }
                if best < 0 || (held && !bestHeld)
                    || (held == bestHeld && isHungrier(node, than: best, partition: partition))
                {
                    best = node
                    bestHeld = held
                }
            }
            return best < 0 ? nil : best
        }

        /// Moves `slot` of `partition` to `node`, updating counts.
        mutating func give(partition: Int, slot: Int, to node: Int) {
            let index = partition * replicas + slot
            if slots[index] >= 0 { count[slots[index]] -= 1 }
            slots[index] = node
            count[node] += 1
        }

        /// Fills holes, in partition order, with the hungriest allowed node below quota.
        mutating func fillHoles() {
            for partition in 0..<partitionCount {
                for slot in 0..<replicas where slots[partition * replicas + slot] < 0 {
                    if let node = bestTaker(partition: partition, slot: slot) {
                        give(partition: partition, slot: slot, to: node)
                    }
                }
            }
        }

        /// Hands slots of nodes above quota straight to allowed nodes below quota; a node offers its
        /// partitions in its fixed rank order, so the partitions that leave it are spread pseudo-randomly.
        /// A first round gives only to nodes that held the partition before (no copy needed).
        mutating func shed() {
            for node in dataNodes where count[node] > quota[node] {
                var held: [(partition: Int, slot: Int, rank: UInt64)] = []
                for partition in 0..<partitionCount {
                    for slot in 0..<replicas where slots[partition * replicas + slot] == node {
                        held.append((partition, slot, Mixing.score(partition: partition, key: keys[node])))
                    }
                }
                held.sort { $0.rank != $1.rank ? $0.rank < $1.rank : $0.partition < $1.partition }
                for heldOnly in [true, false] {
                    for entry in held where slots[entry.partition * replicas + entry.slot] == node {
                        if count[node] <= quota[node] { break }
                        if let taker = bestTaker(partition: entry.partition, slot: entry.slot, heldOnly: heldOnly) {
                            give(partition: entry.partition, slot: entry.slot, to: taker)
                        }
                    }
                }
            }
        }

        // MARK: Augmenting paths

        /// Places what the greedy passes left (holes, excess slots) along the cheapest chains of moves
        /// ending at a node below quota. A hole that no chain can place goes to the least loaded allowed node; an
        /// excess no chain can shed stays (both only when the quotas cannot be met exactly).
        mutating func route() {
            var stuck = [Bool](repeating: false, count: zoneOf.count)
            var holeCursor = 0
            while true {
                while holeCursor < slots.count && slots[holeCursor] >= 0 { holeCursor += 1 }
                if holeCursor < slots.count {
                    if let path = cheapestPath(fromHole: holeCursor, orNode: -1) {
                        apply(path)
                    } else {
                        placeAnyway(hole: holeCursor)
                    }
                    continue
                }
                guard let node = dataNodes.first(where: { count[$0] > quota[$0] && !stuck[$0] }) else { return }
                if let path = cheapestPath(fromHole: -1, orNode: node) {
                    apply(path)
                } else {
                    stuck[node] = true
                }
            }
        }

        /// One step of a chain: `node` takes slot index `slot` (flat) from its occupant.
        struct Step { var node: Int; var slot: Int }

        /// The cheapest chain of moves from a hole (flat slot index) or from an over-quota node to a node
        /// below quota, by a 0-1 shortest-path search over nodes.
        ///
        /// An edge `a -> b` means b may take one of a's slots. Its cost is the number of replica copies it
        /// adds compared with the previous layout: 0 when b held that partition before or a only gained the
        /// slot in this rebalance (so reassigning it copies nothing extra), 1 otherwise. A chain never uses
        /// a partition twice, so its moves are independent.
        func cheapestPath(fromHole hole: Int, orNode start: Int) -> [Step]? {
            let nodeCount = zoneOf.count
            var held = [[Int]](repeating: [], count: nodeCount)
            for (index, node) in slots.enumerated() where node >= 0 { held[node].append(index) }
            // parent[n] = (previous node or -1 for the root, flat slot n takes or -1 at the root)
            var parent = [(node: Int, slot: Int)?](repeating: nil, count: nodeCount)
            var distance = [Int](repeating: Int.max, count: nodeCount)
            var settled = [Bool](repeating: false, count: nodeCount)
            var buckets: [[Int]] = [[], []]

            func path(to target: Int) -> [Step] {
                var steps: [Step] = []
                var node = target
                while let link = parent[node], link.slot >= 0 {
                    steps.append(Step(node: node, slot: link.slot))
                    if link.node < 0 { break }
                    node = link.node
                }
                return steps
            }
            func usesPartition(_ partition: Int, upTo node: Int) -> Bool {
                var node = node
                while let link = parent[node], link.slot >= 0 {
                    if link.slot / replicas == partition { return true }
                    if link.node < 0 { break }
                    node = link.node
                }
                return false
            }
            func relax(_ node: Int, cost: Int, link: (node: Int, slot: Int)) {
                guard cost < distance[node] else { return }
                distance[node] = cost
                parent[node] = link
                while buckets.count <= cost { buckets.append([]) }
                buckets[cost].append(node)
            }

            if hole >= 0 {
                let partition = hole / replicas
                for node in dataNodes where canPlace(node, partition: partition, slot: hole % replicas) {
                    relax(node, cost: previous[partition].contains(node) ? 0 : 1, link: (-1, hole))
                }
            } else {
                relax(start, cost: 0, link: (-1, -1))
            }
            var cost = 0
            while cost < buckets.count {
                var position = 0
                while position < buckets[cost].count {
                    let from = buckets[cost][position]
                    position += 1
                    if settled[from] || distance[from] != cost { continue }
                    settled[from] = true
                    if from != start && count[from] < quota[from] { return path(to: from) }
                    for index in held[from] {
                        let partition = index / replicas
                        if usesPartition(partition, upTo: from) { continue }
                        let freed = previous[partition].contains(from) ? 1 : 0
                        for node in dataNodes where !settled[node] {
                            guard canPlace(node, partition: partition, slot: index % replicas) else { continue }
                            let added = previous[partition].contains(node) ? 0 : 1
                            relax(node, cost: cost + max(0, added - (1 - freed)), link: (from, index))
                        }
                    }
                }
                cost += 1
            }
            return nil
        }

        /// Applies a chain found by ``cheapestPath(fromHole:orNode:)`` (last taker first).
        mutating func apply(_ path: [Step]) {
            for step in path { give(partition: step.slot / replicas, slot: step.slot % replicas, to: step.node) }
        }

        // MARK: Relaxing

        /// Saves copies by letting nodes end anywhere within their tolerance rather than exactly at their
        /// quota (``Targets``).
        ///
        /// Quotas fix which nodes get a rounded-up slot before placement, and zone rules fix how many
        /// replicas of each partition a zone may take, so meeting every quota exactly can need chains of
        /// moves (a node takes a freed slot and hands one of its own partitions on, which costs a second
        /// copy). This pass looks for exchanges "u gives partition x to a, a gives y to b, …, ending at
        /// v" (u loses a slot, v gains one, the others keep their counts) that copy fewer partitions,
        /// by a hop-limited Bellman-Ford search over nodes: a step costs +1 if its taker did not hold
        /// the partition before, -1 if its giver did not (handing a new copy back). An exchange is
        /// applied when it keeps u and v within one slot of their exact shares (the rounding band);
        /// beyond the band, up to the tolerance, only while the copies exceed 1.2 × `ideal`, the least
        /// widening first (squared distance to the band, so extra slots spread over many nodes).
        /// Runs only when placement copied more than `ideal`.
        /// - Parameter ideal: the fewest copies the change can need (holes, slots nodes lack).
        mutating func relax(targets: Targets, ideal: Int) {
            var copies = 0
            for index in slots.indices where !previous[index / replicas].contains(slots[index]) { copies += 1 }
            guard copies > ideal else { return }
            let budget = ideal + ideal / 5
            let nodes = dataNodes
            let n = nodes.count
            var position = [Int](repeating: -1, count: zoneOf.count)
            for (index, node) in nodes.enumerated() { position[node] = index }
            func penalty(_ node: Int, _ held: Int) -> Int {
                let gap = max(0, targets.bandLow[node] - held, held - targets.bandHigh[node])
                return gap * gap
            }
            let weight = 1 << 20  // one copy outweighs any penalty change
            let hops = min(n, 8)
            var attempts = 0
            while copies > ideal && attempts < 4 * (copies - ideal) + 8 {
                attempts += 1
                // edge[(x * n + y) * 3 + c + 1]: a flat slot x holds that y may take, changing copies by c
                // (the first such slot in partition order).
                var edge = [Int](repeating: -1, count: n * n * 3)
                var held = [[Int]](repeating: [], count: n)
                var fresh: [Int] = []
                for index in slots.indices {
                    let partition = index / replicas
                    held[position[slots[index]]].append(index)
                    if !previous[partition].contains(slots[index]) { fresh.append(index) }
                    // Takers that held the partition before: class -1 (new copy handed back) or 0.
                    let freed = previous[partition].contains(slots[index]) ? 0 : 1
                    let x = position[slots[index]]
                    for taker in previous[partition] where taker >= 0 {
                        let key = (x * n + position[taker]) * 3 + 1 - freed
                        if edge[key] < 0 && canPlace(taker, partition: partition, slot: index % replicas) {
                            edge[key] = index
                        }
                    }
                }
                // A new copy moving to another node that did not hold the partition: class 0.
                for index in fresh {
                    let partition = index / replicas
                    let x = position[slots[index]]
                    for (y, taker) in nodes.enumerated() where y != x && !previous[partition].contains(taker) {
                        let key = (x * n + y) * 3 + 1
                        if edge[key] < 0 && canPlace(taker, partition: partition, slot: index % replicas) {
                            edge[key] = index
                        }
                    }
                }
                // A kept replica moving to a node that did not hold the partition: class +1.
                for x in 0..<n {
                    for (y, taker) in nodes.enumerated() where y != x {
                        for index in held[x] {
                            let partition = index / replicas
                            guard previous[partition].contains(nodes[x]), !previous[partition].contains(taker) else {
                                continue
                            }
                            if canPlace(taker, partition: partition, slot: index % replicas) {
                                edge[(x * n + y) * 3 + 2] = index
                                break
                            }
                        }
                    }
                }
                // Layered Bellman-Ford: distance[k][y] = best cost of a k-step chain from some giver to y.
                let unreachable = Int.max / 4
                var distance = [[Int]](repeating: [Int](repeating: unreachable, count: n), count: hops + 1)
                var parent = [[Int]](repeating: [Int](repeating: -1, count: n), count: hops + 1)  // edge key
                for (x, node) in nodes.enumerated() where count[node] > targets.low[node] {
                    distance[0][x] = penalty(node, count[node] - 1) - penalty(node, count[node])
                }
                for k in 0..<hops {
                    for x in 0..<n where distance[k][x] < unreachable {
                        for y in 0..<n where y != x {
                            for c in -1...1 {
                                let key = (x * n + y) * 3 + c + 1
                                guard edge[key] >= 0 else { continue }
                                let cost = distance[k][x] + c * weight
                                if cost < distance[k + 1][y] {
                                    distance[k + 1][y] = cost
                                    parent[k + 1][y] = key
                                }
                            }
                        }
                    }
                }
                // Candidates: (total cost, hops, taker), best first; the first valid chain is applied.
                var candidates: [(cost: Int, k: Int, y: Int)] = []
                for k in 1...hops {
                    for (y, node) in nodes.enumerated() where distance[k][y] < unreachable && count[node] < targets.high[node] {
                        let cost = distance[k][y] + penalty(node, count[node] + 1) - penalty(node, count[node])
                        // An acceptable chain saves a copy and widens nothing, or we are over budget.
                        let saved = -((cost + weight / 2) >> 20)
                        let widening = cost + saved * weight
                        guard saved >= 1, widening <= 0 || copies > budget else { continue }
                        candidates.append((cost, k, y))
                    }
                }
                candidates.sort { ($0.cost, $0.k, $0.y) < ($1.cost, $1.k, $1.y) }
                // Apply the best valid chain, then any further ones that touch none of the nodes and
                // partitions already changed this round (their costs are still exact).
                var applied = false
                var touchedNode = [Bool](repeating: false, count: n)
                var touchedPartition = [Bool](repeating: false, count: partitionCount)
                for candidate in candidates {
                    if applied && candidate.cost > 0 && copies <= budget { break }
                    var steps: [Step] = []
                    var chainNodes = [candidate.y]
                    var chainPartitions: [Int] = []
                    var y = candidate.y
                    var valid = !touchedNode[candidate.y]
                    for k in stride(from: candidate.k, to: 0, by: -1) where valid {
                        let key = parent[k][y]
                        let x = key / 3 / n
                        let partition = edge[key] / replicas
                        if chainNodes.contains(x) || touchedNode[x] || chainPartitions.contains(partition)
                            || touchedPartition[partition]
                        {
                            valid = false
                            break
                        }
                        chainNodes.append(x)
                        chainPartitions.append(partition)
                        steps.append(Step(node: nodes[y], slot: edge[key]))
                        y = x
                    }
                    guard valid else { continue }
                    var saved = 0
                    for step in steps {
                        let partition = step.slot / replicas
                        let before = previous[partition]
                        saved += (before.contains(slots[step.slot]) ? 0 : 1) - (before.contains(step.node) ? 0 : 1)
                        give(partition: partition, slot: step.slot % replicas, to: step.node)
                    }
                    copies -= saved
                    applied = true
                    for x in chainNodes { touchedNode[x] = true }
                    for partition in chainPartitions { touchedPartition[partition] = true }
                    if copies <= ideal { break }
                }
                if !applied { return }
            }
        }

        /// Fills `hole` with the least loaded allowed node, whatever its quota.
        mutating func placeAnyway(hole: Int) {
            let partition = hole / replicas
            var best = -1
            for node in dataNodes where canPlace(node, partition: partition, slot: hole % replicas) {
                if best < 0 || isMoreLoaded(best, than: node) { best = node }
            }
            precondition(best >= 0, "no node can complete partition \(partition)")
            give(partition: partition, slot: hole % replicas, to: best)
        }
    }
}
