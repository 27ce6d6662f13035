import Hashing
import HTTPServing
public import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
public import ServiceLifecycle
import Synchronization

/// Settings of an `RPCServer`.
public struct RPCServerConfiguration: Sendable {
    /// Where to listen, "host:port" or "[v6 address]:port". Port 0 picks a free port (see
    /// `RPCServer.waitUntilBound()`).
    public var bindAddress: String
    /// The cluster secret: requests and replies are signed with HMAC-SHA256 under it. MUST NOT be empty.
    public var secret: [UInt8] {
        willSet { precondition(!newValue.isEmpty, "the cluster secret MUST NOT be empty") }
    }
    /// The largest request body accepted, in bytes; a larger Content-Length is answered 413 without
    /// reading the body, and the connection is closed. 16 MiB: a 1 MiB block or a batch of metadata
    /// records with plenty of room.
    public var maxBodySize: Int = 16 << 20 {
        willSet { precondition(newValue >= 0, "maxBodySize MUST be >= 0") }
    }
    /// A connection on which nothing was received for this long, and that has no call in progress,
    /// is closed. SHOULD be longer than the client's keep-alive of idle connections (30 s), so that
    /// the client, not the server, closes idle connections (no request races a close).
    public var idleTimeout: Duration = .seconds(90)
    /// How far the caller's `x-cloud-time` may be from this server's clock, either way. 300 s, like
    /// AWS SigV4.
    public var clockSkew: Duration = .seconds(300)

    /// Creates a configuration with the default limits.
    /// - Parameters:
    ///   - bindAddress: "host:port" to listen on.
    ///   - secret: the cluster secret (not empty).
    public init(bindAddress: String, secret: [UInt8]) {
        precondition(!secret.isEmpty, "the cluster secret MUST NOT be empty")
        self.bindAddress = bindAddress
        self.secret = secret
    }
}

/// The RPC listener of a node: authenticates calls and passes them to one handler.
///
/// Run it as a `Service`. `run()` serves until a graceful shutdown, then stops accepting, lets
/// calls in progress finish (their replies carry `connection: close`), closes idle connections and
/// returns once every connection is closed. Task cancellation stops it harder: calls in progress
/// see their task cancelled.
public final class RPCServer: Service, Sendable {
    private enum BindState {
        case waiting([UInt64: CheckedContinuation<Int, any Error>], nextID: UInt64)
        case bound(Int)
        case failed(any Error)
    }

    private let configuration: RPCServerConfiguration
    private let handler: RPCDigestHandler
    private let logger: Logger
    private let bindState = Mutex(BindState.waiting([:], nextID: 0))

    /// Creates a server; nothing happens until `run()`.
    /// - Parameters:
    ///   - configuration: address, secret and limits.
    ///   - handler: serves authenticated calls.
    ///   - logger: where rejected requests (debug/notice) and handler failures (error) are logged.
    public convenience init(configuration: RPCServerConfiguration, handler: @escaping RPCHandler, logger: Logger) {
        self.init(configuration: configuration, digestHandler: { method, body, _ in try await handler(method, body) }, logger: logger)
    }

    /// Creates a server whose handler also gets the request body's SHA-256.
    public init(configuration: RPCServerConfiguration, digestHandler: @escaping RPCDigestHandler, logger: Logger) {
        self.configuration = configuration
        self.handler = digestHandler
        self.logger = logger
    }

    /// Waits until `run()` has bound its socket.
    /// - Returns: the bound port (useful with port 0).
    /// - Throws: the bind error when binding failed, or `CancellationError`.
    public func waitUntilBound() async throws -> Int {
        let id: UInt64? = try self.bindState.withLock { state in
            switch state {
            case .bound: return nil
            case .failed(let error): throw error
            case .waiting(let waiters, let nextID):
                state = .waiting(waiters, nextID: nextID + 1)
                return nextID
            }
        }
        guard let id else { return try self.boundPortOrThrow() }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                let resumeNow: Result<Int, any Error>? = self.bindState.withLock { state in
                    switch state {
                    case .bound(let port): return .success(port)
                    case .failed(let error): return .failure(error)
                    case .waiting(var waiters, let nextID):
                        if Task.isCancelled { return .failure(CancellationError()) }
                        waiters[id] = continuation
                        state = .waiting(waiters, nextID: nextID)
                        return nil
                    }
                }
                if let resumeNow { continuation.resume(with: resumeNow) }
            }
        } onCancel: {
            let continuation: CheckedContinuation<Int, any Error>? = self.bindState.withLock { state in
                guard case .waiting(var waiters, let nextID) = state else { return nil }
                let continuation = waiters.removeValue(forKey: id)
                state = .waiting(waiters, nextID: nextID)
                return continuation
            }
            continuation?.resume(throwing: CancellationError())
        }
    }

    private func boundPortOrThrow() throws -> Int {
        try self.bindState.withLock { state in
            switch state {
            case .bound(let port): return port
            case .failed(let error): throw error
            case .waiting: throw CancellationError()
            }
        }
    }

    private func finishBinding(_ result: Result<Int, any Error>) {
        let waiters: [CheckedContinuation<Int, any Error>] = self.bindState.withLock { state in
            guard case .waiting(let waiters, _) = state else { return [] }
            switch result {
            case .success(let port): state = .bound(port)
            case .failure(let error): state = .failed(error)
            }
            return Array(waiters.values)
        }
        for waiter in waiters { waiter.resume(with: result) }
    }

    /// Binds and serves until a graceful shutdown (or task cancellation). MUST be called once.
    /// - Throws: when the address is malformed or binding fails.
    public func run() async throws {
        let server: NIOAsyncChannel<AcceptedConnection, Never>
        do {
            guard let (host, port) = Wire.parseAddress(self.configuration.bindAddress) else {
                throw RPCError(kind: .unreachable, message: "invalid bind address \(self.configuration.bindAddress)")
            }
            let maxBodySize = self.configuration.maxBodySize
            let idleTimeout = TimeAmount(self.configuration.idleTimeout)
            server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .serverChannelOption(.backlog, value: 256)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                .childChannelOption(.maxMessagesPerRead, value: 16)
                .bind(host: host, port: port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let state = ServerConnectionState(channel: channel)
                        let sync = channel.pipeline.syncOperations
                        try sync.addHandler(IdleStateHandler(readTimeout: idleTimeout))
                        try sync.configureHTTPServerPipeline(withPipeliningAssistance: true, withErrorHandling: true)
                        try sync.addHandler(RequestAggregator(maxBodySize: maxBodySize, state: state))
                        let connection: NIOAsyncChannel<ServerInbound, HTTPServerResponsePart> = try wrapAcceptedConnection(
                            channel, configuration: .init(isOutboundHalfClosureEnabled: false))
                        return AcceptedConnection(channel: connection, state: state)
                    }
                }
        } catch {
            self.logger.error(
                "RPC listener failed to bind",
                metadata: ["address": "\(self.configuration.bindAddress)", "error": "\(error)"]
            )
            self.finishBinding(.failure(error))
            throw error
        }
        let boundPort = server.channel.localAddress?.port ?? 0
        self.logger.notice(
            "RPC listening",
            metadata: ["address": "\(server.channel.localAddress?.description ?? self.configuration.bindAddress)"]
        )
        self.finishBinding(.success(boundPort))

        try await withGracefulShutdownHandler {
            try await withThrowingDiscardingTaskGroup { group in
                try await server.executeThenClose { inbound in
                    for try await connection in inbound {
                        group.addTask {
                            await withGracefulShutdownHandler {
                                await self.serve(connection)
                            } onGracefulShutdown: {
                                connection.state.shutDown()
                            }
                        }
                    }
                }
            }
        } onGracefulShutdown: {
            server.channel.close(promise: nil)
        }
        self.logger.notice("RPC listener stopped", metadata: ["address": "\(self.configuration.bindAddress)"])
    }

    // MARK: - One connection

    private func serve(_ connection: AcceptedConnection) async {
        do {
            try await connection.channel.executeThenClose { inbound, outbound in
                for try await message in inbound {
                    switch message {
                    case .tooLarge(let head):
                        self.logger.debug(
                            "RPC request body too large",
                            metadata: ["uri": "\(head.uri)", "limit": "\(self.configuration.maxBodySize)"]
                        )
                        var headers = HTTPHeaders()
                        headers.add(name: "content-length", value: "0")
                        headers.add(name: "connection", value: "close")
                        let responseHead = HTTPResponseHead(version: head.version, status: .payloadTooLarge, headers: headers)
                        try await outbound.write(contentsOf: [.head(responseHead), .end(nil)])
                        return
                    case .request(let request):
                        let reply = await self.respond(to: request)
                        let close = !request.head.isKeepAlive || connection.state.isShuttingDown
                        var headers = reply.headers
                        headers.add(name: "content-length", value: String(reply.body.readableBytes))
                        if close { headers.add(name: "connection", value: "close") }
                        let head = HTTPResponseHead(version: request.head.version, status: reply.status, headers: headers)
                        if reply.body.readableBytes > 0 {
                            try await outbound.write(contentsOf: [.head(head), .body(.byteBuffer(reply.body)), .end(nil)])
                        } else {
                            try await outbound.write(contentsOf: [.head(head), .end(nil)])
                        }
                        if !connection.state.requestFinished() || close { return }
                    }
                }
            }
        } catch {
            self.logger.debug("RPC connection ended", metadata: ["error": "\(error)"])
        }
    }

    private struct Reply {
        var status: HTTPResponseStatus
        var headers = HTTPHeaders()
        var body: ByteBuffer
    }

    /// Authenticates one request, runs the handler and builds the (signed) reply.
    private func respond(to request: InboundRequest) async -> Reply {
        let head = request.head
        guard head.method == .POST, let method = Wire.method(fromPath: head.uri) else {
            self.logger.debug("RPC request for an unknown route", metadata: ["method": "\(head.method)", "uri": "\(head.uri)"])
            return Reply(status: .notFound, body: ByteBuffer(string: "no such RPC route"))
        }
        guard let timeText = head.headers.first(name: Wire.timeHeader), let time = Int64(timeText) else {
            self.logger.notice("RPC request without a valid time header", metadata: ["rpc-method": "\(method)"])
            return Reply(status: .unauthorized, body: ByteBuffer())
        }
        let skew = Wire.unixMillisNow() - time
        guard skew.magnitude <= Wire.milliseconds(self.configuration.clockSkew).magnitude else {
            self.logger.notice(
                "RPC request outside the allowed clock skew",
                metadata: ["rpc-method": "\(method)", "skew-ms": "\(skew)"]
            )
            return Reply(status: .unauthorized, body: ByteBuffer())
        }
        let expected = Wire.requestSignature(
            secret: self.configuration.secret,
            method: method,
            time: time,
            bodyDigest: request.bodyDigest
        )
        guard Wire.signatureMatches(head.headers.first(name: Wire.signatureHeader), expected: expected) else {
            self.logger.notice(
                "RPC request with a bad signature (is the cluster secret the same on every node?)",
                metadata: ["rpc-method": "\(method)"]
            )
            return Reply(status: .unauthorized, body: ByteBuffer())
        }

        var reply: Reply
        var code = ""
        do {
            reply = Reply(status: .ok, body: try await self.handler(method, request.body, request.bodyDigest))
        } catch let error as RPCRemoteError {
            code = Wire.sanitizedCode(error.code)
            reply = Reply(status: HTTPResponseStatus(statusCode: Wire.remoteErrorStatus), body: ByteBuffer(string: error.message))
        } catch {
            self.logger.error("RPC handler failed", metadata: ["rpc-method": "\(method)", "error": "\(error)"])
            code = Wire.internalErrorCode
            reply = Reply(
                status: HTTPResponseStatus(statusCode: Wire.internalErrorStatus),
                body: ByteBuffer(string: Wire.internalErrorMessage)
            )
        }
        let signature = Wire.replySignature(
            secret: self.configuration.secret,
            method: method,
            time: time,
            bodyDigest: Wire.digest(reply.body),
            status: Int(reply.status.code),
            errorCode: code
        )
        if !code.isEmpty { reply.headers.add(name: Wire.errorCodeHeader, value: code) }
        reply.headers.add(name: Wire.signatureHeader, value: Hex.encode(signature))
        return reply
    }
}

// MARK: - Connection plumbing

/// An accepted connection: its async wrapper and whether it has calls in progress.
struct AcceptedConnection: Sendable {
    let channel: NIOAsyncChannel<ServerInbound, HTTPServerResponsePart>
    let state: ServerConnectionState
}

/// A complete request, body buffered and hashed.
struct InboundRequest: Sendable {
    var head: HTTPRequestHead
    var body: ByteBuffer
    var bodyDigest: [UInt8]
}

/// What the aggregator passes on to the connection's task.
enum ServerInbound: Sendable {
    case request(InboundRequest)
    /// The declared or received body exceeds the limit: answer 413 and close.
    case tooLarge(HTTPRequestHead)
}

/// Whether a server connection has calls in progress, so that a graceful shutdown closes idle
/// connections at once and busy ones after their reply, and the idle timer spares busy ones.
final class ServerConnectionState: Sendable {
    private struct State {
        /// Requests whose head was received and whose reply was not yet written.
        var active = 0
        var shuttingDown = false
    }

    private let state = Mutex(State())
    private let channel: any Channel

    init(channel: any Channel) {
        self.channel = channel
    }

    /// A request head arrived (called on the event loop).
    func requestStarted() {
        self.state.withLock { $0.active += 1 }
    }

    /// A reply was written; false when the connection should close instead of reading another request.
    func requestFinished() -> Bool {
        self.state.withLock { state in
            state.active -= 1
            return !state.shuttingDown
        }
    }

    var isIdle: Bool { self.state.withLock { $0.active == 0 } }

    var isShuttingDown: Bool { self.state.withLock { $0.shuttingDown } }

    /// Graceful shutdown: close now when idle, else after the reply in progress.
    func shutDown() {
        let closeNow = self.state.withLock { state in
            state.shuttingDown = true
            return state.active == 0
        }
        if closeNow { self.channel.close(promise: nil) }
    }
}

/// Buffers and hashes request bodies (hashing overlaps with receiving), enforces the body limit, and
/// closes the connection on read-idle unless a handler is working on a call.
final class RequestAggregator: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = ServerInbound

    private let maxBodySize: Int
    private let state: ServerConnectionState
    private var head: HTTPRequestHead?
    private var collector = BodyCollector()
    /// After a too-large request: everything else is dropped until the connection closes.
    private var discarding = false

    init(maxBodySize: Int, state: ServerConnectionState) {
        self.maxBodySize = maxBodySize
        self.state = state
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if self.discarding { return }
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            self.state.requestStarted()
            let length = head.headers.first(name: "content-length").flatMap { Int($0) }
            if let length, length > self.maxBodySize {
                self.tooLarge(head, context: context)
                return
            }
            self.head = head
            self.collector.start(expectedLength: length)
        case .body(let part):
            guard let head = self.head else { return }
            if self.collector.received + part.readableBytes > self.maxBodySize {
                self.tooLarge(head, context: context)
                return
            }
            self.collector.append(part, allocator: context.channel.allocator)
        case .end:
            guard let head = self.head else { return }
            let (body, digest) = self.collector.finish()
            let request = InboundRequest(head: head, body: body, bodyDigest: digest)
            self.head = nil
            context.fireChannelRead(self.wrapInboundOut(.request(request)))
        }
    }

    private func tooLarge(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        self.discarding = true
        self.head = nil
        self.collector.start(expectedLength: nil)
        context.fireChannelRead(self.wrapInboundOut(.tooLarge(head)))
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            // Close an idle keep-alive connection, or one whose request body stalled; spare one whose
            // handler is still working on a call.
            if self.head != nil || self.state.isIdle { context.close(promise: nil) }
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }
}
