import COpenSSL

/// The OpenSSL message digests this module uses, fetched once from the default provider.
///
/// Fetching once avoids the implicit per-init lookup that `EVP_sha256()` & co. cost on OpenSSL 3.
enum EVPAlgorithm {
    case sha256, sha1, md5

    /// Digest length in bytes.
    var length: Int {
        switch self {
        case .sha256: 32
        case .sha1: 20
        case .md5: 16
        }
    }

    /// The fetched `EVP_MD`.
    var md: OpaquePointer {
        switch self {
        case .sha256: evpSHA256
        case .sha1: evpSHA1
        case .md5: evpMD5
        }
    }
}

private func fetchDigest(_ name: String) -> OpaquePointer {
    guard let md = EVP_MD_fetch(nil, name, nil) else {
        fatalError("OpenSSL does not provide the \(name) digest")
    }
    return md
}

// `EVP_MD` objects are immutable and documented thread-safe once fetched; OpaquePointer is not `Sendable`,
// so these lazily initialised globals are `nonisolated(unsafe)`. They are never reassigned.
nonisolated(unsafe) private let evpSHA256 = fetchDigest("SHA256")
nonisolated(unsafe) private let evpSHA1 = fetchDigest("SHA1")
nonisolated(unsafe) private let evpMD5 = fetchDigest("MD5")

/// Owns one `EVP_MD_CTX`. Shared by value types only until their next mutation (copy on write).
final class EVPContext {
    let pointer: OpaquePointer
    let algorithm: EVPAlgorithm

    init(_ algorithm: EVPAlgorithm) {
        guard let ctx = EVP_MD_CTX_new() else { fatalError("EVP_MD_CTX_new failed (out of memory)") }
        self.pointer = ctx
        self.algorithm = algorithm
        precondition(EVP_DigestInit_ex(ctx, algorithm.md, nil) == 1, "EVP_DigestInit_ex failed")
    }

    /// A new context with the same running state.
    init(copying other: EVPContext) {
        guard let ctx = EVP_MD_CTX_new() else { fatalError("EVP_MD_CTX_new failed (out of memory)") }
        self.pointer = ctx
        self.algorithm = other.algorithm
        precondition(EVP_MD_CTX_copy_ex(ctx, other.pointer) == 1, "EVP_MD_CTX_copy_ex failed")
    }

    deinit { EVP_MD_CTX_free(pointer) }

    func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        precondition(EVP_DigestUpdate(pointer, base, bytes.count) == 1, "EVP_DigestUpdate failed")
    }

    /// Finishes the digest and re-initialises the context.
    func finalizeAndReset() -> [UInt8] {
        let length = algorithm.length
        let out = [UInt8](unsafeUninitializedCapacity: length) { buffer, count in
            var written: UInt32 = 0
            precondition(EVP_DigestFinal_ex(pointer, buffer.baseAddress, &written) == 1, "EVP_DigestFinal_ex failed")
            count = Int(written)
        }
        precondition(EVP_DigestInit_ex(pointer, algorithm.md, nil) == 1, "EVP_DigestInit_ex failed")
        return out
    }
}

/// The shared copy-on-write core of the OpenSSL-backed hashers.
struct EVPHasherCore {
    private var context: EVPContext

    init(_ algorithm: EVPAlgorithm) { context = EVPContext(algorithm) }

    private mutating func uniqueContext() -> EVPContext {
        if !isKnownUniquelyReferenced(&context) {
            context = EVPContext(copying: context)
        }
        return context
    }

    mutating func update(_ bytes: UnsafeRawBufferPointer) {
        uniqueContext().update(bytes)
    }

    mutating func finalize() -> [UInt8] {
        uniqueContext().finalizeAndReset()
    }
}

/// Incremental SHA-256 (OpenSSL EVP). Copies are independent (copy on write).
public struct SHA256Hasher: IncrementalHasher {
    private var core = EVPHasherCore(.sha256)

    /// Creates a hasher in the empty state.
    public init() {}

    /// Feeds `bytes` into the digest.
    public mutating func update(_ bytes: UnsafeRawBufferPointer) { core.update(bytes) }

    /// Returns the 32-byte digest of everything fed so far and resets the hasher.
    public mutating func finalize() -> [UInt8] { core.finalize() }
}

/// Incremental MD5 (OpenSSL EVP), for ETags and Content-MD5 only. Copies are independent (copy on write).
public struct MD5Hasher: IncrementalHasher {
    private var core = EVPHasherCore(.md5)

    /// Creates a hasher in the empty state.
    public init() {}

    /// Feeds `bytes` into the digest.
    public mutating func update(_ bytes: UnsafeRawBufferPointer) { core.update(bytes) }

    /// Returns the 16-byte digest of everything fed so far and resets the hasher.
    public mutating func finalize() -> [UInt8] { core.finalize() }
}

/// Incremental SHA-1 (OpenSSL EVP), for `x-amz-checksum-sha1`. Copies are independent (copy on write).
public struct SHA1Hasher: IncrementalHasher {
    private var core = EVPHasherCore(.sha1)

    /// Creates a hasher in the empty state.
    public init() {}

    /// Feeds `bytes` into the digest.
    public mutating func update(_ bytes: UnsafeRawBufferPointer) { core.update(bytes) }

    /// Returns the 20-byte digest of everything fed so far and resets the hasher.
    public mutating func finalize() -> [UInt8] { core.finalize() }
}

/// One-shot digests and HMAC.
public enum Digests {
    private static func digest(_ algorithm: EVPAlgorithm, _ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        let length = algorithm.length
        return [UInt8](unsafeUninitializedCapacity: length) { out, count in
            var written: UInt32 = 0
            // EVP_Digest accepts a NULL data pointer only with a zero count; give it a valid one always.
            let ok = withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 1) { dummy in
                EVP_Digest(
                    bytes.baseAddress ?? UnsafeRawPointer(dummy.baseAddress!), bytes.count,
                    out.baseAddress, &written, algorithm.md, nil)
            }
            precondition(ok == 1, "EVP_Digest failed")
            count = Int(written)
        }
    }

    /// SHA-256 of `bytes` (32 bytes).
    public static func sha256(_ bytes: [UInt8]) -> [UInt8] {
        bytes.withUnsafeBytes { digest(.sha256, $0) }
    }

    /// SHA-256 of `bytes` (32 bytes).
    public static func sha256(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        digest(.sha256, bytes)
    }

    /// SHA-256 of the UTF-8 bytes of `text` (32 bytes).
    public static func sha256(_ text: String) -> [UInt8] {
        var text = text
        return text.withUTF8 { digest(.sha256, UnsafeRawBufferPointer($0)) }
    }

    /// MD5 of `bytes` (16 bytes).
    public static func md5(_ bytes: [UInt8]) -> [UInt8] {
        bytes.withUnsafeBytes { digest(.md5, $0) }
    }

    /// MD5 of `bytes` (16 bytes).
    public static func md5(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        digest(.md5, bytes)
    }

    /// SHA-1 of `bytes` (20 bytes).
    public static func sha1(_ bytes: [UInt8]) -> [UInt8] {
        bytes.withUnsafeBytes { digest(.sha1, $0) }
    }

    /// HMAC-SHA256 of `message` under `key` (32 bytes), RFC 2104.
    public static func hmacSHA256(key: [UInt8], message: [UInt8]) -> [UInt8] {
        message.withUnsafeBytes { hmacSHA256(key: key, message: $0) }
    }

    /// HMAC-SHA256 of the UTF-8 bytes of `message` under `key` (32 bytes).
    public static func hmacSHA256(key: [UInt8], message: String) -> [UInt8] {
        var message = message
        return message.withUTF8 { hmacSHA256(key: key, message: UnsafeRawBufferPointer($0)) }
    }

    /// HMAC-SHA256 of `message` under `key` (32 bytes), RFC 2104.
    ///
    /// Built on the prefetched SHA-256 `EVP_MD` rather than OpenSSL's `HMAC()`, which looks the
    /// algorithms up by name on every call (SigV4 does five or more HMACs per request).
    public static func hmacSHA256(key: [UInt8], message: UnsafeRawBufferPointer) -> [UInt8] {
        let blockSize = 64
        var block = [UInt8](repeating: 0, count: blockSize)
        if key.count > blockSize {
            let hashed = key.withUnsafeBytes { digest(.sha256, $0) }
            block.replaceSubrange(0..<hashed.count, with: hashed)
        } else {
            block.replaceSubrange(0..<key.count, with: key)
        }
        guard let ctx = EVP_MD_CTX_new() else { fatalError("EVP_MD_CTX_new failed (out of memory)") }
        defer { EVP_MD_CTX_free(ctx) }
        var inner = [UInt8](repeating: 0, count: 32)
        var outer = [UInt8](repeating: 0, count: 32)
        var written: UInt32 = 0
        var ok = EVP_DigestInit_ex(ctx, evpSHA256, nil)
        for i in 0..<blockSize { block[i] ^= 0x36 }
        ok &= block.withUnsafeBytes { EVP_DigestUpdate(ctx, $0.baseAddress, blockSize) }
        if let base = message.baseAddress, message.count > 0 {
            ok &= EVP_DigestUpdate(ctx, base, message.count)
        }
        ok &= inner.withUnsafeMutableBufferPointer { EVP_DigestFinal_ex(ctx, $0.baseAddress, &written) }
        ok &= EVP_DigestInit_ex(ctx, evpSHA256, nil)
        for i in 0..<blockSize { block[i] ^= 0x36 ^ 0x5C }
        ok &= block.withUnsafeBytes { EVP_DigestUpdate(ctx, $0.baseAddress, blockSize) }
        ok &= inner.withUnsafeBytes { EVP_DigestUpdate(ctx, $0.baseAddress, 32) }
        ok &= outer.withUnsafeMutableBufferPointer { EVP_DigestFinal_ex(ctx, $0.baseAddress, &written) }
        precondition(ok == 1 && written == 32, "HMAC-SHA256 failed")
        // Best effort: do not leave key-derived pads in freed memory.
        for i in 0..<blockSize { block[i] = 0 }
        return outer
    }
}

/// Compares two byte strings in time that does not depend on where they differ.
///
/// Arrays of different lengths compare unequal immediately (the length is not secret).
/// - Returns: `true` when `a` and `b` hold the same bytes.
public func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    guard a.count == b.count else { return false }
    if a.isEmpty { return true }
    return a.withUnsafeBytes { pa in
        b.withUnsafeBytes { pb in
            CRYPTO_memcmp(pa.baseAddress, pb.baseAddress, pa.count) == 0
        }
    }
}
