import Hashing
public import NIOCore
import SQLite

/// One versioned record as a clustered node keeps it: a table, a partition key (which decides the
/// replicas), a sort key (the order within the partition key), a hybrid timestamp, a tombstone flag
/// and an opaque value.
///
/// Replicas merge records by "last writer wins": a record replaces the stored one only when it is
/// ``isNewer(than:)``. Deletions are tombstones (records with `deleted` set), so a replica that missed
/// a delete cannot bring the old value back in a read repair.
public struct ReplicaRecord: Sendable, Hashable {
    public var table: UInt8
    public var partitionKey: [UInt8]
    public var sortKey: [UInt8]
    public var timestamp: HybridTimestamp
    public var deleted: Bool
    public var value: [UInt8]

    public init(table: UInt8, partitionKey: [UInt8], sortKey: [UInt8], timestamp: HybridTimestamp, deleted: Bool, value: [UInt8]) {
        self.table = table
        self.partitionKey = partitionKey
        self.sortKey = sortKey
        self.timestamp = timestamp
        self.deleted = deleted
        self.value = value
    }

    /// Whether this record wins over `other` for the same key: the later timestamp, then a tombstone
    /// over a value, then the greater value bytes, so that every replica picks the same winner.
    public func isNewer(than other: ReplicaRecord) -> Bool {
        if self.timestamp != other.timestamp { return self.timestamp > other.timestamp }
        if self.deleted != other.deleted { return self.deleted }
        return other.value.lexicographicallyPrecedes(self.value)
    }
}

extension StorageEngine {
    /// The stored record for a key (a tombstone included), or nil.
    public func record(table: UInt8, partitionKey: [UInt8], sortKey: [UInt8]) throws -> ReplicaRecord? {
        try self.metadata.lookup { db in try Self.record(db, table: table, partitionKey: partitionKey, sortKey: sortKey) }
    }

    static func record(_ db: SQLiteConnection, table: UInt8, partitionKey: [UInt8], sortKey: [UInt8]) throws -> ReplicaRecord? {
        var result: ReplicaRecord?
        try db.query(
            "SELECT hlc, deleted, value FROM records WHERE tbl = ? AND pk = ? AND sk = ?",
            [.integer(Int64(table)), .blob(partitionKey), .blob(sortKey)]
        ) { row in
            result = ReplicaRecord(
                table: table,
                partitionKey: partitionKey,
                sortKey: sortKey,
                timestamp: HybridTimestamp(rawValue: UInt64(bitPattern: row.int(0))),
                deleted: row.int(1) != 0,
                value: row.blob(2)
            )
        }
        return result
    }

    /// Stores each record that is newer than the stored one, in one durable transaction.
    /// - Returns: for each record, whether it was stored (false: an equal or newer one was there).
    @discardableResult
    public func apply(_ records: [ReplicaRecord]) async throws -> [Bool] {
        for record in records { self.observe(record.timestamp) }
        return try await self.metadata.write { db in
            try records.map { record in
                let existing = try Self.record(db, table: record.table, partitionKey: record.partitionKey, sortKey: record.sortKey)
                if let existing {
                    guard record.isNewer(than: existing) else { return false }
                    try RecordDigests.add(db, RecordVersion(existing), sign: -1)
                }
                let version = RecordVersion(record)
                try db.query(
                    "INSERT OR REPLACE INTO records (tbl, pk, sk, hlc, deleted, value, ph, kh) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        .integer(Int64(record.table)), .blob(record.partitionKey), .blob(record.sortKey),
                        .integer(Int64(bitPattern: record.timestamp.rawValue)), .integer(record.deleted ? 1 : 0),
                        .blob(record.value), .integer(Int64(version.partitionHash)), .integer(Int64(version.keyHash)),
                    ]
                )
                try RecordDigests.add(db, version, sign: 1)
                return true
            }
        }
    }

    /// Records of one partition key in sort-key order (tombstones included), starting at `start`
    /// (inclusive) or after `after` (exclusive), with sort keys that begin with `prefix`, at most `limit`.
    public func records(
        table: UInt8,
        partitionKey: [UInt8],
        prefix: [UInt8] = [],
        start: [UInt8]? = nil,
        after: [UInt8]? = nil,
        limit: Int
    ) async throws -> [ReplicaRecord] {
        var bound = prefix
        var inclusive = true
        if let start, !start.lexicographicallyPrecedes(bound) { bound = start }
        if let after, !after.lexicographicallyPrecedes(bound) {
            bound = after
            inclusive = false
        }
        let isInclusive = inclusive
        let lowerBound = bound
        return try await self.metadata.read { db in
            var result: [ReplicaRecord] = []
            try db.query(
                """
                SELECT sk, hlc, deleted, value FROM records
                WHERE tbl = ? AND pk = ? AND sk \(isInclusive ? ">=" : ">") ? ORDER BY sk LIMIT ?
                """,
                [.integer(Int64(table)), .blob(partitionKey), .blob(lowerBound), .integer(Int64(limit))]
            ) { row in
                let sortKey = row.blob(0)
                guard sortKey.starts(with: prefix) else { return }
                result.append(
                    ReplicaRecord(
                        table: table,
                        partitionKey: partitionKey,
                        sortKey: sortKey,
                        timestamp: HybridTimestamp(rawValue: UInt64(bitPattern: row.int(1))),
                        deleted: row.int(2) != 0,
                        value: row.blob(3)
                    )
                )
            }
            return result
        }
    }

    /// A new hybrid timestamp from this node's clock, later than every one it issued or observed.
    public func makeTimestamp() -> HybridTimestamp { self.nextTimestamp() }

    /// Makes later timestamps of this node order after `timestamp` (seen from another node).
    public func observe(_ timestamp: HybridTimestamp) {
        self.observeTimestamp(timestamp)
    }

    // MARK: - Blocks held for the cluster

    /// Stores a block received from another node under its SHA-256 and returns that hash, once the
    /// block file and its directory entry are durable.
    /// - Parameter hash: the SHA-256 of `bytes` when the caller computed it from these very bytes (the
    ///   RPC server does, to check the request's signature); nil to compute it here.
    @discardableResult
    public func storeBlock(_ bytes: ByteBuffer, hash: [UInt8]? = nil) async throws -> [UInt8] {
        let blocks = self.blocks
        return try await self.runIO {
            let (ref, created) = try bytes.withUnsafeReadableBytes { try blocks.write($0, knownHash: hash) }
            defer { blocks.unpin(ref.hash) }
            if created { try blocks.syncDirectories([blocks.directory(for: ref.hash)]) }
            return ref.hash
        }
    }

    /// Reads a block this node holds, verified; nil when it has no such block.
    public func loadBlock(_ ref: BlockRef) async throws -> ByteBuffer? {
        let blocks = self.blocks
        return try await self.runIO {
            guard access(blocks.path(for: ref.hash), F_OK) == 0 else { return nil }
            return try blocks.read(ref, allocator: ByteBufferAllocator())
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// One version of one record's key: what a node checks or removes without the value.
public struct RecordVersion: Sendable, Hashable {
    public var table: UInt8
    public var partitionKey: [UInt8]
    public var sortKey: [UInt8]
    public var timestamp: HybridTimestamp
    public var deleted: Bool

    public init(table: UInt8, partitionKey: [UInt8], sortKey: [UInt8], timestamp: HybridTimestamp, deleted: Bool) {
        self.table = table
        self.partitionKey = partitionKey
        self.sortKey = sortKey
        self.timestamp = timestamp
        self.deleted = deleted
    }

    public init(_ record: ReplicaRecord) {
        self.init(
            table: record.table, partitionKey: record.partitionKey, sortKey: record.sortKey,
            timestamp: record.timestamp, deleted: record.deleted)
    }
}

extension StorageEngine {
    /// Removes the stored records of these keys whose timestamp is at most the given one (a newer
    /// version stored since is kept), in one durable transaction: how a node drops tombstones it
    /// collected and partitions it handed over. Returns how many rows it removed.
    @discardableResult
    public func removeRecords(_ versions: [RecordVersion]) async throws -> Int {
        guard !versions.isEmpty else { return 0 }
        return try await self.metadata.write { db in
            var removed = 0
            for version in versions {
                guard let stored = try Self.record(db, table: version.table, partitionKey: version.partitionKey, sortKey: version.sortKey),
                    stored.timestamp <= version.timestamp
                else { continue }
                try db.query(
                    "DELETE FROM records WHERE tbl = ? AND pk = ? AND sk = ?",
                    [.integer(Int64(version.table)), .blob(version.partitionKey), .blob(version.sortKey)]
                )
                try RecordDigests.add(db, RecordVersion(stored), sign: -1)
                removed += 1
            }
            return removed
        }
    }
}
