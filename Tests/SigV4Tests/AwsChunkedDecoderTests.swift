import Foundation
import Hashing
import NIOCore
import SigV4
import Testing

/// A fixed signing context (the documentation's key and scope).
let testContext = SigV4.SigningContext(
    signingKey: SigV4.signingKey(secretKey: exampleSecretKey, date: "20130524", region: "us-east-1", service: "s3"),
    scope: "20130524/us-east-1/s3/aws4_request", amzDate: "20130524T000000Z",
    seedSignature: "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9")

let streamingModes: [SigV4.PayloadMode] = [.streamingSigned, .streamingSignedTrailer, .streamingUnsignedTrailer]

func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

func randomPayload(_ count: Int, seed: UInt64) -> [UInt8] {
    var rng = SplitMix64(seed: seed)
    return (0..<count).map { _ in UInt8.random(in: 0...255, using: &rng) }
}

/// A valid body for `mode` with one CRC32 trailer in trailer modes.
func validBody(_ payload: [UInt8], chunkSize: Int, mode: SigV4.PayloadMode) -> (body: [UInt8], trailers: [String]) {
    let crc = Base64.encode(ChecksumAlgorithm.crc32.checksum(of: payload))
    let trailers: [(name: String, value: String)] = mode.hasTrailer ? [("x-amz-checksum-crc32", crc)] : []
    let body = SigV4.encodeChunked(
        payload, chunkSize: chunkSize, mode: mode, signing: mode == .streamingUnsignedTrailer ? nil : testContext,
        trailers: trailers)
    return (body, trailers.map(\.name))
}

@Suite struct AwsChunkedDecoderTests {
    @Test(arguments: streamingModes, [Split.whole, .byteByByte, .random(seed: 4), .random(seed: 5)])
    func roundTrip(mode: SigV4.PayloadMode, split: Split) throws {
        for (size, chunkSize) in [(0, 8), (1, 8), (100, 7), (3000, 1024), (8192, 8192)] {
            let payload = randomPayload(size, seed: UInt64(size))
            let (body, declared) = validBody(payload, chunkSize: chunkSize, mode: mode)
            let (decoded, trailers) = try decode(
                body, split: split, mode: mode, signing: testContext, declaredTrailers: declared,
                decodedContentLength: size)
            #expect(decoded == payload)
            #expect(trailers.map(\.name) == declared)
        }
    }

    @Test(arguments: streamingModes)
    func largeChunksAreReleasedBeforeTheirEnd(mode: SigV4.PayloadMode) throws {
        let payload = randomPayload(1 << 20, seed: 77)
        let (body, declared) = validBody(payload, chunkSize: 1 << 20, mode: mode)
        var decoder = AwsChunkedDecoder(
            mode: mode, signing: testContext, declaredTrailers: declared, decodedContentLength: payload.count)
        // The first 64 KiB of a 1 MiB chunk come out at once, long before the chunk's signature is known.
        let first = try decoder.feed(ByteBuffer(bytes: body[..<65_536]))
        #expect(first.reduce(0) { $0 + $1.readableBytes } > 65_000)
        _ = try decoder.feed(ByteBuffer(bytes: body[65_536...]))
        _ = try decoder.finish()
    }

    @Test func botocoreUnsignedTrailerShape() throws {
        let body = bytes("5\r\nhello\r\n0\r\nx-amz-checksum-crc32:NhCmhg==\r\n\r\n")
        let (payload, trailers) = try decode(
            body, split: .byteByByte, mode: .streamingUnsignedTrailer, signing: nil,
            declaredTrailers: ["x-amz-checksum-crc32"], decodedContentLength: 5)
        #expect(payload == bytes("hello"))
        #expect(trailers.count == 1)
        #expect(trailers.first?.name == "x-amz-checksum-crc32")
        #expect(trailers.first?.value == "NhCmhg==")
        #expect(Base64.encode(ChecksumAlgorithm.crc32.checksum(of: payload)) == "NhCmhg==")
    }

    /// Tolerated variants of the end of the stream and of chunk headers.
    @Test(arguments: [
        "5\r\nhello\r\n0\r\nx-amz-checksum-crc32:NhCmhg==\r\n",  // final CRLF missing
        "5\r\nhello\r\n0\r\nx-amz-checksum-crc32:NhCmhg==\r\n\r",  // half of it
        "5\r\nhello\r\n0\r\nX-Amz-Checksum-CRC32 :  NhCmhg== \r\n\r\n",  // name case, spaces
        "5;ext=1\r\nhello\r\n0;chunk-signature=\(String(repeating: "0", count: 64))\r\nx-amz-checksum-crc32:NhCmhg==\r\n\r\n",
        "05 \r\nhello\r\n000\r\nx-amz-checksum-crc32:NhCmhg==\r\n\r\n",  // leading zeros, trailing space
    ])
    func unsignedTrailerTolerance(text: String) throws {
        let (payload, trailers) = try decode(
            bytes(text), split: .whole, mode: .streamingUnsignedTrailer, signing: nil,
            declaredTrailers: ["x-amz-checksum-crc32"])
        #expect(payload == bytes("hello"))
        #expect(trailers.first?.value == "NhCmhg==")
    }

    @Test(arguments: [Split.whole, .byteByByte])
    func signedModeMissingFinalCRLFTolerated(split: Split) throws {
        var body = validBody(bytes("hello"), chunkSize: 2, mode: .streamingSigned).body
        body.removeLast(2)
        let (payload, _) = try decode(body, split: split, mode: .streamingSigned, signing: testContext)
        #expect(payload == bytes("hello"))
    }

    @Test func noTrailersInTrailerMode() throws {
        let (payload, trailers) = try decode(
            bytes("3\r\nabc\r\n0\r\n\r\n"), split: .whole, mode: .streamingUnsignedTrailer, signing: nil)
        #expect(payload == bytes("abc"))
        #expect(trailers.isEmpty)
    }

    /// Malformed bodies (unsigned-trailer mode, trailer `x-amz-checksum-crc32` declared) and their errors.
    @Test(arguments: [
        ("zz\r\nhello\r\n0\r\n\r\n", SigV4Error.Code.invalidChunkSize),
        ("-5\r\nhello\r\n0\r\n\r\n", .invalidChunkSize),
        ("0x5\r\nhello\r\n0\r\n\r\n", .invalidChunkSize),
        ("\r\nhello\r\n0\r\n\r\n", .invalidChunkSize),
        (";chunk-signature=00\r\nhello\r\n0\r\n\r\n", .invalidChunkSize),
        ("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF\r\n", .invalidChunkSize),
        ("7FFFFFFFFFFFFFFF\r\n", .invalidChunkSize),
        ("1000001\r\n", .invalidChunkSize),  // over the 16 MiB default
        ("5\nhello\r\n0\r\n\r\n", .invalidRequest),  // bare LF
        ("5\r\nhelloX\r\n0\r\n\r\n", .invalidRequest),  // data longer than the size
        ("5\r\nhello0\r\n\r\n", .invalidRequest),  // CRLF after data missing
        ("5\r\nhello\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\nextra", .invalidRequest),
        ("5\r\nhello\r\n0\r\nx-amz-checksum-crc32c:AAAAAA==\r\n\r\n", .malformedTrailer),  // undeclared
        ("5\r\nhello\r\n0\r\n\r\n", .malformedTrailer),  // declared trailer missing
        ("5\r\nhello\r\n0\r\nx-amz-checksum-crc32\r\n\r\n", .malformedTrailer),  // no colon
        ("5\r\nhello\r\n0\r\n:AAAAAA==\r\n\r\n", .malformedTrailer),
        ("5\r\nhello\r\n0\r\nx-amz-checksum-crc32:A\r\nx-amz-checksum-crc32:A\r\n\r\n", .malformedTrailer),
        ("5\r\nhello\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\n\r\n", .malformedTrailer),  // bare LF in trailers
        ("5\r\nhello\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\nx-amz-trailer-signature:\(String(repeating: "0", count: 64))\r\n\r\n",
         .malformedTrailer),  // trailer signature in unsigned mode
        ("5\r\nhello\r\n0\r\nx-amz-checksum-crc32:\(String(repeating: "A", count: 5000))\r\n\r\n", .malformedTrailer),
        ("5\r\nhel", .incompleteBody),
        ("5\r\nhello\r\n", .incompleteBody),
        ("5\r\nhello\r\n0", .incompleteBody),
        ("5\r\nhello\r\n0\r\nx-amz-checksum-crc32:AAA", .incompleteBody),
        ("", .incompleteBody),
        ("5" + String(repeating: " ", count: 5000) + "\r\n", .invalidChunkSize),  // header line too long
    ])
    func malformedBodies(text: String, code: SigV4Error.Code) {
        for split in [Split.whole, .byteByByte] {
            expectSigV4Error(code) { () throws(SigV4Error) in
                try decode(
                    bytes(text), split: split, mode: .streamingUnsignedTrailer, signing: nil,
                    declaredTrailers: ["x-amz-checksum-crc32"])
            }
        }
    }

    @Test func maxChunkSizeIsEnforced() throws {
        let body = bytes("10\r\n0123456789abcdef\r\n0\r\n\r\n")
        _ = try decode(body, split: .whole, mode: .streamingUnsignedTrailer, signing: nil, maxChunkSize: 16)
        expectSigV4Error(.invalidChunkSize) { () throws(SigV4Error) in
            try decode(body, split: .whole, mode: .streamingUnsignedTrailer, signing: nil, maxChunkSize: 15)
        }
        // Huge limits must not overflow either.
        expectSigV4Error(.invalidChunkSize) { () throws(SigV4Error) in
            try decode(
                bytes("FFFFFFFFFFFFFFFFFFFF\r\n"), split: .whole, mode: .streamingUnsignedTrailer, signing: nil,
                maxChunkSize: .max)
        }
    }

    @Test func decodedContentLength() {
        let body = validBody(bytes("hello"), chunkSize: 2, mode: .streamingSigned).body
        expectSigV4Error(.incompleteBody) { () throws(SigV4Error) in
            try decode(body, split: .whole, mode: .streamingSigned, signing: testContext, decodedContentLength: 6)
        }
        expectSigV4Error(.invalidRequest) { () throws(SigV4Error) in
            try decode(body, split: .whole, mode: .streamingSigned, signing: testContext, decodedContentLength: 4)
        }
    }

    @Test(arguments: [SigV4.PayloadMode.streamingSigned, .streamingSignedTrailer])
    func everyCorruptedByteIsDetected(mode: SigV4.PayloadMode) {
        let payload = bytes("The quick brown fox")
        let (body, declared) = validBody(payload, chunkSize: 8, mode: mode)
        // Flip each byte in turn: the body must never decode successfully to anything.
        for index in body.indices {
            var corrupted = body
            corrupted[index] ^= 0x01
            do {
                let (decoded, trailers) = try decode(
                    corrupted, split: .whole, mode: mode, signing: testContext, declaredTrailers: declared)
                // Only an equivalent spelling may pass: hex case of a size or signature digit, or trailer
                // whitespace; the payload and the trailers must then be unchanged.
                #expect(decoded == payload, "byte \(index)")
                #expect(trailers.map(\.name) == declared, "byte \(index)")
            } catch {
                #expect(error.code != .incompleteBody || index >= body.count - 2, "byte \(index): \(error)")
            }
        }
    }

    @Test func corruptedChunkSignature() {
        var body = validBody(bytes("hello world"), chunkSize: 4, mode: .streamingSigned).body
        let signatureStart = body.firstIndex(of: UInt8(ascii: "="))! + 1
        body[signatureStart] = body[signatureStart] == UInt8(ascii: "0") ? UInt8(ascii: "1") : UInt8(ascii: "0")
        expectSigV4Error(.signatureDoesNotMatch) { () throws(SigV4Error) in
            try decode(body, split: .whole, mode: .streamingSigned, signing: testContext)
        }
    }

    @Test func chunksCannotBeReorderedOrDropped() {
        let payload = bytes("aaaabbbbcccc")
        let body = validBody(payload, chunkSize: 4, mode: .streamingSigned).body
        let text = String(decoding: body, as: UTF8.self)
        var lines = text.components(separatedBy: "\r\n")
        // lines: [h1, aaaa, h2, bbbb, h3, cccc, h0, "", ""]
        lines.swapAt(0, 2)
        lines.swapAt(1, 3)
        expectSigV4Error(.signatureDoesNotMatch) { () throws(SigV4Error) in
            try decode(bytes(lines.joined(separator: "\r\n")), split: .whole, mode: .streamingSigned, signing: testContext)
        }
        var dropped = text.components(separatedBy: "\r\n")
        dropped.removeSubrange(2...3)
        expectSigV4Error(.signatureDoesNotMatch) { () throws(SigV4Error) in
            try decode(bytes(dropped.joined(separator: "\r\n")), split: .whole, mode: .streamingSigned, signing: testContext)
        }
    }

    @Test func signedModeRequiresChunkSignatures() {
        expectSigV4Error(.signatureDoesNotMatch) { () throws(SigV4Error) in
            try decode(bytes("5\r\nhello\r\n0\r\n\r\n"), split: .whole, mode: .streamingSigned, signing: testContext)
        }
        expectSigV4Error(.signatureDoesNotMatch) { () throws(SigV4Error) in
            try decode(
                bytes("5;chunk-signature=abc\r\nhello\r\n0\r\n\r\n"), split: .whole, mode: .streamingSigned,
                signing: testContext)
        }
    }

    @Test func signedTrailerVariants() throws {
        let payload = bytes("hello")
        let (body, declared) = validBody(payload, chunkSize: 5, mode: .streamingSignedTrailer)
        let text = String(decoding: body, as: UTF8.self)
        let signatureLine = try #require(text.range(of: "x-amz-trailer-signature:"))

        // Wrong trailer value: the trailer signature no longer matches.
        let changedValue = text.replacingOccurrences(of: "x-amz-checksum-crc32:", with: "x-amz-checksum-crc32:A")
        expectSigV4Error(.signatureDoesNotMatch) { () throws(SigV4Error) in
            try decode(bytes(changedValue), split: .whole, mode: .streamingSignedTrailer, signing: testContext,
                       declaredTrailers: declared)
        }
        // Missing trailer signature.
        let withoutSignature = String(text[..<signatureLine.lowerBound]) + "\r\n"
        expectSigV4Error(.signatureDoesNotMatch) { () throws(SigV4Error) in
            try decode(bytes(withoutSignature), split: .whole, mode: .streamingSignedTrailer, signing: testContext,
                       declaredTrailers: declared)
        }
        // Malformed trailer signature.
        let shortSignature = String(text[..<signatureLine.upperBound]) + "abcd\r\n\r\n"
        expectSigV4Error(.signatureDoesNotMatch) { () throws(SigV4Error) in
            try decode(bytes(shortSignature), split: .whole, mode: .streamingSignedTrailer, signing: testContext,
                       declaredTrailers: declared)
        }
        // A trailer after the signature.
        let trailing = String(text.dropLast(1)) + "x-amz-checksum-crc32:AAAAAA==\r\n\r\n"  // "\r\n" is one Character
        expectSigV4Error(.malformedTrailer) { () throws(SigV4Error) in
            try decode(bytes(trailing), split: .whole, mode: .streamingSignedTrailer, signing: testContext,
                       declaredTrailers: declared)
        }
        // Missing final CRLF is tolerated, and the signature is still checked.
        let (decoded, trailers) = try decode(
            Array(body.dropLast(2)), split: .byteByByte, mode: .streamingSignedTrailer, signing: testContext,
            declaredTrailers: declared)
        #expect(decoded == payload)
        #expect(trailers.count == 1)
    }

    @Test(arguments: streamingModes)
    func everyTruncationIsRejected(mode: SigV4.PayloadMode) {
        let (body, declared) = validBody(bytes("0123456789abcdef"), chunkSize: 5, mode: mode)
        for cut in 0..<(body.count - 2) {
            expectSigV4Error(.incompleteBody) { () throws(SigV4Error) in
                try decode(Array(body[..<cut]), split: .whole, mode: mode, signing: testContext, declaredTrailers: declared)
            }
        }
    }

    @Test func errorsAreSticky() {
        var decoder = AwsChunkedDecoder(
            mode: .streamingUnsignedTrailer, signing: nil, declaredTrailers: [], decodedContentLength: nil)
        expectSigV4Error(.invalidChunkSize) { () throws(SigV4Error) in try decoder.feed(ByteBuffer(string: "x\r\n")) }
        expectSigV4Error(.invalidChunkSize) { () throws(SigV4Error) in try decoder.feed(ByteBuffer(string: "0\r\n\r\n")) }
        expectSigV4Error(.invalidChunkSize) { () throws(SigV4Error) in try decoder.finish() }
    }

    @Test func misuseIsAnErrorNotACrash() {
        var plain = AwsChunkedDecoder(mode: .unsigned, signing: nil, declaredTrailers: [], decodedContentLength: nil)
        expectSigV4Error(.invalidRequest) { () throws(SigV4Error) in try plain.feed(ByteBuffer(string: "0\r\n\r\n")) }
        var unsignedContext = AwsChunkedDecoder(
            mode: .streamingSigned, signing: nil, declaredTrailers: [], decodedContentLength: nil)
        expectSigV4Error(.invalidRequest) { () throws(SigV4Error) in try unsignedContext.finish() }
        var empty = AwsChunkedDecoder(
            mode: .streamingUnsignedTrailer, signing: nil, declaredTrailers: [], decodedContentLength: nil)
        #expect(throws: Never.self) { try empty.feed(ByteBuffer()) }
    }
}
