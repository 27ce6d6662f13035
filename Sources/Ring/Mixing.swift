/// Fixed, platform-independent hashing used to break ties in placement.
///
/// Swift's `Hasher` is seeded per process, so it MUST NOT decide anything that has to be equal on every
/// node; these functions are pure arithmetic on fixed constants.
enum Mixing {
    /// FNV-1a (64-bit) of `bytes`, finalised with ``mix(_:)``.
    static func key(of bytes: some Sequence<UInt8>) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes {
            hash ^= UInt64(byte)
            hash &*= 0x0000_0100_0000_01b3
        }
        return mix(hash)
    }

    /// The SplitMix64 finaliser: a bijective avalanche of 64 bits.
    static func mix(_ value: UInt64) -> UInt64 {
        var z = value
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }

    /// A pseudo-random rank of a node for one partition (lower ranks first); spreads tie-breaks so that
    /// a node's partitions do not share the same co-replicas.
    static func score(partition: Int, key: UInt64) -> UInt64 {
        mix(key &+ UInt64(truncatingIfNeeded: partition) &* 0x9e37_79b9_7f4a_7c15)
    }
}
