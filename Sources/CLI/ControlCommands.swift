#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import ControlPlane
import ServiceContract
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Reads a password: one line of stdin with `--password-stdin`, else from the terminal without echo.
func readPassword(fromStdin: Bool, confirm: Bool) throws -> String {
    if fromStdin {
        guard let line = readLine(strippingNewline: true), !line.isEmpty else { throw CLIError("no password on stdin") }
        return line
    }
    guard isatty(0) == 1 else { throw CLIError("stdin is not a terminal: pass the password with --password-stdin") }
    guard let first = getpass("Password: ") else { throw CLIError("cannot read the password") }
    let password = String(cString: first)
    if confirm {
        guard let second = getpass("Repeat the password: "), String(cString: second) == password else {
            throw CLIError("the passwords differ")
        }
    }
    return password
}

/// `cloud auth`: accounts and API keys.
struct Auth: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Register, log in, and manage your API keys.",
        subcommands: [Register.self, Login.self, Me.self, Keys.self, ForgotPassword.self, ResetPassword.self])

    struct Register: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create an account (with a personal tenant where you are admin).")
        @Option(help: "Your email; it is your login.") var email: String
        @Option(help: "Your name.") var name: String
        @Flag(help: "Read the password from the first line of stdin.") var passwordStdin = false
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            let password = try readPassword(fromStdin: self.passwordStdin, confirm: true)
            let answer = try await self.client.call(
                "POST", "/auth/register",
                body: .object([("email", .string(self.email)), ("name", .string(self.name)), ("password", .string(password))]),
                authenticated: false)
            self.client.emit(answer) {
                print("Registered \(APIClientOptions.text(answer?["user"]?["email"])) (tenant \(APIClientOptions.text(answer?["tenant"]?["id"]))). Log in with `cloud auth login --email \(self.email)`.")
            }
        }
    }

    struct Login: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Log in and store a new API key in the profile (config file mode 0600).",
            discussion: """
                The key, the API URL and your email go into the profile chosen by --profile, $CLOUD_PROFILE or \
                the current profile (else "default"), in $CLOUD_CONFIG, $XDG_CONFIG_HOME/cloud/config or \
                ~/.config/cloud/config.
                """)
        @Option(help: "Your email.") var email: String
        @Option(help: "The tenant the key acts in (default: your personal tenant).") var tenant: String?
        @Flag(help: "Read the password from the first line of stdin.") var passwordStdin = false
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            let password = try readPassword(fromStdin: self.passwordStdin, confirm: false)
            var body: [(String, JSONValue)] = [("email", .string(self.email)), ("password", .string(password)), ("key_name", .string("cli"))]
            if let tenant = self.tenant { body.append(("tenant_id", .string(tenant))) }
            let answer = try await self.client.call("POST", "/auth/login", body: .object(body), authenticated: false)
            guard case .string(let key) = answer?["api_key"] else { throw CLIError("the control plane returned no key") }
            let settings = try self.client.settings()
            var config = try ClientConfig.loadChecked(profile: settings.profile)
            config.values["api_key"] = key
            config.values["api_url"] = settings.apiURL
            config.values["email"] = self.email.lowercased()
            if case .string(let tenant) = answer?["tenant"]?["id"] { config.values["tenant_id"] = tenant }
            try config.save()
            // The key is in the file; the output shows everything else.
            var shown: [(String, JSONValue)] = [("profile", .string(config.profile)), ("config", .string(ClientConfig.path))]
            if case .object(let members) = answer { shown += members.filter { $0.0 != "api_key" } }
            self.client.emit(.object(shown)) {
                print("Logged in as \(self.email.lowercased()) in tenant \(APIClientOptions.text(answer?["tenant"]?["id"])); key \(APIClientOptions.text(answer?["key"]?["prefix"])) saved in the profile \"\(config.profile)\" of \(ClientConfig.path).")
            }
        }
    }

    struct Me: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Who you are, the tenant of your key, your roles and permissions there.")
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            let answer = try await self.client.call("GET", "/auth/me")
            guard self.client.format == .table else {
                self.client.emit(answer) {}
                return
            }
            print("user:        \(APIClientOptions.text(answer?["user"]?["email"])) (\(APIClientOptions.text(answer?["user"]?["name"])), \(APIClientOptions.text(answer?["user"]?["id"])))")
            print("tenant:      \(APIClientOptions.text(answer?["tenant"]?["id"])) \(APIClientOptions.text(answer?["tenant"]?["name"]))")
            print("roles:       \(APIClientOptions.text(answer?["roles"]))")
            print("permissions: \(APIClientOptions.text(answer?["permissions"]))")
            print("key:         \(APIClientOptions.text(answer?["key"]?["prefix"]))")
        }
    }

    struct Keys: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Your API keys.", subcommands: [List.self, Create.self, Rotate.self, Regenerate.self, Delete.self],
            defaultSubcommand: List.self)

        static let columns = [("ID", "id"), ("NAME", "name"), ("TENANT", "tenant_id"), ("CREATED", "created_at"), ("EXPIRES", "expires_at"), ("CURRENT", "current")]

        static func showNew(_ answer: JSONValue?, client: APIClientOptions, saved: Bool) {
            guard client.format == .table else {
                client.emit(answer) {}
                return
            }
            print("New key \(APIClientOptions.text(answer?["key"]?["id"])) (shown this once):")
            print("  \(APIClientOptions.text(answer?["api_key"]))")
            if let previous = answer?["previous"] {
                if case .string(let revoked) = previous["revoked_at"] {
                    print("The old key \(APIClientOptions.text(previous["id"])) stopped working at \(revoked).")
                } else {
                    print("The old key \(APIClientOptions.text(previous["id"])) works until \(APIClientOptions.text(previous["expires_at"])).")
                }
            }
            if saved { print("It replaces the old key in the profile \"\(ClientConfig.load().profile)\" of \(ClientConfig.path).") }
        }

        /// Saves the new key when it replaced the one in the config file.
        static func saveIfCurrent(_ answer: JSONValue?, oldID: String) throws -> Bool {
            var config = try ClientConfig.loadChecked()
            guard let current = config.values["api_key"], APIKey.id(of: current) == oldID, case .string(let key) = answer?["api_key"] else {
                return false
            }
            config.values["api_key"] = key
            try config.save()
            return true
        }

        struct List: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Keys that are neither revoked nor expired.")
            @OptionGroup var client: APIClientOptions

            func run() async throws {
                let answer = try await self.client.call("GET", "/auth/keys")
                self.client.show(answer, rows: { if case .array(let items) = $0["keys"] { items } else { [] } }, columns: Keys.columns)
            }
        }

        struct Create: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Create a key in the tenant of your current key.")
            @Option(help: "A name to recognise it by.") var name: String = "api key"
            @Option(help: "Lifetime in seconds (default: unlimited).") var expiresIn: Int?
            @OptionGroup var client: APIClientOptions

            func run() async throws {
                var body: [(String, JSONValue)] = [("name", .string(self.name))]
                if let expiresIn = self.expiresIn { body.append(("expires_in_seconds", .int(Int64(expiresIn)))) }
                let answer = try await self.client.call("POST", "/auth/keys", body: .object(body))
                Keys.showNew(answer, client: self.client, saved: false)
            }
        }

        struct Rotate: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Replace a key; the old one keeps working for a grace period.")
            @Argument(help: "The key id.") var id: String
            @Option(help: "Seconds the old key keeps working (default 86400).") var grace: Int?
            @OptionGroup var client: APIClientOptions

            func run() async throws {
                var body: [(String, JSONValue)] = []
                if let grace = self.grace { body.append(("grace_seconds", .int(Int64(grace)))) }
                let answer = try await self.client.call("POST", "/auth/keys/\(self.id)/rotate", body: .object(body))
                Keys.showNew(answer, client: self.client, saved: try Keys.saveIfCurrent(answer, oldID: self.id))
            }
        }

        struct Regenerate: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Replace a key; the old one stops working now.")
            @Argument(help: "The key id.") var id: String
            @OptionGroup var client: APIClientOptions

            func run() async throws {
                let answer = try await self.client.call("POST", "/auth/keys/\(self.id)/regenerate")
                Keys.showNew(answer, client: self.client, saved: try Keys.saveIfCurrent(answer, oldID: self.id))
            }
        }

        struct Delete: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Revoke a key now.")
            @Argument(help: "The key id.") var id: String
            @OptionGroup var client: APIClientOptions

            func run() async throws {
                try await self.client.call("DELETE", "/auth/keys/\(self.id)")
                self.client.emit(nil) { print("Key \(self.id) revoked.") }
            }
        }
    }
}

/// `cloud roles`: RBAC in the tenant of your key.
struct Roles: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Roles and role bindings in the tenant of your API key.",
        subcommands: [List.self, Create.self, Delete.self, Bind.self, Unbind.self, ListBindings.self],
        defaultSubcommand: List.self)

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Built-in and tenant roles.")
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            let answer = try await self.client.call("GET", "/rbac/roles")
            self.client.show(
                answer, rows: { if case .array(let items) = $0["roles"] { items } else { [] } },
                columns: [("NAME", "name"), ("BUILTIN", "builtin"), ("PERMISSIONS", "permissions"), ("DESCRIPTION", "description")])
        }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a role.")
        @Argument(help: "The role's name.") var name: String
        @Option(help: "Comma-separated resource:action patterns, e.g. \"instance:read,bucket:*\".") var permissions: String
        @Option(help: "What the role is for.") var description: String?
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            let list = self.permissions.split(separator: ",").map { JSONValue.string($0.trimmingCharacters(in: .whitespaces)) }
            var body: [(String, JSONValue)] = [("name", .string(self.name)), ("permissions", .array(list))]
            if let description = self.description { body.append(("description", .string(description))) }
            let answer = try await self.client.call("POST", "/rbac/roles", body: .object(body))
            self.client.emit(answer) { print("Role \(self.name) created.") }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a role no binding uses.")
        @Argument(help: "The role's name.") var name: String
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            try await self.client.call("DELETE", "/rbac/roles/\(self.name)")
            self.client.emit(nil) { print("Role \(self.name) deleted.") }
        }
    }

    struct Bind: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Give a user a role in this tenant.")
        @Argument(help: "The user's email.") var user: String
        @Argument(help: "The role's name.") var role: String
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            let answer = try await self.client.call("POST", "/rbac/bindings", body: .object([("user", .string(self.user)), ("role", .string(self.role))]))
            self.client.emit(answer) {
                print("Bound \(self.user) to \(self.role) (binding \(APIClientOptions.text(answer?["id"]))).")
            }
        }
    }

    struct Unbind: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Take a role from a user in this tenant.")
        @Argument(help: "The user's email.") var user: String
        @Argument(help: "The role's name.") var role: String
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            let answer = try await self.client.call("GET", "/rbac/bindings")
            guard case .array(let items) = answer?["bindings"],
                let binding = items.first(where: { $0["user"] == .string(self.user.lowercased()) && $0["role"] == .string(self.role) }),
                case .string(let id) = binding["id"]
            else { throw CLIError("\(self.user) does not have the role \(self.role) in this tenant") }
            try await self.client.call("DELETE", "/rbac/bindings/\(id)")
            self.client.emit(nil) { print("Unbound \(self.user) from \(self.role).") }
        }
    }

    struct ListBindings: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list-bindings", abstract: "Who has which role in this tenant.")
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            let answer = try await self.client.call("GET", "/rbac/bindings")
            self.client.show(
                answer, rows: { if case .array(let items) = $0["bindings"] { items } else { [] } },
                columns: [("ID", "id"), ("USER", "user"), ("ROLE", "role"), ("CREATED", "created_at")])
        }
    }
}
