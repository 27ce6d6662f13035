import Hashing
import NIOCore
import SigV4

/// Reads a request's payload as the signature declared it: plain, checked against
/// `x-amz-content-sha256`, or decoded from `aws-chunked` with every chunk signature checked.
///
/// The checks complete when ``next()`` returns nil; callers MUST NOT make anything visible (commit an
/// object or part) before that, since bytes are handed out before their chunk's signature is known.
final class PayloadReader {
    private let body: any RequestBody
    private var decoder: AwsChunkedDecoder?
    private var hasher: SHA256Hasher?
    private var expectedSHA256: [UInt8]?
    private var queue: [ByteBuffer] = []
    private var queueIndex = 0
    private var finished = false
    private let maxSize: Int64
    /// Trailing headers of an `aws-chunked` body (e.g. `x-amz-checksum-crc32`), known at the end.
    private(set) var trailers: [(name: String, value: String)] = []
    /// Decoded payload bytes handed out so far.
    private(set) var count: Int64 = 0

    init(body: any RequestBody, context: S3Handler.Context, maxSize: Int64) throws {
        self.body = body
        self.maxSize = maxSize
        switch context.payloadMode {
        case .unsigned:
            break
        case .sha256(let hex):
            guard let expected = Hex.decode(hex), expected.count == 32 else {
                throw S3Error.invalidArgument("x-amz-content-sha256 must be UNSIGNED-PAYLOAD, a streaming mode or a SHA-256 in hex", name: "x-amz-content-sha256", value: hex)
            }
            self.expectedSHA256 = expected
            self.hasher = SHA256Hasher()
        case .streamingSigned, .streamingSignedTrailer, .streamingUnsignedTrailer:
            let declared = (context.header("x-amz-trailer") ?? "")
                .split(separator: ",")
                .map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
                .filter { !$0.isEmpty }
            var decodedLength: Int?
            if let text = context.header("x-amz-decoded-content-length") {
                guard let value = Int(text), value >= 0 else {
                    throw S3Error.invalidArgument("x-amz-decoded-content-length is not valid", name: "x-amz-decoded-content-length", value: text)
                }
                guard Int64(value) <= maxSize else { throw S3Error.entityTooLarge }
                decodedLength = value
            }
            self.decoder = AwsChunkedDecoder(
                mode: context.payloadMode,
                signing: context.payloadMode == .streamingUnsignedTrailer ? nil : context.signing,
                declaredTrailers: declared,
                decodedContentLength: decodedLength
            )
        }
    }

    /// The next piece of the payload, or nil at its end once every check has passed.
    func next() async throws -> ByteBuffer? {
        while true {
            if self.queueIndex < self.queue.count {
                let buffer = self.queue[self.queueIndex]
                self.queueIndex += 1
                if self.queueIndex == self.queue.count {
                    self.queue.removeAll(keepingCapacity: true)
                    self.queueIndex = 0
                }
                return buffer
            }
            if self.finished { return nil }
            guard let raw = try await self.body.next() else {
                self.finished = true
                if self.decoder != nil {
                    self.trailers = try self.decoder!.finish()
                }
                if let expected = self.expectedSHA256, var hasher = self.hasher {
                    guard constantTimeEqual(hasher.finalize(), expected) else {
                        throw S3Error(
                            "XAmzContentSHA256Mismatch", 400,
                            "The provided 'x-amz-content-sha256' header does not match what was computed."
                        )
                    }
                }
                return nil
            }
            if self.decoder != nil {
                for piece in try self.decoder!.feed(raw) where piece.readableBytes > 0 {
                    try self.account(piece)
                    self.queue.append(piece)
                }
            } else {
                self.hasher?.update(raw)
                if raw.readableBytes > 0 {
                    try self.account(raw)
                    self.queue.append(raw)
                }
            }
        }
    }

    private func account(_ buffer: ByteBuffer) throws {
        self.count += Int64(buffer.readableBytes)
        if self.count > self.maxSize { throw S3Error.entityTooLarge }
    }

    /// Reads the whole payload (for XML request bodies), refusing more than `limit` bytes.
    func readAll(limit: Int) async throws -> [UInt8] {
        var bytes: [UInt8] = []
        while let buffer = try await self.next() {
            guard bytes.count + buffer.readableBytes <= limit else {
                throw S3Error.invalidRequest("The request body is too large.")
            }
            bytes.append(contentsOf: buffer.readableBytesView)
        }
        return bytes
    }

    /// The trailer `name` (lowercase), if the body had one.
    func trailer(_ name: String) -> String? {
        self.trailers.first { $0.name.lowercased() == name }?.value
    }
}

import Foundation
