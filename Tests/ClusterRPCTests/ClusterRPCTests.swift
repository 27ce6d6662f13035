@testable import ClusterRPC
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Real TCP on 127.0.0.1, servers bound to port 0.

private let secret = Array("cluster-secret-for-tests".utf8)
private let quiet = Logger(label: "rpc-test", factory: { _ in SwiftLogNoOpLogHandler() })

/// Echoes `echo`, sleeps on `slow` (the body's text is the number of milliseconds) then echoes,
/// fails on `missing` and `crash`.
private func standardHandler(calls: Counter) -> RPCHandler {
    { method, body in
        calls.increment()
        switch method {
        case "echo":
            return body
        case "slow":
            try await Task.sleep(for: .milliseconds(Int(String(buffer: body)) ?? 1000))
            return body
        case "missing":
            throw RPCRemoteError(code: "NoSuchBlock", message: "block 1234 is not here")
        case "crash":
            struct Boom: Error {}
            throw Boom()
        default:
            throw RPCRemoteError(code: "UnknownMethod", message: method)
        }
    }
}

final class Counter: Sendable {
    private let value = Mutex(0)
    func increment() { self.value.withLock { $0 += 1 } }
    var count: Int { self.value.withLock { $0 } }
}

/// Runs an `RPCServer` in a `ServiceGroup` for the duration of `body`, then shuts it down gracefully.
private func withServer<R: Sendable>(
    maxBodySize: Int = 16 << 20,
    idleTimeout: Duration = .seconds(90),
    secret serverSecret: [UInt8] = secret,
    handler: @escaping RPCHandler,
    _ body: @Sendable (_ port: Int, _ group: ServiceGroup) async throws -> R
) async throws -> R {
    var configuration = RPCServerConfiguration(bindAddress: "127.0.0.1:0", secret: serverSecret)
    configuration.maxBodySize = maxBodySize
    configuration.idleTimeout = idleTimeout
    let server = RPCServer(configuration: configuration, handler: handler, logger: quiet)
    let group = ServiceGroup(services: [server], logger: quiet)
    return try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask { try await group.run() }
        do {
            let port = try await server.waitUntilBound()
            let result = try await body(port, group)
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
            return result
        } catch {
            // Shut down as on success: cancelling the server could drop connections it accepted but
            // has not taken yet, which NIO traps on.
            await group.triggerGracefulShutdown()
            try? await tasks.waitForAll()
            throw error
        }
    }
}

private func makeClient(maxConnectionsPerPeer: Int = 8) -> RPCClient {
    RPCClient(secret: secret, maxConnectionsPerPeer: maxConnectionsPerPeer, logger: quiet)
}

/// 65521 (a prime, so chunks do not line up with socket reads) pseudo-random bytes.
private let noise: [UInt8] = {
    var state: UInt64 = 0x9E37_79B9_7F4A_7C15
    return (0..<65521).map { _ in
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return UInt8(truncatingIfNeeded: state)
    }
}()

/// `count` bytes of noise, each repetition preceded by its number (so misordered chunks show).
/// Cheap to build even in a debug build, so big bodies do not hog the test threads.
private func randomBuffer(_ count: Int) -> ByteBuffer {
    var buffer = ByteBufferAllocator().buffer(capacity: count + noise.count + 4)
    var index: UInt32 = 0
    while buffer.readableBytes < count {
        buffer.writeInteger(index)
        buffer.writeBytes(noise)
        index += 1
    }
    buffer.moveWriterIndex(to: count)
    return buffer
}

/// Expects `operation` to throw an `RPCError`; returns it.
private func expectRPCError(
    _ operation: () async throws -> ByteBuffer,
    sourceLocation: SourceLocation = #_sourceLocation
) async -> RPCError? {
    do {
        let reply = try await operation()
        Issue.record("expected an RPCError, got a reply of \(reply.readableBytes) bytes", sourceLocation: sourceLocation)
        return nil
    } catch let error as RPCError {
        return error
    } catch {
        Issue.record("expected an RPCError, got \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

/// Sends raw bytes to 127.0.0.1:`port` (then half-closes when `halfClose`) and returns everything
/// received until the peer closes (or 10 s pass).
private func rawExchange(port: Int, _ request: [UInt8], halfClose: Bool = false) async throws -> String {
    let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .connect(host: "127.0.0.1", port: port) { channel in
            channel.eventLoop.makeCompletedFuture {
                try NIOAsyncChannel<ByteBuffer, ByteBuffer>(
                    wrappingChannelSynchronously: channel,
                    configuration: .init(isOutboundHalfClosureEnabled: true)
                )
            }
        }
    let timer = channel.channel.eventLoop.scheduleTask(in: .seconds(10)) { channel.channel.close(promise: nil) }
    defer { timer.cancel() }
    return try await channel.executeThenClose { inbound, outbound in
        try await outbound.write(ByteBuffer(bytes: request))
        if halfClose { outbound.finish() }
        var text = ""
        do {
            for try await chunk in inbound { text += String(buffer: chunk) }
        } catch {
            // A reset after the reply: keep what was read.
        }
        return text
    }
}

private func rawRequest(method: String, time: Int64, body: String, signWith key: [UInt8] = secret) -> [UInt8] {
    let signature = Wire.requestSignature(
        secret: key, method: method, time: time, bodyDigest: Wire.digest(ByteBuffer(string: body)))
    let text =
        "POST /rpc/\(method) HTTP/1.1\r\nhost: test\r\ncontent-length: \(body.utf8.count)\r\n"
        + "x-cloud-time: \(time)\r\nx-cloud-signature: \(hexString(signature))\r\nconnection: close\r\n\r\n\(body)"
    return Array(text.utf8)
}

private func hexString(_ bytes: [UInt8]) -> String {
    let digits = Array("0123456789abcdef")
    return String(bytes.flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 0x0F)]] })
}

/// A port on 127.0.0.1 where nothing listens (bound, then closed).
/// A port on 127.0.0.1 that refuses connections for as long as `body` runs: a socket is bound to it
/// but never listens, so no other test's server can take the port in the meantime.
private func withClosedPort<R>(_ body: (Int) async throws -> R) async throws -> R {
    #if canImport(Glibc)
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    #else
    let fd = socket(AF_INET, SOCK_STREAM, 0)
    #endif
    precondition(fd >= 0, "socket() failed")
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    precondition(bound == 0, "bind() failed")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    return try await body(Int(UInt16(bigEndian: address.sin_port)))
}

@Suite struct ClusterRPCTests {
    @Test(arguments: [0, 1, 1 << 20, 5 << 20])
    func echoRoundTrip(size: Int) async throws {
        let calls = Counter()
        try await withServer(handler: standardHandler(calls: calls)) { port, _ in
            let client = makeClient()
            let body = randomBuffer(size)
            let reply = try await client.call("127.0.0.1:\(port)", method: "echo", body: body, timeout: .seconds(20))
            #expect(reply == body)
            // The connection is kept alive and reused.
            let again = try await client.call("127.0.0.1:\(port)", method: "echo", body: body, timeout: .seconds(20))
            #expect(again == body)
            await client.shutdown()
        }
        #expect(calls.count == 2)
    }

    @Test func hundredConcurrentCallsOverFourConnections() async throws {
        let concurrency = Mutex((current: 0, max: 0))
        let handler: RPCHandler = { _, body in
            concurrency.withLock { state in
                state.current += 1
                state.max = Swift.max(state.max, state.current)
            }
            try await Task.sleep(for: .milliseconds(5))
            concurrency.withLock { $0.current -= 1 }
            return body
        }
        try await withServer(handler: handler) { port, _ in
            let client = makeClient(maxConnectionsPerPeer: 4)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<100 {
                    group.addTask {
                        let body = ByteBuffer(string: "call number \(index) " + String(repeating: "x", count: index * 37))
                        let reply = try await client.call("127.0.0.1:\(port)", method: "echo", body: body, timeout: .seconds(20))
                        #expect(reply == body)
                    }
                }
                try await group.waitForAll()
            }
            await client.shutdown()
        }
        let observed = concurrency.withLock { $0.max }
        #expect(observed <= 4)
        #expect(observed >= 2)
    }

    @Test func wrongSecretIsUnauthorizedAndNeverReachesTheHandler() async throws {
        let calls = Counter()
        try await withServer(secret: Array("another secret".utf8), handler: standardHandler(calls: calls)) { port, _ in
            let client = makeClient()
            let error = await expectRPCError {
                try await client.call("127.0.0.1:\(port)", method: "echo", body: ByteBuffer(string: "hi"), timeout: .seconds(5))
            }
            #expect(error?.kind == .unauthorized)
            await client.shutdown()
        }
        #expect(calls.count == 0)
    }

    @Test func staleTimestampIsRejected() async throws {
        let calls = Counter()
        try await withServer(handler: standardHandler(calls: calls)) { port, _ in
            // Control: the hand-written request is accepted with a fresh time.
            let fresh = try await rawExchange(port: port, rawRequest(method: "echo", time: Wire.unixMillisNow(), body: "hello"))
            #expect(fresh.hasPrefix("HTTP/1.1 200"))
            #expect(fresh.hasSuffix("hello"))

            let stale = Wire.unixMillisNow() - 3_600_000
            let reply = try await rawExchange(port: port, rawRequest(method: "echo", time: stale, body: "hello"))
            #expect(reply.hasPrefix("HTTP/1.1 401"))
            let future = Wire.unixMillisNow() + 3_600_000
            let reply2 = try await rawExchange(port: port, rawRequest(method: "echo", time: future, body: "hello"))
            #expect(reply2.hasPrefix("HTTP/1.1 401"))
            // A signature over another body.
            var tampered = rawRequest(method: "echo", time: Wire.unixMillisNow(), body: "hello")
            tampered[tampered.count - 1] = UInt8(ascii: "O")
            let reply3 = try await rawExchange(port: port, tampered)
            #expect(reply3.hasPrefix("HTTP/1.1 401"))
        }
        #expect(calls.count == 1)
    }

    @Test func malformedPathIsNotFound() async throws {
        let calls = Counter()
        try await withServer(handler: standardHandler(calls: calls)) { port, _ in
            let get = try await rawExchange(port: port, Array("GET /rpc/echo HTTP/1.1\r\nconnection: close\r\n\r\n".utf8))
            #expect(get.hasPrefix("HTTP/1.1 404"))
            let path = try await rawExchange(
                port: port,
                Array("POST /other/echo HTTP/1.1\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".utf8)
            )
            #expect(path.hasPrefix("HTTP/1.1 404"))
        }
        #expect(calls.count == 0)
    }

    @Test func bodyOverTheLimitIsRejectedAndTheServerKeepsServing() async throws {
        let calls = Counter()
        try await withServer(maxBodySize: 64 << 10, handler: standardHandler(calls: calls)) { port, _ in
            // The declared length alone is enough: 413 without reading (or waiting for) the body.
            let raw = try await rawExchange(
                port: port,
                Array("POST /rpc/echo HTTP/1.1\r\nhost: test\r\ncontent-length: 1048576\r\n\r\n".utf8)
            )
            #expect(raw.hasPrefix("HTTP/1.1 413"))

            let client = makeClient(maxConnectionsPerPeer: 1)
            let error = await expectRPCError {
                try await client.call("127.0.0.1:\(port)", method: "echo", body: randomBuffer(1 << 20), timeout: .seconds(10))
            }
            #expect(error?.kind == .protocolError || error?.kind == .unreachable)
            // The same client and server go on.
            let small = ByteBuffer(string: "small")
            let reply1 = try await client.call("127.0.0.1:\(port)", method: "echo", body: small, timeout: .seconds(10))
            #expect(reply1 == small)
            let atLimit = randomBuffer(64 << 10)
            let reply2 = try await client.call("127.0.0.1:\(port)", method: "echo", body: atLimit, timeout: .seconds(10))
            #expect(reply2 == atLimit)
            await client.shutdown()
        }
        #expect(calls.count == 2)
    }

    @Test func handlerErrorsReachTheCaller() async throws {
        try await withServer(handler: standardHandler(calls: Counter())) { port, _ in
            let client = makeClient()
            let remote = await expectRPCError {
                try await client.call("127.0.0.1:\(port)", method: "missing", body: ByteBuffer(), timeout: .seconds(5))
            }
            #expect(remote?.kind == .remote)
            #expect(remote?.code == "NoSuchBlock")
            #expect(remote?.message == "block 1234 is not here")

            let crash = await expectRPCError {
                try await client.call("127.0.0.1:\(port)", method: "crash", body: ByteBuffer(), timeout: .seconds(5))
            }
            #expect(crash?.kind == .remote)
            #expect(crash?.code == "InternalError")
            #expect(crash?.message == "internal error")

            // Errors keep the connection usable.
            let body = ByteBuffer(string: "still here")
            let reply3 = try await client.call("127.0.0.1:\(port)", method: "echo", body: body, timeout: .seconds(5))
            #expect(reply3 == body)
            await client.shutdown()
        }
    }

    @Test func slowHandlerTimesOutAndTheClientRecovers() async throws {
        try await withServer(handler: standardHandler(calls: Counter())) { port, _ in
            let client = makeClient(maxConnectionsPerPeer: 1)
            let start = ContinuousClock.now
            let error = await expectRPCError {
                try await client.call("127.0.0.1:\(port)", method: "slow", body: ByteBuffer(string: "3000"), timeout: .milliseconds(200))
            }
            let elapsed = ContinuousClock.now - start
            #expect(error?.kind == .timeout)
            // Far from tight: 10 times the timeout, and still before the reply would come.
            #expect(elapsed < .seconds(2))
            let body = ByteBuffer(string: "next")
            let reply4 = try await client.call("127.0.0.1:\(port)", method: "echo", body: body, timeout: .seconds(5))
            #expect(reply4 == body)
            await client.shutdown()
        }
    }

    @Test func waitingForAConnectionCountsAgainstTheTimeout() async throws {
        try await withServer(handler: standardHandler(calls: Counter())) { port, _ in
            let client = makeClient(maxConnectionsPerPeer: 1)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    let body = ByteBuffer(string: "600")
                    let reply5 = try await client.call("127.0.0.1:\(port)", method: "slow", body: body, timeout: .seconds(5))
                    #expect(reply5 == body)
                }
                try await Task.sleep(for: .milliseconds(100))
                // The only connection is busy for ~500 ms more: this call times out in the queue.
                let error = await expectRPCError {
                    try await client.call("127.0.0.1:\(port)", method: "echo", body: ByteBuffer(), timeout: .milliseconds(100))
                }
                #expect(error?.kind == .timeout)
                try await group.waitForAll()
            }
            let body = ByteBuffer(string: "after")
            let reply6 = try await client.call("127.0.0.1:\(port)", method: "echo", body: body, timeout: .seconds(5))
            #expect(reply6 == body)
            await client.shutdown()
        }
    }

    @Test func cancellationStopsTheCall() async throws {
        try await withServer(handler: standardHandler(calls: Counter())) { port, _ in
            let client = makeClient(maxConnectionsPerPeer: 1)
            let start = ContinuousClock.now
            let task = Task {
                try await client.call("127.0.0.1:\(port)", method: "slow", body: ByteBuffer(string: "3000"), timeout: .seconds(10))
            }
            try await Task.sleep(for: .milliseconds(100))
            task.cancel()
            let result = await task.result
            // Well before the reply (3 s) or the deadline (10 s).
            #expect(ContinuousClock.now - start < .seconds(2))
            #expect(throws: CancellationError.self) { try result.get() }
            let body = ByteBuffer(string: "next")
            let reply7 = try await client.call("127.0.0.1:\(port)", method: "echo", body: body, timeout: .seconds(5))
            #expect(reply7 == body)
            await client.shutdown()
        }
    }

    @Test func nothingListeningIsUnreachable() async throws {
        let client = makeClient()
        let error = try await withClosedPort { port in
            await expectRPCError {
                try await client.call("127.0.0.1:\(port)", method: "echo", body: ByteBuffer(), timeout: .seconds(5))
            }
        }
        #expect(error?.kind == .unreachable)
        let bad = await expectRPCError {
            try await client.call("no-port-here", method: "echo", body: ByteBuffer(), timeout: .seconds(5))
        }
        #expect(bad?.kind == .unreachable)
        await client.shutdown()
    }

    @Test func gracefulShutdownFinishesTheCallInFlight() async throws {
        let (started, startedContinuation) = AsyncStream.makeStream(of: Void.self)
        let handler: RPCHandler = { method, body in
            if method == "slow" {
                startedContinuation.yield()
                try await Task.sleep(for: .milliseconds(500))
            }
            return body
        }
        let client = makeClient()
        let port = try await withServer(handler: handler) { port, group in
            // Two keep-alive connections: one carries the slow call, the other stays idle and the
            // shutdown must close it (else `run()` would not return).
            async let first = client.call("127.0.0.1:\(port)", method: "slow", body: ByteBuffer(string: "50"), timeout: .seconds(5))
            async let second = client.call("127.0.0.1:\(port)", method: "slow", body: ByteBuffer(string: "50"), timeout: .seconds(5))
            _ = try await (first, second)
            var iterator = started.makeAsyncIterator()
            _ = await iterator.next()
            _ = await iterator.next()
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask {
                    let body = ByteBuffer(string: "in flight")
                    let reply = try await client.call("127.0.0.1:\(port)", method: "slow", body: body, timeout: .seconds(10))
                    #expect(reply == body)
                }
                _ = await iterator.next()
                await group.triggerGracefulShutdown()
                try await tasks.waitForAll()
            }
            return port
        }
        // The listener is gone.
        let error = await expectRPCError {
            try await client.call("127.0.0.1:\(port)", method: "echo", body: ByteBuffer(), timeout: .seconds(5))
        }
        #expect(error?.kind == .unreachable)
        await client.shutdown()
    }

    @Test func garbageDoesNotHurtTheServer() async throws {
        let calls = Counter()
        try await withServer(handler: standardHandler(calls: calls)) { port, _ in
            var garbage: [UInt8] = Array("\u{1}\u{2}GARBAGE \r\n\r\n".utf8)
            garbage += (0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 7919) }
            _ = try await rawExchange(port: port, garbage)
            _ = try await rawExchange(port: port, Array("POST /rpc/echo HTTP/1.1\r\ncontent-length: abc\r\n\r\n".utf8))
            // A body cut short by the caller's close.
            _ = try await rawExchange(
                port: port, Array("POST /rpc/echo HTTP/1.1\r\ncontent-length: 10\r\n\r\nab".utf8), halfClose: true)
            let client = makeClient()
            let body = ByteBuffer(string: "fine")
            let reply8 = try await client.call("127.0.0.1:\(port)", method: "echo", body: body, timeout: .seconds(5))
            #expect(reply8 == body)
            await client.shutdown()
        }
        #expect(calls.count == 1)
    }

    @Test func idleAndStalledConnectionsAreClosedByTheServer() async throws {
        try await withServer(idleTimeout: .milliseconds(300), handler: standardHandler(calls: Counter())) { port, _ in
            let client = makeClient(maxConnectionsPerPeer: 1)
            let body = ByteBuffer(string: "before")
            let first = try await client.call("127.0.0.1:\(port)", method: "echo", body: body, timeout: .seconds(5))
            #expect(first == body)
            // The server closes the idle keep-alive connection; the pool notices and connects anew.
            try await Task.sleep(for: .milliseconds(900))
            let second = try await client.call("127.0.0.1:\(port)", method: "echo", body: body, timeout: .seconds(5))
            #expect(second == body)
            // A handler slower than the idle timeout keeps its connection.
            let slow = ByteBuffer(string: "700")
            let third = try await client.call("127.0.0.1:\(port)", method: "slow", body: slow, timeout: .seconds(5))
            #expect(third == slow)
            await client.shutdown()

            // A body that stops arriving does not hold the connection (nor a graceful shutdown) forever.
            let start = ContinuousClock.now
            _ = try await rawExchange(port: port, Array("POST /rpc/echo HTTP/1.1\r\ncontent-length: 10\r\n\r\nab".utf8))
            #expect(ContinuousClock.now - start < .seconds(5))
        }
    }

    @Test func callsAfterShutdownFail() async throws {
        try await withServer(handler: standardHandler(calls: Counter())) { port, _ in
            let client = makeClient()
            _ = try await client.call("127.0.0.1:\(port)", method: "echo", body: ByteBuffer(), timeout: .seconds(5))
            await client.shutdown()
            let error = await expectRPCError {
                try await client.call("127.0.0.1:\(port)", method: "echo", body: ByteBuffer(), timeout: .seconds(5))
            }
            #expect(error?.kind == .shutDown)
        }
    }

    @Test func invalidMethodNameIsRefusedLocally() async throws {
        let client = makeClient()
        let error = await expectRPCError {
            try await client.call("127.0.0.1:1", method: "bad/name", body: ByteBuffer(), timeout: .seconds(1))
        }
        #expect(error?.kind == .protocolError)
        await client.shutdown()
    }
}

// MARK: - Misbehaving peers

/// The deadline of calls to a fake peer. The peer answers at once; the deadline only bounds a stall.
/// It is generous because the fake peer's tasks share the test process's cooperative threads (two
/// on this machine) with CPU-heavy suites that run in parallel (ring layouts, gossip simulations):
/// with 5 s, a peer that closed without replying was once seen as a timeout under that load.
private let fakePeerTimeout: Duration = .seconds(30)

/// A fake peer that answers every request (once its head was received) with `reply`, then closes.
private func withFakePeer<R: Sendable>(
    reply: @escaping @Sendable (_ request: String) -> [UInt8],
    _ body: @Sendable (_ port: Int) async throws -> R
) async throws -> R {
    let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .bind(host: "127.0.0.1", port: 0) { channel in
            channel.eventLoop.makeCompletedFuture {
                try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
            }
        }
    let port = server.channel.localAddress!.port!
    return try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask {
            try await withThrowingDiscardingTaskGroup { connections in
                try await server.executeThenClose { inbound in
                    for try await connection in inbound {
                        connections.addTask {
                            try? await connection.executeThenClose { inbound, outbound in
                                var text = ""
                                for try await chunk in inbound {
                                    text += String(buffer: chunk)
                                    if text.contains("\r\n\r\n") {
                                        try await outbound.write(ByteBuffer(bytes: reply(text)))
                                        return
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        defer { server.channel.close(promise: nil) }
        let result = try await body(port)
        server.channel.close(promise: nil)
        try await tasks.waitForAll()
        return result
    }
}

/// The `x-cloud-time` of a request, as the fake peer read it.
private func requestTime(_ request: String) -> Int64 {
    for line in request.split(separator: "\r\n") where line.lowercased().hasPrefix("x-cloud-time:") {
        return Int64(line.dropFirst("x-cloud-time:".count).filter { $0 != " " }) ?? 0
    }
    return 0
}

@Suite struct MisbehavingPeerTests {
    @Test func garbageReplyIsAProtocolError() async throws {
        try await withFakePeer(reply: { _ in Array("SSH-2.0-OpenSSH_9.6\r\n\r\nnot http at all".utf8) }) { port in
            let client = makeClient()
            let error = await expectRPCError {
                try await client.call("127.0.0.1:\(port)", method: "echo", body: ByteBuffer(string: "x"), timeout: fakePeerTimeout)
            }
            #expect(error?.kind == .protocolError || error?.kind == .unreachable)
            await client.shutdown()
        }
    }

    @Test func replyCutShortIsAnError() async throws {
        try await withFakePeer(reply: { _ in Array("HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\nonly a little".utf8) }) { port in
            let client = makeClient()
            let error = await expectRPCError {
                try await client.call("127.0.0.1:\(port)", method: "echo", body: ByteBuffer(string: "x"), timeout: fakePeerTimeout)
            }
            #expect(error?.kind == .protocolError || error?.kind == .unreachable)
            await client.shutdown()
        }
    }

    @Test func closeWithoutReplyIsUnreachable() async throws {
        try await withFakePeer(reply: { _ in [] }) { port in
            let client = makeClient()
            let error = await expectRPCError {
                try await client.call("127.0.0.1:\(port)", method: "echo", body: ByteBuffer(string: "x"), timeout: fakePeerTimeout)
            }
            #expect(error?.kind == .unreachable)
            await client.shutdown()
        }
    }

    @Test func unsignedReplyIsUnauthorized() async throws {
        try await withFakePeer(reply: { _ in
            Array("HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-cloud-signature: 00ff\r\n\r\nhi".utf8)
        }) { port in
            let client = makeClient()
            let error = await expectRPCError {
                try await client.call("127.0.0.1:\(port)", method: "echo", body: ByteBuffer(string: "x"), timeout: fakePeerTimeout)
            }
            #expect(error?.kind == .unauthorized)
            await client.shutdown()
        }
    }

    @Test func replySignedWithAnotherSecretIsUnauthorized() async throws {
        try await withFakePeer(reply: { request in
            let signature = Wire.replySignature(
                secret: Array("other".utf8), method: "echo", time: requestTime(request),
                bodyDigest: Wire.digest(ByteBuffer(string: "hi")), status: 200, errorCode: "")
            return Array("HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-cloud-signature: \(hexString(signature))\r\n\r\nhi".utf8)
        }) { port in
            let client = makeClient()
            let error = await expectRPCError {
                try await client.call("127.0.0.1:\(port)", method: "echo", body: ByteBuffer(string: "x"), timeout: fakePeerTimeout)
            }
            #expect(error?.kind == .unauthorized)
            await client.shutdown()
        }
    }

    @Test func correctlySignedFakeReplyIsAccepted() async throws {
        // Control for the two tests above: the same fake peer with the right secret is believed.
        try await withFakePeer(reply: { request in
            let signature = Wire.replySignature(
                secret: secret, method: "echo", time: requestTime(request),
                bodyDigest: Wire.digest(ByteBuffer(string: "hi")), status: 200, errorCode: "")
            return Array("HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-cloud-signature: \(hexString(signature))\r\n\r\nhi".utf8)
        }) { port in
            let client = makeClient()
            let reply = try await client.call("127.0.0.1:\(port)", method: "echo", body: ByteBuffer(string: "x"), timeout: fakePeerTimeout)
            #expect(reply == ByteBuffer(string: "hi"))
            await client.shutdown()
        }
    }

    @Test func hugeDeclaredReplyIsRefused() async throws {
        try await withFakePeer(reply: { _ in Array("HTTP/1.1 200 OK\r\ncontent-length: 999999999999\r\n\r\n".utf8) }) { port in
            let client = makeClient()
            let error = await expectRPCError {
                try await client.call("127.0.0.1:\(port)", method: "echo", body: ByteBuffer(string: "x"), timeout: fakePeerTimeout)
            }
            #expect(error?.kind == .protocolError)
            await client.shutdown()
        }
    }
}

@Suite struct WireTests {
    @Test func addresses() {
        #expect(Wire.parseAddress("127.0.0.1:7000")! == ("127.0.0.1", 7000))
        #expect(Wire.parseAddress("node-1.example:80")! == ("node-1.example", 80))
        #expect(Wire.parseAddress("[::1]:7000")! == ("::1", 7000))
        #expect(Wire.parseAddress("nohost") == nil)
        #expect(Wire.parseAddress(":80") == nil)
        #expect(Wire.parseAddress("host:99999") == nil)
        #expect(Wire.parseAddress("[::1]7000") == nil)
    }

    @Test func names() {
        #expect(Wire.isValidName("block.put"))
        #expect(Wire.isValidName("Meta_Get-2"))
        #expect(!Wire.isValidName(""))
        #expect(!Wire.isValidName("a/b"))
        #expect(!Wire.isValidName("a\nb"))
        #expect(!Wire.isValidName(String(repeating: "a", count: 129)))
        #expect(Wire.method(fromPath: "/rpc/block.get") == "block.get")
        #expect(Wire.method(fromPath: "/rpc/") == nil)
        #expect(Wire.method(fromPath: "/rpc/a?b=c") == nil)
        #expect(Wire.sanitizedCode("No Such/Block") == "No_Such_Block")
        #expect(Wire.sanitizedCode("") == "InternalError")
    }

    @Test func replySignatureDiffersFromRequestSignature() {
        let digest = Wire.digest(ByteBuffer(string: "body"))
        let request = Wire.requestSignature(secret: secret, method: "m", time: 1, bodyDigest: digest)
        let reply = Wire.replySignature(secret: secret, method: "m", time: 1, bodyDigest: digest, status: 200, errorCode: "")
        let error = Wire.replySignature(secret: secret, method: "m", time: 1, bodyDigest: digest, status: 409, errorCode: "X")
        #expect(request != reply)
        #expect(reply != error)
        #expect(Wire.signatureMatches(hexString(request), expected: request))
        #expect(!Wire.signatureMatches(hexString(reply), expected: request))
        #expect(!Wire.signatureMatches(nil, expected: request))
        #expect(!Wire.signatureMatches("zz", expected: request))
    }
}

/// A rough cost measurement, off by default: `RPC_BENCH=1 swift test --filter RPCBenchmark`.
@Suite struct RPCBenchmark {
    @Test(.enabled(if: Environment.flag("RPC_BENCH")))
    func oneMebibyteCalls() async throws {
        let handler: RPCHandler = { method, body in
            method == "put" ? ByteBuffer(string: "ok") : body
        }
        try await withServer(handler: handler) { port, _ in
            let client = makeClient()
            let block = randomBuffer(1 << 20)
            let rounds = 200
            _ = try await client.call("127.0.0.1:\(port)", method: "put", body: block, timeout: .seconds(10))
            var start = ContinuousClock.now
            for _ in 0..<rounds { _ = Wire.digest(block) }
            let hash = (ContinuousClock.now - start) / rounds
            start = ContinuousClock.now
            for _ in 0..<rounds {
                _ = try await client.call("127.0.0.1:\(port)", method: "put", body: block, timeout: .seconds(10))
            }
            let put = (ContinuousClock.now - start) / rounds
            start = ContinuousClock.now
            for _ in 0..<rounds {
                _ = try await client.call("127.0.0.1:\(port)", method: "echo", body: block, timeout: .seconds(10))
            }
            let echo = (ContinuousClock.now - start) / rounds
            let small = ByteBuffer(string: "x")
            start = ContinuousClock.now
            for _ in 0..<rounds * 5 {
                _ = try await client.call("127.0.0.1:\(port)", method: "put", body: small, timeout: .seconds(10))
            }
            let tiny = (ContinuousClock.now - start) / (rounds * 5)
            print("sha256(1 MiB) \(hash); put 1 MiB \(put) (2 hashes); echo 1 MiB \(echo) (4 hashes); tiny call \(tiny)")
            await client.shutdown()
        }
    }
}

private enum Environment {
    static func flag(_ name: String) -> Bool {
        guard let value = getenv(name) else { return false }
        return String(cString: value) == "1"
    }
}
