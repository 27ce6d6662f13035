import Foundation
import Hashing
import SQLite
import TestSupport
import Testing

@testable import StorageEngine

/// Records and blocks read by partition, as anti-entropy reads them.
@Suite struct PartitionTests {
    static func engine(_ directory: TemporaryDirectory) async throws -> StorageEngine {
        var configuration = StorageEngine.Configuration(dataDirectory: directory.path)
        configuration.syncWrites = false
        let engine = try StorageEngine(configuration: configuration)
        try await engine.start()
        return engine
    }

    static func records(_ count: Int) -> [ReplicaRecord] {
        (0..<count).map { index in
            ReplicaRecord(
                table: UInt8(1 + index % 2), partitionKey: Array("bucket\(index % 13)".utf8), sortKey: Array("key\(index)".utf8),
                timestamp: HybridTimestamp(milliseconds: 1_000_000 + UInt64(index), logical: 0), deleted: index % 5 == 0,
                value: [UInt8](repeating: UInt8(index % 256), count: index % 7))
        }
    }

    /// The partition of every record as the ring computes it, with counts.
    static func expectedHoldings(_ records: [ReplicaRecord], power: Int) -> [Int: Int] {
        var result: [Int: Int] = [:]
        for record in records {
            result[PartitionRange.partition(of: PartitionHash.of(partitionKey: record.partitionKey), power: power), default: 0] += 1
        }
        return result
    }

    static func summary(of versions: [RecordVersion]) -> PartitionSummary {
        var summary = PartitionSummary()
        for version in versions { summary.add(version.digest) }
        return summary
    }

    @Test func summariesFollowOverwritesAndRemovalsAndSlicesSplitAPartition() async throws {
        let directory = TemporaryDirectory()
        let engine = try await Self.engine(directory)
        var records = Self.records(200)
        try await engine.apply(records)
        // Overwrite some, make some tombstones, remove some.
        for index in stride(from: 0, to: 200, by: 7) {
            records[index].timestamp = HybridTimestamp(milliseconds: 5_000_000 + UInt64(index), logical: 1)
            records[index].deleted.toggle()
            records[index].value = []
        }
        try await engine.apply(records)
        try await engine.removeRecords(records[100..<140].map(RecordVersion.init))
        let remaining = Array(records[0..<100] + records[140...])
        let all = PartitionRange(partition: 0, power: 0)
        #expect(try await engine.recordSummary(all) == Self.summary(of: remaining.map(RecordVersion.init)))
        for partition in 0..<4 {
            let range = PartitionRange(partition: partition, power: 2)
            let versions = try await engine.recordVersions(range, after: nil, limit: 1000)
            #expect(try await engine.recordSummary(range) == Self.summary(of: versions))
            let slices = try await engine.recordSlices(range)
            #expect(slices.values.reduce(0) { $0 + $1.count } == UInt64(versions.count))
            for (slice, summary) in slices {
                let inSlice = try await engine.recordVersions(range, slice: slice, after: nil, limit: 1000)
                #expect(inSlice.allSatisfy { $0.keyHash == slice })
                #expect(Self.summary(of: inSlice) == summary)
            }
        }
        await engine.shutdown()
    }

    @Test func recordsAreFoundByTheirPartitionAndPagedInOrder() async throws {
        let directory = TemporaryDirectory()
        let engine = try await Self.engine(directory)
        let records = Self.records(300)
        try await engine.apply(records)
        let holdings = try await engine.recordHoldings(power: 4)
        #expect(holdings.mapValues(\.count) == Self.expectedHoldings(records, power: 4))

        var seen: [RecordVersion] = []
        for partition in 0..<16 {
            var cursor: RecordVersion?
            var pages = 0
            repeat {
                let page = try await engine.recordVersions(PartitionRange(partition: partition, power: 4), after: cursor, limit: 4)
                seen += page
                pages += 1
                cursor = page.count == 4 ? page.last : nil
            } while cursor != nil
            var summary = PartitionSummary()
            for version in seen.suffix(holdings[partition]?.count ?? 0) { summary.add(version.digest) }
            #expect(try await engine.recordSummary(PartitionRange(partition: partition, power: 4)) == summary)
        }
        #expect(seen.count == records.count)
        #expect(Set(seen) == Set(records.map(RecordVersion.init)))
        await engine.shutdown()
    }

    @Test func aDatabaseFromBeforeThePartitionColumnIsBackfilledWhenOpened() async throws {
        let directory = TemporaryDirectory()
        let records = Self.records(120)
        do {
            let engine = try await Self.engine(directory)
            try await engine.apply(records)
            // Turn the schema back into migration 3's.
            try await engine.metadata.write { db in
                try db.execute(
                    """
                    DROP INDEX records_by_partition; ALTER TABLE records DROP COLUMN ph; ALTER TABLE records DROP COLUMN kh;
                    DROP TABLE record_digests; DROP TABLE access_keys; PRAGMA user_version=3;
                    """)
            }
            await engine.shutdown()
        }
        let engine = try await Self.engine(directory)
        #expect(try await engine.recordHoldings(power: 8).mapValues(\.count) == Self.expectedHoldings(records, power: 8))
        for partition in 0..<16 {
            let range = PartitionRange(partition: partition, power: 4)
            #expect(try await engine.recordSummary(range) == Self.summary(of: try await engine.recordVersions(range, after: nil, limit: 1000)))
        }
        #expect(try await engine.record(table: records[7].table, partitionKey: records[7].partitionKey, sortKey: records[7].sortKey) == records[7])
        await engine.shutdown()
    }

    @Test func removingRecordsKeepsNewerVersions() async throws {
        let directory = TemporaryDirectory()
        let engine = try await Self.engine(directory)
        let records = Self.records(10)
        try await engine.apply(records)
        var newer = records[3]
        newer.timestamp = HybridTimestamp(milliseconds: 9_000_000, logical: 0)
        try await engine.apply([newer])
        #expect(try await engine.removeRecords(records.map(RecordVersion.init)) == 9)
        #expect(try await engine.record(table: newer.table, partitionKey: newer.partitionKey, sortKey: newer.sortKey) == newer)
        #expect(try await engine.recordHoldings(power: 8).values.reduce(0) { $0 + $1.count } == 1)
        await engine.shutdown()
    }

    @Test func partitionRangesTileTheHashSpace() {
        for power in [0, 1, 6, 8, 12] {
            var next: UInt64 = 0
            for partition in 0..<(1 << power) {
                let range = PartitionRange(partition: partition, power: power)
                #expect(UInt64(range.lower) == next)
                #expect(PartitionRange.partition(of: range.lower, power: power) == partition)
                #expect(PartitionRange.partition(of: range.upper, power: power) == partition)
                next = UInt64(range.upper) + 1
            }
            #expect(next == 1 << 32)
        }
    }
}
