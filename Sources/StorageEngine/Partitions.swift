#if canImport(Glibc)
import Glibc
#endif
import Hashing
import SQLite

/// The 32-bit partition hash of a key as the ring reads it: the first four bytes of its SHA-256,
/// big-endian. A partition of a ring with 2^p partitions is a contiguous range of these values, so a
/// layout change (which keeps p) never rewrites the hash stored with a record.
public enum PartitionHash {
    /// The partition hash of a record's partition key.
    public static func of(partitionKey: [UInt8]) -> UInt32 { self.of(hash: Digests.sha256(partitionKey)) }

    /// The partition hash of a SHA-256 (a block's name, or a hashed partition key).
    public static func of(hash: some Collection<UInt8>) -> UInt32 {
        var value: UInt32 = 0
        var index = hash.startIndex
        for _ in 0..<4 {
            value <<= 8
            if index != hash.endIndex {
                value |= UInt32(hash[index])
                hash.formIndex(after: &index)
            }
        }
        return value
    }
}

/// The partition hashes of one partition of a ring with 2^`power` partitions.
public struct PartitionRange: Sendable, Hashable {
    public var lower: UInt32
    public var upper: UInt32

    /// - Precondition: `0 ≤ power ≤ 16` and `partition < 2^power`.
    public init(partition: Int, power: Int) {
        let shift = UInt32(32 - power)
        let width = UInt64(1) << UInt64(shift)
        self.lower = UInt32(UInt64(partition) * width)
        self.upper = UInt32(UInt64(partition) * width + width - 1)
    }

    /// Which partition of a ring with 2^`power` partitions holds `hash`.
    public static func partition(of hash: UInt32, power: Int) -> Int { Int(UInt64(hash) >> UInt64(32 - power)) }
}

/// An order-independent summary of a set of versions: their count and the XOR of a 16-byte digest of
/// each. Two replicas with the same set have the same summary; a single difference changes it.
public struct PartitionSummary: Sendable, Hashable {
    public var count: UInt64 = 0
    public var digest: [UInt8] = [UInt8](repeating: 0, count: 16)

    public init() {}

    public init(count: UInt64, digest: [UInt8]) {
        self.count = count
        self.digest = digest
    }

    /// Adds one element, given by at least 16 bytes of a uniform hash.
    public mutating func add(_ hash: some Collection<UInt8>) {
        self.count += 1
        var index = hash.startIndex
        for position in 0..<16 {
            self.digest[position] ^= hash[index]
            hash.formIndex(after: &index)
        }
    }
}

/// What a node holds of one partition: how many records or blocks and their bytes.
public struct PartitionHolding: Sendable, Hashable {
    public var count: Int = 0
    public var bytes: Int = 0

    public init(count: Int = 0, bytes: Int = 0) {
        self.count = count
        self.bytes = bytes
    }
}

extension RecordVersion {
    /// The partition hash of this record's partition key.
    public var partitionHash: UInt32 { PartitionHash.of(partitionKey: self.partitionKey) }

    /// Which of the 256 slices of its partition the record's key falls in: the first byte of the
    /// SHA-256 of table, partition key and sort key (the same for every version of the key).
    public var keyHash: UInt8 {
        var bytes: [UInt8] = [self.table]
        Self.appendLength(self.partitionKey.count, to: &bytes)
        bytes += self.partitionKey
        Self.appendLength(self.sortKey.count, to: &bytes)
        bytes += self.sortKey
        return Digests.sha256(bytes)[0]
    }

    /// The 16-byte digest a ``PartitionSummary`` of records adds for this version.
    public var digest: ArraySlice<UInt8> {
        var bytes: [UInt8] = [self.table]
        bytes.reserveCapacity(self.partitionKey.count + self.sortKey.count + 18)
        Self.appendLength(self.partitionKey.count, to: &bytes)
        bytes += self.partitionKey
        Self.appendLength(self.sortKey.count, to: &bytes)
        bytes += self.sortKey
        for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: self.timestamp.rawValue >> UInt64(shift))) }
        bytes.append(self.deleted ? 1 : 0)
        return Digests.sha256(bytes).prefix(16)
    }

    private static func appendLength(_ length: Int, to bytes: inout [UInt8]) {
        for shift in stride(from: 24, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: length >> shift)) }
    }
}

extension StorageEngine {
    // MARK: Records by partition

    /// How many records (tombstones included) and value bytes this node holds in each partition of a
    /// ring with 2^`power` partitions; partitions it holds nothing of are absent.
    public func recordHoldings(power: Int) async throws -> [Int: PartitionHolding] {
        try await self.metadata.read { db in
            var result: [Int: PartitionHolding] = [:]
            try db.query(
                "SELECT ph >> ?, count(*), sum(length(value)) FROM records GROUP BY 1", [.integer(Int64(32 - power))]
            ) { row in
                result[Int(row.int(0))] = PartitionHolding(count: Int(row.int(1)), bytes: Int(row.int(2)))
            }
            return result
        }
    }

    /// The summary of this node's record versions in one partition (kept up to date with every
    /// write in `record_digests`: no scan of the records).
    public func recordSummary(_ range: PartitionRange) async throws -> PartitionSummary {
        var summary = PartitionSummary()
        for slice in try await self.recordSlices(range).values {
            summary.count += slice.count
            for index in 0..<16 { summary.digest[index] ^= slice.digest[index] }
        }
        return summary
    }

    /// The summaries of the slices (by ``RecordVersion/keyHash``) of one partition that hold records.
    public func recordSlices(_ range: PartitionRange) async throws -> [UInt8: PartitionSummary] {
        try await self.metadata.read { db in
            var result: [UInt8: PartitionSummary] = [:]
            try db.query(
                "SELECT kh, count, digest FROM record_digests WHERE ph >= ? AND ph <= ?",
                [.integer(Int64(range.lower)), .integer(Int64(range.upper))]
            ) { row in
                let slice = UInt8(truncatingIfNeeded: row.int(0))
                var summary = result[slice] ?? PartitionSummary()
                summary.count += UInt64(row.int(1))
                let digest = row.blob(2)
                for index in 0..<min(16, digest.count) { summary.digest[index] ^= digest[index] }
                result[slice] = summary
            }
            return result.filter { $0.value.count > 0 }
        }
    }

    /// This node's record versions in one partition (or one slice of it), ordered by partition hash,
    /// key hash, then key, after `cursor` (exclusive), at most `limit`.
    public func recordVersions(
        _ range: PartitionRange, slice: UInt8? = nil, after cursor: RecordVersion?, limit: Int
    ) async throws -> [RecordVersion] {
        try await self.metadata.read { db in
            var result: [RecordVersion] = []
            var conditions = ["ph >= ?", "ph <= ?"]
            var parameters: [SQLValue] = [.integer(Int64(range.lower)), .integer(Int64(range.upper))]
            if let slice {
                conditions.append("kh = ?")
                parameters.append(.integer(Int64(slice)))
            }
            if let cursor {
                conditions.append("(ph, kh, tbl, pk, sk) > (?, ?, ?, ?, ?)")
                parameters += [
                    .integer(Int64(cursor.partitionHash)), .integer(Int64(cursor.keyHash)), .integer(Int64(cursor.table)),
                    .blob(cursor.partitionKey), .blob(cursor.sortKey),
                ]
            }
            parameters.append(.integer(Int64(limit)))
            try db.query(
                """
                SELECT tbl, pk, sk, hlc, deleted FROM records WHERE \(conditions.joined(separator: " AND "))
                ORDER BY ph, kh, tbl, pk, sk LIMIT ?
                """,
                parameters
            ) { row in
                result.append(
                    RecordVersion(
                        table: UInt8(truncatingIfNeeded: row.int(0)), partitionKey: row.blob(1), sortKey: row.blob(2),
                        timestamp: HybridTimestamp(rawValue: UInt64(bitPattern: row.int(3))), deleted: row.int(4) != 0))
            }
            return result
        }
    }

    /// The stored records (tombstones included) of these keys; keys with no record are left out.
    public func records(_ keys: [RecordVersion]) async throws -> [ReplicaRecord] {
        try await self.metadata.read { db in
            try keys.compactMap { key in
                try Self.record(db, table: key.table, partitionKey: key.partitionKey, sortKey: key.sortKey)
            }
        }
    }

    // MARK: Blocks by partition

    /// How many blocks and stored bytes this node holds in each partition of a ring with 2^`power` partitions.
    public func blockHoldings(power: Int) async throws -> [Int: PartitionHolding] {
        let blocks = self.blocks
        return try await self.runIO {
            var result: [Int: PartitionHolding] = [:]
            for (hash, bytes) in blocks.blockFiles(in: PartitionRange(partition: 0, power: 0)) {
                result[PartitionRange.partition(of: PartitionHash.of(hash: hash), power: power), default: PartitionHolding()].count += 1
                result[PartitionRange.partition(of: PartitionHash.of(hash: hash), power: power), default: PartitionHolding()].bytes += bytes
            }
            return result
        }
    }

    /// The summary of the block hashes this node holds in one partition.
    public func blockSummary(_ range: PartitionRange) async throws -> PartitionSummary {
        let blocks = self.blocks
        return try await self.runIO {
            var summary = PartitionSummary()
            for (hash, _) in blocks.blockFiles(in: range) { summary.add(hash) }
            return summary
        }
    }

    /// The blocks this node holds in one partition, with their sizes (read from their headers).
    public func blockList(_ range: PartitionRange) async throws -> [BlockRef] {
        let blocks = self.blocks
        return try await self.runIO {
            blocks.blockFiles(in: range).compactMap { hash, _ in blocks.storedSize(of: hash).map { BlockRef(hash: hash, size: $0) } }
        }
    }

    /// Deletes a block file this node holds (one handed over to its owners), unless an upload in
    /// progress pinned it. Returns whether the file is gone.
    public func removeBlock(_ hash: [UInt8]) async throws -> Bool {
        let blocks = self.blocks
        return try await self.runIO { blocks.deleteIfUnpinned(hash) }
    }
}

/// The per-slice summaries of the records table (`record_digests`), updated in the transaction that
/// changes a record.
enum RecordDigests {
    /// Adds (`sign` 1) or takes away (`sign` -1) one version's digest in its slice's row.
    static func add(_ db: SQLiteConnection, _ version: RecordVersion, sign: Int64) throws {
        let partitionHash = Int64(version.partitionHash)
        let keyHash = Int64(version.keyHash)
        var count: Int64 = 0
        var digest = [UInt8](repeating: 0, count: 16)
        try db.query(
            "SELECT count, digest FROM record_digests WHERE ph = ? AND kh = ?", [.integer(partitionHash), .integer(keyHash)]
        ) { row in
            count = row.int(0)
            let stored = row.blob(1)
            for index in 0..<min(16, stored.count) { digest[index] = stored[index] }
        }
        count += sign
        for (index, byte) in version.digest.enumerated() { digest[index] ^= byte }
        if count <= 0 {
            try db.query("DELETE FROM record_digests WHERE ph = ? AND kh = ?", [.integer(partitionHash), .integer(keyHash)])
        } else {
            try db.query(
                "INSERT OR REPLACE INTO record_digests (ph, kh, count, digest) VALUES (?, ?, ?, ?)",
                [.integer(partitionHash), .integer(keyHash), .integer(count), .blob(digest)])
        }
    }
}

extension BlockStore {
    /// The block files in a partition range, with their sizes on disk.
    func blockFiles(in range: PartitionRange) -> [(hash: [UInt8], bytes: Int)] {
        var result: [(hash: [UInt8], bytes: Int)] = []
        for prefix in Int(range.lower >> 24)...Int(range.upper >> 24) {
            let directory = self.root + "/" + Hex.encode([UInt8(prefix)])
            for name in Self.listDirectory(directory) {
                guard name.utf8.count == 64, let hash = Hex.decode(name) else { continue }
                let value = PartitionHash.of(hash: hash)
                guard value >= range.lower, value <= range.upper else { continue }
                var info = stat()
                guard stat(directory + "/" + name, &info) == 0 else { continue }
                result.append((hash, Int(info.st_size)))
            }
        }
        return result
    }

    /// The uncompressed size a block file's header records, or nil when it is missing or has no valid header.
    func storedSize(of hash: [UInt8]) -> Int? {
        let fd = open(self.path(for: hash), O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var header = [UInt8](repeating: 0, count: Self.headerSize)
        let count = header.withUnsafeMutableBytes { pread(fd, $0.baseAddress!, Self.headerSize, 0) }
        guard count == Self.headerSize, header[0..<4].elementsEqual("CLB1".utf8) else { return nil }
        return Int(header[8..<12].reduce(UInt32(0)) { $0 << 8 | UInt32($1) })
    }
}
