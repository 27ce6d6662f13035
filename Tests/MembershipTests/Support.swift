import Gossip
import Logging
import Membership
import NIOCore
import ServiceLifecycle
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The cluster secret of the test clusters.
let clusterSecret: [UInt8] = Array("membership-tests-secret".utf8)
/// The secret of a member that does not belong.
let otherSecret: [UInt8] = Array("another cluster".utf8)

/// Fast protocol timings for loopback clusters: 200 ms probes, ~0.6–1.8 s suspicion, 50 ms gossip rounds.
func fastGossip() -> Gossip.Configuration {
    var c = Gossip.Configuration.localTest
    c.probeInterval = .milliseconds(200)
    c.probeTimeout = .milliseconds(100)
    c.suspicionMultiplier = 3
    c.suspicionMaxTimeoutMultiplier = 3
    c.gossipInterval = .milliseconds(50)
    c.pushPullInterval = .seconds(2)
    c.stateFetchBackoff = .milliseconds(200)
    c.gossipToTheDeadTime = .seconds(5)
    return c
}

func testLogger(_ label: String) -> Logger {
    // MEMBERSHIP_TEST_LOG=debug (or trace, info…) shows the services' logs on stderr.
    if let level = getenv("MEMBERSHIP_TEST_LOG").flatMap({ Logger.Level(rawValue: String(cString: $0)) }) {
        var logger = Logger(label: label, factory: { StreamLogHandler.standardError(label: $0) })
        logger.logLevel = level
        return logger
    }
    return Logger(label: label, factory: { _ in SwiftLogNoOpLogHandler() })
}

/// The metadata node `index` announces (its gossip address is filled in with the bound port).
func testMetadata(_ index: Int) -> Gossip.Metadata {
    Gossip.Metadata(
        gossipAddress: "", rpcAddress: "127.0.0.1:\(7100 + index)", s3Address: "127.0.0.1:\(9100 + index)",
        zone: "zone-\(index % 2)", capacity: UInt64(index + 1) << 40)
}

private let uids = Mutex<UInt64>(1_000)

func testConfiguration(
    _ name: String, index: Int, seeds: [String] = [], secret: [UInt8] = clusterSecret
) -> MembershipConfiguration {
    let uid = uids.withLock { uid in
        uid += 1
        return uid
    }
    var c = MembershipConfiguration(
        nodeID: name, uid: uid, bindAddress: "127.0.0.1:0", metadata: testMetadata(index), seeds: seeds,
        secret: secret, gossip: fastGossip())
    c.pushPullTimeout = .seconds(1)
    c.joinRetryInterval = .milliseconds(500)
    return c
}

/// One running member: the service inside its own `ServiceGroup`, and every event it reported.
final class Node: Sendable {
    let name: String
    let service: MembershipService
    let group: ServiceGroup
    let task: Task<Void, any Error>
    private let recorded: EventBox

    private init(
        name: String, service: MembershipService, group: ServiceGroup, task: Task<Void, any Error>,
        recorded: EventBox
    ) {
        self.name = name
        self.service = service
        self.group = group
        self.task = task
        self.recorded = recorded
    }

    /// Starts a member and waits until its sockets are bound.
    static func start(
        _ configuration: MembershipConfiguration, beforeRun: (MembershipService) async -> Void = { _ in }
    ) async throws -> Node {
        let logger = testLogger(configuration.nodeID)
        let service = MembershipService(configuration: configuration, logger: logger)
        let box = EventBox()
        service.observe { event in box.append(event) }
        await beforeRun(service)
        let group = ServiceGroup(services: [service], logger: logger)
        let task = Task { try await group.run() }
        let node = Node(
            name: configuration.nodeID, service: service, group: group, task: task,
            recorded: box)
        _ = try await service.waitUntilBound()
        return node
    }

    var gossipAddress: String { service.localMember.gossipAddress }
    var port: Int { service.bound?.udpPort ?? 0 }
    var events: [MembershipEvent] { recorded.events.withLock { $0 } }

    func member(_ id: String) -> Gossip.Member? { service.members.first { $0.id.rawValue == id } }

    func metric(_ series: String) -> Double { metricValue(service.prometheusMetrics(), series) }

    /// Graceful shutdown: the service leaves, then returns.
    func stopGracefully() async {
        await group.triggerGracefulShutdown()
        _ = await task.result
    }

    /// A crash: the service is cancelled and closes its sockets without leaving.
    func crash() async {
        task.cancel()
        _ = await task.result
    }
}

/// Collects events from an observer.
final class EventBox: Sendable {
    let events = Mutex<[MembershipEvent]>([])
    func append(_ event: MembershipEvent) { events.withLock { $0.append(event) } }
}

/// Starts members, and stops every one of them when `body` ends (even by throwing).
func withNodes<R>(_ body: (NodeSet) async throws -> R) async throws -> R {
    let nodes = NodeSet()
    do {
        let result = try await body(nodes)
        await nodes.stopAll()
        return result
    } catch {
        await nodes.stopAll()
        throw error
    }
}

final class NodeSet: Sendable {
    private let nodes = Mutex<[Node]>([])

    func start(
        _ configuration: MembershipConfiguration, beforeRun: (MembershipService) async -> Void = { _ in }
    ) async throws -> Node {
        let node = try await Node.start(configuration, beforeRun: beforeRun)
        nodes.withLock { $0.append(node) }
        return node
    }

    func stopAll() async {
        for node in nodes.withLock({ $0 }) { await node.crash() }
    }
}

/// Polls `condition` every 50 ms until it holds or `timeout` passes; returns its last value.
func eventually(
    timeout: Duration = .seconds(10), _ condition: () async throws -> Bool
) async rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(50))
    }
    return try await condition()
}

/// The value of one series (`name{labels}`) in a Prometheus text exposition; 0 when absent.
func metricValue(_ text: String, _ series: String) -> Double {
    for line in text.split(separator: "\n") where !line.hasPrefix("#") {
        let parts = line.split(separator: " ")
        if parts.count == 2, parts[0] == series { return Double(parts[1]) ?? 0 }
    }
    return 0
}

/// The sum of every series of a metric family.
func metricSum(_ text: String, _ name: String) -> Double {
    var sum = 0.0
    for line in text.split(separator: "\n") where line.hasPrefix(name + "{") || line.hasPrefix(name + " ") {
        sum += Double(line.split(separator: " ").last ?? "") ?? 0
    }
    return sum
}

// MARK: - Raw sockets (what a misbehaving peer would send)

#if canImport(Glibc)
    private let datagramType = Int32(SOCK_DGRAM.rawValue)
    private let streamType = Int32(SOCK_STREAM.rawValue)
    private let noSignal = Int32(MSG_NOSIGNAL)
#else
    private let datagramType = SOCK_DGRAM
    private let streamType = SOCK_STREAM
    private let noSignal: Int32 = 0
#endif

private func systemBind(_ fd: Int32, _ address: UnsafePointer<sockaddr>, _ length: socklen_t) -> Int32 {
    #if canImport(Glibc)
        Glibc.bind(fd, address, length)
    #else
        Darwin.bind(fd, address, length)
    #endif
}

private func systemSend(_ fd: Int32, _ bytes: UnsafeRawPointer?, _ count: Int, _ flags: Int32) -> Int {
    #if canImport(Glibc)
        Glibc.send(fd, bytes, count, flags)
    #else
        Darwin.send(fd, bytes, count, flags)
    #endif
}

private func loopback(port: Int) -> sockaddr_in {
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    return address
}

private func setReceiveTimeout(_ fd: Int32, milliseconds: Int) {
    var timeout = timeval()
    timeout.tv_sec = .init(milliseconds / 1000)
    timeout.tv_usec = .init(milliseconds % 1000 * 1000)
    _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
}

/// A plain UDP socket on 127.0.0.1 (an ephemeral port).
final class RawUDPSocket: Sendable {
    let fd: Int32

    init() {
        fd = socket(AF_INET, datagramType, 0)
        precondition(fd >= 0, "socket() failed")
        var address = loopback(port: 0)
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                systemBind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        precondition(result == 0, "bind() failed")
    }

    deinit { close(fd) }

    /// The local port, for addressing replies.
    var port: Int {
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    func send(_ bytes: [UInt8], toPort port: Int) {
        var address = loopback(port: port)
        let sent = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                sendto(fd, bytes, bytes.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        precondition(sent == bytes.count, "sendto() failed")
    }

    /// One datagram, or `nil` after `milliseconds` of silence.
    func receive(timeoutMilliseconds milliseconds: Int) -> [UInt8]? {
        setReceiveTimeout(fd, milliseconds: milliseconds)
        var buffer = [UInt8](repeating: 0, count: 65_536)
        let count = recv(fd, &buffer, buffer.count, 0)
        guard count >= 0 else { return nil }
        return Array(buffer.prefix(count))
    }
}

/// A plain TCP connection to 127.0.0.1.
final class RawTCPConnection: Sendable {
    let fd: Int32

    init?(port: Int) {
        fd = socket(AF_INET, streamType, 0)
        precondition(fd >= 0, "socket() failed")
        var address = loopback(port: port)
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        if result != 0 {
            close(fd)
            return nil
        }
    }

    deinit { close(fd) }

    func send(_ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { systemSend(fd, $0.baseAddress, $0.count, noSignal) }
    }

    /// Reads until the peer closes or `milliseconds` pass; returns what arrived and whether the peer closed.
    func readUntilClosed(timeoutMilliseconds milliseconds: Int) -> (bytes: [UInt8], closed: Bool) {
        setReceiveTimeout(fd, milliseconds: milliseconds)
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = recv(fd, &buffer, buffer.count, 0)
            if count == 0 { return (received, true) }
            if count < 0 { return (received, errno == ECONNRESET) }
            received += buffer.prefix(count)
        }
    }
}

/// `true` when both a UDP and a TCP socket can be bound to 127.0.0.1:`port` (nothing else holds it).
func portIsFree(_ port: Int) -> Bool {
    for type in [datagramType, streamType] {
        let fd = socket(AF_INET, type, 0)
        defer { close(fd) }
        var one: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = loopback(port: port)
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                systemBind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        if result != 0 { return false }
        if type == streamType && listen(fd, 1) != 0 { return false }
    }
    return true
}

/// Decodes one datagram (a plain `throws` wrapper around the codec's typed throws).
func decodePacket(_ bytes: [UInt8], with codec: Gossip.Codec) throws -> Gossip.Message {
    try codec.decode(ByteBuffer(bytes: bytes))
}

/// The bytes of an encoded packet.
func encodePacket(_ message: Gossip.Message, with codec: Gossip.Codec) -> [UInt8] {
    Array(codec.encode(message).readableBytesView)
}
