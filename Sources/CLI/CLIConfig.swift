#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Synchronization

/// The CLI's settings: named profiles, each with the control plane's URL and an API key (and the S3
/// endpoint and keys of the tenant), and which profile is current.
///
/// The text format is INI-like, for people to read and edit:
///
/// ```ini
/// [settings]
/// current_profile = prod
///
/// [profile default]
/// api_url = http://127.0.0.1:8080
/// api_key = ck_...
///
/// [profile prod]
/// api_url = https://cloud.example.com
/// ```
///
/// Lines starting with `#` or `;` are comments. The format written before profiles existed (one
/// `[default]` section, or `key = value` lines before any section) is read as the profile
/// `default`; ``parse(_:)`` reports it so the caller rewrites the file in the current format.
///
/// This type is pure: the file itself is read and written by ``ConfigFile``.
struct CLIConfig: Equatable, Sendable {
    /// One named set of settings.
    struct Profile: Equatable, Sendable {
        var name: String
        var values: [String: String]
    }

    /// A line that is not a comment, a section header or `key = value`, or an invalid name.
    struct ParseError: Error, Equatable, CustomStringConvertible {
        /// 1-based.
        var line: Int
        var message: String

        var description: String { "line \(self.line): \(self.message)" }
    }

    /// The `[settings]` section: `current_profile`.
    var settings: [String: String] = [:]
    /// In file order.
    var profiles: [Profile] = []

    /// The profile used when none is chosen and none is current.
    static let defaultProfile = "default"

    /// The keys a profile may hold, in the order they are written, with what they mean.
    static let knownKeys: [(key: String, help: String)] = [
        ("api_url", "the control plane's URL, e.g. http://127.0.0.1:8080"),
        ("api_key", "the API key `cloud auth login` saves (secret)"),
        ("email", "the email you logged in with"),
        ("tenant_id", "the tenant the saved API key acts in (cloud tenants switch)"),
        ("output", "the default output format: table, json or yaml"),
        ("s3_endpoint", "the S3 endpoint, e.g. http://127.0.0.1:9000"),
        ("s3_access_key", "the tenant's S3 access key id"),
        ("s3_secret_key", "the tenant's S3 secret key (secret)"),
        ("s3_region", "the region of S3 signatures (default us-east-1)"),
    ]

    /// Keys whose values are never printed in full.
    static let secretKeys: Set<String> = ["api_key", "s3_secret_key"]

    /// The profile `current_profile` names, if any.
    var currentProfile: String? {
        get { self.settings["current_profile"].flatMap { $0.isEmpty ? nil : $0 } }
        set { self.settings["current_profile"] = newValue }
    }

    func profile(_ name: String) -> Profile? { self.profiles.first { $0.name == name } }

    /// Sets `key` in the profile `name`, creating the profile when it does not exist.
    mutating func set(_ key: String, _ value: String, profile name: String) {
        if let index = self.profiles.firstIndex(where: { $0.name == name }) {
            self.profiles[index].values[key] = value
        } else {
            self.profiles.append(Profile(name: name, values: [key: value]))
        }
    }

    /// Removes `key` from the profile `name`; false when it was not set.
    @discardableResult
    mutating func unset(_ key: String, profile name: String) -> Bool {
        guard let index = self.profiles.firstIndex(where: { $0.name == name }) else { return false }
        return self.profiles[index].values.removeValue(forKey: key) != nil
    }

    /// Removes the profile `name` (and makes no profile current if it was); false when there was none.
    @discardableResult
    mutating func deleteProfile(_ name: String) -> Bool {
        guard let index = self.profiles.firstIndex(where: { $0.name == name }) else { return false }
        self.profiles.remove(at: index)
        if self.currentProfile == name { self.settings.removeValue(forKey: "current_profile") }
        return true
    }

    /// Letters, digits, `.`, `-` and `_`, starting with a letter or digit, at most 64 characters.
    static func isValidProfileName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, name.unicodeScalars.count <= 64, Self.isAlphanumeric(first) else { return false }
        return name.unicodeScalars.allSatisfy { Self.isAlphanumeric($0) || $0 == "." || $0 == "-" || $0 == "_" }
    }

    /// Lowercase letters, digits and `_`, starting with a letter.
    static func isValidKey(_ key: String) -> Bool {
        guard let first = key.unicodeScalars.first, ("a"..."z").contains(first) else { return false }
        return key.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "_" }
    }

    private static func isAlphanumeric(_ scalar: Unicode.Scalar) -> Bool {
        ("a"..."z").contains(scalar) || ("A"..."Z").contains(scalar) || ("0"..."9").contains(scalar)
    }

    /// Parses the text of a config file.
    /// - Returns: The settings, and whether the text was in the format of earlier versions (so the
    ///   caller should write it back in the current one).
    /// - Throws: ``ParseError`` naming the first line that is not understood.
    static func parse(_ text: String) throws(ParseError) -> (config: CLIConfig, legacy: Bool) {
        enum Section {
            case none, settings
            case profile(String)
        }
        var config = CLIConfig()
        var legacy = false
        var section = Section.none
        for (offset, rawLine) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            let number = offset + 1
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("[") {
                guard line.hasSuffix("]"), line.count >= 2 else {
                    throw ParseError(line: number, message: "a section header must look like [profile NAME]")
                }
                let inner = line.dropFirst().dropLast().trimmingCharacters(in: .whitespaces)
                var name = inner
                if inner == "settings" {
                    section = .settings
                    continue
                }
                if inner.hasPrefix("profile ") {
                    name = inner.dropFirst("profile ".count).trimmingCharacters(in: .whitespaces)
                } else {
                    legacy = true  // `[default]`, as earlier versions wrote it
                }
                guard Self.isValidProfileName(name) else {
                    throw ParseError(
                        line: number, message: "\"\(name)\" is not a profile name (letters, digits, '.', '-' and '_')")
                }
                if config.profile(name) == nil { config.profiles.append(Profile(name: name, values: [:])) }
                section = .profile(name)
                continue
            }
            guard let equals = line.firstIndex(of: "=") else {
                throw ParseError(line: number, message: "expected `key = value`, a [profile NAME] header or a # comment")
            }
            let key = line[..<equals].trimmingCharacters(in: .whitespaces).lowercased()
            let value = line[line.index(after: equals)...].trimmingCharacters(in: .whitespaces)
            guard Self.isValidKey(key) else {
                throw ParseError(line: number, message: "\"\(key)\" is not a key (lowercase letters, digits and '_')")
            }
            switch section {
            case .settings:
                config.settings[key] = value
            case .profile(let name):
                config.set(key, value, profile: name)
            case .none:
                // Earlier versions ignored the section header and read bare keys as the only profile.
                legacy = true
                config.set(key, value, profile: Self.defaultProfile)
            }
        }
        return (config, legacy)
    }

    /// The text of the file: a comment, `[settings]` when there are any, then each profile with the
    /// known keys first (in ``knownKeys`` order) and the others sorted.
    func serialized() -> String {
        var text = "# The `cloud` CLI's profiles (see docs/cli.md). Keep this file private: it holds API keys.\n"
        if !self.settings.isEmpty {
            text += "\n[settings]\n"
            for key in self.settings.keys.sorted() { text += "\(key) = \(self.settings[key]!)\n" }
        }
        let order = Self.knownKeys.map(\.key)
        for profile in self.profiles {
            text += "\n[profile \(profile.name)]\n"
            let known = order.filter { profile.values[$0] != nil }
            let others = profile.values.keys.filter { !order.contains($0) }.sorted()
            for key in known + others { text += "\(key) = \(profile.values[key]!)\n" }
        }
        return text
    }

    /// `ck_0123456789abcdef_…` for an API key, `****` for other secrets, the value itself otherwise.
    static func masked(_ key: String, _ value: String) -> String {
        guard Self.secretKeys.contains(key), !value.isEmpty else { return value }
        if key == "api_key", value.hasPrefix("ck_"), value.count > 20 { return String(value.prefix(20)) + "…" }
        return "****"
    }
}

/// What a client command talks to and as whom, after flags, environment and profile are weighed.
struct ClientSettings: Equatable, Sendable {
    /// The profile used for defaults (and written by `cloud auth login`).
    var profile: String
    /// Without a trailing `/`.
    var apiURL: String
    var apiKey: String?
    var output: String

    static let defaultAPIURL = "http://127.0.0.1:8080"

    /// The settings for one command.
    ///
    /// The profile is `--profile`, else `$CLOUD_PROFILE`, else the file's `current_profile`, else
    /// `default`. The URL is `--api-url`, else `$CLOUD_API_URL`, else the profile's `api_url`, else
    /// `http://127.0.0.1:8080`; the key `$CLOUD_API_KEY`, else the profile's `api_key`. A profile
    /// named with `--profile` on the command line beats the two environment variables (as with the
    /// AWS CLI): asking for a profile by name means its URL and key. The output format is `-o`, else
    /// the profile's `output`, else `table`.
    static func resolve(
        apiURLFlag: String?, profileFlag: String?, outputFlag: String?, environment: [String: String], config: CLIConfig
    ) -> ClientSettings {
        func nonEmpty(_ value: String?) -> String? { value.flatMap { $0.isEmpty ? nil : $0 } }
        let name = nonEmpty(profileFlag) ?? nonEmpty(environment["CLOUD_PROFILE"]) ?? config.currentProfile ?? CLIConfig.defaultProfile
        let values = config.profile(name)?.values ?? [:]
        let explicit = nonEmpty(profileFlag) != nil
        let url: String
        let key: String?
        if explicit {
            url = nonEmpty(apiURLFlag) ?? nonEmpty(values["api_url"]) ?? nonEmpty(environment["CLOUD_API_URL"]) ?? Self.defaultAPIURL
            key = nonEmpty(values["api_key"]) ?? nonEmpty(environment["CLOUD_API_KEY"])
        } else {
            url = nonEmpty(apiURLFlag) ?? nonEmpty(environment["CLOUD_API_URL"]) ?? nonEmpty(values["api_url"]) ?? Self.defaultAPIURL
            key = nonEmpty(environment["CLOUD_API_KEY"]) ?? nonEmpty(values["api_key"])
        }
        var trimmed = url
        while trimmed.hasSuffix("/") { trimmed.removeLast() }
        let output = nonEmpty(outputFlag) ?? nonEmpty(values["output"]) ?? "table"
        return ClientSettings(profile: name, apiURL: trimmed, apiKey: key, output: output)
    }
}

/// Reads and writes the config file: `$CLOUD_CONFIG`, else `$XDG_CONFIG_HOME/cloud/config`, else
/// `$HOME/.config/cloud/config`. Writes are atomic (a temporary file renamed over the old one), the
/// file mode 0600 and its directory's 0700.
enum ConfigFile {
    static func path(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let path = environment["CLOUD_CONFIG"], !path.isEmpty { return path }
        if let base = environment["XDG_CONFIG_HOME"], !base.isEmpty { return base + "/cloud/config" }
        let home = environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
        return home + "/.config/cloud/config"
    }

    /// The `--profile` of the command being run, set while its options are validated, so that code
    /// without access to the options (``ClientConfig/load()``) uses the same profile.
    static let selectedProfile = Mutex<String?>(nil)

    /// Files read by this process, so warnings are printed once and the file is parsed once.
    private static let cache = Mutex<[String: CLIConfig]>([:])

    /// Reads the file (an empty config when there is none). A file in an earlier format is rewritten
    /// in the current one; a file others can read gets a warning on stderr.
    /// - Throws: ``CLIError`` naming the file and the line it cannot parse.
    static func load(path: String = Self.path()) throws -> CLIConfig {
        if let cached = Self.cache.withLock({ $0[path] }) { return cached }
        guard let data = FileManager.default.contents(atPath: path) else { return CLIConfig() }
        let parsed: (config: CLIConfig, legacy: Bool)
        do {
            parsed = try CLIConfig.parse(String(decoding: data, as: UTF8.self))
        } catch {
            throw CLIError("cannot read \(path): \(error.description); fix or remove the line (see `cloud config --help`)")
        }
        var status = stat()
        if stat(path, &status) == 0, status.st_mode & 0o077 != 0 {
            printError("warning: \(path) can be read by other users; run `chmod 600 \(path)`")
        }
        if parsed.legacy {
            do {
                try Self.save(parsed.config, path: path)
                printError("note: converted \(path) to the profile format (its settings are now the profile \"default\")")
            } catch {
                // Still usable as read; the next successful save converts it.
            }
        }
        Self.cache.withLock { $0[path] = parsed.config }
        return parsed.config
    }

    /// Writes the file atomically with mode 0600, creating its directory with mode 0700.
    static func save(_ config: CLIConfig, path: String = Self.path()) throws {
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty && !FileManager.default.fileExists(atPath: directory) {
            do {
                try FileManager.default.createDirectory(
                    atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            } catch {
                throw CLIError("cannot create \(directory): \(error.localizedDescription)")
            }
        }
        let text = config.serialized()
        let temporary = path + ".tmp.\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw CLIError("cannot write \(temporary): \(String(cString: strerror(errno)))") }
        fchmod(fd, 0o600)
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, bytes.count - offset) }
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else {
                let reason = String(cString: strerror(errno))
                close(fd)
                unlink(temporary)
                throw CLIError("cannot write \(path): \(reason)")
            }
            offset += written
        }
        let synced = fsync(fd) == 0
        close(fd)
        guard synced, rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw CLIError("cannot write \(path): \(reason)")
        }
        Self.cache.withLock { $0[path] = config }
    }
}

/// The values of the profile the command runs with, for commands that only need to read or update
/// a few keys of it (`cloud auth login`, `cloud storage keys create --save`).
struct ClientConfig {
    /// The profile's name.
    var profile: String
    var values: [String: String]

    static var path: String { ConfigFile.path() }

    /// The profile chosen by `--profile`, `$CLOUD_PROFILE`, the current profile, or `default`; empty
    /// values when the file cannot be read.
    static func load() -> ClientConfig {
        (try? Self.loadChecked()) ?? ClientConfig(profile: Self.selectedName(CLIConfig()), values: [:])
    }

    /// Like ``load()`` but reports a file it cannot parse; `profile` overrides the selection.
    static func loadChecked(profile: String? = nil) throws -> ClientConfig {
        let config = try ConfigFile.load()
        let name = profile ?? Self.selectedName(config)
        return ClientConfig(profile: name, values: config.profile(name)?.values ?? [:])
    }

    private static func selectedName(_ config: CLIConfig) -> String {
        ClientSettings.resolve(
            apiURLFlag: nil, profileFlag: ConfigFile.selectedProfile.withLock { $0 }, outputFlag: nil,
            environment: ProcessInfo.processInfo.environment, config: config
        ).profile
    }

    /// Writes these values as the profile's, keeping the other profiles.
    func save() throws {
        var config = try ConfigFile.load()
        if let index = config.profiles.firstIndex(where: { $0.name == self.profile }) {
            config.profiles[index].values = self.values
        } else {
            config.profiles.append(CLIConfig.Profile(name: self.profile, values: self.values))
        }
        try ConfigFile.save(config)
    }
}

/// Writes one line to stderr.
func printError(_ message: String) {
    FileHandle.standardError.write(Data((message + "\n").utf8))
}
