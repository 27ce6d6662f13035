public import Database
import Foundation
import Hashing
import Logging
import Queues
public import ServiceContract
import SQLite

/// Pub/sub notifications: topics, subscriptions that deliver to webhooks (signed) or to the tenant's
/// queues, publish with attributes and filter policies, retries with backoff through the durable task
/// queue, a dead letter per subscription, and the delivery history of every message.
///
/// A publish writes the message, one delivery row per matching subscription and one task per delivery
/// in one transaction: once the publish is answered, every delivery is in the database and runs, in
/// this process or another, until it succeeds or its attempts run out. Delivery is at least once (a
/// crash after the receiver answered and before the outcome is written delivers again); receivers
/// deduplicate by `X-Cloud-Delivery-Id`.
public struct NotifyService: CloudService {
    let poster: any WebhookPoster

    public init() { self.poster = URLSessionPoster() }

    init(poster: any WebhookPoster) { self.poster = poster }

    public var name: String { "notify" }
    public var summary: String {
        "Pub/sub: topics, subscriptions to signed webhooks and to queues, filter policies, retries with backoff, dead letters, delivery history."
    }

    /// The largest message, in bytes of UTF-8 (256 KiB).
    static let maximumMessageBytes = 262_144
    /// How long a webhook receiver has to answer one attempt.
    static let webhookTimeout: Duration = .seconds(10)
    static let deliverKind = "notify.deliver"
    static let topicQuota = QuotaResource(rawValue: "topics")
    static let subscriptionQuota = QuotaResource(rawValue: "subscriptions")

    public var permissions: [PermissionSpec] {
        [
            PermissionSpec("topic:read", "See topics, their messages' delivery history.", grantedTo: [.developer, .viewer]),
            PermissionSpec("topic:create", "Create topics.", grantedTo: [.developer]),
            PermissionSpec("topic:delete", "Delete topics with their subscriptions.", grantedTo: [.developer]),
            PermissionSpec("topic:publish", "Publish messages to topics.", grantedTo: [.developer]),
            PermissionSpec("subscription:read", "See subscriptions and their dead letters.", grantedTo: [.developer, .viewer]),
            PermissionSpec("subscription:create", "Subscribe webhooks and queues to topics.", grantedTo: [.developer]),
            PermissionSpec("subscription:update", "Redrive a subscription's dead letters.", grantedTo: [.developer]),
            PermissionSpec("subscription:delete", "Delete subscriptions.", grantedTo: [.developer]),
        ]
    }

    public var migrations: [Migration] { NotifySchema.migrations }

    public var quotas: [QuotaSpec] {
        [
            QuotaSpec(Self.topicQuota, defaultLimit: 100, description: "Topics.") { tenantID, db in
                try await db.query("SELECT COUNT(*) FROM notify_topics WHERE tenant_id = $1", [.text(tenantID)]).first?.int(0) ?? 0
            },
            QuotaSpec(Self.subscriptionQuota, defaultLimit: 200, description: "Subscriptions, over all topics.") { tenantID, db in
                try await db.query("SELECT COUNT(*) FROM notify_subscriptions WHERE tenant_id = $1", [.text(tenantID)]).first?.int(0) ?? 0
            },
        ]
    }

    public var tasks: [TaskHandler] {
        [TaskHandler(kind: Self.deliverKind) { context in try await self.deliver(context) }]
    }

    // MARK: - Shapes

    static let topicShape = ResponseShape<TopicRecord>("Topic") {
        $0.string("name") { $0.name }
        $0.time("created_at") { $0.createdAt }
    }

    static let topicList = ListShape("TopicList", itemsKey: "topics", item: Self.topicShape)

    struct SubscriptionView {
        var record: SubscriptionRecord
        /// Shown once, in the answer that creates it.
        var revealSecret = false
    }

    static let subscriptionShape = ResponseShape<SubscriptionView>("Subscription") {
        $0.string("id") { $0.record.id }
        $0.string("topic") { $0.record.topic }
        $0.enumeration("protocol", SubscriptionProtocol.allCases.map(\.rawValue)) { $0.record.kind.rawValue }
        $0.string("endpoint", "The webhook's URL, or the queue's name.") { $0.record.endpoint }
        $0.optionalString("filter_policy", "The filter policy (JSON text); null: every message.") { $0.record.filterPolicy }
        $0.integer("max_attempts", "Attempts before a delivery goes to the dead letters.") { $0.record.maxAttempts }
        $0.optionalString("signing_secret", "Webhooks: the HMAC-SHA256 key of X-Cloud-Signature; shown once, when created.") {
            $0.revealSecret && $0.record.kind == .webhook ? $0.record.secret : nil
        }
        $0.time("created_at") { $0.record.createdAt }
    }

    static let subscriptionList = ListShape("SubscriptionList", itemsKey: "subscriptions", item: Self.subscriptionShape)

    static let deliveryShape = ResponseShape<DeliveryRecord>("Delivery") {
        $0.string("id") { $0.id }
        $0.string("message_id") { $0.messageID }
        $0.string("subscription_id") { $0.subscriptionID }
        $0.enumeration("status", DeliveryStatus.allCases.map(\.rawValue)) { $0.status.rawValue }
        $0.integer("attempts") { $0.attempts }
        $0.optionalInteger("last_status", "The receiver's last HTTP status.") { $0.lastStatus }
        $0.optionalString("last_error") { $0.lastError }
        $0.time("updated_at") { $0.updatedAt }
        $0.optionalTime("delivered_at") { $0.deliveredAt }
    }

    static let deliveryList = ListShape("DeliveryList", itemsKey: "deliveries", item: Self.deliveryShape)

    struct Published {
        var id: String
        var deliveries: Int
    }

    static let publishedShape = ResponseShape<Published>("PublishedMessage") {
        $0.string("message_id") { $0.id }
        $0.integer("deliveries", "Subscriptions whose filter the message matched: one delivery each.") { Int64($0.deliveries) }
    }

    struct Redriven {
        var count: Int
    }

    static let redrivenShape = ResponseShape<Redriven>("Redriven") {
        $0.integer("redriven", "Dead deliveries queued again.") { Int64($0.count) }
    }

    // MARK: - Routes

    public var routes: [Route] {
        let readTopic = Access.permission(Permission("topic:read")!)
        let readSubscription = Access.permission(Permission("subscription:read")!)
        var subscribe = RouteSpec(
            method: "POST", path: "/notify/topics/{name}/subscriptions", operationID: "subscribe",
            summary: "Subscribe a webhook (signed with the signing_secret shown once in this answer) or one of the tenant's queues.",
            access: .permission(Permission("subscription:create")!),
            body: BodySchema([
                .string("protocol", maxLength: 16, "webhook or queue."),
                .string("endpoint", maxLength: 2048, "The webhook's http(s) URL, or the queue's name."),
                .string("filter_policy", required: false, maxLength: 16384, "A filter policy as JSON text (SNS's attribute policy language)."),
                .integer("max_attempts", "1 to 20 (default 5): then the delivery goes to the dead letters."),
            ]),
            success: 201, response: .shape(Self.subscriptionShape.component), errors: [(409, "queue_not_found")])
        subscribe.revealsSecret = true
        var publish = RouteSpec(
            method: "POST", path: "/notify/topics/{name}/publish", operationID: "publish",
            summary: "Publish a message: one delivery to each subscription whose filter policy matches its attributes.",
            access: .permission(Permission("topic:publish")!),
            body: BodySchema([
                .string("message", maxLength: Self.maximumMessageBytes, "The text delivered (up to 256 KiB)."),
                .stringMap("attributes", maxEntries: 10, "String attributes, matched by filter policies and delivered with it."),
            ]),
            success: 201, response: .shape(Self.publishedShape.component))
        publish.maximumBodyBytes = 6 * Self.maximumMessageBytes + 64 * 1024
        return [
            Route(
                method: "POST", path: "/notify/topics", operationID: "createTopic", summary: "Create a topic.",
                access: .permission(Permission("topic:create")!),
                body: BodySchema([.string("name", maxLength: 256, "1 to 256 of letters, digits, - and _.")]), success: 201,
                response: .shape(Self.topicShape.component), errors: [(409, "topic_exists")]
            ) { context in try await self.createTopic(context) },
            Route(
                method: "GET", path: "/notify/topics", operationID: "listTopics", summary: "The tenant's topics by name.", access: readTopic,
                success: 200, response: .shape(Self.topicList.component), paginated: true
            ) { context in try await self.listTopics(context) },
            Route(
                method: "GET", path: "/notify/topics/{name}", operationID: "getTopic", summary: "One topic.", access: readTopic,
                success: 200, response: .shape(Self.topicShape.component)
            ) { context in try await self.getTopic(context) },
            Route(
                method: "DELETE", path: "/notify/topics/{name}", operationID: "deleteTopic",
                summary: "Delete a topic and its subscriptions (deliveries not yet made are dropped).",
                access: .permission(Permission("topic:delete")!), success: 204, response: .empty
            ) { context in try await self.deleteTopic(context) },
            Route(publish) { context in try await self.publish(context) },
            Route(subscribe) { context in try await self.subscribe(context) },
            Route(
                method: "GET", path: "/notify/topics/{name}/subscriptions", operationID: "listSubscriptions",
                summary: "A topic's subscriptions (no secrets).", access: readSubscription, success: 200,
                response: .shape(Self.subscriptionList.component), paginated: true
            ) { context in try await self.listSubscriptions(context) },
            Route(
                method: "GET", path: "/notify/subscriptions/{id}", operationID: "getSubscription", summary: "One subscription (no secret).",
                access: readSubscription, success: 200, response: .shape(Self.subscriptionShape.component)
            ) { context in try await self.getSubscription(context) },
            Route(
                method: "DELETE", path: "/notify/subscriptions/{id}", operationID: "deleteSubscription",
                summary: "Delete a subscription; its pending deliveries are dropped.", access: .permission(Permission("subscription:delete")!),
                success: 204, response: .empty
            ) { context in try await self.deleteSubscription(context) },
            Route(
                method: "GET", path: "/notify/subscriptions/{id}/dead-letters", operationID: "listDeadLetters",
                summary: "Deliveries of this subscription whose every attempt failed, oldest first.", access: readSubscription,
                success: 200, response: .shape(Self.deliveryList.component), paginated: true
            ) { context in try await self.deadLetters(context) },
            Route(
                method: "POST", path: "/notify/subscriptions/{id}/redrive", operationID: "redriveDeadLetters",
                summary: "Queue every dead delivery of this subscription again, with fresh attempts.",
                access: .permission(Permission("subscription:update")!), success: 200, response: .shape(Self.redrivenShape.component)
            ) { context in try await self.redrive(context) },
            Route(
                method: "GET", path: "/notify/messages/{id}/deliveries", operationID: "listMessageDeliveries",
                summary: "A published message's deliveries: status, attempts, the receiver's last answer.", access: readTopic,
                success: 200, response: .shape(Self.deliveryList.component), paginated: true
            ) { context in try await self.messageDeliveries(context) },
        ]
    }

    // MARK: - Topics

    static func checkTopicName(_ name: String) throws(NotifyError) {
        guard name.isName(maxLength: 256) else { throw NotifyError.invalidName(name) }
    }

    private func topic(_ db: any SQLSession, tenantID: String, name: String) async throws -> TopicRecord {
        guard
            let row = try await db.query(
                "SELECT tenant_id, name, created_at FROM notify_topics WHERE tenant_id = $1 AND name = $2", [.text(tenantID), .text(name)]
            ).first
        else { throw NotifyError.topicNotFound(name) }
        return TopicRecord(tenantID: row.text(0), name: row.text(1), createdAt: row.int(2))
    }

    func createTopic(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let name = context.body.string("name") ?? ""
        try Self.checkTopicName(name)
        let now = context.environment.clock.unixMilliseconds()
        let quotas = context.environment.quotas
        return try await context.transaction { db in
            if try await !db.query(
                "SELECT name FROM notify_topics WHERE tenant_id = $1 AND name = $2", [.text(caller.tenantID), .text(name)]
            ).isEmpty {
                throw NotifyError.topicExists(name)
            }
            try await quotas.reserve(Self.topicQuota, tenantID: caller.tenantID, in: db)
            try await db.query(
                "INSERT INTO notify_topics (tenant_id, name, created_at) VALUES ($1, $2, $3)", [.text(caller.tenantID), .text(name), .integer(now)])
            return .json(201, Self.topicShape.json(TopicRecord(tenantID: caller.tenantID, name: name, createdAt: now)))
        }
    }

    func listTopics(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let page = try context.page()
        let rows = try await context.environment.database.query(
            "SELECT tenant_id, name, created_at FROM notify_topics WHERE tenant_id = $1 AND name > $2 ORDER BY name LIMIT \(page.fetchLimit)",
            [.text(caller.tenantID), .text(page.after ?? "")])
        let (items, next) = page.finish(rows.map { TopicRecord(tenantID: $0.text(0), name: $0.text(1), createdAt: $0.int(2)) }, key: \.name)
        return .json(200, Self.topicList.json(items, nextToken: next))
    }

    func getTopic(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let topic = try await context.environment.database.transaction { db in
            try await self.topic(db, tenantID: caller.tenantID, name: context.parameter("name"))
        }
        return .json(200, Self.topicShape.json(topic))
    }

    func deleteTopic(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let name = context.parameter("name")
        try await context.environment.database.transaction { db in
            _ = try await self.topic(db, tenantID: caller.tenantID, name: name)
            let key: [SQLValue] = [.text(caller.tenantID), .text(name)]
            try await db.query("DELETE FROM notify_subscriptions WHERE tenant_id = $1 AND topic = $2", key)
            try await db.query("DELETE FROM notify_topics WHERE tenant_id = $1 AND name = $2", key)
        }
        return .noContent
    }

    // MARK: - Subscriptions

    func subscribe(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let topicName = context.parameter("name")
        guard let kind = SubscriptionProtocol(rawValue: context.body.string("protocol") ?? "") else {
            throw NotifyError.invalidProtocol(context.body.string("protocol") ?? "")
        }
        let endpoint = context.body.string("endpoint") ?? ""
        if kind == .webhook { try Self.checkWebhook(endpoint) }
        var policyText: String?
        if let text = context.body.string("filter_policy") {
            guard let parsed = JSONValue.parse(Array(text.utf8)) else { throw NotifyError.invalidFilter("filter_policy is not JSON") }
            _ = try FilterPolicy(parsing: parsed)
            policyText = parsed.serialized()
        }
        let maxAttempts = context.body.integer("max_attempts") ?? 5
        guard (1...20).contains(maxAttempts) else { throw APIError.invalidRequest("max_attempts must be 1 to 20") }
        let now = context.environment.clock.unixMilliseconds()
        let record = SubscriptionRecord(
            id: SecureRandom.identifier(prefix: "sub_"), tenantID: caller.tenantID, topic: topicName, kind: kind, endpoint: endpoint,
            filterPolicy: policyText, secret: "whsec_" + Base64.encode(SecureRandom.bytes(24)).replacingOccurrences(of: "/", with: "_")
                .replacingOccurrences(of: "+", with: "-"),
            maxAttempts: maxAttempts, createdAt: now)
        let quotas = context.environment.quotas
        return try await context.transaction { db in
            _ = try await self.topic(db, tenantID: caller.tenantID, name: topicName)
            if kind == .queue, try await !QueueDelivery.exists(db, tenantID: caller.tenantID, queue: endpoint) {
                throw NotifyError.queueNotFound(endpoint)
            }
            try await quotas.reserve(Self.subscriptionQuota, tenantID: caller.tenantID, in: db)
            try await db.query(
                "INSERT INTO notify_subscriptions (\(NotifySchema.subscriptionColumns)) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                [
                    .text(record.id), .text(record.tenantID), .text(record.topic), .text(record.kind.rawValue), .text(record.endpoint),
                    SQLValue(record.filterPolicy), .text(record.secret), .integer(record.maxAttempts), .integer(now),
                ])
            return .json(201, Self.subscriptionShape.json(SubscriptionView(record: record, revealSecret: true)))
        }
    }

    /// A webhook is an absolute http or https URL with a host.
    static func checkWebhook(_ endpoint: String) throws(NotifyError) {
        guard endpoint.isHTTPURL else { throw NotifyError.invalidEndpoint(endpoint) }
    }

    private func subscription(_ db: any SQLSession, tenantID: String, id: String) async throws -> SubscriptionRecord {
        guard
            let row = try await db.query(
                "SELECT \(NotifySchema.subscriptionColumns) FROM notify_subscriptions WHERE id = $1 AND tenant_id = $2", [.text(id), .text(tenantID)]
            ).first
        else { throw NotifyError.subscriptionNotFound(id) }
        return NotifySchema.subscription(row)
    }

    func listSubscriptions(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let page = try context.page()
        let name = context.parameter("name")
        let rows = try await context.environment.database.transaction { db in
            _ = try await self.topic(db, tenantID: caller.tenantID, name: name)
            return try await db.query(
                """
                SELECT \(NotifySchema.subscriptionColumns) FROM notify_subscriptions WHERE tenant_id = $1 AND topic = $2 AND id > $3
                ORDER BY id LIMIT \(page.fetchLimit)
                """, [.text(caller.tenantID), .text(name), .text(page.after ?? "")])
        }
        let (items, next) = page.finish(rows.map { SubscriptionView(record: NotifySchema.subscription($0)) }, key: \.record.id)
        return .json(200, Self.subscriptionList.json(items, nextToken: next))
    }

    func getSubscription(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let record = try await context.environment.database.transaction { db in
            try await self.subscription(db, tenantID: caller.tenantID, id: context.parameter("id"))
        }
        return .json(200, Self.subscriptionShape.json(SubscriptionView(record: record)))
    }

    func deleteSubscription(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let id = context.parameter("id")
        try await context.environment.database.transaction { db in
            _ = try await self.subscription(db, tenantID: caller.tenantID, id: id)
            try await db.query("DELETE FROM notify_subscriptions WHERE id = $1", [.text(id)])
        }
        return .noContent
    }

    private func deliveries(_ context: RouteContext, where condition: String, _ value: String, check: @escaping @Sendable (any SQLSession) async throws -> Void)
        async throws -> APIResponse
    {
        let caller = try context.authenticated
        let page = try context.page()
        let rows = try await context.environment.database.transaction { db in
            try await check(db)
            return try await db.query(
                """
                SELECT \(NotifySchema.deliveryColumns) FROM notify_deliveries WHERE tenant_id = $1 AND \(condition) AND id > $3
                ORDER BY id LIMIT \(page.fetchLimit)
                """, [.text(caller.tenantID), .text(value), .text(page.after ?? "")])
        }
        let (items, next) = page.finish(rows.map(NotifySchema.delivery), key: \.id)
        return .json(200, Self.deliveryList.json(items, nextToken: next))
    }

    func deadLetters(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let id = context.parameter("id")
        return try await self.deliveries(context, where: "subscription_id = $2 AND status = 'dead'", id) { db in
            _ = try await self.subscription(db, tenantID: caller.tenantID, id: id)
        }
    }

    func messageDeliveries(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let id = context.parameter("id")
        return try await self.deliveries(context, where: "message_id = $2", id) { db in
            if try await db.query("SELECT id FROM notify_messages WHERE id = $1 AND tenant_id = $2", [.text(id), .text(caller.tenantID)]).isEmpty {
                throw NotifyError.messageNotFound(id)
            }
        }
    }

    func redrive(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let id = context.parameter("id")
        let environment = context.environment
        let now = environment.clock.unixMilliseconds()
        let count = try await environment.database.transaction { db -> Int in
            let subscription = try await self.subscription(db, tenantID: caller.tenantID, id: id)
            let dead = try await db.query(
                "UPDATE notify_deliveries SET status = 'pending', updated_at = $3 WHERE subscription_id = $1 AND tenant_id = $2 AND status = 'dead' RETURNING id",
                [.text(id), .text(caller.tenantID), .integer(now)])
            for row in dead {
                try await environment.tasks.enqueue(Self.task(delivery: row.text(0), tenantID: caller.tenantID, subscription: subscription, round: now), in: db)
            }
            return dead.count
        }
        return .json(200, Self.redrivenShape.json(Redriven(count: count)))
    }

    // MARK: - Publishing

    /// The task of one delivery (`round` distinguishes a redrive's task from the first one).
    static func task(delivery: String, tenantID: String, subscription: SubscriptionRecord, round: Int64?) -> NewTask {
        NewTask(
            kind: Self.deliverKind, tenantID: tenantID, payload: .object([("delivery_id", .string(delivery))]),
            idempotencyKey: round.map { "\(delivery)-\($0)" } ?? delivery, maxAttempts: Int(subscription.maxAttempts))
    }

    func publish(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let topicName = context.parameter("name")
        let body = context.body.string("message") ?? ""
        guard !body.isEmpty else { throw APIError.invalidRequest("the message is empty") }
        guard body.utf8.count <= Self.maximumMessageBytes else { throw NotifyError.tooLarge(body.utf8.count) }
        var collected: [(String, String)] = []
        for (name, value) in context.body.object("attributes") ?? [] {
            if case .string(let text) = value { collected.append((name, text)) }
        }
        let attributes = collected
        let environment = context.environment
        let now = environment.clock.unixMilliseconds()
        return try await context.transaction { db in
            let published = try await Self.publish(
                db, tasks: environment.tasks, tenantID: caller.tenantID, topic: topicName, body: body, attributes: attributes, now: now)
            environment.logger.info(
                "message published",
                metadata: [
                    "request-id": "\(context.request.requestID)", "tenant-id": "\(caller.tenantID)", "topic": "\(topicName)",
                    "deliveries": "\(published.deliveries)",
                ])
            return .json(201, Self.publishedShape.json(published))
        }
    }

    /// Publishes inside `db`: the message, a delivery per matching subscription and its task.
    static func publish(
        _ db: any SQLSession, tasks: TaskQueue, tenantID: String, topic topicName: String, body: String, attributes: [(String, String)], now: Int64
    ) async throws -> Published {
        guard
            try await !db.query("SELECT name FROM notify_topics WHERE tenant_id = $1 AND name = $2", [.text(tenantID), .text(topicName)]).isEmpty
        else { throw NotifyError.topicNotFound(topicName) }
        let lookup = Dictionary(attributes, uniquingKeysWith: { $1 })
        let messageID = SecureRandom.identifier(prefix: "msg_")
        try await db.query(
            "INSERT INTO notify_messages (\(NotifySchema.messageColumns)) VALUES ($1, $2, $3, $4, $5, $6)",
            [
                .text(messageID), .text(tenantID), .text(topicName), .text(body),
                .text(JSONValue.object(attributes.map { ($0.0, .string($0.1)) }).serialized()), .integer(now),
            ])
        let subscriptions = try await db.query(
            "SELECT \(NotifySchema.subscriptionColumns) FROM notify_subscriptions WHERE tenant_id = $1 AND topic = $2 ORDER BY id",
            [.text(tenantID), .text(topicName)]
        ).map(NotifySchema.subscription)
        var count = 0
        for subscription in subscriptions {
            if let text = subscription.filterPolicy, let value = JSONValue.parse(Array(text.utf8)) {
                guard try FilterPolicy(parsing: value).matches(lookup) else { continue }
            }
            let delivery = SecureRandom.identifier(prefix: "dlv_")
            try await db.query(
                """
                INSERT INTO notify_deliveries (\(NotifySchema.deliveryColumns)) VALUES ($1, $2, $3, $4, 'pending', 0, NULL, NULL, $5, NULL)
                """, [.text(delivery), .text(tenantID), .text(messageID), .text(subscription.id), .integer(now)])
            try await tasks.enqueue(Self.task(delivery: delivery, tenantID: tenantID, subscription: subscription, round: nil), in: db)
            count += 1
        }
        return Published(id: messageID, deliveries: count)
    }

    // MARK: - Delivering

    /// The body a webhook receives.
    static func webhookBody(_ message: MessageRecord, deliveryID: String) -> [UInt8] {
        let value = JSONValue.object([
            ("message_id", .string(message.id)), ("delivery_id", .string(deliveryID)), ("topic", .string(message.topic)),
            ("message", .string(message.body)), ("attributes", .object(message.attributes.map { ($0.0, .string($0.1)) })),
            ("published_at", .string(Timestamp.rfc3339(milliseconds: message.publishedAt))),
        ])
        return Array(value.serialized().utf8)
    }

    func deliver(_ context: TaskContext) async throws -> TaskCompletion {
        guard case .string(let deliveryID)? = context.task.payload["delivery_id"] else {
            throw TaskFailure.permanent("the task has no delivery_id")
        }
        let database = context.queue.database
        guard
            let row = try await database.query(
                "SELECT \(NotifySchema.deliveryColumns) FROM notify_deliveries WHERE id = $1", [.text(deliveryID)]
            ).first
        else { return TaskCompletion(result: .object([("skipped", .string("the delivery is gone"))])) }
        let delivery = NotifySchema.delivery(row)
        guard delivery.status == .pending else { return TaskCompletion(result: .object([("skipped", .string(delivery.status.rawValue))])) }
        let attempt = Int64(context.attempt)
        let subscriptionRow = try await database.query(
            "SELECT \(NotifySchema.subscriptionColumns) FROM notify_subscriptions WHERE id = $1", [.text(delivery.subscriptionID)]
        ).first
        guard let subscriptionRow,
            let messageRow = try await database.query(
                "SELECT \(NotifySchema.messageColumns) FROM notify_messages WHERE id = $1", [.text(delivery.messageID)]
            ).first
        else {
            return self.finish(deliveryID, status: .dead, attempt: attempt, answer: nil, error: "the subscription was deleted", context: context)
        }
        let subscription = NotifySchema.subscription(subscriptionRow)
        var loaded = MessageRecord(
            id: messageRow.text(0), tenantID: messageRow.text(1), topic: messageRow.text(2), body: messageRow.text(3), attributes: [],
            publishedAt: messageRow.int(5))
        if case .object(let members)? = JSONValue.parse(Array(messageRow.text(4).utf8)) {
            loaded.attributes = members.compactMap { if case .string(let text) = $0.1 { ($0.0, text) } else { nil } }
        }
        let last = attempt >= Int64(context.task.maxAttempts)
        let message = loaded
        switch subscription.kind {
        case .queue:
            let now = context.queue.now()
            return TaskCompletion(result: .object([("status", .string(DeliveryStatus.delivered.rawValue)), ("attempt", .int(attempt))])) { db in
                do {
                    _ = try await QueueDelivery.send(
                        db, tenantID: message.tenantID, queue: subscription.endpoint, body: message.body,
                        attributes: message.attributes + [("topic", message.topic), ("notify_message_id", message.id)],
                        groupID: subscription.endpoint.hasSuffix(".fifo") ? message.topic : nil,
                        deduplicationID: subscription.endpoint.hasSuffix(".fifo") ? deliveryID : nil, now: now)
                } catch let error as QueuesError {
                    // The queue is gone or refuses the message: no attempt can succeed.
                    try await Self.record(db, deliveryID, status: .dead, attempt: attempt, answer: nil, error: error.description, now: now)
                    return
                }
                try await Self.record(db, deliveryID, status: .delivered, attempt: attempt, answer: nil, error: nil, now: now)
            }
        case .webhook:
            let body = Self.webhookBody(message, deliveryID: deliveryID)
            let headers = [
                ("Content-Type", "application/json"), ("User-Agent", "TheCloud-Notify/1"), ("X-Cloud-Message-Id", message.id),
                ("X-Cloud-Delivery-Id", deliveryID), ("X-Cloud-Topic", message.topic), ("X-Cloud-Attempt", String(attempt)),
                (WebhookSignature.header, WebhookSignature.sign(body: body, secret: subscription.secret, time: context.queue.now() / 1000)),
            ]
            var status: Int?
            var problem: String?
            do {
                let answer = try await self.poster.post(subscription.endpoint, headers: headers, body: body, timeout: Self.webhookTimeout)
                status = answer.status
                if !(200..<300).contains(answer.status) { problem = "the receiver answered \(answer.status)" }
            } catch {
                problem = "no answer: \(error)"
            }
            guard let problem else {
                return self.finish(deliveryID, status: .delivered, attempt: attempt, answer: status, error: nil, context: context)
            }
            if last {
                context.logger.warning("delivery dead-lettered", metadata: ["delivery-id": "\(deliveryID)", "attempts": "\(attempt)", "error": "\(problem)"])
                return self.finish(deliveryID, status: .dead, attempt: attempt, answer: status, error: problem, context: context)
            }
            let now = context.queue.now()
            let answered = status
            try await context.fenced { db in
                try await Self.record(db, deliveryID, status: .pending, attempt: attempt, answer: answered, error: problem, now: now)
            }
            throw TaskFailure.retryable(problem)
        }
    }

    /// Completes the task with the delivery's final outcome written in the completing transaction.
    private func finish(_ id: String, status: DeliveryStatus, attempt: Int64, answer: Int?, error: String?, context: TaskContext) -> TaskCompletion {
        let now = context.queue.now()
        return TaskCompletion(result: .object([("status", .string(status.rawValue)), ("attempt", .int(attempt))])) { db in
            try await Self.record(db, id, status: status, attempt: attempt, answer: answer, error: error, now: now)
        }
    }

    static func record(_ db: any SQLSession, _ id: String, status: DeliveryStatus, attempt: Int64, answer: Int?, error: String?, now: Int64) async throws {
        try await db.query(
            """
            UPDATE notify_deliveries SET status = $2, attempts = $3, last_status = COALESCE($4, last_status), last_error = $5, updated_at = $6,
            delivered_at = CASE WHEN $2 = 'delivered' THEN $6 ELSE delivered_at END WHERE id = $1
            """,
            [.text(id), .text(status.rawValue), .integer(attempt), SQLValue(answer.map(Int64.init)), SQLValue(error), .integer(now)])
    }
}

/// The notify service's errors and their answers (the one place they are mapped).
public struct NotifyError: Error, APIErrorConvertible, CustomStringConvertible {
    private enum Code {
        case topicNotFound(String), topicExists(String), invalidName(String), subscriptionNotFound(String), messageNotFound(String)
        case invalidProtocol(String), invalidEndpoint(String), invalidFilter(String), queueNotFound(String), tooLarge(Int)
    }

    private let code: Code

    static func topicNotFound(_ name: String) -> Self { Self(code: .topicNotFound(name)) }
    static func topicExists(_ name: String) -> Self { Self(code: .topicExists(name)) }
    static func invalidName(_ name: String) -> Self { Self(code: .invalidName(name)) }
    static func subscriptionNotFound(_ id: String) -> Self { Self(code: .subscriptionNotFound(id)) }
    static func messageNotFound(_ id: String) -> Self { Self(code: .messageNotFound(id)) }
    static func invalidProtocol(_ text: String) -> Self { Self(code: .invalidProtocol(text)) }
    static func invalidEndpoint(_ text: String) -> Self { Self(code: .invalidEndpoint(text)) }
    static func invalidFilter(_ reason: String) -> Self { Self(code: .invalidFilter(reason)) }
    static func queueNotFound(_ name: String) -> Self { Self(code: .queueNotFound(name)) }
    static func tooLarge(_ bytes: Int) -> Self { Self(code: .tooLarge(bytes)) }

    public var apiError: APIError {
        switch self.code {
        case .topicNotFound(let name): .notFound("this tenant has no topic \(name)")
        case .topicExists(let name): .conflict("topic_exists", "a topic named \(name) exists")
        case .invalidName(let name): .invalidRequest("\"\(name.prefix(100))\" is not a topic name: 1 to 256 of letters, digits, - and _")
        case .subscriptionNotFound(let id): .notFound("this tenant has no subscription \(id)")
        case .messageNotFound(let id): .notFound("this tenant has no message \(id)")
        case .invalidProtocol(let text): .invalidRequest("protocol \"\(text.prefix(40))\" is not webhook or queue")
        case .invalidEndpoint(let text): .invalidRequest("\"\(text.prefix(200))\" is not an http or https URL")
        case .invalidFilter(let reason): APIError(status: 400, code: "invalid_filter_policy", message: reason)
        case .queueNotFound(let name): .conflict("queue_not_found", "this tenant has no queue \(name) to deliver to")
        case .tooLarge(let bytes): .invalidRequest("the message has \(bytes) bytes; at most \(NotifyService.maximumMessageBytes)")
        }
    }

    public var description: String { self.apiError.description }
}
