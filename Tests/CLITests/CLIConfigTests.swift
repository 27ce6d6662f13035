#if canImport(Glibc)
import Glibc
#endif
import Foundation
import ServiceContract
import Testing

@testable import CLI

@Suite struct CLIConfigTests {
    @Test func parsesProfilesAndTheCurrentOne() throws {
        let text = """
            # comment
            ; another comment
            [settings]
            current_profile = prod

            [profile default]
            api_url = http://127.0.0.1:8080
            api_key = ck_0123456789abcdef_secret=with=equals

            [profile prod]
            api_url = https://cloud.example.com
            s3_endpoint = https://s3.example.com
            s3_access_key = AKIA
            s3_secret_key = abc#def
            """
        let (config, legacy) = try CLIConfig.parse(text)
        #expect(!legacy)
        #expect(config.currentProfile == "prod")
        #expect(config.profiles.map(\.name) == ["default", "prod"])
        #expect(config.profile("default")?.values["api_key"] == "ck_0123456789abcdef_secret=with=equals")
        #expect(config.profile("prod")?.values["s3_secret_key"] == "abc#def")
        #expect(config.profile("prod")?.values["s3_endpoint"] == "https://s3.example.com")
    }

    @Test func serializesToTextThatParsesBackTheSame() throws {
        var config = CLIConfig()
        config.set("api_key", "ck_1_2", profile: "default")
        config.set("api_url", "http://127.0.0.1:8080", profile: "default")
        config.set("zz_custom", "kept", profile: "default")
        config.set("s3_secret_key", "s", profile: "staging.eu-1")
        config.currentProfile = "staging.eu-1"
        let text = config.serialized()
        #expect(
            text == """
                # The `cloud` CLI's profiles (see docs/cli.md). Keep this file private: it holds API keys.

                [settings]
                current_profile = staging.eu-1

                [profile default]
                api_url = http://127.0.0.1:8080
                api_key = ck_1_2
                zz_custom = kept

                [profile staging.eu-1]
                s3_secret_key = s

                """)
        let (parsed, legacy) = try CLIConfig.parse(text)
        #expect(parsed == config)
        #expect(!legacy)
    }

    @Test func readsTheFormatOfEarlierVersionsAsTheDefaultProfile() throws {
        // What `cloud auth login` wrote before profiles existed.
        let old = "[default]\napi_key = ck_aaaa_bbbb\napi_url = http://127.0.0.1:8080\nemail = ada@example.com\n"
        let (config, legacy) = try CLIConfig.parse(old)
        #expect(legacy)
        #expect(config.profiles.map(\.name) == ["default"])
        #expect(config.profile("default")?.values == ["api_key": "ck_aaaa_bbbb", "api_url": "http://127.0.0.1:8080", "email": "ada@example.com"])
        #expect(config.currentProfile == nil)
        // Keys before any section (the old reader ignored headers) are the default profile too.
        let bare = try CLIConfig.parse("api_key = k\r\n")
        #expect(bare.legacy)
        #expect(bare.config.profile("default")?.values == ["api_key": "k"])
        // Written back, it is in the current format.
        #expect(try CLIConfig.parse(config.serialized()).legacy == false)
        #expect(config.serialized().contains("[profile default]\napi_url = http://127.0.0.1:8080\napi_key = ck_aaaa_bbbb\nemail = ada@example.com\n"))
    }

    @Test(arguments: [
        ("[profile default\n", 1),
        ("[profile bad/name]\n", 1),
        ("[profile ok]\nthis is not a setting\n", 2),
        ("\n\n[settings]\nBad-Key = 1\n", 4),
        ("[profile ok]\n= value\n", 2),
    ])
    func refusesTextItDoesNotUnderstandNamingTheLine(text: String, line: Int) {
        #expect(throws: CLIConfig.ParseError.self) { try CLIConfig.parse(text) }
        do {
            _ = try CLIConfig.parse(text)
        } catch {
            #expect(error.line == line)
        }
    }

    @Test func editsProfiles() {
        var config = CLIConfig()
        config.set("api_url", "http://a", profile: "a")
        config.set("api_url", "http://b", profile: "b")
        config.currentProfile = "b"
        let removed = config.unset("api_url", profile: "a")
        let removedAgain = config.unset("api_url", profile: "a")
        #expect(removed && !removedAgain)
        #expect(config.profile("a")?.values == [:])
        let deleted = config.deleteProfile("b")
        #expect(deleted)
        #expect(config.currentProfile == nil)
        let deletedAgain = config.deleteProfile("b")
        #expect(!deletedAgain)
        #expect(config.profiles.map(\.name) == ["a"])
    }

    @Test func namesAndMasks() {
        #expect(CLIConfig.isValidProfileName("prod"))
        #expect(CLIConfig.isValidProfileName("eu-1.staging_2"))
        #expect(!CLIConfig.isValidProfileName(""))
        #expect(!CLIConfig.isValidProfileName("-x"))
        #expect(!CLIConfig.isValidProfileName("a b"))
        #expect(!CLIConfig.isValidProfileName(String(repeating: "a", count: 65)))
        #expect(CLIConfig.masked("api_key", "ck_0123456789abcdef_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG") == "ck_0123456789abcdef_…")
        #expect(CLIConfig.masked("s3_secret_key", "wJalrXUtnFEMI") == "****")
        #expect(CLIConfig.masked("api_url", "http://x") == "http://x")
    }
}

@Suite struct ClientSettingsTests {
    var config: CLIConfig {
        var config = CLIConfig()
        config.set("api_url", "http://default:8080/", profile: "default")
        config.set("api_key", "key-default", profile: "default")
        config.set("api_url", "https://prod.example.com", profile: "prod")
        config.set("api_key", "key-prod", profile: "prod")
        config.set("output", "yaml", profile: "prod")
        return config
    }

    @Test func defaultsWithoutAConfigFile() {
        let settings = ClientSettings.resolve(apiURLFlag: nil, profileFlag: nil, outputFlag: nil, environment: [:], config: CLIConfig())
        #expect(settings == ClientSettings(profile: "default", apiURL: "http://127.0.0.1:8080", apiKey: nil, output: "table"))
    }

    @Test func theCurrentProfileThenTheEnvironmentThenTheFlagSelect() {
        var config = self.config
        #expect(ClientSettings.resolve(apiURLFlag: nil, profileFlag: nil, outputFlag: nil, environment: [:], config: config).apiURL == "http://default:8080")
        config.currentProfile = "prod"
        let current = ClientSettings.resolve(apiURLFlag: nil, profileFlag: nil, outputFlag: nil, environment: [:], config: config)
        #expect(current == ClientSettings(profile: "prod", apiURL: "https://prod.example.com", apiKey: "key-prod", output: "yaml"))
        let environment = ClientSettings.resolve(
            apiURLFlag: nil, profileFlag: nil, outputFlag: nil, environment: ["CLOUD_PROFILE": "default"], config: config)
        #expect(environment.profile == "default" && environment.apiKey == "key-default" && environment.output == "table")
        let flag = ClientSettings.resolve(
            apiURLFlag: nil, profileFlag: "default", outputFlag: "json", environment: ["CLOUD_PROFILE": "prod"], config: config)
        #expect(flag == ClientSettings(profile: "default", apiURL: "http://default:8080", apiKey: "key-default", output: "json"))
    }

    @Test func environmentVariablesBeatTheProfileUnlessItIsNamedOnTheCommandLine() {
        let environment = ["CLOUD_API_URL": "http://env:1", "CLOUD_API_KEY": "key-env"]
        let implicit = ClientSettings.resolve(apiURLFlag: nil, profileFlag: nil, outputFlag: nil, environment: environment, config: self.config)
        #expect(implicit.apiURL == "http://env:1" && implicit.apiKey == "key-env")
        let named = ClientSettings.resolve(apiURLFlag: nil, profileFlag: "prod", outputFlag: nil, environment: environment, config: self.config)
        #expect(named.apiURL == "https://prod.example.com" && named.apiKey == "key-prod")
        // A named profile without a URL or key falls back to the environment.
        let empty = ClientSettings.resolve(apiURLFlag: nil, profileFlag: "new", outputFlag: nil, environment: environment, config: self.config)
        #expect(empty.apiURL == "http://env:1" && empty.apiKey == "key-env")
        // --api-url always wins.
        let flag = ClientSettings.resolve(apiURLFlag: "http://flag:2/", profileFlag: "prod", outputFlag: nil, environment: environment, config: self.config)
        #expect(flag.apiURL == "http://flag:2")
    }
}

@Suite struct ConfigFileTests {
    let directory = NSTemporaryDirectory() + "cli-config-" + UUID().uuidString

    @Test func pathFollowsTheEnvironment() {
        #expect(ConfigFile.path(environment: ["CLOUD_CONFIG": "/x/y", "XDG_CONFIG_HOME": "/xdg", "HOME": "/h"]) == "/x/y")
        #expect(ConfigFile.path(environment: ["XDG_CONFIG_HOME": "/xdg", "HOME": "/h"]) == "/xdg/cloud/config")
        #expect(ConfigFile.path(environment: ["HOME": "/h"]) == "/h/.config/cloud/config")
        #expect(ConfigFile.path(environment: ["CLOUD_CONFIG": "", "HOME": "/h"]) == "/h/.config/cloud/config")
    }

    @Test func savesPrivatelyAndAtomically() throws {
        defer { try? FileManager.default.removeItem(atPath: self.directory) }
        let path = self.directory + "/cloud/config"
        var config = CLIConfig()
        config.set("api_key", "ck_secret", profile: "default")
        try ConfigFile.save(config, path: path)
        var status = stat()
        #expect(stat(path, &status) == 0 && status.st_mode & 0o777 == 0o600)
        #expect(stat(self.directory + "/cloud", &status) == 0 && status.st_mode & 0o777 == 0o700)
        #expect(try FileManager.default.contentsOfDirectory(atPath: self.directory + "/cloud") == ["config"])
        #expect(try CLIConfig.parse(String(contentsOfFile: path, encoding: .utf8)).config == config)
    }

    @Test func rewritesAFileOfAnEarlierVersionWhenReadingIt() throws {
        defer { try? FileManager.default.removeItem(atPath: self.directory) }
        try FileManager.default.createDirectory(atPath: self.directory, withIntermediateDirectories: true)
        let path = self.directory + "/config"
        try "[default]\napi_key = ck_old\napi_url = http://127.0.0.1:8080\n".write(toFile: path, atomically: false, encoding: .utf8)
        chmod(path, 0o644)
        let config = try ConfigFile.load(path: path)
        #expect(config.profile("default")?.values["api_key"] == "ck_old")
        let text = try String(contentsOfFile: path, encoding: .utf8)
        #expect(text.contains("[profile default]\napi_url = http://127.0.0.1:8080\napi_key = ck_old\n"))
        var status = stat()
        #expect(stat(path, &status) == 0 && status.st_mode & 0o777 == 0o600)
    }

    @Test func namesTheFileAndLineItCannotRead() throws {
        defer { try? FileManager.default.removeItem(atPath: self.directory) }
        try FileManager.default.createDirectory(atPath: self.directory, withIntermediateDirectories: true)
        let path = self.directory + "/config"
        try "[profile a]\napi_url http://x\n".write(toFile: path, atomically: false, encoding: .utf8)
        do {
            _ = try ConfigFile.load(path: path)
            Issue.record("a broken file was read")
        } catch let error as CLIError {
            #expect(error.description.contains(path) && error.description.contains("line 2"))
        }
    }

    @Test func aMissingFileIsAnEmptyConfig() throws {
        #expect(try ConfigFile.load(path: self.directory + "/none") == CLIConfig())
    }
}
