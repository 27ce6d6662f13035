import CSQLite

/// A failure reported by SQLite, with its result code and message.
public struct SQLiteError: Error, Sendable, CustomStringConvertible {
    /// The SQLite primary or extended result code.
    public var code: Int32
    /// SQLite's message for the failure.
    public var message: String

    public init(code: Int32, message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "SQLite error \(self.code): \(self.message)" }

    /// A UNIQUE or PRIMARY KEY constraint failed.
    public var isConstraintViolation: Bool { self.code & 0xff == SQLITE_CONSTRAINT }
}

/// A value bound to a statement parameter.
public enum SQLValue: Sendable, Equatable {
    case null
    case integer(Int64)
    case text(String)
    case blob([UInt8])

    public init(_ value: String?) { self = value.map { .text($0) } ?? .null }
    public init(_ value: Int64?) { self = value.map { .integer($0) } ?? .null }
}

/// One SQLite connection, shared by the storage engine's metadata and the control plane's store.
///
/// Statements take their parameters either positionally (`?`) or as PostgreSQL-style `$1`, `$2`, …
/// (bound by name, so the same SQL text runs on PostgreSQL); prepared statements are cached.
/// Not thread-safe: one owner at a time.
public final class SQLiteConnection: @unchecked Sendable {
    // @unchecked: opened with SQLITE_OPEN_NOMUTEX and used by one thread at a time; each store hands a
    // connection to exactly one job at a time (a writer drain, a checked-out reader, or under a Mutex).
    private var handle: OpaquePointer?
    private var statements: [String: OpaquePointer] = [:]

    public init(path: String, readOnly: Bool = false) throws(SQLiteError) {
        var db: OpaquePointer?
        let flags = (readOnly ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE)) | SQLITE_OPEN_NOMUTEX
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
    public func execute(_ sql: String) throws(SQLiteError) {
        var errorMessage: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(self.handle, sql, nil, nil, &errorMessage)
        if rc != SQLITE_OK {
            let message = errorMessage.map { String(cString: $0) } ?? "exec failed"
            sqlite3_free(errorMessage)
            throw SQLiteError(code: rc, message: message)
        }
    }

    /// Runs a statement with bound parameters, calling `row` for each result row.
    public func query(_ sql: String, _ parameters: [SQLValue] = [], row: (SQLiteRow) throws -> Void = { _ in }) throws {
        let statement = try self.prepare(sql)
        defer {
            sqlite3_reset(statement)
            sqlite3_clear_bindings(statement)
        }
        let named = sqlite3_bind_parameter_name(statement, 1).map { $0.pointee == UInt8(ascii: "$") } ?? false
        for (index, parameter) in parameters.enumerated() {
            let position = named ? sqlite3_bind_parameter_index(statement, "$\(index + 1)") : Int32(index + 1)
            // A `$n` the statement does not use is skipped.
            guard position > 0 else { continue }
            let rc: Int32
            switch parameter {
            case .null: rc = sqlite3_bind_null(statement, position)
            case .integer(let value): rc = sqlite3_bind_int64(statement, position, value)
            case .text(let value): rc = sqlite3_bind_text(statement, position, value, -1, sqliteTransient)
            case .blob(let value):
                rc = value.withUnsafeBytes { bytes in
                    // A zero-length blob must still bind as a blob, not NULL.
                    sqlite3_bind_blob(statement, position, bytes.baseAddress ?? UnsafeRawPointer(bitPattern: 1), Int32(bytes.count), sqliteTransient)
                }
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
    public var changes: Int { Int(sqlite3_changes(self.handle)) }

    /// Whether no transaction is open (SQLite's autocommit mode).
    public var isAutocommit: Bool { sqlite3_get_autocommit(self.handle) != 0 }

    /// Runs `body` in a transaction: committed when it returns, rolled back when it throws.
    public func transaction<T>(_ body: () throws -> T) throws -> T {
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
public struct SQLiteRow {
    fileprivate let statement: OpaquePointer

    public func int(_ column: Int32) -> Int64 { sqlite3_column_int64(self.statement, column) }

    public func optionalInt(_ column: Int32) -> Int64? { self.isNull(column) ? nil : self.int(column) }

    public func isNull(_ column: Int32) -> Bool { sqlite3_column_type(self.statement, column) == SQLITE_NULL }

    public func text(_ column: Int32) -> String {
        guard let pointer = sqlite3_column_text(self.statement, column) else { return "" }
        let count = Int(sqlite3_column_bytes(self.statement, column))
        return String(decoding: UnsafeBufferPointer(start: pointer, count: count), as: UTF8.self)
    }

    public func optionalText(_ column: Int32) -> String? { self.isNull(column) ? nil : self.text(column) }

    /// How many columns the row has.
    public var columnCount: Int32 { sqlite3_column_count(self.statement) }

    /// The column as the value SQLite holds (REAL columns come back as text).
    public func value(_ column: Int32) -> SQLValue {
        switch sqlite3_column_type(self.statement, column) {
        case SQLITE_NULL: return .null
        case SQLITE_INTEGER: return .integer(self.int(column))
        case SQLITE_BLOB: return .blob(self.blob(column))
        default: return .text(self.text(column))
        }
    }

    public func blob(_ column: Int32) -> [UInt8] {
        let count = Int(sqlite3_column_bytes(self.statement, column))
        guard count > 0, let pointer = sqlite3_column_blob(self.statement, column) else { return [] }
        return Array(UnsafeRawBufferPointer(start: pointer, count: count))
    }
}

private let sqliteTransient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
