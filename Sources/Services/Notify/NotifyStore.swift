import Database
import SQLite

/// A topic.
struct TopicRecord: Sendable, Equatable {
    var tenantID: String
    var name: String
    var createdAt: Int64
}

/// Where a subscription delivers.
enum SubscriptionProtocol: String, Sendable, CaseIterable {
    /// An HTTP POST to `endpoint`, signed with the subscription's secret.
    case webhook
    /// A message to the tenant's queue named `endpoint`.
    case queue
}

/// A subscription of a topic.
struct SubscriptionRecord: Sendable, Equatable {
    var id: String
    var tenantID: String
    var topic: String
    var kind: SubscriptionProtocol
    var endpoint: String
    /// The policy as given (JSON text), nil: every message.
    var filterPolicy: String?
    /// Webhooks: the HMAC-SHA256 key of their signatures (shown once, when created).
    var secret: String
    /// Attempts before a delivery goes to the subscription's dead letters.
    var maxAttempts: Int64
    var createdAt: Int64
}

/// A published message.
struct MessageRecord: Sendable, Equatable {
    var id: String
    var tenantID: String
    var topic: String
    var body: String
    var attributes: [(String, String)]
    var publishedAt: Int64

    static func == (a: MessageRecord, b: MessageRecord) -> Bool { a.id == b.id }
}

/// Where one delivery of a message to a subscription is.
enum DeliveryStatus: String, Sendable, CaseIterable {
    /// Waiting for its task (first try or a retry).
    case pending
    case delivered
    /// Every attempt failed: the delivery is in the subscription's dead letters.
    case dead
}

/// One message's delivery to one subscription.
struct DeliveryRecord: Sendable, Equatable {
    var id: String
    var tenantID: String
    var messageID: String
    var subscriptionID: String
    var status: DeliveryStatus
    var attempts: Int64
    /// The receiver's last HTTP status (webhooks), nil before the first answer.
    var lastStatus: Int64?
    var lastError: String?
    var updatedAt: Int64
    var deliveredAt: Int64?
}

/// The service's tables (migration 1 of `notify`). Times are unix milliseconds.
enum NotifySchema {
    static let migrations = [
        Migration(version: 1, name: "topics, subscriptions, messages and deliveries", sql: """
            CREATE TABLE notify_topics (
                tenant_id TEXT NOT NULL,
                name TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                PRIMARY KEY (tenant_id, name)
            );
            CREATE TABLE notify_subscriptions (
                id TEXT PRIMARY KEY,
                tenant_id TEXT NOT NULL,
                topic TEXT NOT NULL,
                protocol TEXT NOT NULL,
                endpoint TEXT NOT NULL,
                filter_policy TEXT,
                secret TEXT NOT NULL,
                max_attempts BIGINT NOT NULL,
                created_at BIGINT NOT NULL
            );
            CREATE INDEX notify_subscriptions_topic ON notify_subscriptions (tenant_id, topic);
            CREATE TABLE notify_messages (
                id TEXT PRIMARY KEY,
                tenant_id TEXT NOT NULL,
                topic TEXT NOT NULL,
                body TEXT NOT NULL,
                attributes TEXT NOT NULL,
                published_at BIGINT NOT NULL
            );
            CREATE INDEX notify_messages_topic ON notify_messages (tenant_id, topic, published_at);
            CREATE TABLE notify_deliveries (
                id TEXT PRIMARY KEY,
                tenant_id TEXT NOT NULL,
                message_id TEXT NOT NULL,
                subscription_id TEXT NOT NULL,
                status TEXT NOT NULL,
                attempts BIGINT NOT NULL,
                last_status BIGINT,
                last_error TEXT,
                updated_at BIGINT NOT NULL,
                delivered_at BIGINT
            );
            CREATE INDEX notify_deliveries_message ON notify_deliveries (message_id);
            CREATE INDEX notify_deliveries_subscription ON notify_deliveries (subscription_id, status);
            """)
    ]

    static let subscriptionColumns = "id, tenant_id, topic, protocol, endpoint, filter_policy, secret, max_attempts, created_at"

    static func subscription(_ row: SQLRow) -> SubscriptionRecord {
        SubscriptionRecord(
            id: row.text(0), tenantID: row.text(1), topic: row.text(2), kind: SubscriptionProtocol(rawValue: row.text(3)) ?? .webhook,
            endpoint: row.text(4), filterPolicy: row.optionalText(5), secret: row.text(6), maxAttempts: row.int(7), createdAt: row.int(8))
    }

    static let deliveryColumns = "id, tenant_id, message_id, subscription_id, status, attempts, last_status, last_error, updated_at, delivered_at"

    static func delivery(_ row: SQLRow) -> DeliveryRecord {
        DeliveryRecord(
            id: row.text(0), tenantID: row.text(1), messageID: row.text(2), subscriptionID: row.text(3),
            status: DeliveryStatus(rawValue: row.text(4)) ?? .pending, attempts: row.int(5), lastStatus: row.optionalInt(6),
            lastError: row.optionalText(7), updatedAt: row.int(8), deliveredAt: row.optionalInt(9))
    }

    static let messageColumns = "id, tenant_id, topic, body, attributes, published_at"
}
