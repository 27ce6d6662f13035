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

/// Several in-process nodes whose calls go through memory; a node can be cut off.
final class MemoryNetwork: ClusterTransport {
    let handlers = Mutex<[String: ClusterRequestHandler]>([:])
    let down = Mutex<Set<String>>([])
    let calls = Mutex<[String: Int]>([:])

    func call(_ node: String, method: String, body: ByteBuffer, bodyDigest: [UInt8]?, timeout: Duration) async throws -> ByteBuffer {
        if self.down.withLock({ $0.contains(node) }) { throw ClusterError("\(node) is unreachable") }
        guard let handler = self.handlers.withLock({ $0[node] }) else { throw ClusterError("no node \(node)") }
        self.calls.withLock { $0[method, default: 0] += 1 }
        // As the RPC server does: the digest the handler sees is computed from the bytes received.
        let digest = body.withUnsafeReadableBytes { Digests.sha256($0) }
        if let bodyDigest, bodyDigest != digest { throw ClusterError("the body does not match its signed digest") }
        return try await handler.handle(method: method, body: body, bodyDigest: digest)
    }
}

/// A cluster of `count` in-process nodes that share one layout.
struct TestCluster {
    let directories: [TemporaryDirectory]
    let engines: [StorageEngine]
    let views: [ClusterView]
    let stores: [ClusterStore]
    let network: MemoryNetwork
    let ids: [String]

    /// - Parameter inLayout: how many of the nodes (the first ones) the layout holds; all by default.
    init(count: Int = 3, replicas: Int = 3, writeQuorum: Int = 2, readQuorum: Int = 2, inLayout: Int? = nil) async throws {
        let network = MemoryNetwork()
        var layout = try Ring.Layout(replicationFactor: replicas, partitionPower: 6)
        let ids = (0..<count).map { "node\($0)" }
        layout = try layout.applying(ids.prefix(inLayout ?? count).map { .add(Ring.Node(id: Ring.NodeID($0), zone: "z\($0)", capacity: 1 << 40)) })
        var directories: [TemporaryDirectory] = []
        var engines: [StorageEngine] = []
        var views: [ClusterView] = []
        var stores: [ClusterStore] = []
        let policy = try Replication.QuorumPolicy(replicas: replicas, writeQuorum: writeQuorum, readQuorum: readQuorum)
        for id in ids {
            let directory = TemporaryDirectory()
            var configuration = StorageEngine.Configuration(dataDirectory: directory.path)
            configuration.syncWrites = false
            let engine = try StorageEngine(configuration: configuration)
            try await engine.start()
            let view = ClusterView(localID: id)
            view.install(layout)
            for other in ids where other != id { view.update(other, .init(rpcAddress: other, reachable: true)) }
            network.handlers.withLock { $0[id] = ClusterRequestHandler(engine: engine, layoutVersion: { view.table?.version ?? 0 }) }
            var storeConfiguration = ClusterStore.Configuration()
            storeConfiguration.blockSize = 64 << 10
            storeConfiguration.inlineThreshold = 1024
            let store = ClusterStore(
                engine: engine, replicator: Replicator(view: view, transport: network, policy: policy), configuration: storeConfiguration)
            directories.append(directory)
            engines.append(engine)
            views.append(view)
            stores.append(store)
        }
        self.directories = directories
        self.engines = engines
        self.views = views
        self.stores = stores
        self.network = network
        self.ids = ids
    }

    /// Cuts `index` off: the others see it as unreachable and calls to it fail.
    func stop(_ index: Int) {
        self.network.down.withLock { _ = $0.insert(self.ids[index]) }
        for view in self.views { view.update(self.ids[index], .init(rpcAddress: self.ids[index], reachable: false)) }
    }

    func start(_ index: Int) {
        self.network.down.withLock { _ = $0.remove(self.ids[index]) }
        for view in self.views where view.localID != self.ids[index] {
            view.update(self.ids[index], .init(rpcAddress: self.ids[index], reachable: true))
        }
    }

    func shutdown() async {
        for engine in self.engines { await engine.shutdown() }
    }
}

@discardableResult
func put(_ store: any ObjectStore, _ bucket: String, _ key: String, _ bytes: [UInt8]) async throws -> ObjectRecord {
    let writer = store.makeWriter()
    var offset = 0
    while offset < bytes.count {
        let end = min(bytes.count, offset + 10_000)
        try await writer.write(ByteBuffer(bytes: bytes[offset..<end]))
        offset = end
    }
    do {
        let written = try await writer.finish(allowInline: true)
        let record = try await store.putObject(
            bucket: bucket, key: key, written: written, etag: Hex.encode(Digests.md5(bytes)), metadata: ObjectMetadata(contentType: "text/plain"))
        await writer.release()
        return record
    } catch {
        await writer.release()
        throw error
    }
}

func read(_ store: any ObjectStore, _ bucket: String, _ key: String) async throws -> [UInt8]? {
    guard let record = try await store.object(bucket: bucket, key: key) else { return nil }
    switch record.data {
    case .inline(let bytes): return bytes
    case .blocks(let refs):
        var result: [UInt8] = []
        for ref in refs { result += Array(buffer: try await store.readBlock(ref)) }
        return result
    }
}

@Suite struct ClusterStoreTests {
    @Test func objectsWrittenThroughOneNodeAreReadThroughEveryOther() async throws {
        let cluster = try await TestCluster()
        var random = SeededBytes(seed: 7)
        try await cluster.stores[0].createBucket("photos", owner: "root")
        let big = random.bytes(300_000)
        let small = random.bytes(100)
        try await put(cluster.stores[1], "photos", "big.bin", big)
        try await put(cluster.stores[2], "photos", "small.txt", small)
        for store in cluster.stores {
            #expect(try await store.bucket("photos")?.owner == "root")
            #expect(try await read(store, "photos", "big.bin") == big)
            #expect(try await read(store, "photos", "small.txt") == small)
            #expect(try await store.object(bucket: "photos", key: "missing") == nil)
            #expect(try await store.listBuckets().map(\.name) == ["photos"])
        }
        await #expect(throws: StorageError.self) { try await cluster.stores[1].object(bucket: "nope", key: "x") }
        await cluster.shutdown()
    }

    @Test func onePeerDownKeepsReadsAndWritesGoingAndTwoDownFailsCleanly() async throws {
        let cluster = try await TestCluster()
        try await cluster.stores[0].createBucket("b", owner: "root")
        cluster.stop(2)
        var random = SeededBytes(seed: 1)
        let bytes = random.bytes(200_000)
        try await put(cluster.stores[0], "b", "k", bytes)
        #expect(try await read(cluster.stores[1], "b", "k") == bytes)
        cluster.stop(1)
        do {
            try await put(cluster.stores[0], "b", "k2", random.bytes(5000))
            Issue.record("a write with one of three replicas reachable succeeded")
        } catch let error as StorageError {
            #expect(error.code == .quorumUnavailable)
        }
        await #expect(throws: StorageError.self) { try await cluster.stores[0].object(bucket: "b", key: "k") }
        cluster.start(1)
        cluster.start(2)
        #expect(try await cluster.stores[2].object(bucket: "b", key: "k2") == nil)
        #expect(try await read(cluster.stores[2], "b", "k") == bytes)
        await cluster.shutdown()
    }

    @Test func aReadRepairsAReplicaThatMissedAWrite() async throws {
        let cluster = try await TestCluster()
        try await cluster.stores[0].createBucket("b", owner: "root")
        try await put(cluster.stores[0], "b", "k", Array("old".utf8))
        cluster.stop(2)
        try await put(cluster.stores[0], "b", "k", Array("new".utf8))
        let stale = try cluster.engines[2].record(table: 2, partitionKey: Array("b".utf8), sortKey: Array("k".utf8))
        cluster.start(2)
        // Reads with R = 3 see every replica; the stale one is repaired.
        let policy = try Replication.QuorumPolicy(replicas: 3, writeQuorum: 2, readQuorum: 3)
        let reader = ClusterStore(engine: cluster.engines[2], replicator: Replicator(view: cluster.views[2], transport: cluster.network, policy: policy))
        #expect(try await read(reader, "b", "k") == Array("new".utf8))
        var repaired: ReplicaRecord?
        for _ in 0..<100 {
            repaired = try cluster.engines[2].record(table: 2, partitionKey: Array("b".utf8), sortKey: Array("k".utf8))
            if repaired != stale { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(repaired != stale)
        #expect(try await read(cluster.stores[2], "b", "k") == Array("new".utf8))
        await cluster.shutdown()
    }

    @Test func deletesWinOverOlderCopiesAndListingsHideThem() async throws {
        let cluster = try await TestCluster()
        let store = cluster.stores[0]
        try await store.createBucket("b", owner: "root")
        for key in ["a/1", "a/2", "b/1", "c", "d"] { try await put(cluster.stores[1], "b", key, Array(key.utf8)) }
        cluster.stop(2)
        try await store.deleteObjects(bucket: "b", keys: ["a/2", "c"])
        cluster.start(2)
        for store in cluster.stores {
            let flat = try await store.list(bucket: "b", prefix: "", delimiter: nil, startAfter: nil, maxKeys: 1000)
            #expect(flat.entries.map(\.key) == ["a/1", "b/1", "d"])
            let rolled = try await store.list(bucket: "b", prefix: "", delimiter: "/", startAfter: nil, maxKeys: 1000)
            #expect(rolled.commonPrefixes == ["a/", "b/"])
            #expect(rolled.entries.map(\.key) == ["d"])
            let paged = try await store.list(bucket: "b", prefix: "", delimiter: nil, startAfter: "a/1", maxKeys: 1)
            #expect(paged.entries.map(\.key) == ["b/1"])
            #expect(paged.isTruncated)
            #expect(try await store.object(bucket: "b", key: "c") == nil)
        }
        await #expect(throws: StorageError.self) { try await store.deleteBucket("b") }
        try await store.deleteObjects(bucket: "b", keys: ["a/1", "b/1", "d"])
        try await store.deleteBucket("b")
        #expect(try await cluster.stores[2].bucket("b") == nil)
        #expect(try await cluster.stores[1].listBuckets().isEmpty)
        await cluster.shutdown()
    }

    @Test func listingsPageThroughManyKeysAndTombstones() async throws {
        let cluster = try await TestCluster()
        let store = cluster.stores[0]
        try await store.createBucket("b", owner: "root")
        let keys = (0..<1500).map { String(format: "k%05d", $0) }
        for chunk in stride(from: 0, to: keys.count, by: 100) {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for key in keys[chunk..<min(chunk + 100, keys.count)] {
                    group.addTask { try await put(cluster.stores[Int.random(in: 0..<3)], "b", key, Array(key.utf8)) }
                }
                try await group.waitForAll()
            }
        }
        let deleted = Set(keys.enumerated().filter { $0.offset % 3 == 0 }.map(\.element))
        try await store.deleteObjects(bucket: "b", keys: Array(deleted))
        var seen: [String] = []
        var marker: String?
        repeat {
            let page = try await cluster.stores[2].list(bucket: "b", prefix: "k0", delimiter: nil, startAfter: marker, maxKeys: 333)
            seen += page.entries.map(\.key)
            marker = page.isTruncated ? page.lastReturned : nil
        } while marker != nil
        #expect(seen == keys.filter { !deleted.contains($0) })
        await cluster.shutdown()
    }

    @Test func multipartUploadsCompleteThroughAnyNode() async throws {
        let cluster = try await TestCluster()
        try await cluster.stores[0].createBucket("b", owner: "root")
        let upload = try await cluster.stores[0].createUpload(
            bucket: "b", key: "big", owner: "root", metadata: ObjectMetadata(), checksumAlgorithm: nil)
        var random = SeededBytes(seed: 3)
        let parts = [random.bytes(150_000), random.bytes(70_000)]
        for (index, bytes) in parts.enumerated() {
            let store = cluster.stores[index + 1]
            let writer = store.makeWriter()
            try await writer.write(ByteBuffer(bytes: bytes))
            let written = try await writer.finish(allowInline: false)
            _ = try await store.putPart(
                uploadID: upload.uploadID, bucket: "b", key: "big", partNumber: index + 1, written: written,
                etag: Hex.encode(Digests.md5(bytes)), checksum: nil)
            await writer.release()
        }
        #expect(try await cluster.stores[2].parts(bucket: "b", uploadID: upload.uploadID, after: 0, limit: 100).map(\.partNumber) == [1, 2])
        #expect(try await cluster.stores[1].listUploads(bucket: "b", prefix: "", keyMarker: nil, uploadIDMarker: nil, limit: 10).map(\.uploadID) == [upload.uploadID])
        let record = try await cluster.stores[2].completeUpload(uploadID: upload.uploadID, bucket: "b", key: "big") { _, parts in
            (.blocks(parts.flatMap(\.blocks)), parts.reduce(0) { $0 + $1.size }, "x-2", ObjectMetadata())
        }
        #expect(record.size == 220_000)
        #expect(try await read(cluster.stores[0], "b", "big") == parts[0] + parts[1])
        await #expect(throws: StorageError.self) { try await cluster.stores[1].upload(upload.uploadID, bucket: "b", key: "big") }
        #expect(try await cluster.stores[1].listUploads(bucket: "b", prefix: "", keyMarker: nil, uploadIDMarker: nil, limit: 10).isEmpty)
        await cluster.shutdown()
    }

    @Test func aCorruptedBlockCopyIsSkippedForAnIntactOne() async throws {
        let cluster = try await TestCluster()
        try await cluster.stores[0].createBucket("b", owner: "root")
        var random = SeededBytes(seed: 9)
        let bytes = random.bytes(100_000)
        try await put(cluster.stores[0], "b", "k", bytes)
        // Damage every block file on node 0 (a flipped byte near the end of each file).
        let root = cluster.directories[0].path + "/blocks"
        let enumerator = FileManager.default.enumerator(atPath: root)!
        var damaged = 0
        while let path = enumerator.nextObject() as? String {
            let full = root + "/" + path
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: full, isDirectory: &isDirectory), !isDirectory.boolValue else { continue }
            var data = try Data(contentsOf: URL(fileURLWithPath: full))
            data[data.count - 1] ^= 0xFF
            try data.write(to: URL(fileURLWithPath: full))
            damaged += 1
        }
        #expect(damaged > 0)
        #expect(try await read(cluster.stores[0], "b", "k") == bytes)
        await cluster.shutdown()
    }
}

@Suite struct ClusterWireTests {
    @Test func recordsMergeByTimestampThenTombstoneThenValue() {
        func record(_ time: UInt64, deleted: Bool = false, _ value: [UInt8] = []) -> ReplicaRecord {
            ReplicaRecord(table: 2, partitionKey: [1], sortKey: [2], timestamp: HybridTimestamp(rawValue: time), deleted: deleted, value: value)
        }
        #expect(record(2).isNewer(than: record(1, [9])))
        #expect(!record(1, [9]).isNewer(than: record(2)))
        #expect(record(5, deleted: true).isNewer(than: record(5, [1])))
        #expect(record(5, [2]).isNewer(than: record(5, [1])))
        #expect(!record(5, [1]).isNewer(than: record(5, [1])))
    }

    @Test func theRequestHandlerRefusesMalformedBodiesWithoutHarm() async throws {
        let cluster = try await TestCluster(count: 1, replicas: 1, writeQuorum: 1, readQuorum: 1)
        try await cluster.stores[0].createBucket("b", owner: "root")
        try await put(cluster.stores[0], "b", "k", Array(repeating: 7, count: 5000))
        let handler = ClusterRequestHandler(engine: cluster.engines[0])
        // A valid apply body, then every truncation of it and a few corruptions.
        let record = try #require(try cluster.engines[0].record(table: 2, partitionKey: Array("b".utf8), sortKey: Array("k".utf8)))
        var body = ByteBuffer()
        body.writeInteger(UInt32(1))
        body.writeInteger(record.table)
        body.writeInteger(UInt32(record.partitionKey.count))
        body.writeBytes(record.partitionKey)
        body.writeInteger(UInt32(record.sortKey.count))
        body.writeBytes(record.sortKey)
        body.writeInteger(record.timestamp.rawValue)
        body.writeInteger(UInt8(0))
        body.writeInteger(UInt32(record.value.count))
        body.writeBytes(record.value)
        _ = try await handler.handle(method: ClusterMethod.applyRecords, body: body)
        let bytes = Array(buffer: body)
        for length in 0..<bytes.count {
            for method in [ClusterMethod.applyRecords, ClusterMethod.getRecord, ClusterMethod.rangeRecords, ClusterMethod.getBlock] {
                _ = try? await handler.handle(method: method, body: ByteBuffer(bytes: bytes[0..<length]))
            }
        }
        var huge = ByteBuffer()
        huge.writeInteger(UInt32.max)
        await #expect(throws: ClusterError.self) { try await handler.handle(method: ClusterMethod.applyRecords, body: huge) }
        await #expect(throws: (any Error).self) { try await handler.handle(method: "nope", body: ByteBuffer()) }
        // A block is stored under the SHA-256 of its bytes, and read back by it.
        let block: [UInt8] = [1, 2, 3]
        _ = try await handler.handle(method: ClusterMethod.putBlock, body: ByteBuffer(bytes: block))
        var query = ByteBuffer(bytes: Digests.sha256(block))
        query.writeInteger(UInt32(3))
        #expect(Array(buffer: try await handler.handle(method: ClusterMethod.getBlock, body: query)) == [1] + block)
        // Through the network, a body that does not match the digest its sender signed is refused.
        await #expect(throws: ClusterError.self) {
            try await cluster.network.call("node0", method: ClusterMethod.putBlock, body: ByteBuffer(bytes: block), bodyDigest: [UInt8](repeating: 0, count: 32), timeout: .seconds(1))
        }
        #expect(try await read(cluster.stores[0], "b", "k") == Array(repeating: 7, count: 5000))
        await cluster.shutdown()
    }
}

@Suite struct HintedHandoffTests {
    @Test func writesForAnUnreachableOwnerAreHeldByAHandoffNodeAndHandedBack() async throws {
        let cluster = try await TestCluster(count: 4)
        let table = try #require(cluster.views[0].table)
        // The owners of bucket "b"'s records; the one not among them is the handoff node.
        let owners = table.replicas(of: table.partition(for: Digests.sha256(Array("b".utf8)))).map(\.rawValue)
        let absent = try #require(owners.last)
        let absentIndex = try #require(cluster.ids.firstIndex(of: absent))
        let writer = try #require(cluster.ids.indices.first { $0 != absentIndex })
        try await cluster.stores[writer].createBucket("b", owner: "root")
        cluster.stop(absentIndex)
        var random = SeededBytes(seed: 11)
        let bytes = random.bytes(150_000)
        try await put(cluster.stores[writer], "b", "k", bytes)
        // Some node other than the owner holds hints for it (the record, and blocks whose owner it is).
        var held = 0
        for (index, engine) in cluster.engines.enumerated() where index != absentIndex {
            held += try await engine.hints(limit: 100).filter { $0.owner == absent }.count
        }
        #expect(held >= 1)
        #expect(try cluster.engines[absentIndex].record(table: 2, partitionKey: Array("b".utf8), sortKey: Array("k".utf8)) == nil)
        // While the owner is away nothing is handed back; once it is back, everything is.
        for (index, view) in cluster.views.enumerated() where index != absentIndex {
            let replayer = HintReplayer(engine: cluster.engines[index], view: view, transport: cluster.network)
            #expect(try await replayer.replay() == 0)
        }
        cluster.start(absentIndex)
        for (index, view) in cluster.views.enumerated() where index != absentIndex {
            try await HintReplayer(engine: cluster.engines[index], view: view, transport: cluster.network).replay()
            #expect(try await cluster.engines[index].hintCount() == 0)
        }
        #expect(try cluster.engines[absentIndex].record(table: 2, partitionKey: Array("b".utf8), sortKey: Array("k".utf8)) != nil)
        // The owner alone now serves the object: records and blocks reached it.
        let alone = try Replication.QuorumPolicy(replicas: 3, writeQuorum: 1, readQuorum: 1)
        for other in cluster.ids.indices where other != absentIndex { cluster.stop(other) }
        cluster.start(absentIndex)
        let reader = ClusterStore(
            engine: cluster.engines[absentIndex],
            replicator: Replicator(view: cluster.views[absentIndex], transport: cluster.network, policy: alone))
        let record = try #require(try await reader.object(bucket: "b", key: "k"))
        #expect(record.size == Int64(bytes.count))
        // Every block whose partition the node owns reached its disk.
        var owned = 0
        for ref in record.data.blocks where table.replicas(of: table.partition(for: ref.hash)).map(\.rawValue).contains(absent) {
            owned += 1
            #expect(try await cluster.engines[absentIndex].loadBlock(ref) != nil, "a block of the owner's partition is missing")
        }
        #expect(owned > 0, "the test needs a block of the absent owner to exercise block hints")
        await cluster.shutdown()
    }

    @Test func hintsForANodeRemovedFromTheLayoutAreDropped() async throws {
        let cluster = try await TestCluster(count: 4)
        try await cluster.stores[1].createBucket("b", owner: "root")
        cluster.stop(0)
        try await put(cluster.stores[1], "b", "k", Array(repeating: 3, count: 100_000))
        var held = 0
        for engine in cluster.engines.dropFirst() { held += try await engine.hintCount() }
        #expect(held > 0)
        let smaller = try #require(cluster.views[1].layout).applying([.remove(Ring.NodeID("node0"))])
        for (index, view) in cluster.views.enumerated().dropFirst() {
            view.install(smaller)
            try await HintReplayer(engine: cluster.engines[index], view: view, transport: cluster.network).replay()
            #expect(try await cluster.engines[index].hintCount() == 0)
        }
        await cluster.shutdown()
    }
}
