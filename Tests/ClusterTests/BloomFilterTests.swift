import Cluster
import Hashing
import Testing

@Suite struct BloomFilterTests {
    static func hashes(_ range: Range<Int>, salt: String = "") -> [[UInt8]] {
        range.map { Digests.sha256(Array("\(salt)block-\($0)".utf8)) }
    }

    @Test func everyInsertedHashIsFoundAndFewOthersAre() {
        let inserted = Self.hashes(0..<5000)
        var filter = BloomFilter(bitCount: BloomFilter.bits(forCount: inserted.count), seed: 42)
        for hash in inserted { filter.insert(hash) }
        #expect(inserted.allSatisfy { filter.contains($0) })
        let others = Self.hashes(0..<20_000, salt: "other-")
        let falsePositives = others.filter { filter.contains($0) }.count
        // Designed for about 1% at this load; 3% leaves room for chance without hiding a broken filter.
        #expect(falsePositives < others.count * 3 / 100, "false positives: \(falsePositives) of \(others.count)")
        #expect(filter.fillRatio > 0.2 && filter.fillRatio < 0.8)
    }

    @Test func anEmptyFilterContainsNothing() {
        let filter = BloomFilter(bitCount: 4096, seed: 1)
        #expect(Self.hashes(0..<1000).allSatisfy { !filter.contains($0) })
    }

    @Test func anotherSeedMovesTheFalsePositives() {
        let inserted = Self.hashes(0..<2000)
        let others = Self.hashes(0..<20_000, salt: "x-")
        func falsePositives(seed: UInt64) -> Set<[UInt8]> {
            var filter = BloomFilter(bitCount: BloomFilter.bits(forCount: 2000), seed: seed)
            for hash in inserted { filter.insert(hash) }
            return Set(others.filter { filter.contains($0) })
        }
        let first = falsePositives(seed: 1)
        let second = falsePositives(seed: 2)
        #expect(!first.isEmpty)
        // A garbage block kept by one sweep's false positive is not kept by the next one's.
        #expect(first.intersection(second).count < max(1, first.count / 5))
    }

    @Test func sizesArePowersOfTwoWithinBounds() {
        #expect(BloomFilter(bitCount: 1, seed: 0).bitCount == BloomFilter.minimumBits)
        #expect(BloomFilter(bitCount: 5000, seed: 0).bitCount == 8192)
        #expect(BloomFilter(bitCount: Int.max / 2, seed: 0).bitCount == BloomFilter.maximumBits)
        #expect(BloomFilter.bits(forCount: 0) == BloomFilter.minimumBits)
        #expect(BloomFilter.bits(forCount: 1000) == 16384)
        #expect(BloomFilter.bits(forCount: Int.max) == BloomFilter.maximumBits)
    }

    @Test func unionHoldsBothSidesAndFoldsALargerFilter() {
        let left = Self.hashes(0..<300, salt: "l")
        let right = Self.hashes(0..<3000, salt: "r")
        var small = BloomFilter(bitCount: 8192, seed: 7)
        for hash in left { small.insert(hash) }
        var large = BloomFilter(bitCount: 65536, seed: 7)
        for hash in right { large.insert(hash) }
        let folded = large.folded(to: 8192)
        #expect(folded?.bitCount == 8192)
        #expect(right.allSatisfy { folded?.contains($0) == true })
        #expect(large.folded(to: 131_072) == nil)
        #expect(large.folded(to: 10_000) == nil)

        var combined = small
        let merged = combined.formUnion(large)
        #expect(merged)
        #expect((left + right).allSatisfy { combined.contains($0) })
        // A smaller filter cannot be unfolded, and other seeds or position counts do not mix.
        var big = large
        let unfolded = big.formUnion(small)
        #expect(!unfolded)
        #expect(big == large)
        let otherSeed = combined.formUnion(BloomFilter(bitCount: 8192, seed: 8))
        let otherPositions = combined.formUnion(BloomFilter(bitCount: 8192, hashCount: 3, seed: 7))
        #expect(!otherSeed && !otherPositions)
    }

    @Test func encodingRoundTripsAndRejectsDamage() throws {
        var filter = BloomFilter(bitCount: 2048, hashCount: 5, seed: 0xDEAD_BEEF_0123_4567)
        for hash in Self.hashes(0..<100) { filter.insert(hash) }
        let bytes = filter.encoded()
        #expect(bytes.count == 13 + 2048 / 8)
        let decoded = try #require(BloomFilter(encoded: bytes))
        #expect(decoded == filter)
        #expect(decoded.seed == 0xDEAD_BEEF_0123_4567 && decoded.hashCount == 5 && decoded.bitCount == 2048)
        #expect(BloomFilter(encoded: Array(bytes.dropLast())) == nil)
        #expect(BloomFilter(encoded: []) == nil)
        var badSize = bytes
        badSize[12] = 0x01  // 2049 bits: not a power of two
        #expect(BloomFilter(encoded: badSize) == nil)
        var badPositions = bytes
        badPositions[8] = 0
        #expect(BloomFilter(encoded: badPositions) == nil)
    }
}
