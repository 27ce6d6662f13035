import Database
import Logging
import ServiceContract
import ServiceLifecycle
import SQLite

/// Fires due schedules: every second, in one transaction, it picks the schedules whose `next_run_at`
/// has come, records a run for each due time and enqueues the run's task, and moves `next_run_at` on.
///
/// Exactly once across processes: the pick locks the schedules' rows (`FOR UPDATE SKIP LOCKED` on
/// PostgreSQL; SQLite has one writer), a run is unique per (tenant, schedule, time), and the run and
/// its task commit with the schedule's new `next_run_at`. A process that dies mid-tick commits
/// nothing, and the next tick of any process fires the same times.
struct CronScheduler: Service {
    let environment: ServiceEnvironment

    /// How late a run may start and still count as on time; later ones follow the schedule's missed policy.
    static let grace: Int64 = 60_000
    static let tick: Duration = .seconds(1)
    static let runKind = "cron.run"

    func run() async throws {
        self.environment.logger.info("cron scheduler started")
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                _ = try await Self.fire(self.environment, now: self.environment.clock.unixMilliseconds())
            } catch {
                self.environment.logger.warning("cron tick failed", metadata: ["error": "\(error)"])
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: Self.tick) }
        }
    }

    /// One tick: fires what is due at `now`.
    /// - Returns: The runs recorded (fired and skipped).
    static func fire(_ environment: ServiceEnvironment, now: Int64) async throws -> Int {
        let lock = environment.database.dialect == .postgres ? " FOR UPDATE SKIP LOCKED" : ""
        return try await environment.database.transaction { db in
            let due = try await db.query(
                """
                SELECT \(CronSchema.scheduleColumns) FROM cron_schedules WHERE paused = 0 AND next_run_at IS NOT NULL AND next_run_at <= $1
                ORDER BY next_run_at LIMIT 100\(lock)
                """, [.integer(now)]
            ).map(CronSchema.schedule)
            var recorded = 0
            for schedule in due {
                guard let slot = schedule.nextRunAt,
                    let parsed = try? CronSchedule(schedule.expression, timeZone: schedule.timeZone, anchor: schedule.anchor)
                else { continue }
                var next = parsed.next(after: slot)
                if now - slot <= Self.grace {
                    if try await Self.record(db, environment, schedule, slot: slot, now: now, status: .pending, note: nil) { recorded += 1 }
                } else {
                    // Missed: every due time up to now, counted; the latest is run once or recorded as skipped.
                    var latest = slot
                    var missed = 1
                    while let candidate = parsed.next(after: latest), candidate <= now, missed < 1_000_000 {
                        latest = candidate
                        missed += 1
                    }
                    let note = "\(missed) run\(missed == 1 ? "" : "s") missed (the latest at \(Timestamp.rfc3339(milliseconds: latest)))"
                    let status: RunStatus = schedule.missed == .runOnce ? .pending : .skipped
                    if try await Self.record(db, environment, schedule, slot: latest, now: now, status: status, note: note) { recorded += 1 }
                    environment.logger.warning(
                        "cron runs missed", metadata: ["tenant-id": "\(schedule.tenantID)", "schedule": "\(schedule.name)", "missed": "\(missed)"])
                    next = parsed.next(after: max(latest, now))
                }
                try await db.query(
                    "UPDATE cron_schedules SET next_run_at = $3 WHERE tenant_id = $1 AND name = $2",
                    [.text(schedule.tenantID), .text(schedule.name), SQLValue(next)])
            }
            return recorded
        }
    }

    /// Records the run of `slot` (once: a second record of the same time does nothing) and, unless it
    /// is skipped, enqueues its task in the same transaction.
    /// - Returns: Whether this call recorded it.
    static func record(
        _ db: any SQLSession, _ environment: ServiceEnvironment, _ schedule: ScheduleRecord, slot: Int64, now: Int64, status: RunStatus,
        note: String?
    ) async throws -> Bool {
        let id = SecureRandom.identifier(prefix: "run_")
        let inserted = try await db.query(
            """
            INSERT INTO cron_runs (\(CronSchema.runColumns)) VALUES ($1, $2, $3, $4, $5, $6, 0, NULL, \(status == .skipped ? "$5" : "NULL"), NULL, NULL, NULL, $7)
            ON CONFLICT (tenant_id, schedule, scheduled_for) DO NOTHING RETURNING id
            """,
            [.text(id), .text(schedule.tenantID), .text(schedule.name), .integer(slot), .integer(now), .text(status.rawValue), SQLValue(note)])
        guard !inserted.isEmpty else { return false }
        if status != .skipped {
            try await environment.tasks.enqueue(
                NewTask(
                    kind: Self.runKind, tenantID: schedule.tenantID, payload: .object([("run_id", .string(id))]), idempotencyKey: id,
                    maxAttempts: 3), in: db)
        }
        return true
    }
}
