import ArgumentParser
import Foundation
import ServiceContract

/// `cloud tasks`: the background tasks of the tenant of your key.
struct Tasks: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Background tasks (long-running operations) in the tenant of your API key.",
        discussion: "Tasks are queued, running, succeeded or dead (failed their last attempt). `cloud tasks retry` queues a dead one again.",
        subcommands: [List.self, Show.self, Retry.self],
        defaultSubcommand: List.self)

    static let columns = [
        ("ID", "id"), ("KIND", "kind"), ("STATE", "state"), ("ATTEMPTS", "attempts"), ("CREATED", "created_at"),
        ("LAST ERROR", "last_error"),
    ]

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Tasks, newest first.")
        @Option(help: "Only tasks in this state: queued, running, succeeded or dead.") var state: String?
        @Option(help: "Only tasks of this kind, e.g. storage.delete-bucket.") var kind: String?
        @Option(help: "At most this many (1 to 1000).") var limit: Int = 100
        @OptionGroup var client: APIClientOptions

        func validate() throws {
            if let state = self.state, TaskState(rawValue: state) == nil {
                throw ValidationError("--state must be queued, running, succeeded or dead")
            }
            guard (1...1000).contains(self.limit) else { throw ValidationError("--limit must be 1 to 1000") }
        }

        func run() async throws {
            var query = ["limit=\(self.limit)"]
            if let state = self.state { query.append("state=\(state)") }
            if let kind = self.kind { query.append("kind=\(kind.addingPercentEncodingForQuery())") }
            let answer = try await self.client.call("GET", "/tasks?" + query.joined(separator: "&"))
            self.client.show(answer, rows: { if case .array(let items) = $0["tasks"] { items } else { [] } }, columns: Tasks.columns)
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One task: payload, attempts, lease, last error, result.")
        @Argument(help: "The task id (task_…).") var id: String
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            let answer = try await self.client.call("GET", "/tasks/\(self.id.addingPercentEncodingForQuery())")
            guard self.client.format == .table, case .object(let members) = answer else {
                self.client.emit(answer) {}
                return
            }
            for (name, value) in members {
                let text: String
                switch value {
                case .object, .array: text = value.serialized()
                default: text = APIClientOptions.text(value)
                }
                print("\((name + ":").padding(toLength: 17, withPad: " ", startingAt: 0))\(text)")
            }
        }
    }

    struct Retry: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Queue a dead task again, now, with a fresh set of attempts.")
        @Argument(help: "The task id (task_…).") var id: String
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            let answer = try await self.client.call("POST", "/tasks/\(self.id.addingPercentEncodingForQuery())/retry")
            self.client.emit(answer) { print("Task \(self.id) queued again.") }
        }
    }
}

extension String {
    /// Percent-encodes everything but unreserved characters (RFC 3986), for a path segment or query value.
    func addingPercentEncodingForQuery() -> String {
        var out = ""
        for byte in self.utf8 {
            let scalar = Unicode.Scalar(byte)
            if ("a"..."z").contains(scalar) || ("A"..."Z").contains(scalar) || ("0"..."9").contains(scalar) || "-._~".unicodeScalars.contains(scalar) {
                out.unicodeScalars.append(scalar)
            } else {
                let hex = String(byte, radix: 16, uppercase: true)
                out += "%" + (hex.count == 1 ? "0" + hex : hex)
            }
        }
        return out
    }
}
