import ArgumentParser
import ServiceContract
import Foundation
import Synchronization
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A failure of a client command, printed as `Error: <description>` (without the usage text that
/// ArgumentParser adds to validation errors: the arguments were fine). The exit status is 1.
struct CLIError: Error, CustomStringConvertible {
    var description: String
    /// The HTTP status when the API answered with an error (nil: no answer, or not the API's).
    var status: Int?

    init(_ description: String, status: Int? = nil) {
        self.description = description
        self.status = status
    }
}

/// `--profile`: which profile of the config file a command uses.
struct ProfileOption: ParsableArguments {
    @Option(
        help: "The profile of the config file to use (default: $CLOUD_PROFILE, the current profile, or \"default\").",
        completion: .custom { _, _, _ in ProfileOption.names() })
    var profile: String?

    mutating func validate() throws {
        if let profile = self.profile, !CLIConfig.isValidProfileName(profile) {
            throw ValidationError("--profile must be a name of letters, digits, '.', '-' and '_'")
        }
        ConfigFile.selectedProfile.withLock { $0 = self.profile }
    }

    /// The profiles of the config file, for shell completion.
    static func names() -> [String] { (try? ConfigFile.load())?.profiles.map(\.name) ?? [] }
}

/// The options every command that calls the control plane takes: `--api-url`, `--profile`,
/// `-o/--output`; and the call itself, with errors turned into advice.
struct APIClientOptions: ParsableArguments {
    @Option(help: "Control-plane URL (default: $CLOUD_API_URL, the profile's api_url, or http://127.0.0.1:8080).")
    var apiUrl: String?

    @OptionGroup var profileOption: ProfileOption

    @Option(
        name: [.customShort("o"), .customLong("output")],
        help: "Output format: table, json or yaml (default: the profile's output, else table).",
        completion: .list(OutputFormat.names))
    var outputFlag: String?

    mutating func validate() throws {
        if let output = self.outputFlag, OutputFormat(rawValue: output) == nil {
            throw ValidationError("--output must be table, json or yaml")
        }
        if let url = self.apiUrl, !Self.isHTTPURL(url) {
            throw ValidationError("--api-url must be an http:// or https:// URL such as http://127.0.0.1:8080")
        }
    }

    static func isHTTPURL(_ text: String) -> Bool {
        guard let url = URL(string: text), let scheme = url.scheme?.lowercased(), url.host != nil else { return false }
        return scheme == "http" || scheme == "https"
    }

    /// The profile, URL, key and output format this command uses.
    func settings() throws -> ClientSettings {
        let config = try ConfigFile.load()
        return ClientSettings.resolve(
            apiURLFlag: self.apiUrl, profileFlag: self.profileOption.profile, outputFlag: self.outputFlag,
            environment: ProcessInfo.processInfo.environment, config: config)
    }

    var baseURL: String { (try? self.settings())?.apiURL ?? ClientSettings.defaultAPIURL }

    /// The output format's name (`table`, `json` or `yaml`).
    var output: String { self.format.rawValue }

    var format: OutputFormat {
        guard let settings = try? self.settings() else { return .table }
        return OutputFormat(rawValue: settings.output) ?? .table
    }

    /// The key from `$CLOUD_API_KEY` or the profile.
    func apiKey() throws -> String {
        let settings = try self.settings()
        if let key = settings.apiKey { return key }
        throw CLIError(
            "not logged in (the profile \"\(settings.profile)\" has no API key): run `cloud auth login --email you@example.com`"
                + (self.profileOption.profile == nil ? "" : " --profile \(settings.profile)") + ", or set CLOUD_API_KEY")
    }

    /// A request body that is not JSON (an image's tar).
    struct Upload {
        var data: Data
        var contentType: String
    }

    /// Sends a request; returns the parsed JSON answer (nil for 204). Failures become messages that
    /// say what failed and what to do. `upload` sends raw bytes instead of `body`, with a longer timeout.
    @discardableResult
    func call(
        _ method: String, _ path: String, body: JSONValue? = nil, upload: Upload? = nil, authenticated: Bool = true,
        headers: [(String, String)] = []
    ) async throws -> JSONValue? {
        let settings = try self.settings()
        if OutputFormat(rawValue: settings.output) == nil {
            throw CLIError("the profile \"\(settings.profile)\" has output = \(settings.output); use table, json or yaml (`cloud config set output table`)")
        }
        guard Self.isHTTPURL(settings.apiURL), let url = URL(string: settings.apiURL + path) else {
            throw CLIError("the API URL \"\(settings.apiURL)\" is not an http:// or https:// URL: fix it with --api-url, $CLOUD_API_URL or `cloud config set api_url URL`")
        }
        var request = URLRequest(url: url)
        request.httpMethod = method
        request.timeoutInterval = 30
        if authenticated { request.setValue(try self.apiKey(), forHTTPHeaderField: "X-API-Key") }
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        if let body {
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
            request.httpBody = Data(body.serialized().utf8)
        } else if let upload {
            request.setValue(upload.contentType, forHTTPHeaderField: "Content-Type")
            request.httpBody = upload.data
            request.timeoutInterval = 600
        }
        let data: Data
        let response: URLResponse
        do {
            (data, response) = try await URLSession.shared.data(for: request)
        } catch {
            throw CLIError(APIErrorAdvice.unreachable(settings.apiURL, reason: APIErrorAdvice.reason(error)))
        }
        let http = response as? HTTPURLResponse
        let status = http?.statusCode ?? 0
        let json = data.isEmpty ? nil : OrderedJSON.parse(Array(data))
        guard (200..<300).contains(status) else {
            let code: String? = if case .string(let code) = json?["error"]?["code"] { code } else { nil }
            let message: String? = if case .string(let message) = json?["error"]?["message"] { message } else { nil }
            throw CLIError(
                APIErrorAdvice.message(
                    status: status, code: code, message: message, retryAfter: http?.value(forHTTPHeaderField: "Retry-After"),
                    requestID: http?.value(forHTTPHeaderField: "X-Request-Id"), apiURL: settings.apiURL, profile: settings.profile,
                    authenticated: authenticated), status: status)
        }
        if !data.isEmpty && json == nil {
            throw CLIError("\(settings.apiURL) answered \(method) \(path) with something that is not JSON: is --api-url the control plane's address (not the S3 one)?")
        }
        return json
    }

    /// Prints `value` as JSON or YAML, or as a table of `columns` (header, key) taken from the
    /// objects in `rows`.
    func show(_ value: JSONValue?, rows: (JSONValue) -> [JSONValue], columns: [(String, String)]) {
        guard let value else { return }
        self.emit(value) {
            let table = rows(value).map { row in columns.map { TextTable.cell(row[$0.1]) } }
            print(TextTable.render(columns.map(\.0), table), terminator: "")
        }
    }

    /// Prints `value` as JSON or YAML, or runs `table` for the table format.
    func emit(_ value: JSONValue?, table: () -> Void) {
        if let text = self.format.render(value ?? .null) {
            if value != nil { print(text, terminator: "") }
        } else {
            table()
        }
    }

    /// A table cell for a JSON value.
    static func text(_ value: JSONValue?) -> String { TextTable.cell(value) }
}

/// Turns a failed API call into a message saying what failed and what to do.
enum APIErrorAdvice {
    /// The API could not be reached.
    static func unreachable(_ apiURL: String, reason: String) -> String {
        "cannot reach \(apiURL): \(reason) — is `cloud dev` (or the control plane) running there? "
            + "Set the URL with --api-url, $CLOUD_API_URL or `cloud config set api_url URL`"
    }

    /// A short reason for a transport error.
    static func reason(_ error: any Error) -> String {
        guard let error = error as? URLError else { return error.localizedDescription }
        switch error.code {
        case .cannotConnectToHost: return "connection refused"
        case .timedOut: return "no answer within 30 seconds"
        case .cannotFindHost, .dnsLookupFailed: return "unknown host"
        case .networkConnectionLost: return "the connection was closed"
        case .notConnectedToInternet: return "no network"
        case .secureConnectionFailed, .serverCertificateUntrusted, .serverCertificateHasBadDate, .serverCertificateNotYetValid,
            .serverCertificateHasUnknownRoot:
            return "the TLS handshake failed (\(error.localizedDescription))"
        case .badServerResponse: return "the answer was not HTTP"
        default: return "\(error.localizedDescription) (URL error \(error.code.rawValue))"
        }
    }

    /// The message for an error answer of the API.
    /// - Parameters:
    ///   - code: The `error.code` of the body, nil when the body was not the API's error JSON.
    ///   - retryAfter: The `Retry-After` header (seconds).
    ///   - authenticated: Whether the request carried an API key (a 401 then means the key).
    static func message(
        status: Int, code: String?, message: String?, retryAfter: String?, requestID: String?, apiURL: String, profile: String,
        authenticated: Bool
    ) -> String {
        guard let code, let message else {
            return "\(apiURL) answered \(status) with something that is not the control plane's error JSON: is --api-url the API's address (not the S3 one)?"
        }
        let tag = "[\(status) \(code)]"
        switch status {
        case 401 where authenticated:
            return "your API key was refused (revoked, expired or unknown) \(tag): run `cloud auth login --email you@example.com`"
                + (profile == CLIConfig.defaultProfile ? "" : " --profile \(profile)") + " for a new one"
        case 401:
            return "\(message) \(tag)"
        case 403:
            if let permission = Self.permission(in: message) {
                return "permission denied: this needs \(permission), which your roles in this tenant do not grant \(tag); "
                    + "ask an admin of the tenant for a role with it (`cloud roles bind YOUR_EMAIL ROLE`), or check `cloud auth me`"
            }
            return "permission denied: \(message) \(tag)"
        case 404 where message.hasPrefix("no route"):
            return "\(message) \(tag): the server at \(apiURL) does not have this API; is it older than this CLI, or is --api-url wrong?"
        case 404:
            return "not found: \(message) \(tag)"
        case 429:
            if message.contains("try again") { return "\(message) \(tag)" }
            let wait = retryAfter.flatMap { Int($0) }.map { "try again in \(Self.duration($0))" } ?? "try again later"
            return "\(message) \(tag); \(wait)"
        case 500...:
            return "the control plane failed: \(message) \(tag)" + (requestID.map { "; request id \($0) (for its logs)" } ?? "")
        default:
            return "\(message) \(tag)"
        }
    }

    /// The permission named in a 403 message: "this needs the permission role:create, which …".
    static func permission(in message: String) -> String? {
        guard let range = message.range(of: "the permission ") else { return nil }
        let rest = message[range.upperBound...]
        let name = rest.prefix { !$0.isWhitespace && $0 != "," }
        return name.isEmpty ? nil : String(name)
    }

    static func duration(_ seconds: Int) -> String {
        if seconds < 120 { return "\(seconds) seconds" }
        return "\((seconds + 59) / 60) minutes"
    }
}
