import Hashing
import NIOCore
import Ring
public import StorageEngine
import Synchronization

/// Anti-entropy and rebalancing: brings every partition's replicas to the same records and blocks,
/// and moves partitions this node holds but no longer owns to their owners.
///
/// One ``round()``:
/// 1. For every partition this node owns, it compares a summary of its records and of its blocks
///    (count and XOR of per-version digests, ``PartitionSummary``) with each other owner's
///    (`ae.sum`, one call per peer for all shared partitions). Where they differ it fetches the
///    other's key list (`ae.keys`) and pulls what is missing or newer there (`ae.get`, `blk.get`).
///    Every owner does the same, so missing writes, tombstones and blocks spread whichever side
///    holds them, and each copy travels once (an owner that also pushed would race the other's pull).
/// 2. For every partition it holds but does not own (after a layout change, or blocks kept for hinted
///    writes) it pushes to the owners what none of them holds, and drops its copy only once every
///    owner holds all of it, each owner answering with the same layout version (so two nodes with
///    different layouts never each count on the other and both drop).
///
/// The bytes moved go through a ``Pacer`` so that foreground traffic keeps its latency.
public final class AntiEntropy: Sendable {
    /// Settings of the repair service.
    public struct Settings: Sendable {
        /// Bytes per second repair may move (pushes and pulls together); 0: unlimited.
        public var bytesPerSecond = 64 << 20
        /// Timeout of one call.
        public var timeout: Duration = .seconds(30)
        /// Versions per key-list page and records per transfer.
        public var pageSize = 2000
        public var batchSize = 256
        /// Rounds in a row without progress that a handover waits for new owners to pull from each
        /// other what some of them already hold, before this node pushes it as well.
        public var handoverPatience = 3
        /// Blocks one pull fetches at once from a peer.
        public var blocksInFlight = 4

        public init() {}
    }

    /// What the last round found, and totals since start.
    public struct Progress: Sendable, Equatable {
        /// Rounds finished.
        public var rounds = 0
        /// Partitions whose replicas differed from this node's in the last round.
        public var partitionsOutOfSync = 0
        /// Partitions this node holds but does not own, still to hand over, and their bytes.
        public var partitionsToMove = 0
        public var bytesToMove = 0
        /// Records and blocks this node stored or sent to repair a replica, and their bytes.
        public var recordsRepaired = 0
        public var blocksRepaired = 0
        public var bytesRepaired = 0
        /// Bytes sent to new owners in handovers, and partitions handed over and dropped here.
        public var bytesHandedOver = 0
        public var partitionsHandedOver = 0

        public init() {}
    }

    let engine: StorageEngine
    let view: ClusterView
    let transport: any ClusterTransport
    let settings: Settings
    /// Nil when the rate is unlimited.
    private let pacer: Mutex<Pacer<ContinuousClock.Instant>?>
    private let state = Mutex(Progress())
    /// How this node's handovers are going, over all the partitions it holds but does not own.
    private let handovers = Mutex(HandoverProgress())
    private let clock = ContinuousClock()

    public init(engine: StorageEngine, view: ClusterView, transport: any ClusterTransport, settings: Settings = Settings()) {
        self.engine = engine
        self.view = view
        self.transport = transport
        self.settings = settings
        self.pacer = Mutex(settings.bytesPerSecond > 0 ? Pacer(bytesPerSecond: settings.bytesPerSecond) : nil)
    }

    /// The progress so far.
    public var progress: Progress { self.state.withLock { $0 } }

    // MARK: A round

    /// One pass over every partition this node owns or holds. Errors with one peer or partition are
    /// counted as out of sync and left to the next round.
    public func round() async throws {
        guard let table = self.view.table else { return }
        let power = table.layout.partitionPower
        let local = self.view.localID
        let records = try await self.engine.recordHoldings(power: power)
        let blocks = try await self.engine.blockHoldings(power: power)

        var shared: [String: [Int]] = [:]
        var handover: [Int: [String]] = [:]
        var bytesToMove = 0
        for partition in 0..<table.partitionCount {
            let owners = table.replicas(of: Ring.PartitionID(rawValue: UInt32(partition))).map(\.rawValue)
            if owners.contains(local) {
                for owner in owners where owner != local { shared[owner, default: []].append(partition) }
            } else if records[partition] != nil || blocks[partition] != nil {
                handover[partition] = owners
                bytesToMove += (records[partition]?.bytes ?? 0) + (blocks[partition]?.bytes ?? 0)
            }
        }
        self.state.withLock {
            $0.partitionsToMove = handover.count
            $0.bytesToMove = bytesToMove
        }

        var outOfSync = Set<Int>()
        // This node's summaries, computed once per round for all peers; a partition that pulled
        // something is summarised again for the next peer.
        var localSummaries: [Int: RemoteSummary] = [:]
        // A node whose disk is full or read-only pulls nothing (it still hands partitions over).
        let storesHere = self.view.diskState(of: local).takesWrites
        for (peer, partitions) in shared.sorted(by: { $0.key < $1.key }) where storesHere {
            guard self.view.isReachable(peer) else { continue }
            do {
                let (_, summaries) = try await self.summaries(of: partitions, power: power, from: peer)
                for (partition, remote) in zip(partitions, summaries) {
                    let range = PartitionRange(partition: partition, power: power)
                    do {
                        let ours: RemoteSummary
                        if let cached = localSummaries[partition] {
                            ours = cached
                        } else {
                            ours = RemoteSummary(records: try await self.engine.recordSummary(range), blocks: try await self.engine.blockSummary(range))
                            localSummaries[partition] = ours
                        }
                        if ours.records != remote.records {
                            outOfSync.insert(partition)
                            localSummaries[partition] = nil
                            try await self.pullRecords(range, from: peer)
                        }
                        if ours.blocks != remote.blocks {
                            outOfSync.insert(partition)
                            localSummaries[partition] = nil
                            try await self.pullBlocks(range, from: peer)
                        }
                    } catch {
                        outOfSync.insert(partition)
                    }
                }
            } catch {
                outOfSync.formUnion(partitions)
            }
        }

        var handedOver = 0
        var lacking = 0
        let pushAll = self.handovers.withLock { $0.stalledRounds >= self.settings.handoverPatience }
        for (partition, owners) in handover.sorted(by: { $0.key < $1.key }) {
            let range = PartitionRange(partition: partition, power: power)
            switch await self.handOver(range, to: owners, layoutVersion: table.version, pushAll: pushAll) {
            case .dropped:
                handedOver += 1
                bytesToMove -= (records[partition]?.bytes ?? 0) + (blocks[partition]?.bytes ?? 0)
            case .waiting(let count):
                lacking += count
            case .notNow:
                break
            }
        }
        self.handovers.withLock { $0.observe(lacking: lacking) }
        self.state.withLock {
            $0.rounds += 1
            $0.partitionsOutOfSync = outOfSync.count
            $0.partitionsToMove = handover.count - handedOver
            $0.bytesToMove = max(0, bytesToMove)
            $0.partitionsHandedOver += handedOver
        }
    }

    /// What became of one partition's handover in a round.
    enum HandoverOutcome: Equatable {
        /// Every owner held everything; this node dropped its copy.
        case dropped
        /// This many versions and blocks are still lacking on some owner.
        case waiting(Int)
        /// An owner was unreachable, on another layout version, or a call failed.
        case notNow
    }

    /// Hands one partition this node does not own over to its owners, and drops it here once every
    /// owner holds everything this node holds of it.
    ///
    /// What no owner holds is pushed to them all; what some owners hold already is left to the
    /// owners' own pulls from each other (so a byte travels once), unless `pushAll`: the owners' pulls
    /// made no progress on any of this node's handovers for ``Settings/handoverPatience`` rounds.
    func handOver(_ range: PartitionRange, to owners: [String], layoutVersion: UInt64, pushAll: Bool) async -> HandoverOutcome {
        guard !owners.isEmpty, owners.allSatisfy({ self.view.isReachable($0) }) else { return .notNow }
        do {
            for owner in owners {
                let (version, _) = try await self.summaries(of: [], power: 0, from: owner)
                guard version == layoutVersion else { return .notNow }
            }
            let records = try await self.localVersions(range)
            let blocks = try await self.engine.blockList(range)
            var lackingRecords: [String: [RecordVersion]] = [:]
            var lackingBlocks: [String: [BlockRef]] = [:]
            var recordLackers: [VersionKey: Int] = [:]
            var blockLackers: [[UInt8]: Int] = [:]
            for owner in owners {
                let theirs = try await self.remoteVersions(range, from: owner)
                let lacking = records.filter { mine in theirs[VersionKey(mine)].map { Self.isNewer(mine, than: $0) } ?? true }
                lackingRecords[owner] = lacking
                for version in lacking { recordLackers[VersionKey(version), default: 0] += 1 }
                let held = Set(try await self.remoteBlocks(range, from: owner).map(\.hash))
                lackingBlocks[owner] = blocks.filter { !held.contains($0.hash) }
                for block in lackingBlocks[owner]! { blockLackers[block.hash, default: 0] += 1 }
            }
            if recordLackers.isEmpty && blockLackers.isEmpty {
                // Every owner holds every version compared (or a newer one): drop them. A version
                // written here since is newer than the one compared and stays.
                try await self.engine.removeRecords(records)
                for block in blocks { _ = try await self.engine.removeBlock(block.hash) }
                return .dropped
            }
            for owner in owners {
                let records = lackingRecords[owner]!.filter { pushAll || recordLackers[VersionKey($0)] == owners.count }
                try await self.pushRecords(records, to: owner, handover: true)
                let blocks = lackingBlocks[owner]!.filter { pushAll || blockLackers[$0.hash] == owners.count }
                try await self.pushBlocks(blocks, to: owner, handover: true)
            }
            return .waiting(recordLackers.values.reduce(0, +) + blockLackers.values.reduce(0, +))
        } catch {
            return .notNow
        }
    }

    // MARK: Records

    /// This node's versions in a partition, or in one slice of it.
    func localVersions(_ range: PartitionRange, slice: UInt8? = nil) async throws -> [RecordVersion] {
        var local: [RecordVersion] = []
        var cursor: RecordVersion?
        repeat {
            let page = try await self.engine.recordVersions(range, slice: slice, after: cursor, limit: self.settings.pageSize)
            local += page
            cursor = page.count == self.settings.pageSize ? page.last : nil
        } while cursor != nil
        return local
    }

    /// A peer's versions in a partition, or in one slice of it, by key.
    func remoteVersions(_ range: PartitionRange, slice: UInt8? = nil, from peer: String) async throws -> [VersionKey: RecordVersion] {
        var remote: [VersionKey: RecordVersion] = [:]
        var cursor: RecordVersion?
        repeat {
            let page = try await self.remoteVersions(range, slice: slice, after: cursor, from: peer)
            for version in page { remote[VersionKey(version)] = version }
            cursor = page.count == self.settings.pageSize ? page.last : nil
        } while cursor != nil
        return remote
    }

    /// Fetches the records of a partition that `peer` holds and this node lacks or holds older,
    /// comparing the 256 slices' summaries first so that only the key lists of differing slices travel.
    func pullRecords(_ range: PartitionRange, from peer: String) async throws {
        let ours = try await self.engine.recordSlices(range)
        for (slice, summary) in try await self.remoteSlices(range, from: peer).sorted(by: { $0.key < $1.key })
        where ours[slice] != summary {
            try await self.pullRecords(range, slice: slice, from: peer)
        }
    }

    private func pullRecords(_ range: PartitionRange, slice: UInt8, from peer: String) async throws {
        var wanted = try await self.remoteVersions(range, slice: slice, from: peer)
        for mine in try await self.localVersions(range, slice: slice) {
            if let theirs = wanted[VersionKey(mine)], !Self.isNewer(theirs, than: mine) {
                wanted[VersionKey(mine)] = nil
            }
        }
        let keys = Array(wanted.values)
        for start in stride(from: 0, to: keys.count, by: self.settings.batchSize) {
            let fetched = try await self.fetch(Array(keys[start..<min(start + self.settings.batchSize, keys.count)]), from: peer)
            try await self.pace(fetched.reduce(0) { $0 + $1.value.count })
            let stored = try await self.engine.apply(fetched)
            let count = stored.filter { $0 }.count
            let bytes = zip(fetched, stored).reduce(0) { $0 + ($1.1 ? $1.0.value.count : 0) }
            self.state.withLock {
                $0.recordsRepaired += count
                $0.bytesRepaired += bytes
            }
        }
    }

    /// Sends this node's records of these keys to `peer`.
    func pushRecords(_ versions: [RecordVersion], to peer: String, handover: Bool) async throws {
        for start in stride(from: 0, to: versions.count, by: self.settings.batchSize) {
            let batch = try await self.engine.records(Array(versions[start..<min(start + self.settings.batchSize, versions.count)]))
            guard !batch.isEmpty else { continue }
            var writer = WireWriter()
            writer.u32(UInt32(batch.count))
            for record in batch { writer.record(record) }
            try await self.pace(writer.bytes.count)
            _ = try await self.transport.call(
                peer, method: ClusterMethod.applyRecords, body: ByteBuffer(bytes: writer.bytes), timeout: self.settings.timeout)
            let bytes = batch.reduce(0) { $0 + $1.value.count }
            self.state.withLock {
                $0.recordsRepaired += batch.count
                $0.bytesRepaired += bytes
                if handover { $0.bytesHandedOver += bytes }
            }
        }
    }

    /// Whether version `a` wins over `b` of the same key (the value bytes are not compared here).
    static func isNewer(_ a: RecordVersion, than b: RecordVersion) -> Bool {
        if a.timestamp != b.timestamp { return a.timestamp > b.timestamp }
        return a.deleted && !b.deleted
    }

    // MARK: Blocks

    /// Fetches the blocks of a partition that `peer` holds and this node lacks, verified.
    func pullBlocks(_ range: PartitionRange, from peer: String) async throws {
        let ours = Set(try await self.engine.blockList(range).map(\.hash))
        let wanted = try await self.remoteBlocks(range, from: peer).filter { !ours.contains($0.hash) }
        // A few fetches at once: one at a time, a pull is bound by round trips rather than by the rate.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (index, block) in wanted.enumerated() {
                if index >= self.settings.blocksInFlight { try await group.next() }
                try await self.pace(block.size)
                group.addTask { try await self.pullBlock(block, from: peer) }
            }
            try await group.waitForAll()
        }
    }

    /// Fetches one block from `peer` and stores it here once its SHA-256 matches its name.
    private func pullBlock(_ block: BlockRef, from peer: String) async throws {
        var body = ByteBuffer()
        body.writeBytes(block.hash)
        body.writeInteger(UInt32(block.size))
        var reply = try await self.transport.call(peer, method: ClusterMethod.getBlock, body: body, timeout: self.settings.timeout)
        guard reply.readInteger(as: UInt8.self) == 1, reply.readableBytes == block.size,
            reply.withUnsafeReadableBytes({ Digests.sha256($0) }) == block.hash
        else { return }
        try await self.engine.storeBlock(reply, hash: block.hash)
        self.state.withLock {
            $0.blocksRepaired += 1
            $0.bytesRepaired += block.size
        }
    }

    /// Sends these blocks of this node to `peer`.
    func pushBlocks(_ blocks: [BlockRef], to peer: String, handover: Bool) async throws {
        for block in blocks {
            // A copy that fails its checks here is left to the scrubber; the peer gets it from a good replica.
            guard let bytes = try? await self.engine.loadBlock(block) else { continue }
            try await self.pace(block.size)
            _ = try await self.transport.call(
                peer, method: ClusterMethod.putBlock, body: bytes, bodyDigest: block.hash, timeout: self.settings.timeout)
            self.state.withLock {
                $0.blocksRepaired += 1
                $0.bytesRepaired += block.size
                if handover { $0.bytesHandedOver += block.size }
            }
        }
    }

    // MARK: Calls

    /// A peer's layout version and its summaries of the given partitions.
    func summaries(of partitions: [Int], power: Int, from peer: String) async throws -> (UInt64, [RemoteSummary]) {
        var writer = WireWriter()
        writer.u8(UInt8(power))
        writer.u32(UInt32(partitions.count))
        for partition in partitions { writer.u32(UInt32(partition)) }
        let reply = try await self.transport.call(
            peer, method: ClusterMethod.summaries, body: ByteBuffer(bytes: writer.bytes), timeout: self.settings.timeout)
        var reader = WireReader(Array(buffer: reply))
        let version = try reader.u64()
        var result: [RemoteSummary] = []
        for _ in partitions {
            result.append(RemoteSummary(records: try reader.summary(), blocks: try reader.summary()))
        }
        try reader.finish()
        return (version, result)
    }

    /// What an `ae.keys` call asks for.
    enum KeysKind: UInt8 {
        case records = 0
        case blocks = 1
        case slices = 2
    }

    /// Sends an `ae.keys` call and returns a reader positioned after the reply's count.
    private func keys(
        _ kind: KeysKind, _ range: PartitionRange, slice: UInt8? = nil, after cursor: RecordVersion? = nil, from peer: String
    ) async throws -> (WireReader, UInt32) {
        var writer = WireWriter()
        writer.u8(kind.rawValue)
        writer.u32(range.lower)
        writer.u32(range.upper)
        writer.u32(kind == .records ? UInt32(self.settings.pageSize) : 0)
        writer.u8(slice == nil ? 0 : 1)
        writer.u8(slice ?? 0)
        writer.u8(cursor == nil ? 0 : 1)
        if let cursor { writer.version(cursor) }
        let reply = try await self.transport.call(
            peer, method: ClusterMethod.partitionKeys, body: ByteBuffer(bytes: writer.bytes), timeout: self.settings.timeout)
        var reader = WireReader(Array(buffer: reply))
        let count = try reader.u32()
        return (reader, count)
    }

    func remoteVersions(_ range: PartitionRange, slice: UInt8?, after cursor: RecordVersion?, from peer: String) async throws -> [RecordVersion] {
        var (reader, count) = try await self.keys(.records, range, slice: slice, after: cursor, from: peer)
        var result: [RecordVersion] = []
        for _ in 0..<min(count, 10_000) { result.append(try reader.version()) }
        try reader.finish()
        return result
    }

    /// A peer's summaries of the slices of a partition that hold records.
    func remoteSlices(_ range: PartitionRange, from peer: String) async throws -> [UInt8: PartitionSummary] {
        var (reader, count) = try await self.keys(.slices, range, from: peer)
        var result: [UInt8: PartitionSummary] = [:]
        for _ in 0..<min(count, 256) { result[try reader.u8()] = try reader.summary() }
        try reader.finish()
        return result
    }

    func remoteBlocks(_ range: PartitionRange, from peer: String) async throws -> [BlockRef] {
        var (reader, count) = try await self.keys(.blocks, range, from: peer)
        var result: [BlockRef] = []
        for _ in 0..<count {
            let hash = try reader.bytes(32)
            result.append(BlockRef(hash: hash, size: Int(try reader.u32())))
        }
        try reader.finish()
        return result
    }

    func fetch(_ keys: [RecordVersion], from peer: String) async throws -> [ReplicaRecord] {
        var writer = WireWriter()
        writer.u32(UInt32(keys.count))
        for key in keys { writer.version(key) }
        let reply = try await self.transport.call(
            peer, method: ClusterMethod.fetchRecords, body: ByteBuffer(bytes: writer.bytes), timeout: self.settings.timeout)
        var reader = WireReader(Array(buffer: reply))
        let count = try reader.u32()
        var result: [ReplicaRecord] = []
        for _ in 0..<count { result.append(try reader.record()) }
        try reader.finish()
        return result
    }

    /// Waits until the pacer allows `bytes` more.
    private func pace(_ bytes: Int) async throws {
        let now = self.clock.now
        let wait = self.pacer.withLock { pacer in pacer?.consumed(bytes, now: now) ?? .zero }
        if wait > .zero { try await Task.sleep(for: wait) }
    }

    // MARK: Serving

    /// Answers `ae.sum`: this node's layout version, then for each asked partition its record and
    /// block summaries.
    static func serveSummaries(_ body: ByteBuffer, engine: StorageEngine, layoutVersion: UInt64) async throws -> ByteBuffer {
        var reader = WireReader(Array(buffer: body))
        let power = Int(try reader.u8())
        guard power <= 16 else { throw ClusterError.malformed }
        let count = try reader.u32()
        var partitions: [Int] = []
        for _ in 0..<count {
            let partition = Int(try reader.u32())
            guard partition < 1 << power else { throw ClusterError.malformed }
            partitions.append(partition)
        }
        try reader.finish()
        var writer = WireWriter()
        writer.u64(layoutVersion)
        for partition in partitions {
            let range = PartitionRange(partition: partition, power: power)
            writer.summary(try await engine.recordSummary(range))
            writer.summary(try await engine.blockSummary(range))
        }
        return ByteBuffer(bytes: writer.bytes)
    }

    /// Answers `ae.keys`: a page of record versions (of the range, or of one slice of it), every block
    /// of the range, or the summaries of the range's record slices.
    static func serveKeys(_ body: ByteBuffer, engine: StorageEngine) async throws -> ByteBuffer {
        var reader = WireReader(Array(buffer: body))
        guard let kind = KeysKind(rawValue: try reader.u8()) else { throw ClusterError.malformed }
        var range = PartitionRange(partition: 0, power: 0)
        range.lower = try reader.u32()
        range.upper = try reader.u32()
        let limit = Int(min(try reader.u32(), 10_000))
        let hasSlice = try reader.u8() == 1
        let slice = try reader.u8()
        let cursor = try reader.u8() == 1 ? try reader.version() : nil
        try reader.finish()
        guard range.lower <= range.upper else { throw ClusterError.malformed }
        var writer = WireWriter()
        switch kind {
        case .records:
            let versions = try await engine.recordVersions(range, slice: hasSlice ? slice : nil, after: cursor, limit: limit)
            writer.u32(UInt32(versions.count))
            for version in versions { writer.version(version) }
        case .blocks:
            let blocks = try await engine.blockList(range)
            writer.u32(UInt32(blocks.count))
            for block in blocks {
                writer.bytes += block.hash
                writer.u32(UInt32(block.size))
            }
        case .slices:
            let slices = try await engine.recordSlices(range)
            writer.u32(UInt32(slices.count))
            for (slice, summary) in slices.sorted(by: { $0.key < $1.key }) {
                writer.u8(slice)
                writer.summary(summary)
            }
        }
        return ByteBuffer(bytes: writer.bytes)
    }

    /// Answers `ae.get`: the stored records of the given keys.
    static func serveFetch(_ body: ByteBuffer, engine: StorageEngine) async throws -> ByteBuffer {
        var reader = WireReader(Array(buffer: body))
        let count = try reader.u32()
        guard count <= 10_000 else { throw ClusterError.malformed }
        var keys: [RecordVersion] = []
        for _ in 0..<count { keys.append(try reader.version()) }
        try reader.finish()
        let records = try await engine.records(keys)
        var writer = WireWriter()
        writer.u32(UInt32(records.count))
        for record in records { writer.record(record) }
        return ByteBuffer(bytes: writer.bytes)
    }
}

/// How a node's handovers are going: what the owners lacked at the last round, over all the
/// partitions still to hand over, and for how many rounds in a row that did not shrink (owners pull
/// one partition after another, so progress is judged over all of them).
struct HandoverProgress: Sendable {
    var lacking = 0
    var stalledRounds = 0

    mutating func observe(lacking: Int) {
        self.stalledRounds = lacking == 0 || lacking < self.lacking ? 0 : self.stalledRounds + 1
        self.lacking = lacking
    }
}

/// A peer's summaries of one partition.
struct RemoteSummary: Sendable {
    var records: PartitionSummary
    var blocks: PartitionSummary
}

/// A record's key without its version, for matching two replicas' lists.
struct VersionKey: Hashable {
    let table: UInt8
    let partitionKey: [UInt8]
    let sortKey: [UInt8]

    init(_ version: RecordVersion) {
        self.table = version.table
        self.partitionKey = version.partitionKey
        self.sortKey = version.sortKey
    }
}

extension WireWriter {
    mutating func version(_ version: RecordVersion) {
        self.u8(version.table)
        self.data(version.partitionKey)
        self.data(version.sortKey)
        self.u64(version.timestamp.rawValue)
        self.u8(version.deleted ? 1 : 0)
    }

    mutating func summary(_ summary: PartitionSummary) {
        self.u64(summary.count)
        self.bytes += summary.digest
    }
}

extension WireReader {
    mutating func version() throws(ClusterError) -> RecordVersion {
        RecordVersion(
            table: try self.u8(),
            partitionKey: try self.data(),
            sortKey: try self.data(),
            timestamp: HybridTimestamp(rawValue: try self.u64()),
            deleted: try self.u8() != 0
        )
    }

    mutating func summary() throws(ClusterError) -> PartitionSummary {
        PartitionSummary(count: try self.u64(), digest: try self.bytes(16))
    }

    mutating func bytes(_ count: Int) throws(ClusterError) -> [UInt8] {
        var result: [UInt8] = []
        result.reserveCapacity(count)
        for _ in 0..<count { result.append(try self.u8()) }
        return result
    }
}
