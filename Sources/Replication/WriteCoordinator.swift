extension Replication {
    /// Coordinates one replicated write (a block or a metadata record) to the owners of its partition.
    ///
    /// Use: ``start(isReachable:)``, then feed ``ownerAcknowledged(_:)``, ``ownerFailed(_:)``,
    /// ``handoffAcknowledged(_:)``, ``handoffFailed(_:)`` as answers arrive and
    /// ``deadlinePassed()`` when the shell's timer fires. Exactly one `.succeed` or `.fail` is
    /// emitted; `.send` actions for hinted copies may follow it (an owner that fails after the
    /// quorum was reached still gets its hint).
    ///
    /// When fewer than `w` owners are reachable at the start, the write fails before anything is
    /// sent, so nothing becomes visible anywhere.
    public struct WriteCoordinator<Node: Hashable & Sendable>: Sendable {
        /// What the shell must do.
        public enum Action: Equatable, Sendable {
            /// Send the write to `to`. `hintFor` names the owner that a handoff copy stands in for
            /// (nil for an owner's own copy); the handoff node keeps the hint until that owner has it.
            case send(to: Node, hintFor: Node?)
            /// `w` owners acknowledged: the write is durable; answer the client.
            case succeed(acknowledged: [Node])
            /// The write cannot reach `w` owners (or the deadline passed first).
            case fail(Failure)
        }

        /// Why a write failed.
        public typealias Failure = QuorumFailure

        private enum Phase: Sendable { case idle, waiting, finished }

        private let owners: [Node]
        private let handoffs: [Node]
        private let quorum: Int
        private var phase = Phase.idle
        private var pending: Set<Node> = []
        private var acknowledged: [Node] = []
        /// Handoff nodes in use, with the owner each stands in for.
        private var standIns: [Node: Node] = [:]
        private var nextHandoff = 0

        /// - Parameters:
        ///   - owners: the partition's owners in preference order (distinct).
        ///   - handoffs: further nodes in the ring's fixed handoff order (distinct, not owners).
        ///   - writeQuorum: `w`, at most `owners.count`.
        public init(owners: [Node], handoffs: [Node], writeQuorum: Int) {
            precondition(writeQuorum >= 1 && writeQuorum <= owners.count, "the write quorum must be 1…owners")
            self.owners = owners
            self.handoffs = handoffs
            self.quorum = writeQuorum
        }

        /// Starts the write: sends to every reachable owner and a hinted copy for each unreachable one.
        /// - Parameter isReachable: the failure detector's current view (SWIM alive or suspect).
        public mutating func start(isReachable: (Node) -> Bool) -> [Action] {
            precondition(self.phase == .idle, "start() MUST be called once")
            let reachable = self.owners.filter(isReachable)
            guard reachable.count >= self.quorum else {
                self.phase = .finished
                return [.fail(Failure(.write, reason: .notEnoughOwners, responded: reachable.count, required: self.quorum))]
            }
            self.phase = .waiting
            var actions: [Action] = []
            for owner in self.owners {
                if reachable.contains(owner) {
                    self.pending.insert(owner)
                    actions.append(.send(to: owner, hintFor: nil))
                } else if let action = self.handOff(owner, isReachable: isReachable) {
                    actions.append(action)
                }
            }
            return actions
        }

        /// An owner stored the write durably.
        public mutating func ownerAcknowledged(_ owner: Node) -> [Action] {
            guard self.pending.remove(owner) != nil else { return [] }
            self.acknowledged.append(owner)
            if self.phase == .waiting && self.acknowledged.count >= self.quorum {
                self.phase = .finished
                return [.succeed(acknowledged: self.acknowledged)]
            }
            return []
        }

        /// An owner refused the write or could not be reached; a hinted copy goes to a handoff node.
        /// - Parameter isReachable: the failure detector's current view, for choosing the handoff.
        public mutating func ownerFailed(_ owner: Node, isReachable: (Node) -> Bool = { _ in true }) -> [Action] {
            guard self.pending.remove(owner) != nil else { return [] }
            var actions: [Action] = []
            if let action = self.handOff(owner, isReachable: isReachable) { actions.append(action) }
            if self.phase == .waiting && self.acknowledged.count + self.pending.count < self.quorum {
                self.phase = .finished
                actions.append(
                    .fail(Failure(.write, reason: .notEnoughOwners, responded: self.acknowledged.count, required: self.quorum))
                )
            }
            return actions
        }

        /// A handoff node stored its hinted copy.
        public mutating func handoffAcknowledged(_ node: Node) -> [Action] {
            self.standIns[node] = nil
            return []
        }

        /// A handoff node failed; the hinted copy moves on to the next handoff node.
        public mutating func handoffFailed(_ node: Node, isReachable: (Node) -> Bool = { _ in true }) -> [Action] {
            guard let owner = self.standIns.removeValue(forKey: node) else { return [] }
            return self.handOff(owner, isReachable: isReachable).map { [$0] } ?? []
        }

        /// The shell's deadline for this write passed.
        public mutating func deadlinePassed() -> [Action] {
            guard self.phase == .waiting else { return [] }
            self.phase = .finished
            return [.fail(Failure(.write, reason: .timedOut, responded: self.acknowledged.count, required: self.quorum))]
        }

        /// Whether `.succeed` or `.fail` was emitted.
        public var isFinished: Bool { self.phase == .finished }

        private mutating func handOff(_ owner: Node, isReachable: (Node) -> Bool) -> Action? {
            while self.nextHandoff < self.handoffs.count {
                let candidate = self.handoffs[self.nextHandoff]
                self.nextHandoff += 1
                if isReachable(candidate) {
                    self.standIns[candidate] = owner
                    return .send(to: candidate, hintFor: owner)
                }
            }
            return nil
        }
    }
}
