import ArgumentParser
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import StorageClient
import StorageNode

/// `cloud storage`: the tenant's S3 keys and objects, and administration of the storage cluster.
struct Storage: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "S3 keys, buckets and objects of your tenant; administration of the storage cluster (members, layout).",
        subcommands: [
            Keys.self, MakeBucket.self, RemoveBucket.self, List.self, Copy.self, Remove.self, Status.self, Layout.self,
        ]
    )

    /// Where to send admin requests and which key signs them.
    struct Connection: ParsableArguments {
        @Option(help: "S3 endpoint of any node.")
        var endpoint: String = "http://127.0.0.1:9000"

        @Option(help: "Root access key (default: CLOUD_ROOT_ACCESS_KEY, or the data directory's root-credentials).")
        var accessKey: String?

        @Option(help: "Root secret key (default: CLOUD_ROOT_SECRET_KEY, or the data directory's root-credentials).")
        var secretKey: String?

        @Option(help: "Data directory whose root-credentials file to use when no key is given.")
        var dataDir: String = "./cloud-data"

        @Option(help: "Region the node reports.")
        var region: String = "us-east-1"

        func credentials() throws -> (String, String) {
            let environment = ProcessInfo.processInfo.environment
            if let access = self.accessKey ?? environment["CLOUD_ROOT_ACCESS_KEY"],
                let secret = self.secretKey ?? environment["CLOUD_ROOT_SECRET_KEY"], !access.isEmpty, !secret.isEmpty
            {
                return (access, secret)
            }
            let saved: RootCredentials?
            do {
                saved = try RootCredentials.load(dataDirectory: self.dataDir)
            } catch let error as NodeError {
                throw ValidationError(error.description)
            }
            guard let saved else {
                throw ValidationError("no root key: pass --access-key and --secret-key, set CLOUD_ROOT_ACCESS_KEY and CLOUD_ROOT_SECRET_KEY, or point --data-dir at a node's data directory")
            }
            return (saved.accessKey, saved.secretKey)
        }

        /// Sends a signed admin request and returns the JSON answer; non-2xx answers become errors.
        func request(_ method: String, _ path: String, body: [UInt8] = []) async throws -> Data {
            let (accessKey, secretKey) = try self.credentials()
            let client = SignedClient(
                endpoint: S3Endpoint(url: self.endpoint, accessKey: accessKey, secretKey: secretKey, region: self.region))
            let response: SignedResponse
            do {
                response = try await client.send(
                    method, "/_admin" + path, headers: body.isEmpty ? [] : [("content-type", "application/json")], body: Data(body))
            } catch let error as SignedClientError {
                throw ValidationError(error.description)
            }
            guard (200..<300).contains(response.status) else {
                throw ValidationError("the node answered \(response.status): \(response.text.trimmingCharacters(in: .whitespacesAndNewlines))")
            }
            return response.body
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Members with their states, the layout, and the partitions each node owns.")

        @OptionGroup var connection: Connection

        @Option(name: .shortAndLong, help: "Output: table, json or yaml.", completion: .list(OutputFormat.names))
        var output: String = "table"

        func validate() throws {
            guard OutputFormat(rawValue: self.output) != nil else { throw ValidationError("--output must be table, json or yaml") }
        }

        func run() async throws {
            let data = try await self.connection.request("GET", "/storage/status")
            if let format = OutputFormat(rawValue: self.output), format != .table {
                guard let value = OrderedJSON.parse(Array(data)) else { throw CLIError("the node's answer is not JSON") }
                print(format.render(value) ?? "", terminator: "")
                return
            }
            guard let status = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                throw ValidationError("unexpected answer from the node")
            }
            guard status["mode"] as? String == "cluster" else {
                print("This node runs alone (not clustered).")
                return
            }
            print("node \(status["node"] ?? "?")  N=\(status["replication"] ?? "?") W=\(status["writeQuorum"] ?? "?") R=\(status["readQuorum"] ?? "?")")
            if let layout = status["layout"] as? [String: Any] {
                print("layout version \(layout["version"] ?? "?"), \(layout["partitions"] ?? "?") partitions, replication \(layout["replication"] ?? "?")")
            } else {
                print("no layout yet: add nodes with `cloud storage layout add`")
            }
            let rows = (status["members"] as? [[String: Any]] ?? []).map { member in
                [
                    "\(member["id"] ?? "")", "\(member["state"] ?? "")", "\(member["disk"] ?? "?")", "\(member["incarnation"] ?? "")",
                    "\(member["s3Address"] ?? "")",
                    "\(member["rpcAddress"] ?? "")", "\(member["gossipAddress"] ?? "")", "\(member["zone"] ?? "")",
                    Self.size(member["capacity"] as? Int ?? 0), "\(member["partitions"] ?? 0)",
                    member["partitionsToMove"].map { "\($0) (\(Self.size(member["bytesToMove"] as? Int ?? 0)))" } ?? "-",
                ]
            }
            Self.printTable(["ID", "STATE", "DISK", "INC", "S3", "RPC", "GOSSIP", "ZONE", "CAPACITY", "PARTITIONS", "TO MOVE"], rows)
            let members = status["members"] as? [[String: Any]] ?? []
            let toMove = members.reduce(0) { $0 + ($1["partitionsToMove"] as? Int ?? 0) }
            let bytesToMove = members.reduce(0) { $0 + ($1["bytesToMove"] as? Int ?? 0) }
            let outOfSync = members.reduce(0) { $0 + ($1["partitionsOutOfSync"] as? Int ?? 0) }
            if toMove > 0 {
                print("rebalancing: \(toMove) partition(s), \(Self.size(bytesToMove)) still to move to their new owners")
            } else {
                print("rebalancing: nothing to move")
            }
            if outOfSync > 0 { print("anti-entropy: \(outOfSync) partition replica(s) were out of sync in the last rounds (repairing)") }
        }

        static func size(_ bytes: Int) -> String {
            let units = ["B", "K", "M", "G", "T", "P"]
            var value = Double(bytes)
            var index = 0
            while value >= 1024 && index < units.count - 1 {
                value /= 1024
                index += 1
            }
            return value == value.rounded() ? "\(Int(value))\(units[index])" : String(format: "%.1f%@", value, units[index])
        }

        static func printTable(_ header: [String], _ rows: [[String]]) {
            var widths = header.map(\.count)
            for row in rows { for (index, cell) in row.enumerated() { widths[index] = max(widths[index], cell.count) } }
            for row in [header] + rows {
                print(row.enumerated().map { $0.element.padding(toLength: widths[$0.offset], withPad: " ", startingAt: 0) }.joined(separator: "  "))
            }
        }
    }

    struct Layout: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show or change which nodes hold data. Changes print the partition moves first.",
            subcommands: [Show.self, Add.self, Update.self, Remove.self]
        )

        struct Show: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "The current layout (JSON or YAML).")
            @OptionGroup var connection: Connection

            @Option(name: .shortAndLong, help: "Output: json or yaml.", completion: .list(["json", "yaml"]))
            var output: String = "json"

            func validate() throws {
                guard self.output == "json" || self.output == "yaml" else { throw ValidationError("--output must be json or yaml") }
            }

            func run() async throws {
                let data = try await self.connection.request("GET", "/storage/layout")
                guard self.output == "yaml" else {
                    print(String(decoding: data, as: UTF8.self), terminator: "")
                    return
                }
                guard let value = OrderedJSON.parse(Array(data)) else { throw CLIError("the node's answer is not JSON") }
                print(YAML.emit(value), terminator: "")
            }
        }

        struct Change: ParsableArguments {
            @OptionGroup var connection: Connection

            @Flag(name: .shortAndLong, help: "Apply without asking.")
            var yes = false

            @Flag(help: "Only print the moves.")
            var dryRun = false

            /// Prints the moves of `change`, asks, and applies it.
            func apply(_ change: [String: Any]) async throws {
                var preview = change
                preview["dryRun"] = true
                let answer = try await self.connection.request("POST", "/storage/layout", body: Array(try JSONSerialization.data(withJSONObject: preview)))
                let parsed = try JSONSerialization.jsonObject(with: answer) as? [String: Any] ?? [:]
                print("layout version \(parsed["oldVersion"] ?? "none") -> \(parsed["version"] ?? "?"): \(parsed["partitionsMoved"] ?? 0) partitions change owners (\(parsed["replicaSlotsMoved"] ?? 0) replica slots)")
                for move in parsed["moves"] as? [String] ?? [] { print("  \(move)") }
                if self.dryRun { return }
                if !self.yes {
                    print("Apply this layout? [y/N] ", terminator: "")
                    guard let line = readLine(), line.lowercased().hasPrefix("y") else {
                        print("Not applied.")
                        return
                    }
                }
                var apply = change
                apply["dryRun"] = false
                let applied = try await self.connection.request("POST", "/storage/layout", body: Array(try JSONSerialization.data(withJSONObject: apply)))
                let result = try JSONSerialization.jsonObject(with: applied) as? [String: Any] ?? [:]
                print("Applied layout version \(result["version"] ?? "?").")
            }
        }

        struct Add: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Add a node (by its id, as `cloud storage status` shows it).")
            @Argument var node: String
            @Option(help: "Failure domain.") var zone: String = "default"
            @Option(help: "Capacity, e.g. 4T.") var capacity: String = "1T"
            @OptionGroup var change: Change

            func run() async throws {
                guard let bytes = ClusterOptions.parseSize(self.capacity) else { throw ValidationError("--capacity must be a size such as 4T") }
                try await self.change.apply(["add": [["id": self.node, "zone": self.zone, "capacity": bytes]]])
            }
        }

        struct Update: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Change a node's zone or capacity (capacity 0 drains it).")
            @Argument var node: String
            @Option(help: "Failure domain.") var zone: String = "default"
            @Option(help: "Capacity, e.g. 4T.") var capacity: String = "1T"
            @OptionGroup var change: Change

            func run() async throws {
                guard let bytes = ClusterOptions.parseSize(self.capacity) ?? (self.capacity == "0" ? 0 : nil) else {
                    throw ValidationError("--capacity must be a size such as 4T")
                }
                try await self.change.apply(["update": [["id": self.node, "zone": self.zone, "capacity": bytes]]])
            }
        }

        struct Remove: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Remove a node from the layout.")
            @Argument var node: String
            @OptionGroup var change: Change

            func run() async throws {
                try await self.change.apply(["remove": [self.node]])
            }
        }
    }
}
