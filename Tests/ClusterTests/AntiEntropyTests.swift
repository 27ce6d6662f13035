import Cluster
import Foundation
import Hashing
import NIOCore
import Replication
import Ring
import S3API
import StorageEngine
import TestSupport
import Testing

/// Anti-entropy and rebalancing between in-process nodes (``TestCluster``), driven round by round.
@Suite(.serialized) struct AntiEntropyTests {
    static let power = 6

    /// Every partition's record and block summaries on each engine, to compare replicas.
    static func summaries(_ engine: StorageEngine, partitions: [Int]) async throws -> [[PartitionSummary]] {
        var result: [[PartitionSummary]] = []
        for partition in partitions {
            let range = PartitionRange(partition: partition, power: Self.power)
            result.append([try await engine.recordSummary(range), try await engine.blockSummary(range)])
        }
        return result
    }

    static func antiEntropy(_ cluster: TestCluster, _ index: Int) -> AntiEntropy {
        var settings = AntiEntropy.Settings()
        settings.pageSize = 7  // many pages even with few records
        settings.batchSize = 5
        return AntiEntropy(engine: cluster.engines[index], view: cluster.views[index], transport: cluster.network, settings: settings)
    }

    @Test func aReplicaThatMissedWritesAndDeletesGetsThemBack() async throws {
        let cluster = try await TestCluster()
        var random = SeededBytes(seed: 11)
        try await cluster.stores[0].createBucket("b", owner: "root")
        var expected: [String: [UInt8]] = [:]
        for index in 0..<10 {
            expected["old\(index)"] = random.bytes(index % 2 == 0 ? 100 : 150_000)
            try await put(cluster.stores[index % 2], "b", "old\(index)", expected["old\(index)"]!)
        }
        cluster.stop(2)
        for index in 0..<12 {
            expected["new\(index)"] = random.bytes(index % 3 == 0 ? 200_000 : 300)
            try await put(cluster.stores[index % 2], "b", "new\(index)", expected["new\(index)"]!)
        }
        for index in 0..<4 {
            try await cluster.stores[0].deleteObject(bucket: "b", key: "old\(index)")
            expected["old\(index)"] = nil
        }
        cluster.start(2)
        let all = Array(0..<(1 << Self.power))
        #expect(try await Self.summaries(cluster.engines[2], partitions: all) != Self.summaries(cluster.engines[0], partitions: all))

        let repair = Self.antiEntropy(cluster, 2)
        try await repair.round()
        #expect(repair.progress.partitionsOutOfSync > 0)
        #expect(repair.progress.recordsRepaired >= 16)  // 12 writes and 4 tombstones
        #expect(repair.progress.blocksRepaired > 0)
        for index in 0..<2 {
            #expect(try await Self.summaries(cluster.engines[2], partitions: all) == Self.summaries(cluster.engines[index], partitions: all))
        }
        // A second round finds nothing to do.
        try await repair.round()
        #expect(repair.progress.partitionsOutOfSync == 0)

        // The repaired node alone serves everything: the others are gone, it reads with R=1.
        cluster.stop(0)
        cluster.stop(1)
        let alone = try ClusterStore(
            engine: cluster.engines[2],
            replicator: Replicator(view: cluster.views[2], transport: cluster.network, policy: .init(replicas: 3, writeQuorum: 1, readQuorum: 1)))
        for (key, bytes) in expected {
            #expect(try await read(alone, "b", key) == bytes, "\(key)")
        }
        for index in 0..<4 {
            #expect(try await alone.object(bucket: "b", key: "old\(index)") == nil)
        }
        await cluster.shutdown()
    }

    @Test func everyOwnerPullsWhatItLacksAndAllConverge() async throws {
        let cluster = try await TestCluster()
        try await cluster.stores[0].createBucket("b", owner: "root")
        var random = SeededBytes(seed: 3)
        // node1 misses the first write, node2 the second: each owner pulls what it lacks from the others,
        // so rounds on all three bring every replica to the union.
        cluster.stop(1)
        let first = random.bytes(90_000)
        try await put(cluster.stores[0], "b", "first", first)
        cluster.start(1)
        cluster.stop(2)
        let second = random.bytes(90_000)
        try await put(cluster.stores[1], "b", "second", second)
        cluster.start(2)
        for index in 0..<3 { try await Self.antiEntropy(cluster, index).round() }
        let all = Array(0..<(1 << Self.power))
        let reference = try await Self.summaries(cluster.engines[0], partitions: all)
        for index in 1..<3 { #expect(try await Self.summaries(cluster.engines[index], partitions: all) == reference) }
        await cluster.shutdown()
    }

    @Test func aNewNodeReceivesItsPartitionsAndOldOwnersDropThemOnlyAfterwards() async throws {
        let cluster = try await TestCluster(count: 4, inLayout: 3)
        try await cluster.stores[0].createBucket("photos", owner: "root")
        var random = SeededBytes(seed: 5)
        var expected: [String: [UInt8]] = [:]
        for index in 0..<40 {
            let key = "k\(index)"
            expected[key] = random.bytes(index % 4 == 0 ? 130_000 : 2000)
            try await put(cluster.stores[index % 3], "photos", key, expected[key]!)
        }
        var stored = 0
        for index in 0..<3 {
            stored += try await cluster.engines[index].blockHoldings(power: Self.power).values.reduce(0) { $0 + $1.bytes }
        }

        // Add node3 to the layout everywhere.
        let old = try #require(cluster.views[0].layout)
        let new = try old.applying([.add(Ring.Node(id: Ring.NodeID("node3"), zone: "z3", capacity: 1 << 40))])
        for view in cluster.views { view.install(new) }
        let table = try #require(cluster.views[0].table)

        // While node3 is unreachable, nobody drops anything.
        cluster.stop(3)
        let repairs = (0..<4).map { Self.antiEntropy(cluster, $0) }
        for index in 0..<3 { try await repairs[index].round() }
        #expect(repairs[0...2].reduce(0) { $0 + $1.progress.partitionsToMove } > 0)
        #expect(repairs[0...2].allSatisfy { $0.progress.partitionsHandedOver == 0 })

        cluster.start(3)
        for _ in 0..<2 {
            for repair in repairs { try await repair.round() }
        }
        for (index, engine) in cluster.engines.enumerated() {
            #expect(repairs[index].progress.partitionsToMove == 0)
            // Every node holds only partitions it owns.
            let owned = Set(table.partitions(of: Ring.NodeID("node\(index)")).map { Int($0.rawValue) })
            let held = Set(try await engine.recordHoldings(power: Self.power).keys).union(try await engine.blockHoldings(power: Self.power).keys)
            #expect(held.isSubset(of: owned), "node\(index) holds partitions it does not own")
        }
        // Every owner of every partition holds the same records and blocks.
        for partition in 0..<(1 << Self.power) {
            let owners = table.replicas(of: Ring.PartitionID(rawValue: UInt32(partition))).map { Int($0.rawValue.dropFirst(4))! }
            let reference = try await Self.summaries(cluster.engines[owners[0]], partitions: [partition])
            for owner in owners.dropFirst() {
                #expect(try await Self.summaries(cluster.engines[owner], partitions: [partition]) == reference)
            }
        }
        for (key, bytes) in expected {
            #expect(try await read(cluster.stores[3], "photos", key) == bytes, "\(key)")
        }
        // The moved bytes are the new node's share: a quarter of what the three held (blocks only,
        // as stored), give or take the partitions' imbalance.
        // Each transfer counts once, on the node that pushed or pulled it.
        let moved = repairs.reduce(0) { $0 + $1.progress.bytesRepaired }
        let holdings = try await cluster.engines[3].blockHoldings(power: Self.power).values
        let received = holdings.reduce(0) { $0 + $1.bytes }
        let headers = holdings.reduce(0) { $0 + $1.count } * 16
        #expect(received > 0)
        // What node3 holds came over once: co-owners pushed it in their exchange, or the old owner
        // handed it over, not both.
        #expect(moved + headers >= received)
        #expect(Double(moved) <= Double(received) * 1.1)
        #expect(Double(received) > Double(stored) / 4 * 0.5 && Double(received) < Double(stored) / 4 * 1.5)
        await cluster.shutdown()
    }

    @Test func oldOwnersPushWhatNewOwnersDoNotPullAfterAFewRoundsWithoutProgress() async throws {
        let cluster = try await TestCluster(count: 4, inLayout: 3)
        try await cluster.stores[0].createBucket("b", owner: "root")
        var random = SeededBytes(seed: 21)
        var expected: [String: [UInt8]] = [:]
        for index in 0..<24 {
            expected["k\(index)"] = random.bytes(index % 3 == 0 ? 90_000 : 700)
            try await put(cluster.stores[index % 3], "b", "k\(index)", expected["k\(index)"]!)
        }
        let new = try #require(cluster.views[0].layout).applying([.add(Ring.Node(id: Ring.NodeID("node3"), zone: "z3", capacity: 1 << 40))])
        for view in cluster.views { view.install(new) }
        let table = try #require(cluster.views[0].table)
        // node3 never runs a round (its repair is off): the old owners wait, then push and drop.
        let repairs = (0..<3).map { Self.antiEntropy(cluster, $0) }
        for _ in 0..<6 {
            for repair in repairs { try await repair.round() }
        }
        for (index, repair) in repairs.enumerated() {
            #expect(repair.progress.partitionsToMove == 0, "node\(index)")
            let owned = Set(table.partitions(of: Ring.NodeID("node\(index)")).map { Int($0.rawValue) })
            let held = Set(try await cluster.engines[index].recordHoldings(power: Self.power).keys)
                .union(try await cluster.engines[index].blockHoldings(power: Self.power).keys)
            #expect(held.isSubset(of: owned), "node\(index) holds partitions it does not own")
        }
        #expect(repairs.reduce(0) { $0 + $1.progress.bytesHandedOver } > 0)
        for (key, bytes) in expected {
            #expect(try await read(cluster.stores[3], "b", key) == bytes, "\(key)")
        }
        await cluster.shutdown()
    }

    @Test func malformedRepairCallsAreRefusedWithoutHarm() async throws {
        let cluster = try await TestCluster(count: 1, replicas: 1, writeQuorum: 1, readQuorum: 1)
        try await cluster.stores[0].createBucket("b", owner: "root")
        try await put(cluster.stores[0], "b", "k", Array(repeating: 7, count: 100_000))
        let handler = ClusterRequestHandler(engine: cluster.engines[0])
        func body(_ bytes: [UInt8]) -> ByteBuffer { ByteBuffer(bytes: bytes) }
        let u32: (UInt32) -> [UInt8] = { value in (0..<4).map { UInt8(truncatingIfNeeded: value >> (24 - 8 * $0)) } }
        // Valid calls first: they answer.
        let summaries = [6] + u32(2) + u32(0) + u32(63)
        let keys = [0] + u32(0) + u32(UInt32.max) + u32(100) + [0, 0, 0]
        let fetch = u32(0)
        for (method, valid) in [(ClusterMethod.summaries, summaries), (ClusterMethod.partitionKeys, keys), (ClusterMethod.fetchRecords, fetch)] {
            _ = try await handler.handle(method: method, body: body(valid))
            // Every truncation and an extra byte are refused.
            for length in 0..<valid.count {
                await #expect(throws: (any Error).self) { try await handler.handle(method: method, body: body(Array(valid[0..<length]))) }
            }
            await #expect(throws: (any Error).self) { try await handler.handle(method: method, body: body(valid + [0])) }
        }
        // Out-of-range values.
        await #expect(throws: ClusterError.self) { try await handler.handle(method: ClusterMethod.summaries, body: body([17] + u32(1) + u32(0))) }
        await #expect(throws: ClusterError.self) { try await handler.handle(method: ClusterMethod.summaries, body: body([6] + u32(1) + u32(64))) }
        await #expect(throws: ClusterError.self) { try await handler.handle(method: ClusterMethod.summaries, body: body([6] + u32(UInt32.max))) }
        await #expect(throws: ClusterError.self) {
            try await handler.handle(method: ClusterMethod.partitionKeys, body: body([9] + u32(0) + u32(1) + u32(1) + [0, 0, 0]))
        }
        await #expect(throws: ClusterError.self) {
            try await handler.handle(method: ClusterMethod.partitionKeys, body: body([0] + u32(5) + u32(1) + u32(1) + [0, 0, 0]))
        }
        await #expect(throws: ClusterError.self) { try await handler.handle(method: ClusterMethod.fetchRecords, body: body(u32(UInt32.max))) }
        // The node still serves.
        #expect(try await read(cluster.stores[0], "b", "k") == Array(repeating: 7, count: 100_000))
        await cluster.shutdown()
    }
}
