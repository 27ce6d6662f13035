import Gossip
import NIOCore
import Testing

/// Event scripts: feed one event at a time and check every action that comes back.
@Suite struct InstanceTests {
    @Test func pingIsAnsweredWithAnAckCarryingPiggybackedUpdates() {
        var a = makeInstance("a", peers: ["b", "c", "d", "e"])
        let ping = Gossip.Message(sender: ref("b"), kind: .ping(sequence: 42, target: ref("a")))
        let actions = a.receive(ping, from: "b:7946", now: .ms(10))
        let expectedUpdates: [Gossip.Update] = ["e", "d", "c", "b"].map { .alive(member($0)) } + [.alive(member("a"))]
        #expect(
            actions == [
                .send(
                    Gossip.Message(sender: ref("a"), kind: .ack(sequence: 42), updates: expectedUpdates),
                    to: "b:7946")
            ])
    }

    @Test func pingForAnotherProcessIsNotAnswered() {
        var a = makeInstance("a", peers: ["b"])
        let ping = Gossip.Message(sender: ref("b"), kind: .ping(sequence: 1, target: ref("a", uid: 99)))
        #expect(a.receive(ping, from: "b:7946", now: .ms(10)) == [])
    }

    @Test func directProbeAckedRecordsRoundTripAndNoSuspicion() {
        var a = makeInstance("a", peers: ["b", "c"])
        let actions = a.tick(now: .seconds(1))
        let pings = actions.sends
        #expect(pings.count == 1)
        guard case .ping(let seq, let target) = pings[0].message.kind else {
            Issue.record("expected a ping")
            return
        }
        #expect(pings[0].to == "\(target.id):7946")
        #expect(actions.timers.map(\.id) == [.probeTimeout(sequence: seq), .probePeriodEnd(sequence: seq), .tick])
        #expect(actions.timers.map(\.at) == [.seconds(1.5), .seconds(2), .seconds(2)])
        let ack = Gossip.Message(sender: target, kind: .ack(sequence: seq))
        #expect(a.receive(ack, from: pings[0].to, now: .seconds(1.003)) == [])
        #expect(a.timeoutFired(.probeTimeout(sequence: seq), now: .seconds(1.5)) == [])
        #expect(a.timeoutFired(.probePeriodEnd(sequence: seq), now: .seconds(2)) == [])
        #expect(a.metrics.probesAcked == 1)
        #expect(a.metrics.probeRTTCount == 1)
        #expect(a.takeProbeRTTSamples() == [.milliseconds(3)])
        #expect(a.member(target.id)?.state == .alive)
    }

    @Test func silentTargetGetsIndirectProbesThenSuspicionThenDeath() {
        var a = makeInstance("a", peers: ["b", "c", "d", "e"])
        let probe = a.tick(now: .seconds(1)).sends[0]
        guard case .ping(let seq, let target) = probe.message.kind else {
            Issue.record("expected a ping")
            return
        }
        // Probe timeout: k = 3 ping requests, to every other member but the target.
        let indirect = a.timeoutFired(.probeTimeout(sequence: seq), now: .seconds(1.5))
        let relays = Set(indirect.sends.map(\.to))
        let others = Set(["b", "c", "d", "e"].filter { $0 != target.id.rawValue }.map { "\($0):7946" })
        #expect(relays == others)
        for send in indirect.sends {
            #expect(send.message.kind == .pingRequest(sequence: seq, target: target, targetAddress: probe.to))
        }
        #expect(a.metrics.indirectProbesSent == 3)

        // End of the protocol period without any ack: suspect, with Lifeguard's maximum timeout.
        // n = 5: min = 4 · max(1, log10 5) · 1 s = 4 s, max = 6 · 4 s = 24 s, expected confirmations 2.
        let end = a.timeoutFired(.probePeriodEnd(sequence: seq), now: .seconds(2))
        #expect(
            end == [
                .memberChanged(member(target.id.rawValue, state: .suspect)),
                .scheduleTimeout(.suspicion(target), at: .seconds(26)),
            ])
        #expect(a.metrics.suspicionsRaised == 1)
        // No nacks came back from 3 relays: the local health multiplier rises by 3.
        #expect(a.localHealthMultiplier == 4)

        // Two independent confirmations shrink the timeout to 24 − 20·ln2/ln3 s, then to the 4 s minimum.
        let confirmers = ["b", "c", "d", "e"].filter { $0 != target.id.rawValue }
        let c1 = a.receive(
            Gossip.Message(
                sender: ref(confirmers[0]), kind: .gossip,
                updates: [.suspect(member: target, incarnation: 0, from: Gossip.NodeID(confirmers[0]))]),
            from: "\(confirmers[0]):7946", now: .seconds(3))
        let expected1 = Gossip.Formula.suspicionTimeout(
            min: .seconds(4), max: .seconds(24), confirmations: 1, expected: 2)
        #expect(c1.timers.map(\.at) == [Gossip.Time.seconds(2) + expected1])
        #expect(expected1 > .seconds(11.38) && expected1 < .seconds(11.39))
        let c2 = a.receive(
            Gossip.Message(
                sender: ref(confirmers[1]), kind: .gossip,
                updates: [.suspect(member: target, incarnation: 0, from: Gossip.NodeID(confirmers[1]))]),
            from: "\(confirmers[1]):7946", now: .seconds(4))
        #expect(c2.timers.map(\.at) == [.seconds(6)])

        // The stale 26 s timer and an early firing do nothing; the 6 s one declares death.
        #expect(a.timeoutFired(.suspicion(target), now: .seconds(5)) == [])
        let dead = a.timeoutFired(.suspicion(target), now: .seconds(6))
        #expect(dead == [.memberChanged(member(target.id.rawValue, state: .dead))])
        #expect(a.timeoutFired(.suspicion(target), now: .seconds(26)) == [])
        #expect(a.metrics.membersDeclaredDead == 1)
        #expect(a.metrics.dead == 1 && a.metrics.alive == 4)
    }

    @Test func ackThroughARelayCountsAsSuccess() {
        var a = makeInstance("a", peers: ["b", "c"])
        let probe = a.tick(now: .seconds(1)).sends[0]
        guard case .ping(let seq, let target) = probe.message.kind else { return }
        _ = a.timeoutFired(.probeTimeout(sequence: seq), now: .seconds(1.5))
        let relay = target.id.rawValue == "b" ? "c" : "b"
        _ = a.receive(
            Gossip.Message(sender: ref(relay), kind: .ack(sequence: seq)), from: "\(relay):7946",
            now: .seconds(1.7))
        #expect(a.timeoutFired(.probePeriodEnd(sequence: seq), now: .seconds(2)) == [])
        #expect(a.member(target.id)?.state == .alive)
        #expect(a.metrics.probeRTTCount == 0)
    }

    @Test func relayForwardsTheAckOrSendsANack() {
        var a = makeInstance("a", peers: ["b", "c"])
        let request = Gossip.Message(
            sender: ref("b"),
            kind: .pingRequest(sequence: 9, target: ref("c"), targetAddress: "c:7946"))
        let relayed = a.receive(request, from: "b:7946", now: .seconds(0.1))
        #expect(relayed.sends.map(\.to) == ["c:7946"])
        #expect(relayed.sends.first?.message.kind == .ping(sequence: 1, target: ref("c")))
        #expect(relayed.timers.map(\.id) == [.relayTimeout(sequence: 1)])
        #expect(relayed.timers.map(\.at) == [.seconds(0.6)])
        let forwarded = a.receive(
            Gossip.Message(sender: ref("c"), kind: .ack(sequence: 1)), from: "c:7946",
            now: .seconds(0.2))
        #expect(forwarded.sends.map(\.to) == ["b:7946"])
        #expect(forwarded.sends.first?.message.kind == .ack(sequence: 9))
        #expect(a.timeoutFired(.relayTimeout(sequence: 1), now: .seconds(0.6)) == [])

        // The target stays silent this time: a nack goes back (Lifeguard).
        _ = a.receive(request, from: "b:7946", now: .seconds(1))
        let nack = a.timeoutFired(.relayTimeout(sequence: 2), now: .seconds(1.5))
        #expect(nack.sends.map(\.to) == ["b:7946"])
        #expect(nack.sends.first?.message.kind == .nack(sequence: 9))
    }

    @Test func nacksTellTheProberItIsHealthy() {
        var a = makeInstance("a", peers: ["b", "c", "d", "e"])
        let probe = a.tick(now: .seconds(1)).sends[0]
        guard case .ping(let seq, _) = probe.message.kind else { return }
        let relays = a.timeoutFired(.probeTimeout(sequence: seq), now: .seconds(1.5)).sends
        for relay in relays {
            let relayName = String(relay.to.split(separator: ":")[0])
            _ = a.receive(
                Gossip.Message(sender: ref(relayName), kind: .nack(sequence: seq)), from: relay.to,
                now: .seconds(1.9))
        }
        _ = a.timeoutFired(.probePeriodEnd(sequence: seq), now: .seconds(2))
        #expect(a.metrics.nacksReceived == 3)
        #expect(a.localHealthMultiplier == 1)
    }

    @Test func localHealthStretchesProbeTimeoutsAndRecoversOnAcks() {
        var a = makeInstance("a", peers: ["b"])
        var t = 1.0
        // Each failed probe without relays raises the multiplier by one.
        for expected in 2...4 {
            let probe = a.tick(now: .seconds(t))
            guard case .ping(let seq, _) = probe.sends[0].message.kind else { return }
            let scale = Double(expected - 1)
            #expect(probe.timers.first?.at == .seconds(t + 0.5 * scale))
            _ = a.timeoutFired(.probeTimeout(sequence: seq), now: .seconds(t + 0.5 * scale))
            _ = a.timeoutFired(.probePeriodEnd(sequence: seq), now: .seconds(t + scale))
            #expect(a.localHealthMultiplier == expected)
            // Refute nothing; bring b back for the next round.
            _ = a.receive(
                Gossip.Message(
                    sender: ref("b"), kind: .gossip, updates: [.alive(member("b", incarnation: UInt64(expected)))]),
                from: "b:7946", now: .seconds(t + scale))
            t += scale + 0.1
        }
        let probe = a.tick(now: .seconds(t))
        guard case .ping(let seq, let target) = probe.sends[0].message.kind else { return }
        _ = a.receive(
            Gossip.Message(sender: target, kind: .ack(sequence: seq)), from: "b:7946", now: .seconds(t + 0.01))
        #expect(a.localHealthMultiplier == 3)
    }

    @Test func buddySystemPutsTheSuspicionFirstInThePingToTheSuspect() {
        var a = makeInstance("a", peers: ["b"])
        _ = a.receive(
            Gossip.Message(
                sender: ref("x", uid: 5), kind: .gossip,
                updates: [.suspect(member: ref("b"), incarnation: 0, from: "x")]),
            from: "x:7946", now: .seconds(0.5))
        #expect(a.member("b")?.state == .suspect)
        let ping = a.tick(now: .seconds(1)).sends[0]
        #expect(ping.to == "b:7946")
        #expect(ping.message.updates.first == .suspect(member: ref("b"), incarnation: 0, from: "a"))
    }

    @Test func suspicionAboutSelfIsRefutedWithAHigherIncarnation() {
        var a = makeInstance("a", peers: ["b"])
        let accusation = Gossip.Message(
            sender: ref("b"), kind: .gossip,
            updates: [.suspect(member: ref("a"), incarnation: 0, from: "b")])
        #expect(a.receive(accusation, from: "b:7946", now: .seconds(0.5)) == [])
        #expect(a.localMember.incarnation == 1)
        #expect(a.metrics.refutations == 1)
        let reply = a.receive(
            Gossip.Message(sender: ref("b"), kind: .ping(sequence: 3, target: ref("a"))),
            from: "b:7946", now: .seconds(0.6))
        #expect(reply.sends.first?.message.updates.first == .alive(member("a", incarnation: 1)))
        // A death report about us is refuted the same way; an older one is ignored.
        _ = a.receive(
            Gossip.Message(
                sender: ref("b"), kind: .gossip,
                updates: [.dead(member: ref("a"), incarnation: 1, from: "b")]),
            from: "b:7946", now: .seconds(0.7))
        #expect(a.localMember.incarnation == 2)
        _ = a.receive(
            Gossip.Message(
                sender: ref("b"), kind: .gossip,
                updates: [.suspect(member: ref("a"), incarnation: 0, from: "b")]),
            from: "b:7946", now: .seconds(0.8))
        #expect(a.localMember.incarnation == 2)
        #expect(a.localMember.state == .alive)
    }

    @Test func observersAcceptTheRefutationOnlyAtAHigherIncarnation() {
        var c = makeInstance("c", peers: ["a", "b"])
        let suspect = c.receive(
            Gossip.Message(
                sender: ref("b"), kind: .gossip,
                updates: [.suspect(member: ref("a"), incarnation: 0, from: "b")]),
            from: "b:7946", now: .seconds(1))
        #expect(suspect.changes == [member("a", state: .suspect)])
        // Same incarnation: still suspect.
        #expect(
            c.receive(
                Gossip.Message(sender: ref("a"), kind: .gossip, updates: [.alive(member("a"))]),
                from: "a:7946", now: .seconds(1.1)
            ).changes == [])
        #expect(c.member("a")?.state == .suspect)
        let refuted = c.receive(
            Gossip.Message(
                sender: ref("a"), kind: .gossip,
                updates: [.alive(member("a", incarnation: 1))]),
            from: "a:7946", now: .seconds(1.2))
        #expect(refuted.changes == [member("a", incarnation: 1)])
        // The old suspicion's timer no longer declares anything.
        #expect(c.timeoutFired(.suspicion(ref("a")), now: .seconds(100)) == [])
        #expect(c.member("a")?.state == .alive)
    }

    @Test func deadMemberIsToldSoWhenItTalksToUs() {
        var c = makeInstance("c", peers: ["a", "b"])
        _ = c.receive(
            Gossip.Message(
                sender: ref("b"), kind: .gossip,
                updates: [.dead(member: ref("a"), incarnation: 0, from: "b")]),
            from: "b:7946", now: .seconds(1))
        #expect(c.member("a")?.state == .dead)
        let notice = c.receive(
            Gossip.Message(sender: ref("a"), kind: .gossip, updates: []), from: "a:7946",
            now: .seconds(2))
        #expect(notice.sends.map(\.to) == ["a:7946"])
        #expect(notice.sends.first?.message.updates.first == .dead(member: ref("a"), incarnation: 0, from: "c"))
        // Throttled to once per probe interval.
        #expect(c.receive(Gossip.Message(sender: ref("a"), kind: .gossip), from: "a:7946", now: .seconds(2.5)) == [])
        // A refutation (higher incarnation) revives it.
        let revived = c.receive(
            Gossip.Message(
                sender: ref("a"), kind: .gossip,
                updates: [.alive(member("a", incarnation: 1))]),
            from: "a:7946", now: .seconds(3))
        #expect(revived.changes == [member("a", incarnation: 1)])
    }

    @Test func gracefulLeaveIsAnnouncedAndNeverProbed() {
        var a = makeInstance("a", peers: ["b", "c"])
        let leave = a.leave(now: .seconds(0.5))
        #expect(leave.changes == [member("a", incarnation: 1, state: .left)])
        #expect(Set(leave.sends.map(\.to)) == ["b:7946", "c:7946"])
        for send in leave.sends {
            #expect(send.message.kind == .gossip)
            #expect(send.message.updates.first == .left(member: ref("a"), incarnation: 1))
        }
        #expect(a.hasLeft)
        #expect(a.tick(now: .seconds(2)) == [])

        var b = makeInstance("b", peers: ["a", "c"])
        let heard = b.receive(leave.sends[0].message, from: "a:7946", now: .seconds(0.6))
        #expect(heard.changes == [member("a", incarnation: 1, state: .left)])
        // Left is final for that process: an old alive cannot revive it.
        #expect(
            b.receive(
                Gossip.Message(sender: ref("c"), kind: .gossip, updates: [.alive(member("a", incarnation: 9))]),
                from: "c:7946", now: .seconds(0.7)
            ).changes == [])
        var t = 1.0
        for _ in 0..<6 {
            let probe = b.tick(now: .seconds(t)).sends
            #expect(probe.allSatisfy { $0.to != "a:7946" })
            if case .ping(let seq, let target)? = probe.first?.message.kind {
                _ = b.receive(
                    Gossip.Message(sender: target, kind: .ack(sequence: seq)), from: probe[0].to,
                    now: .seconds(t + 0.01))
            }
            t += 1
        }
        #expect(b.metrics.left == 1)
    }

    @Test func joinThroughASeedByPushPull() {
        var seed = makeInstance("s", peers: ["p"])
        var joiner = Gossip.Instance(
            id: "j", uid: 7, metadata: metadata("j"), configuration: .script,
            random: SplitMix64(seed: 3))
        let start = joiner.join(seeds: ["s:7947"], now: .seconds(1))
        #expect(
            start.changes == [Gossip.Member(id: "j", uid: 7, incarnation: 0, state: .alive, metadata: metadata("j"))])
        #expect(start.pushPulls == ["s:7947"])
        #expect(start.timers.map(\.id) == [.tick])

        // The shell's exchange: the responder merges first, then answers.
        let learned = seed.mergePushPull(joiner.pushPullPayload(), now: .seconds(1.01))
        #expect(learned.changes.map(\.id) == ["j"])
        let reply = joiner.mergePushPull(seed.pushPullPayload(), now: .seconds(1.02))
        #expect(Set(reply.changes.map(\.id)) == ["s", "p"])
        #expect(joiner.members.map(\.id) == ["j", "s", "p"])
        #expect(joiner.metrics.alive == 3)
    }

    @Test func pushPullDowngradesAPeersDeathVerdictToASuspicion() {
        var a = makeInstance("a", peers: ["b", "c"])
        var b = makeInstance("b", peers: ["a", "c"])
        _ = b.receive(
            Gossip.Message(
                sender: ref("a"), kind: .gossip,
                updates: [.dead(member: ref("c"), incarnation: 0, from: "a")]),
            from: "a:7946", now: .seconds(1))
        #expect(b.member("c")?.state == .dead)
        let merged = a.mergePushPull(b.pushPullPayload(), now: .seconds(2))
        #expect(merged.changes == [member("c", state: .suspect)])
    }

    @Test func malformedPushPullIsCountedAndIgnored() {
        var a = makeInstance("a", peers: ["b"])
        var payload = makeInstance("b", peers: ["a"]).pushPullPayload()
        payload.moveWriterIndex(to: payload.writerIndex - 3)
        #expect(a.mergePushPull(payload, now: .seconds(1)) == [])
        #expect(a.mergePushPull(ByteBuffer(bytes: [9, 9, 9]), now: .seconds(1)) == [])
        #expect(a.metrics.malformedPayloads == 2)
    }

    @Test func restartedProcessWithAHigherUidReplacesTheOldOne() {
        var a = makeInstance("a", peers: ["b"])
        let restarted = Gossip.Member(id: "b", uid: 2, incarnation: 0, state: .alive, metadata: metadata("b"))
        let changes = a.receive(
            Gossip.Message(sender: restarted.ref, kind: .gossip, updates: [.alive(restarted)]),
            from: "b:7946", now: .seconds(1)
        ).changes
        #expect(changes == [restarted])
        // The old process's messages no longer matter.
        _ = a.receive(
            Gossip.Message(sender: ref("b"), kind: .gossip, updates: [.alive(member("b", incarnation: 5))]),
            from: "b:7946", now: .seconds(2))
        #expect(a.member("b")?.uid == 2)
        _ = a.receive(
            Gossip.Message(
                sender: ref("b"), kind: .gossip,
                updates: [.suspect(member: ref("b", uid: 1), incarnation: 9, from: "x")]),
            from: "x:7946", now: .seconds(3))
        #expect(a.member("b")?.state == .alive)
    }

    @Test func metadataChangeIsAnnouncedUnderANewIncarnation() {
        var a = makeInstance("a", peers: ["b"])
        var meta = metadata("a")
        meta.capacity = 5
        #expect(
            a.setLocalMetadata(meta, now: .seconds(1)) == [
                .memberChanged(Gossip.Member(id: "a", uid: 1, incarnation: 1, state: .alive, metadata: meta))
            ])
        var b = makeInstance("b", peers: ["a"])
        let reply = a.receive(
            Gossip.Message(sender: ref("b"), kind: .ping(sequence: 1, target: ref("a"))),
            from: "b:7946", now: .seconds(1.1))
        let heard = b.receive(reply.sends[0].message, from: "a:7946", now: .seconds(1.2))
        #expect(heard.changes.map(\.capacity) == [5])
    }

    @Test func packetsStayWithinTheBudget() {
        let peers = (0..<80).map { "peer-with-a-longer-name-\($0)" }
        var configuration = Gossip.Configuration.lan
        configuration.authenticationTagLength = 32
        var a = makeInstance("a", peers: peers, configuration: configuration)
        _ = a.publishState(key: "small", version: 1, bytes: Array(repeating: 7, count: 256), now: .zero)
        let codec = Gossip.Codec(
            authenticator: Gossip.Authenticator(tagLength: 32) { _ in Array(repeating: 1, count: 32) })
        var total = 0
        for i in 0..<20 {
            let reply = a.receive(
                Gossip.Message(sender: ref(peers[0]), kind: .ping(sequence: UInt64(i), target: ref("a"))),
                from: "x:7946", now: .ms(Int64(i)))
            let packet = codec.encode(reply.sends[0].message)
            #expect(packet.readableBytes <= 1400)
            #expect(packet.readableBytes == Gossip.Codec.encodedSize(of: reply.sends[0].message, tagLength: 32))
            total += reply.sends[0].message.updates.count
        }
        #expect(total > 80)
    }
}
