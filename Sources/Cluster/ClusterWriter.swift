import Hashing
import NIOCore
import S3API
import StorageEngine

/// Cuts an upload into blocks and replicates each to `w` owners of its partition, a bounded number
/// at a time. Small objects stay inline in their metadata record.
final class ClusterWriter: ObjectDataWriter {
    private let replicator: Replicator
    private let inlineThreshold: Int
    private let maxInFlight: Int
    private var cutter: BlockCutter
    private var pending: [Task<BlockRef, any Error>] = []
    private var refs: [BlockRef] = []
    private var dispatched = false
    private(set) var size: Int64 = 0

    init(replicator: Replicator, blockSize: Int, inlineThreshold: Int, maxInFlight: Int) {
        self.replicator = replicator
        self.inlineThreshold = inlineThreshold
        self.maxInFlight = maxInFlight
        self.cutter = BlockCutter(blockSize: blockSize)
    }

    func write(_ buffer: ByteBuffer) async throws {
        self.size += Int64(buffer.readableBytes)
        for block in self.cutter.append(buffer) {
            try await self.dispatch(block)
        }
    }

    private func dispatch(_ block: ByteBuffer) async throws {
        let replicator = self.replicator
        self.pending.append(
            Task {
                let hash = block.withUnsafeReadableBytes { Digests.sha256($0) }
                try await replicator.writeBlock(block, hash: hash)
                return BlockRef(hash: hash, size: block.readableBytes)
            })
        self.dispatched = true
        if self.pending.count >= self.maxInFlight {
            self.refs.append(try await self.pending.removeFirst().value)
        }
    }

    func finish(allowInline: Bool) async throws -> ObjectWriter.Written {
        if !self.dispatched && allowInline && self.cutter.pendingBytes <= self.inlineThreshold {
            var rest = self.cutter.takeRemainder()
            return ObjectWriter.Written(data: .inline(rest.readBytes(length: rest.readableBytes) ?? []), size: self.size)
        }
        if self.cutter.pendingBytes > 0 {
            try await self.dispatch(self.cutter.takeRemainder())
        }
        while !self.pending.isEmpty {
            self.refs.append(try await self.pending.removeFirst().value)
        }
        return ObjectWriter.Written(data: .blocks(self.refs), size: self.size)
    }

    func release() async {
        // Blocks written for an upload that is not committed stay on their owners until the
        // cluster-wide collector (durability issue) removes unreferenced blocks.
        for task in self.pending { _ = try? await task.value }
        self.pending = []
    }
}
