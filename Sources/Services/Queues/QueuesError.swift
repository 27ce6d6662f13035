public import ServiceContract

/// The queues service's errors, and their answers on both of its wire protocols: the REST API
/// (``apiError``) and the SQS endpoint (``sqs``). The one place they are mapped.
public struct QueuesError: Error, APIErrorConvertible, CustomStringConvertible {
    enum Code: Equatable {
        case queueNotFound(String), queueExists(String), invalidName(String), invalidAttribute(String, String)
        case unknownAttribute(String), invalidMessage(String), invalidCharacters(String), tooLarge(Int64, Int64)
        case missingParameter(String), invalidReceipt, receiptStale, messageNotFound, notInFlight, invalidParameter(String)
        case unavailable(String)
    }

    let code: Code

    static func queueNotFound(_ name: String) -> Self { Self(code: .queueNotFound(name)) }
    static func queueExists(_ name: String) -> Self { Self(code: .queueExists(name)) }
    static func invalidName(_ name: String) -> Self { Self(code: .invalidName(name)) }
    static func invalidAttribute(_ name: String, _ reason: String) -> Self { Self(code: .invalidAttribute(name, reason)) }
    static func unknownAttribute(_ name: String) -> Self { Self(code: .unknownAttribute(name)) }
    static func invalidMessage(_ reason: String) -> Self { Self(code: .invalidMessage(reason)) }
    static func invalidCharacters(_ what: String) -> Self { Self(code: .invalidCharacters(what)) }
    static func tooLarge(_ bytes: Int64, limit: Int64) -> Self { Self(code: .tooLarge(bytes, limit)) }
    static func missingParameter(_ name: String) -> Self { Self(code: .missingParameter(name)) }
    static func invalidParameter(_ reason: String) -> Self { Self(code: .invalidParameter(reason)) }
    static func unavailable(_ reason: String) -> Self { Self(code: .unavailable(reason)) }
    static let invalidReceipt = Self(code: .invalidReceipt)
    static let receiptStale = Self(code: .receiptStale)
    static let messageNotFound = Self(code: .messageNotFound)
    static let notInFlight = Self(code: .notInFlight)

    public var apiError: APIError {
        switch self.code {
        case .queueNotFound(let name): .notFound("this tenant has no queue \(name)")
        case .queueExists(let name): .conflict("queue_exists", "a queue named \(name) exists")
        case .invalidName(let name):
            .invalidRequest(
                "\"\(name.prefix(100))\" is not a queue name: 1 to 80 of letters, digits, - and _ (a FIFO queue's name ends in .fifo)")
        case .invalidAttribute(let name, let reason): .invalidRequest("\(name): \(reason)")
        case .unknownAttribute(let name): .invalidRequest("unknown attribute \(name.prefix(80))")
        case .invalidMessage(let reason), .invalidParameter(let reason): .invalidRequest(reason)
        case .invalidCharacters(let what):
            .invalidRequest("\(what) has characters a message cannot carry (allowed: tab, newline, carriage return and Unicode from U+0020 except surrogates, U+FFFE and U+FFFF)")
        case .tooLarge(let bytes, let limit):
            APIError(status: 413, code: "message_too_large", message: "the message has \(bytes) bytes; this queue takes at most \(limit)")
        case .missingParameter(let name): .invalidRequest("\(name) is required")
        case .invalidReceipt: .invalidRequest("the receipt handle is not one this service handed out")
        case .receiptStale:
            .conflict("receipt_stale", "the message was received again since this receipt handle was given; use the newest one")
        case .messageNotFound: .notFound("no such message: it was deleted, expired or moved to the dead-letter queue")
        case .notInFlight: .conflict("message_not_in_flight", "the message is not in flight: its visibility timeout has ended")
        case .unavailable(let reason): APIError(status: 503, code: "queues_unavailable", message: reason)
        }
    }

    /// The error as the SQS JSON protocol answers it: status, the shape name for `__type`, the code
    /// of the older query protocol (`x-amzn-query-error`, what boto3 shows as the error code), and the message.
    var sqs: SQSError {
        switch self.code {
        case .queueNotFound:
            SQSError(400, "QueueDoesNotExist", query: "AWS.SimpleQueueService.NonExistentQueue", "The specified queue does not exist.")
        case .queueExists(let name):
            SQSError(400, "QueueNameExists", query: "QueueAlreadyExists", "A queue already exists with the same name (\(name)) and a different value for attribute(s)")
        case .invalidName, .invalidMessage, .invalidParameter, .tooLarge:
            SQSError(400, "InvalidParameterValueException", query: "InvalidParameterValue", self.apiError.message)
        case .invalidAttribute:
            SQSError(400, "InvalidAttributeValue", query: "InvalidAttributeValue", self.apiError.message)
        case .unknownAttribute(let name):
            SQSError(400, "InvalidAttributeName", query: "InvalidAttributeName", "Unknown Attribute \(name.prefix(80)).")
        case .invalidCharacters:
            SQSError(400, "InvalidMessageContents", query: "InvalidMessageContents", self.apiError.message)
        case .missingParameter(let name):
            SQSError(400, "MissingRequiredParameterException", query: "MissingParameter", "The request must contain the parameter \(name).")
        case .invalidReceipt:
            SQSError(400, "ReceiptHandleIsInvalid", query: "ReceiptHandleIsInvalid", "The input receipt handle is invalid.")
        case .receiptStale, .messageNotFound, .notInFlight:
            SQSError(
                400, "MessageNotInflight", query: "AWS.SimpleQueueService.MessageNotInflight",
                "The message referred to isn't in flight.")
        case .unavailable(let reason): SQSError(503, "ServiceUnavailable", query: "ServiceUnavailable", reason)
        }
    }

    public var description: String { self.apiError.description }
}

/// An error answer of the SQS JSON protocol.
struct SQSError: Error, Equatable {
    var status: Int
    /// The shape name (`QueueDoesNotExist`), sent as `com.amazonaws.sqs#<type>`.
    var type: String
    /// The query-protocol code (`AWS.SimpleQueueService.NonExistentQueue`).
    var query: String
    var message: String
    /// `Sender` (the request's fault) or `Receiver` (ours).
    var fault: String { self.status >= 500 ? "Receiver" : "Sender" }

    init(_ status: Int, _ type: String, query: String, _ message: String) {
        self.status = status
        self.type = type
        self.query = query
        self.message = message
    }
}
