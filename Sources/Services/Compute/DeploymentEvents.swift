import Database
import ServiceContract
import SQLite

/// Something that happened to a deployment: what `cloud deployments events` lists, oldest first.
struct DeploymentEvent: Sendable, Equatable {
    enum Kind: String, Sendable, CaseIterable {
        /// The deployment was created.
        case created
        /// Its user changed its replicas.
        case scaled
        /// Its user changed what a replica runs: a new revision, rolled out.
        case updated
        /// The autoscaler changed its replicas.
        case autoscaled
        /// The reconciler made a replica.
        case replicaCreated = "replica-created"
        /// A replica failed, exited or lost its host; the reconciler deletes and replaces it.
        case replicaFailed = "replica-failed"
        /// The reconciler deleted a replica it no longer needs (surplus, or of an older revision).
        case replicaDeleted = "replica-deleted"
        /// Every replica runs the deployment's revision.
        case rolledOut = "rolled-out"
        /// Its user deleted it.
        case deleting
    }

    /// Rises by one per event of the deployment.
    var sequence: Int64
    /// Unix milliseconds.
    var at: Int64
    var kind: Kind
    /// The replica it is about, if any.
    var instance: String?
    var message: String
}

/// A deployment's events: written in the transaction that does what they tell, after the
/// deployment's row is locked (so that two writers never take the same sequence), the last
/// ``kept`` of them kept, and deleted with the deployment.
enum DeploymentEvents {
    static let kept: Int64 = 200

    static func record(
        _ db: any SQLSession, deployment: String, at: Int64, _ kind: DeploymentEvent.Kind, instance: String? = nil, _ message: String
    ) async throws {
        let next = (try await db.query(
            "SELECT COALESCE(MAX(sequence), 0) + 1 FROM compute_deployment_events WHERE deployment_id = $1", [.text(deployment)]
        ).first?.int(0)) ?? 1
        try await db.query(
            "INSERT INTO compute_deployment_events (deployment_id, sequence, at, kind, instance, message) VALUES ($1, $2, $3, $4, $5, $6)",
            [.text(deployment), .integer(next), .integer(at), .text(kind.rawValue), instance.map(SQLValue.text) ?? .null, .text(message)])
        if next > Self.kept {
            try await db.query(
                "DELETE FROM compute_deployment_events WHERE deployment_id = $1 AND sequence <= $2", [.text(deployment), .integer(next - Self.kept)])
        }
    }

    /// The events after sequence `after`, at most `limit` of them.
    static func list(_ db: any SQLSession, deployment: String, after: Int64 = 0, limit: Int = 1000) async throws -> [DeploymentEvent] {
        try await db.query(
            """
            SELECT sequence, at, kind, instance, message FROM compute_deployment_events WHERE deployment_id = $1 AND sequence > $2 \
            ORDER BY sequence LIMIT \(limit)
            """,
            [.text(deployment), .integer(after)]
        ).map { row in
            DeploymentEvent(
                sequence: row.int(0), at: row.int(1), kind: DeploymentEvent.Kind(rawValue: row.text(2)) ?? .updated, instance: row.optionalText(3),
                message: row.text(4))
        }
    }

    static func delete(_ db: any SQLSession, deployment: String) async throws {
        try await db.query("DELETE FROM compute_deployment_events WHERE deployment_id = $1", [.text(deployment)])
    }

    /// What a replica of `revision` runs, said in an event.
    static func describe(_ deployment: DeploymentRecord) -> String {
        let command = deployment.command.isEmpty ? "its image's command" : deployment.command.joined(separator: " ")
        return "image \(deployment.image), type \(deployment.type), \(command)"
            + (deployment.environment.isEmpty ? "" : ", \(deployment.environment.count) environment variables")
    }
}

extension ComputeService {
    static let deploymentEventShape = ResponseShape<DeploymentEvent>("DeploymentEvent") {
        $0.integer("sequence", "Rises by one per event of the deployment.") { $0.sequence }
        $0.time("time") { $0.at }
        $0.enumeration("kind", DeploymentEvent.Kind.allCases.map(\.rawValue)) { $0.kind.rawValue }
        $0.optionalString("instance", "The replica it is about.") { $0.instance }
        $0.string("message") { $0.message }
    }

    static let deploymentEventList = ListShape("DeploymentEventList", itemsKey: "events", item: Self.deploymentEventShape)
}
