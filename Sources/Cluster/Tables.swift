import Foundation
import Hashing
import StorageEngine

/// The replicated tables of a cluster and how S3 entities map onto versioned records.
///
/// Every record has a partition key that decides its replicas: the bucket name for a bucket's objects,
/// uploads and parts (so one replica set serves a bucket's listing), and the empty key for the bucket
/// directory. Values are binary, version byte first; a new layout gets a new version byte.
enum Tables {
    static let bucket: UInt8 = 1
    static let object: UInt8 = 2
    static let upload: UInt8 = 3
    static let part: UInt8 = 4
    /// Tenants' S3 access keys, under the directory's partition key, sorted by access key id.
    static let accessKey: UInt8 = 5

    static let valueVersion: UInt8 = 1

    /// The partition key of the bucket directory.
    static let directory: [UInt8] = []

    // MARK: Buckets

    static func bucketValue(_ bucket: BucketRecord) -> [UInt8] {
        var writer = WireWriter()
        writer.u8(valueVersion)
        writer.u64(UInt64(max(0, bucket.created.timeIntervalSince1970 * 1000)))
        writer.string(bucket.owner)
        return writer.bytes
    }

    static func bucket(_ record: ReplicaRecord) throws -> BucketRecord {
        var reader = WireReader(record.value)
        guard try reader.u8() == valueVersion else { throw ClusterError.malformed }
        let created = try reader.u64()
        let owner = try reader.string()
        try reader.finish()
        return BucketRecord(
            name: String(decoding: record.sortKey, as: UTF8.self),
            created: Date(timeIntervalSince1970: Double(created) / 1000),
            owner: owner
        )
    }

    // MARK: Access keys

    static func accessKeyRecord(_ key: AccessKeyRecord, timestamp: HybridTimestamp) -> ReplicaRecord {
        var writer = WireWriter()
        writer.u8(valueVersion)
        writer.string(key.secretKey)
        writer.string(key.tenant)
        writer.string(key.name)
        writer.u64(UInt64(max(0, key.created.timeIntervalSince1970 * 1000)))
        return ReplicaRecord(
            table: Tables.accessKey, partitionKey: Tables.directory, sortKey: Array(key.accessKey.utf8), timestamp: timestamp,
            deleted: false, value: writer.bytes)
    }

    static func accessKey(_ record: ReplicaRecord) throws -> AccessKeyRecord {
        var reader = WireReader(record.value)
        guard try reader.u8() == valueVersion else { throw ClusterError.malformed }
        let secret = try reader.string()
        let tenant = try reader.string()
        let name = try reader.string()
        let created = try reader.u64()
        try reader.finish()
        return AccessKeyRecord(
            accessKey: String(decoding: record.sortKey, as: UTF8.self), secretKey: secret, tenant: tenant, name: name,
            created: Date(timeIntervalSince1970: Double(created) / 1000))
    }

    // MARK: Objects

    static func objectValue(size: Int64, etag: String, metadata: ObjectMetadata, data: ObjectData) -> [UInt8] {
        var writer = WireWriter()
        writer.u8(valueVersion)
        writer.u64(UInt64(size))
        writer.string(etag)
        writer.data(MetadataCodec.encode(metadata))
        switch data {
        case .inline(let bytes):
            writer.u8(0)
            writer.data(bytes)
        case .blocks(let refs):
            writer.u8(1)
            writer.data(BlockManifest.encode(refs))
        }
        return writer.bytes
    }

    static func objectRecord(_ object: ObjectRecord) -> ReplicaRecord {
        ReplicaRecord(
            table: Tables.object,
            partitionKey: Array(object.bucket.utf8),
            sortKey: Array(object.key.utf8),
            timestamp: object.timestamp,
            deleted: false,
            value: objectValue(size: object.size, etag: object.etag, metadata: object.metadata, data: object.data)
        )
    }

    static func object(_ record: ReplicaRecord) throws -> ObjectRecord {
        var reader = WireReader(record.value)
        guard try reader.u8() == valueVersion else { throw ClusterError.malformed }
        let size = Int64(bitPattern: try reader.u64())
        let etag = try reader.string()
        let metadata = try MetadataCodec.decode(try reader.data())
        let kind = try reader.u8()
        let payload = try reader.data()
        try reader.finish()
        let data: ObjectData
        switch kind {
        case 0: data = .inline(payload)
        case 1: data = .blocks(BlockManifest.decode(payload))
        default: throw ClusterError.malformed
        }
        return ObjectRecord(
            bucket: String(decoding: record.partitionKey, as: UTF8.self),
            key: String(decoding: record.sortKey, as: UTF8.self),
            size: size,
            etag: etag,
            timestamp: record.timestamp,
            metadata: metadata,
            data: data
        )
    }

    /// The size and ETag of an object record, for listings, without decoding its metadata.
    static func listingRow(_ record: ReplicaRecord) throws -> ListingScan.Row {
        if record.deleted {
            return ListingScan.Row(key: record.sortKey, size: 0, etag: "", timestamp: record.timestamp, deleted: true)
        }
        var reader = WireReader(record.value)
        guard try reader.u8() == valueVersion else { throw ClusterError.malformed }
        let size = Int64(bitPattern: try reader.u64())
        let etag = try reader.string()
        return ListingScan.Row(key: record.sortKey, size: size, etag: etag, timestamp: record.timestamp)
    }

    // MARK: Uploads

    static func uploadValue(_ upload: UploadRecord) -> [UInt8] {
        var writer = WireWriter()
        writer.u8(valueVersion)
        writer.string(upload.key)
        writer.u64(UInt64(max(0, upload.initiated.timeIntervalSince1970 * 1000)))
        writer.string(upload.owner)
        writer.data(MetadataCodec.encode(upload.metadata))
        writer.string(upload.checksumAlgorithm?.rawValue ?? "")
        return writer.bytes
    }

    static func upload(_ record: ReplicaRecord) throws -> UploadRecord {
        var reader = WireReader(record.value)
        guard try reader.u8() == valueVersion else { throw ClusterError.malformed }
        let key = try reader.string()
        let initiated = try reader.u64()
        let owner = try reader.string()
        let metadata = try MetadataCodec.decode(try reader.data())
        let algorithm = try reader.string()
        try reader.finish()
        return UploadRecord(
            uploadID: String(decoding: record.sortKey, as: UTF8.self),
            bucket: String(decoding: record.partitionKey, as: UTF8.self),
            key: key,
            initiated: Date(timeIntervalSince1970: Double(initiated) / 1000),
            owner: owner,
            metadata: metadata,
            checksumAlgorithm: algorithm.isEmpty ? nil : ChecksumAlgorithm(rawValue: algorithm)
        )
    }

    // MARK: Parts

    /// Parts sort by upload, then part number: the upload id, a zero byte, the number big-endian.
    static func partKey(uploadID: String, partNumber: Int) -> [UInt8] {
        var writer = WireWriter()
        writer.bytes = partPrefix(uploadID: uploadID)
        writer.u32(UInt32(partNumber))
        return writer.bytes
    }

    static func partPrefix(uploadID: String) -> [UInt8] { Array(uploadID.utf8) + [0] }

    static func partValue(_ part: PartRecord) -> [UInt8] {
        var writer = WireWriter()
        writer.u8(valueVersion)
        writer.u64(UInt64(part.size))
        writer.string(part.etag)
        writer.u64(UInt64(max(0, part.modified.timeIntervalSince1970 * 1000)))
        if let checksum = part.checksum {
            writer.u8(1)
            writer.string(checksum.algorithm.rawValue)
            writer.string(checksum.value)
            writer.string(checksum.type)
        } else {
            writer.u8(0)
        }
        writer.data(BlockManifest.encode(part.blocks))
        return writer.bytes
    }

    static func part(_ record: ReplicaRecord) throws -> PartRecord {
        var reader = WireReader(record.value)
        guard try reader.u8() == valueVersion else { throw ClusterError.malformed }
        let size = Int64(bitPattern: try reader.u64())
        let etag = try reader.string()
        let modified = try reader.u64()
        var checksum: StoredChecksum?
        if try reader.u8() == 1 {
            guard let algorithm = ChecksumAlgorithm(rawValue: try reader.string()) else { throw ClusterError.malformed }
            checksum = StoredChecksum(algorithm: algorithm, value: try reader.string(), type: try reader.string())
        }
        let blocks = BlockManifest.decode(try reader.data())
        try reader.finish()
        let number = record.sortKey.suffix(4).reduce(0) { $0 << 8 | Int($1) }
        return PartRecord(
            partNumber: number,
            size: size,
            etag: etag,
            modified: Date(timeIntervalSince1970: Double(modified) / 1000),
            checksum: checksum,
            blocks: blocks
        )
    }
}
