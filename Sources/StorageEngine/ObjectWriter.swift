public import NIOCore
import NIOPosix

/// Cuts a stream of bytes into blocks and writes them, a bounded number at a time.
///
/// Use: ``write(_:)`` for each piece of the body, then ``finish(allowInline:)``, then commit the
/// result with the engine (``StorageEngine/putObject(bucket:key:written:etag:metadata:)`` or
/// ``StorageEngine/putPart(uploadID:bucket:key:partNumber:written:etag:checksum:)``), then
/// ``release()``. The caller MUST call ``release()`` (after the commit, or when giving up): until then
/// the blocks are protected from the garbage collector. Nothing is visible to readers before the commit.
///
/// Not thread-safe: one request task owns a writer.
public final class ObjectWriter {
    /// The written data, ready to be committed.
    public struct Written: Sendable {
        public var data: ObjectData
        public var size: Int64

        public init(data: ObjectData, size: Int64) {
            self.data = data
            self.size = size
        }
    }

    private let engine: StorageEngine
    private var cutter: BlockCutter
    private var pending: [EventLoopFuture<(ref: BlockRef, created: Bool)>] = []
    private var refs: [BlockRef] = []
    private var directories: Set<String> = []
    private var dispatched = false
    private var released = false
    /// Bytes accepted so far.
    public private(set) var size: Int64 = 0

    init(engine: StorageEngine) {
        self.engine = engine
        self.cutter = BlockCutter(blockSize: engine.configuration.blockSize)
    }

    deinit {
        if !self.released {
            for ref in self.refs { self.engine.blocks.unpin(ref.hash) }
        }
    }

    /// Accepts the readable bytes of `buffer`; writes every block that fills up.
    public func write(_ buffer: ByteBuffer) async throws {
        self.size += Int64(buffer.readableBytes)
        for block in self.cutter.append(buffer) {
            try await self.dispatch(block)
        }
    }

    private func dispatch(_ block: ByteBuffer) async throws {
        let blocks = self.engine.blocks
        let future = self.engine.threadPool.runIfActive(eventLoop: self.engine.eventLoop) {
            try block.withUnsafeReadableBytes { bytes in try blocks.write(bytes) }
        }
        self.pending.append(future)
        self.dispatched = true
        if self.pending.count >= self.engine.configuration.maxBlocksInFlight {
            try await self.collectOldest()
        }
    }

    private func collectOldest() async throws {
        let future = self.pending.removeFirst()
        let (ref, created) = try await future.get()
        self.refs.append(ref)
        if created { self.directories.insert(self.engine.blocks.directory(for: ref.hash)) }
    }

    /// Writes what remains and waits until every block is durable.
    /// - Parameter allowInline: keep a small object inside its metadata record instead of a block
    ///   (false for multipart parts, whose data always lives in blocks).
    public func finish(allowInline: Bool = true) async throws -> Written {
        if !self.dispatched && allowInline && self.cutter.pendingBytes <= self.engine.configuration.inlineThreshold {
            var rest = self.cutter.takeRemainder()
            return Written(data: .inline(rest.readBytes(length: rest.readableBytes) ?? []), size: self.size)
        }
        if self.cutter.pendingBytes > 0 {
            try await self.dispatch(self.cutter.takeRemainder())
        }
        while !self.pending.isEmpty {
            try await self.collectOldest()
        }
        let directories = self.directories
        self.directories = []
        let blocks = self.engine.blocks
        try await self.engine.runIO { try blocks.syncDirectories(directories) }
        return Written(data: .blocks(self.refs), size: self.size)
    }

    /// Releases the writer's hold on its blocks; call after the commit or when abandoning the write.
    public func release() async {
        while !self.pending.isEmpty {
            let future = self.pending.removeFirst()
            if let (ref, _) = try? await future.get() { self.refs.append(ref) }
        }
        self.released = true
        for ref in self.refs { self.engine.blocks.unpin(ref.hash) }
    }
}

/// Cuts a stream of byte buffers into blocks of `blockSize` bytes (the last one may be shorter):
/// what the local writer and the cluster's writer share.
public struct BlockCutter {
    public let blockSize: Int
    private var current = ByteBuffer()

    public init(blockSize: Int) {
        self.blockSize = blockSize
    }

    /// Bytes taken but not yet returned in a full block.
    public var pendingBytes: Int { self.current.readableBytes }

    /// Takes the readable bytes of `buffer`; returns the blocks that filled up, in order.
    public mutating func append(_ buffer: ByteBuffer) -> [ByteBuffer] {
        var buffer = buffer
        var full: [ByteBuffer] = []
        while buffer.readableBytes > 0 {
            if self.current.capacity == 0 {
                self.current = ByteBufferAllocator().buffer(capacity: self.blockSize)
            }
            let count = min(self.blockSize - self.current.readableBytes, buffer.readableBytes)
            var slice = buffer.readSlice(length: count)!
            self.current.writeBuffer(&slice)
            if self.current.readableBytes == self.blockSize {
                full.append(self.current)
                self.current = ByteBuffer()
            }
        }
        return full
    }

    /// The bytes of the last, short block (possibly none); the cutter is then empty.
    public mutating func takeRemainder() -> ByteBuffer {
        defer { self.current = ByteBuffer() }
        return self.current
    }
}
