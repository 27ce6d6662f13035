import Database
import DockerEngine
import Hashing
import Libvirt
import Logging
import ServiceContract
import SQLite
import VolumeFiles

extension ComputeService {
    /// The files of volumes, or a permanent failure when this control plane has none.
    func volumeFiles() throws -> VolumeFiles {
        guard let files = self.volumes else { throw TaskFailure.permanent("this control plane has no volume directory") }
        return files
    }

    /// A write that lands only while the volume is still in one of `from`.
    private func settle(
        _ volume: VolumeRecord, from: [VolumeState], to state: VolumeState, reason: String?, instance: String?? = nil,
        sizeMiB: Int64? = nil, _ context: TaskContext
    ) -> TaskCompletion {
        let now = context.queue.now()
        return TaskCompletion(result: .string(state.rawValue)) { db in
            try await ComputeSchema.moveVolume(db, id: volume.id, from: from, to: state, reason: reason, instance: instance, sizeMiB: sizeMiB, now: now)
        }
    }

    /// Creates, attaches, detaches, grows or deletes a volume, as the task's `action` says.
    func volumeTask(_ context: TaskContext) async throws -> TaskCompletion {
        guard case .string(let id)? = context.task.payload["volume"], case .string(let action)? = context.task.payload["action"] else {
            throw TaskFailure.permanent("the task names no volume or action")
        }
        let files = try self.volumeFiles()
        guard let volume = try await context.queue.database.transaction({ db in try await ComputeSchema.volume(db, id: id) }) else {
            return TaskCompletion(result: .string("already gone"))
        }
        switch action {
        case "create": return try await self.makeVolume(volume, files, context)
        case "attach": return try await self.attach(volume, files, context)
        case "detach":
            guard volume.state == .detaching, let instance = volume.instanceID else { return TaskCompletion(result: .string("nothing to do")) }
            if let (machine, host) = try await self.machine(instance, context) {
                do {
                    guard try await self.detachFromMachine(file: files.path(volume.id), volumeID: volume.id, machine, on: host) else {
                        return self.settle(
                            volume, from: [.detaching], to: .attached,
                            reason: "not detached: the guest did not let go of the disk within \(Self.detachGrace) (unmount it in the guest, then detach again)",
                            context)
                    }
                } catch let error as LibvirtError {
                    if error.kind == .unavailable && context.attempt < 3 { throw TaskFailure.retryable(error.description) }
                    return self.settle(volume, from: [.detaching], to: .attached, reason: "not detached: \(error)", context)
                }
                context.logger.info("volume detached from machine", metadata: ["volume": "\(volume.id)", "instance": "\(instance)"])
                return self.settle(volume, from: [.detaching], to: .available, reason: nil, instance: .some(nil), context)
            }
            do {
                try await files.unmount(instance: instance, name: volume.name)
            } catch let error as VolumeError {
                context.logger.info("volume detach refused", metadata: ["volume": "\(volume.id)", "error": "\(error)"])
                return self.settle(volume, from: [.detaching], to: .attached, reason: "not detached: \(error)", context)
            }
            context.logger.info("volume detached", metadata: ["volume": "\(volume.id)", "instance": "\(instance)"])
            return self.settle(volume, from: [.detaching], to: .available, reason: nil, instance: .some(nil), context)
        case "resize":
            guard volume.state == .resizing else { return TaskCompletion(result: .string("nothing to do")) }
            do {
                // Without a file system yet, the larger file is all there is to it.
                if volume.formatted {
                    try await files.grow(volume.id, to: volume.sizeMiB << 20)
                } else {
                    try files.create(volume.id, bytes: volume.sizeMiB << 20)
                }
            } catch let error as VolumeError {
                // The quota took the new size when it was asked for; give back what did not happen.
                let actual = (files.size(volume.id) ?? 0) >> 20
                return self.settle(volume, from: [.resizing], to: .available, reason: "not resized: \(error)", sizeMiB: actual, context)
            }
            return self.settle(volume, from: [.resizing], to: .available, reason: nil, context)
        case "delete":
            guard volume.state == .deleting else { return TaskCompletion(result: .string("nothing to do")) }
            try files.remove(volume.id)
            context.logger.info("volume deleted", metadata: ["volume": "\(volume.id)"])
            return TaskCompletion(result: .string("deleted")) { db in
                try await db.query("DELETE FROM compute_volumes WHERE id = $1 AND state = 'deleting'", [.text(volume.id)])
            }
        default: throw TaskFailure.permanent("unknown volume action '\(action)'")
        }
    }

    /// Makes the volume's sparse file, or restores a snapshot into it.
    private func makeVolume(_ volume: VolumeRecord, _ files: VolumeFiles, _ context: TaskContext) async throws -> TaskCompletion {
        guard volume.state == .creating else { return TaskCompletion(result: .string("nothing to do")) }
        do {
            if let name = volume.sourceSnapshot {
                try await self.restore(snapshot: name, into: volume, files, context)
            } else {
                try files.create(volume.id, bytes: volume.sizeMiB << 20)
            }
        } catch let error as SystemStoreError where context.attempt < 3 {
            throw TaskFailure.retryable(error.description)
        } catch {
            do { try files.remove(volume.id) } catch { context.logger.warning("file of a failed volume not removed", metadata: ["error": "\(error)"]) }
            context.logger.warning("volume failed", metadata: ["volume": "\(volume.id)", "error": "\(error)"])
            return self.settle(volume, from: [.creating], to: .failed, reason: "\(error)", context)
        }
        context.logger.info("volume ready", metadata: ["volume": "\(volume.id)", "size-mib": "\(volume.sizeMiB)"])
        return self.settle(volume, from: [.creating], to: .available, reason: nil, context)
    }

    /// Writes a completed snapshot's blocks into a new file of the volume's size, checking each
    /// block's SHA-256, and grows the file system when the volume is larger than the snapshot.
    private func restore(snapshot name: String, into volume: VolumeRecord, _ files: VolumeFiles, _ context: TaskContext) async throws {
        guard let store = self.images else { throw SystemStoreError("no object store is configured for snapshots") }
        let database = context.queue.database
        let (snapshot, blocks) = try await database.transaction { db -> (SnapshotRecord?, [(Int, String)]) in
            guard let snapshot = try await ComputeSchema.snapshot(db, tenantID: volume.tenantID, name: name, dialect: database.dialect) else {
                return (nil, [])
            }
            let rows = try await db.query(
                "SELECT block, digest FROM compute_snapshot_blocks WHERE snapshot_id = $1 ORDER BY block", [.text(snapshot.id)])
            return (snapshot, rows.map { (Int($0.int(0)), $0.text(1)) })
        }
        guard let snapshot, snapshot.state == .completed else { throw SystemStoreError("snapshot \(name) is gone or not completed") }
        try files.remove(volume.id)
        try files.create(volume.id, bytes: snapshot.sizeMiB << 20)
        // Sixteen blocks at a time from the object store (16 MiB in memory at most).
        let tenantID = volume.tenantID
        for start in stride(from: 0, to: blocks.count, by: Self.snapshotBatch) {
            let batch = blocks[start..<min(start + Self.snapshotBatch, blocks.count)]
            let fetched = try await withThrowingTaskGroup(of: (Int, [UInt8]).self) { group in
                for (index, digest) in batch {
                    group.addTask {
                        let bytes = try await store.block(tenantID: tenantID, digest: digest)
                        guard Hex.encode(Digests.sha256(bytes)) == digest else {
                            throw SystemStoreError("the object store returned block \(index) of snapshot \(name) with a SHA-256 that is not its own")
                        }
                        return (index, bytes)
                    }
                }
                return try await group.reduce(into: [(Int, [UInt8])]()) { $0.append($1) }
            }
            for (index, bytes) in fetched { try files.writeBlock(volume.id, index: index, bytes) }
        }
        try files.sync(volume.id)
        if volume.sizeMiB > snapshot.sizeMiB {
            if snapshot.formatted {
                try await files.grow(volume.id, to: volume.sizeMiB << 20)
            } else {
                try files.create(volume.id, bytes: volume.sizeMiB << 20)
            }
        }
    }

    /// Formats the volume on first use and mounts it where the instance's container sees it.
    private func attach(_ volume: VolumeRecord, _ files: VolumeFiles, _ context: TaskContext) async throws -> TaskCompletion {
        guard volume.state == .attaching, let instanceID = volume.instanceID else { return TaskCompletion(result: .string("nothing to do")) }
        let back = { (reason: String) in self.settle(volume, from: [.attaching], to: .available, reason: reason, instance: .some(nil), context) }
        guard let instance = try await context.queue.database.transaction({ db in try await ComputeSchema.instance(db, id: instanceID) }),
            [.ready, .stopped].contains(instance.state)
        else { return back("not attached: the instance is gone or no longer ready") }
        guard let hostName = instance.host, let host = try await Self.host(context, hostName) else {
            return back("not attached: the instance has no host")
        }
        if host.backend == .libvirt {
            do {
                if !volume.formatted {
                    try await files.format(volume.id, label: volume.name)
                    try await context.fenced { db in
                        try await db.query("UPDATE compute_volumes SET formatted = 1 WHERE id = $1", [.text(volume.id)])
                    }
                }
                try await self.attachToMachine(file: files.path(volume.id), volumeID: volume.id, instance, on: host)
            } catch let error as LibvirtError {
                if error.kind == .unavailable && context.attempt < 3 { throw TaskFailure.retryable(error.description) }
                return back("not attached: \(error)")
            } catch let error as VolumeError {
                return back("not attached: \(error)")
            }
            context.logger.info("volume attached to machine", metadata: ["volume": "\(volume.id)", "instance": "\(instance.id)"])
            return self.settle(volume, from: [.attaching], to: .attached, reason: nil, context)
        }
        do {
            guard let container = try await host.engine.inspect(instance.containerName) else {
                return back("not attached: the instance has no container on \(hostName)")
            }
            guard container.mountTargets.contains(Self.volumesPath) else {
                return back("not attached: instance \(instance.name) was made before it could take volumes (its container has no \(Self.volumesPath)); recreate it")
            }
            if !volume.formatted {
                // Recorded at once: a mount that fails after it must not format the volume again.
                try await files.format(volume.id, label: volume.name)
                try await context.fenced { db in
                    try await db.query("UPDATE compute_volumes SET formatted = 1 WHERE id = $1", [.text(volume.id)])
                }
            }
            try await files.mount(volume.id, instance: instance.id, name: volume.name)
        } catch let error as DockerError {
            if error.isUnavailable && context.attempt < 3 { throw TaskFailure.retryable(error.description) }
            return back("not attached: \(error)")
        } catch let error as VolumeError {
            context.logger.warning("volume attach failed", metadata: ["volume": "\(volume.id)", "error": "\(error)"])
            return back("not attached: \(error)")
        }
        context.logger.info("volume attached", metadata: ["volume": "\(volume.id)", "instance": "\(instance.id)"])
        return self.settle(volume, from: [.attaching], to: .attached, reason: nil, context)
    }

    /// Where a container sees its volumes.
    static let volumesPath = "/volumes"

    /// The bind that lets an instance's container see volumes attached later, or none when this
    /// control plane cannot mount (no volume directory, not root): such instances cannot take volumes.
    func volumeBinds(_ instance: InstanceRecord, logger: Logger) async -> [ContainerSpec.Bind] {
        guard let files = self.volumes else { return [] }
        do {
            try await files.prepareInstance(instance.id)
        } catch {
            logger.warning("instance made without volume support", metadata: ["instance": "\(instance.id)", "error": "\(error)"])
            return []
        }
        return [ContainerSpec.Bind(source: files.instanceDirectory(instance.id), target: Self.volumesPath, propagation: "rslave")]
    }

    /// Unmounts the volumes of a deleted instance (its container is gone, so nothing holds them)
    /// and returns the writes that make them available again.
    func releaseVolumes(of instance: InstanceRecord, _ context: TaskContext) async throws -> @Sendable (any SQLSession) async throws -> Void {
        guard let files = self.volumes else { return { _ in } }
        let attached = try await context.queue.database.query(
            "SELECT \(ComputeSchema.volumeColumns) FROM compute_volumes v WHERE v.instance_id = $1", [.text(instance.id)]
        ).map(ComputeSchema.volume)
        for volume in attached {
            let busy = try await context.queue.database.transaction { db in try await Self.snapshotInProgress(db, volumeID: volume.id) }
            if busy { throw TaskFailure.retryable("volume \(volume.name) is being snapshotted; the instance goes when that is done") }
            try await files.unmount(instance: instance.id, name: volume.name)
        }
        try files.removeInstance(instance.id)
        let now = context.queue.now()
        return { db in
            try await db.query(
                """
                UPDATE compute_volumes SET state = 'available', instance_id = NULL, reason = 'detached: its instance was deleted',
                version = version + 1, updated_at = $2 WHERE instance_id = $1 AND state IN ('attached', 'attaching', 'detaching')
                """, [.text(instance.id), .integer(now)])
        }
    }

    /// The instance when it is a machine (backend libvirt) with its host, else nil.
    func machine(_ instanceID: String, _ context: TaskContext) async throws -> (InstanceRecord, HostRecord)? {
        try await context.queue.database.transaction { db in
            guard let instance = try await ComputeSchema.instance(db, id: instanceID), instance.backend == .libvirt, let name = instance.host,
                let host = try await ComputeSchema.host(db, named: name)
            else { return nil }
            return (instance, host)
        }
    }

    /// Mounts attached volumes the host lost (after a reboot of the host, say). Volumes of
    /// machines are disks of their domains, never mounted on the host.
    func remountVolumes(_ context: TaskContext) async throws -> Int {
        guard let files = self.volumes else { return 0 }
        let attached = try await context.queue.database.query(
            """
            SELECT \(ComputeSchema.volumeColumns) FROM compute_volumes v
            WHERE v.state = 'attached' AND NOT EXISTS (SELECT 1 FROM compute_instances i WHERE i.id = v.instance_id AND i.backend = 'libvirt')
            """
        ).map(ComputeSchema.volume)
        let points = files.mountPoints()
        var mounted = 0
        for volume in attached {
            guard let instance = volume.instanceID, !points.contains(files.mountPoint(instance: instance, volume: volume.name)), files.exists(volume.id)
            else { continue }
            do {
                try await files.mount(volume.id, instance: instance, name: volume.name)
                mounted += 1
                context.logger.info("volume mounted again", metadata: ["volume": "\(volume.id)", "instance": "\(instance)"])
            } catch {
                context.logger.warning("volume not mounted again", metadata: ["volume": "\(volume.id)", "error": "\(error)"])
            }
        }
        return mounted
    }
}
