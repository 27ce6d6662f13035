public import Database
import SQLite
import Foundation
import Hashing
import Logging
public import ServiceContract

/// Queues: messages with visibility timeouts and receipt handles, delays, retention, long polling,
/// dead-letter queues, FIFO queues with message groups and deduplication; a REST API under `/queues`
/// and an SQS-compatible endpoint at `/sqs` (the AWS JSON protocol, signed with a tenant's storage key).
///
/// State is in the control-plane database (``QueueEngine``), so any number of control-plane processes
/// on one PostgreSQL serve the same queues, and no message is given to two receivers inside its
/// visibility timeout.
public struct QueuesService: CloudService {
    let credentials: SQSCredentials?
    let wakeups = Wakeups()
    let cache = SigningKeyCache()

    /// - Parameter sqs: Where the SQS endpoint gets signing keys (the storage cluster); nil: `/sqs` answers 503.
    public init(sqs: SQSCredentials?) { self.credentials = sqs }

    public var name: String { "queues" }
    public var summary: String {
        "Message queues: visibility timeouts, delays, long polling, dead-letter queues, FIFO groups and deduplication; an SQS-compatible endpoint at /sqs."
    }
    public var routePrefixes: [String] { ["/queues", "/sqs"] }

    public var permissions: [PermissionSpec] {
        [
            PermissionSpec("queue:read", "See queues, their settings and how many messages they hold.", grantedTo: [.developer, .viewer]),
            PermissionSpec("queue:create", "Create queues.", grantedTo: [.developer]),
            PermissionSpec("queue:update", "Change queues' settings.", grantedTo: [.developer]),
            PermissionSpec("queue:delete", "Delete queues with their messages.", grantedTo: [.developer]),
            PermissionSpec("queue:purge", "Delete every message of a queue.", grantedTo: [.developer]),
            PermissionSpec("queue:send", "Send messages.", grantedTo: [.developer]),
            PermissionSpec("queue:receive", "Receive messages, delete them and change their visibility.", grantedTo: [.developer]),
        ]
    }

    public var migrations: [Migration] { QueuesSchema.migrations }

    public var quotas: [QuotaSpec] {
        [
            QuotaSpec(QueueEngine.quota, defaultLimit: 1000, description: "Queues, FIFO and standard.") { tenantID, db in
                try await db.query("SELECT COUNT(*) FROM queues_queues WHERE tenant_id = $1", [.text(tenantID)]).first?.int(0) ?? 0
            }
        ]
    }

    static let expireKind = "queues.expire-messages"

    public var tasks: [TaskHandler] {
        [
            TaskHandler(kind: Self.expireKind) { context in
                let now = context.queue.now()
                let expired = try await context.fenced { db in try await QueueEngine.expire(db, now: now) }
                return TaskCompletion(result: .object([("expired", .int(Int64(expired)))]))
            }
        ]
    }

    public var schedules: [TaskSchedule] { [TaskSchedule(kind: Self.expireKind, every: .seconds(60))] }

    func engine(_ context: RouteContext) -> QueueEngine { QueueEngine(environment: context.environment, wakeups: self.wakeups) }

    // MARK: - Shapes

    struct QueueView {
        var queue: QueueRecord
        var counts: QueueCounts?
    }

    static let queueShape = ResponseShape<QueueView>("Queue") {
        $0.string("name") { $0.queue.name }
        $0.boolean("fifo", "First-in-first-out per message group, with deduplication; the name ends in .fifo.") { $0.queue.fifo }
        $0.integer("visibility_timeout", "Seconds a received message stays hidden from other receivers.") { $0.queue.settings.visibilityTimeout }
        $0.integer("delay_seconds", "Seconds a new message waits before it can be received.") { $0.queue.settings.delay }
        $0.integer("retention_seconds", "Seconds a message is kept.") { $0.queue.settings.retention }
        $0.integer("maximum_message_bytes", "The largest message (body and attributes).") { $0.queue.settings.maximumMessageBytes }
        $0.integer("receive_wait_seconds", "How long a receive waits for a message when it does not say.") { $0.queue.settings.receiveWait }
        $0.optionalString("dead_letter_queue", "Where messages go after max_receive_count receives.") { $0.queue.settings.deadLetterQueue }
        $0.optionalInteger("max_receive_count") { $0.queue.settings.maxReceiveCount }
        $0.boolean("content_based_deduplication", "FIFO: deduplicate by the body's SHA-256 when a send has no deduplication id.") {
            $0.queue.settings.contentBasedDeduplication
        }
        $0.optionalInteger("messages_visible", "Receivable now (in answers for one queue).") { $0.counts?.visible }
        $0.optionalInteger("messages_in_flight", "Received and hidden until their visibility timeout ends.") { $0.counts?.inFlight }
        $0.optionalInteger("messages_delayed", "Sent with a delay that has not ended.") { $0.counts?.delayed }
        $0.integer("version", "Raised by every change of the settings; the ETag.") { $0.queue.version }
        $0.time("created_at") { $0.queue.createdAt }
        $0.time("updated_at") { $0.queue.updatedAt }
    }

    static let queueList = ListShape("QueueList", itemsKey: "queues", item: Self.queueShape)

    static let sentShape = ResponseShape<SentMessage>("SentMessage") {
        $0.string("message_id") { $0.id }
        $0.string("body_md5", "Hex MD5 of the body's UTF-8.") { $0.bodyMD5 }
        $0.optionalString("attributes_md5", "MD5 of the attributes as SQS computes it.") { $0.attributesMD5 }
        $0.integer("sequence", "Its place in the queue (FIFO: the order within its group).") { $0.sequence }
        $0.boolean("duplicate", "FIFO: a send with this deduplication id was stored in the last 5 minutes; this one stored nothing.") {
            $0.duplicate
        }
    }

    static let messageShape = ResponseShape<ReceivedMessage>("Message") {
        $0.string("message_id") { $0.id }
        $0.string("receipt_handle", "Deletes the message or changes its visibility; only the newest receive's handle works.") { $0.receipt }
        $0.string("body") { $0.body }
        $0.string("body_md5") { $0.bodyMD5 }
        $0.stringMap("attributes", "String and Number attributes by name; Binary ones as base64.") { message in
            message.attributes.map { name, attribute in (name, attribute.string ?? attribute.binary.map(Base64.encode) ?? "") }
        }
        $0.integer("receive_count", "How many times it was received, this time included.") { $0.receiveCount }
        $0.time("sent_at") { $0.sentAt }
        $0.time("first_received_at") { $0.firstReceivedAt }
        $0.optionalString("group_id") { $0.groupID }
        $0.optionalString("deduplication_id") { $0.deduplicationID }
        $0.integer("sequence") { $0.sequence }
    }

    struct Received {
        var messages: [ReceivedMessage]
    }

    static let receivedShape = ResponseShape<Received>("ReceivedMessages") {
        $0.array("messages", Self.messageShape) { $0.messages }
    }

    struct Purged {
        var count: Int
    }

    static let purgedShape = ResponseShape<Purged>("PurgedQueue") {
        $0.integer("purged", "How many messages were deleted.") { Int64($0.count) }
    }

    // MARK: - Routes

    static let settingFields: [BodySchema.Field] = [
        .integer("visibility_timeout", "Seconds, 0 to 43200 (default 30)."),
        .integer("delay_seconds", "Seconds, 0 to 900 (default 0)."),
        .integer("retention_seconds", "Seconds, 60 to 1209600 (default 345600: 4 days)."),
        .integer("maximum_message_bytes", "1024 to 262144 (default 262144)."),
        .integer("receive_wait_seconds", "0 to 20 (default 0)."),
        .string("dead_letter_queue", required: false, maxLength: 80, "A queue of the same kind in this tenant; \"\" removes it."),
        .integer("max_receive_count", "1 to 1000: receives before a message goes to the dead-letter queue."),
        .boolean("content_based_deduplication", "FIFO only."),
    ]

    static let sendLimit = 6 * Int(MessageChecks.maximumMessageBytes) + 64 * 1024

    public var routes: [Route] {
        let read = Access.permission(Permission("queue:read")!)
        let receive = Access.permission(Permission("queue:receive")!)
        var send = RouteSpec(
            method: "POST", path: "/queues/{name}/messages", operationID: "sendMessage",
            summary: "Send a message (Idempotency-Key makes a retry return the first answer instead of a second message).",
            access: .permission(Permission("queue:send")!),
            body: BodySchema([
                .string("body", maxLength: Int(MessageChecks.maximumMessageBytes), "Up to the queue's maximum_message_bytes of text."),
                .stringMap("attributes", maxEntries: MessageChecks.maximumAttributes, "String attributes by name (up to 10)."),
                .integer("delay_seconds", "0 to 900; standard queues only (default: the queue's)."),
                .string("group_id", required: false, maxLength: 128, "FIFO: the message group (required there)."),
                .string("deduplication_id", required: false, maxLength: 128, "FIFO: sends with the same id within 5 minutes store one message."),
            ]),
            success: 201, response: .shape(Self.sentShape.component), errors: [(413, "message_too_large")])
        send.maximumBodyBytes = Self.sendLimit
        var sqs = RouteSpec(
            method: "POST", path: "/sqs", operationID: "sqs",
            summary: "The SQS-compatible endpoint: the AWS JSON 1.0 protocol (X-Amz-Target: AmazonSQS.<Operation>), signed with SigV4 by one of the tenant's storage keys; answers in that protocol. See docs/services/queues.md.",
            access: .anonymous, success: 200, response: .anyObject)
        sqs.rawBodyType = SQSEndpoint.contentType
        sqs.maximumBodyBytes = 2 * 1024 * 1024
        var sqsQueue = sqs
        sqsQueue.path = "/sqs/{tenant}/{queue}"
        sqsQueue.operationID = "sqsQueueURL"
        sqsQueue.summary = "The same endpoint at a queue's URL, for clients that post to it."
        return [
            Route(
                method: "POST", path: "/queues", operationID: "createQueue", summary: "Create a queue.",
                access: .permission(Permission("queue:create")!),
                body: BodySchema(
                    [
                        .string("name", maxLength: 80, "1 to 80 of letters, digits, - and _; a FIFO queue's ends in .fifo."),
                        .boolean("fifo", "A FIFO queue (default false)."),
                    ] + Self.settingFields),
                success: 201, response: .shape(Self.queueShape.component), errors: [(409, "queue_exists")]
            ) { context in try await self.create(context) },
            Route(
                method: "GET", path: "/queues", operationID: "listQueues", summary: "The tenant's queues by name.", access: read,
                success: 200, response: .shape(Self.queueList.component),
                query: [QueryParameter("prefix", "Only names that start with it.")], paginated: true
            ) { context in try await self.list(context) },
            Route(
                method: "GET", path: "/queues/{name}", operationID: "getQueue",
                summary: "One queue with how many messages it holds; its ETag.", access: read, success: 200,
                response: .shape(Self.queueShape.component)
            ) { context in try await self.get(context) },
            Route(
                method: "PATCH", path: "/queues/{name}", operationID: "updateQueue", summary: "Change a queue's settings.",
                access: .permission(Permission("queue:update")!), body: BodySchema(Self.settingFields), success: 200,
                response: .shape(Self.queueShape.component), conditional: true
            ) { context in try await self.update(context) },
            Route(
                method: "DELETE", path: "/queues/{name}", operationID: "deleteQueue", summary: "Delete a queue and its messages.",
                access: .permission(Permission("queue:delete")!), success: 204, response: .empty, conditional: true
            ) { context in try await self.delete(context) },
            Route(
                method: "POST", path: "/queues/{name}/purge", operationID: "purgeQueue", summary: "Delete every message of a queue.",
                access: .permission(Permission("queue:purge")!), success: 200, response: .shape(Self.purgedShape.component)
            ) { context in try await self.purge(context) },
            Route(send) { context in try await self.send(context) },
            Route(
                method: "POST", path: "/queues/{name}/messages/receive", operationID: "receiveMessages",
                summary: "Receive up to max_messages (1 to 10), waiting up to wait_seconds (0 to 20) for one to arrive; each is hidden for its visibility timeout.",
                access: receive,
                body: BodySchema([
                    .integer("max_messages", "1 to 10 (default 1)."),
                    .integer("visibility_timeout", "Seconds, 0 to 43200 (default: the queue's)."),
                    .integer("wait_seconds", "0 to 20 (default: the queue's receive_wait_seconds)."),
                ]),
                success: 200, response: .shape(Self.receivedShape.component)
            ) { context in try await self.receive(context) },
            Route(
                method: "DELETE", path: "/queues/{name}/messages/{receipt}", operationID: "deleteMessage",
                summary: "Delete a received message by its newest receipt handle.", access: receive, success: 204, response: .empty,
                errors: [(400, "invalid_request"), (409, "receipt_stale")]
            ) { context in try await self.deleteMessage(context) },
            Route(
                method: "POST", path: "/queues/{name}/messages/{receipt}/visibility", operationID: "changeMessageVisibility",
                summary: "Hide a received message for timeout more seconds from now (0: visible at once).", access: receive,
                body: BodySchema([.integer("timeout", required: true, "Seconds, 0 to 43200.")]), success: 204, response: .empty,
                errors: [(409, "receipt_stale"), (409, "message_not_in_flight")]
            ) { context in try await self.changeVisibility(context) },
            Route(sqs) { context in await self.sqs(context) },
            Route(sqsQueue) { context in await self.sqs(context) },
        ]
    }

    // MARK: - Handlers

    /// The settings a body sets, over `settings`.
    static func apply(_ body: RequestBody, to settings: inout QueueSettings) {
        if let value = body.integer("visibility_timeout") { settings.visibilityTimeout = value }
        if let value = body.integer("delay_seconds") { settings.delay = value }
        if let value = body.integer("retention_seconds") { settings.retention = value }
        if let value = body.integer("maximum_message_bytes") { settings.maximumMessageBytes = value }
        if let value = body.integer("receive_wait_seconds") { settings.receiveWait = value }
        if let value = body.boolean("content_based_deduplication") { settings.contentBasedDeduplication = value }
        if let value = body.string("dead_letter_queue") {
            settings.deadLetterQueue = value.isEmpty ? nil : value
            if value.isEmpty { settings.maxReceiveCount = nil }
        }
        if let value = body.integer("max_receive_count") { settings.maxReceiveCount = value }
    }

    func create(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let name = context.body.string("name") ?? ""
        var settings = QueueSettings()
        Self.apply(context.body, to: &settings)
        let answer: @Sendable (QueueRecord) -> APIResponse = { queue in
            APIResponse.json(201, Self.queueShape.json(QueueView(queue: queue))).tagged(version: queue.version)
        }
        let recorder = context.idempotency
        let (queue, _) = try await self.engine(context).createQueue(
            tenantID: caller.tenantID, name: name, fifo: context.body.boolean("fifo") ?? false, settings: settings, sameIsSuccess: false
        ) { queue, db in try await recorder?.record(answer(queue), in: db) }
        context.environment.logger.info(
            "queue created", metadata: ["request-id": "\(context.request.requestID)", "tenant-id": "\(caller.tenantID)", "queue": "\(name)"])
        return answer(queue)
    }

    func list(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let page = try context.page()
        let queues = try await self.engine(context).queues(
            tenantID: caller.tenantID, prefix: context.request.query["prefix"] ?? "", after: page.after ?? "", limit: page.fetchLimit)
        let (items, next) = page.finish(queues.map { QueueView(queue: $0) }, key: \.queue.name)
        return .json(200, Self.queueList.json(items, nextToken: next))
    }

    func get(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let engine = self.engine(context)
        let queue = try await engine.queue(tenantID: caller.tenantID, name: context.parameter("name"))
        let counts = try await engine.counts(tenantID: caller.tenantID, name: queue.name)
        return APIResponse.json(200, Self.queueShape.json(QueueView(queue: queue, counts: counts))).tagged(version: queue.version)
    }

    func update(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let body = context.body
        let queue = try await self.engine(context).update(
            tenantID: caller.tenantID, name: context.parameter("name"), expectedVersion: { version in try context.requireMatch(version: version) }
        ) { settings in Self.apply(body, to: &settings) }
        return APIResponse.json(200, Self.queueShape.json(QueueView(queue: queue))).tagged(version: queue.version)
    }

    func delete(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        try await self.engine(context).deleteQueue(
            tenantID: caller.tenantID, name: context.parameter("name"), expectedVersion: { version in try context.requireMatch(version: version) })
        context.environment.logger.info(
            "queue deleted",
            metadata: ["request-id": "\(context.request.requestID)", "tenant-id": "\(caller.tenantID)", "queue": "\(context.parameter("name"))"])
        return .noContent
    }

    func purge(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let count = try await self.engine(context).purge(tenantID: caller.tenantID, name: context.parameter("name"))
        return .json(200, Self.purgedShape.json(Purged(count: count)))
    }

    func send(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        var message = OutgoingMessage(body: context.body.string("body") ?? "")
        message.attributes = (context.body.object("attributes") ?? []).compactMap { name, value in
            if case .string(let text) = value { (name, MessageAttribute(dataType: "String", string: text)) } else { nil }
        }
        message.delay = context.body.integer("delay_seconds")
        message.groupID = context.body.string("group_id")
        message.deduplicationID = context.body.string("deduplication_id")
        let recorder = context.idempotency
        let results = try await self.engine(context).send(tenantID: caller.tenantID, queue: context.parameter("name"), [message]) {
            results, db in
            if case .success(let sent)? = results.first { try await recorder?.record(.json(201, Self.sentShape.json(sent)), in: db) }
        }
        switch results.first {
        case .success(let sent)?: return .json(201, Self.sentShape.json(sent))
        case .failure(let error)?: throw error
        case nil: throw APIError.internalError
        }
    }

    func receive(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let messages = try await self.engine(context).receive(
            tenantID: caller.tenantID, queue: context.parameter("name"), maximum: Int(clamping: context.body.integer("max_messages") ?? 1),
            visibilityTimeout: context.body.integer("visibility_timeout"), wait: context.body.integer("wait_seconds"))
        return .json(200, Self.receivedShape.json(Received(messages: messages)))
    }

    func deleteMessage(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        switch try await self.engine(context).delete(tenantID: caller.tenantID, queue: context.parameter("name"), receipt: context.parameter("receipt")) {
        case .deleted: return .noContent
        case .stale: throw QueuesError.receiptStale
        case .gone: throw QueuesError.messageNotFound
        }
    }

    func changeVisibility(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        try await self.engine(context).changeVisibility(
            tenantID: caller.tenantID, queue: context.parameter("name"), receipt: context.parameter("receipt"),
            timeout: context.body.integer("timeout") ?? 0)
        return .noContent
    }

    func sqs(_ context: RouteContext) async -> APIResponse {
        let endpoint = SQSEndpoint(
            engine: self.engine(context), credentials: self.credentials, cache: self.cache,
            now: { Date(timeIntervalSince1970: Double(context.environment.clock.unixMilliseconds()) / 1000) })
        return await endpoint.answer(context.request)
    }
}
