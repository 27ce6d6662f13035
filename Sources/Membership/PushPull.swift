import Hashing
import NIOCore

/// The TCP framing of a push-pull: `u32 length (big-endian) | 32-byte HMAC-SHA256(secret, payload) | payload`.
///
/// The initiator sends one frame with its `pushPullPayload()`; the responder verifies the tag, merges, and
/// answers with one frame of its own; the initiator verifies, merges and closes.
enum PushPullFrame {
    /// Bytes of the length field.
    static let lengthBytes = 4
    /// Bytes of the tag.
    static let tagBytes = 32

    /// One received frame, not yet authenticated.
    struct Received: Sendable {
        var tag: [UInt8]
        var payload: ByteBuffer
    }

    /// Frames `payload`, tagged with `secret`.
    static func encode(_ payload: ByteBuffer, secret: [UInt8]) -> ByteBuffer {
        var frame = ByteBuffer()
        frame.reserveCapacity(lengthBytes + tagBytes + payload.readableBytes)
        frame.writeInteger(UInt32(payload.readableBytes))
        frame.writeBytes(tag(payload, secret: secret))
        frame.writeImmutableBuffer(payload)
        return frame
    }

    /// `true` when the frame's tag is the HMAC of its payload under `secret` (compared in constant time).
    static func isAuthentic(_ frame: Received, secret: [UInt8]) -> Bool {
        constantTimeEqual(tag(frame.payload, secret: secret), frame.tag)
    }

    private static func tag(_ payload: ByteBuffer, secret: [UInt8]) -> [UInt8] {
        payload.withUnsafeReadableBytes { Digests.hmacSHA256(key: secret, message: $0) }
    }
}

/// Splits a TCP stream into push-pull frames; rejects a length above the limit as soon as it is read, so an
/// oversize frame is never buffered.
struct PushPullFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = PushPullFrame.Received

    let maxPayloadBytes: Int

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return .needMoreData }
        guard Int(length) <= maxPayloadBytes else { throw PushPullFailure.oversize }
        let total = PushPullFrame.lengthBytes + PushPullFrame.tagBytes + Int(length)
        guard buffer.readableBytes >= total else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: PushPullFrame.lengthBytes)
        let tag = buffer.readBytes(length: PushPullFrame.tagBytes)!
        let payload = buffer.readSlice(length: Int(length))!
        context.fireChannelRead(wrapInboundOut(PushPullFrame.Received(tag: tag, payload: payload)))
        return .continue
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws
        -> DecodingState
    {
        // A partial frame at the end of the stream is dropped; the reader sees the stream end.
        while try decode(context: context, buffer: &buffer) == .continue {}
        return .needMoreData
    }
}

/// Why a push-pull failed: a bounded label for metrics and logs (no peer data, no secret).
struct PushPullFailure: Error, Hashable, Sendable, CustomStringConvertible {
    private enum Code: CaseIterable, Hashable, Sendable {
        case unknownPeer, connect, timeout, closed, oversize, badAuthentication, busy, io
    }
    private let code: Code

    /// No gossip address is known for the requested address, or it does not resolve.
    static let unknownPeer = PushPullFailure(code: .unknownPeer)
    /// The TCP connection could not be opened.
    static let connect = PushPullFailure(code: .connect)
    /// The exchange did not finish within the push-pull timeout.
    static let timeout = PushPullFailure(code: .timeout)
    /// The peer closed before a whole frame arrived.
    static let closed = PushPullFailure(code: .closed)
    /// A frame (ours or theirs) is larger than the payload limit.
    static let oversize = PushPullFailure(code: .oversize)
    /// The frame's tag does not match: another secret, or tampering.
    static let badAuthentication = PushPullFailure(code: .badAuthentication)
    /// Too many inbound push-pulls at once.
    static let busy = PushPullFailure(code: .busy)
    /// Any other I/O error.
    static let io = PushPullFailure(code: .io)

    /// Every failure, for metrics with all label values present.
    static let all: [PushPullFailure] = Code.allCases.map(PushPullFailure.init(code:))

    /// A short, bounded label.
    var shortDescription: String {
        switch code {
        case .unknownPeer: "unknown_peer"
        case .connect: "connect"
        case .timeout: "timeout"
        case .closed: "closed"
        case .oversize: "oversize"
        case .badAuthentication: "bad_authentication"
        case .busy: "busy"
        case .io: "io"
        }
    }

    var description: String { "push-pull failed: \(shortDescription)" }
}
