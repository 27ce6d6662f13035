public import ServiceContract
public import Database
import Foundation
import SQLite

/// The control plane's own task kinds, and the test-only kind the integration tests enable.
public enum ControlTasks {
    /// `auth.purge-expired`: deletes API keys revoked or expired more than `retention_seconds` ago
    /// (default 7 days), login attempts older than a day, password-reset tokens that expired or
    /// were used more than a day ago, and Idempotency-Key answers older than a day. Enqueued hourly by every runner (once per hour overall).
    public static let purgeExpired = "auth.purge-expired"
    /// `tasks.purge-finished`: deletes tasks that succeeded more than 7 days ago and dead ones that
    /// died more than 30 days ago. Enqueued hourly.
    public static let purgeFinished = "tasks.purge-finished"
    /// `test.sleep-and-record`, registered only with `CLOUD_TEST_TASKS=1`: see ``sleepAndRecord``.
    public static let sleepAndRecord = "test.sleep-and-record"

    /// The handlers of the built-in kinds.
    public static func handlers() -> [TaskHandler] {
        [
            TaskHandler(kind: Self.purgeExpired) { context in
                let now = context.queue.now() / 1000
                var retention: Int64 = 7 * 86_400
                if case .int(let seconds) = context.task.payload["retention_seconds"], seconds >= 0 { retention = seconds }
                let cutoff = now - retention
                // Deleting is idempotent; the fence keeps a worker that lost its lease from writing.
                let counts = try await context.fenced { db -> [Int] in
                    let keys = try await db.query(
                        """
                        DELETE FROM api_keys WHERE (revoked_at IS NOT NULL AND revoked_at < $1)
                        OR (expires_at IS NOT NULL AND expires_at < $1) RETURNING id
                        """, [.integer(cutoff)]
                    ).count
                    let attempts = try await db.query(
                        "DELETE FROM login_attempts WHERE attempted_at < $1 RETURNING email", [.integer(now - 86_400)]
                    ).count
                    let tokens = try await db.query(
                        "DELETE FROM password_reset_tokens WHERE expires_at < $1 OR used_at < $1 RETURNING token_hash",
                        [.integer(now - 86_400)]
                    ).count
                    let idempotency = try await db.query(
                        "DELETE FROM idempotency_keys WHERE created_at < $1 RETURNING tenant_id", [.integer((now - 86_400) * 1000)]
                    ).count
                    return [keys, attempts, tokens, idempotency]
                }
                return TaskCompletion(
                    result: .object([
                        ("api_keys", .int(Int64(counts[0]))), ("login_attempts", .int(Int64(counts[1]))),
                        ("password_reset_tokens", .int(Int64(counts[2]))), ("idempotency_keys", .int(Int64(counts[3]))),
                    ]))
            },
            TaskHandler(kind: Self.purgeFinished) { context in
                let now = context.queue.now()
                let deleted = try await context.queue.purge(succeededBefore: now - 7 * 86_400_000, deadBefore: now - 30 * 86_400_000)
                return TaskCompletion(result: .object([("tasks", .int(Int64(deleted)))]))
            },
        ]
    }

    /// Hourly housekeeping.
    public static let schedules = [
        TaskSchedule(kind: Self.purgeExpired, every: .seconds(3600)),
        TaskSchedule(kind: Self.purgeFinished, every: .seconds(3600)),
    ]

    /// Creates the table `test.sleep-and-record` writes to (only when test tasks are enabled).
    public static func prepareTestTasks(_ database: any SQLDatabase) async throws {
        try await database.query(
            """
            CREATE TABLE IF NOT EXISTS test_task_runs (
                task_id TEXT NOT NULL, owner TEXT NOT NULL, fence BIGINT NOT NULL, attempt INTEGER NOT NULL,
                started_at BIGINT NOT NULL, finished_at BIGINT, outcome TEXT
            )
            """)
    }

    /// The test-only kind: records its start (task, owner, fence, time in ms) in `test_task_runs`
    /// under the fence, sleeps `sleep_ms` of the payload, fails its first `fail_attempts` attempts, and
    /// records its end in the completion's transaction. A run that has a start but no end was
    /// interrupted (its process died or its lease was lost).
    public static func sleepAndRecordHandler() -> TaskHandler {
        TaskHandler(kind: Self.sleepAndRecord) { context in
            let lease = context.lease
            let attempt = Int64(context.attempt)
            let started = context.queue.now()
            try await context.fenced { db in
                try await db.query(
                    "INSERT INTO test_task_runs (task_id, owner, fence, attempt, started_at) VALUES ($1, $2, $3, $4, $5)",
                    [.text(lease.taskID), .text(lease.owner), .integer(lease.fence), .integer(attempt), .integer(started)])
            }
            var sleep: Int64 = 0
            if case .int(let milliseconds) = context.task.payload["sleep_ms"] { sleep = max(0, min(milliseconds, 600_000)) }
            try await Task.sleep(for: .milliseconds(sleep))
            let queue = context.queue
            if case .int(let failures) = context.task.payload["fail_attempts"], attempt <= failures {
                try await context.fenced { db in
                    try await db.query(
                        "UPDATE test_task_runs SET finished_at = $3, outcome = 'failed' WHERE task_id = $1 AND fence = $2",
                        [.text(lease.taskID), .integer(lease.fence), .integer(queue.now())])
                }
                throw TaskFailure.retryable("planned failure of attempt \(attempt)")
            }
            return TaskCompletion(
                result: .object([("owner", .string(lease.owner)), ("fence", .int(lease.fence))]),
                commit: { db in
                    try await db.query(
                        "UPDATE test_task_runs SET finished_at = $3, outcome = 'succeeded' WHERE task_id = $1 AND fence = $2",
                        [.text(lease.taskID), .integer(lease.fence), .integer(queue.now())])
                })
        }
    }
}
