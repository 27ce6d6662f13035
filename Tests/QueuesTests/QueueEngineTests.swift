import ControlPlane
import Database
import Foundation
import Logging
import ServiceContract
import ServiceTestSupport
import Synchronization
import Testing

@testable import Queues

/// A clock the test moves: unix milliseconds.
final class ManualClock: Sendable {
    private let value = Mutex<Int64>(1_800_000_000_000)
    func now() -> Int64 { self.value.withLock { $0 } }
    func advance(seconds: Double) { self.value.withLock { $0 += Int64(seconds * 1000) } }
}

/// A control plane hosting the queues service on a fresh database (REST through `call`), and
/// engines on the same database whose clock the test moves.
struct QueuesHarness {
    let api: ControlAPI
    let database: any SQLDatabase
    let location: DatabaseLocation
    let clock = ManualClock()
    let service: QueuesService

    static let logger = Logger(label: "queues-test")

    init(_ backing: Backing, quota: Int64? = nil, sqs: SQSCredentials? = nil) async throws {
        (self.location, self.database) = try await backing.freshDatabase(prefix: "queues", logger: Self.logger)
        var defaults = QuotaDefaults()
        if let quota { defaults.limits[QueueEngine.quota] = quota }
        self.service = QueuesService(sqs: sqs)
        let store = ControlStore(database: self.database, quotaDefaults: defaults, catalog: try ServiceCatalog(services: [self.service]))
        _ = try await store.migrate()
        var configuration = ControlAPIConfiguration()
        configuration.passwordHashing = .test
        self.api = try ControlAPI(store: store, configuration: configuration, logger: Self.logger)
    }

    /// An engine on this database (or `database`: another connection pool, as another process has)
    /// with the harness's clock, sharing the service's wakeups unless given others.
    func engine(database: (any SQLDatabase)? = nil, wakeups: Wakeups? = nil) -> QueueEngine {
        let clock = self.clock
        var environment = self.api.environment
        environment.clock = ServiceClock { clock.now() }
        if let database { environment.database = database }
        return QueueEngine(environment: environment, wakeups: wakeups ?? self.service.wakeups)
    }

    var driver: APIDriver { APIDriver(self.api) }

    @discardableResult
    func call(_ method: String, _ path: String, key: String? = nil, body: String = "", headers: [(String, String)] = []) async
        -> (Int, JSONValue?, APIResponse)
    {
        await self.driver.call(method, path, key: key, body: body, headers: headers)
    }

    func user(_ email: String, tenant: String? = nil) async throws -> String { try await self.driver.user(email, tenant: tenant) }
    func tenant(of key: String) async -> String { await self.driver.tenant(of: key) }
}

extension QueueEngine {
    func sendOne(_ tenant: String, _ queue: String, _ message: OutgoingMessage) async throws -> SentMessage {
        try await self.send(tenantID: tenant, queue: queue, [message])[0].get()
    }

    func receive(_ tenant: String, _ queue: String, max: Int = 10, visibility: Int64? = nil) async throws -> [ReceivedMessage] {
        try await self.receive(tenantID: tenant, queue: queue, maximum: max, visibilityTimeout: visibility, wait: 0)
    }
}

/// The thrown error's code, for `#expect(throws:)`-style checks on ``QueuesError``.
func code(_ body: () async throws -> Void) async -> QueuesError.Code? {
    do {
        try await body()
        return nil
    } catch let error as QueuesError {
        return error.code
    } catch {
        Issue.record("unexpected error \(error)")
        return nil
    }
}

@Suite struct QueueEngineTests {
    @Test(arguments: Backing.available) func visibilityReceiptsAndDelete(_ backing: Backing) async throws {
        let h = try await QueuesHarness(backing)
        let q = h.engine()
        _ = try await q.createQueue(tenantID: "t1", name: "jobs", fifo: false, settings: QueueSettings(visibilityTimeout: 30), sameIsSuccess: false)
        let sent = try await q.sendOne("t1", "jobs", OutgoingMessage(body: "hello é"))
        #expect(sent.bodyMD5 == "47b154673aa7a62db585b1b4275d5baa")

        let first = try await q.receive("t1", "jobs")
        #expect(first.map(\.id) == [sent.id] && first[0].receiveCount == 1 && first[0].body == "hello é")
        #expect(try await q.receive("t1", "jobs").isEmpty, "an in-flight message is hidden")
        #expect(try await q.counts(tenantID: "t1", name: "jobs") == QueueCounts(visible: 0, inFlight: 1, delayed: 0))

        h.clock.advance(seconds: 31)
        let second = try await q.receive("t1", "jobs")
        #expect(second.map(\.id) == [sent.id] && second[0].receiveCount == 2 && second[0].receipt != first[0].receipt)
        #expect(try await q.delete(tenantID: "t1", queue: "jobs", receipt: first[0].receipt) == .stale)
        #expect(try await q.delete(tenantID: "t1", queue: "jobs", receipt: second[0].receipt) == .deleted)
        #expect(try await q.delete(tenantID: "t1", queue: "jobs", receipt: second[0].receipt) == .gone)
        #expect(await code { _ = try await q.delete(tenantID: "t1", queue: "jobs", receipt: "nonsense") } == .invalidReceipt)
        // Another tenant's queue of the same name is another queue.
        #expect(await code { _ = try await q.receive("t2", "jobs") } == .queueNotFound("jobs"))
    }

    @Test(arguments: Backing.available) func changeVisibilityDelayAndRetention(_ backing: Backing) async throws {
        let h = try await QueuesHarness(backing)
        let q = h.engine()
        _ = try await q.createQueue(tenantID: "t", name: "q", fifo: false, settings: QueueSettings(retention: 120), sameIsSuccess: false)
        _ = try await q.sendOne("t", "q", OutgoingMessage(body: "a"))
        let got = try await q.receive("t", "q", visibility: 10)
        try await q.changeVisibility(tenantID: "t", queue: "q", receipt: got[0].receipt, timeout: 100)
        h.clock.advance(seconds: 50)
        #expect(try await q.receive("t", "q").isEmpty, "the extended timeout holds past the first one")
        try await q.changeVisibility(tenantID: "t", queue: "q", receipt: got[0].receipt, timeout: 0)
        let again = try await q.receive("t", "q")
        #expect(again.count == 1)
        #expect(await code { try await q.changeVisibility(tenantID: "t", queue: "q", receipt: got[0].receipt, timeout: 5) } == .receiptStale)
        try await q.changeVisibility(tenantID: "t", queue: "q", receipt: again[0].receipt, timeout: 0)
        #expect(await code { try await q.changeVisibility(tenantID: "t", queue: "q", receipt: again[0].receipt, timeout: 5) } == .notInFlight)

        // A delayed message is counted as delayed and received once its delay ends.
        _ = try await q.sendOne("t", "q", OutgoingMessage(body: "later", delay: 20))
        #expect(try await q.counts(tenantID: "t", name: "q").delayed == 1)
        #expect(try await q.receive("t", "q").map(\.body) == ["a"])
        h.clock.advance(seconds: 21)
        #expect(try await q.receive("t", "q").map(\.body) == ["later"])

        // Past its retention a message is not received, and the expiry task deletes it.
        h.clock.advance(seconds: 200)
        #expect(try await q.receive("t", "q").isEmpty)
        let expired = try await h.database.transaction { db in try await QueueEngine.expire(db, now: h.clock.now()) }
        #expect(expired == 2)
    }

    @Test(arguments: Backing.available) func deadLetterQueueAfterMaxReceives(_ backing: Backing) async throws {
        let h = try await QueuesHarness(backing)
        let q = h.engine()
        _ = try await q.createQueue(tenantID: "t", name: "dlq", fifo: false, settings: QueueSettings(), sameIsSuccess: false)
        #expect(
            await code {
                _ = try await q.createQueue(
                    tenantID: "t", name: "bad", fifo: false, settings: QueueSettings(deadLetterQueue: "missing", maxReceiveCount: 2), sameIsSuccess: false)
            } == .invalidAttribute("RedrivePolicy", "the dead-letter queue missing does not exist"))
        _ = try await q.createQueue(
            tenantID: "t", name: "work", fifo: false, settings: QueueSettings(visibilityTimeout: 5, deadLetterQueue: "dlq", maxReceiveCount: 2),
            sameIsSuccess: false)
        let sent = try await q.sendOne("t", "work", OutgoingMessage(body: "poison"))
        for round in 1...2 {
            let got = try await q.receive("t", "work")
            #expect(got.map(\.receiveCount) == [Int64(round)])
            h.clock.advance(seconds: 6)
        }
        #expect(try await q.receive("t", "work").isEmpty, "received maxReceiveCount times: moved, not delivered a third time")
        let dead = try await q.receive("t", "dlq")
        #expect(dead.map(\.id) == [sent.id] && dead[0].body == "poison" && dead[0].receiveCount == 1)
        #expect(try await q.counts(tenantID: "t", name: "work") == QueueCounts(visible: 0, inFlight: 0, delayed: 0))
    }

    @Test(arguments: Backing.available) func fifoOrderGroupsAndDeduplication(_ backing: Backing) async throws {
        let h = try await QueuesHarness(backing)
        let q = h.engine()
        #expect(await code { _ = try await q.createQueue(tenantID: "t", name: "orders", fifo: true, settings: QueueSettings(), sameIsSuccess: false) } != nil)
        _ = try await q.createQueue(tenantID: "t", name: "orders.fifo", fifo: true, settings: QueueSettings(visibilityTimeout: 10), sameIsSuccess: false)
        for (group, body) in [("a", "a1"), ("b", "b1"), ("a", "a2"), ("b", "b2"), ("a", "a3")] {
            _ = try await q.sendOne("t", "orders.fifo", OutgoingMessage(body: body, groupID: group, deduplicationID: body))
        }
        // One receive of 2: the oldest two, a1 and b1. Their groups are then blocked until they are deleted.
        let first = try await q.receive("t", "orders.fifo", max: 2)
        #expect(first.map(\.body) == ["a1", "b1"])
        #expect(try await q.receive("t", "orders.fifo").isEmpty, "both groups have a message in flight")
        #expect(try await q.delete(tenantID: "t", queue: "orders.fifo", receipt: first[1].receipt) == .deleted)
        #expect(try await q.receive("t", "orders.fifo", max: 10).map(\.body) == ["b2"], "group a is still blocked by a1")
        // a1's visibility ends without a delete: it comes back before a2 (order within the group).
        h.clock.advance(seconds: 11)
        let retried = try await q.receive("t", "orders.fifo", max: 10)
        #expect(retried.map(\.body) == ["a1", "a2", "b2", "a3"], "in send order, a1 before the rest of its group")

        // Deduplication: the same id within 5 minutes stores nothing and answers the first message.
        let one = try await q.sendOne("t", "orders.fifo", OutgoingMessage(body: "x", groupID: "c", deduplicationID: "d-1"))
        let dup = try await q.sendOne("t", "orders.fifo", OutgoingMessage(body: "other body", groupID: "c", deduplicationID: "d-1"))
        #expect(dup.duplicate && dup.id == one.id && !one.duplicate)
        h.clock.advance(seconds: 301)
        let later = try await q.sendOne("t", "orders.fifo", OutgoingMessage(body: "x", groupID: "c", deduplicationID: "d-1"))
        #expect(!later.duplicate && later.id != one.id)

        // FIFO rules: a group is required, a deduplication id unless content-based, no per-message delay.
        #expect(await code { _ = try await q.sendOne("t", "orders.fifo", OutgoingMessage(body: "x", deduplicationID: "z")) } == .missingParameter("MessageGroupId"))
        #expect(await code { _ = try await q.sendOne("t", "orders.fifo", OutgoingMessage(body: "x", groupID: "g")) } != nil)
        #expect(await code { _ = try await q.sendOne("t", "orders.fifo", OutgoingMessage(body: "x", delay: 5, groupID: "g", deduplicationID: "y")) } != nil)
        _ = try await q.update(tenantID: "t", name: "orders.fifo") { $0.contentBasedDeduplication = true }
        let byBody = try await q.sendOne("t", "orders.fifo", OutgoingMessage(body: "same", groupID: "g"))
        #expect(try await q.sendOne("t", "orders.fifo", OutgoingMessage(body: "same", groupID: "g")).id == byBody.id)
    }

    @Test(arguments: Backing.available) func badInput(_ backing: Backing) async throws {
        let h = try await QueuesHarness(backing)
        let q = h.engine()
        for name in ["", "has space", String(repeating: "a", count: 81), "ünïcode"] {
            #expect(await code { _ = try await q.createQueue(tenantID: "t", name: name, fifo: false, settings: QueueSettings(), sameIsSuccess: false) } == .invalidName(name))
        }
        for settings in [QueueSettings(visibilityTimeout: 43_201), QueueSettings(delay: 901), QueueSettings(retention: 59), QueueSettings(maximumMessageBytes: 262_145), QueueSettings(receiveWait: 21)] {
            #expect(await code { _ = try await q.createQueue(tenantID: "t", name: "q", fifo: false, settings: settings, sameIsSuccess: false) } != nil)
        }
        _ = try await q.createQueue(tenantID: "t", name: "q", fifo: false, settings: QueueSettings(), sameIsSuccess: false)
        #expect(await code { _ = try await q.createQueue(tenantID: "t", name: "q", fifo: false, settings: QueueSettings(), sameIsSuccess: false) } == .queueExists("q"))
        // SQS CreateQueue: the same settings again is a success; other settings are not.
        #expect(try await q.createQueue(tenantID: "t", name: "q", fifo: false, settings: QueueSettings(), sameIsSuccess: true).created == false)
        #expect(await code { _ = try await q.createQueue(tenantID: "t", name: "q", fifo: false, settings: QueueSettings(delay: 3), sameIsSuccess: true) } == .queueExists("q"))

        let limit = MessageChecks.maximumMessageBytes
        #expect(await code { _ = try await q.sendOne("t", "q", OutgoingMessage(body: String(repeating: "x", count: Int(limit) + 1))) } == .tooLarge(limit + 1, limit))
        _ = try await q.sendOne("t", "q", OutgoingMessage(body: String(repeating: "x", count: Int(limit))))
        #expect(await code { _ = try await q.sendOne("t", "q", OutgoingMessage(body: "")) } == .missingParameter("MessageBody"))
        #expect(await code { _ = try await q.sendOne("t", "q", OutgoingMessage(body: "bell \u{7}")) } == .invalidCharacters("the message body"))
        let eleven = (0..<11).map { ("a\($0)", MessageAttribute(dataType: "String", string: "v")) }
        #expect(await code { _ = try await q.sendOne("t", "q", OutgoingMessage(body: "x", attributes: eleven)) } != nil)
        #expect(await code { _ = try await q.sendOne("t", "q", OutgoingMessage(body: "x", attributes: [("n", MessageAttribute(dataType: "Number", string: "ten"))])) } != nil)
        #expect(await code { _ = try await q.sendOne("t", "q", OutgoingMessage(body: "x", attributes: [("AWS.x", MessageAttribute(dataType: "String", string: "v"))])) } != nil)
        #expect(await code { _ = try await q.sendOne("t", "q", OutgoingMessage(body: "x", groupID: "g")) } != nil, "a group on a standard queue")
        #expect(await code { _ = try await q.receive(tenantID: "t", queue: "q", maximum: 11, visibilityTimeout: nil, wait: 0) } != nil)
        #expect(await code { _ = try await q.receive(tenantID: "t", queue: "q", maximum: 1, visibilityTimeout: nil, wait: 21) } != nil)
    }

    /// The attributes' MD5 as SQS defines it, against the value botocore computes for the same
    /// attributes (`botocore.handlers._calculate_md5_from_attributes`, checked with boto3 1.43).
    @Test func attributesMD5MatchesTheSQSDefinition() {
        let attributes: [(String, MessageAttribute)] = [
            ("kind", MessageAttribute(dataType: "String", string: "x")), ("n", MessageAttribute(dataType: "Number", string: "3")),
            ("b", MessageAttribute(dataType: "Binary", binary: [0, 1])),
        ]
        #expect(MessageChecks.attributesMD5(attributes) == "5571dc3ba2b82f6d9db69b07ff281a9d")
        #expect(MessageChecks.attributesMD5([]) == nil)
    }

    /// Several receivers with their own connection pools (as several processes have) on one
    /// database: every message is received exactly once while the visibility timeout holds.
    @Test(arguments: Backing.available) func concurrentReceiversNeverShareAMessage(_ backing: Backing) async throws {
        let h = try await QueuesHarness(backing)
        let q = h.engine()
        _ = try await q.createQueue(tenantID: "t", name: "q", fifo: false, settings: QueueSettings(visibilityTimeout: 3600), sameIsSuccess: false)
        let count = 300
        for batch in stride(from: 0, to: count, by: 10) {
            let results = try await q.send(tenantID: "t", queue: "q", (batch..<batch + 10).map { OutgoingMessage(body: "m\($0)") })
            #expect(results.allSatisfy { if case .success = $0 { true } else { false } })
        }
        var pools: [any SQLDatabase] = []
        for _ in 0..<6 { pools.append(try h.location.open(logger: QueuesHarness.logger, timeout: .seconds(60))) }
        let received = try await withThrowingTaskGroup(of: [String].self) { group in
            for pool in pools {
                let engine = h.engine(database: pool, wakeups: Wakeups())
                group.addTask {
                    var bodies: [String] = []
                    while true {
                        let got = try await engine.receive("t", "q", max: Int.random(in: 1...10))
                        if got.isEmpty { return bodies }
                        bodies += got.map(\.body)
                    }
                }
            }
            var all: [String] = []
            for try await bodies in group { all += bodies }
            return all
        }
        for pool in pools { await pool.close() }
        #expect(received.count == count, "each message once: \(received.count) receives of \(count) messages")
        #expect(Set(received) == Set((0..<count).map { "m\($0)" }))
    }

    /// A long poll returns a message sent while it waits, and an empty one returns after its wait.
    @Test(arguments: Backing.available) func longPolling(_ backing: Backing) async throws {
        let h = try await QueuesHarness(backing)
        let q = h.engine()
        _ = try await q.createQueue(tenantID: "t", name: "q", fifo: false, settings: QueueSettings(), sameIsSuccess: false)
        let started = ContinuousClock.now
        #expect(try await q.receive(tenantID: "t", queue: "q", maximum: 1, visibilityTimeout: nil, wait: 1).isEmpty)
        #expect(ContinuousClock.now - started >= .seconds(1), "an empty long poll waits its whole wait")

        let waiting = Task { try await q.receive(tenantID: "t", queue: "q", maximum: 1, visibilityTimeout: nil, wait: 20) }
        _ = try await q.sendOne("t", "q", OutgoingMessage(body: "wake up"))
        #expect(try await waiting.value.map(\.body) == ["wake up"])
    }

    @Test func wakeupsWakeOnSignalAndNeverMissOne() async {
        let wakeups = Wakeups()
        let key = Wakeups.key(tenantID: "t", queue: "q")
        let seen = await wakeups.generation(key)
        // A signal between reading the generation and waiting is not missed.
        await wakeups.signal(key)
        #expect(await wakeups.wait(key, seen: seen, timeout: .seconds(3600)))
        // A signal while waiting wakes the waiter; a timeout does not claim a wakeup.
        let now = await wakeups.generation(key)
        let waiter = Task { await wakeups.wait(key, seen: now, timeout: .seconds(30)) }
        while await wakeups.waiting(key) == 0 { await Task.yield() }
        await wakeups.signal(key)
        #expect(await waiter.value, "woken by the signal, not by its 30 s timeout")
        #expect(await wakeups.waiting(key) == 0)
        #expect(await wakeups.wait(key, seen: await wakeups.generation(key), timeout: .milliseconds(10)) == false)
    }
}
