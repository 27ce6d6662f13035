#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Hashing
public import NIOCore
import Synchronization

/// What reading one block file end to end found.
public enum BlockCheck: Sendable, Equatable {
    /// The header, the CRC32C of the payload, the decoded size and the SHA-256 of the content all
    /// agree with the file's name. `fileBytes`: the bytes read.
    case intact(fileBytes: Int)
    /// No file by that name (deleted or moved since it was listed).
    case missing
    /// The file is damaged (or unreadable).
    case damaged(BlockDamage)
}

/// One damaged block file, as a check found it: what is wrong, and which file (device and inode),
/// so that a repair never touches a newer file that replaced it under the same name.
public struct BlockDamage: Sendable, Equatable, CustomStringConvertible {
    /// The block's name: the SHA-256 its content should have.
    public var hash: [UInt8]
    /// What is wrong: truncated, bad header, failed its checksum, content does not match its name,
    /// unreadable.
    public var reason: String
    /// The bytes of the file read (its size when it could be read).
    public var fileBytes: Int
    /// The file found damaged; nil when even `stat` failed.
    let identity: FileIdentity?

    init(hash: [UInt8], reason: String, fileBytes: Int, identity: FileIdentity?) {
        self.hash = hash
        self.reason = reason
        self.fileBytes = fileBytes
        self.identity = identity
    }

    /// The block's hex name.
    public var hex: String { Hex.encode(self.hash) }

    public var description: String { "block \(self.hex): \(self.reason)" }
}

/// A file's device and inode.
struct FileIdentity: Sendable, Hashable {
    var device: UInt64
    var inode: UInt64

    init(_ info: stat) {
        self.device = UInt64(info.st_dev)
        self.inode = UInt64(info.st_ino)
    }
}

/// What ``StorageEngine/quarantineDamagedBlock(_:)`` did.
public enum QuarantineOutcome: Sendable, Equatable {
    /// The damaged file was moved to this path.
    case moved(String)
    /// A write holds the block pinned (it found the file and will reference it): try later.
    case busy
    /// The file under the block's name is no longer the damaged one (or is gone): nothing to do.
    case changed
}

extension BlockStore {
    /// The hashes of the block files in one prefix directory, in directory order.
    func hashes(prefix: UInt8) -> [[UInt8]] {
        Self.listDirectory(self.root + "/" + Hex.encode([prefix])).compactMap { name in
            guard name.utf8.count == 64, let hash = Hex.decode(name), hash.first == prefix else { return nil }
            return hash
        }
    }

    /// Reads one block file completely and verifies it; returns the content when it is intact.
    func verify(_ hash: [UInt8], allocator: ByteBufferAllocator) -> (check: BlockCheck, content: ByteBuffer?) {
        let path = self.path(for: hash)
        let name = Hex.encode(hash)
        func damaged(_ reason: String, _ bytes: Int, _ identity: FileIdentity?) -> (BlockCheck, ByteBuffer?) {
            (.damaged(BlockDamage(hash: hash, reason: reason, fileBytes: bytes, identity: identity)), nil)
        }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            let code = errno
            if code == ENOENT { return (.missing, nil) }
            var info = stat()
            let identity = stat(path, &info) == 0 ? FileIdentity(info) : nil
            return damaged("unreadable (\(String(cString: strerror(code))))", 0, identity)
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { return damaged("unreadable (\(String(cString: strerror(errno))))", 0, nil) }
        let identity = FileIdentity(info)
        let fileSize = Int(info.st_size)
        guard fileSize <= Self.headerSize + Self.maxBlockSize + Self.maxBlockSize / 8 else {
            return damaged("has an impossible size", fileSize, identity)
        }
        var buffer = allocator.buffer(capacity: fileSize)
        let readResult = Self.readFile(fd, size: fileSize, into: &buffer)
        guard readResult >= 0 else {
            return damaged("unreadable (\(String(cString: strerror(Int32(-readResult)))))", fileSize, identity)
        }
        guard readResult == fileSize else { return damaged("is truncated", readResult, identity) }
        let content: ByteBuffer
        do {
            content = try Self.decode(&buffer, name: name, expectedSize: nil, allocator: allocator)
        } catch {
            // "block <hex> failed its checksum" → "failed its checksum".
            let reason = error.message.hasPrefix("block \(name) ") ? String(error.message.dropFirst(7 + name.count)) : error.message
            return damaged(reason, fileSize, identity)
        }
        guard content.withUnsafeReadableBytes({ Digests.sha256($0) }) == hash else {
            return damaged("has content that does not match its name", fileSize, identity)
        }
        return (.intact(fileBytes: fileSize), content)
    }

    /// Whether the file under `hash`'s name is still the one `damage` describes (or, when its identity
    /// is unknown, whether any file is there).
    private func stillDamaged(_ damage: BlockDamage) -> Bool {
        var info = stat()
        guard stat(self.path(for: damage.hash), &info) == 0 else { return false }
        return damage.identity.map { $0 == FileIdentity(info) } ?? true
    }

    private static func quarantinePath(_ directory: String, _ hash: [UInt8]) -> String {
        directory + "/" + Hex.encode(hash) + "." + String(time(nil)) + "." + Hex.encode(Self.randomBytes(4))
    }

    /// Puts `content` (whose SHA-256 MUST be the block's name) in place of the damaged file: the good
    /// copy is written and synced beside it, the damaged file is linked into `quarantine`, and the good
    /// copy is renamed over the name. The name never disappears, so a concurrent upload that found the
    /// file (and pinned it) keeps a valid reference.
    /// - Returns: nil when the file under the name is no longer the damaged one (left alone), else the
    ///   quarantined file's path.
    func replace(_ damage: BlockDamage, with content: UnsafeRawBufferPointer, quarantine: String) throws -> String? {
        try Self.makeDirectory(quarantine)
        let staged = self.tmpDirectory + "/" + damage.hex + "." + Hex.encode(Self.randomBytes(6)) + ".repair"
        try self.writeNew(content, to: staged)
        var keep = false
        defer { if !keep { unlink(staged) } }
        let path = self.path(for: damage.hash)
        let kept: String? = try self.pinned.withLock { (_: inout [[UInt8]: Int]) throws(StorageError) -> String? in
            // Under the collector's lock, so that it never deletes the name between the check and the rename.
            guard self.stillDamaged(damage) else { return nil }
            let target = Self.quarantinePath(quarantine, damage.hash)
            guard link(path, target) == 0 else { throw Self.ioError("quarantine damaged block", errno) }
            guard rename(staged, path) == 0 else { throw Self.ioError("replace damaged block", errno) }
            keep = true
            return target
        }
        guard let kept else { return nil }
        try self.syncDirectories([self.directory(for: damage.hash), quarantine])
        return kept
    }

    /// Moves the damaged file out of the way into `quarantine` (when no intact copy could be had), so
    /// that the next upload of the same content writes a fresh file instead of finding this one.
    /// A block that a write holds pinned is left alone (``QuarantineOutcome/busy``).
    func quarantine(_ damage: BlockDamage, into quarantine: String) throws -> QuarantineOutcome {
        try Self.makeDirectory(quarantine)
        let path = self.path(for: damage.hash)
        let outcome = try self.pinned.withLock { (pinned: inout [[UInt8]: Int]) throws(StorageError) -> QuarantineOutcome in
            guard pinned[damage.hash] == nil else { return .busy }
            guard self.stillDamaged(damage) else { return .changed }
            let target = Self.quarantinePath(quarantine, damage.hash)
            guard rename(path, target) == 0 else { throw Self.ioError("quarantine damaged block", errno) }
            return .moved(target)
        }
        if case .moved = outcome { try self.syncDirectories([self.directory(for: damage.hash), quarantine]) }
        return outcome
    }
}

extension BlockRef {
    /// The size to send when asking another node for a block whose size is not known (its local
    /// file's header is damaged); the answer is still checked against the block's SHA-256.
    public static let unknownSize = Int(UInt32.max)
}

extension StorageEngine {
    /// Where scrub puts damaged block files: `<data-dir>/quarantine/<hash>.<unix time>.<random>`.
    public var quarantineDirectory: String { self.configuration.dataDirectory + "/quarantine" }

    /// The hashes of this node's block files whose first byte is `prefix`.
    public func blockHashes(prefix: UInt8) async throws -> [[UInt8]] {
        let blocks = self.blocks
        return try await self.runIO { blocks.hashes(prefix: prefix) }
    }

    /// Reads one block file end to end and verifies its header, CRC32C, decoded size and that the
    /// SHA-256 of its content equals its name.
    public func checkBlock(_ hash: [UInt8]) async throws -> BlockCheck {
        let blocks = self.blocks
        return try await self.runIO { blocks.verify(hash, allocator: ByteBufferAllocator()).check }
    }

    /// Reads a block this node holds without knowing its size, verified as ``checkBlock(_:)`` does;
    /// nil when the node has no intact copy.
    public func loadVerifiedBlock(_ hash: [UInt8]) async throws -> ByteBuffer? {
        let blocks = self.blocks
        return try await self.runIO { blocks.verify(hash, allocator: ByteBufferAllocator()).content }
    }

    /// Replaces a damaged block file with an intact copy; the damaged file goes to
    /// ``quarantineDirectory``. `content`'s SHA-256 MUST be the block's name (the caller verified it).
    /// - Returns: the quarantined file's path, or nil when the file had changed since the check (it was
    ///   left alone).
    public func replaceDamagedBlock(_ damage: BlockDamage, with content: ByteBuffer) async throws -> String? {
        let blocks = self.blocks
        let quarantine = self.quarantineDirectory
        return try await self.runIO {
            try content.withUnsafeReadableBytes { try blocks.replace(damage, with: $0, quarantine: quarantine) }
        }
    }

    /// Moves a damaged block file to ``quarantineDirectory`` (no intact copy could be found), unless an
    /// upload holds it pinned or it changed since the check.
    public func quarantineDamagedBlock(_ damage: BlockDamage) async throws -> QuarantineOutcome {
        let blocks = self.blocks
        let quarantine = self.quarantineDirectory
        return try await self.runIO { try blocks.quarantine(damage, into: quarantine) }
    }
}
