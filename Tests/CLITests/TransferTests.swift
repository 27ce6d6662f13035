import Foundation
import Testing

@testable import CLI

@Suite struct TransferProgressTests {
    @Test func linesSayBytesRateAndTimeLeft() {
        let line = TransferProgress(done: 64 << 20, total: 256 << 20, elapsed: 2).line
        #expect(line == "25% 64.0 MiB / 256.0 MiB  32.0 MiB/s  ETA 6s")
        #expect(TransferProgress(done: 0, total: 10, elapsed: 0).line == "0% 0 B / 10 B")
        #expect(TransferProgress(done: 1 << 30, total: 1 << 30, elapsed: 4).line == "100% 1.0 GiB / 1.0 GiB  256.0 MiB/s")
        #expect(TransferProgress.duration(61) == "1m01s" && TransferProgress.duration(7322) == "2h02m")
    }

    @Test func concurrentRunsEveryIndexOnceAndStopsAtTheFirstError() async throws {
        var seen: [Int] = []
        try await concurrently(20, width: 3) { index in index * 2 } receive: { index, value in
            #expect(value == index * 2)
            seen.append(index)
        }
        #expect(seen.sorted() == Array(0..<20))
        struct Boom: Error {}
        await #expect(throws: Boom.self) {
            try await concurrently(10, width: 2) { index in
                if index == 4 { throw Boom() }
                return index
            } receive: { _, _ in }
        }
    }

    @Test func resumeStateIsKeyedByTheFileAndItsTarget() throws {
        let store = ResumeStore(configPath: NSTemporaryDirectory() + "cp-test-\(UUID().uuidString)/config")
        let a = store.file(endpoint: "http://e", bucket: "b", key: "k", localPath: "/tmp/f", size: 10, modified: Date(timeIntervalSince1970: 5))
        #expect(a == store.file(endpoint: "http://e", bucket: "b", key: "k", localPath: "/tmp/./f", size: 10, modified: Date(timeIntervalSince1970: 5)))
        #expect(a != store.file(endpoint: "http://e", bucket: "b", key: "k", localPath: "/tmp/f", size: 11, modified: Date(timeIntervalSince1970: 5)))
        #expect(a != store.file(endpoint: "http://e", bucket: "b", key: "k2", localPath: "/tmp/f", size: 10, modified: Date(timeIntervalSince1970: 5)))
        try store.save(ResumeStore.Entry(uploadID: "u1", partSize: 16), to: a)
        #expect(store.load(a) == ResumeStore.Entry(uploadID: "u1", partSize: 16))
        store.remove(a)
        #expect(store.load(a) == nil)
    }
}
