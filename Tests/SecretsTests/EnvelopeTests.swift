import Foundation
import Testing

@testable import Secrets

/// Whether `needle` occurs in `haystack` as a contiguous run.
private func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
    guard !needle.isEmpty, haystack.count >= needle.count else { return needle.isEmpty }
    return (0...(haystack.count - needle.count)).contains { Array(haystack[$0..<($0 + needle.count)]) == needle }
}

private func bytes(hex: String) -> [UInt8] { SecretsHex.decode(Array(hex.utf8))! }

/// What `dump` prints for `value`.
private func dumped(_ value: some Any) -> String {
    var out = ""
    dump(value, to: &out)
    return out
}

/// A fresh directory, removed by `cleanup()`.
private struct TemporaryDirectory {
    let path = NSTemporaryDirectory() + "secrets-tests-" + UUID().uuidString

    init() throws { try FileManager.default.createDirectory(atPath: self.path, withIntermediateDirectories: true) }

    func cleanup() { try? FileManager.default.removeItem(atPath: self.path) }

    /// Writes `text` to `name` with exactly `mode`.
    func write(_ name: String, _ text: String, mode: mode_t) -> String {
        let file = self.path + "/" + name
        precondition(FileManager.default.createFile(atPath: file, contents: Data(text.utf8)))
        chmod(file, mode)
        return file
    }

    func entries() throws -> [String] { try FileManager.default.contentsOfDirectory(atPath: self.path).sorted() }
}

private func mode(of file: String) -> mode_t {
    var info = stat()
    precondition(stat(file, &info) == 0)
    return info.st_mode & 0o7777
}

/// The AES-256-GCM primitive against the GCM specification's test cases (McGrew & Viega, test cases 13, 14, 16).
@Suite struct AESGCMKnownAnswerTests {
    struct Vector: Sendable, CustomStringConvertible {
        var name, key, nonce, aad, plaintext, ciphertext, tag: String
        var description: String { self.name }
    }

    static let vectors = [
        Vector(
            name: "test case 13", key: String(repeating: "00", count: 32), nonce: String(repeating: "00", count: 12),
            aad: "", plaintext: "", ciphertext: "", tag: "530f8afbc74536b9a963b4f1c4cb738b"),
        Vector(
            name: "test case 14", key: String(repeating: "00", count: 32), nonce: String(repeating: "00", count: 12),
            aad: "", plaintext: String(repeating: "00", count: 16), ciphertext: "cea7403d4d606b6e074ec5d3baf39d18",
            tag: "d0d1c8a799996bf0265b98b5d48ab919"),
        Vector(
            name: "test case 16", key: "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
            nonce: "cafebabefacedbaddecaf888", aad: "feedfacedeadbeeffeedfacedeadbeefabaddad2",
            plaintext: "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
                + "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
            ciphertext: "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
                + "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
            tag: "76fc6ece0f4e1768cddf8853bb2d551b"),
    ]

    @Test(arguments: Self.vectors) func sealsAndOpensTheKnownAnswer(_ vector: Vector) {
        let key = bytes(hex: vector.key)
        let nonce = bytes(hex: vector.nonce)
        let aad = bytes(hex: vector.aad)
        let plaintext = bytes(hex: vector.plaintext)
        var ciphertext = [UInt8](repeating: 0, count: plaintext.count)
        var tag = [UInt8](repeating: 0, count: 16)
        key.withUnsafeBytes { key in
            nonce.withUnsafeBytes { nonce in
                aad.withUnsafeBytes { aad in
                    plaintext.withUnsafeBytes { plaintext in
                        ciphertext.withUnsafeMutableBytes { ciphertext in
                            tag.withUnsafeMutableBytes { tag in
                                AESGCM.seal(
                                    key: key, nonce: nonce, aad: aad, plaintext: plaintext, ciphertext: ciphertext,
                                    tag: tag)
                            }
                        }
                    }
                }
            }
        }
        #expect(SecretsHex.encode(ciphertext) == vector.ciphertext)
        #expect(SecretsHex.encode(tag) == vector.tag)

        func open(tag: [UInt8]) -> [UInt8]? {
            var out = [UInt8](repeating: 0, count: ciphertext.count)
            let ok = key.withUnsafeBytes { key in
                nonce.withUnsafeBytes { nonce in
                    aad.withUnsafeBytes { aad in
                        ciphertext.withUnsafeBytes { ciphertext in
                            tag.withUnsafeBytes { tag in
                                out.withUnsafeMutableBytes { out in
                                    AESGCM.open(
                                        key: key, nonce: nonce, aad: aad, ciphertext: ciphertext, tag: tag,
                                        plaintext: out)
                                }
                            }
                        }
                    }
                }
            }
            return ok ? out : nil
        }
        #expect(open(tag: tag) == plaintext)
        var damaged = tag
        damaged[15] ^= 1
        #expect(open(tag: damaged) == nil)
    }
}

@Suite struct MasterKeyTests {
    @Test func theIDIsTheFirst8BytesOfTheSHA256InHex() {
        // sha256(32 zero bytes) = 66687aadf862bd776c8f…; sha256(0x00…0x1f) = 630dcd2966c43366…
        #expect(MasterKey(bytes: [UInt8](repeating: 0, count: 32)).id == "66687aadf862bd77")
        #expect(MasterKey(bytes: (0..<32).map { UInt8($0) }).id == "630dcd2966c43366")
        #expect(MasterKey.generate().id.utf8.count == 16)
        #expect(MasterKey.generate() != MasterKey.generate())
    }

    @Test func descriptionsNeverShowTheKey() throws {
        let key = MasterKey.generate()
        let hex = key.backupText.trimmingCharacters(in: .newlines)
        #expect(hex.utf8.count == 64)
        let base64 = try #require(Data(base64Encoded: Data(bytes(hex: hex)).base64EncodedString()))
            .base64EncodedString()
        let renderings = ["\(key)", String(describing: key), String(reflecting: key), dumped(key), "\([key])"]
        for text in renderings {
            #expect(text.contains(key.id))
            #expect(!text.lowercased().contains(hex.prefix(16)))
            #expect(!text.contains(base64.prefix(16)))
        }
        #expect(try MasterKey.parse(key.backupText, source: "test") == key)
    }

    @Test(arguments: [
        (String(repeating: "ab", count: 32), "lower-case hex"),
        (String(repeating: "AB", count: 32), "upper-case hex"),
        ("  " + String(repeating: "ab", count: 32) + "\r\n", "hex with whitespace"),
        (Data([UInt8](repeating: 0xab, count: 32)).base64EncodedString(), "base64"),
        (Data([UInt8](repeating: 0xab, count: 32)).base64EncodedString() + "\n", "base64 and a newline"),
    ])
    func environmentValuesParse(_ value: String, _ form: String) throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let file = directory.path + "/master.key"
        let (key, created) = try MasterKey.load(environmentValue: value, file: file)
        #expect(key == MasterKey(bytes: [UInt8](repeating: 0xab, count: 32)), "\(form)")
        #expect(!created)
        #expect(try directory.entries().isEmpty, "an environment value MUST NOT create the file")
    }

    @Test(arguments: [
        "not-a-key-but-a-long-password-like-string",
        String(repeating: "ab", count: 31) + "a",  // 63 hex digits
        String(repeating: "ab", count: 32) + "a",  // 65 hex digits
        String(repeating: "ab", count: 31) + "ag",  // 64 characters, one not hex
        String(repeating: "ab", count: 33),  // 33 bytes of hex
        Data([UInt8](repeating: 0xfb, count: 31)).base64EncodedString(),  // base64 of 31 bytes
        Data([UInt8](repeating: 0xfb, count: 33)).base64EncodedString(),  // base64 of 33 bytes
        Data([UInt8](repeating: 0xfb, count: 32)).base64EncodedString()  // URL-safe alphabet
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_"),
        Data([UInt8](repeating: 0xfb, count: 32)).base64EncodedString().replacingOccurrences(of: "=", with: ""),
        "",
    ])
    func garbageIsRefusedAndNotEchoed(_ garbage: String) throws {
        let error = try #require(throws: SecretsCryptoError.self) {
            try MasterKey.load(environmentValue: garbage, file: "/nonexistent/master.key")
        }
        #expect(error == .invalidMasterKey)
        #expect(error.description.contains("CLOUD_MASTER_KEY"))
        let trimmed = garbage.trimmingCharacters(in: .whitespacesAndNewlines)
        if !trimmed.isEmpty {
            #expect(!error.description.contains(trimmed))
            #expect(!error.debugDescription.contains(trimmed))
            #expect(!error.description.contains(trimmed.prefix(12)))
        }
    }

    @Test func theFileIsCreated0600AndLoadedBack() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let file = directory.path + "/master.key"
        let (made, created) = try MasterKey.load(environmentValue: nil, file: file)
        #expect(created)
        #expect(mode(of: file) == 0o600)
        #expect(try String(contentsOfFile: file, encoding: .utf8) == made.backupText)
        #expect(try directory.entries() == ["master.key"], "no temporary file is left behind")

        let (again, createdAgain) = try MasterKey.load(environmentValue: nil, file: file)
        #expect(!createdAgain)
        #expect(again == made)
        #expect(again.id == made.id)
    }

    @Test func theFileIsCreated0600WhateverTheUmask() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let previous = umask(0o000)
        defer { umask(previous) }
        let file = directory.path + "/master.key"
        _ = try MasterKey.load(environmentValue: nil, file: file)
        #expect(mode(of: file) == 0o600)
    }

    @Test func anExistingFileIsNeverReplaced() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let original = MasterKey.generate()
        let file = directory.write("master.key", original.backupText, mode: 0o600)
        // The step a process takes when it found no file but another process made one meanwhile.
        #expect(try KeyFile.create(file, text: MasterKey.generate().backupText) == false)
        let (loaded, created) = try MasterKey.load(environmentValue: nil, file: file)
        #expect(loaded == original && !created)
        #expect(try directory.entries() == ["master.key"])
    }

    @Test(arguments: [
        ("hex", String(repeating: "cd", count: 32)),
        ("hex and a newline", String(repeating: "cd", count: 32) + "\n"),
        ("base64 and a newline", Data([UInt8](repeating: 0xcd, count: 32)).base64EncodedString() + "\n"),
    ])
    func fileFormsParse(_ form: String, _ text: String) throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let file = directory.write("master.key", text, mode: 0o400)
        let (key, created) = try MasterKey.load(environmentValue: nil, file: file)
        #expect(key == MasterKey(bytes: [UInt8](repeating: 0xcd, count: 32)), "\(form)")
        #expect(!created)
    }

    @Test(arguments: [0o644, 0o640, 0o604, 0o660, 0o610, 0o601] as [mode_t])
    func aFileOthersCanReachIsRefused(_ permissions: mode_t) throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let key = MasterKey.generate()
        let file = directory.write("master.key", key.backupText, mode: permissions)
        let error = try #require(throws: SecretsCryptoError.self) {
            try MasterKey.load(environmentValue: nil, file: file)
        }
        #expect(error == .insecureKeyFile)
        #expect(error.description.contains(file) && error.description.contains("chmod 600"))
        #expect(error.description.contains("0" + String(permissions, radix: 8)))
        #expect(!error.description.contains(key.backupText.prefix(16)))
    }

    @Test func garbageInTheFileIsRefusedAndNotEchoed() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let garbage = "hunter2-hunter2-hunter2"
        let file = directory.write("master.key", garbage + "\n", mode: 0o600)
        let error = try #require(throws: SecretsCryptoError.self) {
            try MasterKey.load(environmentValue: nil, file: file)
        }
        #expect(error == .invalidMasterKey)
        #expect(error.description.contains(file))
        #expect(!error.description.contains(garbage))

        let large = directory.write("large.key", String(repeating: "ab", count: 4096), mode: 0o600)
        #expect(throws: SecretsCryptoError.invalidMasterKey) { try MasterKey.load(environmentValue: nil, file: large) }
    }

    @Test func unusablePathsAreRefused() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        #expect(throws: SecretsCryptoError.keyFileUnusable) {
            try MasterKey.load(environmentValue: nil, file: directory.path + "/missing-directory/master.key")
        }
        try FileManager.default.createDirectory(
            atPath: directory.path + "/a-directory", withIntermediateDirectories: false)
        chmod(directory.path + "/a-directory", 0o700)
        #expect(throws: SecretsCryptoError.insecureKeyFile) {
            try MasterKey.load(environmentValue: nil, file: directory.path + "/a-directory")
        }
    }
}

@Suite struct EnvelopeTests {
    let master = MasterKey(bytes: (0..<32).map { UInt8($0) })
    let other = MasterKey(bytes: (0..<32).map { UInt8(255 - $0) })
    let plaintext = Array("correct horse battery staple, and then some more words".utf8)

    @Test(arguments: [0, 1, 15, 16, 17, 64 * 1024])
    func valuesRoundTrip(_ count: Int) throws {
        let key = DataKey.generate()
        let plain = (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        let sealed = Envelope.seal(plain, tenantID: "tnt_a", name: "db", version: 1, with: key)
        #expect(sealed.count == count + Envelope.sealedOverhead)
        #expect(sealed[0] == 1)
        #expect(try Envelope.open(sealed, tenantID: "tnt_a", name: "db", version: 1, with: key) == plain)
    }

    @Test(arguments: [
        ("tnt_b", "x", 1, "another tenant"),
        ("tnt_a", "y", 1, "another name"),
        ("tnt_a", "x", 2, "another version"),
        ("tnt_a", "x", 0, "version 0"),
        ("tnt_a", "x", -1, "a negative version"),
        ("tnt_", "ax", 1, "the same concatenation of tenant and name"),
        ("tnt_ax", "", 1, "the name moved into the tenant"),
        ("", "tnt_ax", 1, "the tenant moved into the name"),
    ])
    func aValueOpensOnlyWhereItWasSealed(_ tenantID: String, _ name: String, _ version: Int, _ what: String) throws {
        let key = DataKey.generate()
        let sealed = Envelope.seal(self.plaintext, tenantID: "tnt_a", name: "x", version: 1, with: key)
        #expect(try Envelope.open(sealed, tenantID: "tnt_a", name: "x", version: 1, with: key) == self.plaintext)
        #expect(throws: SecretsCryptoError.corrupt, "\(what)") {
            try Envelope.open(sealed, tenantID: tenantID, name: name, version: version, with: key)
        }
    }

    @Test func aValueDoesNotOpenUnderAnotherDataKey() {
        let sealed = Envelope.seal(self.plaintext, tenantID: "t", name: "n", version: 1, with: DataKey.generate())
        #expect(throws: SecretsCryptoError.corrupt) {
            try Envelope.open(sealed, tenantID: "t", name: "n", version: 1, with: DataKey.generate())
        }
    }

    @Test func thePlaintextIsNotInTheSealedBytesAndNoncesDiffer() {
        let key = DataKey.generate()
        let first = Envelope.seal(self.plaintext, tenantID: "t", name: "n", version: 1, with: key)
        let second = Envelope.seal(self.plaintext, tenantID: "t", name: "n", version: 1, with: key)
        #expect(!contains(first, Array(self.plaintext.prefix(8))))
        #expect(!contains(first, Array(self.plaintext.suffix(8))))
        #expect(first != second)
        #expect(first[1..<13] != second[1..<13], "the nonces differ")
    }

    @Test func everyFlippedBitOfASealedValueIsRefused() {
        let key = DataKey.generate()
        let sealed = Envelope.seal(Array("x1".utf8), tenantID: "t", name: "n", version: 1, with: key)
        for index in sealed.indices {
            for bit in 0..<8 {
                var damaged = sealed
                damaged[index] ^= 1 << bit
                #expect(throws: SecretsCryptoError.corrupt, "byte \(index), bit \(bit)") {
                    try Envelope.open(damaged, tenantID: "t", name: "n", version: 1, with: key)
                }
            }
        }
        for length in [0, 1, 13, 28, sealed.count - 1] {
            #expect(throws: SecretsCryptoError.corrupt, "truncated to \(length)") {
                try Envelope.open(Array(sealed.prefix(length)), tenantID: "t", name: "n", version: 1, with: key)
            }
        }
        #expect(throws: SecretsCryptoError.corrupt) {
            try Envelope.open(sealed + [0], tenantID: "t", name: "n", version: 1, with: key)
        }
    }

    @Test func wrappedKeysRoundTripThroughStorage() throws {
        let key = DataKey.generate()
        let wrapped = Envelope.wrap(key, tenantID: "tnt_a", with: self.master)
        #expect(wrapped.masterKeyID == self.master.id)
        #expect(wrapped.bytes.count == 69 && wrapped.bytes[0] == 1)
        #expect(Array(wrapped.bytes[1..<9]) == bytes(hex: self.master.id))
        let stored = try WrappedKey(bytes: wrapped.bytes)
        #expect(stored == wrapped && stored.masterKeyID == self.master.id)
        #expect(try Envelope.unwrap(stored, tenantID: "tnt_a", with: self.master) == key)
        #expect(Envelope.wrap(key, tenantID: "tnt_a", with: self.master) != wrapped, "fresh nonce per wrap")
        #expect("\(wrapped)".contains(self.master.id))
    }

    @Test func anotherMasterKeyIsNamedInTheError() throws {
        let wrapped = Envelope.wrap(DataKey.generate(), tenantID: "tnt_a", with: self.master)
        let error = try #require(throws: SecretsCryptoError.self) {
            try Envelope.unwrap(wrapped, tenantID: "tnt_a", with: self.other)
        }
        #expect(error == .wrongMasterKey)
        #expect(error.shortDescription == "wrong_master_key")
        #expect(error.description.contains("wrapped by master key \(self.master.id)"))
        #expect(error.description.contains("configured master key \(self.other.id)"))
        #expect(!error.description.contains(self.other.backupText.prefix(16)))
    }

    @Test func aWrappedKeyDoesNotUnwrapForAnotherTenant() {
        let wrapped = Envelope.wrap(DataKey.generate(), tenantID: "tnt_a", with: self.master)
        for tenant in ["tnt_b", "tnt_", "tnt_aa", ""] {
            #expect(throws: SecretsCryptoError.corrupt, "\(tenant)") {
                try Envelope.unwrap(wrapped, tenantID: tenant, with: self.master)
            }
        }
    }

    @Test func everyFlippedBitOfAWrappedKeyIsRefused() {
        let wrapped = Envelope.wrap(DataKey.generate(), tenantID: "t", with: self.master)
        for index in wrapped.bytes.indices {
            for bit in 0..<8 {
                var damaged = wrapped.bytes
                damaged[index] ^= 1 << bit
                // The version byte is refused on reading, the id names another master key, and the rest fails the tag.
                let expected: SecretsCryptoError = (1..<9).contains(index) ? .wrongMasterKey : .corrupt
                #expect(throws: expected, "byte \(index), bit \(bit)") {
                    try Envelope.unwrap(try WrappedKey(bytes: damaged), tenantID: "t", with: self.master)
                }
            }
        }
        for damaged in [[], Array(wrapped.bytes.prefix(68)), wrapped.bytes + [0]] {
            #expect(throws: SecretsCryptoError.corrupt, "\(damaged.count) bytes") { try WrappedKey(bytes: damaged) }
        }
    }

    @Test func rewrapKeepsTheDataKey() throws {
        let key = DataKey.generate()
        let sealed = Envelope.seal(self.plaintext, tenantID: "t", name: "n", version: 3, with: key)
        let wrapped = Envelope.wrap(key, tenantID: "t", with: self.master)
        let rewrapped = try Envelope.rewrap(wrapped, tenantID: "t", from: self.master, to: self.other)
        #expect(rewrapped.masterKeyID == self.other.id)
        let unwrapped = try Envelope.unwrap(try WrappedKey(bytes: rewrapped.bytes), tenantID: "t", with: self.other)
        #expect(unwrapped == key)
        #expect(try Envelope.open(sealed, tenantID: "t", name: "n", version: 3, with: unwrapped) == self.plaintext)
        #expect(throws: SecretsCryptoError.wrongMasterKey) {
            try Envelope.unwrap(rewrapped, tenantID: "t", with: self.master)
        }
        // Re-wrapping from a key that did not wrap it (here: a second run) is refused, not silently re-done.
        #expect(throws: SecretsCryptoError.wrongMasterKey) {
            try Envelope.rewrap(rewrapped, tenantID: "t", from: self.master, to: self.other)
        }
        #expect(throws: SecretsCryptoError.corrupt) {
            try Envelope.rewrap(wrapped, tenantID: "u", from: self.master, to: self.other)
        }
    }

    @Test func dataKeysDescribeNothing() {
        let key = DataKey.generate()
        let raw = key.secret.withUnsafeBytes { Array($0) }
        let hex = SecretsHex.encode(raw)
        for text in ["\(key)", String(reflecting: key), dumped(key), "\([key])"] {
            #expect(!text.contains(hex.prefix(8)))
            #expect(!text.contains(Data(raw).base64EncodedString().prefix(8)))
            #expect(!text.contains("\(raw[0]), \(raw[1]), \(raw[2])"))
        }
        #expect(key == key && key != DataKey.generate())
    }

    @Test func errorsCompareByKindAndHaveStableLabels() {
        #expect(SecretsCryptoError.corrupt("a") == .corrupt)
        #expect(SecretsCryptoError.corrupt("a") != .wrongMasterKey)
        #expect(SecretsCryptoError.wrongMasterKey(wrappedBy: "a", configured: "b") == .wrongMasterKey)
        let labels = [
            SecretsCryptoError.wrongMasterKey, .corrupt, .invalidMasterKey, .insecureKeyFile, .keyFileUnusable,
        ].map(\.shortDescription)
        #expect(
            labels == ["wrong_master_key", "corrupt", "invalid_master_key", "insecure_key_file", "key_file_unusable"])
    }
}
