import ArgumentParser
import Foundation
import ServiceContract

/// `cloud volumes`: block volumes that instances see at /volumes/NAME (docs/services/compute.md).
struct Volumes: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Volumes: block storage (ext4) of the tenant of your API key, attached to an instance at /volumes/NAME.",
        discussion: "Creating, attaching, detaching, resizing and deleting are asynchronous; --wait waits for the outcome.",
        subcommands: [Create.self, List.self, Show.self, Attach.self, Detach.self, Resize.self, Delete.self],
        defaultSubcommand: List.self)

    static let columns = [
        ("NAME", "name"), ("STATUS", "status"), ("SIZE_MIB", "size_mib"), ("INSTANCE", "instance"), ("SNAPSHOT", "snapshot"),
        ("CREATED", "created_at"), ("REASON", "status_reason"),
    ]

    static func path(_ name: String) -> String { "/compute/volumes/" + name.addingPercentEncodingForQuery() }

    /// `1G`, `512M`, `2GiB`, `1T` or a plain number of MiB, in MiB.
    static func mebibytes(_ text: String) throws -> Int64 {
        let units: [(String, Int64)] = [("TiB", 1 << 20), ("GiB", 1 << 10), ("MiB", 1), ("T", 1 << 20), ("G", 1 << 10), ("M", 1)]
        for (suffix, factor) in units where text.hasSuffix(suffix) {
            guard let value = Int64(text.dropLast(suffix.count)), value > 0 else { break }
            return value * factor
        }
        guard let value = Int64(text), value > 0 else { throw ValidationError("--size must be like 1G, 512M or a number of MiB, not '\(text)'") }
        return value
    }

    /// Waits while the volume is in `passing`, then throws with its reason unless it is in `target`.
    static func settle(_ client: APIClientOptions, _ name: String, passing: Set<String>, target: String) async throws -> JSONValue? {
        let settled: Set<String> = Set(["creating", "available", "attaching", "attached", "detaching", "resizing", "deleting", "failed"]).subtracting(passing)
        let answer = try await ResourceClient(client).wait(Volumes.path(name), until: settled)
        guard case .string(let status) = answer?["status"], status == target else {
            throw CLIError("volume \(name) is \(APIClientOptions.text(answer?["status"])): \(APIClientOptions.text(answer?["status_reason"]))")
        }
        return answer
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a volume of --size, or restore --from-snapshot.",
            discussion: "cloud volumes create data --size 1G --wait\ncloud volumes create data2 --from-snapshot nightly")
        @Argument(help: "The name (lowercase letters, digits and -).") var name: String
        @Option(help: "Its size: 1G, 512M, … (16M to 1T); from a snapshot, the snapshot's size by default.") var size: String?
        @Option(help: "A completed snapshot to restore into it.") var fromSnapshot: String?
        @Option(help: "file (default: a sparse file on the host) or lvm (a logical volume, where the host has LVM).") var storage: String?
        @Flag(help: "Wait until it is available (or failed, with the reason).") var wait = false
        @OptionGroup var client: APIClientOptions

        func validate() throws {
            if self.size == nil && self.fromSnapshot == nil { throw ValidationError("give --size, or --from-snapshot") }
        }

        func run() async throws {
            var body: [(String, JSONValue)] = [("name", .string(self.name))]
            if let size { body.append(("size_mib", .int(try Volumes.mebibytes(size)))) }
            if let fromSnapshot { body.append(("snapshot", .string(fromSnapshot))) }
            if let storage { body.append(("storage", .string(storage))) }
            var answer = try await ResourceClient(self.client).create("/compute/volumes", body: .object(body))
            if self.wait { answer = try await Volumes.settle(self.client, self.name, passing: ["creating"], target: "available") }
            self.client.emit(answer) { print("Volume \(self.name) \(APIClientOptions.text(answer?["status"])) (\(APIClientOptions.text(answer?["size_mib"])) MiB).") }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The tenant's volumes.")
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            let resources = ResourceClient(self.client)
            resources.show(try await resources.listAll("/compute/volumes", itemsKey: "volumes"), itemsKey: "volumes", columns: Volumes.columns)
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One volume.")
        @Argument(help: "The name.") var name: String
        @OptionGroup var client: APIClientOptions

        func run() async throws { ResourceClient(self.client).showOne(try await self.client.call("GET", Volumes.path(self.name))) }
    }

    struct Attach: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Attach a volume to a ready or stopped instance; it sees it at /volumes/NAME (formatted ext4 the first time).")
        @Argument(help: "The volume.") var name: String
        @Option(help: "The instance.") var instance: String
        @Flag(help: "Wait until it is attached (or say why not).") var wait = false
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            var answer = try await self.client.call("POST", Volumes.path(self.name) + "/attach", body: .object([("instance", .string(self.instance))]))
            if self.wait { answer = try await Volumes.settle(self.client, self.name, passing: ["attaching"], target: "attached") }
            self.client.emit(answer) {
                let path = answer?["mount_path"].map { APIClientOptions.text($0) } ?? "/volumes/\(self.name)"
                print("Volume \(self.name) \(APIClientOptions.text(answer?["status"])) to \(self.instance) at \(path).")
            }
        }
    }

    struct Detach: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Detach a volume; a process of the instance still using it keeps it attached, and --wait says so.")
        @Argument(help: "The volume.") var name: String
        @Flag(help: "Wait until it is detached (or say why not).") var wait = false
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            var answer = try await self.client.call("POST", Volumes.path(self.name) + "/detach")
            if self.wait { answer = try await Volumes.settle(self.client, self.name, passing: ["detaching"], target: "available") }
            self.client.emit(answer) { print("Volume \(self.name) \(APIClientOptions.text(answer?["status"])).") }
        }
    }

    struct Resize: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Grow a detached volume and its file system.")
        @Argument(help: "The volume.") var name: String
        @Option(help: "The new size: 2G, 1536M, …") var size: String
        @Flag(help: "Wait until it is done.") var wait = false
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            let mebibytes = try Volumes.mebibytes(self.size)
            var answer = try await self.client.call("POST", Volumes.path(self.name) + "/resize", body: .object([("size_mib", .int(mebibytes))]))
            if self.wait {
                answer = try await Volumes.settle(self.client, self.name, passing: ["resizing"], target: "available")
                if case .int(let size)? = answer?["size_mib"], size != mebibytes {
                    throw CLIError("volume \(self.name) was not resized: \(APIClientOptions.text(answer?["status_reason"]))")
                }
            }
            self.client.emit(answer) { print("Volume \(self.name) \(APIClientOptions.text(answer?["status"])) (\(APIClientOptions.text(answer?["size_mib"])) MiB).") }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a detached volume (its snapshots stay).")
        @Argument(help: "The name.") var name: String
        @Flag(help: "Wait until it is gone.") var wait = false
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            try await ResourceClient(self.client).delete(Volumes.path(self.name), noun: "Volume", name: self.name, wait: self.wait)
        }
    }
}

/// `cloud snapshots`: volumes' blocks kept in the object store.
struct Snapshots: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Snapshots: a volume's data at one moment, kept in the object store; only blocks that changed are stored again.",
        subcommands: [Create.self, List.self, Show.self, Delete.self], defaultSubcommand: List.self)

    static let columns = [
        ("NAME", "name"), ("STATUS", "status"), ("VOLUME", "volume"), ("SIZE_MIB", "size_mib"), ("BLOCKS", "blocks"), ("STORED", "stored_bytes"),
        ("CREATED", "created_at"), ("REASON", "status_reason"),
    ]

    static func path(_ name: String) -> String { "/compute/snapshots/" + name.addingPercentEncodingForQuery() }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Snapshot a volume (an attached one's file system is frozen while it is read).",
            discussion: "cloud snapshots create data --name nightly --wait")
        @Argument(help: "The volume.") var volume: String
        @Option(help: "The snapshot's name.") var name: String
        @Flag(help: "Wait until it is completed (or failed, with the reason).") var wait = false
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            let resources = ResourceClient(self.client)
            var answer = try await resources.create("/compute/snapshots", body: .object([("name", .string(self.name)), ("volume", .string(self.volume))]))
            if self.wait { answer = try await resources.wait(Snapshots.path(self.name), until: ["completed"]) }
            self.client.emit(answer) {
                print("Snapshot \(self.name) of \(self.volume) \(APIClientOptions.text(answer?["status"])): \(APIClientOptions.text(answer?["blocks"])) blocks, \(APIClientOptions.text(answer?["stored_bytes"])) bytes stored.")
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The tenant's snapshots.")
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            let resources = ResourceClient(self.client)
            resources.show(try await resources.listAll("/compute/snapshots", itemsKey: "snapshots"), itemsKey: "snapshots", columns: Snapshots.columns)
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One snapshot.")
        @Argument(help: "The name.") var name: String
        @OptionGroup var client: APIClientOptions

        func run() async throws { ResourceClient(self.client).showOne(try await self.client.call("GET", Snapshots.path(self.name))) }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a snapshot and the blocks no other snapshot holds.")
        @Argument(help: "The name.") var name: String
        @Flag(help: "Wait until it is gone.") var wait = false
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            try await ResourceClient(self.client).delete(Snapshots.path(self.name), noun: "Snapshot", name: self.name, wait: self.wait)
        }
    }
}
