public import Foundation
public import Hashing
public import NIOCore
import NIOPosix
import SQLite
import Synchronization

/// The local storage engine of one node: content-addressed blocks on disk and metadata records in
/// SQLite.
///
/// Durability contract: every block an object references is written and `fdatasync`ed (and its
/// directory entry synced) before the metadata record that points at it commits, and a write call
/// returns only after that commit. So a crash at any moment leaves either the old object or the new
/// one, never a partial one.
public final class StorageEngine: Sendable {
    /// Engine settings.
    public struct Configuration: Sendable {
        /// Where all state lives: `meta.sqlite`, `blocks/`, `tmp/`.
        public var dataDirectory: String
        /// Objects are cut into blocks of this many bytes (the last one may be shorter). Default 1 MiB.
        public var blockSize: Int = 1 << 20 {
            willSet { precondition(newValue >= 4096 && newValue <= 64 << 20, "blockSize must be 4 KiB…64 MiB") }
        }
        /// Objects up to this size are kept inside their metadata record: no block file, no extra
        /// fsync. Default 16 KiB.
        public var inlineThreshold: Int = 16 << 10
        /// How blocks are compressed; compression is used only when it saves at least an eighth.
        public var compression: BlockCompression = .lz4
        /// `fdatasync` block files and directories, and commit metadata with `synchronous=FULL`.
        /// Turning this off keeps data safe from a process crash but not from a power loss.
        public var syncWrites: Bool = true
        /// Blocks of one upload being written at once; bounds an upload's memory to about
        /// `(maxBlocksInFlight + 1) * blockSize`.
        public var maxBlocksInFlight: Int = 4
        /// Blocks that no object references are deleted after this long. Default one hour.
        public var garbageGracePeriod: Duration = .seconds(3600)
        /// Threads doing disk and database I/O.
        public var ioThreads: Int = 8

        public init(dataDirectory: String) {
            self.dataDirectory = dataDirectory
        }
    }

    public let configuration: Configuration
    let blocks: BlockStore
    let metadata: MetadataStore
    let threadPool: NIOThreadPool
    let nowMilliseconds: @Sendable () -> UInt64
    private let clock = Mutex(HybridClock())
    private let statistics = Mutex<(objects: Int64, bytes: Int64)>((0, 0))
    /// The event loop that thread-pool futures complete on; it does no work of its own.
    let eventLoop: any EventLoop

    /// Opens the engine, creating the data directory layout if needed.
    /// - Parameters:
    ///   - configuration: the engine's settings.
    ///   - nowMilliseconds: the wall clock, milliseconds since the Unix epoch (injected for tests).
    public init(
        configuration: Configuration,
        nowMilliseconds: @escaping @Sendable () -> UInt64 = { UInt64(Date().timeIntervalSince1970 * 1000) }
    ) throws {
        self.configuration = configuration
        self.nowMilliseconds = nowMilliseconds
        try BlockStore.makeDirectory(configuration.dataDirectory)
        self.threadPool = NIOThreadPool(numberOfThreads: configuration.ioThreads)
        self.threadPool.start()
        self.eventLoop = MultiThreadedEventLoopGroup.singleton.any()
        self.blocks = try BlockStore(
            dataDirectory: configuration.dataDirectory,
            compression: configuration.compression,
            syncWrites: configuration.syncWrites
        )
        self.metadata = try MetadataStore(
            path: configuration.dataDirectory + "/meta.sqlite",
            threadPool: self.threadPool,
            synchronous: configuration.syncWrites
        )
    }

    /// Loads the statistics; call once before serving.
    public func start() async throws {
        let totals = try await self.metadata.read { db in
            var totals: (Int64, Int64) = (0, 0)
            try db.query("SELECT count(*), coalesce(sum(size), 0) FROM objects") { row in
                totals = (row.int(0), row.int(1))
            }
            return totals
        }
        self.statistics.withLock { $0 = totals }
    }

    /// Stops the I/O threads. Calls after this fail with ``StorageError/Code/unavailable``.
    public func shutdown() async {
        await self.metadata.shutdown()
        try? await self.threadPool.shutdownGracefully()
    }

    /// The number of objects stored and their total size in bytes.
    public var stored: (objects: Int64, bytes: Int64) { self.statistics.withLock { $0 } }

    func nextTimestamp() -> HybridTimestamp {
        let now = self.nowMilliseconds()
        return self.clock.withLock { $0.next(nowMilliseconds: now) }
    }

    func observeTimestamp(_ timestamp: HybridTimestamp) {
        self.clock.withLock { $0.observe(timestamp) }
    }

    private func applyDelta(_ delta: (Int64, Int64)) {
        self.statistics.withLock {
            $0.objects += delta.0
            $0.bytes += delta.1
        }
    }

    func runIO<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        do {
            return try await self.threadPool.runIfActive(body)
        } catch let error as StorageError {
            throw error
        } catch is NIOThreadPoolError.ThreadPoolInactive {
            throw StorageError(.unavailable, "the storage engine is shutting down")
        }
    }

    // MARK: - Buckets

    /// Creates a bucket owned by `owner`.
    /// - Throws: ``StorageError/Code/bucketAlreadyOwnedByYou`` or ``StorageError/Code/bucketAlreadyExists``.
    public func createBucket(_ name: String, owner: String) async throws {
        let now = Int64(self.nowMilliseconds())
        try await self.metadata.write { db in
            if let existing = try MetadataQueries.bucket(db, name) {
                if existing.owner == owner {
                    throw StorageError(.bucketAlreadyOwnedByYou, "Your previous request to create the named bucket succeeded and you already own it.")
                }
                throw StorageError(.bucketAlreadyExists, "The requested bucket name is not available.")
            }
            try db.query(
                "INSERT INTO buckets (name, created_ms, owner) VALUES (?, ?, ?)",
                [.text(name), .integer(now), .text(owner)]
            )
        }
    }

    /// The bucket named `name`, or nil.
    public func bucket(_ name: String) async throws -> BucketRecord? {
        try self.metadata.lookup { db in try MetadataQueries.bucket(db, name) }
    }

    /// All buckets, by name.
    public func listBuckets() async throws -> [BucketRecord] {
        try await self.metadata.read { db in
            var result: [BucketRecord] = []
            try db.query("SELECT name, created_ms, owner FROM buckets ORDER BY name") { row in
                result.append(
                    BucketRecord(
                        name: row.text(0),
                        created: Date(timeIntervalSince1970: Double(row.int(1)) / 1000),
                        owner: row.text(2)
                    )
                )
            }
            return result
        }
    }

    /// Deletes an empty bucket, aborting its multipart uploads.
    /// - Throws: ``StorageError/Code/noSuchBucket``, ``StorageError/Code/bucketNotEmpty``.
    public func deleteBucket(_ name: String) async throws {
        let now = Int64(self.nowMilliseconds())
        try await self.metadata.write { db in
            try MetadataQueries.requireBucket(db, name)
            var hasObjects = false
            try db.query("SELECT 1 FROM objects WHERE bucket = ? LIMIT 1", [.text(name)]) { _ in hasObjects = true }
            if hasObjects {
                throw StorageError(.bucketNotEmpty, "The bucket you tried to delete is not empty")
            }
            var uploads: [String] = []
            try db.query("SELECT upload_id FROM uploads WHERE bucket = ?", [.text(name)]) { row in uploads.append(row.text(0)) }
            for upload in uploads { try MetadataQueries.deleteUpload(db, upload, nowMs: now) }
            try db.query("DELETE FROM buckets WHERE name = ?", [.text(name)])
        }
    }

    // MARK: - Objects

    /// Starts writing the data of a new object or part.
    public func makeWriter() -> ObjectWriter {
        ObjectWriter(engine: self)
    }

    /// The current record of `key`, or nil.
    /// - Throws: ``StorageError/Code/noSuchBucket``.
    public func object(bucket: String, key: String) async throws -> ObjectRecord? {
        try self.metadata.lookup { db in
            guard let record = try MetadataQueries.object(db, bucket: bucket, key: key) else {
                try MetadataQueries.requireBucket(db, bucket)
                return nil
            }
            return record
        }
    }

    /// Commits an object whose data `written` holds; it replaces any current version of the key.
    ///
    /// Returns only once the record is durable. The writer's blocks are released afterwards.
    public func putObject(
        bucket: String,
        key: String,
        written: ObjectWriter.Written,
        etag: String,
        metadata: ObjectMetadata
    ) async throws -> ObjectRecord {
        let record = ObjectRecord(
            bucket: bucket,
            key: key,
            size: written.size,
            etag: etag,
            timestamp: self.nextTimestamp(),
            metadata: metadata,
            data: written.data
        )
        let now = Int64(self.nowMilliseconds())
        let delta = try await self.metadata.write { db in try MetadataQueries.putObject(db, record, nowMs: now) }
        self.applyDelta(delta)
        return record
    }

    /// Stores a new object that shares the data of `source` (no bytes are copied).
    /// - Throws: ``StorageError/Code/noSuchKey`` when the source's blocks are gone.
    public func copyObject(
        _ source: ObjectRecord,
        toBucket bucket: String,
        key: String,
        metadata: ObjectMetadata
    ) async throws -> ObjectRecord {
        let refs = source.data.blocks
        for ref in refs { self.blocks.pin(ref.hash) }
        defer { for ref in refs { self.blocks.unpin(ref.hash) } }
        let blocks = self.blocks
        let allPresent = try await self.runIO {
            refs.allSatisfy { access(blocks.path(for: $0.hash), F_OK) == 0 }
        }
        guard allPresent else { throw StorageError(.noSuchKey, "The specified key does not exist.") }
        let record = ObjectRecord(
            bucket: bucket,
            key: key,
            size: source.size,
            etag: source.etag,
            timestamp: self.nextTimestamp(),
            metadata: metadata,
            data: source.data
        )
        let now = Int64(self.nowMilliseconds())
        let delta = try await self.metadata.write { db in try MetadataQueries.putObject(db, record, nowMs: now) }
        self.applyDelta(delta)
        return record
    }

    /// Deletes `key` if it exists (deleting a missing key succeeds, as in S3).
    /// - Throws: ``StorageError/Code/noSuchBucket``.
    public func deleteObject(bucket: String, key: String) async throws {
        try await self.deleteObjects(bucket: bucket, keys: [key])
    }

    /// Deletes several keys in one transaction.
    public func deleteObjects(bucket: String, keys: [String]) async throws {
        let now = Int64(self.nowMilliseconds())
        let delta = try await self.metadata.write { db in
            try MetadataQueries.requireBucket(db, bucket)
            var total: (Int64, Int64) = (0, 0)
            for key in keys {
                let delta = try MetadataQueries.deleteObject(db, bucket: bucket, key: key, nowMs: now)
                total.0 += delta.0
                total.1 += delta.1
            }
            return total
        }
        self.applyDelta(delta)
    }

    /// Reads one block, verified, for a GET.
    public func readBlock(_ ref: BlockRef) async throws -> ByteBuffer {
        let blocks = self.blocks
        return try await self.runIO { try blocks.read(ref, allocator: ByteBufferAllocator()) }
    }

    /// Starts reading one block, verified, so that a GET can read ahead while it sends.
    public func startReadingBlock(_ ref: BlockRef) -> EventLoopFuture<ByteBuffer> {
        let blocks = self.blocks
        return self.threadPool.runIfActive(eventLoop: self.eventLoop) {
            try blocks.read(ref, allocator: ByteBufferAllocator())
        }
    }

    // MARK: - Listing

    /// One entry of a listing.
    public struct ListEntry: Sendable {
        public var key: String
        public var size: Int64
        public var etag: String
        public var timestamp: HybridTimestamp

        /// `LastModified`.
        public var lastModified: Date { self.timestamp.lastModified }
    }

    /// A page of a listing.
    public struct ListPage: Sendable {
        /// Objects, in key order (UTF-8 bytes).
        public var entries: [ListEntry] = []
        /// Rolled-up prefixes, in order.
        public var commonPrefixes: [String] = []
        /// More keys follow.
        public var isTruncated = false
        /// The last key or common prefix returned; the next page starts after it.
        public var lastReturned: String?

        /// An empty, untruncated page.
        public init() {}
    }

    /// Lists keys in byte order, after `startAfter`, under `prefix`, rolling keys that contain
    /// `delimiter` after the prefix up into common prefixes; at most `maxKeys` entries and prefixes.
    public func list(
        bucket: String,
        prefix: String,
        delimiter: String?,
        startAfter: String?,
        maxKeys: Int
    ) async throws -> ListPage {
        try await self.metadata.read { db in
            try MetadataQueries.requireBucket(db, bucket)
            return try Listing.run(db, bucket: bucket, prefix: prefix, delimiter: delimiter, startAfter: startAfter, maxKeys: maxKeys)
        }
    }

    // MARK: - Multipart uploads

    /// Starts a multipart upload.
    /// - Throws: ``StorageError/Code/noSuchBucket``.
    public func createUpload(
        bucket: String,
        key: String,
        owner: String,
        metadata: ObjectMetadata,
        checksumAlgorithm: ChecksumAlgorithm?
    ) async throws -> UploadRecord {
        let uploadID = Hex.encode(BlockStore.randomBytes(24))
        let now = Int64(self.nowMilliseconds())
        let record = UploadRecord(
            uploadID: uploadID,
            bucket: bucket,
            key: key,
            initiated: Date(timeIntervalSince1970: Double(now) / 1000),
            owner: owner,
            metadata: metadata,
            checksumAlgorithm: checksumAlgorithm
        )
        let meta = MetadataQueries.encodeMetadata(metadata)
        try await self.metadata.write { db in
            try MetadataQueries.requireBucket(db, bucket)
            try db.query(
                """
                INSERT INTO uploads (upload_id, bucket, key, initiated_ms, owner, meta, checksum_algorithm)
                VALUES (?, ?, ?, ?, ?, ?, ?)
                """,
                [
                    .text(uploadID), .text(bucket), .blob(Array(key.utf8)), .integer(now), .text(owner), .blob(meta),
                    checksumAlgorithm.map { .text($0.rawValue) } ?? .null,
                ]
            )
        }
        return record
    }

    /// The upload `uploadID` of `bucket`/`key`.
    /// - Throws: ``StorageError/Code/noSuchUpload`` when it does not exist or belongs to another key.
    public func upload(_ uploadID: String, bucket: String, key: String) async throws -> UploadRecord {
        let record = try await self.metadata.read { db in try MetadataQueries.upload(db, uploadID) }
        guard let record, record.bucket == bucket, record.key == key else {
            throw Self.noSuchUpload
        }
        return record
    }

    static let noSuchUpload = StorageError(
        .noSuchUpload,
        "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed."
    )

    /// Stores a part, replacing an earlier part with the same number.
    public func putPart(
        uploadID: String,
        bucket: String,
        key: String,
        partNumber: Int,
        written: ObjectWriter.Written,
        etag: String,
        checksum: StoredChecksum?
    ) async throws -> PartRecord {
        let now = Int64(self.nowMilliseconds())
        let part = PartRecord(
            partNumber: partNumber,
            size: written.size,
            etag: etag,
            modified: Date(timeIntervalSince1970: Double(now) / 1000),
            checksum: checksum,
            blocks: written.data.blocks
        )
        let checksumJSON = try checksum.map { String(decoding: try MetadataQueries.encoder.encode($0), as: UTF8.self) }
        try await self.metadata.write { db in
            guard let upload = try MetadataQueries.upload(db, uploadID), upload.bucket == bucket, upload.key == key else {
                throw Self.noSuchUpload
            }
            var old: [BlockRef] = []
            try db.query(
                "SELECT blocks FROM parts WHERE upload_id = ? AND part_number = ?",
                [.text(uploadID), .integer(Int64(partNumber))]
            ) { row in old = BlockManifest.decode(row.blob(0)) }
            try MetadataQueries.adjustRefs(db, old, by: -1, nowMs: now)
            try db.query(
                """
                INSERT OR REPLACE INTO parts (upload_id, part_number, size, etag, modified_ms, checksum, blocks)
                VALUES (?, ?, ?, ?, ?, ?, ?)
                """,
                [
                    .text(uploadID), .integer(Int64(partNumber)), .integer(part.size), .text(etag), .integer(now),
                    checksumJSON.map { .text($0) } ?? .null, .blob(BlockManifest.encode(part.blocks)),
                ]
            )
            try MetadataQueries.adjustRefs(db, part.blocks, by: 1, nowMs: now)
        }
        return part
    }

    /// Parts of an upload in order, after part number `marker`, at most `limit`.
    public func parts(uploadID: String, after marker: Int = 0, limit: Int = 10_001) async throws -> [PartRecord] {
        try await self.metadata.read { db in try MetadataQueries.parts(db, uploadID: uploadID, after: marker, limit: limit) }
    }

    /// Completes an upload: `build` receives the stored parts and returns the object to commit (or
    /// throws), all in one transaction, so a concurrent abort or second completion cannot interleave.
    public func completeUpload(
        uploadID: String,
        bucket: String,
        key: String,
        build: @escaping @Sendable (UploadRecord, [PartRecord]) throws -> (ObjectData, size: Int64, etag: String, metadata: ObjectMetadata)
    ) async throws -> ObjectRecord {
        let now = Int64(self.nowMilliseconds())
        let timestamp = self.nextTimestamp()
        let (record, delta) = try await self.metadata.write { db in
            guard let upload = try MetadataQueries.upload(db, uploadID), upload.bucket == bucket, upload.key == key else {
                throw Self.noSuchUpload
            }
            let parts = try MetadataQueries.parts(db, uploadID: uploadID)
            let (data, size, etag, metadata) = try build(upload, parts)
            let record = ObjectRecord(
                bucket: bucket,
                key: key,
                size: size,
                etag: etag,
                timestamp: timestamp,
                metadata: metadata,
                data: data
            )
            let delta = try MetadataQueries.putObject(db, record, nowMs: now)
            try MetadataQueries.deleteUpload(db, uploadID, nowMs: now)
            return (record, delta)
        }
        self.applyDelta(delta)
        return record
    }

    /// Aborts an upload and frees its parts.
    public func abortUpload(uploadID: String, bucket: String, key: String) async throws {
        let now = Int64(self.nowMilliseconds())
        try await self.metadata.write { db in
            guard let upload = try MetadataQueries.upload(db, uploadID), upload.bucket == bucket, upload.key == key else {
                throw Self.noSuchUpload
            }
            try MetadataQueries.deleteUpload(db, uploadID, nowMs: now)
        }
    }

    /// In-progress uploads of a bucket, ordered by key then initiation time.
    public func listUploads(
        bucket: String,
        prefix: String,
        keyMarker: String?,
        uploadIDMarker: String?,
        limit: Int
    ) async throws -> [UploadRecord] {
        try await self.metadata.read { db in
            try MetadataQueries.requireBucket(db, bucket)
            var ids: [String] = []
            try db.query(
                "SELECT upload_id, key FROM uploads WHERE bucket = ? AND key >= ? ORDER BY key, initiated_ms, upload_id",
                [.text(bucket), .blob(Array(prefix.utf8))]
            ) { row in
                let key = String(decoding: row.blob(1), as: UTF8.self)
                guard key.utf8.starts(with: prefix.utf8) else { return }
                ids.append(row.text(0))
            }
            let uploads = try ids.compactMap { try MetadataQueries.upload(db, $0) }
            return Self.uploadsPage(uploads, keyMarker: keyMarker, uploadIDMarker: uploadIDMarker, limit: limit)
        }
    }

    /// Applies ListMultipartUploads markers to uploads ordered by key, then initiation time: at
    /// most `limit + 1` uploads after the markers (the extra one tells the caller more follow).
    public static func uploadsPage(_ uploads: [UploadRecord], keyMarker: String?, uploadIDMarker: String?, limit: Int) -> [UploadRecord] {
        var result: [UploadRecord] = []
        var pastMarker = keyMarker == nil
        for upload in uploads {
            if !pastMarker, let keyMarker {
                let order = Listing.compare(upload.key, keyMarker)
                if order == .orderedAscending { continue }
                if order == .orderedSame {
                    // With an upload-id marker, uploads of the marker key after that id follow.
                    guard let uploadIDMarker else { continue }
                    if upload.uploadID == uploadIDMarker { pastMarker = true }
                    continue
                }
                pastMarker = true
            }
            result.append(upload)
            if result.count >= limit + 1 { break }
        }
        return result
    }

    // MARK: - Garbage collection

    /// Deletes blocks that nothing has referenced for the grace period, and block files left without
    /// any record by a crash. Returns the number of block files deleted.
    @discardableResult
    public func collectGarbage() async throws -> Int {
        let now = Int64(self.nowMilliseconds())
        let cutoff = now - Int64(self.configuration.garbageGracePeriod.components.seconds * 1000)
        let blocks = self.blocks
        var deleted = 0
        while true {
            let hashes = try await self.metadata.write { db in
                var hashes: [[UInt8]] = []
                try db.query(
                    "SELECT hash FROM block_refs WHERE refs = 0 AND zero_since_ms <= ? LIMIT 500",
                    [.integer(cutoff)]
                ) { row in hashes.append(row.blob(0)) }
                for hash in hashes {
                    try db.query("DELETE FROM block_refs WHERE hash = ? AND refs = 0", [.blob(hash)])
                }
                return hashes
            }
            if hashes.isEmpty { break }
            deleted += try await self.runIO { hashes.filter { blocks.deleteIfUnpinned($0) }.count }
        }
        // Files with no reference row: written by an upload that never committed.
        let files = try await self.runIO { blocks.allBlocks() }
        let cutoffSeconds = Int(cutoff / 1000)
        let candidates = files.filter { $0.modified <= cutoffSeconds }.map(\.hash)
        for batch in stride(from: 0, to: candidates.count, by: 500) {
            let slice = Array(candidates[batch..<min(batch + 500, candidates.count)])
            let orphans = try await self.metadata.read { db in
                try slice.filter { hash in
                    var known = false
                    try db.query("SELECT 1 FROM block_refs WHERE hash = ?", [.blob(hash)]) { _ in known = true }
                    return !known
                }
            }
            deleted += try await self.runIO { orphans.filter { blocks.deleteIfUnpinned($0) }.count }
        }
        return deleted
    }

    /// Aborts multipart uploads started before `age` ago. Returns how many.
    @discardableResult
    public func abortStaleUploads(olderThan age: Duration) async throws -> Int {
        let now = Int64(self.nowMilliseconds())
        let cutoff = now - Int64(age.components.seconds * 1000)
        return try await self.metadata.write { db in
            var ids: [String] = []
            try db.query("SELECT upload_id FROM uploads WHERE initiated_ms < ?", [.integer(cutoff)]) { row in
                ids.append(row.text(0))
            }
            for id in ids { try MetadataQueries.deleteUpload(db, id, nowMs: now) }
            return ids.count
        }
    }

    // MARK: - Settings

    /// A persistent setting of the node (e.g. generated credentials).
    public func setting(_ name: String) async throws -> String? {
        try await self.metadata.read { db in
            var value: String?
            try db.query("SELECT value FROM settings WHERE name = ?", [.text(name)]) { row in value = row.text(0) }
            return value
        }
    }

    /// Stores a persistent setting.
    public func setSetting(_ name: String, _ value: String) async throws {
        try await self.metadata.write { db in
            try db.query("INSERT OR REPLACE INTO settings (name, value) VALUES (?, ?)", [.text(name), .text(value)])
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
