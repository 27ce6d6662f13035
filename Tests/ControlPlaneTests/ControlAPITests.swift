import ControlPlane
import Database
import ServiceContract
import Storage
import Foundation
import Logging
import Synchronization
import Testing

/// A settable clock (unix seconds).
final class TestClock: Sendable {
    private let value = Mutex<Int64>(1_800_000_000)
    var now: Int64 { self.value.withLock { $0 } }
    func advance(_ seconds: Int64) { self.value.withLock { $0 += seconds } }
}

/// A flag shared with a closure.
final class Flag: Sendable {
    private let value = Mutex(false)
    var isSet: Bool { self.value.withLock { $0 } }
    func set() { self.value.withLock { $0 = true } }
}

/// A control plane on a fresh SQLite file, driven through ``ControlAPI/handle(_:)``.
struct Harness {
    let directory: String
    let store: ControlStore
    let api: ControlAPI
    let clock = TestClock()
    /// Makes the readiness check of the (pretend) storage node fail.
    let storageDown = Flag()
    let hostsDown = Flag()
    /// The storage cluster behind `/storage/…`.
    let storage = FakeStorage()

    init(configure: (inout ControlAPIConfiguration) -> Void = { _ in }, quotaDefaults: QuotaDefaults = QuotaDefaults()) async throws {
        self.directory = NSTemporaryDirectory() + "control-test-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: self.directory, withIntermediateDirectories: true)
        let catalog = try ServiceCatalog(services: [StorageService(cluster: self.storage)])
        let store = ControlStore(
            database: try SQLiteDatabase(path: self.directory + "/control.sqlite"), quotaDefaults: quotaDefaults, catalog: catalog)
        let applied = try await store.migrate()
        #expect(applied == Migrations.all.count)
        self.store = store
        var configuration = ControlAPIConfiguration()
        configuration.passwordHashing = .test
        configuration.lockout.maximumFailures = 3
        let storageDown = self.storageDown
        // The storage service adds the cluster's own check (FakeStorage.check) after this one.
        let hostsDown = self.hostsDown
        configuration.readinessChecks = [
            ReadinessCheck(name: "storage") { storageDown.isSet ? "down" : nil },
            ReadinessCheck(name: "hosts", required: false) { hostsDown.isSet ? "host h2 unknown" : nil },
        ]
        configure(&configuration)
        let clock = self.clock
        self.api = try ControlAPI(store: self.store, configuration: configuration, logger: Logger(label: "test"), now: { clock.now })
    }

    func cleanUp() { try? FileManager.default.removeItem(atPath: self.directory) }

    @discardableResult
    func call(
        _ method: String, _ path: String, key: String? = nil, body: String = "", client: String = "127.0.0.1"
    ) async -> (Int, JSONValue?, APIResponse) {
        var headers: [(String, String)] = [("Content-Type", "application/json")]
        if let key { headers.append(("X-API-Key", key)) }
        let request = APIRequest(
            method: method, target: path, headers: headers, body: Array(body.utf8), requestID: "test", clientAddress: client)
        let (response, _) = await self.api.handle(request)
        return (response.status, JSONValue.parse(response.body), response)
    }

    /// Registers and logs in; returns the API key.
    func user(_ email: String, password: String = "a long enough secret") async throws -> String {
        let (status, _, _) = await self.call(
            "POST", "/auth/register", body: #"{"email": "\#(email)", "name": "User", "password": "\#(password)"}"#)
        #expect(status == 201)
        let (loginStatus, body, _) = await self.call(
            "POST", "/auth/login", body: #"{"email": "\#(email)", "password": "\#(password)"}"#)
        #expect(loginStatus == 200)
        guard case .string(let key) = try #require(body?["api_key"]) else { throw APIError.internalError }
        return key
    }
}

func errorCode(_ body: JSONValue?) -> String? {
    if case .string(let code) = body?["error"]?["code"] { return code }
    return nil
}

@Suite struct ControlAPITests {
    @Test func registerLoginMe() async throws {
        let h = try await Harness()
        defer { h.cleanUp() }
        let key = try await h.user("Ada@Example.com")
        #expect(key.hasPrefix("ck_"))
        let (status, me, _) = await h.call("GET", "/auth/me", key: key)
        #expect(status == 200)
        #expect(me?["user"]?["email"] == .string("ada@example.com"))
        #expect(me?["roles"] == .array([.string("admin")]))
        #expect(me?["permissions"] == .array([.string("*:*")]))
        // The same email again, in any case, is refused.
        let (again, body, _) = await h.call(
            "POST", "/auth/register", body: #"{"email": "ADA@example.com", "name": "Ada", "password": "another long secret"}"#)
        #expect(again == 409)
        #expect(errorCode(body) == "email_taken")
        // The password is stored hashed.
        let user = try #require(try await h.store.user(email: "ada@example.com"))
        #expect(user.passwordHash.hasPrefix("$scrypt$"))
    }

    @Test func readiness() async throws {
        let h = try await Harness()
        defer { h.cleanUp() }
        let (ready, body, _) = await h.call("GET", "/health/ready")
        #expect(ready == 200)
        #expect(body?["status"] == .string("ready") && body?["checks"]?["storage"] == .string("ok") && body?["checks"]?["hosts"] == .string("ok"))
        h.hostsDown.set()
        let (degraded, named, _) = await h.call("GET", "/health/ready")
        #expect(degraded == 200, "an optional backend down does not take the API out of service")
        #expect(named?["status"] == .string("degraded") && named?["checks"]?["hosts"] == .string("host h2 unknown"))
        h.storageDown.set()
        let (notReady, reason, _) = await h.call("GET", "/health/ready")
        #expect(notReady == 503)
        #expect(errorCode(reason) == "not_ready")
        #expect(await h.call("GET", "/health/live").0 == 200)
    }

    @Test func badRequestsAreClientErrors() async throws {
        let h = try await Harness()
        defer { h.cleanUp() }
        let cases: [(String, Int, String)] = [
            ("{not json", 400, "invalid_json"),
            (#"{"email": "a@example.com", "name": "A", "password": "a long enough secret", "admin": true}"#, 400, "invalid_request"),
            (#"{"email": 5, "name": "A", "password": "a long enough secret"}"#, 400, "invalid_request"),
            (#"{"name": "A", "password": "a long enough secret"}"#, 400, "invalid_request"),
            (#"["a"]"#, 400, "invalid_request"),
            (#"{"email": "not-an-email", "name": "A", "password": "a long enough secret"}"#, 400, "invalid_request"),
            (#"{"email": "a@example.com", "name": "A", "password": "short"}"#, 400, "weak_password"),
        ]
        for (body, status, code) in cases {
            let (got, json, _) = await h.call("POST", "/auth/register", body: body)
            #expect(got == status, "\(body)")
            #expect(errorCode(json) == code, "\(body)")
        }
        #expect(await h.call("GET", "/nowhere").0 == 404)
        let (status, _, response) = await h.call("DELETE", "/auth/register")
        #expect(status == 405)
        #expect(response.headers.contains { $0.0 == "Allow" && $0.1 == "POST" })
    }

    @Test func keysNeedToBeValid() async throws {
        let h = try await Harness()
        defer { h.cleanUp() }
        let key = try await h.user("ada@example.com")
        #expect(await h.call("GET", "/auth/me").0 == 401)
        #expect(await h.call("GET", "/auth/me", key: "garbage").0 == 401)
        var forged = Array(key)
        forged[forged.count - 2] = forged[forged.count - 2] == "x" ? "y" : "x"
        #expect(await h.call("GET", "/auth/me", key: String(forged)).0 == 401)

        // Rotate: the old key works for the grace period, then not.
        let id = try #require(APIKey.id(of: key))
        let (rotated, body, _) = await h.call("POST", "/auth/keys/\(id)/rotate", key: key, body: #"{"grace_seconds": 60}"#)
        #expect(rotated == 201)
        guard case .string(let newKey) = try #require(body?["api_key"]) else { return }
        #expect(await h.call("GET", "/auth/me", key: key).0 == 200)
        #expect(await h.call("GET", "/auth/me", key: newKey).0 == 200)
        // The old key, in its grace period, cannot be rotated again: its successor can.
        let (again, againBody, _) = await h.call("POST", "/auth/keys/\(id)/regenerate", key: key)
        #expect(again == 409)
        #expect(errorCode(againBody) == "key_replaced")
        h.clock.advance(61)
        #expect(await h.call("GET", "/auth/me", key: key).0 == 401)
        #expect(await h.call("GET", "/auth/me", key: newKey).0 == 200)

        // Regenerate: the old key is dead at once.
        let newID = try #require(APIKey.id(of: newKey))
        let (regenerated, body2, _) = await h.call("POST", "/auth/keys/\(newID)/regenerate", key: newKey)
        #expect(regenerated == 201)
        guard case .string(let third) = try #require(body2?["api_key"]) else { return }
        #expect(await h.call("GET", "/auth/me", key: newKey).0 == 401)

        // Delete: revoked.
        let (created, body3, _) = await h.call("POST", "/auth/keys", key: third, body: #"{"name": "ci"}"#)
        #expect(created == 201)
        guard case .string(let fourth) = try #require(body3?["api_key"]) else { return }
        let (listed, list, _) = await h.call("GET", "/auth/keys", key: third)
        #expect(listed == 200)
        guard case .array(let keys) = try #require(list?["keys"]) else { return }
        #expect(keys.count == 2)
        let fourthID = try #require(APIKey.id(of: fourth))
        #expect(await h.call("DELETE", "/auth/keys/\(fourthID)", key: third).0 == 204)
        #expect(await h.call("GET", "/auth/me", key: fourth).0 == 401)
        #expect(await h.call("DELETE", "/auth/keys/\(fourthID)", key: third).0 == 404)
    }

    @Test func lockoutAfterRepeatedFailures() async throws {
        let h = try await Harness()
        defer { h.cleanUp() }
        _ = try await h.user("ada@example.com")
        for _ in 0..<3 {
            let (status, body, _) = await h.call("POST", "/auth/login", body: #"{"email": "ada@example.com", "password": "wrong password!"}"#)
            #expect(status == 401)
            #expect(errorCode(body) == "invalid_credentials")
        }
        let good = #"{"email": "ada@example.com", "password": "a long enough secret"}"#
        let (locked, body, response) = await h.call("POST", "/auth/login", body: good)
        #expect(locked == 429)
        #expect(errorCode(body) == "too_many_attempts")
        #expect(response.headers.contains { $0.0 == "Retry-After" })
        // Failures from one address do not lock the email's owner out elsewhere.
        #expect(await h.call("POST", "/auth/login", body: good, client: "10.0.0.2").0 == 200)
        h.clock.advance(15 * 60 + 1)
        #expect(await h.call("POST", "/auth/login", body: good).0 == 200)
        // An unknown email fails the same way as a wrong password.
        let (unknown, unknownBody, _) = await h.call("POST", "/auth/login", body: #"{"email": "bob@example.com", "password": "whatever it is"}"#)
        #expect(unknown == 401)
        #expect(errorCode(unknownBody) == "invalid_credentials")
    }

    @Test func oneAddressGuessingAcrossEmailsIsLockedOut() async throws {
        let h = try await Harness { $0.lockout.maximumClientFailures = 4 }
        defer { h.cleanUp() }
        _ = try await h.user("ada@example.com")
        for n in 0..<4 {
            let (status, _, _) = await h.call("POST", "/auth/login", body: #"{"email": "u\#(n)@example.com", "password": "guess guess"}"#, client: "10.0.0.9")
            #expect(status == 401)
        }
        let good = #"{"email": "ada@example.com", "password": "a long enough secret"}"#
        let (locked, body, _) = await h.call("POST", "/auth/login", body: good, client: "10.0.0.9")
        guard case .string(let message)? = body?["error"]?["message"] else { throw CancellationError() }
        #expect(locked == 429 && message.hasPrefix("too many failed logins from your address"), "\(message)")
        #expect(await h.call("POST", "/auth/login", body: good, client: "10.0.0.1").0 == 200, "another address is not locked")
    }

    @Test func rbacAllowsAndDenies() async throws {
        let h = try await Harness()
        defer { h.cleanUp() }
        let admin = try await h.user("ada@example.com")
        let bob = try await h.user("bob@example.com")
        // Bob is admin of his own tenant only; to act in Ada's he logs in there once bound.
        #expect(await h.call("POST", "/rbac/bindings", key: admin, body: #"{"user": "bob@example.com", "role": "viewer"}"#).0 == 201)
        let (_, me, _) = await h.call("GET", "/auth/me", key: admin)
        guard case .string(let tenantID) = try #require(me?["tenant"]?["id"]) else { return }
        let (loggedIn, login, _) = await h.call(
            "POST", "/auth/login", body: #"{"email": "bob@example.com", "password": "a long enough secret", "tenant_id": "\#(tenantID)"}"#)
        #expect(loggedIn == 200)
        guard case .string(let viewer) = try #require(login?["api_key"]) else { return }
        #expect(await h.call("GET", "/rbac/roles", key: viewer).0 == 200)
        let create = #"{"name": "ops", "permissions": ["bucket:*", "role:read"]}"#
        let (denied, deniedBody, _) = await h.call("POST", "/rbac/roles", key: viewer, body: create)
        #expect(denied == 403)
        #expect(errorCode(deniedBody) == "forbidden")
        #expect(await h.call("POST", "/rbac/roles", key: admin, body: create).0 == 201)
        #expect(await h.call("POST", "/rbac/roles", key: admin, body: create).0 == 409)
        #expect(await h.call("POST", "/rbac/roles", key: admin, body: #"{"name": "x", "permissions": ["nope"]}"#).0 == 400)
        #expect(await h.call("DELETE", "/rbac/roles/admin", key: admin).0 == 409)
        let (redefined, redefinedBody, _) = await h.call(
            "POST", "/rbac/roles", key: admin, body: #"{"name": "developer", "permissions": ["bucket:*"]}"#)
        #expect(redefined == 409)
        #expect(errorCode(redefinedBody) == "builtin_role")
        // Bob's own tenant does not see Ada's role.
        #expect(await h.call("GET", "/rbac/roles/ops", key: bob).0 == 404)
        #expect(await h.call("GET", "/rbac/roles/ops", key: viewer).0 == 200)
        // The last admin binding stays.
        let (_, bindings, _) = await h.call("GET", "/rbac/bindings", key: admin)
        guard case .array(let items) = try #require(bindings?["bindings"]) else { return }
        #expect(items.count == 2)
        for item in items where item["role"] == .string("admin") {
            guard case .string(let id) = try #require(item["id"]) else { continue }
            #expect(await h.call("DELETE", "/rbac/bindings/\(id)", key: admin).0 == 409)
        }
        #expect(await h.call("PUT", "/rbac/roles/ops", key: viewer, body: #"{"permissions": ["*:read"]}"#).0 == 403)
        #expect(await h.call("PUT", "/rbac/roles/ops", key: admin, body: #"{"permissions": ["*:read"]}"#).0 == 200)
        #expect(await h.call("DELETE", "/rbac/roles/ops", key: admin).0 == 204)
    }

    @Test func everyRouteIsInTheOpenAPIDocumentWithItsPermission() async throws {
        let h = try await Harness()
        defer { h.cleanUp() }
        let (status, document, _) = await h.call("GET", "/openapi.json")
        #expect(status == 200)
        let paths = try #require(document?["paths"])
        for route in h.api.routeTable {
            let operation = paths[route.path]?[route.method.lowercased()]
            #expect(operation?["x-permission"] == .string(route.access.description), "\(route.method) \(route.path)")
        }
        guard case .object(let members) = paths else { return }
        let documented = members.reduce(0) { count, member in
            if case .object(let methods) = member.1 { return count + methods.count }
            return count
        }
        #expect(documented == h.api.routeTable.count)
    }

    @Test func routesOtherThanAnonymousOnesNeedAKey() async throws {
        let h = try await Harness()
        defer { h.cleanUp() }
        for route in h.api.routeTable where route.access != .anonymous {
            let path = route.path.replacingOccurrences(of: "{id}", with: "0123456789abcdef").replacingOccurrences(of: "{name}", with: "viewer")
            let (status, body, _) = await h.call(route.method, path)
            #expect(status == 401, "\(route.method) \(route.path)")
            #expect(errorCode(body) == "unauthorized")
        }
    }
}

@Suite struct SQLiteControlStoreTests {
    @Test func migrationsRunOnceAndStateSurvivesReopening() async throws {
        let directory = NSTemporaryDirectory() + "control-store-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/control.sqlite"
        do {
            let store = ControlStore(database: try SQLiteDatabase(path: path))
            #expect(try await store.migrate() == Migrations.all.count)
            #expect(try await store.migrate() == 0)
            let user = UserRecord(id: "usr_1", email: "a@example.com", name: "A", passwordHash: "h", createdAt: 1)
            let tenant = TenantRecord(id: "tnt_1", name: "a", personalUserID: "usr_1", createdAt: 1)
            try await store.register(user: user, tenant: tenant, adminBindingID: "rb_1")
            await #expect(throws: ControlStoreError.duplicate("")) {
                try await store.register(user: user, tenant: tenant, adminBindingID: "rb_2")
            }
            let key = APIKeyRecord(id: "k1", userID: "usr_1", tenantID: "tnt_1", name: "n", keyHash: "abc", createdAt: 1)
            try await store.insertKey(key)
            let replacement = APIKeyRecord(id: "k2", userID: "usr_1", tenantID: "tnt_1", name: "n", keyHash: "def", createdAt: 2)
            try await store.replaceKey(oldID: "k1", expiresAt: 100, revokedAt: nil, newKey: replacement)
            #expect(try await store.key(id: "k1")?.expiresAt == 100)
            #expect(try await store.key(id: "k1")?.replacedBy == "k2")
            #expect(try await store.keys(ofUser: "usr_1", now: 50).map(\.id) == ["k1", "k2"])
            #expect(try await store.keys(ofUser: "usr_1", now: 100).map(\.id) == ["k2"])
            try await store.recordLogin(email: "a@example.com", clientAddress: "x", succeeded: false, at: 10)
            try await store.recordLogin(email: "a@example.com", clientAddress: "x", succeeded: true, at: 20)
            try await store.recordLogin(email: "a@example.com", clientAddress: "x", succeeded: false, at: 30)
            #expect(try await store.loginFailures(email: "a@example.com", since: 0) == [30])
        }
        let reopened = ControlStore(database: try SQLiteDatabase(path: path))
        #expect(try await reopened.migrate() == 0)
        #expect(try await reopened.user(email: "a@example.com")?.id == "usr_1")
        let grants = try await reopened.grants(userID: "usr_1", tenantID: "tnt_1")
        #expect(grants.roles == ["admin"])
        #expect(grants.permissions == [.all])
        #expect(try await reopened.roles(tenantID: "tnt_1").map(\.name) == ["admin", "developer", "viewer"])
        #expect(try await reopened.tenants(ofUser: "usr_1").map(\.id) == ["tnt_1"])
    }
}
