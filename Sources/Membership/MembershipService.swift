import HostAddress
import HTTPServing
public import Gossip
public import Logging
public import NIOCore
import NIOPosix
public import ServiceLifecycle
import Synchronization

/// One member of the cluster: the I/O shell around a ``Gossip/Instance``.
///
/// It binds a UDP socket for SWIM packets and a TCP listener for push-pull on the same port number (like
/// HashiCorp memberlist), joins through the configured seeds, runs the instance's timers, and reports member
/// and state changes to observers. Every packet and push-pull frame carries an HMAC-SHA256 tag keyed by the
/// cluster secret; anything that fails to authenticate or decode is dropped and counted.
///
/// The instance lives under a lock; actions are computed under it and executed (packets, timers, TCP,
/// observers) outside it. Time is the `ContinuousClock`, as nanoseconds since the service was created.
///
/// Run it in a `ServiceGroup`. On graceful shutdown it leaves the cluster (the others see it as `left`), sends
/// the leave packets, closes its sockets and returns. On cancellation it closes its sockets without leaving,
/// as a crash would: the others declare it dead.
public final class MembershipService: Service, Sendable {
    private let configuration: MembershipConfiguration
    private let logger: Logger
    private let group: any EventLoopGroup
    private let codec: Gossip.Codec
    private let resolver = AddressResolver()
    private let epoch = ContinuousClock.now
    private let state: Mutex<State>
    private let work = AsyncStream.makeStream(of: Work.self)

    /// At most this many inbound push-pulls are served at once; more are refused and counted as `busy`.
    private static let maxConcurrentInboundPushPulls = 16

    private enum Phase: Sendable { case idle, starting, running, stopped }

    private enum Work: Sendable {
        case pushPull(String)
        case stop
    }

    private struct State: Sendable {
        var instance: Gossip.Instance
        var phase = Phase.idle
        var udp: (any Channel)?
        var bound: (udpPort: Int, tcpPort: Int)?
        var bindWaiters: [Int: CheckedContinuation<(udpPort: Int, tcpPort: Int), any Error>] = [:]
        var nextWaiterID = 0
        var observers: [@Sendable (MembershipEvent) -> Void] = []
        var pendingEvents: [MembershipEvent] = []
        var delivering = false
        var pushPullsInFlight: Set<String> = []
        var inboundPushPulls = 0
        var gracefulShutdownRequested = false
        /// `leave()` was called; if before `run()` joined, `run()` leaves right after starting.
        var leaveRequested = false
        var counters = ShellCounters()
        var rtt = DurationHistogram()
    }

    /// Creates the service; nothing happens until ``run()``.
    /// - Parameters:
    ///   - configuration: identity, addresses, seeds, secret and tunables. `gossip.authenticationTagLength`
    ///     MUST be 32 and `gossip` MUST pass `validate()`.
    ///   - logger: where to log; the secret is never logged.
    ///   - eventLoopGroup: the NIO event loops for sockets and timers; `nil` uses the shared singleton group.
    public init(
        configuration: MembershipConfiguration, logger: Logger, eventLoopGroup: (any EventLoopGroup)? = nil
    ) {
        precondition(
            configuration.gossip.authenticationTagLength == 32,
            "gossip.authenticationTagLength MUST be 32 (HMAC-SHA256)")
        self.configuration = configuration
        var logger = logger
        logger[metadataKey: "gossip.node"] = "\(configuration.nodeID)"
        self.logger = logger
        self.group = eventLoopGroup ?? MultiThreadedEventLoopGroup.singleton
        self.codec = Gossip.Codec(authenticator: .hmacSHA256(secret: configuration.secret))
        let instance = Gossip.Instance(
            id: Gossip.NodeID(configuration.nodeID), uid: configuration.uid, metadata: configuration.metadata,
            configuration: configuration.gossip, random: SystemRandomNumberGenerator())
        self.state = Mutex(State(instance: instance))
    }

    // MARK: Views

    /// Every known member, self included, with dead and left tombstones, in first-heard order.
    public var members: [Gossip.Member] { state.withLock { $0.instance.members } }

    /// This process as the others see it.
    public var localMember: Gossip.Member { state.withLock { $0.instance.localMember } }

    /// The replicated state entry `key`, if this member holds it.
    public func state(_ key: String) -> Gossip.StateEntry? { state.withLock { $0.instance.state(key) } }

    /// The UDP and TCP ports once ``run()`` bound them and started the member (they are equal), else `nil`.
    public var bound: (udpPort: Int, tcpPort: Int)? { state.withLock { $0.bound } }

    /// Waits until ``run()`` has bound its sockets and started the member (the join's push-pulls with the seeds
    /// may still be in flight).
    /// - Returns: the bound ports.
    /// - Throws: ``MembershipError/notRunning`` when `run()` stopped or failed before binding;
    ///   `CancellationError` when the waiting task is cancelled.
    public func waitUntilBound() async throws -> (udpPort: Int, tcpPort: Int) {
        let id = state.withLock { s in
            s.nextWaiterID += 1
            return s.nextWaiterID
        }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                enum Outcome { case wait, ready((udpPort: Int, tcpPort: Int)), failed(any Error) }
                let outcome: Outcome = state.withLock { s in
                    if let bound = s.bound { return .ready(bound) }
                    if s.phase == .stopped { return .failed(MembershipError.notRunning) }
                    if Task.isCancelled { return .failed(CancellationError()) }
                    s.bindWaiters[id] = continuation
                    return .wait
                }
                switch outcome {
                case .wait: break
                case .ready(let ports): continuation.resume(returning: ports)
                case .failed(let error): continuation.resume(throwing: error)
                }
            }
        } onCancel: {
            state.withLock { $0.bindWaiters.removeValue(forKey: id) }?.resume(throwing: CancellationError())
        }
    }

    /// Registers `observer` for every member change and state update, in the order the instance produced
    /// them. Called on an arbitrary thread, never under the service's lock; it MAY call back into the service.
    /// Observers registered before ``run()`` see every event.
    public func observe(_ observer: @escaping @Sendable (MembershipEvent) -> Void) {
        state.withLock { $0.observers.append(observer) }
    }

    /// The counters and gauges in the Prometheus text format, every name prefixed `cloud_gossip_`: members by
    /// state, probes, indirect probes, nacks, suspicions, refutations, declared deaths, push-pulls, local health,
    /// decode failures by reason, push-pull failures by reason, and the probe round-trip histogram.
    public func prometheusMetrics() -> String {
        let (metrics, counters, rtt) = state.withLock { s in
            s.rtt.record(s.instance.takeProbeRTTSamples())
            return (s.instance.metrics, s.counters, s.rtt)
        }
        return PrometheusText.render(metrics: metrics, shell: counters, rtt: rtt)
    }

    // MARK: Commands

    /// Publishes a new version of a replicated state entry (for example the layout). Ignored unless it
    /// supersedes the local entry (higher version, or equal version with greater bytes). Entries up to
    /// `maxInlineStateBytes` travel in packets; larger ones are fetched by push-pull.
    /// - Parameters:
    ///   - key: the entry's key, at most 255 bytes of UTF-8.
    ///   - version: its version; higher wins.
    ///   - bytes: its value.
    public func publishState(key: String, version: UInt64, bytes: [UInt8]) async {
        perform { s, now in s.instance.publishState(key: key, version: version, bytes: bytes, now: now) }
    }

    /// Announces new local metadata (addresses, zone, capacity) under a new incarnation.
    /// - Parameter metadata: the new metadata; strings at most 255 bytes of UTF-8.
    public func setLocalMetadata(_ metadata: Gossip.Metadata) async {
        perform { s, now in s.instance.setLocalMetadata(metadata, now: now) }
    }

    /// Leaves the cluster gracefully: announces `left` to several members and waits until those packets are
    /// written. Afterwards the member ignores all traffic (the sockets stay open until `run()` returns).
    /// Idempotent; ``run()`` calls it on graceful shutdown. Called before `run()` has started the member, it
    /// makes `run()` start and leave at once, without contacting the seeds.
    public func leave() async {
        let writes = perform(collectingWrites: true) { s, now in
            s.leaveRequested = true
            return s.instance.leave(now: now)
        }
        for write in writes {
            try? await write.get()
        }
    }

    // MARK: Running

    /// Binds the UDP socket and the TCP listener, joins through the seeds, and drives the instance until
    /// graceful shutdown (then it leaves first) or cancellation (then it stops without leaving). The sockets are
    /// closed when it returns.
    /// - Throws: ``MembershipError/alreadyStarted`` on a second call, ``MembershipError/invalidBindAddress``,
    ///   or the bind error.
    public func run() async throws {
        try state.withLock { s throws(MembershipError) in
            guard s.phase == .idle else { throw .alreadyStarted }
            s.phase = .starting
        }
        let udp: any Channel
        let tcp: NIOAsyncChannel<NIOAsyncChannel<PushPullFrame.Received, ByteBuffer>, Never>
        do {
            (udp, tcp) = try await bind()
        } catch {
            logger.error(
                "gossip bind failed", metadata: ["address": "\(configuration.bindAddress)", "error": "\(error)"])
            let waiters = state.withLock { s in
                s.phase = .stopped
                defer { s.bindWaiters = [:] }
                return s.bindWaiters.values
            }
            for waiter in waiters { waiter.resume(throwing: error) }
            work.continuation.finish()
            throw error
        }
        let port = udp.localAddress?.port ?? 0
        let advertised = advertisedGossipAddress(port: port)
        state.withLock { s in
            if s.instance.localMember.metadata.gossipAddress != advertised {
                var metadata = s.instance.localMember.metadata
                metadata.gossipAddress = advertised
                // Not started yet: only `.memberChanged` for ourselves, which `join` reports again.
                _ = s.instance.setLocalMetadata(metadata, now: .zero)
            }
            s.phase = .running
            s.udp = udp
        }
        if configuration.secret.isEmpty {
            logger.warning("the cluster secret is empty: gossip packets are not protected")
        }
        logger.notice(
            "gossip listening",
            metadata: [
                "udp": "\(udp.localAddress?.description ?? "?")",
                "tcp": "\(tcp.channel.localAddress?.description ?? "?")",
                "advertised": "\(advertised)", "seeds": "\(configuration.seeds)",
            ])
        perform { s, now in
            // A `leave()` before the start: start alone (so that the instance can mark us left), then leave.
            guard !s.leaveRequested else { return s.instance.join(seeds: [], now: now) + s.instance.leave(now: now) }
            return s.instance.join(seeds: self.configuration.seeds, now: now)
        }
        // Bound means joined: a command issued after `waitUntilBound()` acts on a started instance.
        let waiters = state.withLock { s in
            s.bound = (port, port)
            defer { s.bindWaiters = [:] }
            return s.bindWaiters.values
        }
        for waiter in waiters { waiter.resume(returning: (port, port)) }

        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                group.addTask { await self.servePushPulls(tcp) }
                group.addTask { await self.retryJoin() }
                loop: for await item in self.work.stream {
                    switch item {
                    case .pushPull(let address): group.addTask { await self.pushPull(with: address) }
                    case .stop: break loop
                    }
                }
                // Graceful shutdown ends the loop with `.stop`; cancellation ends the stream.
                if state.withLock({ $0.gracefulShutdownRequested }) {
                    await self.leave()
                    logger.info("left the cluster")
                }
                state.withLock { s in
                    s.phase = .stopped
                    s.udp = nil
                }
                group.cancelAll()
                udp.close(promise: nil)
                tcp.channel.close(promise: nil)
            }
        } onGracefulShutdown: {
            self.state.withLock { $0.gracefulShutdownRequested = true }
            self.work.continuation.yield(.stop)
        }
        work.continuation.finish()
        try? await udp.closeFuture.get()
        try? await tcp.channel.closeFuture.get()
        logger.info("gossip stopped")
    }

    private func bind() async throws -> (
        any Channel, NIOAsyncChannel<NIOAsyncChannel<PushPullFrame.Received, ByteBuffer>, Never>
    ) {
        guard let (bindHost, requestedPort) = HostPort.split(configuration.bindAddress) else {
            throw MembershipError.invalidBindAddress
        }
        let host = bindHost.isEmpty ? "0.0.0.0" : bindHost
        let maxPayload = configuration.maxPushPullPayloadBytes
        var attempt = 0
        while true {
            attempt += 1
            let udp = try await DatagramBootstrap(group: group)
                .channelOption(
                    .recvAllocator,
                    value: FixedSizeRecvByteBufferAllocator(capacity: max(16_384, configuration.gossip.packetBudget))
                )
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(DatagramHandler(service: self))
                    }
                }
                .bind(host: host, port: requestedPort).get()
            let port = udp.localAddress?.port ?? requestedPort
            do {
                let tcp = try await ServerBootstrap(group: group)
                    .serverChannelOption(.backlog, value: 64)
                    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                    .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                    .bind(host: host, port: port) { channel in
                        channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.addHandler(
                                ByteToMessageHandler(PushPullFrameDecoder(maxPayloadBytes: maxPayload)))
                            // An accepted connection the loop never takes (a listener closing) must not trap.
                            return try wrapAcceptedConnection(channel) as NIOAsyncChannel<PushPullFrame.Received, ByteBuffer>
                        }
                    }
                return (udp, tcp)
            } catch {
                try? await udp.close()
                // With port 0 the UDP port was free but its TCP twin may not be: try another.
                if requestedPort == 0 && attempt < 10 { continue }
                throw error
            }
        }
    }

    /// The gossip address to announce: the configured one, with the bound port filled in when it is empty or 0.
    private func advertisedGossipAddress(port: Int) -> String {
        let configured = configuration.metadata.gossipAddress
        let split = HostPort.split(configured)
        if let split, split.port != 0 { return configured }
        let configuredHost = split?.host ?? ""
        let host = configuredHost.isEmpty ? (HostPort.split(configuration.bindAddress)?.host ?? "") : configuredHost
        if HostPort.isUnspecified(host) {
            logger.warning(
                "advertising an unspecified gossip address; set metadata.gossipAddress",
                metadata: ["host": "\(host)"])
        }
        return HostPort.join(host: host.isEmpty ? "0.0.0.0" : host, port: port)
    }

    /// Joins the seeds again while no other member is known (every seed was down or refused us).
    private func retryJoin() async {
        guard let interval = configuration.joinRetryInterval, !configuration.seeds.isEmpty else { return }
        let me = Gossip.NodeID(configuration.nodeID)
        while true {
            do { try await Task.sleep(for: interval) } catch { return }
            let joined = state.withLock { s in
                s.instance.hasLeft || s.instance.members.contains { $0.id != me }
            }
            if joined { return }
            logger.info("no seed answered yet; joining again", metadata: ["seeds": "\(configuration.seeds)"])
            perform { s, now in s.instance.join(seeds: self.configuration.seeds, now: now) }
        }
    }

    // MARK: Driving the instance

    private func now() -> Gossip.Time {
        let (seconds, attoseconds) = (ContinuousClock.now - epoch).components
        return Gossip.Time(nanoseconds: seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }

    /// Runs `event` under the lock (with the current time) and executes the actions it returns outside it:
    /// packets, timers and push-pulls in order, then observer events.
    /// - Returns: the futures of the packets written, when `collectingWrites`.
    @discardableResult
    private func perform(
        collectingWrites: Bool = false,
        _ event: (inout State, Gossip.Time) -> [Gossip.Action]
    ) -> [EventLoopFuture<Void>] {
        let (actions, udp): ([Gossip.Action], (any Channel)?) = state.withLock { s in
            let actions = event(&s, now())
            for action in actions {
                switch action {
                case .memberChanged(let member):
                    s.pendingEvents.append(.memberChanged(member))
                case .stateUpdated(let key, let version, let bytes):
                    s.pendingEvents.append(.stateUpdated(Gossip.StateEntry(key: key, version: version, bytes: bytes)))
                case .send, .scheduleTimeout, .requestPushPull:
                    break
                }
            }
            return (actions, s.phase == .running ? s.udp : nil)
        }
        var writes: [EventLoopFuture<Void>] = []
        for action in actions {
            switch action {
            case .send(let message, let address):
                guard let udp else { continue }
                guard let remote = resolver.resolve(address) else {
                    state.withLock { $0.counters.unresolvableAddresses += 1 }
                    logger.debug("cannot resolve gossip address", metadata: ["address": "\(address)"])
                    continue
                }
                let envelope = AddressedEnvelope(remoteAddress: remote, data: codec.encode(message))
                if collectingWrites {
                    writes.append(udp.writeAndFlush(envelope))
                } else {
                    udp.writeAndFlush(envelope, promise: nil)
                }
            case .scheduleTimeout(let id, let at):
                guard let udp else { continue }
                let delay = max(0, at.nanoseconds - now().nanoseconds)
                // Never cancelled: the instance ignores stale timers. Weak, so that a long suspicion timer does
                // not keep a stopped service alive.
                udp.eventLoop.scheduleTask(in: .nanoseconds(delay)) { [weak self] in
                    self?.timerFired(id, at: at)
                }
            case .requestPushPull(let address):
                guard udp != nil else { continue }
                work.continuation.yield(.pushPull(address))
            case .memberChanged, .stateUpdated:
                break
            }
        }
        deliverEvents()
        return writes
    }

    /// Delivers queued events outside the lock, one thread at a time, in the order they were produced.
    private func deliverEvents() {
        var next: (events: [MembershipEvent], observers: [@Sendable (MembershipEvent) -> Void])? =
            state.withLock { s in
                guard !s.delivering, !s.pendingEvents.isEmpty else { return nil }
                s.delivering = true
                defer { s.pendingEvents = [] }
                return (s.pendingEvents, s.observers)
            }
        while let (events, observers) = next {
            for event in events {
                for observer in observers { observer(event) }
            }
            next = state.withLock { s in
                guard !s.pendingEvents.isEmpty else {
                    s.delivering = false
                    return nil
                }
                defer { s.pendingEvents = [] }
                return (s.pendingEvents, s.observers)
            }
        }
    }

    private func timerFired(_ id: Gossip.TimerID, at: Gossip.Time) {
        perform { s, now in
            guard s.phase == .running else { return [] }
            // The timer may fire a hair early on the event loop's clock; the instance wants `now >= at`.
            let actions = s.instance.timeoutFired(id, now: max(now, at))
            if case .tick = id { s.rtt.record(s.instance.takeProbeRTTSamples()) }
            return actions
        }
    }

    /// A datagram arrived (on the UDP channel's event loop).
    fileprivate func received(_ envelope: AddressedEnvelope<ByteBuffer>) {
        let message: Gossip.Message
        do {
            message = try codec.decode(envelope.data)
        } catch {
            state.withLock { $0.counters.decodeFailures[error.shortDescription, default: 0] += 1 }
            logger.trace(
                "dropped a datagram",
                metadata: ["from": "\(envelope.remoteAddress)", "reason": "\(error.shortDescription)"])
            return
        }
        let from = HostPort.string(envelope.remoteAddress)
        perform { s, now in
            guard s.phase == .running else { return [] }
            s.counters.datagramsReceived += 1
            return s.instance.receive(message, from: from, now: now)
        }
    }

    fileprivate func datagramError(_ error: any Error) {
        logger.debug("gossip socket error", metadata: ["error": "\(error)"])
    }

    // MARK: Push-pull (TCP on the gossip port)

    private enum PushPullPlan {
        case skip
        case fail(PushPullFailure)
        case exchange(target: String, payload: ByteBuffer)
    }

    /// The gossip address to push-pull with for an address the instance asked for: the gossip address of the
    /// member whose `rpcAddress` it is, or else the address itself (join seeds are gossip addresses).
    static func pushPullTarget(for address: String, members: [Gossip.Member], local: Gossip.Member) -> String? {
        guard !address.isEmpty else { return nil }
        let matches = members.filter { $0.id != local.id && $0.rpcAddress == address }
        if let member = matches.first(where: { $0.state == .alive || $0.state == .suspect }) ?? matches.first {
            return member.gossipAddress.isEmpty ? nil : member.gossipAddress
        }
        return address
    }

    /// Initiates one push-pull: sends our payload, merges the answer.
    private func pushPull(with address: String) async {
        let plan: PushPullPlan = state.withLock { s in
            guard s.phase == .running else { return .skip }
            let local = s.instance.localMember
            guard
                let target = Self.pushPullTarget(for: address, members: s.instance.members, local: local)
            else { return .fail(.unknownPeer) }
            guard target != local.gossipAddress, s.pushPullsInFlight.insert(target).inserted else { return .skip }
            return .exchange(target: target, payload: s.instance.pushPullPayload())
        }
        switch plan {
        case .skip:
            return
        case .fail(let failure):
            recordFailure(failure, direction: "outbound", peer: address)
        case .exchange(let target, let payload):
            defer { state.withLock { _ = $0.pushPullsInFlight.remove(target) } }
            do {
                let theirs = try await exchange(payload, with: target)
                perform { s, now in
                    s.counters.pushPullsInitiated += 1
                    guard s.phase == .running else { return [] }
                    return s.instance.mergePushPull(theirs, now: now)
                }
            } catch {
                recordFailure(error, direction: "outbound", peer: target)
            }
        }
    }

    private func exchange(_ payload: ByteBuffer, with target: String) async throws(PushPullFailure) -> ByteBuffer {
        guard payload.readableBytes <= configuration.maxPushPullPayloadBytes else { throw .oversize }
        guard let remote = resolver.resolve(target) else { throw .unknownPeer }
        let timeout = configuration.pushPullTimeout
        let deadline = ContinuousClock.now + timeout
        let maxPayload = configuration.maxPushPullPayloadBytes
        let connection: NIOAsyncChannel<PushPullFrame.Received, ByteBuffer>
        do {
            connection = try await ClientBootstrap(group: group)
                .connectTimeout(.nanoseconds(Self.nanoseconds(timeout)))
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .connect(to: remote) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(
                            ByteToMessageHandler(PushPullFrameDecoder(maxPayloadBytes: maxPayload)))
                        return try NIOAsyncChannel<PushPullFrame.Received, ByteBuffer>(
                            wrappingChannelSynchronously: channel)
                    }
                }
        } catch {
            throw ContinuousClock.now >= deadline ? .timeout : .connect
        }
        let channel = connection.channel
        let remaining = Self.nanoseconds(deadline - ContinuousClock.now)
        let closer = channel.eventLoop.scheduleTask(in: .nanoseconds(max(0, remaining))) {
            channel.close(promise: nil)
        }
        defer { closer.cancel() }
        let secret = configuration.secret
        do {
            return try await connection.executeThenClose { inbound, outbound in
                try await outbound.write(PushPullFrame.encode(payload, secret: secret))
                var frames = inbound.makeAsyncIterator()
                guard let reply = try await frames.next() else { throw PushPullFailure.closed }
                guard PushPullFrame.isAuthentic(reply, secret: secret) else { throw PushPullFailure.badAuthentication }
                return reply.payload
            }
        } catch {
            throw Self.classify(error, deadline: deadline)
        }
    }

    /// Accepts push-pull connections until the listener closes.
    private func servePushPulls(
        _ listener: NIOAsyncChannel<NIOAsyncChannel<PushPullFrame.Received, ByteBuffer>, Never>
    ) async {
        do {
            try await listener.executeThenClose { connections in
                try await withThrowingDiscardingTaskGroup { group in
                    for try await connection in connections {
                        let admitted = state.withLock { s in
                            guard s.phase == .running, s.inboundPushPulls < Self.maxConcurrentInboundPushPulls
                            else { return false }
                            s.inboundPushPulls += 1
                            return true
                        }
                        guard admitted else {
                            connection.channel.close(promise: nil)
                            recordFailure(PushPullFailure.busy, direction: "inbound", peer: nil)
                            continue
                        }
                        group.addTask {
                            await self.serve(connection)
                            self.state.withLock { $0.inboundPushPulls -= 1 }
                        }
                    }
                }
            }
        } catch is CancellationError {
        } catch {
            logger.debug("push-pull listener stopped", metadata: ["error": "\(error)"])
        }
    }

    /// Answers one push-pull: verify, merge theirs first, then send ours (so a refutation made while merging
    /// reaches the initiator in the same exchange), then wait for the initiator to close.
    private func serve(_ connection: NIOAsyncChannel<PushPullFrame.Received, ByteBuffer>) async {
        let channel = connection.channel
        let peer = channel.remoteAddress.map(HostPort.string)
        let deadline = ContinuousClock.now + configuration.pushPullTimeout
        let closer = channel.eventLoop.scheduleTask(in: .nanoseconds(Self.nanoseconds(configuration.pushPullTimeout))) {
            channel.close(promise: nil)
        }
        defer { closer.cancel() }
        let secret = configuration.secret
        let maxPayload = configuration.maxPushPullPayloadBytes
        do {
            try await connection.executeThenClose { inbound, outbound in
                var frames = inbound.makeAsyncIterator()
                guard let request = try await frames.next() else { throw PushPullFailure.closed }
                guard PushPullFrame.isAuthentic(request, secret: secret) else {
                    throw PushPullFailure.badAuthentication
                }
                var reply: ByteBuffer?
                perform { s, now in
                    guard s.phase == .running else { return [] }
                    let actions = s.instance.mergePushPull(request.payload, now: now)
                    reply = s.instance.pushPullPayload()
                    return actions
                }
                guard let reply else { throw PushPullFailure.closed }
                guard reply.readableBytes <= maxPayload else { throw PushPullFailure.oversize }
                try await outbound.write(PushPullFrame.encode(reply, secret: secret))
                // Closing now could discard the unsent tail of the reply: the initiator closes once it has it.
                do {
                    while try await frames.next() != nil {}
                } catch {}
            }
            state.withLock { $0.counters.pushPullsServed += 1 }
        } catch {
            recordFailure(Self.classify(error, deadline: deadline), direction: "inbound", peer: peer)
        }
    }

    private func recordFailure(_ error: any Error, direction: String, peer: String?) {
        let failure = error as? PushPullFailure ?? .io
        state.withLock {
            $0.counters.pushPullFailures[ShellCounters.failureKey(direction: direction, failure), default: 0] += 1
        }
        let level: Logger.Level = failure == .badAuthentication || failure == .oversize ? .warning : .debug
        logger.log(
            level: level, "push-pull failed",
            metadata: ["direction": "\(direction)", "peer": "\(peer ?? "?")", "reason": "\(failure.shortDescription)"])
    }

    private static func classify(_ error: any Error, deadline: ContinuousClock.Instant) -> PushPullFailure {
        if ContinuousClock.now >= deadline { return .timeout }
        if let failure = error as? PushPullFailure { return failure }
        if error is CancellationError { return .closed }
        return .io
    }

    private static func nanoseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}

/// Hands every datagram of the gossip socket to the service.
private final class DatagramHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>

    private let service: MembershipService

    init(service: MembershipService) { self.service = service }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        service.received(unwrapInboundIn(data))
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A failed send or a transient socket error must not close the gossip socket.
        service.datagramError(error)
    }
}
