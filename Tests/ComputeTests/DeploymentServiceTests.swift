import ControlPlane
import Database
import Foundation
import Logging
import ServiceContract
import ServiceTestSupport
import SQLite
import Testing

@testable import Compute

/// The deployment routes and reconciler on each database, with no engine: replicas are made and
/// deleted as rows and tasks (no provisioning runs, so they stay pending), which is what the SQL
/// of both dialects is checked on. Engines are exercised by tests/integration/test_compute.py.
@Suite struct DeploymentServiceTests {
    static let logger = Logger(label: "compute-test")

    struct Harness {
        let api: ControlAPI
        let database: any SQLDatabase
        let handlers: [TaskHandler]

        init(_ backing: Backing) async throws {
            self.database = try await backing.freshDatabase(prefix: "compute", logger: DeploymentServiceTests.logger).database
            let service = ComputeService(store: nil)
            // Reconcile and delete, not provision: replicas stay pending.
            self.handlers = service.tasks.filter { [ComputeService.reconcileKind, ComputeService.deleteKind].contains($0.kind) }
            let store = ControlStore(database: self.database, catalog: try ServiceCatalog(services: [service]))
            _ = try await store.migrate()
            var configuration = ControlAPIConfiguration()
            configuration.passwordHashing = .test
            self.api = try ControlAPI(store: store, configuration: configuration, logger: DeploymentServiceTests.logger)
        }

        func call(_ method: String, _ path: String, key: String, body: String = "", headers: [(String, String)] = []) async -> (Int, JSONValue?) {
            let (status, value, _) = await APIDriver(self.api).call(method, path, key: key, body: body, headers: headers)
            return (status, value)
        }

        /// Runs the reconciler (its schedule every second) while `body` runs.
        func reconciling<T: Sendable>(_ body: () async throws -> T) async throws -> T {
            var configuration = TaskRunnerConfiguration()
            configuration.pollInterval = .milliseconds(50)
            configuration.schedules = [TaskSchedule(kind: ComputeService.reconcileKind, every: .seconds(1))]
            let runner = TaskRunner(queue: self.api.tasks, handlers: self.handlers, configuration: configuration, logger: DeploymentServiceTests.logger)
            let running = Task { try await runner.run() }
            defer { running.cancel() }
            return try await body()
        }

        /// How many scheduled reconcile passes (over every deployment) have completed.
        func scheduledPasses() async throws -> Int64 {
            try await self.database.query(
                "SELECT COUNT(*) FROM tasks WHERE kind = $1 AND state = 'succeeded' AND payload NOT LIKE '%deployment%'",
                [.text(ComputeService.reconcileKind)]
            ).first?.int(0) ?? 0
        }

        /// Polls (at most 30 s) until the deployment's answer satisfies `condition`; nil: it is gone.
        func deployment(_ name: String, key: String, until condition: (JSONValue?) -> Bool) async throws -> JSONValue? {
            let deadline = ContinuousClock.now + .seconds(30)
            while true {
                let (status, body) = await self.call("GET", "/compute/deployments/\(name)", key: key)
                let value = status == 404 ? nil : body
                if condition(value) { return value }
                guard ContinuousClock.now < deadline else {
                    Issue.record("the deployment never reached the expected state: \(String(describing: value))")
                    return value
                }
                try await Task.sleep(for: .milliseconds(50))
            }
        }
    }

    /// A user (their key) and their tenant, which has an image `busybox`.
    static func userWithImage(_ h: Harness) async throws -> (key: String, tenant: String) {
        let driver = APIDriver(h.api)
        let ada = try await driver.user("ada@example.com")
        let tenant = await driver.tenant(of: ada)
        try await h.database.query(
            "INSERT INTO compute_images (tenant_id, name, digest, size_bytes, command, created_at) VALUES ($1, 'busybox', 'abc', 1, '[\"sh\"]', 0)",
            [.text(tenant)])
        return (ada, tenant)
    }

    static func names(_ value: JSONValue?) -> [String] {
        guard case .array(let items) = value?["instances"] else { return [] }
        return items.compactMap(text)
    }

    @Test(arguments: Backing.available) func createScaleAndDeleteOnEachDatabase(_ backing: Backing) async throws {
        let h = try await Harness(backing)
        let (ada, tenant) = try await Self.userWithImage(h)

        let (created, made) = await h.call("POST", "/compute/deployments", key: ada, body: #"{"name": "api", "image": "busybox", "replicas": 3, "type": "nano"}"#)
        #expect(created == 201 && made?["status"] == .string("progressing") && made?["replicas"] == .int(3))
        #expect(await h.call("POST", "/compute/deployments", key: ada, body: #"{"name": "api", "image": "busybox", "replicas": 1}"#).0 == 409)
        // 3 replicas count against the 20 instances at once: 18 more do not fit.
        let (refused, quota) = await h.call("POST", "/compute/deployments", key: ada, body: #"{"name": "big", "image": "busybox", "replicas": 18}"#)
        #expect(refused == 409 && text(quota?["error"]?["code"]) == "quota_exceeded")
        #expect(await h.call("POST", "/compute/instances", key: ada, body: #"{"name": "solo", "image": "busybox"}"#).0 == 201)
        // An image that only a deployment (with no replica yet) names stays.
        try await h.database.query(
            "INSERT INTO compute_images (tenant_id, name, digest, size_bytes, command, created_at) VALUES ($1, 'other', 'def', 1, '[\"sh\"]', 0)",
            [.text(tenant)])
        #expect(await h.call("POST", "/compute/deployments", key: ada, body: #"{"name": "idle", "image": "other", "replicas": 0}"#).0 == 201)
        let (inUse, why) = await h.call("DELETE", "/compute/images/other", key: ada)
        #expect(inUse == 409 && text(why?["error"]?["code"]) == "image_in_use")

        try await h.reconciling {
            let three = try await h.deployment("api", key: ada) { Self.names($0).count == 3 }
            #expect(Self.names(three).allSatisfy { $0.hasPrefix("api-") && $0.count == 9 })
            #expect(three?["ready_replicas"] == .int(0), "no engine: they stay pending")
            let (_, instances) = await h.call("GET", "/compute/instances", key: ada)
            guard case .array(let all) = instances?["instances"] else { throw TestFailure("no instance list") }
            #expect(all.count == 4 && all.filter { text($0["status"]) == "pending" }.count == 4)

            // Passes that find nothing to do make nothing: still three after two more scheduled passes.
            let passes = try await h.scheduledPasses()
            while try await h.scheduledPasses() < passes + 2 { try await Task.sleep(for: .milliseconds(50)) }
            #expect(Self.names(await h.call("GET", "/compute/deployments/api", key: ada).1).count == 3)

            let (_, current) = await h.call("GET", "/compute/deployments/api", key: ada)
            guard case .int(let version) = current?["version"] else { throw TestFailure("no version") }
            #expect(await h.call("PATCH", "/compute/deployments/api", key: ada, body: #"{"replicas": 1}"#, headers: [("If-Match", "\"0\"")]).0 == 412)
            let (scaled, _) = await h.call("PATCH", "/compute/deployments/api", key: ada, body: #"{"replicas": 1}"#, headers: [("If-Match", "\"\(version)\"")])
            #expect(scaled == 200)
            _ = try await h.deployment("api", key: ada) { Self.names($0).count == 1 }
            #expect(await h.call("PATCH", "/compute/deployments/api", key: ada, body: #"{"replicas": 101}"#).0 == 400)

            #expect(await h.call("DELETE", "/compute/deployments/api", key: ada).0 == 202)
            let gone = try await h.deployment("api", key: ada) { $0 == nil }
            #expect(gone == nil, "the deployment goes once its replicas are deleted")
            let (_, left) = await h.call("GET", "/compute/instances", key: ada)
            guard case .array(let remaining) = left?["instances"] else { throw TestFailure("no instance list") }
            #expect(remaining.map { text($0["name"]) } == ["solo"], "the instance no deployment made stays")
        }
    }
}

extension DeploymentServiceTests {
    static func kinds(_ value: JSONValue?) -> [String] {
        guard case .array(let items) = value?["events"] else { return [] }
        return items.compactMap { text($0["kind"]) }
    }

    /// An update's events and its replacement of replicas (pending ones go at once), paged; and the
    /// console's one-time tickets, on both dialects' SQL.
    @Test(arguments: Backing.available) func eventsOfAnUpdateAndConsoleTicketsOnEachDatabase(_ backing: Backing) async throws {
        let h = try await Harness(backing)
        let ada = try await Self.userWithImage(h).key
        #expect(await h.call("POST", "/compute/deployments", key: ada, body: #"{"name": "api", "image": "busybox", "replicas": 2, "type": "nano"}"#).0 == 201)
        try await h.reconciling {
            let first = Set(Self.names(try await h.deployment("api", key: ada) { Self.names($0).count == 2 }))
            #expect(await h.call("PATCH", "/compute/deployments/api", key: ada, body: "{}").0 == 400)
            let (updated, answer) = await h.call("PATCH", "/compute/deployments/api", key: ada, body: #"{"command": ["sh", "-c", "exec true"]}"#)
            #expect(updated == 200 && answer?["revision"] == .int(2) && answer?["status"] == .string("progressing"))
            let replaced = try await h.deployment("api", key: ada) { value in
                let names = Set(Self.names(value))
                return names.count == 2 && names.isDisjoint(with: first)
            }
            #expect(replaced?["revision"] == .int(2))
            let (_, events) = await h.call("GET", "/compute/deployments/api/events", key: ada)
            let kinds = Self.kinds(events)
            #expect(Array(kinds.prefix(4)) == ["created", "replica-created", "replica-created", "updated"], "\(kinds)")
            #expect(kinds.filter { $0 == "replica-deleted" }.count == 2 && kinds.filter { $0 == "replica-created" }.count == 4, "\(kinds)")
            let (_, page) = await h.call("GET", "/compute/deployments/api/events?limit=3", key: ada)
            #expect(Self.kinds(page) == Array(kinds.prefix(3)))
            guard let token = text(page?["next_token"]) else { throw TestFailure("no next_token") }
            let (_, rest) = await h.call("GET", "/compute/deployments/api/events?limit=100&next_token=\(token)", key: ada)
            #expect(Self.kinds(rest) == Array(kinds.dropFirst(3)))
        }

        let ticket = try await h.database.transaction { db in try await ConsoleTickets.issue(db, instanceID: "i-1", now: 1_000) }
        let stale = try await h.database.transaction { db in try await ConsoleTickets.issue(db, instanceID: "i-2", now: 1_000) }
        #expect(try await h.database.transaction { db in try await ConsoleTickets.redeem(db, ticket: "nope", now: 2_000) } == nil)
        #expect(try await h.database.transaction { db in try await ConsoleTickets.redeem(db, ticket: ticket, now: 2_000) } == "i-1")
        #expect(try await h.database.transaction { db in try await ConsoleTickets.redeem(db, ticket: ticket, now: 2_000) } == nil, "used up")
        #expect(
            try await h.database.transaction { db in try await ConsoleTickets.redeem(db, ticket: stale, now: 1_000 + ConsoleTickets.lifetime) } == nil,
            "expired")
        let stored = try await h.database.query("SELECT digest FROM compute_console_tickets").map { $0.text(0) }
        #expect(!stored.contains(ticket) && !stored.contains(stale), "only digests are kept")
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
