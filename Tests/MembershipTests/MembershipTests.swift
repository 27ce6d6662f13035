import HostAddress
import Gossip
import Testing

@testable import Membership

/// Real UDP and TCP on 127.0.0.1 with ports picked by binding port 0, and fast protocol timings. Each test
/// waits for an outcome with a generous timeout; none asserts how fast it came. Serialized, so that parallel
/// clusters do not starve each other of CPU (which would cause false suspicions).
@Suite(.serialized)
struct MembershipServiceTests {
    @Test func threeMembersJoinThroughOneAndSeeEachOtherWithMetadata() async throws {
        try await withNodes { nodes in
            let a = try await nodes.start(testConfiguration("a", index: 0))
            let b = try await nodes.start(testConfiguration("b", index: 1, seeds: [a.gossipAddress]))
            let c = try await nodes.start(testConfiguration("c", index: 2, seeds: [a.gossipAddress]))
            let all = [a, b, c]

            // Port 0 was replaced by the bound port, the same for UDP and TCP.
            for node in all {
                let bound = try #require(node.service.bound)
                #expect(bound.udpPort == bound.tcpPort)
                #expect(node.gossipAddress == "127.0.0.1:\(bound.udpPort)")
            }

            let formed = await eventually {
                all.allSatisfy { viewer in
                    let alive = viewer.service.members.filter { $0.state == .alive }
                    return alive.count == 3
                }
            }
            #expect(formed)

            for viewer in all {
                for (index, node) in all.enumerated() {
                    let member = try #require(viewer.member(node.name), "\(viewer.name) does not know \(node.name)")
                    let expected = testMetadata(index)
                    #expect(member.state == .alive)
                    #expect(member.gossipAddress == node.gossipAddress)
                    #expect(member.rpcAddress == expected.rpcAddress)
                    #expect(member.s3Address == expected.s3Address)
                    #expect(member.zone == expected.zone)
                    #expect(member.capacity == expected.capacity)
                }
            }

            // Observers heard about the others; metrics agree.
            let seenByA = Set(
                a.events.compactMap { event -> String? in
                    if case .memberChanged(let m) = event, m.state == .alive { return m.id.rawValue }
                    return nil
                })
            #expect(seenByA == ["a", "b", "c"])
            #expect(a.metric("cloud_gossip_members{state=\"alive\"}") == 3)
            // (A counts an answered push-pull once the joiner has closed the connection.)
            #expect(await eventually { a.metric("cloud_gossip_push_pulls_total{direction=\"inbound\"}") >= 2 })
            #expect(await eventually { b.metric("cloud_gossip_push_pulls_total{direction=\"outbound\"}") >= 1 })

            // Every sample line is a `cloud_gossip_` series with a numeric value, under its HELP and TYPE.
            let text = a.service.prometheusMetrics()
            var families = Set<String>()
            for line in text.split(separator: "\n") {
                if line.hasPrefix("# TYPE ") { families.insert(String(line.split(separator: " ")[2])) }
                if line.hasPrefix("#") { continue }
                let parts = line.split(separator: " ")
                #expect(parts.count == 2 && Double(parts[1]) != nil, "\(line)")
                let name = String(parts[0].prefix { $0 != "{" })
                let family = ["_bucket", "_sum", "_count"].reduce(name) { name, suffix in
                    families.contains(name)
                        ? name : (name.hasSuffix(suffix) ? String(name.dropLast(suffix.count)) : name)
                }
                #expect(name.hasPrefix("cloud_gossip_") && families.contains(family), "\(line)")
            }
            #expect(text.contains("cloud_gossip_probe_rtt_seconds_count"))
        }
    }

    @Test func publishedStateReachesEveryMemberInlineAndByPushPull() async throws {
        try await withNodes { nodes in
            let a = try await nodes.start(testConfiguration("a", index: 0))
            let b = try await nodes.start(testConfiguration("b", index: 1, seeds: [a.gossipAddress]))
            let c = try await nodes.start(testConfiguration("c", index: 2, seeds: [a.gossipAddress]))
            let others = [b, c]
            #expect(await eventually { [a, b, c].allSatisfy { $0.service.members.count == 3 } })

            // 100 bytes: inline in packets.
            let small = Gossip.StateEntry(key: "layout", version: 1, bytes: (0..<100).map { UInt8($0) })
            await a.service.publishState(key: small.key, version: small.version, bytes: small.bytes)
            #expect(await eventually { others.allSatisfy { $0.service.state("layout") == small } })

            // 64 KiB: a digest in packets, the bytes fetched over TCP push-pull.
            let big = Gossip.StateEntry(
                key: "layout", version: 2, bytes: (0..<65_536).map { UInt8(truncatingIfNeeded: $0 &* 7) })
            await a.service.publishState(key: big.key, version: big.version, bytes: big.bytes)
            #expect(await eventually { others.allSatisfy { $0.service.state("layout") == big } })

            for node in others {
                let updates = node.events.compactMap { event -> Gossip.StateEntry? in
                    if case .stateUpdated(let entry) = event { return entry }
                    return nil
                }
                #expect(updates.contains(small), "\(node.name) observed no v1")
                #expect(updates.last == big, "\(node.name) observed no v2")
                #expect(node.metric("cloud_gossip_push_pulls_requested_total{cause=\"state_fetch\"}") >= 1)
            }
        }
    }

    @Test func crashedMemberIsDeclaredDeadAndLeaverIsSeenAsLeft() async throws {
        try await withNodes { nodes in
            let a = try await nodes.start(testConfiguration("a", index: 0))
            let b = try await nodes.start(testConfiguration("b", index: 1, seeds: [a.gossipAddress]))
            let crasher = try await nodes.start(testConfiguration("crasher", index: 2, seeds: [a.gossipAddress]))
            let leaver = try await nodes.start(testConfiguration("leaver", index: 3, seeds: [b.gossipAddress]))
            let all = [a, b, crasher, leaver]
            #expect(await eventually { all.allSatisfy { $0.service.members.filter { $0.state == .alive }.count == 4 } })

            let crasherPort = crasher.port
            let leaverPort = leaver.port
            await crasher.crash()
            await leaver.stopGracefully()

            // run() returned in both cases, and its sockets are closed.
            #expect(portIsFree(crasherPort))
            #expect(portIsFree(leaverPort))
            #expect(leaver.service.localMember.state == .left)

            let survivors = [a, b]
            #expect(await eventually { survivors.allSatisfy { $0.member("crasher")?.state == .dead } })
            #expect(await eventually { survivors.allSatisfy { $0.member("leaver")?.state == .left } })
            for node in survivors {
                #expect(node.member("crasher")?.state == .dead)
                #expect(node.member("leaver")?.state == .left)
                // Survivors are never declared dead (a passing suspicion on a busy machine is refuted).
                #expect(node.member("a").map { $0.state == .alive || $0.state == .suspect } == true)
                #expect(node.member("b").map { $0.state == .alive || $0.state == .suspect } == true)
            }
            #expect(a.metric("cloud_gossip_declared_dead_total") + b.metric("cloud_gossip_declared_dead_total") >= 1)
        }
    }

    @Test func memberWithAnotherSecretCannotJoin() async throws {
        // A method rather than a closure: swiftc 6.3.1 crashes (SendNonSendable pass) on this body as a closure.
        try await withNodes(Self.memberWithAnotherSecretCannotJoin)
    }

    private static func memberWithAnotherSecretCannotJoin(_ nodes: NodeSet) async throws {
        let a = try await nodes.start(testConfiguration("a", index: 0))
        let b = try await nodes.start(testConfiguration("b", index: 1, seeds: [a.gossipAddress]))
        #expect(await eventually { [a, b].allSatisfy { $0.service.members.count == 2 } })

        let wrongSecret = otherSecret
        let stranger = try await nodes.start(
            testConfiguration("stranger", index: 2, seeds: [a.gossipAddress], secret: wrongSecret))

        // Its join (a TCP push-pull) is refused, and it keeps retrying.
        let refused = await eventually {
            a.metric("cloud_gossip_push_pull_failures_total{direction=\"inbound\",reason=\"bad_authentication\"}") >= 2
        }
        #expect(refused)
        #expect(metricSum(stranger.service.prometheusMetrics(), "cloud_gossip_push_pull_failures_total") >= 1)

        // A packet the stranger would send (tagged with its secret) is dropped and counted; a packet with the
        // cluster's secret, from the same raw socket, is answered, so the refusal is the secret's doing.
        let socket = RawUDPSocket()
        let target = a.service.localMember.ref
        let ping = Gossip.Message(
            sender: Gossip.NodeRef(id: "stranger", uid: 1), kind: .ping(sequence: 42, target: target))
        let strangerCodec = Gossip.Codec(authenticator: .hmacSHA256(secret: wrongSecret))
        socket.send(encodePacket(ping, with: strangerCodec), toPort: a.port)
        #expect(socket.receive(timeoutMilliseconds: 500) == nil)
        #expect(
            await eventually {
                a.metric("cloud_gossip_decode_failures_total{reason=\"bad_authentication\"}") >= 1
            })

        let clusterCodec = Gossip.Codec(authenticator: .hmacSHA256(secret: clusterSecret))
        socket.send(encodePacket(ping, with: clusterCodec), toPort: a.port)
        let answer = try #require(socket.receive(timeoutMilliseconds: 5_000))
        let ack = try decodePacket(answer, with: clusterCodec)
        #expect(ack.kind == .ack(sequence: 42))
        #expect(ack.sender == target)

        try await Task.sleep(for: .milliseconds(500))
        for node in [a, b] {
            #expect(node.member("stranger") == nil)
            #expect(node.service.members.count == 2)
        }
        #expect(stranger.service.members.map(\.id.rawValue) == ["stranger"])
    }

    @Test func garbageIsCountedAndIgnored() async throws {
        try await withNodes { nodes in
            let a = try await nodes.start(testConfiguration("a", index: 0))
            let b = try await nodes.start(testConfiguration("b", index: 1, seeds: [a.gossipAddress]))
            #expect(await eventually { [a, b].allSatisfy { $0.service.members.count == 2 } })

            // UDP: noise, a lone version byte, a packet of the wrong version, and a long datagram.
            let socket = RawUDPSocket()
            var generator = SystemRandomNumberGenerator()
            var datagrams: [[UInt8]] = [[1], [9, 1, 0], Array(repeating: 0xFF, count: 3_000)]
            for _ in 0..<20 {
                datagrams.append(
                    (0..<Int.random(in: 1...1_400, using: &generator)).map { _ in UInt8.random(in: 0...255) })
            }
            for datagram in datagrams { socket.send(datagram, toPort: a.port) }
            let counted = await eventually {
                metricSum(a.service.prometheusMetrics(), "cloud_gossip_decode_failures_total")
                    == Double(datagrams.count)
            }
            #expect(counted)
            #expect(a.metric("cloud_gossip_decode_failures_total{reason=\"truncated\"}") >= 1)
            #expect(socket.receive(timeoutMilliseconds: 200) == nil)

            // TCP: an oversize length, a frame with a wrong tag, and a connection that never sends.
            let oversize = try #require(RawTCPConnection(port: a.port))
            oversize.send([0xFF, 0xFF, 0xFF, 0xFF])
            #expect(oversize.readUntilClosed(timeoutMilliseconds: 5_000).closed)

            let forged = try #require(RawTCPConnection(port: a.port))
            forged.send([0, 0, 0, 4] + Array(repeating: 0xAB, count: 32) + [1, 0x80, 0, 0])
            let forgedReply = forged.readUntilClosed(timeoutMilliseconds: 5_000)
            #expect(forgedReply.closed)
            #expect(forgedReply.bytes.isEmpty)

            let silent = try #require(RawTCPConnection(port: a.port))
            #expect(silent.readUntilClosed(timeoutMilliseconds: 5_000).closed)  // the 1 s push-pull deadline

            let failure = "cloud_gossip_push_pull_failures_total{direction=\"inbound\",reason="
            #expect(await eventually { a.metric(failure + "\"oversize\"}") >= 1 })
            #expect(await eventually { a.metric(failure + "\"bad_authentication\"}") >= 1 })
            #expect(await eventually { a.metric(failure + "\"timeout\"}") >= 1 })

            // Still working: a new member joins, state spreads.
            let c = try await nodes.start(testConfiguration("c", index: 2, seeds: [a.gossipAddress]))
            #expect(
                await eventually {
                    [a, b, c].allSatisfy { $0.service.members.filter { $0.state == .alive }.count == 3 }
                })
            await a.service.publishState(key: "layout", version: 7, bytes: [1, 2, 3])
            #expect(await eventually { [b, c].allSatisfy { $0.service.state("layout")?.version == 7 } })
        }
    }

    @Test func leaveIsIdempotentAndRunOnlyOnce() async throws {
        try await withNodes { nodes in
            let a = try await nodes.start(testConfiguration("a", index: 0))
            let before = a.service.localMember.incarnation
            await a.service.leave()
            await a.service.leave()
            #expect(a.service.localMember.state == .left)
            #expect(a.service.localMember.incarnation == before + 1)
            await #expect(throws: MembershipError.alreadyStarted) { try await a.service.run() }
            await a.stopGracefully()
            #expect(portIsFree(a.port))

            // Leaving before run(): it starts, leaves at once, and never contacts its seeds.
            let seed = try await nodes.start(testConfiguration("seed", index: 1))
            let early = try await nodes.start(
                testConfiguration("early", index: 2, seeds: [seed.gossipAddress]),
                beforeRun: { await $0.leave() })
            #expect(early.service.localMember.state == .left)
            try await Task.sleep(for: .milliseconds(500))
            #expect(seed.member("early") == nil)
            #expect(early.service.members.map(\.id.rawValue) == ["early"])
        }
    }
}

@Suite struct MembershipUnitTests {
    @Test(arguments: [
        ("127.0.0.1:7946", "127.0.0.1", 7946),
        ("node-1.example:0", "node-1.example", 0),
        ("[::1]:80", "::1", 80),
        (":7946", "", 7946),
    ])
    func splitsHostAndPort(address: String, host: String, port: Int) throws {
        let split = try #require(HostPort.split(address))
        #expect(split.host == host)
        #expect(split.port == port)
    }

    @Test(arguments: ["127.0.0.1", "::1:80", "host:65536", "host:-1", "[::1]80", "host:x"])
    func rejectsMalformedAddresses(address: String) {
        #expect(HostPort.split(address) == nil)
    }

    @Test func pushPullGoesToTheGossipAddressOfTheMemberWithThatRPCAddress() {
        func member(_ id: String, _ gossip: String, _ rpc: String, _ state: Gossip.MemberState) -> Gossip.Member {
            Gossip.Member(
                id: Gossip.NodeID(id), uid: 1, incarnation: 0, state: state,
                metadata: Gossip.Metadata(gossipAddress: gossip, rpcAddress: rpc))
        }
        let local = member("me", "10.0.0.1:7946", "10.0.0.1:7000", .alive)
        let members = [
            local,
            member("b", "10.0.0.2:7946", "10.0.0.2:7000", .alive),
            member("c", "10.0.0.3:7946", "", .alive),
        ]
        let target = MembershipService.pushPullTarget
        #expect(target("10.0.0.2:7000", members, local) == "10.0.0.2:7946")
        // A seed (no member has it as RPC address) is a gossip address already.
        #expect(target("10.0.0.9:7946", members, local) == "10.0.0.9:7946")
        #expect(target("", members, local) == nil)
    }

    @Test func configurationDescriptionHidesTheSecret() {
        let configuration = MembershipConfiguration(
            nodeID: "n", uid: 1, bindAddress: "127.0.0.1:0",
            metadata: Gossip.Metadata(gossipAddress: "", rpcAddress: ""), secret: Array("hunter2-secret".utf8))
        #expect(!"\(configuration)".contains("hunter2"))
        #expect(!String(reflecting: configuration).contains("hunter2"))
        var dumped = ""
        dump(configuration, to: &dumped)
        #expect(dumped.contains("<redacted>"))
    }
}
