import Database
import ServiceContract
import SQLite

/// A block volume: a file on the host, ext4 once first attached, seen by the instance it is attached
/// to at `/volumes/<name>`.
struct VolumeRecord: Sendable {
    var id: String
    var tenantID: String
    var name: String
    var sizeMiB: Int64
    var state: VolumeState
    /// Why it failed, or why the last attach or detach did not happen.
    var reason: String?
    /// The instance it is attached to (or being attached to or detached from).
    var instanceID: String?
    /// The snapshot it was made from.
    var sourceSnapshot: String?
    /// It has a file system (made on first attach, or restored from a snapshot of one that had).
    var formatted: Bool
    var version: Int64
    var createdAt: Int64
    var updatedAt: Int64
    /// The name of `instanceID`, read with it.
    var instanceName: String? = nil
    /// That instance's backend (`docker`, `libvirt`).
    var instanceBackend: Backend? = nil

    /// Where its instance sees it: a directory in a container, a disk in a machine.
    var mountPath: String? {
        guard self.instanceName != nil else { return nil }
        return self.instanceBackend == .libvirt ? "/dev/disk/by-id/virtio-\(self.id)" : "/volumes/\(self.name)"
    }
}

/// Where a volume is. Every arrow but the user's requests is a task's.
enum VolumeState: String, Sendable, CaseIterable {
    /// Its file is being made (or restored from a snapshot).
    case creating
    /// Detached: it can be attached, resized, snapshotted or deleted.
    case available
    case attaching
    /// Mounted for its instance.
    case attached
    case detaching
    case resizing
    case deleting
    /// It could not be made; deleting it is all that is left.
    case failed
}

/// A snapshot: a volume's blocks at one moment, kept in the object store.
struct SnapshotRecord: Sendable {
    var id: String
    var tenantID: String
    var name: String
    var volumeID: String
    var volumeName: String
    var sizeMiB: Int64
    var formatted: Bool
    var state: SnapshotState
    var reason: String?
    /// Blocks that are not all zeros (the volume's data; holes are not stored).
    var blocks: Int64
    /// Bytes this snapshot added to the object store: blocks no earlier completed snapshot held.
    var storedBytes: Int64
    var version: Int64
    var createdAt: Int64
    var updatedAt: Int64
}

enum SnapshotState: String, Sendable, CaseIterable {
    case creating, completed, failed, deleting
}

extension ComputeSchema {
    static let volumeMigration = Migration(version: 4, name: "volumes and snapshots", sql: """
        CREATE TABLE compute_volumes (
            id TEXT PRIMARY KEY,
            tenant_id TEXT NOT NULL,
            name TEXT NOT NULL,
            size_mib BIGINT NOT NULL,
            state TEXT NOT NULL,
            reason TEXT,
            instance_id TEXT,
            source_snapshot TEXT,
            formatted BIGINT NOT NULL,
            version BIGINT NOT NULL,
            created_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL,
            UNIQUE (tenant_id, name)
        );
        CREATE INDEX compute_volumes_instance ON compute_volumes (instance_id);
        CREATE TABLE compute_snapshots (
            id TEXT PRIMARY KEY,
            tenant_id TEXT NOT NULL,
            name TEXT NOT NULL,
            volume_id TEXT NOT NULL,
            volume_name TEXT NOT NULL,
            size_mib BIGINT NOT NULL,
            formatted BIGINT NOT NULL,
            state TEXT NOT NULL,
            reason TEXT,
            blocks BIGINT NOT NULL,
            stored_bytes BIGINT NOT NULL,
            version BIGINT NOT NULL,
            created_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL,
            UNIQUE (tenant_id, name)
        );
        CREATE TABLE compute_snapshot_blocks (
            snapshot_id TEXT NOT NULL,
            tenant_id TEXT NOT NULL,
            block BIGINT NOT NULL,
            digest TEXT NOT NULL,
            PRIMARY KEY (snapshot_id, block)
        );
        CREATE INDEX compute_snapshot_blocks_digest ON compute_snapshot_blocks (tenant_id, digest);
        CREATE TABLE compute_block_tombstones (
            tenant_id TEXT NOT NULL,
            digest TEXT NOT NULL,
            snapshot_id TEXT NOT NULL,
            PRIMARY KEY (tenant_id, digest)
        );
        CREATE TABLE compute_block_locks (tenant_id TEXT PRIMARY KEY);
        """)

    static let volumeColumns = """
        v.id, v.tenant_id, v.name, v.size_mib, v.state, v.reason, v.instance_id, v.source_snapshot, v.formatted, v.version, v.created_at, \
        v.updated_at, (SELECT i.name FROM compute_instances i WHERE i.id = v.instance_id), \
        (SELECT i.backend FROM compute_instances i WHERE i.id = v.instance_id)
        """

    static func volume(_ row: SQLRow) -> VolumeRecord {
        VolumeRecord(
            id: row.text(0), tenantID: row.text(1), name: row.text(2), sizeMiB: row.int(3), state: VolumeState(rawValue: row.text(4)) ?? .failed,
            reason: row.optionalText(5), instanceID: row.optionalText(6), sourceSnapshot: row.optionalText(7), formatted: row.int(8) != 0,
            version: row.int(9), createdAt: row.int(10), updatedAt: row.int(11), instanceName: row.optionalText(12),
            instanceBackend: row.optionalText(13).flatMap(Backend.init(rawValue:)))
    }

    static func volume(_ db: any SQLSession, tenantID: String, name: String, dialect: SQLDialect, forUpdate: Bool = false) async throws
        -> VolumeRecord?
    {
        let lock = forUpdate && dialect == .postgres ? " FOR UPDATE OF v" : ""
        return try await db.query(
            "SELECT \(Self.volumeColumns) FROM compute_volumes v WHERE v.tenant_id = $1 AND v.name = $2\(lock)", [.text(tenantID), .text(name)]
        ).first.map(Self.volume)
    }

    static func volume(_ db: any SQLSession, id: String) async throws -> VolumeRecord? {
        try await db.query("SELECT \(Self.volumeColumns) FROM compute_volumes v WHERE v.id = $1", [.text(id)]).first.map(Self.volume)
    }

    /// Sets a volume's state and reason (and its instance, when `instance` is given: `.some(nil)`
    /// clears it) if it is still in `from`; whether it was.
    @discardableResult
    static func moveVolume(
        _ db: any SQLSession, id: String, from: [VolumeState], to state: VolumeState, reason: String?, instance: String?? = nil,
        sizeMiB: Int64? = nil, now: Int64
    ) async throws -> Bool {
        var sets = ["state = $2", "reason = $3", "version = version + 1", "updated_at = $4"]
        var values: [SQLValue] = [.text(id), .text(state.rawValue), reason.map(SQLValue.text) ?? .null, .integer(now)]
        if let instance {
            values.append(instance.map(SQLValue.text) ?? .null)
            sets.append("instance_id = $\(values.count)")
        }
        if let sizeMiB {
            values.append(.integer(sizeMiB))
            sets.append("size_mib = $\(values.count)")
        }
        let states = from.map { "'\($0.rawValue)'" }.joined(separator: ", ")
        return try await !db.query(
            "UPDATE compute_volumes SET \(sets.joined(separator: ", ")) WHERE id = $1 AND state IN (\(states)) RETURNING id", values
        ).isEmpty
    }

    static let snapshotColumns = """
        id, tenant_id, name, volume_id, volume_name, size_mib, formatted, state, reason, blocks, stored_bytes, version, created_at, updated_at
        """

    static func snapshot(_ row: SQLRow) -> SnapshotRecord {
        SnapshotRecord(
            id: row.text(0), tenantID: row.text(1), name: row.text(2), volumeID: row.text(3), volumeName: row.text(4), sizeMiB: row.int(5),
            formatted: row.int(6) != 0, state: SnapshotState(rawValue: row.text(7)) ?? .failed, reason: row.optionalText(8), blocks: row.int(9),
            storedBytes: row.int(10), version: row.int(11), createdAt: row.int(12), updatedAt: row.int(13))
    }

    static func snapshot(_ db: any SQLSession, tenantID: String, name: String, dialect: SQLDialect, forUpdate: Bool = false) async throws
        -> SnapshotRecord?
    {
        let lock = forUpdate && dialect == .postgres ? " FOR UPDATE" : ""
        return try await db.query(
            "SELECT \(Self.snapshotColumns) FROM compute_snapshots WHERE tenant_id = $1 AND name = $2\(lock)", [.text(tenantID), .text(name)]
        ).first.map(Self.snapshot)
    }

    static func snapshot(_ db: any SQLSession, id: String) async throws -> SnapshotRecord? {
        try await db.query("SELECT \(Self.snapshotColumns) FROM compute_snapshots WHERE id = $1", [.text(id)]).first.map(Self.snapshot)
    }
}
