import ControlPlane
import Database
import Foundation
import Logging
import Queues
import ServiceContract
import ServiceTestSupport
import Synchronization
import Testing

@testable import Notify

@Suite struct FilterPolicyTests {
    func policy(_ json: String) throws -> FilterPolicy { try FilterPolicy(parsing: JSONValue.parse(Array(json.utf8))!) }

    @Test func matchesAsSNSPoliciesDo() throws {
        let p = try self.policy(#"{"kind": ["order", {"prefix": "refund-"}], "amount": [{"numeric": [">", 10, "<=", 100]}]}"#)
        #expect(p.matches(["kind": "order", "amount": "50"]))
        #expect(p.matches(["kind": "refund-7", "amount": "100"]))
        #expect(!p.matches(["kind": "order", "amount": "10"]), "> 10 excludes 10")
        #expect(!p.matches(["kind": "order"]), "every name of the policy must match")
        #expect(!p.matches(["kind": "invoice", "amount": "50"]))
        #expect(!p.matches(["kind": "order", "amount": "lots"]))
        let but = try self.policy(#"{"region": [{"anything-but": ["eu", "us"]}], "debug": [{"exists": false}]}"#)
        #expect(but.matches(["region": "ap"]) && !but.matches(["region": "eu"]) && !but.matches([:]))
        #expect(!but.matches(["region": "ap", "debug": "1"]))
        #expect(try self.policy(#"{"n": [5]}"#).matches(["n": "5.0"]))
        #expect(try self.policy(#"{"s": [{"suffix": ".jpg"}]}"#).matches(["s": "cat.jpg"]))
        #expect(try self.policy(#"{"s": [{"anything-but": {"prefix": "tmp/"}}]}"#).matches(["s": "photos/x"]))
        #expect(try self.policy(#"{"e": [{"exists": true}]}"#).matches(["e": ""]))
    }

    @Test(arguments: [
        #"[]"#, #"{}"#, #"{"a": []}"#, #"{"a": "x"}"#, #"{"a": [{"nope": 1}]}"#, #"{"a": [{"numeric": [">"]}]}"#,
        #"{"a": [{"numeric": ["~", 1]}]}"#, #"{"a": [true]}"#, #"{"a":[1],"b":[1],"c":[1],"d":[1],"e":[1],"f":[1]}"#,
    ])
    func refusesBadPolicies(_ json: String) {
        #expect(throws: NotifyError.self) { try FilterPolicy(parsing: JSONValue.parse(Array(json.utf8))!) }
    }
}

@Suite struct WebhookSignatureTests {
    @Test func signsAndVerifies() {
        let body = Array(#"{"message":"hi"}"#.utf8)
        let header = WebhookSignature.sign(body: body, secret: "whsec_k", time: 1_800_000_000)
        #expect(header.hasPrefix("t=1800000000,v1=") && header.count == "t=1800000000,v1=".count + 64)
        #expect(WebhookSignature.verify(header: header, body: body, secret: "whsec_k", now: 1_800_000_100))
        #expect(!WebhookSignature.verify(header: header, body: body + [32], secret: "whsec_k", now: 1_800_000_100), "a changed body")
        #expect(!WebhookSignature.verify(header: header, body: body, secret: "whsec_other", now: 1_800_000_100), "another secret")
        #expect(!WebhookSignature.verify(header: header, body: body, secret: "whsec_k", now: 1_800_001_000), "a replay 1000 s later")
        // An independent computation of the documented scheme: HMAC-SHA256(secret, "<t>.<body>"), lowercase hex.
        // HMAC-SHA256(key "key", message "1.b") as Python's hmac module computes it.
        #expect(WebhookSignature.sign(body: Array("b".utf8), secret: "key", time: 1)
            == "t=1,v1=ac75094e6e04472ed13f55acc4c2c692a33eaa037ecc95f9779fc179733be167")
    }
}

/// Answers webhook posts as the test says and records them.
final class RecordingPoster: WebhookPoster, Sendable {
    struct Post: Sendable {
        var url: String
        var headers: [(String, String)]
        var body: [UInt8]
    }

    let posts = Mutex<[Post]>([])
    /// The statuses to answer, in order; after them, `then`.
    let script: Mutex<[Int]>
    let then: Int

    init(_ script: [Int], then: Int = 200) {
        self.script = Mutex(script)
        self.then = then
    }

    func post(_ url: String, headers: [(String, String)], body: [UInt8], timeout: Duration) async throws -> WebhookAnswer {
        self.posts.withLock { $0.append(Post(url: url, headers: headers, body: body)) }
        let status = self.script.withLock { $0.isEmpty ? self.then : $0.removeFirst() }
        return WebhookAnswer(status: status)
    }

    var count: Int { self.posts.withLock { $0.count } }
}

/// A control plane hosting queues and notify, with a task runner that retries fast.
struct NotifyHarness {
    let api: ControlAPI
    let database: any SQLDatabase
    let handlers: [TaskHandler]
    static let logger = Logger(label: "notify-test")

    init(_ backing: Backing, poster: RecordingPoster) async throws {
        self.database = try await backing.freshDatabase(prefix: "notify", logger: Self.logger).database
        let services: [any CloudService] = [QueuesService(sqs: nil), NotifyService(poster: poster)]
        self.handlers = services.flatMap(\.tasks)
        let store = ControlStore(database: self.database, catalog: try ServiceCatalog(services: services))
        _ = try await store.migrate()
        var configuration = ControlAPIConfiguration()
        configuration.passwordHashing = .test
        self.api = try ControlAPI(store: store, configuration: configuration, logger: Self.logger)
    }

    /// Runs the deliveries (a task runner with 50 ms polls and retries after 20–40 ms) while `body` runs.
    func withDeliveries<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        var configuration = TaskRunnerConfiguration()
        configuration.pollInterval = .milliseconds(50)
        configuration.retry = RetryPolicy(initialDelay: 40, maximumDelay: 40)
        let runner = TaskRunner(queue: self.api.tasks, handlers: self.handlers, configuration: configuration, logger: Self.logger)
        let running = Task { try await runner.run() }
        defer { running.cancel() }
        return try await body()
    }

    @discardableResult
    func call(_ method: String, _ path: String, key: String? = nil, body: String = "") async -> (Int, JSONValue?) {
        let (status, value, _) = await APIDriver(self.api).call(method, path, key: key, body: body)
        return (status, value)
    }

    func user(_ email: String) async throws -> String { try await APIDriver(self.api).user(email) }

    /// Waits (polling the API, at most 30 s) until `condition` holds for the message's deliveries.
    func deliveries(_ message: String, key: String, until condition: ([JSONValue]) -> Bool) async throws -> [JSONValue] {
        let deadline = ContinuousClock.now + .seconds(30)
        while true {
            let (_, body) = await self.call("GET", "/notify/messages/\(message)/deliveries", key: key)
            let items: [JSONValue] = if case .array(let items) = body?["deliveries"] { items } else { [] }
            if condition(items) { return items }
            guard ContinuousClock.now < deadline else {
                Issue.record("deliveries never reached the expected state: \(items)")
                return items
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }
}

@Suite struct NotifyServiceTests {
    @Test(arguments: Backing.available) func queueSubscriptionsAndFilters(_ backing: Backing) async throws {
        let h = try await NotifyHarness(backing, poster: RecordingPoster([]))
        let ada = try await h.user("ada@example.com")
        #expect(await h.call("POST", "/notify/topics", key: ada, body: #"{"name": "orders"}"#).0 == 201)
        #expect(await h.call("POST", "/notify/topics", key: ada, body: #"{"name": "orders"}"#).0 == 409)
        #expect(await h.call("POST", "/queues", key: ada, body: #"{"name": "big-orders"}"#).0 == 201)
        let (subscribed, subscription) = await h.call(
            "POST", "/notify/topics/orders/subscriptions", key: ada,
            body: #"{"protocol": "queue", "endpoint": "big-orders", "filter_policy": "{\"amount\": [{\"numeric\": [\">=\", 100]}]}"}"#)
        #expect(subscribed == 201 && subscription?["signing_secret"] == .null)
        #expect(await h.call("POST", "/notify/topics/orders/subscriptions", key: ada, body: #"{"protocol": "queue", "endpoint": "nope"}"#).0 == 409)

        let (_, small) = await h.call("POST", "/notify/topics/orders/publish", key: ada, body: #"{"message": "small", "attributes": {"amount": "5"}}"#)
        #expect(small?["deliveries"] == .int(0), "the filter policy excludes it")
        let (published, big) = await h.call("POST", "/notify/topics/orders/publish", key: ada, body: #"{"message": "big one", "attributes": {"amount": "500"}}"#)
        #expect(published == 201 && big?["deliveries"] == .int(1))
        let message = try #require(text(big?["message_id"]))
        let delivered = try await h.withDeliveries {
            try await h.deliveries(message, key: ada) { $0.count == 1 && text($0[0]["status"]) == "delivered" }
        }
        #expect(delivered.first?["attempts"] == .int(1))
        let (_, got) = await h.call("POST", "/queues/big-orders/messages/receive", key: ada, body: #"{"max_messages": 10}"#)
        guard case .array(let messages) = got?["messages"] else {
            Issue.record("nothing in the queue")
            return
        }
        #expect(messages.map { text($0["body"]) } == ["big one"], "delivered once, in the queue")
        #expect(text(messages.first?["attributes"]?["amount"]) == "500" && text(messages.first?["attributes"]?["notify_message_id"]) == message)
    }

    @Test(arguments: Backing.available) func webhookRetriesSignaturesAndDeadLetters(_ backing: Backing) async throws {
        let poster = RecordingPoster([503, 500])
        let h = try await NotifyHarness(backing, poster: poster)
        let ada = try await h.user("ada@example.com")
        _ = await h.call("POST", "/notify/topics", key: ada, body: #"{"name": "events"}"#)
        let (_, hook) = await h.call(
            "POST", "/notify/topics/events/subscriptions", key: ada, body: #"{"protocol": "webhook", "endpoint": "http://127.0.0.1:9/hook", "max_attempts": 4}"#)
        let secret = try #require(text(hook?["signing_secret"]))
        let subscription = try #require(text(hook?["id"]))
        #expect(await h.call("GET", "/notify/subscriptions/\(subscription)", key: ada).1?["signing_secret"] == .null, "shown once")

        let (_, published) = await h.call("POST", "/notify/topics/events/publish", key: ada, body: #"{"message": "hello", "attributes": {"k": "v"}}"#)
        let message = try #require(text(published?["message_id"]))
        let history = try await h.withDeliveries {
            try await h.deliveries(message, key: ada) { $0.count == 1 && text($0[0]["status"]) == "delivered" }
        }
        #expect(history.first?["attempts"] == .int(3) && history.first?["last_status"] == .int(200), "two failures, then delivered")
        let posts = poster.posts.withLock { $0 }
        #expect(posts.count == 3)
        for post in posts {
            let headers = Dictionary(post.headers, uniquingKeysWith: { $1 })
            let signature = try #require(headers["X-Cloud-Signature"])
            #expect(WebhookSignature.verify(header: signature, body: post.body, secret: secret, now: Int64(Date().timeIntervalSince1970)))
            #expect(headers["X-Cloud-Message-Id"] == message && headers["X-Cloud-Topic"] == "events")
            #expect(text(JSONValue.parse(post.body)?["message"]) == "hello")
        }
        #expect(posts.map { Dictionary($0.headers, uniquingKeysWith: { $1 })["X-Cloud-Attempt"] } == ["1", "2", "3"])

        // Every attempt failing: the delivery lands in the subscription's dead letters; a redrive delivers it.
        poster.script.withLock { $0 = [500, 500, 500, 500] }
        let (_, second) = await h.call("POST", "/notify/topics/events/publish", key: ada, body: #"{"message": "doomed"}"#)
        let doomed = try #require(text(second?["message_id"]))
        try await h.withDeliveries {
            let dead = try await h.deliveries(doomed, key: ada) { $0.count == 1 && text($0[0]["status"]) == "dead" }
            #expect(dead.first?["attempts"] == .int(4) && dead.first?["last_status"] == .int(500))
            let (_, letters) = await h.call("GET", "/notify/subscriptions/\(subscription)/dead-letters", key: ada)
            guard case .array(let items) = letters?["deliveries"] else { return }
            #expect(items.map { text($0["message_id"]) } == [doomed])
            #expect(await h.call("POST", "/notify/subscriptions/\(subscription)/redrive", key: ada).1?["redriven"] == .int(1))
            _ = try await h.deliveries(doomed, key: ada) { $0.count == 1 && text($0[0]["status"]) == "delivered" }
        }
        #expect(poster.count == 3 + 4 + 1)
    }

    @Test(arguments: Backing.available) func tenantsAndBadInput(_ backing: Backing) async throws {
        let h = try await NotifyHarness(backing, poster: RecordingPoster([]))
        let ada = try await h.user("ada@example.com")
        let eve = try await h.user("eve@example.com")
        _ = await h.call("POST", "/notify/topics", key: ada, body: #"{"name": "t"}"#)
        #expect(await h.call("GET", "/notify/topics/t", key: eve).0 == 404)
        #expect(await h.call("POST", "/notify/topics/t/publish", key: eve, body: #"{"message": "x"}"#).0 == 404)
        for body in [
            #"{"protocol": "email", "endpoint": "a@b.c"}"#, #"{"protocol": "webhook", "endpoint": "ftp://x/y"}"#,
            #"{"protocol": "webhook", "endpoint": "not a url"}"#, #"{"protocol": "webhook", "endpoint": "http://h/", "filter_policy": "{\"a\": \"x\"}"}"#,
            #"{"protocol": "webhook", "endpoint": "http://h/", "filter_policy": "not json"}"#, #"{"protocol": "webhook", "endpoint": "http://h/", "max_attempts": 0}"#,
        ] {
            #expect(await h.call("POST", "/notify/topics/t/subscriptions", key: ada, body: body).0 == 400, "\(body)")
        }
        #expect(await h.call("POST", "/notify/topics", key: ada, body: #"{"name": "has space"}"#).0 == 400)
        #expect(await h.call("POST", "/notify/topics/t/publish", key: ada, body: #"{"message": ""}"#).0 == 400)
        let big = String(repeating: "x", count: NotifyService.maximumMessageBytes + 1)
        #expect(await h.call("POST", "/notify/topics/t/publish", key: ada, body: #"{"message": "\#(big)"}"#).0 == 400)
        // A publish commits its message, deliveries and their tasks together.
        _ = await h.call("POST", "/notify/topics/t/subscriptions", key: ada, body: #"{"protocol": "webhook", "endpoint": "http://127.0.0.1:9/"}"#)
        _ = await h.call("POST", "/notify/topics/t/subscriptions", key: ada, body: #"{"protocol": "webhook", "endpoint": "http://127.0.0.1:9/b"}"#)
        #expect(await h.call("POST", "/notify/topics/t/publish", key: ada, body: #"{"message": "x"}"#).1?["deliveries"] == .int(2))
        let tasks = try await h.database.query("SELECT COUNT(*) FROM tasks WHERE kind = 'notify.deliver'").first?.int(0)
        let deliveries = try await h.database.query("SELECT COUNT(*) FROM notify_deliveries").first?.int(0)
        #expect(tasks == 2 && deliveries == 2)
        #expect(await h.call("DELETE", "/notify/topics/t", key: ada).0 == 204)
        #expect(await h.call("GET", "/notify/topics/t", key: ada).0 == 404)
    }
}
