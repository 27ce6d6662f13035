import Hashing
public import NIOCore
public import Replication
import Ring
public import StorageEngine

/// Quorum reads and writes of records and blocks over a ``ClusterTransport``, driven by the pure
/// coordinators of `Replication`.
///
/// A write returns once `w` owners acknowledged; the other owners still get it (their calls run on).
/// A read returns the newest of `r` answers and repairs owners that answered with something older,
/// late answers included.
public final class Replicator: Sendable {
    /// Timeouts of one quorum operation.
    public struct Timeouts: Sendable {
        /// A metadata read or write, all owners together.
        public var record: Duration = .seconds(10)
        /// One block to its owners.
        public var block: Duration = .seconds(30)
        /// A read first asks only R owners (this node first); if they have not all answered by then,
        /// it asks every owner.
        public var preferred: Duration = .seconds(1)

        public init() {}
    }

    let view: ClusterView
    let transport: any ClusterTransport
    let policy: Replication.QuorumPolicy
    let timeouts: Timeouts

    public init(view: ClusterView, transport: any ClusterTransport, policy: Replication.QuorumPolicy, timeouts: Timeouts = Timeouts()) {
        self.view = view
        self.transport = transport
        self.policy = policy
        self.timeouts = timeouts
    }

    // MARK: Placement

    /// The owners of the partition that `hash` falls in, in preference order.
    func owners(ofHash hash: [UInt8], quorum: Int, operation: String) throws -> [String] {
        try self.placement(ofHash: hash, quorum: quorum, operation: operation, withHandoffs: false).owners
    }

    /// The owners and, when asked, the handoff nodes of the partition that `hash` falls in.
    func placement(
        ofHash hash: [UInt8], quorum: Int, operation: String, withHandoffs: Bool
    ) throws -> (owners: [String], handoffs: [String]) {
        guard let table = self.view.table else {
            throw ClusterError.quorum("The cluster has no layout yet: add nodes with `cloud storage layout add` or start them with --auto-layout.")
        }
        let partition = table.partition(for: hash)
        let owners = table.replicas(of: partition).map(\.rawValue)
        guard owners.count >= quorum else {
            throw ClusterError.quorum(
                "The layout has \(owners.count) node(s) for this data but the \(operation) quorum is \(quorum); add nodes to the layout.")
        }
        return (owners, withHandoffs ? table.handoffs(of: partition).map(\.rawValue) : [])
    }

    /// The owners of records with partition key `partitionKey`.
    func owners(ofPartitionKey partitionKey: [UInt8], quorum: Int, operation: String) throws -> [String] {
        try self.owners(ofHash: Digests.sha256(partitionKey), quorum: quorum, operation: operation)
    }

    // MARK: Records

    /// Writes records that share one partition key to `w` of its owners; an owner that is unreachable
    /// gets a hinted copy on the next handoff node, replayed to it later.
    public func write(_ records: [ReplicaRecord]) async throws {
        guard let first = records.first else { return }
        let placement = try self.placement(
            ofHash: Digests.sha256(first.partitionKey), quorum: self.policy.writeQuorum, operation: "write", withHandoffs: true)
        var writer = WireWriter()
        writer.u32(UInt32(records.count))
        for record in records { writer.record(record) }
        let body = ByteBuffer(bytes: writer.bytes)
        let transport = self.transport
        let timeout = self.timeouts.record
        try await self.quorumWrite(
            owners: placement.owners, handoffs: placement.handoffs, timeout: timeout, what: "metadata",
            send: { node in
                _ = try await transport.call(node, method: ClusterMethod.applyRecords, body: body, timeout: timeout)
            },
            hint: { node, owner in
                _ = try await transport.call(node, method: ClusterMethod.hintRecords, body: Self.hint(for: owner, body), timeout: timeout)
            })
    }

    /// Reads one record (tombstones included) from `r` owners: the newest answer.
    public func read(table: UInt8, partitionKey: [UInt8], sortKey: [UInt8]) async throws -> ReplicaRecord? {
        let owners = try self.owners(ofPartitionKey: partitionKey, quorum: self.policy.readQuorum, operation: "read")
        var writer = WireWriter()
        writer.u8(table)
        writer.data(partitionKey)
        writer.data(sortKey)
        let body = ByteBuffer(bytes: writer.bytes)
        let transport = self.transport
        let timeout = self.timeouts.record
        func query(timeout: Duration) -> @Sendable (String) async throws -> ReplicaRecord? {
            { node in
                let reply = try await transport.call(node, method: ClusterMethod.getRecord, body: body, timeout: timeout)
                var reader = WireReader(Array(buffer: reply))
                guard try reader.u8() == 1 else { return nil }
                let record = try reader.record()
                try reader.finish()
                return record
            }
        }
        // Ask R owners (this node first); when one of them fails or is slow, ask them all.
        let preferred = self.preferred(owners, count: self.policy.readQuorum)
        if preferred.count == self.policy.readQuorum, preferred.count < owners.count {
            do {
                return try await self.directRead(owners: preferred, query: query(timeout: self.timeouts.preferred))
            } catch {}
        }
        return try await self.quorumRead(owners: owners, timeout: timeout, query: query(timeout: timeout))
    }

    /// Reads from exactly these owners, in order (this node first: its answer costs no round trip),
    /// without the coordinator's tasks and streams: the common case of a read, kept cheap. Throws
    /// when any of them fails (the caller then asks every owner). Stale owners are repaired.
    private func directRead(
        owners: [String],
        query: @escaping @Sendable (String) async throws -> ReplicaRecord?
    ) async throws -> ReplicaRecord? {
        var answers: [ReplicaRecord?] = []
        answers.reserveCapacity(owners.count)
        for node in owners { answers.append(try await query(node)) }
        var newest: ReplicaRecord?
        for case let answer? in answers where newest.map({ answer.isNewer(than: $0) }) ?? true { newest = answer }
        if let newest {
            for (node, answer) in zip(owners, answers) where answer.map({ newest.isNewer(than: $0) }) ?? true {
                self.repair(node, with: newest)
            }
        }
        return newest
    }

    /// Writes `record` to `node` in the background (read repair).
    private func repair(_ node: String, with record: ReplicaRecord) {
        var writer = WireWriter()
        writer.u32(1)
        writer.record(record)
        let body = ByteBuffer(bytes: writer.bytes)
        let transport = self.transport
        let timeout = self.timeouts.record
        Task { _ = try? await transport.call(node, method: ClusterMethod.applyRecords, body: body, timeout: timeout) }
    }

    /// Up to `count` reachable owners, this node first, then in preference order.
    func preferred(_ owners: [String], count: Int) -> [String] {
        var ordered = owners.filter { self.view.isReachable($0) }
        if let index = ordered.firstIndex(of: self.view.localID), index > 0 {
            ordered.insert(ordered.remove(at: index), at: 0)
        }
        return Array(ordered.prefix(count))
    }

    /// Reads a range of one partition key from `r` owners and merges it: for each sort key the newest
    /// record, starting at `bound` (inclusive or not) or at the prefix. The result stops where the shortest full answer stopped, so nothing is skipped;
    /// `exhausted` says no record follows it on any owner that answered.
    public func range(
        table: UInt8,
        partitionKey: [UInt8],
        prefix: [UInt8],
        from bound: [UInt8]? = nil,
        inclusive: Bool = false,
        limit: Int
    ) async throws -> (records: [ReplicaRecord], exhausted: Bool) {
        let owners = try self.owners(ofPartitionKey: partitionKey, quorum: self.policy.readQuorum, operation: "read")
        var writer = WireWriter()
        writer.u8(table)
        writer.data(partitionKey)
        writer.data(prefix)
        writer.u8(bound == nil ? 0 : inclusive ? 2 : 1)
        writer.data(bound ?? [])
        writer.u32(UInt32(limit))
        let body = ByteBuffer(bytes: writer.bytes)
        let transport = self.transport
        let timeout = self.timeouts.record
        let query: @Sendable (String) async throws -> [ReplicaRecord] = { node in
            let reply = try await transport.call(node, method: ClusterMethod.rangeRecords, body: body, timeout: timeout)
            var reader = WireReader(Array(buffer: reply))
            let count = try reader.u32()
            var records: [ReplicaRecord] = []
            records.reserveCapacity(Int(min(count, 10_000)))
            for _ in 0..<count { records.append(try reader.record()) }
            try reader.finish()
            return records
        }
        let preferred = self.preferred(owners, count: self.policy.readQuorum)
        var answers: [[ReplicaRecord]]
        do {
            guard preferred.count == self.policy.readQuorum, preferred.count < owners.count else { throw CancellationError() }
            answers = try await self.gather(
                owners: preferred, quorum: self.policy.readQuorum, timeout: self.timeouts.preferred * 2, query: query)
        } catch {
            answers = try await self.gather(owners: owners, quorum: self.policy.readQuorum, timeout: timeout, query: query)
        }
        var cut: [UInt8]?
        var newest: [[UInt8]: ReplicaRecord] = [:]
        for answer in answers {
            if answer.count >= limit, let last = answer.last?.sortKey {
                if cut == nil || last.lexicographicallyPrecedes(cut!) { cut = last }
            }
            for record in answer {
                if let current = newest[record.sortKey], !record.isNewer(than: current) { continue }
                newest[record.sortKey] = record
            }
        }
        var merged = newest.values.sorted { $0.sortKey.lexicographicallyPrecedes($1.sortKey) }
        if let cut { merged.removeAll { cut.lexicographicallyPrecedes($0.sortKey) } }
        return (merged, cut == nil)
    }

    /// The body of a hint call: the owner's id (u32 length, UTF-8), then the write's own body.
    static func hint(for owner: String, _ body: ByteBuffer) -> ByteBuffer {
        var hinted = ByteBuffer()
        hinted.reserveCapacity(4 + owner.utf8.count + body.readableBytes)
        hinted.writeInteger(UInt32(owner.utf8.count))
        hinted.writeString(owner)
        hinted.writeImmutableBuffer(body)
        return hinted
    }

    // MARK: Blocks

    /// Stores a block on `w` owners of its hash's partition (hinted copies for unreachable owners);
    /// `hash` MUST be the SHA-256 of `bytes`.
    public func writeBlock(_ bytes: ByteBuffer, hash: [UInt8]) async throws {
        let placement = try self.placement(ofHash: hash, quorum: self.policy.writeQuorum, operation: "write", withHandoffs: true)
        let transport = self.transport
        let timeout = self.timeouts.block
        try await self.quorumWrite(
            owners: placement.owners, handoffs: placement.handoffs, timeout: timeout, what: "data",
            send: { node in
                _ = try await transport.call(node, method: ClusterMethod.putBlock, body: bytes, bodyDigest: hash, timeout: timeout)
            },
            hint: { node, owner in
                _ = try await transport.call(node, method: ClusterMethod.hintBlock, body: Self.hint(for: owner, bytes), timeout: timeout)
            })
    }

    /// Reads a block from the first owner that has an intact copy (this node first when it is one),
    /// then from any other reachable member; the bytes are verified against the block's SHA-256.
    /// - Parameter skippingLocal: the caller already tried this node's own copy.
    public func readBlock(_ ref: BlockRef, skippingLocal: Bool = false) async throws -> ByteBuffer {
        let owners = (try? self.owners(ofHash: ref.hash, quorum: 1, operation: "read")) ?? []
        var candidates = owners
        if let index = candidates.firstIndex(of: self.view.localID), index > 0 {
            candidates.swapAt(0, index)
        }
        candidates = candidates.filter { self.view.isReachable($0) && !(skippingLocal && $0 == self.view.localID) }
        for peer in self.view.reachablePeers where !candidates.contains(peer) && peer != self.view.localID { candidates.append(peer) }
        // Last, owners that gossip does not show reachable: right after a partition heals or a node
        // restarts, gossip can lag behind the network, and a short try costs little.
        let unreachableOwners = owners.filter { !self.view.isReachable($0) && $0 != self.view.localID }
        var body = ByteBuffer()
        body.writeBytes(ref.hash)
        body.writeInteger(UInt32(ref.size))
        // Whether a copy may exist that could not be read: an owner that failed or could not be asked.
        var unavailable = false
        for (node, timeout) in candidates.map({ ($0, self.timeouts.block) }) + unreachableOwners.map({ ($0, self.timeouts.preferred * 2) }) {
            let reply: ByteBuffer
            do {
                reply = try await self.transport.call(node, method: ClusterMethod.getBlock, body: body, timeout: timeout)
            } catch {
                if owners.contains(node) { unavailable = true }
                continue
            }
            var answer = reply
            guard answer.readInteger(as: UInt8.self) == 1 else { continue }
            let intact = (ref.size == BlockRef.unknownSize || answer.readableBytes == ref.size)
                && answer.withUnsafeReadableBytes { Digests.sha256($0) } == ref.hash
            if intact { return answer }
        }
        if unavailable {
            throw StorageError(
                .quorumUnavailable, "a node that holds a block of this object did not answer; try again when it is back")
        }
        throw StorageError(.missingBlock, "no node holds an intact copy of a block of this object")
    }

    // MARK: Quorum machinery

    private enum Event: Sendable {
        case succeeded(String)
        case failed(String)
        case hintStored(String)
        case hintFailed(String)
        case deadline
    }

    /// Sends to the reachable owners (and hinted copies for unreachable ones to handoff nodes) and
    /// returns once `w` owners acknowledged; throws when that cannot happen. An owner or handoff node
    /// whose disk is full or read-only counts as unreachable (``ClusterView/takesWrites(_:)``).
    private func quorumWrite(
        owners: [String],
        handoffs: [String],
        timeout: Duration,
        what: String,
        send: @escaping @Sendable (String) async throws -> Void,
        hint: @escaping @Sendable (_ node: String, _ owner: String) async throws -> Void
    ) async throws {
        let view = self.view
        var coordinator = Replication.WriteCoordinator<String>(owners: owners, handoffs: handoffs, writeQuorum: self.policy.writeQuorum)
        let (events, continuation) = AsyncStream<Event>.makeStream()
        var actions = coordinator.start(isReachable: { view.takesWrites($0) })
        let deadline = Task {
            try? await Task.sleep(for: timeout)
            continuation.yield(.deadline)
        }
        defer { deadline.cancel() }
        var iterator = events.makeAsyncIterator()
        while true {
            for action in actions {
                switch action {
                case .send(let node, nil):
                    Task {
                        do {
                            try await send(node)
                            continuation.yield(.succeeded(node))
                        } catch {
                            continuation.yield(.failed(node))
                        }
                    }
                case .send(let node, let owner?):
                    Task {
                        do {
                            try await hint(node, owner)
                            continuation.yield(.hintStored(node))
                        } catch {
                            continuation.yield(.hintFailed(node))
                        }
                    }
                case .succeed:
                    return
                case .fail(let failure):
                    throw ClusterError.quorum(Self.message(failure, what: what))
                }
            }
            guard let event = await iterator.next() else { return }
            switch event {
            case .succeeded(let node): actions = coordinator.ownerAcknowledged(node)
            case .failed(let node): actions = coordinator.ownerFailed(node, isReachable: { view.takesWrites($0) })
            case .hintStored(let node): actions = coordinator.handoffAcknowledged(node)
            case .hintFailed(let node): actions = coordinator.handoffFailed(node, isReachable: { view.takesWrites($0) })
            case .deadline: actions = coordinator.deadlinePassed()
            }
        }
    }

    /// Queries the reachable owners; returns the newest of `r` answers and repairs stale owners, also
    /// after returning.
    private func quorumRead(
        owners: [String],
        timeout: Duration,
        query: @escaping @Sendable (String) async throws -> ReplicaRecord?
    ) async throws -> ReplicaRecord? {
        let view = self.view
        let quorum = self.policy.readQuorum
        return try await withCheckedThrowingContinuation { (result: CheckedContinuation<ReplicaRecord?, any Error>) in
            Task {
                var coordinator = Replication.ReadCoordinator<String, ReplicaRecord>(
                    owners: owners, readQuorum: quorum, isNewer: { $0.isNewer(than: $1) })
                let (events, continuation) = AsyncStream<(String, Result<ReplicaRecord?, any Error>)?>.makeStream()
                var outstanding = 0
                var answered = false
                var actions = coordinator.start(isReachable: { view.isReachable($0) })
                let deadline = Task {
                    try? await Task.sleep(for: timeout)
                    continuation.yield(nil)
                }
                var iterator = events.makeAsyncIterator()
                while true {
                    for action in actions {
                        switch action {
                        case .query(let node):
                            outstanding += 1
                            Task {
                                do {
                                    continuation.yield((node, .success(try await query(node))))
                                } catch {
                                    continuation.yield((node, .failure(error)))
                                }
                            }
                        case .succeed(let value):
                            answered = true
                            result.resume(returning: value)
                        case .repair(let node, let value):
                            self.repair(node, with: value)
                        case .fail(let failure):
                            answered = true
                            result.resume(throwing: ClusterError.quorum(Self.message(failure, what: "metadata")))
                        }
                    }
                    if answered && outstanding == 0 { break }
                    guard let event = await iterator.next() else { break }
                    guard let (node, outcome) = event else {
                        actions = coordinator.deadlinePassed()
                        if answered { break }
                        continue
                    }
                    outstanding -= 1
                    switch outcome {
                    case .success(let value): actions = coordinator.ownerAnswered(node, value: value)
                    case .failure: actions = coordinator.ownerFailed(node)
                    }
                }
                deadline.cancel()
                if !answered {
                    result.resume(throwing: ClusterError.quorum("The metadata read timed out."))
                }
            }
        }
    }

    /// Queries the reachable owners and returns the answers of at least `quorum` of them (all that
    /// arrived by then).
    private func gather<T: Sendable>(
        owners: [String],
        quorum: Int,
        timeout: Duration,
        query: @escaping @Sendable (String) async throws -> T
    ) async throws -> [T] {
        let reachable = owners.filter { self.view.isReachable($0) }
        guard reachable.count >= quorum else {
            throw ClusterError.quorum("Only \(reachable.count) of the \(quorum) replicas needed for this read are reachable.")
        }
        return try await withThrowingTaskGroup(of: GatherOutcome<T>.self) { group in
            for node in reachable {
                group.addTask {
                    do { return .answered(try await query(node)) } catch { return .failed }
                }
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                return .deadline
            }
            var answers: [T] = []
            var failed = 0
            collect: while let outcome = try await group.next() {
                switch outcome {
                case .answered(let answer): answers.append(answer)
                case .failed: failed += 1
                case .deadline: break collect
                }
                if answers.count >= quorum || answers.count + failed == reachable.count { break }
            }
            group.cancelAll()
            guard answers.count >= quorum else {
                throw ClusterError.quorum("Only \(answers.count) of the \(quorum) replicas needed for this listing answered.")
            }
            return answers
        }
    }

    private enum GatherOutcome<T: Sendable>: Sendable {
        case answered(T)
        case failed
        case deadline
    }

    static func message(_ failure: Replication.QuorumFailure, what: String) -> String {
        let verb = failure.operation == .write ? "write" : "read"
        switch failure.reason {
        case .notEnoughOwners where failure.operation == .read:
            return "The \(what) read could not get answers from the \(failure.required) replicas it needs; try again later."
        case .notEnoughOwners:
            return "The \(what) write reached \(failure.responded) of the \(failure.required) replicas it needs; try again later."
        case .timedOut:
            return "The \(what) \(verb) timed out after \(failure.responded) of the \(failure.required) replicas it needs answered."
        }
    }
}
