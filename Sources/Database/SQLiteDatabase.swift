public import NIOPosix
public import SQLite
import Synchronization
import CSQLite

/// ``SQLDatabase`` on an embedded SQLite file (WAL, synchronous FULL, foreign keys on).
///
/// One connection: transactions take turns through an async lock (so a transaction's statements never
/// interleave with another's), and every statement runs on the database's own thread so that event
/// loops and the cooperative pool never wait on the disk — nor on another process's write lock, which
/// SQLite waits for (up to 10 s) by blocking the calling thread. A shared pool would let several
/// databases' waits starve the one holding the lock. Transactions start with `BEGIN IMMEDIATE`,
/// which also serializes writers across processes sharing the file.
public final class SQLiteDatabase: SQLDatabase {
    private let connection: Mutex<SQLiteConnection?>
    private let threadPool: NIOThreadPool
    private let ownsThreadPool: Bool
    private let lock = AsyncLock()

    public var dialect: SQLDialect { .sqlite }

    /// Opens (creating when missing) the database at `path`.
    /// - Parameter threadPool: Where statements run; default a thread of its own.
    /// - Throws: ``DatabaseError`` (`unavailable`) when it cannot be opened.
    public init(path: String, threadPool: NIOThreadPool? = nil) throws {
        do {
            let connection = try SQLiteConnection(path: path)
            try connection.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON")
            self.connection = Mutex(connection)
        } catch {
            throw DatabaseError(.unavailable, "cannot open \(path): \(error)")
        }
        if let threadPool {
            self.threadPool = threadPool
            self.ownsThreadPool = false
        } else {
            self.threadPool = NIOThreadPool(numberOfThreads: 1)
            self.threadPool.start()
            self.ownsThreadPool = true
        }
    }

    deinit {
        if self.ownsThreadPool { self.threadPool.shutdownGracefully { _ in } }
    }

    /// Runs `body` on the database's thread. A cancelled caller's statement is skipped (it throws
    /// `CancellationError`), so a cancelled transaction stops at its next statement.
    private func run<T: Sendable>(_ body: @escaping @Sendable (SQLiteConnection) throws -> T) async throws -> T {
        try await self.threadPool.runIfActive { try self.withConnection(body) }
    }

    /// Runs `body` on the database's thread even when the caller is cancelled: for `COMMIT` and
    /// `ROLLBACK`, which must not be skipped. A skipped `ROLLBACK` would leave the connection inside
    /// the cancelled transaction, and every later `BEGIN` would fail ("cannot start a transaction
    /// within a transaction") while other statements joined the abandoned transaction.
    private func runToCompletion(_ body: @escaping @Sendable (SQLiteConnection) throws -> Void) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            self.threadPool.submit { state in
                guard case .active = state else {
                    continuation.resume(throwing: DatabaseError(.unavailable, "the database is closed"))
                    return
                }
                continuation.resume(with: Result { try self.withConnection(body) })
            }
        }
    }

    private func withConnection<T>(_ body: (SQLiteConnection) throws -> T) throws -> T {
        try self.connection.withLock { connection in
            guard let connection else { throw DatabaseError(.unavailable, "the database is closed") }
            do {
                return try body(connection)
            } catch let error as SQLiteError {
                throw Self.map(error)
            }
        }
    }

    static func map(_ error: SQLiteError) -> DatabaseError {
        switch error.code {
        case constraintUnique, constraintPrimaryKey: return DatabaseError(.uniqueViolation, error.description)
        case SQLITE_BUSY, SQLITE_LOCKED, SQLITE_IOERR, SQLITE_FULL, SQLITE_READONLY, SQLITE_CANTOPEN:
            return DatabaseError(.unavailable, error.description)
        default:
            switch error.code & 0xff {
            case SQLITE_BUSY, SQLITE_LOCKED, SQLITE_IOERR, SQLITE_FULL, SQLITE_READONLY, SQLITE_CANTOPEN:
                return DatabaseError(.unavailable, error.description)
            default: return DatabaseError(.failed, error.description)
            }
        }
    }

    fileprivate func statement(_ sql: String, _ parameters: [SQLValue]) async throws -> [SQLRow] {
        try await self.run { db in
            var rows: [SQLRow] = []
            try db.query(sql, parameters) { row in
                rows.append(SQLRow((0..<row.columnCount).map { row.value($0) }))
            }
            return rows
        }
    }

    public func transaction<T: Sendable>(_ body: @escaping @Sendable (any SQLSession) async throws -> T) async throws -> T {
        try await self.lock.withLock {
            try await self.run { db in try db.execute("BEGIN IMMEDIATE") }
            do {
                let result = try await body(Session(database: self))
                try await self.runToCompletion { db in try db.execute("COMMIT") }
                return result
            } catch {
                // After a failed COMMIT SQLite may have rolled back already; the transaction is then gone.
                try? await self.runToCompletion { db in if !db.isAutocommit { try db.execute("ROLLBACK") } }
                throw error
            }
        }
    }

    public func query(_ sql: String, _ parameters: [SQLValue]) async throws -> [SQLRow] {
        try await self.lock.withLock { try await self.statement(sql, parameters) }
    }

    public func close() async {
        await self.lock.withLock { self.connection.withLock { $0 = nil } }
    }

    private struct Session: SQLSession {
        let database: SQLiteDatabase

        func query(_ sql: String, _ parameters: [SQLValue]) async throws -> [SQLRow] {
            try await self.database.statement(sql, parameters)
        }
    }
}

// SQLITE_CONSTRAINT_UNIQUE and SQLITE_CONSTRAINT_PRIMARYKEY (extended result codes).
private let constraintUnique: Int32 = SQLITE_CONSTRAINT | (8 << 8)
private let constraintPrimaryKey: Int32 = SQLITE_CONSTRAINT | (6 << 8)

/// A lock that suspends instead of blocking: waiters resume in arrival order.
final class AsyncLock: Sendable {
    private struct State {
        var locked = false
        var waiters: [CheckedContinuation<Void, Never>] = []
        var head = 0
    }

    private let state = Mutex(State())

    func lock() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let acquired = self.state.withLock { state in
                if state.locked {
                    state.waiters.append(continuation)
                    return false
                }
                state.locked = true
                return true
            }
            if acquired { continuation.resume() }
        }
    }

    func unlock() {
        let next = self.state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard state.head < state.waiters.count else {
                state.locked = false
                state.waiters.removeAll(keepingCapacity: true)
                state.head = 0
                return nil
            }
            let next = state.waiters[state.head]
            state.head += 1
            return next
        }
        // The lock passes to the next waiter without being released in between.
        next?.resume()
    }

    func withLock<T: Sendable>(_ body: () async throws -> T) async rethrows -> T {
        await self.lock()
        defer { self.unlock() }
        return try await body()
    }
}
