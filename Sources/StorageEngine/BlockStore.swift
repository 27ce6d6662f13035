#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Hashing
import NIOCore
import Synchronization

/// Content-addressed block files under `<data-dir>/blocks/<first hex byte>/<sha256 hex>`.
///
/// On-disk format (version 1), a 16-byte header then the payload:
/// `"CLB1"` · codec (1 byte, ``BlockCodec``) · 3 reserved zero bytes · uncompressed size (UInt32 BE) ·
/// CRC32C of the payload (UInt32 BE). A block is written to `<data-dir>/tmp`, `fdatasync`ed and renamed
/// into place, so a block file that exists under its name is complete. Reads check the CRC32C and the
/// decoded size, so a corrupted file is reported as ``StorageError/Code/corruptBlock``, never returned.
///
/// All methods block on disk I/O: call them from a thread pool, never from an event loop or the
/// cooperative executor.
final class BlockStore: Sendable {
    static let headerSize = 16
    /// The largest block any configuration writes (``StorageEngine/Configuration/blockSize``).
    static let maxBlockSize = 64 << 20
    private static let magic: [UInt8] = Array("CLB1".utf8)

    let root: String
    let tmpDirectory: String
    let compression: BlockCompression
    let syncWrites: Bool
    /// Blocks that an upload in progress has written or found but not yet committed, with a count of
    /// uploads holding each: the collector never deletes them.
    let pinned = Mutex<[[UInt8]: Int]>([:])

    init(dataDirectory: String, compression: BlockCompression, syncWrites: Bool) throws(StorageError) {
        self.root = dataDirectory + "/blocks"
        self.tmpDirectory = dataDirectory + "/tmp"
        self.compression = compression
        self.syncWrites = syncWrites
        try Self.makeDirectory(self.root)
        try Self.makeDirectory(self.tmpDirectory)
        for prefix in 0..<256 {
            try Self.makeDirectory(self.root + "/" + Hex.encode([UInt8(prefix)]))
        }
        // Leftovers of writes interrupted by a crash: never renamed, so never referenced.
        for name in Self.listDirectory(self.tmpDirectory) {
            unlink(self.tmpDirectory + "/" + name)
        }
    }

    func directory(for hash: [UInt8]) -> String { self.root + "/" + Hex.encode(hash.prefix(1)) }

    func path(for hash: [UInt8]) -> String { self.directory(for: hash) + "/" + Hex.encode(hash) }

    /// Pins `hash` so the collector leaves its file alone until ``unpin(_:)``.
    func pin(_ hash: [UInt8]) {
        self.pinned.withLock { $0[hash, default: 0] += 1 }
    }

    func unpin(_ hash: [UInt8]) {
        self.pinned.withLock { pinned in
            if let count = pinned[hash] {
                pinned[hash] = count > 1 ? count - 1 : nil
            }
        }
    }

    /// Stores `bytes` as a block, unless a block with the same content exists already.
    ///
    /// The block is pinned before this returns; the caller MUST unpin it once the metadata that
    /// references it has committed (or the upload was abandoned).
    /// - Returns: the block's reference and whether a new file was created (its directory then
    ///   needs an `fsync` before the metadata commits).
    /// - Parameter knownHash: the SHA-256 of `bytes` when the caller computed it from these bytes.
    func write(_ bytes: UnsafeRawBufferPointer, knownHash: [UInt8]? = nil) throws -> (ref: BlockRef, created: Bool) {
        let hash = knownHash ?? Digests.sha256(bytes)
        let ref = BlockRef(hash: hash, size: bytes.count)
        let path = self.path(for: hash)
        // Pin first, then look: the collector checks pins under the same lock before it deletes,
        // so a file seen here cannot vanish before the commit.
        self.pin(hash)
        // A block written again is in use again: its modification time is refreshed, since the
        // cluster's collector deletes only unreferenced blocks older than its grace period.
        if access(path, F_OK) == 0, Self.touchFile(path) {
            return (ref, false)
        }
        do {
            try self.writeNew(bytes, to: path)
        } catch {
            self.unpin(hash)
            throw error
        }
        return (ref, true)
    }

    func writeNew(_ bytes: UnsafeRawBufferPointer, to path: String) throws {
        var header = Self.magic
        var payloadCodec = BlockCodec.raw
        var compressed: [UInt8]? = nil
        if let (codec, output) = Codec.compress(bytes, with: self.compression) {
            payloadCodec = codec
            compressed = output
        }
        header.append(payloadCodec.rawValue)
        header.append(contentsOf: [0, 0, 0])
        Self.appendBigEndian(UInt32(bytes.count), to: &header)
        var crc = CRC32CHasher()
        if let compressed { crc.update(compressed) } else { crc.update(bytes) }
        Self.appendBigEndian(crc.value, to: &header)

        let tmpPath = self.tmpDirectory + "/" + Hex.encode(Self.randomBytes(12)) + ".tmp"
        let fd = open(tmpPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw Self.ioError("create block file", errno) }
        var ok = false
        defer {
            close(fd)
            if !ok { unlink(tmpPath) }
        }
        try header.withUnsafeBytes { header in try Self.writeAll(fd, header) }
        if let compressed {
            try compressed.withUnsafeBytes { payload in try Self.writeAll(fd, payload) }
        } else {
            try Self.writeAll(fd, bytes)
        }
        if self.syncWrites, fdatasync(fd) != 0 { throw Self.ioError("sync block file", errno) }
        guard rename(tmpPath, path) == 0 else { throw Self.ioError("rename block file", errno) }
        ok = true
    }

    /// Makes the directory entries of blocks created since the last call durable.
    func syncDirectories(_ directories: Set<String>) throws(StorageError) {
        guard self.syncWrites else { return }
        for directory in directories {
            let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            guard fd >= 0 else { throw Self.ioError("open block directory", errno) }
            defer { close(fd) }
            if fsync(fd) != 0 { throw Self.ioError("sync block directory", errno) }
        }
    }

    /// Reads a block, checks its integrity and returns its uncompressed bytes.
    func read(_ ref: BlockRef, allocator: ByteBufferAllocator) throws(StorageError) -> ByteBuffer {
        let path = self.path(for: ref.hash)
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ENOENT { throw StorageError(.missingBlock, "block \(ref.hex) is missing") }
            throw Self.ioError("open block", errno)
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw Self.ioError("stat block", errno) }
        let fileSize = Int(info.st_size)
        guard fileSize >= Self.headerSize else { throw StorageError(.corruptBlock, "block \(ref.hex) is truncated") }

        var buffer = allocator.buffer(capacity: fileSize)
        let readResult = Self.readFile(fd, size: fileSize, into: &buffer)
        guard readResult >= 0 else { throw Self.ioError("read block", Int32(-readResult)) }
        guard readResult == fileSize else { throw StorageError(.corruptBlock, "block \(ref.hex) is truncated") }

        return try Self.decode(&buffer, name: ref.hex, expectedSize: ref.size, allocator: allocator)
    }

    /// Checks a whole block file's bytes (header, CRC32C of the payload, decoded size) and returns the
    /// uncompressed content. - Parameter expectedSize: the size the caller knows, or nil to take the header's.
    static func decode(
        _ buffer: inout ByteBuffer, name: String, expectedSize: Int?, allocator: ByteBufferAllocator
    ) throws(StorageError) -> ByteBuffer {
        guard buffer.readableBytes >= Self.headerSize else { throw StorageError(.corruptBlock, "block \(name) is truncated") }
        let header = buffer.readBytes(length: Self.headerSize)!
        guard Array(header[0..<4]) == Self.magic, let codec = BlockCodec(rawValue: header[4]) else {
            throw StorageError(.corruptBlock, "block \(name) has a bad header")
        }
        let rawSize = Int(Self.readBigEndian(header[8..<12]))
        let expectedCRC = Self.readBigEndian(header[12..<16])
        if let expectedSize, rawSize != expectedSize { throw StorageError(.corruptBlock, "block \(name) has the wrong size") }
        // Without a known size, a damaged size field must not make us allocate gigabytes.
        guard rawSize <= Self.maxBlockSize else { throw StorageError(.corruptBlock, "block \(name) has an impossible size") }
        var crc = CRC32CHasher()
        crc.update(buffer)
        guard crc.value == expectedCRC else {
            throw StorageError(.corruptBlock, "block \(name) failed its checksum")
        }
        if codec == .raw {
            guard buffer.readableBytes == rawSize else {
                throw StorageError(.corruptBlock, "block \(name) has the wrong size")
            }
            return buffer
        }
        var output = allocator.buffer(capacity: rawSize)
        let decoded = buffer.withUnsafeReadableBytes { input in
            output.writeWithUnsafeMutableBytes(minimumWritableBytes: rawSize) { out in
                Codec.decompress(input, codec: codec, into: UnsafeMutableRawBufferPointer(rebasing: out[0..<rawSize]))
                    ? rawSize : 0
            }
        }
        guard decoded == rawSize else { throw StorageError(.corruptBlock, "block \(name) does not decompress") }
        return output
    }

    /// Deletes the block file unless it is pinned and `stillUnreferenced` agrees; returns the bytes freed.
    func deleteIfUnpinned(_ hash: [UInt8]) -> Bool {
        self.pinned.withLock { pinned in
            guard pinned[hash] == nil else { return false }
            let result = unlink(self.path(for: hash))
            return result == 0 || errno == ENOENT
        }
    }

    /// Sets the modification time of `path` to now; false when the file does not exist.
    static func touchFile(_ path: String) -> Bool {
        utimensat(AT_FDCWD, path, nil, 0) == 0
    }

    /// Refreshes the modification time of a block file (under the pin lock, so that a collector's
    /// check-and-delete cannot straddle it); false when this node has no such block.
    func touch(_ hash: [UInt8]) -> Bool {
        self.pinned.withLock { _ in Self.touchFile(self.path(for: hash)) }
    }

    /// Deletes the block file if it is not pinned and was last modified before `cutoffMilliseconds`
    /// (checked under the pin lock, after any write or touch that refreshed it); returns the bytes
    /// freed, or nil when the file was kept (or is gone).
    func deleteIfUnpinned(_ hash: [UInt8], modifiedBefore cutoffMilliseconds: Int64) -> Int? {
        self.pinned.withLock { pinned in
            guard pinned[hash] == nil else { return nil }
            let path = self.path(for: hash)
            var info = stat()
            guard stat(path, &info) == 0 else { return nil }
            let modified = Int64(info.st_mtim.tv_sec) * 1000 + Int64(info.st_mtim.tv_nsec) / 1_000_000
            guard modified < cutoffMilliseconds, unlink(path) == 0 else { return nil }
            return Int(info.st_size)
        }
    }

    /// Whether the block file is absent (0), present, unpinned and last modified before
    /// `cutoffMilliseconds` (1), or present and pinned or younger (2).
    func age(_ hash: [UInt8], modifiedBefore cutoffMilliseconds: Int64) -> UInt8 {
        self.pinned.withLock { pinned in
            var info = stat()
            guard stat(self.path(for: hash), &info) == 0 else { return 0 }
            let modified = Int64(info.st_mtim.tv_sec) * 1000 + Int64(info.st_mtim.tv_nsec) / 1_000_000
            return pinned[hash] == nil && modified < cutoffMilliseconds ? 1 : 2
        }
    }

    /// Every block hash on disk with its file's modification time (seconds since the epoch).
    func allBlocks() -> [(hash: [UInt8], modified: Int)] {
        var result: [(hash: [UInt8], modified: Int)] = []
        for prefix in 0..<256 {
            let directory = self.root + "/" + Hex.encode([UInt8(prefix)])
            for name in Self.listDirectory(directory) {
                guard name.utf8.count == 64, let hash = Hex.decode(name) else { continue }
                var info = stat()
                guard stat(directory + "/" + name, &info) == 0 else { continue }
                result.append((hash, Int(info.st_mtim.tv_sec)))
            }
        }
        return result
    }

    // MARK: - POSIX helpers

    /// Reads the first `size` bytes of a file into `buffer`; returns how many it read (fewer at the
    /// end of the file), or minus `errno`.
    static func readFile(_ fd: Int32, size: Int, into buffer: inout ByteBuffer) -> Int {
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: size) { out in
            var done = 0
            while done < size {
                let n = pread(fd, out.baseAddress! + done, size - done, off_t(done))
                if n < 0 {
                    if errno == EINTR { continue }
                    return -Int(errno)
                }
                if n == 0 { break }
                done += n
            }
            return done
        }
    }

    static func makeDirectory(_ path: String) throws(StorageError) {
        if mkdir(path, 0o755) == 0 || errno == EEXIST { return }
        if errno == ENOENT, let slash = path.lastIndex(of: "/"), slash != path.startIndex {
            // A missing parent (a data directory such as ./cluster/n1): create it first, as `mkdir -p`.
            try makeDirectory(String(path[..<slash]))
            if mkdir(path, 0o755) == 0 || errno == EEXIST { return }
        }
        throw ioError("create directory \(path)", errno)
    }

    static func listDirectory(_ path: String) -> [String] {
        guard let dir = opendir(path) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) throws(StorageError) {
        var offset = 0
        while offset < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                throw ioError("write", errno)
            }
            offset += n
        }
    }

    static func ioError(_ what: String, _ code: Int32) -> StorageError {
        StorageError(.io, "\(what) failed: \(String(cString: strerror(code)))")
    }

    static func randomBytes(_ count: Int) -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
    }

    private static func appendBigEndian(_ value: UInt32, to bytes: inout [UInt8]) {
        bytes.append(UInt8(truncatingIfNeeded: value >> 24))
        bytes.append(UInt8(truncatingIfNeeded: value >> 16))
        bytes.append(UInt8(truncatingIfNeeded: value >> 8))
        bytes.append(UInt8(truncatingIfNeeded: value))
    }

    private static func readBigEndian(_ bytes: ArraySlice<UInt8>) -> UInt32 {
        bytes.reduce(0) { $0 << 8 | UInt32($1) }
    }
}
