public import NIOCore
public import StorageEngine

/// Serves the calls other nodes make on this one (``ClusterMethod``) from the local engine.
public struct ClusterRequestHandler: Sendable {
    let engine: StorageEngine
    /// The version of the layout this node uses (anti-entropy peers compare it before a handover).
    let layoutVersion: @Sendable () -> UInt64
    /// This node's id and disk state: while the disk is full or read-only, write calls are refused.
    let node: String
    let diskState: @Sendable () -> DiskState

    /// Reads the `owner` prefix of a hint call (u32 length, UTF-8, at most 255 bytes).
    static func readOwner(_ body: inout ByteBuffer) throws -> String {
        guard let length = body.readInteger(as: UInt32.self), length > 0, length <= 255,
            let bytes = body.readBytes(length: Int(length)), let owner = String(validating: bytes, as: UTF8.self)
        else { throw ClusterError.malformed }
        return owner
    }

    public init(
        engine: StorageEngine, node: String = "", diskState: @escaping @Sendable () -> DiskState = { .ok },
        layoutVersion: @escaping @Sendable () -> UInt64 = { 0 }
    ) {
        self.engine = engine
        self.node = node
        self.diskState = diskState
        self.layoutVersion = layoutVersion
    }

    /// Throws ``WriteRefused`` for a write call while this node's disk takes no writes.
    func checkWritable(_ method: String) throws {
        switch method {
        case ClusterMethod.applyRecords, ClusterMethod.putBlock, ClusterMethod.hintRecords, ClusterMethod.hintBlock:
            let state = self.diskState()
            if !state.takesWrites { throw WriteRefused(state: state, node: self.node) }
        default:
            return
        }
    }

    /// Answers one call; throws ``ClusterError`` on a malformed body or an unknown method.
    /// - Parameter bodyDigest: the SHA-256 of `body` when the caller computed it from these bytes
    ///   (the RPC server always does); blocks are stored under it without hashing them again.
    public func handle(method: String, body: ByteBuffer, bodyDigest: [UInt8]? = nil) async throws -> ByteBuffer {
        try self.checkWritable(method)
        switch method {
        case ClusterMethod.getRecord:
            var reader = WireReader(Array(buffer: body))
            let table = try reader.u8()
            let partitionKey = try reader.data()
            let sortKey = try reader.data()
            try reader.finish()
            var writer = WireWriter()
            if let record = try self.engine.record(table: table, partitionKey: partitionKey, sortKey: sortKey) {
                writer.u8(1)
                writer.record(record)
            } else {
                writer.u8(0)
            }
            return ByteBuffer(bytes: writer.bytes)

        case ClusterMethod.applyRecords:
            var reader = WireReader(Array(buffer: body))
            let count = try reader.u32()
            var records: [ReplicaRecord] = []
            for _ in 0..<count { records.append(try reader.record()) }
            try reader.finish()
            try await self.engine.apply(records)
            return ByteBuffer()

        case ClusterMethod.rangeRecords:
            var reader = WireReader(Array(buffer: body))
            let table = try reader.u8()
            let partitionKey = try reader.data()
            let prefix = try reader.data()
            let mode = try reader.u8()
            let bound = try reader.data()
            let limit = Int(try reader.u32())
            try reader.finish()
            let records = try await self.engine.records(
                table: table, partitionKey: partitionKey, prefix: prefix,
                start: mode == 2 ? bound : nil, after: mode == 1 ? bound : nil, limit: min(limit, 10_000)
            )
            var writer = WireWriter()
            writer.u32(UInt32(records.count))
            for record in records { writer.record(record) }
            return ByteBuffer(bytes: writer.bytes)

        case ClusterMethod.putBlock:
            try await self.engine.storeBlock(body, hash: bodyDigest)
            return ByteBuffer()

        case ClusterMethod.getBlock:
            var body = body
            guard let hash = body.readBytes(length: 32), let size = body.readInteger(as: UInt32.self), body.readableBytes == 0 else {
                throw ClusterError.malformed
            }
            // A node repairing a copy whose header is damaged does not know the size (scrub).
            let loaded =
                Int(size) == BlockRef.unknownSize
                ? try await self.engine.loadVerifiedBlock(hash)
                : try await self.engine.loadBlock(BlockRef(hash: hash, size: Int(size)))
            guard let block = loaded else {
                return ByteBuffer(bytes: [0])
            }
            var reply = ByteBuffer()
            reply.reserveCapacity(1 + block.readableBytes)
            reply.writeInteger(UInt8(1))
            var bytes = block
            reply.writeBuffer(&bytes)
            return reply

        case ClusterMethod.hintRecords:
            var body = body
            let owner = try Self.readOwner(&body)
            var check = WireReader(Array(buffer: body))
            let count = try check.u32()
            for _ in 0..<count { _ = try check.record() }
            try check.finish()
            try await self.engine.addHint(owner: owner, kind: .records, payload: Array(buffer: body))
            return ByteBuffer()

        case ClusterMethod.hintBlock:
            var body = body
            let owner = try Self.readOwner(&body)
            let hash = try await self.engine.storeBlock(body)
            var payload = WireWriter()
            payload.bytes = hash
            payload.u32(UInt32(body.readableBytes))
            try await self.engine.addHint(owner: owner, kind: .block, payload: payload.bytes)
            return ByteBuffer()

        case ClusterMethod.summaries:
            return try await AntiEntropy.serveSummaries(body, engine: self.engine, layoutVersion: self.layoutVersion())

        case ClusterMethod.partitionKeys:
            return try await AntiEntropy.serveKeys(body, engine: self.engine)

        case ClusterMethod.fetchRecords:
            return try await AntiEntropy.serveFetch(body, engine: self.engine)

        case ClusterMethod.gcRefs:
            return try await GarbageCollector.answerReferences(engine: self.engine, body: body)

        case ClusterMethod.gcCheck:
            return try await GarbageCollector.answerCheck(engine: self.engine, body: body)

        case ClusterMethod.gcDrop:
            return try await GarbageCollector.answerDrop(engine: self.engine, body: body)

        case ClusterMethod.touchBlock:
            return try await GarbageCollector.answerTouch(engine: self.engine, body: body)

        default:
            throw ClusterError("unknown cluster method '\(method)'")
        }
    }
}
