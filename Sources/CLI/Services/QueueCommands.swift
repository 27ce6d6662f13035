import ArgumentParser
import Foundation
import ServiceContract

/// `cloud queues` (also `cloud queue`): message queues of the tenant of your key (docs/services/queues.md).
struct Queues: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Queues: messages with visibility timeouts, delays, long polling, dead-letter queues and FIFO groups.",
        discussion: "The same queues answer SQS clients (boto3, aws-cli) at <api>/sqs, signed with a storage key (`cloud storage keys create`).",
        subcommands: [
            Create.self, List.self, Show.self, Update.self, Delete.self, Purge.self, Send.self, Receive.self, DeleteMessage.self,
            ChangeVisibility.self,
        ],
        defaultSubcommand: List.self, aliases: ["queue"])

    static let columns = [
        ("NAME", "name"), ("FIFO", "fifo"), ("VISIBILITY", "visibility_timeout"), ("DELAY", "delay_seconds"),
        ("DEAD LETTERS", "dead_letter_queue"), ("MAX RECEIVES", "max_receive_count"), ("CREATED", "created_at"),
    ]

    static func path(_ name: String) -> String { "/queues/" + name.addingPercentEncodingForQuery() }

    /// A queue's settings, as options of `create` and `update`.
    struct SettingOptions: ParsableArguments {
        @Option(help: "Seconds a received message stays hidden (0 to 43200; default 30).") var visibilityTimeout: Int?
        @Option(help: "Seconds a new message waits before it can be received (0 to 900).") var delay: Int?
        @Option(help: "Seconds a message is kept (60 to 1209600; default 4 days).") var retention: Int?
        @Option(help: "The largest message in bytes (1024 to 262144).") var maxMessageBytes: Int?
        @Option(help: "Seconds a receive waits for a message when it does not say (0 to 20).") var receiveWait: Int?
        @Option(help: "Move messages here after --max-receives receives (a queue of the same kind; \"\" removes it).") var deadLetterQueue: String?
        @Option(help: "Receives before a message goes to the dead-letter queue (1 to 1000).") var maxReceives: Int?
        @Flag(inversion: .prefixedNo, help: "FIFO: deduplicate by the body when a send has no deduplication id.") var contentBasedDeduplication: Bool?

        var fields: [(String, JSONValue)] {
            var fields: [(String, JSONValue)] = []
            if let visibilityTimeout { fields.append(("visibility_timeout", .int(Int64(visibilityTimeout)))) }
            if let delay { fields.append(("delay_seconds", .int(Int64(delay)))) }
            if let retention { fields.append(("retention_seconds", .int(Int64(retention)))) }
            if let maxMessageBytes { fields.append(("maximum_message_bytes", .int(Int64(maxMessageBytes)))) }
            if let receiveWait { fields.append(("receive_wait_seconds", .int(Int64(receiveWait)))) }
            if let deadLetterQueue { fields.append(("dead_letter_queue", .string(deadLetterQueue))) }
            if let maxReceives { fields.append(("max_receive_count", .int(Int64(maxReceives)))) }
            if let contentBasedDeduplication { fields.append(("content_based_deduplication", .bool(contentBasedDeduplication))) }
            return fields
        }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a queue.")
        @Argument(help: "The name: letters, digits, - and _ (a FIFO queue's ends in .fifo).") var name: String
        @Flag(help: "A FIFO queue: in order per message group, with deduplication.") var fifo = false
        @OptionGroup var settings: SettingOptions
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            var body: [(String, JSONValue)] = [("name", .string(self.name))]
            if self.fifo { body.append(("fifo", .bool(true))) }
            let answer = try await ResourceClient(self.client).create("/queues", body: .object(body + self.settings.fields))
            self.client.emit(answer) { print("Queue \(self.name) created.") }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The tenant's queues.")
        @Option(help: "Only names that start with this.") var prefix: String?
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            let resources = ResourceClient(self.client)
            let query = self.prefix.map { ["prefix=" + $0.addingPercentEncodingForQuery()] } ?? []
            let items = try await resources.listAll("/queues", itemsKey: "queues", query: query)
            resources.show(items, itemsKey: "queues", columns: Queues.columns)
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One queue's settings and how many messages it holds.")
        @Argument(help: "The name.") var name: String
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            ResourceClient(self.client).showOne(try await self.client.call("GET", Queues.path(self.name)))
        }
    }

    struct Update: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Change a queue's settings.")
        @Argument(help: "The name.") var name: String
        @OptionGroup var settings: SettingOptions
        @Option(help: "Refuse if the queue changed since this version (its `version` field).") var ifVersion: Int?
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            let fields = self.settings.fields
            guard !fields.isEmpty else { throw ValidationError("give at least one setting to change") }
            let headers = self.ifVersion.map { [("If-Match", "\"\($0)\"")] } ?? []
            let answer = try await self.client.call("PATCH", Queues.path(self.name), body: .object(fields), headers: headers)
            self.client.emit(answer) { print("Queue \(self.name) updated.") }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a queue and its messages.")
        @Argument(help: "The name.") var name: String
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            _ = try await self.client.call("DELETE", Queues.path(self.name))
            self.client.emit(.object([("deleted", .string(self.name))])) { print("Queue \(self.name) deleted.") }
        }
    }

    struct Purge: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete every message of a queue.")
        @Argument(help: "The name.") var name: String
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            let answer = try await self.client.call("POST", Queues.path(self.name) + "/purge")
            self.client.emit(answer) { print("Queue \(self.name): \(APIClientOptions.text(answer?["purged"])) messages deleted.") }
        }
    }

    struct Send: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Send a message.")
        @Argument(help: "The queue.") var name: String
        @Option(help: "The body.") var body: String?
        @Option(help: "Read the body from this file, or '-' for standard input.") var fromFile: String?
        @Option(name: .customLong("attribute"), help: "A string attribute NAME=VALUE (repeatable, up to 10).") var attributes: [String] = []
        @Option(help: "Seconds before it can be received (standard queues).") var delay: Int?
        @Option(help: "FIFO: the message group.") var group: String?
        @Option(help: "FIFO: sends with the same id within 5 minutes store one message.") var deduplicationId: String?
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            let text: String
            switch (self.body, self.fromFile) {
            case (let body?, nil): text = body
            case (nil, let path?):
                let data = path == "-" ? FileHandle.standardInput.readDataToEndOfFile() : try Data(contentsOf: URL(fileURLWithPath: path))
                guard let decoded = String(data: data, encoding: .utf8) else { throw CLIError("the body in \(path) is not UTF-8 text") }
                text = decoded
            default: throw ValidationError("give the body with exactly one of --body or --from-file")
            }
            var fields: [(String, JSONValue)] = [("body", .string(text))]
            let attributes = try ResourceClient.attributes(self.attributes)
            if !attributes.isEmpty { fields.append(("attributes", .object(attributes))) }
            if let delay { fields.append(("delay_seconds", .int(Int64(delay)))) }
            if let group { fields.append(("group_id", .string(group))) }
            if let deduplicationId { fields.append(("deduplication_id", .string(deduplicationId))) }
            let answer = try await ResourceClient(self.client).create(Queues.path(self.name) + "/messages", body: .object(fields))
            self.client.emit(answer) {
                let duplicate = answer?["duplicate"] == .bool(true) ? " (a duplicate: nothing stored)" : ""
                print("Message \(APIClientOptions.text(answer?["message_id"])) sent\(duplicate).")
            }
        }
    }

    struct Receive: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Receive messages (hidden from other receivers for the visibility timeout).",
            discussion: "Prints each message's receipt handle: `cloud queues delete-message QUEUE RECEIPT` deletes it. With --delete the messages are deleted once printed.")
        @Argument(help: "The queue.") var name: String
        @Option(help: "At most this many (1 to 10).") var max: Int = 1
        @Option(help: "Wait up to this many seconds for a message (0 to 20).") var wait: Int?
        @Option(help: "Hide them for this many seconds (default: the queue's).") var visibilityTimeout: Int?
        @Flag(help: "Delete each message after printing it.") var delete = false
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            var fields: [(String, JSONValue)] = [("max_messages", .int(Int64(self.max)))]
            if let wait { fields.append(("wait_seconds", .int(Int64(wait)))) }
            if let visibilityTimeout { fields.append(("visibility_timeout", .int(Int64(visibilityTimeout)))) }
            let answer = try await self.client.call("POST", Queues.path(self.name) + "/messages/receive", body: .object(fields))
            let messages: [JSONValue] = if case .array(let items) = answer?["messages"] { items } else { [] }
            ResourceClient(self.client).show(
                messages, itemsKey: "messages",
                columns: [("MESSAGE ID", "message_id"), ("RECEIVES", "receive_count"), ("BODY", "body"), ("RECEIPT HANDLE", "receipt_handle")])
            if self.delete {
                for message in messages {
                    guard case .string(let receipt) = message["receipt_handle"] else { continue }
                    _ = try await self.client.call("DELETE", Queues.path(self.name) + "/messages/" + receipt.addingPercentEncodingForQuery())
                }
            }
        }
    }

    struct DeleteMessage: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a received message by its receipt handle.")
        @Argument(help: "The queue.") var name: String
        @Argument(help: "The receipt handle from the newest receive.") var receipt: String
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            _ = try await self.client.call("DELETE", Queues.path(self.name) + "/messages/" + self.receipt.addingPercentEncodingForQuery())
            self.client.emit(.object([("deleted", .string(self.receipt))])) { print("Message deleted.") }
        }
    }

    struct ChangeVisibility: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Hide a received message for more seconds from now (0: visible at once).")
        @Argument(help: "The queue.") var name: String
        @Argument(help: "The receipt handle from the newest receive.") var receipt: String
        @Option(help: "Seconds from now (0 to 43200).") var timeout: Int
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            _ = try await self.client.call(
                "POST", Queues.path(self.name) + "/messages/" + self.receipt.addingPercentEncodingForQuery() + "/visibility",
                body: .object([("timeout", .int(Int64(self.timeout)))]))
            self.client.emit(.object([("timeout", .int(Int64(self.timeout)))])) { print("Visibility changed.") }
        }
    }
}
