/// Operator requests served on the S3 port under `/_admin/…` (a path no bucket can have), signed
/// with SigV4 like any S3 request. The node's storage administration (`cloud storage status`,
/// `cloud storage layout`) implements it.
public protocol AdminAPI: Sendable {
    /// Answers one request with a JSON document.
    /// - Parameters:
    ///   - path: the path after `/_admin`, e.g. `/storage/status`.
    ///   - accessKey: who signed the request.
    /// - Throws: ``AdminError`` for a failure the caller should see.
    func handle(method: String, path: String, query: [String: String], body: [UInt8], accessKey: String) async throws -> AdminResponse
}

/// A JSON answer of the admin API.
public struct AdminResponse: Sendable {
    public var status: Int
    public var json: String

    public init(status: Int = 200, json: String) {
        self.status = status
        self.json = json
    }
}

/// A failure of an admin request: `{"error": {"code": …, "message": …}}` with an HTTP status.
public struct AdminError: Error, Sendable {
    public var status: Int
    public var code: String
    public var message: String

    public init(_ status: Int, _ code: String, _ message: String) {
        self.status = status
        self.code = code
        self.message = message
    }
}

