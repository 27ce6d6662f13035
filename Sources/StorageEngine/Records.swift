public import Foundation
public import Hashing

/// A hybrid logical clock timestamp: milliseconds since the Unix epoch in the high 48 bits and a
/// logical counter in the low 16, so that two events in one millisecond still order.
///
/// Every metadata record carries one; when replicas disagree the newest wins (S3 is last-writer-wins).
public struct HybridTimestamp: RawRepresentable, Comparable, Hashable, Sendable {
    public var rawValue: UInt64

    public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// - Parameters:
    ///   - milliseconds: physical time, milliseconds since the Unix epoch.
    ///   - logical: the counter within that millisecond.
    public init(milliseconds: UInt64, logical: UInt16) {
        self.rawValue = (milliseconds << 16) | UInt64(logical)
    }

    /// The physical part, milliseconds since the Unix epoch.
    public var milliseconds: UInt64 { self.rawValue >> 16 }

    /// The time S3 reports as `Last-Modified`: whole seconds, rounded *up*.
    ///
    /// HTTP dates and listings carry whole seconds. Rounding down would date an object up to a
    /// second before it was written, so a file saved at 12:00:05.7 and uploaded at 12:00:05.9 would
    /// look older than the file, and `aws s3 sync` would upload it again on every run.
    public var lastModified: Date { Date(timeIntervalSince1970: Double((self.milliseconds + 999) / 1000)) }

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// Issues strictly increasing hybrid timestamps from an injected wall clock.
public struct HybridClock: Sendable {
    private var last = HybridTimestamp(rawValue: 0)

    public init() {}

    /// The next timestamp, later than every one issued or observed before.
    /// - Parameter nowMilliseconds: the current wall-clock time in milliseconds since the epoch.
    public mutating func next(nowMilliseconds: UInt64) -> HybridTimestamp {
        let candidate = HybridTimestamp(milliseconds: nowMilliseconds, logical: 0)
        if candidate > self.last {
            self.last = candidate
        } else {
            self.last = HybridTimestamp(rawValue: self.last.rawValue + 1)
        }
        return self.last
    }

    /// Records a timestamp seen elsewhere so that later ones order after it.
    public mutating func observe(_ timestamp: HybridTimestamp) {
        if timestamp > self.last { self.last = timestamp }
    }
}

/// A content-addressed block: the SHA-256 of its uncompressed bytes and their count.
public struct BlockRef: Hashable, Sendable {
    /// SHA-256 of the block's uncompressed content (32 bytes).
    public var hash: [UInt8]
    /// Uncompressed size in bytes.
    public var size: Int

    public init(hash: [UInt8], size: Int) {
        self.hash = hash
        self.size = size
    }

    /// The lowercase hex form of the hash, used as the block's file name.
    public var hex: String { Hex.encode(self.hash) }
}

/// Where an object's bytes live.
public enum ObjectData: Sendable {
    /// Small objects: the bytes are kept in the metadata record itself.
    case inline([UInt8])
    /// Larger objects: the ordered list of blocks whose concatenation is the object.
    case blocks([BlockRef])

    /// The blocks referenced (none when inline).
    public var blocks: [BlockRef] {
        if case .blocks(let blocks) = self { return blocks }
        return []
    }
}

/// An S3 additional checksum as stored with an object or a part.
public struct StoredChecksum: Codable, Equatable, Sendable {
    public var algorithm: ChecksumAlgorithm
    /// The base64 value, with a `-N` suffix for a composite multipart checksum.
    public var value: String
    /// `FULL_OBJECT` or `COMPOSITE`.
    public var type: String

    public init(algorithm: ChecksumAlgorithm, value: String, type: String = "FULL_OBJECT") {
        self.algorithm = algorithm
        self.value = value
        self.type = type
    }
}

/// The metadata of an object that S3 clients set and read back.
public struct ObjectMetadata: Codable, Equatable, Sendable {
    /// `Content-Type`.
    public var contentType: String?
    /// Other stored system headers by lowercase name: content-encoding, content-disposition,
    /// content-language, cache-control, expires.
    public var headers: [String: String]
    /// User metadata (`x-amz-meta-*`) by lowercase name without the prefix.
    public var user: [String: String]
    /// The additional checksum, when one was supplied or computed.
    public var checksum: StoredChecksum?
    /// For multipart objects, the size of each part in order.
    public var partSizes: [Int64]?

    public init(
        contentType: String? = nil,
        headers: [String: String] = [:],
        user: [String: String] = [:],
        checksum: StoredChecksum? = nil,
        partSizes: [Int64]? = nil
    ) {
        self.contentType = contentType
        self.headers = headers
        self.user = user
        self.checksum = checksum
        self.partSizes = partSizes
    }
}

/// One object version as the metadata store holds it.
public struct ObjectRecord: Sendable {
    public var bucket: String
    /// The key as UTF-8 bytes; listings order by these bytes.
    public var key: String
    public var size: Int64
    /// The ETag without quotes: the MD5 hex for a single PUT, `md5-of-md5s-N` for multipart.
    public var etag: String
    /// When the record was written.
    public var timestamp: HybridTimestamp
    public var metadata: ObjectMetadata
    public var data: ObjectData

    public init(
        bucket: String,
        key: String,
        size: Int64,
        etag: String,
        timestamp: HybridTimestamp,
        metadata: ObjectMetadata,
        data: ObjectData
    ) {
        self.bucket = bucket
        self.key = key
        self.size = size
        self.etag = etag
        self.timestamp = timestamp
        self.metadata = metadata
        self.data = data
    }

    /// `Last-Modified`, from the record's timestamp.
    public var lastModified: Date { self.timestamp.lastModified }
}

/// A bucket.
public struct BucketRecord: Sendable, Equatable {
    public var name: String
    public var created: Date
    /// Who owns it: `tenant:<id>` for a tenant's bucket, else the access key that created it (the root key).
    public var owner: String

    public init(name: String, created: Date, owner: String) {
        self.name = name
        self.created = created
        self.owner = owner
    }
}

/// An S3 access key that belongs to a tenant: every key of a tenant may use the tenant's buckets.
///
/// The secret is kept as is, because verifying a SigV4 signature needs it; it is never logged and
/// shown only once, when the key is created.
public struct AccessKeyRecord: Sendable, Equatable {
    /// The access key id (`CK…`), what clients send in the signature's credential scope.
    public var accessKey: String
    public var secretKey: String
    /// The tenant (project) the key belongs to.
    public var tenant: String
    /// A name to recognise the key by.
    public var name: String
    public var created: Date

    public init(accessKey: String, secretKey: String, tenant: String, name: String, created: Date) {
        self.accessKey = accessKey
        self.secretKey = secretKey
        self.tenant = tenant
        self.name = name
        self.created = created
    }
}

/// An in-progress multipart upload.
public struct UploadRecord: Sendable {
    public var uploadID: String
    public var bucket: String
    public var key: String
    public var initiated: Date
    public var owner: String
    /// The metadata the object will get on completion.
    public var metadata: ObjectMetadata
    /// The checksum algorithm requested at creation, if any.
    public var checksumAlgorithm: ChecksumAlgorithm?

    public init(
        uploadID: String,
        bucket: String,
        key: String,
        initiated: Date,
        owner: String,
        metadata: ObjectMetadata,
        checksumAlgorithm: ChecksumAlgorithm?
    ) {
        self.uploadID = uploadID
        self.bucket = bucket
        self.key = key
        self.initiated = initiated
        self.owner = owner
        self.metadata = metadata
        self.checksumAlgorithm = checksumAlgorithm
    }
}

/// One uploaded part of a multipart upload.
public struct PartRecord: Sendable {
    public var partNumber: Int
    public var size: Int64
    /// MD5 hex of the part, without quotes.
    public var etag: String
    public var modified: Date
    public var checksum: StoredChecksum?
    public var blocks: [BlockRef]

    public init(partNumber: Int, size: Int64, etag: String, modified: Date, checksum: StoredChecksum?, blocks: [BlockRef]) {
        self.partNumber = partNumber
        self.size = size
        self.etag = etag
        self.modified = modified
        self.checksum = checksum
        self.blocks = blocks
    }
}

/// Encodes block lists as 36-byte entries: the 32-byte hash then the size as a big-endian UInt32.
public enum BlockManifest {
    public static func encode(_ blocks: [BlockRef]) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(blocks.count * 36)
        for block in blocks {
            bytes.append(contentsOf: block.hash)
            let size = UInt32(block.size)
            bytes.append(UInt8(truncatingIfNeeded: size >> 24))
            bytes.append(UInt8(truncatingIfNeeded: size >> 16))
            bytes.append(UInt8(truncatingIfNeeded: size >> 8))
            bytes.append(UInt8(truncatingIfNeeded: size))
        }
        return bytes
    }

    public static func decode(_ bytes: [UInt8]) -> [BlockRef] {
        var blocks: [BlockRef] = []
        blocks.reserveCapacity(bytes.count / 36)
        var offset = 0
        while offset + 36 <= bytes.count {
            let hash = Array(bytes[offset..<offset + 32])
            var size = 0
            for byte in bytes[offset + 32..<offset + 36] { size = size << 8 | Int(byte) }
            blocks.append(BlockRef(hash: hash, size: size))
            offset += 36
        }
        return blocks
    }
}
