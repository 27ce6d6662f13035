import ControlPlane
import ServiceContract
import Storage
import Foundation
import Synchronization
import Testing

/// An in-memory storage cluster with the admin API's rules: keys and buckets per tenant, bucket names
/// shared by all tenants, another tenant's key or bucket not found.
final class FakeStorage: StorageCluster {
    private struct State {
        var keys: [StorageKey] = []
        var buckets: [StorageBucket] = []
        var counter = 0
    }

    private let state = Mutex(State())
    let down = Flag()
    var publicEndpoint: String { "http://127.0.0.1:9000" }
    var region: String { "us-east-1" }

    func createKey(tenant: String, name: String?) async throws -> StorageKey {
        try self.checkUp()
        return self.state.withLock { state in
            state.counter += 1
            let key = StorageKey(
                accessKeyID: "CKFAKE\(state.counter)", tenantID: tenant, name: name ?? "s3 key", createdAt: "2026-01-01T00:00:00Z")
            state.keys.append(key)
            var created = key
            created.secretAccessKey = "secret-\(state.counter)"
            return created
        }
    }

    func keys(tenant: String) async throws -> [StorageKey] {
        try self.checkUp()
        return self.state.withLock { $0.keys.filter { $0.tenantID == tenant } }
    }

    func deleteKey(tenant: String, accessKeyID: String) async throws {
        try self.checkUp()
        try self.state.withLock { state in
            guard let index = state.keys.firstIndex(where: { $0.accessKeyID == accessKeyID && $0.tenantID == tenant }) else {
                throw StorageServiceError.notFound("no such key")
            }
            state.keys.remove(at: index)
        }
    }

    func buckets(tenant: String) async throws -> [StorageBucket] {
        try self.checkUp()
        return self.state.withLock { $0.buckets.filter { $0.tenantID == tenant } }
    }

    func createBucket(tenant: String, name: String) async throws -> StorageBucket {
        try self.checkUp()
        guard name.count >= 3, name == name.lowercased() else { throw StorageServiceError.invalid("bad bucket name") }
        return try self.state.withLock { state in
            if state.buckets.contains(where: { $0.name == name }) {
                throw StorageServiceError.conflict(code: "bucket_exists", message: "taken")
            }
            let bucket = StorageBucket(name: name, tenantID: tenant, createdAt: "2026-01-01T00:00:00Z")
            state.buckets.append(bucket)
            return bucket
        }
    }

    func deleteBucket(tenant: String, name: String) async throws {
        try self.checkUp()
        try self.state.withLock { state in
            guard let index = state.buckets.firstIndex(where: { $0.name == name && $0.tenantID == tenant }) else {
                throw StorageServiceError.notFound("no such bucket")
            }
            state.buckets.remove(at: index)
        }
    }

    func check() async -> String? { self.down.isSet ? "the storage cluster does not answer" : nil }

    private func checkUp() throws {
        if self.down.isSet { throw StorageServiceError.unavailable("the storage cluster does not answer") }
    }
}

@Suite struct StorageRoutesTests {
    func string(_ value: JSONValue?) -> String? {
        if case .string(let text) = value { return text }
        return nil
    }

    func names(_ value: JSONValue?, _ field: String) -> [String] {
        guard case .array(let items) = value else { return [] }
        return items.compactMap { self.string($0[field]) }
    }

    @Test func keysAndBucketsBelongToTheCallersTenant() async throws {
        let h = try await Harness()
        defer { h.cleanUp() }
        let ada = try await h.user("ada@example.com")
        let bob = try await h.user("bob@example.com")

        let (status, created, _) = await h.call("POST", "/storage/keys", key: ada, body: #"{"name": "laptop"}"#)
        #expect(status == 201)
        let accessKey = try #require(self.string(created?["access_key_id"]))
        #expect(self.string(created?["secret_access_key"])?.isEmpty == false)
        #expect(self.string(created?["endpoint"]) == "http://127.0.0.1:9000")
        #expect(self.string(created?["name"]) == "laptop")

        let (_, listed, raw) = await h.call("GET", "/storage/keys", key: ada)
        #expect(self.names(listed?["keys"], "access_key_id") == [accessKey])
        #expect(!String(decoding: raw.body, as: UTF8.self).contains("secret"), "a listing never shows secrets")
        #expect(self.names((await h.call("GET", "/storage/keys", key: bob)).1?["keys"], "access_key_id").isEmpty)
        // Another tenant's key is not found, and stays.
        #expect(await h.call("DELETE", "/storage/keys/\(accessKey)", key: bob).0 == 404)
        #expect(await h.call("DELETE", "/storage/keys/\(accessKey)", key: ada).0 == 204)
        #expect(await h.call("DELETE", "/storage/keys/\(accessKey)", key: ada).0 == 404)

        #expect(await h.call("POST", "/storage/buckets", key: ada, body: #"{"name": "photos"}"#).0 == 201)
        let (taken, takenBody, _) = await h.call("POST", "/storage/buckets", key: bob, body: #"{"name": "photos"}"#)
        #expect(taken == 409 && errorCode(takenBody) == "bucket_exists")
        #expect(await h.call("POST", "/storage/buckets", key: ada, body: #"{"name": "Bad"}"#).0 == 400)
        #expect(await h.call("POST", "/storage/buckets", key: ada, body: #"{}"#).0 == 400)
        #expect(self.names((await h.call("GET", "/storage/buckets", key: ada)).1?["buckets"], "name") == ["photos"])
        #expect(self.names((await h.call("GET", "/storage/buckets", key: bob)).1?["buckets"], "name").isEmpty)
        #expect(await h.call("DELETE", "/storage/buckets/photos", key: bob).0 == 404)
        #expect(await h.call("DELETE", "/storage/buckets/photos", key: ada).0 == 204)
    }

    @Test func aStorageClusterThatDoesNotAnswerIs503AndNotReady() async throws {
        let h = try await Harness()
        defer { h.cleanUp() }
        let ada = try await h.user("ada@example.com")
        h.storage.down.set()
        let (status, body, _) = await h.call("POST", "/storage/keys", key: ada)
        #expect(status == 503 && errorCode(body) == "storage_unavailable")
        let (ready, readyBody, _) = await h.call("GET", "/health/ready")
        #expect(ready == 503)
        #expect(self.string(readyBody?["error"]?["message"])?.contains("storage") == true)
    }

    @Test func aViewerReadsButCannotCreateKeys() async throws {
        let h = try await Harness()
        defer { h.cleanUp() }
        let owner = try await h.user("owner@example.com")
        let (_, me, _) = await h.call("GET", "/auth/me", key: owner)
        let tenant = try #require(self.string(me?["tenant"]?["id"]))
        _ = try await h.user("viewer@example.com")
        #expect(await h.call("POST", "/rbac/bindings", key: owner, body: #"{"user": "viewer@example.com", "role": "viewer"}"#).0 == 201)
        let (_, login, _) = await h.call(
            "POST", "/auth/login", body: #"{"email": "viewer@example.com", "password": "a long enough secret", "tenant_id": "\#(tenant)"}"#)
        let viewer = try #require(self.string(login?["api_key"]))
        #expect(await h.call("POST", "/storage/keys", key: owner).0 == 201)
        #expect(await h.call("POST", "/storage/keys", key: viewer).0 == 403)
        // The viewer acts in the owner's tenant: it sees that tenant's key.
        #expect(self.names((await h.call("GET", "/storage/keys", key: viewer)).1?["keys"], "access_key_id").count == 1)
    }
}
