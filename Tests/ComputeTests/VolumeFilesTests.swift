import Foundation
import Testing

@testable import VolumeFiles

/// Volume files without mounts (those need root: tests/integration/test_volumes.py mounts them).
@Suite struct VolumeFilesTests {
    static func scratch() throws -> VolumeFiles {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("volumes-\(UUID().uuidString)").path
        return VolumeFiles(root: root)
    }

    @Test func aNewVolumeIsSparseAndReadsAsHoles() async throws {
        let files = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: files.root) }
        try files.create("v1", bytes: 8 << 20)
        #expect(files.size("v1") == 8 << 20)
        #expect((files.allocatedBytes("v1") ?? .max) < 1 << 20, "nothing written, nothing allocated")
        var blocks: [Int] = []
        try await files.readBlocks("v1") { index, bytes in if bytes != nil { blocks.append(index) } }
        #expect(blocks.isEmpty)

        // Written blocks come back with their index and bytes; the others stay holes.
        let data = (0..<VolumeFiles.blockSize).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        try files.writeBlock("v1", index: 5, data)
        try files.sync("v1")
        var seen: [(Int, [UInt8])] = []
        try await files.readBlocks("v1") { index, bytes in if let bytes { seen.append((index, bytes)) } }
        #expect(seen.count == 1 && seen.first?.0 == 5 && seen.first?.1 == data)
        // Making it again with the same size (a task run twice) keeps what was written.
        try files.create("v1", bytes: 8 << 20)
        var again = 0
        try await files.readBlocks("v1") { _, bytes in if bytes != nil { again += 1 } }
        #expect(again == 1)
        try files.remove("v1")
        #expect(!files.exists("v1"))
        try files.remove("v1")  // missing is fine
    }

    @Test func formatAndGrowMakeALargerFileSystem() async throws {
        let files = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: files.root) }
        try files.create("v2", bytes: 16 << 20)
        try await files.format("v2", label: "data")
        var written = 0
        try await files.readBlocks("v2") { _, bytes in if bytes != nil { written += 1 } }
        #expect(written > 0, "mkfs wrote the file system's blocks")
        try await files.grow("v2", to: 32 << 20)
        #expect(files.size("v2") == 32 << 20)
        // The file system fills the grown file: its block count times its block size.
        let header = try await HostCommand.check(["dumpe2fs", "-h", files.path("v2")], doing: "reading the superblock")
        func field(_ name: String) -> Int? {
            header.split(separator: "\n").first { $0.hasPrefix(name + ":") }.flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) }
        }
        #expect(field("Block count").flatMap { count in field("Block size").map { count * $0 } } == 32 << 20, "\(header.prefix(400))")
    }

    @Test func aMissingToolIsAClearError() async throws {
        await #expect(throws: VolumeError.self) { try await HostCommand.run(["no-such-tool-here"]) }
    }

    @Test func zeroBlocksAndMountTableEscapes() {
        #expect(VolumeFiles.isZero([UInt8](repeating: 0, count: 13)))
        #expect(!VolumeFiles.isZero([UInt8](repeating: 0, count: 12) + [1]))
        #expect(!VolumeFiles.isZero([1] + [UInt8](repeating: 0, count: 4095)))
        #expect(VolumeFiles.unescape("/mnt/with\\040space") == "/mnt/with space")
        #expect(VolumeFiles.unescape("/plain/path") == "/plain/path")
        #expect(VolumeFiles.unescape("/end\\04") == "/end\\04", "a cut escape stays as it is")
        #expect(VolumeFiles.mountTable().contains { $0.point == "/" })
    }

    @Test func lvmSaysWhatItLacks() {
        let misc = " 10 device-mapper\n183 hw_random\n"
        #expect(LVMSupport.unavailable(procMisc: "183 hw_random\n", lvmInstalled: true).contains("no device-mapper"))
        #expect(LVMSupport.unavailable(procMisc: "183 hw_random-device-mapper\n", lvmInstalled: true).contains("no device-mapper"))
        #expect(LVMSupport.unavailable(procMisc: misc, lvmInstalled: false).contains("(Debian: lvm2)"))
        #expect(LVMSupport.unavailable(procMisc: misc, lvmInstalled: true).contains("no LVM volume backend yet"))
    }

    /// /proc files report size 0; a mount table longer than Foundation's first read (4000 bytes) is read whole.
    @Test func aLongProcFileIsReadToItsEnd() throws {
        let whole = try #require(VolumeFiles.readProcFile("/proc/self/maps"))
        #expect(whole.utf8.count > 4000, "this process maps more than 4000 bytes' worth of lines")
        #expect(whole.hasSuffix("\n"))
        let counted = try #require(VolumeFiles.readProcFile("/proc/self/mountinfo"))
        #expect(VolumeFiles.mountTable().count == counted.split(separator: "\n").count)
    }
}
