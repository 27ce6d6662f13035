import Cluster
import Foundation
import Gossip
import Membership
import Replication
import Ring
import S3API

/// `/_admin/storage/…` on the S3 port, for `cloud storage status` and `cloud storage layout`, and
/// `/_admin/tenants/…` for tenants' access keys and buckets, and `/_admin/signing-keys` for the SigV4
/// keys other services verify tenants' requests with (``TenantAdmin``).
/// Only the root key may call it.
///
/// - `GET /_admin/storage/ping`: `{"status": "ok", "mode"}`; the control plane's readiness check.
///
/// - `GET /_admin/storage/status`: this node, the quorum policy, every member with its state, and the
///   layout with the partitions each node owns.
/// - `POST /_admin/storage/layout` with `{"add": [{"id", "zone", "capacity"}], "remove": ["id"],
///   "update": [{"id", "zone", "capacity"}], "replication": n, "dryRun": bool}`: the partition moves
///   the change causes, applied unless `dryRun`.
struct StorageAdmin: AdminAPI {
    let rootAccessKey: String
    let cluster: ClusterNode?
    let tenants: TenantAdmin

    struct MemberStatus: Codable {
        var id: String
        var uid: UInt64
        var state: String
        var incarnation: UInt64
        var s3Address: String
        var rpcAddress: String
        var gossipAddress: String
        var zone: String
        var capacity: UInt64
        var partitions: Int
        /// Repair progress the member last published: partitions it holds but no longer owns and
        /// their bytes (still to move to their new owners), partitions out of sync in its last round.
        var partitionsToMove: Int?
        var bytesToMove: Int?
        var partitionsOutOfSync: Int?
        /// ok, full or readonly (as the member announced it).
        var disk: String?
    }

    struct LayoutNode: Codable {
        var id: String
        var zone: String
        var capacity: UInt64
        var partitions: Int?
    }

    struct LayoutStatus: Codable {
        var version: UInt64
        var replication: Int
        var partitions: Int
        var nodes: [LayoutNode]
    }

    struct Status: Codable {
        var mode: String
        var node: String?
        var replication: Int?
        var writeQuorum: Int?
        var readQuorum: Int?
        var members: [MemberStatus]
        var layout: LayoutStatus?
    }

    struct LayoutRequest: Codable {
        var add: [LayoutNode]?
        var remove: [String]?
        var update: [LayoutNode]?
        var replication: Int?
        var dryRun: Bool?
    }

    struct LayoutAnswer: Codable {
        var applied: Bool
        var oldVersion: UInt64?
        var version: UInt64
        var partitionsMoved: Int
        var replicaSlotsMoved: Int
        var moves: [String]
        var layout: LayoutStatus
    }

    func handle(method: String, path: String, query: [String: String], body: [UInt8], accessKey: String) async throws -> AdminResponse {
        guard accessKey == self.rootAccessKey else {
            throw AdminError(403, "AccessDenied", "Storage administration needs the root key.")
        }
        let parts = path.split(separator: "/")
        if parts.first == "tenants" {
            return try await self.tenants.handle(method: method, parts: parts, body: body)
        }
        if method == "POST", path == "/signing-keys" {
            return try await self.tenants.signingKey(body: body)
        }
        switch (method, path) {
        case ("GET", "/storage/ping"):
            return try Self.json(["status": "ok", "mode": self.cluster == nil ? "single" : "cluster"])
        case ("GET", "/storage/status"):
            return try Self.json(self.status())
        case ("GET", "/storage/layout"):
            guard let layout = self.cluster?.view.layout else {
                throw AdminError(404, "NoLayout", "This node has no layout yet.")
            }
            return try Self.json(Self.describe(layout))
        case ("POST", "/storage/layout"):
            return try Self.json(try await self.changeLayout(body))
        default:
            throw AdminError(404, "NoSuchAdminRoute", "No admin route \(method) \(path).")
        }
    }

    static func json(_ value: some Encodable) throws -> AdminResponse {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return AdminResponse(json: String(decoding: try encoder.encode(value), as: UTF8.self) + "\n")
    }

    static func describe(_ layout: Ring.Layout) -> LayoutStatus {
        let table = layout.table
        return LayoutStatus(
            version: layout.version,
            replication: layout.replicationFactor,
            partitions: layout.partitionCount,
            nodes: layout.nodes.map {
                LayoutNode(id: $0.id.rawValue, zone: $0.zone, capacity: $0.capacity, partitions: table.partitions(of: $0.id).count)
            }
        )
    }

    func status() -> Status {
        guard let cluster else {
            return Status(mode: "single", members: [])
        }
        let layout = cluster.view.layout
        let table = layout?.table
        let members = cluster.membership.members.map { member in
            let progress = cluster.repairProgress(of: member.id.rawValue)
            return MemberStatus(
                id: member.id.rawValue, uid: member.uid, state: member.state.description, incarnation: member.incarnation,
                s3Address: member.s3Address, rpcAddress: member.rpcAddress, gossipAddress: member.gossipAddress,
                zone: member.zone, capacity: member.capacity,
                partitions: table?.partitions(of: Ring.NodeID(member.id.rawValue)).count ?? 0,
                partitionsToMove: progress?.toMove, bytesToMove: progress?.bytesToMove, partitionsOutOfSync: progress?.outOfSync,
                disk: cluster.view.diskState(of: member.id.rawValue).description)
        }
        let policy = cluster.settings.policy
        return Status(
            mode: "cluster", node: cluster.nodeID, replication: policy.replicas, writeQuorum: policy.writeQuorum,
            readQuorum: policy.readQuorum, members: members.sorted { $0.id < $1.id }, layout: layout.map(Self.describe))
    }

    func changeLayout(_ body: [UInt8]) async throws -> LayoutAnswer {
        guard let cluster else {
            throw AdminError(409, "NotClustered", "This node runs alone; start it with --rpc-address and --gossip-address to cluster.")
        }
        let request: LayoutRequest
        do {
            request = try JSONDecoder().decode(LayoutRequest.self, from: Data(body))
        } catch {
            throw AdminError(400, "MalformedJSON", "The layout change is not valid JSON: \(error)")
        }
        var changes: [Ring.Change] = []
        for node in request.add ?? [] {
            changes.append(.add(Ring.Node(id: Ring.NodeID(node.id), zone: node.zone, capacity: node.capacity)))
        }
        for node in request.update ?? [] {
            changes.append(.update(Ring.Node(id: Ring.NodeID(node.id), zone: node.zone, capacity: node.capacity)))
        }
        for id in request.remove ?? [] { changes.append(.remove(Ring.NodeID(id))) }
        if let replication = request.replication { changes.append(.setReplicationFactor(replication)) }
        guard !changes.isEmpty else { throw AdminError(400, "EmptyChange", "Name nodes to add, update or remove.") }
        let old = cluster.view.layout
        let next: Ring.Layout
        do {
            if request.dryRun ?? false {
                let base = try old ?? Ring.Layout(replicationFactor: cluster.settings.policy.replicas, partitionPower: cluster.settings.partitionPower)
                next = try base.applying(changes)
            } else {
                next = try await cluster.change(changes).new
            }
        } catch let error as Ring.LayoutError {
            throw AdminError(400, "InvalidLayoutChange", error.description)
        }
        let moves = old.map { Ring.moves(from: $0.table, to: next.table) } ?? []
        return LayoutAnswer(
            applied: !(request.dryRun ?? false), oldVersion: old?.version, version: next.version, partitionsMoved: moves.count,
            replicaSlotsMoved: moves.reduce(0) { $0 + $1.to.count }, moves: moves.prefix(50).map(\.description),
            layout: Self.describe(next))
    }
}
