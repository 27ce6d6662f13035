import CSQLite

/// A failure reported by SQLite, with its result code and message.
struct SQLiteError: Error, Sendable, CustomStringConvertible {
    /// The SQLite primary or extended result code.
    var code: Int32
    /// SQLite's message for the failure.
    var message: String

    var description: String { "SQLite error \(self.code): \(self.message)" }

    /// A UNIQUE or PRIMARY KEY constraint failed.
    var isConstraintViolation: Bool { self.code & 0xff == SQLITE_CONSTRAINT }
}

/// A value bound to, or read from, a statement parameter.
enum SQLValue: Sendable {
    case null
    case integer(Int64)
    case text(String)

    init(_ value: String?) { self = value.map { .text($0) } ?? .null }
    init(_ value: Int64?) { self = value.map { .integer($0) } ?? .null }
}

/// One SQLite connection for the control plane (the same wrapper style as the storage engine's).
///
/// Statements use PostgreSQL-style placeholders (`$1`, `$2`, …), which SQLite accepts as named
/// parameters; they are bound by name, so the same SQL text runs on both databases.
final class SQLiteConnection: @unchecked Sendable {
    // @unchecked: opened with SQLITE_OPEN_NOMUTEX and used by one thread at a time; the store only
    // touches it inside its Mutex.
    private var handle: OpaquePointer?
    private var statements: [String: OpaquePointer] = [:]

    init(path: String) throws(SQLiteError) {
        var db: OpaquePointer?
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX
        let rc = sqlite3_open_v2(path, &db, flags, nil)
        guard rc == SQLITE_OK, let db else {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? "cannot open"
            sqlite3_close_v2(db)
            throw SQLiteError(code: rc, message: message)
        }
        self.handle = db
        sqlite3_busy_timeout(db, 10_000)
        sqlite3_extended_result_codes(db, 1)
    }

    deinit {
        for statement in self.statements.values { sqlite3_finalize(statement) }
        sqlite3_close_v2(self.handle)
    }

    /// Runs one or more statements that return no rows.
    func execute(_ sql: String) throws(SQLiteError) {
        var errorMessage: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(self.handle, sql, nil, nil, &errorMessage)
        if rc != SQLITE_OK {
            let message = errorMessage.map { String(cString: $0) } ?? "exec failed"
            sqlite3_free(errorMessage)
            throw SQLiteError(code: rc, message: message)
        }
    }

    /// Runs a statement with parameters `$1…$n`, calling `row` for each result row.
    func query(_ sql: String, _ parameters: [SQLValue] = [], row: (SQLiteRow) throws -> Void = { _ in }) throws {
        let statement = try self.prepare(sql)
        defer {
            sqlite3_reset(statement)
            sqlite3_clear_bindings(statement)
        }
        for (index, parameter) in parameters.enumerated() {
            let position = sqlite3_bind_parameter_index(statement, "$\(index + 1)")
            guard position > 0 else { continue }
            let rc: Int32
            switch parameter {
            case .null: rc = sqlite3_bind_null(statement, position)
            case .integer(let value): rc = sqlite3_bind_int64(statement, position, value)
            case .text(let value): rc = sqlite3_bind_text(statement, position, value, -1, sqliteTransient)
            }
            guard rc == SQLITE_OK else { throw self.error(rc) }
        }
        while true {
            let rc = sqlite3_step(statement)
            if rc == SQLITE_DONE { return }
            guard rc == SQLITE_ROW else { throw self.error(rc) }
            try row(SQLiteRow(statement: statement))
        }
    }

    /// The number of rows the last statement changed.
    var changes: Int { Int(sqlite3_changes(self.handle)) }

    /// Runs `body` in a transaction: committed when it returns, rolled back when it throws.
    func transaction<T>(_ body: () throws -> T) throws -> T {
        try self.execute("BEGIN IMMEDIATE")
        do {
            let result = try body()
            try self.execute("COMMIT")
            return result
        } catch {
            try? self.execute("ROLLBACK")
            throw error
        }
    }

    private func prepare(_ sql: String) throws(SQLiteError) -> OpaquePointer {
        if let cached = self.statements[sql] { return cached }
        var statement: OpaquePointer?
        let rc = sqlite3_prepare_v3(self.handle, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &statement, nil)
        guard rc == SQLITE_OK, let statement else { throw self.error(rc) }
        self.statements[sql] = statement
        return statement
    }

    private func error(_ rc: Int32) -> SQLiteError {
        SQLiteError(code: rc, message: String(cString: sqlite3_errmsg(self.handle)))
    }
}

/// A view of the current row of a statement; valid only inside the `row` callback.
struct SQLiteRow {
    fileprivate let statement: OpaquePointer

    func int(_ column: Int32) -> Int64 { sqlite3_column_int64(self.statement, column) }

    func optionalInt(_ column: Int32) -> Int64? { self.isNull(column) ? nil : self.int(column) }

    func isNull(_ column: Int32) -> Bool { sqlite3_column_type(self.statement, column) == SQLITE_NULL }

    func text(_ column: Int32) -> String {
        guard let pointer = sqlite3_column_text(self.statement, column) else { return "" }
        let count = Int(sqlite3_column_bytes(self.statement, column))
        return String(decoding: UnsafeBufferPointer(start: pointer, count: count), as: UTF8.self)
    }

    func optionalText(_ column: Int32) -> String? { self.isNull(column) ? nil : self.text(column) }
}

private let sqliteTransient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
