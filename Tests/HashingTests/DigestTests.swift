@_spi(Testing) import Hashing
import NIOCore
import Testing

/// One known-answer vector: input text and the expected lowercase hex of every algorithm.
struct KnownVector: Sendable, CustomTestStringConvertible {
    var input: String
    var sha256: String
    var md5: String
    var sha1: String
    var crc32: String
    var crc32c: String
    var crc64nvme: String

    var testDescription: String { "\"\(input)\"" }

    func expected(_ algorithm: ChecksumAlgorithm) -> String {
        switch algorithm {
        case .crc32: crc32
        case .crc32c: crc32c
        case .crc64nvme: crc64nvme
        case .sha1: sha1
        case .sha256: sha256
        }
    }
}

let knownVectors: [KnownVector] = [
    KnownVector(
        input: "",
        sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        md5: "d41d8cd98f00b204e9800998ecf8427e", sha1: "da39a3ee5e6b4b0d3255bfef95601890afd80709",
        crc32: "00000000", crc32c: "00000000", crc64nvme: "0000000000000000"),
    KnownVector(
        input: "abc",
        sha256: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        md5: "900150983cd24fb0d6963f7d28e17f72", sha1: "a9993e364706816aba3e25717850c26c9cd0d89d",
        crc32: "352441c2", crc32c: "364b3fb7", crc64nvme: "05e5cabb3fc1faeb"),
    KnownVector(
        input: "123456789",
        sha256: "15e2b0d3c33891ebb0f1ef609ec419420c20e320ce94c65fbc8c3312448eb225",
        md5: "25f9e794323b453885f5181f1b624d0b", sha1: "f7c3bc1d808e04732adf679965ccc34ca7ae3441",
        crc32: "cbf43926", crc32c: "e3069283", crc64nvme: "ae8b14860a799888"),
    KnownVector(
        input: "The quick brown fox jumps over the lazy dog",
        sha256: "d7a8fbb307d7809469ca9abcb0082e4f8d5651e46d3cdb762d02d0bf37c9e592",
        md5: "9e107d9d372bb6826bd81d3542a419d6", sha1: "2fd4e1c67a2d28fced849ee1bb76e7391b93eb12",
        crc32: "414fa339", crc32c: "22620404", crc64nvme: "d76c54054954c143"),
]

/// All incremental hashers, including MD5 which is not an S3 checksum algorithm.
enum AnyAlgorithm: CaseIterable, Sendable {
    case md5, sha1, sha256, crc32, crc32c, crc64nvme

    func makeHasher() -> any IncrementalHasher {
        switch self {
        case .md5: MD5Hasher()
        case .sha1: SHA1Hasher()
        case .sha256: SHA256Hasher()
        case .crc32: CRC32Hasher()
        case .crc32c: CRC32CHasher()
        case .crc64nvme: CRC64NVMEHasher()
        }
    }
}

@Suite struct DigestTests {
    @Test(arguments: knownVectors)
    func oneShotDigests(vector: KnownVector) {
        let bytes = Array(vector.input.utf8)
        #expect(Hex.encode(Digests.sha256(bytes)) == vector.sha256)
        #expect(Hex.encode(bytes.withUnsafeBytes { Digests.sha256($0) }) == vector.sha256)
        #expect(Hex.encode(Digests.sha256(vector.input)) == vector.sha256)
        #expect(Hex.encode(Digests.md5(bytes)) == vector.md5)
        #expect(Hex.encode(Digests.sha1(bytes)) == vector.sha1)
    }

    @Test(arguments: knownVectors, ChecksumAlgorithm.allCases)
    func checksumAlgorithms(vector: KnownVector, algorithm: ChecksumAlgorithm) {
        var hasher = algorithm.makeHasher()
        hasher.update(Array(vector.input.utf8))
        let digest = hasher.finalize()
        #expect(digest.count == algorithm.byteCount)
        #expect(Hex.encode(digest) == vector.expected(algorithm))
        #expect(Hex.encode(algorithm.checksum(of: Array(vector.input.utf8))) == vector.expected(algorithm))
    }

    @Test(arguments: knownVectors)
    func md5Hasher(vector: KnownVector) {
        var hasher = MD5Hasher()
        hasher.update(vector.input)
        #expect(Hex.encode(hasher.finalize()) == vector.md5)
    }

    @Test func crcValueProperties() {
        var crc32 = CRC32Hasher()
        crc32.update(Array("123456789".utf8))
        #expect(crc32.value == 0xCBF4_3926)
        var crc32c = CRC32CHasher()
        crc32c.update(Array("123456789".utf8))
        #expect(crc32c.value == 0xE306_9283)
        var crc64 = CRC64NVMEHasher()
        crc64.update(Array("123456789".utf8))
        #expect(crc64.value == 0xAE8B_1486_0A79_9888)
        #expect(crc64.finalize() == [0xAE, 0x8B, 0x14, 0x86, 0x0A, 0x79, 0x98, 0x88])
        #expect(crc64.value == 0, "finalize resets")
    }

    @Test(arguments: AnyAlgorithm.allCases)
    func incrementalMatchesOneShotForRandomSplits(algorithm: AnyAlgorithm) {
        var rng = SplitMix64(seed: 0xC0FFEE)
        for size in [0, 1, 7, 8, 9, 63, 64, 65, 1000, 4095, 12_289, 40_000, 100_003] {
            let data = [UInt8].random(count: size, using: &rng)
            var whole = algorithm.makeHasher()
            whole.update(data)
            let expected = whole.finalize()
            for _ in 0..<4 {
                var hasher = algorithm.makeHasher()
                var offset = 0
                while offset < data.count {
                    let n = Int.random(in: 0...min(data.count - offset, 5000), using: &rng)
                    // Misaligned slices exercise the CRC kernels' alignment prologues.
                    data[offset..<(offset + n)].withUnsafeBytes { hasher.update($0) }
                    offset += n
                }
                #expect(hasher.finalize() == expected, "size \(size)")
            }
        }
    }

    @Test(arguments: AnyAlgorithm.allCases)
    func finalizeResetsAndCopiesAreIndependent(algorithm: AnyAlgorithm) {
        var a = algorithm.makeHasher()
        a.update(Array("abc".utf8))
        var b = a  // copy mid-stream
        a.update(Array("def".utf8))
        b.update(Array("xyz".utf8))

        var expectA = algorithm.makeHasher()
        expectA.update(Array("abcdef".utf8))
        var expectB = algorithm.makeHasher()
        expectB.update(Array("abcxyz".utf8))
        #expect(a.finalize() == expectA.finalize())
        #expect(b.finalize() == expectB.finalize())

        var empty = algorithm.makeHasher()
        #expect(a.finalize() == empty.finalize(), "finalize leaves the hasher empty")
    }

    @Test func copyOfConcreteSHA256IsIndependent() {
        var a = SHA256Hasher()
        a.update(Array("a".utf8))
        let snapshot = a
        a.update(Array("bc".utf8))
        var b = snapshot
        b.update(Array("bc".utf8))
        var c = snapshot
        #expect(Hex.encode(a.finalize()) == knownVectors[1].sha256)
        #expect(Hex.encode(b.finalize()) == knownVectors[1].sha256)
        #expect(c.finalize() == Digests.sha256(Array("a".utf8)))
    }

    @Test func byteBufferUpdateDoesNotMoveReaderIndex() {
        var buffer = ByteBufferAllocator().buffer(capacity: 32)
        buffer.writeString("xx123456789")
        buffer.moveReaderIndex(forwardBy: 2)
        var hasher = CRC32CHasher()
        hasher.update(buffer)
        #expect(hasher.value == 0xE306_9283)
        #expect(buffer.readerIndex == 2)
        var sha = SHA256Hasher()
        sha.update(buffer)
        #expect(Hex.encode(sha.finalize()) == knownVectors[2].sha256)
    }

    @Test func crc32cHardwareMatchesSoftwareKernel() {
        var rng = SplitMix64(seed: 42)
        let data = [UInt8].random(count: 3 * 4096 * 5 + 1234, using: &rng)
        for start in 0..<9 {
            let hw = data[start...].withUnsafeBytes { CRC32CHasher.crcForTesting($0, software: false) }
            let sw = data[start...].withUnsafeBytes { CRC32CHasher.crcForTesting($0, software: true) }
            #expect(hw == sw)
        }
    }

    @Test func combine() {
        var rng = SplitMix64(seed: 7)
        for (lengthA, lengthB) in [(0, 0), (0, 5), (5, 0), (1, 1), (100, 3), (4096, 70_001)] {
            let a = [UInt8].random(count: lengthA, using: &rng)
            let b = [UInt8].random(count: lengthB, using: &rng)
            let n = UInt64(lengthB)
            func crc32(_ bytes: [UInt8]) -> UInt32 { var h = CRC32Hasher(); h.update(bytes); return h.value }
            func crc32c(_ bytes: [UInt8]) -> UInt32 { var h = CRC32CHasher(); h.update(bytes); return h.value }
            func crc64(_ bytes: [UInt8]) -> UInt64 { var h = CRC64NVMEHasher(); h.update(bytes); return h.value }
            #expect(CRC32Hasher.combine(crc32(a), crc32(b), lengthOfB: n) == crc32(a + b))
            #expect(CRC32CHasher.combine(crc32c(a), crc32c(b), lengthOfB: n) == crc32c(a + b))
            #expect(CRC64NVMEHasher.combine(crc64(a), crc64(b), lengthOfB: n) == crc64(a + b))
        }
    }

    @Test func resumeFromStoredValue() {
        var h = CRC32CHasher(value: CRC32CHasher.combine(0, 0, lengthOfB: 0))
        h.update(Array("123456789".utf8))
        #expect(h.value == 0xE306_9283)
        var first = CRC64NVMEHasher()
        first.update(Array("1234".utf8))
        var resumed = CRC64NVMEHasher(value: first.value)
        resumed.update(Array("56789".utf8))
        #expect(resumed.value == 0xAE8B_1486_0A79_9888)
    }

    /// RFC 4231 test cases 1–4, 6 and 7 (case 5 is a truncated output).
    @Test(arguments: [
        ([UInt8](repeating: 0x0B, count: 20), Array("Hi There".utf8),
         "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
        (Array("Jefe".utf8), Array("what do ya want for nothing?".utf8),
         "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
        ([UInt8](repeating: 0xAA, count: 20), [UInt8](repeating: 0xDD, count: 50),
         "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
        (Array(1...25), [UInt8](repeating: 0xCD, count: 50),
         "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
        ([UInt8](repeating: 0xAA, count: 131), Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8),
         "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
        ([UInt8](repeating: 0xAA, count: 131),
         Array(("This is a test using a larger than block-size key and a larger than block-size data. "
             + "The key needs to be hashed before being used by the HMAC algorithm.").utf8),
         "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
    ])
    func hmacRFC4231(key: [UInt8], message: [UInt8], expected: String) {
        #expect(Hex.encode(Digests.hmacSHA256(key: key, message: message)) == expected)
    }

    @Test func hmacEmptyKeyAndMessage() {
        // Python: hmac.new(b"", b"", hashlib.sha256).hexdigest()
        #expect(
            Hex.encode(Digests.hmacSHA256(key: [], message: []))
                == "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad")
    }

    @Test func constantTimeEquality() {
        #expect(constantTimeEqual([], []))
        #expect(constantTimeEqual([1, 2, 3], [1, 2, 3]))
        #expect(!constantTimeEqual([1, 2, 3], [1, 2, 4]))
        #expect(!constantTimeEqual([0, 2, 3], [1, 2, 3]))
        #expect(!constantTimeEqual([1, 2], [1, 2, 3]))
        #expect(!constantTimeEqual([], [0]))
    }
}
