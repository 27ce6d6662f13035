import Hashing
import NIOCore
public import StorageEngine
import Synchronization

/// Scrub: a slow pass that re-reads every local block file and replaces a damaged copy with an intact
/// one from another replica.
public enum Scrub {
    /// Scrub settings (`--scrub-rate-mib`, `--scrub-interval`).
    public struct Configuration: Sendable {
        /// Bytes of block files read per second, at most. Default 32 MiB/s: a 10 TB disk takes about
        /// three and a half days, and foreground reads keep most of the disk's bandwidth.
        public var bytesPerSecond: Int = 32 << 20 {
            willSet { precondition(newValue > 0, "the scrub rate MUST be positive") }
        }
        /// Time from the end of one pass to the start of the next; nil disables scrub. Default 7 days.
        public var interval: Duration? = .seconds(7 * 86_400)

        public init() {}
    }

    /// What became of one block file.
    public enum Outcome: Sendable, Equatable {
        /// Intact.
        case intact
        /// Gone since it was listed (deleted, or the collector took it).
        case missing
        /// Damaged, and replaced with an intact copy from another node; the damaged file went to `quarantined`.
        case repaired(BlockDamage, quarantined: String)
        /// Damaged, and no other node had an intact copy: the damaged file was moved to `quarantined`
        /// (nil when it could not be moved: `error` says why).
        case unrepairable(BlockDamage, quarantined: String?, error: String?)
        /// Damaged, no intact copy elsewhere, and an upload holds the block pinned: tried again later.
        case busy(BlockDamage)
        /// Damaged, but the file changed under its name before the repair (left for the next pass).
        case changed(BlockDamage)
        /// Damaged, and putting the intact copy in place failed (`error`).
        case failed(BlockDamage, error: String)
    }

    /// Counters for `/metrics`.
    public struct Statistics: Sendable, Equatable {
        public var blocksChecked = 0
        public var bytesChecked = 0
        public var corruptions = 0
        public var repaired = 0
        public var unrepairable = 0
        public var passes = 0
        /// Of the current pass (1 when the last one finished and no other started).
        public var progress = 0.0
    }
}

/// Runs scrub passes over this node's block files (the shell, `ScrubService`, schedules them and
/// paces them; tests call ``runPass(from:pace:directoryDone:)`` directly).
public final class Scrubber: Sendable {
    let engine: StorageEngine
    let replicator: Replicator
    private let statistics = Mutex(Scrub.Statistics())

    /// - Parameter store: the node's clustered store (its engine, and its replicator for intact copies).
    public init(store: ClusterStore) {
        self.engine = store.engine
        self.replicator = store.replicator
    }

    /// The counters so far.
    public var current: Scrub.Statistics { self.statistics.withLock { $0 } }

    /// Checks one block file and repairs it when it is damaged.
    public func scrub(_ hash: [UInt8]) async throws -> Scrub.Outcome {
        try await self.scrubCounting(hash).outcome
    }

    /// ``scrub(_:)``, with the bytes read.
    func scrubCounting(_ hash: [UInt8]) async throws -> (outcome: Scrub.Outcome, bytes: Int) {
        let check = try await self.engine.checkBlock(hash)
        let damage: BlockDamage
        switch check {
        case .missing:
            return (.missing, 0)
        case .intact(let bytes):
            self.statistics.withLock {
                $0.blocksChecked += 1
                $0.bytesChecked += bytes
            }
            return (.intact, bytes)
        case .damaged(let found):
            damage = found
            self.statistics.withLock {
                $0.blocksChecked += 1
                $0.bytesChecked += found.fileBytes
                $0.corruptions += 1
            }
        }
        return (try await self.repair(damage), damage.fileBytes)
    }

    /// Replaces a damaged copy from another replica, or quarantines it when no intact copy exists.
    func repair(_ damage: BlockDamage) async throws -> Scrub.Outcome {
        let copy: ByteBuffer
        do {
            copy = try await self.replicator.readBlock(BlockRef(hash: damage.hash, size: BlockRef.unknownSize), skippingLocal: true)
        } catch {
            return try await self.quarantine(damage)
        }
        do {
            guard let quarantined = try await self.engine.replaceDamagedBlock(damage, with: copy) else { return .changed(damage) }
            self.statistics.withLock { $0.repaired += 1 }
            return .repaired(damage, quarantined: quarantined)
        } catch let error as StorageError {
            return .failed(damage, error: error.message)
        }
    }

    private func quarantine(_ damage: BlockDamage) async throws -> Scrub.Outcome {
        let outcome: QuarantineOutcome
        do {
            outcome = try await self.engine.quarantineDamagedBlock(damage)
        } catch let error as StorageError {
            self.statistics.withLock { $0.unrepairable += 1 }
            return .unrepairable(damage, quarantined: nil, error: error.message)
        }
        switch outcome {
        case .moved(let path):
            self.statistics.withLock { $0.unrepairable += 1 }
            return .unrepairable(damage, quarantined: path, error: nil)
        case .busy: return .busy(damage)
        case .changed: return .changed(damage)
        }
    }

    /// One pass over the block directories `startPrefix…ff`.
    /// - Parameters:
    ///   - startPrefix: the first directory (a pass interrupted by a restart resumes where it was).
    ///   - pace: called with the bytes of each file read (the rate limit sleeps here); throwing stops the pass.
    ///   - outcome: called for every file that was not intact.
    ///   - directoryDone: called after each directory with the next one to scrub (256: the pass is done).
    public func runPass(
        from startPrefix: Int = 0,
        pace: (Int) async throws -> Void = { _ in },
        outcome report: (Scrub.Outcome) async -> Void = { _ in },
        directoryDone: (Int) async -> Void = { _ in }
    ) async throws {
        var busy: [BlockDamage] = []
        for prefix in max(0, startPrefix)..<256 {
            let hashes = try await self.engine.blockHashes(prefix: UInt8(prefix))
            for (index, hash) in hashes.enumerated() {
                try Task.checkCancellation()
                let (outcome, bytes) = try await self.scrubCounting(hash)
                if case .busy(let damage) = outcome { busy.append(damage) }
                if outcome != .intact && outcome != .missing { await report(outcome) }
                let progress = (Double(prefix) + Double(index + 1) / Double(hashes.count)) / 256
                self.statistics.withLock { $0.progress = progress }
                try await pace(bytes)
            }
            self.statistics.withLock { $0.progress = Double(prefix + 1) / 256 }
            await directoryDone(prefix + 1)
        }
        // Damaged blocks an upload held pinned: once more, now that it has likely finished.
        for damage in busy {
            let outcome = try await self.repair(damage)
            await report(outcome)
        }
        self.statistics.withLock {
            $0.passes += 1
            $0.progress = 1
        }
    }

    /// The Prometheus text of the scrub counters.
    public func prometheusMetrics() -> String {
        let s = self.current
        var text = ""
        func metric(_ name: String, _ type: String, _ help: String, _ value: String) {
            text += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n\(name) \(value)\n"
        }
        metric("cloud_scrub_blocks_checked_total", "counter", "Block files scrub read and verified.", "\(s.blocksChecked)")
        metric("cloud_scrub_bytes_checked_total", "counter", "Bytes of block files scrub read.", "\(s.bytesChecked)")
        metric("cloud_scrub_corruptions_total", "counter", "Damaged block files scrub found.", "\(s.corruptions)")
        metric("cloud_scrub_repaired_total", "counter", "Damaged block files replaced with an intact copy from another node.", "\(s.repaired)")
        metric(
            "cloud_scrub_unrepairable_total", "counter", "Damaged block files no other node had an intact copy of (quarantined).",
            "\(s.unrepairable)")
        metric("cloud_scrub_passes_total", "counter", "Scrub passes completed.", "\(s.passes)")
        metric("cloud_scrub_pass_progress", "gauge", "Progress of the current scrub pass, 0 to 1.", "\(s.progress)")
        return text
    }
}
