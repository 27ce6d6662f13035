import Cluster
import Foundation
import Hashing
import NIOCore
import Replication
import Ring
import S3API
import StorageEngine
import Synchronization
import TestSupport
import Testing

/// The block files of a node, as paths.
private func blockFiles(_ directory: TemporaryDirectory) -> [String] {
    let root = directory.path + "/blocks"
    var files: [String] = []
    for prefix in (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? [] {
        for name in (try? FileManager.default.contentsOfDirectory(atPath: root + "/" + prefix)) ?? [] {
            files.append(root + "/" + prefix + "/" + name)
        }
    }
    return files.sorted()
}

/// The block files of `record` on a node, once they are all there (a write returns after W replicas;
/// the third copy lands a moment later).
private func allBlocks(_ record: ObjectRecord, on directory: TemporaryDirectory) async throws -> [String] {
    let names = Set(record.data.blocks.map(\.hex))
    for _ in 0..<500 {
        let files = blockFiles(directory)
        if Set(files.map { String($0.split(separator: "/").last!) }).isSuperset(of: names) { return files }
        try await Task.sleep(for: .milliseconds(10))
    }
    Issue.record("the blocks never all reached \(directory.path)")
    return blockFiles(directory)
}

private func flipLastByte(_ path: String) throws {
    var data = try Data(contentsOf: URL(fileURLWithPath: path))
    data[data.count - 1] ^= 0xFF
    try data.write(to: URL(fileURLWithPath: path))
}

private func hash(ofFile path: String) -> [UInt8] {
    Hex.decode(String(path.split(separator: "/").last!))!
}

@Suite struct ScrubClusterTests {
    @Test func damagedCopiesOnOneNodeAreReplacedFromAnother() async throws {
        let cluster = try await TestCluster()
        try await cluster.stores[0].createBucket("b", owner: "root")
        var random = SeededBytes(seed: 31)
        let bytes = random.bytes(300_000)
        let record = try await put(cluster.stores[1], "b", "k", bytes)
        let files = try await allBlocks(record, on: cluster.directories[0])
        #expect(files.count >= 4)
        // A flipped last byte in one file, a damaged header in another, one cut short.
        try flipLastByte(files[0])
        var header = try Data(contentsOf: URL(fileURLWithPath: files[1]))
        header[0] ^= 0xFF
        header[9] ^= 0xFF  // the size field as well: the node no longer knows the block's size
        try header.write(to: URL(fileURLWithPath: files[1]))
        try Data(contentsOf: URL(fileURLWithPath: files[2])).prefix(40).write(to: URL(fileURLWithPath: files[2]))

        let scrubber = Scrubber(store: cluster.stores[0])
        var reported: [Scrub.Outcome] = []
        try await scrubber.runPass(outcome: { reported.append($0) })
        let statistics = scrubber.current
        #expect(statistics.blocksChecked == files.count)
        #expect(statistics.corruptions == 3)
        #expect(statistics.repaired == 3)
        #expect(statistics.passes == 1 && statistics.progress == 1)
        #expect(reported.count == 3)
        for outcome in reported {
            guard case .repaired(let damage, let quarantined) = outcome else {
                Issue.record("not repaired: \(outcome)")
                continue
            }
            #expect(FileManager.default.fileExists(atPath: quarantined))
            #expect(files.prefix(3).contains { $0.hasSuffix(damage.hex) })
        }
        for file in files {
            guard case .intact = try await cluster.engines[0].checkBlock(hash(ofFile: file)) else {
                Issue.record("\(file) is not intact after the scrub")
                continue
            }
        }
        // Node 0 alone serves the object from its own, repaired copies.
        cluster.stop(1)
        cluster.stop(2)
        let alone = ClusterStore(
            engine: cluster.engines[0],
            replicator: Replicator(
                view: cluster.views[0], transport: cluster.network, policy: try Replication.QuorumPolicy(replicas: 3, writeQuorum: 1, readQuorum: 1)))
        #expect(try await read(alone, "b", "k") == bytes)
        // A second pass finds nothing.
        try await scrubber.runPass()
        #expect(scrubber.current.corruptions == 3 && scrubber.current.passes == 2)
        #expect(scrubber.prometheusMetrics().contains("cloud_scrub_repaired_total 3\n"))
        await cluster.shutdown()
    }

    @Test func aBlockDamagedOnEveryNodeIsQuarantinedAndReported() async throws {
        let cluster = try await TestCluster()
        try await cluster.stores[0].createBucket("b", owner: "root")
        var random = SeededBytes(seed: 32)
        let record = try await put(cluster.stores[0], "b", "k", random.bytes(100_000))
        for directory in cluster.directories { _ = try await allBlocks(record, on: directory) }
        let victim = try #require(blockFiles(cluster.directories[0]).first)
        let name = String(victim.split(separator: "/").last!)
        for directory in cluster.directories {
            let path = directory.path + "/blocks/" + name.prefix(2) + "/" + name
            if FileManager.default.fileExists(atPath: path) { try flipLastByte(path) }
        }
        let scrubber = Scrubber(store: cluster.stores[0])
        var reported: [Scrub.Outcome] = []
        try await scrubber.runPass(outcome: { reported.append($0) })
        #expect(scrubber.current.corruptions == 1 && scrubber.current.repaired == 0 && scrubber.current.unrepairable == 1)
        guard reported.count == 1, case .unrepairable(let damage, let quarantined?, nil) = reported[0] else {
            Issue.record("expected one unrepairable block, got \(reported)")
            return
        }
        #expect(damage.hex == name)
        #expect(!FileManager.default.fileExists(atPath: victim))
        #expect(FileManager.default.fileExists(atPath: quarantined))
        await cluster.shutdown()
    }
}

@Suite struct DiskStateTests {
    @Test func classification() {
        #expect(DiskState.classify(freeBytes: 1 << 30, readOnly: false, minFreeBytes: 256 << 20) == .ok)
        #expect(DiskState.classify(freeBytes: 256 << 20, readOnly: false, minFreeBytes: 256 << 20) == .ok)
        #expect(DiskState.classify(freeBytes: (256 << 20) - 1, readOnly: false, minFreeBytes: 256 << 20) == .full)
        #expect(DiskState.classify(freeBytes: 0, readOnly: true, minFreeBytes: 256 << 20) == .readOnly)
        #expect(DiskState.classify(freeBytes: 1 << 40, readOnly: true, minFreeBytes: 0) == .readOnly)
        #expect(DiskState.allCases.map(\.rawValue) == [0, 1, 2])
        #expect(DiskState.allCases.map(\.description) == ["ok", "full", "readonly"])
        #expect(DiskState.allCases.map(\.takesWrites) == [true, false, false])
    }

    @Test func theAnnouncerPublishesChangesAndOutranksItsOwnOlderEntries() {
        var announcer = DiskStateAnnouncer(node: "n1")
        // The first check is always announced (it replaces what the node said before a restart).
        let first = announcer.localState(.ok, nowMicroseconds: 1_000)
        #expect(first == .init(key: "disk/n1", version: 1_000, bytes: [0]))
        #expect(announcer.localState(.ok, nowMicroseconds: 2_000) == nil)
        // Our own entry echoed back: nothing to do.
        #expect(announcer.heard(version: 1_000, bytes: [0]) == nil)
        #expect(announcer.localState(.full, nowMicroseconds: 3_000) == .init(key: "disk/n1", version: 3_000, bytes: [1]))
        // A change within the same microsecond still gets a higher version.
        #expect(announcer.localState(.readOnly, nowMicroseconds: 3_000) == .init(key: "disk/n1", version: 3_001, bytes: [2]))
        // Older entries lose by themselves.
        #expect(announcer.heard(version: 2_000, bytes: [1]) == nil)
        // A newer entry that says something else (published before a restart with a clock ahead): answered.
        #expect(announcer.heard(version: 9_000, bytes: [0]) == .init(key: "disk/n1", version: 9_001, bytes: [2]))
        // A newer entry that says what we say: adopted, and later versions go above it.
        #expect(announcer.heard(version: 12_000, bytes: [2]) == nil)
        #expect(announcer.localState(.ok, nowMicroseconds: 5_000) == .init(key: "disk/n1", version: 12_001, bytes: [0]))
        // An entry from before a restart heard before the first check: the first announcement outranks it.
        var restarted = DiskStateAnnouncer(node: "n1")
        #expect(restarted.heard(version: 50_000, bytes: [1]) == nil)
        #expect(restarted.localState(.ok, nowMicroseconds: 40_000) == .init(key: "disk/n1", version: 50_001, bytes: [0]))
        #expect(DiskStateAnnouncer.node(fromKey: "disk/n1") == "n1")
        #expect(DiskStateAnnouncer.node(fromKey: "layout") == nil)
        #expect(DiskStateAnnouncer.decode([1]) == .full)
        #expect(DiskStateAnnouncer.decode([7]) == nil && DiskStateAnnouncer.decode([]) == nil)
    }

    @Test func thePacerSpacesReadsToTheRate() {
        let start = ContinuousClock.now
        var pacer = Pacer<ContinuousClock.Instant>(bytesPerSecond: 1000)
        // One second's worth goes at once, then each read waits for its share.
        #expect(pacer.consumed(1000, now: start) == .zero)
        #expect(pacer.consumed(500, now: start) == .milliseconds(500))
        #expect(pacer.consumed(500, now: start + .milliseconds(500)) == .milliseconds(500))
        // After a long idle time the bucket holds at most one second.
        #expect(pacer.consumed(1000, now: start + .seconds(100)) == .zero)
        #expect(pacer.consumed(1000, now: start + .seconds(100)) == .seconds(1))
    }

    /// Node `index` reports `state` to everyone (as gossip would) and its handler answers accordingly.
    /// - Returns: how many write calls reached the node's handler since.
    @discardableResult
    private func setDisk(_ cluster: TestCluster, _ index: Int, _ state: DiskState) -> Counter {
        for view in cluster.views { view.setDiskState(cluster.ids[index], state) }
        let writes = Counter()
        cluster.network.handlers.withLock {
            $0[cluster.ids[index]] = ClusterRequestHandler(
                engine: cluster.engines[index], node: cluster.ids[index],
                diskState: {
                    writes.value.withLock { $0 += 1 }
                    return state
                })
        }
        return writes
    }

    final class Counter: Sendable {
        let value = Mutex(0)
    }

    @Test func aFullNodeRefusesWritesButServesReads() async throws {
        let cluster = try await TestCluster()
        try await cluster.stores[0].createBucket("b", owner: "root")
        self.setDisk(cluster, 1, .full)
        let handler = try #require(cluster.network.handlers.withLock { $0[cluster.ids[1]] })
        let error = await #expect(throws: WriteRefused.self) {
            try await handler.handle(method: ClusterMethod.applyRecords, body: ByteBuffer(bytes: [0, 0, 0, 0]))
        }
        #expect(error?.description.contains("disk is full") == true)
        #expect(error?.code == "DiskFull")
        await #expect(throws: WriteRefused.self) { try await handler.handle(method: ClusterMethod.putBlock, body: ByteBuffer(bytes: [1])) }
        // Reads still work: the bucket record is there.
        #expect(try await cluster.stores[1].bucket("b") != nil)
        self.setDisk(cluster, 1, .readOnly)
        let readOnly = try #require(cluster.network.handlers.withLock { $0[cluster.ids[1]] })
        let refused = await #expect(throws: WriteRefused.self) {
            try await readOnly.handle(method: ClusterMethod.hintBlock, body: ByteBuffer(bytes: [0, 0, 0, 1, 65, 1]))
        }
        #expect(refused?.code == "DiskReadOnly")
        await cluster.shutdown()
    }

    @Test func writesSkipAnOwnerWhoseDiskIsFullAndHandItBackLater() async throws {
        let cluster = try await TestCluster(count: 4)
        let table = try #require(cluster.views[0].table)
        let owners = table.replicas(of: table.partition(for: Digests.sha256(Array("b".utf8)))).map(\.rawValue)
        let full = try #require(cluster.ids.firstIndex(of: owners[0]))
        let coordinator = try #require(cluster.ids.indices.first { $0 != full })
        try await cluster.stores[coordinator].createBucket("b", owner: "root")
        let writes = self.setDisk(cluster, full, .full)
        var random = SeededBytes(seed: 41)
        let bytes = random.bytes(200_000)
        try await put(cluster.stores[coordinator], "b", "k", bytes)
        // The full owner got nothing; a handoff node holds hints for it.
        #expect(try cluster.engines[full].record(table: 2, partitionKey: Array("b".utf8), sortKey: Array("k".utf8)) == nil)
        // (Hinted copies are sent beside the owners' copies; the write may return before they land.)
        var held = 0
        for _ in 0..<500 where held == 0 {
            for (index, engine) in cluster.engines.enumerated() where index != full {
                held += try await engine.hints(limit: 100).filter { $0.owner == owners[0] }.count
            }
            if held == 0 { try await Task.sleep(for: .milliseconds(10)) }
        }
        #expect(held >= 1)
        // The coordinator skipped it: no write call reached it (to be refused).
        #expect(writes.value.withLock { $0 } == 0)
        // Reads go on through the full node as coordinator.
        #expect(try await read(cluster.stores[full], "b", "k") == bytes)
        // Hints wait while the owner is full, and reach it once it has space again.
        for (index, view) in cluster.views.enumerated() where index != full {
            #expect(try await HintReplayer(engine: cluster.engines[index], view: view, transport: cluster.network).replay() == 0)
        }
        self.setDisk(cluster, full, .ok)
        for (index, view) in cluster.views.enumerated() where index != full {
            let replayer = HintReplayer(engine: cluster.engines[index], view: view, transport: cluster.network)
            for _ in 0..<100 where try await cluster.engines[index].hintCount() > 0 {
                try await replayer.replay()
                try await Task.sleep(for: .milliseconds(10))
            }
            #expect(try await cluster.engines[index].hintCount() == 0)
        }
        #expect(try cluster.engines[full].record(table: 2, partitionKey: Array("b".utf8), sortKey: Array("k".utf8)) != nil)
        await cluster.shutdown()
    }

    @Test func withFewerThanWWritableOwnersAWriteFailsBeforeAnythingIsSent() async throws {
        let cluster = try await TestCluster(count: 4)
        let table = try #require(cluster.views[0].table)
        let owners = table.replicas(of: table.partition(for: Digests.sha256(Array("b".utf8)))).map(\.rawValue)
        let coordinator = try #require(cluster.ids.indices.first { !owners.contains(cluster.ids[$0]) })
        try await cluster.stores[coordinator].createBucket("b", owner: "root")
        self.setDisk(cluster, try #require(cluster.ids.firstIndex(of: owners[0])), .full)
        self.setDisk(cluster, try #require(cluster.ids.firstIndex(of: owners[1])), .readOnly)
        let error = await #expect(throws: StorageError.self) {
            try await put(cluster.stores[coordinator], "b", "small", Array("tiny".utf8))
        }
        #expect(error?.code == .quorumUnavailable)
        for engine in cluster.engines {
            #expect(try engine.record(table: 2, partitionKey: Array("b".utf8), sortKey: Array("small".utf8)) == nil)
        }
        var hinted = 0
        for engine in cluster.engines { hinted += try await engine.hintCount() }
        #expect(hinted == 0, "a write that cannot reach W owners leaves no hints")
        await cluster.shutdown()
    }
}
