import Database
import DockerEngine
import Hashing
import Libvirt
import Logging
import Prometheus
import ServiceContract
import SQLite
import VolumeFiles

extension ComputeService {
    /// The instance a task is about, or nil when it is gone.
    private func instance(_ context: TaskContext) async throws -> InstanceRecord? {
        guard case .string(let id)? = context.task.payload["instance"] else { throw TaskFailure.permanent("the task names no instance") }
        return try await context.queue.database.transaction { db in try await ComputeSchema.instance(db, id: id) }
    }

    static func host(_ context: TaskContext, _ name: String) async throws -> HostRecord? {
        try await context.queue.database.transaction { db in try await ComputeSchema.host(db, named: name) }
    }

    /// A write that lands only while the instance is still in one of `states` (a delete requested
    /// meanwhile wins) and this attempt still holds its task.
    func settle(
        _ instance: InstanceRecord, from states: [InstanceState], to state: InstanceState, reason: String?, backendID: String? = nil,
        result: JSONValue = .null, _ context: TaskContext
    ) -> TaskCompletion {
        let now = context.queue.now()
        return TaskCompletion(result: result) { db in
            guard let current = try await ComputeSchema.instance(db, id: instance.id), states.contains(current.state) else { return }
            try await ComputeSchema.update(db, id: instance.id, state: state, reason: reason, backendID: backendID, now: now)
            // Its deployment goes on at once (a rolling update's next step, a replacement) rather than at its next scheduled pass.
            if let deployment = current.deploymentID {
                try await context.queue.enqueue(Self.reconcileTask(deploymentID: deployment, tenantID: current.tenantID), in: db)
            }
        }
    }

    /// Places the instance, loads its image into the host's engine when it lacks it, creates and
    /// starts the container. Engine failures make the instance `failed` with the engine's message,
    /// after removing a container this made; an engine that does not answer is retried twice first.
    func provision(_ context: TaskContext) async throws -> TaskCompletion {
        guard var instance = try await self.instance(context), [.pending, .provisioning].contains(instance.state) else {
            return TaskCompletion(result: .string("nothing to do"))
        }
        let logger = context.logger
        if instance.host == nil {
            let now = context.queue.now()
            let chosen = instance
            let decision = try await context.fenced { db -> Placement.Decision in
                let decision = Placement.choose(
                    vcpus: chosen.vcpus, memoryMiB: chosen.memoryMiB, backend: chosen.backend, among: try await Self.candidates(db).map(\.1))
                switch decision {
                case .place(let host):
                    try await ComputeSchema.update(db, id: chosen.id, state: .provisioning, reason: nil, host: host, now: now)
                case .refuse(let reason):
                    try await ComputeSchema.update(db, id: chosen.id, state: .failed, reason: reason, now: now)
                }
                return decision
            }
            guard case .place(let host) = decision else { return TaskCompletion(result: .string("refused")) }
            instance.host = host
        }
        guard let hostName = instance.host, let host = try await Self.host(context, hostName) else {
            return self.settle(instance, from: [.pending, .provisioning], to: .failed, reason: "its host was removed", context)
        }
        guard host.backend == instance.backend else {
            return self.settle(instance, from: [.pending, .provisioning], to: .failed, reason: "its host \(host.name) runs \(host.backend.rawValue), not \(instance.backend.rawValue)", context)
        }
        if host.backend == .libvirt { return try await self.provisionMachine(instance, on: host, context) }
        let engine = host.engine
        let started = ContinuousClock.now
        do {
            try await self.ensureImage(instance, on: engine, logger: logger)
            var container = try await engine.inspect(instance.containerName)?.id
            if container == nil {
                let image = instance
                let imageCommand = try await context.queue.database.transaction { db in
                    try await Self.image(db, tenantID: image.tenantID, name: image.image)?.command
                }
                var spec = Self.spec(instance, imageCommand: imageCommand ?? ["sh"])
                spec.binds = await self.volumeBinds(instance, logger: logger)
                do {
                    container = try await engine.createContainer(spec)
                } catch let error as DockerError where error.isConflict {
                    // An earlier attempt made it between our inspect and create.
                    container = try await engine.inspect(instance.containerName)?.id
                }
            }
            guard let container else { throw TaskFailure.retryable("the container \(instance.containerName) vanished while being made") }
            try await engine.start(container)
            logger.info("instance running", metadata: ["instance": "\(instance.id)", "host": "\(hostName)"])
            let elapsed = ContinuousClock.now - started
            self.countProvision("ready", seconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
            return self.settle(instance, from: [.pending, .provisioning], to: .ready, reason: nil, backendID: container, context)
        } catch let error as DockerError {
            if error.isUnavailable && context.attempt < 3 { throw TaskFailure.retryable(error.description) }
            if !error.isUnavailable {
                // Leave nothing half made behind.
                do { try await engine.remove(instance.containerName) } catch {
                    logger.warning("container of a failed instance not removed", metadata: ["instance": "\(instance.id)", "error": "\(error)"])
                }
            }
            logger.warning("instance failed", metadata: ["instance": "\(instance.id)", "host": "\(hostName)", "error": "\(error)"])
            self.countProvision("failed", seconds: nil)
            return self.settle(instance, from: [.pending, .provisioning], to: .failed, reason: error.description, context)
        } catch let error as SystemStoreError {
            if context.attempt < 3 { throw TaskFailure.retryable(error.description) }
            return self.settle(instance, from: [.pending, .provisioning], to: .failed, reason: error.description, context)
        }
    }

    /// Loads the instance's image into the engine unless it has it.
    private func ensureImage(_ instance: InstanceRecord, on engine: DockerEngine, logger: Logger) async throws {
        if try await engine.hasImage(ImageRecord.engineReference(digest: instance.imageDigest)) { return }
        guard let images = self.images else { throw SystemStoreError("no object store is configured for images") }
        let tar = try await images.image(digest: instance.imageDigest)
        guard Hex.encode(Digests.sha256(tar)) == instance.imageDigest else {
            throw SystemStoreError("the object store returned a tar whose SHA-256 is not the image's")
        }
        try await engine.importImage(tar: tar, repository: ImageRecord.engineRepository, tag: ImageRecord.engineTag(digest: instance.imageDigest))
        logger.info("image loaded into engine", metadata: ["digest": "\(instance.imageDigest)", "socket": "\(engine.socketPath)"])
    }

    /// The container of an instance: its limits, command, environment and labels.
    static func spec(_ instance: InstanceRecord, imageCommand: [String]) -> ContainerSpec {
        var spec = ContainerSpec(name: instance.containerName, image: ImageRecord.engineReference(digest: instance.imageDigest))
        spec.command = instance.command.isEmpty ? imageCommand : instance.command
        spec.environment = Dictionary(instance.environment, uniquingKeysWith: { _, last in last })
        spec.labels = ["cloud.instance": instance.id, "cloud.tenant": instance.tenantID, "cloud.name": instance.name]
        spec.nanoCPUs = instance.vcpus * 1_000_000_000
        spec.memoryBytes = instance.memoryMiB << 20
        spec.restartPolicy = instance.restart
        return spec
    }

    /// Stop, start or reboot.
    func power(_ context: TaskContext) async throws -> TaskCompletion {
        guard case .string(let name)? = context.task.payload["action"], let action = InstanceAction(rawValue: name), action != .delete else {
            throw TaskFailure.permanent("the task names no power action")
        }
        guard let instance = try await self.instance(context), let during = action.transition(from: action == .start ? .stopped : .ready),
            instance.state == during
        else { return TaskCompletion(result: .string("nothing to do")) }
        guard let hostName = instance.host, let host = try await Self.host(context, hostName) else {
            return self.settle(instance, from: [during], to: .failed, reason: "it has no host", context)
        }
        do {
            if host.backend == .libvirt {
                try await self.powerMachine(action, instance, on: host, context)
            } else {
                let engine = host.engine
                switch action {
                case .stop: try await engine.stop(instance.containerName)
                case .start: try await engine.start(instance.containerName)
                case .reboot: try await engine.restart(instance.containerName)
                case .delete: break
                }
            }
            return self.settle(instance, from: [during], to: action.outcome, reason: action == .stop ? "stopped by request" : nil, context)
        } catch let error where error is DockerError || error is LibvirtError {
            let unreachable = Self.unreachable(error)
            if unreachable != nil && context.attempt < 3 { throw TaskFailure.retryable("\(error)") }
            return self.settle(instance, from: [during], to: unreachable != nil ? .unknown : .failed, reason: "\(error)", context)
        }
    }

    /// Removes the container and then the instance. An engine that does not answer does not keep
    /// the instance: the host check removes the container once the engine is back (it carries the
    /// instance's label, and no instance has that id any more).
    func remove(_ context: TaskContext) async throws -> TaskCompletion {
        guard let instance = try await self.instance(context) else { return TaskCompletion(result: .string("already gone")) }
        if let hostName = instance.host, let host = try await Self.host(context, hostName) {
            do {
                if host.backend == .libvirt {
                    try await self.removeMachine(instance, on: host)
                } else {
                    try await host.engine.remove(instance.containerName)
                }
            } catch let error where Self.unreachable(error) != nil {
                if context.attempt < 3 { throw TaskFailure.retryable("\(error)") }
                context.logger.warning(
                    "instance deleted while its host is unreachable; its container or machine goes when the host is back",
                    metadata: ["instance": "\(instance.id)", "host": "\(hostName)"])
            }
        }
        let id = instance.id
        let release: @Sendable (any SQLSession) async throws -> Void
        do {
            release = try await self.releaseVolumes(of: instance, context)
        } catch let error as VolumeError {
            throw TaskFailure.retryable("its volumes could not be detached: \(error)")
        }
        context.logger.info("instance deleted", metadata: ["instance": "\(id)"])
        return TaskCompletion(result: .string("deleted")) { db in
            try await release(db)
            try await db.query("DELETE FROM compute_instances WHERE id = $1 AND state = $2", [.text(id), .text(InstanceState.deleting.rawValue)])
        }
    }

    /// Asks every host how it is and what runs there, and brings the records in line.
    func checkHosts(_ context: TaskContext) async throws -> TaskCompletion {
        let database = context.queue.database
        let hosts = try await database.query("SELECT \(ComputeSchema.hostColumns) FROM compute_hosts ORDER BY name").map(ComputeSchema.host)
        var changes = 0
        for host in hosts {
            let now = context.queue.now()
            do {
                let placed = try await database.query(
                    "SELECT \(ComputeSchema.instanceColumns) FROM compute_instances WHERE host = $1", [.text(host.name)]
                ).map(ComputeSchema.instance)
                let report =
                    host.backend == .libvirt
                    ? try await self.inspectMachines(host, placed: placed, context) : try await self.inspectContainers(host, placed: placed, context)
                var updates: [(InstanceRecord, InstanceState, String?)] = []
                for instance in placed {
                    if let observation = report.observations[instance.id], let (state, reason) = observation.reconcile(instance.state, host: host.name) {
                        updates.append((instance, state, reason))
                    }
                }
                let pending = updates
                let applied = try await context.fenced { db -> Int in
                    try await db.query(
                        """
                        UPDATE compute_hosts SET state = 'ready', reason = NULL, cpus = $2, memory_bytes = $3, engine_version = $4,
                        seen_at = $5, checked_at = $5 WHERE name = $1
                        """, [.text(host.name), .integer(report.cpus), .integer(report.memoryBytes), .text(report.version), .integer(now)])
                    var applied = 0
                    for (instance, state, reason) in pending {
                        applied += try await db.query(
                            """
                            UPDATE compute_instances SET state = $3, reason = $4, version = version + 1, updated_at = $5
                            WHERE id = $1 AND version = $2 RETURNING id
                            """, [.text(instance.id), .integer(instance.version), .text(state.rawValue), reason.map(SQLValue.text) ?? .null, .integer(now)]
                        ).count
                    }
                    return applied
                }
                changes += applied
            } catch let error where Self.unreachable(error) != nil {
                let late = now - host.seenAt >= Self.hostGrace
                let reason = Self.unreachable(error) ?? ""
                changes += try await context.fenced { db -> Int in
                    try await db.query(
                        "UPDATE compute_hosts SET checked_at = $2, state = $3, reason = $4 WHERE name = $1",
                        [.text(host.name), .integer(now), .text(late ? HostState.unknown.rawValue : host.state.rawValue),
                         late ? .text(reason) : (host.reason.map(SQLValue.text) ?? .null)])
                    guard late else { return 0 }
                    return try await db.query(
                        """
                        UPDATE compute_instances SET state = 'unknown', reason = $2, version = version + 1, updated_at = $3
                        WHERE host = $1 AND state IN ('ready', 'stopped', 'stopping', 'starting', 'rebooting') RETURNING id
                        """, [.text(host.name), .text("its host \(host.name) does not answer: \(reason)"), .integer(now)]
                    ).count
                }
            } catch let error where error is DockerError || error is LibvirtError {
                context.logger.warning("host check failed", metadata: ["host": "\(host.name)", "error": "\(error)"])
            }
        }
        changes += try await self.remountVolumes(context)
        return TaskCompletion(result: .object([("hosts", .int(Int64(hosts.count))), ("changes", .int(Int64(changes)))]))
    }

    /// The reason when `error` says a host's backend does not answer (not that a request was wrong).
    static func unreachable(_ error: any Error) -> String? {
        if let error = error as? DockerError, error.isUnavailable { return error.description }
        if let error = error as? LibvirtError, error.kind == .unavailable { return error.description }
        return nil
    }

    /// What a Docker host's engine reports, with how each instance placed there is; containers of
    /// instances that are gone (deleted while the engine was away) are removed.
    private func inspectContainers(_ host: HostRecord, placed: [InstanceRecord], _ context: TaskContext) async throws -> HostReport {
        let engine = host.engine
        let info = try await engine.info()
        let containers = try await engine.containers(label: "cloud.instance")
        var observations: [String: ContainerObservation] = [:]
        for instance in placed {
            let container = containers.first { $0.labels["cloud.instance"] == instance.id }
            var observation = ContainerObservation.missing
            if let container {
                if container.state == "running" || container.state == "restarting" {
                    observation = .running
                } else if let state = try await engine.inspect(container.id) {
                    observation = state.running ? .running : .exited(code: state.exitCode, oomKilled: state.oomKilled)
                }
            }
            observations[instance.id] = observation
        }
        let known = try await Self.existingInstances(context.queue.database, ids: containers.map { $0.labels["cloud.instance"] ?? "" })
        for container in containers where !known.contains(container.labels["cloud.instance"] ?? "") {
            try await engine.remove(container.id)
            context.logger.info("orphaned container removed", metadata: ["host": "\(host.name)", "container": "\(container.id)"])
        }
        return HostReport(cpus: Int64(info.cpus), memoryBytes: info.memoryBytes, version: info.serverVersion, observations: observations)
    }

    /// Which of these instance ids still have an instance.
    static func existingInstances(_ database: any SQLDatabase, ids: [String]) async throws -> Set<String> {
        guard !ids.isEmpty else { return [] }
        return Set(
            try await database.query(
                "SELECT id FROM compute_instances WHERE id IN (\(ids.indices.map { "$\($0 + 1)" }.joined(separator: ", ")))", ids.map(SQLValue.text)
            ).map { $0.text(0) })
    }
}
