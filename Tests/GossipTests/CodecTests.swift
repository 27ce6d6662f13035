import Gossip
import NIOCore
import Testing

/// Builds expected wire bytes independently of the codec.
private struct Bytes {
    var bytes: [UInt8] = []
    mutating func u8(_ v: UInt8) { bytes.append(v) }
    mutating func u16(_ v: UInt16) { bytes += [UInt8(v >> 8), UInt8(v & 0xFF)] }
    mutating func u32(_ v: UInt32) {
        for s in stride(from: 24, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: v >> UInt32(s))) }
    }
    mutating func u64(_ v: UInt64) {
        for s in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: v >> UInt64(s))) }
    }
    mutating func str(_ s: String) {
        u8(UInt8(s.utf8.count))
        bytes += Array(s.utf8)
    }
    mutating func node(_ name: String, _ uid: UInt64) {
        str(name)
        u64(uid)
    }
    mutating func meta(_ name: String) {
        str("\(name):7946")
        str("\(name):7947")
        str("\(name):9000")
        str("z1")
        u64(1 << 40)
    }
}

@Suite struct CodecTests {
    let plain = Gossip.Codec(authenticator: .none)

    @Test func pingIsByteExact() throws {
        let message = Gossip.Message(sender: ref("a", uid: 2), kind: .ping(sequence: 5, target: ref("b", uid: 3)))
        let expected: [UInt8] = [
            0x01, 0x01,  // version 1, type ping
            0x01, 0x61, 0, 0, 0, 0, 0, 0, 0, 2,  // sender "a" uid 2
            0, 0, 0, 0, 0, 0, 0, 5,  // sequence 5
            0x01, 0x62, 0, 0, 0, 0, 0, 0, 0, 3,  // target "b" uid 3
            0x00,  // no updates
        ]
        let packet = plain.encode(message)
        #expect(Array(packet.readableBytesView) == expected)
        #expect(try plain.decode(packet) == message)
    }

    static let kinds: [(Gossip.Message.Kind, [UInt8])] = {
        var ping = Bytes()
        ping.u8(1); ping.u64(77); ping.node("target", 9)
        var pingRequest = Bytes()
        pingRequest.u8(2); pingRequest.u64(78); pingRequest.node("target", 9); pingRequest.str("10.0.0.9:7946")
        var ack = Bytes()
        ack.u8(3); ack.u64(79)
        var nack = Bytes()
        nack.u8(4); nack.u64(80)
        var gossip = Bytes()
        gossip.u8(5)
        return [
            (.ping(sequence: 77, target: ref("target", uid: 9)), ping.bytes),
            (
                .pingRequest(sequence: 78, target: ref("target", uid: 9), targetAddress: "10.0.0.9:7946"),
                pingRequest.bytes
            ),
            (.ack(sequence: 79), ack.bytes),
            (.nack(sequence: 80), nack.bytes),
            (.gossip, gossip.bytes),
        ]
    }()

    static let updates: [(Gossip.Update, [UInt8])] = {
        var alive = Bytes()
        alive.u8(1); alive.node("c", 4); alive.u64(6); alive.meta("c")
        var suspect = Bytes()
        suspect.u8(2); suspect.node("d", 5); suspect.u64(7); suspect.str("e")
        var dead = Bytes()
        dead.u8(3); dead.node("d", 5); dead.u64(8); dead.str("f")
        var left = Bytes()
        left.u8(4); left.node("g", 6); left.u64(9)
        var digest = Bytes()
        digest.u8(5); digest.str("layout"); digest.u64(12); digest.u64(0xDEAD_BEEF_0123_4567)
        var state = Bytes()
        state.u8(6); state.str("k"); state.u64(13); state.u16(3); state.bytes += [9, 8, 7]
        return [
            (.alive(member("c", uid: 4, incarnation: 6)), alive.bytes),
            (.suspect(member: ref("d", uid: 5), incarnation: 7, from: "e"), suspect.bytes),
            (.dead(member: ref("d", uid: 5), incarnation: 8, from: "f"), dead.bytes),
            (.left(member: ref("g", uid: 6), incarnation: 9), left.bytes),
            (.stateDigest(key: "layout", version: 12, digest: 0xDEAD_BEEF_0123_4567), digest.bytes),
            (.state(Gossip.StateEntry(key: "k", version: 13, bytes: [9, 8, 7])), state.bytes),
        ]
    }()

    @Test(arguments: 0..<5) func everyKindIsByteExact(index: Int) throws {
        let (kind, body) = Self.kinds[index]
        let message = Gossip.Message(sender: ref("sender", uid: 1), kind: kind)
        var expected = Bytes()
        expected.u8(1)
        expected.u8(body[0])
        expected.node("sender", 1)
        expected.bytes += body.dropFirst()
        expected.u8(0)
        let packet = plain.encode(message)
        #expect(Array(packet.readableBytesView) == expected.bytes)
        #expect(packet.readableBytes == Gossip.Codec.encodedSize(of: message, tagLength: 0))
        #expect(try plain.decode(packet) == message)
    }

    @Test(arguments: 0..<6) func everyUpdateIsByteExact(index: Int) throws {
        let (update, body) = Self.updates[index]
        let message = Gossip.Message(sender: ref("s", uid: 1), kind: .gossip, updates: [update, update])
        var expected = Bytes()
        expected.u8(1); expected.u8(5); expected.node("s", 1); expected.u8(2)
        expected.bytes += body + body
        let packet = plain.encode(message)
        #expect(Array(packet.readableBytesView) == expected.bytes)
        #expect(packet.readableBytes == Gossip.Codec.encodedSize(of: message, tagLength: 0))
        #expect(try plain.decode(packet) == message)
    }

    @Test func typeBytesNeverChange() {
        #expect(Self.kinds.map { $0.0.typeByte } == [1, 2, 3, 4, 5])
        #expect(Self.updates.map { $0.0.typeByte } == [1, 2, 3, 4, 5, 6])
        #expect(Gossip.MemberState.allCases.map(\.rawValue) == [0, 1, 2, 3])
        #expect(Gossip.Codec.version == 1 && Gossip.Codec.pushPullType == 0x80)
    }

    @Test func authenticatedPacketsRoundTripAndWrongKeysAreRejected() throws {
        let codec = Gossip.Codec(authenticator: toyAuthenticator(key: 1))
        let other = Gossip.Codec(authenticator: toyAuthenticator(key: 2))
        let message = Gossip.Message(sender: ref("a"), kind: .ack(sequence: 3), updates: Self.updates.map(\.0))
        let packet = codec.encode(message)
        #expect(packet.readableBytes == Gossip.Codec.encodedSize(of: message, tagLength: 8))
        #expect(try codec.decode(packet) == message)
        #expect(throws: Gossip.DecodeError.badAuthentication) { try other.decode(packet) }
        #expect(throws: Gossip.DecodeError.badAuthentication) { try codec.decode(plain.encode(message)) }
        // Flip each bit of the body: the tag no longer matches.
        var bytes = Array(packet.readableBytesView)
        for i in stride(from: 0, to: bytes.count, by: 7) {
            bytes[i] ^= 0x10
            #expect(throws: Gossip.DecodeError.self) { try codec.decode(ByteBuffer(bytes: bytes)) }
            bytes[i] ^= 0x10
        }
    }

    @Test func everyTruncationIsRejected() {
        let message = Gossip.Message(
            sender: ref("a"), kind: .pingRequest(sequence: 1, target: ref("b"), targetAddress: "b"),
            updates: Self.updates.map(\.0))
        let bytes = Array(plain.encode(message).readableBytesView)
        for length in 0..<bytes.count {
            #expect(throws: Gossip.DecodeError.self) { try plain.decode(ByteBuffer(bytes: bytes.prefix(length))) }
        }
        #expect(throws: Gossip.DecodeError.trailingBytes) { try plain.decode(ByteBuffer(bytes: bytes + [0])) }
    }

    @Test func garbageNeverCrashes() {
        var rng = SplitMix64(seed: 99)
        var accepted = 0
        for _ in 0..<3000 {
            let length = Int(rng.next() % 80)
            var bytes = (0..<length).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            if bytes.count > 2, rng.next() % 2 == 0 {
                bytes[0] = 1
                bytes[1] = UInt8(rng.next() % 6)
            }
            if (try? plain.decode(ByteBuffer(bytes: bytes))) != nil { accepted += 1 }
        }
        #expect(accepted < 30)
    }

    @Test func invalidUTF8AndUnknownTypesAreRejected() {
        var bad = Bytes()
        bad.u8(1); bad.u8(3); bad.u8(2); bad.bytes += [0xC3, 0x28]; bad.u64(1); bad.u64(1); bad.u8(0)
        #expect(throws: Gossip.DecodeError.invalidString) { try plain.decode(ByteBuffer(bytes: bad.bytes)) }
        var unknown = Bytes()
        unknown.u8(1); unknown.u8(99); unknown.node("a", 1)
        #expect(throws: Gossip.DecodeError.unknownType) { try plain.decode(ByteBuffer(bytes: unknown.bytes)) }
        var version = Bytes()
        version.u8(2); version.u8(3); version.node("a", 1); version.u64(1); version.u8(0)
        #expect(throws: Gossip.DecodeError.unsupportedVersion) { try plain.decode(ByteBuffer(bytes: version.bytes)) }
        var update = Bytes()
        update.u8(1); update.u8(5); update.node("a", 1); update.u8(1); update.u8(77)
        #expect(throws: Gossip.DecodeError.unknownType) { try plain.decode(ByteBuffer(bytes: update.bytes)) }
    }

    @Test func pushPullPayloadIsByteExactAndMerges() {
        var a = makeInstance("a")
        _ = a.publishState(key: "layout", version: 3, bytes: [1, 2], now: .zero)
        var expected = Bytes()
        expected.u8(1); expected.u8(0x80); expected.node("a", 1)
        expected.u32(1)
        expected.node("a", 1); expected.u64(0); expected.u8(0); expected.meta("a")
        expected.u32(1)
        expected.str("layout"); expected.u64(3); expected.u32(2); expected.bytes += [1, 2]
        let payload = a.pushPullPayload()
        #expect(Array(payload.readableBytesView) == expected.bytes)

        var b = makeInstance("b")
        let actions = b.mergePushPull(payload, now: .seconds(1))
        #expect(actions.contains(.stateUpdated(key: "layout", version: 3, bytes: [1, 2])))
        #expect(b.member("a") == member("a"))
        // Every truncation is rejected without a change.
        for length in 0..<expected.bytes.count {
            var c = makeInstance("c")
            #expect(c.mergePushPull(ByteBuffer(bytes: expected.bytes.prefix(length)), now: .seconds(1)) == [])
            #expect(c.metrics.malformedPayloads == 1)
        }
    }

    @Test func hugeCountsInAPayloadAreRejectedBeforeAllocating() {
        var bytes = Bytes()
        bytes.u8(1); bytes.u8(0x80); bytes.node("a", 1); bytes.u32(.max)
        var c = makeInstance("c")
        #expect(c.mergePushPull(ByteBuffer(bytes: bytes.bytes), now: .zero) == [])
        #expect(c.metrics.malformedPayloads == 1)
    }
}
