import Cluster
import Foundation
import Hashing
import NIOCore
import Ring
import S3API
import StorageEngine
import Synchronization
import TestSupport
import Testing

/// One collector per node of a test cluster, all on one manual clock that starts at the real time
/// (block files get real modification times).
struct Collectors {
    let cluster: TestCluster
    let clock: ManualClock
    let collectors: [GarbageCollector]
    static let grace: Duration = .seconds(3600)

    init(_ cluster: TestCluster, uploadExpiry: Duration = .seconds(7 * 86_400)) {
        self.cluster = cluster
        let clock = ManualClock(milliseconds: UInt64(Date().timeIntervalSince1970 * 1000))
        self.clock = clock
        var configuration = GarbageCollector.Configuration()
        configuration.grace = Self.grace
        configuration.uploadExpiry = uploadExpiry
        self.collectors = cluster.stores.map { store in
            GarbageCollector(store: store, configuration: configuration, nowMilliseconds: { clock.milliseconds })
        }
    }

    /// Moves past the grace period.
    func pastGrace() { self.clock.advance(by: Self.grace + .seconds(60)) }

    /// Runs a pass on the given nodes (default: all), one after the other.
    @discardableResult
    func run(_ nodes: [Int]? = nil) async throws -> [GarbageCollector.Report] {
        var reports: [GarbageCollector.Report] = []
        for index in nodes ?? Array(self.collectors.indices) { reports.append(try await self.collectors[index].run()) }
        return reports
    }
}

extension TestCluster {
    /// The block files of every node: node index → hashes.
    func blockFiles() async throws -> [Set<[UInt8]>] {
        var result: [Set<[UInt8]>] = []
        for engine in self.engines { result.append(Set(try await engine.blockFiles().map(\.hash))) }
        return result
    }

    /// The nodes that own a block (its hash's partition).
    func owners(of ref: BlockRef) -> [Int] {
        let table = self.views[0].table!
        return table.replicas(of: table.partition(for: ref.hash)).map { id in self.ids.firstIndex(of: id.rawValue)! }
    }

    /// Waits until every reachable owner of every block holds it (writes return after W of N).
    func settle(_ refs: [BlockRef]) async throws {
        for _ in 0..<500 {
            var missing = false
            for ref in refs {
                for owner in self.owners(of: ref) where !self.network.down.withLock({ $0.contains(self.ids[owner]) }) {
                    if try await self.engines[owner].loadBlock(ref) == nil { missing = true }
                }
            }
            if !missing { return }
            try await Task.sleep(for: .milliseconds(10))
        }
        Issue.record("blocks did not reach all their owners")
    }

    /// Waits until every reachable owner holds the record of `key` at least at `timestamp`.
    func settleRecord(table: UInt8, bucket: String, key: String, timestamp: HybridTimestamp) async throws {
        let owners = self.views[0].table!.replicas(of: self.views[0].table!.partition(for: Digests.sha256(Array(bucket.utf8))))
        for _ in 0..<500 {
            var behind = false
            for id in owners where !self.network.down.withLock({ $0.contains(id.rawValue) }) {
                let index = self.ids.firstIndex(of: id.rawValue)!
                let stored = try self.engines[index].record(table: table, partitionKey: Array(bucket.utf8), sortKey: Array(key.utf8))
                if (stored?.timestamp ?? HybridTimestamp(rawValue: 0)) < timestamp { behind = true }
            }
            if !behind { return }
            try await Task.sleep(for: .milliseconds(10))
        }
        Issue.record("the record did not reach all its owners")
    }

    /// Makes every block file look `age` old.
    func ageBlockFiles(by age: TimeInterval) throws {
        for directory in self.directories {
            let root = directory.path + "/blocks"
            for prefix in try FileManager.default.contentsOfDirectory(atPath: root) {
                for name in try FileManager.default.contentsOfDirectory(atPath: root + "/" + prefix) {
                    try FileManager.default.setAttributes(
                        [.modificationDate: Date().addingTimeInterval(-age)], ofItemAtPath: root + "/" + prefix + "/" + name)
                }
            }
        }
    }

    func modified(_ ref: BlockRef, on node: Int) throws -> Date {
        let path = self.directories[node].path + "/blocks/" + Hex.encode(ref.hash.prefix(1)) + "/" + ref.hex
        return try FileManager.default.attributesOfItem(atPath: path)[.modificationDate] as! Date
    }
}

@Suite struct GarbageCollectorTests {
    @Test func aDeletedObjectsBlocksAreCollectedOnEveryOwnerAfterTheGracePeriod() async throws {
        let cluster = try await TestCluster()
        let gc = Collectors(cluster)
        try await cluster.stores[0].createBucket("b", owner: "root")
        var random = SeededBytes(seed: 21)
        let keptBytes = random.bytes(200_000)
        let kept = try await put(cluster.stores[0], "b", "kept", keptBytes)
        let gone = try await put(cluster.stores[1], "b", "gone", random.bytes(300_000))
        let overwritten = try await put(cluster.stores[2], "b", "over", random.bytes(150_000))
        let newBytes = random.bytes(130_000)
        let over = try await put(cluster.stores[2], "b", "over", newBytes)
        try await cluster.settle(kept.data.blocks + gone.data.blocks + overwritten.data.blocks + over.data.blocks)
        try await cluster.stores[2].deleteObject(bucket: "b", key: "gone")

        // Within the grace period nothing goes.
        let before = try await cluster.blockFiles()
        for report in try await gc.run() { #expect(report.blocksCollected == 0 && report.sweepSkipped == nil) }
        #expect(try await cluster.blockFiles() == before)

        gc.pastGrace()
        let reports = try await gc.run()
        let after = try await cluster.blockFiles()
        let garbage = Set((gone.data.blocks + overwritten.data.blocks).map(\.hash))
        let live = Set((kept.data.blocks + over.data.blocks).map(\.hash))
        for node in cluster.engines.indices {
            #expect(after[node].isDisjoint(with: garbage), "node \(node) kept garbage")
            #expect(after[node] == before[node].subtracting(garbage))
        }
        for ref in kept.data.blocks + over.data.blocks {
            for owner in cluster.owners(of: ref) { #expect(after[owner].contains(ref.hash)) }
        }
        #expect(!live.isEmpty)
        let collected = reports.reduce(0) { $0 + $1.blocksCollected }
        let expected = before.reduce(0) { $0 + $1.intersection(garbage).count }
        #expect(collected == expected)
        #expect(reports.allSatisfy { $0.bytesCollected > 0 || $0.blocksCollected == 0 })
        #expect(gc.collectors.reduce(0) { $0 + $1.totals.blocksCollected } == expected)
        #expect(gc.collectors[0].prometheusMetrics().contains("cloud_gc_blocks_collected_total \(reports[0].blocksCollected)\n"))
        #expect(gc.collectors[0].totals.runs == 2)
        #expect(try await read(cluster.stores[1], "b", "kept") == keptBytes)
        #expect(try await read(cluster.stores[0], "b", "over") == newBytes)
        await cluster.shutdown()
    }

    @Test func oneSweepDeletesEveryCopyOfABlockOrNoneWhileOneIsYoung() async throws {
        let cluster = try await TestCluster()
        let gc = Collectors(cluster)
        try await cluster.stores[0].createBucket("b", owner: "root")
        var random = SeededBytes(seed: 27)
        let gone = try await put(cluster.stores[0], "b", "gone", random.bytes(200_000))
        try await cluster.settle(gone.data.blocks)
        try await cluster.stores[0].deleteObject(bucket: "b", key: "gone")
        try cluster.ageBlockFiles(by: 2 * 86_400)
        // Node 2's copy of one block was just stored again (as anti-entropy or an upload would).
        let young = gone.data.blocks[0]
        let path = cluster.directories[2].path + "/blocks/" + Hex.encode(young.hash.prefix(1)) + "/" + young.hex
        try FileManager.default.setAttributes([.modificationDate: Date()], ofItemAtPath: path)
        // Only node 0 sweeps: the other owners' copies go too, so none is left for anti-entropy to
        // pull back; the young copy keeps every copy of its block.
        let report = try #require(try await gc.run([0]).first)
        var after = try await cluster.blockFiles()
        #expect(report.blocksCollected == 3 * (gone.data.blocks.count - 1))
        for node in cluster.engines.indices {
            #expect(after[node].intersection(gone.data.blocks.map(\.hash)) == [young.hash], "node \(node)")
        }
        // Once it has aged too, all copies go.
        try cluster.ageBlockFiles(by: 2 * 86_400)
        #expect(try await gc.run([1]).first?.blocksCollected == 3)
        after = try await cluster.blockFiles()
        for node in cluster.engines.indices { #expect(after[node].isDisjoint(with: gone.data.blocks.map(\.hash))) }
        await cluster.shutdown()
    }

    @Test func blocksStillReferencedByACopyAPartOrAHintAreNeverCollected() async throws {
        let cluster = try await TestCluster(count: 4)
        let gc = Collectors(cluster)
        try await cluster.stores[0].createBucket("b", owner: "root")
        var random = SeededBytes(seed: 22)
        // A copy whose source is then deleted.
        let sourceBytes = random.bytes(200_000)
        let source = try await put(cluster.stores[0], "b", "source", sourceBytes)
        try await cluster.settle(source.data.blocks)
        try cluster.ageBlockFiles(by: 2 * 86_400)
        _ = try await cluster.stores[1].copyObject(source, toBucket: "b", key: "copy", metadata: ObjectMetadata())
        // The copy refreshed the source's blocks on their owners.
        for ref in source.data.blocks {
            for owner in cluster.owners(of: ref) {
                #expect(try cluster.modified(ref, on: owner) > Date().addingTimeInterval(-600), "a copied block was not refreshed")
            }
        }
        try await cluster.stores[2].deleteObject(bucket: "b", key: "source")
        // A block written again (same content, another key) is refreshed too.
        let dedupBytes = random.bytes(100_000)
        let dedup = try await put(cluster.stores[0], "b", "dedup", dedupBytes)
        try await cluster.settle(dedup.data.blocks)
        try cluster.ageBlockFiles(by: 2 * 86_400)
        _ = try await put(cluster.stores[3], "b", "dedup-again", dedupBytes)
        try await cluster.settle(dedup.data.blocks)
        for ref in dedup.data.blocks {
            for owner in cluster.owners(of: ref) { #expect(try cluster.modified(ref, on: owner) > Date().addingTimeInterval(-600)) }
        }
        try await cluster.stores[0].deleteObject(bucket: "b", key: "dedup")
        // A part of an unfinished upload.
        let upload = try await cluster.stores[0].createUpload(
            bucket: "b", key: "big", owner: "root", metadata: ObjectMetadata(), checksumAlgorithm: nil)
        let partBytes = random.bytes(150_000)
        let writer = cluster.stores[2].makeWriter()
        try await writer.write(ByteBuffer(bytes: partBytes))
        let written = try await writer.finish(allowInline: false)
        let part = try await cluster.stores[2].putPart(
            uploadID: upload.uploadID, bucket: "b", key: "big", partNumber: 1, written: written, etag: "e", checksum: nil)
        await writer.release()
        try await cluster.settle(part.blocks)
        // An object known only from a hint: written while one owner was down, then removed from the
        // owners that took it directly (as if that write had failed its quorum but left its hint).
        let table = try #require(cluster.views[0].table)
        let owners = table.replicas(of: table.partition(for: Digests.sha256(Array("h".utf8)))).map(\.rawValue)
        try await cluster.stores[0].createBucket("h", owner: "root")
        let absent = try #require(cluster.ids.firstIndex(of: owners[2]))
        let writerIndex = try #require(cluster.ids.indices.first { $0 != absent })
        cluster.stop(absent)
        let hintedBytes = random.bytes(150_000)
        let hinted = try await put(cluster.stores[writerIndex], "h", "k", hintedBytes)
        try await cluster.settle(hinted.data.blocks)
        var hints = 0
        for engine in cluster.engines { hints += try await engine.hintCount() }
        #expect(hints >= 1)
        cluster.start(absent)
        for engine in cluster.engines {
            try await engine.removeRecords([
                RecordVersion(table: 2, partitionKey: Array("h".utf8), sortKey: Array("k".utf8), timestamp: hinted.timestamp, deleted: false)
            ])
        }
        // Garbage, so that the sweep is seen to run.
        let gone = try await put(cluster.stores[1], "b", "gone", random.bytes(100_000))
        try await cluster.settle(gone.data.blocks)
        try await cluster.stores[1].deleteObject(bucket: "b", key: "gone")

        // Block files past the grace period; the hint is young (older ones are dropped, see below).
        try cluster.ageBlockFiles(by: 2 * 86_400)
        let before = try await cluster.blockFiles()
        let reports = try await gc.run()
        #expect(reports.allSatisfy { $0.sweepSkipped == nil })
        let after = try await cluster.blockFiles()
        let referenced = Set((source.data.blocks + dedup.data.blocks + part.blocks + hinted.data.blocks).map(\.hash))
        for node in cluster.engines.indices {
            #expect(before[node].intersection(referenced) == after[node].intersection(referenced), "node \(node) lost a referenced block")
            #expect(after[node].isDisjoint(with: gone.data.blocks.map(\.hash)))
        }
        #expect(reports.reduce(0) { $0 + $1.blocksCollected } > 0)
        #expect(try await read(cluster.stores[3], "b", "copy") == sourceBytes)
        #expect(try await read(cluster.stores[2], "b", "dedup-again") == dedupBytes)
        // The hint still hands the object to its owner.
        for (index, view) in cluster.views.enumerated() {
            try await HintReplayer(engine: cluster.engines[index], view: view, transport: cluster.network).replay()
        }
        let alone = try #require(try cluster.engines[absent].record(table: 2, partitionKey: Array("h".utf8), sortKey: Array("k".utf8)))
        #expect(alone.timestamp == hinted.timestamp)
        await cluster.shutdown()
    }

    @Test func theReferenceFilterHoldsTheBlocksOfLiveObjectsAndPartsAndRefusesBadRequests() async throws {
        let cluster = try await TestCluster(count: 1, replicas: 1, writeQuorum: 1, readQuorum: 1)
        try await cluster.stores[0].createBucket("b", owner: "root")
        var random = SeededBytes(seed: 26)
        let live = try await put(cluster.stores[0], "b", "live", random.bytes(300_000))
        let gone = try await put(cluster.stores[0], "b", "gone", random.bytes(300_000))
        try await cluster.stores[0].deleteObject(bucket: "b", key: "gone")
        let upload = try await cluster.stores[0].createUpload(
            bucket: "b", key: "big", owner: "root", metadata: ObjectMetadata(), checksumAlgorithm: nil)
        let writer = cluster.stores[0].makeWriter()
        try await writer.write(ByteBuffer(bytes: random.bytes(100_000)))
        let written = try await writer.finish(allowInline: false)
        let part = try await cluster.stores[0].putPart(
            uploadID: upload.uploadID, bucket: "b", key: "big", partNumber: 1, written: written, etag: "e", checksum: nil)
        await writer.release()
        let handler = ClusterRequestHandler(engine: cluster.engines[0])
        // The answerer picks the size (bits 0) and says it in the filter.
        var request = ByteBuffer()
        request.writeInteger(UInt64(99))
        request.writeInteger(UInt32(0))
        request.writeInteger(UInt8(7))
        let filter = try #require(BloomFilter(encoded: Array(buffer: try await handler.handle(method: ClusterMethod.gcRefs, body: request))))
        #expect(filter.seed == 99 && filter.hashCount == 7 && filter.bitCount >= BloomFilter.minimumBits)
        #expect((live.data.blocks + part.blocks).allSatisfy { filter.contains($0.hash) })
        #expect(gone.data.blocks.allSatisfy { !filter.contains($0.hash) })
        // The requested size is honoured.
        var sized = ByteBuffer()
        sized.writeInteger(UInt64(5))
        sized.writeInteger(UInt32(1 << 16))
        sized.writeInteger(UInt8(4))
        let big = try #require(BloomFilter(encoded: Array(buffer: try await handler.handle(method: ClusterMethod.gcRefs, body: sized))))
        #expect(big.bitCount == 1 << 16 && big.hashCount == 4 && big.seed == 5)
        // Malformed bodies are refused.
        let requestBytes = Array(buffer: request)
        for length in 0..<requestBytes.count {
            await #expect(throws: ClusterError.self) {
                try await handler.handle(method: ClusterMethod.gcRefs, body: ByteBuffer(bytes: requestBytes[0..<length]))
            }
        }
        await #expect(throws: ClusterError.self) {
            try await handler.handle(method: ClusterMethod.touchBlock, body: ByteBuffer(bytes: [1, 2, 3]))
        }
        var check = ByteBuffer()
        check.writeInteger(UInt32(2))
        check.writeInteger(UInt8(2))
        await #expect(throws: ClusterError.self) { try await handler.handle(method: ClusterMethod.gcCheck, body: check) }
        // Touch answers whether the block is here.
        let present = try await handler.handle(method: ClusterMethod.touchBlock, body: ByteBuffer(bytes: live.data.blocks[0].hash))
        #expect(Array(buffer: present) == [1])
        let absent = try await handler.handle(method: ClusterMethod.touchBlock, body: ByteBuffer(bytes: [UInt8](repeating: 0, count: 32)))
        #expect(Array(buffer: absent) == [0])
        await cluster.shutdown()
    }

    @Test func aCopyOfAnObjectWhoseBlocksAreGoneFailsInsteadOfReferringToNothing() async throws {
        let cluster = try await TestCluster()
        let gc = Collectors(cluster)
        try await cluster.stores[0].createBucket("b", owner: "root")
        var random = SeededBytes(seed: 25)
        let source = try await put(cluster.stores[0], "b", "source", random.bytes(100_000))
        try await cluster.settle(source.data.blocks)
        try await cluster.stores[0].deleteObject(bucket: "b", key: "source")
        gc.pastGrace()
        try cluster.ageBlockFiles(by: 2 * 86_400)
        try await gc.run()
        // A stale read of the source (taken before its delete) cannot produce a copy without data.
        await #expect(throws: StorageError.self) {
            try await cluster.stores[1].copyObject(source, toBucket: "b", key: "copy", metadata: ObjectMetadata())
        }
        #expect(try await cluster.stores[1].object(bucket: "b", key: "copy") == nil)
        await cluster.shutdown()
    }

    @Test func aSweepWithOneNodeDownCollectsNothing() async throws {
        let cluster = try await TestCluster()
        let gc = Collectors(cluster)
        try await cluster.stores[0].createBucket("b", owner: "root")
        var random = SeededBytes(seed: 23)
        let gone = try await put(cluster.stores[0], "b", "gone", random.bytes(200_000))
        try await cluster.settle(gone.data.blocks)
        try await cluster.stores[0].deleteObject(bucket: "b", key: "gone")
        let before = try await cluster.blockFiles()
        gc.pastGrace()
        cluster.stop(2)
        let reports = try await gc.run([0, 1])
        for report in reports {
            #expect(report.blocksCollected == 0)
            #expect(report.sweepSkipped?.contains("node2") == true)
        }
        #expect(try await cluster.blockFiles() == before)
        #expect(gc.collectors[0].totals.skipped == 1)
        #expect(gc.collectors[0].prometheusMetrics().contains("cloud_gc_skipped_total 1\n"))
        // Back up, the next sweep collects.
        cluster.start(2)
        try await gc.run()
        let after = try await cluster.blockFiles()
        for node in cluster.engines.indices { #expect(after[node].isDisjoint(with: gone.data.blocks.map(\.hash))) }
        await cluster.shutdown()
    }

    @Test func tombstonesAreCollectedOnlyOnceEveryOwnerHasThem() async throws {
        let cluster = try await TestCluster()
        let gc = Collectors(cluster)
        try await cluster.stores[0].createBucket("b", owner: "root")
        let object = try await put(cluster.stores[0], "b", "k", Array("small".utf8))
        try await cluster.settleRecord(table: 2, bucket: "b", key: "k", timestamp: object.timestamp)
        // Deleted while node 2 is away: it keeps the live version.
        cluster.stop(2)
        try await cluster.stores[0].deleteObject(bucket: "b", key: "k")
        let tombstone = try #require(try cluster.engines[0].record(table: 2, partitionKey: Array("b".utf8), sortKey: Array("k".utf8)))
        #expect(tombstone.deleted)
        try await cluster.settleRecord(table: 2, bucket: "b", key: "k", timestamp: tombstone.timestamp)  // nodes 0 and 1
        cluster.start(2)

        // Young tombstones stay.
        for report in try await gc.run([0, 1]) { #expect(report.tombstonesCollected == 0) }
        gc.pastGrace()
        // Node 2 still holds the older value: collecting now would let a read repair bring it back.
        for report in try await gc.run([0, 1]) { #expect(report.tombstonesCollected == 0) }
        #expect(try cluster.engines[0].record(table: 2, partitionKey: Array("b".utf8), sortKey: Array("k".utf8))?.deleted == true)
        // Once node 2 has the tombstone (anti-entropy, a read repair), every owner lets it go.
        try await cluster.engines[2].apply([tombstone])
        let reports = try await gc.run()
        #expect(reports.map(\.tombstonesCollected) == [1, 1, 1])
        for engine in cluster.engines {
            #expect(try engine.record(table: 2, partitionKey: Array("b".utf8), sortKey: Array("k".utf8)) == nil)
        }
        #expect(gc.collectors.map(\.totals.tombstonesCollected) == [1, 1, 1])
        #expect(try await cluster.stores[1].object(bucket: "b", key: "k") == nil)
        // A tombstone with an owner unreachable is not collected either.
        let second = try await put(cluster.stores[0], "b", "k2", Array("x".utf8))
        try await cluster.settleRecord(table: 2, bucket: "b", key: "k2", timestamp: second.timestamp)
        try await cluster.stores[0].deleteObject(bucket: "b", key: "k2")
        let deleted = try #require(try cluster.engines[0].record(table: 2, partitionKey: Array("b".utf8), sortKey: Array("k2".utf8)))
        try await cluster.settleRecord(table: 2, bucket: "b", key: "k2", timestamp: deleted.timestamp)
        gc.pastGrace()
        cluster.stop(1)
        #expect(try await gc.run([0]).map(\.tombstonesCollected) == [0])
        cluster.start(1)
        #expect(try await gc.run([0]).map(\.tombstonesCollected) == [1])
        await cluster.shutdown()
    }

    @Test func aTombstoneStaysWhileANodeOutsideItsOwnersHoldsAnOlderValue() async throws {
        let cluster = try await TestCluster(count: 4)
        let gc = Collectors(cluster)
        let table = try #require(cluster.views[0].table)
        let owners = table.replicas(of: table.partition(for: Digests.sha256(Array("b".utf8)))).map(\.rawValue)
        let outsider = try #require(cluster.ids.firstIndex { !owners.contains($0) })
        try await cluster.stores[0].createBucket("b", owner: "root")
        let object = try await put(cluster.stores[0], "b", "k", Array("old".utf8))
        try await cluster.settleRecord(table: 2, bucket: "b", key: "k", timestamp: object.timestamp)
        let old = try #require(try cluster.engines[cluster.ids.firstIndex(of: owners[0])!].record(
            table: 2, partitionKey: Array("b".utf8), sortKey: Array("k".utf8)))
        // The outsider kept the old value from an earlier layout (not yet handed over).
        try await cluster.engines[outsider].apply([old])
        try await cluster.stores[0].deleteObject(bucket: "b", key: "k")
        let tombstone = try #require(try cluster.engines[cluster.ids.firstIndex(of: owners[0])!].record(
            table: 2, partitionKey: Array("b".utf8), sortKey: Array("k".utf8)))
        try await cluster.settleRecord(table: 2, bucket: "b", key: "k", timestamp: tombstone.timestamp)
        gc.pastGrace()
        let ownerIndices = owners.map { cluster.ids.firstIndex(of: $0)! }
        #expect(try await gc.run(ownerIndices).map(\.tombstonesCollected) == [0, 0, 0])
        // Handed over and dropped there: now the owners let it go.
        try await cluster.engines[outsider].removeRecords([RecordVersion(old)])
        #expect(try await gc.run(ownerIndices).map(\.tombstonesCollected) == [1, 1, 1])
        await cluster.shutdown()
    }

    @Test func hintsOlderThanTheGracePeriodAreDropped() async throws {
        let cluster = try await TestCluster(count: 4)
        let gc = Collectors(cluster)
        try await cluster.stores[1].createBucket("b", owner: "root")
        cluster.stop(0)
        try await put(cluster.stores[1], "b", "k", Array(repeating: 3, count: 100_000))
        var held = 0
        for engine in cluster.engines { held += try await engine.hintCount() }
        cluster.start(0)
        // Young hints survive a pass; hints older than the grace period go.
        try await gc.run()
        var kept = 0
        for engine in cluster.engines { kept += try await engine.hintCount() }
        #expect(held > 0 && kept == held)
        gc.pastGrace()
        let reports = try await gc.run()
        #expect(reports.reduce(0) { $0 + $1.hintsDropped } == held)
        for engine in cluster.engines { #expect(try await engine.hintCount() == 0) }
        await cluster.shutdown()
    }

    @Test func theReplayerDropsHintsOlderThanItsExpiryInsteadOfHandingThemBack() async throws {
        let cluster = try await TestCluster(count: 4)
        try await cluster.stores[1].createBucket("b", owner: "root")
        cluster.stop(0)
        try await put(cluster.stores[1], "b", "k", Array(repeating: 3, count: 100_000))
        cluster.start(0)
        try await Task.sleep(for: .milliseconds(20))
        var handed = 0
        for (index, view) in cluster.views.enumerated() {
            handed += try await HintReplayer(engine: cluster.engines[index], view: view, transport: cluster.network, expiry: .milliseconds(10))
                .replay()
            #expect(try await cluster.engines[index].hintCount() == 0)
        }
        #expect(handed == 0)
        await cluster.shutdown()
    }

    @Test func anExpiredUploadIsAbortedOnceAndItsPartsCollected() async throws {
        let cluster = try await TestCluster()
        let gc = Collectors(cluster, uploadExpiry: .seconds(2 * 3600))
        try await cluster.stores[0].createBucket("b", owner: "root")
        let upload = try await cluster.stores[0].createUpload(
            bucket: "b", key: "big", owner: "root", metadata: ObjectMetadata(), checksumAlgorithm: nil)
        var random = SeededBytes(seed: 24)
        let writer = cluster.stores[1].makeWriter()
        try await writer.write(ByteBuffer(bytes: random.bytes(150_000)))
        let written = try await writer.finish(allowInline: false)
        let part = try await cluster.stores[1].putPart(
            uploadID: upload.uploadID, bucket: "b", key: "big", partNumber: 1, written: written, etag: "e", checksum: nil)
        await writer.release()
        try await cluster.settle(part.blocks)

        gc.pastGrace()  // past the grace period, not yet past the expiry
        for report in try await gc.run() { #expect(report.uploadsAborted == 0) }
        #expect(try await cluster.stores[2].upload(upload.uploadID, bucket: "b", key: "big").key == "big")
        let files = try await cluster.blockFiles()
        for ref in part.blocks { for owner in cluster.owners(of: ref) { #expect(files[owner].contains(ref.hash)) } }

        gc.clock.advance(by: .seconds(2 * 3600))
        let reports = try await gc.run()
        #expect(reports.reduce(0) { $0 + $1.uploadsAborted } == 1, "exactly one owner aborts an expired upload")
        #expect(gc.collectors.reduce(0) { $0 + $1.totals.uploadsAborted } == 1)
        await #expect(throws: StorageError.self) { try await cluster.stores[2].upload(upload.uploadID, bucket: "b", key: "big") }
        #expect(try await cluster.stores[1].listUploads(bucket: "b", prefix: "", keyMarker: nil, uploadIDMarker: nil, limit: 10).isEmpty)
        // Its parts are tombstoned: their blocks go by the next pass at the latest.
        try cluster.ageBlockFiles(by: 2 * 86_400)
        try await gc.run()
        let after = try await cluster.blockFiles()
        for node in cluster.engines.indices { #expect(after[node].isDisjoint(with: part.blocks.map(\.hash))) }
        await cluster.shutdown()
    }
}
