import Database
import Hashing
import Libvirt
import Logging
import ServiceContract
import SQLite
import VolumeFiles

/// Snapshots keep a volume's blocks (1 MiB, all-zero ones skipped) in the object store, one object
/// per tenant and SHA-256, and the list of (block, digest) of each snapshot in
/// `compute_snapshot_blocks`. A block that a completed snapshot of the tenant already holds is not
/// sent again: an incremental snapshot stores only what changed.
///
/// Deleting a snapshot deletes the blocks no other snapshot holds. That races with a snapshot being
/// taken that reuses such a block, so the two serialise per tenant on a lock row
/// (`compute_block_locks`) and a block on its way out carries a tombstone until its object is gone:
/// a snapshot that meets a tombstone waits (its task retries) instead of counting on the block.
extension ComputeService {
    /// Blocks per batch of bookkeeping (16 MiB in memory at most).
    static let snapshotBatch = 16

    /// Takes the tenant's block lock for the rest of the transaction (PostgreSQL holds the upserted
    /// row; SQLite has one writer anyway).
    static func lockBlocks(_ db: any SQLSession, tenantID: String) async throws {
        try await db.query(
            "INSERT INTO compute_block_locks (tenant_id) VALUES ($1) ON CONFLICT (tenant_id) DO UPDATE SET tenant_id = excluded.tenant_id",
            [.text(tenantID)])
    }

    /// Creates or deletes a snapshot, as the task's `action` says.
    func snapshotTask(_ context: TaskContext) async throws -> TaskCompletion {
        guard case .string(let id)? = context.task.payload["snapshot"], case .string(let action)? = context.task.payload["action"] else {
            throw TaskFailure.permanent("the task names no snapshot or action")
        }
        guard let store = self.images else { throw TaskFailure.permanent("no object store is configured for snapshots") }
        guard let snapshot = try await context.queue.database.transaction({ db in try await ComputeSchema.snapshot(db, id: id) }) else {
            return TaskCompletion(result: .string("already gone"))
        }
        switch action {
        case "create":
            guard snapshot.state == .creating else { return TaskCompletion(result: .string("nothing to do")) }
            return try await self.take(snapshot, try self.volumeFiles(), store, context)
        case "delete":
            guard snapshot.state == .deleting else { return TaskCompletion(result: .string("nothing to do")) }
            return try await self.discard(snapshot, store, context)
        default: throw TaskFailure.permanent("unknown snapshot action '\(action)'")
        }
    }

    private func take(_ snapshot: SnapshotRecord, _ files: VolumeFiles, _ store: SystemStore, _ context: TaskContext) async throws -> TaskCompletion {
        let now = context.queue.now()
        let fail = { (reason: String) in
            TaskCompletion(result: .string("failed")) { db in
                try await db.query(
                    "UPDATE compute_snapshots SET state = 'failed', reason = $2, version = version + 1, updated_at = $3 WHERE id = $1 AND state = 'creating'",
                    [.text(snapshot.id), .text(reason), .integer(now)])
            }
        }
        guard let volume = try await context.queue.database.transaction({ db in try await ComputeSchema.volume(db, id: snapshot.volumeID) }),
            files.exists(volume.id)
        else { return fail("its volume is gone") }
        // A crashed attempt's list may be of other contents: start it again.
        try await context.fenced { db in
            try await db.query("DELETE FROM compute_snapshot_blocks WHERE snapshot_id = $1", [.text(snapshot.id)])
        }
        let read = { () async throws -> (blocks: Int64, stored: Int64) in
            var sent: Set<String> = []
            var batch: [(Int, String, [UInt8])] = []
            var (blocks, stored) = (Int64(0), Int64(0))
            let flush = { (batch: [(Int, String, [UInt8])]) async throws -> Int64 in
                let known = try await self.record(batch.map { ($0.0, $0.1) }, of: snapshot, context)
                // The batch's new blocks go to the object store at once (one of each digest).
                var fresh: [String: [UInt8]] = [:]
                for (_, digest, bytes) in batch where !known.contains(digest) && !sent.contains(digest) { fresh[digest] = bytes }
                let tenantID = snapshot.tenantID
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for (digest, bytes) in fresh {
                        group.addTask { try await store.putBlock(tenantID: tenantID, digest: digest, bytes: bytes) }
                    }
                    try await group.waitForAll()
                }
                sent.formUnion(fresh.keys)
                return fresh.values.reduce(0) { $0 + Int64($1.count) }
            }
            try await files.readBlocks(volume.id) { index, bytes in
                guard let bytes else { return }
                batch.append((index, Hex.encode(Digests.sha256(bytes)), bytes))
                blocks += 1
                if batch.count == Self.snapshotBatch {
                    stored += try await flush(batch)
                    batch.removeAll()
                }
            }
            if !batch.isEmpty { stored += try await flush(batch) }
            return (blocks, stored)
        }
        let outcome: (blocks: Int64, stored: Int64)
        do {
            if volume.state == .attached, let instance = volume.instanceID, let (machine, host) = try await self.machine(instance, context) {
                // A machine's disk: read with the machine paused (what a power cut would leave).
                outcome = try await Libvirt(uri: host.libvirtURI).paused(machine.containerName) { try await read() }
            } else if volume.state == .attached, let instance = volume.instanceID, files.isMounted(instance: instance, name: volume.name) {
                outcome = try await files.frozen(instance: instance, name: volume.name) { try await read() }
            } else {
                outcome = try await read()
            }
        } catch let error as SystemStoreError where context.attempt < 3 {
            throw TaskFailure.retryable(error.description)
        } catch let error as VolumeError {
            return fail("\(error)")
        } catch let error as LibvirtError {
            if error.kind == .unavailable && context.attempt < 3 { throw TaskFailure.retryable(error.description) }
            return fail(error.description)
        } catch let error as SystemStoreError {
            return fail(error.description)
        }
        context.logger.info(
            "snapshot completed", metadata: ["snapshot": "\(snapshot.id)", "blocks": "\(outcome.blocks)", "stored-bytes": "\(outcome.stored)"])
        return TaskCompletion(result: .object([("blocks", .int(outcome.blocks)), ("stored_bytes", .int(outcome.stored))])) { db in
            try await db.query(
                """
                UPDATE compute_snapshots SET state = 'completed', blocks = $2, stored_bytes = $3, version = version + 1, updated_at = $4
                WHERE id = $1 AND state = 'creating'
                """, [.text(snapshot.id), .integer(outcome.blocks), .integer(outcome.stored), .integer(now)])
        }
    }

    /// Records blocks of a snapshot being taken; answers the digests a completed snapshot of the
    /// tenant already holds (they need not be sent). A block on its way out makes the attempt retry.
    private func record(_ blocks: [(Int, String)], of snapshot: SnapshotRecord, _ context: TaskContext) async throws -> Set<String> {
        let digests = Array(Set(blocks.map(\.1)))
        return try await context.fenced { db in
            try await Self.lockBlocks(db, tenantID: snapshot.tenantID)
            let list = digests.indices.map { "$\($0 + 2)" }.joined(separator: ", ")
            let values = [SQLValue.text(snapshot.tenantID)] + digests.map(SQLValue.text)
            if try await db.query("SELECT 1 FROM compute_block_tombstones WHERE tenant_id = $1 AND digest IN (\(list)) LIMIT 1", values).first != nil {
                throw TaskFailure.retryable("a block of this snapshot is being deleted with another snapshot; trying again")
            }
            for (index, digest) in blocks {
                try await db.query(
                    "INSERT INTO compute_snapshot_blocks (snapshot_id, tenant_id, block, digest) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                    [.text(snapshot.id), .text(snapshot.tenantID), .integer(Int64(index)), .text(digest)])
            }
            let known = try await db.query(
                """
                SELECT DISTINCT b.digest FROM compute_snapshot_blocks b JOIN compute_snapshots s ON s.id = b.snapshot_id
                WHERE b.tenant_id = $1 AND s.state = 'completed' AND b.digest IN (\(list))
                """, values)
            return Set(known.map { $0.text(0) })
        }
    }

    /// Drops the snapshot's list, tombstones the blocks nothing else holds, deletes their objects,
    /// then the tombstones and the snapshot.
    private func discard(_ snapshot: SnapshotRecord, _ store: SystemStore, _ context: TaskContext) async throws -> TaskCompletion {
        let orphans = try await context.fenced { db -> [String] in
            try await Self.lockBlocks(db, tenantID: snapshot.tenantID)
            let digests = try await db.query("SELECT DISTINCT digest FROM compute_snapshot_blocks WHERE snapshot_id = $1", [.text(snapshot.id)])
                .map { $0.text(0) }
            try await db.query("DELETE FROM compute_snapshot_blocks WHERE snapshot_id = $1", [.text(snapshot.id)])
            for digest in digests {
                let held = try await db.query(
                    "SELECT 1 FROM compute_snapshot_blocks WHERE tenant_id = $1 AND digest = $2 LIMIT 1", [.text(snapshot.tenantID), .text(digest)]
                ).first
                if held == nil {
                    try await db.query(
                        "INSERT INTO compute_block_tombstones (tenant_id, digest, snapshot_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                        [.text(snapshot.tenantID), .text(digest), .text(snapshot.id)])
                }
            }
            // An earlier attempt's tombstones too (its list is already gone).
            return try await db.query("SELECT digest FROM compute_block_tombstones WHERE snapshot_id = $1", [.text(snapshot.id)]).map { $0.text(0) }
        }
        do {
            for digest in orphans { try await store.deleteBlock(tenantID: snapshot.tenantID, digest: digest) }
        } catch let error as SystemStoreError {
            throw TaskFailure.retryable(error.description)
        }
        context.logger.info("snapshot deleted", metadata: ["snapshot": "\(snapshot.id)", "blocks-deleted": "\(orphans.count)"])
        return TaskCompletion(result: .object([("blocks_deleted", .int(Int64(orphans.count)))])) { db in
            try await db.query("DELETE FROM compute_block_tombstones WHERE snapshot_id = $1", [.text(snapshot.id)])
            try await db.query("DELETE FROM compute_snapshots WHERE id = $1 AND state = 'deleting'", [.text(snapshot.id)])
        }
    }
}
