public import Database
import Foundation
import Hashing
import Logging
public import ServiceContract
import SQLite

/// Secrets: named values a tenant keeps encrypted, with versions, a recovery window on delete, and
/// reading a value as a permission of its own (`secret:read-value`).
///
/// Envelope encryption: the deployment's master key (``MasterKey``) wraps one data key per tenant
/// (`secrets_data_keys`); each value is sealed with AES-256-GCM under its tenant's data key, with the
/// tenant, the secret's name and the version number as associated data, so a sealed value moved to
/// another row does not open. Values never appear in logs, errors or list answers. Rotating the
/// master key re-wraps the data keys and touches no value (``rotateMasterKey(database:from:to:)``).
public struct SecretsService: CloudService {
    /// The master key; nil answers the routes with 503 `secrets_unavailable` (a described service).
    let masterKey: MasterKey?

    /// - Parameter masterKey: The deployment's master key (``MasterKey/load(environmentValue:file:)``).
    public init(masterKey: MasterKey?) { self.masterKey = masterKey }

    /// The largest value, in bytes of UTF-8 (64 KiB).
    public static let maximumValueBytes = 64 * 1024
    /// Days a deleted secret can be restored, when the request does not say (7; 1 to 30).
    public static let defaultRecoveryDays: Int64 = 7

    public var name: String { "secrets" }
    public var summary: String { "Encrypted named values with versions, a recovery window on delete, and a permission to read values." }

    public var permissions: [PermissionSpec] {
        [
            PermissionSpec("secret:read", "See secrets' names, descriptions and versions (never values).", grantedTo: [.developer, .viewer]),
            PermissionSpec("secret:read-value", "Read secrets' values.", grantedTo: [.developer]),
            PermissionSpec("secret:create", "Create secrets.", grantedTo: [.developer]),
            PermissionSpec("secret:update", "Add values to secrets and change their descriptions.", grantedTo: [.developer]),
            PermissionSpec("secret:delete", "Delete secrets (with a recovery window) and restore them.", grantedTo: [.developer]),
        ]
    }

    public var migrations: [Migration] { SecretsSchema.migrations }

    public var quotas: [QuotaSpec] {
        [
            QuotaSpec(Self.quota, defaultLimit: 1000, description: "Secrets, including those waiting out their recovery window.") {
                tenantID, db in
                try await db.query("SELECT COUNT(*) FROM secrets_secrets WHERE tenant_id = $1", [.text(tenantID)]).first?.int(0) ?? 0
            }
        ]
    }

    static let quota = QuotaResource(rawValue: "secrets")
    static let purgeKind = "secrets.purge-deleted"

    public var tasks: [TaskHandler] {
        [
            TaskHandler(kind: Self.purgeKind) { context in
                let now = context.queue.now()
                let purged = try await context.fenced { db -> Int in
                    try await db.query(
                        """
                        DELETE FROM secrets_versions WHERE (tenant_id, name) IN
                        (SELECT tenant_id, name FROM secrets_secrets WHERE purge_at IS NOT NULL AND purge_at <= $1)
                        """, [.integer(now)])
                    return try await db.query(
                        "DELETE FROM secrets_secrets WHERE purge_at IS NOT NULL AND purge_at <= $1 RETURNING name", [.integer(now)]
                    ).count
                }
                return TaskCompletion(result: .object([("purged", .int(Int64(purged)))]))
            }
        ]
    }

    public var schedules: [TaskSchedule] { [TaskSchedule(kind: Self.purgeKind, every: .seconds(600))] }

    public var readinessChecks: [ReadinessCheck] {
        let loaded = self.masterKey != nil
        return [ReadinessCheck(name: "secrets") { loaded ? nil : "no master key is configured" }]
    }

    // MARK: - Shapes

    static let secretShape = ResponseShape<SecretRecord>("Secret") {
        $0.string("name") { $0.name }
        $0.string("description") { $0.description }
        $0.integer("latest_version", "The newest value's number (from 1).") { $0.latestVersion }
        $0.integer("version", "Raised by every change; the ETag.") { $0.version }
        $0.time("created_at") { $0.createdAt }
        $0.time("updated_at") { $0.updatedAt }
        $0.optionalTime("deleted_at", "Set while the secret waits out its recovery window.") { $0.deletedAt }
        $0.optionalTime("purge_at", "When a deleted secret is gone for good.") { $0.purgeAt }
    }

    static let secretList = ListShape("SecretList", itemsKey: "secrets", item: Self.secretShape)

    struct NamedVersion {
        var name: String
        var record: SecretVersionRecord
    }

    static let versionShape = ResponseShape<NamedVersion>("SecretVersion") {
        $0.string("name") { $0.name }
        $0.integer("version") { $0.record.version }
        $0.time("created_at") { $0.record.createdAt }
    }

    static let versionList = ListShape("SecretVersionList", itemsKey: "versions", item: Self.versionShape)

    struct Value {
        var name: String
        var version: Int64
        var value: String
        var createdAt: Int64
    }

    static let valueShape = ResponseShape<Value>("SecretValue") {
        $0.string("name") { $0.name }
        $0.integer("version") { $0.version }
        $0.string("value") { $0.value }
        $0.time("created_at") { $0.createdAt }
    }

    // MARK: - Routes

    static let valueField = BodySchema.Field.string(
        "value", maxLength: Self.maximumValueBytes, "The secret value, at most 64 KiB of UTF-8.")
    /// Room for a 64 KiB value however JSON escapes it (`\u0000` is six bytes for one).
    static let bodyLimit = 6 * Self.maximumValueBytes + 4096

    public var routes: [Route] {
        var create = RouteSpec(
            method: "POST", path: "/secrets", operationID: "createSecret",
            summary: "Create a secret with its first value (version 1).", access: .permission(Permission("secret:create")!),
            body: BodySchema([
                .string("name", maxLength: 128, "1 to 128 of letters, digits and / _ + = . @ -; unique in the tenant."),
                Self.valueField,
                .string("description", required: false, maxLength: 1000, "What it is for."),
            ]),
            success: 201, response: .shape(Self.secretShape.component),
            errors: [(409, "secret_exists"), (503, "secrets_unavailable")])
        create.maximumBodyBytes = Self.bodyLimit
        var addVersion = RouteSpec(
            method: "POST", path: "/secrets/{name}/versions", operationID: "addSecretVersion",
            summary: "Store a new value; it becomes the latest (If-Match: the secret's ETag, to refuse a lost update).",
            access: .permission(Permission("secret:update")!), body: BodySchema([Self.valueField]),
            success: 201, response: .shape(Self.versionShape.component),
            errors: [(409, "secret_deleted"), (503, "secrets_unavailable")], conditional: true)
        addVersion.maximumBodyBytes = Self.bodyLimit
        return [
            Route(create) { context in try await self.create(context) },
            Route(
                method: "GET", path: "/secrets", operationID: "listSecrets",
                summary: "The tenant's secrets by name: names, descriptions and versions, never values.",
                access: .permission(Permission("secret:read")!), success: 200, response: .shape(Self.secretList.component),
                query: [QueryParameter("include_deleted", "true: also those waiting out their recovery window.")], paginated: true
            ) { context in try await self.list(context) },
            Route(
                method: "GET", path: "/secrets/{name}", operationID: "getSecret", summary: "One secret (no value); its ETag.",
                access: .permission(Permission("secret:read")!), success: 200, response: .shape(Self.secretShape.component)
            ) { context in try await self.get(context) },
            Route(
                method: "PATCH", path: "/secrets/{name}", operationID: "updateSecret", summary: "Change a secret's description.",
                access: .permission(Permission("secret:update")!),
                body: BodySchema([.string("description", maxLength: 1000, "What it is for.")]), success: 200,
                response: .shape(Self.secretShape.component), errors: [(409, "secret_deleted")], conditional: true
            ) { context in try await self.update(context) },
            Route(
                method: "DELETE", path: "/secrets/{name}", operationID: "deleteSecret",
                summary: "Delete a secret: it can be restored until its recovery window ends (?recovery_days=, 1 to 30, default 7), then it is purged.",
                access: .permission(Permission("secret:delete")!), success: 200, response: .shape(Self.secretShape.component),
                errors: [(409, "secret_deleted")], query: [QueryParameter("recovery_days", "Days it can be restored (1 to 30, default 7).")],
                conditional: true
            ) { context in try await self.delete(context) },
            Route(
                method: "POST", path: "/secrets/{name}/restore", operationID: "restoreSecret",
                summary: "Undo a delete within its recovery window.", access: .permission(Permission("secret:delete")!),
                success: 200, response: .shape(Self.secretShape.component), errors: [(409, "secret_not_deleted")]
            ) { context in try await self.restore(context) },
            Route(addVersion) { context in try await self.addVersion(context) },
            Route(
                method: "GET", path: "/secrets/{name}/versions", operationID: "listSecretVersions",
                summary: "A secret's versions, oldest first (no values).", access: .permission(Permission("secret:read")!),
                success: 200, response: .shape(Self.versionList.component), paginated: true
            ) { context in try await self.versions(context) },
            Route(
                method: "GET", path: "/secrets/{name}/value", operationID: "getSecretValue",
                summary: "A secret's value: the latest, or ?version=N.", access: .permission(Permission("secret:read-value")!),
                success: 200, response: .shape(Self.valueShape.component),
                errors: [(409, "secret_deleted"), (503, "secrets_unavailable"), (503, "master_key_mismatch")],
                query: [QueryParameter("version", "The version to read (default the latest).")]
            ) { context in try await self.value(context) },
        ]
    }

    // MARK: - Handlers

    /// Names as AWS Secrets Manager allows them: 1 to 128 of letters, digits and `/_+=.@-`.
    static func checkName(_ name: String) throws(SecretsError) {
        guard name.isName(maxLength: 128, allowing: "/_+=.@-") else { throw SecretsError.invalidName(name) }
    }

    static func checkValue(_ value: String) throws(SecretsError) {
        guard value.utf8.count <= Self.maximumValueBytes else { throw SecretsError.valueTooLarge(value.utf8.count) }
    }

    private func key() throws(SecretsError) -> MasterKey {
        guard let masterKey else { throw SecretsError.unavailable }
        return masterKey
    }

    func create(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let name = context.body.string("name") ?? ""
        let value = context.body.string("value") ?? ""
        let description = context.body.string("description") ?? ""
        try Self.checkName(name)
        try Self.checkValue(value)
        let master = try self.key()
        let environment = context.environment
        let now = environment.clock.unixMilliseconds()
        return try await context.transaction { db in
            if try await SecretsSchema.secret(db, tenantID: caller.tenantID, name: name, dialect: environment.database.dialect) != nil {
                throw SecretsError.exists(name)
            }
            try await environment.quotas.reserve(Self.quota, tenantID: caller.tenantID, in: db)
            let dataKey = try await Self.dataKey(db, tenantID: caller.tenantID, master: master, now: now)
            let sealed = Envelope.seal(Array(value.utf8), tenantID: caller.tenantID, name: name, version: 1, with: dataKey)
            try await db.query(
                "INSERT INTO secrets_secrets (\(SecretsSchema.columns)) VALUES ($1, $2, $3, 1, 1, $4, $4, NULL, NULL)",
                [.text(caller.tenantID), .text(name), .text(description), .integer(now)])
            try await db.query(
                "INSERT INTO secrets_versions (tenant_id, name, version, sealed, created_at) VALUES ($1, $2, 1, $3, $4)",
                [.text(caller.tenantID), .text(name), .text(Base64.encode(sealed)), .integer(now)])
            environment.logger.info(
                "secret created", metadata: ["request-id": "\(context.request.requestID)", "tenant-id": "\(caller.tenantID)", "secret": "\(name)"])
            let record = SecretRecord(
                tenantID: caller.tenantID, name: name, description: description, latestVersion: 1, version: 1, createdAt: now, updatedAt: now)
            return APIResponse.json(201, Self.secretShape.json(record)).tagged(version: 1)
        }
    }

    func list(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let page = try context.page()
        let deleted = context.request.query["include_deleted"] == "true" ? "" : " AND deleted_at IS NULL"
        let rows = try await context.environment.database.query(
            """
            SELECT \(SecretsSchema.columns) FROM secrets_secrets WHERE tenant_id = $1 AND name > $2\(deleted)
            ORDER BY name LIMIT \(page.fetchLimit)
            """, [.text(caller.tenantID), .text(page.after ?? "")])
        let (items, next) = page.finish(rows.map(SecretsSchema.secret), key: \.name)
        return .json(200, Self.secretList.json(items, nextToken: next))
    }

    /// The named secret of the caller's tenant, or 404.
    private func existing(_ context: RouteContext, _ db: any SQLSession, forUpdate: Bool = false) async throws -> SecretRecord {
        let caller = try context.authenticated
        let name = context.parameter("name")
        guard
            let secret = try await SecretsSchema.secret(
                db, tenantID: caller.tenantID, name: name, dialect: context.environment.database.dialect, forUpdate: forUpdate)
        else { throw SecretsError.notFound(name) }
        return secret
    }

    func get(_ context: RouteContext) async throws -> APIResponse {
        let secret = try await context.environment.database.transaction { db in try await self.existing(context, db) }
        return APIResponse.json(200, Self.secretShape.json(secret)).tagged(version: secret.version)
    }

    func update(_ context: RouteContext) async throws -> APIResponse {
        let description = context.body.string("description") ?? ""
        let now = context.environment.clock.unixMilliseconds()
        return try await context.transaction { db in
            var secret = try await self.existing(context, db, forUpdate: true)
            try context.requireMatch(version: secret.version)
            guard secret.deletedAt == nil else { throw SecretsError.deleted(secret.name, purgeAt: secret.purgeAt ?? 0) }
            secret.description = description
            secret.version += 1
            secret.updatedAt = now
            try await Self.save(db, secret, expectedVersion: secret.version - 1)
            return APIResponse.json(200, Self.secretShape.json(secret)).tagged(version: secret.version)
        }
    }

    func delete(_ context: RouteContext) async throws -> APIResponse {
        var days = Self.defaultRecoveryDays
        if let text = context.request.query["recovery_days"] {
            guard let value = Int64(text), (1...30).contains(value) else {
                throw APIError.invalidRequest("recovery_days must be 1 to 30")
            }
            days = value
        }
        let recoveryDays = days
        let now = context.environment.clock.unixMilliseconds()
        let caller = try context.authenticated
        let logger = context.environment.logger
        return try await context.transaction { db in
            var secret = try await self.existing(context, db, forUpdate: true)
            try context.requireMatch(version: secret.version)
            guard secret.deletedAt == nil else { throw SecretsError.deleted(secret.name, purgeAt: secret.purgeAt ?? 0) }
            secret.deletedAt = now
            secret.purgeAt = now + recoveryDays * 86_400_000
            secret.version += 1
            secret.updatedAt = now
            try await Self.save(db, secret, expectedVersion: secret.version - 1)
            logger.info(
                "secret deleted",
                metadata: ["request-id": "\(context.request.requestID)", "tenant-id": "\(caller.tenantID)", "secret": "\(secret.name)"])
            return APIResponse.json(200, Self.secretShape.json(secret)).tagged(version: secret.version)
        }
    }

    func restore(_ context: RouteContext) async throws -> APIResponse {
        let now = context.environment.clock.unixMilliseconds()
        return try await context.transaction { db in
            var secret = try await self.existing(context, db, forUpdate: true)
            guard secret.deletedAt != nil else { throw SecretsError.notDeleted(secret.name) }
            secret.deletedAt = nil
            secret.purgeAt = nil
            secret.version += 1
            secret.updatedAt = now
            try await Self.save(db, secret, expectedVersion: secret.version - 1)
            return APIResponse.json(200, Self.secretShape.json(secret)).tagged(version: secret.version)
        }
    }

    func addVersion(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let value = context.body.string("value") ?? ""
        try Self.checkValue(value)
        let master = try self.key()
        let now = context.environment.clock.unixMilliseconds()
        return try await context.transaction { db in
            var secret = try await self.existing(context, db, forUpdate: true)
            try context.requireMatch(version: secret.version)
            guard secret.deletedAt == nil else { throw SecretsError.deleted(secret.name, purgeAt: secret.purgeAt ?? 0) }
            let dataKey = try await Self.dataKey(db, tenantID: caller.tenantID, master: master, now: now)
            secret.latestVersion += 1
            secret.version += 1
            secret.updatedAt = now
            let sealed = Envelope.seal(
                Array(value.utf8), tenantID: caller.tenantID, name: secret.name, version: Int(secret.latestVersion), with: dataKey)
            try await db.query(
                "INSERT INTO secrets_versions (tenant_id, name, version, sealed, created_at) VALUES ($1, $2, $3, $4, $5)",
                [.text(caller.tenantID), .text(secret.name), .integer(secret.latestVersion), .text(Base64.encode(sealed)), .integer(now)])
            try await Self.save(db, secret, expectedVersion: secret.version - 1)
            let created = NamedVersion(name: secret.name, record: SecretVersionRecord(version: secret.latestVersion, createdAt: now))
            return APIResponse.json(201, Self.versionShape.json(created)).tagged(version: secret.version)
        }
    }

    func versions(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let page = try context.page()
        let after = page.after.map { Int64($0) ?? -1 } ?? 0
        guard after >= 0 else { throw APIError.invalidRequest("next_token is not a token this API handed out; start again without it") }
        let (secret, rows) = try await context.environment.database.transaction { db in
            let secret = try await self.existing(context, db)
            let rows = try await db.query(
                """
                SELECT version, created_at FROM secrets_versions WHERE tenant_id = $1 AND name = $2 AND version > $3
                ORDER BY version LIMIT \(page.fetchLimit)
                """, [.text(caller.tenantID), .text(secret.name), .integer(after)])
            return (secret, rows)
        }
        let records = rows.map { NamedVersion(name: secret.name, record: SecretVersionRecord(version: $0.int(0), createdAt: $0.int(1))) }
        let (items, next) = page.finish(records) { String($0.record.version) }
        return .json(200, Self.versionList.json(items, nextToken: next))
    }

    func value(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        var requested: Int64?
        if let text = context.request.query["version"] {
            guard let number = Int64(text), number >= 1 else { throw APIError.invalidRequest("version must be a number from 1") }
            requested = number
        }
        let wanted = requested
        let master = try self.key()
        let now = context.environment.clock.unixMilliseconds()
        let value = try await context.environment.database.transaction { db -> Value in
            let secret = try await self.existing(context, db)
            guard secret.deletedAt == nil else { throw SecretsError.deleted(secret.name, purgeAt: secret.purgeAt ?? 0) }
            let version = wanted ?? secret.latestVersion
            guard
                let row = try await db.query(
                    "SELECT sealed, created_at FROM secrets_versions WHERE tenant_id = $1 AND name = $2 AND version = $3",
                    [.text(caller.tenantID), .text(secret.name), .integer(version)]
                ).first
            else { throw SecretsError.versionNotFound(secret.name, version) }
            let dataKey = try await Self.dataKey(db, tenantID: caller.tenantID, master: master, now: now)
            guard let sealed = Base64.decode(row.text(0)) else { throw SecretsError.corrupt(secret.name, version) }
            let plain: [UInt8]
            do {
                plain = try Envelope.open(sealed, tenantID: caller.tenantID, name: secret.name, version: Int(version), with: dataKey)
            } catch {
                throw SecretsError.corrupt(secret.name, version)
            }
            guard let text = String(validating: plain, as: UTF8.self) else { throw SecretsError.corrupt(secret.name, version) }
            return Value(name: secret.name, version: version, value: text, createdAt: row.int(1))
        }
        context.environment.logger.info(
            "secret value read",
            metadata: [
                "request-id": "\(context.request.requestID)", "tenant-id": "\(caller.tenantID)", "secret": "\(value.name)",
                "version": "\(value.version)", "user-id": "\(caller.userID)",
            ])
        return .json(200, Self.valueShape.json(value))
    }

    // MARK: - Keys and rows

    /// Writes a changed secret whose row had `expectedVersion`; the row lock (PostgreSQL) or the single
    /// writer (SQLite) makes the check and the write one step.
    static func save(_ db: any SQLSession, _ secret: SecretRecord, expectedVersion: Int64) async throws {
        let changed = try await db.query(
            """
            UPDATE secrets_secrets SET description = $3, latest_version = $4, version = $5, updated_at = $6, deleted_at = $7, purge_at = $8
            WHERE tenant_id = $1 AND name = $2 AND version = $9 RETURNING name
            """,
            [
                .text(secret.tenantID), .text(secret.name), .text(secret.description), .integer(secret.latestVersion),
                .integer(secret.version), .integer(secret.updatedAt), SQLValue(secret.deletedAt), SQLValue(secret.purgeAt),
                .integer(expectedVersion),
            ])
        if changed.isEmpty { throw APIError.preconditionFailed(current: "unknown") }
    }

    /// The tenant's data key, made and wrapped on first use (a concurrent first use finds the one that
    /// won the insert).
    /// - Throws: ``SecretsError`` `master_key_mismatch` when the stored key was wrapped by another master key.
    static func dataKey(_ db: any SQLSession, tenantID: String, master: MasterKey, now: Int64) async throws -> DataKey {
        if let row = try await db.query("SELECT master_key_id, wrapped FROM secrets_data_keys WHERE tenant_id = $1", [.text(tenantID)]).first {
            return try Self.unwrap(row, tenantID: tenantID, master: master)
        }
        let fresh = DataKey.generate()
        let wrapped = Envelope.wrap(fresh, tenantID: tenantID, with: master)
        try await db.query(
            "INSERT INTO secrets_data_keys (tenant_id, master_key_id, wrapped, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            [.text(tenantID), .text(master.id), .text(Base64.encode(wrapped.bytes)), .integer(now)])
        guard let row = try await db.query("SELECT master_key_id, wrapped FROM secrets_data_keys WHERE tenant_id = $1", [.text(tenantID)]).first
        else { throw SecretsError.unavailable }
        return try Self.unwrap(row, tenantID: tenantID, master: master)
    }

    private static func unwrap(_ row: SQLRow, tenantID: String, master: MasterKey) throws -> DataKey {
        guard let bytes = Base64.decode(row.text(1)) else { throw SecretsError.masterKeyMismatch("the stored data key is not readable") }
        do {
            return try Envelope.unwrap(WrappedKey(bytes: bytes), tenantID: tenantID, with: master)
        } catch {
            throw SecretsError.masterKeyMismatch(error.description)
        }
    }

    /// Re-wraps every tenant's data key from `old` to `new` in one transaction; values are not touched.
    /// Data keys already wrapped by `new` are left as they are.
    /// - Returns: How many data keys were re-wrapped.
    /// - Throws: ``SecretsCryptoError`` when a data key was wrapped by neither key (nothing is changed then).
    public static func rotateMasterKey(database: any SQLDatabase, from old: MasterKey, to new: MasterKey, now: Int64) async throws -> Int {
        try await database.transaction { db in
            let lock = database.dialect == .postgres ? " FOR UPDATE" : ""
            var count = 0
            for row in try await db.query("SELECT tenant_id, master_key_id, wrapped FROM secrets_data_keys\(lock)") {
                let tenantID = row.text(0)
                if row.text(1) == new.id { continue }
                guard let bytes = Base64.decode(row.text(2)) else {
                    throw SecretsError.masterKeyMismatch("the data key of tenant \(tenantID) is not readable")
                }
                let rewrapped = try Envelope.rewrap(WrappedKey(bytes: bytes), tenantID: tenantID, from: old, to: new)
                try await db.query(
                    "UPDATE secrets_data_keys SET master_key_id = $2, wrapped = $3, rewrapped_at = $4 WHERE tenant_id = $1",
                    [.text(tenantID), .text(new.id), .text(Base64.encode(rewrapped.bytes)), .integer(now)])
                count += 1
            }
            return count
        }
    }
}

/// The secrets service's errors, and their answers (the one place they are mapped).
public struct SecretsError: Error, APIErrorConvertible, CustomStringConvertible {
    private enum Code {
        case notFound(String), exists(String), deleted(String, purgeAt: Int64), notDeleted(String), invalidName(String)
        case valueTooLarge(Int), versionNotFound(String, Int64), corrupt(String, Int64), masterKeyMismatch(String), unavailable
    }

    private let code: Code

    static func notFound(_ name: String) -> Self { Self(code: .notFound(name)) }
    static func exists(_ name: String) -> Self { Self(code: .exists(name)) }
    static func deleted(_ name: String, purgeAt: Int64) -> Self { Self(code: .deleted(name, purgeAt: purgeAt)) }
    static func notDeleted(_ name: String) -> Self { Self(code: .notDeleted(name)) }
    static func invalidName(_ name: String) -> Self { Self(code: .invalidName(name)) }
    static func valueTooLarge(_ bytes: Int) -> Self { Self(code: .valueTooLarge(bytes)) }
    static func versionNotFound(_ name: String, _ version: Int64) -> Self { Self(code: .versionNotFound(name, version)) }
    static func corrupt(_ name: String, _ version: Int64) -> Self { Self(code: .corrupt(name, version)) }
    static func masterKeyMismatch(_ detail: String) -> Self { Self(code: .masterKeyMismatch(detail)) }
    static let unavailable = Self(code: .unavailable)

    public var apiError: APIError {
        switch self.code {
        case .notFound(let name): .notFound("this tenant has no secret \(name)")
        case .exists(let name): .conflict("secret_exists", "a secret named \(name) exists (or waits out its recovery window: restore it)")
        case .deleted(let name, let purgeAt):
            .conflict(
                "secret_deleted",
                "the secret \(name) is deleted and will be purged at \(Timestamp.rfc3339(milliseconds: purgeAt)); restore it first (POST /secrets/\(name)/restore)")
        case .notDeleted(let name): .conflict("secret_not_deleted", "the secret \(name) is not deleted")
        case .invalidName(let name):
            .invalidRequest("\"\(name.prefix(140))\" is not a secret name: 1 to 128 of letters, digits and / _ + = . @ -")
        case .valueTooLarge(let bytes): .invalidRequest("the value has \(bytes) bytes; a secret holds at most \(SecretsService.maximumValueBytes)")
        case .versionNotFound(let name, let version): .notFound("the secret \(name) has no version \(version)")
        case .corrupt(let name, let version):
            APIError(status: 500, code: "secret_corrupt", message: "version \(version) of \(name) does not decrypt: its stored bytes are damaged")
        case .masterKeyMismatch(let detail): APIError(status: 503, code: "master_key_mismatch", message: detail)
        case .unavailable: APIError(status: 503, code: "secrets_unavailable", message: "this control plane has no master key configured")
        }
    }

    public var description: String { self.apiError.description }
}
