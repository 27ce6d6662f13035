public import Database

/// Sending to a tenant's queue from another service (the notifications' queue subscriptions), inside
/// that service's transaction. The one way in from outside the module: other services never touch
/// the queues' tables.
public enum QueueDelivery {
    /// Whether the tenant has the queue.
    public static func exists(_ db: any SQLSession, tenantID: String, queue: String) async throws -> Bool {
        try await QueuesSchema.queue(db, tenantID: tenantID, name: queue, dialect: .sqlite) != nil
    }

    /// Sends one message with string attributes (FIFO queues: in `groupID`, deduplicated by `deduplicationID`).
    /// - Returns: The message id.
    /// - Throws: ``QueuesError`` when the queue is gone or refuses the message (too large, bad attributes).
    public static func send(
        _ db: any SQLSession, tenantID: String, queue: String, body: String, attributes: [(String, String)], groupID: String? = nil,
        deduplicationID: String? = nil, now: Int64
    ) async throws -> String {
        var message = OutgoingMessage(body: body)
        message.attributes = attributes.map { ($0.0, MessageAttribute(dataType: "String", string: $0.1)) }
        message.groupID = groupID
        message.deduplicationID = deduplicationID
        return try await QueueEngine.send(db, tenantID: tenantID, queue: queue, [message], now: now)[0].get().id
    }
}
