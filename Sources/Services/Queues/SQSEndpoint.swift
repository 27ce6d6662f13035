import Foundation
import Hashing
import Logging
import ServiceContract
import SigV4

/// Where the SQS endpoint gets the keys it verifies signatures with: the storage cluster's access
/// keys, as SigV4 signing keys of the `sqs` service (the secret keys stay in the storage cluster).
public struct SQSCredentials: Sendable {
    /// The region clients sign for (the storage cluster's).
    public var region: String
    /// The signing key of `accessKeyID` for (date, region, `sqs`) and the key's tenant; nil when
    /// there is no such key.
    public var lookup: @Sendable (_ accessKeyID: String, _ date: String, _ region: String) async throws -> (tenantID: String, key: [UInt8])?

    public init(
        region: String,
        lookup: @escaping @Sendable (_ accessKeyID: String, _ date: String, _ region: String) async throws -> (tenantID: String, key: [UInt8])?
    ) {
        self.region = region
        self.lookup = lookup
    }
}

/// Signing keys looked up recently, for five minutes: a deleted storage key keeps working for SQS
/// requests until its cached entry ends.
actor SigningKeyCache {
    private var entries: [String: (tenantID: String, key: [UInt8], until: ContinuousClock.Instant)] = [:]
    static let lifetime: Duration = .seconds(300)

    func key(_ accessKeyID: String, date: String, region: String, lookup: SQSCredentials) async throws -> (tenantID: String, key: [UInt8])? {
        let name = "\(accessKeyID)/\(date)/\(region)"
        if let entry = self.entries[name], entry.until > .now { return (entry.tenantID, entry.key) }
        guard let found = try await lookup.lookup(accessKeyID, date, region) else { return nil }
        if self.entries.count > 10_000 { self.entries.removeAll() }
        self.entries[name] = (found.tenantID, found.key, .now + Self.lifetime)
        return found
    }
}

/// The SQS endpoint: the AWS JSON 1.0 protocol that current AWS SDKs speak to SQS
/// (`POST` with `X-Amz-Target: AmazonSQS.<Operation>`), signed with SigV4 by a tenant's storage key.
/// The tenant of the key is the tenant whose queues the request acts on; a storage key carries all of
/// its tenant's queue permissions (as it does for the tenant's buckets).
struct SQSEndpoint: Sendable {
    let engine: QueueEngine
    let credentials: SQSCredentials?
    let cache: SigningKeyCache
    let now: @Sendable () -> Date

    static let contentType = "application/x-amz-json-1.0"

    /// Answers one request.
    func answer(_ request: APIRequest) async -> APIResponse {
        do throws(SQSError) {
            let tenantID = try await self.authenticate(request)
            guard let target = request.headers["x-amz-target"], target.hasPrefix("AmazonSQS.") else {
                throw SQSError(400, "InvalidAction", query: "InvalidAction", "The request needs X-Amz-Target: AmazonSQS.<Operation>.")
            }
            let input: JSONValue
            if request.body.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) {
                input = .object([])
            } else {
                guard let parsed = JSONValue.parse(request.body), case .object = parsed else {
                    throw SQSError(400, "InvalidParameterValueException", query: "InvalidParameterValue", "The request body is not a JSON object.")
                }
                input = parsed
            }
            let call = Call(input: input, tenantID: tenantID, host: request.headers["host"] ?? "localhost", region: self.credentials?.region ?? "us-east-1")
            let output = try await self.run(String(target.dropFirst("AmazonSQS.".count)), call)
            return APIResponse(
                status: 200, headers: [("Content-Type", Self.contentType), ("x-amzn-RequestId", request.requestID)],
                body: Array(output.serialized().utf8))
        } catch {
            let body = JSONValue.object([("__type", .string("com.amazonaws.sqs#\(error.type)")), ("message", .string(error.message))])
            return APIResponse(
                status: error.status,
                headers: [
                    ("Content-Type", Self.contentType), ("x-amzn-RequestId", request.requestID),
                    ("x-amzn-query-error", "\(error.query);\(error.fault)"),
                ],
                body: Array(body.serialized().utf8))
        }
    }

    // MARK: - Authentication

    private func authenticate(_ request: APIRequest) async throws(SQSError) -> String {
        guard let credentials else {
            throw SQSError(
                503, "ServiceUnavailable", query: "ServiceUnavailable",
                "The SQS endpoint verifies requests with the storage cluster's keys, and this control plane has no storage cluster configured.")
        }
        let head = SigV4.RequestHead(
            method: request.method, rawPath: request.path, rawQuery: "", headers: request.headers.map { (name: $0.key, value: $0.value) })
        let credential: SigV4.Credential
        do {
            switch try SigV4.parse(head, service: "sqs", bodySHA256: Hex.encode(Digests.sha256(request.body))) {
            case .anonymous:
                throw SQSError(403, "MissingAuthenticationToken", query: "MissingAuthenticationToken", "The request must be signed (SigV4) with a storage key of the tenant.")
            case .signed(let parsed): credential = parsed
            }
        } catch let error as SQSError {
            throw error
        } catch {
            throw SQSError(400, "IncompleteSignature", query: "IncompleteSignature", (error as? SigV4Error)?.message ?? "The signature is malformed.")
        }
        guard credential.region == credentials.region else {
            throw SQSError(
                403, "SignatureDoesNotMatch", query: "SignatureDoesNotMatch",
                "Credential should be scoped to a valid region: this endpoint signs for \(credentials.region).")
        }
        let found: (tenantID: String, key: [UInt8])?
        do {
            found = try await self.cache.key(credential.accessKey, date: credential.date, region: credential.region, lookup: credentials)
        } catch {
            self.engine.environment.logger.warning("SQS signing key lookup failed", metadata: ["request-id": "\(request.requestID)", "error": "\(error)"])
            throw SQSError(503, "ServiceUnavailable", query: "ServiceUnavailable", "The storage cluster, which holds the keys, does not answer; retry later.")
        }
        guard let found else {
            throw SQSError(403, "InvalidClientTokenId", query: "InvalidClientTokenId", "The security token included in the request is invalid.")
        }
        do {
            _ = try SigV4.verify(credential, head: head, signingKey: found.key, now: self.now())
        } catch {
            if error.code == .requestTimeTooSkewed {
                throw SQSError(403, "RequestExpired", query: "RequestExpired", "Signature expired: the request time is more than 15 minutes from the server's.")
            }
            throw SQSError(
                403, "SignatureDoesNotMatch", query: "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.")
        }
        return found.tenantID
    }

    // MARK: - Operations

    struct Call: Sendable {
        var input: JSONValue
        var tenantID: String
        var host: String
        var region: String

        func string(_ name: String) -> String? {
            if case .string(let value)? = self.input[name] { return value }
            return nil
        }

        func required(_ name: String) throws(SQSError) -> String {
            guard let value = self.string(name), !value.isEmpty else { throw QueuesError.missingParameter(name).sqs }
            return value
        }

        func integer(_ name: String) throws(SQSError) -> Int64? {
            switch self.input[name] {
            case nil, .null?: return nil
            case .int(let value)?: return value
            default: throw QueuesError.invalidParameter("\(name) must be an integer").sqs
            }
        }

        func url(_ queue: String) -> String { "http://\(self.host)/sqs/\(self.tenantID)/\(queue)" }
        func arn(_ queue: String) -> String { "arn:aws:sqs:\(self.region):\(self.tenantID):\(queue)" }

        /// The queue a `QueueUrl` names; another tenant's URL names no queue of this one.
        func queue() throws(SQSError) -> String {
            let url = try self.required("QueueUrl")
            let parts = url.split(separator: "/")
            guard parts.count >= 2, String(parts[parts.count - 2]) == self.tenantID, let name = parts.last else {
                throw QueuesError.queueNotFound(url).sqs
            }
            return String(name)
        }
    }

    private func run(_ operation: String, _ call: Call) async throws(SQSError) -> JSONValue {
        do {
            switch operation {
            case "CreateQueue": return try await self.createQueue(call)
            case "GetQueueUrl":
                let name = try call.required("QueueName")
                _ = try await self.engine.queue(tenantID: call.tenantID, name: name)
                return .object([("QueueUrl", .string(call.url(name)))])
            case "ListQueues": return try await self.listQueues(call)
            case "DeleteQueue":
                try await self.engine.deleteQueue(tenantID: call.tenantID, name: call.queue())
                return .object([])
            case "PurgeQueue":
                _ = try await self.engine.purge(tenantID: call.tenantID, name: call.queue())
                return .object([])
            case "GetQueueAttributes": return try await self.getAttributes(call)
            case "SetQueueAttributes":
                let attributes = try Self.stringMap(call.input["Attributes"], "Attributes")
                let name = try call.queue()
                let region = call.region
                let tenantID = call.tenantID
                _ = try await self.engine.update(tenantID: tenantID, name: name) { settings in
                    try SQSAttributes.apply(attributes, to: &settings, fifo: nil, tenantID: tenantID, region: region)
                }
                return .object([])
            case "ListDeadLetterSourceQueues": return try await self.deadLetterSources(call)
            case "SendMessage": return try await self.sendMessage(call)
            case "SendMessageBatch": return try await self.sendBatch(call)
            case "ReceiveMessage": return try await self.receive(call)
            case "DeleteMessage":
                _ = try await self.engine.delete(tenantID: call.tenantID, queue: call.queue(), receipt: call.required("ReceiptHandle"))
                return .object([])
            case "DeleteMessageBatch": return try await self.deleteBatch(call)
            case "ChangeMessageVisibility":
                guard let timeout = try call.integer("VisibilityTimeout") else { throw QueuesError.missingParameter("VisibilityTimeout").sqs }
                try await self.engine.changeVisibility(
                    tenantID: call.tenantID, queue: call.queue(), receipt: call.required("ReceiptHandle"), timeout: timeout)
                return .object([])
            case "ChangeMessageVisibilityBatch": return try await self.changeVisibilityBatch(call)
            default:
                throw SQSError(400, "UnsupportedOperation", query: "AWS.SimpleQueueService.UnsupportedOperation", "\(operation.prefix(60)) is not supported by this endpoint.")
            }
        } catch let error as SQSError {
            throw error
        } catch let error as QueuesError {
            throw error.sqs
        } catch let error as QuotaExceeded {
            throw SQSError(400, "OverLimit", query: "OverLimit", "\(error)")
        } catch {
            self.engine.environment.logger.error("SQS request failed", metadata: ["operation": "\(operation)", "error": "\(error)"])
            throw SQSError(500, "InternalError", query: "InternalError", "The server failed; retry later.")
        }
    }

    private static func stringMap(_ value: JSONValue?, _ name: String) throws(SQSError) -> [(String, String)] {
        switch value {
        case nil, .null?: return []
        case .object(let members)?:
            var result: [(String, String)] = []
            for (key, member) in members {
                guard case .string(let text) = member else { throw QueuesError.invalidAttribute(key, "must be a string").sqs }
                result.append((key, text))
            }
            return result
        default: throw QueuesError.invalidParameter("\(name) must be an object of strings").sqs
        }
    }

    private func createQueue(_ call: Call) async throws -> JSONValue {
        let name = try call.required("QueueName")
        let attributes = try Self.stringMap(call.input["Attributes"], "Attributes")
        let fifo = attributes.first { $0.0 == "FifoQueue" }.map { $0.1 == "true" } ?? false
        var settings = QueueSettings()
        try SQSAttributes.apply(attributes, to: &settings, fifo: fifo, tenantID: call.tenantID, region: call.region)
        _ = try await self.engine.createQueue(tenantID: call.tenantID, name: name, fifo: fifo, settings: settings, sameIsSuccess: true)
        return .object([("QueueUrl", .string(call.url(name)))])
    }

    private func listQueues(_ call: Call) async throws -> JSONValue {
        let limit = try call.integer("MaxResults")
        if let limit, !(1...1000).contains(limit) { throw QueuesError.invalidParameter("MaxResults must be 1 to 1000").sqs }
        let pageSize = Int(limit ?? 1000)
        let queues = try await self.engine.queues(
            tenantID: call.tenantID, prefix: call.string("QueueNamePrefix") ?? "", after: call.string("NextToken") ?? "", limit: pageSize + 1)
        var members: [(String, JSONValue)] = [("QueueUrls", .array(queues.prefix(pageSize).map { .string(call.url($0.name)) }))]
        if limit != nil, queues.count > pageSize, let last = queues.prefix(pageSize).last {
            members.append(("NextToken", .string(last.name)))
        }
        return .object(members)
    }

    private func deadLetterSources(_ call: Call) async throws -> JSONValue {
        let name = try call.queue()
        _ = try await self.engine.queue(tenantID: call.tenantID, name: name)
        let sources = try await self.engine.deadLetterSources(tenantID: call.tenantID, of: name)
        return .object([("queueUrls", .array(sources.map { .string(call.url($0)) }))])
    }

    private func getAttributes(_ call: Call) async throws -> JSONValue {
        let name = try call.queue()
        let queue = try await self.engine.queue(tenantID: call.tenantID, name: name)
        let counts = try await self.engine.counts(tenantID: call.tenantID, name: name)
        var wanted: [String] = []
        if case .array(let items)? = call.input["AttributeNames"] {
            for case .string(let item) in items { wanted.append(item) }
        }
        let all = SQSAttributes.attributes(of: queue, counts: counts, region: call.region)
        let chosen = wanted.contains("All") ? all : all.filter { wanted.contains($0.0) }
        if let unknown = wanted.first(where: { $0 != "All" && !SQSAttributes.readable.contains($0) }) {
            throw QueuesError.unknownAttribute(unknown).sqs
        }
        return .object([("Attributes", .object(chosen.map { ($0.0, .string($0.1)) }))])
    }

    /// A message of a `SendMessage` or of a batch entry.
    private static func outgoing(_ input: JSONValue) throws(SQSError) -> OutgoingMessage {
        guard case .string(let body)? = input["MessageBody"] else { throw QueuesError.missingParameter("MessageBody").sqs }
        var message = OutgoingMessage(body: body)
        switch input["DelaySeconds"] {
        case nil, .null?: break
        case .int(let delay)?: message.delay = delay
        default: throw QueuesError.invalidParameter("DelaySeconds must be an integer").sqs
        }
        if case .string(let group)? = input["MessageGroupId"] { message.groupID = group }
        if case .string(let id)? = input["MessageDeduplicationId"] { message.deduplicationID = id }
        if case .object(let members)? = input["MessageAttributes"] {
            for (name, value) in members {
                guard case .string(let type)? = value["DataType"] else {
                    throw QueuesError.invalidMessage("the attribute \(name) needs a DataType").sqs
                }
                var attribute = MessageAttribute(dataType: type)
                if case .string(let text)? = value["StringValue"] { attribute.string = text }
                if case .string(let encoded)? = value["BinaryValue"] {
                    guard let bytes = Base64.decode(encoded) else {
                        throw QueuesError.invalidMessage("the BinaryValue of attribute \(name) is not base64").sqs
                    }
                    attribute.binary = bytes
                }
                message.attributes.append((name, attribute))
            }
        }
        return message
    }

    private static func sent(_ message: SentMessage, fifo: Bool) -> [(String, JSONValue)] {
        var members: [(String, JSONValue)] = [("MessageId", .string(message.id)), ("MD5OfMessageBody", .string(message.bodyMD5))]
        if let md5 = message.attributesMD5 { members.append(("MD5OfMessageAttributes", .string(md5))) }
        if fifo { members.append(("SequenceNumber", .string(String(message.sequence)))) }
        return members
    }

    private func sendMessage(_ call: Call) async throws -> JSONValue {
        let name = try call.queue()
        let message = try Self.outgoing(call.input)
        let results = try await self.engine.send(tenantID: call.tenantID, queue: name, [message])
        switch results.first {
        case .success(let sent)?: return .object(Self.sent(sent, fifo: message.groupID != nil))
        case .failure(let error)?: throw error.sqs
        case nil: throw QueuesError.missingParameter("MessageBody").sqs
        }
    }

    /// The entries of a batch: 1 to 10, with distinct ids of letters, digits, `-` and `_` (up to 80).
    private static func entries(_ call: Call) throws(SQSError) -> [(id: String, input: JSONValue)] {
        guard case .array(let items)? = call.input["Entries"], !items.isEmpty else {
            throw SQSError(400, "EmptyBatchRequest", query: "AWS.SimpleQueueService.EmptyBatchRequest", "There should be at least one entry in the request.")
        }
        guard items.count <= 10 else {
            throw SQSError(
                400, "TooManyEntriesInBatchRequest", query: "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
                "Maximum number of entries per request are 10. You have sent \(items.count).")
        }
        var seen = Set<String>()
        var entries: [(String, JSONValue)] = []
        for item in items {
            guard case .string(let id)? = item["Id"], id.isName(maxLength: 80) else {
                throw SQSError(
                    400, "InvalidBatchEntryId", query: "AWS.SimpleQueueService.InvalidBatchEntryId",
                    "A batch entry id can only contain alphanumeric characters, hyphens and underscores. It can be at most 80 letters long.")
            }
            guard seen.insert(id).inserted else {
                throw SQSError(400, "BatchEntryIdsNotDistinct", query: "AWS.SimpleQueueService.BatchEntryIdsNotDistinct", "Id \(id) repeated.")
            }
            entries.append((id, item))
        }
        return entries
    }

    private static func failed(_ id: String, _ error: SQSError) -> JSONValue {
        .object([("Id", .string(id)), ("SenderFault", .bool(error.status < 500)), ("Code", .string(error.query)), ("Message", .string(error.message))])
    }

    private func sendBatch(_ call: Call) async throws -> JSONValue {
        let name = try call.queue()
        let entries = try Self.entries(call)
        var parsed: [(id: String, message: Result<OutgoingMessage, SQSError>)] = []
        for entry in entries {
            do throws(SQSError) { parsed.append((entry.id, .success(try Self.outgoing(entry.input)))) } catch { parsed.append((entry.id, .failure(error))) }
        }
        let total = parsed.reduce(Int64(0)) { sum, entry in
            if case .success(let message) = entry.message { sum + MessageChecks.size(body: message.body, attributes: message.attributes) } else { sum }
        }
        guard total <= MessageChecks.maximumMessageBytes else {
            throw SQSError(
                400, "BatchRequestTooLong", query: "AWS.SimpleQueueService.BatchRequestTooLong",
                "Batch requests cannot be longer than \(MessageChecks.maximumMessageBytes) bytes; this one has \(total).")
        }
        let toSend = parsed.compactMap { entry -> (String, OutgoingMessage)? in
            if case .success(let message) = entry.message { (entry.id, message) } else { nil }
        }
        let results = toSend.isEmpty ? [] : try await self.engine.send(tenantID: call.tenantID, queue: name, toSend.map(\.1))
        var successful: [JSONValue] = []
        var failures: [JSONValue] = []
        for entry in parsed {
            if case .failure(let error) = entry.message { failures.append(Self.failed(entry.id, error)) }
        }
        for ((id, message), result) in zip(toSend, results) {
            switch result {
            case .success(let sent): successful.append(.object([("Id", .string(id))] + Self.sent(sent, fifo: message.groupID != nil)))
            case .failure(let error): failures.append(Self.failed(id, error.sqs))
            }
        }
        return .object([("Successful", .array(successful)), ("Failed", .array(failures))])
    }

    private func receive(_ call: Call) async throws -> JSONValue {
        let name = try call.queue()
        let maximum = try call.integer("MaxNumberOfMessages") ?? 1
        let messages = try await self.engine.receive(
            tenantID: call.tenantID, queue: name, maximum: Int(clamping: maximum), visibilityTimeout: call.integer("VisibilityTimeout"),
            wait: call.integer("WaitTimeSeconds"))
        func names(_ key: String) -> [String] {
            guard case .array(let items)? = call.input[key] else { return [] }
            return items.compactMap { if case .string(let text) = $0 { text } else { nil } }
        }
        let systemNames = Set(names("AttributeNames") + names("MessageSystemAttributeNames"))
        let attributeNames = names("MessageAttributeNames")
        func wantsAttribute(_ name: String) -> Bool {
            attributeNames.contains { pattern in
                pattern == "All" || pattern == ".*" || pattern == name || (pattern.hasSuffix(".*") && name.hasPrefix(pattern.dropLast(1)))
            }
        }
        let items: [JSONValue] = messages.map { message in
            var members: [(String, JSONValue)] = [
                ("MessageId", .string(message.id)), ("ReceiptHandle", .string(message.receipt)), ("MD5OfBody", .string(message.bodyMD5)),
                ("Body", .string(message.body)),
            ]
            var system: [(String, String)] = [
                ("SenderId", call.tenantID), ("SentTimestamp", String(message.sentAt)),
                ("ApproximateReceiveCount", String(message.receiveCount)),
                ("ApproximateFirstReceiveTimestamp", String(message.firstReceivedAt)),
            ]
            if let group = message.groupID {
                system.append(("MessageGroupId", group))
                system.append(("SequenceNumber", String(message.sequence)))
                if let dedup = message.deduplicationID { system.append(("MessageDeduplicationId", dedup)) }
            }
            let shown = systemNames.contains("All") ? system : system.filter { systemNames.contains($0.0) }
            if !shown.isEmpty { members.append(("Attributes", .object(shown.map { ($0.0, .string($0.1)) }))) }
            let attributes = message.attributes.filter { wantsAttribute($0.0) }
            if !attributes.isEmpty, let md5 = MessageChecks.attributesMD5(attributes) {
                members.append(("MD5OfMessageAttributes", .string(md5)))
                members.append((
                    "MessageAttributes",
                    .object(
                        attributes.map { name, attribute in
                            var value: [(String, JSONValue)] = [("DataType", .string(attribute.dataType))]
                            if let binary = attribute.binary { value.append(("BinaryValue", .string(Base64.encode(binary)))) }
                            if let string = attribute.string { value.append(("StringValue", .string(string))) }
                            return (name, .object(value))
                        })
                ))
            }
            return .object(members)
        }
        return .object([("Messages", .array(items))])
    }

    private func deleteBatch(_ call: Call) async throws -> JSONValue {
        try await self.receiptBatch(call) { name, receipt, _ in
            _ = try await self.engine.delete(tenantID: call.tenantID, queue: name, receipt: receipt)
        }
    }

    private func changeVisibilityBatch(_ call: Call) async throws -> JSONValue {
        try await self.receiptBatch(call) { name, receipt, input in
            guard case .int(let timeout)? = input["VisibilityTimeout"] else { throw QueuesError.missingParameter("VisibilityTimeout") }
            try await self.engine.changeVisibility(tenantID: call.tenantID, queue: name, receipt: receipt, timeout: timeout)
        }
    }

    /// A batch of entries with receipt handles, each acted on by `act` and answered on its own; a
    /// queue that does not exist fails the whole request.
    private func receiptBatch(
        _ call: Call, _ act: (_ queue: String, _ receipt: String, _ entry: JSONValue) async throws -> Void
    ) async throws -> JSONValue {
        let name = try call.queue()
        var successful: [JSONValue] = []
        var failures: [JSONValue] = []
        for (id, input) in try Self.entries(call) {
            do {
                guard case .string(let receipt)? = input["ReceiptHandle"] else { throw QueuesError.missingParameter("ReceiptHandle") }
                try await act(name, receipt, input)
                successful.append(.object([("Id", .string(id))]))
            } catch let error as QueuesError {
                if case .queueNotFound = error.code { throw error }
                failures.append(Self.failed(id, error.sqs))
            }
        }
        return .object([("Successful", .array(successful)), ("Failed", .array(failures))])
    }
}

/// Queue attributes by their SQS names.
enum SQSAttributes {
    static let writable: Set<String> = [
        "DelaySeconds", "MaximumMessageSize", "MessageRetentionPeriod", "ReceiveMessageWaitTimeSeconds", "VisibilityTimeout",
        "RedrivePolicy", "ContentBasedDeduplication", "FifoQueue",
    ]
    static let readable: Set<String> = writable.union([
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed",
        "CreatedTimestamp", "LastModifiedTimestamp", "QueueArn",
    ])

    /// Applies SQS attributes to settings. `fifo` is the kind being created (nil for `SetQueueAttributes`,
    /// where `FifoQueue` cannot change).
    static func apply(_ attributes: [(String, String)], to settings: inout QueueSettings, fifo: Bool?, tenantID: String, region: String)
        throws(QueuesError)
    {
        func number(_ name: String, _ text: String) throws(QueuesError) -> Int64 {
            guard let value = Int64(text) else { throw QueuesError.invalidAttribute(name, "must be a whole number") }
            return value
        }
        for (name, value) in attributes {
            switch name {
            case "DelaySeconds": settings.delay = try number(name, value)
            case "MaximumMessageSize": settings.maximumMessageBytes = try number(name, value)
            case "MessageRetentionPeriod": settings.retention = try number(name, value)
            case "ReceiveMessageWaitTimeSeconds": settings.receiveWait = try number(name, value)
            case "VisibilityTimeout": settings.visibilityTimeout = try number(name, value)
            case "ContentBasedDeduplication":
                guard value == "true" || value == "false" else { throw QueuesError.invalidAttribute(name, "must be true or false") }
                settings.contentBasedDeduplication = value == "true"
            case "FifoQueue":
                guard fifo != nil else { throw QueuesError.invalidAttribute(name, "a queue's kind is set when it is created") }
                guard value == "true" || value == "false" else { throw QueuesError.invalidAttribute(name, "must be true or false") }
            case "RedrivePolicy":
                if value.isEmpty {
                    settings.deadLetterQueue = nil
                    settings.maxReceiveCount = nil
                    continue
                }
                guard let policy = JSONValue.parse(Array(value.utf8)), case .string(let arn)? = policy["deadLetterTargetArn"] else {
                    throw QueuesError.invalidAttribute(name, "must be JSON with deadLetterTargetArn and maxReceiveCount")
                }
                let count: Int64? =
                    switch policy["maxReceiveCount"] {
                    case .int(let value)?: value
                    case .string(let text)?: Int64(text)
                    default: nil
                    }
                guard let count else { throw QueuesError.invalidAttribute(name, "maxReceiveCount must be a number") }
                let parts = arn.split(separator: ":", omittingEmptySubsequences: false)
                guard parts.count == 6, parts[0] == "arn", parts[2] == "sqs", String(parts[4]) == tenantID else {
                    throw QueuesError.invalidAttribute(name, "deadLetterTargetArn must be arn:aws:sqs:\(region):\(tenantID):<queue>")
                }
                settings.deadLetterQueue = String(parts[5])
                settings.maxReceiveCount = count
            default:
                throw readable.contains(name) ? QueuesError.invalidAttribute(name, "is read-only") : QueuesError.unknownAttribute(name)
            }
        }
    }

    /// Every readable attribute of a queue, as SQS answers `GetQueueAttributes` with `All`.
    static func attributes(of queue: QueueRecord, counts: QueueCounts, region: String) -> [(String, String)] {
        let s = queue.settings
        var result: [(String, String)] = [
            ("QueueArn", "arn:aws:sqs:\(region):\(queue.tenantID):\(queue.name)"),
            ("ApproximateNumberOfMessages", String(counts.visible)),
            ("ApproximateNumberOfMessagesNotVisible", String(counts.inFlight)),
            ("ApproximateNumberOfMessagesDelayed", String(counts.delayed)),
            ("CreatedTimestamp", String(queue.createdAt / 1000)), ("LastModifiedTimestamp", String(queue.updatedAt / 1000)),
            ("VisibilityTimeout", String(s.visibilityTimeout)), ("MaximumMessageSize", String(s.maximumMessageBytes)),
            ("MessageRetentionPeriod", String(s.retention)), ("DelaySeconds", String(s.delay)),
            ("ReceiveMessageWaitTimeSeconds", String(s.receiveWait)),
        ]
        if let dlq = s.deadLetterQueue, let count = s.maxReceiveCount {
            let policy = JSONValue.object([
                ("deadLetterTargetArn", .string("arn:aws:sqs:\(region):\(queue.tenantID):\(dlq)")), ("maxReceiveCount", .int(count)),
            ])
            result.append(("RedrivePolicy", policy.serialized()))
        }
        if queue.fifo {
            result.append(("FifoQueue", "true"))
            result.append(("ContentBasedDeduplication", s.contentBasedDeduplication ? "true" : "false"))
        }
        return result
    }
}
