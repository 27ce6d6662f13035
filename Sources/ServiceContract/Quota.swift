public import Database

/// A kind of thing a tenant's quota limits. The host declares its own (`api_keys`, `members`); each
/// service declares the ones it enforces in ``CloudService/quotas``. A tenant without a row for a
/// resource gets the configured default.
public struct QuotaResource: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
    public var rawValue: String

    public init(rawValue: String) { self.rawValue = rawValue }

    /// API keys acting in the tenant that are neither revoked nor expired (the host's).
    public static let apiKeys = QuotaResource(rawValue: "api_keys")
    /// Members of the tenant (the host's).
    public static let members = QuotaResource(rawValue: "members")

    public var description: String { self.rawValue }

    /// Lowercase letters, digits and `_`, 1 to 40 characters (it becomes the field `max_<name>`).
    public var isValid: Bool {
        !self.rawValue.isEmpty && self.rawValue.utf8.count <= 40
            && self.rawValue.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "_" }
    }
}

/// A quota would be exceeded: `current` plus what the request adds is above `limit`.
public struct QuotaExceeded: Error, Sendable, Equatable, CustomStringConvertible {
    public var resource: QuotaResource
    public var limit: Int64
    public var current: Int64

    public init(resource: QuotaResource, limit: Int64, current: Int64) {
        self.resource = resource
        self.limit = limit
        self.current = current
    }

    public var description: String {
        "the tenant's quota for \(self.resource) is \(self.limit) and it has \(self.current)"
    }
}

/// A quota a service enforces: its resource, the default limit, and how to count what a tenant uses.
public struct QuotaSpec: Sendable {
    public var resource: QuotaResource
    /// The limit a tenant gets unless an operator sets another (`--quota RESOURCE=N` changes it).
    public var defaultLimit: Int64
    /// For the API reference and `GET /tenants/{id}/quotas`.
    public var description: String
    /// What the tenant uses now, counted inside the caller's transaction; nil when the service cannot
    /// count it locally (the answer then shows `used: null`).
    public var usage: (@Sendable (_ tenantID: String, _ session: any SQLSession) async throws -> Int64)?

    public init(
        _ resource: QuotaResource, defaultLimit: Int64, description: String,
        usage: (@Sendable (_ tenantID: String, _ session: any SQLSession) async throws -> Int64)? = nil
    ) {
        self.resource = resource
        self.defaultLimit = defaultLimit
        self.description = description
        self.usage = usage
    }
}

/// Atomic quota checks for creations: given by the host in ``ServiceEnvironment``.
public protocol QuotaLedger: Sendable {
    /// Refuses a creation that would take the tenant above its limit for `resource`. Call it inside the
    /// transaction that inserts the new rows: the check and the insert are then atomic (the host
    /// serializes the tenant's quota-checked creations: PostgreSQL locks the tenant's row, SQLite
    /// writes one transaction at a time), so concurrent creations never overshoot.
    /// - Parameters:
    ///   - adding: How many the request adds (default 1).
    ///   - session: The caller's transaction.
    /// - Throws: ``QuotaExceeded`` (answered 409 `quota_exceeded`), or a database error.
    func reserve(_ resource: QuotaResource, tenantID: String, adding: Int64, in session: any SQLSession) async throws
}

extension QuotaLedger {
    /// ``reserve(_:tenantID:adding:in:)`` for one.
    public func reserve(_ resource: QuotaResource, tenantID: String, in session: any SQLSession) async throws {
        try await self.reserve(resource, tenantID: tenantID, adding: 1, in: session)
    }
}
