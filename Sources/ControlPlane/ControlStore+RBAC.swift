public import ServiceContract
import Database
import SQLite

/// Roles, role bindings and the grants they add up to.
extension ControlStore {
    static let roleColumns = "id, tenant_id, name, description, permissions, created_at"

    /// A role as stored; a built-in role's description and permissions come from the catalog.
    func role(_ row: SQLRow) -> RoleRecord {
        if row.isNull(1), let builtin = BuiltinRole(rawValue: row.text(2)) {
            return RoleRecord(
                id: row.text(0), tenantID: nil, name: builtin.rawValue, description: builtin.description,
                permissions: self.catalog.permissions(of: builtin), createdAt: row.int(5))
        }
        return RoleRecord(
            id: row.text(0), tenantID: row.optionalText(1), name: row.text(2), description: row.text(3),
            permissions: Migrations.decode(row.text(4)), createdAt: row.int(5))
    }

    /// The permissions of a bound role: the catalog's for a built-in one (stored as `@`), else the stored list.
    func boundPermissions(name: String, stored: String) -> [Permission] {
        if stored == "@", let builtin = BuiltinRole(rawValue: name) { return self.catalog.permissions(of: builtin) }
        return Migrations.decode(stored)
    }

    /// The built-in roles and the tenant's own, by name.
    public func roles(tenantID: String) async throws -> [RoleRecord] {
        try await self.query(
            "SELECT \(Self.roleColumns) FROM roles WHERE tenant_id IS NULL OR tenant_id = $1 ORDER BY name", [.text(tenantID)]
        ).map(self.role)
    }

    /// A built-in role or one of the tenant's, by name.
    public func role(tenantID: String, name: String) async throws -> RoleRecord? {
        // Names are unique across the built-in roles and a tenant's own (insertRole checks), so at most one row.
        try await self.query(
            "SELECT \(Self.roleColumns) FROM roles WHERE name = $2 AND (tenant_id IS NULL OR tenant_id = $1)",
            [.text(tenantID), .text(name)]
        ).first.map(self.role)
    }

    /// - Throws: ``ControlStoreError/duplicate(_:)`` when the tenant has a role of that name.
    public func insertRole(_ role: RoleRecord) async throws {
        try await self.transaction { db in
            let taken = try await db.query(
                "SELECT 1 FROM roles WHERE name = $2 AND (tenant_id IS NULL OR tenant_id = $1)",
                [SQLValue(role.tenantID), .text(role.name)])
            if !taken.isEmpty { throw ControlStoreError.duplicate("a role named \(role.name) exists") }
            try await db.query(
                "INSERT INTO roles (\(Self.roleColumns)) VALUES ($1, $2, $3, $4, $5, $6)",
                [
                    .text(role.id), SQLValue(role.tenantID), .text(role.name), .text(role.description),
                    .text(Migrations.encode(role.permissions)), .integer(role.createdAt),
                ])
        }
    }

    public func updateRole(_ role: RoleRecord) async throws {
        let changed = try await self.query(
            "UPDATE roles SET description = $2, permissions = $3 WHERE id = $1 AND tenant_id IS NOT NULL RETURNING id",
            [.text(role.id), .text(role.description), .text(Migrations.encode(role.permissions))])
        if changed.isEmpty { throw ControlStoreError.notFound("no role \(role.id)") }
    }

    /// - Throws: ``ControlStoreError/inUse(_:)`` when bindings still name it.
    public func deleteRole(id: String) async throws {
        try await self.transaction { db in
            if try await !db.query("SELECT 1 FROM role_bindings WHERE role_id = $1", [.text(id)]).isEmpty {
                throw ControlStoreError.inUse("the role is bound")
            }
            let changed = try await db.query("DELETE FROM roles WHERE id = $1 AND tenant_id IS NOT NULL RETURNING id", [.text(id)])
            if changed.isEmpty { throw ControlStoreError.notFound("no role \(id)") }
        }
    }

    /// Binds, adding the user to the tenant when they were not a member.
    /// - Throws: ``ControlStoreError/duplicate(_:)`` when the binding exists.
    public func insertBinding(_ binding: BindingRecord) async throws {
        try await self.transaction { db in
            let exists = try await db.query(
                "SELECT 1 FROM role_bindings WHERE tenant_id = $1 AND user_id = $2 AND role_id = $3",
                [.text(binding.tenantID), .text(binding.userID), .text(binding.roleID)])
            if !exists.isEmpty { throw ControlStoreError.duplicate("the user already has this role") }
            try await db.query(
                "INSERT INTO memberships (tenant_id, user_id, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                [.text(binding.tenantID), .text(binding.userID), .integer(binding.createdAt)])
            try await db.query(
                "INSERT INTO role_bindings (id, tenant_id, user_id, role_id, created_at) VALUES ($1, $2, $3, $4, $5)",
                [.text(binding.id), .text(binding.tenantID), .text(binding.userID), .text(binding.roleID), .integer(binding.createdAt)])
        }
    }

    static let bindingSelect = """
        SELECT b.id, b.tenant_id, b.user_id, b.role_id, b.created_at, u.email, r.name FROM role_bindings b
        JOIN users u ON u.id = b.user_id JOIN roles r ON r.id = b.role_id
        """

    static func binding(_ row: SQLRow) -> BindingRecord {
        var binding = BindingRecord(id: row.text(0), tenantID: row.text(1), userID: row.text(2), roleID: row.text(3), createdAt: row.int(4))
        binding.userEmail = row.text(5)
        binding.roleName = row.text(6)
        return binding
    }

    public func bindings(tenantID: String) async throws -> [BindingRecord] {
        try await self.query("\(Self.bindingSelect) WHERE b.tenant_id = $1 ORDER BY u.email, r.name", [.text(tenantID)])
            .map(Self.binding)
    }

    public func binding(id: String, tenantID: String) async throws -> BindingRecord? {
        try await self.query("\(Self.bindingSelect) WHERE b.id = $1 AND b.tenant_id = $2", [.text(id), .text(tenantID)])
            .first.map(Self.binding)
    }

    public func deleteBinding(id: String) async throws {
        let changed = try await self.query("DELETE FROM role_bindings WHERE id = $1 RETURNING id", [.text(id)])
        if changed.isEmpty { throw ControlStoreError.notFound("no binding \(id)") }
    }

    /// The union of the permissions of the roles bound to the user in the tenant, and those roles.
    public func grants(userID: String, tenantID: String) async throws -> (roles: [String], permissions: [Permission]) {
        let rows = try await self.query(
            """
            SELECT r.name, CASE WHEN r.tenant_id IS NULL THEN '@' ELSE r.permissions END FROM role_bindings b JOIN roles r ON r.id = b.role_id
            JOIN memberships m ON m.tenant_id = b.tenant_id AND m.user_id = b.user_id
            WHERE b.user_id = $1 AND b.tenant_id = $2 ORDER BY r.name
            """, [.text(userID), .text(tenantID)])
        var roles: [String] = []
        var permissions: [Permission] = []
        for row in rows {
            roles.append(row.text(0))
            for permission in self.boundPermissions(name: row.text(0), stored: row.text(1)) where !permissions.contains(permission) {
                permissions.append(permission)
            }
        }
        return (roles, permissions)
    }
}
