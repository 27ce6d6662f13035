import Foundation
import NIOCore
import Replication
import Ring
import S3API
public import StorageEngine
import Synchronization

/// The cluster-wide garbage collector of one node: each pass, in this order,
///
/// 1. **Stale multipart uploads.** Upload records older than ``Configuration/uploadExpiry`` are
///    aborted (upload and parts tombstoned, through ``ClusterStore/abortUpload(uploadID:bucket:key:)``)
///    by the first reachable owner of the bucket's partition; every other owner leaves them alone.
/// 2. **Old hints.** Hints stored longer than the grace period ago are dropped and no longer replayed
///    (``HintReplayer`` refuses them too). This is Cassandra's `gc_grace_seconds` rule: a tombstone is
///    collected only once it is older than the grace period, so once hints that old are gone, no
///    hinted write older than a collected tombstone can reach a replica and bring the key back. The
///    owner that missed such a write gets it from anti-entropy instead.
/// 3. **Tombstones.** A tombstone this node holds that is older than the grace period (by its hybrid
///    timestamp's milliseconds) is removed once every current owner of its partition — and every
///    other node of the layout or reachable member, which may hold it from an earlier layout; all
///    must answer ``ClusterMethod/gcCheck`` — holds the key at a timestamp at least as late or holds
///    nothing for it: then no node can hand an older value back (a read repair, a handover).
/// 4. **Unreferenced blocks**, by mark and sweep. Every node of the layout (and any other reachable
///    member) is asked, twice in a row, for a Bloom filter (``ClusterMethod/gcRefs``, a fresh seed
///    each sweep) of every block its live object and part records and its hints refer to. If any node
///    does not answer, the sweep is skipped (a node that is down may hold the only copies of some
///    records). Otherwise this node deletes its block files
///    that no filter contains and whose modification time is older than the sweep's start minus the
///    grace period, re-checked at the moment of deleting under the lock that writes pin blocks with.
///    The other owners' copies go at the same time, and only if every copy is old
///    (``ClusterMethod/gcDrop``), so that anti-entropy finds no copy left to pull back.
///
/// Why a sweep never deletes a block that an acknowledged object refers to: a record that refers to a
/// block is committed only after the block was written to (or, when it existed, its modification
/// time refreshed on) its owners: by an upload (``BlockStore`` touches a block written again), by a
/// copy (``Replicator/refreshBlocks(_:)``), or by the parts of a multipart upload, which stay live
/// until the object that reuses their blocks is committed on W owners (each node scans its records in
/// one snapshot, so it sees the parts or the object); a reference that moves between nodes (a hint
/// handed back, a partition handed over: copied, then removed) escapes at most one of the two rounds
/// of filters. Filters are taken after the sweep starts. So a
/// block missing from every filter whose file is older than start − grace can only be referred to by
/// a record committed more than the grace period after its block was last written or touched: the
/// grace period must exceed the longest upload (and the default, a day, does by far).
public final class GarbageCollector: Sendable {
    /// Settings; the same on every node.
    public struct Configuration: Sendable {
        /// Between passes; zero disables the collector. Default ten minutes.
        public var interval: Duration = .seconds(600)
        /// How old a tombstone, an unreferenced block file or a hint must be before it goes. Default a day.
        public var grace: Duration = .seconds(86_400)
        /// Multipart uploads started longer ago are aborted. Default seven days.
        public var uploadExpiry: Duration = .seconds(7 * 86_400)
        /// One node's answer to a call (a reference filter takes a scan of its records).
        public var callTimeout: Duration = .seconds(120)
        /// Tombstones checked per call.
        public var batchSize = 500

        public init() {}
    }

    /// What one pass did.
    public struct Report: Sendable, Equatable {
        public var uploadsAborted = 0
        public var hintsDropped = 0
        public var tombstonesCollected = 0
        public var blocksCollected = 0
        public var bytesCollected: Int64 = 0
        /// Why the block sweep was skipped, if it was (a node did not answer, no layout).
        public var sweepSkipped: String?

        public init() {}
    }

    /// Totals since start, for `/metrics`.
    public struct Totals: Sendable, Equatable {
        public var runs = 0
        public var blocksCollected = 0
        public var bytesCollected: Int64 = 0
        public var tombstonesCollected = 0
        public var uploadsAborted = 0
        public var skipped = 0
    }

    let store: ClusterStore
    let configuration: Configuration
    let nowMilliseconds: @Sendable () -> UInt64
    let makeSeed: @Sendable () -> UInt64
    private let totalsState = Mutex(Totals())
    /// One pass at a time.
    private let running = Mutex(false)

    var engine: StorageEngine { self.store.engine }
    var replicator: Replicator { self.store.replicator }
    var view: ClusterView { self.store.replicator.view }
    var transport: any ClusterTransport { self.store.replicator.transport }

    /// - Parameters:
    ///   - nowMilliseconds: the wall clock (injected by tests to move past the grace period).
    ///   - makeSeed: a fresh seed for each sweep's filters (default: the system's random source).
    public init(
        store: ClusterStore,
        configuration: Configuration = Configuration(),
        nowMilliseconds: (@Sendable () -> UInt64)? = nil,
        makeSeed: (@Sendable () -> UInt64)? = nil
    ) {
        self.store = store
        self.configuration = configuration
        self.nowMilliseconds = nowMilliseconds ?? { UInt64(Date().timeIntervalSince1970 * 1000) }
        self.makeSeed = makeSeed ?? {
            var random = SystemRandomNumberGenerator()
            return random.next()
        }
    }

    /// Totals since start.
    public var totals: Totals { self.totalsState.withLock { $0 } }

    var graceMilliseconds: Int64 { Self.milliseconds(self.configuration.grace) }

    static func milliseconds(_ duration: Duration) -> Int64 {
        duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
    }

    // MARK: One pass

    /// Runs one pass (uploads, hints, tombstones, blocks). A step that fails is reported in the
    /// thrown error after the later steps ran; a sweep skipped because a node did not answer is not an
    /// error (``Report/sweepSkipped``).
    @discardableResult
    public func run() async throws -> Report {
        guard self.running.withLock({ running in
            defer { running = true }
            return !running
        }) else { return Report() }
        defer { self.running.withLock { $0 = false } }
        var report = Report()
        var failures: [String] = []
        do { report.uploadsAborted = try await self.abortStaleUploads() } catch { failures.append("uploads: \(error)") }
        do {
            report.hintsDropped = try await self.engine.dropHints(createdBefore: Int64(self.nowMilliseconds()) - self.graceMilliseconds)
        } catch { failures.append("hints: \(error)") }
        do { report.tombstonesCollected = try await self.collectTombstones() } catch { failures.append("tombstones: \(error)") }
        do {
            let sweep = try await self.sweepBlocks()
            report.blocksCollected = sweep.count
            report.bytesCollected = sweep.bytes
            report.sweepSkipped = sweep.skipped
        } catch { failures.append("blocks: \(error)") }
        self.totalsState.withLock { totals in
            totals.runs += 1
            totals.uploadsAborted += report.uploadsAborted
            totals.tombstonesCollected += report.tombstonesCollected
            totals.blocksCollected += report.blocksCollected
            totals.bytesCollected += report.bytesCollected
            if report.sweepSkipped != nil { totals.skipped += 1 }
        }
        if !failures.isEmpty { throw ClusterError("garbage collection: " + failures.joined(separator: "; ")) }
        return report
    }

    // MARK: Stale uploads

    /// Aborts the expired uploads this node is the first reachable owner of; returns how many.
    func abortStaleUploads() async throws -> Int {
        let cutoffMilliseconds = Int64(self.nowMilliseconds()) - Self.milliseconds(self.configuration.uploadExpiry)
        let cutoff = Date(timeIntervalSince1970: Double(cutoffMilliseconds) / 1000)
        var aborted = 0
        var cursor: (partitionKey: [UInt8], sortKey: [UInt8])?
        while true {
            let page = try await self.engine.liveRecords(table: Tables.upload, after: cursor, limit: 500)
            for record in page {
                guard let upload = try? Tables.upload(record), upload.initiated < cutoff else { continue }
                let owners = try self.replicator.owners(ofPartitionKey: record.partitionKey, quorum: 1, operation: "write")
                guard owners.first(where: { self.view.isReachable($0) }) == self.view.localID else { continue }
                do {
                    try await self.store.abortUpload(uploadID: upload.uploadID, bucket: upload.bucket, key: upload.key)
                    aborted += 1
                } catch let error as StorageError where error.code == .noSuchUpload {
                    continue  // completed or aborted meanwhile
                }
            }
            guard page.count == 500, let last = page.last else { return aborted }
            cursor = (last.partitionKey, last.sortKey)
        }
    }

    // MARK: Tombstones

    /// Removes the tombstones older than the grace period that every owner of their partition holds
    /// (or has superseded, or has collected already); returns how many.
    ///
    /// Not only the owners are asked but every node of the layout, and any other member reachable
    /// (a node just removed from the layout): a node that held the partition under an earlier layout
    /// and has not handed it over yet may still hold an older value, which its handover would push to
    /// owners that no longer hold the tombstone. So nothing is collected while a node of the layout
    /// is unreachable.
    func collectTombstones() async throws -> Int {
        guard let layout = self.view.layout else { return 0 }
        let members = layout.nodes.map(\.id.rawValue)
        guard members.allSatisfy({ self.view.isReachable($0) }) else { return 0 }
        let nodes = Array(Set(members + self.view.reachablePeers + [self.view.localID])).sorted()
        let before = HybridTimestamp(milliseconds: UInt64(max(0, Int64(self.nowMilliseconds()) - self.graceMilliseconds)), logical: 0)
        var collected = 0
        var cursor: RecordVersion?
        while true {
            let page = try await self.engine.tombstones(before: before, after: cursor, limit: self.configuration.batchSize)
            if !page.isEmpty {
                let allowed = await self.check(page, on: nodes)
                let removable = zip(page, allowed).filter(\.1).map(\.0)
                if !removable.isEmpty { collected += try await self.engine.removeRecords(removable) }
            }
            guard page.count == self.configuration.batchSize, let last = page.last else { return collected }
            cursor = last
        }
    }

    /// For each version, whether every one of `owners` allows its collection (a failed call: none).
    func check(_ versions: [RecordVersion], on owners: [String]) async -> [Bool] {
        var writer = WireWriter()
        writer.u32(UInt32(versions.count))
        for version in versions {
            writer.u8(version.table)
            writer.data(version.partitionKey)
            writer.data(version.sortKey)
            writer.u64(version.timestamp.rawValue)
        }
        let body = ByteBuffer(bytes: writer.bytes)
        let transport = self.transport
        let timeout = self.configuration.callTimeout
        return await withTaskGroup(of: [Bool]?.self) { group in
            for owner in owners {
                group.addTask {
                    guard let reply = try? await transport.call(owner, method: ClusterMethod.gcCheck, body: body, timeout: timeout) else {
                        return nil
                    }
                    var reader = WireReader(Array(buffer: reply))
                    guard let count = try? reader.u32(), count == versions.count else { return nil }
                    var answers: [Bool] = []
                    for _ in 0..<count {
                        guard let answer = try? reader.u8() else { return nil }
                        answers.append(answer == 1)
                    }
                    return answers
                }
            }
            var combined = Array(repeating: true, count: versions.count)
            for await answer in group {
                guard let answer else { return Array(repeating: false, count: versions.count) }
                for index in combined.indices where !answer[index] { combined[index] = false }
            }
            return combined
        }
    }

    // MARK: Blocks

    /// One mark-and-sweep of this node's block files.
    func sweepBlocks() async throws -> (count: Int, bytes: Int64, skipped: String?) {
        let start = Int64(self.nowMilliseconds())
        let cutoff = start - self.graceMilliseconds
        guard let layout = self.view.layout else { return (0, 0, "no layout yet") }
        // The layout's nodes, and any other reachable member (a node just removed from the layout
        // may hold records it has not handed over yet).
        let members = layout.nodes.map(\.id.rawValue)
        let nodes = Array(Set(members + self.view.reachablePeers)).sorted()
        let files = try await self.engine.blockFiles()
        // Whole seconds, rounded down: a file at or past the cutoff by its seconds is past it exactly.
        let candidates = files.filter { Int64($0.modifiedSeconds) * 1000 < cutoff }
        guard !candidates.isEmpty else { return (0, 0, nil) }
        // The cluster's distinct blocks are about this node's share times nodes / replicas.
        let estimate = files.count * max(1, nodes.count) / max(1, layout.replicaCount) + 1
        let seed = self.makeSeed()
        let bits = BloomFilter.bits(forCount: estimate)
        var combined = BloomFilter(bitCount: bits, hashCount: Self.hashCount, seed: seed)
        var writer = WireWriter()
        writer.u64(seed)
        writer.u32(UInt32(bits))
        writer.u8(UInt8(Self.hashCount))
        let body = ByteBuffer(bytes: writer.bytes)
        let transport = self.transport
        let timeout = self.configuration.callTimeout
        let view = self.view
        // Two rounds, the second asked after every answer of the first: a reference that moves between
        // nodes (copied, then removed where it was: a hint handed back, a partition handed over) can
        // escape one round (its new place scanned before the copy, its old one after the removal),
        // but not both, since the second round scans its new place after the first scanned its old one.
        for _ in 0..<2 {
            let answers = await withTaskGroup(of: (String, Result<BloomFilter, ClusterError>).self) { group in
                for node in nodes {
                    group.addTask {
                        guard view.isReachable(node) else { return (node, .failure(ClusterError("unreachable"))) }
                        do {
                            let reply = try await transport.call(node, method: ClusterMethod.gcRefs, body: body, timeout: timeout)
                            guard let filter = BloomFilter(encoded: Array(buffer: reply)) else {
                                return (node, .failure(ClusterError("an unreadable reference filter")))
                            }
                            return (node, .success(filter))
                        } catch {
                            return (node, .failure(ClusterError("\(error)")))
                        }
                    }
                }
                var answers: [(String, Result<BloomFilter, ClusterError>)] = []
                for await answer in group { answers.append(answer) }
                return answers
            }
            for (node, answer) in answers.sorted(by: { $0.0 < $1.0 }) {
                switch answer {
                case .failure(let error):
                    return (
                        0, 0,
                        "node \(node) did not answer with its block references (\(error)); "
                            + "nothing is deleted while a node may hold the only copy of a record"
                    )
                case .success(let filter):
                    guard combined.formUnion(filter) else {
                        return (0, 0, "node \(node) answered with a reference filter of other parameters")
                    }
                }
            }
        }
        let unreferenced = candidates.map(\.hash).filter { !combined.contains($0) }
        var count = 0
        var bytes: Int64 = 0
        for batch in stride(from: 0, to: unreferenced.count, by: 500) {
            let slice = Array(unreferenced[batch..<min(batch + 500, unreferenced.count)])
            let deleted = try await self.deleteEverywhere(slice, cutoff: cutoff)
            count += deleted.count
            bytes += deleted.bytes
        }
        return (count, bytes, nil)
    }

    /// Deletes these unreferenced blocks on this node and on their other owners, all copies or none:
    /// only blocks whose copy is old (unpinned, modified before `cutoff`) on every owner that has one
    /// go, at once. A copy left on one owner would let anti-entropy pull the block back, fresh, onto
    /// the others, again and again; a young copy (a write in progress, or such a pull) keeps every copy
    /// until it has aged too. Each deletion re-checks the copy's age under the pin lock; the verdict
    /// (in no node's filter) holds on every node.
    /// - Returns: the copies deleted (here and on the other owners) and their bytes.
    func deleteEverywhere(_ hashes: [[UInt8]], cutoff: Int64) async throws -> (count: Int, bytes: Int64) {
        guard let table = self.view.table else { return (0, 0) }
        var byOwner: [String: [[UInt8]]] = [:]
        var deletable = Set(hashes)
        for hash in hashes {
            for owner in table.replicas(of: table.partition(for: hash)).map(\.rawValue) where owner != self.view.localID {
                byOwner[owner, default: []].append(hash)
            }
        }
        // Phase 1: every owner's copy must be absent or old (a failed call keeps its blocks).
        let localAges = try await self.engine.blockAges(hashes, modifiedBefore: cutoff)
        for (hash, age) in zip(hashes, localAges) where age == 2 { deletable.remove(hash) }
        let probes = await self.callOwners(byOwner, mode: 0, cutoff: cutoff)
        for (owner, hashes) in byOwner {
            guard let reply = probes[owner], reply.count == hashes.count else {
                deletable.subtract(hashes)
                continue
            }
            for (hash, age) in zip(hashes, reply) where age == 2 { deletable.remove(hash) }
        }
        // Phase 2: delete them everywhere.
        let chosen = hashes.filter { deletable.contains($0) }
        var total = try await self.engine.deleteBlocks(chosen, modifiedBefore: cutoff)
        var drops: [String: [[UInt8]]] = [:]
        for (owner, hashes) in byOwner {
            let mine = hashes.filter { deletable.contains($0) }
            if !mine.isEmpty { drops[owner] = mine }
        }
        for (_, reply) in await self.callOwners(drops, mode: 1, cutoff: cutoff) {
            var reader = WireReader(reply)
            guard let count = try? reader.u32(), let bytes = try? reader.u64() else { continue }
            total.count += Int(count)
            total.bytes += Int64(bitPattern: bytes)
        }
        return total
    }

    /// Sends ``ClusterMethod/gcDrop`` (`mode` 0: ages, 1: delete) to each node with its hashes;
    /// returns the replies of the nodes that answered (the ages, or the delete reply's bytes).
    func callOwners(_ byOwner: [String: [[UInt8]]], mode: UInt8, cutoff: Int64) async -> [String: [UInt8]] {
        let transport = self.transport
        let timeout = self.configuration.callTimeout
        let view = self.view
        return await withTaskGroup(of: (String, [UInt8]?).self) { group in
            for (owner, hashes) in byOwner {
                var writer = WireWriter()
                writer.u8(mode)
                writer.u64(UInt64(max(0, cutoff)))
                writer.u32(UInt32(hashes.count))
                for hash in hashes { writer.bytes += hash }
                let body = ByteBuffer(bytes: writer.bytes)
                group.addTask {
                    guard view.isReachable(owner),
                        let reply = try? await transport.call(owner, method: ClusterMethod.gcDrop, body: body, timeout: timeout)
                    else { return (owner, nil) }
                    var bytes = Array(buffer: reply)
                    if mode == 0 {
                        var reader = WireReader(bytes)
                        guard let count = try? reader.u32(), Int(count) == hashes.count, bytes.count == 4 + hashes.count else {
                            return (owner, nil)
                        }
                        bytes.removeFirst(4)
                    }
                    return (owner, bytes)
                }
            }
            var replies: [String: [UInt8]] = [:]
            for await (owner, reply) in group {
                if let reply { replies[owner] = reply }
            }
            return replies
        }
    }

    static let hashCount = 7

    // MARK: Answers to other nodes

    /// Answers ``ClusterMethod/gcRefs``: the filter of every block this node's live object and part
    /// records and its hints refer to. A record whose value cannot be read fails the call (so no
    /// sweep deletes what it might refer to).
    static func answerReferences(engine: StorageEngine, body: ByteBuffer) async throws -> ByteBuffer {
        var reader = WireReader(Array(buffer: body))
        let seed = try reader.u64()
        let requested = Int(try reader.u32())
        let hashCount = Int(try reader.u8())
        try reader.finish()
        guard (1...32).contains(hashCount) else { throw ClusterError.malformed }
        var bits = requested
        if bits == 0 {
            // The answerer picks: enough for what it refers to.
            let count = try await engine.scanReferences(
                tables: [Tables.object, Tables.part], into: 0,
                record: { count, record in count += (try? Self.blocks(of: record).count) ?? 1 },
                hint: { count, _ in count += 16 })
            bits = BloomFilter.bits(forCount: count)
        }
        let filter = BloomFilter(bitCount: bits, hashCount: hashCount, seed: seed)
        let result = try await engine.scanReferences(
            tables: [Tables.object, Tables.part], into: (filter: filter, unreadable: nil as String?),
            record: { state, record in
                do {
                    for ref in try Self.blocks(of: record) { state.filter.insert(ref.hash) }
                } catch {
                    let bucket = String(decoding: record.partitionKey, as: UTF8.self)
                    state.unreadable = "\(bucket)/\(String(decoding: record.sortKey, as: UTF8.self))"
                }
            },
            hint: { state, hint in
                switch hint.kind {
                case .block:
                    if hint.payload.count >= 32 { state.filter.insert(Array(hint.payload[0..<32])) }
                case .records:
                    var reader = WireReader(hint.payload)
                    guard let count = try? reader.u32() else {
                        state.unreadable = "hint \(hint.id)"
                        return
                    }
                    for _ in 0..<count {
                        guard let record = try? reader.record() else {
                            state.unreadable = "hint \(hint.id)"
                            return
                        }
                        guard !record.deleted else { continue }
                        guard let refs = try? Self.blocks(of: record) else {
                            state.unreadable = "hint \(hint.id)"
                            return
                        }
                        for ref in refs { state.filter.insert(ref.hash) }
                    }
                }
            })
        if let unreadable = result.unreadable {
            throw ClusterError("cannot read the block references of record \(unreadable)")
        }
        return ByteBuffer(bytes: result.filter.encoded())
    }

    /// The blocks a live record refers to (none for tables without data).
    static func blocks(of record: ReplicaRecord) throws -> [BlockRef] {
        switch record.table {
        case Tables.object: return try Tables.object(record).data.blocks
        case Tables.part: return try Tables.part(record).blocks
        default: return []
        }
    }

    /// Answers ``ClusterMethod/gcCheck``: for each version, 1 when this node holds the key at that
    /// timestamp or later, or holds nothing for it.
    static func answerCheck(engine: StorageEngine, body: ByteBuffer) async throws -> ByteBuffer {
        var reader = WireReader(Array(buffer: body))
        let count = try reader.u32()
        guard count <= 100_000 else { throw ClusterError.malformed }
        var versions: [RecordVersion] = []
        for _ in 0..<count {
            versions.append(
                RecordVersion(
                    table: try reader.u8(), partitionKey: try reader.data(), sortKey: try reader.data(),
                    timestamp: HybridTimestamp(rawValue: try reader.u64()), deleted: true))
        }
        try reader.finish()
        let answers = try await engine.allowsCollection(versions)
        var writer = WireWriter()
        writer.u32(UInt32(answers.count))
        for answer in answers { writer.u8(answer ? 1 : 0) }
        return ByteBuffer(bytes: writer.bytes)
    }

    /// Answers ``ClusterMethod/gcDrop``: mode 0 gives each block's age here (0 absent, 1 old and
    /// unpinned, 2 pinned or younger than the cutoff); mode 1 deletes those that are old and unpinned.
    static func answerDrop(engine: StorageEngine, body: ByteBuffer) async throws -> ByteBuffer {
        var reader = WireReader(Array(buffer: body))
        let mode = try reader.u8()
        let cutoff = Int64(clamping: try reader.u64())
        let count = try reader.u32()
        guard mode <= 1, count <= 100_000 else { throw ClusterError.malformed }
        var hashes: [[UInt8]] = []
        for _ in 0..<count {
            var hash: [UInt8] = []
            for _ in 0..<32 { hash.append(try reader.u8()) }
            hashes.append(hash)
        }
        try reader.finish()
        var writer = WireWriter()
        if mode == 0 {
            let ages = try await engine.blockAges(hashes, modifiedBefore: cutoff)
            writer.u32(UInt32(ages.count))
            writer.bytes += ages
        } else {
            let deleted = try await engine.deleteBlocks(hashes, modifiedBefore: cutoff)
            writer.u32(UInt32(deleted.count))
            writer.u64(UInt64(bitPattern: deleted.bytes))
        }
        return ByteBuffer(bytes: writer.bytes)
    }

    /// Answers ``ClusterMethod/touchBlock``: `u8 1` when this node holds the block (its modification
    /// time now refreshed), `u8 0` when it does not.
    static func answerTouch(engine: StorageEngine, body: ByteBuffer) async throws -> ByteBuffer {
        var body = body
        guard let hash = body.readBytes(length: 32), body.readableBytes == 0 else { throw ClusterError.malformed }
        return ByteBuffer(bytes: [try await engine.touchBlock(hash) ? 1 : 0])
    }

    // MARK: Metrics

    /// The collector's counters in the Prometheus text format.
    public func prometheusMetrics() -> String {
        let totals = self.totals
        var text = ""
        func counter(_ name: String, _ help: String, _ value: some BinaryInteger) {
            text += "# HELP \(name) \(help)\n# TYPE \(name) counter\n\(name) \(value)\n"
        }
        counter("cloud_gc_runs_total", "Garbage collection passes run.", totals.runs)
        counter("cloud_gc_blocks_collected_total", "Unreferenced block files deleted by this node's sweeps (here and on other owners).", totals.blocksCollected)
        counter("cloud_gc_bytes_collected_total", "Disk bytes freed by this node's sweeps.", totals.bytesCollected)
        counter("cloud_gc_tombstones_collected_total", "Tombstones removed once every owner held them.", totals.tombstonesCollected)
        counter("cloud_gc_uploads_aborted_total", "Stale multipart uploads aborted.", totals.uploadsAborted)
        counter("cloud_gc_skipped_total", "Block sweeps skipped because a node did not answer.", totals.skipped)
        return text
    }
}

extension Replicator {
    /// Makes blocks that a new record reuses without writing them (CopyObject) look freshly written
    /// to the collector: every reachable owner refreshes its copy's modification time
    /// (``ClusterMethod/touchBlock``), and a block that fewer than W owners hold is read from any
    /// replica and written again.
    ///
    /// Why this makes a copy safe: the collector deletes a block file only when it is older than the
    /// sweep's start minus the grace period and absent from reference filters taken after that
    /// start. After this call the W owners' files are newer than now; the copy's record commits right
    /// after. Should a sweep start more than the grace period after this touch, the record is
    /// committed by then and in the filters; any earlier sweep sees files too young to delete. (An
    /// owner unreachable now keeps an old file and may lose its copy if the source object is deleted
    /// meanwhile; W copies remain and anti-entropy restores the rest.)
    /// - Throws: ``StorageError/Code/missingBlock`` when no replica holds a block any more (the
    ///   source was deleted and collected).
    public func refreshBlocks(_ refs: [BlockRef]) async throws {
        let transport = self.transport
        let timeout = self.timeouts.block
        for ref in Set(refs) {
            let owners = try self.owners(ofHash: ref.hash, quorum: self.policy.writeQuorum, operation: "write")
                .filter { self.view.isReachable($0) }
            let body = ByteBuffer(bytes: ref.hash)
            let found = await withTaskGroup(of: Bool.self) { group in
                for owner in owners {
                    group.addTask {
                        guard let reply = try? await transport.call(owner, method: ClusterMethod.touchBlock, body: body, timeout: timeout)
                        else { return false }
                        return reply.getInteger(at: reply.readerIndex, as: UInt8.self) == 1
                    }
                }
                var found = 0
                for await touched in group where touched { found += 1 }
                return found
            }
            if found < self.policy.writeQuorum {
                let bytes = try await self.readBlock(ref)
                try await self.writeBlock(bytes, hash: ref.hash)
            }
        }
    }
}
