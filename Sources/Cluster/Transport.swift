public import NIOCore

/// Sends one request to a node of the cluster (by node id) and returns its reply.
///
/// The node's RPC client implements it over the network, short-circuiting calls to itself; tests wire
/// several in-process nodes together with an in-memory one.
public protocol ClusterTransport: Sendable {
    func call(_ node: String, method: String, body: ByteBuffer, timeout: Duration) async throws -> ByteBuffer
}

/// The methods nodes call on each other, and their bodies (``WireWriter`` encoding).
public enum ClusterMethod {
    /// `table u8 | pk data | sk data` → `u8 found | record`.
    public static let getRecord = "rec.get"
    /// `u32 n | record × n` → empty. Each record is stored if it is newer than the stored one.
    public static let applyRecords = "rec.apply"
    /// `table u8 | pk data | prefix data | u8 bound (0 none, 1 after, 2 from) | bound data | u32 limit` → `u32 n | record × n`.
    public static let rangeRecords = "rec.range"
    /// `hash[32] | bytes` → empty, once the block is durable.
    public static let putBlock = "blk.put"
    /// `hash[32] | u32 size` → `u8 found | bytes`.
    public static let getBlock = "blk.get"
}
