import Gossip
import NIOCore

/// A tiny seeded generator (SplitMix64) so that every run is reproducible.
struct SplitMix64: RandomNumberGenerator, Sendable {
    var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func nextDouble() -> Double { Double(next() >> 11) * 0x1.0p-53 }
}

extension Gossip.Time {
    static func seconds(_ s: Double) -> Gossip.Time { Gossip.Time(nanoseconds: Int64((s * 1e9).rounded())) }
    static func ms(_ ms: Int64) -> Gossip.Time { Gossip.Time(nanoseconds: ms * 1_000_000) }
    var inSeconds: Double { Double(nanoseconds) / 1e9 }
}

extension Duration {
    var inSeconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

extension Gossip.Configuration {
    /// Probing only (no gossip rounds, no periodic push-pull, no tag), so event scripts see single packets.
    static var script: Gossip.Configuration {
        var c = Gossip.Configuration.lan
        c.gossipInterval = nil
        c.pushPullInterval = nil
        c.authenticationTagLength = 0
        return c
    }
}

func metadata(_ name: String) -> Gossip.Metadata {
    Gossip.Metadata(
        gossipAddress: "\(name):7946", rpcAddress: "\(name):7947", s3Address: "\(name):9000", zone: "z1",
        capacity: 1 << 40)
}

func member(
    _ name: String, uid: UInt64 = 1, incarnation: Gossip.Incarnation = 0,
    state: Gossip.MemberState = .alive
) -> Gossip.Member {
    Gossip.Member(id: Gossip.NodeID(name), uid: uid, incarnation: incarnation, state: state, metadata: metadata(name))
}

func ref(_ name: String, uid: UInt64 = 1) -> Gossip.NodeRef { Gossip.NodeRef(id: Gossip.NodeID(name), uid: uid) }

/// A started instance named `name` (uid 1) that already knows `peers` (all alive at incarnation 0).
func makeInstance(
    _ name: String, peers: [String] = [], configuration: Gossip.Configuration = .script,
    seed: UInt64 = 7, now: Gossip.Time = .zero
) -> Gossip.Instance {
    var instance = Gossip.Instance(
        id: Gossip.NodeID(name), uid: 1, metadata: metadata(name),
        configuration: configuration, random: SplitMix64(seed: seed))
    _ = instance.join(seeds: [], now: now)
    if !peers.isEmpty {
        let hello = Gossip.Message(sender: ref(peers[0]), kind: .gossip, updates: peers.map { .alive(member($0)) })
        _ = instance.receive(hello, from: "\(peers[0]):7946", now: now)
    }
    return instance
}

extension Array where Element == Gossip.Action {
    /// The packets among the actions.
    var sends: [(message: Gossip.Message, to: String)] {
        var result: [(message: Gossip.Message, to: String)] = []
        for action in self {
            if case .send(let m, let to) = action { result.append((m, to)) }
        }
        return result
    }

    /// The timers among the actions.
    var timers: [(id: Gossip.TimerID, at: Gossip.Time)] {
        var result: [(id: Gossip.TimerID, at: Gossip.Time)] = []
        for action in self {
            if case .scheduleTimeout(let id, let at) = action { result.append((id, at)) }
        }
        return result
    }

    /// The member changes among the actions.
    var changes: [Gossip.Member] {
        var result: [Gossip.Member] = []
        for action in self {
            if case .memberChanged(let m) = action { result.append(m) }
        }
        return result
    }

    /// The push-pull requests among the actions.
    var pushPulls: [String] {
        var result: [String] = []
        for action in self {
            if case .requestPushPull(let with) = action { result.append(with) }
        }
        return result
    }
}

/// A toy keyed tag for codec tests (not a MAC; the shell injects HMAC-SHA256 from `Hashing`).
func toyAuthenticator(key: UInt8) -> Gossip.Authenticator {
    Gossip.Authenticator(tagLength: 8) { bytes in
        var acc: [UInt8] = [key, 1, 2, 3, 4, 5, 6, 7]
        for (i, b) in bytes.enumerated() {
            acc[i % 8] = (acc[i % 8] &* 31) &+ b &+ key
        }
        return acc
    }
}
