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

/// Applies migrations in order and records them in `schema_migrations`, keyed by the service that
/// owns them and its own version number (each service numbers its migrations from 1).
///
/// All pending migrations run in one transaction that first takes a lock every process of the
/// deployment shares: PostgreSQL's transaction-scoped advisory lock `lockKey`, SQLite's
/// `BEGIN IMMEDIATE` write lock. Processes that start together therefore apply each migration once:
/// the second waits, then finds nothing left to do. A failed migration rolls back entirely.
///
/// A database from before services had their own numbers (`schema_migrations` keyed by version
/// alone) is converted in the same transaction: its rows become the `core` service's.
public enum Migrator {
    /// The service whose migrations the single-list ``migrate(_:_:lockKey:now:)`` applies.
    public static let coreService = "core"

    static let bootstrap = """
        CREATE TABLE IF NOT EXISTS schema_migrations (
            service TEXT NOT NULL,
            version INTEGER NOT NULL,
            name TEXT NOT NULL,
            applied_at BIGINT NOT NULL,
            PRIMARY KEY (service, version)
        )
        """

    /// Applies what is missing of `migrations` as the `core` service's; returns how many ran.
    /// - Throws: ``DatabaseError``; nothing is applied then.
    public static func migrate(_ database: any SQLDatabase, _ migrations: [Migration], lockKey: Int64, now: Int64) async throws -> Int {
        try await Self.migrate(database, [(Self.coreService, migrations)], lockKey: lockKey, now: now)
    }

    /// Applies what is missing of each service's migrations, services in the order given and each
    /// service's in version order; returns how many ran.
    /// - Throws: ``DatabaseError``; nothing is applied then.
    public static func migrate(
        _ database: any SQLDatabase, _ services: [(service: String, migrations: [Migration])], lockKey: Int64, now: Int64
    ) async throws -> Int {
        try await database.transaction { db in
            if database.dialect == .postgres {
                try await db.query("SELECT pg_advisory_xact_lock($1)", [.integer(lockKey)])
            }
            try await Self.convertUnkeyedTable(db, dialect: database.dialect)
            try await db.query(Self.bootstrap)
            var applied: Set<String> = []
            for row in try await db.query("SELECT service, version FROM schema_migrations") {
                applied.insert("\(row.text(0))/\(row.int(1))")
            }
            var count = 0
            for (service, migrations) in services {
                for migration in migrations.sorted(by: { $0.version < $1.version })
                where !applied.contains("\(service)/\(migration.version)") {
                    for statement in migration.statements { try await db.query(statement) }
                    try await db.query(
                        "INSERT INTO schema_migrations (service, version, name, applied_at) VALUES ($1, $2, $3, $4)",
                        [.text(service), .integer(Int64(migration.version)), .text(migration.name), .integer(now)])
                    count += 1
                }
            }
            return count
        }
    }

    /// Turns a `schema_migrations` keyed by version alone into the keyed one, its rows the core's.
    private static func convertUnkeyedTable(_ db: any SQLSession, dialect: SQLDialect) async throws {
        let (exists, hasService): (String, String) =
            switch dialect {
            case .postgres:
                (
                    "SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = 'schema_migrations'",
                    """
                    SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema()
                    AND table_name = 'schema_migrations' AND column_name = 'service'
                    """
                )
            case .sqlite:
                (
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'",
                    "SELECT 1 FROM pragma_table_info('schema_migrations') WHERE name = 'service'"
                )
            }
        guard try await !db.query(exists).isEmpty, try await db.query(hasService).isEmpty else { return }
        // A new table under another name, then the swap: renaming the old one first would leave its
        // primary-key index's name taken on PostgreSQL.
        try await db.query(Self.bootstrap.replacingOccurrences(of: "EXISTS schema_migrations (", with: "EXISTS schema_migrations_keyed ("))
        try await db.query(
            "INSERT INTO schema_migrations_keyed (service, version, name, applied_at) SELECT $1, version, name, applied_at FROM schema_migrations",
            [.text(Self.coreService)])
        try await db.query("DROP TABLE schema_migrations")
        try await db.query("ALTER TABLE schema_migrations_keyed RENAME TO schema_migrations")
    }
}
