public import SQLite

/// The SQL dialect behind a ``SQLDatabase``, for the few statements that differ (locks, `SKIP LOCKED`).
public enum SQLDialect: Sendable, Equatable {
    case sqlite
    case postgres
}

/// One database, embedded SQLite or PostgreSQL, behind one async interface.
///
/// Statements use `$1…$n` placeholders and the SQL subset both databases accept, so one query text
/// runs on either. Values are ``SQLValue``s in and ``SQLRow``s out.
public protocol SQLDatabase: Sendable {
    /// Which database this is.
    var dialect: SQLDialect { get }
    /// Runs `body` in one transaction: committed when it returns, rolled back when it throws.
    /// - Throws: What `body` throws, or ``DatabaseError``.
    func transaction<T: Sendable>(_ body: @escaping @Sendable (any SQLSession) async throws -> T) async throws -> T
    /// Runs one statement on its own (its own implicit transaction) and returns its rows.
    /// - Throws: ``DatabaseError``.
    func query(_ sql: String, _ parameters: [SQLValue]) async throws -> [SQLRow]
    /// Closes the connections; later calls fail.
    func close() async
}

extension SQLDatabase {
    /// Runs one statement without parameters.
    @discardableResult
    public func query(_ sql: String) async throws -> [SQLRow] { try await self.query(sql, []) }
}

/// The statements of one transaction.
public protocol SQLSession: Sendable {
    /// Runs one statement and returns its rows (use `RETURNING` to learn what a write touched).
    /// - Throws: ``DatabaseError``.
    @discardableResult
    func query(_ sql: String, _ parameters: [SQLValue]) async throws -> [SQLRow]
}

extension SQLSession {
    /// Runs one statement without parameters.
    @discardableResult
    public func query(_ sql: String) async throws -> [SQLRow] { try await self.query(sql, []) }
}

/// One result row: its columns in `SELECT` order.
public struct SQLRow: Sendable, Equatable {
    public var values: [SQLValue]

    public init(_ values: [SQLValue]) { self.values = values }

    private func value(_ column: Int) -> SQLValue { column < self.values.count ? self.values[column] : .null }

    /// The column as an integer (0 when it is NULL or not a number).
    public func int(_ column: Int) -> Int64 { self.optionalInt(column) ?? 0 }

    public func optionalInt(_ column: Int) -> Int64? {
        switch self.value(column) {
        case .integer(let value): return value
        case .text(let text): return Int64(text)
        case .null, .blob: return nil
        }
    }

    /// The column as text ("" when it is NULL).
    public func text(_ column: Int) -> String { self.optionalText(column) ?? "" }

    public func optionalText(_ column: Int) -> String? {
        switch self.value(column) {
        case .text(let text): return text
        case .integer(let value): return String(value)
        case .blob(let bytes): return String(decoding: bytes, as: UTF8.self)
        case .null: return nil
        }
    }

    /// The column as bytes (empty when it is NULL).
    public func blob(_ column: Int) -> [UInt8] {
        switch self.value(column) {
        case .blob(let bytes): return bytes
        case .text(let text): return Array(text.utf8)
        case .integer, .null: return []
        }
    }

    public func isNull(_ column: Int) -> Bool { self.value(column) == .null }
}

/// Why a database call failed, in the terms callers act on.
public struct DatabaseError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// A UNIQUE or PRIMARY KEY constraint refused the write.
        case uniqueViolation
        /// The database cannot be reached or was closed.
        case unavailable
        /// The statement failed (syntax, types, other constraints).
        case failed
    }

    public var kind: Kind
    /// The database's message (never holds parameter values).
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { self.message }
}
