import Foundation
import SQLite

/// One schema migration: numbered, named, statements separated by `;` at the end of a line.
public struct Migration: Sendable {
    public var version: Int
    public var name: String
    public var sql: String

    public init(version: Int, name: String, sql: String) {
        self.version = version
        self.name = name
        self.sql = sql
    }

    /// The statements one by one (PostgreSQL's extended protocol takes one at a time).
    public var statements: [String] {
        self.sql.components(separatedBy: ";\n")
            .map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
            .map { $0.hasSuffix(";") ? String($0.dropLast()) : $0 }
            .filter { !$0.isEmpty }
    }
}

/// Applies migrations in order and records them in `schema_migrations`.
///
/// All pending migrations run in one transaction that first takes a lock every process of the
/// deployment shares: PostgreSQL's transaction-scoped advisory lock `lockKey`, SQLite's
/// `BEGIN IMMEDIATE` write lock. Processes that start together therefore apply each migration once:
/// the second waits, then finds nothing left to do. A failed migration rolls back entirely.
public enum Migrator {
    static let bootstrap = """
        CREATE TABLE IF NOT EXISTS schema_migrations (
            version INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            applied_at BIGINT NOT NULL
        )
        """

    /// Applies what is missing of `migrations`; returns how many ran.
    /// - Throws: ``DatabaseError``; nothing is applied then.
    public static func migrate(_ database: any SQLDatabase, _ migrations: [Migration], lockKey: Int64, now: Int64) async throws -> Int {
        try await database.transaction { db in
            if database.dialect == .postgres {
                try await db.query("SELECT pg_advisory_xact_lock($1)", [.integer(lockKey)])
            }
            try await db.query(Self.bootstrap)
            let applied = Set(try await db.query("SELECT version FROM schema_migrations").map { $0.int(0) })
            var count = 0
            for migration in migrations.sorted(by: { $0.version < $1.version }) where !applied.contains(Int64(migration.version)) {
                for statement in migration.statements { try await db.query(statement) }
                try await db.query(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
                    [.integer(Int64(migration.version)), .text(migration.name), .integer(now)])
                count += 1
            }
            return count
        }
    }
}
