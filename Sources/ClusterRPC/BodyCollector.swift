import Hashing
import NIOCore

/// Collects a message body as its parts arrive and hashes it on the way, so the SHA-256 that the
/// signature covers costs no second pass. Used for requests (server) and replies (client).
struct BodyCollector {
    private var hasher = SHA256Hasher()
    private var body: ByteBuffer?
    private var expectedLength: Int?
    /// Bytes received of the current body.
    private(set) var received = 0

    /// Starts a new body of `expectedLength` bytes (from `Content-Length`, when given).
    mutating func start(expectedLength: Int?) {
        self.body = nil
        self.expectedLength = expectedLength
        self.received = 0
    }

    /// Takes one part of the body.
    mutating func append(_ part: ByteBuffer, allocator: ByteBufferAllocator) {
        self.received += part.readableBytes
        part.withUnsafeReadableBytes { self.hasher.update($0) }
        if self.body == nil {
            if self.expectedLength == part.readableBytes {
                // The whole body in one read: keep it, no copy.
                self.body = part
            } else {
                var buffer = allocator.buffer(capacity: self.expectedLength ?? part.readableBytes)
                buffer.writeImmutableBuffer(part)
                self.body = buffer
            }
        } else {
            self.body!.writeImmutableBuffer(part)
        }
    }

    /// The body and its SHA-256; the collector is then ready for the next body.
    mutating func finish() -> (body: ByteBuffer, digest: [UInt8]) {
        defer {
            self.body = nil
            self.received = 0
        }
        return (self.body ?? ByteBuffer(), self.hasher.finalize())
    }
}
