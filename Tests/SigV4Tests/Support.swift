import Foundation
import Hashing
import NIOCore
import SigV4
import Testing

/// The example secret key of the AWS documentation.
let exampleAccessKey = "AKIAIOSFODNN7EXAMPLE"
let exampleSecretKey = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
/// 2013-05-24T00:00:00Z, the time of every AWS documentation example.
let exampleNow = Date(timeIntervalSince1970: 1_369_353_600)

/// A request as captured on the wire.
struct WireVector: Sendable, CustomTestStringConvertible {
    var name: String
    var method: String
    var path: String
    var query: String
    var headers: [(String, String)]

    var testDescription: String { name }

    var head: SigV4.RequestHead {
        SigV4.RequestHead(
            method: method, rawPath: path, rawQuery: query, headers: headers.map { (name: $0.0, value: $0.1) })
    }
}

/// A captured `aws-chunked` upload: the request and its raw body.
struct StreamingVector: Sendable, CustomTestStringConvertible {
    var wire: WireVector
    var bodyBase64: String

    var testDescription: String { wire.name }
    var body: [UInt8] { Base64.decode(bodyBase64) ?? [] }
}

/// Runs `body` and expects it to throw a ``SigV4Error`` with `code`; returns the error.
@discardableResult
func expectSigV4Error<T>(
    _ code: SigV4Error.Code, sourceLocation: SourceLocation = #_sourceLocation,
    _ body: () throws(SigV4Error) -> T
) -> SigV4Error? {
    do {
        let value = try body()
        Issue.record("expected \(code.rawValue), got \(value)", sourceLocation: sourceLocation)
        return nil
    } catch {
        #expect(error.code == code, "\(error.debugDescription)", sourceLocation: sourceLocation)
        return error
    }
}

/// Parses and verifies `head`, expecting a signed request.
func parseAndVerify(
    _ head: SigV4.RequestHead, secretKey: String = exampleSecretKey, now: Date = exampleNow,
    maxSkew: Duration = .seconds(900)
) throws(SigV4Error) -> (SigV4.Credential, SigV4.SigningContext) {
    guard case .signed(let credential) = try SigV4.parse(head) else {
        throw SigV4Error(.accessDenied, "anonymous")
    }
    return (credential, try SigV4.verify(credential, head: head, secretKey: secretKey, now: now, maxSkew: maxSkew))
}

/// A seeded SplitMix64 generator for reproducible random splits.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Ways to cut a body into pieces for ``AwsChunkedDecoder/feed(_:)``.
enum Split: Sendable, CustomTestStringConvertible {
    case whole
    case byteByByte
    case random(seed: UInt64)

    var testDescription: String {
        switch self {
        case .whole: "whole"
        case .byteByByte: "byte by byte"
        case .random(let seed): "random(\(seed))"
        }
    }

    func pieces(_ bytes: [UInt8]) -> [[UInt8]] {
        switch self {
        case .whole:
            return [bytes]
        case .byteByByte:
            return bytes.map { [$0] }
        case .random(let seed):
            var rng = SplitMix64(seed: seed)
            var pieces: [[UInt8]] = []
            var offset = 0
            while offset < bytes.count {
                let n = Int.random(in: 1...min(bytes.count - offset, 9000), using: &rng)
                pieces.append(Array(bytes[offset..<offset + n]))
                offset += n
            }
            return pieces
        }
    }
}

/// Feeds `body` split as `split`, then finishes. Returns the decoded payload and trailers.
func decode(
    _ body: [UInt8], split: Split, mode: SigV4.PayloadMode, signing: SigV4.SigningContext?,
    declaredTrailers: [String] = [], decodedContentLength: Int? = nil, maxChunkSize: Int = 16 << 20
) throws(SigV4Error) -> (payload: [UInt8], trailers: [(name: String, value: String)]) {
    var decoder = AwsChunkedDecoder(
        mode: mode, signing: signing, declaredTrailers: declaredTrailers,
        decodedContentLength: decodedContentLength, maxChunkSize: maxChunkSize)
    var payload: [UInt8] = []
    for piece in split.pieces(body) {
        for slice in try decoder.feed(ByteBuffer(bytes: piece)) {
            payload += slice.readableBytesView
        }
    }
    let trailers = try decoder.finish()
    return (payload, trailers)
}

