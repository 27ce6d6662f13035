public import ServiceContract
import Foundation
import Hashing
import HostAddress
import HTTPServing
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle
import Synchronization

/// The control plane's HTTP/1.1 listener: reads a request and its body (bounded), lets
/// ``ControlAPI`` answer, and writes the response with `X-Request-Id`. Keep-alive; an idle
/// connection closes after a minute, and at once on graceful shutdown.
final class APIServer: Service, Sendable {
    private let host: String
    private let port: Int
    private let api: ControlAPI
    private let logger: Logger

    init(host: String, port: Int, api: ControlAPI, logger: Logger) {
        self.host = host
        self.port = port
        self.api = api
        self.logger = logger
    }

    func run() async throws {
        let server: HTTPListener
        do {
            server = try await self.bind()
        } catch {
            throw ControlPlaneError(
                "the control API cannot listen on \(HostPort.join(host: self.host, port: self.port)) (--api-address): \(error)")
        }
        self.logger.notice(
            "control API listening",
            metadata: ["address": "\(server.channel.localAddress?.description ?? "\(self.host):\(self.port)")"])
        try await serveConnections(of: server) { connection, state in await self.serve(connection, state: state) }
    }

    private func bind() async throws -> HTTPListener {
        try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .bind(host: self.host, port: self.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(IdleStateHandler(readTimeout: .seconds(60)))
                    try channel.pipeline.syncOperations.addHandler(CloseOnIdleHandler())
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    return try wrapAcceptedConnection(channel) as NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>
                }
            }
    }

    private func serve(_ connection: NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>, state: ConnectionState) async {
        let client = connection.channel.remoteAddress?.ipAddress ?? "unknown"
        do {
            try await connection.executeThenClose { inbound, outbound in
                var iterator = inbound.makeAsyncIterator()
                while state.becomeIdle(), let part = try await iterator.next() {
                    state.becomeBusy()
                    guard case .head(let head) = part else { return }
                    let start = ContinuousClock.now
                    let limit = self.api.bodyLimit(method: head.method.rawValue, target: head.uri)
                    var body: [UInt8] = []
                    var tooLarge = head.headers.first(name: "content-length").flatMap { Int($0) }.map { $0 > limit } ?? false
                    if !tooLarge && head.headers.first(name: "expect")?.lowercased() == "100-continue" {
                        try await outbound.write(.head(HTTPResponseHead(version: head.version, status: .continue)))
                    }
                    var ended = false
                    reading: while !tooLarge, let next = try await iterator.next() {
                        switch next {
                        case .body(let buffer):
                            if body.count + buffer.readableBytes > limit {
                                tooLarge = true
                                break reading
                            }
                            body.append(contentsOf: buffer.readableBytesView)
                        case .end:
                            ended = true
                            break reading
                        case .head:
                            return
                        }
                    }
                    if !tooLarge && !ended { return }

                    let requestID = Self.requestID(from: head.headers.first(name: "x-request-id"))
                    let response: APIResponse
                    let operation: String
                    if tooLarge {
                        response = .error(.payloadTooLarge)
                        operation = "unknown"
                    } else {
                        let request = APIRequest(
                            method: head.method.rawValue, target: head.uri, headers: head.headers.map { ($0.name, $0.value) },
                            body: body, requestID: requestID, clientAddress: client)
                        let result = await self.api.handle(request)
                        response = result.0
                        operation = result.operation
                    }
                    let keepAlive = head.isKeepAlive && !tooLarge

                    var headers = HTTPHeaders()
                    for (name, value) in response.headers { headers.add(name: name, value: value) }
                    headers.add(name: "X-Request-Id", value: requestID)
                    headers.add(name: "Content-Length", value: String(response.body.count))
                    headers.add(name: "Cache-Control", value: "no-store")
                    headers.add(name: "Server", value: "TheCloud")
                    if !keepAlive { headers.add(name: "Connection", value: "close") }
                    let responseHead = HTTPResponseHead(version: head.version, status: HTTPResponseStatus(statusCode: response.status), headers: headers)
                    if head.method == .HEAD || response.body.isEmpty {
                        try await outbound.write(contentsOf: [.head(responseHead), .end(nil)])
                    } else {
                        try await outbound.write(contentsOf: [.head(responseHead), .body(.byteBuffer(ByteBuffer(bytes: response.body))), .end(nil)])
                    }
                    let elapsed = ContinuousClock.now - start
                    let milliseconds = Double(elapsed.components.attoseconds) / 1e15 + Double(elapsed.components.seconds) * 1000
                    self.api.metrics.record(operation: operation, status: response.status, seconds: milliseconds / 1000)
                    self.logger.info(
                        "request",
                        metadata: [
                            "request-id": "\(requestID)", "method": "\(head.method.rawValue)", "operation": "\(operation)",
                            "status": "\(response.status)", "ms": "\((milliseconds * 10).rounded() / 10)",
                        ])
                    if !keepAlive { return }
                }
            }
        } catch {
            self.logger.debug("connection ended", metadata: ["error": "\(error)"])
        }
    }

    /// The client's request id when it is a sensible token (≤ 64 of `[A-Za-z0-9._-]`), else a new one.
    static func requestID(from header: String?) -> String {
        if let header, !header.isEmpty, header.utf8.count <= 64,
            header.unicodeScalars.allSatisfy({ $0.properties.isASCIIHexDigit || ("a"..."z").contains($0) || ("A"..."Z").contains($0) || $0 == "-" || $0 == "_" || $0 == "." })
        {
            return header
        }
        return "req_" + Hex.encode(SecureRandom.bytes(8))
    }
}

