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

/// The control plane's persistence. One implementation per database (SQLite now, PostgreSQL next),
/// all running the SQL of ``Migrations``. Every method is one transaction.
public protocol ControlStore: Sendable {
    /// Applies the migrations not yet applied; returns how many ran.
    func migrate() async throws -> Int
    /// Answers when the database does (for readiness).
    func ping() async throws

    /// Creates a user with a personal tenant, the membership and an admin binding in it.
    /// - Throws: ``ControlStoreError/duplicate(_:)`` when the email is taken.
    func register(user: UserRecord, tenant: TenantRecord, adminBindingID: String) async throws
    func user(id: String) async throws -> UserRecord?
    func user(email: String) async throws -> UserRecord?
    func tenant(id: String) async throws -> TenantRecord?
    /// The tenants `userID` is a member of, oldest first.
    func tenants(ofUser userID: String) async throws -> [TenantRecord]
    func isMember(userID: String, tenantID: String) async throws -> Bool

    func insertKey(_ key: APIKeyRecord) async throws
    func key(id: String) async throws -> APIKeyRecord?
    /// The user's keys that are neither revoked nor expired at `now`, oldest first.
    func keys(ofUser userID: String, now: Int64) async throws -> [APIKeyRecord]
    /// Inserts `newKey` and retires `oldID`: it expires at `expiresAt` (rotate), or is revoked at
    /// `revokedAt` (regenerate), and records the replacement.
    /// - Throws: ``ControlStoreError/notFound(_:)`` when the old key is revoked or already replaced.
    func replaceKey(oldID: String, expiresAt: Int64?, revokedAt: Int64?, newKey: APIKeyRecord) async throws
    /// Marks a key revoked.
    func revokeKey(id: String, at: Int64) async throws

    /// The built-in roles and the tenant's own, by name.
    func roles(tenantID: String) async throws -> [RoleRecord]
    /// A built-in role or one of the tenant's, by name.
    func role(tenantID: String, name: String) async throws -> RoleRecord?
    /// - Throws: ``ControlStoreError/duplicate(_:)`` when the tenant has a role of that name.
    func insertRole(_ role: RoleRecord) async throws
    func updateRole(_ role: RoleRecord) async throws
    /// - Throws: ``ControlStoreError/inUse(_:)`` when bindings still name it.
    func deleteRole(id: String) async throws

    /// Binds, adding the user to the tenant when they were not a member.
    /// - Throws: ``ControlStoreError/duplicate(_:)`` when the binding exists.
    func insertBinding(_ binding: BindingRecord) async throws
    func bindings(tenantID: String) async throws -> [BindingRecord]
    func binding(id: String, tenantID: String) async throws -> BindingRecord?
    func deleteBinding(id: String) async throws
    /// The union of the permissions of the roles bound to the user in the tenant, and those roles.
    func grants(userID: String, tenantID: String) async throws -> (roles: [String], permissions: [Permission])

    /// Records a login attempt; a success clears the email's earlier failures. Attempts older than a
    /// day are forgotten.
    func recordLogin(email: String, clientAddress: String, succeeded: Bool, at: Int64) async throws
    /// Times of the failed attempts for `email` since its last success and after `since`.
    func loginFailures(email: String, since: Int64) async throws -> [Int64]
}
