import Foundation
import Hashing
import NIOCore
import StorageEngine
import TestSupport
import Testing

/// Checking one block file end to end, and putting a damaged one out of the way.
@Suite struct BlockScrubTests {
    private static func engine(_ directory: TemporaryDirectory) async throws -> StorageEngine {
        var configuration = StorageEngine.Configuration(dataDirectory: directory.path)
        configuration.blockSize = 64 * 1024
        configuration.syncWrites = false
        let engine = try StorageEngine(configuration: configuration)
        try await engine.start()
        return engine
    }

    private static func path(_ directory: TemporaryDirectory, _ hash: [UInt8]) -> String {
        directory.path + "/blocks/" + Hex.encode(hash.prefix(1)) + "/" + Hex.encode(hash)
    }

    private static func modify(_ path: String, _ change: (inout Data) -> Void) throws {
        var data = try Data(contentsOf: URL(fileURLWithPath: path))
        change(&data)
        try data.write(to: URL(fileURLWithPath: path))
    }

    /// A random (stored raw) and a repetitive (stored compressed) block.
    private static let contents: [[UInt8]] = {
        var random = SeededBytes(seed: 21)
        return [random.bytes(50_000), Array(repeating: 7, count: 40_000) + Array("tail".utf8)]
    }()

    private static func damaged(_ check: BlockCheck) -> BlockDamage? {
        if case .damaged(let damage) = check { return damage }
        return nil
    }

    @Test(arguments: 0..<2) func anIntactBlockPassesAndEveryKindOfDamageIsFound(index: Int) async throws {
        let directory = TemporaryDirectory()
        let engine = try await Self.engine(directory)
        let content = Self.contents[index]
        let hash = try await engine.storeBlock(ByteBuffer(bytes: content))
        let path = Self.path(directory, hash)
        let fileSize = try #require(try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int)
        #expect(try await engine.checkBlock(hash) == .intact(fileBytes: fileSize))
        #expect(try await engine.loadVerifiedBlock(hash).map { Array(buffer: $0) } == content)
        let original = try Data(contentsOf: URL(fileURLWithPath: path))

        // A flipped byte in the payload fails the checksum.
        try Self.modify(path) { $0[$0.count / 2] ^= 0x01 }
        #expect(Self.damaged(try await engine.checkBlock(hash))?.reason == "failed its checksum")
        #expect(try await engine.loadVerifiedBlock(hash) == nil)
        // A truncated file.
        try original.prefix(original.count - 100).write(to: URL(fileURLWithPath: path))
        #expect(Self.damaged(try await engine.checkBlock(hash)) != nil)
        try original.prefix(10).write(to: URL(fileURLWithPath: path))
        #expect(Self.damaged(try await engine.checkBlock(hash))?.reason == "is truncated")
        // A damaged header.
        try original.write(to: URL(fileURLWithPath: path))
        try Self.modify(path) { $0[0] = UInt8(ascii: "X") }
        #expect(Self.damaged(try await engine.checkBlock(hash))?.reason == "has a bad header")
        // An intact file under the wrong name (its header and CRC are fine, its content is another block's).
        let other = try await engine.storeBlock(ByteBuffer(bytes: Array(content.reversed())))
        try FileManager.default.removeItem(atPath: path)
        try FileManager.default.copyItem(atPath: Self.path(directory, other), toPath: path)
        #expect(Self.damaged(try await engine.checkBlock(hash))?.reason == "has content that does not match its name")
        // Gone.
        try FileManager.default.removeItem(atPath: path)
        #expect(try await engine.checkBlock(hash) == .missing)
        await engine.shutdown()
    }

    @Test func aDamagedFileIsReplacedWithAnIntactCopyAndKeptInQuarantine() async throws {
        let directory = TemporaryDirectory()
        let engine = try await Self.engine(directory)
        let content = Self.contents[0]
        let hash = try await engine.storeBlock(ByteBuffer(bytes: content))
        let path = Self.path(directory, hash)
        try Self.modify(path) { $0[$0.count - 1] ^= 0xFF }
        let damage = try #require(Self.damaged(try await engine.checkBlock(hash)))
        let damagedBytes = try Data(contentsOf: URL(fileURLWithPath: path))

        let quarantined = try #require(try await engine.replaceDamagedBlock(damage, with: ByteBuffer(bytes: content)))
        #expect(quarantined.hasPrefix(engine.quarantineDirectory + "/" + Hex.encode(hash)))
        #expect(try Data(contentsOf: URL(fileURLWithPath: quarantined)) == damagedBytes)
        guard case .intact = try await engine.checkBlock(hash) else {
            Issue.record("the block is not intact after the repair")
            return
        }
        #expect(Array(buffer: try await engine.readBlock(BlockRef(hash: hash, size: content.count))) == content)
        // The same damage report once more: the file under the name is another one now, left alone.
        #expect(try await engine.replaceDamagedBlock(damage, with: ByteBuffer(bytes: content)) == nil)
        #expect(try await engine.quarantineDamagedBlock(damage) == .changed)
        await engine.shutdown()
    }

    @Test func aDamagedFileWithoutACopyIsQuarantinedUnlessAnUploadHoldsIt() async throws {
        let directory = TemporaryDirectory()
        let engine = try await Self.engine(directory)
        let content = Self.contents[0]
        // An upload in progress has written (and pinned) the block.
        let block = content + content.prefix(64 * 1024 - content.count)
        let writer = engine.makeWriter()
        try await writer.write(ByteBuffer(bytes: block))
        _ = try await writer.finish(allowInline: false)
        let hash = Digests.sha256(block)
        let path = Self.path(directory, hash)
        #expect(FileManager.default.fileExists(atPath: path))
        try Self.modify(path) { $0[20] ^= 0x10 }
        let damage = try #require(Self.damaged(try await engine.checkBlock(hash)))
        #expect(try await engine.quarantineDamagedBlock(damage) == .busy)
        #expect(FileManager.default.fileExists(atPath: path))

        await writer.release()
        guard case .moved(let quarantined) = try await engine.quarantineDamagedBlock(damage) else {
            Issue.record("the damaged file was not moved")
            return
        }
        #expect(!FileManager.default.fileExists(atPath: path))
        #expect(FileManager.default.fileExists(atPath: quarantined))
        // The name is free: the next write of the same content makes a fresh, intact file.
        try await engine.storeBlock(ByteBuffer(bytes: block))
        guard case .intact = try await engine.checkBlock(hash) else {
            Issue.record("the rewritten block is not intact")
            return
        }
        await engine.shutdown()
    }

    @Test func blockHashesListsOneDirectory() async throws {
        let directory = TemporaryDirectory()
        let engine = try await Self.engine(directory)
        var stored: [[UInt8]] = []
        var random = SeededBytes(seed: 5)
        for _ in 0..<20 { stored.append(try await engine.storeBlock(ByteBuffer(bytes: random.bytes(100)))) }
        var listed: [[UInt8]] = []
        for prefix in 0...255 { listed += try await engine.blockHashes(prefix: UInt8(prefix)) }
        #expect(Set(listed) == Set(stored))
        // Files that are not blocks are not listed.
        _ = FileManager.default.createFile(atPath: directory.path + "/blocks/00/not-a-block", contents: Data([1]))
        #expect(try await engine.blockHashes(prefix: 0).allSatisfy { $0.count == 32 && $0[0] == 0 })
        await engine.shutdown()
    }
}
