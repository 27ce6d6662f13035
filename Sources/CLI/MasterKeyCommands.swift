import ArgumentParser
import Database
import Foundation
import Logging
import Secrets

/// `cloud master-key`: the secrets service's master key, for operators (docs/services/secrets.md).
struct MasterKeyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "master-key",
        abstract: "The secrets service's master key: its id, and rotation (re-wraps the tenants' data keys; values are not touched).",
        subcommands: [ShowID.self, Rotate.self])

    struct ShowID: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "id", abstract: "Print the id of a master key file (never the key).")
        @Argument(help: "The key file.") var file: String

        func run() async throws {
            guard FileManager.default.fileExists(atPath: self.file) else { throw CLIError("no key file at \(self.file)") }
            do {
                print(try MasterKey.load(environmentValue: nil, file: self.file).0.id)
            } catch {
                throw CLIError(error.description)
            }
        }
    }

    struct Rotate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Re-wrap every tenant's data key from the old master key to the new one, in one transaction.",
            discussion: """
                Stop the control-plane processes (or accept that they answer master_key_mismatch until restarted), \
                run this against their database, then start them with --master-key-file NEW. The new file is made (0600) \
                when it does not exist. Keep the old key until every process runs with the new one.
                """)
        @Option(help: "The database (as for cloud server --database; default $CLOUD_DATABASE_URL).") var database: String?
        @Option(help: "The master key file in use now.") var from: String
        @Option(help: "The new master key file (made when absent).") var to: String

        func run() async throws {
            guard let url = self.database ?? ProcessInfo.processInfo.environment["CLOUD_DATABASE_URL"], !url.isEmpty else {
                throw ValidationError("give --database (or set CLOUD_DATABASE_URL)")
            }
            guard FileManager.default.fileExists(atPath: self.from) else { throw CLIError("no key file at \(self.from)") }
            let logger = Logger(label: "cloud.master-key")
            let old: MasterKey
            let new: MasterKey
            do {
                old = try MasterKey.load(environmentValue: nil, file: self.from).0
                new = try MasterKey.load(environmentValue: nil, file: self.to).0
            } catch {
                throw CLIError(error.description)
            }
            let database = try DatabaseLocation(parsing: url).open(logger: logger)
            do {
                let count = try await SecretsService.rotateMasterKey(
                    database: database, from: old, to: new, now: Int64(Date().timeIntervalSince1970 * 1000))
                await database.close()
                print("Re-wrapped \(count) data key(s) from master key \(old.id) to \(new.id). Start the control plane with --master-key-file \(self.to).")
            } catch {
                await database.close()
                throw CLIError("nothing was changed: \(error)")
            }
        }
    }
}
