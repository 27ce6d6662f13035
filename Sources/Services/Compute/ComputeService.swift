public import Database
import DockerEngine
import Foundation
import Hashing
public import Libvirt
import Logging
import Prometheus
public import ServiceContract
public import ServiceLifecycle
import SQLite
public import VolumeFiles

/// Compute: instances (containers on Docker Engines, virtual machines on libvirt hosts), the
/// images they run and the hosts that run them.
///
/// A create writes the instance as `pending` and enqueues `compute.provision` in the same
/// transaction; the task places it (``Placement``), loads the image into the host's engine if it
/// lacks it, creates and starts the container and marks the instance `ready`, or `failed` with the
/// engine's reason after removing what it made. Stop, start, reboot and delete are tasks too. A
/// schedule (`compute.check-hosts`, every ``checkPeriod``) asks every engine how it is: a host that
/// stops answering for ``hostGrace`` is `unknown` with its instances; a container that exited makes
/// its instance `stopped`; containers of instances that no longer exist are removed.
///
/// Every container is named `cloud-<instance id>` and labelled `cloud.instance=<id>`, so a task that
/// runs again after a crash finds what an earlier attempt made instead of making another.
public struct ComputeService: CloudService {
    /// Where image tars and snapshot blocks go (the storage cluster).
    let images: SystemStore?
    /// Where volume files live and are mounted.
    let volumes: VolumeFiles?
    /// Where virtual machines' disks, consoles and prepared images live (``Machines``).
    let machines: MachineFiles?
    /// Its counters, in the process's registry: provisions by outcome and their time, replicas a
    /// deployment replaced, auto-scaling changes.
    let metrics: ServiceMetrics
    /// Where browsers reach machines' consoles over WebSocket (``ConsoleGateway``); nil: no gateway.
    let console: ConsoleGatewayConfiguration?
    /// The gateway's address once it listens.
    let consoleLinks = ConsoleLinks()

    /// - Parameters:
    ///   - store: The storage cluster's system buckets; nil answers image imports with 503
    ///     `images_unavailable` and snapshots with 503 `snapshots_unavailable`.
    ///   - volumes: The host directory of volume files; nil answers volume routes with 503
    ///     `volumes_unavailable`.
    ///   - machines: The host directory of virtual machines' files; nil makes instances on libvirt
    ///     hosts `failed` with the reason.
    ///   - console: Where the console gateway listens (WebSocket links to machines' consoles); nil:
    ///     the console route gives the VNC address only.
    public init(
        store: SystemStore?, volumes: VolumeFiles? = nil, machines: MachineFiles? = nil, console: ConsoleGatewayConfiguration? = nil,
        metrics: ServiceMetrics = ServiceMetrics(service: "compute")
    ) {
        self.images = store
        self.volumes = volumes
        self.machines = machines
        self.console = console
        self.metrics = metrics
    }

    public func services(_ environment: ServiceEnvironment) -> [any Service] {
        self.console.map { [ConsoleGateway(configuration: $0, links: self.consoleLinks, environment: environment)] } ?? []
    }

    /// Counts a provision's outcome (`ready`, `failed`) and, when it ran, how long the host took.
    func countProvision(_ outcome: String, seconds: Double?) {
        self.metrics.counter("provisions_total", labels: [("outcome", outcome)], help: "Instances provisioned, by outcome.").increment()
        if let seconds {
            self.metrics.histogram(
                "provision_seconds", buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
                help: "Time a host took to run an instance: image load, container create and start."
            ).record(seconds)
        }
    }

    public var name: String { "compute" }
    public var summary: String {
        "Instances (containers on Docker Engine hosts, virtual machines on libvirt hosts), the root-file-system images they run, instance types, and the hosts with their capacity."
    }

    /// How often every host is checked.
    static let checkPeriod: Duration = .seconds(5)
    /// How long a host may go unanswered before it and its instances are `unknown` (milliseconds).
    static let hostGrace: Int64 = 15_000
    /// The largest image tar the API takes (512 MiB).
    static let maximumImageBytes = 512 << 20

    static let provisionKind = "compute.provision"
    static let powerKind = "compute.power"
    static let deleteKind = "compute.delete"
    static let checkKind = "compute.check-hosts"
    static let reconcileKind = "compute.reconcile-deployments"
    static let autoscaleKind = "compute.autoscale"

    static let instancesQuota = QuotaResource(rawValue: "instances")
    static let vcpusQuota = QuotaResource(rawValue: "vcpus")
    static let memoryQuota = QuotaResource(rawValue: "memory_mib")
    static let imagesQuota = QuotaResource(rawValue: "images")

    public var permissions: [PermissionSpec] {
        [
            PermissionSpec("instance:read", "See instances, their state and their logs.", grantedTo: [.developer, .viewer]),
            PermissionSpec("instance:create", "Create instances.", grantedTo: [.developer]),
            PermissionSpec("instance:update", "Stop, start and reboot instances.", grantedTo: [.developer]),
            PermissionSpec("instance:delete", "Delete instances.", grantedTo: [.developer]),
            PermissionSpec("instance:exec", "Run commands in instances.", grantedTo: [.developer]),
            PermissionSpec("instance:console", "Reach virtual machines' consoles (VNC).", grantedTo: [.developer]),
            PermissionSpec("image:read", "See images.", grantedTo: [.developer, .viewer]),
            PermissionSpec("image:create", "Import images.", grantedTo: [.developer]),
            PermissionSpec("image:delete", "Delete images no instance uses.", grantedTo: [.developer]),
            PermissionSpec("deployment:read", "See deployments and their replicas.", grantedTo: [.developer, .viewer]),
            PermissionSpec("deployment:create", "Create deployments.", grantedTo: [.developer]),
            PermissionSpec("deployment:update", "Scale and update deployments.", grantedTo: [.developer]),
            PermissionSpec("deployment:delete", "Delete deployments and their instances.", grantedTo: [.developer]),
        ] + self.volumePermissions + self.sshKeyPermissions
    }

    public var migrations: [Migration] { ComputeSchema.migrations }

    public var quotas: [QuotaSpec] {
        [
            // A deployment counts as its replicas, made or not (its replacements in flight do not count twice).
            QuotaSpec(Self.instancesQuota, defaultLimit: 20, description: "Compute instances (a deployment's replicas included).") { tenantID, db in
                try await Self.usage(db, tenantID: tenantID, instances: "1", replicas: "COALESCE(max_replicas, replicas)")
            },
            QuotaSpec(Self.vcpusQuota, defaultLimit: 40, description: "vCPUs of the tenant's instances.") { tenantID, db in
                try await Self.usage(db, tenantID: tenantID, instances: "vcpus", replicas: "COALESCE(max_replicas, replicas) * vcpus")
            },
            QuotaSpec(Self.memoryQuota, defaultLimit: 65_536, description: "MiB of memory of the tenant's instances.") { tenantID, db in
                try await Self.usage(db, tenantID: tenantID, instances: "memory_mib", replicas: "COALESCE(max_replicas, replicas) * memory_mib")
            },
            QuotaSpec(Self.imagesQuota, defaultLimit: 50, description: "Compute images.") { tenantID, db in
                try await db.query("SELECT COUNT(*) FROM compute_images WHERE tenant_id = $1", [.text(tenantID)]).first?.int(0) ?? 0
            },
        ] + self.volumeQuotas + self.sshKeyQuotas
    }

    /// The sum of `instances` over the tenant's instances that no deployment made, plus that of
    /// `replicas` over its deployments (`max_replicas` for those that auto-scale).
    static func usage(_ db: any SQLSession, tenantID: String, instances: String, replicas: String) async throws -> Int64 {
        let own = try await db.query(
            "SELECT COALESCE(SUM(\(instances)), 0) FROM compute_instances WHERE tenant_id = $1 AND deployment_id IS NULL", [.text(tenantID)]
        ).first?.int(0) ?? 0
        let deployed = try await db.query(
            "SELECT COALESCE(SUM(\(replicas)), 0) FROM compute_deployments WHERE tenant_id = $1", [.text(tenantID)]
        ).first?.int(0) ?? 0
        return own + deployed
    }

    public var tasks: [TaskHandler] {
        [
            TaskHandler(kind: Self.provisionKind) { context in try await self.provision(context) },
            TaskHandler(kind: Self.powerKind) { context in try await self.power(context) },
            TaskHandler(kind: Self.deleteKind) { context in try await self.remove(context) },
            TaskHandler(kind: Self.checkKind) { context in try await self.checkHosts(context) },
            TaskHandler(kind: Self.reconcileKind) { context in try await self.reconcile(context) },
            TaskHandler(kind: Self.autoscaleKind) { context in try await self.autoscale(context) },
            TaskHandler(kind: Self.volumeKind) { context in try await self.volumeTask(context) },
            TaskHandler(kind: Self.snapshotKind) { context in try await self.snapshotTask(context) },
        ]
    }

    public var schedules: [TaskSchedule] {
        [TaskSchedule(kind: Self.checkKind, every: Self.checkPeriod), TaskSchedule(kind: Self.reconcileKind, every: Self.checkPeriod),
         TaskSchedule(kind: Self.autoscaleKind, every: Autoscaler.period)]
    }

    /// Optional (a 200 `degraded` answer names the problem): no object store for images, no host
    /// registered, or a host whose engine stopped answering, with the engine's error.
    public var readinessChecks: [ReadinessCheck] {
        let hasImageStore = self.images != nil
        return [
            ReadinessCheck(name: self.name, required: false, reading: { db in
                guard hasImageStore else { return "no object store is configured for images" }
                let hosts: [HostRecord]
                do {
                    hosts = try await db.query("SELECT \(ComputeSchema.hostColumns) FROM compute_hosts ORDER BY name").map(ComputeSchema.host)
                } catch {
                    return "cannot read the hosts: \(error)"
                }
                guard !hosts.isEmpty else { return "no host is registered: instances fail until an operator adds one (cloud hosts add)" }
                let down = hosts.filter { $0.state != .ready }
                guard !down.isEmpty else { return nil }
                return down.map { "host \($0.name) \($0.state.rawValue): \($0.reason ?? "no reason recorded")" }.joined(separator: "; ")
            })
        ]
    }

    // MARK: - Shapes

    static let instanceShape = ResponseShape<InstanceRecord>("Instance") {
        $0.string("id") { $0.id }
        $0.string("name") { $0.name }
        $0.string("image") { $0.image }
        $0.string("type") { $0.type }
        $0.enumeration("backend", Backend.allCases.map(\.rawValue)) { $0.backend.rawValue }
        $0.integer("vcpus") { $0.vcpus }
        $0.integer("memory_mib") { $0.memoryMiB }
        $0.strings("command", "What it runs (empty: the image's command).") { $0.command }
        $0.stringMap("environment") { $0.environment }
        $0.enumeration("restart", Self.restartPolicies, "What the engine does when the process exits.") { $0.restart }
        $0.enumeration("status", InstanceState.allCases.map(\.rawValue)) { $0.state.rawValue }
        $0.optionalString("status_reason", "Why it is failed, stopped or unknown.") { $0.reason }
        $0.optionalString("host", "The host it was placed on.") { $0.host }
        $0.optionalString("container_id", "The container on that host's engine, or the machine's libvirt domain.") { $0.backendID }
        $0.strings("ssh_keys", "A machine's SSH keys (names at creation; the keys were copied).") { $0.sshKeys.map(\.0) }
        $0.integer("user_data_bytes", "The size of a machine's user data.") { Int64($0.userData.utf8.count) }
        $0.integer("version", "The ETag.") { $0.version }
        $0.time("created_at") { $0.createdAt }
        $0.time("updated_at") { $0.updatedAt }
    }

    static let instanceList = ListShape("InstanceList", itemsKey: "instances", item: Self.instanceShape)

    static let imageShape = ResponseShape<ImageRecord>("Image") {
        $0.string("name") { $0.name }
        $0.string("digest", "sha256: and the hex SHA-256 of the tar.") { "sha256:" + $0.digest }
        $0.integer("size_bytes") { $0.sizeBytes }
        $0.strings("command", "What an instance runs when it names nothing.") { $0.command }
        $0.time("created_at") { $0.createdAt }
    }

    static let imageList = ListShape("ImageList", itemsKey: "images", item: Self.imageShape)

    static let typeShape = ResponseShape<InstanceType>("InstanceType") {
        $0.string("name") { $0.name }
        $0.integer("vcpus") { $0.vcpus }
        $0.integer("memory_mib") { $0.memoryMiB }
    }

    static let typeList = ListShape("InstanceTypeList", itemsKey: "instance_types", item: Self.typeShape)

    struct HostView: Sendable {
        var record: HostRecord
        var placed: Placement.Candidate
    }

    static let hostShape = ResponseShape<HostView>("ComputeHost") {
        $0.string("name") { $0.record.name }
        $0.enumeration("backend", Backend.allCases.map(\.rawValue), "What it runs: containers or virtual machines.") { $0.record.backend.rawValue }
        $0.string("docker_socket", "Empty on a libvirt host.") { $0.record.dockerSocket }
        $0.string("libvirt_uri", "Empty on a Docker host.") { $0.record.libvirtURI }
        $0.string("accelerator", "A libvirt host's machines run on kvm or tcg (QEMU's emulation); empty on a Docker host.") { $0.record.accelerator }
        $0.enumeration("status", HostState.allCases.map(\.rawValue)) { $0.record.state.rawValue }
        $0.optionalString("status_reason") { $0.record.reason }
        $0.integer("cpus", "As its engine or libvirt reports them.") { $0.record.cpus }
        $0.integer("memory_bytes") { $0.record.memoryBytes }
        $0.string("engine_version", "Docker's version, or `libvirt` and libvirt's.") { $0.record.engineVersion }
        $0.integer("cpu_overcommit", "Instance vCPUs it takes per CPU.") { $0.record.cpuOvercommit }
        $0.integer("instances") { $0.placed.instances }
        $0.integer("vcpus_allocated") { $0.placed.usedVCPUs }
        $0.integer("memory_mib_allocated") { $0.placed.usedMemoryMiB }
        $0.optionalTime("seen_at", "When its engine last answered.") { $0.record.seenAt == 0 ? nil : $0.record.seenAt }
        $0.time("created_at") { $0.record.createdAt }
    }

    static let hostList = ListShape("ComputeHostList", itemsKey: "hosts", item: Self.hostShape)

    static let logLineShape = ResponseShape<LogFrames.Line>("LogLine") {
        $0.enumeration("stream", ["stdout", "stderr"], "A machine's serial console is stdout.") { $0.stream.rawValue }
        $0.string("time", "The engine's RFC 3339 time with nanoseconds (empty for a machine's serial console).") { $0.timestamp ?? "" }
        $0.string("text") { $0.text }
    }

    struct Logs: Sendable {
        var instance: String
        var lines: [LogFrames.Line]
    }

    static let logsShape = ResponseShape<Logs>("InstanceLogs") {
        $0.string("instance") { $0.instance }
        $0.array("lines", Self.logLineShape) { $0.lines }
    }

    static let restartPolicies = ["no", "on-failure", "always", "unless-stopped"]

    // MARK: - Routes

    public var routes: [Route] {
        let readInstance = Access.permission(Permission("instance:read")!)
        let update = Access.permission(Permission("instance:update")!)
        var importImage = RouteSpec(
            method: "PUT", path: "/compute/images/{name}", operationID: "importImage",
            summary: "Import an image: the body is a tar of a root file system (Content-Type: application/x-tar, at most 512 MiB).",
            access: .permission(Permission("image:create")!), success: 201, response: .shape(Self.imageShape.component),
            errors: [(409, "image_exists"), (400, "invalid_image"), (503, "images_unavailable")],
            query: [QueryParameter("command", "A JSON array: what an instance of it runs when it names nothing (default [\"sh\"]).")])
        importImage.rawBodyType = "application/x-tar"
        importImage.maximumBodyBytes = Self.maximumImageBytes
        var power: [Route] = []
        for action in [InstanceAction.stop, .start, .reboot] {
            power.append(
                Route(
                    method: "POST", path: "/compute/instances/{name}/\(action.rawValue)", operationID: "\(action.rawValue)Instance",
                    summary: "\(action.rawValue.capitalized) an instance (asynchronous: the answer shows it \(action.transition(from: action == .start ? .stopped : .ready)!.rawValue)).",
                    access: update, success: 202, response: .shape(Self.instanceShape.component), errors: [(409, "invalid_state")]
                ) { context in try await self.request(action, context) })
        }
        return [
            Route(importImage) { context in try await self.importImage(context) },
            Route(
                method: "GET", path: "/compute/images", operationID: "listImages", summary: "The tenant's images by name.",
                access: .permission(Permission("image:read")!), success: 200, response: .shape(Self.imageList.component), paginated: true
            ) { context in try await self.listImages(context) },
            Route(
                method: "GET", path: "/compute/images/{name}", operationID: "getImage", summary: "One image.",
                access: .permission(Permission("image:read")!), success: 200, response: .shape(Self.imageShape.component)
            ) { context in try await self.getImage(context) },
            Route(
                method: "DELETE", path: "/compute/images/{name}", operationID: "deleteImage", summary: "Delete an image no instance uses.",
                access: .permission(Permission("image:delete")!), success: 204, response: .empty, errors: [(409, "image_in_use")]
            ) { context in try await self.deleteImage(context) },
            Route(
                method: "GET", path: "/compute/instance-types", operationID: "listInstanceTypes", summary: "The sizes an instance can have.",
                access: readInstance, success: 200, response: .shape(Self.typeList.component), paginated: true
            ) { context in
                let (items, next) = try context.page().slice(InstanceType.all, key: \.name)
                return .json(200, Self.typeList.json(items, nextToken: next))
            },
            Route(
                method: "POST", path: "/compute/hosts", operationID: "addComputeHost",
                summary: "Register a host by its Docker Engine socket, its compute agent or its libvirt URI (platform operators); it must answer.",
                access: .platformAdmin,
                body: BodySchema([
                    .string("name", maxLength: 63, "1 to 63 of lowercase letters, digits and -."),
                    .string("docker_socket", required: false, maxLength: 200, "unix:///path/to/docker.sock: a host of containers; or tcp://host:port of a compute agent (cloud agent) in front of one."),
                    .string("agent_token", required: false, maxLength: 200, "A compute agent's bearer token (with a tcp:// docker_socket); an agent that registers again replaces its address and token (200)."),
                    .string("libvirt_uri", required: false, maxLength: 200, "qemu:///system: a host of virtual machines (this machine's libvirt)."),
                    .string("accelerator", required: false, maxLength: 8, "A libvirt host's: kvm (the default where libvirt offers it) or tcg (QEMU's emulation)."),
                    .integer("cpu_overcommit", "Instance vCPUs per CPU (1 to 64, default 8)."),
                ]), success: 201, response: .shape(Self.hostShape.component), errors: [(409, "host_exists"), (400, "host_unreachable")]
            ) { context in try await self.addHost(context) },
            Route(
                method: "GET", path: "/compute/hosts", operationID: "listComputeHosts",
                summary: "The compute hosts with their capacity and what is placed on them (platform operators).", access: .platformAdmin,
                success: 200, response: .shape(Self.hostList.component), paginated: true
            ) { context in try await self.listHosts(context) },
            Route(
                method: "DELETE", path: "/compute/hosts/{name}", operationID: "removeComputeHost",
                summary: "Forget a host that has no instances (platform operators).", access: .platformAdmin, success: 204, response: .empty,
                errors: [(409, "host_in_use")]
            ) { context in try await self.removeHost(context) },
            Route(
                method: "POST", path: "/compute/instances", operationID: "createInstance",
                summary: "Create an instance (asynchronous: it is pending until a host runs it, then ready or failed with the reason).",
                access: .permission(Permission("instance:create")!),
                body: BodySchema([
                    .string("name", maxLength: 63, "1 to 63 of lowercase letters, digits and -; unique in the tenant."),
                    .string("image", maxLength: 63, "An image of the tenant."),
                    .string("type", required: false, maxLength: 32, "An instance type (default small)."),
                    .string("backend", required: false, maxLength: 16, "docker (a container, the default) or libvirt (a virtual machine booting the image's kernel)."),
                    .strings("command", required: false, "What it runs instead of the image's command (containers only)."),
                    .stringMap("environment", "Environment variables (containers only)."),
                    .string("restart", required: false, maxLength: 16, "no (default), on-failure, always or unless-stopped (containers only)."),
                    .string("user_data", required: false, maxLength: CloudInitSeed.maximumUserDataBytes, "What the machine's cloud-init runs: #cloud-config or a script (machines only)."),
                    .strings("ssh_keys", required: false, "Names of SSH keys of the tenant that the machine's cloud-init installs (machines only)."),
                ]), success: 201, response: .shape(Self.instanceShape.component),
                errors: [(409, "instance_exists"), (404, "image_not_found"), (404, "ssh_key_not_found"), (400, "unknown_instance_type"), (400, "unknown_backend")]
            ) { context in try await self.createInstance(context) },
            Route(
                method: "GET", path: "/compute/instances", operationID: "listInstances", summary: "The tenant's instances by name.",
                access: readInstance, success: 200, response: .shape(Self.instanceList.component), paginated: true
            ) { context in try await self.listInstances(context) },
            Route(
                method: "GET", path: "/compute/instances/{name}", operationID: "getInstance", summary: "One instance; its ETag.",
                access: readInstance, success: 200, response: .shape(Self.instanceShape.component)
            ) { context in try await self.getInstance(context) },
            Route(
                method: "DELETE", path: "/compute/instances/{name}", operationID: "deleteInstance",
                summary: "Delete an instance and its container (asynchronous: it shows deleting until the host let go).",
                access: .permission(Permission("instance:delete")!), success: 202, response: .shape(Self.instanceShape.component),
                errors: [(409, "invalid_state")]
            ) { context in try await self.request(.delete, context) },
            Route(
                method: "GET", path: "/compute/instances/{name}/logs", operationID: "getInstanceLogs",
                summary: "What the instance wrote to stdout and stderr (a machine: to its serial console), oldest first.", access: readInstance, success: 200,
                response: .shape(Self.logsShape.component), errors: [(502, "engine_error")],
                query: [
                    QueryParameter("tail", "At most this many of the last lines (1 to 10000, default 1000)."),
                    QueryParameter("since", "Only lines after this RFC 3339 time (the `time` of the last line seen)."),
                ]
            ) { context in try await self.logs(context) },
            Route(
                method: "POST", path: "/compute/instances/{name}/exec", operationID: "execInstance",
                summary: "Run a command in a ready instance and wait for it: its output (at most 1 MiB) and exit status.",
                access: .permission(Permission("instance:exec")!),
                body: BodySchema([
                    .strings("command", required: true, "The program and its arguments."),
                    .integer("timeout_seconds", "How long it may run (1 to 600, default 60); past it the answer is 502 and the command goes on."),
                ]), success: 200, response: .shape(Self.execShape.component),
                errors: [(409, "invalid_state"), (409, "unsupported_by_backend"), (502, "engine_error")]
            ) { context in try await self.exec(context) },
            Route(
                method: "GET", path: "/compute/instances/{name}/console", operationID: "getInstanceConsole",
                summary: "Where a running virtual machine's VNC console listens, and its password.",
                access: .permission(Permission("instance:console")!), success: 200, response: .shape(Self.consoleShape.component),
                errors: [(409, "invalid_state"), (409, "unsupported_by_backend"), (502, "engine_error")]
            ) { context in try await self.console(context) },
        ] + power + self.deploymentRoutes + self.volumeRoutes + self.sshKeyRoutes
    }

    // MARK: - Names

    /// DNS-label names: 1 to 63 of lowercase letters, digits and `-`, starting with a letter.
    static func checkName(_ name: String) throws(ComputeError) {
        guard name.isName(maxLength: 63, allowing: "-"), name == name.lowercased(), let first = name.unicodeScalars.first, ("a"..."z").contains(first)
        else { throw ComputeError.invalidName(name) }
    }

    static func log(_ context: RouteContext, _ message: Logger.Message, _ metadata: Logger.Metadata) {
        var all = metadata
        all["request-id"] = "\(context.request.requestID)"
        context.environment.logger.info(message, metadata: all)
    }
}
