import Database
import DockerEngine
import Foundation
import Hashing
import Libvirt
import Logging
import ServiceContract
import SQLite

extension ComputeService {
    // MARK: - Images

    func importImage(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let name = context.parameter("name")
        try Self.checkName(name)
        guard let images = self.images else { throw ComputeError.imagesUnavailable }
        var command = ["sh"]
        if let text = context.request.query["command"] {
            guard case .array(let items) = JSONValue.parse(Array(text.utf8)), !items.isEmpty else {
                throw APIError.invalidRequest("command must be a JSON array of strings, such as [\"httpd\",\"-f\"]")
            }
            command = try items.map { item in
                guard case .string(let word) = item else { throw APIError.invalidRequest("command must be a JSON array of strings") }
                return word
            }
        }
        let tar = context.request.body
        try Self.checkTar(tar)
        let digest = Hex.encode(Digests.sha256(tar))
        let environment = context.environment
        // Refuse a taken name before moving the bytes.
        if try await environment.database.query(
            "SELECT 1 FROM compute_images WHERE tenant_id = $1 AND name = $2", [.text(caller.tenantID), .text(name)]
        ).first != nil {
            throw ComputeError.imageExists(name)
        }
        try await images.putImage(digest: digest, tar: tar)
        let now = environment.clock.unixMilliseconds()
        let record = ImageRecord(
            tenantID: caller.tenantID, name: name, digest: digest, sizeBytes: Int64(tar.count), command: command, createdAt: now)
        let stored = command
        return try await context.transaction { db in
            if try await db.query("SELECT 1 FROM compute_images WHERE tenant_id = $1 AND name = $2", [.text(caller.tenantID), .text(name)])
                .first != nil
            {
                throw ComputeError.imageExists(name)
            }
            try await environment.quotas.reserve(Self.imagesQuota, tenantID: caller.tenantID, in: db)
            try await db.query(
                "INSERT INTO compute_images (\(ComputeSchema.imageColumns)) VALUES ($1, $2, $3, $4, $5, $6)",
                [.text(caller.tenantID), .text(name), .text(digest), .integer(Int64(tar.count)), .text(ComputeSchema.encode(stored)), .integer(now)])
            Self.log(context, "image imported", ["tenant-id": "\(caller.tenantID)", "image": "\(name)", "digest": "\(digest)"])
            return .json(201, Self.imageShape.json(record))
        }
    }

    /// A tar has 512-byte blocks and, in its first header, the ustar magic (GNU and POSIX tars both).
    static func checkTar(_ bytes: [UInt8]) throws(ComputeError) {
        guard bytes.count >= 1024, bytes.count % 512 == 0 else {
            throw ComputeError.invalidImage("the body is not a tar (\(bytes.count) bytes; a tar is whole 512-byte blocks)")
        }
        guard Array(bytes[257..<262]) == Array("ustar".utf8) else {
            throw ComputeError.invalidImage("the body is not a tar of a root file system (no ustar header)")
        }
    }

    func listImages(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let page = try context.page()
        let rows = try await context.environment.database.query(
            "SELECT \(ComputeSchema.imageColumns) FROM compute_images WHERE tenant_id = $1 AND name > $2 ORDER BY name LIMIT \(page.fetchLimit)",
            [.text(caller.tenantID), .text(page.after ?? "")])
        let (items, next) = page.finish(rows.map(ComputeSchema.image), key: \.name)
        return .json(200, Self.imageList.json(items, nextToken: next))
    }

    static func image(_ db: any SQLSession, tenantID: String, name: String) async throws -> ImageRecord? {
        try await db.query(
            "SELECT \(ComputeSchema.imageColumns) FROM compute_images WHERE tenant_id = $1 AND name = $2", [.text(tenantID), .text(name)]
        ).first.map(ComputeSchema.image)
    }

    func getImage(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let name = context.parameter("name")
        let found = try await context.environment.database.transaction { db in try await Self.image(db, tenantID: caller.tenantID, name: name) }
        guard let image = found else { throw ComputeError.imageNotFound(name) }
        return .json(200, Self.imageShape.json(image))
    }

    func deleteImage(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let name = context.parameter("name")
        let environment = context.environment
        let orphan: String? = try await environment.database.transaction { db in
            guard let image = try await Self.image(db, tenantID: caller.tenantID, name: name) else { throw ComputeError.imageNotFound(name) }
            // Deployments name their image too: they make replicas of it later.
            let users =
                try await db.query(
                    """
                    SELECT (SELECT COUNT(*) FROM compute_instances WHERE tenant_id = $1 AND image = $2)
                         + (SELECT COUNT(*) FROM compute_deployments WHERE tenant_id = $1 AND image = $2)
                    """, [.text(caller.tenantID), .text(name)]
                ).first?.int(0) ?? 0
            guard users == 0 else { throw ComputeError.imageInUse(name, instances: users) }
            try await db.query("DELETE FROM compute_images WHERE tenant_id = $1 AND name = $2", [.text(caller.tenantID), .text(name)])
            let others = try await db.query("SELECT 1 FROM compute_images WHERE digest = $1 LIMIT 1", [.text(image.digest)]).first
            return others == nil ? image.digest : nil
        }
        if let orphan, let images = self.images {
            // The tar stays if this fails; a later import of the same bytes reuses it.
            do { try await images.deleteImage(digest: orphan) } catch {
                environment.logger.warning("image tar not deleted", metadata: ["digest": "\(orphan)", "error": "\(error)"])
            }
        }
        return .noContent
    }

    // MARK: - Hosts

    static func candidates(_ db: any SQLSession) async throws -> [(HostRecord, Placement.Candidate)] {
        let hosts = try await db.query("SELECT \(ComputeSchema.hostColumns) FROM compute_hosts ORDER BY name").map(ComputeSchema.host)
        var used: [String: (Int64, Int64, Int64)] = [:]
        for row in try await db.query(
            "SELECT host, COALESCE(SUM(vcpus), 0), COALESCE(SUM(memory_mib), 0), COUNT(*) FROM compute_instances WHERE host IS NOT NULL GROUP BY host")
        {
            used[row.text(0)] = (row.int(1), row.int(2), row.int(3))
        }
        return hosts.map { host in
            let (vcpus, memory, count) = used[host.name] ?? (0, 0, 0)
            return (
                host,
                Placement.Candidate(
                    host: host.name, state: host.state, cpus: host.cpus, memoryBytes: host.memoryBytes, cpuOvercommit: host.cpuOvercommit,
                    usedVCPUs: vcpus, usedMemoryMiB: memory, instances: count, backend: host.backend)
            )
        }
    }

    func addHost(_ context: RouteContext) async throws -> APIResponse {
        let name = context.body.string("name") ?? ""
        try Self.checkName(name)
        let socket = context.body.string("docker_socket") ?? ""
        let uri = context.body.string("libvirt_uri") ?? ""
        guard socket.isEmpty != uri.isEmpty else {
            throw APIError.invalidRequest("name one of docker_socket (a host of containers) and libvirt_uri (a host of virtual machines)")
        }
        let token = context.body.string("agent_token") ?? ""
        if uri.isEmpty {
            if socket.hasPrefix("tcp://") {
                guard token.utf8.count >= 32 else {
                    throw APIError.invalidRequest("a tcp:// engine is a compute agent's (cloud agent): give its agent_token (at least 32 characters)")
                }
            } else {
                guard socket.hasPrefix("unix:///") else {
                    throw APIError.invalidRequest("docker_socket must be unix:///path/to/docker.sock, or tcp://host:port of a compute agent")
                }
                guard token.isEmpty else { throw APIError.invalidRequest("agent_token is a compute agent's (a tcp:// docker_socket)") }
            }
        } else {
            try Self.checkLibvirtURI(uri)
        }
        let overcommit = context.body.integer("cpu_overcommit") ?? 8
        guard (1...64).contains(overcommit) else { throw APIError.invalidRequest("cpu_overcommit must be 1 to 64") }
        let cpus: Int64
        let memoryBytes: Int64
        let version: String
        var accelerator = ""
        if uri.isEmpty {
            guard context.body.string("accelerator") == nil else { throw APIError.invalidRequest("accelerator is a libvirt host's") }
            do {
                let info = try await DockerEngine(socket: socket, token: token.isEmpty ? nil : token).info()
                (cpus, memoryBytes, version) = (Int64(info.cpus), info.memoryBytes, info.serverVersion)
            } catch let error as DockerError {
                throw APIError(status: 400, code: "host_unreachable", message: error.description)
            }
        } else {
            do {
                let info = try await Libvirt(uri: uri).info()
                (cpus, memoryBytes, version) = (Int64(info.cpus), info.memoryBytes, "libvirt \(info.version)")
                accelerator = context.body.string("accelerator") ?? (info.kvm ? "kvm" : "tcg")
                guard ["kvm", "tcg"].contains(accelerator) else { throw APIError.invalidRequest("accelerator must be kvm or tcg") }
                guard accelerator == "tcg" || info.kvm else {
                    throw APIError(status: 400, code: "host_unreachable", message: "libvirt at \(uri) offers no KVM (no usable /dev/kvm): use accelerator tcg")
                }
            } catch let error as LibvirtError {
                throw APIError(status: 400, code: "host_unreachable", message: error.description)
            }
        }
        let now = context.environment.clock.unixMilliseconds()
        let host = HostRecord(
            name: name, dockerSocket: socket, state: .ready, reason: nil, cpus: cpus, memoryBytes: memoryBytes, engineVersion: version,
            cpuOvercommit: overcommit, seenAt: now, checkedAt: now, createdAt: now, libvirtURI: uri, accelerator: accelerator, agentToken: token)
        return try await context.transaction { db in
            if let existing = try await ComputeSchema.host(db, named: name) {
                // An agent that starts again registers again: its new address and token replace the old.
                guard !token.isEmpty, !existing.agentToken.isEmpty else { throw ComputeError.hostExists(name) }
                try await db.query(
                    """
                    UPDATE compute_hosts SET docker_socket = $2, agent_token = $3, state = 'ready', reason = NULL, cpus = $4, memory_bytes = $5,
                    engine_version = $6, cpu_overcommit = $7, seen_at = $8, checked_at = $8 WHERE name = $1
                    """,
                    [.text(name), .text(socket), .text(token), .integer(cpus), .integer(memoryBytes), .text(version), .integer(overcommit), .integer(now)])
                Self.log(context, "compute agent registered again", ["host": "\(name)", "engine": "\(socket)"])
                let placed = try await Self.candidates(db).first { $0.0.name == name }?.1
                return .json(200, Self.hostShape.json(HostView(record: host, placed: placed ?? Self.emptyCandidate(host))))
            }
            try await db.query(
                "INSERT INTO compute_hosts (\(ComputeSchema.hostColumns)) VALUES ($1, $2, $3, NULL, $4, $5, $6, $7, $8, $8, $8, $9, $10, $11)",
                [.text(name), .text(socket), .text(host.state.rawValue), .integer(host.cpus), .integer(host.memoryBytes), .text(host.engineVersion),
                 .integer(overcommit), .integer(now), .text(uri), .text(host.accelerator), .text(token)])
            Self.log(context, "compute host added", ["host": "\(name)", "backend": "\(host.backend.rawValue)", "cpus": "\(cpus)", "engine": "\(version)"])
            return .json(201, Self.hostShape.json(HostView(record: host, placed: Self.emptyCandidate(host))))
        }
    }

    static func emptyCandidate(_ host: HostRecord) -> Placement.Candidate {
        Placement.Candidate(
            host: host.name, state: host.state, cpus: host.cpus, memoryBytes: host.memoryBytes, cpuOvercommit: host.cpuOvercommit, usedVCPUs: 0,
            usedMemoryMiB: 0, instances: 0, backend: host.backend)
    }

    func listHosts(_ context: RouteContext) async throws -> APIResponse {
        let hosts = try await context.environment.database.transaction { db in try await Self.candidates(db) }
        let (items, next) = try context.page().slice(hosts.map { HostView(record: $0.0, placed: $0.1) }, key: \.record.name)
        return .json(200, Self.hostList.json(items, nextToken: next))
    }

    func removeHost(_ context: RouteContext) async throws -> APIResponse {
        let name = context.parameter("name")
        return try await context.transaction { db in
            guard try await db.query("SELECT 1 FROM compute_hosts WHERE name = $1", [.text(name)]).first != nil else {
                throw ComputeError.hostNotFound(name)
            }
            let count = try await db.query("SELECT COUNT(*) FROM compute_instances WHERE host = $1", [.text(name)]).first?.int(0) ?? 0
            guard count == 0 else { throw ComputeError.hostInUse(name, instances: count) }
            try await db.query("DELETE FROM compute_hosts WHERE name = $1", [.text(name)])
            Self.log(context, "compute host removed", ["host": "\(name)"])
            return .noContent
        }
    }

    // MARK: - Instances

    func createInstance(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let name = context.body.string("name") ?? ""
        try Self.checkName(name)
        let imageName = context.body.string("image") ?? ""
        let typeName = context.body.string("type") ?? "small"
        guard let type = InstanceType.named(typeName) else { throw ComputeError.unknownType(typeName) }
        let backendName = context.body.string("backend") ?? Backend.docker.rawValue
        guard let backend = Backend(rawValue: backendName) else { throw ComputeError.unknownBackend(backendName) }
        let restart = context.body.string("restart") ?? "no"
        guard Self.restartPolicies.contains(restart) else {
            throw APIError.invalidRequest("restart must be one of \(Self.restartPolicies.joined(separator: ", "))")
        }
        let command = context.body.strings("command") ?? []
        let variables = try Self.environmentVariables(context)
        if backend == .libvirt, !command.isEmpty || !variables.isEmpty || restart != "no" {
            throw APIError.invalidRequest("command, environment and restart are a container's: a virtual machine boots its image's kernel and init")
        }
        let userData = context.body.string("user_data") ?? ""
        let keyNames = context.body.strings("ssh_keys") ?? []
        if backend == .docker, !userData.isEmpty || !keyNames.isEmpty {
            throw APIError.invalidRequest("user_data and ssh_keys are a virtual machine's (backend libvirt): a container runs its command")
        }
        guard userData.utf8.count <= CloudInitSeed.maximumUserDataBytes else {
            throw APIError.invalidRequest("user_data is \(userData.utf8.count) bytes; at most \(CloudInitSeed.maximumUserDataBytes)")
        }
        guard Set(keyNames).count == keyNames.count, keyNames.count <= 10 else { throw APIError.invalidRequest("ssh_keys names at most 10 distinct keys") }
        let environment = context.environment
        let now = environment.clock.unixMilliseconds()
        let id = SecureRandom.identifier(prefix: "i-", bytes: 8)
        return try await context.transaction { db in
            guard let image = try await Self.image(db, tenantID: caller.tenantID, name: imageName) else { throw ComputeError.imageNotFound(imageName) }
            if try await ComputeSchema.instance(db, tenantID: caller.tenantID, name: name, dialect: environment.database.dialect) != nil {
                throw ComputeError.instanceExists(name)
            }
            let keys = try await Self.sshKeys(db, tenantID: caller.tenantID, names: keyNames)
            try await environment.quotas.reserve(Self.instancesQuota, tenantID: caller.tenantID, in: db)
            try await environment.quotas.reserve(Self.vcpusQuota, tenantID: caller.tenantID, adding: type.vcpus, in: db)
            try await environment.quotas.reserve(Self.memoryQuota, tenantID: caller.tenantID, adding: type.memoryMiB, in: db)
            let record = InstanceRecord(
                id: id, tenantID: caller.tenantID, name: name, image: imageName, imageDigest: image.digest, type: type.name, backend: backend,
                vcpus: type.vcpus, memoryMiB: type.memoryMiB, command: command, environment: variables, restart: restart, state: .pending,
                reason: nil, host: nil, backendID: nil, version: 1, createdAt: now, updatedAt: now, userData: userData,
                sshKeys: keys.map { ($0.name, $0.key.line) })
            try await ComputeSchema.insert(db, record)
            try await environment.tasks.enqueue(
                NewTask(kind: Self.provisionKind, tenantID: caller.tenantID, payload: .object([("instance", .string(id))]), maxAttempts: 10), in: db)
            Self.log(context, "instance created", ["tenant-id": "\(caller.tenantID)", "instance": "\(name)", "id": "\(id)"])
            return APIResponse.json(201, Self.instanceShape.json(record)).tagged(version: 1)
        }
    }

    /// The body's `environment`: names without `=` or NUL, string values.
    static func environmentVariables(_ context: RouteContext) throws -> [(String, String)] {
        var variables: [(String, String)] = []
        for (key, value) in context.body.object("environment") ?? [] {
            guard case .string(let text) = value else { throw APIError.invalidRequest("environment values must be strings") }
            guard !key.isEmpty, !key.contains("="), !key.contains("\u{0}"), !text.contains("\u{0}") else {
                throw APIError.invalidRequest("environment variable '\(key)' is not a valid name")
            }
            variables.append((key, text))
        }
        return variables
    }

    func listInstances(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let page = try context.page()
        let rows = try await context.environment.database.query(
            """
            SELECT \(ComputeSchema.instanceColumns) FROM compute_instances WHERE tenant_id = $1 AND name > $2 ORDER BY name LIMIT \(page.fetchLimit)
            """, [.text(caller.tenantID), .text(page.after ?? "")])
        let (items, next) = page.finish(rows.map(ComputeSchema.instance), key: \.name)
        return .json(200, Self.instanceList.json(items, nextToken: next))
    }

    private func existing(_ context: RouteContext, _ db: any SQLSession, forUpdate: Bool = false) async throws -> InstanceRecord {
        let caller = try context.authenticated
        let name = context.parameter("name")
        guard
            let instance = try await ComputeSchema.instance(
                db, tenantID: caller.tenantID, name: name, dialect: context.environment.database.dialect, forUpdate: forUpdate)
        else { throw ComputeError.instanceNotFound(name) }
        return instance
    }

    /// The instance the caller names and the host it was placed on (nil: none yet, or removed).
    func existingWithHost(_ context: RouteContext) async throws -> (InstanceRecord, HostRecord?) {
        try await context.environment.database.transaction { db in
            let instance = try await self.existing(context, db)
            guard let name = instance.host else { return (instance, nil) }
            return (instance, try await ComputeSchema.host(db, named: name))
        }
    }

    func getInstance(_ context: RouteContext) async throws -> APIResponse {
        let instance = try await context.environment.database.transaction { db in try await self.existing(context, db) }
        return APIResponse.json(200, Self.instanceShape.json(instance)).tagged(version: instance.version)
    }

    /// Stop, start, reboot or delete: the new state and its task, in one transaction.
    func request(_ action: InstanceAction, _ context: RouteContext) async throws -> APIResponse {
        let environment = context.environment
        let now = environment.clock.unixMilliseconds()
        return try await context.transaction { db in
            var instance = try await self.existing(context, db, forUpdate: true)
            try context.requireMatch(version: instance.version)
            guard let next = action.transition(from: instance.state) else {
                throw ComputeError.invalidState(name: instance.name, state: instance.state, action: action.rawValue)
            }
            if instance.backend == .libvirt, action != .delete,
                try await db.query(
                    """
                    SELECT 1 FROM compute_snapshots s JOIN compute_volumes v ON v.id = s.volume_id
                    WHERE v.instance_id = $1 AND s.state = 'creating' LIMIT 1
                    """, [.text(instance.id)]
                ).first != nil
            {
                throw APIError.conflict(
                    "invalid_state", "a volume of instance '\(instance.name)' is being snapshotted: \(action.rawValue) it when that is done")
            }
            try await ComputeSchema.update(db, id: instance.id, state: next, reason: nil, now: now)
            let task =
                action == .delete
                ? NewTask(kind: Self.deleteKind, tenantID: instance.tenantID, payload: .object([("instance", .string(instance.id))]), maxAttempts: 20)
                : NewTask(
                    kind: Self.powerKind, tenantID: instance.tenantID,
                    payload: .object([("instance", .string(instance.id)), ("action", .string(action.rawValue))]), maxAttempts: 10)
            try await environment.tasks.enqueue(task, in: db)
            Self.log(context, "instance \(action.rawValue) requested", ["tenant-id": "\(instance.tenantID)", "instance": "\(instance.name)"])
            instance.state = next
            instance.reason = nil
            instance.version += 1
            instance.updatedAt = now
            return APIResponse.json(202, Self.instanceShape.json(instance)).tagged(version: instance.version)
        }
    }

    func logs(_ context: RouteContext) async throws -> APIResponse {
        var tail = 1000
        if let text = context.request.query["tail"] {
            guard let value = Int(text), (1...10_000).contains(value) else { throw APIError.invalidRequest("tail must be 1 to 10000") }
            tail = value
        }
        var since: LogFrames.Instant?
        if let text = context.request.query["since"] {
            guard let instant = LogFrames.Instant(rfc3339: text) else { throw APIError.invalidRequest("since must be an RFC 3339 time in UTC (…Z)") }
            since = instant
        }
        let (instance, host) = try await self.existingWithHost(context)
        guard let host else { return .json(200, Self.logsShape.json(Logs(instance: instance.name, lines: []))) }
        if host.backend == .libvirt {
            guard since == nil else { throw APIError.invalidRequest("since is for containers: a machine's serial console has no times (use tail)") }
            return .json(200, Self.logsShape.json(Logs(instance: instance.name, lines: self.machineLogs(instance, tail: tail))))
        }
        var lines: [LogFrames.Line]
        do {
            lines = try await host.engine.logs(instance.containerName, tail: tail, since: since)
        } catch let error as DockerError where error.isNotFound {
            lines = []
        } catch let error as DockerError {
            throw ComputeError.engine(error.description)
        }
        // The engine's `since` is inclusive: drop what the caller has already seen. Times are compared
        // as instants, not as text (`10Z` is before `10.5Z`, which sorts the other way as a string).
        if let since { lines = LogFrames.lines(lines, after: since) }
        return .json(200, Self.logsShape.json(Logs(instance: instance.name, lines: lines)))
    }
}

extension ComputeService {
    struct ExecOutcome: Sendable {
        var instance: String
        var result: DockerEngine.ExecResult
    }

    static let execShape = ResponseShape<ExecOutcome>("ExecResult") {
        $0.string("instance") { $0.instance }
        $0.integer("exit_code", "The command's exit status.") { Int64($0.result.exitCode) }
        $0.array("lines", Self.logLineShape) { $0.result.lines }
        $0.boolean("truncated", "The output passed 1 MiB and was cut there.") { $0.result.truncated }
    }

    /// The longest a command may run (seconds).
    static let maximumExecSeconds: Int64 = 600

    /// Runs a command in a ready instance and answers its output and exit status.
    func exec(_ context: RouteContext) async throws -> APIResponse {
        guard let command = context.body.strings("command"), !command.isEmpty, command.allSatisfy({ !$0.contains("\u{0}") }) else {
            throw APIError.invalidRequest("command must be a non-empty array of strings, such as [\"sh\", \"-c\", \"echo hi\"]")
        }
        let seconds = context.body.integer("timeout_seconds") ?? 60
        guard (1...Self.maximumExecSeconds).contains(seconds) else {
            throw APIError.invalidRequest("timeout_seconds must be 1 to \(Self.maximumExecSeconds)")
        }
        let (instance, host) = try await self.existingWithHost(context)
        guard instance.backend == .docker else {
            throw ComputeError.unsupported("exec runs in containers; reach a virtual machine through its console (cloud instances console)")
        }
        guard instance.state == .ready, let host else { throw ComputeError.invalidState(name: instance.name, state: instance.state, action: "run a command") }
        do {
            let result = try await host.engine.exec(instance.containerName, command: command, timeout: .seconds(seconds))
            Self.log(context, "command run in instance", ["instance": "\(instance.name)", "exit-code": "\(result.exitCode)"])
            return .json(200, Self.execShape.json(ExecOutcome(instance: instance.name, result: result)))
        } catch let error as DockerError {
            throw ComputeError.engine(error.description)
        }
    }
}
