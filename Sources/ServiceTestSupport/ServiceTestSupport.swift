public import ControlPlane
public import Database
import Foundation
public import Logging
public import ServiceContract

/// What the services' tests share: the databases they run on, a fresh database of either kind, and
/// a driver of the control API that registers users and calls routes as a client would.

/// The databases service tests run on: SQLite always, PostgreSQL when `CLOUD_TEST_POSTGRES_URL` is set
/// (`scripts/with-postgres.sh` sets it).
public enum Backing: String, CaseIterable, Sendable, CustomStringConvertible {
    case sqlite, postgres

    public var description: String { self.rawValue }

    public static var available: [Backing] {
        (ProcessInfo.processInfo.environment["CLOUD_TEST_POSTGRES_URL"] ?? "").isEmpty ? [.sqlite] : [.sqlite, .postgres]
    }

    /// A fresh, empty database: a new SQLite file in a new temporary directory, or a new database on
    /// the test PostgreSQL server.
    /// - Parameter prefix: Names the directory or database (`secrets` → `secrets_1a2b…`).
    /// - Returns: Where it is (to open more pools on it) and an open pool.
    public func freshDatabase(prefix: String, logger: Logger) async throws -> (location: DatabaseLocation, database: any SQLDatabase) {
        let location: DatabaseLocation
        switch self {
        case .sqlite:
            let directory = NSTemporaryDirectory() + "\(prefix)-test-" + UUID().uuidString
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            location = .sqlite(path: directory + "/control.sqlite")
        case .postgres:
            guard let url = ProcessInfo.processInfo.environment["CLOUD_TEST_POSTGRES_URL"], !url.isEmpty,
                case .postgres(var server) = try DatabaseLocation(parsing: url)
            else { throw APIError.unavailable("CLOUD_TEST_POSTGRES_URL names no PostgreSQL server") }
            let admin = PostgresDatabase(location: server, timeout: .seconds(60), logger: logger)
            let name = prefix + "_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(12)
            try await admin.query("CREATE DATABASE \(name)")
            await admin.close()
            server.database = String(name)
            location = .postgres(server)
        }
        return (location, try location.open(logger: logger, timeout: .seconds(60)))
    }
}

/// Calls the control API in-process, as an HTTP client would (JSON bodies, `X-API-Key`).
public struct APIDriver: Sendable {
    public let api: ControlAPI

    public init(_ api: ControlAPI) { self.api = api }

    /// The answer's status, its body parsed as JSON (nil when it is not JSON) and the answer itself.
    @discardableResult
    public func call(_ method: String, _ path: String, key: String? = nil, body: String = "", headers: [(String, String)] = []) async
        -> (Int, JSONValue?, APIResponse)
    {
        var all: [(String, String)] = [("Content-Type", "application/json")] + headers
        if let key { all.append(("X-API-Key", key)) }
        let request = APIRequest(method: method, target: path, headers: all, body: Array(body.utf8), requestID: "test", clientAddress: "127.0.0.1")
        let (response, _) = await self.api.handle(request)
        return (response.status, JSONValue.parse(response.body), response)
    }

    /// Registers `email` (their own tenant, admin there; registering again is harmless) and logs in,
    /// in `tenant` when given.
    /// - Returns: An API key.
    public func user(_ email: String, tenant: String? = nil) async throws -> String {
        _ = await self.call("POST", "/auth/register", body: #"{"email": "\#(email)", "name": "U", "password": "a long enough secret"}"#)
        let tenantField = tenant.map { #", "tenant_id": "\#($0)""# } ?? ""
        let (status, body, _) = await self.call(
            "POST", "/auth/login", body: #"{"email": "\#(email)", "password": "a long enough secret"\#(tenantField)}"#)
        guard status == 200, case .string(let key) = body?["api_key"] else {
            throw APIError(status: status, code: "login_failed", message: "login of \(email) answered \(status)")
        }
        return key
    }

    /// The tenant a key acts in.
    public func tenant(of key: String) async -> String {
        if case .string(let id) = await self.call("GET", "/auth/me", key: key).1?["tenant"]?["id"] { return id }
        return ""
    }
}

/// A JSON string's text, nil for anything else.
public func text(_ value: JSONValue?) -> String? { if case .string(let text) = value { text } else { nil } }
