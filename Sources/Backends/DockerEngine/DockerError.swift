/// What went wrong talking to a Docker Engine. The description is safe to show a user: it names
/// the socket and the engine's own message, never a request body.
public struct DockerError: Error, Sendable, Equatable, CustomStringConvertible {
    private enum Code: Equatable {
        case unreachable, timedOut, malformed, notFound, conflict, engine
    }

    private let code: Code
    /// The engine's HTTP status, when it answered.
    public let status: Int?
    public let description: String

    private init(_ code: Code, status: Int? = nil, _ description: String) {
        self.code = code
        self.status = status
        self.description = description
    }

    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.code == rhs.code }

    /// No engine listens on the socket.
    public static func unreachable(socket: String, reason: String) -> Self {
        Self(.unreachable, "docker: no engine at \(socket) (\(reason))")
    }

    static func timedOut(_ what: String, after: Duration, socket: String) -> Self {
        Self(.timedOut, "docker: the engine at \(socket) did not answer \(what) within \(after)")
    }

    static func malformed(_ what: String) -> Self { Self(.malformed, "docker: \(what)") }

    /// The engine's answer to a failed call: 404 and 409 keep their meaning for callers.
    static func answer(_ status: Int, _ body: String, doing what: String) -> Self {
        let message = DockerJSON.message(body) ?? String(body.prefix(300))
        let code: Code =
            switch status {
            case 404: .notFound
            case 409: .conflict
            default: .engine
            }
        return Self(code, status: status, "docker: \(what): \(message) (HTTP \(status))")
    }

    /// An engine error that the engine sent inside a 200 stream (an image import that failed).
    static func streamed(_ message: String, doing what: String) -> Self { Self(.engine, "docker: \(what): \(message)") }

    /// The engine is not there or did not answer in time: the host, not the request, is at fault.
    public var isUnavailable: Bool { self.code == .unreachable || self.code == .timedOut }
    /// The container or image does not exist.
    public var isNotFound: Bool { self.code == .notFound }
    /// A name in use, or a container in the wrong state for the call.
    public var isConflict: Bool { self.code == .conflict }
}
