import Hashing
import Testing

@Suite struct EncodingTests {
    @Test func hexEncode() {
        #expect(Hex.encode([UInt8]()) == "")
        #expect(Hex.encode([0x00, 0x0F, 0xA0, 0xFF]) == "000fa0ff")
        #expect(Hex.encode([UInt8](0...255).lazy.map { $0 }).count == 512)  // non-contiguous sequence
    }

    @Test(arguments: ["", "00", "0aff", "DEADbeef", "0123456789abcdefABCDEF"])
    func hexRoundTrip(text: String) throws {
        let bytes = try #require(Hex.decode(text))
        #expect(bytes.count == text.utf8.count / 2)
        #expect(Hex.encode(bytes) == text.lowercased())
        #expect(Hex.decode(text[...]) == bytes)  // Substring
    }

    @Test(arguments: ["0", "abc", "0g", "zz", " 00", "00 ", "0x00", "é0", "--"])
    func hexRejectsBadInput(text: String) {
        #expect(Hex.decode(text) == nil)
    }

    @Test func hexRandomRoundTrip() {
        var rng = SplitMix64(seed: 1)
        for size in [1, 31, 32, 1000] {
            let bytes = [UInt8].random(count: size, using: &rng)
            #expect(Hex.decode(Hex.encode(bytes)) == bytes)
        }
    }

    /// RFC 4648 §10 vectors.
    @Test(arguments: [
        ("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="), ("foobar", "Zm9vYmFy"),
    ])
    func base64RFC4648(plain: String, encoded: String) {
        #expect(Base64.encode(Array(plain.utf8)) == encoded)
        #expect(Base64.decode(encoded) == Array(plain.utf8))
    }

    @Test func base64KnownChecksums() {
        // x-amz-checksum-crc32 of "" and Content-MD5 of "" as S3 shows them.
        #expect(Base64.encode([0, 0, 0, 0]) == "AAAAAA==")
        #expect(Base64.encode(Digests.md5([])) == "1B2M2Y8AsgTpgAmY7PhCfg==")
        #expect(Base64.decode("1B2M2Y8AsgTpgAmY7PhCfg==") == Digests.md5([]))
    }

    @Test func base64RandomRoundTrip() {
        var rng = SplitMix64(seed: 2)
        for size in 0..<70 {
            let bytes = [UInt8].random(count: size, using: &rng)
            let text = Base64.encode(bytes)
            #expect(text.utf8.count % 4 == 0)
            #expect(Base64.decode(text) == bytes)
        }
        let all = [UInt8](0...255)
        #expect(Base64.decode(Base64.encode(all)) == all)
    }

    @Test(arguments: [
        "A", "AA", "AAA", "AAAAA", "A===", "====", "AA=A", "=AAA", "Zm9v\n", " Zm9v", "Zm9-", "Zm9_", "Zg==Zg==",
        "Zm9vYg", "Zm9vYg=", "Z@==", "Zé==",
    ])
    func base64RejectsBadInput(text: String) {
        #expect(Base64.decode(text) == nil)
    }

    @Test func checksumAlgorithmHeaderNames() {
        #expect(ChecksumAlgorithm(headerName: "x-amz-checksum-crc32") == .crc32)
        #expect(ChecksumAlgorithm(headerName: "X-Amz-Checksum-CRC32C") == .crc32c)
        #expect(ChecksumAlgorithm(headerName: "x-amz-checksum-crc64nvme") == .crc64nvme)
        #expect(ChecksumAlgorithm(headerName: "x-amz-checksum-sha1") == .sha1)
        #expect(ChecksumAlgorithm(headerName: "x-amz-checksum-SHA256") == .sha256)
        #expect(ChecksumAlgorithm(headerName: "x-amz-checksum-algorithm") == nil)
        #expect(ChecksumAlgorithm(headerName: "x-amz-checksum-type") == nil)
        #expect(ChecksumAlgorithm(headerName: "content-md5") == nil)
        #expect(ChecksumAlgorithm(headerName: "crc32") == nil)
        #expect(ChecksumAlgorithm(name: "crc32c") == .crc32c)
        for algorithm in ChecksumAlgorithm.allCases {
            #expect(ChecksumAlgorithm(headerName: algorithm.headerName) == algorithm)
            #expect(algorithm.headerName == "x-amz-checksum-" + algorithm.rawValue.lowercased())
        }
    }
}
