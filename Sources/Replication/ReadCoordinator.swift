extension Replication {
    /// Coordinates one quorum read of a metadata record: asks every reachable owner, answers with the
    /// newest value once `r` owners answered, and asks for the stale owners to be repaired.
    ///
    /// A value of `nil` means "this owner has no record". Deletions are values too (tombstones), so
    /// a newer tombstone beats an older object. Repairs are emitted for every owner that answered with
    /// something older than the newest value, including answers that arrive after the result.
    public struct ReadCoordinator<Node: Hashable & Sendable, Value: Sendable & Equatable>: Sendable {
        /// What the shell must do.
        public enum Action: Equatable, Sendable {
            /// Ask `node` for its copy.
            case query(Node)
            /// `r` owners answered: this is the newest value among them (nil: no owner has the key).
            case succeed(Value?)
            /// Write `value` to `node`, which answered with an older copy or none.
            case repair(Node, with: Value)
            /// `r` owners could not answer.
            case fail(Failure)
        }

        /// Why a read failed.
        public typealias Failure = QuorumFailure

        private enum Phase: Sendable { case idle, waiting, finished }

        private let owners: [Node]
        private let quorum: Int
        private let isNewer: @Sendable (Value, Value) -> Bool
        private var phase = Phase.idle
        private var pending: Set<Node> = []
        private var answers: [(node: Node, value: Value?)] = []
        private var result: Value?
        private var repaired: Set<Node> = []

        /// - Parameters:
        ///   - owners: the partition's owners.
        ///   - readQuorum: `r`, at most `owners.count`.
        ///   - isNewer: whether the first value is newer than the second (by hybrid timestamp; ties
        ///     MUST be broken deterministically so that every coordinator picks the same winner).
        public init(owners: [Node], readQuorum: Int, isNewer: @escaping @Sendable (Value, Value) -> Bool) {
            precondition(readQuorum >= 1 && readQuorum <= owners.count, "the read quorum must be 1…owners")
            self.owners = owners
            self.quorum = readQuorum
            self.isNewer = isNewer
        }

        /// Starts the read: queries every reachable owner.
        public mutating func start(isReachable: (Node) -> Bool) -> [Action] {
            precondition(self.phase == .idle, "start() MUST be called once")
            let reachable = self.owners.filter(isReachable)
            guard reachable.count >= self.quorum else {
                self.phase = .finished
                return [.fail(Failure(.read, reason: .notEnoughOwners, responded: 0, required: self.quorum))]
            }
            self.phase = .waiting
            self.pending = Set(reachable)
            return reachable.map { .query($0) }
        }

        /// An owner answered with its copy (nil: it has none).
        public mutating func ownerAnswered(_ owner: Node, value: Value?) -> [Action] {
            guard self.pending.remove(owner) != nil else { return [] }
            self.answers.append((owner, value))
            switch self.phase {
            case .waiting where self.answers.count >= self.quorum:
                self.phase = .finished
                self.result = self.newest(self.answers.map(\.value))
                var actions: [Action] = [.succeed(self.result)]
                for answer in self.answers { actions += self.repairIfStale(answer.node, answer.value) }
                return actions
            case .finished:
                return self.repairIfStale(owner, value)
            default:
                return []
            }
        }

        /// An owner could not answer.
        public mutating func ownerFailed(_ owner: Node) -> [Action] {
            guard self.pending.remove(owner) != nil else { return [] }
            if self.phase == .waiting && self.answers.count + self.pending.count < self.quorum {
                self.phase = .finished
                return [.fail(Failure(.read, reason: .notEnoughOwners, responded: self.answers.count, required: self.quorum))]
            }
            return []
        }

        /// The shell's deadline for this read passed.
        public mutating func deadlinePassed() -> [Action] {
            guard self.phase == .waiting else { return [] }
            self.phase = .finished
            return [.fail(Failure(.read, reason: .timedOut, responded: self.answers.count, required: self.quorum))]
        }

        private func newest(_ values: [Value?]) -> Value? {
            var best: Value?
            for case let value? in values {
                if let current = best {
                    if self.isNewer(value, current) { best = value }
                } else {
                    best = value
                }
            }
            return best
        }

        private mutating func repairIfStale(_ node: Node, _ value: Value?) -> [Action] {
            guard let result = self.result, !self.repaired.contains(node) else { return [] }
            if let value, value == result || !self.isNewer(result, value) { return [] }
            self.repaired.insert(node)
            return [.repair(node, with: result)]
        }
    }
}
