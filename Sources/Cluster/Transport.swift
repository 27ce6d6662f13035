public import NIOCore

/// Sends one request to a node of the cluster (by node id) and returns its reply.
///
/// The node's RPC client implements it over the network, short-circuiting calls to itself; tests wire
/// several in-process nodes together with an in-memory one.
public protocol ClusterTransport: Sendable {
    /// - Parameter bodyDigest: the SHA-256 of `body` when the caller knows it (a block's name), so
    ///   that neither side hashes the bytes again.
    func call(_ node: String, method: String, body: ByteBuffer, bodyDigest: [UInt8]?, timeout: Duration) async throws -> ByteBuffer
}

extension ClusterTransport {
    func call(_ node: String, method: String, body: ByteBuffer, timeout: Duration) async throws -> ByteBuffer {
        try await self.call(node, method: method, body: body, bodyDigest: nil, timeout: timeout)
    }
}

/// The methods nodes call on each other, and their bodies (``WireWriter`` encoding).
public enum ClusterMethod {
    /// `table u8 | pk data | sk data` → `u8 found | record`.
    public static let getRecord = "rec.get"
    /// `u32 n | record × n` → empty. Each record is stored if it is newer than the stored one.
    public static let applyRecords = "rec.apply"
    /// `table u8 | pk data | prefix data | u8 bound (0 none, 1 after, 2 from) | bound data | u32 limit` → `u32 n | record × n`.
    public static let rangeRecords = "rec.range"
    /// The block's bytes → empty, once the block is durable. The block's name is the body's SHA-256
    /// (which the RPC layer signs and the receiving server computes).
    public static let putBlock = "blk.put"
    /// `hash[32] | u32 size` → `u8 found | bytes`.
    public static let getBlock = "blk.get"
    /// `owner data | apply body` → empty, once this node holds the records as a hint for `owner`.
    public static let hintRecords = "hint.rec"
    /// `owner data | block bytes` → empty, once this node holds the block and a hint for `owner`.
    public static let hintBlock = "hint.blk"
    /// `u8 power | u32 n | u32 partition × n` → `u64 layout version | (records summary, blocks summary) × n`,
    /// a summary being `u64 count | digest[16]` (anti-entropy, ``AntiEntropy``).
    public static let summaries = "ae.sum"
    /// `u8 kind (0 records, 1 blocks, 2 record slices) | u32 lower | u32 upper | u32 limit | u8 has slice | u8 slice |
    /// u8 has cursor | [cursor version]` → records: `u32 n | version × n` (a page after the cursor, of one slice
    /// if given); blocks: `u32 n | (hash[32] | u32 size) × n` (all); slices: `u32 n | (u8 slice | summary) × n`.
    public static let partitionKeys = "ae.keys"
    /// `u32 n | version × n` → `u32 n | record × n`: the stored records of those keys.
    public static let fetchRecords = "ae.get"
    /// `u64 seed | u32 bits (0: the answerer picks) | u8 positions` → a ``BloomFilter`` (its encoding,
    /// which says its size) of every block the node's live object and part records and its hints
    /// refer to (``GarbageCollector``).
    public static let gcRefs = "gc.refs"
    /// `u32 n | (table u8 | pk data | sk data | u64 timestamp) × n` → `u32 n | u8 × n`: 1 where the node
    /// holds the key at that timestamp or later, or nothing for it (a tombstone may be collected).
    public static let gcCheck = "gc.check"
    /// `u8 mode | u64 cutoff ms | u32 n | hash[32] × n` → mode 0: `u32 n | u8 age × n` (0 absent, 1 older
    /// than the cutoff and unpinned, 2 younger or pinned); mode 1: deletes the old, unpinned ones (a
    /// sweep found them in no node's reference filter) → `u32 deleted | u64 bytes`.
    public static let gcDrop = "gc.drop"
    /// `hash[32]` → `u8 found`: refreshes the block file's modification time (a copy reuses it).
    public static let touchBlock = "blk.touch"
}
