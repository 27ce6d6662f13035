// The gossip shell: it drives a `Gossip.Instance` (the pure SWIM + Lifeguard state machine) with a UDP
// socket, timers and a TCP push-pull listener on the same port number. See docs/gossip.md, "What the shell
// must do".

public import Gossip
import Hashing

/// What a ``MembershipService`` needs to run one member of a cluster.
///
/// The `description` never shows ``secret``.
public struct MembershipConfiguration: Sendable, CustomStringConvertible, CustomReflectable {
    /// The node's stable id (its configured name). MUST be at most 255 bytes of UTF-8.
    public var nodeID: String

    /// This process's unique id. SHOULD grow across restarts of one node (for example the start time in
    /// microseconds): when two processes claim one id, the higher `uid` wins.
    public var uid: UInt64

    /// `"host:port"` (or `"[v6]:port"`) on which the UDP gossip socket and the TCP push-pull listener are bound;
    /// both use the same port number. Port 0 picks a free port (see ``MembershipService/bound``).
    public var bindAddress: String

    /// Addresses, zone and capacity announced to the other members.
    ///
    /// When `gossipAddress` is empty or ends in `:0`, the shell advertises the bound port (with the host of
    /// `gossipAddress`, or else of ``bindAddress``). Peers push-pull with a member by looking up its
    /// `rpcAddress` and connecting to its `gossipAddress`, so `rpcAddress` SHOULD be set and unique.
    public var metadata: Gossip.Metadata

    /// Gossip addresses (`"host:port"`) of existing members to join through; empty for the first node.
    public var seeds: [String]

    /// The cluster secret: it keys the HMAC-SHA256 tags of gossip packets and push-pull frames. Members with
    /// different secrets cannot talk to each other.
    public var secret: [UInt8]

    /// Protocol tunables. `authenticationTagLength` MUST be 32 (HMAC-SHA256). Default `.lan`.
    public var gossip: Gossip.Configuration

    /// The longest a push-pull may take, connecting included; slower exchanges are abandoned and counted.
    /// Default 5 s.
    public var pushPullTimeout: Duration = .seconds(5)

    /// The largest push-pull payload sent or accepted, in bytes (the full member list and cluster state).
    /// Default 16 MiB.
    public var maxPushPullPayloadBytes: Int = 16 << 20 {
        willSet { precondition(newValue > 0 && newValue <= Int(UInt32.max), "maxPushPullPayloadBytes MUST be > 0") }
    }

    /// While no other member is known (every seed failed), the join is retried at this interval; `nil` joins
    /// once. Default 5 s.
    public var joinRetryInterval: Duration? = .seconds(5)

    /// Creates a configuration.
    /// - Parameters:
    ///   - nodeID: the node's stable id.
    ///   - uid: this process's id; SHOULD grow across restarts.
    ///   - bindAddress: `"host:port"` for the UDP socket and the TCP listener.
    ///   - metadata: what to announce; an empty `gossipAddress` advertises the bound address.
    ///   - seeds: gossip addresses of members to join through; empty for the first node.
    ///   - secret: the cluster secret.
    ///   - gossip: protocol tunables.
    public init(
        nodeID: String, uid: UInt64, bindAddress: String, metadata: Gossip.Metadata, seeds: [String] = [],
        secret: [UInt8], gossip: Gossip.Configuration = .lan
    ) {
        self.nodeID = nodeID
        self.uid = uid
        self.bindAddress = bindAddress
        self.metadata = metadata
        self.seeds = seeds
        self.secret = secret
        self.gossip = gossip
    }

    public var description: String {
        "MembershipConfiguration(nodeID: \(nodeID), uid: \(uid), bindAddress: \(bindAddress), "
            + "metadata: \(metadata), seeds: \(seeds), secret: <\(secret.count) bytes redacted>)"
    }

    public var customMirror: Mirror {
        Mirror(
            self,
            children: [
                "nodeID": nodeID, "uid": uid, "bindAddress": bindAddress, "metadata": metadata, "seeds": seeds,
                "secret": "<redacted>", "gossip": gossip,
            ])
    }
}

/// A change the ``MembershipService`` reports to its observers.
public enum MembershipEvent: Sendable, Hashable {
    /// A member appeared, changed state or metadata, or was replaced by a new process of the same node.
    case memberChanged(Gossip.Member)
    /// A replicated state entry (for example the layout) changed.
    case stateUpdated(Gossip.StateEntry)
}

/// Why ``MembershipService/run()`` or ``MembershipService/waitUntilBound()`` failed. Safe to log.
public struct MembershipError: Error, Hashable, Sendable, CustomStringConvertible {
    private enum Code: Hashable, Sendable {
        case alreadyStarted, invalidBindAddress, notRunning
    }
    private let code: Code

    /// `run()` was called a second time; a service runs once.
    public static let alreadyStarted = MembershipError(code: .alreadyStarted)
    /// `bindAddress` is not `"host:port"`.
    public static let invalidBindAddress = MembershipError(code: .invalidBindAddress)
    /// The service stopped (or failed to bind) before it was bound.
    public static let notRunning = MembershipError(code: .notRunning)

    /// A short, bounded label.
    public var shortDescription: String {
        switch code {
        case .alreadyStarted: "already_started"
        case .invalidBindAddress: "invalid_bind_address"
        case .notRunning: "not_running"
        }
    }

    public var description: String { "membership error: \(shortDescription)" }
}

extension Gossip.Authenticator {
    /// The authenticator a ``MembershipService`` uses: a 32-byte HMAC-SHA256 tag keyed by the cluster secret.
    /// - Parameter secret: the cluster secret.
    public static func hmacSHA256(secret: [UInt8]) -> Gossip.Authenticator {
        Gossip.Authenticator(tagLength: 32) { bytes in Digests.hmacSHA256(key: secret, message: bytes) }
    }
}
