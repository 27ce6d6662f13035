public import Logging
import Foundation
import NIOCore
import PostgresNIO
public import SQLite

/// ``SQLDatabase`` on PostgreSQL through postgres-nio's connection pool.
///
/// Several processes may share one database: writes that must not race are guarded by unique
/// constraints (a violation becomes ``DatabaseError/Kind/uniqueViolation``) or by row locks taken
/// with `SELECT … FOR UPDATE` (`SKIP LOCKED` where ``SQLDialect/postgres`` allows it).
public final class PostgresDatabase: SQLDatabase {
    private let client: PostgresClient
    private let runner: Task<Void, Never>
    private let logger: Logger
    /// How long a statement or transaction may take, waiting for a connection included.
    private let timeout: Duration

    public var dialect: SQLDialect { .postgres }

    /// Starts a pool of at most `maximumConnections` connections to `location`.
    /// Connections open on first use; ``SQLDatabase/query(_:)`` answers whether the server does.
    public init(location: DatabaseLocation.Postgres, maximumConnections: Int = 20, timeout: Duration = .seconds(5), logger: Logger) {
        var configuration: PostgresClient.Configuration
        if let socket = location.unixSocketPath {
            configuration = PostgresClient.Configuration(
                unixSocketPath: socket, username: location.username, password: location.password, database: location.database)
        } else {
            configuration = PostgresClient.Configuration(
                host: location.host, port: location.port, username: location.username, password: location.password,
                database: location.database, tls: .disable)
        }
        configuration.options.maximumConnections = maximumConnections
        configuration.options.connectTimeout = .seconds(5)
        let client = PostgresClient(configuration: configuration, backgroundLogger: logger)
        self.client = client
        self.logger = logger
        self.timeout = timeout
        self.runner = Task { await client.run() }
    }

    public func transaction<T: Sendable>(_ body: @escaping @Sendable (any SQLSession) async throws -> T) async throws -> T {
        try await self.withDeadline {
            try await self.client.withConnection { connection in
                let session = Session(connection: connection, logger: self.logger)
                try await session.query("BEGIN")
                do {
                    let result = try await body(session)
                    try await session.query("COMMIT")
                    return result
                } catch {
                    _ = try? await session.query("ROLLBACK")
                    throw error
                }
            }
        }
    }

    public func query(_ sql: String, _ parameters: [SQLValue]) async throws -> [SQLRow] {
        try await self.withDeadline {
            let rows = try await self.client.query(Session.makeQuery(sql, parameters), logger: self.logger)
            return try await Session.collect(rows)
        }
    }

    /// Runs `operation`, failing with `unavailable` when it has not finished within ``timeout``: the
    /// pool waits for a connection indefinitely (and retries connecting in the background) while the
    /// server is down, and a caller must get an answer instead.
    private func withDeadline<T: Sendable>(_ operation: @escaping @Sendable () async throws -> T) async throws -> T {
        let timeout = self.timeout
        do {
            return try await withThrowingTaskGroup(of: T?.self) { group in
                group.addTask { try await operation() }
                group.addTask {
                    try await Task.sleep(for: timeout)
                    return nil
                }
                defer { group.cancelAll() }
                guard let first = try await group.next(), let result = first else {
                    throw DatabaseError(.unavailable, "PostgreSQL did not answer within \(timeout)")
                }
                return result
            }
        } catch let error as PSQLError {
            throw Self.map(error)
        } catch is CancellationError where Task.isCancelled {
            throw CancellationError()  // the caller was cancelled: not the server's fault
        } catch is CancellationError {
            throw DatabaseError(.unavailable, "PostgreSQL did not answer within \(timeout)")
        }
    }

    public func close() async {
        self.runner.cancel()
        _ = await self.runner.value
    }

    /// Maps a driver error: SQLSTATE 23505 is a unique violation, connection-level failures are
    /// `unavailable`, other server errors `failed`. Parameter values are never included.
    static func map(_ error: PSQLError) -> DatabaseError {
        guard error.code == .server, let info = error.serverInfo else {
            return DatabaseError(.unavailable, "PostgreSQL unavailable: \(error.code)")
        }
        let state = info[.sqlState] ?? ""
        let message = "PostgreSQL \(state): \(info[.message] ?? "error")"
        switch state {
        case "23505": return DatabaseError(.uniqueViolation, message)
        // Connection exceptions, insufficient resources, operator intervention, deadlock/serialization.
        case let state where state.hasPrefix("08") || state.hasPrefix("53") || state.hasPrefix("57") || state.hasPrefix("40"):
            return DatabaseError(.unavailable, message)
        default: return DatabaseError(.failed, message)
        }
    }

    private struct Session: SQLSession {
        let connection: PostgresConnection
        let logger: Logger

        func query(_ sql: String, _ parameters: [SQLValue]) async throws -> [SQLRow] {
            do {
                let rows = try await self.connection.query(Self.makeQuery(sql, parameters), logger: self.logger)
                return try await Self.collect(rows)
            } catch let error as PSQLError {
                throw PostgresDatabase.map(error)
            }
        }

        static func makeQuery(_ sql: String, _ parameters: [SQLValue]) -> PostgresQuery {
            var binds = PostgresBindings(capacity: parameters.count)
            for parameter in parameters {
                switch parameter {
                case .null: binds.appendNull()
                case .integer(let value): binds.append(value)
                case .text(let value): binds.append(value)
                case .blob(let value): binds.append(ByteBuffer(bytes: value))
                }
            }
            return PostgresQuery(unsafeSQL: sql, binds: binds)
        }

        static func collect(_ rows: PostgresRowSequence) async throws -> [SQLRow] {
            var result: [SQLRow] = []
            for try await row in rows {
                var values: [SQLValue] = []
                values.reserveCapacity(row.count)
                for cell in row { values.append(try Self.value(cell)) }
                result.append(SQLRow(values))
            }
            return result
        }

        static func value(_ cell: PostgresCell) throws -> SQLValue {
            guard var bytes = cell.bytes else { return .null }
            switch cell.dataType {
            case .int2, .int4, .int8: return .integer(try cell.decode(Int64.self))
            case .bool: return .integer(try cell.decode(Bool.self) ? 1 : 0)
            case .bytea: return .blob(bytes.readBytes(length: bytes.readableBytes) ?? [])
            // SUM() of integers is numeric; the control plane's columns hold integers only.
            case .numeric:
                let text = "\(try cell.decode(Decimal.self))"
                return Int64(text).map { .integer($0) } ?? .text(text)
            case .float4, .float8: return .text("\(try cell.decode(Double.self))")
            default:
                if cell.format == .text { return .text(bytes.readString(length: bytes.readableBytes) ?? "") }
                return .text(try cell.decode(String.self))
            }
        }
    }
}
