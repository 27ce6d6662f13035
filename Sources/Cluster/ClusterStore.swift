import Foundation
public import Hashing
public import NIOCore
import NIOPosix
import Synchronization
public import S3API
public import StorageEngine

/// The S3 layer's storage when the node is part of a cluster: every bucket, object, upload and part
/// is a versioned record replicated to the owners of its partition key, and object data is cut into
/// content-addressed blocks replicated to the owners of each block's hash.
///
/// Timestamps come from the local engine's hybrid clock, which also observes every timestamp it
/// receives, so a later write through any node wins over an earlier one.
public final class ClusterStore: ObjectStore, AccessKeyStore {
    /// Data layout settings; the same on every node.
    public struct Configuration: Sendable {
        public var blockSize = 1 << 20
        public var inlineThreshold = 16 << 10
        public var maxBlocksInFlight = 4

        public init() {}
    }

    let engine: StorageEngine
    let replicator: Replicator
    let configuration: Configuration
    private let eventLoop: any EventLoop
    /// Buckets seen to exist, with their owner and when that was read: every request checks the bucket
    /// and who may use it, and a quorum read per request would double their round trips. Kept for
    /// ``bucketCacheSeconds``; a bucket deleted through another node may take that long to refuse writes.
    private let knownBuckets = Mutex<[String: (BucketRecord, ContinuousClock.Instant)]>([:])
    static let bucketCacheSeconds = 2
    /// Access keys read recently, for as long: every signed request looks its key up. A key deleted
    /// through another node may keep working that long there; through this node it stops at once.
    private let knownKeys = Mutex<[String: (AccessKeyRecord, ContinuousClock.Instant)]>([:])

    public init(engine: StorageEngine, replicator: Replicator, configuration: Configuration = Configuration()) {
        self.engine = engine
        self.replicator = replicator
        self.configuration = configuration
        self.eventLoop = MultiThreadedEventLoopGroup.singleton.any()
    }

    private func now() -> Date { Date() }

    // MARK: Buckets

    public func createBucket(_ name: String, owner: String) async throws {
        if let existing = try await self.bucket(name) {
            if existing.owner == owner {
                throw StorageError(.bucketAlreadyOwnedByYou, "Your previous request to create the named bucket succeeded and you already own it.")
            }
            throw StorageError(.bucketAlreadyExists, "The requested bucket name is not available.")
        }
        let record = BucketRecord(name: name, created: self.now(), owner: owner)
        try await self.replicator.write([
            ReplicaRecord(
                table: Tables.bucket, partitionKey: Tables.directory, sortKey: Array(name.utf8),
                timestamp: self.engine.makeTimestamp(), deleted: false, value: Tables.bucketValue(record))
        ])
    }

    public func bucket(_ name: String) async throws -> BucketRecord? {
        guard let record = try await self.replicator.read(table: Tables.bucket, partitionKey: Tables.directory, sortKey: Array(name.utf8)),
            !record.deleted
        else { return nil }
        return try Tables.bucket(record)
    }

    public func cachedBucket(_ name: String) async throws -> BucketRecord? {
        let now = ContinuousClock.now
        if let entry = self.knownBuckets.withLock({ $0[name] }), now - entry.1 < .seconds(Self.bucketCacheSeconds) {
            return entry.0
        }
        guard let record = try await self.bucket(name) else {
            self.knownBuckets.withLock { _ = $0.removeValue(forKey: name) }
            return nil
        }
        self.knownBuckets.withLock { cache in
            if cache.count > 10_000 { cache.removeAll() }
            cache[name] = (record, now)
        }
        return record
    }

    private func requireBucket(_ name: String) async throws {
        guard try await self.cachedBucket(name) != nil else {
            throw StorageError(.noSuchBucket, "The specified bucket does not exist")
        }
    }

    public func listBuckets() async throws -> [BucketRecord] {
        try await self.allRecords(table: Tables.bucket, partitionKey: Tables.directory)
            .filter { !$0.deleted }.map { try Tables.bucket($0) }
    }

    /// Every record (tombstones included) of one partition key whose sort key starts with `prefix`
    /// and follows `after`, in sort-key order, read from R owners page by page.
    private func allRecords(table: UInt8, partitionKey: [UInt8], prefix: [UInt8] = [], after: [UInt8]? = nil) async throws -> [ReplicaRecord] {
        var result: [ReplicaRecord] = []
        var after = after
        while true {
            let page = try await self.replicator.range(table: table, partitionKey: partitionKey, prefix: prefix, from: after, limit: 1000)
            result += page.records
            after = page.records.last?.sortKey
            if page.exhausted || after == nil { return result }
        }
    }

    public func deleteBucket(_ name: String) async throws {
        guard try await self.bucket(name) != nil else {
            throw StorageError(.noSuchBucket, "The specified bucket does not exist")
        }
        let page = try await self.list(bucket: name, prefix: "", delimiter: nil, startAfter: nil, maxKeys: 1)
        guard page.entries.isEmpty else {
            throw StorageError(.bucketNotEmpty, "The bucket you tried to delete is not empty")
        }
        for upload in try await self.allUploads(bucket: name) {
            try await self.deleteUploadRecords(upload)
        }
        self.knownBuckets.withLock { _ = $0.removeValue(forKey: name) }
        try await self.replicator.write([
            ReplicaRecord(
                table: Tables.bucket, partitionKey: Tables.directory, sortKey: Array(name.utf8),
                timestamp: self.engine.makeTimestamp(), deleted: true, value: [])
        ])
    }

    // MARK: Access keys

    public func createAccessKey(_ key: AccessKeyRecord) async throws {
        try await self.replicator.write([Tables.accessKeyRecord(key, timestamp: self.engine.makeTimestamp())])
    }

    public func accessKey(_ accessKey: String) async throws -> AccessKeyRecord? {
        let now = ContinuousClock.now
        if let entry = self.knownKeys.withLock({ $0[accessKey] }), now - entry.1 < .seconds(Self.bucketCacheSeconds) {
            return entry.0
        }
        guard let record = try await self.replicator.read(table: Tables.accessKey, partitionKey: Tables.directory, sortKey: Array(accessKey.utf8)),
            !record.deleted
        else {
            self.knownKeys.withLock { _ = $0.removeValue(forKey: accessKey) }
            return nil
        }
        let key = try Tables.accessKey(record)
        self.knownKeys.withLock { cache in
            if cache.count > 10_000 { cache.removeAll() }
            cache[accessKey] = (key, now)
        }
        return key
    }

    public func accessKeys(tenant: String) async throws -> [AccessKeyRecord] {
        try await self.allRecords(table: Tables.accessKey, partitionKey: Tables.directory)
            .filter { !$0.deleted }.map { try Tables.accessKey($0) }.filter { $0.tenant == tenant }
            .sorted { ($0.created, $0.accessKey) < ($1.created, $1.accessKey) }
    }

    @discardableResult
    public func deleteAccessKey(_ accessKey: String) async throws -> Bool {
        self.knownKeys.withLock { _ = $0.removeValue(forKey: accessKey) }
        guard let record = try await self.replicator.read(table: Tables.accessKey, partitionKey: Tables.directory, sortKey: Array(accessKey.utf8)),
            !record.deleted
        else { return false }
        try await self.replicator.write([
            ReplicaRecord(
                table: Tables.accessKey, partitionKey: Tables.directory, sortKey: record.sortKey,
                timestamp: self.engine.makeTimestamp(), deleted: true, value: [])
        ])
        self.knownKeys.withLock { _ = $0.removeValue(forKey: accessKey) }
        return true
    }

    // MARK: Objects

    public func makeWriter() -> any ObjectDataWriter {
        ClusterWriter(
            replicator: self.replicator,
            blockSize: self.configuration.blockSize,
            inlineThreshold: self.configuration.inlineThreshold,
            maxInFlight: self.configuration.maxBlocksInFlight
        )
    }

    public func object(bucket: String, key: String) async throws -> ObjectRecord? {
        if let record = try await self.replicator.read(table: Tables.object, partitionKey: Array(bucket.utf8), sortKey: Array(key.utf8)),
            !record.deleted
        {
            return try Tables.object(record)
        }
        try await self.requireBucket(bucket)
        return nil
    }

    private func commit(_ record: ObjectRecord) async throws -> ObjectRecord {
        try await self.replicator.write([Tables.objectRecord(record)])
        return record
    }

    public func putObject(
        bucket: String, key: String, written: ObjectWriter.Written, etag: String, metadata: ObjectMetadata
    ) async throws -> ObjectRecord {
        try await self.requireBucket(bucket)
        return try await self.commit(
            ObjectRecord(
                bucket: bucket, key: key, size: written.size, etag: etag, timestamp: self.engine.makeTimestamp(),
                metadata: metadata, data: written.data))
    }

    public func copyObject(
        _ source: ObjectRecord, toBucket bucket: String, key: String, metadata: ObjectMetadata
    ) async throws -> ObjectRecord {
        try await self.requireBucket(bucket)
        // The copy reuses the source's blocks without writing them: refresh them on their owners so
        // that the garbage collector cannot take them between here and the commit (see refreshBlocks).
        try await self.replicator.refreshBlocks(source.data.blocks)
        return try await self.commit(
            ObjectRecord(
                bucket: bucket, key: key, size: source.size, etag: source.etag, timestamp: self.engine.makeTimestamp(),
                metadata: metadata, data: source.data))
    }

    public func deleteObject(bucket: String, key: String) async throws {
        try await self.deleteObjects(bucket: bucket, keys: [key])
    }

    public func deleteObjects(bucket: String, keys: [String]) async throws {
        try await self.requireBucket(bucket)
        let records = keys.map { key in
            ReplicaRecord(
                table: Tables.object, partitionKey: Array(bucket.utf8), sortKey: Array(key.utf8),
                timestamp: self.engine.makeTimestamp(), deleted: true, value: [])
        }
        try await self.replicator.write(records)
    }

    /// A block from this node's disk when it holds an intact copy (verified by its CRC32C as on a
    /// single node), otherwise from the other replicas.
    public func readBlock(_ ref: BlockRef) async throws -> ByteBuffer {
        if let local = try? await self.engine.loadBlock(ref) { return local }
        return try await self.replicator.readBlock(ref, skippingLocal: true)
    }

    public func startReadingBlock(_ ref: BlockRef) -> EventLoopFuture<ByteBuffer> {
        let promise = self.eventLoop.makePromise(of: ByteBuffer.self)
        promise.completeWithTask { try await self.readBlock(ref) }
        return promise.futureResult
    }

    public func list(
        bucket: String, prefix: String, delimiter: String?, startAfter: String?, maxKeys: Int
    ) async throws -> StorageEngine.ListPage {
        try await self.requireBucket(bucket)
        var scan = ListingScan(prefix: prefix, delimiter: delimiter, startAfter: startAfter, maxKeys: maxKeys)
        while let query = scan.nextQuery {
            let page = try await self.replicator.range(
                table: Tables.object, partitionKey: Array(bucket.utf8), prefix: Array(prefix.utf8), from: query.cursor,
                inclusive: query.inclusive, limit: query.limit)
            scan.consume(try page.records.map { try Tables.listingRow($0) }, exhausted: page.exhausted)
        }
        return scan.page
    }

    // MARK: Multipart uploads

    public func createUpload(
        bucket: String, key: String, owner: String, metadata: ObjectMetadata, checksumAlgorithm: ChecksumAlgorithm?
    ) async throws -> UploadRecord {
        try await self.requireBucket(bucket)
        var random = SystemRandomNumberGenerator()
        let uploadID = Hex.encode((0..<24).map { _ in UInt8.random(in: 0...255, using: &random) })
        let upload = UploadRecord(
            uploadID: uploadID, bucket: bucket, key: key, initiated: self.now(), owner: owner, metadata: metadata,
            checksumAlgorithm: checksumAlgorithm)
        try await self.replicator.write([
            ReplicaRecord(
                table: Tables.upload, partitionKey: Array(bucket.utf8), sortKey: Array(uploadID.utf8),
                timestamp: self.engine.makeTimestamp(), deleted: false, value: Tables.uploadValue(upload))
        ])
        return upload
    }

    static let noSuchUpload = StorageError(
        .noSuchUpload,
        "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed."
    )

    public func upload(_ uploadID: String, bucket: String, key: String) async throws -> UploadRecord {
        guard let record = try await self.replicator.read(table: Tables.upload, partitionKey: Array(bucket.utf8), sortKey: Array(uploadID.utf8)),
            !record.deleted
        else { throw Self.noSuchUpload }
        let upload = try Tables.upload(record)
        guard upload.key == key else { throw Self.noSuchUpload }
        return upload
    }

    public func putPart(
        uploadID: String, bucket: String, key: String, partNumber: Int, written: ObjectWriter.Written, etag: String,
        checksum: StoredChecksum?
    ) async throws -> PartRecord {
        _ = try await self.upload(uploadID, bucket: bucket, key: key)
        let part = PartRecord(
            partNumber: partNumber, size: written.size, etag: etag, modified: self.now(), checksum: checksum,
            blocks: written.data.blocks)
        try await self.replicator.write([
            ReplicaRecord(
                table: Tables.part, partitionKey: Array(bucket.utf8), sortKey: Tables.partKey(uploadID: uploadID, partNumber: partNumber),
                timestamp: self.engine.makeTimestamp(), deleted: false, value: Tables.partValue(part))
        ])
        return part
    }

    /// Part records (tombstones included) of an upload, in part-number order, after `marker`.
    private func partRecords(bucket: String, uploadID: String, after marker: Int) async throws -> [ReplicaRecord] {
        try await self.allRecords(
            table: Tables.part, partitionKey: Array(bucket.utf8), prefix: Tables.partPrefix(uploadID: uploadID),
            after: marker > 0 ? Tables.partKey(uploadID: uploadID, partNumber: marker) : nil)
    }

    public func parts(bucket: String, uploadID: String, after marker: Int, limit: Int) async throws -> [PartRecord] {
        let records = try await self.partRecords(bucket: bucket, uploadID: uploadID, after: marker)
        return Array(try records.filter { !$0.deleted }.map { try Tables.part($0) }.prefix(limit))
    }

    public func completeUpload(
        uploadID: String, bucket: String, key: String,
        build: @escaping @Sendable (UploadRecord, [PartRecord]) throws -> (ObjectData, size: Int64, etag: String, metadata: ObjectMetadata)
    ) async throws -> ObjectRecord {
        let upload = try await self.upload(uploadID, bucket: bucket, key: key)
        let parts = try await self.parts(bucket: bucket, uploadID: uploadID, after: 0, limit: Int.max)
        let (data, size, etag, metadata) = try build(upload, parts)
        let record = try await self.commit(
            ObjectRecord(
                bucket: bucket, key: key, size: size, etag: etag, timestamp: self.engine.makeTimestamp(), metadata: metadata,
                data: data))
        try await self.deleteUploadRecords(upload)
        return record
    }

    public func abortUpload(uploadID: String, bucket: String, key: String) async throws {
        let upload = try await self.upload(uploadID, bucket: bucket, key: key)
        try await self.deleteUploadRecords(upload)
    }

    /// Tombstones an upload and its parts.
    private func deleteUploadRecords(_ upload: UploadRecord) async throws {
        let parts = try await self.partRecords(bucket: upload.bucket, uploadID: upload.uploadID, after: 0)
        var tombstones = parts.filter { !$0.deleted }.map { part in
            ReplicaRecord(
                table: Tables.part, partitionKey: part.partitionKey, sortKey: part.sortKey,
                timestamp: self.engine.makeTimestamp(), deleted: true, value: [])
        }
        tombstones.append(
            ReplicaRecord(
                table: Tables.upload, partitionKey: Array(upload.bucket.utf8), sortKey: Array(upload.uploadID.utf8),
                timestamp: self.engine.makeTimestamp(), deleted: true, value: []))
        try await self.replicator.write(tombstones)
    }

    private func allUploads(bucket: String) async throws -> [UploadRecord] {
        try await self.allRecords(table: Tables.upload, partitionKey: Array(bucket.utf8))
            .filter { !$0.deleted }.map { try Tables.upload($0) }
    }

    public func listUploads(
        bucket: String, prefix: String, keyMarker: String?, uploadIDMarker: String?, limit: Int
    ) async throws -> [UploadRecord] {
        try await self.requireBucket(bucket)
        let uploads = try await self.allUploads(bucket: bucket)
            .filter { $0.key.utf8.starts(with: prefix.utf8) }
            .sorted { a, b in
                if a.key != b.key { return Array(a.key.utf8).lexicographicallyPrecedes(Array(b.key.utf8)) }
                if a.initiated != b.initiated { return a.initiated < b.initiated }
                return a.uploadID < b.uploadID
            }
        return StorageEngine.uploadsPage(uploads, keyMarker: keyMarker, uploadIDMarker: uploadIDMarker, limit: limit)
    }
}
