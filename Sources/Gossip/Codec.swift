public import NIOCore

extension Gossip {
    /// Computes the tag that authenticates a packet with the cluster secret (for example HMAC-SHA256 from the
    /// `Hashing` module), so that this module needs no cryptography of its own.
    public struct Authenticator: Sendable {
        /// Bytes per tag; MUST equal ``Gossip/Configuration/authenticationTagLength``.
        public var tagLength: Int
        /// Returns exactly `tagLength` bytes for the given packet bytes.
        public var tag: @Sendable ([UInt8]) -> [UInt8]

        /// Creates an authenticator. - Parameters: `tagLength` bytes per tag; `tag` computes it.
        public init(tagLength: Int, tag: @escaping @Sendable ([UInt8]) -> [UInt8]) {
            precondition(tagLength >= 0 && tagLength <= 64)
            self.tagLength = tagLength
            self.tag = tag
        }

        /// No authentication (tests and trusted networks only); pair with `authenticationTagLength = 0`.
        public static let none = Authenticator(tagLength: 0) { _ in [] }
    }

    /// Why a packet or push-pull payload was rejected. Safe to log; holds no packet bytes.
    public struct DecodeError: Error, Hashable, Sendable, CustomStringConvertible {
        private enum Code: Hashable, Sendable {
            case truncated, unsupportedVersion, unknownType, badAuthentication, invalidString, trailingBytes,
                invalidValue
        }
        private let code: Code

        /// The packet ended before a field did.
        public static let truncated = DecodeError(code: .truncated)
        /// The version byte is not one this build understands.
        public static let unsupportedVersion = DecodeError(code: .unsupportedVersion)
        /// A message or update type byte is unknown.
        public static let unknownType = DecodeError(code: .unknownType)
        /// The authentication tag does not match.
        public static let badAuthentication = DecodeError(code: .badAuthentication)
        /// A string is not valid UTF-8.
        public static let invalidString = DecodeError(code: .invalidString)
        /// Bytes follow the last field.
        public static let trailingBytes = DecodeError(code: .trailingBytes)
        /// A field holds a value outside its range.
        public static let invalidValue = DecodeError(code: .invalidValue)

        /// A short, bounded label for metrics.
        public var shortDescription: String {
            switch code {
            case .truncated: "truncated"
            case .unsupportedVersion: "unsupported_version"
            case .unknownType: "unknown_type"
            case .badAuthentication: "bad_authentication"
            case .invalidString: "invalid_string"
            case .trailingBytes: "trailing_bytes"
            case .invalidValue: "invalid_value"
            }
        }

        public var description: String { "gossip decode error: \(shortDescription)" }
    }

    /// The binary wire codec (docs/gossip.md, "Wire format"). Integers are big-endian; strings are a
    /// one-byte length and UTF-8; a packet ends with the authenticator's tag over all preceding bytes.
    public struct Codec: Sendable {
        /// The wire version written in byte 0 of every packet and payload.
        public static let version: UInt8 = 1
        /// The type byte of a push-pull payload (distinct from every packet type). Never changes.
        public static let pushPullType: UInt8 = 0x80

        /// The authenticator for packets.
        public var authenticator: Authenticator

        /// Creates a codec. - Parameter authenticator: computes packet tags with the cluster secret.
        public init(authenticator: Authenticator) { self.authenticator = authenticator }

        /// Encodes `message` as one datagram, tag included.
        public func encode(_ message: Message) -> ByteBuffer {
            var buffer = ByteBuffer()
            buffer.reserveCapacity(Self.encodedSize(of: message, tagLength: authenticator.tagLength))
            buffer.writeInteger(Self.version)
            buffer.writeInteger(message.kind.typeByte)
            buffer.writeRef(message.sender)
            switch message.kind {
            case .ping(let sequence, let target):
                buffer.writeInteger(sequence)
                buffer.writeRef(target)
            case .pingRequest(let sequence, let target, let address):
                buffer.writeInteger(sequence)
                buffer.writeRef(target)
                buffer.writeShortString(address)
            case .ack(let sequence), .nack(let sequence):
                buffer.writeInteger(sequence)
            case .gossip:
                break
            }
            precondition(message.updates.count <= 255, "at most 255 updates per packet")
            buffer.writeInteger(UInt8(message.updates.count))
            for update in message.updates { buffer.writeUpdate(update) }
            if authenticator.tagLength > 0 {
                let tag = authenticator.tag(Array(buffer.readableBytesView))
                precondition(tag.count == authenticator.tagLength, "authenticator returned a tag of the wrong length")
                buffer.writeBytes(tag)
            }
            return buffer
        }

        /// Decodes and authenticates one datagram.
        /// - Returns: the message. - Throws: ``Gossip/DecodeError`` for anything malformed or unauthentic.
        public func decode(_ packet: ByteBuffer) throws(DecodeError) -> Message {
            let tagLength = authenticator.tagLength
            guard packet.readableBytes >= 2 + tagLength else { throw .truncated }
            var buffer = packet
            if tagLength > 0 {
                let bodyLength = packet.readableBytes - tagLength
                let body = Array(packet.readableBytesView.prefix(bodyLength))
                let received = Array(packet.readableBytesView.suffix(tagLength))
                let expected = authenticator.tag(body)
                guard Self.constantTimeEqual(expected, received) else { throw .badAuthentication }
                buffer = packet.getSlice(at: packet.readerIndex, length: bodyLength)!
            }
            guard let version = buffer.readInteger(as: UInt8.self) else { throw .truncated }
            guard version == Self.version else { throw .unsupportedVersion }
            guard let type = buffer.readInteger(as: UInt8.self) else { throw .truncated }
            let sender = try buffer.readRef()
            let kind: Message.Kind
            switch type {
            case 1: kind = .ping(sequence: try buffer.readU64(), target: try buffer.readRef())
            case 2:
                kind = .pingRequest(
                    sequence: try buffer.readU64(), target: try buffer.readRef(),
                    targetAddress: try buffer.readShortString())
            case 3: kind = .ack(sequence: try buffer.readU64())
            case 4: kind = .nack(sequence: try buffer.readU64())
            case 5: kind = .gossip
            default: throw .unknownType
            }
            guard let count = buffer.readInteger(as: UInt8.self) else { throw .truncated }
            var updates: [Update] = []
            updates.reserveCapacity(Int(count))
            for _ in 0..<count { updates.append(try buffer.readUpdate()) }
            guard buffer.readableBytes == 0 else { throw .trailingBytes }
            return Message(sender: sender, kind: kind, updates: updates)
        }

        static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
            guard a.count == b.count else { return false }
            var difference: UInt8 = 0
            for i in a.indices { difference |= a[i] ^ b[i] }
            return difference == 0
        }

        // MARK: Sizes (must match the encoder byte for byte; tested).

        static func size(of string: String) -> Int { 1 + string.utf8.count }
        static func size(of ref: NodeRef) -> Int { size(of: ref.id.rawValue) + 8 }

        /// Bytes of `kind` with its header and the update count, without updates or tag.
        static func headerSize(sender: NodeRef, kind: Message.Kind) -> Int {
            var size = 2 + self.size(of: sender) + 1
            switch kind {
            case .ping(_, let target): size += 8 + self.size(of: target)
            case .pingRequest(_, let target, let address): size += 8 + self.size(of: target) + self.size(of: address)
            case .ack, .nack: size += 8
            case .gossip: break
            }
            return size
        }

        /// Bytes of one encoded update.
        static func size(of update: Update) -> Int {
            switch update {
            case .alive(let m):
                1 + size(of: m.ref) + 8 + size(of: m.metadata.gossipAddress) + size(of: m.metadata.rpcAddress)
                    + size(of: m.metadata.s3Address) + size(of: m.metadata.zone) + 8
            case .suspect(let m, _, let from), .dead(let m, _, let from): 1 + size(of: m) + 8 + size(of: from.rawValue)
            case .left(let m, _): 1 + size(of: m) + 8
            case .stateDigest(let key, _, _): 1 + size(of: key) + 16
            case .state(let e): 1 + size(of: e.key) + 8 + 2 + e.bytes.count
            }
        }

        /// Bytes of the whole encoded datagram.
        public static func encodedSize(of message: Message, tagLength: Int) -> Int {
            message.updates.reduce(headerSize(sender: message.sender, kind: message.kind) + tagLength) {
                $0 + size(of: $1)
            }
        }

        // MARK: Push-pull payloads (TCP; authenticated by the RPC channel, not here).

        static func encodePushPull(sender: NodeRef, members: [Member], entries: [StateEntry]) -> ByteBuffer {
            var buffer = ByteBuffer()
            buffer.writeInteger(version)
            buffer.writeInteger(pushPullType)
            buffer.writeRef(sender)
            buffer.writeInteger(UInt32(members.count))
            for m in members {
                buffer.writeRef(m.ref)
                buffer.writeInteger(m.incarnation)
                buffer.writeInteger(m.state.rawValue)
                buffer.writeMetadata(m.metadata)
            }
            buffer.writeInteger(UInt32(entries.count))
            for e in entries {
                buffer.writeShortString(e.key)
                buffer.writeInteger(e.version)
                buffer.writeInteger(UInt32(e.bytes.count))
                buffer.writeBytes(e.bytes)
            }
            return buffer
        }

        static func decodePushPull(_ payload: ByteBuffer) throws(DecodeError) -> (
            sender: NodeRef, members: [Member], entries: [StateEntry]
        ) {
            var buffer = payload
            guard let version = buffer.readInteger(as: UInt8.self) else { throw .truncated }
            guard version == Self.version else { throw .unsupportedVersion }
            guard let type = buffer.readInteger(as: UInt8.self) else { throw .truncated }
            guard type == pushPullType else { throw .unknownType }
            let sender = try buffer.readRef()
            guard let memberCount = buffer.readInteger(as: UInt32.self) else { throw .truncated }
            // Each member needs at least 30 bytes: refuse counts the payload cannot hold before allocating.
            guard Int(memberCount) <= buffer.readableBytes / 30 else { throw .truncated }
            var members: [Member] = []
            members.reserveCapacity(Int(memberCount))
            for _ in 0..<memberCount {
                let ref = try buffer.readRef()
                let incarnation = try buffer.readU64()
                guard let raw = buffer.readInteger(as: UInt8.self) else { throw .truncated }
                guard let state = MemberState(rawValue: raw) else { throw .invalidValue }
                let metadata = try buffer.readMetadata()
                members.append(
                    Member(id: ref.id, uid: ref.uid, incarnation: incarnation, state: state, metadata: metadata))
            }
            guard let entryCount = buffer.readInteger(as: UInt32.self) else { throw .truncated }
            guard Int(entryCount) <= buffer.readableBytes / 13 else { throw .truncated }
            var entries: [StateEntry] = []
            for _ in 0..<entryCount {
                let key = try buffer.readShortString()
                let version = try buffer.readU64()
                guard let length = buffer.readInteger(as: UInt32.self) else { throw .truncated }
                guard let bytes = buffer.readBytes(length: Int(length)) else { throw .truncated }
                entries.append(StateEntry(key: key, version: version, bytes: bytes))
            }
            guard buffer.readableBytes == 0 else { throw .trailingBytes }
            return (sender, members, entries)
        }
    }
}

extension ByteBuffer {
    fileprivate mutating func writeShortString(_ string: String) {
        let count = string.utf8.count
        precondition(count <= 255, "gossip strings are at most 255 bytes")
        writeInteger(UInt8(count))
        writeString(string)
    }

    fileprivate mutating func writeRef(_ ref: Gossip.NodeRef) {
        writeShortString(ref.id.rawValue)
        writeInteger(ref.uid)
    }

    fileprivate mutating func writeMetadata(_ m: Gossip.Metadata) {
        writeShortString(m.gossipAddress)
        writeShortString(m.rpcAddress)
        writeShortString(m.s3Address)
        writeShortString(m.zone)
        writeInteger(m.capacity)
    }

    fileprivate mutating func writeUpdate(_ update: Gossip.Update) {
        writeInteger(update.typeByte)
        switch update {
        case .alive(let m):
            writeRef(m.ref)
            writeInteger(m.incarnation)
            writeMetadata(m.metadata)
        case .suspect(let m, let incarnation, let from), .dead(let m, let incarnation, let from):
            writeRef(m)
            writeInteger(incarnation)
            writeShortString(from.rawValue)
        case .left(let m, let incarnation):
            writeRef(m)
            writeInteger(incarnation)
        case .stateDigest(let key, let version, let digest):
            writeShortString(key)
            writeInteger(version)
            writeInteger(digest)
        case .state(let e):
            precondition(e.bytes.count <= Int(UInt16.max))
            writeShortString(e.key)
            writeInteger(e.version)
            writeInteger(UInt16(e.bytes.count))
            writeBytes(e.bytes)
        }
    }

    fileprivate mutating func readU64() throws(Gossip.DecodeError) -> UInt64 {
        guard let value = readInteger(as: UInt64.self) else { throw .truncated }
        return value
    }

    fileprivate mutating func readShortString() throws(Gossip.DecodeError) -> String {
        guard let length = readInteger(as: UInt8.self) else { throw .truncated }
        guard let bytes = readBytes(length: Int(length)) else { throw .truncated }
        guard let string = String(validating: bytes, as: UTF8.self) else { throw .invalidString }
        return string
    }

    fileprivate mutating func readRef() throws(Gossip.DecodeError) -> Gossip.NodeRef {
        let id = try readShortString()
        return Gossip.NodeRef(id: Gossip.NodeID(id), uid: try readU64())
    }

    fileprivate mutating func readMetadata() throws(Gossip.DecodeError) -> Gossip.Metadata {
        Gossip.Metadata(
            gossipAddress: try readShortString(), rpcAddress: try readShortString(), s3Address: try readShortString(),
            zone: try readShortString(), capacity: try readU64())
    }

    fileprivate mutating func readUpdate() throws(Gossip.DecodeError) -> Gossip.Update {
        guard let type = readInteger(as: UInt8.self) else { throw .truncated }
        switch type {
        case 1:
            let ref = try readRef()
            let incarnation = try readU64()
            let metadata = try readMetadata()
            return .alive(
                Gossip.Member(id: ref.id, uid: ref.uid, incarnation: incarnation, state: .alive, metadata: metadata))
        case 2, 3:
            let ref = try readRef()
            let incarnation = try readU64()
            let from = Gossip.NodeID(try readShortString())
            return type == 2
                ? .suspect(member: ref, incarnation: incarnation, from: from)
                : .dead(member: ref, incarnation: incarnation, from: from)
        case 4:
            return .left(member: try readRef(), incarnation: try readU64())
        case 5:
            return .stateDigest(key: try readShortString(), version: try readU64(), digest: try readU64())
        case 6:
            let key = try readShortString()
            let version = try readU64()
            guard let length = readInteger(as: UInt16.self) else { throw .truncated }
            guard let bytes = readBytes(length: Int(length)) else { throw .truncated }
            return .state(Gossip.StateEntry(key: key, version: version, bytes: bytes))
        default:
            throw .unknownType
        }
    }
}
