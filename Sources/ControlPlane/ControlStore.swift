public import Database
import Foundation
import SQLite
public import ServiceContract

/// A user account.
public struct UserRecord: Sendable, Equatable {
    public var id: String
    /// Lowercased.
    public var email: String
    public var name: String
    /// ``PasswordHasher`` encoding.
    public var passwordHash: String
    /// Unix seconds.
    public var createdAt: Int64

    public init(id: String, email: String, name: String, passwordHash: String, createdAt: Int64) {
        self.id = id
        self.email = email
        self.name = name
        self.passwordHash = passwordHash
        self.createdAt = createdAt
    }
}

/// A tenant (project): resources, roles and bindings belong to one.
public struct TenantRecord: Sendable, Equatable {
    public var id: String
    public var name: String
    /// The user whose personal tenant this is, if it is one.
    public var personalUserID: String?
    public var createdAt: Int64

    public init(id: String, name: String, personalUserID: String?, createdAt: Int64) {
        self.id = id
        self.name = name
        self.personalUserID = personalUserID
        self.createdAt = createdAt
    }
}

/// An API key as stored: never the key itself.
public struct APIKeyRecord: Sendable, Equatable {
    /// The id inside the key (`ck_<id>_…`).
    public var id: String
    public var userID: String
    /// The tenant the key acts in.
    public var tenantID: String
    public var name: String
    /// Hex SHA-256 of the key.
    public var keyHash: String
    public var createdAt: Int64
    /// After this time (unix seconds) the key is refused; set by rotation or at creation.
    public var expiresAt: Int64?
    /// When the key was deleted or regenerated; refused from then on.
    public var revokedAt: Int64?
    /// The key that replaced this one (rotate, regenerate).
    public var replacedBy: String?

    public init(
        id: String, userID: String, tenantID: String, name: String, keyHash: String, createdAt: Int64,
        expiresAt: Int64? = nil, revokedAt: Int64? = nil, replacedBy: String? = nil
    ) {
        self.id = id
        self.userID = userID
        self.tenantID = tenantID
        self.name = name
        self.keyHash = keyHash
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.revokedAt = revokedAt
        self.replacedBy = replacedBy
    }

    /// Whether the key is accepted at `now`.
    public func isValid(at now: Int64) -> Bool {
        self.revokedAt == nil && (self.expiresAt.map { now < $0 } ?? true)
    }
}

/// A role: a named set of permission patterns. Built-in roles have no tenant.
public struct RoleRecord: Sendable, Equatable {
    public var id: String
    public var tenantID: String?
    public var name: String
    public var description: String
    public var permissions: [Permission]
    public var createdAt: Int64

    public var isBuiltin: Bool { self.tenantID == nil }

    public init(id: String, tenantID: String?, name: String, description: String, permissions: [Permission], createdAt: Int64) {
        self.id = id
        self.tenantID = tenantID
        self.name = name
        self.description = description
        self.permissions = permissions
        self.createdAt = createdAt
    }
}

/// A user bound to a role in a tenant, with the names a listing shows.
public struct BindingRecord: Sendable, Equatable {
    public var id: String
    public var tenantID: String
    public var userID: String
    public var roleID: String
    public var createdAt: Int64
    /// Filled in by reads.
    public var userEmail: String = ""
    public var roleName: String = ""

    public init(id: String, tenantID: String, userID: String, roleID: String, createdAt: Int64) {
        self.id = id
        self.tenantID = tenantID
        self.userID = userID
        self.roleID = roleID
        self.createdAt = createdAt
    }
}

/// Why a store operation failed, for the cases callers act on.
public struct ControlStoreError: Error, Sendable, Equatable, CustomStringConvertible {
    private enum Code: Sendable, Equatable { case duplicate, notFound, inUse, unavailable }
    private let code: Code
    /// What happened, for logs (never holds secrets).
    public let detail: String

    /// A unique value (an email, a role name, a binding) already exists.
    public static func duplicate(_ detail: String) -> Self { Self(code: .duplicate, detail: detail) }
    /// The row to change does not exist.
    public static func notFound(_ detail: String) -> Self { Self(code: .notFound, detail: detail) }
    /// The row is still referenced (a role with bindings).
    public static func inUse(_ detail: String) -> Self { Self(code: .inUse, detail: detail) }
    /// The database failed.
    public static func unavailable(_ detail: String) -> Self { Self(code: .unavailable, detail: detail) }

    public var isDuplicate: Bool { self.code == .duplicate }
    public var isNotFound: Bool { self.code == .notFound }
    public var isInUse: Bool { self.code == .inUse }

    public var description: String { self.detail }

    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.code == rhs.code }
}

/// The control plane's persistence: one implementation over ``SQLDatabase``, so the same SQL (the
/// migrations of ``Migrations`` and every query here) runs on embedded SQLite and on PostgreSQL.
/// Each method is one statement or one transaction. Feature areas extend it in their own files.
public final class ControlStore: Sendable {
    /// The database underneath (for features with their own tables, such as the task queue).
    public let database: any SQLDatabase
    /// The quota a tenant gets for a resource unless an operator set another.
    public let quotaDefaults: QuotaDefaults
    /// The hosted services: what the built-in roles grant, the quotas, the services' migrations.
    public let catalog: ServiceCatalog

    /// - Parameter quotaDefaults: Limits that replace the catalog's declared defaults.
    public init(database: any SQLDatabase, quotaDefaults: QuotaDefaults = QuotaDefaults(), catalog: ServiceCatalog = .hostOnly) {
        self.database = database
        self.quotaDefaults = catalog.quotaDefaults.merging(quotaDefaults)
        self.catalog = catalog
    }

    /// Applies the migrations not yet applied (once across processes), the host's then each
    /// service's; returns how many ran.
    public func migrate() async throws -> Int {
        let sets = [(ServiceCatalog.hostName, Migrations.all)] + self.catalog.services.map { ($0.name, $0.migrations) }
        return try await Self.mapped {
            try await Migrator.migrate(self.database, sets, lockKey: Migrations.lockKey, now: WallClock.unixNow())
        }
    }

    /// Answers when the database does (for readiness).
    public func ping() async throws {
        _ = try await self.query("SELECT 1")
    }

    /// Runs `body` in one transaction, with database failures as ``ControlStoreError``.
    func transaction<T: Sendable>(_ body: @escaping @Sendable (any SQLSession) async throws -> T) async throws -> T {
        try await Self.mapped { try await self.database.transaction(body) }
    }

    /// Runs one statement, with database failures as ``ControlStoreError``.
    @discardableResult
    func query(_ sql: String, _ parameters: [SQLValue] = []) async throws -> [SQLRow] {
        try await Self.mapped { try await self.database.query(sql, parameters) }
    }

    private static func mapped<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as DatabaseError {
            switch error.kind {
            case .uniqueViolation: throw ControlStoreError.duplicate("already exists (\(error.message))")
            case .unavailable, .failed: throw ControlStoreError.unavailable(error.message)
            }
        }
    }
}

enum WallClock {
    /// Wall-clock unix seconds, for the shells (cores take `now` as a parameter).
    static func unixNow() -> Int64 { Int64(Date().timeIntervalSince1970) }
}
