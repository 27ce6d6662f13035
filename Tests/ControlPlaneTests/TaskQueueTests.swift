import ControlPlane
import ServiceContract
import Database
import Foundation
import Logging
import NIOPosix
import SQLite
import ServiceLifecycle
import Synchronization
import Testing

/// The databases the queue tests run on: SQLite always, PostgreSQL when `CLOUD_TEST_POSTGRES_URL`
/// names a server (`scripts/with-postgres.sh swift test …`).
enum TestDatabaseKind: String, Sendable, CaseIterable, CustomTestStringConvertible {
    case sqlite
    case postgres

    var testDescription: String { self.rawValue }

    static var available: [TestDatabaseKind] {
        ProcessInfo.processInfo.environment["CLOUD_TEST_POSTGRES_URL"].map { $0.isEmpty ? [.sqlite] : [.sqlite, .postgres] } ?? [.sqlite]
    }
}

/// A fresh, migrated database: a SQLite file in a temporary directory, or a new database on the
/// test PostgreSQL. ``open()`` gives another connection to it, as another process would have.
final class TestDatabase: Sendable {
    let kind: TestDatabaseKind
    let location: DatabaseLocation
    let database: any SQLDatabase
    private let directory: String?
    static let logger = Logger(label: "test")

    private init(kind: TestDatabaseKind, location: DatabaseLocation, directory: String?) throws {
        self.kind = kind
        self.location = location
        self.directory = directory
        self.database = try location.open(logger: Self.logger, timeout: Self.postgresTimeout)
    }

    /// A generous deadline for PostgreSQL statements: these tests check results, not how fast a loaded
    /// CI machine answers (the production default is 5 s).
    static let postgresTimeout: Duration = .seconds(60)

    static func make(_ kind: TestDatabaseKind) async throws -> TestDatabase {
        let made: TestDatabase
        switch kind {
        case .sqlite:
            let directory = NSTemporaryDirectory() + "tasks-test-" + UUID().uuidString
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            made = try TestDatabase(kind: kind, location: .sqlite(path: directory + "/control.sqlite"), directory: directory)
        case .postgres:
            let url = try #require(ProcessInfo.processInfo.environment["CLOUD_TEST_POSTGRES_URL"])
            guard case .postgres(var server) = try DatabaseLocation(parsing: url) else { throw TaskQueueError.invalid("not PostgreSQL: \(url)") }
            let admin = PostgresDatabase(location: server, timeout: Self.postgresTimeout, logger: Self.logger)
            let name = "tasks_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(12)
            try await admin.query("CREATE DATABASE \(name)")
            await admin.close()
            server.database = String(name)
            made = try TestDatabase(kind: kind, location: .postgres(server), directory: nil)
        }
        #expect(try await ControlStore(database: made.database).migrate() == Migrations.all.count)
        return made
    }

    private let threadPools = Mutex<[NIOThreadPool]>([])

    /// Another connection. For SQLite, with a thread pool of its own, as another process has: on one
    /// shared pool, connections waiting for the write lock could occupy every thread while the
    /// holder's next statement waits for one.
    func open() throws -> any SQLDatabase {
        guard case .sqlite(let path) = self.location else {
            return try self.location.open(logger: Self.logger, timeout: Self.postgresTimeout)
        }
        let pool = NIOThreadPool(numberOfThreads: 1)
        pool.start()
        self.threadPools.withLock { $0.append(pool) }
        return try SQLiteDatabase(path: path, threadPool: pool)
    }

    func cleanUp() async {
        await self.database.close()
        for pool in self.threadPools.withLock({ $0 }) { try? await pool.shutdownGracefully() }
        if let directory { try? FileManager.default.removeItem(atPath: directory) }
    }
}

/// A settable clock in unix milliseconds.
final class MillisecondClock: Sendable {
    private let value = Mutex<Int64>(1_800_000_000_000)
    var now: Int64 { self.value.withLock { $0 } }
    func advance(_ milliseconds: Int64) { self.value.withLock { $0 += milliseconds } }
    var function: @Sendable () -> Int64 { { self.now } }
}

/// A seeded generator (SplitMix64), for reproducible jitter.
struct SeededRandom: RandomNumberGenerator, Sendable {
    var state: UInt64
    mutating func next() -> UInt64 {
        self.state &+= 0x9E37_79B9_7F4A_7C15
        var z = self.state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

private let kinds = ["test.echo"]

/// A value shared with handlers (a `Mutex` cannot be captured by an escaping closure).
final class Shared<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { self.mutex = Mutex(value) }
    func withLock<T>(_ body: (inout Value) -> T) -> T { self.mutex.withLock { body(&$0) } }
}

private func claimOne(_ queue: TaskQueue, owner: String, lease: Int64 = 30_000) async throws -> TaskRecord? {
    try await queue.claim(owner: owner, kinds: kinds, limit: 1, leaseDuration: lease).first
}

@Suite struct TaskQueueTests {
    /// `enqueue(_:in:)` joins the caller's transaction: the resource row and its task commit together,
    /// and a rollback leaves neither.
    @Test(arguments: TestDatabaseKind.available)
    func enqueueInsideATransactionCommitsOrRollsBackWithIt(_ kind: TestDatabaseKind) async throws {
        let t = try await TestDatabase.make(kind)
        let queue = TaskQueue(database: t.database)
        try await t.database.query("CREATE TABLE test_resources (id TEXT PRIMARY KEY, status TEXT NOT NULL)")
        struct Abort: Error {}
        await #expect(throws: Abort.self) {
            try await t.database.transaction { db in
                try await db.query("INSERT INTO test_resources (id, status) VALUES ('r1', 'pending')")
                try await queue.enqueue(NewTask(kind: "test.provision", tenantID: "tnt_a", payload: .object([("id", .string("r1"))])), in: db)
                throw Abort()
            }
        }
        #expect(try await t.database.query("SELECT id FROM test_resources").isEmpty)
        #expect(try await queue.tasks(tenantID: "tnt_a").isEmpty)
        try await t.database.transaction { db in
            try await db.query("INSERT INTO test_resources (id, status) VALUES ('r2', 'pending')")
            try await queue.enqueue(NewTask(kind: "test.provision", tenantID: "tnt_a", payload: .object([("id", .string("r2"))])), in: db)
        }
        #expect(try await t.database.query("SELECT id FROM test_resources").map { $0.text(0) } == ["r2"])
        #expect(try await queue.tasks(tenantID: "tnt_a").map(\.payload) == [.object([("id", .string("r2"))])])
        await t.cleanUp()
    }

    @Test(arguments: TestDatabaseKind.available)
    func idempotencyKeyGivesOneTask(_ kind: TestDatabaseKind) async throws {
        let t = try await TestDatabase.make(kind)
        let queue = TaskQueue(database: t.database)
        let (first, created) = try await queue.enqueue(
            NewTask(kind: "test.echo", tenantID: "tnt_a", payload: .object([("n", .int(1))]), idempotencyKey: "create-vm-1"))
        #expect(created)
        #expect(first.state == .queued && first.attempts == 0)
        let (again, createdAgain) = try await queue.enqueue(
            NewTask(kind: "test.echo", tenantID: "tnt_a", payload: .object([("n", .int(2))]), idempotencyKey: "create-vm-1"))
        #expect(!createdAgain)
        #expect(again.id == first.id)
        #expect(again.payload == .object([("n", .int(1))]))
        // The key is per tenant and kind; without a key every enqueue is a new task.
        #expect(try await queue.enqueue(NewTask(kind: "test.echo", tenantID: "tnt_b", idempotencyKey: "create-vm-1")).created)
        #expect(try await queue.enqueue(NewTask(kind: "test.other", tenantID: "tnt_a", idempotencyKey: "create-vm-1")).created)
        #expect(try await queue.enqueue(NewTask(kind: "test.echo", tenantID: "tnt_a")).created)
        #expect(try await queue.enqueue(NewTask(kind: "test.echo", tenantID: "tnt_a")).created)

        // Twenty producers on their own connections race with one key: one task.
        let databases = try (0..<4).map { _ in try t.open() }
        let ids = try await withThrowingTaskGroup(of: String.self) { group in
            for index in 0..<20 {
                let queue = TaskQueue(database: databases[index % databases.count])
                group.addTask { try await queue.enqueue(NewTask(kind: "test.echo", tenantID: "tnt_c", idempotencyKey: "race")).task.id }
            }
            return try await group.reduce(into: Set<String>()) { $0.insert($1) }
        }
        #expect(ids.count == 1)
        #expect(try await queue.tasks(tenantID: "tnt_c").count == 1)
        #expect(try await queue.tasks(tenantID: "tnt_a").count == 4)
        await #expect(throws: TaskQueueError.invalid("")) {
            try await queue.enqueue(NewTask(kind: "Not A Kind", tenantID: "tnt_a"))
        }
        for database in databases { await database.close() }
        await t.cleanUp()
    }

    @Test(arguments: TestDatabaseKind.available)
    func concurrentClaimersNeverShareATask(_ kind: TestDatabaseKind) async throws {
        let t = try await TestDatabase.make(kind)
        let clock = MillisecondClock()
        let queue = TaskQueue(database: t.database, now: clock.function)
        var all = Set<String>()
        for index in 0..<60 {
            all.insert(try await queue.enqueue(NewTask(kind: "test.echo", tenantID: "tnt_a", payload: .int(Int64(index)))).task.id)
        }
        // Eight workers, each on its own connection (pool), claim in batches and hold their leases.
        let databases = try (0..<8).map { _ in try t.open() }
        let claims = try await withThrowingTaskGroup(of: [(String, String)].self) { group in
            for worker in 0..<8 {
                let queue = TaskQueue(database: databases[worker], now: clock.function)
                group.addTask {
                    var mine: [(String, String)] = []
                    while true {
                        let batch = try await queue.claim(owner: "worker-\(worker)", kinds: kinds, limit: 1 + worker % 3, leaseDuration: 60_000)
                        if batch.isEmpty { return mine }
                        mine += batch.map { ($0.id, $0.leaseOwner ?? "") }
                    }
                }
            }
            return try await group.reduce(into: [(String, String)]()) { $0 += $1 }
        }
        #expect(claims.count == 60, "every task claimed exactly once")
        #expect(Set(claims.map(\.0)) == all)
        // The database agrees: each task is running under the worker that claimed it, first fence.
        for task in try await queue.tasks(tenantID: "tnt_a", limit: 1000) {
            #expect(task.state == .running && task.fence == 1 && task.attempts == 1)
            #expect(claims.contains { $0.0 == task.id && $0.1 == task.leaseOwner })
        }
        // Nothing more to claim while the leases last.
        #expect(try await queue.claim(owner: "late", kinds: kinds, limit: 100, leaseDuration: 60_000).isEmpty)
        for database in databases { await database.close() }
        await t.cleanUp()
    }

    @Test(arguments: TestDatabaseKind.available)
    func expiredLeaseIsTakenOverAndTheLateWorkerIsFenced(_ kind: TestDatabaseKind) async throws {
        let t = try await TestDatabase.make(kind)
        let clock = MillisecondClock()
        let queue = TaskQueue(database: t.database, now: clock.function)
        let task = try await queue.enqueue(NewTask(kind: "test.echo", tenantID: "tnt_a")).task
        let a = try #require(try await claimOne(queue, owner: "a").flatMap(\.lease))
        #expect(a.fence == 1)
        #expect(try await claimOne(queue, owner: "b") == nil)
        clock.advance(20_000)
        let renewed = try await queue.heartbeat(a, leaseDuration: 30_000)
        #expect(renewed.expiresAt == clock.now + 30_000)
        clock.advance(29_999)
        #expect(try await claimOne(queue, owner: "b") == nil, "the renewed lease still holds")
        clock.advance(1)
        let taken = try #require(try await claimOne(queue, owner: "b"))
        let b = try #require(taken.lease)
        #expect(taken.id == task.id && b.fence == 2 && taken.attempts == 2)
        #expect(taken.lastError?.contains("the lease of a expired") == true)

        // The worker whose lease expired can no longer renew, complete, fail, release or write.
        let wrote = Flag()
        await #expect(throws: TaskQueueError.leaseLost("")) { try await queue.heartbeat(a, leaseDuration: 30_000) }
        await #expect(throws: TaskQueueError.leaseLost("")) {
            try await queue.complete(a, result: .string("late")) { _ in wrote.set() }
        }
        await #expect(throws: TaskQueueError.leaseLost("")) { try await queue.fail(a, error: "late", retryAt: clock.now) }
        await #expect(throws: TaskQueueError.leaseLost("")) { try await queue.release(a) }
        await #expect(throws: TaskQueueError.leaseLost("")) { try await queue.fenced(a) { _ in wrote.set() } }
        #expect(!wrote.isSet)

        try await queue.complete(b, result: .string("done by b"))
        await #expect(throws: TaskQueueError.leaseLost("")) { try await queue.complete(a, result: .string("late")) }
        let final = try #require(try await queue.task(id: task.id))
        #expect(final.state == .succeeded && final.result == .string("done by b") && final.leaseOwner == "b")
        await t.cleanUp()
    }

    @Test(arguments: TestDatabaseKind.available)
    func completionWritesCommitWithTheCompletionOrNotAtAll(_ kind: TestDatabaseKind) async throws {
        let t = try await TestDatabase.make(kind)
        let queue = TaskQueue(database: t.database)
        try await t.database.query("CREATE TABLE effects (task_id TEXT NOT NULL)")
        let task = try await queue.enqueue(NewTask(kind: "test.echo", tenantID: "tnt_a")).task
        let lease = try #require(try await claimOne(queue, owner: "a")?.lease)
        // The final writes fail: neither they nor the completion happen.
        await #expect(throws: TaskFailure.self) {
            try await queue.complete(lease, result: .string("x")) { db in
                try await db.query("INSERT INTO effects (task_id) VALUES ($1)", [.text(task.id)])
                throw TaskFailure.retryable("the final write failed")
            }
        }
        #expect(try await queue.task(id: task.id)?.state == .running)
        #expect(try await t.database.query("SELECT task_id FROM effects").isEmpty)
        try await queue.complete(lease, result: .string("x")) { db in
            try await db.query("INSERT INTO effects (task_id) VALUES ($1)", [.text(task.id)])
        }
        #expect(try await t.database.query("SELECT task_id FROM effects").count == 1)
        #expect(try await queue.task(id: task.id)?.state == .succeeded)
        await t.cleanUp()
    }

    @Test func backoffDoublesUpToTheCapWithJitter() {
        let policy = RetryPolicy(initialDelay: 2_000, maximumDelay: 300_000)
        #expect((1...10).map { policy.ceiling(afterAttempt: $0) } == [2_000, 4_000, 8_000, 16_000, 32_000, 64_000, 128_000, 256_000, 300_000, 300_000])
        #expect(policy.ceiling(afterAttempt: 1000) == 300_000)
        var random = SeededRandom(state: 42)
        var delays: [Int64] = []
        for attempt in 1...12 {
            for _ in 0..<50 {
                let delay = policy.delay(afterAttempt: attempt, using: &random)
                let ceiling = policy.ceiling(afterAttempt: attempt)
                #expect(delay >= ceiling / 2 && delay <= ceiling, "attempt \(attempt): \(delay)")
                delays.append(delay)
            }
        }
        // Jitter: fifty failures of the first attempt do not all retry at the same moment.
        #expect(Set(delays.prefix(50)).count > 40)
        // The same seed gives the same schedule.
        var again = SeededRandom(state: 42)
        #expect(policy.delay(afterAttempt: 1, using: &again) == delays[0])
    }

    @Test(arguments: TestDatabaseKind.available)
    func failuresRetryAfterTheBackoffThenDieAndCanBeRetried(_ kind: TestDatabaseKind) async throws {
        let t = try await TestDatabase.make(kind)
        let clock = MillisecondClock()
        let queue = TaskQueue(database: t.database, now: clock.function)
        let task = try await queue.enqueue(NewTask(kind: "test.echo", tenantID: "tnt_a", maxAttempts: 3)).task
        for attempt in 1...3 {
            let claimed = try #require(try await claimOne(queue, owner: "w"))
            #expect(claimed.attempts == attempt)
            let failed = try await queue.fail(try #require(claimed.lease), error: "boom \(attempt)", retryAt: clock.now + 5_000)
            if attempt < 3 {
                #expect(failed.state == .queued && failed.runAt == clock.now + 5_000 && failed.lastError == "boom \(attempt)")
                clock.advance(4_999)
                #expect(try await claimOne(queue, owner: "w") == nil, "not before the backoff")
                clock.advance(1)
            } else {
                #expect(failed.state == .dead && failed.lastError == "boom 3" && failed.finishedAt == clock.now)
            }
        }
        clock.advance(3_600_000)
        #expect(try await claimOne(queue, owner: "w") == nil, "dead tasks are not run again")
        // An operator re-queues it, in its own tenant only.
        await #expect(throws: TaskQueueError.notFound("")) { try await queue.retry(id: task.id, tenantID: "tnt_b") }
        let retried = try await queue.retry(id: task.id, tenantID: "tnt_a")
        #expect(retried.state == .queued && retried.attempts == 0 && retried.lastError == "boom 3")
        await #expect(throws: TaskQueueError.notDead("")) { try await queue.retry(id: task.id, tenantID: "tnt_a") }
        let again = try #require(try await claimOne(queue, owner: "w"))
        #expect(again.attempts == 1 && again.fence == 4)
        try await queue.complete(try #require(again.lease))

        // A permanent failure dies at once.
        let doomed = try await queue.enqueue(NewTask(kind: "test.echo", tenantID: "tnt_a", maxAttempts: 5)).task
        let lease = try #require(try await claimOne(queue, owner: "w")?.lease)
        #expect(lease.taskID == doomed.id)
        #expect(try await queue.fail(lease, error: "no such bucket", retryAt: clock.now, permanent: true).state == .dead)

        // A worker that vanishes during the last attempt: dead once its lease expires.
        let lost = try await queue.enqueue(NewTask(kind: "test.echo", tenantID: "tnt_a", maxAttempts: 1)).task
        #expect(try await claimOne(queue, owner: "gone", lease: 10_000)?.id == lost.id)
        clock.advance(10_000)
        #expect(try await claimOne(queue, owner: "w") == nil)
        let dead = try #require(try await queue.task(id: lost.id))
        #expect(dead.state == .dead && dead.lastError?.contains("the lease of gone expired during the last attempt") == true)
        #expect(try await queue.tasks(tenantID: "tnt_a", state: .dead).map(\.id).sorted() == [doomed.id, lost.id].sorted())
        await t.cleanUp()
    }

    @Test(arguments: TestDatabaseKind.available)
    func aRestartedProcessContinuesWhereTheOldOneStopped(_ kind: TestDatabaseKind) async throws {
        let t = try await TestDatabase.make(kind)
        let clock = MillisecondClock()
        // The first process enqueues three tasks, starts one and dies (no release, no completion).
        let first = try t.open()
        let before = TaskQueue(database: first, now: clock.function)
        var ids: [String] = []
        for index in 0..<3 {
            ids.append(try await before.enqueue(NewTask(kind: "test.echo", tenantID: "tnt_a", payload: .int(Int64(index)), runAt: clock.now + Int64(index))).task.id)
        }
        clock.advance(10)
        let started = try #require(try await claimOne(before, owner: "old", lease: 10_000))
        #expect(started.id == ids[0])
        await first.close()

        // The new process (a new connection, migrations already applied) finds all of it.
        let second = try t.open()
        #expect(try await ControlStore(database: second).migrate() == 0)
        let after = TaskQueue(database: second, now: clock.function)
        let waiting = try await after.claim(owner: "new", kinds: kinds, limit: 10, leaseDuration: 10_000)
        #expect(waiting.map(\.id) == [ids[1], ids[2]], "the unstarted tasks; the started one waits for its lease")
        clock.advance(10_000)
        let resumed = try #require(try await claimOne(after, owner: "new"))
        #expect(resumed.id == ids[0] && resumed.attempts == 2 && resumed.fence == 2)
        for task in waiting + [resumed] { try await after.complete(try #require(task.lease), result: task.payload) }
        let final = try await after.tasks(tenantID: "tnt_a")
        #expect(final.count == 3 && final.allSatisfy { $0.state == .succeeded })
        await second.close()
        await t.cleanUp()
    }

    @Test(arguments: TestDatabaseKind.available)
    func purgeExpiredDeletesOnlyWhatIsOld(_ kind: TestDatabaseKind) async throws {
        let t = try await TestDatabase.make(kind)
        let store = ControlStore(database: t.database)
        let clock = MillisecondClock()
        let queue = TaskQueue(database: t.database, now: clock.function)
        let now = clock.now / 1000
        let user = UserRecord(id: "usr_1", email: "a@example.com", name: "A", passwordHash: "x", createdAt: now)
        try await store.register(user: user, tenant: TenantRecord(id: "tnt_1", name: "a", personalUserID: "usr_1", createdAt: now), adminBindingID: "rb_1")
        let keys: [(String, Int64?, Int64?)] = [
            ("live", nil, nil), ("revoked-old", nil, now - 8 * 86_400), ("revoked-new", nil, now - 86_400),
            ("expired-old", now - 8 * 86_400, nil), ("expires-later", now + 100, nil),
        ]
        for (id, expires, revoked) in keys {
            try await store.insertKey(
                APIKeyRecord(id: id, userID: "usr_1", tenantID: "tnt_1", name: id, keyHash: "h", createdAt: now - 10 * 86_400, expiresAt: expires, revokedAt: revoked))
        }
        // (Recording a login forgets attempts older than a day before it: the old one goes in last.)
        try await store.recordLogin(email: "b@example.com", clientAddress: "x", succeeded: false, at: now)
        try await store.recordLogin(email: "a@example.com", clientAddress: "x", succeeded: false, at: now - 2 * 86_400)

        try await queue.enqueue(NewTask(kind: ControlTasks.purgeExpired, tenantID: TaskQueue.systemTenant))
        let claimed = try #require(try await queue.claim(owner: "w", kinds: [ControlTasks.purgeExpired], limit: 1, leaseDuration: 30_000).first)
        let handler = try #require(ControlTasks.handlers().first { $0.kind == ControlTasks.purgeExpired })
        let completion = try await handler.run(
            TaskContext(task: claimed, lease: try #require(claimed.lease), queue: queue, logger: TestDatabase.logger))
        #expect(completion.result["api_keys"] == .int(2))
        #expect(completion.result["login_attempts"] == .int(1))
        for (id, _, _) in keys {
            #expect((try await store.key(id: id) != nil) == !["revoked-old", "expired-old"].contains(id), "\(id)")
        }
        #expect(try await store.loginFailures(email: "b@example.com", since: 0).count == 1)
        await t.cleanUp()
    }
}

/// The runner over a real database: handlers by kind, retries, concurrency, graceful shutdown.
@Suite struct TaskRunnerTests {
    /// Runs `runner` in a ServiceGroup while `body` runs, then shuts it down gracefully.
    static func withRunner(_ runner: TaskRunner, _ body: () async throws -> Void) async throws {
        let group = ServiceGroup(services: [runner], logger: TestDatabase.logger)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            do {
                try await body()
            } catch {
                await group.triggerGracefulShutdown()
                throw error
            }
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
    }

    /// Waits (up to a minute: a liveness bound, not a timing assertion) until `condition` holds.
    static func eventually(_ what: String, _ condition: () async throws -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(60)
        while try await !condition() {
            guard ContinuousClock.now < deadline else {
                Issue.record("never happened: \(what)")
                return
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    static func configuration(concurrency: Int = 3) -> TaskRunnerConfiguration {
        var configuration = TaskRunnerConfiguration()
        configuration.concurrency = concurrency
        configuration.pollInterval = .milliseconds(20)
        configuration.retry = RetryPolicy(initialDelay: 20, maximumDelay: 100)
        configuration.shutdownGrace = .milliseconds(100)
        return configuration
    }

    @Test(arguments: TestDatabaseKind.available)
    func runsRetriesAndRecordsOutcomes(_ kind: TestDatabaseKind) async throws {
        let t = try await TestDatabase.make(kind)
        let queue = TaskQueue(database: t.database)
        let maximum = Shared((now: 0, peak: 0))
        let flaky = TaskHandler(kind: "test.flaky") { context in
            maximum.withLock { $0.now += 1; $0.peak = max($0.peak, $0.now) }
            defer { maximum.withLock { $0.now -= 1 } }
            try await Task.sleep(for: .milliseconds(5))
            if context.attempt == 1 { throw TaskFailure.retryable("first attempts fail") }
            return TaskCompletion(result: .object([("attempt", .int(Int64(context.attempt))), ("fence", .int(context.fence))]))
        }
        let broken = TaskHandler(kind: "test.broken") { _ in throw TaskFailure.permanent("bad payload") }
        let runner = TaskRunner(
            queue: queue, handlers: [flaky, broken], configuration: Self.configuration(), logger: TestDatabase.logger,
            random: SeededRandom(state: 7))
        try await Self.withRunner(runner) {
            for index in 0..<12 { try await queue.enqueue(NewTask(kind: "test.flaky", tenantID: "tnt_a", payload: .int(Int64(index)))) }
            try await queue.enqueue(NewTask(kind: "test.broken", tenantID: "tnt_a"))
            try await queue.enqueue(NewTask(kind: "test.unhandled", tenantID: "tnt_a"))
            try await Self.eventually("all flaky tasks succeed") {
                try await queue.tasks(tenantID: "tnt_a", state: .succeeded).count == 12
            }
            try await Self.eventually("the broken task dies") { try await queue.tasks(tenantID: "tnt_a", state: .dead).count == 1 }
        }
        for task in try await queue.tasks(tenantID: "tnt_a", kind: "test.flaky") {
            #expect(task.attempts == 2 && task.result?["attempt"] == .int(2) && task.lastError == "first attempts fail")
        }
        let dead = try #require(try await queue.tasks(tenantID: "tnt_a", state: .dead).first)
        #expect(dead.kind == "test.broken" && dead.attempts == 1 && dead.lastError == "bad payload")
        // A kind without a handler here is left for a process that has one.
        #expect(try await queue.tasks(tenantID: "tnt_a", kind: "test.unhandled").first?.state == .queued)
        #expect(maximum.withLock { $0.peak } <= 3, "never more than the concurrency at once")
        await t.cleanUp()
    }

    /// With an hour between polls, only the doorbell can run these: a task enqueued in a committed
    /// transaction of this process (as a route's is), one enqueued on its own, and one a handler's
    /// completion enqueued. A task enqueued in a transaction that rolled back rings nothing and is not there.
    @Test(arguments: TestDatabaseKind.available)
    func aTaskEnqueuedInThisProcessRunsWithoutWaitingForThePoll(_ kind: TestDatabaseKind) async throws {
        let t = try await TestDatabase.make(kind)
        let queue = TaskQueue(database: t.database)
        let first = TaskHandler(kind: "test.first") { _ in
            TaskCompletion(result: .string("first")) { db in
                try await queue.enqueue(NewTask(kind: "test.second", tenantID: "tnt_a"), in: db)
            }
        }
        let second = TaskHandler(kind: "test.second") { _ in TaskCompletion(result: .string("second")) }
        var configuration = Self.configuration()
        configuration.pollInterval = .seconds(3600)
        let runner = TaskRunner(queue: queue, handlers: [first, second], configuration: configuration, logger: TestDatabase.logger)
        try await Self.withRunner(runner) {
            // The runner's first look finds nothing; it then waits on the doorbell.
            try await Self.eventually("the runner waits") { await queue.doorbell.waiting(TaskQueue.doorbellKey) == 1 }
            struct Abort: Error {}
            await #expect(throws: Abort.self) {
                try await queue.ringingAfter {
                    try await t.database.transaction { db in
                        try await queue.enqueue(NewTask(kind: "test.second", tenantID: "tnt_b"), in: db)
                        throw Abort()
                    }
                }
            }
            try await queue.ringingAfter {
                try await t.database.transaction { db in try await queue.enqueue(NewTask(kind: "test.first", tenantID: "tnt_a"), in: db) }
            }
            try await Self.eventually("the first and the one its completion enqueued succeed") {
                try await queue.tasks(tenantID: "tnt_a", state: .succeeded).count == 2
            }
            try await queue.enqueue(NewTask(kind: "test.second", tenantID: "tnt_c"))
            try await Self.eventually("one enqueued on its own succeeds") { try await queue.tasks(tenantID: "tnt_c", state: .succeeded).count == 1 }
        }
        #expect(try await queue.tasks(tenantID: "tnt_b").isEmpty, "rolled back with its transaction")
        await t.cleanUp()
    }

    @Test(arguments: TestDatabaseKind.available)
    func gracefulShutdownReleasesUnfinishedTasks(_ kind: TestDatabaseKind) async throws {
        let t = try await TestDatabase.make(kind)
        let queue = TaskQueue(database: t.database)
        let stuck = TaskHandler(kind: "test.stuck") { _ in
            try await Task.sleep(for: .seconds(3600))
            return TaskCompletion()
        }
        let runner = TaskRunner(queue: queue, handlers: [stuck], configuration: Self.configuration(), logger: TestDatabase.logger)
        let task = try await queue.enqueue(NewTask(kind: "test.stuck", tenantID: "tnt_a")).task
        try await Self.withRunner(runner) {
            try await Self.eventually("the task runs") { try await queue.task(id: task.id)?.state == .running }
        }
        // Released, not failed: queued again at once, the attempt not counted.
        let released = try #require(try await queue.task(id: task.id))
        #expect(released.state == .queued && released.attempts == 0 && released.fence == 1 && released.lastError == nil)
        #expect(try await queue.claim(owner: "next", kinds: ["test.stuck"], limit: 1, leaseDuration: 1000).first?.id == task.id)
        await t.cleanUp()
    }

    @Test(arguments: TestDatabaseKind.available)
    func aHandlerThatLosesItsLeaseIsCancelledAndCannotComplete(_ kind: TestDatabaseKind) async throws {
        let t = try await TestDatabase.make(kind)
        let queue = TaskQueue(database: t.database)
        let cancelled = Flag()
        let slow = TaskHandler(kind: "test.slow") { context in
            do {
                try await Task.sleep(for: .seconds(3600))
            } catch {
                cancelled.set()
                throw error
            }
            return TaskCompletion(result: .string("too late"))
        }
        var configuration = Self.configuration()
        configuration.leaseDuration = .seconds(2)
        configuration.heartbeatInterval = .milliseconds(100)
        let runner = TaskRunner(queue: queue, handlers: [slow], configuration: configuration, logger: TestDatabase.logger)
        let task = try await queue.enqueue(NewTask(kind: "test.slow", tenantID: "tnt_a")).task
        try await Self.withRunner(runner) {
            try await Self.eventually("the task runs") { try await queue.task(id: task.id)?.state == .running }
            // Another worker steals the task (as after an expiry) and holds it for an hour: the next heartbeat
            // finds the fence gone. (Without a lease of its own the thief's claim would expire with the old
            // lease, and on a loaded machine the runner could claim the task back before noticing.)
            _ = try await t.database.query(
                "UPDATE tasks SET fence = fence + 1, lease_owner = 'thief', lease_expires_at = lease_expires_at + 3600000 WHERE id = $1",
                [.text(task.id)])
            try await Self.eventually("the handler is cancelled") { cancelled.isSet }
        }
        let final = try #require(try await queue.task(id: task.id))
        #expect(final.state == .running && final.leaseOwner == "thief" && final.result == nil)
        await t.cleanUp()
    }

    @Test(arguments: TestDatabaseKind.available)
    func schedulesEnqueueOncePerPeriodAcrossRunners(_ kind: TestDatabaseKind) async throws {
        let t = try await TestDatabase.make(kind)
        let clock = MillisecondClock()
        let queue = TaskQueue(database: t.database, now: clock.function)
        let runs = Shared(0)
        let tick = TaskHandler(kind: "test.tick") { _ in
            runs.withLock { $0 += 1 }
            return TaskCompletion()
        }
        var configuration = Self.configuration()
        configuration.schedules = [TaskSchedule(kind: "test.tick", every: .seconds(60))]
        let runners = (0..<3).map { index in
            var configuration = configuration
            configuration.owner = "runner-\(index)"
            return TaskRunner(queue: queue, handlers: [tick], configuration: configuration, logger: TestDatabase.logger)
        }
        let group = ServiceGroup(services: runners, logger: TestDatabase.logger)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            try await Self.eventually("the first period's task succeeded") {
                try await queue.tasks(tenantID: TaskQueue.systemTenant, state: .succeeded, kind: "test.tick").count == 1
            }
            clock.advance(60_000)
            try await Self.eventually("the second period's task succeeded") {
                try await queue.tasks(tenantID: TaskQueue.systemTenant, state: .succeeded, kind: "test.tick").count == 2
            }
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        let ticks = try await queue.tasks(tenantID: TaskQueue.systemTenant, kind: "test.tick")
        #expect(ticks.count == 2, "three runners, two periods: two tasks")
        #expect(runs.withLock { $0 } == 2)
        await t.cleanUp()
    }
}
