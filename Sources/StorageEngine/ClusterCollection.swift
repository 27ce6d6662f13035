#if canImport(Glibc)
import Glibc
#endif
import SQLite

/// A block file of this node's store, as the cluster's collector sees it.
public struct BlockFile: Sendable, Hashable {
    /// The block's SHA-256.
    public var hash: [UInt8]
    /// The file's modification time, whole seconds since the epoch (rounded down).
    public var modifiedSeconds: Int
}

/// The local steps of the cluster-wide garbage collector (`Cluster.GarbageCollector`): what this node
/// refers to, which of its block files and tombstones may go, and removing them.
extension StorageEngine {
    /// Visits, in one read snapshot, every live record (not a tombstone) of `tables` and every hint.
    ///
    /// One snapshot matters: a reference that moves from one record to another on this node (a
    /// multipart upload's parts to its object, committed before the parts are tombstoned) is seen
    /// in at least one of them.
    public func scanReferences<Accumulator: Sendable>(
        tables: [UInt8],
        into initial: Accumulator,
        record: @escaping @Sendable (inout Accumulator, ReplicaRecord) -> Void,
        hint: @escaping @Sendable (inout Accumulator, Hint) -> Void
    ) async throws -> Accumulator {
        let list = tables.map { String($0) }.joined(separator: ",")
        return try await self.metadata.read { db in
            var result = initial
            try db.execute("BEGIN")
            do {
                try db.query("SELECT tbl, pk, sk, hlc, value FROM records WHERE deleted = 0 AND tbl IN (\(list))") { row in
                    record(
                        &result,
                        ReplicaRecord(
                            table: UInt8(truncatingIfNeeded: row.int(0)), partitionKey: row.blob(1), sortKey: row.blob(2),
                            timestamp: HybridTimestamp(rawValue: UInt64(bitPattern: row.int(3))), deleted: false, value: row.blob(4)))
                }
                try db.query("SELECT id, owner, kind, payload, created_ms FROM hints") { row in
                    guard let kind = Hint.Kind(rawValue: UInt8(truncatingIfNeeded: row.int(2))) else { return }
                    hint(&result, Hint(id: row.int(0), owner: row.text(1), kind: kind, payload: row.blob(3), createdMilliseconds: row.int(4)))
                }
            } catch {
                try? db.execute("COMMIT")
                throw error
            }
            try db.execute("COMMIT")
            return result
        }
    }

    /// Every block file on this node's disk.
    public func blockFiles() async throws -> [BlockFile] {
        let blocks = self.blocks
        return try await self.runIO { blocks.allBlocks().map { BlockFile(hash: $0.hash, modifiedSeconds: $0.modified) } }
    }

    /// Deletes those of these blocks that are not pinned by a write in progress and whose file was
    /// last modified before `cutoffMilliseconds` (checked again at the moment of deleting).
    /// - Returns: the number of files deleted and the bytes they took on disk.
    public func deleteBlocks(_ hashes: [[UInt8]], modifiedBefore cutoffMilliseconds: Int64) async throws -> (count: Int, bytes: Int64) {
        let blocks = self.blocks
        return try await self.runIO {
            var count = 0
            var bytes: Int64 = 0
            for hash in hashes {
                if let freed = blocks.deleteIfUnpinned(hash, modifiedBefore: cutoffMilliseconds) {
                    count += 1
                    bytes += Int64(freed)
                }
            }
            return (count, bytes)
        }
    }

    /// For each block: 0 when this node has no file for it, 1 when its file is unpinned and was last
    /// modified before `cutoffMilliseconds`, 2 when it is pinned by a write or younger.
    public func blockAges(_ hashes: [[UInt8]], modifiedBefore cutoffMilliseconds: Int64) async throws -> [UInt8] {
        let blocks = self.blocks
        return try await self.runIO { hashes.map { blocks.age($0, modifiedBefore: cutoffMilliseconds) } }
    }

    /// Refreshes a block file's modification time (it is in use again); false when this node does
    /// not hold the block.
    public func touchBlock(_ hash: [UInt8]) async throws -> Bool {
        guard hash.count == 32 else { return false }
        let blocks = self.blocks
        return try await self.runIO { blocks.touch(hash) }
    }

    /// Tombstones whose timestamp is before `before`, in key order after `cursor`, at most `limit`.
    public func tombstones(before: HybridTimestamp, after cursor: RecordVersion?, limit: Int) async throws -> [RecordVersion] {
        try await self.metadata.read { db in
            var result: [RecordVersion] = []
            let bound: [SQLValue] =
                cursor.map { [.integer(Int64($0.table)), .blob($0.partitionKey), .blob($0.sortKey)] } ?? [.integer(-1), .blob([]), .blob([])]
            try db.query(
                """
                SELECT tbl, pk, sk, hlc FROM records WHERE (tbl, pk, sk) > (?, ?, ?) AND deleted = 1 AND hlc < ?
                ORDER BY tbl, pk, sk LIMIT ?
                """,
                bound + [.integer(Int64(bitPattern: before.rawValue)), .integer(Int64(limit))]
            ) { row in
                result.append(
                    RecordVersion(
                        table: UInt8(truncatingIfNeeded: row.int(0)), partitionKey: row.blob(1), sortKey: row.blob(2),
                        timestamp: HybridTimestamp(rawValue: UInt64(bitPattern: row.int(3))), deleted: true))
            }
            return result
        }
    }

    /// Live records of `table` (every partition key) in key order after `cursor`, at most `limit`.
    public func liveRecords(table: UInt8, after cursor: (partitionKey: [UInt8], sortKey: [UInt8])?, limit: Int) async throws -> [ReplicaRecord] {
        let bound: [SQLValue] = [.blob(cursor?.partitionKey ?? []), .blob(cursor?.sortKey ?? [])]
        let inclusive = cursor == nil
        return try await self.metadata.read { db in
            var result: [ReplicaRecord] = []
            try db.query(
                """
                SELECT pk, sk, hlc, value FROM records WHERE tbl = ? AND (pk, sk) \(inclusive ? ">=" : ">") (?, ?) AND deleted = 0
                ORDER BY pk, sk LIMIT ?
                """,
                [.integer(Int64(table))] + bound + [.integer(Int64(limit))]
            ) { row in
                result.append(
                    ReplicaRecord(
                        table: table, partitionKey: row.blob(0), sortKey: row.blob(1),
                        timestamp: HybridTimestamp(rawValue: UInt64(bitPattern: row.int(2))), deleted: false, value: row.blob(3)))
            }
            return result
        }
    }

    /// For each version, whether this node lets it be collected: it holds nothing for the key, or
    /// holds it at a timestamp at least as late.
    public func allowsCollection(_ versions: [RecordVersion]) async throws -> [Bool] {
        try await self.metadata.read { db in
            try versions.map { version in
                guard let stored = try Self.record(db, table: version.table, partitionKey: version.partitionKey, sortKey: version.sortKey)
                else { return true }
                return stored.timestamp >= version.timestamp
            }
        }
    }

    /// Drops hints stored before `cutoffMilliseconds`; returns how many.
    @discardableResult
    public func dropHints(createdBefore cutoffMilliseconds: Int64) async throws -> Int {
        try await self.metadata.write { db in
            try db.query("DELETE FROM hints WHERE created_ms < ?", [.integer(cutoffMilliseconds)])
            return db.changes
        }
    }
}
