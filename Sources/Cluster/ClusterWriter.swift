import Hashing
import NIOCore
import S3API
import StorageEngine

/// Cuts an upload into blocks and replicates each to `w` owners of its partition, a bounded number
/// at a time. Small objects stay inline in their metadata record.
final class ClusterWriter: ObjectDataWriter {
    private let replicator: Replicator
    private let blockSize: Int
    private let inlineThreshold: Int
    private let maxInFlight: Int
    private var current: ByteBuffer
    private var pending: [Task<BlockRef, any Error>] = []
    private var refs: [BlockRef] = []
    private var dispatched = false
    private(set) var size: Int64 = 0

    init(replicator: Replicator, blockSize: Int, inlineThreshold: Int, maxInFlight: Int) {
        self.replicator = replicator
        self.blockSize = blockSize
        self.inlineThreshold = inlineThreshold
        self.maxInFlight = maxInFlight
        self.current = ByteBuffer()
    }

    func write(_ buffer: ByteBuffer) async throws {
        var buffer = buffer
        while buffer.readableBytes > 0 {
            if self.current.capacity == 0 {
                self.current = ByteBufferAllocator().buffer(capacity: self.blockSize)
            }
            let count = min(self.blockSize - self.current.readableBytes, buffer.readableBytes)
            var slice = buffer.readSlice(length: count)!
            self.current.writeBuffer(&slice)
            self.size += Int64(count)
            if self.current.readableBytes == self.blockSize {
                try await self.dispatchCurrentBlock()
            }
        }
    }

    private func dispatchCurrentBlock() async throws {
        let block = self.current
        self.current = ByteBuffer()
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
        if !self.dispatched && allowInline && self.current.readableBytes <= self.inlineThreshold {
            let bytes = self.current.readBytes(length: self.current.readableBytes) ?? []
            return ObjectWriter.Written(data: .inline(bytes), size: self.size)
        }
        if self.current.readableBytes > 0 {
            try await self.dispatchCurrentBlock()
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
