import Foundation
public import Logging

/// Where a database lives, parsed from what an operator types: a SQLite file path (or
/// `sqlite:///path`), or a PostgreSQL URL `postgres://user:password@host:port/database`
/// (`postgresql://` too; `?host=/run/postgresql` connects through that Unix socket directory).
public enum DatabaseLocation: Sendable, Equatable {
    case sqlite(path: String)
    case postgres(Postgres)

    /// A PostgreSQL server and database.
    public struct Postgres: Sendable, Equatable {
        public var host: String = "127.0.0.1"
        public var port: Int = 5432
        /// The socket file (`<dir>/.s.PGSQL.<port>`) when connecting through a Unix socket.
        public var unixSocketPath: String?
        public var username: String = "postgres"
        public var password: String?
        public var database: String?

        public init() {}
    }

    /// Parses `text`.
    /// - Throws: ``DatabaseError`` (`failed`) naming what is wrong.
    public init(parsing text: String) throws {
        let lower = text.lowercased()
        if lower.hasPrefix("sqlite://") {
            let path = String(text.dropFirst("sqlite://".count))
            guard !path.isEmpty else { throw DatabaseError(.failed, "sqlite:// needs a path, as in sqlite:///var/lib/cloud/control.sqlite") }
            self = .sqlite(path: path)
            return
        }
        guard lower.hasPrefix("postgres://") || lower.hasPrefix("postgresql://") else {
            guard !text.isEmpty, !text.contains("://") else {
                throw DatabaseError(.failed, "unsupported database '\(Self.redacted(text))': use a SQLite path or postgres://user:password@host:port/database")
            }
            self = .sqlite(path: text)
            return
        }
        guard let components = URLComponents(string: text) else {
            throw DatabaseError(.failed, "cannot parse the database URL '\(Self.redacted(text))'")
        }
        var postgres = Postgres()
        if let user = components.user, !user.isEmpty { postgres.username = user.removingPercentEncoding ?? user }
        postgres.password = components.password.map { $0.removingPercentEncoding ?? $0 }
        if let host = components.host, !host.isEmpty { postgres.host = host }
        if let port = components.port { postgres.port = port }
        let database = String(components.path.drop(while: { $0 == "/" }))
        postgres.database = database.isEmpty ? nil : database
        for item in components.queryItems ?? [] {
            switch item.name {
            case "host":
                guard let value = item.value, value.hasPrefix("/") else {
                    throw DatabaseError(.failed, "?host= must be a Unix socket directory such as /run/postgresql")
                }
                postgres.unixSocketPath = value.hasSuffix(".s.PGSQL.\(postgres.port)") ? value : "\(value)/.s.PGSQL.\(postgres.port)"
            case "sslmode":
                guard item.value == "disable" else {
                    throw DatabaseError(.failed, "only sslmode=disable is supported: run PostgreSQL on a private network or a Unix socket")
                }
            default:
                throw DatabaseError(.failed, "unknown database URL parameter '\(item.name)'")
            }
        }
        self = .postgres(postgres)
    }

    /// The URL with its password replaced, for logs and errors.
    public static func redacted(_ text: String) -> String {
        guard var components = URLComponents(string: text), components.password != nil else { return text }
        components.password = "xxxxx"
        return components.string ?? "(database URL)"
    }

    /// Opens the database (a PostgreSQL pool connects on first use; `timeout` bounds each of its
    /// statements and transactions, waiting for a connection included).
    public func open(logger: Logger, timeout: Duration = .seconds(5)) throws -> any SQLDatabase {
        switch self {
        case .sqlite(let path): return try SQLiteDatabase(path: path)
        case .postgres(let postgres): return PostgresDatabase(location: postgres, timeout: timeout, logger: logger)
        }
    }
}
