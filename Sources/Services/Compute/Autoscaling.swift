import Database
import DockerEngine
import Logging
import Prometheus
import ServiceContract
import SQLite

/// How a deployment scales itself: between `minimum` and `maximum` replicas, towards a mean CPU use.
struct AutoscalingPolicy: Sendable, Equatable {
    var minimum: Int64
    var maximum: Int64
    /// Percent of a replica's vCPUs.
    var targetCPUPercent: Int64
}

/// The autoscaler's rule, decided from measurements alone (the rule of Kubernetes' horizontal pod
/// autoscaler): `ceil(measured × mean / target)` within the bounds, unchanged within 10 % of the
/// target, and no new change soon after the last one (15 s before scaling up again, so that new
/// replicas start and count; 30 s before scaling down, so that a short lull does not stop replicas).
enum Autoscaler {
    /// How often the autoscaler looks (the task `compute.autoscale`).
    static let period: Duration = .seconds(10)
    static let tolerance = 0.1
    static let upCooldown: Int64 = 15_000
    static let downCooldown: Int64 = 30_000

    /// - Parameters:
    ///   - replicas: The deployment's replicas now.
    ///   - cpuPercents: The CPU use of each replica that runs and could be measured.
    ///   - scaledAt: When the replicas last changed (unix milliseconds).
    static func desired(replicas: Int64, cpuPercents: [Double], policy: AutoscalingPolicy, scaledAt: Int64, now: Int64) -> Int64 {
        let clamped = min(max(replicas, policy.minimum), policy.maximum)
        guard !cpuPercents.isEmpty, clamped == replicas else { return clamped }
        let mean = cpuPercents.reduce(0, +) / Double(cpuPercents.count)
        let ratio = mean / Double(policy.targetCPUPercent)
        guard abs(ratio - 1) > Self.tolerance else { return replicas }
        let wanted = min(max(Int64((Double(cpuPercents.count) * ratio).rounded(.up)), policy.minimum), policy.maximum)
        if wanted > replicas && now - scaledAt < Self.upCooldown { return replicas }
        if wanted < replicas && now - scaledAt < Self.downCooldown { return replicas }
        return wanted
    }

    /// A replica's CPU use in percent of its vCPUs, from the engine's two samples.
    static func percent(_ stats: ContainerStats, vcpus: Int64) -> Double? {
        guard let used = stats.cpusUsed, vcpus > 0 else { return nil }
        return used / Double(vcpus) * 100
    }
}

extension ComputeService {
    /// Measures the running replicas of every auto-scaling deployment and sets its replicas by
    /// ``Autoscaler/desired(replicas:cpuPercents:policy:scaledAt:now:)``; the reconciler then makes
    /// or deletes instances. A replica whose engine does not answer is left out of the mean.
    func autoscale(_ context: TaskContext) async throws -> TaskCompletion {
        let database = context.queue.database
        let deployments = try await database.query(
            "SELECT \(ComputeSchema.deploymentColumns) FROM compute_deployments WHERE target_cpu IS NOT NULL AND deleting = 0 ORDER BY id"
        ).map(ComputeSchema.deployment)
        guard !deployments.isEmpty else { return TaskCompletion(result: .object([("deployments", .int(0))])) }
        let hosts = Dictionary(
            try await database.query("SELECT \(ComputeSchema.hostColumns) FROM compute_hosts").map(ComputeSchema.host).map { ($0.name, $0) },
            uniquingKeysWith: { first, _ in first })
        var scaled = 0
        for deployment in deployments {
            guard let policy = deployment.autoscaling else { continue }
            let members = try await database.transaction { db in try await ComputeSchema.members(db, of: [deployment.id]) }[deployment.id] ?? []
            let running = members.filter { $0.state == .ready }
            let logger = context.logger
            let percents = await withTaskGroup(of: Double?.self) { group -> [Double] in
                for member in running {
                    guard let hostName = member.host, let host = hosts[hostName] else { continue }
                    group.addTask {
                        do {
                            return Autoscaler.percent(try await host.engine.stats(member.containerName), vcpus: member.vcpus)
                        } catch {
                            logger.warning("replica not measured", metadata: ["instance": "\(member.id)", "error": "\(error)"])
                            return nil
                        }
                    }
                }
                var found: [Double] = []
                for await percent in group { if let percent { found.append(percent) } }
                return found
            }
            let now = context.queue.now()
            let desired = Autoscaler.desired(
                replicas: deployment.replicas, cpuPercents: percents, policy: policy, scaledAt: deployment.scaledAt, now: now)
            let mean: SQLValue = percents.isEmpty ? .null : .integer(Int64((percents.reduce(0, +) / Double(percents.count)).rounded()))
            let changed = desired != deployment.replicas
            try await context.fenced { db in
                // Nothing changed meanwhile (a delete, another pass): else the next pass decides.
                let updated = try await db.query(
                    """
                    UPDATE compute_deployments SET cpu_percent = $3, replicas = $4, scaled_at = $5, version = version + $6
                    WHERE id = $1 AND version = $2 AND deleting = 0 RETURNING id
                    """,
                    [.text(deployment.id), .integer(deployment.version), mean, .integer(desired), .integer(changed ? now : deployment.scaledAt),
                     .integer(changed ? 1 : 0)])
                if changed && !updated.isEmpty {
                    try await context.queue.enqueue(Self.reconcileTask(deployment), in: db)
                    try await DeploymentEvents.record(
                        db, deployment: deployment.id, at: now, .autoscaled,
                        "auto-scaled from \(deployment.replicas) to \(desired) replicas: their mean CPU use was \(Self.percentText(mean))"
                            + " against a target of \(policy.targetCPUPercent) %")
                }
            }
            if changed {
                scaled += 1
                self.metrics.counter(
                    "autoscale_changes_total", labels: [("direction", desired > deployment.replicas ? "up" : "down")],
                    help: "Changes of an auto-scaling group's replicas, by direction."
                ).increment()
                context.logger.info(
                    "deployment auto-scaled",
                    metadata: ["deployment": "\(deployment.id)", "from": "\(deployment.replicas)", "to": "\(desired)", "cpu-percent": "\(mean)"])
            }
        }
        return TaskCompletion(result: .object([("deployments", .int(Int64(deployments.count))), ("scaled", .int(Int64(scaled)))]))
    }

    static func percentText(_ mean: SQLValue) -> String {
        if case .integer(let percent) = mean { "\(percent) %" } else { "not measured" }
    }
}
