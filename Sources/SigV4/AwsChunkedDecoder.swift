public import NIOCore
import Hashing

/// Decodes an `aws-chunked` request body (S3 streaming uploads) incrementally and checks its signatures.
///
/// Wire format (AWS "Transferring Payload in Multiple Chunks" and "Including Trailing Headers"):
/// ```
/// hex-size[;chunk-signature=<64 hex>]\r\n <data> \r\n      (repeated)
/// 0[;chunk-signature=<64 hex>]\r\n                         (final, empty chunk)
/// name:value\r\n …                                         (trailer modes only)
/// x-amz-trailer-signature:<64 hex>\r\n                      (signed-trailer mode only)
/// \r\n
/// ```
/// In the signed modes every chunk signature chains from the previous one (the first from the seed
/// signature), and the trailer signature chains from the final chunk's signature.
///
/// A pure state machine: feed it the raw body in pieces of any size with ``feed(_:)`` and call ``finish()``
/// at the end of the input. Memory stays bounded (a chunk's data is never buffered).
///
/// - Important: ``feed(_:)`` releases payload bytes before the signature of the chunk holding them has been
///   checked. The caller MUST NOT make anything derived from the body visible (commit an object or part,
///   answer success) until ``finish()`` has returned without throwing; after any thrown error the caller MUST
///   discard everything it received.
///
/// Tolerances, matching real clients: chunk extensions other than `chunk-signature` are ignored; unsigned
/// mode ignores chunk signatures; the last `\r\n` after the trailers (or after the final chunk) may be missing
/// at the end of the stream; botocore's `0\r\nname:value\r\n\r\n` shape is the normal form.
public struct AwsChunkedDecoder {
    /// Longest chunk-header or trailer line accepted, in bytes (without CRLF).
    public static let maxLineLength = 4096
    /// Largest total size of the trailer section, in bytes.
    public static let maxTrailerSectionLength = 16 * 1024

    private enum State {
        case chunkHeader
        case chunkData(remaining: Int)
        case chunkDataEnd(sawCR: Bool)
        case trailers
        case done
        case failed(SigV4Error)
    }

    private let mode: SigV4.PayloadMode
    private let signing: SigV4.SigningContext?
    private let declaredTrailers: [String]
    private let decodedContentLength: Int?
    private let maxChunkSize: Int

    private var state: State
    private var line: [UInt8] = []
    private var previousSignature: String
    private var providedChunkSignature: [UInt8] = []
    private var chunkHasher = SHA256Hasher()
    private var decodedCount = 0
    private var trailerSectionLength = 0
    private var trailers: [(name: String, value: String)] = []
    private var trailerSignature: [UInt8]?

    private var verifiesSignatures: Bool { mode == .streamingSigned || mode == .streamingSignedTrailer }

    /// Creates a decoder for one request body.
    /// - Parameters:
    ///   - mode: One of the streaming modes; any other mode makes the first ``feed(_:)`` throw `InvalidRequest`.
    ///   - signing: From ``SigV4/verify(_:head:secretKey:now:maxSkew:)``; required for the two signed modes
    ///     (without it the first call throws), ignored for `.streamingUnsignedTrailer`.
    ///   - declaredTrailers: The names listed in `x-amz-trailer`, lowercased. In trailer modes every declared
    ///     trailer MUST arrive and no other may.
    ///   - decodedContentLength: `x-amz-decoded-content-length`, when sent; the decoded size must equal it.
    ///   - maxChunkSize: Largest chunk accepted, in bytes.
    public init(
        mode: SigV4.PayloadMode, signing: SigV4.SigningContext?, declaredTrailers: [String],
        decodedContentLength: Int?, maxChunkSize: Int = 16 << 20
    ) {
        self.mode = mode
        self.signing = signing
        self.declaredTrailers = declaredTrailers.map { asciiLowercased($0[...].trimmingASCIISpaces()) }
        self.decodedContentLength = decodedContentLength
        self.maxChunkSize = max(0, maxChunkSize)
        self.previousSignature = signing?.seedSignature ?? ""
        if !mode.isStreaming {
            state = .failed(SigV4Error(.invalidRequest, "The payload is not aws-chunked encoded."))
        } else if (mode == .streamingSigned || mode == .streamingSignedTrailer) && signing == nil {
            state = .failed(SigV4Error(.invalidRequest, "A signed streaming payload requires a signed request."))
        } else {
            state = .chunkHeader
        }
    }

    /// Consumes the next piece of the raw body.
    /// - Parameter input: Raw body bytes (its readable bytes); any split is allowed.
    /// - Returns: Decoded payload slices, in order, released as soon as they are framed (see the type's
    ///   contract: not yet signature-checked).
    /// - Throws: `InvalidChunkSizeError`, `SignatureDoesNotMatch`, `MalformedTrailerError`, `InvalidRequest`,
    ///   `IncompleteBody`. After an error the decoder stays failed.
    public mutating func feed(_ input: ByteBuffer) throws(SigV4Error) -> [ByteBuffer] {
        if case .failed(let error) = state { throw error }
        var buffer = input
        var output: [ByteBuffer] = []
        do throws(SigV4Error) {
            while buffer.readableBytes > 0 {
                switch state {
                case .chunkHeader:
                    if let header = try takeLine(&buffer, malformed: framingError("chunk header is not terminated by CRLF")) {
                        try handleChunkHeader(header)
                    }
                case .chunkData(let remaining):
                    let count = min(remaining, buffer.readableBytes)
                    guard let slice = buffer.readSlice(length: count) else { break }
                    try accountDecoded(count)
                    if verifiesSignatures { chunkHasher.update(slice) }
                    output.append(slice)
                    if count == remaining {
                        try completeChunk()
                        state = .chunkDataEnd(sawCR: false)
                    } else {
                        state = .chunkData(remaining: remaining - count)
                    }
                case .chunkDataEnd(let sawCR):
                    guard let byte = buffer.readInteger(as: UInt8.self) else { break }
                    if !sawCR, byte == UInt8(ascii: "\r") {
                        state = .chunkDataEnd(sawCR: true)
                    } else if sawCR, byte == UInt8(ascii: "\n") {
                        state = .chunkHeader
                    } else {
                        throw framingError("chunk data is not followed by CRLF")
                    }
                case .trailers:
                    if let trailerLine = try takeLine(&buffer, malformed: trailerError("a trailer line is not terminated by CRLF")) {
                        try handleTrailerLine(trailerLine)
                    }
                case .done:
                    throw SigV4Error(.invalidRequest, "Unexpected data after the end of the aws-chunked body.")
                case .failed(let error):
                    throw error
                }
            }
        } catch {
            state = .failed(error)
            throw error
        }
        return output
    }

    /// Ends the body: checks that the final chunk and the trailer section were complete, verifies the trailer
    /// signature (signed-trailer mode) and the decoded length.
    /// - Returns: The trailing headers, names lowercased, values trimmed, in arrival order
    ///   (e.g. `("x-amz-checksum-crc32", "AAAAAA==")`); without `x-amz-trailer-signature`.
    ///   The caller MUST still compare checksum trailers with the body (`BadDigest`).
    /// - Throws: `IncompleteBody` for a truncated body, plus the errors of ``feed(_:)``.
    public mutating func finish() throws(SigV4Error) -> [(name: String, value: String)] {
        switch state {
        case .failed(let error):
            throw error
        case .done:
            return trailers
        case .trailers where line.isEmpty || line == [UInt8(ascii: "\r")]:
            // Tolerated: the stream ended right after the last trailer line (or the final chunk) without
            // the closing empty line.
            do throws(SigV4Error) {
                line.removeAll()
                // Without the closing empty line, a missing declared trailer or trailer signature means the
                // stream was cut short rather than malformed.
                if mode.hasTrailer {
                    let missingDeclared = declaredTrailers.contains { name in !trailers.contains { $0.name == name } }
                    let missingSignature = mode == .streamingSignedTrailer && !trailers.isEmpty && trailerSignature == nil
                    if missingDeclared || missingSignature {
                        throw SigV4Error(.incompleteBody, "The aws-chunked body ended inside its trailer section.")
                    }
                }
                try completeTrailers()
                state = .done
                return trailers
            } catch {
                state = .failed(error)
                throw error
            }
        default:
            let error = SigV4Error(.incompleteBody, "The aws-chunked body ended before its final chunk.")
            state = .failed(error)
            throw error
        }
    }

    // MARK: - framing

    private func framingError(_ what: String) -> SigV4Error {
        SigV4Error(.invalidRequest, "Malformed aws-chunked body: \(what).")
    }

    private func trailerError(_ what: String) -> SigV4Error {
        SigV4Error(.malformedTrailer, "The request contained trailing data that was not well-formed: \(what).")
    }

    /// Moves bytes into `line` up to a LF. Returns the complete line without its CRLF, or nil if more input
    /// is needed.
    private mutating func takeLine(_ buffer: inout ByteBuffer, malformed: SigV4Error) throws(SigV4Error) -> [UInt8]? {
        let newline = buffer.withUnsafeReadableBytes { $0.firstIndex(of: UInt8(ascii: "\n")) }
        let take = newline.map { $0 + 1 } ?? buffer.readableBytes
        let limit = Self.maxLineLength + 2
        guard line.count + take <= limit else {
            if case .trailers = state { throw trailerError("a trailer line is too long") }
            throw SigV4Error(.invalidChunkSize, "The chunk header is too long.")
        }
        if case .trailers = state {
            trailerSectionLength += take
            guard trailerSectionLength <= Self.maxTrailerSectionLength else {
                throw trailerError("the trailer section is too large")
            }
        }
        buffer.withUnsafeReadableBytes { line.append(contentsOf: $0.prefix(take)) }
        buffer.moveReaderIndex(forwardBy: take)
        guard newline != nil else { return nil }
        defer { line.removeAll(keepingCapacity: true) }
        guard line.count >= 2, line[line.count - 2] == UInt8(ascii: "\r") else { throw malformed }
        return Array(line.dropLast(2))
    }

    private mutating func handleChunkHeader(_ header: [UInt8]) throws(SigV4Error) {
        let semicolon = header.firstIndex(of: UInt8(ascii: ";")) ?? header.endIndex
        let sizeField = header[..<semicolon].trimmingSpaces()
        guard !sizeField.isEmpty else {
            throw SigV4Error(.invalidChunkSize, "The chunk size is missing.")
        }
        var size = 0
        for byte in sizeField {
            guard let digit = hexValue(byte) else {
                throw SigV4Error(.invalidChunkSize, "The chunk size is not a hexadecimal number.")
            }
            // Checked before every shift, so huge sizes never overflow.
            guard size <= (Int.max >> 4) else {
                throw SigV4Error(.invalidChunkSize, "The chunk size exceeds the maximum of \(maxChunkSize) bytes.")
            }
            size = size << 4 | digit
            guard size <= maxChunkSize else {
                throw SigV4Error(.invalidChunkSize, "The chunk size exceeds the maximum of \(maxChunkSize) bytes.")
            }
        }
        var signature: [UInt8]?
        if semicolon < header.endIndex {
            for extensionField in header[(semicolon + 1)...].split(separator: UInt8(ascii: ";"), omittingEmptySubsequences: false) {
                let field = extensionField.trimmingSpaces()
                guard let eq = field.firstIndex(of: UInt8(ascii: "=")) else { continue }
                guard field[..<eq].trimmingSpaces().elementsEqual("chunk-signature".utf8) else { continue }
                guard signature == nil else { throw framingError("repeated chunk-signature") }
                signature = Array(field[(eq + 1)...].trimmingSpaces())
            }
        }
        if verifiesSignatures {
            guard let signature, signature.count == 64, let decoded = Hex.decode(String(decoding: signature, as: UTF8.self)) else {
                throw SigV4Error(
                    .signatureDoesNotMatch, "The chunk signature is missing or malformed.")
            }
            providedChunkSignature = decoded
        }
        if size == 0 {
            try completeChunk()  // the final chunk is signed over empty data
            if let declared = decodedContentLength, decodedCount != declared {
                throw SigV4Error(
                    .incompleteBody,
                    "The decoded body has \(decodedCount) bytes but x-amz-decoded-content-length is \(declared).")
            }
            state = .trailers
        } else {
            state = .chunkData(remaining: size)
        }
    }

    private mutating func accountDecoded(_ count: Int) throws(SigV4Error) {
        decodedCount += count
        if let declared = decodedContentLength, decodedCount > declared {
            throw SigV4Error(.invalidRequest, "The decoded body is longer than x-amz-decoded-content-length.")
        }
    }

    /// Verifies the signature of the chunk whose data just ended (signed modes) and advances the chain.
    private mutating func completeChunk() throws(SigV4Error) {
        guard verifiesSignatures, let signing else { return }
        let expected = signing.chunkSignature(previousSignature: previousSignature, chunkSHA256: chunkHasher.finalize())
        guard constantTimeEqual(expected, providedChunkSignature) else {
            throw SigV4Error(
                .signatureDoesNotMatch,
                "The request signature we calculated does not match the signature you provided (chunk).",
                detail: "chunk ending at decoded offset \(decodedCount)")
        }
        previousSignature = Hex.encode(expected)
    }

    // MARK: - trailers

    private mutating func handleTrailerLine(_ text: [UInt8]) throws(SigV4Error) {
        if text.isEmpty {
            try completeTrailers()
            state = .done
            return
        }
        guard mode.hasTrailer else {
            throw SigV4Error(.invalidRequest, "Unexpected data after the final chunk of the aws-chunked body.")
        }
        guard let colon = text.firstIndex(of: UInt8(ascii: ":")) else {
            throw trailerError("a trailer line has no ':'")
        }
        let name = asciiLowercased(String(decoding: text[..<colon].trimmingSpaces(), as: UTF8.self))
        let value = String(decoding: text[(colon + 1)...].trimmingSpaces(), as: UTF8.self)
        guard !name.isEmpty else { throw trailerError("a trailer name is empty") }
        guard trailerSignature == nil else { throw trailerError("a trailer follows x-amz-trailer-signature") }
        if name == "x-amz-trailer-signature" {
            guard mode == .streamingSignedTrailer else { throw trailerError("unexpected x-amz-trailer-signature") }
            guard value.utf8.count == 64, let decoded = Hex.decode(value) else {
                throw SigV4Error(.signatureDoesNotMatch, "The trailer signature is malformed.")
            }
            trailerSignature = decoded
            return
        }
        guard declaredTrailers.contains(name) else {
            throw trailerError("the trailer \"\(name.prefix(64))\" was not declared in x-amz-trailer")
        }
        guard !trailers.contains(where: { $0.name == name }) else {
            throw trailerError("the trailer \"\(name)\" is repeated")
        }
        trailers.append((name, value))
    }

    private mutating func completeTrailers() throws(SigV4Error) {
        guard mode.hasTrailer else { return }
        for name in declaredTrailers where !trailers.contains(where: { $0.name == name }) {
            throw trailerError("the declared trailer \"\(name.prefix(64))\" is missing")
        }
        guard mode == .streamingSignedTrailer, let signing else { return }
        guard let provided = trailerSignature else {
            if trailers.isEmpty { return }
            throw SigV4Error(.signatureDoesNotMatch, "The trailer signature is missing.")
        }
        let expected = signing.trailerSignature(
            previousSignature: previousSignature, canonicalTrailers: SigV4.canonicalTrailers(trailers))
        guard constantTimeEqual(expected, provided) else {
            throw SigV4Error(
                .signatureDoesNotMatch,
                "The request signature we calculated does not match the signature you provided (trailer).")
        }
    }
}

extension Collection where Element == UInt8, SubSequence: BidirectionalCollection {
    /// Drops leading and trailing spaces and tabs.
    func trimmingSpaces() -> SubSequence {
        let isSpace = { (c: UInt8) in c == 0x20 || c == 0x09 }
        var slice = self[...]
        while let first = slice.first, isSpace(first) { slice = slice.dropFirst() }
        while let last = slice.last, isSpace(last) { slice = slice.dropLast() }
        return slice
    }
}
