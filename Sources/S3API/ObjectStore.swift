import Foundation
public import Hashing
public import NIOCore
public import StorageEngine

/// What the S3 layer needs from storage: one node's ``StorageEngine``, or a cluster that replicates
/// over many nodes. Errors are ``StorageError``s; the S3 layer maps them to wire errors.
public protocol ObjectStore: Sendable {
    func createBucket(_ name: String, owner: String) async throws
    func bucket(_ name: String) async throws -> BucketRecord?
    /// The bucket for a request's authorization: may be a few seconds old in a cluster (where
    /// `bucket` is a quorum read); the same as `bucket` on a single node.
    func cachedBucket(_ name: String) async throws -> BucketRecord?
    func listBuckets() async throws -> [BucketRecord]
    func deleteBucket(_ name: String) async throws

    /// Starts writing the data of a new object or part.
    func makeWriter() -> any ObjectDataWriter
    func object(bucket: String, key: String) async throws -> ObjectRecord?
    func putObject(bucket: String, key: String, written: ObjectWriter.Written, etag: String, metadata: ObjectMetadata) async throws -> ObjectRecord
    func copyObject(_ source: ObjectRecord, toBucket bucket: String, key: String, metadata: ObjectMetadata) async throws -> ObjectRecord
    func deleteObject(bucket: String, key: String) async throws
    func deleteObjects(bucket: String, keys: [String]) async throws
    func readBlock(_ ref: BlockRef) async throws -> ByteBuffer
    /// Starts reading a block so that a GET can read ahead while it sends.
    func startReadingBlock(_ ref: BlockRef) -> EventLoopFuture<ByteBuffer>
    func list(bucket: String, prefix: String, delimiter: String?, startAfter: String?, maxKeys: Int) async throws -> StorageEngine.ListPage

    func createUpload(bucket: String, key: String, owner: String, metadata: ObjectMetadata, checksumAlgorithm: ChecksumAlgorithm?) async throws -> UploadRecord
    func upload(_ uploadID: String, bucket: String, key: String) async throws -> UploadRecord
    func putPart(
        uploadID: String, bucket: String, key: String, partNumber: Int, written: ObjectWriter.Written, etag: String,
        checksum: StoredChecksum?
    ) async throws -> PartRecord
    func parts(bucket: String, uploadID: String, after marker: Int, limit: Int) async throws -> [PartRecord]
    func completeUpload(
        uploadID: String, bucket: String, key: String,
        build: @escaping @Sendable (UploadRecord, [PartRecord]) throws -> (ObjectData, size: Int64, etag: String, metadata: ObjectMetadata)
    ) async throws -> ObjectRecord
    func abortUpload(uploadID: String, bucket: String, key: String) async throws
    func listUploads(bucket: String, prefix: String, keyMarker: String?, uploadIDMarker: String?, limit: Int) async throws -> [UploadRecord]
}

/// Writes the data of one object or part: ``write(_:)`` each piece, ``finish(allowInline:)``, commit
/// through the store, then ``release()`` (also when giving up). Owned by one request task.
public protocol ObjectDataWriter: AnyObject {
    /// Bytes accepted so far.
    var size: Int64 { get }
    func write(_ buffer: ByteBuffer) async throws
    func finish(allowInline: Bool) async throws -> ObjectWriter.Written
    func release() async
}

extension ObjectWriter: ObjectDataWriter {}

extension ObjectStore {
    public func cachedBucket(_ name: String) async throws -> BucketRecord? { try await self.bucket(name) }
}

extension StorageEngine: ObjectStore {
    public func makeWriter() -> any ObjectDataWriter {
        let writer: ObjectWriter = self.makeWriter()
        return writer
    }

    public func parts(bucket: String, uploadID: String, after marker: Int, limit: Int) async throws -> [PartRecord] {
        try await self.parts(uploadID: uploadID, after: marker, limit: limit)
    }
}
