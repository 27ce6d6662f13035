import ArgumentParser
import Foundation
import ServiceContract

/// `cloud cron`: schedules of the tenant of your key (docs/services/cron.md).
struct Cron: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Cron: schedules that call an HTTP endpoint, send to a queue or publish to a topic.",
        discussion: "Schedules are 5-field cron expressions (with --timezone) or rate(N minutes|hours|days).",
        subcommands: [Create.self, List.self, Show.self, Update.self, Delete.self, Pause.self, Resume.self, Runs.self],
        defaultSubcommand: List.self)

    static let columns = [
        ("NAME", "name"), ("SCHEDULE", "schedule"), ("TIMEZONE", "timezone"), ("TARGET", "target"), ("DESTINATION", "destination"),
        ("PAUSED", "paused"), ("NEXT RUN", "next_run_at"),
    ]

    static func path(_ name: String) -> String { "/cron/schedules/" + name.addingPercentEncodingForQuery() }

    /// Where a schedule goes: exactly one of --http, --queue or --topic.
    struct TargetOptions: ParsableArguments {
        @Option(help: "Call this http(s) URL.") var http: String?
        @Option(help: "Send the body as a message to this queue.") var queue: String?
        @Option(help: "Publish the body to this topic.") var topic: String?
        @Option(help: "HTTP targets: POST (default) or GET.") var method: String?
        @Option(help: "The HTTP body, or the message to send or publish.") var body: String?

        func fields(required: Bool) throws -> [(String, JSONValue)] {
            var fields: [(String, JSONValue)] = []
            switch (self.http, self.queue, self.topic) {
            case (let url?, nil, nil): fields += [("target", .string("http")), ("destination", .string(url))]
            case (nil, let name?, nil): fields += [("target", .string("queue")), ("destination", .string(name))]
            case (nil, nil, let name?): fields += [("target", .string("topic")), ("destination", .string(name))]
            case (nil, nil, nil) where !required: break
            default: throw ValidationError("give exactly one of --http, --queue or --topic")
            }
            if let method { fields.append(("method", .string(method))) }
            if let body { fields.append(("body", .string(body))) }
            return fields
        }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a schedule.")
        @Argument(help: "The name (letters, digits, - and _).") var name: String
        @Option(help: "A cron expression (\"*/5 * * * *\", @daily) or rate(N minutes|hours|days).") var schedule: String
        @Option(help: "The time zone of a cron expression (IANA, default UTC).") var timezone: String?
        @Option(help: "Runs missed while no control plane ran: skip (default) or run_once.") var missed: String?
        @OptionGroup var target: TargetOptions
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            var body: [(String, JSONValue)] = [("name", .string(self.name)), ("schedule", .string(self.schedule))]
            if let timezone { body.append(("timezone", .string(timezone))) }
            if let missed { body.append(("missed", .string(missed))) }
            body += try self.target.fields(required: true)
            let answer = try await ResourceClient(self.client).create("/cron/schedules", body: .object(body))
            self.client.emit(answer) { print("Schedule \(self.name) created; next run \(APIClientOptions.text(answer?["next_run_at"])).") }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The tenant's schedules.")
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            let resources = ResourceClient(self.client)
            resources.show(try await resources.listAll("/cron/schedules", itemsKey: "schedules"), itemsKey: "schedules", columns: Cron.columns)
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One schedule.")
        @Argument(help: "The name.") var name: String
        @OptionGroup var client: APIClientOptions

        func run() async throws { ResourceClient(self.client).showOne(try await self.client.call("GET", Cron.path(self.name))) }
    }

    struct Update: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Change a schedule (a new expression or time zone counts from now).")
        @Argument(help: "The name.") var name: String
        @Option(help: "A new cron expression or rate.") var schedule: String?
        @Option(help: "A new time zone.") var timezone: String?
        @Option(help: "skip or run_once.") var missed: String?
        @OptionGroup var target: TargetOptions
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            var body: [(String, JSONValue)] = []
            if let schedule { body.append(("schedule", .string(schedule))) }
            if let timezone { body.append(("timezone", .string(timezone))) }
            if let missed { body.append(("missed", .string(missed))) }
            body += try self.target.fields(required: false)
            guard !body.isEmpty else { throw ValidationError("give at least one thing to change") }
            let answer = try await self.client.call("PATCH", Cron.path(self.name), body: .object(body))
            self.client.emit(answer) { print("Schedule \(self.name) updated.") }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a schedule and its run history.")
        @Argument(help: "The name.") var name: String
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            _ = try await self.client.call("DELETE", Cron.path(self.name))
            self.client.emit(.object([("deleted", .string(self.name))])) { print("Schedule \(self.name) deleted.") }
        }
    }

    struct Pause: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop a schedule firing until it is resumed.")
        @Argument(help: "The name.") var name: String
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            let answer = try await self.client.call("POST", Cron.path(self.name) + "/pause")
            self.client.emit(answer) { print("Schedule \(self.name) paused.") }
        }
    }

    struct Resume: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Fire again from now on.")
        @Argument(help: "The name.") var name: String
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            let answer = try await self.client.call("POST", Cron.path(self.name) + "/resume")
            self.client.emit(answer) { print("Schedule \(self.name) resumed; next run \(APIClientOptions.text(answer?["next_run_at"])).") }
        }
    }

    struct Runs: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "A schedule's runs, newest first.")
        @Argument(help: "The name.") var name: String
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            let resources = ResourceClient(self.client)
            let items = try await resources.listAll(Cron.path(self.name) + "/runs", itemsKey: "runs")
            resources.show(
                items, itemsKey: "runs",
                columns: [
                    ("SCHEDULED FOR", "scheduled_for"), ("STATUS", "status"), ("ATTEMPTS", "attempts"), ("MS", "duration_ms"),
                    ("HTTP", "response_status"), ("RESPONSE", "response"), ("ERROR", "error"),
                ])
        }
    }
}
