public import ServiceContract
import Database
import SQLite

/// A member of a tenant with the roles bound to them there.
public struct MemberRecord: Sendable, Equatable {
    public var userID: String
    public var email: String
    public var name: String
    /// Role names, sorted.
    public var roles: [String]
    /// When they became a member (unix seconds).
    public var joinedAt: Int64
}

/// The limits a tenant gets unless a platform operator set others: the declared defaults of the
/// host's and the services' quotas (``ServiceCatalog/quotaDefaults``), changed by `--quota`.
public struct QuotaDefaults: Sendable, Equatable {
    public var limits: [QuotaResource: Int64] = [.apiKeys: 100, .members: 100]

    public init() {}

    /// These defaults with `overrides` taking precedence.
    public func merging(_ overrides: QuotaDefaults) -> QuotaDefaults {
        var merged = self
        merged.limits.merge(overrides.limits) { _, new in new }
        return merged
    }

    /// The default for `resource`; a resource nobody configured is unlimited.
    public func limit(_ resource: QuotaResource) -> Int64 { self.limits[resource] ?? Int64.max }
}

/// Tenants (creation, members) and their quotas.
extension ControlStore {
    /// Creates a tenant with `owner` as its member, bound to the admin role.
    public func createTenant(_ tenant: TenantRecord, owner userID: String, adminBindingID: String) async throws {
        try await self.transaction { db in
            try await db.query(
                "INSERT INTO tenants (id, name, personal_user_id, created_at) VALUES ($1, $2, NULL, $3)",
                [.text(tenant.id), .text(tenant.name), .integer(tenant.createdAt)])
            try await db.query(
                "INSERT INTO memberships (tenant_id, user_id, created_at) VALUES ($1, $2, $3)",
                [.text(tenant.id), .text(userID), .integer(tenant.createdAt)])
            try await db.query(
                "INSERT INTO role_bindings (id, tenant_id, user_id, role_id, created_at) VALUES ($1, $2, $3, $4, $5)",
                [.text(adminBindingID), .text(tenant.id), .text(userID), .text(BuiltinRole.admin.id), .integer(tenant.createdAt)])
        }
    }

    /// The tenant's members and their roles there, by email.
    public func members(tenantID: String) async throws -> [MemberRecord] {
        let rows = try await self.query(
            """
            SELECT u.id, u.email, u.name, m.created_at, r.name FROM memberships m JOIN users u ON u.id = m.user_id
            LEFT JOIN role_bindings b ON b.tenant_id = m.tenant_id AND b.user_id = m.user_id
            LEFT JOIN roles r ON r.id = b.role_id
            WHERE m.tenant_id = $1 ORDER BY u.email, r.name
            """, [.text(tenantID)])
        var members: [MemberRecord] = []
        for row in rows {
            if members.last?.userID != row.text(0) {
                members.append(MemberRecord(userID: row.text(0), email: row.text(1), name: row.text(2), roles: [], joinedAt: row.int(3)))
            }
            if let role = row.optionalText(4) { members[members.count - 1].roles.append(role) }
        }
        return members
    }

    /// Takes a user out of a tenant: their bindings and membership there go, and their keys acting
    /// there are revoked.
    /// - Returns: How many keys were revoked.
    /// - Throws: ``ControlStoreError/notFound(_:)`` when they are not a member;
    ///   ``ControlStoreError/inUse(_:)`` when they hold the tenant's last admin binding.
    public func removeMember(tenantID: String, userID: String, at now: Int64) async throws -> Int {
        try await self.transaction { db in
            let admins = try await db.query(
                "SELECT user_id FROM role_bindings WHERE tenant_id = $1 AND role_id = $2", [.text(tenantID), .text(BuiltinRole.admin.id)])
            if admins.contains(where: { $0.text(0) == userID }) && !admins.contains(where: { $0.text(0) != userID }) {
                throw ControlStoreError.inUse("the tenant's last admin")
            }
            let removed = try await db.query(
                "DELETE FROM memberships WHERE tenant_id = $1 AND user_id = $2 RETURNING user_id", [.text(tenantID), .text(userID)])
            if removed.isEmpty { throw ControlStoreError.notFound("no member \(userID)") }
            try await db.query("DELETE FROM role_bindings WHERE tenant_id = $1 AND user_id = $2", [.text(tenantID), .text(userID)])
            return try await db.query(
                "UPDATE api_keys SET revoked_at = $3 WHERE tenant_id = $1 AND user_id = $2 AND revoked_at IS NULL RETURNING id",
                [.text(tenantID), .text(userID), .integer(now)]
            ).count
        }
    }

    /// Keys acting in the tenant that are neither revoked nor expired at `now`.
    public func activeKeyCount(tenantID: String, now: Int64) async throws -> Int64 {
        try await self.query(
            """
            SELECT COUNT(*) FROM api_keys WHERE tenant_id = $1 AND revoked_at IS NULL
            AND (expires_at IS NULL OR expires_at > $2)
            """, [.text(tenantID), .integer(now)]
        ).first?.int(0) ?? 0
    }

    public func memberCount(tenantID: String) async throws -> Int64 {
        try await self.query("SELECT COUNT(*) FROM memberships WHERE tenant_id = $1", [.text(tenantID)]).first?.int(0) ?? 0
    }

    /// The limits set for the tenant by an operator (without the defaults).
    public func quotaOverrides(tenantID: String) async throws -> [QuotaResource: Int64] {
        var limits: [QuotaResource: Int64] = [:]
        for row in try await self.query("SELECT resource, max_value FROM tenant_quotas WHERE tenant_id = $1", [.text(tenantID)]) {
            limits[QuotaResource(rawValue: row.text(0))] = row.int(1)
        }
        return limits
    }

    /// The tenant's limits: the operator's where set, else the defaults.
    public func quotas(tenantID: String) async throws -> [QuotaResource: Int64] {
        var limits = self.quotaDefaults.limits
        for (resource, limit) in try await self.quotaOverrides(tenantID: tenantID) { limits[resource] = limit }
        return limits
    }

    /// The tenant's limit for one resource.
    public func quota(tenantID: String, resource: QuotaResource) async throws -> Int64 {
        let rows = try await self.query(
            "SELECT max_value FROM tenant_quotas WHERE tenant_id = $1 AND resource = $2", [.text(tenantID), .text(resource.rawValue)])
        return rows.first?.int(0) ?? self.quotaDefaults.limit(resource)
    }

    /// Sets limits for the tenant (others keep theirs); a nil limit returns that resource to the default.
    public func setQuotas(tenantID: String, limits: [QuotaResource: Int64?], at now: Int64) async throws {
        try await self.transaction { db in
            for (resource, limit) in limits {
                try await db.query(
                    "DELETE FROM tenant_quotas WHERE tenant_id = $1 AND resource = $2", [.text(tenantID), .text(resource.rawValue)])
                if let limit {
                    try await db.query(
                        "INSERT INTO tenant_quotas (tenant_id, resource, max_value, updated_at) VALUES ($1, $2, $3, $4)",
                        [.text(tenantID), .text(resource.rawValue), .integer(limit), .integer(now)])
                }
            }
        }
    }

    /// Whether the tenant may have `adding` more of `resource` when it has `current` now. Services
    /// call this before they create something (the storage service for buckets and bytes).
    ///
    /// The count and the creation are not one transaction, so requests racing each other may
    /// overshoot the limit by the number in flight.
    /// - Throws: ``QuotaExceeded`` when `current + adding` is above the tenant's limit.
    public func checkQuota(tenantID: String, resource: QuotaResource, current: Int64, adding: Int64 = 1) async throws {
        let limit = try await self.quota(tenantID: tenantID, resource: resource)
        if current.addingReportingOverflow(adding).partialValue > limit || current.addingReportingOverflow(adding).overflow {
            throw QuotaExceeded(resource: resource, limit: limit, current: current)
        }
    }
}
