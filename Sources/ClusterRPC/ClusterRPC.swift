// ClusterRPC: request/response calls between storage nodes (see docs/cluster.md).
//
// # Wire protocol
//
// One call is one HTTP/1.1 exchange on a keep-alive TCP connection. Bodies are opaque bytes, fully
// buffered on both sides (at most a few MiB: a 1 MiB block plus a header, or a batch of records).
//
// Request:
//
//     POST /rpc/<method> HTTP/1.1
//     content-length: <n>
//     x-cloud-time: <unix time of the caller, in milliseconds>
//     x-cloud-signature: <hex HMAC-SHA256(secret, "<method>\n<time>\n<hex SHA-256(body)>")>
//
//     <body>
//
// `<method>` is 1 to 128 characters of `A-Z a-z 0-9 . _ -` (so no string-to-sign component can
// contain a newline). Transfer-Encoding is not used; Content-Length always is.
//
// The server answers, without calling the handler:
// - 404 for another HTTP method or a path that is not `/rpc/<valid method>`;
// - 401 when the time or signature header is missing or malformed, the time is more than
//   `clockSkew` away from the server's clock, or the signature does not match;
// - 413 with `connection: close` when Content-Length exceeds `maxBodySize` (the body is not read;
//   the connection is closed).
//
// Otherwise it calls the handler and answers:
// - 200 with the handler's reply as the body;
// - 409 when the handler threw `RPCRemoteError`: header `x-cloud-error-code: <code>` and the message
//   (UTF-8) as the body;
// - 500 when it threw anything else: `x-cloud-error-code: InternalError`, body `internal error`
//   (the error itself is only logged by the server).
//
// Each of these three is signed with the same secret:
//
//     x-cloud-signature: <hex HMAC-SHA256(secret,
//         "<method>\n<request time>\n<hex SHA-256(reply body)>\n<status>\n<error code or empty>")>
//
// The reply's string-to-sign is the request's plus two lines (status, error code), so a reply
// signature can never pass as a request signature (method names contain no newline) and a peer on
// the path cannot turn an error into a success or change its code. The client rejects an unsigned or
// wrongly signed 200/409/500 as `.unauthorized`.
//
// Limits: the secret authenticates, it does not encrypt; a captured request can be replayed within
// the clock-skew window (there is no nonce). Callers that need more SHOULD make their methods
// idempotent (block puts are: blocks are content addressed).

public import NIOCore

/// What a handler throws to send a typed failure back to the caller.
///
/// The caller's `RPCClient.call` throws `RPCError` with `kind == .remote`, `code == code` and
/// `message == message`.
public struct RPCRemoteError: Error, Sendable, CustomStringConvertible {
    /// A short machine-readable code (for example `NoSuchBlock`). Characters outside
    /// `A-Z a-z 0-9 . _ -` are replaced by `_` on the wire; at most 128 characters are sent.
    public var code: String
    /// A human-readable explanation, sent as the reply body. It MUST NOT contain secrets.
    public var message: String

    /// Creates a remote error.
    /// - Parameters:
    ///   - code: the machine-readable code the caller sees in `RPCError.code`.
    ///   - message: the explanation the caller sees in `RPCError.message`.
    public init(code: String, message: String) {
        self.code = code
        self.message = message
    }

    /// `code: message`.
    public var description: String { "\(self.code): \(self.message)" }
}

/// A failure that `RPCClient.call` reports.
public struct RPCError: Error, Sendable, CustomStringConvertible {
    /// What went wrong, as far as a caller needs to decide what to do next.
    public enum Kind: Sendable, Hashable {
        /// The peer could not be reached: bad address, DNS failure, connection refused or reset,
        /// connect timeout, connection closed before a reply started.
        case unreachable
        /// The call's deadline expired (waiting for a connection, connecting, or waiting for the
        /// reply). The peer may or may not have executed the call.
        case timeout
        /// The peer rejected our signature (different secret or clocks too far apart), or its reply
        /// was not signed with our secret.
        case unauthorized
        /// The peer's handler failed: `code` says how (`InternalError` for an unexpected error).
        case remote
        /// The peer spoke something else than this protocol: garbage, a truncated or oversized
        /// reply, an unexpected status (404 for a bad route, 413 for a body over its limit).
        case protocolError
        /// The client was shut down.
        case shutDown
    }

    /// What went wrong.
    public var kind: Kind
    /// The remote error code when `kind == .remote`, else `nil`.
    public var code: String?
    /// A human-readable explanation; never contains the secret or a signature.
    public var message: String

    /// Creates an error.
    /// - Parameters:
    ///   - kind: what went wrong.
    ///   - code: the remote error code, for `.remote`.
    ///   - message: an explanation.
    public init(kind: Kind, code: String? = nil, message: String) {
        self.kind = kind
        self.code = code
        self.message = message
    }

    /// `kind` (and `code`) followed by the message.
    public var description: String {
        if let code = self.code {
            return "RPCError(\(self.kind), \(code)): \(self.message)"
        }
        return "RPCError(\(self.kind)): \(self.message)"
    }
}

/// Serves one call: receives the method name and the request body, returns the reply body.
///
/// Throw `RPCRemoteError` to send a typed failure; any other error is answered as `InternalError`
/// and logged. Calls on one connection are served one after another; calls on different connections
/// run concurrently, so a handler MUST be safe to run concurrently with itself.
public typealias RPCHandler = @Sendable (_ method: String, _ body: ByteBuffer) async throws -> ByteBuffer

/// A handler that also gets the SHA-256 of the request body, which the server computed to check the
/// signature anyway (so a handler that needs the digest, such as a content-addressed block store,
/// does not hash the body a second time).
public typealias RPCDigestHandler = @Sendable (_ method: String, _ body: ByteBuffer, _ bodyDigest: [UInt8]) async throws -> ByteBuffer
