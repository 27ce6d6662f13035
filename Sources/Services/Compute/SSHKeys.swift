import Database
import Foundation
import Hashing
import Logging
import ServiceContract
import SQLite

/// An OpenSSH public key (`ssh-ed25519 AAAA… comment`): pure, so what is accepted is tested alone.
struct SSHPublicKey: Sendable, Equatable {
    /// `ssh-ed25519`, `ssh-rsa`, `ecdsa-sha2-nistp256`, …
    var type: String
    /// The key's wire blob (what the base64 field holds).
    var blob: [UInt8]
    var comment: String

    static let types: Set<String> = [
        "ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    ]

    /// The longest line taken (an RSA key of 16384 bits is about 2.8 KB).
    static let maximumLength = 8192

    /// Parses one line of `authorized_keys` form: the type, the base64 blob, an optional comment.
    /// The blob must decode and name the same type as the line (as `ssh-keygen -l` checks).
    static func parse(_ text: String) throws(ComputeError) -> SSHPublicKey {
        let line = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard line.utf8.count <= Self.maximumLength else { throw ComputeError.invalidSSHKey("the key is longer than \(Self.maximumLength) bytes") }
        guard !line.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
            throw ComputeError.invalidSSHKey("a public key is one line, without control characters")
        }
        let fields = line.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: true)
        guard fields.count >= 2 else { throw ComputeError.invalidSSHKey("expected 'TYPE BASE64 [COMMENT]', such as the contents of ~/.ssh/id_ed25519.pub") }
        let type = String(fields[0])
        guard Self.types.contains(type) else {
            throw ComputeError.invalidSSHKey("unknown key type '\(type)' (types: \(Self.types.sorted().joined(separator: ", ")))")
        }
        guard let data = Data(base64Encoded: String(fields[1])), data.count > 4 else { throw ComputeError.invalidSSHKey("the key's base64 does not decode") }
        let blob = [UInt8](data)
        guard let parts = Self.strings(blob), parts.first.map({ String(decoding: $0, as: UTF8.self) }) == type, parts.count == Self.fields(type),
            type != "ssh-ed25519" || parts[1].count == 32
        else { throw ComputeError.invalidSSHKey("the key's data is not a whole \(type) key") }
        return SSHPublicKey(type: type, blob: blob, comment: fields.count == 3 ? String(fields[2]) : "")
    }

    /// How many length-prefixed strings the blob of a key type holds (RFC 4253 6.6, RFC 5656 3.1,
    /// OpenSSH's PROTOCOL.u2f): its type name and its parts.
    static func fields(_ type: String) -> Int {
        switch type {
        case "ssh-ed25519": 2  // type, key
        case "sk-ecdsa-sha2-nistp256@openssh.com": 4  // type, curve, point, application
        default: 3  // rsa: type, e, n; ecdsa: type, curve, point; sk-ssh-ed25519: type, key, application
        }
    }

    /// The blob as a sequence of uint32-length-prefixed strings, nil when it is not exactly that.
    static func strings(_ blob: [UInt8]) -> [ArraySlice<UInt8>]? {
        var parts: [ArraySlice<UInt8>] = []
        var offset = 0
        while offset < blob.count {
            guard blob.count - offset >= 4 else { return nil }
            let length = Int(blob[offset]) << 24 | Int(blob[offset + 1]) << 16 | Int(blob[offset + 2]) << 8 | Int(blob[offset + 3])
            offset += 4
            guard length <= blob.count - offset else { return nil }
            parts.append(blob[offset..<(offset + length)])
            offset += length
        }
        return parts
    }

    /// `SHA256:` and the unpadded base64 of the blob's SHA-256, as `ssh-keygen -l` prints it.
    var fingerprint: String {
        var text = Data(Digests.sha256(self.blob)).base64EncodedString()
        while text.hasSuffix("=") { text.removeLast() }
        return "SHA256:" + text
    }

    /// The `authorized_keys` line.
    var line: String { ([self.type, Data(self.blob).base64EncodedString()] + (self.comment.isEmpty ? [] : [self.comment])).joined(separator: " ") }
}

/// A public key of a tenant, given to the machines created with it.
struct SSHKeyRecord: Sendable {
    var tenantID: String
    var name: String
    var key: SSHPublicKey
    var createdAt: Int64
}

extension ComputeService {
    static let sshKeysQuota = QuotaResource(rawValue: "ssh_keys")

    static let sshKeyShape = ResponseShape<SSHKeyRecord>("SSHKey") {
        $0.string("name") { $0.name }
        $0.string("type") { $0.key.type }
        $0.string("fingerprint", "SHA256:…, as ssh-keygen -l prints it.") { $0.key.fingerprint }
        $0.string("public_key", "The authorized_keys line.") { $0.key.line }
        $0.time("created_at") { $0.createdAt }
    }

    static let sshKeyList = ListShape("SSHKeyList", itemsKey: "ssh_keys", item: Self.sshKeyShape)

    var sshKeyPermissions: [PermissionSpec] {
        [
            PermissionSpec("ssh-key:read", "See SSH public keys.", grantedTo: [.developer, .viewer]),
            PermissionSpec("ssh-key:create", "Import SSH public keys.", grantedTo: [.developer]),
            PermissionSpec("ssh-key:delete", "Delete SSH public keys.", grantedTo: [.developer]),
        ]
    }

    var sshKeyQuotas: [QuotaSpec] {
        [
            QuotaSpec(Self.sshKeysQuota, defaultLimit: 100, description: "SSH public keys.") { tenantID, db in
                try await db.query("SELECT COUNT(*) FROM compute_ssh_keys WHERE tenant_id = $1", [.text(tenantID)]).first?.int(0) ?? 0
            }
        ]
    }

    var sshKeyRoutes: [Route] {
        let read = Access.permission(Permission("ssh-key:read")!)
        return [
            Route(
                method: "PUT", path: "/compute/ssh-keys/{name}", operationID: "importSSHKey",
                summary: "Import an SSH public key; machines created with it (ssh_keys) get it through their cloud-init data.",
                access: .permission(Permission("ssh-key:create")!),
                body: BodySchema([.string("public_key", maxLength: SSHPublicKey.maximumLength, "One authorized_keys line: TYPE BASE64 [COMMENT].")]),
                success: 201, response: .shape(Self.sshKeyShape.component), errors: [(409, "ssh_key_exists"), (400, "invalid_ssh_key")]
            ) { context in try await self.importSSHKey(context) },
            Route(
                method: "GET", path: "/compute/ssh-keys", operationID: "listSSHKeys", summary: "The tenant's SSH public keys by name.",
                access: read, success: 200, response: .shape(Self.sshKeyList.component), paginated: true
            ) { context in try await self.listSSHKeys(context) },
            Route(
                method: "GET", path: "/compute/ssh-keys/{name}", operationID: "getSSHKey", summary: "One SSH public key.", access: read,
                success: 200, response: .shape(Self.sshKeyShape.component)
            ) { context in
                let caller = try context.authenticated
                let name = context.parameter("name")
                let found = try await context.environment.database.transaction { db in
                    try await Self.sshKeys(db, tenantID: caller.tenantID, names: [name])
                }
                guard let key = found.first else { throw ComputeError.sshKeyNotFound(name) }
                return .json(200, Self.sshKeyShape.json(key))
            },
            Route(
                method: "DELETE", path: "/compute/ssh-keys/{name}", operationID: "deleteSSHKey",
                summary: "Delete an SSH public key (machines made with it keep it).", access: .permission(Permission("ssh-key:delete")!),
                success: 204, response: .empty
            ) { context in
                let caller = try context.authenticated
                let name = context.parameter("name")
                return try await context.transaction { db in
                    let deleted = try await db.query(
                        "DELETE FROM compute_ssh_keys WHERE tenant_id = $1 AND name = $2 RETURNING name", [.text(caller.tenantID), .text(name)])
                    guard !deleted.isEmpty else { throw ComputeError.sshKeyNotFound(name) }
                    Self.log(context, "ssh key deleted", ["tenant-id": "\(caller.tenantID)", "ssh-key": "\(name)"])
                    return .noContent
                }
            },
        ]
    }

    func importSSHKey(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let name = context.parameter("name")
        try Self.checkName(name)
        let key = try SSHPublicKey.parse(context.body.string("public_key") ?? "")
        let environment = context.environment
        let record = SSHKeyRecord(tenantID: caller.tenantID, name: name, key: key, createdAt: environment.clock.unixMilliseconds())
        return try await context.transaction { db in
            if try await db.query("SELECT 1 FROM compute_ssh_keys WHERE tenant_id = $1 AND name = $2", [.text(caller.tenantID), .text(name)]).first
                != nil
            {
                throw ComputeError.sshKeyExists(name)
            }
            try await environment.quotas.reserve(Self.sshKeysQuota, tenantID: caller.tenantID, in: db)
            try await db.query(
                "INSERT INTO compute_ssh_keys (tenant_id, name, public_key, created_at) VALUES ($1, $2, $3, $4)",
                [.text(caller.tenantID), .text(name), .text(key.line), .integer(record.createdAt)])
            Self.log(context, "ssh key imported", ["tenant-id": "\(caller.tenantID)", "ssh-key": "\(name)", "fingerprint": "\(key.fingerprint)"])
            return .json(201, Self.sshKeyShape.json(record))
        }
    }

    func listSSHKeys(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let page = try context.page()
        let rows = try await context.environment.database.query(
            """
            SELECT tenant_id, name, public_key, created_at FROM compute_ssh_keys WHERE tenant_id = $1 AND name > $2 ORDER BY name \
            LIMIT \(page.fetchLimit)
            """, [.text(caller.tenantID), .text(page.after ?? "")])
        let (items, next) = page.finish(rows.compactMap(Self.sshKey), key: \.name)
        return .json(200, Self.sshKeyList.json(items, nextToken: next))
    }

    static func sshKey(_ row: SQLRow) -> SSHKeyRecord? {
        guard let key = try? SSHPublicKey.parse(row.text(2)) else { return nil }
        return SSHKeyRecord(tenantID: row.text(0), name: row.text(1), key: key, createdAt: row.int(3))
    }

    /// The tenant's keys of these names, in the order asked; one missing is a 400 naming it.
    static func sshKeys(_ db: any SQLSession, tenantID: String, names: [String]) async throws -> [SSHKeyRecord] {
        var found: [SSHKeyRecord] = []
        for name in names {
            guard
                let row = try await db.query(
                    "SELECT tenant_id, name, public_key, created_at FROM compute_ssh_keys WHERE tenant_id = $1 AND name = $2",
                    [.text(tenantID), .text(name)]
                ).first, let key = Self.sshKey(row)
            else { throw ComputeError.sshKeyNotFound(name) }
            found.append(key)
        }
        return found
    }
}

/// The NoCloud data a machine's cloud-init reads from its seed disk (a vfat disk labelled CIDATA).
enum CloudInitSeed {
    /// `meta-data`: the instance's id and host name, and its SSH public keys. Each value is a JSON
    /// string, which YAML reads as a double-quoted scalar.
    static func metaData(instanceID: String, hostname: String, publicKeys: [String]) -> String {
        func quoted(_ text: String) -> String { JSONValue.string(text).serialized() }
        var lines = ["instance-id: \(quoted(instanceID))", "local-hostname: \(quoted(hostname))"]
        if !publicKeys.isEmpty {
            lines.append("public-keys:")
            lines += publicKeys.map { "  - \(quoted($0))" }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// The largest user data an instance takes (16 KiB, as EC2).
    static let maximumUserDataBytes = 16_384
}
