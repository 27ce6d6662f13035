import Gossip
import Testing

@Suite struct FormulaTests {
    @Test(arguments: [(1, 4), (2, 4), (9, 4), (10, 8), (99, 8), (100, 12), (200, 12), (1000, 16)])
    func retransmitLimitGrowsWithLog10(n: Int, limit: Int) {
        #expect(Gossip.Formula.retransmitLimit(multiplier: 4, memberCount: n) == limit)
    }

    @Test(arguments: [(1, 4.0), (5, 4.0), (10, 4.0), (50, 6.796), (100, 8.0), (200, 9.204)])
    func minimumSuspicionTimeout(n: Int, seconds: Double) {
        let t = Gossip.Formula.minSuspicionTimeout(multiplier: 4, memberCount: n, probeInterval: .seconds(1))
        #expect(abs(Double(t.components.seconds) + Double(t.components.attoseconds) / 1e18 - seconds) < 0.001)
    }

    @Test func suspicionTimeoutShrinksWithConfirmations() {
        let f = { (c: Int) in
            Gossip.Formula.suspicionTimeout(min: .seconds(4), max: .seconds(24), confirmations: c, expected: 3)
        }
        #expect(f(0) == .seconds(24))
        #expect(f(1) == .seconds(14))  // 24 − 20 · ln 2 / ln 4
        #expect(f(3) == .seconds(4))
        #expect(f(9) == .seconds(4))
        #expect(
            Gossip.Formula.suspicionTimeout(min: .seconds(4), max: .seconds(24), confirmations: 0, expected: 0)
                == .seconds(4))
    }

    @Test(arguments: [1.0, 2.0, 2.718281828459045, 10.0, 0.001, 1e9, 123.456])
    func naturalLogIsAccurate(x: Double) {
        let expected: [Double: Double] = [
            1: 0, 2: 0.6931471805599453, 2.718281828459045: 1, 10: 2.302585092994046,
            0.001: -6.907755278982137, 1e9: 20.72326583694641, 123.456: 4.815884817283264,
        ]
        #expect(abs(Gossip.Formula.naturalLog(x) - expected[x]!) < 1e-12)
    }

    @Test(arguments: [(10, 30), (32, 30), (33, 60), (64, 60), (65, 90), (200, 120)])
    func pushPullIntervalScalesAbove32Members(n: Int, seconds: Int64) {
        #expect(Gossip.Formula.pushPullInterval(.seconds(30), memberCount: n) == .seconds(seconds))
    }

    @Test func configurationPresetsAreValid() throws {
        try Gossip.Configuration.lan.validate()
        try Gossip.Configuration.wan.validate()
        try Gossip.Configuration.localTest.validate()
        var bad = Gossip.Configuration.lan
        bad.probeTimeout = .seconds(2)
        #expect(throws: Gossip.ConfigurationError.self) { try bad.validate() }
    }
}

@Suite struct StateTests {
    @Test func crdtOrderIsVersionThenBytes() {
        let e = { (v: UInt64, b: [UInt8]) in Gossip.StateEntry(key: "k", version: v, bytes: b) }
        #expect(e(2, [0]).supersedes(e(1, [9])))
        #expect(!e(1, [9]).supersedes(e(2, [0])))
        #expect(e(1, [2]).supersedes(e(1, [1])))
        #expect(e(1, [1, 0]).supersedes(e(1, [1])))
        #expect(!e(1, [1]).supersedes(e(1, [1])))
        #expect(!e(1, [1]).supersedes(e(1, [2])))
    }

    @Test func publishMergesAsACRDT() {
        var a = makeInstance("a")
        #expect(
            a.publishState(key: "layout", version: 2, bytes: [1, 2, 3], now: .zero)
                == [.stateUpdated(key: "layout", version: 2, bytes: [1, 2, 3])])
        #expect(a.publishState(key: "layout", version: 1, bytes: [9], now: .zero) == [])
        #expect(a.publishState(key: "layout", version: 2, bytes: [1, 2, 0], now: .zero) == [])
        #expect(
            a.publishState(key: "layout", version: 2, bytes: [1, 2, 4], now: .zero)
                == [.stateUpdated(key: "layout", version: 2, bytes: [1, 2, 4])])
        #expect(a.state("layout")?.bytes == [1, 2, 4])
    }

    @Test func smallStateTravelsInline() {
        var a = makeInstance("a", peers: ["b"])
        var b = makeInstance("b", peers: ["a"])
        _ = a.publishState(key: "flags", version: 1, bytes: [7], now: .zero)
        let reply = a.receive(
            Gossip.Message(sender: ref("b"), kind: .ping(sequence: 1, target: ref("a"))), from: "b:7946",
            now: .seconds(0.1))
        #expect(reply.sends[0].message.updates.first == .state(Gossip.StateEntry(key: "flags", version: 1, bytes: [7])))
        let heard = b.receive(reply.sends[0].message, from: "a:7946", now: .seconds(0.2))
        #expect(heard.contains(.stateUpdated(key: "flags", version: 1, bytes: [7])))
    }

    @Test func largeStateTravelsAsADigestAndIsFetchedByPushPull() {
        var a = makeInstance("a", peers: ["b"])
        var b = makeInstance("b", peers: ["a"])
        let layout = (0..<5000).map { UInt8(truncatingIfNeeded: $0) }
        _ = a.publishState(key: "layout", version: 4, bytes: layout, now: .zero)
        let reply = a.receive(
            Gossip.Message(sender: ref("b"), kind: .ping(sequence: 1, target: ref("a"))), from: "b:7946",
            now: .seconds(0.1))
        let digest = Gossip.digest(layout)
        #expect(reply.sends[0].message.updates.first == .stateDigest(key: "layout", version: 4, digest: digest))
        let heard = b.receive(reply.sends[0].message, from: "a:7946", now: .seconds(0.2))
        #expect(heard.pushPulls == ["a:7947"])
        // The same announcement again within the back-off asks nothing more.
        #expect(b.receive(reply.sends[0].message, from: "a:7946", now: .seconds(0.3)).pushPulls == [])
        let merged = b.mergePushPull(a.pushPullPayload(), now: .seconds(0.4))
        #expect(merged.contains(.stateUpdated(key: "layout", version: 4, bytes: layout)))
        #expect(b.state("layout")?.version == 4)
        // Now b gossips the digest on, so others can fetch it from b.
        let bReply = b.receive(
            Gossip.Message(sender: ref("a"), kind: .ping(sequence: 2, target: ref("b"))),
            from: "a:7946", now: .seconds(0.5))
        #expect(bReply.sends[0].message.updates.contains(.stateDigest(key: "layout", version: 4, digest: digest)))
        #expect(b.metrics.stateFetchesRequested == 1)
    }
}
