import Database
import SQLite

/// What a schedule does when it fires.
enum CronTarget: String, Sendable, CaseIterable {
    /// An HTTP request to `destination` (a URL).
    case http
    /// A message to the tenant's queue named `destination`.
    case queue
    /// A publish to the tenant's topic named `destination`.
    case topic
}

/// What a schedule does about runs it missed while no control plane ran (or while it was late by
/// more than ``CronScheduler/grace``).
enum MissedPolicy: String, Sendable, CaseIterable {
    /// Records one `skipped` run and goes on from now.
    case skip
    /// Runs once for the latest missed time, then goes on from now.
    case runOnce = "run_once"
}

/// A schedule.
struct ScheduleRecord: Sendable, Equatable {
    var tenantID: String
    var name: String
    var expression: String
    var timeZone: String
    var target: CronTarget
    var destination: String
    /// HTTP targets: `GET` or `POST`.
    var method: String
    /// The HTTP body, or the message sent or published.
    var body: String
    var missed: MissedPolicy
    var paused: Bool
    /// Rates count from it (unix milliseconds).
    var anchor: Int64
    /// The next time it fires; nil while paused.
    var nextRunAt: Int64?
    var version: Int64
    var createdAt: Int64
    var updatedAt: Int64
}

/// Where a run is.
enum RunStatus: String, Sendable, CaseIterable {
    case pending, running, succeeded, failed
    /// A missed time recorded under the `skip` policy.
    case skipped
}

/// One run of a schedule, for one scheduled time.
struct RunRecord: Sendable, Equatable {
    var id: String
    var tenantID: String
    var schedule: String
    var scheduledFor: Int64
    var firedAt: Int64
    var status: RunStatus
    var attempts: Int64
    var startedAt: Int64?
    var finishedAt: Int64?
    var durationMilliseconds: Int64?
    /// HTTP: the status code; queue and topic: nil.
    var responseStatus: Int64?
    /// HTTP: the start of the response body (1 KiB at most); queue and topic: the message id.
    var response: String?
    var error: String?
}

/// The service's tables (migration 1 of `cron`). Times are unix milliseconds.
enum CronSchema {
    static let migrations = [
        Migration(version: 1, name: "schedules and runs", sql: """
            CREATE TABLE cron_schedules (
                tenant_id TEXT NOT NULL,
                name TEXT NOT NULL,
                expression TEXT NOT NULL,
                time_zone TEXT NOT NULL,
                target TEXT NOT NULL,
                destination TEXT NOT NULL,
                method TEXT NOT NULL,
                body TEXT NOT NULL,
                missed TEXT NOT NULL,
                paused BIGINT NOT NULL,
                anchor BIGINT NOT NULL,
                next_run_at BIGINT,
                version BIGINT NOT NULL,
                created_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL,
                PRIMARY KEY (tenant_id, name)
            );
            CREATE INDEX cron_schedules_due ON cron_schedules (next_run_at);
            CREATE TABLE cron_runs (
                id TEXT PRIMARY KEY,
                tenant_id TEXT NOT NULL,
                schedule TEXT NOT NULL,
                scheduled_for BIGINT NOT NULL,
                fired_at BIGINT NOT NULL,
                status TEXT NOT NULL,
                attempts BIGINT NOT NULL,
                started_at BIGINT,
                finished_at BIGINT,
                duration_ms BIGINT,
                response_status BIGINT,
                response TEXT,
                error TEXT,
                UNIQUE (tenant_id, schedule, scheduled_for)
            );
            """)
    ]

    static let scheduleColumns = """
        tenant_id, name, expression, time_zone, target, destination, method, body, missed, paused, anchor, next_run_at, version, \
        created_at, updated_at
        """

    static func schedule(_ row: SQLRow) -> ScheduleRecord {
        ScheduleRecord(
            tenantID: row.text(0), name: row.text(1), expression: row.text(2), timeZone: row.text(3),
            target: CronTarget(rawValue: row.text(4)) ?? .http, destination: row.text(5), method: row.text(6), body: row.text(7),
            missed: MissedPolicy(rawValue: row.text(8)) ?? .skip, paused: row.int(9) != 0, anchor: row.int(10), nextRunAt: row.optionalInt(11),
            version: row.int(12), createdAt: row.int(13), updatedAt: row.int(14))
    }

    static let runColumns = """
        id, tenant_id, schedule, scheduled_for, fired_at, status, attempts, started_at, finished_at, duration_ms, response_status, \
        response, error
        """

    static func run(_ row: SQLRow) -> RunRecord {
        RunRecord(
            id: row.text(0), tenantID: row.text(1), schedule: row.text(2), scheduledFor: row.int(3), firedAt: row.int(4),
            status: RunStatus(rawValue: row.text(5)) ?? .pending, attempts: row.int(6), startedAt: row.optionalInt(7),
            finishedAt: row.optionalInt(8), durationMilliseconds: row.optionalInt(9), responseStatus: row.optionalInt(10),
            response: row.optionalText(11), error: row.optionalText(12))
    }
}
