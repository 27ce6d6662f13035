extension Gossip {
    /// One gossip packet before encoding: who sent it, what it asks, and the piggybacked updates.
    public struct Message: Hashable, Sendable {
        /// The sending process.
        public var sender: NodeRef
        /// The request or reply this packet carries.
        public var kind: Kind
        /// Piggybacked membership and state updates, most urgent first.
        public var updates: [Update]

        /// Creates a message.
        public init(sender: NodeRef, kind: Kind, updates: [Update] = []) {
            self.sender = sender
            self.kind = kind
            self.updates = updates
        }

        /// What a packet asks for. The wire values (``typeByte``) never change; new kinds are appended.
        public enum Kind: Hashable, Sendable {
            /// "Are you alive?" to `target` (SWIM §4.1). The receiver MUST be `target` to answer.
            case ping(sequence: SequenceNumber, target: NodeRef)
            /// "Please ping `target` at `targetAddress` for me" (SWIM §4.3).
            case pingRequest(sequence: SequenceNumber, target: NodeRef, targetAddress: String)
            /// The answer to a ping, or a relayed answer to a ping request.
            case ack(sequence: SequenceNumber)
            /// A relay's "the target did not answer me" (Lifeguard IV.A).
            case nack(sequence: SequenceNumber)
            /// Only piggybacked updates (a gossip round).
            case gossip

            /// The wire type byte. APPEND ONLY: these values are part of the protocol.
            public var typeByte: UInt8 {
                switch self {
                case .ping: 1
                case .pingRequest: 2
                case .ack: 3
                case .nack: 4
                case .gossip: 5
                }
            }
        }
    }

    /// A piggybacked update: one fact about a member or about the cluster state.
    public enum Update: Hashable, Sendable {
        /// `member` is alive at its incarnation, with its metadata.
        case alive(Member)
        /// `member` is suspected at `incarnation` by `from`.
        case suspect(member: NodeRef, incarnation: Incarnation, from: NodeID)
        /// `member` was declared dead at `incarnation` by `from`.
        case dead(member: NodeRef, incarnation: Incarnation, from: NodeID)
        /// `member` left gracefully at `incarnation`.
        case left(member: NodeRef, incarnation: Incarnation)
        /// The sender holds `key` at `version` whose bytes have `digest`; fetch it by push-pull.
        case stateDigest(key: String, version: UInt64, digest: UInt64)
        /// A small state entry carried inline.
        case state(StateEntry)

        /// The wire type byte. APPEND ONLY: these values are part of the protocol.
        public var typeByte: UInt8 {
            switch self {
            case .alive: 1
            case .suspect: 2
            case .dead: 3
            case .left: 4
            case .stateDigest: 5
            case .state: 6
            }
        }

        /// What the update is about; a newer update about the same subject replaces an older one in the
        /// dissemination queue.
        var subject: Subject {
            switch self {
            case .alive(let m): .member(m.id)
            case .suspect(let m, _, _), .dead(let m, _, _), .left(let m, _): .member(m.id)
            case .stateDigest(let key, _, _): .state(key)
            case .state(let e): .state(e.key)
            }
        }

        enum Subject: Hashable {
            case member(NodeID)
            case state(String)
        }
    }

    /// A timer the instance asks the shell to run. Timers are never cancelled: a stale one is ignored when
    /// it fires.
    public enum TimerID: Hashable, Sendable {
        /// The periodic driver: call ``Gossip/Instance/tick(now:)`` (or `timeoutFired(.tick, …)`).
        case tick
        /// A direct ping's ack is overdue: time for indirect probes.
        case probeTimeout(sequence: SequenceNumber)
        /// The protocol period of a probe ended: suspect the target if nothing answered.
        case probePeriodEnd(sequence: SequenceNumber)
        /// A ping sent on behalf of another member got no ack: send that member a nack.
        case relayTimeout(sequence: SequenceNumber)
        /// A suspicion may have expired.
        case suspicion(NodeRef)
    }

    /// A command for the shell. The shell MUST execute actions in order.
    public enum Action: Hashable, Sendable {
        /// Encode `message` (``Gossip/Codec/encode(_:)``) and send it as one UDP datagram to `address`.
        case send(Message, to: String)
        /// Call ``Gossip/Instance/timeoutFired(_:now:)`` with `id` at or after `at`.
        case scheduleTimeout(TimerID, at: Time)
        /// A member appeared, changed state, changed metadata or was replaced by a new process.
        case memberChanged(Member)
        /// Open a TCP push-pull with the RPC address `with`: send our ``Gossip/Instance/pushPullPayload()``,
        /// receive theirs and pass it to ``Gossip/Instance/mergePushPull(_:now:)``.
        case requestPushPull(with: String)
        /// The replicated state entry `key` changed locally.
        case stateUpdated(key: String, version: UInt64, bytes: [UInt8])
    }
}
