import Cluster
import Foundation
import StorageEngine
import TestSupport
import Testing

/// What a read answers when no copy of a block can be read: try again (503) while an owner that may
/// hold it is away, "missing" only when every owner answered that it has none.
@Suite struct BlockReadTests {
    static func removeBlockFiles(_ directory: TemporaryDirectory) throws -> Int {
        let root = directory.path + "/blocks"
        var removed = 0
        for prefix in try FileManager.default.contentsOfDirectory(atPath: root) {
            for name in try FileManager.default.contentsOfDirectory(atPath: root + "/" + prefix) where name.count == 64 {
                try FileManager.default.removeItem(atPath: root + "/" + prefix + "/" + name)
                removed += 1
            }
        }
        return removed
    }

    @Test func aBlockWhoseOwnersAreAwayIsRetryableAndOneNobodyHoldsIsMissing() async throws {
        let cluster = try await TestCluster(readQuorum: 1)
        try await cluster.stores[0].createBucket("b", owner: "root")
        var random = SeededBytes(seed: 9)
        let bytes = random.bytes(200_000)
        try await put(cluster.stores[0], "b", "k", bytes)
        #expect(try Self.removeBlockFiles(cluster.directories[0]) > 0)

        // The other owners are away: the block may exist, so the answer is "try again".
        cluster.stop(1)
        cluster.stop(2)
        do {
            _ = try await read(cluster.stores[0], "b", "k")
            Issue.record("a read without any reachable copy succeeded")
        } catch let error as StorageError {
            #expect(error.code == .quorumUnavailable)
        }
        // They are back: the read is served from their copies.
        cluster.start(1)
        cluster.start(2)
        #expect(try await read(cluster.stores[0], "b", "k") == bytes)

        // Every copy is gone: the block is missing.
        for index in 1..<3 { _ = try Self.removeBlockFiles(cluster.directories[index]) }
        do {
            _ = try await read(cluster.stores[0], "b", "k")
            Issue.record("a read of a block no node holds succeeded")
        } catch let error as StorageError {
            #expect(error.code == .missingBlock)
        }
        await cluster.shutdown()
    }
}
