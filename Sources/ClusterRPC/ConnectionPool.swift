import NIOCore
import Synchronization

/// A connection owned by the pool (idle) or leased to one call.
final class PooledConnection: Sendable {
    let id: UInt64
    let peer: String
    let channel: any Channel

    init(id: UInt64, peer: String, channel: any Channel) {
        self.id = id
        self.peer = peer
        self.channel = channel
    }
}

/// Connections per peer address: at most `maxPerPeer` open (connected or connecting) at once,
/// idle ones reused most recently used first, callers beyond the limit queued first come, first
/// served.
///
/// A peer's open count is `connecting + open.count`; a connection leaves `open` only when its channel
/// has closed (its close future), so the count cannot drift. Continuations are resumed and channels
/// closed outside the lock.
final class ConnectionPool: Sendable {
    /// What a caller gets: an idle connection, or the right to open a new one (a reserved slot).
    enum Lease: Sendable {
        case connection(PooledConnection)
        case connect
    }

    private struct Waiter {
        var id: UInt64
        var continuation: CheckedContinuation<Lease, any Error>
    }

    private struct Peer {
        /// Idle connections; the last is the most recently used.
        var idle: [PooledConnection] = []
        /// Every connected connection, idle or leased.
        var open: [UInt64: PooledConnection] = [:]
        /// Slots reserved by callers that are connecting.
        var connecting = 0
        var waiters = CircularBuffer<Waiter>()

        var isEmpty: Bool { self.open.isEmpty && self.connecting == 0 && self.waiters.isEmpty }
    }

    private struct State {
        var peers: [String: Peer] = [:]
        var shutDown = false
        var nextID: UInt64 = 0
        var drained: [CheckedContinuation<Void, Never>] = []

        var isDrained: Bool { self.peers.values.allSatisfy { $0.open.isEmpty && $0.connecting == 0 } }

        /// Runs `body` on the entry of `peer`, taken out of the dictionary so that its collections are
        /// mutated in place (not copied on write); the entry is dropped when it ends up empty.
        mutating func withPeer<R>(_ peer: String, _ body: (inout Peer) -> R) -> R {
            var entry = self.peers.removeValue(forKey: peer) ?? Peer()
            defer { if !entry.isEmpty { self.peers[peer] = entry } }
            return body(&entry)
        }
    }

    private let state = Mutex(State())
    let maxPerPeer: Int

    init(maxPerPeer: Int) {
        self.maxPerPeer = maxPerPeer
    }

    var isShutDown: Bool { self.state.withLock { $0.shutDown } }

    func makeID() -> UInt64 {
        self.state.withLock { state in
            state.nextID += 1
            return state.nextID
        }
    }

    /// Gets a connection or a connect slot for `peer`, waiting (in FIFO order) while the peer is at
    /// its limit.
    ///
    /// `queued` runs, outside the lock, only when the caller has to wait, with the id that
    /// `cancelWaiter` takes; the caller records it, and cancels the wait itself when it was aborted
    /// before it could record it.
    func acquire(peer: String, queued: (_ waiterID: UInt64) -> Void) async throws -> Lease {
        try await withCheckedThrowingContinuation { continuation in
            enum Decision {
                case now(Result<Lease, any Error>)
                case queued(UInt64)
                case staleIdle([PooledConnection], Lease)
            }
            let decision: Decision = self.state.withLock { state in
                if state.shutDown {
                    return .now(.failure(RPCError(kind: .shutDown, message: "the RPC client was shut down")))
                }
                state.nextID += 1
                let waiterID = state.nextID
                return state.withPeer(peer) { entry in
                    var stale: [PooledConnection] = []
                    while let connection = entry.idle.popLast() {
                        if connection.channel.isActive {
                            return stale.isEmpty
                                ? .now(.success(.connection(connection))) : .staleIdle(stale, .connection(connection))
                        }
                        // Closed while idle; its close future removes it from `open`.
                        stale.append(connection)
                    }
                    if entry.open.count + entry.connecting < self.maxPerPeer {
                        entry.connecting += 1
                        return stale.isEmpty ? .now(.success(.connect)) : .staleIdle(stale, .connect)
                    }
                    entry.waiters.append(Waiter(id: waiterID, continuation: continuation))
                    return .queued(waiterID)
                }
            }
            switch decision {
            case .now(let result):
                continuation.resume(with: result)
            case .staleIdle(let stale, let lease):
                for connection in stale { connection.channel.close(promise: nil) }
                continuation.resume(returning: lease)
            case .queued(let waiterID):
                queued(waiterID)
            }
        }
    }

    /// Stops a queued wait (deadline or cancellation); its `acquire` throws `error`. Does nothing when
    /// the wait was already served.
    func cancelWaiter(peer: String, waiterID: UInt64, error: any Error) {
        let continuation: CheckedContinuation<Lease, any Error>? = self.state.withLock { state in
            guard state.peers[peer] != nil else { return nil }
            return state.withPeer(peer) { entry in
                guard let index = entry.waiters.firstIndex(where: { $0.id == waiterID }) else { return nil }
                return entry.waiters.remove(at: index).continuation
            }
        }
        continuation?.resume(throwing: error)
    }

    /// A caller that got `.connect` connected: the connection is open and leased to it.
    /// - Returns: `false` when the pool was shut down meanwhile (the channel is closed).
    func connected(_ connection: PooledConnection) -> Bool {
        let accepted = self.state.withLock { state in
            let shutDown = state.shutDown
            return state.withPeer(connection.peer) { entry in
                entry.connecting -= 1
                if shutDown { return false }
                entry.open[connection.id] = connection
                return true
            }
        }
        if !accepted {
            connection.channel.close(promise: nil)
            self.checkDrained()
            return false
        }
        // Registered after the connection is in `open`: the callback then always finds it.
        connection.channel.closeFuture.whenComplete { _ in
            self.closed(connection)
        }
        return true
    }

    /// A caller that got `.connect` failed to connect, or gives its slot back unused: the slot goes
    /// to the next waiter.
    func connectFailed(peer: String) {
        let next: CheckedContinuation<Lease, any Error>? = self.state.withLock { state in
            guard state.peers[peer] != nil else { return nil }
            let shutDown = state.shutDown
            return state.withPeer(peer) { entry in
                entry.connecting -= 1
                return self.handSlotToWaiter(&entry, shutDown: shutDown)
            }
        }
        next?.resume(returning: .connect)
        self.checkDrained()
    }

    /// Gives a leased connection back. A reusable one goes to the first waiter or the idle list;
    /// another is closed (its slot frees when the close completes).
    func release(_ connection: PooledConnection, reusable: Bool) {
        enum Outcome {
            case handOff(CheckedContinuation<Lease, any Error>)
            case kept
            case close
        }
        let outcome: Outcome
        if reusable && connection.channel.isActive {
            outcome = self.state.withLock { state in
                guard !state.shutDown, state.peers[connection.peer]?.open[connection.id] != nil else { return .close }
                return state.withPeer(connection.peer) { entry in
                    if let waiter = entry.waiters.popFirst() {
                        return .handOff(waiter.continuation)
                    }
                    entry.idle.append(connection)
                    return .kept
                }
            }
        } else {
            outcome = .close
        }
        switch outcome {
        case .handOff(let continuation):
            continuation.resume(returning: .connection(connection))
        case .kept:
            break
        case .close:
            connection.channel.close(promise: nil)
        }
    }

    /// A connection's channel closed: forget it and give its slot to the next waiter.
    private func closed(_ connection: PooledConnection) {
        let next: CheckedContinuation<Lease, any Error>? = self.state.withLock { state in
            guard state.peers[connection.peer] != nil else { return nil }
            let shutDown = state.shutDown
            return state.withPeer(connection.peer) { entry in
                entry.open.removeValue(forKey: connection.id)
                entry.idle.removeAll { $0 === connection }
                return self.handSlotToWaiter(&entry, shutDown: shutDown)
            }
        }
        next?.resume(returning: .connect)
        self.checkDrained()
    }

    /// When the peer is below its limit and someone waits, reserves a slot for the first waiter.
    private func handSlotToWaiter(_ entry: inout Peer, shutDown: Bool) -> CheckedContinuation<Lease, any Error>? {
        guard !shutDown, !entry.waiters.isEmpty, entry.open.count + entry.connecting < self.maxPerPeer else {
            return nil
        }
        entry.connecting += 1
        return entry.waiters.removeFirst().continuation
    }

    private func checkDrained() {
        let drained: [CheckedContinuation<Void, Never>] = self.state.withLock { state in
            guard state.shutDown, state.isDrained else { return [] }
            defer { state.drained = [] }
            return state.drained
        }
        for continuation in drained { continuation.resume() }
    }

    /// Fails all waiters with `.shutDown`, closes every connection (calls in progress fail), and
    /// returns once all connections, including those still connecting, are closed.
    func shutdown() async {
        let (waiters, channels) = self.state.withLock { state in
            state.shutDown = true
            var waiters: [CheckedContinuation<Lease, any Error>] = []
            var channels: [any Channel] = []
            for key in state.peers.keys {
                while let waiter = state.peers[key]!.waiters.popFirst() { waiters.append(waiter.continuation) }
                channels.append(contentsOf: state.peers[key]!.open.values.map(\.channel))
                state.peers[key]!.idle = []
            }
            return (waiters, channels)
        }
        let error = RPCError(kind: .shutDown, message: "the RPC client was shut down")
        for waiter in waiters { waiter.resume(throwing: error) }
        for channel in channels { channel.close(promise: nil) }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let done = self.state.withLock { state in
                if state.isDrained { return true }
                state.drained.append(continuation)
                return false
            }
            if done { continuation.resume() }
        }
    }
}
