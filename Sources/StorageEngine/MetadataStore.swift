import NIOPosix
import SQLite
import Synchronization

/// The node's metadata database: SQLite in WAL mode, one writer connection with group commit and a
/// pool of reader connections, all driven from a thread pool.
///
/// Group commit: writes queue up while the writer is busy and the next batch runs in one transaction,
/// each write inside its own savepoint, so one failing write does not fail the others and one `fsync`
/// serves the whole batch. A write's continuation is resumed only after its transaction committed.
final class MetadataStore: @unchecked Sendable {
    // @unchecked: `writer` is used only by the single drain job that `drainScheduled` admits at a time,
    // and each reader connection by the one job that checked it out of `readers`. Everything else is
    // behind the Mutexes.

    private struct PendingWrite: Sendable {
        /// Runs the write inside a savepoint; returns what to do once the transaction ended
        /// (called with the commit's error, if any).
        let run: @Sendable (SQLiteConnection) -> @Sendable (_ commitError: (any Error)?) -> Void
    }

    private struct WriteQueue {
        var pending: [PendingWrite] = []
        var drainScheduled = false
    }

    let path: String
    private let writer: SQLiteConnection
    private let readers = Mutex<[SQLiteConnection]>([])
    private let queue = Mutex<WriteQueue>(WriteQueue())
    private let threadPool: NIOThreadPool
    private let writerPool: NIOThreadPool

    /// Opens (creating if needed) the database at `path` and migrates it to the current schema.
    /// - Parameters:
    ///   - synchronous: `FULL` makes every commit durable against power loss; `NORMAL` only against
    ///     a process crash.
    init(path: String, threadPool: NIOThreadPool, synchronous: Bool) throws {
        self.path = path
        self.threadPool = threadPool
        self.writerPool = NIOThreadPool(numberOfThreads: 1)
        self.writerPool.start()
        self.writer = try SQLiteConnection(path: path)
        try self.writer.execute("PRAGMA journal_mode=WAL")
        try self.writer.execute("PRAGMA synchronous=\(synchronous ? "FULL" : "NORMAL")")
        try self.writer.execute("PRAGMA foreign_keys=OFF")
        try Schema.migrate(self.writer)
    }

    func shutdown() async {
        try? await self.writerPool.shutdownGracefully()
    }

    /// Runs `body` on a reader connection in the thread pool.
    func read<T: Sendable>(_ body: @escaping @Sendable (SQLiteConnection) throws -> T) async throws -> T {
        try await self.threadPool.runIfActive {
            let connection = try self.readers.withLock { $0.popLast() } ?? self.openReader()
            defer { self.readers.withLock { $0.append(connection) } }
            return try body(connection)
        }
    }

    /// Runs a point lookup on a reader connection on the calling thread.
    ///
    /// For lookups by primary key only: on a warm page cache they take microseconds, less than the
    /// two context switches a hop to the thread pool costs. Range scans MUST use ``read(_:)``.
    func lookup<T>(_ body: (SQLiteConnection) throws -> T) throws -> T {
        let connection = try self.readers.withLock { $0.popLast() } ?? self.openReader()
        defer { self.readers.withLock { $0.append(connection) } }
        return try body(connection)
    }

    private func openReader() throws -> SQLiteConnection {
        let connection = try SQLiteConnection(path: self.path)
        try connection.execute("PRAGMA query_only=ON")
        return connection
    }

    /// Runs `body` in a write transaction (batched with other writes); returns after the commit.
    func write<T: Sendable>(_ body: @escaping @Sendable (SQLiteConnection) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            let pending = PendingWrite { db in
                let result: Result<T, any Error>
                do {
                    try db.execute("SAVEPOINT w")
                    do {
                        let value = try body(db)
                        try db.execute("RELEASE w")
                        result = .success(value)
                    } catch {
                        try? db.execute("ROLLBACK TO w")
                        try? db.execute("RELEASE w")
                        result = .failure(error)
                    }
                } catch {
                    result = .failure(error)
                }
                return { commitError in
                    if let commitError {
                        continuation.resume(throwing: commitError)
                    } else {
                        continuation.resume(with: result)
                    }
                }
            }
            let schedule = self.queue.withLock { queue in
                queue.pending.append(pending)
                if queue.drainScheduled { return false }
                queue.drainScheduled = true
                return true
            }
            if schedule {
                self.writerPool.submit { _ in self.drain() }
            }
        }
    }

    /// Runs batches until the queue is empty. Only one drain runs at a time.
    private func drain() {
        while true {
            let batch: [PendingWrite] = self.queue.withLock { queue in
                if queue.pending.isEmpty {
                    queue.drainScheduled = false
                    return []
                }
                defer { queue.pending.removeAll(keepingCapacity: true) }
                return queue.pending
            }
            if batch.isEmpty { return }
            do {
                try self.writer.execute("BEGIN IMMEDIATE")
            } catch {
                for item in batch { item.run(self.writer)(error) }
                continue
            }
            var completions: [@Sendable ((any Error)?) -> Void] = []
            completions.reserveCapacity(batch.count)
            for item in batch { completions.append(item.run(self.writer)) }
            var commitError: (any Error)? = nil
            do {
                try self.writer.execute("COMMIT")
            } catch {
                commitError = error
                try? self.writer.execute("ROLLBACK")
            }
            for completion in completions { completion(commitError) }
        }
    }
}

/// The schema and its migrations, applied in order by `PRAGMA user_version`.
enum Schema {
    static let migrations: [String] = [
        """
        CREATE TABLE buckets (
            name TEXT PRIMARY KEY,
            created_ms INTEGER NOT NULL,
            owner TEXT NOT NULL
        ) WITHOUT ROWID;
        CREATE TABLE objects (
            bucket TEXT NOT NULL,
            key BLOB NOT NULL,
            hlc INTEGER NOT NULL,
            size INTEGER NOT NULL,
            etag TEXT NOT NULL,
            meta TEXT NOT NULL,
            inline BLOB,
            blocks BLOB,
            PRIMARY KEY (bucket, key)
        ) WITHOUT ROWID;
        CREATE TABLE uploads (
            upload_id TEXT PRIMARY KEY,
            bucket TEXT NOT NULL,
            key BLOB NOT NULL,
            initiated_ms INTEGER NOT NULL,
            owner TEXT NOT NULL,
            meta TEXT NOT NULL,
            checksum_algorithm TEXT
        ) WITHOUT ROWID;
        CREATE INDEX uploads_by_key ON uploads (bucket, key, initiated_ms);
        CREATE TABLE parts (
            upload_id TEXT NOT NULL,
            part_number INTEGER NOT NULL,
            size INTEGER NOT NULL,
            etag TEXT NOT NULL,
            modified_ms INTEGER NOT NULL,
            checksum TEXT,
            blocks BLOB NOT NULL,
            PRIMARY KEY (upload_id, part_number)
        ) WITHOUT ROWID;
        CREATE TABLE block_refs (
            hash BLOB PRIMARY KEY,
            refs INTEGER NOT NULL,
            zero_since_ms INTEGER
        ) WITHOUT ROWID;
        CREATE INDEX block_refs_zero ON block_refs (zero_since_ms) WHERE refs = 0;
        CREATE TABLE settings (
            name TEXT PRIMARY KEY,
            value TEXT NOT NULL
        ) WITHOUT ROWID;
        """,
        // 2: versioned records of a clustered node (see ReplicaRecords.swift).
        """
        CREATE TABLE records (
            tbl INTEGER NOT NULL,
            pk BLOB NOT NULL,
            sk BLOB NOT NULL,
            hlc INTEGER NOT NULL,
            deleted INTEGER NOT NULL,
            value BLOB NOT NULL,
            PRIMARY KEY (tbl, pk, sk)
        ) WITHOUT ROWID;
        """,
        // 3: writes held for a replica that was unreachable (hinted handoff, see Hints.swift).
        """
        CREATE TABLE hints (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            owner TEXT NOT NULL,
            kind INTEGER NOT NULL,
            payload BLOB NOT NULL,
            created_ms INTEGER NOT NULL
        );
        """,
        // 4: for anti-entropy (see Partitions.swift): the partition hash of each record (the first four
        // bytes of SHA-256 of its partition key) and its key hash (the first byte of SHA-256 of table,
        // partition key and sort key), so that one partition's records, or a slice of them, are one
        // index range; and per (ph, kh) the count and XOR of the records' version digests, kept up to
        // date with every write, so that a partition's summary costs no scan. Filled in by `backfills`.
        """
        ALTER TABLE records ADD COLUMN ph INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE records ADD COLUMN kh INTEGER NOT NULL DEFAULT 0;
        CREATE INDEX records_by_partition ON records (ph, kh, tbl, pk, sk, hlc, deleted);
        CREATE TABLE record_digests (
            ph INTEGER NOT NULL,
            kh INTEGER NOT NULL,
            count INTEGER NOT NULL,
            digest BLOB NOT NULL,
            PRIMARY KEY (ph, kh)
        ) WITHOUT ROWID;
        """,
        // 5: S3 access keys of tenants on a node that runs alone (see AccessKeys.swift); a clustered
        // node keeps them as replicated records instead.
        """
        CREATE TABLE access_keys (
            access_key TEXT PRIMARY KEY,
            secret_key TEXT NOT NULL,
            tenant TEXT NOT NULL,
            name TEXT NOT NULL,
            created_ms INTEGER NOT NULL
        ) WITHOUT ROWID;
        CREATE INDEX access_keys_by_tenant ON access_keys (tenant, created_ms);
        """,
    ]

    /// Work in Swift that a migration needs after its SQL, in the same transaction, by migration index.
    static let backfills: [Int: @Sendable (SQLiteConnection) throws -> Void] = [
        3: { db in
            var rows: [(Int64, [UInt8], [UInt8], Int64, Int64)] = []
            try db.query("SELECT tbl, pk, sk, hlc, deleted FROM records") { row in
                rows.append((row.int(0), row.blob(1), row.blob(2), row.int(3), row.int(4)))
            }
            for (table, partitionKey, sortKey, hlc, deleted) in rows {
                let version = RecordVersion(
                    table: UInt8(truncatingIfNeeded: table), partitionKey: partitionKey, sortKey: sortKey,
                    timestamp: HybridTimestamp(rawValue: UInt64(bitPattern: hlc)), deleted: deleted != 0)
                try db.query(
                    "UPDATE records SET ph = ?, kh = ? WHERE tbl = ? AND pk = ? AND sk = ?",
                    [
                        .integer(Int64(version.partitionHash)), .integer(Int64(version.keyHash)), .integer(table), .blob(partitionKey),
                        .blob(sortKey),
                    ]
                )
                try RecordDigests.add(db, version, sign: 1)
            }
        },
    ]

    static func migrate(_ db: SQLiteConnection) throws {
        var version = 0
        try db.query("PRAGMA user_version") { row in version = Int(row.int(0)) }
        guard version <= migrations.count else {
            throw StorageError(.database, "the metadata database is from a newer version (schema \(version))")
        }
        for index in version..<migrations.count {
            try db.execute("BEGIN IMMEDIATE")
            do {
                try db.execute(migrations[index])
                try backfills[index]?(db)
                try db.execute("PRAGMA user_version=\(index + 1)")
                try db.execute("COMMIT")
            } catch {
                try? db.execute("ROLLBACK")
                throw error
            }
        }
    }
}
