public import NIOCore

/// An S3 request as the HTTP layer hands it over: the head only; the body is read separately.
public struct S3Request: Sendable {
    /// The HTTP method, uppercase.
    public var method: String
    /// The path as on the wire (percent-encoded), before `?`.
    public var rawPath: String
    /// The query as on the wire, after `?` (may be empty).
    public var rawQuery: String
    /// Headers in arrival order; names as sent.
    public var headers: [(name: String, value: String)]
    /// The id that goes into `x-amz-request-id` and the logs.
    public var requestID: String

    public init(method: String, uri: String, headers: [(name: String, value: String)], requestID: String) {
        self.method = method
        if let question = uri.firstIndex(of: "?") {
            self.rawPath = String(uri[..<question])
            self.rawQuery = String(uri[uri.index(after: question)...])
        } else {
            self.rawPath = uri
            self.rawQuery = ""
        }
        self.headers = headers
        self.requestID = requestID
    }

    /// The first value of header `name` (case-insensitive).
    public func header(_ name: String) -> String? {
        for header in self.headers where header.name.caseInsensitiveEquals(name) {
            return header.value
        }
        return nil
    }
}

/// The body of a request, read piece by piece by the one task serving the request.
public protocol RequestBody: AnyObject {
    /// The next piece of the body, or nil at its end.
    ///
    /// The first call is the signal that the request was accepted: a server that received
    /// `Expect: 100-continue` sends `100 Continue` then.
    func next() async throws -> ByteBuffer?
}

/// Where a streamed response body goes.
public protocol ResponseBodyWriter: Sendable {
    /// Writes `buffer`, waiting while the client is slower than the server.
    func write(_ buffer: ByteBuffer) async throws
}

/// An S3 response: status, headers and body.
public struct S3Response: Sendable {
    public enum Body: Sendable {
        case empty
        case buffer(ByteBuffer)
        /// A body of `length` bytes produced by `producer`.
        case stream(length: Int64, producer: @Sendable (any ResponseBodyWriter) async throws -> Void)
    }

    public var status: Int
    public var headers: [(String, String)]
    public var body: Body
    /// The S3 operation, for metrics and logs (e.g. `PutObject`).
    public var operation: String
    /// The error code when the request failed.
    public var errorCode: String?

    public init(status: Int, headers: [(String, String)] = [], body: Body = .empty, operation: String) {
        self.status = status
        self.headers = headers
        self.body = body
        self.operation = operation
    }

    /// The number of body bytes, when known.
    public var contentLength: Int64? {
        switch self.body {
        case .empty: return 0
        case .buffer(let buffer): return Int64(buffer.readableBytes)
        case .stream(let length, _): return length
        }
    }
}

extension String {
    /// ASCII case-insensitive equality.
    func caseInsensitiveEquals(_ other: String) -> Bool {
        let a = self.utf8
        let b = other.utf8
        guard a.count == b.count else { return false }
        for (x, y) in zip(a, b) {
            let lx = x >= 65 && x <= 90 ? x + 32 : x
            let ly = y >= 65 && y <= 90 ? y + 32 : y
            if lx != ly { return false }
        }
        return true
    }
}
