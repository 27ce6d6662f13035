import Database
import Foundation
import Logging
import SQLite
import Testing

/// The databases every test here runs on: a fresh SQLite file always, and a fresh PostgreSQL
/// database when CLOUD_TEST_POSTGRES_URL names a server (`scripts/with-postgres.sh`, as `make test`).
enum TestDatabases {
    static var postgresURL: String? {
        ProcessInfo.processInfo.environment["CLOUD_TEST_POSTGRES_URL"].flatMap { $0.isEmpty ? nil : $0 }
    }

    static var kinds: [SQLDialect] { postgresURL == nil ? [.sqlite] : [.sqlite, .postgres] }

    /// Opens a new, empty database of `dialect`; `close` drops it.
    static func open(_ dialect: SQLDialect) async throws -> (database: any SQLDatabase, location: DatabaseLocation) {
        let logger = Logger(label: "test")
        switch dialect {
        case .sqlite:
            let path = NSTemporaryDirectory() + "db-test-" + UUID().uuidString + ".sqlite"
            return (try SQLiteDatabase(path: path), .sqlite(path: path))
        case .postgres:
            guard case .postgres(var location) = try DatabaseLocation(parsing: postgresURL!) else { fatalError("not postgres") }
            let admin = PostgresDatabase(location: location, timeout: .seconds(60), logger: logger)
            let name = "dbtest_" + UUID().uuidString.prefix(8).lowercased()
            try await admin.query("CREATE DATABASE \(name)")
            await admin.close()
            location.database = name
            // A generous deadline: these tests check results, not how fast a loaded CI machine answers.
            return (PostgresDatabase(location: location, timeout: .seconds(60), logger: logger), .postgres(location))
        }
    }
}

@Suite struct DatabaseTests {
    @Test(arguments: TestDatabases.kinds)
    func valuesRoundTrip(dialect: SQLDialect) async throws {
        let (db, _) = try await TestDatabases.open(dialect)
        defer { Task { await db.close() } }
        try await db.query("CREATE TABLE t (id TEXT PRIMARY KEY, n BIGINT, b BYTEA_OR_BLOB, note TEXT)"
            .replacingOccurrences(of: "BYTEA_OR_BLOB", with: dialect == .postgres ? "BYTEA" : "BLOB"))
        try await db.query(
            "INSERT INTO t (id, n, b, note) VALUES ($1, $2, $3, $4)",
            [.text("a"), .integer(Int64.max), .blob([0, 1, 255]), .null])
        let rows = try await db.query("SELECT id, n, b, note FROM t WHERE id = $1", [.text("a")])
        #expect(rows == [SQLRow([.text("a"), .integer(Int64.max), .blob([0, 1, 255]), .null])])
        #expect(rows[0].optionalText(3) == nil)
        #expect(try await db.query("SELECT count(*) FROM t")[0].int(0) == 1)
        // SUM of a BIGINT column is numeric in PostgreSQL, an integer in SQLite: both read as integers.
        #expect(try await db.query("SELECT SUM(n) - 1 FROM t")[0].int(0) == Int64.max - 1)
        #expect(try await db.query("SELECT SUM(n) FROM t WHERE id = 'none'")[0].optionalInt(0) == nil)
    }

    @Test(arguments: TestDatabases.kinds)
    func uniqueViolationsAndRollback(dialect: SQLDialect) async throws {
        let (db, _) = try await TestDatabases.open(dialect)
        defer { Task { await db.close() } }
        try await db.query("CREATE TABLE u (email TEXT PRIMARY KEY)")
        try await db.query("INSERT INTO u (email) VALUES ($1)", [.text("a@example.com")])
        await #expect {
            try await db.query("INSERT INTO u (email) VALUES ($1)", [.text("a@example.com")])
        } throws: { ($0 as? DatabaseError)?.kind == .uniqueViolation }
        struct Stop: Error {}
        await #expect(throws: Stop.self) {
            try await db.transaction { session in
                try await session.query("INSERT INTO u (email) VALUES ($1)", [.text("b@example.com")])
                throw Stop()
            }
        }
        let emails = try await db.query("SELECT email FROM u ORDER BY email").map { $0.text(0) }
        #expect(emails == ["a@example.com"], "the transaction that threw left nothing behind")
        await #expect {
            try await db.query("SELECT nonsense FROM u")
        } throws: { ($0 as? DatabaseError)?.kind == .failed }
    }

    @Test(arguments: TestDatabases.kinds)
    func concurrentTransactionsDoNotInterleave(dialect: SQLDialect) async throws {
        let (db, _) = try await TestDatabases.open(dialect)
        defer { Task { await db.close() } }
        try await db.query("CREATE TABLE counter (id INTEGER PRIMARY KEY, n BIGINT NOT NULL)")
        try await db.query("INSERT INTO counter (id, n) VALUES (1, 0)")
        let lock = dialect == .postgres ? " FOR UPDATE" : ""
        // Read-modify-write in each transaction: lost updates would show if they interleaved.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<40 {
                group.addTask {
                    try await db.transaction { session in
                        let n = try await session.query("SELECT n FROM counter WHERE id = 1\(lock)")[0].int(0)
                        try await session.query("UPDATE counter SET n = $1 WHERE id = 1", [.integer(n + 1)])
                    }
                }
            }
            try await group.waitForAll()
        }
        #expect(try await db.query("SELECT n FROM counter")[0].int(0) == 40)
    }

    /// A task cancelled inside a transaction (a task runner stopping, a client going away) rolls it
    /// back: its writes vanish and the next transaction starts. A ROLLBACK skipped because its task
    /// was cancelled left SQLite inside the abandoned transaction ("cannot start a transaction within a
    /// transaction" for every later BEGIN).
    @Test(arguments: TestDatabases.kinds)
    func aCancelledTransactionIsRolledBackAndTheNextOneRuns(dialect: SQLDialect) async throws {
        let (db, _) = try await TestDatabases.open(dialect)
        defer { Task { await db.close() } }
        try await db.query("CREATE TABLE c (id TEXT PRIMARY KEY)")
        let (written, signal) = AsyncStream.makeStream(of: Void.self)
        let cancelled = Task {
            try await db.transaction { session in
                try await session.query("INSERT INTO c (id) VALUES ($1)", [.text("abandoned")])
                signal.yield()
                try await Task.sleep(for: .seconds(600))
            }
        }
        for await _ in written { break }
        cancelled.cancel()
        await #expect(throws: CancellationError.self) { try await cancelled.value }
        try await db.transaction { session in
            try await session.query("INSERT INTO c (id) VALUES ($1)", [.text("next")])
        }
        #expect(try await db.query("SELECT id FROM c ORDER BY id").map { $0.text(0) } == ["next"])
    }

    @Test(arguments: TestDatabases.kinds)
    func migrationsApplyOnceUnderConcurrency(dialect: SQLDialect) async throws {
        let (first, location) = try await TestDatabases.open(dialect)
        defer { Task { await first.close() } }
        let migrations = [
            Migration(version: 1, name: "one", sql: "CREATE TABLE a (id TEXT PRIMARY KEY);\nINSERT INTO a (id) VALUES ('x');"),
            Migration(version: 2, name: "two", sql: "CREATE TABLE b (id TEXT PRIMARY KEY)"),
        ]
        // Several connections (as several processes would) migrate at once.
        var databases: [any SQLDatabase] = [first]
        for _ in 0..<3 { databases.append(try location.open(logger: Logger(label: "test"), timeout: .seconds(60))) }
        let counts = try await withThrowingTaskGroup(of: Int.self) { group in
            for database in databases {
                group.addTask { try await Migrator.migrate(database, migrations, lockKey: 42, now: 1) }
            }
            return try await group.reduce(into: [Int]()) { $0.append($1) }
        }
        #expect(counts.sorted() == [0, 0, 0, 2])
        #expect(try await first.query("SELECT count(*) FROM a")[0].int(0) == 1)
        let more = migrations + [Migration(version: 3, name: "three", sql: "CREATE TABLE c (id TEXT)")]
        #expect(try await Migrator.migrate(first, more, lockKey: 42, now: 2) == 1)
        for database in databases.dropFirst() { await database.close() }
    }

    /// A database migrated before services had their own numbers (`schema_migrations` keyed by version
    /// alone) keeps its history as the core's, and another service's version 1 then applies beside it.
    @Test(arguments: TestDatabases.kinds)
    func anUnkeyedHistoryBecomesTheCoresAndServicesNumberTheirOwn(dialect: SQLDialect) async throws {
        let (db, _) = try await TestDatabases.open(dialect)
        defer { Task { await db.close() } }
        try await db.query("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)")
        try await db.query("CREATE TABLE a (id TEXT PRIMARY KEY)")
        try await db.query("INSERT INTO schema_migrations (version, name, applied_at) VALUES (1, 'one', 5)")
        let core = [
            Migration(version: 1, name: "one", sql: "CREATE TABLE a (id TEXT PRIMARY KEY)"),
            Migration(version: 2, name: "two", sql: "CREATE TABLE b (id TEXT PRIMARY KEY)"),
        ]
        let service = [Migration(version: 1, name: "svc one", sql: "CREATE TABLE svc_things (id TEXT PRIMARY KEY)")]
        // Core's version 1 is not applied again (its table exists: a second CREATE would fail).
        #expect(try await Migrator.migrate(db, [("core", core), ("svc", service)], lockKey: 9, now: 6) == 2)
        #expect(try await Migrator.migrate(db, [("core", core), ("svc", service)], lockKey: 9, now: 7) == 0)
        let rows = try await db.query("SELECT service, version, applied_at FROM schema_migrations ORDER BY service, version")
        #expect(rows.map { "\($0.text(0))/\($0.int(1))@\($0.int(2))" } == ["core/1@5", "core/2@6", "svc/1@6"])
    }

    @Test(arguments: TestDatabases.kinds)
    func aFailedMigrationLeavesNothingApplied(dialect: SQLDialect) async throws {
        let (db, _) = try await TestDatabases.open(dialect)
        defer { Task { await db.close() } }
        let broken = [
            Migration(version: 1, name: "fine", sql: "CREATE TABLE a (id TEXT PRIMARY KEY)"),
            Migration(version: 2, name: "broken", sql: "CREATE TABLE b (id TEXT PRIMARY KEY);\nCREATE TABLE a (id TEXT)"),
        ]
        await #expect(throws: DatabaseError.self) { try await Migrator.migrate(db, broken, lockKey: 7, now: 1) }
        #expect(try await Migrator.migrate(db, Array(broken.prefix(1)), lockKey: 7, now: 1) == 1)
    }

    @Test func locationsParse() throws {
        #expect(try DatabaseLocation(parsing: "./cloud-data/control.sqlite") == .sqlite(path: "./cloud-data/control.sqlite"))
        #expect(try DatabaseLocation(parsing: "sqlite:///var/lib/cloud/c.sqlite") == .sqlite(path: "/var/lib/cloud/c.sqlite"))
        guard case .postgres(let tcp) = try DatabaseLocation(parsing: "postgres://cloud:s%40cret@db.internal:6543/control") else {
            Issue.record("not postgres")
            return
        }
        #expect(tcp.host == "db.internal" && tcp.port == 6543 && tcp.username == "cloud" && tcp.password == "s@cret")
        #expect(tcp.database == "control" && tcp.unixSocketPath == nil)
        guard case .postgres(let socket) = try DatabaseLocation(parsing: "postgresql://postgres@localhost/cloud?host=/run/postgresql") else {
            Issue.record("not postgres")
            return
        }
        #expect(socket.unixSocketPath == "/run/postgresql/.s.PGSQL.5432" && socket.database == "cloud")
        #expect(throws: DatabaseError.self) { try DatabaseLocation(parsing: "mysql://x@y/z") }
        #expect(throws: DatabaseError.self) { try DatabaseLocation(parsing: "postgres://x@y/z?sslmode=require") }
        #expect(throws: DatabaseError.self) { try DatabaseLocation(parsing: "postgres://x@y/z?host=relative") }
        #expect(DatabaseLocation.redacted("postgres://u:secret@h/d").contains("secret") == false)
    }
}
