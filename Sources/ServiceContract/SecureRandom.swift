import COpenSSL
import Hashing

/// Cryptographically secure random bytes (OpenSSL's `RAND_bytes`).
public enum SecureRandom {
    /// `count` random bytes.
    public static func bytes(_ count: Int) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        let rc = bytes.withUnsafeMutableBytes { RAND_bytes($0.baseAddress!.assumingMemoryBound(to: UInt8.self), Int32(count)) }
        precondition(rc == 1, "RAND_bytes failed: the process has no source of randomness")
        return bytes
    }

    /// A random identifier of `bytes` random bytes in lowercase hex, after `prefix`.
    public static func identifier(prefix: String, bytes: Int = 10) -> String {
        prefix + Hex.encode(Self.bytes(bytes))
    }
}

