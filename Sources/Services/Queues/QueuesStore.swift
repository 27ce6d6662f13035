import Database
import SQLite
import Hashing
import ServiceContract

/// A queue's settings, as SQS names and bounds them.
struct QueueSettings: Sendable, Equatable {
    /// Seconds a received message stays hidden from other receivers (0 to 43 200; default 30).
    var visibilityTimeout: Int64 = 30
    /// Seconds a new message waits before it can be received (0 to 900).
    var delay: Int64 = 0
    /// Seconds a message is kept (60 to 1 209 600; default 4 days).
    var retention: Int64 = 345_600
    /// The largest body plus attributes, in bytes (1 024 to 262 144).
    var maximumMessageBytes: Int64 = 262_144
    /// Seconds a receive waits for a message when the request does not say (0 to 20).
    var receiveWait: Int64 = 0
    /// The dead-letter queue (same tenant, same kind) and after how many receives a message goes there.
    var deadLetterQueue: String?
    var maxReceiveCount: Int64?
    /// FIFO only: a message without a deduplication id is deduplicated by the SHA-256 of its body.
    var contentBasedDeduplication = false
}

/// A queue.
struct QueueRecord: Sendable, Equatable {
    var tenantID: String
    var name: String
    var fifo: Bool
    var settings: QueueSettings
    /// Raised by every change of its settings: its ETag.
    var version: Int64
    var createdAt: Int64
    var updatedAt: Int64
}

/// What a queue holds now (approximate while others send and receive).
struct QueueCounts: Sendable, Equatable {
    /// Visible: receivable now.
    var visible: Int64
    /// Received and hidden until their visibility timeout ends.
    var inFlight: Int64
    /// Sent with a delay that has not ended.
    var delayed: Int64
}

/// One message attribute (SQS `MessageAttributeValue`): a data type (`String`, `Number`, `Binary`,
/// optionally with a `.custom` suffix) and its value (binary values as bytes).
struct MessageAttribute: Sendable, Equatable {
    var dataType: String
    var string: String?
    var binary: [UInt8]?

    /// Binary values go by transport type 2, the others by 1 (the attribute MD5 depends on it).
    var isBinary: Bool { self.dataType.hasPrefix("Binary") }
}

/// A message as a receiver gets it.
struct ReceivedMessage: Sendable, Equatable {
    var id: String
    var receipt: String
    var body: String
    var attributes: [(String, MessageAttribute)]
    var bodyMD5: String
    var attributesMD5: String?
    var sentAt: Int64
    var receiveCount: Int64
    var firstReceivedAt: Int64
    var groupID: String?
    var deduplicationID: String?
    var sequence: Int64

    static func == (a: ReceivedMessage, b: ReceivedMessage) -> Bool {
        a.id == b.id && a.receipt == b.receipt && a.body == b.body && a.receiveCount == b.receiveCount
    }
}

/// What a send stored (or, for a FIFO duplicate inside the deduplication window, what the first send stored).
struct SentMessage: Sendable, Equatable {
    var id: String
    var bodyMD5: String
    var attributesMD5: String?
    var sequence: Int64
    /// True when a FIFO queue dropped this send as a duplicate of `id`.
    var duplicate: Bool
}

/// The service's tables (migration 1 of `queues`). Times are unix milliseconds, durations in queue
/// settings are seconds (as SQS states them), booleans are 0 and 1 so one SQL runs on SQLite and
/// PostgreSQL.
enum QueuesSchema {
    static let migrations = [
        Migration(version: 1, name: "queues, messages and FIFO deduplication", sql: """
            CREATE TABLE queues_queues (
                tenant_id TEXT NOT NULL,
                name TEXT NOT NULL,
                fifo BIGINT NOT NULL,
                visibility_timeout BIGINT NOT NULL,
                delay BIGINT NOT NULL,
                retention BIGINT NOT NULL,
                maximum_message_bytes BIGINT NOT NULL,
                receive_wait BIGINT NOT NULL,
                dead_letter_queue TEXT,
                max_receive_count BIGINT,
                content_based_deduplication BIGINT NOT NULL,
                next_sequence BIGINT NOT NULL,
                version BIGINT NOT NULL,
                created_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL,
                PRIMARY KEY (tenant_id, name)
            );
            CREATE TABLE queues_messages (
                id TEXT PRIMARY KEY,
                tenant_id TEXT NOT NULL,
                queue_name TEXT NOT NULL,
                sequence BIGINT NOT NULL,
                body TEXT NOT NULL,
                attributes TEXT NOT NULL,
                body_md5 TEXT NOT NULL,
                attributes_md5 TEXT,
                sent_at BIGINT NOT NULL,
                visible_at BIGINT NOT NULL,
                expires_at BIGINT NOT NULL,
                receive_count BIGINT NOT NULL,
                first_received_at BIGINT,
                receipt TEXT,
                group_id TEXT,
                deduplication_id TEXT
            );
            CREATE INDEX queues_messages_ready ON queues_messages (tenant_id, queue_name, visible_at, sequence);
            CREATE INDEX queues_messages_order ON queues_messages (tenant_id, queue_name, sequence);
            CREATE INDEX queues_messages_expiry ON queues_messages (expires_at);
            CREATE TABLE queues_deduplication (
                tenant_id TEXT NOT NULL,
                queue_name TEXT NOT NULL,
                deduplication_id TEXT NOT NULL,
                message_id TEXT NOT NULL,
                sequence BIGINT NOT NULL,
                body_md5 TEXT NOT NULL,
                attributes_md5 TEXT,
                expires_at BIGINT NOT NULL,
                PRIMARY KEY (tenant_id, queue_name, deduplication_id)
            );
            CREATE INDEX queues_deduplication_expiry ON queues_deduplication (expires_at);
            """)
    ]

    static let queueColumns = """
        tenant_id, name, fifo, visibility_timeout, delay, retention, maximum_message_bytes, receive_wait, dead_letter_queue, \
        max_receive_count, content_based_deduplication, version, created_at, updated_at
        """

    static func queue(_ row: SQLRow, from offset: Int = 0) -> QueueRecord {
        let o = offset
        return QueueRecord(
            tenantID: row.text(o), name: row.text(o + 1), fifo: row.int(o + 2) != 0,
            settings: QueueSettings(
                visibilityTimeout: row.int(o + 3), delay: row.int(o + 4), retention: row.int(o + 5),
                maximumMessageBytes: row.int(o + 6), receiveWait: row.int(o + 7), deadLetterQueue: row.optionalText(o + 8),
                maxReceiveCount: row.optionalInt(o + 9), contentBasedDeduplication: row.int(o + 10) != 0),
            version: row.int(o + 11), createdAt: row.int(o + 12), updatedAt: row.int(o + 13))
    }

    /// The queue (locked on PostgreSQL until the transaction ends when `forUpdate`).
    static func queue(_ db: any SQLSession, tenantID: String, name: String, dialect: SQLDialect, forUpdate: Bool = false) async throws
        -> QueueRecord?
    {
        let lock = forUpdate && dialect == .postgres ? " FOR UPDATE" : ""
        return try await db.query(
            "SELECT \(Self.queueColumns) FROM queues_queues WHERE tenant_id = $1 AND name = $2\(lock)", [.text(tenantID), .text(name)]
        ).first.map { Self.queue($0) }
    }

    static let messageColumns = """
        id, receipt, body, attributes, body_md5, attributes_md5, sent_at, receive_count, first_received_at, group_id, \
        deduplication_id, sequence
        """

    static func message(_ row: SQLRow) -> ReceivedMessage {
        ReceivedMessage(
            id: row.text(0), receipt: row.text(1), body: row.text(2), attributes: AttributeCoding.decode(row.text(3)),
            bodyMD5: row.text(4), attributesMD5: row.optionalText(5), sentAt: row.int(6), receiveCount: row.int(7),
            firstReceivedAt: row.optionalInt(8) ?? 0, groupID: row.optionalText(9), deduplicationID: row.optionalText(10),
            sequence: row.int(11))
    }
}

/// Message attributes as stored: a JSON object of `{"t": dataType, "s": string}` or `{"t", "b": base64}`.
enum AttributeCoding {
    static func encode(_ attributes: [(String, MessageAttribute)]) -> String {
        JSONValue.object(
            attributes.map { name, attribute in
                var members: [(String, JSONValue)] = [("t", .string(attribute.dataType))]
                if let binary = attribute.binary { members.append(("b", .string(Base64.encode(binary)))) }
                if let string = attribute.string { members.append(("s", .string(string))) }
                return (name, .object(members))
            }
        ).serialized()
    }

    static func decode(_ text: String) -> [(String, MessageAttribute)] {
        guard case .object(let members)? = JSONValue.parse(Array(text.utf8)) else { return [] }
        return members.compactMap { name, value in
            guard case .string(let type)? = value["t"] else { return nil }
            var attribute = MessageAttribute(dataType: type)
            if case .string(let string)? = value["s"] { attribute.string = string }
            if case .string(let encoded)? = value["b"] { attribute.binary = Base64.decode(encoded) }
            return (name, attribute)
        }
    }
}
