/// Pure pieces of replication: quorum policy and the write and read coordinators.
///
/// Terms: every partition has `n` owners (its replicas, in preference order) and further nodes in a
/// fixed handoff order. A write succeeds when `w` owners acknowledged it; a read when `r` owners
/// answered. Only owners count toward a quorum (a *strict* quorum, as in Garage): a copy written to a
/// handoff node for an unreachable owner carries a hint and adds durability, but never turns a write
/// that `w` owners did not take into a success. With `r + w > n`, every read quorum overlaps every
/// write quorum, so a read sees the newest acknowledged write.
///
/// The coordinators are state machines: events in, actions out, no I/O, no clock. The shell sends the
/// messages the actions ask for, feeds the answers back, and feeds a deadline event when its timer
/// fires.
public enum Replication {}

extension Replication {
    /// N, W and R.
    public struct QuorumPolicy: Sendable, Hashable, CustomStringConvertible {
        /// Owners of each partition.
        public var replicas: Int
        /// Owners that must acknowledge a write.
        public var writeQuorum: Int
        /// Owners that must answer a read.
        public var readQuorum: Int

        /// - Throws: ``PolicyError`` unless `1 ≤ w ≤ n` and `1 ≤ r ≤ n`.
        public init(replicas: Int = 3, writeQuorum: Int = 2, readQuorum: Int = 2) throws(PolicyError) {
            guard replicas >= 1 else { throw PolicyError("the replication factor must be at least 1") }
            guard (1...replicas).contains(writeQuorum) else {
                throw PolicyError("the write quorum must be between 1 and the replication factor \(replicas)")
            }
            guard (1...replicas).contains(readQuorum) else {
                throw PolicyError("the read quorum must be between 1 and the replication factor \(replicas)")
            }
            self.replicas = replicas
            self.writeQuorum = writeQuorum
            self.readQuorum = readQuorum
        }

        /// Whether every read quorum overlaps every write quorum (`r + w > n`): reads then see the
        /// newest acknowledged write.
        public var readsSeeLatestWrite: Bool { self.readQuorum + self.writeQuorum > self.replicas }

        public var description: String { "N=\(self.replicas) W=\(self.writeQuorum) R=\(self.readQuorum)" }
    }

    /// An invalid quorum policy.
    public struct PolicyError: Error, Sendable, Equatable, CustomStringConvertible {
        public var description: String

        init(_ description: String) { self.description = description }
    }
}

extension Replication {
    /// Why a quorum write or read failed, with the counts for the error message.
    public struct QuorumFailure: Equatable, Sendable, CustomStringConvertible {
        public enum Reason: Sendable, Equatable {
            /// Too few owners were reachable, or too many of them failed.
            case notEnoughOwners
            /// The deadline passed before the quorum was reached.
            case timedOut
        }

        public enum Operation: Sendable, Equatable {
            case write
            case read
        }

        public var operation: Operation
        public var reason: Reason
        /// Owners that acknowledged (write) or answered (read).
        public var responded: Int
        /// The quorum.
        public var required: Int

        public init(_ operation: Operation, reason: Reason, responded: Int, required: Int) {
            self.operation = operation
            self.reason = reason
            self.responded = responded
            self.required = required
        }

        public var description: String {
            let verb = self.operation == .write ? "take the write" : "answer"
            switch self.reason {
            case .notEnoughOwners:
                return "only \(self.responded) of the \(self.required) required replicas could \(verb)"
            case .timedOut:
                return "\(self.responded) of the \(self.required) required replicas could \(verb) before the deadline"
            }
        }
    }
}
