import ControlPlane
import Database
import Foundation
import Logging
import Queues
import ServiceContract
import ServiceTestSupport
import Synchronization
import Testing

@testable import Cron

/// Unix milliseconds of an ISO 8601 time.
func at(_ text: String) -> Int64 { Int64(ISO8601DateFormatter().date(from: text)!.timeIntervalSince1970 * 1000) }
func iso(_ ms: Int64?) -> String? { ms.map { ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: Double($0) / 1000)) } }

@Suite struct CronScheduleTests {
    func next(_ expression: String, _ zone: String = "UTC", after: String) throws -> String? {
        iso(try CronSchedule(expression, timeZone: zone, anchor: at(after)).next(after: at(after)))
    }

    @Test func fieldsListsRangesStepsAndNames() throws {
        #expect(try self.next("*/15 * * * *", after: "2026-12-06T10:07:30Z") == "2026-12-06T10:15:00Z")
        #expect(try self.next("0 9 * * MON-FRI", after: "2026-12-05T12:00:00Z") == "2026-12-07T09:00:00Z", "Saturday → Monday")
        #expect(try self.next("30 8-18/5 * * *", after: "2026-12-06T13:31:00Z") == "2026-12-06T18:30:00Z")
        #expect(try self.next("0 0 1,15 * *", after: "2026-12-02T00:00:00Z") == "2026-12-15T00:00:00Z")
        #expect(try self.next("0 12 * JUN *", after: "2026-12-06T00:00:00Z") == "2027-06-01T12:00:00Z")
        #expect(try self.next("@yearly", after: "2026-12-06T00:00:00Z") == "2027-01-01T00:00:00Z")
        #expect(try self.next("0 0 * * 7", after: "2026-12-06T00:00:00Z") == "2026-12-13T00:00:00Z", "7 is Sunday too")
        #expect(try self.next("0 0 29 2 *", after: "2026-03-01T00:00:00Z") == "2028-02-29T00:00:00Z", "the next leap day")
        // Both day fields restricted: either matches (Vixie cron).
        #expect(try self.next("0 0 13 * FRI", after: "2026-12-06T00:00:00Z") == "2026-12-11T00:00:00Z")
        #expect(try self.next("59 23 31 12 *", after: "2026-12-31T23:59:00Z") == "2027-12-31T23:59:00Z", "strictly after")
    }

    @Test func timeZonesAndDaylightSaving() throws {
        #expect(try self.next("0 9 * * *", "Europe/Berlin", after: "2026-12-06T09:00:00Z") == "2026-12-07T08:00:00Z", "09:00 CET is 08:00 UTC")
        #expect(try self.next("0 9 * * *", "Europe/Berlin", after: "2026-07-06T09:00:00Z") == "2026-07-07T07:00:00Z", "09:00 CEST is 07:00 UTC")
        // 2027-03-28: Berlin skips 02:00-03:00; a 02:30 job does not run that day.
        #expect(try self.next("30 2 * * *", "Europe/Berlin", after: "2027-03-27T02:00:00Z") == "2027-03-29T00:30:00Z")
        // 2026-10-25: Berlin repeats 02:00-03:00; a 02:30 job runs once, at the first 02:30 (00:30 UTC).
        let first = try self.next("30 2 * * *", "Europe/Berlin", after: "2026-10-24T23:00:00Z")
        #expect(first == "2026-10-25T00:30:00Z")
        #expect(try self.next("30 2 * * *", "Europe/Berlin", after: first!) == "2026-10-26T01:30:00Z")
    }

    @Test func rates() throws {
        let anchor = at("2026-12-06T10:00:00Z")
        let every5 = try CronSchedule("rate(5 minutes)", anchor: anchor)
        #expect(iso(every5.next(after: anchor)) == "2026-12-06T10:05:00Z")
        #expect(iso(every5.next(after: at("2026-12-06T10:07:00Z"))) == "2026-12-06T10:10:00Z")
        #expect(iso(try CronSchedule("rate(1 day)", anchor: anchor).next(after: anchor)) == "2026-12-07T10:00:00Z")
    }

    @Test(arguments: [
        "", "* * * *", "* * * * * *", "60 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *", "* * * * 8", "*/0 * * * *", "5-1 * * * *",
        "0 0 30 2 *", "0 0 31 4 *", "rate(0 minutes)", "rate(5 minute)", "rate(1 weeks)", "rate(5 minutes", "bogus",
    ])
    func refusesBadAndNeverFiringExpressions(_ expression: String) {
        #expect(throws: CronError.self) { try CronSchedule(expression, anchor: at("2026-12-06T00:00:00Z")) }
    }

    @Test func refusesUnknownTimeZones() {
        #expect(throws: CronError.self) { try CronSchedule("* * * * *", timeZone: "Mars/Olympus", anchor: 0) }
    }
}

final class ManualClock: Sendable {
    private let value = Mutex<Int64>(0)
    init(_ start: Int64) { self.value.withLock { $0 = start } }
    func now() -> Int64 { self.value.withLock { $0 } }
    func set(_ time: Int64) { self.value.withLock { $0 = time } }
}

struct CronHarness {
    let api: ControlAPI
    let database: any SQLDatabase
    let location: DatabaseLocation
    let clock: ManualClock
    let handlers: [TaskHandler]
    static let logger = Logger(label: "cron-test")

    init(_ backing: Backing, start: Int64) async throws {
        (self.location, self.database) = try await backing.freshDatabase(prefix: "cron", logger: Self.logger)
        let services: [any CloudService] = [QueuesService(sqs: nil), CronService()]
        self.handlers = services.flatMap(\.tasks)
        let store = ControlStore(database: self.database, catalog: try ServiceCatalog(services: services))
        _ = try await store.migrate()
        var configuration = ControlAPIConfiguration()
        configuration.passwordHashing = .test
        let clock = ManualClock(start)
        self.clock = clock
        self.api = try ControlAPI(store: store, configuration: configuration, logger: Self.logger, now: { clock.now() / 1000 }, serviceClock: { clock.now() })
    }

    /// The service environment with the test's clock (on `database`, another pool, when given).
    func environment(_ database: (any SQLDatabase)? = nil) -> ServiceEnvironment {
        var environment = self.api.environment
        let clock = self.clock
        environment.clock = ServiceClock { clock.now() }
        if let database { environment.database = database }
        return environment
    }

    @discardableResult
    func call(_ method: String, _ path: String, key: String? = nil, body: String = "") async -> (Int, JSONValue?) {
        let (status, value, _) = await APIDriver(self.api).call(method, path, key: key, body: body)
        return (status, value)
    }

    func user(_ email: String) async throws -> (key: String, tenant: String) {
        let driver = APIDriver(self.api)
        let key = try await driver.user(email)
        return (key, await driver.tenant(of: key))
    }

    func runs(_ schedule: String, key: String) async -> [JSONValue] {
        if case .array(let items) = await self.call("GET", "/cron/schedules/\(schedule)/runs?limit=1000", key: key).1?["runs"] { return items }
        return []
    }
}

@Suite struct CronServiceTests {
    @Test(arguments: Backing.available) func firesEachDueTimeOnceAcrossProcesses(_ backing: Backing) async throws {
        let h = try await CronHarness(backing, start: at("2026-12-06T10:00:30Z"))
        let (key, _) = try await h.user("ada@example.com")
        #expect(await h.call("POST", "/queues", key: key, body: #"{"name": "ticks"}"#).0 == 201)
        let (created, schedule) = await h.call(
            "POST", "/cron/schedules", key: key, body: #"{"name": "tick", "schedule": "* * * * *", "target": "queue", "destination": "ticks", "body": "tick"}"#)
        #expect(created == 201 && text(schedule?["next_run_at"]) == "2026-12-06T10:01:00Z")
        // Six schedulers with their own pools (as six processes) tick together at each of five due times.
        var pools: [any SQLDatabase] = []
        for _ in 0..<6 { pools.append(try h.location.open(logger: CronHarness.logger, timeout: .seconds(60))) }
        for minute in 1...5 {
            h.clock.set(at("2026-12-06T10:0\(minute):00Z") + 500)
            let fired = try await withThrowingTaskGroup(of: Int.self) { group in
                for pool in pools { group.addTask { try await CronScheduler.fire(h.environment(pool), now: h.clock.now()) } }
                return try await group.reduce(0, +)
            }
            #expect(fired == 1, "minute \(minute): \(fired) runs")
        }
        for pool in pools { await pool.close() }
        let runs = await h.runs("tick", key: key)
        #expect(runs.map { text($0["scheduled_for"]) } == (1...5).reversed().map { "2026-12-06T10:0\($0):00Z" })
        // The runs' tasks send to the queue exactly once each.
        var configuration = TaskRunnerConfiguration()
        configuration.pollInterval = .milliseconds(50)
        let runner = TaskRunner(queue: h.api.tasks, handlers: h.handlers, configuration: configuration, logger: CronHarness.logger)
        let running = Task { try await runner.run() }
        let deadline = ContinuousClock.now + .seconds(30)
        while await h.runs("tick", key: key).contains(where: { text($0["status"]) != "succeeded" }), ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        running.cancel()
        #expect(await h.runs("tick", key: key).allSatisfy { text($0["status"]) == "succeeded" && text($0["response"]) != nil })
        let (_, queue) = await h.call("GET", "/queues/ticks", key: key)
        #expect(queue?["messages_visible"] == .int(5))
    }

    @Test(arguments: Backing.available) func missedRunsFollowThePolicy(_ backing: Backing) async throws {
        let h = try await CronHarness(backing, start: at("2026-12-06T10:00:00Z"))
        let (key, _) = try await h.user("ada@example.com")
        for (name, policy) in [("skipper", "skip"), ("catcher", "run_once")] {
            #expect(await h.call(
                "POST", "/cron/schedules", key: key,
                body: #"{"name": "\#(name)", "schedule": "rate(5 minutes)", "target": "http", "destination": "http://127.0.0.1:9/", "missed": "\#(policy)"}"#
            ).0 == 201)
        }
        // Two hours without a control plane: 24 due times passed.
        h.clock.set(at("2026-12-06T12:00:30Z"))
        #expect(try await CronScheduler.fire(h.environment(), now: h.clock.now()) == 2)
        let skipped = await h.runs("skipper", key: key)
        #expect(skipped.count == 1 && text(skipped[0]["status"]) == "skipped" && text(skipped[0]["scheduled_for"]) == "2026-12-06T12:00:00Z")
        #expect(text(skipped[0]["error"])?.hasPrefix("24 runs missed") == true)
        let caught = await h.runs("catcher", key: key)
        #expect(caught.count == 1 && text(caught[0]["status"]) == "pending", "run once, for the latest missed time")
        let (_, skipper) = await h.call("GET", "/cron/schedules/skipper", key: key)
        #expect(text(skipper?["next_run_at"]) == "2026-12-06T12:05:00Z", "then on from now")
        #expect(try await CronScheduler.fire(h.environment(), now: h.clock.now()) == 0)
    }

    @Test(arguments: Backing.available) func pauseResumeAndBadInput(_ backing: Backing) async throws {
        let h = try await CronHarness(backing, start: at("2026-12-06T10:00:00Z"))
        let (key, _) = try await h.user("ada@example.com")
        let body = #"{"name": "n", "schedule": "0 * * * *", "target": "http", "destination": "https://example.test/hook"}"#
        #expect(await h.call("POST", "/cron/schedules", key: key, body: body).0 == 201)
        #expect(await h.call("POST", "/cron/schedules", key: key, body: body).0 == 409)
        let (_, paused) = await h.call("POST", "/cron/schedules/n/pause", key: key)
        #expect(paused?["paused"] == .bool(true) && paused?["next_run_at"] == .null)
        h.clock.set(at("2026-12-06T13:10:00Z"))
        #expect(try await CronScheduler.fire(h.environment(), now: h.clock.now()) == 0, "a paused schedule does not fire")
        let (_, resumed) = await h.call("POST", "/cron/schedules/n/resume", key: key)
        #expect(text(resumed?["next_run_at"]) == "2026-12-06T14:00:00Z", "from now on; the paused hours are not run")
        for bad in [
            #"{"name": "x", "schedule": "0 0 30 2 *", "target": "http", "destination": "http://h/"}"#,
            #"{"name": "x", "schedule": "* * *", "target": "http", "destination": "http://h/"}"#,
            #"{"name": "x", "schedule": "* * * * *", "timezone": "Nowhere/City", "target": "http", "destination": "http://h/"}"#,
            #"{"name": "x", "schedule": "* * * * *", "target": "ftp", "destination": "h"}"#,
            #"{"name": "x", "schedule": "* * * * *", "target": "http", "destination": "not a url"}"#,
            #"{"name": "x", "schedule": "* * * * *", "target": "queue", "destination": "q"}"#,
            #"{"name": "x y", "schedule": "* * * * *", "target": "http", "destination": "http://h/"}"#,
        ] {
            #expect(await h.call("POST", "/cron/schedules", key: key, body: bad).0 == 400, "\(bad)")
        }
        #expect(await h.call("POST", "/cron/schedules", key: key, body: #"{"name": "x", "schedule": "* * * * *", "target": "queue", "destination": "nope", "body": "b"}"#).0 == 409)
        let (eveKey, _) = try await h.user("eve@example.com")
        #expect(await h.call("GET", "/cron/schedules/n", key: eveKey).0 == 404)
        #expect(await h.call("DELETE", "/cron/schedules/n", key: key).0 == 204)
    }
}
