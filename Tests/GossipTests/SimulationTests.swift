import Gossip
import Testing

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// `GOSSIP_SIM_FULL=1` runs the 50- and 200-member simulations behind docs/gossip.md.
let fullSimulation: Bool = getenv("GOSSIP_SIM_FULL").map { String(cString: $0) == "1" } ?? false

/// Scenarios measured on the simulated network; every figure is simulated seconds.
enum Scenario {
    static func warmed(
        nodes: Int, seed: UInt64, configuration: Gossip.Configuration = .lan,
        encode: Bool = false
    ) -> Simulation? {
        var sim = Simulation(.init(nodes: nodes, seed: seed, configuration: configuration, encodePackets: encode))
        sim.startAll()
        guard sim.run(until: { $0.converged }, limit: .seconds(120)) != nil else { return nil }
        sim.run(until: sim.now + .seconds(10))
        return sim
    }

    struct Detection { var first: Double; var all: Double }

    /// A member crashes: time until the first, and until the last, live member holds it dead.
    static func detection(
        nodes: Int, seed: UInt64, configuration: Gossip.Configuration = .lan,
        encode: Bool = false
    ) -> Detection? {
        guard var sim = warmed(nodes: nodes, seed: seed, configuration: configuration, encode: encode) else {
            return nil
        }
        let victim = Int(seed % UInt64(nodes))
        let start = sim.now
        sim.crash(victim)
        var first: Double?
        let end = start + .seconds(300)
        while sim.now < end {
            let count = sim.observers(of: victim, in: [.dead])
            if count > 0, first == nil { first = (sim.now - start).inSeconds }
            if count == nodes - 1 { return Detection(first: first!, all: (sim.now - start).inSeconds) }
            sim.run(until: sim.now + .milliseconds(50))
        }
        return nil
    }

    /// Node 0 publishes a state entry of `size` bytes: time until every member holds it.
    static func stateSpread(nodes: Int, seed: UInt64, size: Int, configuration: Gossip.Configuration = .lan) -> Double?
    {
        guard var sim = warmed(nodes: nodes, seed: seed, configuration: configuration) else { return nil }
        let start = sim.now
        sim.publish(node: 0, key: "layout", version: 1, bytes: (0..<size).map { UInt8(truncatingIfNeeded: $0) })
        let done = sim.run(until: { s in s.stateVersions.allSatisfy { $0["layout"] == 1 } }, limit: .seconds(300))
        return done.map { ($0 - start).inSeconds }
    }

    struct FalsePositives { var declarations: Int; var healthyDeclarations: Int; var members: Int; var packets: Int }

    /// No member fails; packets are lost with probability `loss` (and optionally some members are slow):
    /// how often is a healthy member declared dead over `duration`?
    static func falsePositives(
        nodes: Int, seed: UInt64, loss: Double, lifeguard: Bool, duration: Duration,
        slowMembers: Int = 0, slowDelay: Duration = .zero
    ) -> FalsePositives? {
        var configuration = Gossip.Configuration.lan
        if !lifeguard { configuration.lifeguard = .disabled }
        guard var sim = warmed(nodes: nodes, seed: seed, configuration: configuration) else { return nil }
        sim.falseDeclarations = 0
        sim.healthyFalseDeclarations = 0
        sim.falselyDeclared = []
        sim.settings.loss = loss
        for i in 0..<slowMembers { sim.nodeDelay[i] = slowDelay }
        let sent = sim.packetsSent
        sim.run(until: sim.now + duration)
        // Slow members are healthy too, but Lifeguard's claim is about the others: count those.
        let members = sim.falselyDeclared.filter { $0 >= slowMembers }.count
        return FalsePositives(
            declarations: sim.falseDeclarations, healthyDeclarations: sim.healthyFalseDeclarations,
            members: members, packets: sim.packetsSent - sent)
    }

    struct Partition { var split: Double; var heal: Double }

    /// The cluster splits in two halves until each side holds the other dead, then heals: time until
    /// every member sees every other alive again.
    static func partitionHeal(nodes: Int, seed: UInt64, configuration: Gossip.Configuration = .lan) -> Partition? {
        guard var sim = warmed(nodes: nodes, seed: seed, configuration: configuration) else { return nil }
        let half = nodes / 2
        let start = sim.now
        sim.partition { $0 < half ? 0 : 1 }
        let splitDone = sim.run(
            until: { s in
                (0..<nodes).allSatisfy { o in
                    (0..<nodes).allSatisfy { (o < half) == ($0 < half) || s.view[o][$0] == .dead }
                }
            }, limit: .seconds(600), step: .milliseconds(500))
        guard let splitDone else { return nil }
        sim.heal()
        let healStart = sim.now
        guard let healed = sim.run(until: { $0.converged }, limit: .seconds(900), step: .milliseconds(100)) else {
            return nil
        }
        return Partition(split: (splitDone - start).inSeconds, heal: (healed - healStart).inSeconds)
    }
}

func format(_ x: Double) -> String {
    let scaled = (x * 10).rounded() / 10
    return "\(scaled)"
}

@Suite(.serialized) struct SimulationTests {
    @Test func sameSeedGivesTheSameRun() {
        var a = Simulation(.init(nodes: 8, seed: 5, loss: 0.1))
        var b = Simulation(.init(nodes: 8, seed: 5, loss: 0.1))
        a.startAll()
        b.startAll()
        a.run(until: .seconds(20))
        b.run(until: .seconds(20))
        #expect(a.packetsSent == b.packetsSent && a.packetsDropped == b.packetsDropped)
        #expect(a.instances.map(\.metrics) == b.instances.map(\.metrics))
    }

    @Test func tenMembersDetectACrashThroughTheRealCodec() throws {
        let d = try #require(Scenario.detection(nodes: 10, seed: 1, encode: true))
        print("GOSSIP-SIM detect n=10 seed=1 first=\(format(d.first))s all=\(format(d.all))s")
        #expect(d.all < 30)
        var sim = try #require(Scenario.warmed(nodes: 10, seed: 2, encode: true))
        sim.run(until: sim.now + .seconds(10))
        #expect(sim.maxPacketSize <= 1400)
    }

    @Test func tenMembersSpreadStateInlineAndByPushPull() throws {
        let small = try #require(Scenario.stateSpread(nodes: 10, seed: 1, size: 100))
        let large = try #require(Scenario.stateSpread(nodes: 10, seed: 1, size: 64 * 1024))
        print("GOSSIP-SIM state n=10 inline=\(format(small))s pushpull=\(format(large))s")
        #expect(small < 5 && large < 5)
    }

    @Test func tenMembersHealAfterAPartition() throws {
        let p = try #require(Scenario.partitionHeal(nodes: 10, seed: 1))
        print("GOSSIP-SIM partition n=10 split=\(format(p.split))s heal=\(format(p.heal))s")
        #expect(p.heal < 120)
    }

    @Test func tenMembersUnderFivePercentLoss() throws {
        let fp = try #require(
            Scenario.falsePositives(
                nodes: 10, seed: 1, loss: 0.05, lifeguard: true,
                duration: .seconds(120)))
        print("GOSSIP-SIM fp n=10 loss=5% lifeguard declarations=\(fp.declarations) members=\(fp.members)")
        #expect(fp.declarations <= 1)
    }

    @Test func fiftyMembersDetectACrash() throws {
        let d = try #require(Scenario.detection(nodes: 50, seed: 1))
        print("GOSSIP-SIM detect n=50 seed=1 first=\(format(d.first))s all=\(format(d.all))s")
        #expect(d.all < 60)
    }

    // The figures of docs/gossip.md, produced with
    // `GOSSIP_SIM_FULL=1 swift test --skip-build --filter GossipTests.SimulationTests/full`.
    // Lines start with GOSSIP-SIM and go to stderr unbuffered.

    static let sizes = [10, 50, 200]
    static let seeds: [UInt64] = [1, 2, 3]

    @Test(.enabled(if: fullSimulation)) func fullDetection() throws {
        for n in Self.sizes {
            for seed in Self.seeds {
                let d = try #require(Scenario.detection(nodes: n, seed: seed))
                report("detect n=\(n) seed=\(seed) first=\(format(d.first))s all=\(format(d.all))s")
            }
        }
    }

    @Test(.enabled(if: fullSimulation)) func fullStateSpread() throws {
        for n in Self.sizes {
            for seed in Self.seeds {
                let inline = try #require(Scenario.stateSpread(nodes: n, seed: seed, size: 200))
                let large = try #require(Scenario.stateSpread(nodes: n, seed: seed, size: 64 * 1024))
                report("state n=\(n) seed=\(seed) inline200B=\(format(inline))s pushpull64KiB=\(format(large))s")
            }
        }
    }

    @Test(.enabled(if: fullSimulation)) func fullPartition() throws {
        for n in Self.sizes {
            for seed in Self.seeds {
                let p = try #require(Scenario.partitionHeal(nodes: n, seed: seed))
                report("partition n=\(n) seed=\(seed) split=\(format(p.split))s heal=\(format(p.heal))s")
            }
        }
    }

    @Test(.enabled(if: fullSimulation)) func fullFalsePositives() throws {
        for n in Self.sizes {
            let seeds = n >= 200 ? [UInt64(1)] : Self.seeds
            let duration: Duration = n >= 200 ? .seconds(60) : .seconds(300)
            for loss in [0.05, 0.20] {
                for lifeguard in [false, true] {
                    var declarations = 0
                    var members = 0
                    var packets = 0
                    for seed in seeds {
                        let fp = try #require(
                            Scenario.falsePositives(
                                nodes: n, seed: seed, loss: loss,
                                lifeguard: lifeguard, duration: duration))
                        declarations += fp.declarations
                        members += fp.members
                        packets += fp.packets
                    }
                    report(
                        "fp n=\(n) loss=\(Int(loss * 100))% lifeguard=\(lifeguard) seeds=\(seeds.count) "
                            + "duration=\(duration) declarations=\(declarations) members=\(members) packets=\(packets)"
                    )
                }
            }
        }
    }

    @Test(.enabled(if: fullSimulation)) func fullSlowMembers() throws {
        for n in [10, 50] {
            for lifeguard in [false, true] {
                var declarations = 0
                var healthy = 0
                var members = 0
                for seed in Self.seeds {
                    let fp = try #require(
                        Scenario.falsePositives(
                            nodes: n, seed: seed, loss: 0.01, lifeguard: lifeguard, duration: .seconds(300),
                            slowMembers: max(1, n / 10), slowDelay: .milliseconds(800)))
                    declarations += fp.declarations
                    healthy += fp.healthyDeclarations
                    members += fp.members
                }
                report(
                    "slow n=\(n) slow=\(max(1, n / 10)) delay=800ms loss=1% lifeguard=\(lifeguard) "
                        + "seeds=\(Self.seeds.count) duration=300s declarations=\(declarations) "
                        + "of-healthy=\(healthy) healthy-members=\(members)"
                )
            }
        }
    }
}

/// Writes one figure line to stderr (unbuffered, so long runs show progress).
func report(_ line: String) {
    let text = Array("GOSSIP-SIM \(line)\n".utf8)
    _ = text.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
}
