import ControlPlane
import Database
import Foundation
import Logging
import Secrets
import SQLite
import ServiceContract
import Testing

@testable import CLI

/// The contract, checked for every service the platform hosts (`HostedServices`, the list `cloud dev`
/// and `cloud server` run): names and prefixes, permissions declared and granted as documented,
/// migrations that apply once on SQLite and PostgreSQL and make only the service's own tables, and
/// the RBAC matrix of every route with every built-in role.
@Suite struct ServiceContractTests {
    static let docs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../docs/services").standardized.path
    static let logger = Logger(label: "contract-test")

    static func services() -> [any CloudService] {
        HostedServices.make(storage: nil, masterKey: MasterKey.generate())
    }

    @Test func namesPrefixesAndPermissions() throws {
        let services = Self.services()
        let catalog = try ServiceCatalog(services: services)
        for service in services {
            let name = service.name
            for route in service.routes {
                #expect(service.routePrefixes.contains { route.spec.path == $0 || route.spec.path.hasPrefix($0 + "/") }, "\(route.spec.path)")
                // A service's routes act in a tenant under a permission; only platform infrastructure
                // (compute hosts) is the platform operators' (the RBAC matrix checks tenants get 403).
                #expect(route.spec.access != .authenticated, "\(name) \(route.spec.operationID)")
                if route.spec.access == .platformAdmin { #expect(route.spec.path.hasPrefix("/compute/hosts"), "\(route.spec.operationID)") }
                if route.spec.method == "GET" && route.spec.response.isList { #expect(route.spec.paginated, "\(route.spec.operationID) pages") }
            }
            for kind in service.tasks.map(\.kind) + service.schedules.map(\.kind) { #expect(kind.hasPrefix(name + "."), "\(kind)") }
            let used = Set(service.routes.compactMap { route -> Permission? in
                if case .permission(let permission) = route.spec.access { return permission }
                return nil
            })
            let page = try String(contentsOfFile: Self.docs + "/\(name).md", encoding: .utf8)
            for spec in service.permissions {
                #expect(used.contains(spec.permission), "\(name) declares \(spec.permission) but no route needs it")
                #expect(page.contains("`\(spec.permission)`"), "docs/services/\(name).md documents \(spec.permission)")
                for role in BuiltinRole.allCases {
                    let expected = role == .admin || spec.grantedTo.contains(role) || spec.permission.action == "read"
                    #expect(Permission.allows(catalog.permissions(of: role), spec.permission) == expected, "\(role) \(spec.permission)")
                }
            }
            let readme = try String(contentsOfFile: Self.docs + "/README.md", encoding: .utf8)
            #expect(readme.contains("[\(name).md](\(name).md)"), "docs/services/README.md lists \(name)")
        }
    }

    @Test(arguments: ["sqlite", "postgres"]) func migrationsApplyOnceAndMakeOnlyTheServicesTables(_ kind: String) async throws {
        let database: any SQLDatabase
        var cleanup: () async -> Void = {}
        switch kind {
        case "sqlite":
            let directory = NSTemporaryDirectory() + "contract-" + UUID().uuidString
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            database = try SQLiteDatabase(path: directory + "/control.sqlite")
        default:
            guard let url = ProcessInfo.processInfo.environment["CLOUD_TEST_POSTGRES_URL"], !url.isEmpty,
                case .postgres(var server) = try DatabaseLocation(parsing: url)
            else { return }
            let admin = PostgresDatabase(location: server, timeout: .seconds(60), logger: Self.logger)
            let name = "contract_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(12)
            try await admin.query("CREATE DATABASE \(name)")
            await admin.close()
            server.database = String(name)
            database = PostgresDatabase(location: server, timeout: .seconds(60), logger: Self.logger)
            cleanup = { await database.close() }
        }
        let tablesQuery =
            kind == "sqlite"
            ? "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
            : "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY table_name"
        let host = ControlStore(database: database)
        #expect(try await host.migrate() == Migrations.all.count)
        let before = Set(try await database.query(tablesQuery).map { $0.text(0) })
        let services = Self.services()
        let store = ControlStore(database: database, catalog: try ServiceCatalog(services: services))
        #expect(try await store.migrate() == services.map(\.migrations.count).reduce(0, +))
        #expect(try await store.migrate() == 0)
        let added = Set(try await database.query(tablesQuery).map { $0.text(0) }).subtracting(before)
        for table in added {
            #expect(services.contains { table.hasPrefix($0.name + "_") }, "the table \(table) belongs to no service by its name")
        }
        for service in services where !service.migrations.isEmpty {
            #expect(added.contains { $0.hasPrefix(service.name + "_") }, "\(service.name)'s migrations made no table of its own")
            let applied = try await database.query("SELECT version FROM schema_migrations WHERE service = $1 ORDER BY version", [.text(service.name)])
            #expect(applied.map { Int($0.int(0)) } == service.migrations.map(\.version).sorted())
        }
        await cleanup()
    }

    /// Every service route that needs a permission, called by a user holding one built-in role: 403
    /// exactly when the role does not grant it (and never 401 or 5xx for lack of a resource).
    @Test func rbacMatrix() async throws {
        let directory = NSTemporaryDirectory() + "contract-rbac-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let services = Self.services()
        let catalog = try ServiceCatalog(services: services)
        let store = ControlStore(database: try SQLiteDatabase(path: directory + "/control.sqlite"), catalog: catalog)
        _ = try await store.migrate()
        var configuration = ControlAPIConfiguration()
        configuration.passwordHashing = .test
        let api = try ControlAPI(store: store, configuration: configuration, logger: Self.logger)
        func call(_ method: String, _ path: String, key: String? = nil, body: String = "") async -> (Int, JSONValue?) {
            var headers = [("Content-Type", "application/json")]
            if let key { headers.append(("X-API-Key", key)) }
            let request = APIRequest(method: method, target: path, headers: headers, body: Array(body.utf8), requestID: "t", clientAddress: "::1")
            let (response, _) = await api.handle(request)
            return (response.status, JSONValue.parse(response.body))
        }
        func login(_ email: String, tenant: String? = nil) async -> String {
            _ = await call("POST", "/auth/register", body: #"{"email": "\#(email)", "name": "U", "password": "a long enough secret"}"#)
            let tenantField = tenant.map { #", "tenant_id": "\#($0)""# } ?? ""
            let (_, body) = await call("POST", "/auth/login", body: #"{"email": "\#(email)", "password": "a long enough secret"\#(tenantField)}"#)
            if case .string(let key) = body?["api_key"] { return key }
            return ""
        }
        let owner = await login("owner@example.com")
        guard case .string(let tenant) = await call("GET", "/auth/me", key: owner).1?["tenant"]?["id"] else { return }
        var keys: [BuiltinRole: String] = [.admin: owner]
        for role in [BuiltinRole.developer, .viewer] {
            _ = await login("\(role.rawValue)@example.com")
            #expect(await call("POST", "/rbac/bindings", key: owner, body: #"{"user": "\#(role.rawValue)@example.com", "role": "\#(role.rawValue)"}"#).0 == 201)
            keys[role] = await login("\(role.rawValue)@example.com", tenant: tenant)
        }
        var checked = 0
        var ownProtocol = 0
        for service in services {
            for route in service.routes {
                if route.spec.access == .platformAdmin {
                    // No built-in role of a tenant makes its holder a platform operator.
                    let path = route.spec.path.replacingOccurrences(of: "\\{[a-z_]+\\}", with: "no-such-thing", options: .regularExpression)
                    for role in BuiltinRole.allCases {
                        let (status, _) = await call(route.spec.method, path, key: keys[role], body: "{}")
                        #expect(status == 403, "\(role) \(route.spec.method) \(route.spec.path) → \(status)")
                        checked += 1
                    }
                    continue
                }
                guard case .permission(let required) = route.spec.access else {
                    // A service route without a permission authenticates in its own protocol (the SQS
                    // endpoint's SigV4); called without credentials it never succeeds.
                    #expect(route.spec.access == .anonymous && route.spec.rawBodyType != nil, "\(route.spec.operationID) needs a permission")
                    let path = route.spec.path.replacingOccurrences(of: "\\{[a-z_]+\\}", with: "no-such-thing", options: .regularExpression)
                    let (status, _) = await call(route.spec.method, path, body: "{}")
                    #expect(status >= 400, "\(route.spec.method) \(route.spec.path) unsigned → \(status)")
                    ownProtocol += 1
                    continue
                }
                let path = route.spec.path.replacingOccurrences(of: "\\{[a-z_]+\\}", with: "no-such-thing", options: .regularExpression)
                for role in BuiltinRole.allCases {
                    let (status, _) = await call(route.spec.method, path, key: keys[role])
                    let allowed = Permission.allows(catalog.permissions(of: role), required)
                    #expect((status == 403) == !allowed, "\(role) \(route.spec.method) \(route.spec.path) → \(status)")
                    #expect(status != 401 && (status < 500 || status == 503), "\(role) \(route.spec.method) \(route.spec.path) → \(status)")
                    checked += 1
                }
            }
        }
        #expect(checked + ownProtocol * 3 == services.flatMap(\.routes).count * 3)
        try? FileManager.default.removeItem(atPath: directory)
    }
}

extension ResponseBody {
    /// A list answer (a `ListShape`'s component has `next_token`).
    var isList: Bool {
        guard case .shape(let component) = self, case .object(let members) = component.schema["properties"] ?? .null else { return false }
        return members.contains { $0.0 == "next_token" }
    }
}
