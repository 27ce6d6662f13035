import Database
import DockerEngine
import ServiceContract
import SQLite

/// A machine that runs instances: a Docker Engine the control plane reaches on its Unix socket
/// (containers), or a libvirt daemon on the control plane's machine (virtual machines). Two engines
/// with their own sockets and data roots on one machine are two hosts, and so are an engine and a
/// libvirt daemon on one machine.
struct HostRecord: Sendable, Equatable {
    var name: String
    /// `unix:///run/docker.sock`; empty for a libvirt host.
    var dockerSocket: String
    var state: HostState
    /// Why the host is not `ready`.
    var reason: String?
    /// What the engine reported last.
    var cpus: Int64
    var memoryBytes: Int64
    var engineVersion: String
    /// Instances' vCPUs it may hold per CPU (containers share CPUs; memory is never overcommitted).
    var cpuOvercommit: Int64
    /// When the engine last answered (unix milliseconds; 0: never).
    var seenAt: Int64
    var checkedAt: Int64
    var createdAt: Int64
    /// `qemu:///system`; empty for a Docker host.
    var libvirtURI: String = ""
    /// How a libvirt host runs machines: `kvm` or `tcg` (QEMU's emulation); empty for a Docker host.
    var accelerator: String = ""
    /// The bearer token of the compute agent (`cloud agent`) in front of a `tcp://` engine; empty
    /// for a local socket. Never in an answer.
    var agentToken: String = ""

    /// Its engine, through its agent when it has one.
    var engine: DockerEngine { DockerEngine(socket: self.dockerSocket, token: self.agentToken.isEmpty ? nil : self.agentToken) }

    /// What it runs: containers or virtual machines.
    var backend: Backend { self.libvirtURI.isEmpty ? .docker : .libvirt }
}

/// What runs an instance, as its `backend` says on the wire and in its row.
enum Backend: String, Sendable, CaseIterable {
    /// A container on a Docker Engine.
    case docker
    /// A virtual machine on a libvirt daemon (QEMU).
    case libvirt
}

/// Whether the scheduler may place instances on a host.
enum HostState: String, Sendable, CaseIterable {
    /// The engine answers.
    case ready
    /// The engine has not answered since ``ComputeService/hostGrace``: its instances are `unknown`.
    case unknown
}

/// An image: a root file system tar kept in the object store under its SHA-256, loaded into each
/// engine on first use.
struct ImageRecord: Sendable, Equatable {
    var tenantID: String
    var name: String
    /// Hex SHA-256 of the tar.
    var digest: String
    var sizeBytes: Int64
    /// The command an instance runs when it names none (the image's default).
    var command: [String]
    var createdAt: Int64

    /// The repository of every image on an engine; the tag is the digest (``engineTag(digest:)``).
    static let engineRepository = "cloud/image"

    /// An image's tag on an engine: content-addressed, so tenants importing the same tar share it.
    static func engineTag(digest: String) -> String { "sha256-\(digest)" }

    /// `repository:tag` of the image of a digest on an engine.
    static func engineReference(digest: String) -> String { "\(Self.engineRepository):\(Self.engineTag(digest: digest))" }
}

/// Where an instance is. The contract's lifecycle (`pending → provisioning → ready | failed →
/// deleting`) plus the power states a user moves it between.
enum InstanceState: String, Sendable, CaseIterable {
    case pending, provisioning, ready, failed, deleting
    /// Stopping, stopped, starting or rebooting on the user's request.
    case stopping, stopped, starting, rebooting
    /// Its host stopped answering; what runs there is not known.
    case unknown
}

/// A compute instance.
struct InstanceRecord: Sendable {
    var id: String
    var tenantID: String
    var name: String
    var image: String
    var imageDigest: String
    var type: String
    var backend: Backend
    var vcpus: Int64
    var memoryMiB: Int64
    var command: [String]
    var environment: [(String, String)]
    var restart: String
    var state: InstanceState
    var reason: String?
    /// The host it runs on, once scheduled.
    var host: String?
    /// The backend's id for it (the container id), once made.
    var backendID: String?
    var version: Int64
    var createdAt: Int64
    var updatedAt: Int64
    /// The deployment that made it and replaces it (nil: made by a user).
    var deploymentID: String? = nil
    /// What a machine's cloud-init runs (its `user-data`); empty for none.
    var userData: String = ""
    /// The SSH public keys a machine's cloud-init installs, by the names they had (copied at creation).
    var sshKeys: [(String, String)] = []
    /// The revision of its deployment it runs (1 for an instance no deployment made).
    var revision: Int64 = 1

    /// The container's name on its engine (and the domain's name on a libvirt host).
    var containerName: String { "cloud-\(self.id)" }
}

/// The service's tables (migration 1 of `compute`). Times are unix milliseconds.
enum ComputeSchema {
    static let migrations = [
        Migration(version: 1, name: "hosts, images and instances", sql: """
            CREATE TABLE compute_hosts (
                name TEXT PRIMARY KEY,
                docker_socket TEXT NOT NULL,
                state TEXT NOT NULL,
                reason TEXT,
                cpus BIGINT NOT NULL,
                memory_bytes BIGINT NOT NULL,
                engine_version TEXT NOT NULL,
                cpu_overcommit BIGINT NOT NULL,
                seen_at BIGINT NOT NULL,
                checked_at BIGINT NOT NULL,
                created_at BIGINT NOT NULL
            );
            CREATE TABLE compute_images (
                tenant_id TEXT NOT NULL,
                name TEXT NOT NULL,
                digest TEXT NOT NULL,
                size_bytes BIGINT NOT NULL,
                command TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                PRIMARY KEY (tenant_id, name)
            );
            CREATE INDEX compute_images_digest ON compute_images (digest);
            CREATE TABLE compute_instances (
                id TEXT PRIMARY KEY,
                tenant_id TEXT NOT NULL,
                name TEXT NOT NULL,
                image TEXT NOT NULL,
                image_digest TEXT NOT NULL,
                type TEXT NOT NULL,
                backend TEXT NOT NULL,
                vcpus BIGINT NOT NULL,
                memory_mib BIGINT NOT NULL,
                command TEXT NOT NULL,
                environment TEXT NOT NULL,
                restart TEXT NOT NULL,
                state TEXT NOT NULL,
                reason TEXT,
                host TEXT,
                backend_id TEXT,
                version BIGINT NOT NULL,
                created_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL,
                UNIQUE (tenant_id, name)
            );
            CREATE INDEX compute_instances_host ON compute_instances (host);
            """),
        Migration(version: 2, name: "deployments", sql: """
            CREATE TABLE compute_deployments (
                id TEXT PRIMARY KEY,
                tenant_id TEXT NOT NULL,
                name TEXT NOT NULL,
                image TEXT NOT NULL,
                type TEXT NOT NULL,
                vcpus BIGINT NOT NULL,
                memory_mib BIGINT NOT NULL,
                command TEXT NOT NULL,
                environment TEXT NOT NULL,
                replicas BIGINT NOT NULL,
                deleting BIGINT NOT NULL,
                reason TEXT,
                failures BIGINT NOT NULL,
                retry_at BIGINT NOT NULL,
                version BIGINT NOT NULL,
                created_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL,
                UNIQUE (tenant_id, name)
            );
            ALTER TABLE compute_instances ADD COLUMN deployment_id TEXT;
            CREATE INDEX compute_instances_deployment ON compute_instances (deployment_id);
            """),
        Migration(version: 3, name: "auto-scaling of deployments", sql: """
            ALTER TABLE compute_deployments ADD COLUMN min_replicas BIGINT;
            ALTER TABLE compute_deployments ADD COLUMN max_replicas BIGINT;
            ALTER TABLE compute_deployments ADD COLUMN target_cpu BIGINT;
            ALTER TABLE compute_deployments ADD COLUMN cpu_percent BIGINT;
            ALTER TABLE compute_deployments ADD COLUMN scaled_at BIGINT NOT NULL DEFAULT 0;
            """),
        Self.volumeMigration,
        Migration(version: 5, name: "virtual machines: libvirt hosts, user data and SSH keys", sql: """
            ALTER TABLE compute_hosts ADD COLUMN libvirt_uri TEXT NOT NULL DEFAULT '';
            ALTER TABLE compute_hosts ADD COLUMN accelerator TEXT NOT NULL DEFAULT '';
            ALTER TABLE compute_instances ADD COLUMN user_data TEXT NOT NULL DEFAULT '';
            ALTER TABLE compute_instances ADD COLUMN ssh_keys TEXT NOT NULL DEFAULT '{}';
            CREATE TABLE compute_ssh_keys (
                tenant_id TEXT NOT NULL,
                name TEXT NOT NULL,
                public_key TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                PRIMARY KEY (tenant_id, name)
            );
            """),
        Migration(version: 6, name: "rolling updates and events of deployments", sql: """
            ALTER TABLE compute_deployments ADD COLUMN revision BIGINT NOT NULL DEFAULT 1;
            ALTER TABLE compute_deployments ADD COLUMN max_unavailable BIGINT NOT NULL DEFAULT 1;
            ALTER TABLE compute_deployments ADD COLUMN rolled_out BIGINT NOT NULL DEFAULT 0;
            ALTER TABLE compute_deployments ADD COLUMN min_ready_seconds BIGINT NOT NULL DEFAULT 10;
            ALTER TABLE compute_instances ADD COLUMN revision BIGINT NOT NULL DEFAULT 1;
            CREATE TABLE compute_deployment_events (
                deployment_id TEXT NOT NULL,
                sequence BIGINT NOT NULL,
                at BIGINT NOT NULL,
                kind TEXT NOT NULL,
                instance TEXT,
                message TEXT NOT NULL,
                PRIMARY KEY (deployment_id, sequence)
            );
            """),
        Migration(version: 7, name: "one-time console tickets and compute agents", sql: """
            ALTER TABLE compute_hosts ADD COLUMN agent_token TEXT NOT NULL DEFAULT '';
            CREATE TABLE compute_console_tickets (
                digest TEXT PRIMARY KEY,
                instance_id TEXT NOT NULL,
                expires_at BIGINT NOT NULL
            );
            """),
    ]

    static let hostColumns = """
        name, docker_socket, state, reason, cpus, memory_bytes, engine_version, cpu_overcommit, seen_at, checked_at, created_at, libvirt_uri, \
        accelerator, agent_token
        """

    static func host(_ row: SQLRow) -> HostRecord {
        HostRecord(
            name: row.text(0), dockerSocket: row.text(1), state: HostState(rawValue: row.text(2)) ?? .unknown, reason: row.optionalText(3),
            cpus: row.int(4), memoryBytes: row.int(5), engineVersion: row.text(6), cpuOvercommit: row.int(7), seenAt: row.int(8),
            checkedAt: row.int(9), createdAt: row.int(10), libvirtURI: row.text(11), accelerator: row.text(12),
            agentToken: row.text(13))
    }

    static func host(_ db: any SQLSession, named name: String) async throws -> HostRecord? {
        try await db.query("SELECT \(Self.hostColumns) FROM compute_hosts WHERE name = $1", [.text(name)]).first.map(Self.host)
    }

    static let imageColumns = "tenant_id, name, digest, size_bytes, command, created_at"

    static func image(_ row: SQLRow) -> ImageRecord {
        ImageRecord(
            tenantID: row.text(0), name: row.text(1), digest: row.text(2), sizeBytes: row.int(3), command: Self.strings(row.text(4)),
            createdAt: row.int(5))
    }

    static let instanceColumns = """
        id, tenant_id, name, image, image_digest, type, backend, vcpus, memory_mib, command, environment, restart, state, reason, host, \
        backend_id, version, created_at, updated_at, deployment_id, user_data, ssh_keys, revision
        """

    static func instance(_ row: SQLRow) -> InstanceRecord {
        InstanceRecord(
            id: row.text(0), tenantID: row.text(1), name: row.text(2), image: row.text(3), imageDigest: row.text(4), type: row.text(5),
            backend: Backend(rawValue: row.text(6)) ?? .docker, vcpus: row.int(7), memoryMiB: row.int(8), command: Self.strings(row.text(9)),
            environment: Self.pairs(row.text(10)), restart: row.text(11), state: InstanceState(rawValue: row.text(12)) ?? .unknown,
            reason: row.optionalText(13), host: row.optionalText(14), backendID: row.optionalText(15), version: row.int(16),
            createdAt: row.int(17), updatedAt: row.int(18), deploymentID: row.optionalText(19), userData: row.text(20),
            sshKeys: Self.pairs(row.text(21)), revision: row.int(22))
    }

    /// Writes a new instance (its provisioning task is the caller's to enqueue, in the same transaction).
    static func insert(_ db: any SQLSession, _ instance: InstanceRecord) async throws {
        try await db.query(
            """
            INSERT INTO compute_instances (\(Self.instanceColumns))
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, NULL, NULL, NULL, 1, $14, $14, $15, $16, $17, $18)
            """,
            [.text(instance.id), .text(instance.tenantID), .text(instance.name), .text(instance.image), .text(instance.imageDigest),
             .text(instance.type), .text(instance.backend.rawValue), .integer(instance.vcpus), .integer(instance.memoryMiB),
             .text(Self.encode(instance.command)), .text(Self.encode(pairs: instance.environment)), .text(instance.restart),
             .text(instance.state.rawValue), .integer(instance.createdAt), instance.deploymentID.map(SQLValue.text) ?? .null,
             .text(instance.userData), .text(Self.encode(pairs: instance.sshKeys)), .integer(instance.revision)])
    }

    static let deploymentColumns = """
        id, tenant_id, name, image, type, vcpus, memory_mib, command, environment, replicas, deleting, reason, failures, retry_at, version, \
        created_at, updated_at, min_replicas, max_replicas, target_cpu, cpu_percent, scaled_at, revision, max_unavailable, rolled_out, \
        min_ready_seconds
        """

    static func deployment(_ row: SQLRow) -> DeploymentRecord {
        DeploymentRecord(
            id: row.text(0), tenantID: row.text(1), name: row.text(2), image: row.text(3), type: row.text(4), vcpus: row.int(5),
            memoryMiB: row.int(6), command: Self.strings(row.text(7)), environment: Self.pairs(row.text(8)), replicas: row.int(9),
            deleting: row.int(10) != 0, reason: row.optionalText(11), failures: row.int(12), retryAt: row.int(13), version: row.int(14),
            createdAt: row.int(15), updatedAt: row.int(16),
            autoscaling: row.optionalInt(19).map {
                AutoscalingPolicy(minimum: row.optionalInt(17) ?? 0, maximum: row.optionalInt(18) ?? 0, targetCPUPercent: $0)
            },
            cpuPercent: row.optionalInt(20), scaledAt: row.int(21), revision: row.int(22), maxUnavailable: row.int(23),
            minReadySeconds: row.int(25), rolledOut: row.int(24))
    }

    static func deployment(_ db: any SQLSession, tenantID: String, name: String, dialect: SQLDialect, forUpdate: Bool = false) async throws
        -> DeploymentRecord?
    {
        let lock = forUpdate && dialect == .postgres ? " FOR UPDATE" : ""
        return try await db.query(
            "SELECT \(Self.deploymentColumns) FROM compute_deployments WHERE tenant_id = $1 AND name = $2\(lock)", [.text(tenantID), .text(name)]
        ).first.map(Self.deployment)
    }

    /// The instances of deployments, by deployment id.
    static func members(_ db: any SQLSession, of deploymentIDs: [String]) async throws -> [String: [InstanceRecord]] {
        guard !deploymentIDs.isEmpty else { return [:] }
        let rows = try await db.query(
            "SELECT \(Self.instanceColumns) FROM compute_instances WHERE deployment_id IN (\(deploymentIDs.indices.map { "$\($0 + 1)" }.joined(separator: ", ")))",
            deploymentIDs.map(SQLValue.text))
        return Dictionary(grouping: rows.map(Self.instance), by: { $0.deploymentID ?? "" })
    }

    static func instance(_ db: any SQLSession, tenantID: String, name: String, dialect: SQLDialect, forUpdate: Bool = false) async throws
        -> InstanceRecord?
    {
        let lock = forUpdate && dialect == .postgres ? " FOR UPDATE" : ""
        return try await db.query(
            "SELECT \(Self.instanceColumns) FROM compute_instances WHERE tenant_id = $1 AND name = $2\(lock)", [.text(tenantID), .text(name)]
        ).first.map(Self.instance)
    }

    static func instance(_ db: any SQLSession, id: String) async throws -> InstanceRecord? {
        try await db.query("SELECT \(Self.instanceColumns) FROM compute_instances WHERE id = $1", [.text(id)]).first.map(Self.instance)
    }

    /// Sets an instance's state (and reason, host, backend id) and raises its version.
    static func update(
        _ db: any SQLSession, id: String, state: InstanceState, reason: String?, host: String? = nil, backendID: String? = nil, now: Int64
    ) async throws {
        try await db.query(
            """
            UPDATE compute_instances SET state = $2, reason = $3, host = COALESCE($4, host), backend_id = COALESCE($5, backend_id),
            version = version + 1, updated_at = $6 WHERE id = $1
            """, [.text(id), .text(state.rawValue), reason.map(SQLValue.text) ?? .null, host.map(SQLValue.text) ?? .null,
                backendID.map(SQLValue.text) ?? .null, .integer(now)])
    }

    // MARK: - Lists in a column

    /// A list of strings kept in one column: a JSON array.
    static func encode(_ strings: [String]) -> String { JSONValue.array(strings.map(JSONValue.string)).serialized() }

    static func strings(_ text: String) -> [String] {
        guard case .array(let items) = JSONValue.parse(Array(text.utf8)) else { return [] }
        return items.compactMap { if case .string(let value) = $0 { value } else { nil } }
    }

    /// Pairs (environment variables) as a JSON object, in order.
    static func encode(pairs: [(String, String)]) -> String { JSONValue.object(pairs.map { ($0.0, .string($0.1)) }).serialized() }

    static func pairs(_ text: String) -> [(String, String)] {
        guard case .object(let members) = JSONValue.parse(Array(text.utf8)) else { return [] }
        return members.compactMap { if case .string(let value) = $0.1 { ($0.0, value) } else { nil } }
    }
}
