import ArgumentParser
import ServiceContract
import Foundation

/// `--profile` and `-o` for commands that only read or write the config file.
struct LocalOutputOptions: ParsableArguments {
    @OptionGroup var profileOption: ProfileOption

    @Option(
        name: [.customShort("o"), .customLong("output")], help: "Output format: table, json or yaml.",
        completion: .list(OutputFormat.names))
    var outputFlag: String?

    mutating func validate() throws {
        if let output = self.outputFlag, OutputFormat(rawValue: output) == nil {
            throw ValidationError("--output must be table, json or yaml")
        }
    }

    /// The profile `--profile`, `$CLOUD_PROFILE` or the file select, and the output format.
    func resolve(_ config: CLIConfig) -> (profile: String, format: OutputFormat) {
        let settings = ClientSettings.resolve(
            apiURLFlag: nil, profileFlag: self.profileOption.profile, outputFlag: self.outputFlag,
            environment: ProcessInfo.processInfo.environment, config: config)
        return (settings.profile, OutputFormat(rawValue: settings.output) ?? .table)
    }
}

/// `cloud config`: profiles in the config file.
struct ConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config",
        abstract: "Profiles: which control plane to talk to and with which keys.",
        discussion: """
            The config file is $CLOUD_CONFIG, else $XDG_CONFIG_HOME/cloud/config, else ~/.config/cloud/config \
            (mode 0600). Each profile holds: \(CLIConfig.knownKeys.map(\.key).joined(separator: ", ")). \
            Commands use the profile named by --profile, else $CLOUD_PROFILE, else the current one \
            (`cloud config use`), else "default".
            """,
        subcommands: [List.self, Show.self, Get.self, Use.self, SetValue.self, Unset.self, Delete.self],
        defaultSubcommand: List.self)

    /// A profile as printed: secrets masked.
    static func describe(_ profile: CLIConfig.Profile, current: Bool) -> JSONValue {
        let order = CLIConfig.knownKeys.map(\.key)
        let keys = order.filter { profile.values[$0] != nil } + profile.values.keys.filter { !order.contains($0) }.sorted()
        return .object(
            [("name", .string(profile.name)), ("current", .bool(current))]
                + keys.map { ($0, .string(CLIConfig.masked($0, profile.values[$0]!))) })
    }

    static func noSuchProfile(_ name: String, _ config: CLIConfig) -> CLIError {
        let names = config.profiles.map(\.name)
        return CLIError(
            "there is no profile \"\(name)\" in \(ConfigFile.path())"
                + (names.isEmpty ? "" : " (profiles: \(names.joined(separator: ", ")))")
                + "; create it with `cloud auth login --profile \(name) …` or `cloud config set api_url URL --profile \(name)`")
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The profiles; * marks the one commands use.")
        @OptionGroup var options: LocalOutputOptions

        func run() throws {
            let config = try ConfigFile.load()
            let (selected, format) = self.options.resolve(config)
            let profiles = config.profiles.map { ConfigCommand.describe($0, current: $0.name == selected) }
            let value = JSONValue.object([
                ("config", .string(ConfigFile.path())), ("current_profile", .string(selected)), ("profiles", .array(profiles)),
            ])
            if let text = format.render(value) {
                print(text, terminator: "")
                return
            }
            guard !config.profiles.isEmpty else {
                print("No profiles in \(ConfigFile.path()) yet: `cloud auth login --email you@example.com` creates \"default\".")
                return
            }
            let rows = config.profiles.map { profile in
                [
                    (profile.name == selected ? "* " : "  ") + profile.name, profile.values["api_url"] ?? "-", profile.values["email"] ?? "-",
                    profile.values["api_key"].map { CLIConfig.masked("api_key", $0) } ?? "-", profile.values["s3_endpoint"] ?? "-",
                ]
            }
            print(TextTable.render(["  PROFILE", "API_URL", "EMAIL", "API_KEY", "S3_ENDPOINT"], rows), terminator: "")
            if config.profile(selected) == nil {
                print("Commands use the profile \"\(selected)\", which does not exist: pick one with `cloud config use NAME`.")
            }
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One profile's settings (secrets masked).")
        @Argument(help: "The profile (default: the one commands use).", completion: .custom { _, _, _ in ProfileOption.names() })
        var name: String?
        @OptionGroup var options: LocalOutputOptions

        func run() throws {
            let config = try ConfigFile.load()
            let (selected, format) = self.options.resolve(config)
            let name = self.name ?? selected
            guard let profile = config.profile(name) else { throw ConfigCommand.noSuchProfile(name, config) }
            let value = ConfigCommand.describe(profile, current: name == selected)
            if let text = format.render(value) {
                print(text, terminator: "")
                return
            }
            print("profile \(name)\(name == selected ? " (in use)" : "") in \(ConfigFile.path())")
            guard case .object(let members) = value else { return }
            let rows = members.dropFirst(2).map { [$0.0, TextTable.cell($0.1)] }
            print(TextTable.render(["KEY", "VALUE"], rows), terminator: "")
        }
    }

    struct Get: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print one value of the profile, unmasked (for scripts).",
            discussion: "For example: export CLOUD_API_KEY=$(cloud config get api_key --profile ci)")
        @Argument(help: "The key.", completion: .list(CLIConfig.knownKeys.map(\.key))) var key: String
        @OptionGroup var profileOption: ProfileOption

        func run() throws {
            let config = try ConfigFile.load()
            let name = LocalOutputOptions.profileName(self.profileOption, config)
            guard let profile = config.profile(name) else { throw ConfigCommand.noSuchProfile(name, config) }
            guard let value = profile.values[self.key] else { throw CLIError("the profile \"\(name)\" has no \(self.key)") }
            print(value)
        }
    }

    struct Use: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Make a profile the current one.")
        @Argument(help: "The profile.", completion: .custom { _, _, _ in ProfileOption.names() }) var name: String

        func run() throws {
            var config = try ConfigFile.load()
            guard config.profile(self.name) != nil else { throw ConfigCommand.noSuchProfile(self.name, config) }
            config.currentProfile = self.name
            try ConfigFile.save(config)
            let url = config.profile(self.name)?.values["api_url"] ?? ClientSettings.defaultAPIURL
            print("Now using the profile \"\(self.name)\" (\(url)).")
            if let environment = ProcessInfo.processInfo.environment["CLOUD_PROFILE"], !environment.isEmpty, environment != self.name {
                print("Note: $CLOUD_PROFILE=\(environment) still wins in this shell.")
            }
        }
    }

    struct SetValue: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set",
            abstract: "Set a value in the profile (creating the profile).",
            discussion: "Keys: " + CLIConfig.knownKeys.map { "\($0.key) (\($0.help))" }.joined(separator: "; ") + ".")
        @Argument(help: "The key.", completion: .list(CLIConfig.knownKeys.map(\.key))) var key: String
        @Argument(help: "The value.") var value: String
        @OptionGroup var profileOption: ProfileOption

        func validate() throws {
            guard CLIConfig.knownKeys.contains(where: { $0.key == self.key }) else {
                throw ValidationError("unknown key \"\(self.key)\"; the keys are \(CLIConfig.knownKeys.map(\.key).joined(separator: ", "))")
            }
            let value = self.value.trimmingCharacters(in: .whitespaces)
            guard !value.isEmpty, !value.contains(where: \.isNewline) else {
                throw ValidationError("the value must be one non-empty line (remove a key with `cloud config unset`)")
            }
            if ["api_url", "s3_endpoint"].contains(self.key), !APIClientOptions.isHTTPURL(value) {
                throw ValidationError("\(self.key) must be an http:// or https:// URL such as http://127.0.0.1:8080")
            }
            if self.key == "output", OutputFormat(rawValue: value) == nil {
                throw ValidationError("output must be table, json or yaml")
            }
        }

        func run() throws {
            var config = try ConfigFile.load()
            let name = LocalOutputOptions.profileName(self.profileOption, config)
            var value = self.value.trimmingCharacters(in: .whitespaces)
            if ["api_url", "s3_endpoint"].contains(self.key) { while value.hasSuffix("/") { value.removeLast() } }
            let created = config.profile(name) == nil
            config.set(self.key, value, profile: name)
            try ConfigFile.save(config)
            print("Set \(self.key) = \(CLIConfig.masked(self.key, value)) in the \(created ? "new " : "")profile \"\(name)\".")
        }
    }

    struct Unset: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a value from the profile.")
        @Argument(help: "The key.", completion: .list(CLIConfig.knownKeys.map(\.key))) var key: String
        @OptionGroup var profileOption: ProfileOption

        func run() throws {
            var config = try ConfigFile.load()
            let name = LocalOutputOptions.profileName(self.profileOption, config)
            guard config.profile(name) != nil else { throw ConfigCommand.noSuchProfile(name, config) }
            guard config.unset(self.key, profile: name) else { throw CLIError("the profile \"\(name)\" has no \(self.key)") }
            try ConfigFile.save(config)
            print("Removed \(self.key) from the profile \"\(name)\".")
        }
    }

    struct Delete: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a profile and its keys from the config file.")
        @Argument(help: "The profile.", completion: .custom { _, _, _ in ProfileOption.names() }) var name: String

        func run() throws {
            var config = try ConfigFile.load()
            let wasCurrent = config.currentProfile == self.name
            guard config.deleteProfile(self.name) else { throw ConfigCommand.noSuchProfile(self.name, config) }
            try ConfigFile.save(config)
            print(
                "Deleted the profile \"\(self.name)\"."
                    + (wasCurrent ? " No profile is current now: commands use \"\(CLIConfig.defaultProfile)\" (`cloud config use NAME`)." : ""))
        }
    }
}

extension LocalOutputOptions {
    /// The profile a command without `-o` works on.
    static func profileName(_ option: ProfileOption, _ config: CLIConfig) -> String {
        ClientSettings.resolve(
            apiURLFlag: nil, profileFlag: option.profile, outputFlag: nil, environment: ProcessInfo.processInfo.environment, config: config
        ).profile
    }
}
