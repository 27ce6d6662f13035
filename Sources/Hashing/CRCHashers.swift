import CChecksums
import CZlib

/// Incremental CRC-32 (ISO-HDLC, the zlib/gzip CRC) for `x-amz-checksum-crc32`.
public struct CRC32Hasher: IncrementalHasher, Sendable, Hashable {
    /// The CRC-32 of everything fed so far (0 when empty). Settable to resume from a stored CRC.
    public var value: UInt32

    /// Creates a hasher in the empty state.
    public init() { value = 0 }

    /// Creates a hasher that continues from `value`, the CRC-32 of some earlier bytes.
    public init(value: UInt32) { self.value = value }

    /// Feeds `bytes` into the CRC (zlib's braided kernel, chunked to its 32-bit length).
    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard var base = bytes.baseAddress?.assumingMemoryBound(to: Bytef.self) else { return }
        var remaining = bytes.count
        var crc = UInt(value)
        while remaining > 0 {
            let n = min(remaining, 1 << 30)
            crc = crc32(crc, base, uInt(n))
            base += n
            remaining -= n
        }
        value = UInt32(truncatingIfNeeded: crc)
    }

    /// Returns the 4 big-endian CRC bytes and resets the hasher.
    public mutating func finalize() -> [UInt8] {
        defer { value = 0 }
        return bigEndianBytes(value)
    }

    /// CRC-32 of A‖B given `crcA` = crc(A), `crcB` = crc(B) and B's length in bytes.
    public static func combine(_ crcA: UInt32, _ crcB: UInt32, lengthOfB: UInt64) -> UInt32 {
        cc_crc32_combine(crcA, crcB, lengthOfB)
    }
}

/// Incremental CRC-32C (Castagnoli) for `x-amz-checksum-crc32c`; SSE4.2 when available.
public struct CRC32CHasher: IncrementalHasher, Sendable, Hashable {
    /// The CRC-32C of everything fed so far (0 when empty). Settable to resume from a stored CRC.
    public var value: UInt32

    /// Creates a hasher in the empty state.
    public init() { value = 0 }

    /// Creates a hasher that continues from `value`, the CRC-32C of some earlier bytes.
    public init(value: UInt32) { self.value = value }

    /// Feeds `bytes` into the CRC.
    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        value = cc_crc32c_update(value, bytes.baseAddress, bytes.count)
    }

    /// Returns the 4 big-endian CRC bytes and resets the hasher.
    public mutating func finalize() -> [UInt8] {
        defer { value = 0 }
        return bigEndianBytes(value)
    }

    /// CRC-32C of A‖B given `crcA` = crc(A), `crcB` = crc(B) and B's length in bytes.
    public static func combine(_ crcA: UInt32, _ crcB: UInt32, lengthOfB: UInt64) -> UInt32 {
        cc_crc32c_combine(crcA, crcB, lengthOfB)
    }

    /// Whether this process computes CRC-32C with the CPU's `crc32` instruction.
    public static var usesHardware: Bool { cc_crc32c_hardware() != 0 }
}

/// Incremental CRC-64/NVME for `x-amz-checksum-crc64nvme` (reflected poly 0x9A6C9329AC4BC9B5, init and xorout ~0).
public struct CRC64NVMEHasher: IncrementalHasher, Sendable, Hashable {
    /// The CRC-64/NVME of everything fed so far (0 when empty). Settable to resume from a stored CRC.
    public var value: UInt64

    /// Creates a hasher in the empty state.
    public init() { value = 0 }

    /// Creates a hasher that continues from `value`, the CRC-64/NVME of some earlier bytes.
    public init(value: UInt64) { self.value = value }

    /// Feeds `bytes` into the CRC.
    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        value = cc_crc64nvme_update(value, bytes.baseAddress, bytes.count)
    }

    /// Returns the 8 big-endian CRC bytes and resets the hasher.
    public mutating func finalize() -> [UInt8] {
        defer { value = 0 }
        return bigEndianBytes(value)
    }

    /// CRC-64/NVME of A‖B given `crcA` = crc(A), `crcB` = crc(B) and B's length in bytes.
    public static func combine(_ crcA: UInt64, _ crcB: UInt64, lengthOfB: UInt64) -> UInt64 {
        cc_crc64nvme_combine(crcA, crcB, lengthOfB)
    }
}

/// The big-endian bytes of `value`.
func bigEndianBytes<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
    withUnsafeBytes(of: value.bigEndian) { Array($0) }
}

extension CRC32CHasher {
    /// CRC-32C of `bytes` with the hardware (when present) or the portable kernel; for tests only.
    @_spi(Testing)
    public static func crcForTesting(_ bytes: UnsafeRawBufferPointer, software: Bool) -> UInt32 {
        software
            ? cc_crc32c_update_sw(0, bytes.baseAddress, bytes.count)
            : cc_crc32c_update(0, bytes.baseAddress, bytes.count)
    }
}
