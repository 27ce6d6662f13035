public import Database
public import ServiceContract
import SQLite

/// Publishing to a tenant's topic from another service (cron schedules whose target is a topic),
/// inside that service's transaction: the message, its deliveries and their tasks commit with it.
public enum TopicPublishing {
    /// - Returns: The message id and how many deliveries it made.
    /// - Throws: ``NotifyError`` `not_found` when the tenant has no such topic.
    public static func publish(
        _ db: any SQLSession, tasks: TaskQueue, tenantID: String, topic: String, message: String, attributes: [(String, String)] = [], now: Int64
    ) async throws -> (messageID: String, deliveries: Int) {
        guard !message.isEmpty, message.utf8.count <= NotifyService.maximumMessageBytes else { throw NotifyError.tooLarge(message.utf8.count) }
        let published = try await NotifyService.publish(
            db, tasks: tasks, tenantID: tenantID, topic: topic, body: message, attributes: attributes, now: now)
        return (published.id, published.deliveries)
    }

    /// Whether the tenant has the topic.
    public static func exists(_ db: any SQLSession, tenantID: String, topic: String) async throws -> Bool {
        try await !db.query("SELECT name FROM notify_topics WHERE tenant_id = $1 AND name = $2", [.text(tenantID), .text(topic)]).isEmpty
    }
}
