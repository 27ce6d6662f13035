import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// Where an engine answers: its Unix socket, or a compute agent's TCP port in front of it.
enum EngineAddress: Sendable, Equatable {
    case unix(path: String)
    case tcp(host: String, port: Int)

    /// `unix:///run/docker.sock`, `tcp://10.0.0.5:2377`.
    var url: String {
        switch self {
        case .unix(let path): "unix://" + path
        case .tcp(let host, let port): "tcp://\(host.contains(":") ? "[\(host)]" : host):\(port)"
        }
    }
}

/// One HTTP/1.1 exchange with a Docker Engine over its Unix socket (or through a compute agent,
/// with the agent's token): a connection per request, closed after the answer (the engine's own
/// CLI does the same per command).
struct EngineConnection: Sendable {
    let address: EngineAddress
    /// The agent's bearer token (nil: a local socket).
    let token: String?
    /// The engine API version every path is prefixed with (`/v1.41/...`).
    let apiVersion: String

    /// An answer: status, headers and the whole body (at most `limit` bytes are kept).
    struct Answer: Sendable {
        var status: Int
        var body: [UInt8]
        /// The body was cut at the limit.
        var truncated: Bool

        var text: String { String(decoding: self.body, as: UTF8.self) }
    }

    /// Sends one request and reads the whole answer.
    /// - Parameters:
    ///   - method: `GET`, `POST`, `DELETE`.
    ///   - path: The API path without the version (`/containers/create`).
    ///   - query: Unencoded query parameters.
    ///   - body: The request body; `contentType` says what it is.
    ///   - timeout: How long the whole exchange may take.
    ///   - limit: The most body bytes kept.
    /// - Throws: ``DockerError`` (unreachable, timed out, malformed answer).
    func exchange(
        _ method: HTTPMethod, _ path: String, query: [(String, String)] = [], body: [UInt8]? = nil,
        contentType: String = "application/json", timeout: Duration, limit: Int = 16 << 20
    ) async throws -> Answer {
        try await withThrowingTaskGroup(of: Answer?.self) { group in
            group.addTask { try await self.run(method, path, query: query, body: body, contentType: contentType, limit: limit) }
            group.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let answer = first else {
                throw DockerError.timedOut("\(method.rawValue) \(path)", after: timeout, socket: self.address.url)
            }
            return answer
        }
    }

    private func run(
        _ method: HTTPMethod, _ path: String, query: [(String, String)], body: [UInt8]?, contentType: String, limit: Int
    ) async throws -> Answer {
        let channel: NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>
        do {
            let bootstrap = ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connectTimeout(.seconds(5))
            let initializer: @Sendable (any Channel) -> EventLoopFuture<NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>> = { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    return try NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>(wrappingChannelSynchronously: channel)
                }
            }
            switch self.address {
            case .unix(let path): channel = try await bootstrap.connect(unixDomainSocketPath: path, channelInitializer: initializer)
            case .tcp(let host, let port): channel = try await bootstrap.connect(host: host, port: port, channelInitializer: initializer)
            }
        } catch {
            throw DockerError.unreachable(socket: self.address.url, reason: "\(error)")
        }
        let uri = "/v\(self.apiVersion)" + path + Self.encode(query)
        return try await channel.executeThenClose { inbound, outbound in
            var head = HTTPRequestHead(version: .http1_1, method: method, uri: uri)
            head.headers.add(name: "Host", value: "docker")
            head.headers.add(name: "Connection", value: "close")
            if let token = self.token { head.headers.add(name: "Authorization", value: "Bearer " + token) }
            head.headers.add(name: "Content-Length", value: "\(body?.count ?? 0)")
            if body != nil { head.headers.add(name: "Content-Type", value: contentType) }
            do {
                try await outbound.write(.head(head))
                if let body, !body.isEmpty {
                    // Large bodies (an image's tar) go in pieces so that the socket applies back pressure.
                    var offset = 0
                    while offset < body.count {
                        let end = min(offset + 1 << 20, body.count)
                        try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: body[offset..<end]))))
                        offset = end
                    }
                }
                try await outbound.write(.end(nil))
            } catch let error as ChannelError where error == .ioOnClosedChannel || error == .outputClosed {
                // The engine answered and closed before the last (empty) write: a command run by
                // `exec/{id}/start` can end that fast. Its answer is in what was read.
            }
            var answer = Answer(status: 0, body: [], truncated: false)
            for try await part in inbound {
                switch part {
                case .head(let response):
                    answer.status = Int(response.status.code)
                case .body(var buffer):
                    let room = limit - answer.body.count
                    if buffer.readableBytes > room { answer.truncated = true }
                    if room > 0, let bytes = buffer.readBytes(length: min(room, buffer.readableBytes)) { answer.body += bytes }
                case .end:
                    if self.token != nil && answer.status == 401 {
                        throw DockerError.unreachable(socket: self.address.url, reason: "the compute agent refused its token: \(answer.text)")
                    }
                    return answer
                }
            }
            throw DockerError.malformed("the engine closed the connection during the answer to \(method.rawValue) \(path)")
        }
    }

    /// `?a=1&b=x%20y`, or empty.
    static func encode(_ query: [(String, String)]) -> String {
        guard !query.isEmpty else { return "" }
        return "?" + query.map { "\(Self.percentEncode($0.0))=\(Self.percentEncode($0.1))" }.joined(separator: "&")
    }

    /// RFC 3986's unreserved characters, the only ones a query value keeps as they are.
    private static let unreserved = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")

    static func percentEncode(_ text: String) -> String {
        // Every string has a UTF-8 percent-encoding; nil is not possible here.
        text.addingPercentEncoding(withAllowedCharacters: Self.unreserved) ?? text
    }
}
