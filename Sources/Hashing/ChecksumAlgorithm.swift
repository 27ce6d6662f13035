/// The S3 additional checksum algorithms (`x-amz-checksum-*`).
public enum ChecksumAlgorithm: String, Sendable, CaseIterable, Hashable, Codable {
    /// CRC-32 (ISO-HDLC, as zlib), 4 bytes.
    case crc32 = "CRC32"
    /// CRC-32C (Castagnoli), 4 bytes.
    case crc32c = "CRC32C"
    /// CRC-64/NVME, 8 bytes.
    case crc64nvme = "CRC64NVME"
    /// SHA-1, 20 bytes.
    case sha1 = "SHA1"
    /// SHA-256, 32 bytes.
    case sha256 = "SHA256"

    private static let headerPrefix = "x-amz-checksum-"

    /// Parses a checksum header name, e.g. `x-amz-checksum-crc32` (case-insensitive) → `.crc32`.
    ///
    /// Other `x-amz-checksum-` headers (`-algorithm`, `-type`, `-mode`) yield `nil`.
    public init?(headerName: String) {
        let lowered = headerName.lowercased()
        guard lowered.hasPrefix(Self.headerPrefix) else { return nil }
        self.init(name: String(lowered.dropFirst(Self.headerPrefix.count)))
    }

    /// Parses an algorithm name as sent in `x-amz-checksum-algorithm` / `x-amz-sdk-checksum-algorithm`
    /// (case-insensitive: `CRC32`, `crc32c`, …).
    public init?(name: String) {
        self.init(rawValue: name.uppercased())
    }

    /// The lowercase header carrying this checksum, e.g. `x-amz-checksum-crc32`.
    public var headerName: String { Self.headerPrefix + rawValue.lowercased() }

    /// Length in bytes of the raw (not base64) checksum value.
    public var byteCount: Int {
        switch self {
        case .crc32, .crc32c: 4
        case .crc64nvme: 8
        case .sha1: 20
        case .sha256: 32
        }
    }

    /// A fresh hasher for this algorithm; its `finalize()` yields `byteCount` bytes.
    public func makeHasher() -> any IncrementalHasher {
        switch self {
        case .crc32: CRC32Hasher()
        case .crc32c: CRC32CHasher()
        case .crc64nvme: CRC64NVMEHasher()
        case .sha1: SHA1Hasher()
        case .sha256: SHA256Hasher()
        }
    }

    /// The checksum of `bytes` in one call.
    public func checksum(of bytes: UnsafeRawBufferPointer) -> [UInt8] {
        var hasher = makeHasher()
        hasher.update(bytes)
        return hasher.finalize()
    }

    /// The checksum of `bytes` in one call.
    public func checksum(of bytes: [UInt8]) -> [UInt8] {
        bytes.withUnsafeBytes { checksum(of: $0) }
    }
}
