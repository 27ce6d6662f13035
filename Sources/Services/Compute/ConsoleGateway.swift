import Database
import Hashing
import Libvirt
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket
import ServiceContract
import ServiceLifecycle
import SQLite
import Synchronization

/// Where the console gateway listens (`host:port`; port 0 takes a free one).
public struct ConsoleGatewayConfiguration: Sendable {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }
}

/// The gateway's address once it listens, for the console route to build links with (nil before
/// it listens, and without a gateway).
final class ConsoleLinks: Sendable {
    private let base = Mutex<String?>(nil)

    /// `ws://host:port`.
    var baseURL: String? { self.base.withLock { $0 } }

    func set(_ url: String?) { self.base.withLock { $0 = url } }
}

/// One-time console tickets: `GET /compute/instances/{name}/console` makes one for the caller's
/// machine, valid ``lifetime`` and for one connection; only its SHA-256 is stored.
enum ConsoleTickets {
    static let lifetime: Int64 = 60_000

    static func digest(_ ticket: String) -> String { Hex.encode(Digests.sha256(Array(ticket.utf8))) }

    /// A new ticket for `instanceID`; expired ones go.
    static func issue(_ db: any SQLSession, instanceID: String, now: Int64) async throws -> String {
        let ticket = SecureRandom.identifier(prefix: "", bytes: 24)
        try await db.query("DELETE FROM compute_console_tickets WHERE expires_at <= $1", [.integer(now)])
        try await db.query(
            "INSERT INTO compute_console_tickets (digest, instance_id, expires_at) VALUES ($1, $2, $3)",
            [.text(Self.digest(ticket)), .text(instanceID), .integer(now + Self.lifetime)])
        return ticket
    }

    /// The instance of a valid ticket, which is used up; nil for an unknown, used or expired one.
    static func redeem(_ db: any SQLSession, ticket: String, now: Int64) async throws -> String? {
        try await db.query(
            "DELETE FROM compute_console_tickets WHERE digest = $1 AND expires_at > $2 RETURNING instance_id",
            [.text(Self.digest(ticket)), .integer(now)]
        ).first?.text(0)
    }
}

/// A WebSocket endpoint for browsers (noVNC and the like) to a virtual machine's VNC console:
/// `ws://host:port/console/<ticket>` with a ticket from the console route. The ticket is checked
/// (and used up) before the upgrade, so a refused one is an HTTP 403 with the reason; an accepted
/// connection carries the RFB stream in binary frames to and from the machine's VNC port on this
/// machine. The subprotocol `binary` is answered when offered.
final class ConsoleGateway: Service, Sendable {
    let configuration: ConsoleGatewayConfiguration
    let links: ConsoleLinks
    let database: any SQLDatabase
    let clock: ServiceClock
    let logger: Logger

    init(configuration: ConsoleGatewayConfiguration, links: ConsoleLinks, environment: ServiceEnvironment) {
        self.configuration = configuration
        self.links = links
        self.database = environment.database
        self.clock = environment.clock
        self.logger = environment.logger
    }

    func run() async throws {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in self.initialize(channel) }
            .bind(host: self.configuration.host, port: self.configuration.port).get()
        let port = channel.localAddress?.port ?? self.configuration.port
        let host = self.configuration.host.contains(":") ? "[\(self.configuration.host)]" : self.configuration.host
        self.links.set("ws://\(host):\(port)")
        self.logger.notice("console gateway listening", metadata: ["address": "\(host):\(port)"])
        try await withGracefulShutdownHandler {
            try await channel.closeFuture.get()
        } onGracefulShutdown: {
            channel.close(promise: nil)
        }
        self.links.set(nil)
    }

    /// Why a connection was refused, for the HTTP answer (set before the upgrade is declined).
    final class Admission: Sendable {
        let state = Mutex<(port: Int?, refusal: (HTTPResponseStatus, String)?)>((nil, nil))
    }

    static let refusalHandler = "console-refusal"

    private func initialize(_ channel: any Channel) -> EventLoopFuture<Void> {
        let admission = Admission()
        let upgrader = NIOWebSocketServerUpgrader(
            maxFrameSize: 1 << 20, automaticErrorHandling: true,
            shouldUpgrade: { channel, head in
                let promise = channel.eventLoop.makePromise(of: HTTPHeaders?.self)
                promise.completeWithTask {
                    do {
                        let port = try await self.admit(head)
                        admission.state.withLock { $0.port = port }
                        var headers = HTTPHeaders()
                        let offered = head.headers[canonicalForm: "sec-websocket-protocol"].map { $0.lowercased() }
                        if offered.contains("binary") { headers.add(name: "Sec-WebSocket-Protocol", value: "binary") }
                        return headers
                    } catch let refusal as ConsoleRefusal {
                        admission.state.withLock { $0.refusal = (refusal.status, refusal.message) }
                        return nil
                    }
                }
                return promise.futureResult
            },
            upgradePipelineHandler: { channel, _ in
                guard let port = admission.state.withLock({ $0.port }) else { return channel.close() }
                let socket = channel
                // The frames' handlers go after the refusals', which must not see them.
                return channel.pipeline.removeHandler(name: Self.refusalHandler).flatMap {
                    ClientBootstrap(group: channel.eventLoop)
                        .channelOption(.socketOption(.tcp_nodelay), value: 1)
                        .channelInitializer { vnc in
                            vnc.eventLoop.makeCompletedFuture { try vnc.pipeline.syncOperations.addHandler(ConsoleStreamHandler(socket: socket)) }
                        }
                        .connect(host: "127.0.0.1", port: port)
                }
                    .flatMapThrowing { vnc in try socket.pipeline.syncOperations.addHandler(ConsoleFrameHandler(vnc: vnc)) }
                    .flatMapError { error in
                        self.logger.warning("console unreachable", metadata: ["port": "\(port)", "error": "\(error)"])
                        return socket.close()
                    }
            })
        return channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.configureHTTPServerPipeline(
                withServerUpgrade: (upgraders: [upgrader], completionHandler: { _ in }), withErrorHandling: true)
            try channel.pipeline.syncOperations.addHandler(ConsoleRefusalHandler(admission: admission), name: Self.refusalHandler)
        }
    }

    struct ConsoleRefusal: Error {
        var status: HTTPResponseStatus
        var message: String
    }

    /// The VNC port of the machine whose ticket `head` carries (the ticket is used up).
    private func admit(_ head: HTTPRequestHead) async throws -> Int {
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? ""
        guard path.hasPrefix("/console/"), case let ticket = String(path.dropFirst("/console/".count)), !ticket.isEmpty, !ticket.contains("/") else {
            throw ConsoleRefusal(status: .notFound, message: "no such console: open the websocket_url that GET /compute/instances/{name}/console gives")
        }
        let now = self.clock.unixMilliseconds()
        let found: (InstanceRecord, HostRecord?)?
        do {
            found = try await self.database.transaction { db -> (InstanceRecord, HostRecord?)? in
                guard let id = try await ConsoleTickets.redeem(db, ticket: ticket, now: now), let instance = try await ComputeSchema.instance(db, id: id)
                else { return nil }
                guard let hostName = instance.host else { return (instance, nil) }
                return (instance, try await ComputeSchema.host(db, named: hostName))
            }
        } catch {
            self.logger.error("console ticket not checked", metadata: ["error": "\(error)"])
            throw ConsoleRefusal(status: .serviceUnavailable, message: "the control plane's database did not answer; try again")
        }
        guard let (instance, host) = found else {
            throw ConsoleRefusal(status: .forbidden, message: "the console ticket is unknown, used or expired: ask GET /compute/instances/{name}/console for another")
        }
        guard instance.state == .ready, let host, host.backend == .libvirt else {
            throw ConsoleRefusal(status: .conflict, message: "instance \(instance.name) is \(instance.state.rawValue): its console is not there")
        }
        let xml: String
        do {
            xml = try await Libvirt(uri: host.libvirtURI).liveXML(instance.containerName)
        } catch {
            throw ConsoleRefusal(status: .badGateway, message: "libvirt did not describe the machine of instance \(instance.name): \(error)")
        }
        guard let port = DomainSpec.vncPort(liveXML: xml) else {
            throw ConsoleRefusal(status: .badGateway, message: "the machine of instance \(instance.name) has no VNC console")
        }
        self.logger.info("console connected", metadata: ["instance": "\(instance.id)"])
        return port
    }
}

/// Answers a request the gateway did not upgrade: the refusal's status and reason, or 400 for a
/// request that asked for no WebSocket.
private final class ConsoleRefusalHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let admission: ConsoleGateway.Admission

    init(admission: ConsoleGateway.Admission) { self.admission = admission }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .end = self.unwrapInboundIn(data) else { return }
        let (status, message) = self.admission.state.withLock { $0.refusal }
            ?? (.badRequest, "this is the console gateway: open the websocket_url that GET /compute/instances/{name}/console gives, as a WebSocket")
        let body = context.channel.allocator.buffer(string: message + "\n")
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "text/plain; charset=utf-8")
        headers.add(name: "Content-Length", value: String(body.readableBytes))
        headers.add(name: "Connection", value: "close")
        context.write(self.wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        context.write(self.wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        let channel = context.channel
        context.writeAndFlush(self.wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
    }
}

/// The browser's side: binary frames go to the VNC port; a close is answered and ends both.
private final class ConsoleFrameHandler: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    let vnc: any Channel
    private var closing = false

    init(vnc: any Channel) { self.vnc = vnc }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = self.unwrapInboundIn(data)
        switch frame.opcode {
        case .binary, .continuation, .text:
            self.vnc.writeAndFlush(frame.unmaskedData, promise: nil)
        case .ping:
            context.writeAndFlush(self.wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)), promise: nil)
        case .connectionClose:
            if !self.closing {
                self.closing = true
                let close = WebSocketFrame(fin: true, opcode: .connectionClose, data: frame.unmaskedData)
                let channel = context.channel
                context.writeAndFlush(self.wrapOutboundOut(close)).whenComplete { _ in channel.close(promise: nil) }
            }
            self.vnc.close(promise: nil)
        default:
            break
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.vnc.close(promise: nil)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.vnc.close(promise: nil)
        context.close(promise: nil)
    }
}

/// The machine's side: what the VNC port sends goes to the browser in binary frames; its end ends
/// the WebSocket.
private final class ConsoleStreamHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    let socket: any Channel

    init(socket: any Channel) { self.socket = socket }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.socket.writeAndFlush(WebSocketFrame(fin: true, opcode: .binary, data: self.unwrapInboundIn(data)), promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        let socket = self.socket
        socket.writeAndFlush(WebSocketFrame(fin: true, opcode: .connectionClose, data: socket.allocator.buffer(capacity: 0))).whenComplete { _ in
            socket.close(promise: nil)
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
