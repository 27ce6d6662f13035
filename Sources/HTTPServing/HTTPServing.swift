public import NIOCore
public import NIOHTTP1
import ServiceLifecycle
import Synchronization

/// The parts of an HTTP/1.1 listener that the S3 server and the control plane's API share: the
/// accept loop with graceful shutdown, and closing connections that are idle.

/// A listening channel whose connections carry HTTP/1.1 request and response parts.
public typealias HTTPListener = NIOAsyncChannel<NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>, Never>

/// Serves every connection `listener` accepts in a child task until graceful shutdown, which stops
/// accepting and closes idle connections at once, busy ones after their current response (the
/// serving closure calls ``ConnectionState/becomeIdle()`` between requests).
public func serveConnections(
    of listener: HTTPListener,
    _ serve: @escaping @Sendable (NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>, ConnectionState) async -> Void
) async throws {
    try await withGracefulShutdownHandler {
        try await withThrowingDiscardingTaskGroup { group in
            try await listener.executeThenClose { inbound in
                for try await connection in inbound {
                    group.addTask {
                        let state = ConnectionState(channel: connection.channel)
                        await withGracefulShutdownHandler {
                            await serve(connection, state)
                        } onGracefulShutdown: {
                            state.shutDown()
                        }
                    }
                }
            }
        }
    } onGracefulShutdown: {
        listener.channel.close(promise: nil)
    }
}

/// Closes the connection when the idle-state handler says that nothing was read for too long.
public final class CloseOnIdleHandler: ChannelInboundHandler, Sendable {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer

    public init() {}

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }
}

/// Whether a connection is between requests, so that a graceful shutdown closes idle connections
/// at once and busy ones after their current response.
public final class ConnectionState: Sendable {
    private struct State {
        var idle = true
        var shuttingDown = false
    }

    private let state = Mutex(State())
    private let channel: any Channel

    public init(channel: any Channel) {
        self.channel = channel
    }

    /// Marks the connection idle; false when it should close instead of reading another request.
    public func becomeIdle() -> Bool {
        self.state.withLock { state in
            state.idle = true
            return !state.shuttingDown
        }
    }

    public func becomeBusy() {
        self.state.withLock { $0.idle = false }
    }

    /// Graceful shutdown: closes the connection now if it is idle, else after its current response.
    public func shutDown() {
        let closeNow = self.state.withLock { state in
            state.shuttingDown = true
            return state.idle
        }
        if closeNow { self.channel.close(promise: nil) }
    }
}

/// Wraps a connection a listener accepted (call it in the child channel initializer, on the
/// channel's event loop) so that it closes itself if it is dropped before anyone takes it.
///
/// A listener that is closing, or whose accepting task was cancelled, can accept a connection it
/// never hands out; NIO's non-deprecated initializer traps when such a wrapper is deinitialized
/// without `executeThenClose` ("Deinited NIOAsyncWriter without calling finish()" — seen in the unit
/// tests, a server stopping while a client connected). The deinit-closing initializer is deprecated
/// in favour of scoped teardown, which an untaken connection cannot have; it is the right tool here,
/// and this is the one place that calls it (hence the build's one deprecation warning).
public func wrapAcceptedConnection<Inbound: Sendable, Outbound: Sendable>(
    _ channel: any Channel, configuration: NIOAsyncChannel<Inbound, Outbound>.Configuration = .init()
) throws -> NIOAsyncChannel<Inbound, Outbound> {
    try NIOAsyncChannel(synchronouslyWrapping: channel, configuration: configuration)
}
