import Foundation
public import NIOPosix
import SQLite
import Synchronization

/// ``ControlStore`` on an embedded SQLite file (WAL), the default for `cloud dev`.
///
/// One connection behind a mutex; every call runs on NIO's blocking thread pool so that event
/// loops and the cooperative pool never wait on the disk.
public final class SQLiteControlStore: ControlStore {
    private let connection: Mutex<SQLiteConnection>
    private let threadPool: NIOThreadPool

    /// Opens (creating when missing) the database at `path`.
    /// - Throws: ``ControlStoreError/unavailable(_:)`` when it cannot be opened.
    public init(path: String, threadPool: NIOThreadPool? = nil) throws {
        do {
            let connection = try SQLiteConnection(path: path)
            try connection.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON")
            self.connection = Mutex(connection)
        } catch {
            throw ControlStoreError.unavailable("cannot open \(path): \(error)")
        }
        self.threadPool = threadPool ?? .singleton
    }

    private func run<T: Sendable>(_ body: @escaping @Sendable (SQLiteConnection) throws -> T) async throws -> T {
        try await self.threadPool.runIfActive {
            try self.connection.withLock { connection in
                do {
                    return try body(connection)
                } catch let error as ControlStoreError {
                    throw error
                } catch let error as SQLiteError {
                    throw ControlStoreError.unavailable("\(error)")
                }
            }
        }
    }

    public func migrate() async throws -> Int {
        try await self.run { db in
            try db.execute(Migrations.bootstrap)
            var applied = Set<Int64>()
            try db.query("SELECT version FROM schema_migrations") { applied.insert($0.int(0)) }
            var count = 0
            for migration in Migrations.all where !applied.contains(Int64(migration.version)) {
                try db.transaction {
                    for statement in migration.statements { try db.execute(statement) }
                    try db.query(
                        "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
                        [.integer(Int64(migration.version)), .text(migration.name), .integer(WallClock.unixNow())])
                }
                count += 1
            }
            return count
        }
    }

    public func ping() async throws {
        try await self.run { db in try db.query("SELECT 1") }
    }

    public func register(user: UserRecord, tenant: TenantRecord, adminBindingID: String) async throws {
        try await self.run { db in
            try db.transaction {
                var taken = false
                try db.query("SELECT 1 FROM users WHERE email = $1", [.text(user.email)]) { _ in taken = true }
                if taken { throw ControlStoreError.duplicate("email already registered") }
                try db.query(
                    "INSERT INTO users (id, email, name, password_hash, created_at) VALUES ($1, $2, $3, $4, $5)",
                    [.text(user.id), .text(user.email), .text(user.name), .text(user.passwordHash), .integer(user.createdAt)])
                try db.query(
                    "INSERT INTO tenants (id, name, personal_user_id, created_at) VALUES ($1, $2, $3, $4)",
                    [.text(tenant.id), .text(tenant.name), SQLValue(tenant.personalUserID), .integer(tenant.createdAt)])
                try db.query(
                    "INSERT INTO memberships (tenant_id, user_id, created_at) VALUES ($1, $2, $3)",
                    [.text(tenant.id), .text(user.id), .integer(user.createdAt)])
                try db.query(
                    "INSERT INTO role_bindings (id, tenant_id, user_id, role_id, created_at) VALUES ($1, $2, $3, $4, $5)",
                    [.text(adminBindingID), .text(tenant.id), .text(user.id), .text(BuiltinRole.admin.id), .integer(user.createdAt)])
            }
        }
    }

    private static let userColumns = "id, email, name, password_hash, created_at"

    private static func user(_ row: SQLiteRow) -> UserRecord {
        UserRecord(id: row.text(0), email: row.text(1), name: row.text(2), passwordHash: row.text(3), createdAt: row.int(4))
    }

    public func user(id: String) async throws -> UserRecord? {
        try await self.run { db in
            var user: UserRecord?
            try db.query("SELECT \(Self.userColumns) FROM users WHERE id = $1", [.text(id)]) { user = Self.user($0) }
            return user
        }
    }

    public func user(email: String) async throws -> UserRecord? {
        try await self.run { db in
            var user: UserRecord?
            try db.query("SELECT \(Self.userColumns) FROM users WHERE email = $1", [.text(email)]) { user = Self.user($0) }
            return user
        }
    }

    private static func tenant(_ row: SQLiteRow) -> TenantRecord {
        TenantRecord(id: row.text(0), name: row.text(1), personalUserID: row.optionalText(2), createdAt: row.int(3))
    }

    public func tenant(id: String) async throws -> TenantRecord? {
        try await self.run { db in
            var tenant: TenantRecord?
            try db.query("SELECT id, name, personal_user_id, created_at FROM tenants WHERE id = $1", [.text(id)]) {
                tenant = Self.tenant($0)
            }
            return tenant
        }
    }

    public func tenants(ofUser userID: String) async throws -> [TenantRecord] {
        try await self.run { db in
            var tenants: [TenantRecord] = []
            try db.query(
                """
                SELECT t.id, t.name, t.personal_user_id, t.created_at FROM tenants t
                JOIN memberships m ON m.tenant_id = t.id WHERE m.user_id = $1 ORDER BY m.created_at, t.id
                """, [.text(userID)]
            ) { tenants.append(Self.tenant($0)) }
            return tenants
        }
    }

    public func isMember(userID: String, tenantID: String) async throws -> Bool {
        try await self.run { db in
            var member = false
            try db.query("SELECT 1 FROM memberships WHERE user_id = $1 AND tenant_id = $2", [.text(userID), .text(tenantID)]) { _ in
                member = true
            }
            return member
        }
    }

    private static let keyColumns = "id, user_id, tenant_id, name, key_hash, created_at, expires_at, revoked_at, replaced_by"

    private static func key(_ row: SQLiteRow) -> APIKeyRecord {
        APIKeyRecord(
            id: row.text(0), userID: row.text(1), tenantID: row.text(2), name: row.text(3), keyHash: row.text(4),
            createdAt: row.int(5), expiresAt: row.optionalInt(6), revokedAt: row.optionalInt(7), replacedBy: row.optionalText(8))
    }

    private static func insert(_ key: APIKeyRecord, into db: SQLiteConnection) throws {
        try db.query(
            "INSERT INTO api_keys (\(Self.keyColumns)) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            [
                .text(key.id), .text(key.userID), .text(key.tenantID), .text(key.name), .text(key.keyHash),
                .integer(key.createdAt), SQLValue(key.expiresAt), SQLValue(key.revokedAt), SQLValue(key.replacedBy),
            ])
    }

    public func insertKey(_ key: APIKeyRecord) async throws {
        try await self.run { db in try Self.insert(key, into: db) }
    }

    public func key(id: String) async throws -> APIKeyRecord? {
        try await self.run { db in
            var key: APIKeyRecord?
            try db.query("SELECT \(Self.keyColumns) FROM api_keys WHERE id = $1", [.text(id)]) { key = Self.key($0) }
            return key
        }
    }

    public func keys(ofUser userID: String, now: Int64) async throws -> [APIKeyRecord] {
        try await self.run { db in
            var keys: [APIKeyRecord] = []
            try db.query(
                """
                SELECT \(Self.keyColumns) FROM api_keys WHERE user_id = $1 AND revoked_at IS NULL
                AND (expires_at IS NULL OR expires_at > $2) ORDER BY created_at, id
                """, [.text(userID), .integer(now)]
            ) { keys.append(Self.key($0)) }
            return keys
        }
    }

    public func replaceKey(oldID: String, expiresAt: Int64?, revokedAt: Int64?, newKey: APIKeyRecord) async throws {
        try await self.run { db in
            try db.transaction {
                try Self.insert(newKey, into: db)
                try db.query(
                    """
                    UPDATE api_keys SET expires_at = CASE WHEN expires_at IS NULL OR expires_at > $2 THEN $2 ELSE expires_at END,
                    revoked_at = $3, replaced_by = $4 WHERE id = $1 AND revoked_at IS NULL AND replaced_by IS NULL
                    """, [.text(oldID), SQLValue(expiresAt), SQLValue(revokedAt), .text(newKey.id)])
                if db.changes == 0 { throw ControlStoreError.notFound("no active, unreplaced key \(oldID)") }
            }
        }
    }

    public func revokeKey(id: String, at: Int64) async throws {
        try await self.run { db in
            try db.query("UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL", [.text(id), .integer(at)])
            if db.changes == 0 { throw ControlStoreError.notFound("no active key \(id)") }
        }
    }

    private static let roleColumns = "id, tenant_id, name, description, permissions, created_at"

    private static func role(_ row: SQLiteRow) -> RoleRecord {
        RoleRecord(
            id: row.text(0), tenantID: row.optionalText(1), name: row.text(2), description: row.text(3),
            permissions: Migrations.decode(row.text(4)), createdAt: row.int(5))
    }

    public func roles(tenantID: String) async throws -> [RoleRecord] {
        try await self.run { db in
            var roles: [RoleRecord] = []
            try db.query(
                "SELECT \(Self.roleColumns) FROM roles WHERE tenant_id IS NULL OR tenant_id = $1 ORDER BY name",
                [.text(tenantID)]
            ) { roles.append(Self.role($0)) }
            return roles
        }
    }

    public func role(tenantID: String, name: String) async throws -> RoleRecord? {
        try await self.run { db in
            var role: RoleRecord?
            try db.query(
                "SELECT \(Self.roleColumns) FROM roles WHERE name = $2 AND (tenant_id IS NULL OR tenant_id = $1) ORDER BY tenant_id",
                [.text(tenantID), .text(name)]
            ) { row in if role == nil { role = Self.role(row) } }
            return role
        }
    }

    public func insertRole(_ role: RoleRecord) async throws {
        try await self.run { db in
            try db.transaction {
                var taken = false
                try db.query(
                    "SELECT 1 FROM roles WHERE name = $2 AND (tenant_id IS NULL OR tenant_id = $1)",
                    [SQLValue(role.tenantID), .text(role.name)]
                ) { _ in taken = true }
                if taken { throw ControlStoreError.duplicate("a role named \(role.name) exists") }
                try db.query(
                    "INSERT INTO roles (\(Self.roleColumns)) VALUES ($1, $2, $3, $4, $5, $6)",
                    [
                        .text(role.id), SQLValue(role.tenantID), .text(role.name), .text(role.description),
                        .text(Migrations.encode(role.permissions)), .integer(role.createdAt),
                    ])
            }
        }
    }

    public func updateRole(_ role: RoleRecord) async throws {
        try await self.run { db in
            try db.query(
                "UPDATE roles SET description = $2, permissions = $3 WHERE id = $1 AND tenant_id IS NOT NULL",
                [.text(role.id), .text(role.description), .text(Migrations.encode(role.permissions))])
            if db.changes == 0 { throw ControlStoreError.notFound("no role \(role.id)") }
        }
    }

    public func deleteRole(id: String) async throws {
        try await self.run { db in
            try db.transaction {
                var used = false
                try db.query("SELECT 1 FROM role_bindings WHERE role_id = $1", [.text(id)]) { _ in used = true }
                if used { throw ControlStoreError.inUse("the role is bound") }
                try db.query("DELETE FROM roles WHERE id = $1 AND tenant_id IS NOT NULL", [.text(id)])
                if db.changes == 0 { throw ControlStoreError.notFound("no role \(id)") }
            }
        }
    }

    public func insertBinding(_ binding: BindingRecord) async throws {
        try await self.run { db in
            try db.transaction {
                var exists = false
                try db.query(
                    "SELECT 1 FROM role_bindings WHERE tenant_id = $1 AND user_id = $2 AND role_id = $3",
                    [.text(binding.tenantID), .text(binding.userID), .text(binding.roleID)]
                ) { _ in exists = true }
                if exists { throw ControlStoreError.duplicate("the user already has this role") }
                try db.query(
                    "INSERT INTO memberships (tenant_id, user_id, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    [.text(binding.tenantID), .text(binding.userID), .integer(binding.createdAt)])
                try db.query(
                    "INSERT INTO role_bindings (id, tenant_id, user_id, role_id, created_at) VALUES ($1, $2, $3, $4, $5)",
                    [.text(binding.id), .text(binding.tenantID), .text(binding.userID), .text(binding.roleID), .integer(binding.createdAt)])
            }
        }
    }

    private static let bindingSelect = """
        SELECT b.id, b.tenant_id, b.user_id, b.role_id, b.created_at, u.email, r.name FROM role_bindings b
        JOIN users u ON u.id = b.user_id JOIN roles r ON r.id = b.role_id
        """

    private static func binding(_ row: SQLiteRow) -> BindingRecord {
        var binding = BindingRecord(id: row.text(0), tenantID: row.text(1), userID: row.text(2), roleID: row.text(3), createdAt: row.int(4))
        binding.userEmail = row.text(5)
        binding.roleName = row.text(6)
        return binding
    }

    public func bindings(tenantID: String) async throws -> [BindingRecord] {
        try await self.run { db in
            var bindings: [BindingRecord] = []
            try db.query("\(Self.bindingSelect) WHERE b.tenant_id = $1 ORDER BY u.email, r.name", [.text(tenantID)]) {
                bindings.append(Self.binding($0))
            }
            return bindings
        }
    }

    public func binding(id: String, tenantID: String) async throws -> BindingRecord? {
        try await self.run { db in
            var binding: BindingRecord?
            try db.query("\(Self.bindingSelect) WHERE b.id = $1 AND b.tenant_id = $2", [.text(id), .text(tenantID)]) {
                binding = Self.binding($0)
            }
            return binding
        }
    }

    public func deleteBinding(id: String) async throws {
        try await self.run { db in
            try db.query("DELETE FROM role_bindings WHERE id = $1", [.text(id)])
            if db.changes == 0 { throw ControlStoreError.notFound("no binding \(id)") }
        }
    }

    public func grants(userID: String, tenantID: String) async throws -> (roles: [String], permissions: [Permission]) {
        try await self.run { db in
            var roles: [String] = []
            var permissions: [Permission] = []
            try db.query(
                """
                SELECT r.name, r.permissions FROM role_bindings b JOIN roles r ON r.id = b.role_id
                JOIN memberships m ON m.tenant_id = b.tenant_id AND m.user_id = b.user_id
                WHERE b.user_id = $1 AND b.tenant_id = $2 ORDER BY r.name
                """, [.text(userID), .text(tenantID)]
            ) { row in
                roles.append(row.text(0))
                for permission in Migrations.decode(row.text(1)) where !permissions.contains(permission) {
                    permissions.append(permission)
                }
            }
            return (roles, permissions)
        }
    }

    public func recordLogin(email: String, clientAddress: String, succeeded: Bool, at: Int64) async throws {
        try await self.run { db in
            try db.transaction {
                try db.query("DELETE FROM login_attempts WHERE attempted_at < $1", [.integer(at - 86_400)])
                if succeeded {
                    // A success clears the failures before it (the lockout counts only failures since).
                    try db.query("DELETE FROM login_attempts WHERE email = $1 AND succeeded = 0", [.text(email)])
                }
                try db.query(
                    "INSERT INTO login_attempts (email, client_address, succeeded, attempted_at) VALUES ($1, $2, $3, $4)",
                    [.text(email), .text(clientAddress), .integer(succeeded ? 1 : 0), .integer(at)])
            }
        }
    }

    public func loginFailures(email: String, since: Int64) async throws -> [Int64] {
        try await self.run { db in
            var failures: [Int64] = []
            try db.query(
                """
                SELECT attempted_at FROM login_attempts WHERE email = $1 AND succeeded = 0 AND attempted_at > $2
                ORDER BY attempted_at
                """, [.text(email), .integer(since)]
            ) { failures.append($0.int(0)) }
            return failures
        }
    }
}

enum WallClock {
    /// Wall-clock unix seconds, for the shells (cores take `now` as a parameter).
    static func unixNow() -> Int64 { Int64(Date().timeIntervalSince1970) }
}
