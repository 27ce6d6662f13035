import Foundation
import NIOCore
import Ring
public import StorageEngine

/// Hands hinted writes back to their owners: every hint whose owner is reachable again is sent to it
/// (records as an apply call, blocks read from this node's store), and dropped once the owner
/// confirmed. A hint whose owner is still unreachable, or whose replay fails, waits for the next pass;
/// a hint for a node that is no longer in the layout is dropped.
public struct HintReplayer: Sendable {
    let engine: StorageEngine
    let view: ClusterView
    let transport: any ClusterTransport
    let timeout: Duration
    /// Hints stored longer ago are dropped, never replayed (the garbage collector's grace period:
    /// an older write could bring back a key whose tombstone was collected; see ``GarbageCollector``).
    let expiry: Duration?

    public init(
        engine: StorageEngine, view: ClusterView, transport: any ClusterTransport, timeout: Duration = .seconds(30),
        expiry: Duration? = nil
    ) {
        self.engine = engine
        self.view = view
        self.transport = transport
        self.timeout = timeout
        self.expiry = expiry
    }

    /// One pass over up to `limit` hints. Returns how many were handed back.
    @discardableResult
    public func replay(limit: Int = 500) async throws -> Int {
        var handed = 0
        let members = self.view.layout.map { Set($0.nodes.map(\.id.rawValue)) }
        if let expiry = self.expiry {
            let now = Int64(Date().timeIntervalSince1970 * 1000)
            try await self.engine.dropHints(createdBefore: now - GarbageCollector.milliseconds(expiry))
        }
        for hint in try await self.engine.hints(limit: limit) {
            if let members, !members.contains(hint.owner) {
                // The owner left the layout: it will never hold this data again, and the nodes that own
                // it now got the write with the quorum. Nothing to hand back.
                try await self.engine.deleteHint(hint.id)
                continue
            }
            guard hint.owner != self.view.localID, self.view.takesWrites(hint.owner) else { continue }
            do {
                switch hint.kind {
                case .records:
                    _ = try await self.transport.call(
                        hint.owner, method: ClusterMethod.applyRecords, body: ByteBuffer(bytes: hint.payload), timeout: self.timeout)
                case .block:
                    // A block this node no longer holds cannot be handed back: the hint is dropped.
                    guard hint.payload.count == 36 else { break }
                    let hash = Array(hint.payload[0..<32])
                    let size = hint.payload[32..<36].reduce(0) { $0 << 8 | Int($1) }
                    guard let block = try await self.engine.loadBlock(BlockRef(hash: hash, size: size)) else { break }
                    _ = try await self.transport.call(
                        hint.owner, method: ClusterMethod.putBlock, body: block, bodyDigest: hash, timeout: self.timeout)
                }
                try await self.engine.deleteHint(hint.id)
                handed += 1
            } catch {
                continue
            }
        }
        return handed
    }
}
