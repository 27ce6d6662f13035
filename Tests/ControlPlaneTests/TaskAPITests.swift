import ControlPlane
import ServiceContract
import Foundation
import Testing

/// `/tasks` over the API: a tenant sees and retries only its own tasks.
@Suite struct TaskAPITests {
    static func tenant(_ h: Harness, key: String) async throws -> String {
        let (_, me, _) = await h.call("GET", "/auth/me", key: key)
        guard case .string(let tenant) = try #require(me?["tenant"]?["id"]) else { throw APIError.internalError }
        return tenant
    }

    @Test func listShowAndRetryInTheCallersTenantOnly() async throws {
        let h = try await Harness()
        defer { h.cleanUp() }
        let ada = try await h.user("ada@example.com")
        let bob = try await h.user("bob@example.com")
        let adaTenant = try await Self.tenant(h, key: ada)
        let queue = h.api.tasks
        let done = try await queue.enqueue(
            NewTask(kind: "test.echo", tenantID: adaTenant, payload: .object([("bucket", .string("photos"))]), idempotencyKey: "k")).task
        let doomed = try await queue.enqueue(NewTask(kind: "test.echo", tenantID: adaTenant, maxAttempts: 1)).task
        let claimed = try await queue.claim(owner: "w", kinds: ["test.echo"], limit: 2, leaseDuration: 30_000)
        for task in claimed {
            let lease = try #require(task.lease)
            if task.id == done.id {
                try await queue.complete(lease, result: .object([("deleted", .int(3))]))
            } else {
                try await queue.fail(lease, error: "the bucket is not empty", retryAt: 0)
            }
        }

        let (status, list, _) = await h.call("GET", "/tasks", key: ada)
        #expect(status == 200)
        guard case .array(let items) = try #require(list?["tasks"]) else { return }
        #expect(items.count == 2)
        let (one, shown, _) = await h.call("GET", "/tasks/\(done.id)", key: ada)
        #expect(one == 200)
        #expect(shown?["state"] == .string("succeeded"))
        #expect(shown?["payload"]?["bucket"] == .string("photos"))
        #expect(shown?["result"]?["deleted"] == .int(3))
        #expect(shown?["idempotency_key"] == .string("k"))
        #expect(shown?["lease"] == .null)
        let (_, dead, _) = await h.call("GET", "/tasks?state=dead", key: ada)
        guard case .array(let deadItems) = try #require(dead?["tasks"]) else { return }
        #expect(deadItems.map { $0["id"] } == [.string(doomed.id)])
        #expect(deadItems.first?["last_error"] == .string("the bucket is not empty"))
        #expect(await h.call("GET", "/tasks?state=bogus", key: ada).0 == 400)
        #expect(await h.call("GET", "/tasks?limit=0", key: ada).0 == 400)

        // Bob's tenant has none of them: 404, not 403.
        let (bobList, bobTasks, _) = await h.call("GET", "/tasks", key: bob)
        #expect(bobList == 200 && bobTasks?["tasks"] == .array([]))
        #expect(await h.call("GET", "/tasks/\(done.id)", key: bob).0 == 404)
        #expect(await h.call("POST", "/tasks/\(doomed.id)/retry", key: bob).0 == 404)
        // The system's own tasks are nobody's.
        let system = try await queue.enqueue(NewTask(kind: ControlTasks.purgeExpired, tenantID: TaskQueue.systemTenant)).task
        #expect(await h.call("GET", "/tasks/\(system.id)", key: ada).0 == 404)

        // Retry: only dead tasks.
        let (conflict, body, _) = await h.call("POST", "/tasks/\(done.id)/retry", key: ada)
        #expect(conflict == 409 && errorCode(body) == "task_not_dead")
        let (retried, again, _) = await h.call("POST", "/tasks/\(doomed.id)/retry", key: ada)
        #expect(retried == 200)
        #expect(again?["state"] == .string("queued") && again?["attempts"] == .int(0))
        #expect(again?["last_error"] == .string("the bucket is not empty"))
    }

    @Test func viewersReadButDoNotRetry() async throws {
        let h = try await Harness()
        defer { h.cleanUp() }
        let owner = try await h.user("owner@example.com")
        let tenant = try await Self.tenant(h, key: owner)
        _ = try await h.user("viewer@example.com")
        #expect(await h.call("POST", "/rbac/bindings", key: owner, body: #"{"user": "viewer@example.com", "role": "viewer"}"#).0 == 201)
        let (_, login, _) = await h.call(
            "POST", "/auth/login", body: #"{"email": "viewer@example.com", "password": "a long enough secret", "tenant_id": "\#(tenant)"}"#)
        guard case .string(let viewer) = try #require(login?["api_key"]) else { return }
        let task = try await h.api.tasks.enqueue(NewTask(kind: "test.echo", tenantID: tenant)).task
        #expect(await h.call("GET", "/tasks/\(task.id)", key: viewer).0 == 200)
        let (status, body, _) = await h.call("POST", "/tasks/\(task.id)/retry", key: viewer)
        #expect(status == 403 && errorCode(body) == "forbidden")
    }
}
