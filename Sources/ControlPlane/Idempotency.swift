import Database
import SQLite
import Synchronization
import Hashing
public import ServiceContract
import Synchronization

/// `Idempotency-Key` on every create (a POST answered 201): a retried request with the same key
/// returns the first answer and never makes a second resource.
///
/// Keys are scoped to the caller's tenant and user and kept for ``retention`` milliseconds. The first
/// request claims the key (a row in `idempotency_keys`, state `running`); a retry while it runs gets
/// 409 `request_in_progress`; a retry with another method, path or body gets 422
/// `idempotency_key_reused`. A handler that writes through ``RouteContext/transaction(_:)`` stores
/// its answer in the same transaction as the resource, so a crash leaves both or neither; other
/// handlers' answers are stored right after they return. A failed request releases the key. A claim
/// older than ``abandonAfter`` (its process died) may be taken over by a retry.
enum Idempotency {
    /// 24 hours.
    static let retention: Int64 = 86_400_000
    /// A minute: longer than any request may take.
    static let abandonAfter: Int64 = 60_000

    enum Outcome {
        case claimed(Claim)
        case replay(APIResponse)
        case inProgress
        case mismatch
        /// The first request's answer showed a secret, which is not kept.
        case secretNotKept
    }

    /// The key the request carries: 1 to 255 visible ASCII characters.
    static func key(of request: APIRequest) throws(APIError) -> String? {
        guard let key = request.headers["idempotency-key"] else { return nil }
        guard !key.isEmpty, key.utf8.count <= 255, key.unicodeScalars.allSatisfy({ $0.value > 32 && $0.value < 127 }) else {
            throw APIError.invalidRequest("Idempotency-Key must be 1 to 255 visible ASCII characters")
        }
        return key
    }

    static func requestHash(_ request: APIRequest) -> String {
        var bytes = Array("\(request.method) \(request.path)\n".utf8)
        bytes += request.body
        return Hex.encode(Digests.sha256(bytes))
    }

    /// Claims `key` for this request, or tells what became of the request that claimed it first.
    static func claim(
        _ database: any SQLDatabase, tenantID: String, userID: String, key: String, hash: String, now: Int64
    ) async throws -> Outcome {
        try await database.transaction { db in
            let scope: [SQLValue] = [.text(tenantID), .text(userID), .text(key)]
            // Forget answers past their retention (so the key can be used afresh).
            try await db.query(
                "DELETE FROM idempotency_keys WHERE tenant_id = $1 AND user_id = $2 AND idempotency_key = $3 AND created_at < $4",
                scope + [.integer(now - Self.retention)])
            let inserted = try await db.query(
                """
                INSERT INTO idempotency_keys (tenant_id, user_id, idempotency_key, request_hash, state, created_at)
                VALUES ($1, $2, $3, $4, 'running', $5) ON CONFLICT DO NOTHING RETURNING tenant_id
                """, scope + [.text(hash), .integer(now)])
            if !inserted.isEmpty { return .claimed(Claim(tenantID: tenantID, userID: userID, key: key)) }
            guard
                let row = try await db.query(
                    """
                    SELECT request_hash, state, status, headers, body, created_at FROM idempotency_keys
                    WHERE tenant_id = $1 AND user_id = $2 AND idempotency_key = $3
                    """, scope
                ).first
            else { return .inProgress }
            guard row.text(0) == hash else { return .mismatch }
            if row.text(1) == "running" {
                guard row.int(5) < now - Self.abandonAfter else { return .inProgress }
                let taken = try await db.query(
                    """
                    UPDATE idempotency_keys SET created_at = $4 WHERE tenant_id = $1 AND user_id = $2 AND idempotency_key = $3
                    AND state = 'running' AND created_at = $5 RETURNING tenant_id
                    """, scope + [.integer(now), .integer(row.int(5))])
                return taken.isEmpty ? .inProgress : .claimed(Claim(tenantID: tenantID, userID: userID, key: key))
            }
            if row.text(1) == "secret" { return .secretNotKept }
            var headers: [(String, String)] = []
            if case .array(let pairs) = JSONValue.parse(Array(row.text(3).utf8)) ?? .null {
                for case .array(let pair) in pairs where pair.count == 2 {
                    if case .string(let name) = pair[0], case .string(let value) = pair[1] { headers.append((name, value)) }
                }
            }
            headers.append(("Idempotent-Replayed", "true"))
            return .replay(APIResponse(status: Int(row.int(2)), headers: headers, body: Array(row.text(4).utf8)))
        }
    }

    /// The claim of one request on its key: stores its answer, or releases the key when it failed.
    final class Claim: IdempotencyRecorder, Sendable {
        let tenantID: String
        let userID: String
        let key: String
        /// Whether the answer was written through ``record(_:in:)`` (in the handler's transaction).
        let recorded = Mutex(false)
        /// Whether the answer shows a secret that must not be kept.
        let revealsSecret = Mutex(false)

        init(tenantID: String, userID: String, key: String) {
            self.tenantID = tenantID
            self.userID = userID
            self.key = key
        }

        func record(_ response: APIResponse, in session: any SQLSession) async throws {
            let secret = self.revealsSecret.withLock { $0 }
            let headers: JSONValue = .array(response.headers.map { .array([.string($0.0), .string($0.1)]) })
            try await session.query(
                """
                UPDATE idempotency_keys SET state = $4, status = $5, headers = $6, body = $7
                WHERE tenant_id = $1 AND user_id = $2 AND idempotency_key = $3
                """,
                [
                    .text(self.tenantID), .text(self.userID), .text(self.key), .text(secret ? "secret" : "done"),
                    .integer(Int64(response.status)), secret ? .null : .text(headers.serialized()),
                    secret ? .null : .text(String(decoding: response.body, as: UTF8.self)),
                ])
            self.recorded.withLock { $0 = true }
        }

        /// After the handler: stores a success not stored yet, or releases the key after a failure.
        func finish(_ response: APIResponse?, database: any SQLDatabase) async throws {
            if let response, (200..<300).contains(response.status) {
                guard !self.recorded.withLock({ $0 }) else { return }
                try await database.transaction { db in try await self.record(response, in: db) }
            } else {
                try await database.query(
                    "DELETE FROM idempotency_keys WHERE tenant_id = $1 AND user_id = $2 AND idempotency_key = $3 AND state = 'running'",
                    [.text(self.tenantID), .text(self.userID), .text(self.key)])
            }
        }
    }
}

/// The host's ``QuotaLedger``: limits from `tenant_quotas` or the defaults, use counted by the
/// quota's declaration, both in the caller's transaction; on PostgreSQL the tenant's row is locked
/// first so that the tenant's quota-checked creations run one at a time.
struct HostQuotaLedger: QuotaLedger {
    let quotas: [QuotaSpec]
    let defaults: QuotaDefaults
    let dialect: SQLDialect

    func reserve(_ resource: QuotaResource, tenantID: String, adding: Int64, in session: any SQLSession) async throws {
        guard let spec = self.quotas.first(where: { $0.resource == resource }), let usage = spec.usage else {
            preconditionFailure("the quota \(resource) is not declared with a usage count")
        }
        if self.dialect == .postgres {
            try await session.query("SELECT id FROM tenants WHERE id = $1 FOR UPDATE", [.text(tenantID)])
        }
        let limit =
            try await session.query(
                "SELECT max_value FROM tenant_quotas WHERE tenant_id = $1 AND resource = $2", [.text(tenantID), .text(resource.rawValue)]
            ).first?.int(0) ?? self.defaults.limit(resource)
        let current = try await usage(tenantID, session)
        let (total, overflow) = current.addingReportingOverflow(adding)
        if overflow || total > limit { throw QuotaExceeded(resource: resource, limit: limit, current: current) }
    }
}
