public import NIOCore

/// A running digest or checksum: feed bytes with `update`, read the result with `finalize`.
///
/// Conforming types are value types. They are not `Sendable`: one owner at a time mutates a hasher.
/// Copying a hasher is always safe and yields an independent hasher with the same state
/// (the OpenSSL-backed ones copy their context on write).
public protocol IncrementalHasher {
    /// Feeds `bytes` into the hasher.
    mutating func update(_ bytes: UnsafeRawBufferPointer)
    /// Feeds the readable bytes of `buffer`; the buffer's reader index is not moved.
    mutating func update(_ buffer: ByteBuffer)
    /// Feeds `bytes` into the hasher.
    mutating func update(_ bytes: [UInt8])
    /// Returns the digest (or the big-endian CRC bytes: 4 for CRC-32/32C, 8 for CRC-64)
    /// of everything fed so far, then resets the hasher to its initial, empty state.
    mutating func finalize() -> [UInt8]
}

extension IncrementalHasher {
    /// Feeds the readable bytes of `buffer` without moving its reader index.
    @inlinable
    public mutating func update(_ buffer: ByteBuffer) {
        buffer.withUnsafeReadableBytes { self.update($0) }
    }

    /// Feeds `bytes` into the hasher.
    @inlinable
    public mutating func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { self.update($0) }
    }

    /// Feeds the UTF-8 bytes of `text` into the hasher.
    public mutating func update(_ text: String) {
        var text = text
        text.withUTF8 { self.update(UnsafeRawBufferPointer($0)) }
    }
}
