import COpenSSL
import Foundation

/// Envelope encryption for the secrets service: AES-256-GCM (OpenSSL EVP), a master key per deployment, a data
/// key per tenant wrapped by it, and each secret version sealed under its tenant's data key.
///
/// Terms:
/// - **Master key** (``MasterKey``): 32 random bytes per deployment, from `CLOUD_MASTER_KEY` or a 0600 file. It
///   only ever encrypts data keys. Its ``MasterKey/id`` names it without revealing it.
/// - **Data key** (``DataKey``): 32 random bytes per tenant. It is stored only wrapped (``WrappedKey``).
/// - **Sealed value**: one version of a secret, encrypted under the tenant's data key.
///
/// Formats (every integer big-endian; byte 0 is a format version that is never reused for another layout):
/// - Wrapped data key, 69 bytes: `version (1, = 0x01) | master key id (8) | nonce (12) | ciphertext (32) | tag (16)`.
///   Associated data: `lp("cloud.secrets.data-key") | lp(version byte) | lp(tenant id) | lp(master key id, 8 bytes)`.
/// - Sealed value, 29 + n bytes: `version (1, = 0x01) | nonce (12) | ciphertext (n) | tag (16)`.
///   Associated data: `lp("cloud.secrets.value") | lp(version byte) | lp(tenant id) | lp(name) | lp(secret version)`,
///   the secret version as an 8-byte two's-complement integer.
///
/// `lp(x)` is a 4-byte length then the bytes of `x` (strings as UTF-8), so ("a", "bc") and ("ab", "c") differ.
/// The associated data binds a blob to its place: a value copied to another tenant, name or version, or a data
/// key copied to another tenant, does not open. Strings are compared as UTF-8 bytes (no Unicode normalisation).
///
/// Nonces are 96 random bits per seal. With one data key per tenant, a tenant SHOULD seal fewer than 2^32 values
/// before its data key is replaced (NIST SP 800-38D §8.3); rotation of data keys is not implemented yet.
///
/// How this differs from STYLE.md §3: keys and nonces come from OpenSSL's CSPRNG (`RAND_bytes`), never from an
/// injected `RandomNumberGenerator`: a seeded generator must never be able to make a key or repeat a nonce. The
/// tests check properties (round trips, refusals, distinct nonces) and AES-GCM known answers instead of bytes.
///
/// Failures to open are always thrown (``SecretsCryptoError``), never returned as garbage, and no description of
/// any type here contains key material or plaintext.
public enum Envelope {
    /// The first byte of every wrapped key and sealed value.
    static let formatVersion: UInt8 = 1
    static let wrapLabel = "cloud.secrets.data-key"
    static let valueLabel = "cloud.secrets.value"
    /// `version | id | nonce` before the data key's ciphertext.
    static let wrappedHeaderBytes = 1 + MasterKey.idLength + AESGCM.nonceBytes
    static let wrappedBytes = wrappedHeaderBytes + DataKey.byteCount + AESGCM.tagBytes
    /// `version | nonce` before a value's ciphertext.
    static let sealedHeaderBytes = 1 + AESGCM.nonceBytes
    /// The overhead of a sealed value over its plaintext (29 bytes).
    public static let sealedOverhead = sealedHeaderBytes + AESGCM.tagBytes

    // MARK: Data keys

    /// Wraps a tenant's data key with the master key, for storage beside the tenant.
    ///
    /// - Parameters:
    ///   - dataKey: The tenant's data key.
    ///   - tenantID: The tenant it belongs to; ``unwrap(_:tenantID:with:)`` MUST be given the same id.
    ///   - master: The deployment's master key.
    /// - Returns: The wrapped key (fresh random nonce: two wraps of one key differ), naming `master`'s id.
    public static func wrap(_ dataKey: DataKey, tenantID: String, with master: MasterKey) -> WrappedKey {
        var blob = [UInt8](repeating: 0, count: Self.wrappedBytes)
        blob[0] = Self.formatVersion
        blob.replaceSubrange(1..<(1 + MasterKey.idLength), with: master.idBytes)
        blob.withUnsafeMutableBytes { out in
            let nonce = UnsafeMutableRawBufferPointer(rebasing: out[(1 + MasterKey.idLength)..<Self.wrappedHeaderBytes])
            CSPRNG.fill(nonce)
            let aad = Self.wrapAssociatedData(tenantID: tenantID, masterKeyID: master.idBytes)
            master.secret.withUnsafeBytes { key in
                dataKey.secret.withUnsafeBytes { plaintext in
                    aad.withUnsafeBytes { aad in
                        AESGCM.seal(
                            key: key, nonce: UnsafeRawBufferPointer(nonce), aad: aad, plaintext: plaintext,
                            ciphertext: UnsafeMutableRawBufferPointer(
                                rebasing: out[Self.wrappedHeaderBytes..<(Self.wrappedHeaderBytes + DataKey.byteCount)]),
                            tag: UnsafeMutableRawBufferPointer(rebasing: out[(Self.wrappedBytes - AESGCM.tagBytes)...]))
                    }
                }
            }
        }
        return WrappedKey(validated: blob, masterKeyID: master.id)
    }

    /// Unwraps a tenant's data key.
    ///
    /// - Parameters:
    ///   - wrapped: What ``wrap(_:tenantID:with:)`` returned (or ``WrappedKey/init(bytes:)`` read back).
    ///   - tenantID: The tenant it was wrapped for.
    ///   - master: The configured master key.
    /// - Returns: The data key.
    /// - Throws: ``SecretsCryptoError/wrongMasterKey`` when `wrapped` names another master key (the message names
    ///   both ids); ``SecretsCryptoError/corrupt`` when it names `master` but does not authenticate (damaged bytes,
    ///   or a key stored for another tenant).
    public static func unwrap(_ wrapped: WrappedKey, tenantID: String, with master: MasterKey)
        throws(SecretsCryptoError)
        -> DataKey
    {
        guard wrapped.masterKeyID == master.id else {
            throw .wrongMasterKey(wrappedBy: wrapped.masterKeyID, configured: master.id)
        }
        let aad = Self.wrapAssociatedData(tenantID: tenantID, masterKeyID: master.idBytes)
        let opened = wrapped.bytes.withUnsafeBytes { blob in
            SecretBytes(
                count: DataKey.byteCount,
                fillIfValid: { out in
                    master.secret.withUnsafeBytes { key in
                        aad.withUnsafeBytes { aad in
                            AESGCM.open(
                                key: key,
                                nonce: UnsafeRawBufferPointer(
                                    rebasing: blob[(1 + MasterKey.idLength)..<Self.wrappedHeaderBytes]),
                                aad: aad,
                                ciphertext: UnsafeRawBufferPointer(
                                    rebasing: blob[
                                        Self.wrappedHeaderBytes..<(Self.wrappedHeaderBytes + DataKey.byteCount)]),
                                tag: UnsafeRawBufferPointer(rebasing: blob[(Self.wrappedBytes - AESGCM.tagBytes)...]),
                                plaintext: out)
                        }
                    }
                })
        }
        guard let opened else {
            throw .corrupt(
                "the data key wrapped by master key \(master.id) does not authenticate: the stored bytes are "
                    + "damaged or belong to another tenant")
        }
        return DataKey(secret: opened)
    }

    /// Re-wraps a tenant's data key from the old master key to the new one (master key rotation).
    ///
    /// The data key itself is unchanged, so every value sealed under it still opens.
    /// - Parameters:
    ///   - wrapped: The key as wrapped by `old`.
    ///   - tenantID: The tenant it belongs to.
    ///   - old: The master key that wrapped it.
    ///   - new: The master key to wrap it with.
    /// - Returns: The same data key wrapped by `new`.
    /// - Throws: As ``unwrap(_:tenantID:with:)`` with `old` (a key already wrapped by `new` is refused with
    ///   ``SecretsCryptoError/wrongMasterKey``; callers skip those by id).
    public static func rewrap(_ wrapped: WrappedKey, tenantID: String, from old: MasterKey, to new: MasterKey)
        throws(SecretsCryptoError) -> WrappedKey
    {
        Self.wrap(try Self.unwrap(wrapped, tenantID: tenantID, with: old), tenantID: tenantID, with: new)
    }

    // MARK: Values

    /// Seals one version of a secret's value under its tenant's data key.
    ///
    /// - Parameters:
    ///   - plaintext: The value; MUST be shorter than 2 GiB (the service caps values far lower).
    ///   - tenantID: The tenant that owns the secret.
    ///   - name: The secret's name.
    ///   - version: The value's version number.
    ///   - key: The tenant's data key.
    /// - Returns: `1 | nonce (12) | ciphertext | tag (16)`, ``sealedOverhead`` bytes longer than `plaintext`. The
    ///   nonce is random, so sealing one value twice gives different bytes.
    public static func seal(_ plaintext: [UInt8], tenantID: String, name: String, version: Int, with key: DataKey)
        -> [UInt8]
    {
        precondition(
            plaintext.count < Int(Int32.max) - Self.sealedOverhead, "a sealed value MUST be shorter than 2 GiB")
        let count = plaintext.count
        var sealed = [UInt8](repeating: 0, count: Self.sealedOverhead + count)
        sealed[0] = Self.formatVersion
        let aad = Self.valueAssociatedData(tenantID: tenantID, name: name, version: version)
        sealed.withUnsafeMutableBytes { out in
            let nonce = UnsafeMutableRawBufferPointer(rebasing: out[1..<Self.sealedHeaderBytes])
            CSPRNG.fill(nonce)
            key.secret.withUnsafeBytes { key in
                plaintext.withUnsafeBytes { plaintext in
                    aad.withUnsafeBytes { aad in
                        AESGCM.seal(
                            key: key, nonce: UnsafeRawBufferPointer(nonce), aad: aad, plaintext: plaintext,
                            ciphertext: UnsafeMutableRawBufferPointer(
                                rebasing: out[Self.sealedHeaderBytes..<(Self.sealedHeaderBytes + count)]),
                            tag: UnsafeMutableRawBufferPointer(rebasing: out[(Self.sealedHeaderBytes + count)...]))
                    }
                }
            }
        }
        return sealed
    }

    /// Opens one version of a secret's value.
    ///
    /// - Parameters:
    ///   - sealed: What ``seal(_:tenantID:name:version:with:)`` returned.
    ///   - tenantID: The tenant it was sealed for.
    ///   - name: The secret's name it was sealed for.
    ///   - version: The version number it was sealed for.
    ///   - key: The tenant's data key.
    /// - Returns: The plaintext, only when it authenticates.
    /// - Throws: ``SecretsCryptoError/corrupt`` when the format version or length is wrong, or the tag does not
    ///   authenticate (damaged bytes, another data key, or another tenant, name or version).
    public static func open(_ sealed: [UInt8], tenantID: String, name: String, version: Int, with key: DataKey)
        throws(SecretsCryptoError) -> [UInt8]
    {
        guard sealed.count >= Self.sealedOverhead, sealed.count < Int(Int32.max), sealed[0] == Self.formatVersion else {
            throw .corrupt("the sealed value is not in a known format (wrong version byte or length)")
        }
        let count = sealed.count - Self.sealedOverhead
        let aad = Self.valueAssociatedData(tenantID: tenantID, name: name, version: version)
        var authentic = false
        let plaintext = [UInt8](unsafeUninitializedCapacity: count) { out, initialized in
            let output = UnsafeMutableRawBufferPointer(out)
            if count > 0 { output.initializeMemory(as: UInt8.self, repeating: 0) }
            authentic = sealed.withUnsafeBytes { blob in
                key.secret.withUnsafeBytes { key in
                    aad.withUnsafeBytes { aad in
                        AESGCM.open(
                            key: key, nonce: UnsafeRawBufferPointer(rebasing: blob[1..<Self.sealedHeaderBytes]),
                            aad: aad,
                            ciphertext: UnsafeRawBufferPointer(
                                rebasing: blob[Self.sealedHeaderBytes..<(Self.sealedHeaderBytes + count)]),
                            tag: UnsafeRawBufferPointer(rebasing: blob[(Self.sealedHeaderBytes + count)...]),
                            plaintext: output)
                    }
                }
            }
            initialized = count
        }
        guard authentic else {
            throw .corrupt(
                "the sealed value does not authenticate: it is damaged, or was sealed for another tenant, name, "
                    + "version or data key")
        }
        return plaintext
    }

    // MARK: Associated data

    static func wrapAssociatedData(tenantID: String, masterKeyID: [UInt8]) -> [UInt8] {
        var aad = AssociatedData(label: Self.wrapLabel)
        aad.append([Self.formatVersion])
        aad.append(tenantID)
        aad.append(masterKeyID)
        return aad.bytes
    }

    static func valueAssociatedData(tenantID: String, name: String, version: Int) -> [UInt8] {
        var aad = AssociatedData(label: Self.valueLabel)
        aad.append([Self.formatVersion])
        aad.append(tenantID)
        aad.append(name)
        let bits = UInt64(bitPattern: Int64(version))
        aad.append((0..<8).reversed().map { UInt8(truncatingIfNeeded: bits >> ($0 * 8)) })
        return aad.bytes
    }
}

/// Length-prefixed parts: each is a 4-byte big-endian length, then its bytes.
struct AssociatedData {
    private(set) var bytes: [UInt8] = []

    init(label: String) { self.append(label) }

    mutating func append(_ string: String) { self.append(Array(string.utf8)) }

    mutating func append(_ part: [UInt8]) {
        precondition(part.count <= Int(UInt32.max), "an associated-data part MUST be shorter than 4 GiB")
        let count = UInt32(part.count)
        self.bytes += [UInt8(count >> 24), UInt8(count >> 16 & 0xff), UInt8(count >> 8 & 0xff), UInt8(count & 0xff)]
        self.bytes += part
    }
}

// MARK: - Errors

/// Why a master key, a wrapped data key or a sealed value could not be used.
///
/// Equality compares the kind only (STYLE.md §7), so `error == .corrupt` matches every corrupt value whatever its
/// message. No description ever contains key material, a key's text (even a malformed one) or a plaintext: only
/// master key ids, file paths, system error reasons and what to do.
public struct SecretsCryptoError: Error, Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible {
    private enum Code: Sendable, Equatable {
        case wrongMasterKey
        case corrupt
        case invalidMasterKey
        case insecureKeyFile
        case keyFileUnusable
    }

    private let code: Code
    /// The operator-facing explanation; nil for the bare values used for matching.
    private let message: String?

    private init(code: Code, message: String?) {
        self.code = code
        self.message = message
    }

    /// The data key was wrapped by another master key than the configured one.
    public static let wrongMasterKey = Self(code: .wrongMasterKey, message: nil)
    /// A sealed value or wrapped key has an unknown format version, a wrong length, or does not authenticate.
    public static let corrupt = Self(code: .corrupt, message: nil)
    /// A master key's text (from `CLOUD_MASTER_KEY` or the file) is not 64 hex digits or base64 of 32 bytes.
    public static let invalidMasterKey = Self(code: .invalidMasterKey, message: nil)
    /// The master key file can be read or written by group or others (it MUST be 0600 or stricter, as ssh asks of
    /// private keys), or is not a regular file.
    public static let insecureKeyFile = Self(code: .insecureKeyFile, message: nil)
    /// The master key file could not be read or created (the message carries the system's reason).
    public static let keyFileUnusable = Self(code: .keyFileUnusable, message: nil)

    static func wrongMasterKey(wrappedBy: String, configured: String) -> Self {
        Self(
            code: .wrongMasterKey,
            message: "the data key was wrapped by master key \(wrappedBy), not by the configured master key "
                + "\(configured): start with the master key it was created with (or re-wrap it with "
                + "`cloud master-key rotate`)")
    }

    static func corrupt(_ message: String) -> Self { Self(code: .corrupt, message: message) }
    /// - Parameter reason: MUST NOT contain the key text.
    static func invalidMasterKey(_ reason: String) -> Self { Self(code: .invalidMasterKey, message: reason) }
    static func insecureKeyFile(_ reason: String) -> Self { Self(code: .insecureKeyFile, message: reason) }
    static func keyFileUnusable(_ reason: String) -> Self { Self(code: .keyFileUnusable, message: reason) }

    /// Compares the kind of error only.
    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.code == rhs.code }

    /// A bounded, stable label for metrics and logs (`wrong_master_key`, `corrupt`, `invalid_master_key`,
    /// `insecure_key_file`, `key_file_unusable`).
    public var shortDescription: String {
        switch self.code {
        case .wrongMasterKey: "wrong_master_key"
        case .corrupt: "corrupt"
        case .invalidMasterKey: "invalid_master_key"
        case .insecureKeyFile: "insecure_key_file"
        case .keyFileUnusable: "key_file_unusable"
        }
    }

    /// What went wrong and what the operator should do; never key material.
    public var description: String {
        if let message { return message }
        switch self.code {
        case .wrongMasterKey: return "the data key was wrapped by another master key than the configured one"
        case .corrupt: return "the bytes are damaged or belong elsewhere: they do not authenticate"
        case .invalidMasterKey: return "not a master key: it must be 64 hex digits or the standard base64 of 32 bytes"
        case .insecureKeyFile: return "the master key file is accessible by group or others: chmod 600 it"
        case .keyFileUnusable: return "the master key file cannot be read or created"
        }
    }

    /// The short label and the description (there is nothing more detailed to tell).
    public var debugDescription: String { "SecretsCryptoError(\(self.shortDescription)): \(self.description)" }
}

// MARK: - Data keys

/// A tenant's data key: 32 random bytes under which the tenant's values are sealed.
///
/// It is stored only wrapped by the master key (``Envelope/wrap(_:tenantID:with:)``). Its bytes are never
/// exposed: `description`, `debugDescription` and `dump` show nothing of them, and the memory holding them is
/// wiped (`OPENSSL_cleanse`) when the last copy goes. Equality is constant-time.
public struct DataKey: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// The length of a data key (AES-256).
    public static let byteCount = 32

    let secret: SecretBytes

    init(secret: SecretBytes) {
        precondition(secret.count == Self.byteCount, "a data key has 32 bytes")
        self.secret = secret
    }

    /// A fresh key from OpenSSL's CSPRNG.
    /// - Returns: A new data key; the caller MUST wrap it before storing anything sealed under it.
    public static func generate() -> DataKey { DataKey(secret: SecretBytes(random: Self.byteCount)) }

    /// Compares in constant time.
    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.secret.constantTimeEquals(rhs.secret) }

    /// `DataKey(redacted)`: never the key.
    public var description: String { "DataKey(redacted)" }
    /// As ``description``.
    public var debugDescription: String { self.description }
    /// No children: `dump` and reflection show nothing of the key.
    public var customMirror: Mirror { Mirror(self, children: [], displayStyle: .struct) }
}

/// A data key wrapped by a master key, in its storage form.
///
/// ``bytes`` (69 bytes): `version (1, = 0x01) | master key id (8) | nonce (12) | ciphertext (32) | tag (16)`. The
/// version byte and the id are authenticated as associated data. The bytes are ciphertext, not secret, so
/// equality is plain byte equality and ``description`` shows the master key id.
public struct WrappedKey: Sendable, Equatable, CustomStringConvertible {
    /// The storage form (see the type's description). Stable: later layouts get a new version byte.
    public let bytes: [UInt8]
    /// The id of the master key that wrapped it (``MasterKey/id``: 16 lowercase hex digits).
    public let masterKeyID: String

    init(validated bytes: [UInt8], masterKeyID: String) {
        self.bytes = bytes
        self.masterKeyID = masterKeyID
    }

    /// Reads the storage form back.
    /// - Parameter bytes: What ``bytes`` held.
    /// - Throws: ``SecretsCryptoError/corrupt`` when the version byte or the length is wrong (authentication is
    ///   checked by ``Envelope/unwrap(_:tenantID:with:)``).
    public init(bytes: [UInt8]) throws(SecretsCryptoError) {
        guard bytes.count == Envelope.wrappedBytes, bytes[0] == Envelope.formatVersion else {
            throw .corrupt("the wrapped data key is not in a known format (wrong version byte or length)")
        }
        self.bytes = bytes
        self.masterKeyID = SecretsHex.encode(bytes[1..<(1 + MasterKey.idLength)])
    }

    /// `WrappedKey(master key <id>)`.
    public var description: String { "WrappedKey(master key \(self.masterKeyID))" }
}

// MARK: - Internals

/// Key bytes in memory of their own, wiped with `OPENSSL_cleanse` when the last reference goes.
///
/// `@unchecked Sendable`: the buffer is written only inside `init` and is read-only afterwards, but a raw pointer
/// is not `Sendable`. A `~Copyable` value type with a wiping `deinit` would remove the need once the key types can
/// stop being copyable.
final class SecretBytes: @unchecked Sendable {
    private let buffer: UnsafeMutableRawBufferPointer

    var count: Int { self.buffer.count }

    /// Bytes from OpenSSL's CSPRNG.
    convenience init(random count: Int) {
        self.init(count: count) { CSPRNG.fill($0) }
    }

    /// Copies `bytes`.
    convenience init(copying bytes: some Collection<UInt8>) {
        self.init(count: bytes.count) { out in out.copyBytes(from: bytes) }
    }

    /// Zeroed memory that `fill` writes.
    init(count: Int, fill: (UnsafeMutableRawBufferPointer) -> Void) {
        precondition(count > 0)
        self.buffer = .allocate(byteCount: count, alignment: 16)
        self.buffer.initializeMemory(as: UInt8.self, repeating: 0)
        fill(self.buffer)
    }

    /// Zeroed memory that `fill` writes; nil (and wiped) when `fill` returns false.
    convenience init?(count: Int, fillIfValid fill: (UnsafeMutableRawBufferPointer) -> Bool) {
        var ok = false
        self.init(count: count) { ok = fill($0) }
        guard ok else { return nil }
    }

    deinit {
        OPENSSL_cleanse(self.buffer.baseAddress, self.buffer.count)
        self.buffer.deallocate()
    }

    func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(self.buffer))
    }

    func constantTimeEquals(_ other: SecretBytes) -> Bool {
        self.count == other.count && CRYPTO_memcmp(self.buffer.baseAddress, other.buffer.baseAddress, self.count) == 0
    }
}

/// OpenSSL's CSPRNG.
enum CSPRNG {
    /// Fills `buffer` with `RAND_bytes`; traps when the process has no source of randomness.
    static func fill(_ buffer: UnsafeMutableRawBufferPointer) {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return }
        let rc = RAND_bytes(base.assumingMemoryBound(to: UInt8.self), Int32(buffer.count))
        precondition(rc == 1, "RAND_bytes failed: the process has no source of randomness")
    }

    static func bytes(_ count: Int) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        bytes.withUnsafeMutableBytes { Self.fill($0) }
        return bytes
    }
}

/// Lowercase hex (the module's own: `Hashing.Hex` is not imported here).
enum SecretsHex {
    private static let digits = Array("0123456789abcdef".utf8)

    static func encode(_ bytes: some Sequence<UInt8>) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.underestimatedCount * 2)
        for byte in bytes {
            out.append(Self.digits[Int(byte >> 4)])
            out.append(Self.digits[Int(byte & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Hex digits (either case) to bytes; nil for an odd length or a non-hex character.
    static func decode(_ text: some Collection<UInt8>) -> [UInt8]? {
        guard text.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(text.count / 2)
        var high: UInt8?
        for character in text {
            let value: UInt8
            switch character {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): value = character - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): value = character - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): value = character - UInt8(ascii: "A") + 10
            default: return nil
            }
            if let first = high {
                out.append(first << 4 | value)
                high = nil
            } else {
                high = value
            }
        }
        return out
    }
}

/// One-shot AES-256-GCM with a 96-bit nonce and a 128-bit tag, on OpenSSL's EVP API.
enum AESGCM {
    static let keyBytes = 32
    static let nonceBytes = 12
    static let tagBytes = 16

    /// Encrypts `plaintext` into `ciphertext` (the same length) and writes the tag.
    ///
    /// Traps when OpenSSL fails, which it does only for misuse (wrong lengths) or lack of memory.
    static func seal(
        key: UnsafeRawBufferPointer, nonce: UnsafeRawBufferPointer, aad: UnsafeRawBufferPointer,
        plaintext: UnsafeRawBufferPointer, ciphertext: UnsafeMutableRawBufferPointer, tag: UnsafeMutableRawBufferPointer
    ) {
        precondition(key.count == Self.keyBytes && nonce.count == Self.nonceBytes && tag.count == Self.tagBytes)
        precondition(ciphertext.count == plaintext.count && plaintext.count < Int(Int32.max))
        guard let context = EVP_CIPHER_CTX_new() else { fatalError("EVP_CIPHER_CTX_new failed (out of memory)") }
        defer { EVP_CIPHER_CTX_free(context) }
        var ok = EVP_EncryptInit_ex(context, aes256GCM, nil, nil, nil) == 1
        ok = ok && EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_GCM_SET_IVLEN, Int32(Self.nonceBytes), nil) == 1
        ok = ok && EVP_EncryptInit_ex(context, nil, nil, Self.bytes(key), Self.bytes(nonce)) == 1
        var length: Int32 = 0
        if ok && aad.count > 0 {
            ok = EVP_EncryptUpdate(context, nil, &length, Self.bytes(aad), Int32(aad.count)) == 1
        }
        if ok && plaintext.count > 0 {
            ok =
                EVP_EncryptUpdate(
                    context, Self.mutableBytes(ciphertext), &length, Self.bytes(plaintext), Int32(plaintext.count)) == 1
            ok = ok && Int(length) == plaintext.count
        }
        // GCM buffers nothing: the final call writes no bytes (the scratch only gives it a valid pointer).
        var scratch = (UInt64(0), UInt64(0))
        ok =
            ok
            && withUnsafeMutableBytes(of: &scratch) {
                EVP_EncryptFinal_ex(context, Self.mutableBytes($0), &length) == 1
            }
        ok = ok && length == 0
        ok = ok && EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_GCM_GET_TAG, Int32(Self.tagBytes), tag.baseAddress) == 1
        precondition(ok, "AES-256-GCM encryption failed in OpenSSL")
    }

    /// Decrypts `ciphertext` into `plaintext` (the same length) and checks the tag.
    ///
    /// - Returns: true when the tag authenticates; on false, `plaintext` has been wiped and MUST NOT be used.
    static func open(
        key: UnsafeRawBufferPointer, nonce: UnsafeRawBufferPointer, aad: UnsafeRawBufferPointer,
        ciphertext: UnsafeRawBufferPointer, tag: UnsafeRawBufferPointer, plaintext: UnsafeMutableRawBufferPointer
    ) -> Bool {
        precondition(key.count == Self.keyBytes && nonce.count == Self.nonceBytes && tag.count == Self.tagBytes)
        precondition(ciphertext.count == plaintext.count && ciphertext.count < Int(Int32.max))
        guard let context = EVP_CIPHER_CTX_new() else { fatalError("EVP_CIPHER_CTX_new failed (out of memory)") }
        defer { EVP_CIPHER_CTX_free(context) }
        var ok = EVP_DecryptInit_ex(context, aes256GCM, nil, nil, nil) == 1
        ok = ok && EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_GCM_SET_IVLEN, Int32(Self.nonceBytes), nil) == 1
        ok = ok && EVP_DecryptInit_ex(context, nil, nil, Self.bytes(key), Self.bytes(nonce)) == 1
        var length: Int32 = 0
        if ok && aad.count > 0 {
            ok = EVP_DecryptUpdate(context, nil, &length, Self.bytes(aad), Int32(aad.count)) == 1
        }
        if ok && ciphertext.count > 0 {
            ok =
                EVP_DecryptUpdate(
                    context, Self.mutableBytes(plaintext), &length, Self.bytes(ciphertext), Int32(ciphertext.count))
                == 1
            ok = ok && Int(length) == ciphertext.count
        }
        // SET_TAG takes a non-const pointer but only reads it; copy so the caller's buffer stays read-only.
        var expected = (UInt64(0), UInt64(0))
        withUnsafeMutableBytes(of: &expected) { $0.copyMemory(from: tag) }
        ok =
            ok
            && withUnsafeMutableBytes(of: &expected) {
                EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_GCM_SET_TAG, Int32(Self.tagBytes), $0.baseAddress) == 1
            }
        // The tag is checked here: failure means the bytes, the key or the associated data differ.
        var scratch = (UInt64(0), UInt64(0))
        ok =
            ok
            && withUnsafeMutableBytes(of: &scratch) {
                EVP_DecryptFinal_ex(context, Self.mutableBytes($0), &length) == 1
            }
        ok = ok && length == 0
        if !ok, plaintext.count > 0 { OPENSSL_cleanse(plaintext.baseAddress, plaintext.count) }
        return ok
    }

    private static func bytes(_ buffer: UnsafeRawBufferPointer) -> UnsafePointer<UInt8>? {
        buffer.baseAddress?.assumingMemoryBound(to: UInt8.self)
    }

    private static func mutableBytes(_ buffer: UnsafeMutableRawBufferPointer) -> UnsafeMutablePointer<UInt8>? {
        buffer.baseAddress?.assumingMemoryBound(to: UInt8.self)
    }
}

private func fetchCipher(_ name: String) -> OpaquePointer {
    guard let cipher = EVP_CIPHER_fetch(nil, name, nil) else { fatalError("OpenSSL does not provide \(name)") }
    return cipher
}

// An `EVP_CIPHER` is immutable and thread-safe once fetched; `OpaquePointer` is not `Sendable`, so this lazily
// initialised global is `nonisolated(unsafe)`. It is never reassigned (fetched once: OpenSSL 3's `EVP_aes_256_gcm()`
// costs an implicit fetch per use).
nonisolated(unsafe) private let aes256GCM = fetchCipher("AES-256-GCM")
