/// An error answered as `{"error": {"code": "...", "message": "..."}}` with an HTTP status.
///
/// Messages are written for the caller and never hold secrets (keys, passwords, hashes).
public struct APIError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The HTTP status.
    public let status: Int
    /// A stable, machine-readable code (`invalid_request`, `unauthorized`, …).
    public let code: String
    /// What went wrong and what to do, for a person.
    public let message: String
    /// Extra response headers (`Retry-After`, `Allow`).
    public var headers: [(String, String)] = []

    public init(status: Int, code: String, message: String) {
        self.status = status
        self.code = code
        self.message = message
    }

    public var description: String { "\(self.status) \(self.code): \(self.message)" }

    public static func == (lhs: APIError, rhs: APIError) -> Bool {
        lhs.status == rhs.status && lhs.code == rhs.code
    }

    /// The JSON body.
    public var body: JSONValue {
        .object([("error", .object([("code", .string(self.code)), ("message", .string(self.message))]))])
    }

    public static let invalidJSON = APIError(status: 400, code: "invalid_json", message: "the request body is not valid JSON")
    public static func invalidRequest(_ message: String) -> APIError { APIError(status: 400, code: "invalid_request", message: message) }
    public static let missingKey = APIError(
        status: 401, code: "unauthorized", message: "this route needs an API key in the X-API-Key header (get one with POST /auth/login)")
    public static let invalidKey = APIError(status: 401, code: "unauthorized", message: "the API key is invalid, expired or revoked")
    public static func forbidden(_ permission: Permission) -> APIError {
        APIError(status: 403, code: "forbidden", message: "this needs the permission \(permission), which your roles in this tenant do not grant")
    }
    public static func forbidden(message: String) -> APIError { APIError(status: 403, code: "forbidden", message: message) }
    public static func notFound(_ message: String) -> APIError { APIError(status: 404, code: "not_found", message: message) }
    public static func conflict(_ code: String, _ message: String) -> APIError { APIError(status: 409, code: code, message: message) }
    public static func quotaExceeded(_ exceeded: QuotaExceeded) -> APIError {
        APIError(
            status: 409, code: "quota_exceeded",
            message: "\(exceeded); remove some first or ask a platform operator to raise the quota (GET /tenants/{id}/quotas shows them)")
    }
    public static func tooManyRequests(_ message: String, retryAfter: Int64) -> APIError {
        var error = APIError(status: 429, code: "too_many_requests", message: message)
        error.headers = [("Retry-After", String(retryAfter))]
        return error
    }
    public static let payloadTooLarge = APIError(status: 413, code: "payload_too_large", message: "the request body is too large")
    public static let unsupportedMediaType = APIError(
        status: 415, code: "unsupported_media_type", message: "send the body as application/json")
    public static let internalError = APIError(
        status: 500, code: "internal", message: "the server failed; the request id in X-Request-Id identifies it in the logs")
    public static func unavailable(_ message: String) -> APIError { APIError(status: 503, code: "unavailable", message: message) }
}

/// One request to the API, with its body read.
public struct APIRequest: Sendable {
    public var method: String
    /// The path without the query.
    public var path: String
    public var query: [String: String]
    /// Header names lowercased.
    public var headers: [String: String]
    public var body: [UInt8]
    public var requestID: String
    /// The peer's address, for login-attempt records.
    public var clientAddress: String

    public init(
        method: String, target: String, headers: [(String, String)], body: [UInt8], requestID: String, clientAddress: String
    ) {
        self.method = method
        let parts = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        self.path = parts.first.map(String.init) ?? "/"
        var query: [String: String] = [:]
        if parts.count == 2 {
            for item in parts[1].split(separator: "&") {
                let pair = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                let name = String(pair[0]).removingPercentEncodingSafely()
                query[name] = pair.count == 2 ? String(pair[1]).removingPercentEncodingSafely() : ""
            }
        }
        self.query = query
        var lowered: [String: String] = [:]
        for (name, value) in headers { lowered[name.lowercased()] = value }
        self.headers = lowered
        self.body = body
        self.requestID = requestID
        self.clientAddress = clientAddress
    }
}

/// An answer.
public struct APIResponse: Sendable {
    public var status: Int
    public var headers: [(String, String)]
    public var body: [UInt8]

    public init(status: Int, headers: [(String, String)] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// A JSON answer.
    public static func json(_ status: Int, _ value: JSONValue) -> APIResponse {
        APIResponse(status: status, headers: [("Content-Type", "application/json")], body: Array((value.serialized() + "\n").utf8))
    }

    /// An error answer.
    public static func error(_ error: APIError) -> APIResponse {
        var response = APIResponse.json(error.status, error.body)
        response.headers += error.headers
        return response
    }

    public static let noContent = APIResponse(status: 204)
}

extension String {
    /// Percent-decoding that never fails (`+` is a space, a malformed escape stays as it is).
    public func removingPercentEncodingSafely() -> String {
        var bytes: [UInt8] = []
        var iterator = self.utf8.makeIterator()
        while let byte = iterator.next() {
            if byte == UInt8(ascii: "%"), let high = iterator.next(), let low = iterator.next(),
                let value = UInt8(String(decoding: [high, low], as: UTF8.self), radix: 16)
            {
                bytes.append(value)
            } else if byte == UInt8(ascii: "+") {
                bytes.append(UInt8(ascii: " "))
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
