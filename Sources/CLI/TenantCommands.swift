import ArgumentParser
import ControlPlane
import ServiceContract
import Foundation

extension Auth {
    struct ForgotPassword: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "forgot-password",
            abstract: "Ask for a password-reset token by mail (valid 30 minutes, once).",
            discussion: "The answer is the same whether or not the email is registered. `cloud dev` writes the mail to <data-dir>/outbox/.")
        @Option(help: "The account's email.") var email: String
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            let answer = try await self.client.call(
                "POST", "/auth/forgot-password", body: .object([("email", .string(self.email))]), authenticated: false)
            self.client.emit(answer) {
                print("If \(self.email) is registered, a reset token is on its way. Then: cloud auth reset-password --token TOKEN")
            }
        }
    }

    struct ResetPassword: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "reset-password",
            abstract: "Set a new password with the token from the reset mail; all your API keys are revoked.")
        @Option(help: "The token from the mail (crt_…).") var token: String
        @Flag(help: "Read the new password from the first line of stdin.") var passwordStdin = false
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            let password = try readPassword(fromStdin: self.passwordStdin, confirm: true)
            let answer = try await self.client.call(
                "POST", "/auth/reset-password", body: .object([("token", .string(self.token)), ("password", .string(password))]),
                authenticated: false)
            self.client.emit(answer) {
                print("Password reset for \(APIClientOptions.text(answer?["user"]?["email"])); \(APIClientOptions.text(answer?["revoked_keys"])) API keys revoked. Log in again with `cloud auth login`.")
            }
        }
    }
}

/// `cloud tenants`: projects, their members and quotas.
struct Tenants: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Tenants (projects) you belong to: create, switch, members, quotas.",
        discussion: "A key acts in one tenant; `switch` makes a key for another one and saves it in the profile.",
        subcommands: [List.self, Create.self, Switch.self, Members.self, AddMember.self, RemoveMember.self, Quotas.self, SetQuotas.self],
        defaultSubcommand: List.self)

    static let columns = [("ID", "id"), ("NAME", "name"), ("PERSONAL", "personal"), ("ROLES", "roles"), ("CURRENT", "current"), ("CREATED", "created_at")]

    /// The tenant of the calling key.
    static func current(_ client: APIClientOptions) async throws -> String {
        let me = try await client.call("GET", "/auth/me")
        guard case .string(let id) = me?["tenant"]?["id"] else { throw CLIError("the control plane did not say which tenant your key acts in") }
        return id
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Your tenants; CURRENT marks the one your key acts in.")
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            let answer = try await self.client.call("GET", "/tenants")
            self.client.show(answer, rows: { if case .array(let items) = $0["tenants"] { items } else { [] } }, columns: Tenants.columns)
        }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a tenant; you become its admin (switch to it to use it).")
        @Argument(help: "A name for it.") var name: String
        @Flag(help: "Switch to the new tenant (a new key for it in the profile).") var `switch` = false
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            let answer = try await self.client.call("POST", "/tenants", body: .object([("name", .string(self.name))]))
            guard case .string(let id) = answer?["id"] else { throw CLIError("the control plane returned no tenant id") }
            if self.switch {
                let saved = try await Switch.switchTo(id, client: self.client, keepPrevious: false)
                self.client.emit(answer) { print("Tenant \(id) (\(self.name)) created; the profile \"\(saved)\" now uses it.") }
            } else {
                self.client.emit(answer) { print("Tenant \(id) (\(self.name)) created. Use it with `cloud tenants switch \(id)`.") }
            }
        }
    }

    struct Switch: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Act in another of your tenants: make a key for it and save it in the profile.",
            discussion: "The profile's previous key is revoked unless --keep-previous (it was the profile's own).")
        @Argument(help: "The tenant id (see `cloud tenants list`).") var tenant: String
        @Flag(help: "Keep the profile's previous key working.") var keepPrevious = false
        @OptionGroup var client: APIClientOptions

        /// Makes a key in `tenant`, saves it in the profile, revokes the old one unless asked not to.
        /// - Returns: The profile's name.
        static func switchTo(_ tenant: String, client: APIClientOptions, keepPrevious: Bool) async throws -> String {
            let oldKey = try client.apiKey()
            let answer = try await client.call("POST", "/auth/keys", body: .object([("name", .string("cli")), ("tenant_id", .string(tenant))]))
            guard case .string(let key) = answer?["api_key"] else { throw CLIError("the control plane returned no key") }
            let settings = try client.settings()
            var config = try ClientConfig.loadChecked(profile: settings.profile)
            let profileHeldOldKey = config.values["api_key"] == oldKey
            config.values["api_key"] = key
            config.values["api_url"] = settings.apiURL
            config.values["tenant_id"] = tenant
            try config.save()
            if !keepPrevious, profileHeldOldKey, let oldID = APIKey.id(of: oldKey) {
                // The profile now holds the new key, which the call uses.
                _ = try? await client.call("DELETE", "/auth/keys/\(oldID)")
            }
            return config.profile
        }

        func run() async throws {
            let profile = try await Self.switchTo(self.tenant, client: self.client, keepPrevious: self.keepPrevious)
            self.client.emit(.object([("profile", .string(profile)), ("tenant_id", .string(self.tenant))])) {
                print("The profile \"\(profile)\" now acts in tenant \(self.tenant).")
            }
        }
    }

    struct Members: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Members of the current tenant and their roles.")
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            let tenant = try await Tenants.current(self.client)
            let answer = try await self.client.call("GET", "/tenants/\(tenant)/members")
            self.client.show(
                answer, rows: { if case .array(let items) = $0["members"] { items } else { [] } },
                columns: [("USER ID", "user_id"), ("EMAIL", "email"), ("NAME", "name"), ("ROLES", "roles"), ("JOINED", "joined_at")])
        }
    }

    struct AddMember: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "add-member", abstract: "Add a registered user to the current tenant with roles.")
        @Argument(help: "The user's email.") var email: String
        @Option(help: "Comma-separated role names.") var roles: String = "viewer"
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            let tenant = try await Tenants.current(self.client)
            let roles = self.roles.split(separator: ",").map { JSONValue.string($0.trimmingCharacters(in: .whitespaces)) }
            let answer = try await self.client.call(
                "POST", "/tenants/\(tenant)/members", body: .object([("email", .string(self.email)), ("roles", .array(roles))]))
            self.client.emit(answer) { print("\(self.email) is a member of \(tenant) with \(APIClientOptions.text(answer?["roles"])).") }
        }
    }

    struct RemoveMember: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "remove-member", abstract: "Remove a member from the current tenant (their keys there are revoked).")
        @Argument(help: "The member's email or user id.") var member: String
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            let tenant = try await Tenants.current(self.client)
            var userID = self.member
            if self.member.contains("@") {
                let answer = try await self.client.call("GET", "/tenants/\(tenant)/members")
                guard case .array(let items) = answer?["members"],
                    let found = items.first(where: { $0["email"] == .string(self.member.lowercased()) }), case .string(let id) = found["user_id"]
                else { throw CLIError("\(self.member) is not a member of \(tenant)") }
                userID = id
            }
            try await self.client.call("DELETE", "/tenants/\(tenant)/members/\(userID)")
            self.client.emit(nil) { print("Removed \(self.member) from \(tenant).") }
        }
    }

    struct Quotas: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The current tenant's quotas and usage.")
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            let tenant = try await Tenants.current(self.client)
            let answer = try await self.client.call("GET", "/tenants/\(tenant)/quotas")
            self.client.show(
                answer, rows: { if case .array(let items) = $0["quotas"] { items } else { [] } },
                columns: [("RESOURCE", "resource"), ("LIMIT", "limit"), ("USED", "used"), ("DEFAULT", "default")])
        }
    }

    struct SetQuotas: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set-quotas", abstract: "Set a tenant's quotas (platform operators: cloud server --platform-admin EMAIL).")
        @Argument(help: "The tenant id.") var tenant: String
        @Option(name: .customLong("set"), help: "RESOURCE=LIMIT (api_keys, members, buckets, storage_bytes, secrets); repeat for several.")
        var limits: [String]
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            var body: [(String, JSONValue)] = []
            for item in self.limits {
                let parts = item.split(separator: "=", maxSplits: 1).map(String.init)
                guard parts.count == 2, let limit = Int64(parts[1]) else { throw ValidationError("--set '\(item)' is not RESOURCE=LIMIT") }
                body.append(("max_" + parts[0], .int(limit)))
            }
            let answer = try await self.client.call("PUT", "/admin/tenants/\(self.tenant)/quotas", body: .object(body))
            self.client.show(
                answer, rows: { if case .array(let items) = $0["quotas"] { items } else { [] } },
                columns: [("RESOURCE", "resource"), ("LIMIT", "limit"), ("USED", "used"), ("DEFAULT", "default")])
        }
    }
}
