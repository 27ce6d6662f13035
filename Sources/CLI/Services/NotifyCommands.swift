import ArgumentParser
import Foundation
import ServiceContract

/// `cloud notify`: pub/sub topics and subscriptions of the tenant of your key (docs/services/notify.md).
struct Notify: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Pub/sub: topics, subscriptions to signed webhooks and to queues, publish with attributes and filter policies.",
        subcommands: [Topics.self, Subscribe.self, Subscriptions.self, Unsubscribe.self, Publish.self, Deliveries.self, DeadLetters.self, Redrive.self],
        defaultSubcommand: Topics.self)

    static func topic(_ name: String) -> String { "/notify/topics/" + name.addingPercentEncodingForQuery() }

    struct Topics: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Topics: create, list, show, delete.", subcommands: [Create.self, List.self, Show.self, Delete.self], defaultSubcommand: List.self)

        struct Create: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Create a topic.")
            @Argument(help: "The name (letters, digits, - and _).") var name: String
            @OptionGroup var client: APIClientOptions

            func run() async throws {
                let answer = try await ResourceClient(self.client).create("/notify/topics", body: .object([("name", .string(self.name))]))
                self.client.emit(answer) { print("Topic \(self.name) created.") }
            }
        }

        struct List: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "The tenant's topics.")
            @OptionGroup var client: APIClientOptions

            func run() async throws {
                let resources = ResourceClient(self.client)
                let items = try await resources.listAll("/notify/topics", itemsKey: "topics")
                resources.show(items, itemsKey: "topics", columns: [("NAME", "name"), ("CREATED", "created_at")])
            }
        }

        struct Show: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "One topic.")
            @Argument(help: "The name.") var name: String
            @OptionGroup var client: APIClientOptions

            func run() async throws { ResourceClient(self.client).showOne(try await self.client.call("GET", Notify.topic(self.name))) }
        }

        struct Delete: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Delete a topic and its subscriptions.")
            @Argument(help: "The name.") var name: String
            @OptionGroup var client: APIClientOptions

            func run() async throws {
                _ = try await self.client.call("DELETE", Notify.topic(self.name))
                self.client.emit(.object([("deleted", .string(self.name))])) { print("Topic \(self.name) deleted.") }
            }
        }
    }

    struct Subscribe: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Subscribe a webhook (--webhook URL) or a queue (--queue NAME) to a topic.",
            discussion: "A webhook's signing secret is printed once: keep it to check X-Cloud-Signature (docs/services/notify.md).")
        @Argument(help: "The topic.") var topic: String
        @Option(help: "Deliver by HTTP POST to this http(s) URL.") var webhook: String?
        @Option(help: "Deliver to this queue of the tenant.") var queue: String?
        @Option(help: "Only messages whose attributes match this filter policy (JSON, SNS's language).") var filter: String?
        @Option(help: "Attempts before a delivery goes to the dead letters (1 to 20; default 5).") var maxAttempts: Int?
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            var body: [(String, JSONValue)]
            switch (self.webhook, self.queue) {
            case (let url?, nil): body = [("protocol", .string("webhook")), ("endpoint", .string(url))]
            case (nil, let name?): body = [("protocol", .string("queue")), ("endpoint", .string(name))]
            default: throw ValidationError("give exactly one of --webhook or --queue")
            }
            if let filter { body.append(("filter_policy", .string(filter))) }
            if let maxAttempts { body.append(("max_attempts", .int(Int64(maxAttempts)))) }
            let answer = try await ResourceClient(self.client).create(Notify.topic(self.topic) + "/subscriptions", body: .object(body))
            self.client.emit(answer) {
                print("Subscription \(APIClientOptions.text(answer?["id"])) created.")
                if case .string(let secret)? = answer?["signing_secret"] {
                    print("Signing secret (shown once): \(secret)")
                }
            }
        }
    }

    struct Subscriptions: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "A topic's subscriptions.")
        @Argument(help: "The topic.") var topic: String
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            let resources = ResourceClient(self.client)
            let items = try await resources.listAll(Notify.topic(self.topic) + "/subscriptions", itemsKey: "subscriptions")
            resources.show(
                items, itemsKey: "subscriptions",
                columns: [("ID", "id"), ("PROTOCOL", "protocol"), ("ENDPOINT", "endpoint"), ("FILTER", "filter_policy"), ("ATTEMPTS", "max_attempts")])
        }
    }

    struct Unsubscribe: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a subscription.")
        @Argument(help: "The subscription id.") var id: String
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            _ = try await self.client.call("DELETE", "/notify/subscriptions/" + self.id.addingPercentEncodingForQuery())
            self.client.emit(.object([("deleted", .string(self.id))])) { print("Subscription \(self.id) deleted.") }
        }
    }

    struct Publish: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Publish a message to a topic.")
        @Argument(help: "The topic.") var topic: String
        @Option(help: "The message.") var message: String
        @Option(name: .customLong("attribute"), help: "An attribute NAME=VALUE (repeatable, up to 10).") var attributes: [String] = []
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            var fields: [(String, JSONValue)] = [("message", .string(self.message))]
            let attributes = try ResourceClient.attributes(self.attributes)
            if !attributes.isEmpty { fields.append(("attributes", .object(attributes))) }
            let answer = try await ResourceClient(self.client).create(Notify.topic(self.topic) + "/publish", body: .object(fields))
            self.client.emit(answer) {
                print("Message \(APIClientOptions.text(answer?["message_id"])) published: \(APIClientOptions.text(answer?["deliveries"])) deliveries.")
            }
        }
    }

    static let deliveryColumns = [
        ("DELIVERY", "id"), ("SUBSCRIPTION", "subscription_id"), ("STATUS", "status"), ("ATTEMPTS", "attempts"), ("LAST STATUS", "last_status"),
        ("LAST ERROR", "last_error"), ("DELIVERED", "delivered_at"),
    ]

    struct Deliveries: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "A published message's deliveries (status, attempts, the receiver's answer).")
        @Argument(help: "The message id.") var message: String
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            let resources = ResourceClient(self.client)
            let items = try await resources.listAll("/notify/messages/" + self.message.addingPercentEncodingForQuery() + "/deliveries", itemsKey: "deliveries")
            resources.show(items, itemsKey: "deliveries", columns: Notify.deliveryColumns)
        }
    }

    struct DeadLetters: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "A subscription's deliveries whose every attempt failed.")
        @Argument(help: "The subscription id.") var id: String
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            let resources = ResourceClient(self.client)
            let items = try await resources.listAll("/notify/subscriptions/" + self.id.addingPercentEncodingForQuery() + "/dead-letters", itemsKey: "deliveries")
            resources.show(items, itemsKey: "deliveries", columns: [("MESSAGE", "message_id")] + Notify.deliveryColumns)
        }
    }

    struct Redrive: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Deliver a subscription's dead letters again.")
        @Argument(help: "The subscription id.") var id: String
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            let answer = try await self.client.call("POST", "/notify/subscriptions/" + self.id.addingPercentEncodingForQuery() + "/redrive")
            self.client.emit(answer) { print("\(APIClientOptions.text(answer?["redriven"])) deliveries queued again.") }
        }
    }
}
