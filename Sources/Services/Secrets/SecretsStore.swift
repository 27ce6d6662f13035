import Database
import Hashing
import ServiceContract
import SQLite

/// A secret's metadata (never its value).
struct SecretRecord: Sendable, Equatable {
    var tenantID: String
    var name: String
    var description: String
    /// The newest value's number (values are numbered from 1).
    var latestVersion: Int64
    /// Raised by every change of the secret (a new value, a new description, delete, restore): its ETag.
    var version: Int64
    var createdAt: Int64
    var updatedAt: Int64
    /// Set while the secret waits out its recovery window; it is purged at `purgeAt`.
    var deletedAt: Int64?
    var purgeAt: Int64?
}

/// One value of a secret, sealed.
struct SecretVersionRecord: Sendable, Equatable {
    var version: Int64
    var createdAt: Int64
}

/// The service's tables (migration 1 of `secrets`). Times are unix milliseconds; sealed values and
/// wrapped keys are base64 text so the same SQL runs on SQLite and PostgreSQL.
enum SecretsSchema {
    static let migrations = [
        Migration(version: 1, name: "secrets, versions and tenant data keys", sql: """
            CREATE TABLE secrets_data_keys (
                tenant_id TEXT PRIMARY KEY,
                master_key_id TEXT NOT NULL,
                wrapped TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                rewrapped_at BIGINT
            );
            CREATE TABLE secrets_secrets (
                tenant_id TEXT NOT NULL,
                name TEXT NOT NULL,
                description TEXT NOT NULL,
                latest_version BIGINT NOT NULL,
                version BIGINT NOT NULL,
                created_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL,
                deleted_at BIGINT,
                purge_at BIGINT,
                PRIMARY KEY (tenant_id, name)
            );
            CREATE INDEX secrets_secrets_purge ON secrets_secrets (purge_at);
            CREATE TABLE secrets_versions (
                tenant_id TEXT NOT NULL,
                name TEXT NOT NULL,
                version BIGINT NOT NULL,
                sealed TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                PRIMARY KEY (tenant_id, name, version)
            );
            """)
    ]

    static let columns = "tenant_id, name, description, latest_version, version, created_at, updated_at, deleted_at, purge_at"

    static func secret(_ row: SQLRow) -> SecretRecord {
        SecretRecord(
            tenantID: row.text(0), name: row.text(1), description: row.text(2), latestVersion: row.int(3), version: row.int(4),
            createdAt: row.int(5), updatedAt: row.int(6), deletedAt: row.optionalInt(7), purgeAt: row.optionalInt(8))
    }

    /// The secret, read for a change (locked on PostgreSQL until the transaction ends).
    static func secret(_ db: any SQLSession, tenantID: String, name: String, dialect: SQLDialect, forUpdate: Bool = false) async throws
        -> SecretRecord?
    {
        let lock = forUpdate && dialect == .postgres ? " FOR UPDATE" : ""
        return try await db.query(
            "SELECT \(Self.columns) FROM secrets_secrets WHERE tenant_id = $1 AND name = $2\(lock)", [.text(tenantID), .text(name)]
        ).first.map(Self.secret)
    }
}
