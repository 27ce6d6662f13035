public import ServiceContract
import Database
import SQLite

/// Users, tenants, memberships, API keys and login attempts.
extension ControlStore {
    /// Creates a user with a personal tenant, the membership and an admin binding in it.
    /// - Throws: ``ControlStoreError/duplicate(_:)`` when the email is taken.
    public func register(user: UserRecord, tenant: TenantRecord, adminBindingID: String) async throws {
        try await self.transaction { db in
            if try await !db.query("SELECT 1 FROM users WHERE email = $1", [.text(user.email)]).isEmpty {
                throw ControlStoreError.duplicate("email already registered")
            }
            try await db.query(
                "INSERT INTO users (id, email, name, password_hash, created_at) VALUES ($1, $2, $3, $4, $5)",
                [.text(user.id), .text(user.email), .text(user.name), .text(user.passwordHash), .integer(user.createdAt)])
            try await db.query(
                "INSERT INTO tenants (id, name, personal_user_id, created_at) VALUES ($1, $2, $3, $4)",
                [.text(tenant.id), .text(tenant.name), SQLValue(tenant.personalUserID), .integer(tenant.createdAt)])
            try await db.query(
                "INSERT INTO memberships (tenant_id, user_id, created_at) VALUES ($1, $2, $3)",
                [.text(tenant.id), .text(user.id), .integer(user.createdAt)])
            try await db.query(
                "INSERT INTO role_bindings (id, tenant_id, user_id, role_id, created_at) VALUES ($1, $2, $3, $4, $5)",
                [.text(adminBindingID), .text(tenant.id), .text(user.id), .text(BuiltinRole.admin.id), .integer(user.createdAt)])
        }
    }

    static let userColumns = "id, email, name, password_hash, created_at"

    static func user(_ row: SQLRow) -> UserRecord {
        UserRecord(id: row.text(0), email: row.text(1), name: row.text(2), passwordHash: row.text(3), createdAt: row.int(4))
    }

    public func user(id: String) async throws -> UserRecord? {
        try await self.query("SELECT \(Self.userColumns) FROM users WHERE id = $1", [.text(id)]).first.map(Self.user)
    }

    public func user(email: String) async throws -> UserRecord? {
        try await self.query("SELECT \(Self.userColumns) FROM users WHERE email = $1", [.text(email)]).first.map(Self.user)
    }

    static let tenantColumns = "t.id, t.name, t.personal_user_id, t.created_at"

    static func tenant(_ row: SQLRow) -> TenantRecord {
        TenantRecord(id: row.text(0), name: row.text(1), personalUserID: row.optionalText(2), createdAt: row.int(3))
    }

    public func tenant(id: String) async throws -> TenantRecord? {
        try await self.query("SELECT \(Self.tenantColumns) FROM tenants t WHERE t.id = $1", [.text(id)]).first.map(Self.tenant)
    }

    /// The tenants `userID` is a member of, oldest membership first.
    public func tenants(ofUser userID: String) async throws -> [TenantRecord] {
        try await self.query(
            """
            SELECT \(Self.tenantColumns) FROM tenants t
            JOIN memberships m ON m.tenant_id = t.id WHERE m.user_id = $1 ORDER BY m.created_at, t.id
            """, [.text(userID)]
        ).map(Self.tenant)
    }

    public func isMember(userID: String, tenantID: String) async throws -> Bool {
        try await !self.query(
            "SELECT 1 FROM memberships WHERE user_id = $1 AND tenant_id = $2", [.text(userID), .text(tenantID)]
        ).isEmpty
    }

    static let keyColumns = "id, user_id, tenant_id, name, key_hash, created_at, expires_at, revoked_at, replaced_by"

    static func key(_ row: SQLRow) -> APIKeyRecord {
        APIKeyRecord(
            id: row.text(0), userID: row.text(1), tenantID: row.text(2), name: row.text(3), keyHash: row.text(4),
            createdAt: row.int(5), expiresAt: row.optionalInt(6), revokedAt: row.optionalInt(7), replacedBy: row.optionalText(8))
    }

    private static func insert(_ key: APIKeyRecord, into db: any SQLSession) async throws {
        try await db.query(
            "INSERT INTO api_keys (\(Self.keyColumns)) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            [
                .text(key.id), .text(key.userID), .text(key.tenantID), .text(key.name), .text(key.keyHash),
                .integer(key.createdAt), SQLValue(key.expiresAt), SQLValue(key.revokedAt), SQLValue(key.replacedBy),
            ])
    }

    public func insertKey(_ key: APIKeyRecord) async throws {
        try await self.transaction { db in try await Self.insert(key, into: db) }
    }

    public func key(id: String) async throws -> APIKeyRecord? {
        try await self.query("SELECT \(Self.keyColumns) FROM api_keys WHERE id = $1", [.text(id)]).first.map(Self.key)
    }

    /// The user's keys that are neither revoked nor expired at `now`, oldest first.
    public func keys(ofUser userID: String, now: Int64) async throws -> [APIKeyRecord] {
        try await self.query(
            """
            SELECT \(Self.keyColumns) FROM api_keys WHERE user_id = $1 AND revoked_at IS NULL
            AND (expires_at IS NULL OR expires_at > $2) ORDER BY created_at, id
            """, [.text(userID), .integer(now)]
        ).map(Self.key)
    }

    /// Inserts `newKey` and retires `oldID`: it expires at `expiresAt` (rotate), or is revoked at
    /// `revokedAt` (regenerate), and records the replacement.
    /// - Throws: ``ControlStoreError/notFound(_:)`` when the old key is revoked or already replaced.
    public func replaceKey(oldID: String, expiresAt: Int64?, revokedAt: Int64?, newKey: APIKeyRecord) async throws {
        try await self.transaction { db in
            try await Self.insert(newKey, into: db)
            let changed = try await db.query(
                """
                UPDATE api_keys SET expires_at = CASE WHEN expires_at IS NULL OR expires_at > $2 THEN $2 ELSE expires_at END,
                revoked_at = $3, replaced_by = $4 WHERE id = $1 AND revoked_at IS NULL AND replaced_by IS NULL RETURNING id
                """, [.text(oldID), SQLValue(expiresAt), SQLValue(revokedAt), .text(newKey.id)])
            if changed.isEmpty { throw ControlStoreError.notFound("no active, unreplaced key \(oldID)") }
        }
    }

    /// Marks a key revoked.
    public func revokeKey(id: String, at: Int64) async throws {
        let changed = try await self.query(
            "UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL RETURNING id", [.text(id), .integer(at)])
        if changed.isEmpty { throw ControlStoreError.notFound("no active key \(id)") }
    }

    /// What a request's API key stands for, read in one statement: the key, its user and tenant,
    /// whether the user is still a member of that tenant, and the roles bound to them there with the
    /// union of their permissions (as ``grants(userID:tenantID:)`` gives them). Nil when there is no
    /// key with this id.
    /// A bound role's stored permissions, `@` for a built-in role (whose grants the catalog computes).
    static let storedPermissions = "CASE WHEN r.tenant_id IS NULL THEN '@' ELSE r.permissions END"

    public func credentials(keyID: String) async throws -> Credentials? {
        let columns = """
            k.id, k.user_id, k.tenant_id, k.name, k.key_hash, k.created_at, k.expires_at, k.revoked_at, k.replaced_by, \
            u.id, u.email, u.name, u.password_hash, u.created_at, \(Self.tenantColumns)
            """
        // Each bound role as "name=permissions", joined by '|' (neither character is allowed in
        // role names or permissions).
        let roles =
            self.database.dialect == .postgres
            ? "string_agg(r.name || '=' || \(Self.storedPermissions), '|')" : "group_concat(r.name || '=' || \(Self.storedPermissions), '|')"
        let rows = try await self.query(
            """
            SELECT \(columns),
            CASE WHEN EXISTS (SELECT 1 FROM memberships m WHERE m.user_id = k.user_id AND m.tenant_id = k.tenant_id) THEN 1 ELSE 0 END,
            (SELECT \(roles) FROM role_bindings b JOIN roles r ON r.id = b.role_id
             WHERE b.user_id = k.user_id AND b.tenant_id = k.tenant_id)
            FROM api_keys k JOIN users u ON u.id = k.user_id JOIN tenants t ON t.id = k.tenant_id WHERE k.id = $1
            """, [.text(keyID)])
        guard let row = rows.first else { return nil }
        // Key columns 0...8, user 9...13, tenant 14...17, membership 18, roles 19.
        let bound = (row.optionalText(19) ?? "").split(separator: "|").compactMap { entry -> (String, String)? in
            guard let equals = entry.firstIndex(of: "=") else { return nil }
            return (String(entry[..<equals]), String(entry[entry.index(after: equals)...]))
        }.sorted { $0.0 < $1.0 }
        var permissions: [Permission] = []
        for (name, list) in bound {
            for permission in self.boundPermissions(name: name, stored: list) where !permissions.contains(permission) {
                permissions.append(permission)
            }
        }
        return Credentials(
            key: Self.key(row), user: Self.user(SQLRow(Array(row.values[9...13]))),
            tenant: Self.tenant(SQLRow(Array(row.values[14...17]))), isMember: row.int(18) == 1,
            roles: bound.map(\.0), permissions: permissions)
    }

    /// Records a login attempt; a success clears the email's earlier failures. Attempts older than a
    /// day are forgotten.
    public func recordLogin(email: String, clientAddress: String, succeeded: Bool, at: Int64) async throws {
        try await self.transaction { db in
            try await db.query("DELETE FROM login_attempts WHERE attempted_at < $1", [.integer(at - 86_400)])
            if succeeded {
                // A success clears the failures before it (the lockout counts only failures since).
                try await db.query("DELETE FROM login_attempts WHERE email = $1 AND succeeded = 0", [.text(email)])
            }
            try await db.query(
                "INSERT INTO login_attempts (email, client_address, succeeded, attempted_at) VALUES ($1, $2, $3, $4)",
                [.text(email), .text(clientAddress), .integer(succeeded ? 1 : 0), .integer(at)])
        }
    }

    /// Times of the failed attempts for `email` since its last success and after `since`; with
    /// `clientAddress`, only those from that address.
    public func loginFailures(email: String, clientAddress: String? = nil, since: Int64) async throws -> [Int64] {
        try await self.query(
            """
            SELECT attempted_at FROM login_attempts WHERE email = $1 AND succeeded = 0 AND attempted_at > $2 \
            AND ($3 = '' OR client_address = $3) ORDER BY attempted_at
            """, [.text(email), .integer(since), .text(clientAddress ?? "")]
        ).map { $0.int(0) }
    }

    /// Times of the failed attempts from `clientAddress` after `since`, whatever the email.
    public func loginFailures(clientAddress: String, since: Int64) async throws -> [Int64] {
        try await self.query(
            "SELECT attempted_at FROM login_attempts WHERE client_address = $1 AND succeeded = 0 AND attempted_at > $2 ORDER BY attempted_at",
            [.text(clientAddress), .integer(since)]
        ).map { $0.int(0) }
    }
}

/// An API key with what it stands for: see ``ControlStore/credentials(keyID:)``.
public struct Credentials: Sendable {
    public var key: APIKeyRecord
    public var user: UserRecord
    public var tenant: TenantRecord
    /// Whether the user is (still) a member of the key's tenant.
    public var isMember: Bool
    /// The names of the roles bound to the user in the tenant, sorted.
    public var roles: [String]
    /// The union of those roles' permissions.
    public var permissions: [Permission]
}
