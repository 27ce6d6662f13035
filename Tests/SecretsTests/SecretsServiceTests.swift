import ControlPlane
import Database
import Foundation
import Logging
import Secrets
import ServiceContract
import ServiceTestSupport
import Testing

/// A control plane hosting the secrets service on a fresh database, driven through `handle`.
struct SecretsHarness {
    let api: ControlAPI
    let database: any SQLDatabase
    let location: DatabaseLocation
    let master: MasterKey
    let sqlitePath: String?

    static let logger = Logger(label: "secrets-test")

    init(_ backing: Backing, master: MasterKey = MasterKey.generate(), quota: Int64? = nil, reuse: SecretsHarness? = nil) async throws {
        if let reuse {
            self.location = reuse.location
            self.sqlitePath = reuse.sqlitePath
            self.database = try self.location.open(logger: Self.logger, timeout: .seconds(60))
        } else {
            (self.location, self.database) = try await backing.freshDatabase(prefix: "secrets", logger: Self.logger)
            if case .sqlite(let path) = self.location { self.sqlitePath = path } else { self.sqlitePath = nil }
        }
        self.master = master
        var defaults = QuotaDefaults()
        if let quota { defaults.limits[QuotaResource(rawValue: "secrets")] = quota }
        let store = ControlStore(
            database: self.database, quotaDefaults: defaults, catalog: try ServiceCatalog(services: [SecretsService(masterKey: master)]))
        _ = try await store.migrate()
        var configuration = ControlAPIConfiguration()
        configuration.passwordHashing = .test
        self.api = try ControlAPI(store: store, configuration: configuration, logger: Self.logger)
    }

    @discardableResult
    func call(_ method: String, _ path: String, key: String? = nil, body: String = "", headers: [(String, String)] = []) async
        -> (Int, JSONValue?, APIResponse)
    {
        await APIDriver(self.api).call(method, path, key: key, body: body, headers: headers)
    }

    /// Registers a user (their own tenant, admin there) and returns a key.
    func user(_ email: String, tenant: String? = nil) async throws -> String { try await APIDriver(self.api).user(email, tenant: tenant) }

    func tenant(of key: String) async -> String { await APIDriver(self.api).tenant(of: key) }
}

@Suite struct SecretsServiceTests {
    @Test(arguments: Backing.available) func lifecycle(_ backing: Backing) async throws {
        let h = try await SecretsHarness(backing)
        let ada = try await h.user("ada@example.com")
        let (created, body, response) = await h.call(
            "POST", "/secrets", key: ada, body: #"{"name": "db/password", "value": "hunter2-very-secret", "description": "prod"}"#)
        #expect(created == 201)
        #expect(body?["latest_version"] == .int(1) && body?["value"] == nil)
        #expect(response.headers.contains { $0.0 == "ETag" && $0.1 == "\"1\"" })

        #expect(await h.call("POST", "/secrets", key: ada, body: #"{"name": "db/password", "value": "x"}"#).0 == 409)
        let (_, value, _) = await h.call("GET", "/secrets/db%2Fpassword/value", key: ada)
        #expect(text(value?["value"]) == "hunter2-very-secret")

        // A new version; reading by version; the list shows metadata only.
        #expect(await h.call("POST", "/secrets/db%2Fpassword/versions", key: ada, body: #"{"value": "second"}"#).0 == 201)
        #expect(text(await h.call("GET", "/secrets/db%2Fpassword/value", key: ada).1?["value"]) == "second")
        #expect(text(await h.call("GET", "/secrets/db%2Fpassword/value?version=1", key: ada).1?["value"]) == "hunter2-very-secret")
        #expect(await h.call("GET", "/secrets/db%2Fpassword/value?version=9", key: ada).0 == 404)
        let (_, list, listResponse) = await h.call("GET", "/secrets", key: ada)
        #expect(String(decoding: listResponse.body, as: UTF8.self).contains("second") == false)
        guard case .array(let items) = list?["secrets"] else { Issue.record("no list"); return }
        #expect(items.count == 1 && items[0]["latest_version"] == .int(2))
        guard case .array(let versions) = await h.call("GET", "/secrets/db%2Fpassword/versions", key: ada).1?["versions"] else { return }
        #expect(versions.map { $0["version"] } == [.int(1), .int(2)])

        // Delete with a recovery window: not readable, restorable, then gone after the purge.
        let (deleted, deletedBody, _) = await h.call("DELETE", "/secrets/db%2Fpassword?recovery_days=2", key: ada)
        #expect(deleted == 200 && deletedBody?["deleted_at"] != .null)
        #expect(await h.call("GET", "/secrets/db%2Fpassword/value", key: ada).0 == 409)
        guard case .array(let shown) = await h.call("GET", "/secrets", key: ada).1?["secrets"] else { return }
        #expect(shown.isEmpty)
        #expect(await h.call("POST", "/secrets/db%2Fpassword/restore", key: ada).0 == 200)
        #expect(text(await h.call("GET", "/secrets/db%2Fpassword/value", key: ada).1?["value"]) == "second")
        #expect(await h.call("POST", "/secrets/db%2Fpassword/restore", key: ada).0 == 409)
    }

    @Test(arguments: Backing.available) func rolesAndTenants(_ backing: Backing) async throws {
        let h = try await SecretsHarness(backing)
        let ada = try await h.user("ada@example.com")
        let tenant = await h.tenant(of: ada)
        #expect(await h.call("POST", "/secrets", key: ada, body: #"{"name": "api", "value": "v"}"#).0 == 201)
        for (email, role) in [("dev@example.com", "developer"), ("view@example.com", "viewer")] {
            _ = try await h.user(email)
            #expect(await h.call("POST", "/rbac/bindings", key: ada, body: #"{"user": "\#(email)", "role": "\#(role)"}"#).0 == 201)
        }
        let developer = try await h.user("dev@example.com", tenant: tenant)
        let viewer = try await h.user("view@example.com", tenant: tenant)
        #expect(await h.call("GET", "/secrets/api/value", key: developer).0 == 200)
        #expect(await h.call("GET", "/secrets/api", key: viewer).0 == 200)
        #expect(await h.call("GET", "/secrets/api/value", key: viewer).0 == 403)
        #expect(await h.call("POST", "/secrets", key: viewer, body: #"{"name": "x", "value": "v"}"#).0 == 403)
        // Another tenant sees nothing: 404, not 403.
        let eve = try await h.user("eve@example.com")
        #expect(await h.call("GET", "/secrets/api", key: eve).0 == 404)
        #expect(await h.call("GET", "/secrets/api/value", key: eve).0 == 404)
        #expect(await h.call("DELETE", "/secrets/api", key: eve).0 == 404)
    }

    @Test(arguments: Backing.available) func conventions(_ backing: Backing) async throws {
        let h = try await SecretsHarness(backing)
        let ada = try await h.user("ada@example.com")
        // Idempotency-Key: the retry answers the first answer, with no second secret or version.
        let key = [("Idempotency-Key", "retry-1")]
        let first = await h.call("POST", "/secrets", key: ada, body: #"{"name": "a", "value": "1"}"#, headers: key)
        let again = await h.call("POST", "/secrets", key: ada, body: #"{"name": "a", "value": "1"}"#, headers: key)
        // The replay is the first answer byte for byte (JSONValue.parse does not keep member order).
        #expect(first.0 == 201 && again.0 == 201 && first.2.body == again.2.body)
        #expect(again.2.headers.contains { $0.0 == "Idempotent-Replayed" })
        #expect(await h.call("POST", "/secrets", key: ada, body: #"{"name": "b", "value": "1"}"#, headers: key).0 == 422)
        let v1 = await h.call("POST", "/secrets/a/versions", key: ada, body: #"{"value": "2"}"#, headers: [("Idempotency-Key", "v")])
        let v2 = await h.call("POST", "/secrets/a/versions", key: ada, body: #"{"value": "2"}"#, headers: [("Idempotency-Key", "v")])
        #expect(v1.1?["version"] == .int(2) && v2.1?["version"] == .int(2))
        #expect(await h.call("GET", "/secrets/a", key: ada).1?["latest_version"] == .int(2))

        // If-Match: a stale ETag is refused with 412 and changes nothing.
        let etag = await h.call("GET", "/secrets/a", key: ada).2.headers.first { $0.0 == "ETag" }?.1 ?? ""
        #expect(await h.call("PATCH", "/secrets/a", key: ada, body: #"{"description": "one"}"#, headers: [("If-Match", etag)]).0 == 200)
        #expect(await h.call("PATCH", "/secrets/a", key: ada, body: #"{"description": "two"}"#, headers: [("If-Match", etag)]).0 == 412)
        #expect(await h.call("DELETE", "/secrets/a", key: ada, headers: [("If-Match", etag)]).0 == 412)
        #expect(text(await h.call("GET", "/secrets/a", key: ada).1?["description"]) == "one")

        // Pagination: every secret once over pages of 2.
        for index in 0..<5 { _ = await h.call("POST", "/secrets", key: ada, body: #"{"name": "p\#(index)", "value": "v"}"#) }
        var names: [String] = []
        var token: String?
        repeat {
            let query = "/secrets?limit=2" + (token.map { "&next_token=\($0)" } ?? "")
            let (_, page, _) = await h.call("GET", query, key: ada)
            if case .array(let items) = page?["secrets"] { names += items.compactMap { text($0["name"]) } }
            token = text(page?["next_token"])
        } while token != nil
        #expect(names == ["a", "p0", "p1", "p2", "p3", "p4"])
        #expect(await h.call("GET", "/secrets?next_token=garbage!", key: ada).0 == 400)
    }

    @Test(arguments: Backing.available) func badInput(_ backing: Backing) async throws {
        let h = try await SecretsHarness(backing)
        let ada = try await h.user("ada@example.com")
        let big = String(repeating: "x", count: SecretsService.maximumValueBytes + 1)
        let (status, body, _) = await h.call("POST", "/secrets", key: ada, body: #"{"name": "big", "value": "\#(big)"}"#)
        #expect(status == 400 && text(body?["error"]?["message"])?.contains("65536") == true)
        let exact = String(repeating: "y", count: SecretsService.maximumValueBytes)
        #expect(await h.call("POST", "/secrets", key: ada, body: #"{"name": "exact", "value": "\#(exact)"}"#).0 == 201)
        #expect(await h.call("POST", "/secrets", key: ada, body: #"{"name": "bad name!", "value": "v"}"#).0 == 400)
        #expect(await h.call("POST", "/secrets", key: ada, body: #"{"name": "n", "value": 5}"#).0 == 400)
        #expect(await h.call("POST", "/secrets", key: ada, body: #"{"name": "n", "value": "v", "colour": "red"}"#).0 == 400)
        #expect(await h.call("POST", "/secrets", key: ada, body: #"{"name": "n""#).0 == 400)
        #expect(await h.call("DELETE", "/secrets/exact?recovery_days=90", key: ada).0 == 400)
    }

    /// Twenty concurrent creates against a quota of 5: exactly 5 succeed, the rest are 409.
    @Test(arguments: Backing.available) func quotaHasNoOvershoot(_ backing: Backing) async throws {
        let h = try await SecretsHarness(backing, quota: 5)
        let ada = try await h.user("ada@example.com")
        let statuses = await withTaskGroup(of: Int.self) { group in
            for index in 0..<20 {
                group.addTask { await h.call("POST", "/secrets", key: ada, body: #"{"name": "q\#(index)", "value": "v"}"#).0 }
            }
            var all: [Int] = []
            for await status in group { all.append(status) }
            return all
        }
        #expect(statuses.filter { $0 == 201 }.count == 5, "\(statuses)")
        #expect(statuses.filter { $0 == 409 }.count == 15, "\(statuses)")
    }

    @Test(arguments: Backing.available) func wrongMasterKeyIsAClearErrorAndRotationKeepsValues(_ backing: Backing) async throws {
        let h = try await SecretsHarness(backing)
        let ada = try await h.user("ada@example.com")
        #expect(await h.call("POST", "/secrets", key: ada, body: #"{"name": "k", "value": "kept across rotation"}"#).0 == 201)

        let other = MasterKey.generate()
        let wrong = try await SecretsHarness(backing, master: other, reuse: h)
        let (status, body, _) = await wrong.call("GET", "/secrets/k/value", key: ada)
        #expect(status == 503)
        #expect(text(body?["error"]?["code"]) == "master_key_mismatch")
        #expect(text(body?["error"]?["message"])?.contains(h.master.id) == true)

        #expect(try await SecretsService.rotateMasterKey(database: h.database, from: h.master, to: other, now: 1) == 1)
        #expect(try await SecretsService.rotateMasterKey(database: h.database, from: h.master, to: other, now: 2) == 0)
        #expect(text(await wrong.call("GET", "/secrets/k/value", key: ada).1?["value"]) == "kept across rotation")
        #expect(await h.call("GET", "/secrets/k/value", key: ada).0 == 503)
    }

    @Test func valuesAreNotInTheSQLiteFile() async throws {
        let h = try await SecretsHarness(.sqlite)
        let ada = try await h.user("ada@example.com")
        let marker = "plaintext-marker-7f3a9c"
        #expect(await h.call("POST", "/secrets", key: ada, body: #"{"name": "m", "value": "\#(marker)"}"#).0 == 201)
        #expect(await h.call("POST", "/secrets/m/versions", key: ada, body: #"{"value": "\#(marker)-2"}"#).0 == 201)
        try await h.database.query("PRAGMA wal_checkpoint(TRUNCATE)")
        let directory = (try #require(h.sqlitePath) as NSString).deletingLastPathComponent
        for file in try FileManager.default.contentsOfDirectory(atPath: directory) {
            let data = try Data(contentsOf: URL(fileURLWithPath: directory + "/" + file))
            #expect(data.range(of: Data(marker.utf8)) == nil, "\(file) holds the value")
        }
    }
}
