import Database
import SQLite
import Foundation
import Hashing
import Logging
import ServiceContract

/// A message to send.
struct OutgoingMessage: Sendable {
    var body: String
    var attributes: [(String, MessageAttribute)] = []
    /// Seconds before it can be received; nil: the queue's delay. Standard queues only.
    var delay: Int64?
    /// FIFO: the group whose messages are received in order, one in flight at a time.
    var groupID: String?
    /// FIFO: sends with the same id inside 5 minutes store one message.
    var deduplicationID: String?
}

/// How a delete by receipt handle ended.
enum DeleteOutcome: Sendable, Equatable {
    case deleted
    /// The message was received again since: the handle is not the newest (SQS answers success).
    case stale
    /// No such message any more (deleted, expired, moved to the dead-letter queue).
    case gone
}

/// The queues' operations over the control-plane database, shared by the REST API and the SQS endpoint.
///
/// Every operation is one transaction. Receiving marks messages in flight in the same statement that
/// picks them: on PostgreSQL the pick locks rows with `FOR UPDATE SKIP LOCKED`, so receivers in any
/// number of processes never get one message inside its visibility timeout; FIFO receives also lock
/// the queue's row, so a group has at most one receiver at a time. SQLite runs one writing
/// transaction at a time.
struct QueueEngine: Sendable {
    let environment: ServiceEnvironment
    let wakeups: Wakeups

    /// How often a long-polling receive looks again for messages that another process sent, or
    /// whose delay or visibility timeout ended (sends in this process wake it at once).
    static let pollInterval: Duration = .milliseconds(200)
    /// FIFO deduplication window (5 minutes, as SQS).
    static let deduplicationWindow: Int64 = 300_000
    /// Most messages one receive returns.
    static let maximumReceive = 10
    /// Longest long poll, in seconds.
    static let maximumWait: Int64 = 20

    static let quota = QuotaResource(rawValue: "queues")

    private var database: any SQLDatabase { self.environment.database }
    private var dialect: SQLDialect { self.environment.database.dialect }
    private func now() -> Int64 { self.environment.clock.unixMilliseconds() }

    // MARK: - Names and settings

    /// Queue names as SQS allows them: 1 to 80 of letters, digits, `-` and `_`; FIFO queues end in `.fifo`.
    static func checkName(_ name: String, fifo: Bool) throws(QueuesError) {
        let stem = fifo ? (name.hasSuffix(".fifo") ? String(name.dropLast(5)) : "") : name
        guard stem.isName(maxLength: 80), name.utf8.count <= 80 else {
            if !fifo && name.hasSuffix(".fifo") {
                throw QueuesError.invalidParameter("a queue whose name ends in .fifo must be a FIFO queue (set fifo / FifoQueue)")
            }
            if fifo && !name.hasSuffix(".fifo") { throw QueuesError.invalidParameter("a FIFO queue's name must end in .fifo") }
            throw QueuesError.invalidName(name)
        }
    }

    /// Checks the bounds of each setting, and the dead-letter queue: in the tenant, of the same kind, not the queue itself.
    func check(_ settings: QueueSettings, name: String, fifo: Bool, tenantID: String, in db: any SQLSession) async throws {
        func bound(_ value: Int64, _ range: ClosedRange<Int64>, _ attribute: String) throws(QueuesError) {
            guard range.contains(value) else {
                throw QueuesError.invalidAttribute(attribute, "must be \(range.lowerBound) to \(range.upperBound); it is \(value)")
            }
        }
        try bound(settings.visibilityTimeout, 0...43_200, "VisibilityTimeout")
        try bound(settings.delay, 0...900, "DelaySeconds")
        try bound(settings.retention, 60...1_209_600, "MessageRetentionPeriod")
        try bound(settings.maximumMessageBytes, 1024...MessageChecks.maximumMessageBytes, "MaximumMessageSize")
        try bound(settings.receiveWait, 0...Self.maximumWait, "ReceiveMessageWaitTimeSeconds")
        if settings.contentBasedDeduplication && !fifo {
            throw QueuesError.invalidAttribute("ContentBasedDeduplication", "only FIFO queues deduplicate")
        }
        switch (settings.deadLetterQueue, settings.maxReceiveCount) {
        case (nil, nil): break
        case (let target?, let count?):
            try bound(count, 1...1000, "maxReceiveCount")
            guard target != name else { throw QueuesError.invalidAttribute("RedrivePolicy", "a queue cannot be its own dead-letter queue") }
            guard let dlq = try await QueuesSchema.queue(db, tenantID: tenantID, name: target, dialect: self.dialect) else {
                throw QueuesError.invalidAttribute("RedrivePolicy", "the dead-letter queue \(target) does not exist")
            }
            guard dlq.fifo == fifo else {
                throw QueuesError.invalidAttribute("RedrivePolicy", "a \(fifo ? "FIFO" : "standard") queue's dead-letter queue must also be \(fifo ? "FIFO" : "standard")")
            }
        default:
            throw QueuesError.invalidAttribute("RedrivePolicy", "needs both the dead-letter queue and maxReceiveCount")
        }
    }

    // MARK: - Queues

    /// Creates a queue. With `sameIsSuccess` (SQS `CreateQueue`), an existing queue with the same kind and
    /// settings is answered as created; otherwise an existing name is `queue_exists`.
    /// - Returns: The queue and whether this call made it.
    /// - Parameter inTransaction: Runs in the creating transaction with the new queue (the REST API
    ///   stores its `Idempotency-Key` answer there, so the queue and the answer commit together).
    func createQueue(
        tenantID: String, name: String, fifo: Bool, settings: QueueSettings, sameIsSuccess: Bool,
        inTransaction: (@Sendable (QueueRecord, any SQLSession) async throws -> Void)? = nil
    ) async throws -> (QueueRecord, created: Bool) {
        try Self.checkName(name, fifo: fifo)
        let now = self.now()
        return try await self.database.transaction { db in
            if let existing = try await QueuesSchema.queue(db, tenantID: tenantID, name: name, dialect: self.dialect) {
                if sameIsSuccess && existing.fifo == fifo && existing.settings == settings { return (existing, false) }
                throw QueuesError.queueExists(name)
            }
            try await self.check(settings, name: name, fifo: fifo, tenantID: tenantID, in: db)
            try await self.environment.quotas.reserve(Self.quota, tenantID: tenantID, in: db)
            let s = settings
            try await db.query(
                """
                INSERT INTO queues_queues (\(QueuesSchema.queueColumns), next_sequence)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 1, $12, $12, 1)
                """,
                [
                    .text(tenantID), .text(name), .integer(fifo ? 1 : 0), .integer(s.visibilityTimeout), .integer(s.delay),
                    .integer(s.retention), .integer(s.maximumMessageBytes), .integer(s.receiveWait), SQLValue(s.deadLetterQueue),
                    SQLValue(s.maxReceiveCount), .integer(s.contentBasedDeduplication ? 1 : 0), .integer(now),
                ])
            let record = QueueRecord(tenantID: tenantID, name: name, fifo: fifo, settings: settings, version: 1, createdAt: now, updatedAt: now)
            try await inTransaction?(record, db)
            return (record, true)
        }
    }

    /// The queue, or `queue_not_found`.
    func queue(tenantID: String, name: String) async throws -> QueueRecord {
        guard
            let row = try await self.database.query(
                "SELECT \(QueuesSchema.queueColumns) FROM queues_queues WHERE tenant_id = $1 AND name = $2", [.text(tenantID), .text(name)]
            ).first
        else { throw QueuesError.queueNotFound(name) }
        return QueuesSchema.queue(row)
    }

    /// The tenant's queues by name, after `after`, with `prefix`.
    func queues(tenantID: String, prefix: String, after: String, limit: Int) async throws -> [QueueRecord] {
        let escaped = prefix.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "%", with: "\\%")
            .replacingOccurrences(of: "_", with: "\\_")
        return try await self.database.query(
            """
            SELECT \(QueuesSchema.queueColumns) FROM queues_queues WHERE tenant_id = $1 AND name > $2 AND name LIKE $3 ESCAPE '\\'
            ORDER BY name LIMIT \(limit)
            """, [.text(tenantID), .text(after), .text(escaped + "%")]
        ).map { QueuesSchema.queue($0) }
    }

    /// The names of the tenant's queues whose dead-letter queue is `name`.
    func deadLetterSources(tenantID: String, of name: String) async throws -> [String] {
        try await self.database.query(
            "SELECT name FROM queues_queues WHERE tenant_id = $1 AND dead_letter_queue = $2 ORDER BY name", [.text(tenantID), .text(name)]
        ).map { $0.text(0) }
    }

    /// What the queue holds now.
    func counts(tenantID: String, name: String) async throws -> QueueCounts {
        let now = self.now()
        let row = try await self.database.query(
            """
            SELECT SUM(CASE WHEN visible_at <= $3 THEN 1 ELSE 0 END),
                   SUM(CASE WHEN visible_at > $3 AND receipt IS NOT NULL THEN 1 ELSE 0 END),
                   SUM(CASE WHEN visible_at > $3 AND receipt IS NULL THEN 1 ELSE 0 END)
            FROM queues_messages WHERE tenant_id = $1 AND queue_name = $2 AND expires_at > $3
            """, [.text(tenantID), .text(name), .integer(now)]
        ).first
        return QueueCounts(visible: row?.int(0) ?? 0, inFlight: row?.int(1) ?? 0, delayed: row?.int(2) ?? 0)
    }

    /// Changes a queue's settings (`change` gets the current ones); `expectedVersion` for `If-Match`.
    func update(
        tenantID: String, name: String, expectedVersion: (@Sendable (Int64) throws -> Void)? = nil,
        _ change: @escaping @Sendable (inout QueueSettings) throws -> Void
    ) async throws -> QueueRecord {
        let now = self.now()
        return try await self.database.transaction { db in
            guard var queue = try await QueuesSchema.queue(db, tenantID: tenantID, name: name, dialect: self.dialect, forUpdate: true) else {
                throw QueuesError.queueNotFound(name)
            }
            try expectedVersion?(queue.version)
            try change(&queue.settings)
            try await self.check(queue.settings, name: name, fifo: queue.fifo, tenantID: tenantID, in: db)
            queue.version += 1
            queue.updatedAt = now
            let s = queue.settings
            try await db.query(
                """
                UPDATE queues_queues SET visibility_timeout = $3, delay = $4, retention = $5, maximum_message_bytes = $6,
                receive_wait = $7, dead_letter_queue = $8, max_receive_count = $9, content_based_deduplication = $10,
                version = $11, updated_at = $12 WHERE tenant_id = $1 AND name = $2
                """,
                [
                    .text(tenantID), .text(name), .integer(s.visibilityTimeout), .integer(s.delay), .integer(s.retention),
                    .integer(s.maximumMessageBytes), .integer(s.receiveWait), SQLValue(s.deadLetterQueue), SQLValue(s.maxReceiveCount),
                    .integer(s.contentBasedDeduplication ? 1 : 0), .integer(queue.version), .integer(now),
                ])
            return queue
        }
    }

    /// Deletes a queue and its messages. Queues that name it as their dead-letter queue keep
    /// delivering their messages (nothing is moved to a queue that does not exist).
    func deleteQueue(tenantID: String, name: String, expectedVersion: (@Sendable (Int64) throws -> Void)? = nil) async throws {
        try await self.database.transaction { db in
            guard let queue = try await QueuesSchema.queue(db, tenantID: tenantID, name: name, dialect: self.dialect, forUpdate: true) else {
                throw QueuesError.queueNotFound(name)
            }
            try expectedVersion?(queue.version)
            let key: [SQLValue] = [.text(tenantID), .text(name)]
            try await db.query("DELETE FROM queues_messages WHERE tenant_id = $1 AND queue_name = $2", key)
            try await db.query("DELETE FROM queues_deduplication WHERE tenant_id = $1 AND queue_name = $2", key)
            try await db.query("DELETE FROM queues_queues WHERE tenant_id = $1 AND name = $2", key)
        }
    }

    /// Deletes every message of a queue.
    /// - Returns: How many were deleted.
    func purge(tenantID: String, name: String) async throws -> Int {
        try await self.database.transaction { db in
            guard try await QueuesSchema.queue(db, tenantID: tenantID, name: name, dialect: self.dialect) != nil else {
                throw QueuesError.queueNotFound(name)
            }
            return try await db.query(
                "DELETE FROM queues_messages WHERE tenant_id = $1 AND queue_name = $2 RETURNING id", [.text(tenantID), .text(name)]
            ).count
        }
    }

    // MARK: - Sending

    /// Checks a message against its queue; nil when it may be sent.
    static func problem(with message: OutgoingMessage, queue: QueueRecord) -> QueuesError? {
        do throws(QueuesError) {
            guard !message.body.isEmpty else { throw QueuesError.missingParameter("MessageBody") }
            guard MessageChecks.isAllowedText(message.body) else { throw QueuesError.invalidCharacters("the message body") }
            try MessageChecks.checkAttributes(message.attributes)
            let size = MessageChecks.size(body: message.body, attributes: message.attributes)
            guard size <= queue.settings.maximumMessageBytes else { throw QueuesError.tooLarge(size, limit: queue.settings.maximumMessageBytes) }
            if let delay = message.delay {
                guard !queue.fifo else {
                    throw QueuesError.invalidParameter("a FIFO queue takes no per-message delay; set the queue's DelaySeconds")
                }
                guard (0...900).contains(delay) else { throw QueuesError.invalidParameter("DelaySeconds must be 0 to 900; it is \(delay)") }
            }
            if queue.fifo {
                guard let group = message.groupID else { throw QueuesError.missingParameter("MessageGroupId") }
                try Self.checkToken(group, "MessageGroupId")
                if let id = message.deduplicationID {
                    try Self.checkToken(id, "MessageDeduplicationId")
                } else if !queue.settings.contentBasedDeduplication {
                    throw QueuesError.invalidParameter(
                        "The queue should either have ContentBasedDeduplication enabled or MessageDeduplicationId provided explicitly")
                }
            } else {
                if message.groupID != nil {
                    throw QueuesError.invalidParameter("MessageGroupId is for FIFO queues; \(queue.name) is a standard queue")
                }
                if message.deduplicationID != nil {
                    throw QueuesError.invalidParameter("MessageDeduplicationId is for FIFO queues; \(queue.name) is a standard queue")
                }
            }
            return nil
        } catch {
            return error
        }
    }

    /// Group and deduplication ids: 1 to 128 of printable ASCII.
    private static func checkToken(_ text: String, _ name: String) throws(QueuesError) {
        guard !text.isEmpty, text.utf8.count <= 128, text.utf8.allSatisfy({ (0x21...0x7e).contains($0) }) else {
            throw QueuesError.invalidParameter("\(name) must be 1 to 128 printable ASCII characters")
        }
    }

    /// Sends messages to a queue in one transaction; each is checked on its own (SQS batches answer
    /// per entry), and those that pass are stored and acknowledged together.
    /// - Parameter inTransaction: Runs in the sending transaction with the results (for the REST API's
    ///   `Idempotency-Key` answer).
    func send(
        tenantID: String, queue name: String, _ messages: [OutgoingMessage],
        inTransaction: (@Sendable ([Result<SentMessage, QueuesError>], any SQLSession) async throws -> Void)? = nil
    ) async throws -> [Result<SentMessage, QueuesError>] {
        let now = self.now()
        let results = try await self.database.transaction { db -> [Result<SentMessage, QueuesError>] in
            let results = try await Self.send(db, tenantID: tenantID, queue: name, messages, now: now)
            try await inTransaction?(results, db)
            return results
        }
        if results.contains(where: { if case .success(let sent) = $0 { !sent.duplicate } else { false } }) {
            await self.wakeups.signal(Wakeups.key(tenantID: tenantID, queue: name))
        }
        return results
    }

    /// Sends inside the caller's transaction `db` (another service's task, such as a notification's
    /// delivery to a queue, so that the message and the task's completion commit together).
    static func send(_ db: any SQLSession, tenantID: String, queue name: String, _ messages: [OutgoingMessage], now: Int64) async throws
        -> [Result<SentMessage, QueuesError>]
    {
        guard
            let row = try await db.query(
                """
                UPDATE queues_queues SET next_sequence = next_sequence + $3 WHERE tenant_id = $1 AND name = $2
                RETURNING next_sequence, \(QueuesSchema.queueColumns)
                """, [.text(tenantID), .text(name), .integer(Int64(messages.count))]
            ).first
        else { throw QueuesError.queueNotFound(name) }
        let queue = QueuesSchema.queue(row, from: 1)
        var sequence = row.int(0) - Int64(messages.count)
        var results: [Result<SentMessage, QueuesError>] = []
        for message in messages {
            defer { sequence += 1 }
            if let problem = Self.problem(with: message, queue: queue) {
                results.append(.failure(problem))
                continue
            }
            results.append(.success(try await Self.store(message, in: queue, sequence: sequence, now: now, db)))
        }
        return results
    }

    private static func store(_ message: OutgoingMessage, in queue: QueueRecord, sequence: Int64, now: Int64, _ db: any SQLSession) async throws
        -> SentMessage
    {
        let bodyMD5 = MessageChecks.bodyMD5(message.body)
        let attributesMD5 = MessageChecks.attributesMD5(message.attributes)
        let id = MessageChecks.newMessageID()
        var deduplicationID: String?
        if queue.fifo {
            let dedup = message.deduplicationID ?? Hex.encode(Digests.sha256(Array(message.body.utf8)))
            deduplicationID = dedup
            if let earlier = try await db.query(
                """
                SELECT message_id, sequence, body_md5, attributes_md5 FROM queues_deduplication
                WHERE tenant_id = $1 AND queue_name = $2 AND deduplication_id = $3 AND expires_at > $4
                """, [.text(queue.tenantID), .text(queue.name), .text(dedup), .integer(now)]
            ).first {
                return SentMessage(
                    id: earlier.text(0), bodyMD5: earlier.text(2), attributesMD5: earlier.optionalText(3), sequence: earlier.int(1),
                    duplicate: true)
            }
            try await db.query(
                """
                INSERT INTO queues_deduplication (tenant_id, queue_name, deduplication_id, message_id, sequence, body_md5, attributes_md5, expires_at)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                ON CONFLICT (tenant_id, queue_name, deduplication_id) DO UPDATE SET message_id = $4, sequence = $5, body_md5 = $6,
                attributes_md5 = $7, expires_at = $8
                """,
                [
                    .text(queue.tenantID), .text(queue.name), .text(dedup), .text(id), .integer(sequence), .text(bodyMD5),
                    SQLValue(attributesMD5), .integer(now + Self.deduplicationWindow),
                ])
        }
        let delay = message.delay ?? queue.settings.delay
        try await db.query(
            """
            INSERT INTO queues_messages (id, tenant_id, queue_name, sequence, body, attributes, body_md5, attributes_md5, sent_at,
            visible_at, expires_at, receive_count, first_received_at, receipt, group_id, deduplication_id)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 0, NULL, NULL, $12, $13)
            """,
            [
                .text(id), .text(queue.tenantID), .text(queue.name), .integer(sequence), .text(message.body),
                .text(AttributeCoding.encode(message.attributes)), .text(bodyMD5), SQLValue(attributesMD5), .integer(now),
                .integer(now + delay * 1000), .integer(now + queue.settings.retention * 1000), SQLValue(message.groupID),
                SQLValue(deduplicationID),
            ])
        return SentMessage(id: id, bodyMD5: bodyMD5, attributesMD5: attributesMD5, sequence: sequence, duplicate: false)
    }

    // MARK: - Receiving

    /// Receives up to `maximum` messages, waiting up to `wait` seconds (nil: the queue's
    /// `ReceiveMessageWaitTimeSeconds`) for one to arrive. Each message received is hidden for
    /// `visibilityTimeout` seconds (nil: the queue's) under a new receipt handle.
    func receive(tenantID: String, queue name: String, maximum: Int, visibilityTimeout: Int64?, wait: Int64?) async throws
        -> [ReceivedMessage]
    {
        guard (1...Self.maximumReceive).contains(maximum) else {
            throw QueuesError.invalidParameter("MaxNumberOfMessages must be 1 to \(Self.maximumReceive); it is \(maximum)")
        }
        if let visibilityTimeout, !(0...43_200).contains(visibilityTimeout) {
            throw QueuesError.invalidParameter("VisibilityTimeout must be 0 to 43200; it is \(visibilityTimeout)")
        }
        if let wait, !(0...Self.maximumWait).contains(wait) {
            throw QueuesError.invalidParameter("WaitTimeSeconds must be 0 to \(Self.maximumWait); it is \(wait)")
        }
        let key = Wakeups.key(tenantID: tenantID, queue: name)
        var deadline: ContinuousClock.Instant?
        while true {
            let seen = await self.wakeups.generation(key)
            let (queue, messages) = try await self.receiveOnce(tenantID: tenantID, queue: name, maximum: maximum, visibilityTimeout: visibilityTimeout)
            if !messages.isEmpty { return messages }
            let end = deadline ?? ContinuousClock.now + .seconds(wait ?? queue.settings.receiveWait)
            deadline = end
            let left = end - ContinuousClock.now
            if left <= .zero { return [] }
            await self.wakeups.wait(key, seen: seen, timeout: min(left, Self.pollInterval))
        }
    }

    /// One look for messages: moves those received `maxReceiveCount` times to the dead-letter queue,
    /// then marks up to `maximum` in flight and returns them, oldest first.
    private func receiveOnce(tenantID: String, queue name: String, maximum: Int, visibilityTimeout: Int64?) async throws
        -> (QueueRecord, [ReceivedMessage])
    {
        let now = self.now()
        let token = Hex.encode(SecureRandom.bytes(12))
        return try await self.database.transaction { db in
            // FIFO: the queue's row lock makes one receiver at a time pick among the groups.
            guard let queue = try await QueuesSchema.queue(db, tenantID: tenantID, name: name, dialect: self.dialect)
            else { throw QueuesError.queueNotFound(name) }
            if queue.fifo && self.dialect == .postgres {
                try await db.query("SELECT name FROM queues_queues WHERE tenant_id = $1 AND name = $2 FOR UPDATE", [.text(tenantID), .text(name)])
            }
            let skipLocked = self.dialect == .postgres ? " FOR UPDATE SKIP LOCKED" : ""
            let fifoReady =
                queue.fifo
                ? """
                 AND NOT EXISTS (SELECT 1 FROM queues_messages o WHERE o.tenant_id = m.tenant_id AND o.queue_name = m.queue_name
                AND o.group_id = m.group_id AND o.expires_at > $3 AND o.visible_at > $3 AND (o.receipt IS NOT NULL OR o.sequence < m.sequence))
                """ : ""
            let base: [SQLValue] = [.text(tenantID), .text(name), .integer(now)]
            var maxReceives = ""
            if let dlqName = queue.settings.deadLetterQueue, let limit = queue.settings.maxReceiveCount,
                let dlq = try await QueuesSchema.queue(db, tenantID: tenantID, name: dlqName, dialect: self.dialect)
            {
                maxReceives = " AND m.receive_count < \(limit)"
                let overdue = try await db.query(
                    """
                    SELECT m.id FROM queues_messages m WHERE m.tenant_id = $1 AND m.queue_name = $2 AND m.visible_at <= $3
                    AND m.expires_at > $3 AND m.receive_count >= \(limit)\(fifoReady) ORDER BY m.sequence LIMIT \(Self.maximumReceive)\(skipLocked)
                    """, base)
                if !overdue.isEmpty {
                    try await self.move(overdue.map { $0.text(0) }, to: dlq, now: now, db)
                }
            }
            let hide = now + (visibilityTimeout ?? queue.settings.visibilityTimeout) * 1000
            let rows = try await db.query(
                """
                UPDATE queues_messages SET receipt = id || '.' || $4, visible_at = $5, receive_count = receive_count + 1,
                first_received_at = COALESCE(first_received_at, $3)
                WHERE id IN (SELECT m.id FROM queues_messages m WHERE m.tenant_id = $1 AND m.queue_name = $2 AND m.visible_at <= $3
                AND m.expires_at > $3\(maxReceives)\(fifoReady) ORDER BY m.sequence LIMIT \(maximum)\(skipLocked))
                AND visible_at <= $3
                RETURNING \(QueuesSchema.messageColumns)
                """, base + [.text(token), .integer(hide)])
            return (queue, rows.map(QueuesSchema.message).sorted { $0.sequence < $1.sequence })
        }
    }

    /// Moves messages to the end of a dead-letter queue, visible at once, with their receive count reset
    /// and their original send time (their retention runs from it, as in SQS).
    private func move(_ ids: [String], to dlq: QueueRecord, now: Int64, _ db: any SQLSession) async throws {
        guard
            let row = try await db.query(
                "UPDATE queues_queues SET next_sequence = next_sequence + $3 WHERE tenant_id = $1 AND name = $2 RETURNING next_sequence",
                [.text(dlq.tenantID), .text(dlq.name), .integer(Int64(ids.count))]
            ).first
        else { return }
        var sequence = row.int(0) - Int64(ids.count)
        for id in ids {
            try await db.query(
                """
                UPDATE queues_messages SET queue_name = $2, sequence = $3, visible_at = $4, receipt = NULL, receive_count = 0,
                first_received_at = NULL, expires_at = sent_at + $5 WHERE id = $1
                """, [.text(id), .text(dlq.name), .integer(sequence), .integer(now), .integer(dlq.settings.retention * 1000)])
            sequence += 1
        }
        self.environment.logger.info(
            "messages moved to a dead-letter queue", metadata: ["tenant-id": "\(dlq.tenantID)", "queue": "\(dlq.name)", "count": "\(ids.count)"])
        await self.wakeups.signal(Wakeups.key(tenantID: dlq.tenantID, queue: dlq.name))
    }

    // MARK: - Receipts

    /// The message id in a receipt handle (`<message id>.<token>`), or `invalid_receipt`.
    static func messageID(ofReceipt receipt: String) throws(QueuesError) -> String {
        guard let dot = receipt.lastIndex(of: "."), receipt.utf8.count <= 200 else { throw QueuesError.invalidReceipt }
        let id = String(receipt[..<dot])
        let token = receipt[receipt.index(after: dot)...]
        guard id.utf8.count == 36, token.utf8.count == 24, token.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) })
        else { throw QueuesError.invalidReceipt }
        return id
    }

    /// Deletes the message a receipt handle was given for, if the handle is its newest.
    func delete(tenantID: String, queue name: String, receipt: String) async throws -> DeleteOutcome {
        let id = try Self.messageID(ofReceipt: receipt)
        return try await self.database.transaction { db in
            guard try await QueuesSchema.queue(db, tenantID: tenantID, name: name, dialect: self.dialect) != nil else {
                throw QueuesError.queueNotFound(name)
            }
            let key: [SQLValue] = [.text(id), .text(tenantID), .text(name)]
            if try await !db.query(
                "DELETE FROM queues_messages WHERE id = $1 AND tenant_id = $2 AND queue_name = $3 AND receipt = $4 RETURNING id",
                key + [.text(receipt)]
            ).isEmpty {
                return .deleted
            }
            let exists = try await db.query("SELECT id FROM queues_messages WHERE id = $1 AND tenant_id = $2 AND queue_name = $3", key)
            return exists.isEmpty ? .gone : .stale
        }
    }

    /// Changes how long a received message stays hidden, from now (0 makes it visible at once).
    func changeVisibility(tenantID: String, queue name: String, receipt: String, timeout: Int64) async throws {
        let id = try Self.messageID(ofReceipt: receipt)
        guard (0...43_200).contains(timeout) else {
            throw QueuesError.invalidParameter("VisibilityTimeout must be 0 to 43200; it is \(timeout)")
        }
        let now = self.now()
        try await self.database.transaction { db in
            guard try await QueuesSchema.queue(db, tenantID: tenantID, name: name, dialect: self.dialect) != nil else {
                throw QueuesError.queueNotFound(name)
            }
            let key: [SQLValue] = [.text(id), .text(tenantID), .text(name)]
            let changed = try await db.query(
                """
                UPDATE queues_messages SET visible_at = $6 WHERE id = $1 AND tenant_id = $2 AND queue_name = $3 AND receipt = $4
                AND visible_at > $5 RETURNING id
                """, key + [.text(receipt), .integer(now), .integer(now + timeout * 1000)])
            if !changed.isEmpty { return }
            guard let row = try await db.query("SELECT receipt FROM queues_messages WHERE id = $1 AND tenant_id = $2 AND queue_name = $3", key).first
            else { throw QueuesError.messageNotFound }
            throw row.optionalText(0) == receipt ? QueuesError.notInFlight : QueuesError.receiptStale
        }
        if timeout == 0 { await self.wakeups.signal(Wakeups.key(tenantID: tenantID, queue: name)) }
    }

    // MARK: - Expiry

    /// Deletes messages past their retention and deduplication ids past their window.
    /// - Returns: How many messages were deleted.
    static func expire(_ db: any SQLSession, now: Int64) async throws -> Int {
        try await db.query("DELETE FROM queues_deduplication WHERE expires_at <= $1", [.integer(now)])
        return try await db.query("DELETE FROM queues_messages WHERE expires_at <= $1 RETURNING id", [.integer(now)]).count
    }
}
