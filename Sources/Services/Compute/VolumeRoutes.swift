import Database
import Logging
import ServiceContract
import SQLite
import VolumeFiles

extension ComputeService {
    static let volumesQuota = QuotaResource(rawValue: "volumes")
    static let volumeMiBQuota = QuotaResource(rawValue: "volume_mib")
    static let snapshotsQuota = QuotaResource(rawValue: "snapshots")

    static let volumeKind = "compute.volume"
    static let snapshotKind = "compute.snapshot"

    /// The smallest and largest volume (MiB).
    static let volumeSizes: ClosedRange<Int64> = 16...1_048_576

    static let volumeShape = ResponseShape<VolumeRecord>("Volume") {
        $0.string("id") { $0.id }
        $0.string("name") { $0.name }
        $0.integer("size_mib") { $0.sizeMiB }
        $0.enumeration("status", VolumeState.allCases.map(\.rawValue)) { $0.state.rawValue }
        $0.optionalString("status_reason", "Why it failed, or why the last attach, detach or resize did not happen.") { $0.reason }
        $0.optionalString("instance", "The instance it is attached to (or being attached to or detached from).") { $0.instanceName }
        $0.optionalString("mount_path", "Where that instance sees it: /volumes/NAME in a container, /dev/disk/by-id/virtio-ID (a disk) in a machine.") {
            $0.mountPath
        }
        $0.optionalString("snapshot", "The snapshot it was made from.") { $0.sourceSnapshot }
        $0.boolean("formatted", "It has its ext4 file system (made on first attach).") { $0.formatted }
        $0.integer("version", "The ETag.") { $0.version }
        $0.time("created_at") { $0.createdAt }
        $0.time("updated_at") { $0.updatedAt }
    }

    static let volumeList = ListShape("VolumeList", itemsKey: "volumes", item: Self.volumeShape)

    static let snapshotShape = ResponseShape<SnapshotRecord>("Snapshot") {
        $0.string("id") { $0.id }
        $0.string("name") { $0.name }
        $0.string("volume", "The volume it was taken of.") { $0.volumeName }
        $0.integer("size_mib", "The volume's size then; a volume made from it is at least this big.") { $0.sizeMiB }
        $0.enumeration("status", SnapshotState.allCases.map(\.rawValue)) { $0.state.rawValue }
        $0.optionalString("status_reason") { $0.reason }
        $0.integer("blocks", "1 MiB blocks with data (blocks of zeros are not stored).") { $0.blocks }
        $0.integer("stored_bytes", "Bytes it added to the object store: blocks no earlier snapshot of the tenant held.") { $0.storedBytes }
        $0.integer("version", "The ETag.") { $0.version }
        $0.time("created_at") { $0.createdAt }
        $0.time("updated_at") { $0.updatedAt }
    }

    static let snapshotList = ListShape("SnapshotList", itemsKey: "snapshots", item: Self.snapshotShape)

    var volumePermissions: [PermissionSpec] {
        [
            PermissionSpec("volume:read", "See volumes.", grantedTo: [.developer, .viewer]),
            PermissionSpec("volume:create", "Create volumes (empty or from a snapshot).", grantedTo: [.developer]),
            PermissionSpec("volume:update", "Attach, detach and resize volumes.", grantedTo: [.developer]),
            PermissionSpec("volume:delete", "Delete detached volumes.", grantedTo: [.developer]),
            PermissionSpec("snapshot:read", "See snapshots.", grantedTo: [.developer, .viewer]),
            PermissionSpec("snapshot:create", "Snapshot volumes into the object store.", grantedTo: [.developer]),
            PermissionSpec("snapshot:delete", "Delete snapshots.", grantedTo: [.developer]),
        ]
    }

    var volumeQuotas: [QuotaSpec] {
        [
            QuotaSpec(Self.volumesQuota, defaultLimit: 20, description: "Compute volumes.") { tenantID, db in
                try await db.query("SELECT COUNT(*) FROM compute_volumes WHERE tenant_id = $1", [.text(tenantID)]).first?.int(0) ?? 0
            },
            QuotaSpec(Self.volumeMiBQuota, defaultLimit: 102_400, description: "MiB of the tenant's volumes.") { tenantID, db in
                try await db.query("SELECT COALESCE(SUM(size_mib), 0) FROM compute_volumes WHERE tenant_id = $1", [.text(tenantID)]).first?.int(0) ?? 0
            },
            QuotaSpec(Self.snapshotsQuota, defaultLimit: 50, description: "Volume snapshots.") { tenantID, db in
                try await db.query("SELECT COUNT(*) FROM compute_snapshots WHERE tenant_id = $1", [.text(tenantID)]).first?.int(0) ?? 0
            },
        ]
    }

    static func volumeTask(_ volume: VolumeRecord, _ action: String) -> NewTask {
        NewTask(
            kind: Self.volumeKind, tenantID: volume.tenantID, payload: .object([("volume", .string(volume.id)), ("action", .string(action))]),
            maxAttempts: 10)
    }

    static func snapshotTask(_ snapshot: SnapshotRecord, _ action: String) -> NewTask {
        NewTask(
            kind: Self.snapshotKind, tenantID: snapshot.tenantID,
            payload: .object([("snapshot", .string(snapshot.id)), ("action", .string(action))]), maxAttempts: 10)
    }

    // MARK: - Routes

    var volumeRoutes: [Route] {
        let read = Access.permission(Permission("volume:read")!)
        let update = Access.permission(Permission("volume:update")!)
        return [
            Route(
                method: "POST", path: "/compute/volumes", operationID: "createVolume",
                summary: "Create a volume, empty or from a snapshot (asynchronous: it is creating, then available).",
                access: .permission(Permission("volume:create")!),
                body: BodySchema([
                    .string("name", maxLength: 63, "1 to 63 of lowercase letters, digits and -; unique in the tenant."),
                    .integer("size_mib", "Its size in MiB (16 to 1048576); from a snapshot, at least the snapshot's (its size by default)."),
                    .string("snapshot", required: false, maxLength: 63, "A completed snapshot of the tenant to restore."),
                    .string("storage", required: false, maxLength: 16, "file (the default: a sparse file on the host) or lvm (a logical volume; where it is unavailable, a 503 says why)."),
                ]), success: 201, response: .shape(Self.volumeShape.component),
                errors: [(409, "volume_exists"), (404, "snapshot_not_found"), (503, "volumes_unavailable"), (503, "lvm_unavailable")]
            ) { context in try await self.createVolume(context) },
            Route(
                method: "GET", path: "/compute/volumes", operationID: "listVolumes", summary: "The tenant's volumes by name.", access: read,
                success: 200, response: .shape(Self.volumeList.component), paginated: true
            ) { context in try await self.listVolumes(context) },
            Route(
                method: "GET", path: "/compute/volumes/{name}", operationID: "getVolume", summary: "One volume; its ETag.", access: read,
                success: 200, response: .shape(Self.volumeShape.component)
            ) { context in try await self.getVolume(context) },
            Route(
                method: "POST", path: "/compute/volumes/{name}/attach", operationID: "attachVolume",
                summary: "Attach an available volume to a ready or stopped instance, which sees it at /volumes/NAME (asynchronous).",
                access: update, body: BodySchema([.string("instance", maxLength: 63, "An instance of the tenant.")]), success: 202,
                response: .shape(Self.volumeShape.component), errors: [(409, "invalid_state"), (404, "instance_not_found"), (409, "unsupported_by_backend")]
            ) { context in try await self.attachVolume(context) },
            Route(
                method: "POST", path: "/compute/volumes/{name}/detach", operationID: "detachVolume",
                summary: "Detach an attached volume (asynchronous; a process still using it keeps it attached, with the reason).",
                access: update, success: 202, response: .shape(Self.volumeShape.component), errors: [(409, "invalid_state")]
            ) { context in try await self.detachVolume(context) },
            Route(
                method: "POST", path: "/compute/volumes/{name}/resize", operationID: "resizeVolume",
                summary: "Grow an available volume and its file system (asynchronous).", access: update,
                body: BodySchema([.integer("size_mib", required: true, "The new size in MiB, larger than the current one.")]), success: 202,
                response: .shape(Self.volumeShape.component), errors: [(409, "invalid_state")]
            ) { context in try await self.resizeVolume(context) },
            Route(
                method: "DELETE", path: "/compute/volumes/{name}", operationID: "deleteVolume",
                summary: "Delete a detached volume and its file (asynchronous; its snapshots stay).",
                access: .permission(Permission("volume:delete")!), success: 202, response: .shape(Self.volumeShape.component),
                errors: [(409, "invalid_state")]
            ) { context in try await self.deleteVolume(context) },
            Route(
                method: "POST", path: "/compute/snapshots", operationID: "createSnapshot",
                summary: "Snapshot a volume into the object store (asynchronous; an attached volume's file system is frozen while it is read).",
                access: .permission(Permission("snapshot:create")!),
                body: BodySchema([
                    .string("name", maxLength: 63, "1 to 63 of lowercase letters, digits and -; unique in the tenant."),
                    .string("volume", maxLength: 63, "A volume of the tenant, available or attached."),
                ]), success: 201, response: .shape(Self.snapshotShape.component),
                errors: [(409, "snapshot_exists"), (404, "volume_not_found"), (409, "invalid_state"), (503, "snapshots_unavailable")]
            ) { context in try await self.createSnapshot(context) },
            Route(
                method: "GET", path: "/compute/snapshots", operationID: "listSnapshots", summary: "The tenant's snapshots by name.",
                access: .permission(Permission("snapshot:read")!), success: 200, response: .shape(Self.snapshotList.component), paginated: true
            ) { context in try await self.listSnapshots(context) },
            Route(
                method: "GET", path: "/compute/snapshots/{name}", operationID: "getSnapshot", summary: "One snapshot.",
                access: .permission(Permission("snapshot:read")!), success: 200, response: .shape(Self.snapshotShape.component)
            ) { context in try await self.getSnapshot(context) },
            Route(
                method: "DELETE", path: "/compute/snapshots/{name}", operationID: "deleteSnapshot",
                summary: "Delete a snapshot and the blocks no other snapshot holds (asynchronous).",
                access: .permission(Permission("snapshot:delete")!), success: 202, response: .shape(Self.snapshotShape.component),
                errors: [(409, "invalid_state")]
            ) { context in try await self.deleteSnapshot(context) },
        ]
    }

    // MARK: - Volumes

    /// Whether a snapshot of the volume is being taken (its file must stay as it is meanwhile).
    static func snapshotInProgress(_ db: any SQLSession, volumeID: String) async throws -> Bool {
        try await db.query("SELECT 1 FROM compute_snapshots WHERE volume_id = $1 AND state = 'creating' LIMIT 1", [.text(volumeID)]).first != nil
    }

    func createVolume(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        guard self.volumes != nil else { throw ComputeError.volumesUnavailable }
        switch context.body.string("storage") ?? "file" {
        case "file": break
        case "lvm": throw ComputeError.lvmUnavailable(LVMSupport.unavailableHere())
        case let other: throw APIError.invalidRequest("storage must be file or lvm, not '\(other)'")
        }
        let name = context.body.string("name") ?? ""
        try Self.checkName(name)
        let snapshotName = context.body.string("snapshot")
        let requested = context.body.integer("size_mib")
        if snapshotName == nil && requested == nil { throw APIError.invalidRequest("size_mib is required (or a snapshot to restore)") }
        if let requested, !Self.volumeSizes.contains(requested) {
            throw APIError.invalidRequest("size_mib must be \(Self.volumeSizes.lowerBound) to \(Self.volumeSizes.upperBound)")
        }
        let environment = context.environment
        let now = environment.clock.unixMilliseconds()
        let id = SecureRandom.identifier(prefix: "vol-", bytes: 8)
        return try await context.transaction { db in
            var size = requested ?? 0
            var formatted = false
            if let snapshotName {
                guard let snapshot = try await ComputeSchema.snapshot(db, tenantID: caller.tenantID, name: snapshotName, dialect: environment.database.dialect)
                else { throw ComputeError.snapshotNotFound(snapshotName) }
                guard snapshot.state == .completed else { throw ComputeError.snapshotState(snapshotName, snapshot.state, "be restored") }
                if requested == nil { size = snapshot.sizeMiB }
                guard size >= snapshot.sizeMiB else {
                    throw APIError.invalidRequest("size_mib \(size) is below the snapshot's \(snapshot.sizeMiB): a volume holds all of its snapshot")
                }
                formatted = snapshot.formatted
            }
            if try await ComputeSchema.volume(db, tenantID: caller.tenantID, name: name, dialect: environment.database.dialect) != nil {
                throw ComputeError.volumeExists(name)
            }
            try await environment.quotas.reserve(Self.volumesQuota, tenantID: caller.tenantID, in: db)
            try await environment.quotas.reserve(Self.volumeMiBQuota, tenantID: caller.tenantID, adding: size, in: db)
            let record = VolumeRecord(
                id: id, tenantID: caller.tenantID, name: name, sizeMiB: size, state: .creating, reason: nil, instanceID: nil,
                sourceSnapshot: snapshotName, formatted: formatted, version: 1, createdAt: now, updatedAt: now)
            try await db.query(
                """
                INSERT INTO compute_volumes (id, tenant_id, name, size_mib, state, reason, instance_id, source_snapshot, formatted, version,
                created_at, updated_at) VALUES ($1, $2, $3, $4, $5, NULL, NULL, $6, $7, 1, $8, $8)
                """,
                [.text(id), .text(caller.tenantID), .text(name), .integer(size), .text(record.state.rawValue),
                 snapshotName.map(SQLValue.text) ?? .null, .integer(formatted ? 1 : 0), .integer(now)])
            try await environment.tasks.enqueue(Self.volumeTask(record, "create"), in: db)
            Self.log(context, "volume created", ["tenant-id": "\(caller.tenantID)", "volume": "\(name)", "size-mib": "\(size)"])
            return APIResponse.json(201, Self.volumeShape.json(record)).tagged(version: 1)
        }
    }

    func listVolumes(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let page = try context.page()
        let rows = try await context.environment.database.query(
            "SELECT \(ComputeSchema.volumeColumns) FROM compute_volumes v WHERE v.tenant_id = $1 AND v.name > $2 ORDER BY v.name LIMIT \(page.fetchLimit)",
            [.text(caller.tenantID), .text(page.after ?? "")])
        let (items, next) = page.finish(rows.map(ComputeSchema.volume), key: \.name)
        return .json(200, Self.volumeList.json(items, nextToken: next))
    }

    private func existingVolume(_ context: RouteContext, _ db: any SQLSession, forUpdate: Bool = false) async throws -> VolumeRecord {
        let caller = try context.authenticated
        let name = context.parameter("name")
        guard
            let volume = try await ComputeSchema.volume(
                db, tenantID: caller.tenantID, name: name, dialect: context.environment.database.dialect, forUpdate: forUpdate)
        else { throw ComputeError.volumeNotFound(name) }
        return volume
    }

    func getVolume(_ context: RouteContext) async throws -> APIResponse {
        let volume = try await context.environment.database.transaction { db in try await self.existingVolume(context, db) }
        return APIResponse.json(200, Self.volumeShape.json(volume)).tagged(version: volume.version)
    }

    /// Moves a volume the caller names from `from` to `to` and queues the task that does the work.
    private func requestVolume(
        _ context: RouteContext, action: String, from: [VolumeState], to: VolumeState, instance: String?? = nil,
        check: (@Sendable (VolumeRecord, any SQLSession) async throws -> Void)? = nil
    ) async throws -> APIResponse {
        guard self.volumes != nil else { throw ComputeError.volumesUnavailable }
        let environment = context.environment
        let now = environment.clock.unixMilliseconds()
        return try await context.transaction { db in
            let volume = try await self.existingVolume(context, db, forUpdate: true)
            try context.requireMatch(version: volume.version)
            guard from.contains(volume.state) else { throw ComputeError.volumeState(volume.name, volume.state, action) }
            if try await Self.snapshotInProgress(db, volumeID: volume.id) {
                throw APIError.conflict("invalid_state", "a snapshot of volume '\(volume.name)' is being taken; \(action) it when that is done")
            }
            try await check?(volume, db)
            try await ComputeSchema.moveVolume(db, id: volume.id, from: from, to: to, reason: nil, instance: instance, now: now)
            try await environment.tasks.enqueue(Self.volumeTask(volume, action), in: db)
            Self.log(context, "volume \(action) requested", ["volume": "\(volume.name)"])
            guard let moved = try await ComputeSchema.volume(db, id: volume.id) else { throw ComputeError.volumeNotFound(volume.name) }
            return APIResponse.json(202, Self.volumeShape.json(moved)).tagged(version: moved.version)
        }
    }

    func attachVolume(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let instanceName = context.body.string("instance") ?? ""
        let dialect = context.environment.database.dialect
        let instance = try await context.environment.database.transaction { db in
            try await ComputeSchema.instance(db, tenantID: caller.tenantID, name: instanceName, dialect: dialect)
        }
        guard let instance else { throw ComputeError.instanceNotFound(instanceName) }
        let instanceID = instance.id
        return try await self.requestVolume(context, action: "attach", from: [.available], to: .attaching, instance: .some(instanceID)) { _, db in
            // Its state, read in the transaction that attaches.
            guard let current = try await ComputeSchema.instance(db, id: instanceID) else { throw ComputeError.instanceNotFound(instance.name) }
            guard [.ready, .stopped].contains(current.state) else {
                throw ComputeError.invalidState(name: instance.name, state: current.state, action: "take a volume")
            }
            // Volume files live on the control plane's machine; an agent's engine is on another one.
            if let hostName = current.host, let host = try await ComputeSchema.host(db, named: hostName), !host.agentToken.isEmpty {
                throw ComputeError.unsupported(
                    "instance \(instance.name) runs on host \(hostName), reached through a compute agent: volumes attach only to instances on the control plane's machine")
            }
        }
    }

    func detachVolume(_ context: RouteContext) async throws -> APIResponse {
        try await self.requestVolume(context, action: "detach", from: [.attached], to: .detaching)
    }

    func resizeVolume(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        guard let size = context.body.integer("size_mib"), Self.volumeSizes.contains(size) else {
            throw APIError.invalidRequest("size_mib must be \(Self.volumeSizes.lowerBound) to \(Self.volumeSizes.upperBound)")
        }
        let environment = context.environment
        return try await self.requestVolume(context, action: "resize", from: [.available], to: .resizing) { volume, db in
            guard size > volume.sizeMiB else {
                throw APIError.invalidRequest("size_mib \(size) is not larger than the volume's \(volume.sizeMiB): volumes only grow")
            }
            try await environment.quotas.reserve(Self.volumeMiBQuota, tenantID: caller.tenantID, adding: size - volume.sizeMiB, in: db)
            // The task reads the new size from the row; the quota counts it from now on.
            try await db.query("UPDATE compute_volumes SET size_mib = $2 WHERE id = $1", [.text(volume.id), .integer(size)])
        }
    }

    func deleteVolume(_ context: RouteContext) async throws -> APIResponse {
        try await self.requestVolume(context, action: "delete", from: [.available, .failed], to: .deleting)
    }

    // MARK: - Snapshots

    func createSnapshot(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        guard self.volumes != nil else { throw ComputeError.volumesUnavailable }
        guard self.images != nil else { throw ComputeError.snapshotsUnavailable }
        let name = context.body.string("name") ?? ""
        try Self.checkName(name)
        let volumeName = context.body.string("volume") ?? ""
        let environment = context.environment
        let now = environment.clock.unixMilliseconds()
        let id = SecureRandom.identifier(prefix: "snap-", bytes: 8)
        return try await context.transaction { db in
            let dialect = environment.database.dialect
            guard let volume = try await ComputeSchema.volume(db, tenantID: caller.tenantID, name: volumeName, dialect: dialect, forUpdate: true)
            else { throw ComputeError.volumeNotFound(volumeName) }
            guard [.available, .attached].contains(volume.state) else { throw ComputeError.volumeState(volume.name, volume.state, "snapshot") }
            if volume.state == .attached, let instanceID = volume.instanceID {
                // A machine's disk is read with the machine paused; one on its way up or down is not
                // read at all (its power requests wait for the snapshot too: see request(_:_:)).
                let lock = dialect == .postgres ? " FOR UPDATE" : ""
                if let row = try await db.query("SELECT state, backend FROM compute_instances WHERE id = $1\(lock)", [.text(instanceID)]).first,
                    row.text(1) == Backend.libvirt.rawValue, ![InstanceState.ready.rawValue, InstanceState.stopped.rawValue].contains(row.text(0))
                {
                    throw APIError.conflict(
                        "invalid_state", "volume '\(volume.name)' is a disk of a machine that is \(row.text(0)): snapshot it once it is ready or stopped")
                }
            }
            if try await ComputeSchema.snapshot(db, tenantID: caller.tenantID, name: name, dialect: dialect) != nil {
                throw ComputeError.snapshotExists(name)
            }
            try await environment.quotas.reserve(Self.snapshotsQuota, tenantID: caller.tenantID, in: db)
            let record = SnapshotRecord(
                id: id, tenantID: caller.tenantID, name: name, volumeID: volume.id, volumeName: volume.name, sizeMiB: volume.sizeMiB,
                formatted: volume.formatted, state: .creating, reason: nil, blocks: 0, storedBytes: 0, version: 1, createdAt: now, updatedAt: now)
            try await db.query(
                "INSERT INTO compute_snapshots (\(ComputeSchema.snapshotColumns)) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, 0, 0, 1, $9, $9)",
                [.text(id), .text(caller.tenantID), .text(name), .text(volume.id), .text(volume.name), .integer(volume.sizeMiB),
                 .integer(volume.formatted ? 1 : 0), .text(record.state.rawValue), .integer(now)])
            try await environment.tasks.enqueue(Self.snapshotTask(record, "create"), in: db)
            Self.log(context, "snapshot requested", ["tenant-id": "\(caller.tenantID)", "snapshot": "\(name)", "volume": "\(volume.name)"])
            return APIResponse.json(201, Self.snapshotShape.json(record)).tagged(version: 1)
        }
    }

    func listSnapshots(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let page = try context.page()
        let rows = try await context.environment.database.query(
            "SELECT \(ComputeSchema.snapshotColumns) FROM compute_snapshots WHERE tenant_id = $1 AND name > $2 ORDER BY name LIMIT \(page.fetchLimit)",
            [.text(caller.tenantID), .text(page.after ?? "")])
        let (items, next) = page.finish(rows.map(ComputeSchema.snapshot), key: \.name)
        return .json(200, Self.snapshotList.json(items, nextToken: next))
    }

    func getSnapshot(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let name = context.parameter("name")
        let dialect = context.environment.database.dialect
        let found = try await context.environment.database.transaction { db in
            try await ComputeSchema.snapshot(db, tenantID: caller.tenantID, name: name, dialect: dialect)
        }
        guard let snapshot = found else { throw ComputeError.snapshotNotFound(name) }
        return APIResponse.json(200, Self.snapshotShape.json(snapshot)).tagged(version: snapshot.version)
    }

    func deleteSnapshot(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let name = context.parameter("name")
        let environment = context.environment
        let now = environment.clock.unixMilliseconds()
        return try await context.transaction { db in
            guard
                var snapshot = try await ComputeSchema.snapshot(db, tenantID: caller.tenantID, name: name, dialect: environment.database.dialect, forUpdate: true)
            else { throw ComputeError.snapshotNotFound(name) }
            try context.requireMatch(version: snapshot.version)
            guard [.completed, .failed].contains(snapshot.state) else { throw ComputeError.snapshotState(name, snapshot.state, "be deleted") }
            let restoring = try await db.query(
                "SELECT 1 FROM compute_volumes WHERE tenant_id = $1 AND source_snapshot = $2 AND state = 'creating' LIMIT 1", [.text(caller.tenantID), .text(name)])
            guard restoring.isEmpty else { throw APIError.conflict("invalid_state", "a volume is being restored from snapshot '\(name)'; delete it when that is done") }
            try await db.query(
                "UPDATE compute_snapshots SET state = 'deleting', version = version + 1, updated_at = $2 WHERE id = $1", [.text(snapshot.id), .integer(now)])
            try await environment.tasks.enqueue(Self.snapshotTask(snapshot, "delete"), in: db)
            Self.log(context, "snapshot delete requested", ["snapshot": "\(name)"])
            snapshot.state = .deleting
            snapshot.version += 1
            snapshot.updatedAt = now
            return APIResponse.json(202, Self.snapshotShape.json(snapshot)).tagged(version: snapshot.version)
        }
    }
}
