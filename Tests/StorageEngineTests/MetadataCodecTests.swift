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
