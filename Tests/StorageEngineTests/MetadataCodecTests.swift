import Foundation
import Hashing
import Testing

@testable import StorageEngine

@Suite struct MetadataCodecTests {
    @Test func roundTripsEveryField() throws {
        let metadata = ObjectMetadata(
            contentType: "text/plain; charset=utf-8",
            headers: ["cache-control": "max-age=60", "content-encoding": "gzip"],
            user: ["owner": "ada", "émoji": "😀", "empty": ""],
            checksum: StoredChecksum(algorithm: .crc64nvme, value: "AAAAAAAAAAA=", type: "FULL_OBJECT"),
            partSizes: [5 << 20, 5 << 20, 12, 0]
        )
        #expect(try MetadataCodec.decode(MetadataCodec.encode(metadata)) == metadata)
        #expect(try MetadataCodec.decode(MetadataCodec.encode(ObjectMetadata())) == ObjectMetadata())
    }

    @Test func readsRowsWrittenAsJSON() throws {
        let metadata = ObjectMetadata(contentType: "image/png", user: ["a": "b"])
        let json = Array(try JSONEncoder().encode(metadata))
        #expect(try MetadataCodec.decode(json) == metadata)
    }

    @Test func refusesDamagedRecords() {
        let good = MetadataCodec.encode(ObjectMetadata(contentType: "text/plain"))
        // Cut inside the content-type string: refused, never misread.
        for length in 2..<good.count {
            #expect(throws: StorageError.self) { try MetadataCodec.decode(Array(good[0..<length])) }
        }
        #expect(throws: StorageError.self) { try MetadataCodec.decode([]) }
        #expect(throws: StorageError.self) { try MetadataCodec.decode([1, 99]) }
        #expect(throws: StorageError.self) { try MetadataCodec.decode([2]) }
        #expect(throws: StorageError.self) { try MetadataCodec.decode([1, 1, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]) }
    }
}

@Suite struct HybridTimestampTests {
    @Test(arguments: [(UInt64(5_000), 5.0), (5_001, 6.0), (5_999, 6.0), (0, 0.0)])
    func lastModifiedRoundsUpToWholeSeconds(milliseconds: UInt64, seconds: Double) {
        let timestamp = HybridTimestamp(milliseconds: milliseconds, logical: 3)
        #expect(timestamp.lastModified.timeIntervalSince1970 == seconds)
    }

    @Test func clockIsStrictlyIncreasing() {
        var clock = HybridClock()
        let a = clock.next(nowMilliseconds: 1000)
        let b = clock.next(nowMilliseconds: 1000)
        let c = clock.next(nowMilliseconds: 999)  // the wall clock stepped back
        #expect(a < b && b < c)
        clock.observe(HybridTimestamp(milliseconds: 5000, logical: 0))
        #expect(clock.next(nowMilliseconds: 1000) > HybridTimestamp(milliseconds: 5000, logical: 0))
    }
}
