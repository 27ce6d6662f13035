public import Database
import Foundation
import Synchronization
import SQLite

/// Where a task is in its life.
///
/// `queued` → `running` (claimed under a lease) → `succeeded`; a failure goes back to `queued` with a
/// later `run_at` (backoff), or to `dead` after the last attempt (or at once for a permanent failure).
/// A lease that expires (its worker died) makes the task claimable again. An operator re-queues a
/// `dead` task with ``TaskQueue/retry(id:tenantID:)``.
public enum TaskState: String, Sendable, CaseIterable {
    /// Waiting for its `run_at` time, then for a worker.
    case queued
    /// Leased by a worker, which runs it.
    case running
    /// Done; `result` holds what the handler returned.
    case succeeded
    /// Failed its last attempt (or permanently); `last_error` says why. Not run again until retried.
    case dead
}

/// A task as stored. Times are unix milliseconds.
public struct TaskRecord: Sendable, Equatable {
    public var id: String
    /// The tenant the task works for (``TaskQueue/systemTenant`` for the platform's own housekeeping).
    public var tenantID: String
    /// Selects the handler, `service.operation` (`auth.purge-expired`).
    public var kind: String
    public var payload: JSONValue
    /// Unique per tenant and kind when set: enqueuing it again returns this task.
    public var idempotencyKey: String?
    public var state: TaskState
    /// Attempts started so far (claims, minus leases released at a graceful shutdown).
    public var attempts: Int
    public var maxAttempts: Int
    /// Not claimed before this time.
    public var runAt: Int64
    /// The fencing token: raised by every claim. Only the holder of the current fence may renew the
    /// lease, complete or fail the task.
    public var fence: Int64
    /// The worker that holds (or last held) the lease.
    public var leaseOwner: String?
    /// The lease ends at this time unless renewed; nil when the task is not running.
    public var leaseExpiresAt: Int64?
    public var result: JSONValue?
    public var lastError: String?
    public var createdAt: Int64
    public var updatedAt: Int64
    /// When the latest attempt started.
    public var startedAt: Int64?
    /// When it succeeded or died.
    public var finishedAt: Int64?

    /// The lease of a running task, as its worker holds it.
    public var lease: TaskLease? {
        guard self.state == .running, let owner = self.leaseOwner, let expiresAt = self.leaseExpiresAt else { return nil }
        return TaskLease(taskID: self.id, owner: owner, fence: self.fence, expiresAt: expiresAt)
    }
}

/// A worker's claim on a running task: valid while `fence` is the task's current fence.
public struct TaskLease: Sendable, Equatable {
    public var taskID: String
    public var owner: String
    /// The fencing token handed out by the claim (see ``TaskRecord/fence``).
    public var fence: Int64
    /// Unix milliseconds; other workers may take the task over after it.
    public var expiresAt: Int64

    public init(taskID: String, owner: String, fence: Int64, expiresAt: Int64) {
        self.taskID = taskID
        self.owner = owner
        self.fence = fence
        self.expiresAt = expiresAt
    }
}

/// What to enqueue.
public struct NewTask: Sendable {
    public var kind: String
    public var tenantID: String
    public var payload: JSONValue
    /// Enqueuing the same key again (same tenant and kind) returns the first task instead of a new one.
    public var idempotencyKey: String?
    /// Unix milliseconds; nil: now.
    public var runAt: Int64?
    /// Attempts before the task is dead (1…100).
    public var maxAttempts: Int

    public init(
        kind: String, tenantID: String, payload: JSONValue = .object([]), idempotencyKey: String? = nil, runAt: Int64? = nil,
        maxAttempts: Int = 5
    ) {
        self.kind = kind
        self.tenantID = tenantID
        self.payload = payload
        self.idempotencyKey = idempotencyKey
        self.runAt = runAt
        self.maxAttempts = maxAttempts
    }
}

/// Why a queue operation failed.
public struct TaskQueueError: Error, Sendable, Equatable, CustomStringConvertible {
    private enum Code: Sendable, Equatable { case leaseLost, notFound, notDead, invalid, unavailable }
    private let code: Code
    /// What happened, for logs and API messages.
    public let detail: String

    /// The caller's fence is no longer the task's: its lease expired and another worker took the task
    /// over, or the task finished. Nothing was written.
    public static func leaseLost(_ detail: String) -> Self { Self(code: .leaseLost, detail: detail) }
    /// No such task (in this tenant).
    public static func notFound(_ detail: String) -> Self { Self(code: .notFound, detail: detail) }
    /// Only dead tasks can be retried.
    public static func notDead(_ detail: String) -> Self { Self(code: .notDead, detail: detail) }
    /// A malformed request (kind, key, attempts).
    public static func invalid(_ detail: String) -> Self { Self(code: .invalid, detail: detail) }
    /// The database failed or did not answer.
    public static func unavailable(_ detail: String) -> Self { Self(code: .unavailable, detail: detail) }

    public var isLeaseLost: Bool { self.code == .leaseLost }
    public var isNotFound: Bool { self.code == .notFound }
    public var isNotDead: Bool { self.code == .notDead }
    public var isInvalid: Bool { self.code == .invalid }
    public var isUnavailable: Bool { self.code == .unavailable }

    public var description: String { self.detail }

    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.code == rhs.code }
}

/// The durable task queue in the control plane's database (table `tasks`, migration 3).
///
/// Guarantees, on SQLite and on PostgreSQL, with any number of processes sharing the database:
/// - **Idempotent enqueue**: one task per (tenant, kind, idempotency key), however many callers race.
/// - **Exclusive leases**: a claim picks due tasks and leases them to one worker in one statement
///   (`FOR UPDATE SKIP LOCKED` on PostgreSQL, the database write lock on SQLite), so a task is held by
///   at most one worker at a time; the lease lasts until `expiresAt` and the worker renews it.
/// - **At-least-once execution**: a task whose worker dies is taken over once its lease expires;
///   nothing is lost across restarts because all state is in the database.
/// - **Fencing**: every claim raises the task's `fence`; renewing, completing and failing name the
///   fence and change nothing when it is no longer current, so a worker whose lease expired cannot
///   complete or overwrite the task. ``complete(_:result:commit:)`` runs the handler's final writes in
///   the same transaction as the completion, which makes database effects exactly-once.
///
/// Times are unix milliseconds from the injected clock; the workers of one deployment must agree on
/// the time to well within a lease.
public final class TaskQueue: Sendable {
    /// The tenant of the platform's own housekeeping tasks (not a tenant row; no API caller sees them).
    public static let systemTenant = "system"
    /// The largest payload or result, serialized (64 KiB): tasks carry references, not data.
    public static let maximumPayloadBytes = 64 * 1024

    public let database: any SQLDatabase
    /// Unix milliseconds.
    public let now: @Sendable () -> Int64
    /// Rung (key ``doorbellKey``) when a task was enqueued in this process and its transaction
    /// committed: this process's runners claim it at once instead of at their next poll.
    public let doorbell = Wakeups()
    public static let doorbellKey = "tasks"

    /// Set while ``ringingAfter(_:)`` runs its body: ``enqueue(_:in:)`` marks it.
    @TaskLocal static var enqueueMark: EnqueueMark?

    final class EnqueueMark: Sendable {
        private let marked = Mutex(false)
        func mark() { self.marked.withLock { $0 = true } }
        var isMarked: Bool { self.marked.withLock { $0 } }
    }

    /// Runs `body` (a transaction, say) and, when it returns and enqueued a task through
    /// ``enqueue(_:in:)`` meanwhile, rings ``doorbell``: the task exists once the transaction has
    /// committed, which it has when `body` returns.
    public func ringingAfter<T: Sendable>(_ body: @Sendable () async throws -> T) async throws -> T {
        let mark = EnqueueMark()
        let value = try await Self.$enqueueMark.withValue(mark) { try await body() }
        if mark.isMarked { await self.doorbell.signal(Self.doorbellKey) }
        return value
    }

    /// - Parameter now: The clock in unix milliseconds (default the wall clock).
    public init(database: any SQLDatabase, now: (@Sendable () -> Int64)? = nil) {
        self.database = database
        self.now = now ?? { Int64((Date().timeIntervalSince1970 * 1000).rounded(.down)) }
    }

    /// The columns ``record(_:)`` reads, in order.
    public static let columns = """
        id, tenant_id, kind, payload, idempotency_key, state, attempts, max_attempts, run_at, fence, lease_owner, \
        lease_expires_at, result, last_error, created_at, updated_at, started_at, finished_at
        """

    public static func record(_ row: SQLRow) -> TaskRecord {
        TaskRecord(
            id: row.text(0), tenantID: row.text(1), kind: row.text(2), payload: JSONValue.parse(Array(row.text(3).utf8)) ?? .null,
            idempotencyKey: row.optionalText(4), state: TaskState(rawValue: row.text(5)) ?? .dead, attempts: Int(row.int(6)),
            maxAttempts: Int(row.int(7)), runAt: row.int(8), fence: row.int(9), leaseOwner: row.optionalText(10),
            leaseExpiresAt: row.optionalInt(11), result: row.optionalText(12).flatMap { JSONValue.parse(Array($0.utf8)) },
            lastError: row.optionalText(13), createdAt: row.int(14), updatedAt: row.int(15), startedAt: row.optionalInt(16),
            finishedAt: row.optionalInt(17))
    }

    /// Kinds are `service.operation`: lowercase letters, digits, `.`, `-`, `_`, 1…100 characters.
    public static func isValidKind(_ kind: String) -> Bool {
        !kind.isEmpty && kind.utf8.count <= 100
            && kind.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "." || $0 == "-" || $0 == "_" }
    }

    // MARK: - Producers

    /// Enqueues a task, or returns the one already enqueued with the same idempotency key.
    /// - Returns: The task, and whether this call created it.
    /// - Throws: ``TaskQueueError`` (`invalid`, `unavailable`).
    @discardableResult
    public func enqueue(_ new: NewTask) async throws -> (task: TaskRecord, created: Bool) {
        let enqueued = try await self.mapped { try await self.enqueue(new) { sql, parameters in try await self.database.query(sql, parameters) } }
        if enqueued.created { await self.doorbell.signal(Self.doorbellKey) }
        return enqueued
    }

    /// Enqueues a task inside the caller's transaction: the task exists exactly when the
    /// transaction commits (the core move of an asynchronous resource: insert the row as `pending`
    /// and enqueue its provisioning, together or not at all).
    /// - Returns: The task, and whether this call created it.
    /// - Throws: ``TaskQueueError/invalid(_:)``; database errors as the session throws them (they
    ///   roll the caller's transaction back).
    @discardableResult
    public func enqueue(_ new: NewTask, in session: any SQLSession) async throws -> (task: TaskRecord, created: Bool) {
        let enqueued = try await self.enqueue(new) { sql, parameters in try await session.query(sql, parameters) }
        if enqueued.created { Self.enqueueMark?.mark() }
        return enqueued
    }

    private func enqueue(
        _ new: NewTask, run: (String, [SQLValue]) async throws -> [SQLRow]
    ) async throws -> (task: TaskRecord, created: Bool) {
        guard Self.isValidKind(new.kind) else { throw TaskQueueError.invalid("task kind '\(new.kind)' is not of the form service.operation") }
        guard (1...100).contains(new.maxAttempts) else { throw TaskQueueError.invalid("max attempts must be 1 to 100") }
        if let key = new.idempotencyKey, key.isEmpty || key.utf8.count > 200 {
            throw TaskQueueError.invalid("an idempotency key must be 1 to 200 bytes")
        }
        let payload = new.payload.serialized()
        guard payload.utf8.count <= Self.maximumPayloadBytes else { throw TaskQueueError.invalid("the payload is larger than 64 KiB") }
        let now = self.now()
        let id = SecureRandom.identifier(prefix: "task_")
        // ON CONFLICT DO NOTHING waits for a concurrent insert of the same key to commit, then
        // inserts nothing; the SELECT that follows (a new statement, a new snapshot under READ
        // COMMITTED) sees its row.
        let inserted = try await run(
            """
            INSERT INTO tasks (id, tenant_id, kind, payload, idempotency_key, state, attempts, max_attempts, run_at, fence,
            created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 'queued', 0, $6, $7, 0, $8, $8)
            ON CONFLICT DO NOTHING RETURNING \(Self.columns)
            """,
            [
                .text(id), .text(new.tenantID), .text(new.kind), .text(payload), SQLValue(new.idempotencyKey),
                .integer(Int64(new.maxAttempts)), .integer(new.runAt ?? now), .integer(now),
            ])
        if let row = inserted.first { return (Self.record(row), true) }
        guard let key = new.idempotencyKey,
            let existing = try await run(
                "SELECT \(Self.columns) FROM tasks WHERE tenant_id = $1 AND kind = $2 AND idempotency_key = $3",
                [.text(new.tenantID), .text(new.kind), .text(key)]
            ).first
        else { throw TaskQueueError.unavailable("the task could not be inserted") }
        return (Self.record(existing), false)
    }

    // MARK: - Workers

    /// Leases up to `limit` due tasks of `kinds` to `owner` for `leaseDuration` milliseconds: tasks
    /// whose `run_at` has come, and running tasks whose lease expired (their worker is gone). Each
    /// claim counts an attempt and raises the fence. Expired tasks that had no attempt left become
    /// `dead` instead.
    /// - Returns: The claimed tasks; ``TaskRecord/lease`` is the lease to present.
    /// - Throws: ``TaskQueueError/unavailable(_:)``.
    public func claim(owner: String, kinds: [String], limit: Int, leaseDuration: Int64) async throws -> [TaskRecord] {
        guard !kinds.isEmpty, limit > 0 else { return [] }
        let now = self.now()
        let lock = self.database.dialect == .postgres ? "FOR UPDATE SKIP LOCKED" : ""
        let kindList = kinds.indices.map { "$\($0 + 4)" }.joined(separator: ", ")
        return try await self.mapped {
            try await self.database.transaction { db in
                // Tasks whose worker vanished during their last attempt: dead, not run again.
                try await db.query(
                    """
                    UPDATE tasks SET state = 'dead', finished_at = $1, updated_at = $1, lease_expires_at = NULL,
                    last_error = 'the lease of ' || COALESCE(lease_owner, '?') || ' expired during the last attempt (the worker stopped or lost the database)'
                    WHERE id IN (SELECT id FROM tasks WHERE state = 'running' AND lease_expires_at <= $1 AND attempts >= max_attempts
                    LIMIT 100 \(lock))
                    """, [.integer(now)])
                let rows = try await db.query(
                    """
                    UPDATE tasks SET state = 'running', attempts = attempts + 1, fence = fence + 1, lease_owner = $2,
                    lease_expires_at = $3, started_at = $1, updated_at = $1,
                    last_error = CASE WHEN state = 'running' THEN 'the lease of ' || COALESCE(lease_owner, '?') || ' expired (the worker stopped or lost the database)' ELSE last_error END
                    WHERE id IN (SELECT id FROM tasks WHERE kind IN (\(kindList)) AND
                    ((state = 'queued' AND run_at <= $1) OR (state = 'running' AND lease_expires_at <= $1 AND attempts < max_attempts))
                    ORDER BY run_at, id LIMIT \(limit) \(lock))
                    RETURNING \(Self.columns)
                    """, [.integer(now), .text(owner), .integer(now + leaseDuration)] + kinds.map { .text($0) })
                return rows.map(Self.record).sorted { ($0.runAt, $0.id) < ($1.runAt, $1.id) }
            }
        }
    }

    /// Extends the lease to `leaseDuration` milliseconds from now (the worker's heartbeat).
    /// - Returns: The renewed lease.
    /// - Throws: ``TaskQueueError/leaseLost(_:)`` when the fence is no longer current; `unavailable`.
    public func heartbeat(_ lease: TaskLease, leaseDuration: Int64) async throws -> TaskLease {
        let now = self.now()
        let rows = try await self.mapped {
            try await self.database.query(
                """
                UPDATE tasks SET lease_expires_at = $3, updated_at = $4 WHERE id = $1 AND fence = $2 AND state = 'running'
                RETURNING lease_expires_at
                """, [.text(lease.taskID), .integer(lease.fence), .integer(now + leaseDuration), .integer(now)])
        }
        guard let row = rows.first else { throw Self.lost(lease) }
        var renewed = lease
        renewed.expiresAt = row.int(0)
        return renewed
    }

    /// Marks the task succeeded with `result` and, in the same transaction, runs `commit` (the
    /// handler's final writes): both happen, or neither does.
    ///
    /// A worker whose lease expired may still complete while nobody has taken the task over; once
    /// another worker claimed it (a new fence), this refuses.
    /// - Throws: ``TaskQueueError/leaseLost(_:)`` (nothing written), `invalid` (result too large),
    ///   `unavailable`, or what `commit` throws (nothing written).
    @discardableResult
    public func complete(
        _ lease: TaskLease, result: JSONValue = .null, commit: (@Sendable (any SQLSession) async throws -> Void)? = nil
    ) async throws -> TaskRecord {
        let text = result.serialized()
        guard text.utf8.count <= Self.maximumPayloadBytes else { throw TaskQueueError.invalid("the result is larger than 64 KiB") }
        let now = self.now()
        return try await self.ringingAfter { try await self.mapped {
            try await self.database.transaction { db in
                guard
                    let row = try await db.query(
                        """
                        UPDATE tasks SET state = 'succeeded', result = $3, lease_expires_at = NULL, finished_at = $4, updated_at = $4
                        WHERE id = $1 AND fence = $2 AND state = 'running' RETURNING \(Self.columns)
                        """, [.text(lease.taskID), .integer(lease.fence), .text(text), .integer(now)]
                    ).first
                else { throw Self.lost(lease) }
                try await commit?(db)
                return Self.record(row)
            }
        } }
    }

    /// Records a failed attempt: the task is queued again at `retryAt` (unix milliseconds), or is
    /// `dead` when it had no attempt left or `permanent` is set.
    /// - Throws: ``TaskQueueError/leaseLost(_:)``, `unavailable`.
    @discardableResult
    public func fail(_ lease: TaskLease, error: String, retryAt: Int64, permanent: Bool = false) async throws -> TaskRecord {
        let now = self.now()
        let message = String(error.prefix(2000))
        let rows = try await self.mapped {
            try await self.database.query(
                """
                UPDATE tasks SET
                state = CASE WHEN $3 = 1 OR attempts >= max_attempts THEN 'dead' ELSE 'queued' END,
                run_at = CASE WHEN $3 = 1 OR attempts >= max_attempts THEN run_at ELSE $4 END,
                finished_at = CASE WHEN $3 = 1 OR attempts >= max_attempts THEN $5 ELSE NULL END,
                last_error = $6, lease_expires_at = NULL, updated_at = $5
                WHERE id = $1 AND fence = $2 AND state = 'running' RETURNING \(Self.columns)
                """,
                [
                    .text(lease.taskID), .integer(lease.fence), .integer(permanent ? 1 : 0), .integer(max(retryAt, now)), .integer(now),
                    .text(message),
                ])
        }
        guard let row = rows.first else { throw Self.lost(lease) }
        return Self.record(row)
    }

    /// Gives a running task back without counting the attempt (a worker shutting down gracefully):
    /// it is claimable again at once.
    /// - Throws: ``TaskQueueError/leaseLost(_:)``, `unavailable`.
    public func release(_ lease: TaskLease) async throws {
        let now = self.now()
        let rows = try await self.mapped {
            try await self.database.query(
                """
                UPDATE tasks SET state = 'queued', attempts = attempts - 1, lease_expires_at = NULL, updated_at = $3
                WHERE id = $1 AND fence = $2 AND state = 'running' RETURNING id
                """, [.text(lease.taskID), .integer(lease.fence), .integer(now)])
        }
        if rows.isEmpty { throw Self.lost(lease) }
    }

    /// Runs `body` in a transaction that first checks, and on PostgreSQL locks, the lease: the
    /// writes commit only while `lease` is current, and no other worker can claim the task until they
    /// did. For a handler's intermediate writes (its final ones belong in ``complete(_:result:commit:)``).
    /// - Throws: ``TaskQueueError/leaseLost(_:)`` (nothing written), `unavailable`, or what `body` throws.
    @discardableResult
    public func fenced<T: Sendable>(_ lease: TaskLease, _ body: @escaping @Sendable (any SQLSession) async throws -> T) async throws -> T {
        let lock = self.database.dialect == .postgres ? " FOR UPDATE" : ""
        return try await self.ringingAfter { try await self.mapped {
            try await self.database.transaction { db in
                let held = try await db.query(
                    "SELECT id FROM tasks WHERE id = $1 AND fence = $2 AND state = 'running'\(lock)",
                    [.text(lease.taskID), .integer(lease.fence)])
                guard !held.isEmpty else { throw Self.lost(lease) }
                return try await body(db)
            }
        } }
    }

    // MARK: - Operators

    /// One task; with `tenantID`, only when it belongs to that tenant.
    public func task(id: String, tenantID: String? = nil) async throws -> TaskRecord? {
        try await self.mapped {
            if let tenantID {
                return try await self.database.query(
                    "SELECT \(Self.columns) FROM tasks WHERE id = $1 AND tenant_id = $2", [.text(id), .text(tenantID)]
                ).first.map(Self.record)
            }
            return try await self.database.query("SELECT \(Self.columns) FROM tasks WHERE id = $1", [.text(id)]).first.map(Self.record)
        }
    }

    /// A tenant's tasks, newest first, optionally only those in `state` or of `kind`, and only those
    /// older than `before` (a task's `created_at` and `id`: the last of the previous page).
    public func tasks(
        tenantID: String, state: TaskState? = nil, kind: String? = nil, limit: Int = 100, before: (createdAt: Int64, id: String)? = nil
    ) async throws -> [TaskRecord] {
        var conditions = ["tenant_id = $1"]
        var parameters: [SQLValue] = [.text(tenantID)]
        if let before {
            parameters.append(.integer(before.createdAt))
            parameters.append(.text(before.id))
            conditions.append("(created_at < $\(parameters.count - 1) OR (created_at = $\(parameters.count - 1) AND id < $\(parameters.count)))")
        }
        if let state {
            parameters.append(.text(state.rawValue))
            conditions.append("state = $\(parameters.count)")
        }
        if let kind {
            parameters.append(.text(kind))
            conditions.append("kind = $\(parameters.count)")
        }
        let sql = """
            SELECT \(Self.columns) FROM tasks WHERE \(conditions.joined(separator: " AND "))
            ORDER BY created_at DESC, id DESC LIMIT \(max(1, min(limit, 1001)))
            """
        return try await self.mapped { try await self.database.query(sql, parameters).map(Self.record) }
    }

    /// Queues a dead task again, now, with a fresh set of attempts (its last error stays until the next
    /// attempt ends).
    /// - Throws: ``TaskQueueError/notFound(_:)`` (no such task in the tenant), `notDead`, `unavailable`.
    @discardableResult
    public func retry(id: String, tenantID: String) async throws -> TaskRecord {
        let now = self.now()
        let rows = try await self.mapped {
            try await self.database.query(
                """
                UPDATE tasks SET state = 'queued', attempts = 0, run_at = $3, finished_at = NULL, updated_at = $3
                WHERE id = $1 AND tenant_id = $2 AND state = 'dead' RETURNING \(Self.columns)
                """, [.text(id), .text(tenantID), .integer(now)])
        }
        if let row = rows.first { return Self.record(row) }
        guard let task = try await self.task(id: id, tenantID: tenantID) else { throw TaskQueueError.notFound("no task \(id) in this tenant") }
        throw TaskQueueError.notDead("the task \(id) is \(task.state.rawValue); only dead tasks can be retried")
    }

    /// Deletes tasks that succeeded before `succeededBefore` and dead ones that died before
    /// `deadBefore` (unix milliseconds); returns how many.
    public func purge(succeededBefore: Int64, deadBefore: Int64) async throws -> Int {
        try await self.mapped {
            try await self.database.query(
                """
                DELETE FROM tasks WHERE (state = 'succeeded' AND finished_at < $1) OR (state = 'dead' AND finished_at < $2)
                RETURNING id
                """, [.integer(succeededBefore), .integer(deadBefore)]
            ).count
        }
    }

    // MARK: -

    static func lost(_ lease: TaskLease) -> TaskQueueError {
        .leaseLost("the lease \(lease.fence) of \(lease.owner) on \(lease.taskID) is no longer current")
    }

    private func mapped<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as DatabaseError {
            throw TaskQueueError.unavailable(error.message)
        }
    }
}

/// How long to wait before retrying a failed attempt: exponential backoff with jitter.
public struct RetryPolicy: Sendable, Equatable {
    /// The ceiling of the first delay, in milliseconds (2 s).
    public var initialDelay: Int64 = 2_000 {
        willSet { precondition(newValue > 0, "the initial delay must be positive") }
    }
    /// The ceiling doubles with each failed attempt up to this, in milliseconds (5 min).
    public var maximumDelay: Int64 = 300_000 {
        willSet { precondition(newValue > 0, "the maximum delay must be positive") }
    }

    public init() {}

    public init(initialDelay: Int64, maximumDelay: Int64) {
        self.initialDelay = initialDelay
        self.maximumDelay = maximumDelay
    }

    /// The ceiling after `attempt` (1-based) failed: `min(maximumDelay, initialDelay · 2^(attempt−1))`.
    public func ceiling(afterAttempt attempt: Int) -> Int64 {
        let doublings = max(0, min(attempt - 1, 40))
        let (scaled, overflow) = self.initialDelay.multipliedReportingOverflow(by: Int64(1) << doublings)
        return overflow ? self.maximumDelay : min(self.maximumDelay, scaled)
    }

    /// The delay after `attempt` (1-based) failed, in milliseconds: a random value in the upper half
    /// of the ceiling ("equal jitter"), so retries of tasks that failed together spread out while each
    /// still waits at least half the ceiling.
    public func delay(afterAttempt attempt: Int, using random: inout some RandomNumberGenerator) -> Int64 {
        let ceiling = self.ceiling(afterAttempt: attempt)
        let half = ceiling / 2
        return half + Int64.random(in: 0...(ceiling - half), using: &random)
    }
}
