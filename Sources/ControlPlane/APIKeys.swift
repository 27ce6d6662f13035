public import ServiceContract
import Hashing

/// API keys: `ck_<id>_<secret>`, where `id` (16 hex digits) names the key's row and `secret` is 32
/// random bytes in base64url. Only the SHA-256 of the whole key is stored; a presented key is
/// looked up by its id and its hash compared in constant time.
public enum APIKey {
    /// The prefix that makes a key recognisable (in logs, secret scanners, a user's clipboard).
    public static let prefix = "ck_"

    /// A new key.
    /// - Returns: The key id and the full key, which is shown to the user once.
    public static func generate() -> (id: String, key: String) {
        let id = Hex.encode(SecureRandom.bytes(8))
        let secret = Self.base64url(SecureRandom.bytes(32))
        return (id, "\(Self.prefix)\(id)_\(secret)")
    }

    /// The id inside a presented key, or nil when it does not have the shape of one of ours.
    public static func id(of key: String) -> String? {
        guard key.hasPrefix(Self.prefix), key.utf8.count == 3 + 16 + 1 + 43 else { return nil }
        let rest = key.dropFirst(Self.prefix.count)
        let id = rest.prefix(16)
        guard id.utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) }),
            rest.dropFirst(16).first == "_"
        else { return nil }
        return String(id)
    }

    /// The stored form of a key: hex SHA-256.
    public static func hash(_ key: String) -> String { Hex.encode(Digests.sha256(key)) }

    /// Whether `key` hashes to `storedHash`, compared in constant time.
    public static func matches(_ key: String, storedHash: String) -> Bool {
        constantTimeEqual(Array(Self.hash(key).utf8), Array(storedHash.utf8))
    }

    static func base64url(_ bytes: [UInt8]) -> String {
        var text = Base64.encode(bytes)
        text = String(text.map { $0 == "+" ? "-" : ($0 == "/" ? "_" : $0) })
        while text.hasSuffix("=") { text.removeLast() }
        return text
    }
}

/// When logins are refused after repeated failures: `maximumFailures` failed attempts for one email
/// from one client address within `window` (with no success after them) lock that email for that
/// address for `lockDuration` after the last failure, so that failures from elsewhere cannot lock
/// its owner out; `maximumClientFailures` failed attempts from one address, whatever the emails,
/// lock that address out of every login the same way (guessing across accounts, and the password
/// hashes that it would cost).
public struct LockoutPolicy: Sendable, Equatable {
    /// Failures for one email from one address that trigger a lockout.
    public var maximumFailures: Int = 5 {
        willSet { precondition(newValue >= 1, "maximumFailures must be at least 1") }
    }
    /// Failures from one address, over all emails, that lock the address out.
    public var maximumClientFailures: Int = 100 {
        willSet { precondition(newValue >= 1, "maximumClientFailures must be at least 1") }
    }
    /// How far back failures count, in seconds.
    public var window: Int64 = 15 * 60
    /// How long the lockout lasts after the last failure, in seconds.
    public var lockDuration: Int64 = 15 * 60

    public init() {}

    /// The time until which logins are refused, or nil when they are allowed.
    /// - Parameters:
    ///   - failures: Times (seconds) of the failed attempts since the last successful one.
    ///   - now: The current time (seconds).
    /// - Returns: The end of the lockout, when one is in force.
    ///   - limit: How many failures lock (default `maximumFailures`).
    public func lockedUntil(failures: [Int64], now: Int64, limit: Int? = nil) -> Int64? {
        let recent = failures.filter { $0 > now - self.window }.sorted()
        guard recent.count >= (limit ?? self.maximumFailures), let last = recent.last else { return nil }
        let until = last + self.lockDuration
        return until > now ? until : nil
    }
}
