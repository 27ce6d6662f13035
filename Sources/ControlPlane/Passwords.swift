public import ServiceContract
import COpenSSL
import Hashing

/// Password hashing with scrypt (RFC 7914) through OpenSSL's `EVP_PBE_scrypt`.
///
/// A hash is stored as `$scrypt$ln=<log2 N>,r=<r>,p=<p>$<salt base64>$<hash base64>`, so the
/// parameters travel with it and can be raised later without invalidating old hashes.
public enum PasswordHasher {
    /// The scrypt cost parameters.
    public struct Parameters: Sendable, Equatable {
        /// log2 of the CPU/memory cost N.
        public var logN: Int
        /// The block size r.
        public var r: Int
        /// The parallelisation p.
        public var p: Int

        public init(logN: Int, r: Int, p: Int) {
            self.logN = logN
            self.r = r
            self.p = p
        }

        /// N = 2^15, r = 8, p = 1: 32 MiB and tens of milliseconds per hash (OWASP's scrypt minimum
        /// is N = 2^17 with r = 8 at 128 MiB; this is the interactive-login setting of RFC 7914 §2).
        public static let interactive = Parameters(logN: 15, r: 8, p: 1)
        /// Cheap parameters for unit tests only.
        public static let test = Parameters(logN: 10, r: 8, p: 1)

        var memory: UInt64 { 128 * UInt64(self.r) * (UInt64(1) << UInt64(self.logN)) * UInt64(self.p) }
    }

    static let saltBytes = 16
    static let hashBytes = 32

    /// Hashes `password` with a new random salt.
    /// - Returns: The encoded hash, parameters and salt included.
    public static func hash(_ password: String, parameters: Parameters = .interactive) -> String {
        let salt = SecureRandom.bytes(Self.saltBytes)
        let derived = Self.derive(password, salt: salt, parameters: parameters, length: Self.hashBytes)!
        return "$scrypt$ln=\(parameters.logN),r=\(parameters.r),p=\(parameters.p)$\(Base64.encode(salt))$\(Base64.encode(derived))"
    }

    /// Whether `password` matches `encoded` (compared in constant time); false for a damaged hash.
    public static func verify(_ password: String, against encoded: String) -> Bool {
        guard let (parameters, salt, expected) = Self.decode(encoded),
            let derived = Self.derive(password, salt: salt, parameters: parameters, length: expected.count)
        else { return false }
        return constantTimeEqual(derived, expected)
    }

    /// The parameters of an encoded hash, or nil when it is not one of ours.
    public static func parameters(of encoded: String) -> Parameters? { Self.decode(encoded)?.0 }

    private static func decode(_ encoded: String) -> (Parameters, [UInt8], [UInt8])? {
        let parts = encoded.split(separator: "$", omittingEmptySubsequences: false)
        guard parts.count == 5, parts[0].isEmpty, parts[1] == "scrypt" else { return nil }
        var values: [Substring: Int] = [:]
        for item in parts[2].split(separator: ",") {
            let pair = item.split(separator: "=")
            guard pair.count == 2, let value = Int(pair[1]) else { return nil }
            values[pair[0]] = value
        }
        guard let logN = values["ln"], let r = values["r"], let p = values["p"],
            (1...24).contains(logN), (1...64).contains(r), (1...16).contains(p),
            let salt = Base64.decode(String(parts[3])), let hash = Base64.decode(String(parts[4])),
            !salt.isEmpty, (16...64).contains(hash.count)
        else { return nil }
        return (Parameters(logN: logN, r: r, p: p), salt, hash)
    }

    private static func derive(_ password: String, salt: [UInt8], parameters: Parameters, length: Int) -> [UInt8]? {
        var output = [UInt8](repeating: 0, count: length)
        let passwordBytes = Array(password.utf8)
        let rc = passwordBytes.withUnsafeBufferPointer { pass in
            salt.withUnsafeBufferPointer { saltPointer in
                output.withUnsafeMutableBufferPointer { out in
                    pass.withMemoryRebound(to: CChar.self) { passChars in
                        EVP_PBE_scrypt(
                            passChars.baseAddress, passChars.count,
                            saltPointer.baseAddress, saltPointer.count,
                            UInt64(1) << UInt64(parameters.logN), UInt64(parameters.r), UInt64(parameters.p),
                            parameters.memory + (16 << 20),
                            out.baseAddress, out.count)
                    }
                }
            }
        }
        return rc == 1 ? output : nil
    }
}

/// The rules a new password must follow (NIST SP 800-63B §5.1.1.2: length, no composition rules,
/// refuse values known to be weak).
public enum PasswordPolicy {
    public static let minimumLength = 10
    public static let maximumLength = 256

    /// Why `password` is refused, or nil when it is acceptable.
    /// - Parameters:
    ///   - password: The candidate.
    ///   - email: The user's email; the password must not contain it or its local part.
    ///   - name: The user's name; the password must not be it.
    public static func problem(with password: String, email: String, name: String) -> String? {
        let count = password.count
        if count < Self.minimumLength { return "the password must have at least \(Self.minimumLength) characters" }
        if count > Self.maximumLength { return "the password must have at most \(Self.maximumLength) characters" }
        if Set(password).count < 4 { return "the password must use at least 4 different characters" }
        let lowered = password.lowercased()
        let local = email.split(separator: "@").first.map { String($0).lowercased() } ?? ""
        if lowered.contains(email.lowercased()) || (local.count >= 4 && lowered.contains(local)) {
            return "the password must not contain the email address"
        }
        if !name.isEmpty && lowered == name.lowercased() { return "the password must not be the name" }
        if Self.common.contains(lowered) { return "the password is too common" }
        return nil
    }

    private static let common: Set<String> = [
        "password123", "password1234", "1234567890", "12345678910", "qwertyuiop", "1q2w3e4r5t",
        "iloveyou123", "administrator", "passw0rd123", "changeme123", "letmein1234", "welcome123",
        "qwerty12345", "abcdefghij", "0987654321", "a1b2c3d4e5", "trustno1234", "football123",
        "password!!", "p@ssw0rd123", "zaq12wsxcde", "superman123", "1qaz2wsx3edc",
    ]
}
