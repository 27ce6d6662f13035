import Foundation
import Hashing
import NIOCore
import StorageEngine
import TestSupport
import Testing

/// Opens an engine on a fresh directory with a manual clock.
private func makeEngine(
    _ directory: TemporaryDirectory,
    clock: ManualClock = ManualClock(),
    configure: (inout StorageEngine.Configuration) -> Void = { _ in }
) async throws -> StorageEngine {
    var configuration = StorageEngine.Configuration(dataDirectory: directory.path)
    configuration.blockSize = 64 * 1024
    configuration.inlineThreshold = 1024
    configure(&configuration)
    let engine = try StorageEngine(configuration: configuration, nowMilliseconds: { clock.milliseconds })
    try await engine.start()
    return engine
}

/// Writes `bytes` as an object through a writer, as the S3 layer does.
@discardableResult
private func put(_ engine: StorageEngine, _ bucket: String, _ key: String, _ bytes: [UInt8], pieces: Int = 7) async throws -> ObjectRecord {
    let writer = engine.makeWriter()
    var offset = 0
    let step = max(1, bytes.count / pieces)
    while offset < bytes.count {
        let end = min(bytes.count, offset + step)
        try await writer.write(ByteBuffer(bytes: bytes[offset..<end]))
        offset = end
    }
    let written = try await writer.finish()
    let record = try await engine.putObject(
        bucket: bucket, key: key, written: written, etag: Hex.encode(Digests.md5(bytes)), metadata: ObjectMetadata()
    )
    await writer.release()
    return record
}

/// Reads an object back through the engine.
private func read(_ engine: StorageEngine, _ record: ObjectRecord) async throws -> [UInt8] {
    switch record.data {
    case .inline(let bytes):
        return bytes
    case .blocks(let blocks):
        var result: [UInt8] = []
        for block in blocks {
            let buffer = try await engine.readBlock(block)
            result.append(contentsOf: buffer.readableBytesView)
        }
        return result
    }
}

private func blockFiles(_ directory: TemporaryDirectory) -> [String] {
    let root = directory.path + "/blocks"
    var files: [String] = []
    for prefix in (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? [] {
        for name in (try? FileManager.default.contentsOfDirectory(atPath: root + "/" + prefix)) ?? [] {
            files.append(root + "/" + prefix + "/" + name)
        }
    }
    return files
}

@Suite struct StorageEngineTests {
    @Test func aDataDirectoryWithMissingParentsIsCreated() async throws {
        let directory = TemporaryDirectory()
        let nested = directory.path + "/cluster/n1"
        let engine = try StorageEngine(configuration: StorageEngine.Configuration(dataDirectory: nested))
        try await engine.start()
        try await engine.createBucket("photos", owner: "root")
        #expect(FileManager.default.fileExists(atPath: nested + "/meta.sqlite"))
        await engine.shutdown()
    }

    @Test func smallObjectsAreInlineAndLargeOnesAreBlocks() async throws {
        let directory = TemporaryDirectory()
        let engine = try await makeEngine(directory)
        defer { Task { await engine.shutdown() } }
        try await engine.createBucket("b", owner: "me")
        var random = SeededBytes(seed: 1)
        let small = random.bytes(500)
        let large = random.bytes(200_000)
        let smallRecord = try await put(engine, "b", "small", small)
        let largeRecord = try await put(engine, "b", "large", large)
        guard case .inline = smallRecord.data else {
            Issue.record("a 500-byte object should be inline")
            return
        }
        #expect(largeRecord.data.blocks.count == 4)  // 3 × 64 KiB + the rest
        #expect(largeRecord.data.blocks.map(\.size) == [65536, 65536, 65536, 200_000 - 3 * 65536])
        let stored = try #require(try await engine.object(bucket: "b", key: "large"))
        #expect(try await read(engine, stored) == large)
        let storedSmall = try #require(try await engine.object(bucket: "b", key: "small"))
        #expect(try await read(engine, storedSmall) == small)
        #expect(engine.stored.objects == 2)
        #expect(engine.stored.bytes == 200_500)
    }

    @Test func identicalBlocksAreStoredOnce() async throws {
        let directory = TemporaryDirectory()
        let engine = try await makeEngine(directory) { $0.compression = .none }
        defer { Task { await engine.shutdown() } }
        try await engine.createBucket("b", owner: "me")
        var random = SeededBytes(seed: 2)
        let block = random.bytes(65536)
        try await put(engine, "b", "one", block + block + block)
        try await put(engine, "b", "two", block)
        #expect(blockFiles(directory).count == 1)
    }

    @Test func compressibleBlocksAreCompressedAndReadBack() async throws {
        for compression in [BlockCompression.lz4, .zstd] {
            let directory = TemporaryDirectory()
            let engine = try await makeEngine(directory) { $0.compression = compression }
            try await engine.createBucket("b", owner: "me")
            let text = Array(String(repeating: "the quick brown fox jumps over the lazy dog ", count: 5000).utf8)
            let record = try await put(engine, "b", "text", text)
            let onDisk = blockFiles(directory).reduce(0) { total, path in
                total + ((try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0)
            }
            #expect(onDisk < text.count / 4, "\(compression) should shrink repetitive text")
            #expect(try await read(engine, record) == text)
            await engine.shutdown()
        }
    }

    @Test func corruptedBlockIsAnErrorNotWrongBytes() async throws {
        let directory = TemporaryDirectory()
        let engine = try await makeEngine(directory) { $0.compression = .none }
        defer { Task { await engine.shutdown() } }
        try await engine.createBucket("b", owner: "me")
        var random = SeededBytes(seed: 3)
        let record = try await put(engine, "b", "k", random.bytes(65536))
        let path = try #require(blockFiles(directory).first)
        let handle = try #require(FileHandle(forUpdatingAtPath: path))
        try handle.seek(toOffset: 1000)
        let original = try #require(try handle.read(upToCount: 1))
        try handle.seek(toOffset: 1000)
        try handle.write(contentsOf: [original[0] ^ 0x01])
        try handle.close()
        await #expect(throws: StorageError(.corruptBlock, "")) {
            _ = try await engine.readBlock(record.data.blocks[0])
        }
        // A truncated block as well.
        truncate(path, 100)
        await #expect(throws: StorageError(.corruptBlock, "")) {
            _ = try await engine.readBlock(record.data.blocks[0])
        }
        unlink(path)
        await #expect(throws: StorageError(.missingBlock, "")) {
            _ = try await engine.readBlock(record.data.blocks[0])
        }
    }

    @Test func overwrittenAndDeletedDataIsCollectedAfterTheGracePeriod() async throws {
        let directory = TemporaryDirectory()
        let clock = ManualClock()
        let engine = try await makeEngine(directory, clock: clock) { $0.garbageGracePeriod = .seconds(60) }
        defer { Task { await engine.shutdown() } }
        try await engine.createBucket("b", owner: "me")
        var random = SeededBytes(seed: 4)
        let first = random.bytes(100_000)
        let second = random.bytes(100_000)
        try await put(engine, "b", "k", first)
        let kept = try await put(engine, "b", "k", second)
        #expect(blockFiles(directory).count == 4)
        #expect(try await engine.collectGarbage() == 0, "nothing is collected inside the grace period")
        clock.advance(by: .seconds(61))
        #expect(try await engine.collectGarbage() == 2)
        #expect(blockFiles(directory).count == 2)
        #expect(try await read(engine, kept) == second)
        try await engine.deleteObject(bucket: "b", key: "k")
        clock.advance(by: .seconds(61))
        #expect(try await engine.collectGarbage() == 2)
        #expect(blockFiles(directory).isEmpty)
        #expect(engine.stored.objects == 0)
    }

    @Test func blocksOfAnAbandonedUploadAreCollected() async throws {
        let directory = TemporaryDirectory()
        let clock = ManualClock(milliseconds: UInt64(Date().timeIntervalSince1970 * 1000))
        let engine = try await makeEngine(directory, clock: clock) { $0.garbageGracePeriod = .seconds(60) }
        defer { Task { await engine.shutdown() } }
        try await engine.createBucket("b", owner: "me")
        var random = SeededBytes(seed: 5)
        let writer = engine.makeWriter()
        try await writer.write(ByteBuffer(bytes: random.bytes(150_000)))
        _ = try await writer.finish()
        await writer.release()  // never committed: as after a crash
        #expect(blockFiles(directory).count == 3)
        clock.advance(by: .seconds(120))
        #expect(try await engine.collectGarbage() == 3)
        #expect(blockFiles(directory).isEmpty)
    }

    @Test func everythingSurvivesARestart() async throws {
        let directory = TemporaryDirectory()
        var random = SeededBytes(seed: 6)
        let data = random.bytes(300_000)
        do {
            let engine = try await makeEngine(directory)
            try await engine.createBucket("b", owner: "me")
            try await put(engine, "b", "k", data)
            await engine.shutdown()
        }
        let engine = try await makeEngine(directory)
        defer { Task { await engine.shutdown() } }
        let record = try #require(try await engine.object(bucket: "b", key: "k"))
        #expect(try await read(engine, record) == data)
        #expect(engine.stored.objects == 1)
        #expect(try await engine.listBuckets().map(\.name) == ["b"])
    }

    @Test func bucketRules() async throws {
        let directory = TemporaryDirectory()
        let engine = try await makeEngine(directory)
        defer { Task { await engine.shutdown() } }
        try await engine.createBucket("b", owner: "me")
        await #expect(throws: StorageError(.bucketAlreadyOwnedByYou, "")) { try await engine.createBucket("b", owner: "me") }
        await #expect(throws: StorageError(.bucketAlreadyExists, "")) { try await engine.createBucket("b", owner: "you") }
        try await put(engine, "b", "k", [1, 2, 3])
        await #expect(throws: StorageError(.bucketNotEmpty, "")) { try await engine.deleteBucket("b") }
        await #expect(throws: StorageError(.noSuchBucket, "")) { try await put(engine, "nope", "k", [1]) }
        try await engine.deleteObject(bucket: "b", key: "k")
        try await engine.deleteBucket("b")
        #expect(try await engine.bucket("b") == nil)
    }

    @Test func multipartUploadConcatenatesParts() async throws {
        let directory = TemporaryDirectory()
        let engine = try await makeEngine(directory)
        defer { Task { await engine.shutdown() } }
        try await engine.createBucket("b", owner: "me")
        let upload = try await engine.createUpload(bucket: "b", key: "big", owner: "me", metadata: ObjectMetadata(contentType: "text/plain"), checksumAlgorithm: nil)
        var random = SeededBytes(seed: 7)
        let parts = [random.bytes(100_000), random.bytes(70_000), random.bytes(10)]
        for (index, bytes) in parts.enumerated().reversed() {
            let writer = engine.makeWriter()
            try await writer.write(ByteBuffer(bytes: bytes))
            let written = try await writer.finish(allowInline: false)
            _ = try await engine.putPart(uploadID: upload.uploadID, bucket: "b", key: "big", partNumber: index + 1, written: written, etag: Hex.encode(Digests.md5(bytes)), checksum: nil)
            await writer.release()
        }
        #expect(try await engine.parts(uploadID: upload.uploadID).map(\.partNumber) == [1, 2, 3])
        let record = try await engine.completeUpload(uploadID: upload.uploadID, bucket: "b", key: "big") { upload, parts in
            (.blocks(parts.flatMap(\.blocks)), parts.reduce(0) { $0 + $1.size }, "x-3", upload.metadata)
        }
        #expect(try await read(engine, record) == parts.flatMap { $0 })
        #expect(record.metadata.contentType == "text/plain")
        await #expect(throws: StorageError(.noSuchUpload, "")) {
            try await engine.abortUpload(uploadID: upload.uploadID, bucket: "b", key: "big")
        }
    }
}

@Suite struct ListingTests {
    private func engineWith(_ keys: [String]) async throws -> (StorageEngine, TemporaryDirectory) {
        let directory = TemporaryDirectory()
        let engine = try await makeEngine(directory)
        try await engine.createBucket("b", owner: "me")
        for key in keys { try await put(engine, "b", key, Array(key.utf8)) }
        return (engine, directory)
    }

    @Test func keysAreOrderedByUTF8Bytes() async throws {
        // "é" (C3 A9) sorts after "z" (7A) by bytes; "Z" (5A) before "a".
        let keys = ["é", "z", "a", "Z", "a/b", "a b", "😀", "~"]
        let (engine, directory) = try await engineWith(keys)
        _ = directory
        defer { Task { await engine.shutdown() } }
        let page = try await engine.list(bucket: "b", prefix: "", delimiter: nil, startAfter: nil, maxKeys: 1000)
        let expected = keys.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        #expect(page.entries.map(\.key) == expected)
    }

    @Test func delimiterRollsUpCommonPrefixes() async throws {
        let keys = ["photos/2024/a.jpg", "photos/2024/b.jpg", "photos/2025/c.jpg", "photos/top.jpg", "readme", "videos/x.mp4"]
        let (engine, directory) = try await engineWith(keys)
        _ = directory
        defer { Task { await engine.shutdown() } }
        let root = try await engine.list(bucket: "b", prefix: "", delimiter: "/", startAfter: nil, maxKeys: 1000)
        #expect(root.entries.map(\.key) == ["readme"])
        #expect(root.commonPrefixes == ["photos/", "videos/"])
        let photos = try await engine.list(bucket: "b", prefix: "photos/", delimiter: "/", startAfter: nil, maxKeys: 1000)
        #expect(photos.entries.map(\.key) == ["photos/top.jpg"])
        #expect(photos.commonPrefixes == ["photos/2024/", "photos/2025/"])
    }

    @Test(arguments: [1, 2, 3, 7])
    func paginationVisitsEveryKeyOnce(pageSize: Int) async throws {
        let keys = (0..<20).map { "k\($0 % 4)/\($0)" } + ["z1", "z2"]
        let (engine, directory) = try await engineWith(keys)
        _ = directory
        defer { Task { await engine.shutdown() } }
        var seenKeys: [String] = []
        var seenPrefixes: [String] = []
        var marker: String?
        for _ in 0..<100 {
            let page = try await engine.list(bucket: "b", prefix: "", delimiter: "/", startAfter: marker, maxKeys: pageSize)
            seenKeys += page.entries.map(\.key)
            seenPrefixes += page.commonPrefixes
            #expect(page.entries.count + page.commonPrefixes.count <= pageSize)
            guard page.isTruncated else { break }
            marker = page.lastReturned
        }
        #expect(seenPrefixes == ["k0/", "k1/", "k2/", "k3/"])
        #expect(seenKeys == ["z1", "z2"])
    }
}
