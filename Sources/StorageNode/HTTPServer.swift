import Foundation
import HTTPServing
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import S3API
import ServiceLifecycle
import Synchronization

/// The node's HTTP listener: S3 on every path, plus `/health/live`, `/health/ready` and `/metrics`
/// for requests that carry no signature (a signed `GET /health/live` is an S3 GetObject).
///
/// Each connection is served by its own child task: requests in order (HTTP/1.1 keep-alive), bodies
/// streamed both ways with back-pressure, `Expect: 100-continue` answered only once the request was
/// authenticated and its handler starts reading the body.
final class HTTPServer: Service, Sendable {
    struct Routes: Sendable {
        let handler: S3Handler
        let metrics: NodeMetrics
        let ready: @Sendable () async -> (Bool, String)
        let stored: @Sendable () -> (objects: Int64, bytes: Int64)
        /// More Prometheus text (the cluster's), appended to `/metrics`.
        var extraMetrics: @Sendable () -> String = { "" }
    }

    private let host: String
    private let port: Int
    private let routes: Routes
    private let logger: Logger

    init(host: String, port: Int, routes: Routes, logger: Logger) {
        self.host = host
        self.port = port
        self.routes = routes
        self.logger = logger
    }

    func run() async throws {
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .bind(host: self.host, port: self.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    // A connection that sends nothing for this long is closed (idle keep-alive
                    // connections, stalled uploads, slowloris).
                    try channel.pipeline.syncOperations.addHandler(IdleStateHandler(readTimeout: .seconds(300)))
                    try channel.pipeline.syncOperations.addHandler(CloseOnIdleHandler())
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    return try wrapAcceptedConnection(
                        channel,
                        configuration: .init(
                            backPressureStrategy: .init(lowWatermark: 2, highWatermark: 16),
                            isOutboundHalfClosureEnabled: false
                        )
                    ) as NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>
                }
            }
        self.logger.notice(
            "S3 listening",
            metadata: ["address": "\(server.channel.localAddress?.description ?? "\(self.host):\(self.port)")"]
        )
        try await serveConnections(of: server) { connection, state in await self.serve(connection, state: state) }
    }

    // MARK: - One connection

    private func serve(_ connection: NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>, state: ConnectionState) async {
        do {
            try await connection.executeThenClose { inbound, outbound in
                var iterator = inbound.makeAsyncIterator()
                while true {
                    let part: HTTPServerRequestPart?
                    guard state.becomeIdle() else { return }
                    do {
                        part = try await iterator.next()
                        state.becomeBusy()
                    } catch {
                        // Not HTTP (or a head too large). NIO's protocol error handler has
                        // answered 400 where it still could; close.
                        self.logger.debug("bad request", metadata: ["error": "\(error)"])
                        return
                    }
                    guard let part, case .head(let head) = part else { return }
                    let body = ChannelRequestBody(iterator: iterator, head: head, outbound: outbound)
                    let keepAlive = try await self.respond(to: head, body: body, outbound: outbound)
                    iterator = body.iterator
                    if !keepAlive { return }
                }
            }
        } catch {
            self.logger.debug("connection ended", metadata: ["error": "\(error)"])
        }
    }

    /// Serves one request; returns whether the connection may serve another.
    private func respond(
        to head: HTTPRequestHead,
        body: ChannelRequestBody,
        outbound: NIOAsyncChannelOutboundWriter<HTTPServerResponsePart>
    ) async throws -> Bool {
        let start = ContinuousClock.now
        let requestID = Self.makeRequestID()
        let headers = head.headers.map { (name: $0.name, value: $0.value) }
        let request = S3Request(method: head.method.rawValue, uri: head.uri, headers: headers, requestID: requestID)

        let response: S3Response
        if let special = await self.specialRoute(request) {
            response = special
        } else {
            response = await self.routes.handler.handle(request, body: body)
        }

        if body.broken {
            // The client went away or sent bad framing mid-body: nothing was stored, and there is
            // no one to answer.
            self.record(response, start: start, bytesIn: body.received, bytesOut: 0)
            return false
        }
        var keepAlive = head.isKeepAlive
        // The request body must be consumed before the next request can be read. A client that
        // asked for 100-continue and did not get it will not send its body: close instead.
        if !body.finished && (body.expectsContinue && !body.sentContinue) {
            keepAlive = false
        }

        var responseHeaders = HTTPHeaders()
        responseHeaders.reserveCapacity(response.headers.count + 6)
        for (name, value) in response.headers { responseHeaders.add(name: name, value: value) }
        responseHeaders.add(name: "x-amz-request-id", value: requestID)
        responseHeaders.add(name: "x-amz-id-2", value: requestID)
        responseHeaders.add(name: "Server", value: "TheCloud")
        responseHeaders.add(name: "Date", value: Self.httpDate())
        if !responseHeaders.contains(name: "content-length"), let length = response.contentLength {
            responseHeaders.add(name: "Content-Length", value: String(length))
        }
        if !keepAlive { responseHeaders.replaceOrAdd(name: "Connection", value: "close") }

        let status = HTTPResponseStatus(statusCode: response.status)
        let responseHead = HTTPServerResponsePart.head(HTTPResponseHead(version: head.version, status: status, headers: responseHeaders))
        var sent: Int64 = 0
        // Head, body and end go out in one write (one flush, one syscall) when the body is in memory.
        switch head.method == .HEAD ? .empty : response.body {
        case .empty:
            try await outbound.write(contentsOf: [responseHead, .end(nil)])
        case .buffer(let buffer):
            sent = Int64(buffer.readableBytes)
            try await outbound.write(contentsOf: [responseHead, .body(.byteBuffer(buffer)), .end(nil)])
        case .stream(_, let producer):
            try await outbound.write(responseHead)
            let writer = ChannelBodyWriter(outbound: outbound)
            do {
                try await producer(writer)
            } catch {
                // The head is out: the only honest thing left is to cut the connection, so the
                // client sees a short body instead of wrong bytes.
                self.logger.error(
                    "response body failed",
                    metadata: ["request-id": "\(requestID)", "error": "\(error)"]
                )
                self.record(response, start: start, bytesIn: body.received, bytesOut: writer.count)
                return false
            }
            sent = writer.count
            try await outbound.write(.end(nil))
        }

        // Read what is left of a body the handler did not consume (an error answered early), so
        // that the connection can go on; give up past a bound.
        if keepAlive && !body.finished {
            keepAlive = (try? await body.drain(limit: 8 << 20)) ?? false
        }
        self.record(response, start: start, bytesIn: body.received, bytesOut: sent)
        self.logger.debug(
            "request",
            metadata: [
                "request-id": "\(requestID)", "operation": "\(response.operation)", "status": "\(response.status)",
                "method": "\(head.method.rawValue)", "bytes-in": "\(body.received)", "bytes-out": "\(sent)",
            ]
        )
        return keepAlive
    }

    private func record(_ response: S3Response, start: ContinuousClock.Instant, bytesIn: Int64, bytesOut: Int64) {
        let elapsed = ContinuousClock.now - start
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        self.routes.metrics.record(
            operation: response.operation,
            status: response.status,
            seconds: seconds,
            bytesIn: bytesIn,
            bytesOut: bytesOut
        )
    }

    /// Health and metrics endpoints, for unsigned GETs of their exact paths.
    private func specialRoute(_ request: S3Request) async -> S3Response? {
        guard request.method == "GET" || request.method == "HEAD" else { return nil }
        guard request.rawPath == "/health/live" || request.rawPath == "/health/ready" || request.rawPath == "/metrics",
            request.header("authorization") == nil,
            !request.rawQuery.contains("X-Amz-Signature")
        else { return nil }
        switch request.rawPath {
        case "/health/live":
            return S3Response(
                status: 200,
                headers: [("Content-Type", "text/plain")],
                body: .buffer(ByteBuffer(string: "ok\n")),
                operation: "HealthLive"
            )
        case "/health/ready":
            let (ready, reason) = await self.routes.ready()
            return S3Response(
                status: ready ? 200 : 503,
                headers: [("Content-Type", "text/plain")],
                body: .buffer(ByteBuffer(string: reason + "\n")),
                operation: "HealthReady"
            )
        case "/metrics":
            let stored = self.routes.stored()
            let text = self.routes.metrics.render(storedObjects: stored.objects, storedBytes: stored.bytes) + self.routes.extraMetrics()
            return S3Response(
                status: 200,
                headers: [("Content-Type", "text/plain; version=0.0.4")],
                body: .buffer(ByteBuffer(string: text)),
                operation: "Metrics"
            )
        default:
            return nil
        }
    }

    static func makeRequestID() -> String {
        var generator = SystemRandomNumberGenerator()
        let value = generator.next() as UInt64
        let text = String(value, radix: 16, uppercase: true)
        return String(repeating: "0", count: 16 - text.count) + text
    }

    static func httpDate() -> String { HTTPDate.rfc1123(Date()) }
}

/// A request body read from the connection's inbound stream by the task serving the request.
final class ChannelRequestBody: RequestBody {
    var iterator: NIOAsyncChannelInboundStream<HTTPServerRequestPart>.AsyncIterator
    private let outbound: NIOAsyncChannelOutboundWriter<HTTPServerResponsePart>
    private let version: HTTPVersion
    let expectsContinue: Bool
    private(set) var sentContinue = false
    private(set) var finished = false
    /// The connection failed while the body was read; no response can be written.
    private(set) var broken = false
    private(set) var received: Int64 = 0

    init(
        iterator: NIOAsyncChannelInboundStream<HTTPServerRequestPart>.AsyncIterator,
        head: HTTPRequestHead,
        outbound: NIOAsyncChannelOutboundWriter<HTTPServerResponsePart>
    ) {
        self.iterator = iterator
        self.outbound = outbound
        self.version = head.version
        self.expectsContinue = head.headers["expect"].contains { $0.lowercased() == "100-continue" }
    }

    func next() async throws -> ByteBuffer? {
        if self.finished { return nil }
        if self.expectsContinue && !self.sentContinue {
            self.sentContinue = true
            try await self.outbound.write(.head(HTTPResponseHead(version: self.version, status: .continue)))
        }
        let incomplete = S3Error("IncompleteBody", 400, "The connection closed before the whole request body was received.")
        let next: HTTPServerRequestPart?
        do {
            next = try await self.iterator.next()
        } catch {
            // The HTTP layer failed (a body cut short, bad chunked framing): the connection's
            // request/response state is gone, so nothing more may be written on it.
            self.broken = true
            throw incomplete
        }
        guard let part = next else {
            self.broken = true
            throw incomplete
        }
        switch part {
        case .body(let buffer):
            self.received += Int64(buffer.readableBytes)
            return buffer
        case .end:
            self.finished = true
            return nil
        case .head:
            throw S3Error("IncompleteBody", 400, "A new request started before the body ended.")
        }
    }

    /// Reads and discards the rest of the body, up to `limit` bytes; true when it ended.
    func drain(limit: Int64) async throws -> Bool {
        var discarded: Int64 = 0
        while !self.finished {
            guard let buffer = try await self.next() else { break }
            discarded += Int64(buffer.readableBytes)
            if discarded > limit { return false }
        }
        return true
    }
}

/// Writes a streamed response body to the connection, counting bytes.
final class ChannelBodyWriter: ResponseBodyWriter, @unchecked Sendable {
    // @unchecked: used by the single task that serves the request; `count` is read by that task after
    // the producer returned.
    private let outbound: NIOAsyncChannelOutboundWriter<HTTPServerResponsePart>
    private(set) var count: Int64 = 0

    init(outbound: NIOAsyncChannelOutboundWriter<HTTPServerResponsePart>) {
        self.outbound = outbound
    }

    func write(_ buffer: ByteBuffer) async throws {
        self.count += Int64(buffer.readableBytes)
        try await self.outbound.write(.body(.byteBuffer(buffer)))
    }
}

