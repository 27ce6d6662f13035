import Hashing
public import Logging
public import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// Calls other nodes' `RPCServer`s over pooled keep-alive connections.
///
/// Each peer address gets at most `maxConnectionsPerPeer` connections; calls beyond that wait, first
/// come first served, for one to become free. A connection that failed, timed out or was cancelled
/// is closed, never reused. The client does not retry: a caller that wants to retry decides when.
/// Call `shutdown()` when done, so that no connection is left open.
public final class RPCClient: Sendable {
    private let secret: [UInt8]
    private let connectTimeout: Duration
    private let maxReplySize: Int
    private let pool: ConnectionPool
    private let logger: Logger
    private let group: MultiThreadedEventLoopGroup

    /// How long a connection may sit idle in the pool before it is closed. Shorter than the server's
    /// default idle timeout (90 s), so the client closes idle connections before the server does.
    static let idleConnectionTimeout = TimeAmount.seconds(30)

    /// Creates a client; connections are opened on demand.
    /// - Parameters:
    ///   - secret: the cluster secret (not empty); MUST equal the servers'.
    ///   - maxConnectionsPerPeer: the most connections open to one address at once (at least 1).
    ///   - connectTimeout: the longest a TCP connect may take (also bounded by each call's timeout).
    ///   - maxReplySize: the largest reply body accepted, in bytes; a larger reply fails the call
    ///     with `.protocolError`.
    ///   - logger: where connection failures are logged (debug).
    public init(
        secret: [UInt8],
        maxConnectionsPerPeer: Int = 8,
        connectTimeout: Duration = .seconds(2),
        maxReplySize: Int = 16 << 20,
        logger: Logger
    ) {
        precondition(!secret.isEmpty, "the cluster secret MUST NOT be empty")
        precondition(maxConnectionsPerPeer >= 1, "maxConnectionsPerPeer MUST be >= 1")
        self.secret = secret
        self.connectTimeout = connectTimeout
        self.maxReplySize = maxReplySize
        self.pool = ConnectionPool(maxPerPeer: maxConnectionsPerPeer)
        self.logger = logger
        self.group = MultiThreadedEventLoopGroup.singleton
    }

    /// Calls `method` on the node at `address` ("host:port") and returns its reply body.
    ///
    /// - Parameters:
    ///   - address: the peer's RPC address, "host:port" or "[v6 address]:port".
    ///   - method: the method name, 1 to 128 characters of `A-Z a-z 0-9 . _ -`.
    ///   - body: the request body (sent as is, not copied).
    ///   - timeout: bounds the whole call: waiting for a free connection, connecting, sending and
    ///     receiving the full reply.
    /// - Returns: the reply body of a handler that succeeded.
    /// - Throws: `RPCError` (`.remote` with the handler's code when it threw `RPCRemoteError`), or
    ///   `CancellationError` when the calling task was cancelled (the connection is closed).
    ///   - bodyDigest: the SHA-256 of `body` when the caller knows it already (a content-addressed
    ///     block); it is signed as given, and the server checks it against the bytes it receives.
    public func call(
        _ address: String, method: String, body: ByteBuffer, bodyDigest: [UInt8]? = nil, timeout: Duration
    ) async throws -> ByteBuffer {
        guard Wire.isValidName(method) else {
            throw RPCError(kind: .protocolError, message: "invalid RPC method name")
        }
        guard let (host, port) = Wire.parseAddress(address) else {
            throw RPCError(kind: .unreachable, message: "invalid peer address \(address)")
        }
        if self.pool.isShutDown {
            throw RPCError(kind: .shutDown, message: "the RPC client was shut down")
        }
        try Task.checkCancellation()

        let time = Wire.unixMillisNow()
        let signature = Wire.requestSignature(
            secret: self.secret, method: method, time: time, bodyDigest: bodyDigest ?? Wire.digest(body))
        var headers = HTTPHeaders()
        headers.reserveCapacity(4)
        headers.add(name: "host", value: address)
        headers.add(name: "content-length", value: String(body.readableBytes))
        headers.add(name: Wire.timeHeader, value: String(time))
        headers.add(name: Wire.signatureHeader, value: Hex.encode(signature))
        let head = HTTPRequestHead(version: .http1_1, method: .POST, uri: Wire.pathPrefix + method, headers: headers)

        let deadline = NIODeadline.now() + TimeAmount(timeout)
        // The deadline is enforced by the connection's handler once the call is sent (a timer on its
        // event loop), by the connect timeout while connecting, and by a timer of the call only
        // while it waits for a connection (see `lease`).
        var reply: RawReply?
        var attempts = 0
        while reply == nil {
            attempts += 1
            let call = CallContext(pool: self.pool)
            defer { call.finish() }
            do {
                reply = try await withTaskCancellationHandler {
                    try await self.perform(
                        call, peer: address, host: host, port: port, deadline: deadline, head: head, body: body
                    )
                } onCancel: {
                    call.abort(.cancelled)
                }
            } catch is CallNotSent where attempts == 1 && call.abortReason == nil {
                // A pooled connection the peer had closed (its idle timeout) as the call went out:
                // the peer never handled the call, so it goes once more on a new connection.
                continue
            } catch {
                throw self.mapFailure(error, call: call, address: address, method: method, timeout: timeout)
            }
        }
        return try self.authenticate(reply!, address: address, method: method, time: time)
    }

    /// The error a failed attempt of a call surfaces as.
    private func mapFailure(_ error: any Error, call: CallContext, address: String, method: String, timeout: Duration) -> any Error {
        if let error = error as? RPCError, error.kind == .timeout, call.abortReason == nil {
            return RPCError(kind: .timeout, message: "no reply from \(address) to \(method) within \(timeout)")
        }
        switch call.abortReason {
        case .timeout:
            return RPCError(kind: .timeout, message: "no reply from \(address) to \(method) within \(timeout)")
        case .cancelled:
            return CancellationError()
        case nil:
            if self.pool.isShutDown {
                return RPCError(kind: .shutDown, message: "the RPC client was shut down")
            }
            let failure: RPCError
            if let error = error as? RPCError {
                failure = error
            } else if error is CallNotSent {
                failure = RPCError(kind: .unreachable, message: "connection closed before the call was sent")
            } else {
                return RPCError(kind: .unreachable, message: "call to \(address) failed: \(error)")
            }
            self.logger.debug(
                "RPC call failed", metadata: ["peer": "\(address)", "rpc-method": "\(method)", "error": "\(failure)"])
            return failure
        }
    }

    /// Gets a connection (waiting or connecting), sends the call and waits for the reply.
    private func perform(
        _ call: CallContext,
        peer: String,
        host: String,
        port: Int,
        deadline: NIODeadline,
        head: HTTPRequestHead,
        body: ByteBuffer
    ) async throws -> RawReply {
        let (connection, reused) = try await self.lease(call, peer: peer, host: host, port: port, deadline: deadline)
        guard call.enterInFlight(connection.channel) else {
            // Aborted while we got the connection; it is untouched, so another call may use it.
            self.pool.release(connection, reusable: true)
            throw CancellationError()
        }
        let promise = connection.channel.eventLoop.makePromise(of: RawReply.self)
        let request = OutboundCall(
            head: head,
            body: body,
            reply: promise,
            maxReplySize: self.maxReplySize,
            deadline: deadline
        )
        connection.channel.writeAndFlush(request).whenFailure { _ in
            // The handler never took the call (the connection closed first).
            promise.fail(CallNotSent())
        }
        do {
            let reply = try await promise.futureResult.get()
            call.finish()
            self.pool.release(connection, reusable: reply.keepAlive)
            return reply
        } catch {
            call.finish()
            self.pool.release(connection, reusable: false)
            if error is ClosedBeforeReply {
                // A pooled keep-alive connection that the peer closed as idle just as the call went
                // out: the peer dropped it unread. Every cluster method is idempotent (records merge
                // by timestamp, blocks are named by their content), so it goes once more on a new
                // connection. On a fresh connection it means the peer is going away.
                if reused { throw CallNotSent() }
                throw RPCError(kind: .unreachable, message: "connection closed before a reply")
            }
            throw error
        }
    }

    /// An idle connection to `peer`, or a new one.
    private func lease(
        _ call: CallContext,
        peer: String,
        host: String,
        port: Int,
        deadline: NIODeadline
    ) async throws -> (connection: PooledConnection, reused: Bool) {
        let lease = try await self.pool.acquire(peer: peer) { waiterID in
            // Queued: the deadline needs a timer now. If the call was aborted before it could record
            // the wait, cancel the wait here.
            let timer = self.group.next().scheduleTask(deadline: deadline) { call.abort(.timeout) }
            if !call.enterWaiting(peer: peer, waiterID: waiterID, timer: timer) {
                self.pool.cancelWaiter(peer: peer, waiterID: waiterID, error: CancellationError())
            }
        }
        switch lease {
        case .connection(let connection):
            return (connection, true)
        case .connect:
            guard call.enterConnecting() else {
                self.pool.connectFailed(peer: peer)
                throw CancellationError()
            }
            let channel: any Channel
            do {
                channel = try await self.connect(host: host, port: port, deadline: deadline)
            } catch {
                self.pool.connectFailed(peer: peer)
                throw error
            }
            let connection = PooledConnection(id: self.pool.makeID(), peer: peer, channel: channel)
            guard self.pool.connected(connection) else {
                throw RPCError(kind: .shutDown, message: "the RPC client was shut down")
            }
            return (connection, false)
        }
    }

    private func connect(host: String, port: Int, deadline: NIODeadline) async throws -> any Channel {
        let remaining = deadline - NIODeadline.now()
        let connectTimeout = min(TimeAmount(self.connectTimeout), max(remaining, .milliseconds(1)))
        let idleTimeout = Self.idleConnectionTimeout
        do {
            return try await ClientBootstrap(group: self.group)
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .connectTimeout(connectTimeout)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let sync = channel.pipeline.syncOperations
                        try sync.addHandler(IdleStateHandler(allTimeout: idleTimeout))
                        try sync.addHTTPClientHandlers()
                        try sync.addHandler(ClientChannelHandler())
                    }
                }
                .connect(host: host, port: port)
                .get()
        } catch {
            if NIODeadline.now() >= deadline {
                throw RPCError(kind: .timeout, message: "no connection to \(host):\(port) before the deadline")
            }
            throw RPCError(kind: .unreachable, message: "cannot connect to \(host):\(port): \(error)")
        }
    }

    /// Checks the reply's signature and turns it into a body or an error.
    private func authenticate(_ reply: RawReply, address: String, method: String, time: Int64) throws -> ByteBuffer {
        switch reply.status {
        case 200, Wire.remoteErrorStatus, Wire.internalErrorStatus:
            let code = reply.status == 200 ? "" : reply.headers.first(name: Wire.errorCodeHeader) ?? ""
            let expected = Wire.replySignature(
                secret: self.secret,
                method: method,
                time: time,
                bodyDigest: reply.bodyDigest,
                status: reply.status,
                errorCode: code
            )
            guard Wire.signatureMatches(reply.headers.first(name: Wire.signatureHeader), expected: expected) else {
                throw RPCError(kind: .unauthorized, message: "the reply from \(address) is not signed with the cluster secret")
            }
            if reply.status == 200 { return reply.body }
            throw RPCError(
                kind: .remote,
                code: code.isEmpty ? Wire.internalErrorCode : code,
                message: String(buffer: reply.body)
            )
        case 401:
            throw RPCError(
                kind: .unauthorized,
                message: "\(address) rejected the call (a different cluster secret, or clocks too far apart)"
            )
        case 404:
            throw RPCError(kind: .protocolError, message: "\(address) does not serve \(Wire.pathPrefix)\(method)")
        case 413:
            throw RPCError(kind: .protocolError, message: "the request body exceeds the limit of \(address)")
        default:
            throw RPCError(kind: .protocolError, message: "unexpected HTTP status \(reply.status) from \(address)")
        }
    }

    /// Fails queued calls and calls in progress with `.shutDown`, closes every connection and
    /// returns once they are closed. Later calls fail with `.shutDown`.
    public func shutdown() async {
        await self.pool.shutdown()
    }
}

/// Where one call is, so that its deadline or its task's cancellation can stop it in any phase:
/// a queued wait is cancelled, a connection in use is closed. A connect is not interrupted (it is
/// bounded by the connect timeout and the deadline); the call stops once it completes.
final class CallContext: Sendable {
    enum AbortReason: Sendable {
        case timeout
        case cancelled
    }

    private enum Phase {
        case starting
        case waiting(peer: String, waiterID: UInt64)
        case connecting
        case inFlight(any Channel)
        case finished
    }

    private struct State {
        var phase = Phase.starting
        var abort: AbortReason?
        /// The deadline timer of a call that had to wait for a connection.
        var timer: Scheduled<Void>?
    }

    private let state = Mutex(State())
    private let pool: ConnectionPool

    init(pool: ConnectionPool) {
        self.pool = pool
    }

    var abortReason: AbortReason? { self.state.withLock { $0.abort } }

    /// Stops the call (the first reason wins; nothing happens once it finished).
    func abort(_ reason: AbortReason) {
        let phase: Phase? = self.state.withLock { state in
            if state.abort != nil { return nil }
            if case .finished = state.phase { return nil }
            state.abort = reason
            return state.phase
        }
        switch phase {
        case .waiting(let peer, let waiterID):
            self.pool.cancelWaiter(peer: peer, waiterID: waiterID, error: CancellationError())
        case .inFlight(let channel):
            channel.close(promise: nil)
        case .starting, .connecting, .finished, nil:
            break
        }
    }

    /// Each `enter…` moves to a phase; `false` when the call was aborted (the caller then gives back
    /// what it holds and stops).
    func enterWaiting(peer: String, waiterID: UInt64, timer: Scheduled<Void>) -> Bool {
        self.state.withLock { state in
            state.timer = timer
            if state.abort != nil { return false }
            state.phase = .waiting(peer: peer, waiterID: waiterID)
            return true
        }
    }
    func enterConnecting() -> Bool { self.enter(.connecting) }
    func enterInFlight(_ channel: any Channel) -> Bool { self.enter(.inFlight(channel)) }

    /// The call is over: aborting it has no effect any more.
    func finish() {
        let timer = self.state.withLock { state in
            state.phase = .finished
            defer { state.timer = nil }
            return state.timer
        }
        timer?.cancel()
    }

    private func enter(_ phase: Phase) -> Bool {
        self.state.withLock { state in
            if state.abort != nil { return false }
            state.phase = phase
            return true
        }
    }
}

/// A call that never left this node: its pooled connection was closed before the write.
private struct CallNotSent: Error {}
