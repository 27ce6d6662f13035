public import Logging
import NIOCore
import NIOPosix
public import ServiceLifecycle

/// The compute agent's listener (`cloud agent`): a TCP port in front of this machine's Docker
/// Engine socket for the control plane. Each connection must open with an HTTP request carrying
/// `Authorization: Bearer <token>` (compared in constant time); then the connection is carried
/// byte for byte to the engine's socket, so streamed answers (logs, exec, image loads) pass as
/// they are. Anything else is answered 401 (or 431 for a request head beyond 64 KiB) and closed.
public final class EngineProxy: Service, Sendable {
    let socketPath: String
    let token: String
    let logger: Logger
    private let server: any Channel

    /// Where it listens (the port the system chose for port 0).
    public var port: Int { self.server.localAddress?.port ?? 0 }

    /// Binds at once, so the caller knows the port before it registers the agent.
    /// - Parameters:
    ///   - socket: `unix:///run/docker.sock` or a path.
    ///   - token: What the control plane must present.
    public init(host: String, port: Int, socket: String, token: String, logger: Logger) async throws {
        self.socketPath = socket.hasPrefix("unix://") ? String(socket.dropFirst("unix://".count)) : socket
        self.token = token
        self.logger = logger
        let (path, secret) = (self.socketPath, token)
        self.server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 128)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(AgentGate(socketPath: path, token: secret, logger: logger))
                }
            }
            .bind(host: host, port: port).get()
    }

    public func run() async throws {
        let server = self.server
        try await withGracefulShutdownHandler {
            try await server.closeFuture.get()
        } onGracefulShutdown: {
            server.close(promise: nil)
        }
    }

    /// Whether `header` (the value of `Authorization`) is `Bearer <token>`, compared in constant time.
    static func authorizes(_ header: Substring?, token: String) -> Bool {
        guard let header, header.hasPrefix("Bearer ") else { return false }
        let given = Array(header.dropFirst("Bearer ".count).utf8)
        let expected = Array(token.utf8)
        var difference = UInt8(given.count == expected.count ? 0 : 1)
        for index in 0..<expected.count { difference |= expected[index] ^ (index < given.count ? given[index] : 0) }
        return difference == 0
    }

    /// The `Authorization` value in a request head (`\r\n`-separated lines, the request line first).
    static func authorization(inHead head: String) -> Substring? {
        for line in head.split(separator: "\r\n").dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            if line[..<colon].lowercased() == "authorization" {
                return line[line.index(after: colon)...].drop { $0 == " " || $0 == "\t" }
            }
        }
        return nil
    }
}

/// Reads a connection's first request head, checks its token, then joins the connection to the
/// engine's socket (what came before the join is sent first).
private final class AgentGate: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    static let headLimit = 64 << 10

    let socketPath: String
    let token: String
    let logger: Logger
    private var pending: ByteBuffer?
    private var admitted = false

    init(socketPath: String, token: String, logger: Logger) {
        self.socketPath = socketPath
        self.token = token
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = self.unwrapInboundIn(data)
        if self.pending == nil { self.pending = buffer } else { self.pending!.writeBuffer(&buffer) }
        guard !self.admitted, let pending = self.pending else { return }
        let view = pending.readableBytesView
        guard let end = Self.headEnd(view) else {
            if view.count > Self.headLimit { self.refuse(context, status: "431 Request Header Fields Too Large", "request head too large") }
            return
        }
        let head = String(decoding: view[view.startIndex..<end], as: UTF8.self)
        guard EngineProxy.authorizes(EngineProxy.authorization(inHead: head), token: self.token) else {
            self.logger.warning("agent request refused: no valid token", metadata: ["client": "\(context.remoteAddress?.description ?? "unknown")"])
            self.refuse(context, status: "401 Unauthorized", "this compute agent needs its bearer token")
            return
        }
        self.admitted = true
        context.channel.setOption(ChannelOptions.autoRead, value: false).whenComplete { _ in }
        let client = context.channel
        let logger = self.logger
        ClientBootstrap(group: context.eventLoop)
            .channelInitializer { engine in
                engine.eventLoop.makeCompletedFuture { try engine.pipeline.syncOperations.addHandler(Splice(partner: client)) }
            }
            .connect(unixDomainSocketPath: self.socketPath)
            .assumeIsolated()
            .whenComplete { result in
                switch result {
                case .success(let engine):
                    self.join(context, engine: engine)
                case .failure(let error):
                    logger.warning("agent cannot reach its engine", metadata: ["error": "\(error)"])
                    self.refuse(context, status: "502 Bad Gateway", "the compute agent cannot reach its engine: \(error)")
                }
            }
    }

    private func join(_ context: ChannelHandlerContext, engine: any Channel) {
        if let pending = self.pending { engine.writeAndFlush(pending, promise: nil) }
        self.pending = nil
        do {
            try context.pipeline.syncOperations.addHandler(Splice(partner: engine), position: .after(self))
        } catch {
            engine.close(promise: nil)
            context.close(promise: nil)
            return
        }
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        context.channel.setOption(ChannelOptions.autoRead, value: true).whenComplete { _ in }
    }

    private func refuse(_ context: ChannelHandlerContext, status: String, _ message: String) {
        let body = "{\"message\":\"\(message)\"}"
        let answer = "HTTP/1.1 \(status)\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
        let channel = context.channel
        context.writeAndFlush(self.wrapOutboundOut(channel.allocator.buffer(string: answer))).whenComplete { _ in channel.close(promise: nil) }
    }

    /// The index just past the head's blank line.
    static func headEnd(_ bytes: ByteBufferView) -> ByteBufferView.Index? {
        guard bytes.count >= 4 else { return nil }
        var index = bytes.startIndex
        while index <= bytes.endIndex - 4 {
            if bytes[index] == 13 && bytes[index + 1] == 10 && bytes[index + 2] == 13 && bytes[index + 3] == 10 { return index + 4 }
            index += 1
        }
        return nil
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

/// One side of a joined pair: what it reads goes to the other; its end ends the other.
private final class Splice: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    let partner: any Channel

    init(partner: any Channel) { self.partner = partner }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.partner.writeAndFlush(self.unwrapInboundIn(data), promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.partner.close(promise: nil)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
