import Hashing
import NIOCore
import NIOHTTP1

/// One call handed to a connection's `ClientChannelHandler` (written into the channel).
struct OutboundCall: Sendable {
    var head: HTTPRequestHead
    var body: ByteBuffer
    /// Completed by the handler once it accepted the call: with the reply, or with an `RPCError`.
    var reply: EventLoopPromise<RawReply>
    var maxReplySize: Int
    /// When the call times out: the promise fails with `.timeout` and the connection is closed.
    var deadline: NIODeadline
}

/// A complete HTTP reply, body buffered and hashed; not yet authenticated.
struct RawReply: Sendable {
    var status: Int
    var headers: HTTPHeaders
    var body: ByteBuffer
    var bodyDigest: [UInt8]
    /// Whether the connection may carry another call.
    var keepAlive: Bool
}

/// The client end of one connection: sends one call at a time, buffers and hashes its reply, turns
/// channel errors into `RPCError`s, and closes the connection when it is idle for too long.
///
/// Once a call was accepted (the write of `OutboundCall` succeeded) the handler completes its promise
/// exactly once: with the reply, or with an error when the connection fails or closes first. A write
/// that fails never reached the handler, so the writer fails the promise itself.
final class ClientChannelHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = OutboundCall
    typealias OutboundOut = HTTPClientRequestPart

    private struct Pending {
        var reply: EventLoopPromise<RawReply>
        var maxReplySize: Int
        /// The deadline timer, scheduled on this channel's event loop (no thread hop to arm or cancel it).
        var timer: Scheduled<Void>
    }

    private var pending: Pending?
    /// The reply head, once received.
    private var replyHead: HTTPResponseHead?
    private var collector = BodyCollector()
    /// The connection failed or is closing; it accepts no call.
    private var broken = false

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let call = self.unwrapOutboundIn(data)
        guard self.pending == nil, !self.broken, context.channel.isActive else {
            // Not accepted: the writer fails the call's promise.
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        let timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: call.deadline) {
            self.fail(RPCError(kind: .timeout, message: "no reply before the deadline"), context: context)
        }
        self.pending = Pending(reply: call.reply, maxReplySize: call.maxReplySize, timer: timer)
        self.replyHead = nil
        self.collector.start(expectedLength: nil)
        promise?.succeed(())
        context.write(self.wrapOutboundOut(.head(call.head)), promise: nil)
        if call.body.readableBytes > 0 {
            context.write(self.wrapOutboundOut(.body(.byteBuffer(call.body))), promise: nil)
        }
        // Write failures close the channel; `channelInactive` then fails the call.
        context.write(self.wrapOutboundOut(.end(nil)), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let pending = self.pending else {
            // Nothing was asked: a confused or hostile peer.
            self.fail(RPCError(kind: .protocolError, message: "unsolicited data from the peer"), context: context)
            return
        }
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            guard self.replyHead == nil, head.status.code >= 200 else {
                self.fail(RPCError(kind: .protocolError, message: "unexpected reply head \(head.status.code)"), context: context)
                return
            }
            let length = head.headers.first(name: "content-length").flatMap { Int($0) }
            if let length, length > pending.maxReplySize {
                self.fail(
                    RPCError(kind: .protocolError, message: "reply of \(length) bytes exceeds the limit of \(pending.maxReplySize)"),
                    context: context
                )
                return
            }
            self.replyHead = head
            self.collector.start(expectedLength: length)
        case .body(let part):
            guard self.replyHead != nil else {
                self.fail(RPCError(kind: .protocolError, message: "reply body before its head"), context: context)
                return
            }
            if self.collector.received + part.readableBytes > pending.maxReplySize {
                self.fail(
                    RPCError(kind: .protocolError, message: "reply exceeds the limit of \(pending.maxReplySize) bytes"),
                    context: context
                )
                return
            }
            self.collector.append(part, allocator: context.channel.allocator)
        case .end:
            guard let head = self.replyHead else {
                self.fail(RPCError(kind: .protocolError, message: "reply end before its head"), context: context)
                return
            }
            let (body, digest) = self.collector.finish()
            let reply = RawReply(
                status: Int(head.status.code),
                headers: head.headers,
                body: body,
                bodyDigest: digest,
                keepAlive: head.isKeepAlive
            )
            self.pending = nil
            self.replyHead = nil
            if !reply.keepAlive { self.broken = true }
            pending.timer.cancel()
            pending.reply.succeed(reply)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let rpcError: RPCError
        switch error {
        case is HTTPParserError, is ByteToMessageDecoderError:
            rpcError = RPCError(kind: .protocolError, message: "malformed reply: \(error)")
        case let error as IOError:
            rpcError = RPCError(kind: .unreachable, message: "connection failed: \(error.description)")
        default:
            rpcError = RPCError(kind: self.replyHead == nil ? .unreachable : .protocolError, message: "connection failed: \(error)")
        }
        self.fail(rpcError, context: context)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.broken = true
        if let pending = self.pending {
            self.pending = nil
            pending.timer.cancel()
            let error: any Error =
                self.replyHead == nil
                ? ClosedBeforeReply()
                : RPCError(kind: .protocolError, message: "connection closed in the middle of a reply")
            pending.reply.fail(error)
        }
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            // Idle keep-alive connection: close it (the pool forgets it). A call waiting for a slow
            // handler is left alone; its deadline bounds it.
            if self.pending == nil { context.close(promise: nil) }
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    /// Fails the call in progress (if any) and closes the connection.
    private func fail(_ error: RPCError, context: ChannelHandlerContext) {
        self.broken = true
        if let pending = self.pending {
            self.pending = nil
            pending.timer.cancel()
            pending.reply.fail(error)
        }
        context.close(promise: nil)
    }
}

/// The connection closed after the call was written and before any byte of a reply (RPCClient
/// decides whether to send the call again or to report it as unreachable).
struct ClosedBeforeReply: Error {}
