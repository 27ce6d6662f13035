/// A Bloom filter of SHA-256 hashes: the set of blocks a node refers to, as the garbage collector
/// gathers it from every node (``GarbageCollector``).
///
/// A filter answers "maybe present" for everything inserted (no false negatives) and, for a hash
/// never inserted, "absent" except with a small probability (a false positive). The collector only
/// deletes what every filter calls absent, so a false positive keeps a garbage block one more sweep,
/// never deletes a live one; a fresh seed each sweep moves the false positives elsewhere.
///
/// The size is a power of two, so a filter can be folded (OR of its halves) down to a smaller power of
/// two without losing an element: filters built at different sizes can still be combined.
/// Elements are cryptographic hashes, already uniform: the bit positions are derived from their
/// bytes mixed with the seed (double hashing), no further hashing of the element.
public struct BloomFilter: Sendable, Equatable {
    /// The smallest and largest sizes, in bits. The largest fits an RPC reply (16 MiB) with room.
    public static let minimumBits = 1 << 10
    public static let maximumBits = 1 << 26

    /// Mixed into every position so that another seed gives other false positives.
    public let seed: UInt64
    /// Positions per element.
    public let hashCount: Int
    /// Bits, `bitCount / 64` words.
    public private(set) var words: [UInt64]

    /// The number of bits (a power of two).
    public var bitCount: Int { self.words.count * 64 }

    /// An empty filter.
    /// - Parameters:
    ///   - bitCount: rounded up to a power of two within ``minimumBits``…``maximumBits``.
    ///   - hashCount: positions per element, 1…32.
    public init(bitCount: Int, hashCount: Int = 7, seed: UInt64) {
        self.seed = seed
        self.hashCount = min(32, max(1, hashCount))
        self.words = Array(repeating: 0, count: Self.roundedBits(bitCount) / 64)
    }

    /// The size for `count` elements at about 1% false positives (10 bits each, 7 positions).
    public static func bits(forCount count: Int) -> Int {
        let (product, overflow) = max(count, 1).multipliedReportingOverflow(by: 10)
        return Self.roundedBits(overflow ? Self.maximumBits : product)
    }

    static func roundedBits(_ bits: Int) -> Int {
        var size = Self.minimumBits
        while size < bits && size < Self.maximumBits { size <<= 1 }
        return size
    }

    /// Adds a hash (any byte string of at least 16 bytes: its first 16 bytes are used).
    public mutating func insert(_ hash: [UInt8]) {
        let mask = UInt64(self.bitCount - 1)
        self.forEachPosition(hash) { position in
            let bit = Int(position & mask)
            self.words[bit >> 6] |= 1 << UInt64(bit & 63)
        }
    }

    /// Whether `hash` may have been inserted; false means it certainly was not.
    public func contains(_ hash: [UInt8]) -> Bool {
        let mask = UInt64(self.bitCount - 1)
        var present = true
        self.forEachPosition(hash) { position in
            let bit = Int(position & mask)
            if self.words[bit >> 6] & (1 << UInt64(bit & 63)) == 0 { present = false }
        }
        return present
    }

    /// The element's positions (before reduction to the size): `h1 + i·h2`, from the hash's first two
    /// 64-bit words, each mixed with the seed.
    private func forEachPosition(_ hash: [UInt8], _ body: (UInt64) -> Void) {
        var first: UInt64 = 0
        var second: UInt64 = 0
        for index in 0..<8 {
            first = first << 8 | UInt64(index < hash.count ? hash[index] : 0)
            second = second << 8 | UInt64(index + 8 < hash.count ? hash[index + 8] : 0)
        }
        let h1 = Self.mix(first ^ self.seed)
        let h2 = Self.mix(second ^ (self.seed &* 0x9E37_79B9_7F4A_7C15)) | 1
        for i in 0..<UInt64(self.hashCount) {
            body(h1 &+ i &* h2)
        }
    }

    /// The SplitMix64 / MurmurHash3 finalizer.
    static func mix(_ value: UInt64) -> UInt64 {
        var z = value &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// This filter at a smaller power-of-two size: every element inserted still answers present.
    /// Returns nil when `bitCount` is larger than the filter or not a valid size.
    public func folded(to bitCount: Int) -> BloomFilter? {
        guard bitCount <= self.bitCount, bitCount == Self.roundedBits(bitCount) else { return nil }
        var result = BloomFilter(bitCount: bitCount, hashCount: self.hashCount, seed: self.seed)
        let count = result.words.count
        for (index, word) in self.words.enumerated() { result.words[index % count] |= word }
        return result
    }

    /// Adds every element of `other` (same seed and positions; folded first when it is larger).
    /// Returns false (and changes nothing) when the two cannot be combined: another seed or position
    /// count, or `other` is smaller.
    @discardableResult
    public mutating func formUnion(_ other: BloomFilter) -> Bool {
        guard other.seed == self.seed, other.hashCount == self.hashCount,
            let folded = other.folded(to: self.bitCount)
        else { return false }
        for index in self.words.indices { self.words[index] |= folded.words[index] }
        return true
    }

    /// The share of bits set, 0…1: near 0.5 the filter is at its design load; far above, false
    /// positives grow.
    public var fillRatio: Double {
        Double(self.words.reduce(0) { $0 + $1.nonzeroBitCount }) / Double(self.bitCount)
    }

    // MARK: Encoding

    /// `u64 seed | u8 hashCount | u32 bitCount | words (u64 big-endian)`.
    public func encoded() -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(13 + self.words.count * 8)
        Self.append(self.seed, 8, to: &bytes)
        bytes.append(UInt8(self.hashCount))
        Self.append(UInt64(self.bitCount), 4, to: &bytes)
        for word in self.words { Self.append(word, 8, to: &bytes) }
        return bytes
    }

    /// Decodes ``encoded()``; nil when the bytes are not a valid filter.
    public init?(encoded bytes: [UInt8]) {
        guard bytes.count >= 13 else { return nil }
        let seed = Self.read(bytes, 0, 8)
        let hashCount = Int(bytes[8])
        let bitCount = Int(Self.read(bytes, 9, 4))
        guard (1...32).contains(hashCount), bitCount >= Self.minimumBits, bitCount <= Self.maximumBits,
            bitCount == Self.roundedBits(bitCount), bytes.count == 13 + bitCount / 8
        else { return nil }
        self.seed = seed
        self.hashCount = hashCount
        var words: [UInt64] = []
        words.reserveCapacity(bitCount / 64)
        var offset = 13
        while offset < bytes.count {
            words.append(Self.read(bytes, offset, 8))
            offset += 8
        }
        self.words = words
    }

    private static func append(_ value: UInt64, _ width: Int, to bytes: inout [UInt8]) {
        for shift in stride(from: (width - 1) * 8, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: value >> UInt64(shift))) }
    }

    private static func read(_ bytes: [UInt8], _ offset: Int, _ width: Int) -> UInt64 {
        bytes[offset..<offset + width].reduce(0) { $0 << 8 | UInt64($1) }
    }
}
