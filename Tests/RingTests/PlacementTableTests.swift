import Ring
import Testing

/// One small layout and the exact slot counts it must produce (256 partitions).
struct PlacementCase: Sendable, CustomTestStringConvertible {
    var name: String
    var nodes: [Ring.Node]
    var replicas: Int
    var expected: [String: Int]

    var testDescription: String { name }
}

let placementCases: [PlacementCase] = [
    PlacementCase(name: "1 node, N=3", nodes: [node("a", "z1", 1)], replicas: 3, expected: ["a": 256]),
    PlacementCase(
        name: "2 nodes, 1 zone, N=3", nodes: [node("a", "z1", 1), node("b", "z1", 3)], replicas: 3,
        expected: ["a": 256, "b": 256]),
    PlacementCase(
        name: "3 nodes, 3 zones", nodes: [node("a", "z1", 1), node("b", "z2", 1), node("c", "z3", 1)],
        replicas: 3, expected: ["a": 256, "b": 256, "c": 256]),
    PlacementCase(
        name: "3 nodes, 1 zone, 1:2:3 (all capped at one replica per partition)",
        nodes: [node("a", "z1", 1), node("b", "z1", 2), node("c", "z1", 3)], replicas: 3,
        expected: ["a": 256, "b": 256, "c": 256]),
    PlacementCase(
        name: "3 nodes, 2 zones, N=3",
        nodes: [node("a", "z1", 1), node("b", "z1", 1), node("c", "z2", 1)], replicas: 3,
        expected: ["a": 256, "b": 256, "c": 256]),
    PlacementCase(
        name: "5 nodes, 1 zone, equal",
        nodes: (1...5).map { node("n\($0)", "z1", 2) }, replicas: 3,
        expected: ["n1": 154, "n2": 154, "n3": 154, "n4": 153, "n5": 153]),
    PlacementCase(
        name: "5 nodes, 2 zones (3+2), equal",
        nodes: [node("a", "z1", 1), node("b", "z1", 1), node("c", "z1", 1), node("d", "z2", 1), node("e", "z2", 1)],
        replicas: 3, expected: ["a": 154, "b": 154, "c": 154, "d": 153, "e": 153]),
    PlacementCase(
        name: "5 nodes, 3 zones (2+2+1), equal: a zone is a third whatever its capacity",
        nodes: [node("a", "z1", 1), node("b", "z1", 1), node("c", "z2", 1), node("d", "z2", 1), node("e", "z3", 1)],
        replicas: 3, expected: ["a": 128, "b": 128, "c": 128, "d": 128, "e": 256]),
    PlacementCase(
        name: "4 nodes, 4 zones, 4:1:1:1: the big node is capped",
        nodes: [node("a", "z1", 4), node("b", "z2", 1), node("c", "z3", 1), node("d", "z4", 1)], replicas: 3,
        expected: ["a": 256, "b": 171, "c": 171, "d": 170]),
    PlacementCase(
        name: "6 nodes, 3 zones, unequal within zones",
        nodes: [
            node("a", "z1", 4), node("b", "z1", 2), node("c", "z2", 3), node("d", "z2", 3), node("e", "z3", 1),
            node("f", "z3", 5),
        ], replicas: 3, expected: ["a": 171, "b": 85, "c": 128, "d": 128, "e": 43, "f": 213]),
    PlacementCase(
        name: "4 nodes, 2 zones, N=2",
        nodes: [node("a", "z1", 1), node("b", "z1", 1), node("c", "z2", 1), node("d", "z2", 1)], replicas: 2,
        expected: ["a": 128, "b": 128, "c": 128, "d": 128]),
    PlacementCase(
        name: "3 nodes, 1 zone, N=1, 1:2:5",
        nodes: [node("a", "z1", 1), node("b", "z1", 2), node("c", "z1", 5)], replicas: 1,
        expected: ["a": 32, "b": 64, "c": 160]),
    PlacementCase(
        name: "5 nodes, 2 zones, one node draining",
        nodes: [node("a", "z1", 1), node("b", "z1", 1), node("c", "z2", 1), node("d", "z2", 1), node("e", "z2", 0)],
        replicas: 3, expected: ["a": 192, "b": 192, "c": 192, "d": 192]),
]

@Suite struct PlacementTableTests {
    @Test(arguments: placementCases)
    func slotCountsAndZoneRules(_ testCase: PlacementCase) throws {
        let layout = try build(testCase.nodes, replicas: testCase.replicas)
        let table = layout.table
        let counts = slotCounts(table)
        #expect(counts == Dictionary(uniqueKeysWithValues: testCase.expected.map { (Ring.NodeID($0.key), $0.value) }))
        let rules = ExpectedZones(layout)
        #expect(table.replicaCount == min(testCase.replicas, testCase.expected.count))
        for partition in 0..<table.partitionCount {
            #expect(rules.allows(table.replicas(of: Ring.PartitionID(partition))))
        }
    }

    @Test func zoneSpreadWithFewerZonesThanReplicas() throws {
        // 2 zones, N=3: every partition has both zones, never more than 2 in one.
        let layout = try build([node("a", "z1", 1), node("b", "z1", 1), node("c", "z2", 1), node("d", "z2", 1)])
        let table = layout.table
        for partition in 0..<table.partitionCount {
            let zones = table.replicas(of: Ring.PartitionID(partition)).map { layout.node($0)!.zone }
            #expect(Set(zones).count == 2)
        }
    }

    @Test func emptyLayoutHasNoReplicas() throws {
        let table = try Ring.Layout().table
        #expect(table.partitionCount == 256)
        #expect(table.replicas(of: Ring.PartitionID(7)).isEmpty)
        #expect(table.handoffs(of: Ring.PartitionID(7)).isEmpty)
        #expect(table.partitions(of: "nobody").isEmpty)
    }

    @Test func partitionUsesTheTopBitsOfTheFirstFourBytes() throws {
        let hash: [UInt8] = [0xab, 0xcd, 0xef, 0x12, 0x99]
        #expect(try build([node("a", "z", 1)], power: 8).table.partition(for: hash) == Ring.PartitionID(0xab))
        #expect(try build([node("a", "z", 1)], power: 4).table.partition(for: hash) == Ring.PartitionID(0xa))
        #expect(try build([node("a", "z", 1)], power: 12).table.partition(for: hash) == Ring.PartitionID(0xabc))
        let table = try build([node("a", "z", 1)], power: 10).table
        #expect(table.partition(for: hash[...]) == Ring.PartitionID(0xabcd >> 6))
        #expect(table.partition(for: [0xff]) == Ring.PartitionID(0x3fc))  // short hash: zero-padded
        #expect(table.partition(for: []) == Ring.PartitionID(0))
        #expect(table.partition(for: [0xff, 0xff, 0xff, 0xff]) == Ring.PartitionID(1023))
    }
}
