import ControlPlane
import Database
import Foundation
import Logging
import ServiceContract
import ServiceTestSupport
import SQLite
import Testing
import VolumeFiles

@testable import Compute

/// The volume routes and their create, resize and delete tasks on each database, with volume files
/// in a scratch directory and no engine or object store (attaching, which mounts, and snapshots are
/// in tests/integration/test_volumes.py).
@Suite struct VolumeServiceTests {
    static let logger = Logger(label: "volume-test")

    @Test(arguments: Backing.available) func volumesOnEachDatabase(_ backing: Backing) async throws {
        let database = try await backing.freshDatabase(prefix: "volumes", logger: Self.logger).database
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("volumes-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        let files = VolumeFiles(root: root)
        let service = ComputeService(store: nil, volumes: files)
        let store = ControlStore(database: database, catalog: try ServiceCatalog(services: [service]))
        _ = try await store.migrate()
        var configuration = ControlAPIConfiguration()
        configuration.passwordHashing = .test
        let api = try ControlAPI(store: store, configuration: configuration, logger: Self.logger)
        let driver = APIDriver(api)
        let ada = try await driver.user("ada@example.com")
        func call(_ method: String, _ path: String, _ body: String = "") async -> (Int, JSONValue?) {
            let (status, value, _) = await driver.call(method, path, key: ada, body: body)
            return (status, value)
        }
        func volume(_ name: String, until condition: (JSONValue?) -> Bool) async throws -> JSONValue? {
            let deadline = ContinuousClock.now + .seconds(30)
            while true {
                let (status, body) = await call("GET", "/compute/volumes/\(name)")
                let value = status == 404 ? nil : body
                if condition(value) || ContinuousClock.now > deadline { return value }
                try await Task.sleep(for: .milliseconds(50))
            }
        }

        var runnerConfiguration = TaskRunnerConfiguration()
        runnerConfiguration.pollInterval = .milliseconds(50)
        let runner = TaskRunner(
            queue: api.tasks, handlers: service.tasks.filter { $0.kind == ComputeService.volumeKind }, configuration: runnerConfiguration,
            logger: Self.logger)
        let running = Task { try await runner.run() }
        defer { running.cancel() }

        let (created, made) = await call("POST", "/compute/volumes", #"{"name": "data", "size_mib": 16}"#)
        #expect(created == 201 && text(made?["status"]) == "creating")
        let available = try await volume("data") { text($0?["status"]) == "available" }
        #expect(text(available?["status"]) == "available" && available?["formatted"] == .bool(false))
        guard case .string(let id)? = available?["id"] else { throw TestFailure("no id") }
        #expect(files.size(id) == 16 << 20)

        // Bad input: a 4xx with a message, nothing made.
        for (body, status, code) in [
            (#"{"name": "tiny", "size_mib": 1}"#, 400, "invalid_request"),
            (#"{"name": "nosize"}"#, 400, "invalid_request"),
            (#"{"name": "data", "size_mib": 16}"#, 409, "volume_exists"),
            (#"{"name": "Bad_Name", "size_mib": 16}"#, 400, "invalid_request"),
            (#"{"name": "copy", "snapshot": "nope"}"#, 404, "snapshot_not_found"),
            // 16 of the 102400 MiB are taken.
            (#"{"name": "huge", "size_mib": 102400}"#, 409, "quota_exceeded"),
        ] {
            let (got, answer) = await call("POST", "/compute/volumes", body)
            #expect(got == status && text(answer?["error"]?["code"]) == code, "\(body): \(got) \(String(describing: answer))")
        }
        #expect(await call("POST", "/compute/volumes/data/attach", #"{"instance": "nope"}"#).0 == 404)
        #expect(text(await call("POST", "/compute/volumes/data/detach").1?["error"]?["code"]) == "invalid_state")
        #expect(await call("POST", "/compute/volumes/data/resize", #"{"size_mib": 8}"#).0 == 400)
        let (noStore, why) = await call("POST", "/compute/snapshots", #"{"name": "s1", "volume": "data"}"#)
        #expect(noStore == 503 && text(why?["error"]?["code"]) == "snapshots_unavailable")

        // Growing reserves the difference, then the file grows.
        #expect(await call("POST", "/compute/volumes/data/resize", #"{"size_mib": 102401}"#).0 == 409, "one MiB over the quota")
        let (resizing, _) = await call("POST", "/compute/volumes/data/resize", #"{"size_mib": 48}"#)
        #expect(resizing == 202)
        let grown = try await volume("data") { text($0?["status"]) == "available" && $0?["size_mib"] == .int(48) }
        #expect(grown?["size_mib"] == .int(48) && files.size(id) == 48 << 20)

        let (deleting, _) = await call("DELETE", "/compute/volumes/data")
        #expect(deleting == 202)
        #expect(try await volume("data") { $0 == nil } == nil)
        #expect(!files.exists(id))
        #expect(await call("GET", "/compute/volumes").1?["volumes"] == .array([]))
    }
}
