public import Database
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Logging
import Notify
import Queues
public import ServiceContract
public import ServiceLifecycle
import SQLite

/// Cron: schedules (5-field cron expressions in a time zone, or `rate(…)`) that call an HTTP
/// endpoint, send a message to a queue or publish to a topic; a run history with status, duration
/// and response; a policy for runs missed while no control plane ran; pause and resume.
///
/// Each due time fires exactly once across all control-plane processes on one database
/// (``CronScheduler``). A run is a task: queue and topic targets act in the task's completing
/// transaction (exactly once); an HTTP call is made at least once (a process killed during the call
/// makes another attempt, with the same `X-Cloud-Run-Id`).
public struct CronService: CloudService {
    public init() {}

    public var name: String { "cron" }
    public var summary: String {
        "Schedules (cron expressions with time zones, rate(…)) that call HTTP endpoints, send to queues or publish to topics; run history; missed-run policy."
    }

    static let quota = QuotaResource(rawValue: "schedules")
    static let httpTimeout: Duration = .seconds(30)

    public var permissions: [PermissionSpec] {
        [
            PermissionSpec("schedule:read", "See schedules and their runs.", grantedTo: [.developer, .viewer]),
            PermissionSpec("schedule:create", "Create schedules.", grantedTo: [.developer]),
            PermissionSpec("schedule:update", "Change, pause and resume schedules.", grantedTo: [.developer]),
            PermissionSpec("schedule:delete", "Delete schedules.", grantedTo: [.developer]),
        ]
    }

    public var migrations: [Migration] { CronSchema.migrations }

    public var quotas: [QuotaSpec] {
        [
            QuotaSpec(Self.quota, defaultLimit: 100, description: "Cron schedules.") { tenantID, db in
                try await db.query("SELECT COUNT(*) FROM cron_schedules WHERE tenant_id = $1", [.text(tenantID)]).first?.int(0) ?? 0
            }
        ]
    }

    public var tasks: [TaskHandler] { [TaskHandler(kind: CronScheduler.runKind) { context in try await self.execute(context) }] }

    public func services(_ environment: ServiceEnvironment) -> [any Service] { [CronScheduler(environment: environment)] }

    // MARK: - Shapes

    static let scheduleShape = ResponseShape<ScheduleRecord>("Schedule") {
        $0.string("name") { $0.name }
        $0.string("schedule", "A 5-field cron expression or rate(N unit).") { $0.expression }
        $0.string("timezone", "The IANA time zone of a cron expression.") { $0.timeZone }
        $0.enumeration("target", CronTarget.allCases.map(\.rawValue)) { $0.target.rawValue }
        $0.string("destination", "The URL, queue or topic.") { $0.destination }
        $0.string("method", "HTTP targets: GET or POST.") { $0.method }
        $0.string("body", "The HTTP body, or the message sent or published.") { $0.body }
        $0.enumeration("missed", MissedPolicy.allCases.map(\.rawValue), "Runs missed while no control plane ran: skip or run_once.") { $0.missed.rawValue }
        $0.boolean("paused") { $0.paused }
        $0.optionalTime("next_run_at", "Null while paused.") { $0.nextRunAt }
        $0.integer("version", "The ETag.") { $0.version }
        $0.time("created_at") { $0.createdAt }
        $0.time("updated_at") { $0.updatedAt }
    }

    static let scheduleList = ListShape("ScheduleList", itemsKey: "schedules", item: Self.scheduleShape)

    static let runShape = ResponseShape<RunRecord>("ScheduleRun") {
        $0.string("id") { $0.id }
        $0.string("schedule") { $0.schedule }
        $0.time("scheduled_for", "The due time this run is for.") { $0.scheduledFor }
        $0.time("fired_at") { $0.firedAt }
        $0.enumeration("status", RunStatus.allCases.map(\.rawValue)) { $0.status.rawValue }
        $0.integer("attempts") { $0.attempts }
        $0.optionalTime("started_at") { $0.startedAt }
        $0.optionalTime("finished_at") { $0.finishedAt }
        $0.optionalInteger("duration_ms") { $0.durationMilliseconds }
        $0.optionalInteger("response_status", "HTTP targets: the status code.") { $0.responseStatus }
        $0.optionalString("response", "HTTP: the start of the body (1 KiB); queue and topic: the message id.") { $0.response }
        $0.optionalString("error", "Why it failed, or which runs were missed.") { $0.error }
    }

    static let runList = ListShape("ScheduleRunList", itemsKey: "runs", item: Self.runShape)

    // MARK: - Routes

    static let fields: [BodySchema.Field] = [
        .string("schedule", required: false, maxLength: 200, "A cron expression (5 fields or @daily…) or rate(N minutes|hours|days)."),
        .string("timezone", required: false, maxLength: 64, "An IANA time zone for cron expressions (default UTC)."),
        .string("target", required: false, maxLength: 8, "http, queue or topic."),
        .string("destination", required: false, maxLength: 2048, "The http(s) URL, or the queue's or topic's name."),
        .string("method", required: false, maxLength: 8, "HTTP targets: POST (default) or GET."),
        .string("body", required: false, maxLength: 65_536, "The HTTP body, or the message (default empty for HTTP, required otherwise)."),
        .string("missed", required: false, maxLength: 16, "skip (default) or run_once."),
    ]

    public var routes: [Route] {
        let read = Access.permission(Permission("schedule:read")!)
        let update = Access.permission(Permission("schedule:update")!)
        var create = Self.fields
        create.insert(.string("name", maxLength: 64, "1 to 64 of letters, digits, - and _."), at: 0)
        for index in create.indices where ["schedule", "target", "destination"].contains(create[index].name) { create[index].required = true }
        return [
            Route(
                method: "POST", path: "/cron/schedules", operationID: "createSchedule", summary: "Create a schedule.",
                access: .permission(Permission("schedule:create")!), body: BodySchema(create), success: 201,
                response: .shape(Self.scheduleShape.component), errors: [(409, "schedule_exists"), (409, "destination_not_found")]
            ) { context in try await self.create(context) },
            Route(
                method: "GET", path: "/cron/schedules", operationID: "listSchedules", summary: "The tenant's schedules by name.", access: read,
                success: 200, response: .shape(Self.scheduleList.component), paginated: true
            ) { context in try await self.list(context) },
            Route(
                method: "GET", path: "/cron/schedules/{name}", operationID: "getSchedule", summary: "One schedule; its ETag.", access: read,
                success: 200, response: .shape(Self.scheduleShape.component)
            ) { context in try await self.get(context) },
            Route(
                method: "PATCH", path: "/cron/schedules/{name}", operationID: "updateSchedule",
                summary: "Change a schedule (a new expression or time zone starts from now).", access: update, body: BodySchema(Self.fields),
                success: 200, response: .shape(Self.scheduleShape.component), errors: [(409, "destination_not_found")], conditional: true
            ) { context in try await self.update(context) },
            Route(
                method: "DELETE", path: "/cron/schedules/{name}", operationID: "deleteSchedule", summary: "Delete a schedule and its run history.",
                access: .permission(Permission("schedule:delete")!), success: 204, response: .empty, conditional: true
            ) { context in try await self.delete(context) },
            Route(
                method: "POST", path: "/cron/schedules/{name}/pause", operationID: "pauseSchedule", summary: "Stop firing until resumed.",
                access: update, success: 200, response: .shape(Self.scheduleShape.component)
            ) { context in try await self.setPaused(context, true) },
            Route(
                method: "POST", path: "/cron/schedules/{name}/resume", operationID: "resumeSchedule",
                summary: "Fire again from now on (times that passed while paused are not run).", access: update, success: 200,
                response: .shape(Self.scheduleShape.component)
            ) { context in try await self.setPaused(context, false) },
            Route(
                method: "GET", path: "/cron/schedules/{name}/runs", operationID: "listScheduleRuns",
                summary: "A schedule's runs, newest first: status, duration, response.", access: read, success: 200,
                response: .shape(Self.runList.component), paginated: true
            ) { context in try await self.runs(context) },
        ]
    }

    // MARK: - Handlers

    static func checkName(_ name: String) throws(APIError) {
        guard name.isName(maxLength: 64) else { throw APIError.invalidRequest("\"\(name.prefix(80))\" is not a schedule name: 1 to 64 of letters, digits, - and _") }
    }

    /// Checks a schedule's fields and, in `db`, that its queue or topic exists.
    static func check(_ record: ScheduleRecord, _ db: any SQLSession) async throws {
        do {
            _ = try CronSchedule(record.expression, timeZone: record.timeZone, anchor: record.anchor)
        } catch {
            throw APIError(status: 400, code: "invalid_schedule", message: error.description)
        }
        switch record.target {
        case .http:
            guard record.destination.isHTTPURL else { throw APIError.invalidRequest("\"\(record.destination.prefix(200))\" is not an http or https URL") }
            guard record.method == "GET" || record.method == "POST" else { throw APIError.invalidRequest("method must be GET or POST") }
        case .queue:
            guard !record.body.isEmpty else { throw APIError.invalidRequest("a queue target needs a body: the message it sends") }
            guard try await QueueDelivery.exists(db, tenantID: record.tenantID, queue: record.destination) else {
                throw APIError.conflict("destination_not_found", "this tenant has no queue \(record.destination)")
            }
        case .topic:
            guard !record.body.isEmpty else { throw APIError.invalidRequest("a topic target needs a body: the message it publishes") }
            guard try await TopicPublishing.exists(db, tenantID: record.tenantID, topic: record.destination) else {
                throw APIError.conflict("destination_not_found", "this tenant has no topic \(record.destination)")
            }
        }
    }

    /// Applies the body's fields.
    static func apply(_ body: RequestBody, to record: inout ScheduleRecord) throws(APIError) {
        if let value = body.string("schedule") { record.expression = value }
        if let value = body.string("timezone") { record.timeZone = value }
        if let value = body.string("target") {
            guard let target = CronTarget(rawValue: value) else { throw APIError.invalidRequest("target must be http, queue or topic") }
            record.target = target
        }
        if let value = body.string("destination") { record.destination = value }
        if let value = body.string("method") { record.method = value.uppercased() }
        if let value = body.string("body") { record.body = value }
        if let value = body.string("missed") {
            guard let policy = MissedPolicy(rawValue: value) else { throw APIError.invalidRequest("missed must be skip or run_once") }
            record.missed = policy
        }
    }

    /// The next firing after `now`, for a schedule that is not paused.
    static func nextRun(_ record: ScheduleRecord, after now: Int64) -> Int64? {
        guard !record.paused else { return nil }
        return (try? CronSchedule(record.expression, timeZone: record.timeZone, anchor: record.anchor))?.next(after: now)
    }

    func create(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let name = context.body.string("name") ?? ""
        try Self.checkName(name)
        let now = context.environment.clock.unixMilliseconds()
        var record = ScheduleRecord(
            tenantID: caller.tenantID, name: name, expression: "", timeZone: "UTC", target: .http, destination: "", method: "POST", body: "",
            missed: .skip, paused: false, anchor: now, nextRunAt: nil, version: 1, createdAt: now, updatedAt: now)
        try Self.apply(context.body, to: &record)
        record.nextRunAt = Self.nextRun(record, after: now)
        let schedule = record
        let quotas = context.environment.quotas
        return try await context.transaction { db in
            if try await !db.query(
                "SELECT name FROM cron_schedules WHERE tenant_id = $1 AND name = $2", [.text(caller.tenantID), .text(name)]
            ).isEmpty {
                throw APIError.conflict("schedule_exists", "a schedule named \(name) exists")
            }
            try await Self.check(schedule, db)
            try await quotas.reserve(Self.quota, tenantID: caller.tenantID, in: db)
            try await Self.insert(schedule, db)
            return APIResponse.json(201, Self.scheduleShape.json(schedule)).tagged(version: 1)
        }
    }

    static func insert(_ s: ScheduleRecord, _ db: any SQLSession) async throws {
        try await db.query(
            "INSERT INTO cron_schedules (\(CronSchema.scheduleColumns)) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
            Self.values(s))
    }

    static func values(_ s: ScheduleRecord) -> [SQLValue] {
        [
            .text(s.tenantID), .text(s.name), .text(s.expression), .text(s.timeZone), .text(s.target.rawValue), .text(s.destination), .text(s.method),
            .text(s.body), .text(s.missed.rawValue), .integer(s.paused ? 1 : 0), .integer(s.anchor), SQLValue(s.nextRunAt), .integer(s.version),
            .integer(s.createdAt), .integer(s.updatedAt),
        ]
    }

    private func existing(_ context: RouteContext, _ db: any SQLSession) async throws -> ScheduleRecord {
        let caller = try context.authenticated
        let name = context.parameter("name")
        let lock = context.environment.database.dialect == .postgres ? " FOR UPDATE" : ""
        guard
            let row = try await db.query(
                "SELECT \(CronSchema.scheduleColumns) FROM cron_schedules WHERE tenant_id = $1 AND name = $2\(lock)",
                [.text(caller.tenantID), .text(name)]
            ).first
        else { throw APIError.notFound("this tenant has no schedule \(name)") }
        return CronSchema.schedule(row)
    }

    /// Writes a changed schedule (its row is locked, or SQLite's one writer holds the database).
    static func save(_ s: ScheduleRecord, _ db: any SQLSession) async throws {
        try await db.query(
            """
            UPDATE cron_schedules SET expression = $3, time_zone = $4, target = $5, destination = $6, method = $7, body = $8, missed = $9,
            paused = $10, anchor = $11, next_run_at = $12, version = $13, created_at = $14, updated_at = $15 WHERE tenant_id = $1 AND name = $2
            """, Self.values(s))
    }

    func list(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let page = try context.page()
        let rows = try await context.environment.database.query(
            "SELECT \(CronSchema.scheduleColumns) FROM cron_schedules WHERE tenant_id = $1 AND name > $2 ORDER BY name LIMIT \(page.fetchLimit)",
            [.text(caller.tenantID), .text(page.after ?? "")])
        let (items, next) = page.finish(rows.map(CronSchema.schedule), key: \.name)
        return .json(200, Self.scheduleList.json(items, nextToken: next))
    }

    func get(_ context: RouteContext) async throws -> APIResponse {
        let record = try await context.environment.database.transaction { db in try await self.existing(context, db) }
        return APIResponse.json(200, Self.scheduleShape.json(record)).tagged(version: record.version)
    }

    func update(_ context: RouteContext) async throws -> APIResponse {
        let now = context.environment.clock.unixMilliseconds()
        return try await context.transaction { db in
            var record = try await self.existing(context, db)
            try context.requireMatch(version: record.version)
            let before = record
            try Self.apply(context.body, to: &record)
            if record.expression != before.expression || record.timeZone != before.timeZone {
                record.anchor = now
                record.nextRunAt = Self.nextRun(record, after: now)
            }
            try await Self.check(record, db)
            record.version += 1
            record.updatedAt = now
            try await Self.save(record, db)
            return APIResponse.json(200, Self.scheduleShape.json(record)).tagged(version: record.version)
        }
    }

    func delete(_ context: RouteContext) async throws -> APIResponse {
        try await context.environment.database.transaction { db in
            let record = try await self.existing(context, db)
            try context.requireMatch(version: record.version)
            let key: [SQLValue] = [.text(record.tenantID), .text(record.name)]
            try await db.query("DELETE FROM cron_runs WHERE tenant_id = $1 AND schedule = $2", key)
            try await db.query("DELETE FROM cron_schedules WHERE tenant_id = $1 AND name = $2", key)
        }
        return .noContent
    }

    func setPaused(_ context: RouteContext, _ paused: Bool) async throws -> APIResponse {
        let now = context.environment.clock.unixMilliseconds()
        return try await context.transaction { db in
            var record = try await self.existing(context, db)
            guard record.paused != paused else { return APIResponse.json(200, Self.scheduleShape.json(record)).tagged(version: record.version) }
            record.paused = paused
            record.nextRunAt = Self.nextRun(record, after: now)
            record.version += 1
            record.updatedAt = now
            try await Self.save(record, db)
            return APIResponse.json(200, Self.scheduleShape.json(record)).tagged(version: record.version)
        }
    }

    func runs(_ context: RouteContext) async throws -> APIResponse {
        let page = try context.page()
        let before = page.after.map { Int64($0) ?? -1 } ?? Int64.max
        guard before >= 0 else { throw APIError.invalidRequest("next_token is not a token this API handed out; start again without it") }
        let rows = try await context.environment.database.transaction { db in
            let record = try await self.existing(context, db)
            return try await db.query(
                """
                SELECT \(CronSchema.runColumns) FROM cron_runs WHERE tenant_id = $1 AND schedule = $2 AND scheduled_for < $3
                ORDER BY scheduled_for DESC LIMIT \(page.fetchLimit)
                """, [.text(record.tenantID), .text(record.name), .integer(before)])
        }
        let (items, next) = page.finish(rows.map(CronSchema.run)) { String($0.scheduledFor) }
        return .json(200, Self.runList.json(items, nextToken: next))
    }

    // MARK: - Runs

    func execute(_ context: TaskContext) async throws -> TaskCompletion {
        guard case .string(let runID)? = context.task.payload["run_id"] else { throw TaskFailure.permanent("the task has no run_id") }
        let database = context.queue.database
        guard let runRow = try await database.query("SELECT \(CronSchema.runColumns) FROM cron_runs WHERE id = $1", [.text(runID)]).first else {
            return TaskCompletion(result: .object([("skipped", .string("the run is gone"))]))
        }
        let run = CronSchema.run(runRow)
        guard
            let row = try await database.query(
                "SELECT \(CronSchema.scheduleColumns) FROM cron_schedules WHERE tenant_id = $1 AND name = $2", [.text(run.tenantID), .text(run.schedule)]
            ).first
        else { return TaskCompletion(result: .object([("skipped", .string("the schedule is gone"))])) }
        let schedule = CronSchema.schedule(row)
        let attempt = Int64(context.attempt)
        let started = context.queue.now()
        try await context.fenced { db in
            try await db.query(
                "UPDATE cron_runs SET status = 'running', attempts = $2, started_at = $3 WHERE id = $1", [.text(runID), .integer(attempt), .integer(started)])
        }
        let last = attempt >= Int64(context.task.maxAttempts)
        switch schedule.target {
        case .queue, .topic:
            let tasks = context.queue
            return TaskCompletion(result: .object([("run_id", .string(runID))])) { db in
                let now = tasks.now()
                do {
                    let id: String
                    if schedule.target == .queue {
                        id = try await QueueDelivery.send(
                            db, tenantID: schedule.tenantID, queue: schedule.destination, body: schedule.body,
                            attributes: [("schedule", schedule.name), ("run_id", runID)], now: now)
                    } else {
                        id = try await TopicPublishing.publish(
                            db, tasks: tasks, tenantID: schedule.tenantID, topic: schedule.destination, message: schedule.body,
                            attributes: [("schedule", schedule.name), ("run_id", runID)], now: now
                        ).messageID
                    }
                    try await Self.finish(db, runID, .succeeded, started: started, now: now, status: nil, response: id, error: nil)
                } catch let error as QueuesError {
                    try await Self.finish(db, runID, .failed, started: started, now: now, status: nil, response: nil, error: error.description)
                } catch let error as NotifyError {
                    try await Self.finish(db, runID, .failed, started: started, now: now, status: nil, response: nil, error: error.description)
                }
            }
        case .http:
            var status: Int?
            var text: String?
            var problem: String?
            do {
                (status, text) = try await Self.call(schedule, runID: runID, scheduledFor: run.scheduledFor)
                if let status, !(200..<300).contains(status) { problem = "the endpoint answered \(status)" }
            } catch {
                problem = "no answer: \(error)"
            }
            let now = context.queue.now()
            let answered = status
            let excerpt = text
            if problem == nil || last {
                let outcome: RunStatus = problem == nil ? .succeeded : .failed
                let message = problem
                return TaskCompletion(result: .object([("status", .string(outcome.rawValue))])) { db in
                    try await Self.finish(db, runID, outcome, started: started, now: now, status: answered, response: excerpt, error: message)
                }
            }
            let message = problem ?? ""
            try await context.fenced { db in
                try await db.query(
                    "UPDATE cron_runs SET response_status = $2, error = $3 WHERE id = $1", [.text(runID), SQLValue(answered.map(Int64.init)), .text(message)])
            }
            throw TaskFailure.retryable(message)
        }
    }

    static func finish(
        _ db: any SQLSession, _ id: String, _ outcome: RunStatus, started: Int64, now: Int64, status: Int?, response: String?, error: String?
    ) async throws {
        try await db.query(
            """
            UPDATE cron_runs SET status = $2, finished_at = $3, duration_ms = $4, response_status = $5, response = $6, error = $7 WHERE id = $1
            """,
            [
                .text(id), .text(outcome.rawValue), .integer(now), .integer(max(0, now - started)), SQLValue(status.map(Int64.init)), SQLValue(response),
                SQLValue(error),
            ])
    }

    /// Calls an HTTP target: the status and the first KiB of the body.
    static func call(_ schedule: ScheduleRecord, runID: String, scheduledFor: Int64) async throws -> (Int, String) {
        guard let url = URL(string: schedule.destination) else { throw APIError.invalidRequest("not a URL") }
        var request = URLRequest(url: url, timeoutInterval: Double(Self.httpTimeout.components.seconds))
        request.httpMethod = schedule.method
        request.setValue("TheCloud-Cron/1", forHTTPHeaderField: "User-Agent")
        request.setValue(schedule.name, forHTTPHeaderField: "X-Cloud-Schedule")
        request.setValue(runID, forHTTPHeaderField: "X-Cloud-Run-Id")
        request.setValue(Timestamp.rfc3339(milliseconds: scheduledFor), forHTTPHeaderField: "X-Cloud-Scheduled-For")
        if schedule.method == "POST" {
            request.httpBody = Data(schedule.body.utf8)
            request.setValue("application/octet-stream", forHTTPHeaderField: "Content-Type")
        }
        let (data, response) = try await URLSession.shared.data(for: request)
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data.prefix(1024), as: UTF8.self))
    }
}
