import ArgumentParser
import ControlPlane
import ServiceContract
import Storage
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// `cloud completion SHELL`: the shell completion script ArgumentParser generates.
struct Completion: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the shell completion script for bash, zsh or fish.",
        discussion: """
            bash:  cloud completion bash > ~/.local/share/bash-completion/completions/cloud
            zsh:   cloud completion zsh > "${fpath[1]}/_cloud"   (or any directory in $fpath, then restart zsh)
            fish:  cloud completion fish > ~/.config/fish/completions/cloud.fish
            Profile names (--profile, `cloud config use`) complete from the config file.
            """)

    @Argument(help: "bash, zsh or fish.", completion: .list(CompletionShell.allCases.map(\.rawValue)))
    var shell: String

    func validate() throws {
        guard CompletionShell(rawValue: self.shell) != nil else { throw ValidationError("the shell must be bash, zsh or fish") }
    }

    func run() throws {
        print(Cloud.completionScript(for: CompletionShell(rawValue: self.shell)!))
    }
}

/// `cloud openapi`: the control plane's OpenAPI document, or the API reference made from it.
struct OpenAPICommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "openapi",
        abstract: "Print the control plane's OpenAPI document, or the Markdown API reference (docs/api.md) made from it.",
        discussion: """
            Without --api-url the document comes from this binary's route table (no server needed). \
            docs/api.md is regenerated with `make api-docs` (that is, `cloud openapi --markdown > docs/api.md`).
            """)

    @Flag(help: "Print the Markdown API reference instead of the JSON document.")
    var markdown = false

    @Option(help: "Fetch the document from a running control plane (GET URL/openapi.json) instead.")
    var apiUrl: String?

    func run() async throws {
        var document = try ControlAPI.openAPIDocument(services: HostedServices.described)
        if let base = self.apiUrl {
            var trimmed = base
            while trimmed.hasSuffix("/") { trimmed.removeLast() }
            guard APIClientOptions.isHTTPURL(trimmed), let url = URL(string: trimmed + "/openapi.json") else {
                throw ValidationError("--api-url must be an http:// or https:// URL such as http://127.0.0.1:8080")
            }
            let data: Data
            do {
                (data, _) = try await URLSession.shared.data(from: url)
            } catch {
                throw CLIError(APIErrorAdvice.unreachable(trimmed, reason: APIErrorAdvice.reason(error)))
            }
            guard let fetched = OrderedJSON.parse(Array(data)) else { throw CLIError("\(url) did not answer with JSON") }
            document = fetched
        }
        print(self.markdown ? APIReference.markdown(document) : document.prettyPrinted() + "\n", terminator: "")
    }
}
