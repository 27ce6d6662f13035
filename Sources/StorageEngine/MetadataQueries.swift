import Foundation
import Hashing
import SQLite

/// The SQL of the engine's operations, each run inside a transaction that the caller opened.
enum MetadataQueries {
    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }()

    static func encodeMetadata(_ metadata: ObjectMetadata) -> [UInt8] {
        MetadataCodec.encode(metadata)
    }

    static func decodeMetadata(_ bytes: [UInt8]) throws -> ObjectMetadata {
        try MetadataCodec.decode(bytes)
    }

    // MARK: Buckets

    static func bucket(_ db: SQLiteConnection, _ name: String) throws -> BucketRecord? {
        var result: BucketRecord?
        try db.query("SELECT created_ms, owner FROM buckets WHERE name = ?", [.text(name)]) { row in
            result = BucketRecord(
                name: name,
                created: Date(timeIntervalSince1970: Double(row.int(0)) / 1000),
                owner: row.text(1)
            )
        }
        return result
    }

    static func requireBucket(_ db: SQLiteConnection, _ name: String) throws {
        var found = false
        try db.query("SELECT 1 FROM buckets WHERE name = ?", [.text(name)]) { _ in found = true }
        guard found else { throw StorageError(.noSuchBucket, "The specified bucket does not exist") }
    }

    // MARK: Objects

    static let objectColumns = "key, hlc, size, etag, meta, inline, blocks"

    static func object(from row: SQLiteRow, bucket: String) throws -> ObjectRecord {
        let data: ObjectData = row.isNull(5) ? .blocks(BlockManifest.decode(row.blob(6))) : .inline(row.blob(5))
        return ObjectRecord(
            bucket: bucket,
            key: String(decoding: row.blob(0), as: UTF8.self),
            size: row.int(2),
            etag: row.text(3),
            timestamp: HybridTimestamp(rawValue: UInt64(bitPattern: row.int(1))),
            metadata: try decodeMetadata(row.blob(4)),
            data: data
        )
    }

    static func object(_ db: SQLiteConnection, bucket: String, key: String) throws -> ObjectRecord? {
        var result: ObjectRecord?
        try db.query(
            "SELECT \(objectColumns) FROM objects WHERE bucket = ? AND key = ?",
            [.text(bucket), .blob(Array(key.utf8))]
        ) { row in result = try object(from: row, bucket: bucket) }
        return result
    }

    /// Inserts or replaces an object; returns the change in (object count, stored bytes).
    static func putObject(_ db: SQLiteConnection, _ record: ObjectRecord, nowMs: Int64) throws -> (Int64, Int64) {
        try requireBucket(db, record.bucket)
        var delta: (Int64, Int64) = (1, record.size)
        if let old = try object(db, bucket: record.bucket, key: record.key) {
            try adjustRefs(db, old.data.blocks, by: -1, nowMs: nowMs)
            delta = (0, record.size - old.size)
        }
        let inline: SQLValue
        let blocks: SQLValue
        switch record.data {
        case .inline(let bytes):
            inline = .blob(bytes)
            blocks = .null
        case .blocks(let refs):
            inline = .null
            blocks = .blob(BlockManifest.encode(refs))
        }
        try db.query(
            """
            INSERT OR REPLACE INTO objects (bucket, key, hlc, size, etag, meta, inline, blocks)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?)
            """,
            [
                .text(record.bucket), .blob(Array(record.key.utf8)),
                .integer(Int64(bitPattern: record.timestamp.rawValue)), .integer(record.size),
                .text(record.etag), .blob(encodeMetadata(record.metadata)), inline, blocks,
            ]
        )
        try adjustRefs(db, record.data.blocks, by: 1, nowMs: nowMs)
        return delta
    }

    /// Deletes an object if present; returns the change in (object count, stored bytes).
    static func deleteObject(_ db: SQLiteConnection, bucket: String, key: String, nowMs: Int64) throws -> (Int64, Int64) {
        guard let old = try object(db, bucket: bucket, key: key) else { return (0, 0) }
        try db.query("DELETE FROM objects WHERE bucket = ? AND key = ?", [.text(bucket), .blob(Array(key.utf8))])
        try adjustRefs(db, old.data.blocks, by: -1, nowMs: nowMs)
        return (-1, -old.size)
    }

    // MARK: Block references

    /// Adds `delta` references to each block (counting repeats); a block whose count reaches zero is
    /// stamped with the time, so the collector can delete it after the grace period.
    static func adjustRefs(_ db: SQLiteConnection, _ blocks: [BlockRef], by delta: Int64, nowMs: Int64) throws {
        guard !blocks.isEmpty else { return }
        var counts: [[UInt8]: Int64] = [:]
        for block in blocks { counts[block.hash, default: 0] += delta }
        for (hash, change) in counts {
            if change > 0 {
                try db.query(
                    """
                    INSERT INTO block_refs (hash, refs, zero_since_ms) VALUES (?, ?, NULL)
                    ON CONFLICT (hash) DO UPDATE SET refs = refs + excluded.refs, zero_since_ms = NULL
                    """,
                    [.blob(hash), .integer(change)]
                )
            } else {
                try db.query(
                    """
                    UPDATE block_refs SET refs = max(refs + ?, 0),
                        zero_since_ms = CASE WHEN refs + ? <= 0 THEN ? ELSE NULL END
                    WHERE hash = ?
                    """,
                    [.integer(change), .integer(change), .integer(nowMs), .blob(hash)]
                )
            }
        }
    }

    // MARK: Uploads

    static func upload(_ db: SQLiteConnection, _ uploadID: String) throws -> UploadRecord? {
        var result: UploadRecord?
        try db.query(
            "SELECT bucket, key, initiated_ms, owner, meta, checksum_algorithm FROM uploads WHERE upload_id = ?",
            [.text(uploadID)]
        ) { row in
            result = UploadRecord(
                uploadID: uploadID,
                bucket: row.text(0),
                key: String(decoding: row.blob(1), as: UTF8.self),
                initiated: Date(timeIntervalSince1970: Double(row.int(2)) / 1000),
                owner: row.text(3),
                metadata: try decodeMetadata(row.blob(4)),
                checksumAlgorithm: row.isNull(5) ? nil : ChecksumAlgorithm(rawValue: row.text(5))
            )
        }
        return result
    }

    static func parts(_ db: SQLiteConnection, uploadID: String, after marker: Int = 0, limit: Int = 10_001) throws -> [PartRecord] {
        var result: [PartRecord] = []
        try db.query(
            """
            SELECT part_number, size, etag, modified_ms, checksum, blocks FROM parts
            WHERE upload_id = ? AND part_number > ? ORDER BY part_number LIMIT ?
            """,
            [.text(uploadID), .integer(Int64(marker)), .integer(Int64(limit))]
        ) { row in
            var checksum: StoredChecksum?
            if !row.isNull(4) {
                checksum = try JSONDecoder().decode(StoredChecksum.self, from: Data(row.text(4).utf8))
            }
            result.append(
                PartRecord(
                    partNumber: Int(row.int(0)),
                    size: row.int(1),
                    etag: row.text(2),
                    modified: Date(timeIntervalSince1970: Double(row.int(3)) / 1000),
                    checksum: checksum,
                    blocks: BlockManifest.decode(row.blob(5))
                )
            )
        }
        return result
    }

    /// Deletes an upload and its parts, releasing their blocks.
    static func deleteUpload(_ db: SQLiteConnection, _ uploadID: String, nowMs: Int64) throws {
        for part in try parts(db, uploadID: uploadID) {
            try adjustRefs(db, part.blocks, by: -1, nowMs: nowMs)
        }
        try db.query("DELETE FROM parts WHERE upload_id = ?", [.text(uploadID)])
        try db.query("DELETE FROM uploads WHERE upload_id = ?", [.text(uploadID)])
    }
}

