import ArgumentParser
import Foundation
import ServiceContract

/// `cloud secrets`: encrypted named values of the tenant of your key (docs/services/secrets.md).
struct Secrets: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Secrets: encrypted named values with versions, in the tenant of your API key.",
        discussion: "Values are shown only by `cloud secrets get` (the permission secret:read-value). Deleted secrets can be restored within their recovery window.",
        subcommands: [Create.self, List.self, Show.self, Get.self, Put.self, Versions.self, Update.self, Delete.self, Restore.self],
        defaultSubcommand: List.self)

    static let columns = [
        ("NAME", "name"), ("LATEST", "latest_version"), ("UPDATED", "updated_at"), ("DELETED", "deleted_at"), ("DESCRIPTION", "description"),
    ]

    /// The value from exactly one of `--value`, `--from-file` or standard input (`--from-file -`).
    struct ValueOptions: ParsableArguments {
        @Option(help: "The value (it may show in your shell's history; prefer --from-file).") var value: String?
        @Option(help: "Read the value from this file, or '-' for standard input.") var fromFile: String?

        func read() throws -> String {
            switch (self.value, self.fromFile) {
            case (let value?, nil): return value
            case (nil, let path?):
                let data = path == "-" ? FileHandle.standardInput.readDataToEndOfFile() : try Data(contentsOf: URL(fileURLWithPath: path))
                guard let text = String(data: data, encoding: .utf8) else { throw CLIError("the value in \(path) is not UTF-8 text") }
                return text
            default: throw ValidationError("give the value with exactly one of --value or --from-file")
            }
        }
    }

    static func path(_ name: String) -> String { "/secrets/" + name.addingPercentEncodingForQuery() }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a secret with its first value.")
        @Argument(help: "The name (letters, digits and / _ + = . @ -).") var name: String
        @OptionGroup var value: ValueOptions
        @Option(help: "What it is for.") var description: String?
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            var body: [(String, JSONValue)] = [("name", .string(self.name)), ("value", .string(try self.value.read()))]
            if let description { body.append(("description", .string(description))) }
            let answer = try await ResourceClient(self.client).create("/secrets", body: .object(body))
            self.client.emit(answer) { print("Secret \(self.name) created (version 1).") }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The tenant's secrets (names and versions, never values).")
        @Flag(help: "Also those waiting out their recovery window.") var includeDeleted = false
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            let resources = ResourceClient(self.client)
            let items = try await resources.listAll("/secrets", itemsKey: "secrets", query: self.includeDeleted ? ["include_deleted=true"] : [])
            resources.show(items, itemsKey: "secrets", columns: Secrets.columns)
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One secret's metadata (no value).")
        @Argument(help: "The name.") var name: String
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            ResourceClient(self.client).showOne(try await self.client.call("GET", Secrets.path(self.name)))
        }
    }

    struct Get: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print a secret's value (the latest, or --version N).",
            discussion: "With -o table (the default) only the value is printed, so `cloud secrets get db-password` works in scripts.")
        @Argument(help: "The name.") var name: String
        @Option(help: "The version to read.") var version: Int?
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            let query = self.version.map { "?version=\($0)" } ?? ""
            let answer = try await self.client.call("GET", Secrets.path(self.name) + "/value" + query)
            self.client.emit(answer) {
                if case .string(let value) = answer?["value"] { print(value) }
            }
        }
    }

    struct Put: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Store a new value; it becomes the latest version.")
        @Argument(help: "The name.") var name: String
        @OptionGroup var value: ValueOptions
        @Option(help: "Refuse if the secret changed since this version (its `version` field).") var ifVersion: Int?
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            let headers = self.ifVersion.map { [("If-Match", "\"\($0)\"")] } ?? []
            let answer = try await self.client.call(
                "POST", Secrets.path(self.name) + "/versions", body: .object([("value", .string(try self.value.read()))]),
                headers: headers + [("Idempotency-Key", "cli-" + UUID().uuidString.lowercased())])
            self.client.emit(answer) { print("Secret \(self.name): version \(APIClientOptions.text(answer?["version"])) stored.") }
        }
    }

    struct Versions: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "A secret's versions (no values).")
        @Argument(help: "The name.") var name: String
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            let resources = ResourceClient(self.client)
            let items = try await resources.listAll(Secrets.path(self.name) + "/versions", itemsKey: "versions")
            resources.show(items, itemsKey: "versions", columns: [("VERSION", "version"), ("CREATED", "created_at")])
        }
    }

    struct Update: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Change a secret's description.")
        @Argument(help: "The name.") var name: String
        @Option(help: "The new description.") var description: String
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            let answer = try await self.client.call(
                "PATCH", Secrets.path(self.name), body: .object([("description", .string(self.description))]))
            self.client.emit(answer) { print("Secret \(self.name) updated.") }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a secret; it can be restored until its recovery window ends.")
        @Argument(help: "The name.") var name: String
        @Option(help: "Days it can still be restored (1 to 30).") var recoveryDays: Int = 7
        @OptionGroup var client: APIClientOptions

        func validate() throws {
            guard (1...30).contains(self.recoveryDays) else { throw ValidationError("--recovery-days must be 1 to 30") }
        }

        func run() async throws {
            let answer = try await self.client.call("DELETE", Secrets.path(self.name) + "?recovery_days=\(self.recoveryDays)")
            self.client.emit(answer) {
                print("Secret \(self.name) deleted; restorable until \(APIClientOptions.text(answer?["purge_at"])) (`cloud secrets restore \(self.name)`).")
            }
        }
    }

    struct Restore: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Undo a delete within its recovery window.")
        @Argument(help: "The name.") var name: String
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            let answer = try await self.client.call("POST", Secrets.path(self.name) + "/restore")
            self.client.emit(answer) { print("Secret \(self.name) restored.") }
        }
    }
}
