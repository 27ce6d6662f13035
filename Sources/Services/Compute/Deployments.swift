import Database
import Logging
import Prometheus
import ServiceContract
import SQLite

/// A deployment: a number of identical instances that the reconciler keeps running.
struct DeploymentRecord: Sendable {
    var id: String
    var tenantID: String
    var name: String
    var image: String
    var type: String
    /// Of one replica (its type's), kept so that quotas count replicas not yet made.
    var vcpus: Int64
    var memoryMiB: Int64
    var command: [String]
    var environment: [(String, String)]
    var replicas: Int64
    /// Deleted by its user: the reconciler deletes its instances, then the row.
    var deleting: Bool
    /// The last failure of one of its instances, while failures go on.
    var reason: String?
    /// Replicas that failed or exited since one last ran; they space out replacements.
    var failures: Int64
    /// No replacement is made before this time (unix milliseconds) after failures.
    var retryAt: Int64
    var version: Int64
    var createdAt: Int64
    var updatedAt: Int64
    /// When set, the autoscaler sets `replicas` from its replicas' CPU use.
    var autoscaling: AutoscalingPolicy? = nil
    /// The replicas' mean CPU use at the autoscaler's last look (percent of their vCPUs).
    var cpuPercent: Int64? = nil
    /// When the autoscaler last changed `replicas` (unix milliseconds).
    var scaledAt: Int64 = 0
    /// Raised by every change of what a replica runs (image, type, command, environment): replicas
    /// of an older revision are replaced by a rolling update.
    var revision: Int64 = 1
    /// How many replicas a rolling update may take below `replicas` running.
    var maxUnavailable: Int64 = 1
    /// How long a replica must have run before a rolling update counts it as available (seconds):
    /// a revision whose replicas start and then crash does not take the old ones down with it.
    var minReadySeconds: Int64 = 10
    /// The last revision that ran on all the replicas (its `rolled-out` event is written once).
    var rolledOut: Int64 = 0

    /// The replicas its quota reserves: the most it may run.
    var reservedReplicas: Int64 { self.autoscaling?.maximum ?? self.replicas }
}

/// What one pass of a deployment's reconciler does, decided from its instances' states alone.
///
/// A rolling update (a new ``DeploymentRecord/revision``) replaces the replicas of older revisions
/// a few at a time: outdated replicas that do not run go at once, and running ones only while
/// fewer than `maxUnavailable` replicas are short of available (running for `minReady`); each is
/// replaced by one of the new revision in the same pass. There is no surge: a deployment never has
/// more live replicas than it asks for, so its quota (which counts its replicas) holds during an
/// update too.
enum DeploymentPlanner {
    struct Plan: Equatable, Sendable {
        /// Broken replicas (failed, exited, on a host that does not answer), to delete.
        var broken: [String] = []
        /// Live replicas beyond the count, to delete: the outdated, the least far along, then the newest first.
        var surplus: [String] = []
        /// Replicas of an older revision that the rolling update replaces now.
        var outdated: [String] = []
        /// How many new instances (of the current revision) to make.
        var create = 0
        /// Of `broken`, those that failed or exited (they count towards the backoff).
        var failed = 0

        /// Every instance to delete.
        var delete: [String] { self.broken + self.surplus + self.outdated }

        init(broken: [String] = [], surplus: [String] = [], outdated: [String] = [], create: Int = 0, failed: Int = 0) {
            (self.broken, self.surplus, self.outdated, self.create, self.failed) = (broken, surplus, outdated, create, failed)
        }
    }

    /// States in which an instance counts towards the replicas.
    static let live: Set<InstanceState> = [.pending, .provisioning, .ready, .starting, .rebooting, .stopping]
    /// States the reconciler replaces.
    static let broken: Set<InstanceState> = [.failed, .stopped, .unknown]

    /// - Parameters:
    ///   - revision: The deployment's revision; members of another one are outdated.
    ///   - maxUnavailable: How many replicas an update may take below `replicas` running (at least 1).
    ///   - minReady: How long (milliseconds) a replica must have been `ready` (since its `updatedAt`)
    ///     to count as available, at `now`.
    ///   - mayCreate: False while failures are being backed off (no update goes on meanwhile either).
    static func plan(
        replicas: Int64, revision: Int64 = 1, maxUnavailable: Int64 = 1, minReady: Int64 = 0, now: Int64 = .max, deleting: Bool,
        members: [InstanceRecord], mayCreate: Bool
    ) -> Plan {
        var plan = Plan()
        let current = members.filter { $0.state != .deleting }
        if deleting {
            plan.broken = current.map(\.id)
            return plan
        }
        for member in current where Self.broken.contains(member.state) {
            plan.broken.append(member.id)
            if member.state != .unknown { plan.failed += 1 }
        }
        var live = current.filter { Self.live.contains($0.state) }
        if live.count > replicas {
            // Outdated first, then not yet running, then the newest (ids break ties so that the order is total).
            let order = live.sorted { a, b in
                let (oa, ob) = (a.revision != revision, b.revision != revision)
                if oa != ob { return oa }
                let (ra, rb) = (a.state == .ready, b.state == .ready)
                if ra != rb { return !ra }
                return a.createdAt != b.createdAt ? a.createdAt > b.createdAt : a.id > b.id
            }
            plan.surplus = order.prefix(live.count - Int(replicas)).map(\.id)
            live.removeAll { plan.surplus.contains($0.id) }
        }
        guard mayCreate else { return plan }
        plan.create = max(Int(replicas) - live.count, 0)
        let outdated = live.filter { $0.revision != revision }
        guard !outdated.isEmpty else { return plan }
        // Outdated replicas that do not run cost nothing to replace.
        let idle = outdated.filter { $0.state != .ready }
        let running = outdated.filter { $0.state == .ready }.sorted { a, b in
            a.createdAt != b.createdAt ? a.createdAt < b.createdAt : a.id < b.id
        }
        let available = live.filter { $0.state == .ready && $0.updatedAt <= now - minReady }.count
        let budget = max(Int(max(maxUnavailable, 1)) - max(Int(replicas) - available, 0), 0)
        plan.outdated = idle.map(\.id) + running.prefix(budget).map(\.id)
        plan.create += plan.outdated.count
        return plan
    }

    /// How long to wait before replacing again after `failures` consecutive ones: 5 s doubling to 5 min.
    static func backoff(failures: Int64) -> Int64 {
        guard failures > 0 else { return 0 }
        return min(5_000 << min(failures - 1, 10), 300_000)
    }

    /// `ready` when as many replicas of the current revision run as asked for, `deleting`, else `progressing`.
    static func status(_ deployment: DeploymentRecord, members: [InstanceRecord]) -> String {
        if deployment.deleting { return "deleting" }
        let current = members.filter { $0.state != .deleting }
        return current.count == deployment.replicas && current.allSatisfy({ $0.state == .ready && $0.revision == deployment.revision })
            ? "ready" : "progressing"
    }
}

extension ComputeService {
    static let maximumReplicas: Int64 = 100

    /// A deployment with its instances, as answered.
    struct DeploymentView: Sendable {
        var record: DeploymentRecord
        var members: [InstanceRecord]
    }

    static let deploymentShape = ResponseShape<DeploymentView>("Deployment") {
        $0.string("id") { $0.record.id }
        $0.string("name") { $0.record.name }
        $0.string("image") { $0.record.image }
        $0.string("type") { $0.record.type }
        $0.strings("command", "What each replica runs (empty: the image's command).") { $0.record.command }
        $0.stringMap("environment") { $0.record.environment }
        $0.integer("replicas", "How many instances it keeps running.") { $0.record.replicas }
        $0.integer("ready_replicas", "How many of them run now.") { view in Int64(view.members.filter { $0.state == .ready }.count) }
        $0.integer("revision", "Raised by every change of what a replica runs; a rolling update brings every replica to it.") { $0.record.revision }
        $0.integer("updated_replicas", "How many replicas run the current revision.") { view in
            Int64(view.members.filter { $0.state == .ready && $0.revision == view.record.revision }.count)
        }
        $0.integer("max_unavailable", "How many replicas a rolling update may take below `replicas` running.") { $0.record.maxUnavailable }
        $0.integer("min_ready_seconds", "How long a replica must have run before a rolling update counts it as available.") {
            $0.record.minReadySeconds
        }
        $0.enumeration("status", ["ready", "progressing", "deleting"], "ready: every replica runs the current revision.") {
            DeploymentPlanner.status($0.record, members: $0.members)
        }
        $0.optionalString("status_reason", "The last failure of a replica while replicas fail.") { $0.record.reason }
        $0.optionalInteger("min_replicas", "Auto-scaling: the fewest replicas.") { $0.record.autoscaling?.minimum }
        $0.optionalInteger("max_replicas", "Auto-scaling: the most replicas.") { $0.record.autoscaling?.maximum }
        $0.optionalInteger("target_cpu_percent", "Auto-scaling: the mean CPU use (percent of a replica's vCPUs) it scales towards.") {
            $0.record.autoscaling?.targetCPUPercent
        }
        $0.optionalInteger("cpu_percent", "Auto-scaling: the replicas' mean CPU use at the last look.") { $0.record.cpuPercent }
        $0.strings("instances", "Its instances' names.") { view in view.members.filter { $0.state != .deleting }.map(\.name).sorted() }
        $0.integer("version", "The ETag.") { $0.record.version }
        $0.time("created_at") { $0.record.createdAt }
        $0.time("updated_at") { $0.record.updatedAt }
    }

    static let deploymentList = ListShape("DeploymentList", itemsKey: "deployments", item: Self.deploymentShape)

    /// A reconcile pass of one deployment, queued when it is created, scaled or deleted.
    static func reconcileTask(_ deployment: DeploymentRecord) -> NewTask {
        Self.reconcileTask(deploymentID: deployment.id, tenantID: deployment.tenantID)
    }

    static func reconcileTask(deploymentID: String, tenantID: String) -> NewTask {
        NewTask(kind: Self.reconcileKind, tenantID: tenantID, payload: .object([("deployment", .string(deploymentID))]), maxAttempts: 5)
    }

    // MARK: - Routes

    var deploymentRoutes: [Route] {
        let read = Access.permission(Permission("deployment:read")!)
        return [
            Route(
                method: "POST", path: "/compute/deployments", operationID: "createDeployment",
                summary: "Create a deployment: replicas of one instance that are replaced when they fail, exit or lose their host.",
                access: .permission(Permission("deployment:create")!),
                body: BodySchema([
                    .string("name", maxLength: 50, "1 to 50 of lowercase letters, digits and -; its instances are NAME-xxxxx."),
                    .string("image", maxLength: 63, "An image of the tenant."),
                    .integer("replicas", "How many instances (0 to 100); with auto-scaling, where it starts (default min_replicas)."),
                    .string("type", required: false, maxLength: 32, "An instance type (default small)."),
                    .strings("command", required: false, "What each replica runs instead of the image's command."),
                    .stringMap("environment", "Environment variables."),
                    .integer("min_replicas", "Auto-scaling (with max_replicas and target_cpu_percent): the fewest replicas (0 to 100)."),
                    .integer("max_replicas", "Auto-scaling: the most replicas (1 to 100, at least min_replicas)."),
                    .integer("target_cpu_percent", "Auto-scaling: the mean CPU use, in percent of a replica's vCPUs, to scale towards (1 to 100)."),
                    .integer("max_unavailable", "How many replicas a rolling update may take below `replicas` running (1 to 100, default 1)."),
                    .integer("min_ready_seconds", "How long a replica must have run before a rolling update counts it as available (0 to 3600, default 10)."),
                ]), success: 201, response: .shape(Self.deploymentShape.component),
                errors: [(409, "deployment_exists"), (404, "image_not_found"), (400, "unknown_instance_type")]
            ) { context in try await self.createDeployment(context) },
            Route(
                method: "GET", path: "/compute/deployments", operationID: "listDeployments", summary: "The tenant's deployments by name.",
                access: read, success: 200, response: .shape(Self.deploymentList.component), paginated: true
            ) { context in try await self.listDeployments(context) },
            Route(
                method: "GET", path: "/compute/deployments/{name}", operationID: "getDeployment", summary: "One deployment and its instances; its ETag.",
                access: read, success: 200, response: .shape(Self.deploymentShape.component)
            ) { context in try await self.getDeployment(context) },
            Route(
                method: "GET", path: "/compute/deployments/{name}/events", operationID: "listDeploymentEvents",
                summary: "What happened to a deployment, oldest first (its last 200 events): replicas made, failed and replaced, scaling, updates rolled out.",
                access: read, success: 200, response: .shape(Self.deploymentEventList.component), paginated: true
            ) { context in try await self.deploymentEvents(context) },
            Route(
                method: "PATCH", path: "/compute/deployments/{name}", operationID: "updateDeployment",
                summary: """
                    Scale a deployment, or change what its replicas run: a new image, type, command or environment is a new revision, \
                    rolled out to the replicas at most max_unavailable at a time (If-Match refuses a lost update).
                    """,
                access: .permission(Permission("deployment:update")!),
                body: BodySchema([
                    .integer("replicas", "How many instances (0 to 100)."),
                    .string("image", required: false, maxLength: 63, "An image of the tenant."),
                    .string("type", required: false, maxLength: 32, "An instance type."),
                    .strings("command", required: false, "What each replica runs ([]: the image's command)."),
                    .stringMap("environment", "Environment variables (all of them: they replace the old ones)."),
                    .integer("max_unavailable", "How many replicas a rolling update may take below `replicas` running (1 to 100)."),
                    .integer("min_ready_seconds", "How long a replica must have run before a rolling update counts it as available (0 to 3600)."),
                ]), success: 200,
                response: .shape(Self.deploymentShape.component),
                errors: [(409, "invalid_state"), (404, "image_not_found"), (400, "unknown_instance_type"), (409, "quota_exceeded")]
            ) { context in try await self.updateDeployment(context) },
            Route(
                method: "DELETE", path: "/compute/deployments/{name}", operationID: "deleteDeployment",
                summary: "Delete a deployment and its instances (asynchronous: it shows deleting until they are gone).",
                access: .permission(Permission("deployment:delete")!), success: 202, response: .shape(Self.deploymentShape.component)
            ) { context in try await self.deleteDeployment(context) },
        ]
    }

    /// The body's auto-scaling fields: none, or all three and consistent.
    static func autoscalingPolicy(_ context: RouteContext) throws -> AutoscalingPolicy? {
        let (minimum, maximum, target) = (context.body.integer("min_replicas"), context.body.integer("max_replicas"), context.body.integer("target_cpu_percent"))
        if minimum == nil && maximum == nil && target == nil { return nil }
        guard let minimum, let maximum, let target else {
            throw APIError.invalidRequest("auto-scaling needs all of min_replicas, max_replicas and target_cpu_percent")
        }
        guard minimum >= 0, maximum >= 1, minimum <= maximum, maximum <= Self.maximumReplicas else {
            throw APIError.invalidRequest("min_replicas and max_replicas must satisfy 0 <= min <= max <= \(Self.maximumReplicas), max >= 1")
        }
        guard (1...100).contains(target) else { throw APIError.invalidRequest("target_cpu_percent must be 1 to 100") }
        return AutoscalingPolicy(minimum: minimum, maximum: maximum, targetCPUPercent: target)
    }

    static func replicas(_ context: RouteContext) throws -> Int64 {
        guard let replicas = context.body.integer("replicas"), (0...Self.maximumReplicas).contains(replicas) else {
            throw APIError.invalidRequest("replicas must be 0 to \(Self.maximumReplicas)")
        }
        return replicas
    }

    static func maxUnavailable(_ context: RouteContext) throws -> Int64? {
        guard let value = context.body.integer("max_unavailable") else { return nil }
        guard (1...Self.maximumReplicas).contains(value) else { throw APIError.invalidRequest("max_unavailable must be 1 to \(Self.maximumReplicas)") }
        return value
    }

    static func minReadySeconds(_ context: RouteContext) throws -> Int64? {
        guard let value = context.body.integer("min_ready_seconds") else { return nil }
        guard (0...3600).contains(value) else { throw APIError.invalidRequest("min_ready_seconds must be 0 to 3600") }
        return value
    }

    func createDeployment(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let name = context.body.string("name") ?? ""
        try Self.checkName(name)
        guard name.count <= 50 else { throw ComputeError.invalidName(name) }
        let imageName = context.body.string("image") ?? ""
        let autoscaling = try Self.autoscalingPolicy(context)
        let replicas = try autoscaling.map { policy in
            let start = context.body.integer("replicas") ?? policy.minimum
            guard (policy.minimum...policy.maximum).contains(start) else {
                throw APIError.invalidRequest("replicas must be between min_replicas and max_replicas")
            }
            return start
        } ?? Self.replicas(context)
        let typeName = context.body.string("type") ?? "small"
        guard let type = InstanceType.named(typeName) else { throw ComputeError.unknownType(typeName) }
        let command = context.body.strings("command") ?? []
        let variables = try Self.environmentVariables(context)
        let maxUnavailable = try Self.maxUnavailable(context) ?? 1
        let minReady = try Self.minReadySeconds(context) ?? 10
        let environment = context.environment
        let now = environment.clock.unixMilliseconds()
        let record = DeploymentRecord(
            id: SecureRandom.identifier(prefix: "dep-", bytes: 8), tenantID: caller.tenantID, name: name, image: imageName, type: type.name,
            vcpus: type.vcpus, memoryMiB: type.memoryMiB, command: command, environment: variables, replicas: replicas, deleting: false,
            reason: nil, failures: 0, retryAt: 0, version: 1, createdAt: now, updatedAt: now, autoscaling: autoscaling, maxUnavailable: maxUnavailable,
            minReadySeconds: minReady)
        return try await context.transaction { db in
            guard try await Self.image(db, tenantID: caller.tenantID, name: imageName) != nil else { throw ComputeError.imageNotFound(imageName) }
            if try await ComputeSchema.deployment(db, tenantID: caller.tenantID, name: name, dialect: environment.database.dialect) != nil {
                throw ComputeError.deploymentExists(name)
            }
            try await Self.reserveReplicas(record.reservedReplicas, of: record, environment, db)
            try await db.query(
                """
                INSERT INTO compute_deployments (\(ComputeSchema.deploymentColumns))
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0, NULL, 0, 0, 1, $11, $11, $12, $13, $14, NULL, 0, 1, $15, 0, $16)
                """,
                [.text(record.id), .text(record.tenantID), .text(name), .text(imageName), .text(type.name), .integer(type.vcpus),
                 .integer(type.memoryMiB), .text(ComputeSchema.encode(command)), .text(ComputeSchema.encode(pairs: variables)),
                 .integer(replicas), .integer(now), autoscaling.map { .integer($0.minimum) } ?? .null,
                 autoscaling.map { .integer($0.maximum) } ?? .null, autoscaling.map { .integer($0.targetCPUPercent) } ?? .null,
                 .integer(maxUnavailable), .integer(minReady)])
            try await DeploymentEvents.record(
                db, deployment: record.id, at: now, .created,
                "created with \(replicas) replicas (revision 1: \(DeploymentEvents.describe(record)))")
            try await environment.tasks.enqueue(Self.reconcileTask(record), in: db)
            Self.log(context, "deployment created", ["tenant-id": "\(caller.tenantID)", "deployment": "\(name)", "replicas": "\(replicas)"])
            return APIResponse.json(201, Self.deploymentShape.json(DeploymentView(record: record, members: []))).tagged(version: 1)
        }
    }

    /// Checks that `adding` more replicas of `deployment` fit the tenant's instance, vCPU and memory quotas.
    static func reserveReplicas(_ adding: Int64, of deployment: DeploymentRecord, _ environment: ServiceEnvironment, _ db: any SQLSession) async throws {
        try await Self.reserve(
            instances: adding, vcpus: adding * deployment.vcpus, memoryMiB: adding * deployment.memoryMiB, tenantID: deployment.tenantID,
            environment, db)
    }

    /// Checks that what grows fits the tenant's instance, vCPU and memory quotas (what shrinks needs no check).
    static func reserve(
        instances: Int64, vcpus: Int64, memoryMiB: Int64, tenantID: String, _ environment: ServiceEnvironment, _ db: any SQLSession
    ) async throws {
        for (quota, adding) in [(Self.instancesQuota, instances), (Self.vcpusQuota, vcpus), (Self.memoryQuota, memoryMiB)] where adding > 0 {
            try await environment.quotas.reserve(quota, tenantID: tenantID, adding: adding, in: db)
        }
    }

    func listDeployments(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let page = try context.page()
        let (items, next) = try await context.environment.database.transaction { db in
            let rows = try await db.query(
                """
                SELECT \(ComputeSchema.deploymentColumns) FROM compute_deployments WHERE tenant_id = $1 AND name > $2 ORDER BY name \
                LIMIT \(page.fetchLimit)
                """, [.text(caller.tenantID), .text(page.after ?? "")])
            let (records, next) = page.finish(rows.map(ComputeSchema.deployment), key: \.name)
            let members = try await ComputeSchema.members(db, of: records.map(\.id))
            return (records.map { DeploymentView(record: $0, members: members[$0.id] ?? []) }, next)
        }
        return .json(200, Self.deploymentList.json(items, nextToken: next))
    }

    private func existingDeployment(_ context: RouteContext, _ db: any SQLSession, forUpdate: Bool = false) async throws -> DeploymentView {
        let caller = try context.authenticated
        let name = context.parameter("name")
        guard
            let record = try await ComputeSchema.deployment(
                db, tenantID: caller.tenantID, name: name, dialect: context.environment.database.dialect, forUpdate: forUpdate)
        else { throw ComputeError.deploymentNotFound(name) }
        return DeploymentView(record: record, members: try await ComputeSchema.members(db, of: [record.id])[record.id] ?? [])
    }

    func getDeployment(_ context: RouteContext) async throws -> APIResponse {
        let view = try await context.environment.database.transaction { db in try await self.existingDeployment(context, db) }
        return APIResponse.json(200, Self.deploymentShape.json(view)).tagged(version: view.record.version)
    }

    func deploymentEvents(_ context: RouteContext) async throws -> APIResponse {
        let page = try context.page()
        guard let after = Int64(page.after ?? "0") else { throw APIError.invalidRequest("next_token is not one this list gave") }
        let caller = try context.authenticated
        let name = context.parameter("name")
        let dialect = context.environment.database.dialect
        let (events, next) = try await context.environment.database.transaction { db in
            // The deployment's row only: its instances are not part of the answer.
            guard let record = try await ComputeSchema.deployment(db, tenantID: caller.tenantID, name: name, dialect: dialect) else {
                throw ComputeError.deploymentNotFound(name)
            }
            return page.finish(try await DeploymentEvents.list(db, deployment: record.id, after: after, limit: page.fetchLimit)) { "\($0.sequence)" }
        }
        return .json(200, Self.deploymentEventList.json(events, nextToken: next))
    }

    /// Scales a deployment and changes what its replicas run: any change of image, type, command
    /// or environment raises its revision, and the reconciler rolls it out.
    func updateDeployment(_ context: RouteContext) async throws -> APIResponse {
        let body = context.body
        let replicas = body.integer("replicas") == nil ? nil : try Self.replicas(context)
        let maxUnavailable = try Self.maxUnavailable(context)
        let minReady = try Self.minReadySeconds(context)
        let type = try body.string("type").map { name in
            guard let type = InstanceType.named(name) else { throw ComputeError.unknownType(name) }
            return type
        }
        let command = body.strings("command")
        let variables = body.object("environment") == nil ? nil : try Self.environmentVariables(context)
        let imageName = body.string("image")
        guard replicas != nil || maxUnavailable != nil || minReady != nil || type != nil || command != nil || variables != nil || imageName != nil
        else {
            throw APIError.invalidRequest("give what to change: replicas, image, type, command, environment, max_unavailable or min_ready_seconds")
        }
        let environment = context.environment
        let now = environment.clock.unixMilliseconds()
        return try await context.transaction { db in
            var view = try await self.existingDeployment(context, db, forUpdate: true)
            try context.requireMatch(version: view.record.version)
            let old = view.record
            guard !old.deleting else { throw ComputeError.deploymentDeleting(old.name) }
            var new = old
            if let replicas {
                guard old.autoscaling == nil else { throw ComputeError.deploymentAutoscaled(old.name) }
                new.replicas = replicas
            }
            if let imageName {
                guard try await Self.image(db, tenantID: old.tenantID, name: imageName) != nil else { throw ComputeError.imageNotFound(imageName) }
                new.image = imageName
            }
            if let type { (new.type, new.vcpus, new.memoryMiB) = (type.name, type.vcpus, type.memoryMiB) }
            if let command { new.command = command }
            if let variables { new.environment = variables }
            if let maxUnavailable { new.maxUnavailable = maxUnavailable }
            if let minReady { new.minReadySeconds = minReady }
            let changed = new.image != old.image || new.type != old.type || new.command != old.command
                || !new.environment.elementsEqual(old.environment, by: { $0 == $1 })
            if changed { new.revision += 1 }
            // The quota counts replicas made or not: what the new count and type add.
            let (oldCount, newCount) = (old.reservedReplicas, new.reservedReplicas)
            try await Self.reserve(
                instances: newCount - oldCount, vcpus: newCount * new.vcpus - oldCount * old.vcpus,
                memoryMiB: newCount * new.memoryMiB - oldCount * old.memoryMiB, tenantID: old.tenantID, environment, db)
            try await db.query(
                """
                UPDATE compute_deployments SET replicas = $2, image = $3, type = $4, vcpus = $5, memory_mib = $6, command = $7, environment = $8,
                max_unavailable = $9, revision = $10, failures = $11, retry_at = $12, reason = $13, min_ready_seconds = $15,
                version = version + 1, updated_at = $14
                WHERE id = $1
                """,
                [.text(old.id), .integer(new.replicas), .text(new.image), .text(new.type), .integer(new.vcpus), .integer(new.memoryMiB),
                 .text(ComputeSchema.encode(new.command)), .text(ComputeSchema.encode(pairs: new.environment)), .integer(new.maxUnavailable),
                 .integer(new.revision), .integer(changed ? 0 : old.failures), .integer(changed ? 0 : old.retryAt),
                 (changed ? nil : old.reason).map(SQLValue.text) ?? .null, .integer(now), .integer(new.minReadySeconds)])
            if new.replicas != old.replicas {
                try await DeploymentEvents.record(db, deployment: old.id, at: now, .scaled, "scaled from \(old.replicas) to \(new.replicas) replicas")
            }
            if changed {
                try await DeploymentEvents.record(
                    db, deployment: old.id, at: now, .updated,
                    "revision \(new.revision): \(DeploymentEvents.describe(new)); rolled out at most \(new.maxUnavailable) unavailable at a time")
            }
            try await environment.tasks.enqueue(Self.reconcileTask(old), in: db)
            Self.log(context, "deployment updated", ["deployment": "\(old.name)", "replicas": "\(new.replicas)", "revision": "\(new.revision)"])
            // A new revision ends the backoff of the old one's failures.
            if changed { (new.failures, new.retryAt, new.reason) = (0, 0, nil) }
            new.version += 1
            new.updatedAt = now
            view.record = new
            return APIResponse.json(200, Self.deploymentShape.json(view)).tagged(version: new.version)
        }
    }

    func deleteDeployment(_ context: RouteContext) async throws -> APIResponse {
        let environment = context.environment
        let now = environment.clock.unixMilliseconds()
        return try await context.transaction { db in
            var view = try await self.existingDeployment(context, db, forUpdate: true)
            try context.requireMatch(version: view.record.version)
            if !view.record.deleting {
                try await db.query(
                    "UPDATE compute_deployments SET deleting = 1, version = version + 1, updated_at = $2 WHERE id = $1",
                    [.text(view.record.id), .integer(now)])
                try await environment.tasks.enqueue(Self.reconcileTask(view.record), in: db)
                try await DeploymentEvents.record(db, deployment: view.record.id, at: now, .deleting, "delete requested: its replicas go, then it")
                Self.log(context, "deployment delete requested", ["deployment": "\(view.record.name)"])
                view.record.deleting = true
                view.record.version += 1
                view.record.updatedAt = now
            }
            return APIResponse.json(202, Self.deploymentShape.json(view)).tagged(version: view.record.version)
        }
    }

    // MARK: - Reconciler

    /// One pass over one deployment (payload `deployment`) or all of them (the schedule): deletes
    /// broken and surplus replicas, makes missing ones, deletes the deployment once it is deleting
    /// and empty. Each deployment in its own fenced transaction: two passes never both make a replica.
    func reconcile(_ context: TaskContext) async throws -> TaskCompletion {
        let ids: [String]
        if case .string(let id)? = context.task.payload["deployment"] {
            ids = [id]
        } else {
            ids = try await context.queue.database.query("SELECT id FROM compute_deployments ORDER BY id").map { $0.text(0) }
        }
        var created = 0
        var deleted = 0
        for id in ids {
            let now = context.queue.now()
            let dialect = context.queue.database.dialect
            let (made, removed) = try await context.fenced { db -> (Int, Int) in
                let lock = dialect == .postgres ? " FOR UPDATE" : ""
                guard
                    let deployment = try await db.query(
                        "SELECT \(ComputeSchema.deploymentColumns) FROM compute_deployments WHERE id = $1\(lock)", [.text(id)]
                    ).first.map(ComputeSchema.deployment)
                else { return (0, 0) }
                return try await self.reconcile(deployment, now: now, db, context)
            }
            created += made
            deleted += removed
        }
        return TaskCompletion(result: .object([("deployments", .int(Int64(ids.count))), ("created", .int(Int64(created))), ("deleted", .int(Int64(deleted)))]))
    }

    private func reconcile(_ deployment: DeploymentRecord, now: Int64, _ db: any SQLSession, _ context: TaskContext) async throws -> (Int, Int) {
        let members = try await ComputeSchema.members(db, of: [deployment.id])[deployment.id] ?? []
        if deployment.deleting && members.isEmpty {
            try await DeploymentEvents.delete(db, deployment: deployment.id)
            try await db.query("DELETE FROM compute_deployments WHERE id = $1", [.text(deployment.id)])
            context.logger.info("deployment deleted", metadata: ["deployment": "\(deployment.id)"])
            return (0, 0)
        }
        let plan = DeploymentPlanner.plan(
            replicas: deployment.replicas, revision: deployment.revision, maxUnavailable: deployment.maxUnavailable,
            minReady: deployment.minReadySeconds * 1000, now: now, deleting: deployment.deleting, members: members, mayCreate: now >= deployment.retryAt)
        // Failures back replacements off; a replica running again ends that.
        var failures = deployment.failures
        var reason = deployment.reason
        if plan.failed > 0 {
            failures += Int64(plan.failed)
            let failedReasons = members.filter { plan.broken.contains($0.id) && $0.state != .unknown }.compactMap(\.reason)
            reason = failedReasons.last.map { "a replica failed: \($0)" } ?? reason
        } else if members.contains(where: { $0.state == .ready }) && failures > 0 {
            failures = 0
            reason = nil
        }
        let retryAt = plan.failed > 0 ? now + DeploymentPlanner.backoff(failures: failures) : deployment.retryAt
        let byID = Dictionary(members.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        for id in plan.delete {
            try await ComputeSchema.update(db, id: id, state: .deleting, reason: nil, now: now)
            try await context.queue.enqueue(
                NewTask(kind: Self.deleteKind, tenantID: deployment.tenantID, payload: .object([("instance", .string(id))]), maxAttempts: 20), in: db)
            guard !deployment.deleting, let member = byID[id] else { continue }
            let (kind, message) = Self.deletionEvent(member, plan: plan, deployment: deployment, retryIn: retryAt - now)
            try await DeploymentEvents.record(db, deployment: deployment.id, at: now, kind, instance: member.name, message)
        }
        var made = 0
        if plan.create > 0 {
            if let image = try await Self.image(db, tenantID: deployment.tenantID, name: deployment.image) {
                for _ in 0..<plan.create {
                    let instance = InstanceRecord(
                        id: SecureRandom.identifier(prefix: "i-", bytes: 8), tenantID: deployment.tenantID,
                        name: deployment.name + "-" + SecureRandom.identifier(prefix: "", bytes: 3).prefix(5), image: deployment.image,
                        imageDigest: image.digest, type: deployment.type, backend: .docker, vcpus: deployment.vcpus, memoryMiB: deployment.memoryMiB,
                        command: deployment.command, environment: deployment.environment, restart: "no", state: .pending, reason: nil, host: nil,
                        backendID: nil, version: 1, createdAt: now, updatedAt: now, deploymentID: deployment.id, revision: deployment.revision)
                    // A name another instance of the tenant has: try again on the next pass.
                    let taken = try await db.query(
                        "SELECT 1 FROM compute_instances WHERE tenant_id = $1 AND name = $2", [.text(instance.tenantID), .text(instance.name)])
                    guard taken.isEmpty else { continue }
                    try await ComputeSchema.insert(db, instance)
                    try await context.queue.enqueue(
                        NewTask(kind: Self.provisionKind, tenantID: instance.tenantID, payload: .object([("instance", .string(instance.id))]), maxAttempts: 10),
                        in: db)
                    try await DeploymentEvents.record(
                        db, deployment: deployment.id, at: now, .replicaCreated, instance: instance.name,
                        "made replica \(instance.name) (revision \(deployment.revision))")
                    made += 1
                }
            } else {
                reason = "its image \(deployment.image) was deleted"
            }
        }
        // Every replica runs the revision: said once per revision.
        let current = members.filter { $0.state != .deleting }
        let rolledOut = !deployment.deleting && plan.delete.isEmpty && made == 0 && current.count == deployment.replicas
            && current.allSatisfy { $0.state == .ready && $0.revision == deployment.revision } && deployment.rolledOut < deployment.revision
        if rolledOut {
            try await DeploymentEvents.record(
                db, deployment: deployment.id, at: now, .rolledOut, "revision \(deployment.revision) runs on all \(deployment.replicas) replicas")
        }
        if failures != deployment.failures || reason != deployment.reason || retryAt != deployment.retryAt || rolledOut {
            try await db.query(
                "UPDATE compute_deployments SET failures = $2, reason = $3, retry_at = $4, rolled_out = $5 WHERE id = $1",
                [.text(deployment.id), .integer(failures), reason.map(SQLValue.text) ?? .null, .integer(retryAt),
                 .integer(rolledOut ? deployment.revision : deployment.rolledOut)])
        }
        let replaced = deployment.deleting ? 0 : plan.delete.count
        if replaced > 0 || made > 0 {
            self.metrics.counter("replicas_deleted_total", help: "Replicas a deployment's reconciler deleted (broken, surplus or outdated).")
                .increment(by: Int64(replaced))
            self.metrics.counter("replicas_created_total", help: "Replicas a deployment's reconciler made.").increment(by: Int64(made))
        }
        if made > 0 || !plan.delete.isEmpty {
            context.logger.info(
                "deployment reconciled",
                metadata: ["deployment": "\(deployment.id)", "created": "\(made)", "deleted": "\(plan.delete.count)", "revision": "\(deployment.revision)"])
        }
        return (made, plan.delete.count)
    }

    /// The event of a replica the reconciler deletes, and why it does.
    static func deletionEvent(_ member: InstanceRecord, plan: DeploymentPlanner.Plan, deployment: DeploymentRecord, retryIn: Int64)
        -> (DeploymentEvent.Kind, String)
    {
        if plan.surplus.contains(member.id) {
            return (.replicaDeleted, "deleting replica \(member.name): surplus to \(deployment.replicas) replicas")
        }
        if plan.outdated.contains(member.id) {
            return (.replicaDeleted, "replacing replica \(member.name): it runs revision \(member.revision), not \(deployment.revision)")
        }
        let what: String
        switch member.state {
        case .unknown: what = "lost its host \(member.host ?? "")"
        case .stopped: what = "exited" + (member.reason.map { ": \($0)" } ?? "")
        default: what = "failed" + (member.reason.map { ": \($0)" } ?? "")
        }
        let wait = member.state != .unknown && retryIn > 0 ? " (the next replica is made in \(retryIn / 1000) s)" : ""
        return (.replicaFailed, "replica \(member.name) \(what); replacing it\(wait)")
    }
}
