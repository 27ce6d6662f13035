import COpenSSL
import Foundation

/// The deployment's master key: 32 random bytes that wrap the tenants' data keys (``Envelope``).
///
/// Its ``id`` is not secret: the first 8 bytes of the key's SHA-256, in lowercase hex (16 digits). A wrapped
/// data key carries it, so a process started with the wrong key can say which key it needs.
///
/// The key's bytes are never shown: `description`, `debugDescription` and `dump` give only the id. The one way
/// to see the key is ``backupText``, for an operator's backup. The memory holding the key is wiped
/// (`OPENSSL_cleanse`) when the last copy goes. Equality is constant-time.
///
/// Text form (the file's content and `CLOUD_MASTER_KEY`): 64 hex digits (either case) or the standard base64
/// (with padding) of 32 bytes; surrounding whitespace and a trailing newline are ignored.
public struct MasterKey: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// The length of a master key (AES-256).
    public static let byteCount = 32
    /// The length of the id in bytes (it is twice that in hex digits).
    static let idLength = 8
    /// The largest key file read (a key's text is at most 66 bytes; more is not a key file).
    static let maximumFileBytes = 4096

    let secret: SecretBytes
    /// The first ``idLength`` bytes of the key's SHA-256.
    let idBytes: [UInt8]
    /// Names the key without revealing it: 16 lowercase hex digits (the first 8 bytes of its SHA-256).
    public let id: String

    /// A master key from its bytes (for tests and tools; a deployment uses ``load(environmentValue:file:)``).
    /// - Parameter bytes: The key; MUST be 32 bytes, and SHOULD come from a CSPRNG.
    public init(bytes: [UInt8]) {
        precondition(bytes.count == Self.byteCount, "a master key MUST have 32 bytes")
        self.init(secret: SecretBytes(copying: bytes))
    }

    init(secret: SecretBytes) {
        precondition(secret.count == Self.byteCount, "a master key MUST have 32 bytes")
        self.secret = secret
        var digest = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        let rc = secret.withUnsafeBytes { key in
            EVP_Digest(key.baseAddress, key.count, &digest, &length, EVP_sha256(), nil)
        }
        precondition(rc == 1 && length == 32, "SHA-256 failed in OpenSSL")
        self.idBytes = Array(digest.prefix(Self.idLength))
        self.id = SecretsHex.encode(self.idBytes)
    }

    /// A fresh key from OpenSSL's CSPRNG.
    /// - Returns: A new master key; the caller MUST keep it (``backupText``) before anything is wrapped by it.
    public static func generate() -> MasterKey { MasterKey(secret: SecretBytes(random: Self.byteCount)) }

    /// The key as a key file holds it: 64 lowercase hex digits and a newline.
    ///
    /// This is the key itself. It is for an operator to back up; it MUST NOT be logged or put in an error.
    public var backupText: String { self.secret.withUnsafeBytes { SecretsHex.encode($0) } + "\n" }

    /// Compares in constant time.
    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.secret.constantTimeEquals(rhs.secret) }

    /// `MasterKey(id: <id>)`: never the key.
    public var description: String { "MasterKey(id: \(self.id))" }
    /// As ``description``.
    public var debugDescription: String { self.description }
    /// Only the id: `dump` and reflection show nothing of the key.
    public var customMirror: Mirror { Mirror(self, children: ["id": self.id], displayStyle: .struct) }

    // MARK: Text

    /// Parses a key's text form: 64 hex digits, or the standard base64 of 32 bytes.
    ///
    /// - Parameters:
    ///   - text: The text; surrounding whitespace (a trailing newline) is ignored.
    ///   - source: Where the text came from, for the error (`CLOUD_MASTER_KEY`, "the master key file …").
    /// - Returns: The key.
    /// - Throws: ``SecretsCryptoError/invalidMasterKey``, whose message names `source` and never repeats `text`.
    public static func parse(_ text: String, source: String) throws(SecretsCryptoError) -> MasterKey {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        let utf8 = trimmed.utf8
        if utf8.count == 2 * Self.byteCount, var bytes = SecretsHex.decode(utf8) {
            defer { bytes.withUnsafeMutableBytes { OPENSSL_cleanse($0.baseAddress, $0.count) } }
            return MasterKey(secret: SecretBytes(copying: bytes))
        }
        // Standard base64 of 32 bytes is 44 characters, the last one "="; Foundation refuses other alphabets.
        if utf8.count == 44, var data = Data(base64Encoded: trimmed), data.count == Self.byteCount {
            defer { data.resetBytes(in: 0..<data.count) }
            return MasterKey(secret: SecretBytes(copying: data))
        }
        throw .invalidMasterKey(
            "\(source) is not a master key: it must be 64 hex digits or the standard base64 of 32 bytes "
                + "(its value is not shown)")
    }

    // MARK: Loading

    /// The deployment's master key: from `CLOUD_MASTER_KEY` when it is set, else from the key file, which is
    /// created when it does not exist.
    ///
    /// - Parameters:
    ///   - environmentValue: `CLOUD_MASTER_KEY`'s value, or nil when unset. When non-nil, `file` is neither read
    ///     nor created (an empty value is an error, not "unset": callers that treat it as unset pass nil).
    ///   - file: The key file. Its text form is as ``parse(_:source:)`` takes. It MUST be a regular file with no
    ///     group or other permission bits (0600 or stricter), as ssh asks of private keys. When absent, 32 fresh
    ///     random bytes are written to it as hex: into a temporary file in the same directory (`O_CREAT|O_EXCL`,
    ///     mode 0600), fsynced, linked into place without replacing a file another process made meanwhile (that
    ///     file is then loaded instead; on file systems without hard links it is renamed into place), and the
    ///     directory fsynced. The directory MUST exist.
    /// - Returns: The key, and `created: true` when this call made the file (the caller SHOULD then tell the
    ///   operator to back it up).
    /// - Throws: ``SecretsCryptoError/invalidMasterKey`` (the text is not a key; never echoed),
    ///   ``SecretsCryptoError/insecureKeyFile`` (group/other bits set, or not a regular file),
    ///   ``SecretsCryptoError/keyFileUnusable`` (it cannot be read or created; the system's reason is given).
    public static func load(environmentValue: String?, file: String) throws(SecretsCryptoError)
        -> (MasterKey, created: Bool)
    {
        if let environmentValue { return (try Self.parse(environmentValue, source: "CLOUD_MASTER_KEY"), false) }
        if let key = try KeyFile.key(at: file) { return (key, false) }
        let key = Self.generate()
        if try KeyFile.create(file, text: key.backupText) { return (key, true) }
        // Another process created the file between our read and our link: its key is the deployment's.
        guard let existing = try KeyFile.key(at: file) else {
            throw .keyFileUnusable("the master key file \(file) appeared and vanished while it was being created")
        }
        return (existing, false)
    }
}

/// The key file's I/O (POSIX calls; the file is small and read or written once per process).
enum KeyFile {
    /// The key in `path`, or nil when there is no file.
    static func key(at path: String) throws(SecretsCryptoError) -> MasterKey? {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard descriptor >= 0 else {
            let code = errno
            if code == ENOENT { return nil }
            throw .keyFileUnusable("cannot open the master key file \(path): \(Self.reason(code))")
        }
        defer { close(descriptor) }
        var info = stat()
        guard fstat(descriptor, &info) == 0 else {
            throw .keyFileUnusable("cannot inspect the master key file \(path): \(Self.reason(errno))")
        }
        guard info.st_mode & 0o170000 == 0o100000 else {
            throw .insecureKeyFile("the master key file \(path) is not a regular file")
        }
        guard info.st_mode & 0o077 == 0 else {
            let mode = "0" + String(info.st_mode & 0o777, radix: 8)
            throw .insecureKeyFile(
                "the master key file \(path) is accessible by group or others (mode \(mode)); it must be 0600 or "
                    + "stricter: chmod 600 \(path)")
        }
        guard info.st_size <= MasterKey.maximumFileBytes else {
            throw .invalidMasterKey("the master key file \(path) is not a master key: it is larger than 4 KiB")
        }
        var buffer = [UInt8](repeating: 0, count: MasterKey.maximumFileBytes + 1)
        defer { buffer.withUnsafeMutableBytes { OPENSSL_cleanse($0.baseAddress, $0.count) } }
        var total = 0
        while total < buffer.count {
            let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress! + total, $0.count - total) }
            if count == 0 { break }
            if count < 0 {
                let code = errno
                if code == EINTR { continue }
                throw .keyFileUnusable("cannot read the master key file \(path): \(Self.reason(code))")
            }
            total += count
        }
        guard total <= MasterKey.maximumFileBytes, let text = String(validating: buffer[..<total], as: UTF8.self) else {
            throw .invalidMasterKey(
                "the master key file \(path) is not a master key: it must be 64 hex digits or the standard base64 of "
                    + "32 bytes (its content is not shown)")
        }
        return try MasterKey.parse(text, source: "the master key file \(path)")
    }

    /// Writes `text` to a new file at `path`, mode 0600, durably.
    /// - Returns: false when a file already exists at `path` (it is left untouched).
    static func create(_ path: String, text: String) throws(SecretsCryptoError) -> Bool {
        let (directory, name) = Self.split(path)
        guard !name.isEmpty else { throw .keyFileUnusable("the master key file \(path) is not a file path") }
        let temporary = directory + "/." + name + "." + SecretsHex.encode(CSPRNG.bytes(8)) + ".tmp"
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard descriptor >= 0 else {
            throw .keyFileUnusable("cannot create the master key file \(path): \(Self.reason(errno))")
        }
        var temporaryExists = true
        defer { if temporaryExists { unlink(temporary) } }

        var bytes = Array(text.utf8)
        defer { bytes.withUnsafeMutableBytes { OPENSSL_cleanse($0.baseAddress, $0.count) } }
        // The umask can only clear bits; fchmod makes the mode exactly 0600 whatever it is.
        var failure: (step: String, code: Int32)? = fchmod(descriptor, 0o600) == 0 ? nil : ("set the mode of", errno)
        var written = 0
        while failure == nil && written < bytes.count {
            let count = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress! + written, $0.count - written) }
            if count < 0 {
                if errno != EINTR { failure = ("write", errno) }
            } else {
                written += count
            }
        }
        if failure == nil && fsync(descriptor) != 0 { failure = ("sync", errno) }
        if close(descriptor) != 0 && failure == nil { failure = ("close", errno) }
        if let failure {
            throw .keyFileUnusable("cannot \(failure.step) the master key file \(path): \(Self.reason(failure.code))")
        }

        // link() never replaces an existing file, so two processes starting at once agree on one key.
        if link(temporary, path) != 0 {
            let code = errno
            if code == EEXIST { return false }
            guard code == EPERM || code == EOPNOTSUPP || code == ENOSYS || code == EMLINK else {
                throw .keyFileUnusable("cannot create the master key file \(path): \(Self.reason(code))")
            }
            // No hard links on this file system: rename (which would replace a file made in the last instant).
            guard rename(temporary, path) == 0 else {
                throw .keyFileUnusable("cannot create the master key file \(path): \(Self.reason(errno))")
            }
            temporaryExists = false
        }
        if temporaryExists {
            unlink(temporary)
            temporaryExists = false
        }

        let directoryDescriptor = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard directoryDescriptor >= 0 else {
            throw .keyFileUnusable(
                "the master key file \(path) was created, but its directory cannot be opened to sync it: "
                    + Self.reason(errno))
        }
        defer { close(directoryDescriptor) }
        guard fsync(directoryDescriptor) == 0 else {
            throw .keyFileUnusable(
                "the master key file \(path) was created, but its directory cannot be synced: \(Self.reason(errno))")
        }
        return true
    }

    /// The directory ("." when none is given) and the last component.
    static func split(_ path: String) -> (directory: String, name: String) {
        guard let slash = path.lastIndex(of: "/") else { return (".", path) }
        let directory = String(path[..<slash])
        return (directory.isEmpty ? "/" : directory, String(path[path.index(after: slash)...]))
    }

    static func reason(_ code: Int32) -> String { String(cString: strerror(code)) }
}
