import Foundation
import Hashing
import S3API
import SigV4
import StorageEngine

/// The tenant part of the admin API: S3 access keys and buckets of a tenant, for the control plane
/// (`cloud storage keys`, `/storage/buckets`). Root key only, like the rest of `/_admin`.
///
/// - `POST /_admin/tenants/{tenant}/keys` `{"name"?}` → 201 `{accessKeyId, secretAccessKey, tenant, name, created}`;
///   the secret is in this answer only.
/// - `GET /_admin/tenants/{tenant}/keys` → `{"keys": [{accessKeyId, tenant, name, created}]}`
/// - `DELETE /_admin/tenants/{tenant}/keys/{accessKeyId}` → 204; 404 `NoSuchAccessKey` (also for another tenant's key)
/// - `GET /_admin/tenants/{tenant}/buckets` → `{"buckets": [{name, tenant, created}]}`
/// - `POST /_admin/tenants/{tenant}/buckets` `{"name"}` → 201 the bucket; 409 when the name is taken
/// - `DELETE /_admin/tenants/{tenant}/buckets/{name}` → 204; 404 `NoSuchBucket` (also another tenant's); 409 `BucketNotEmpty`
/// - `POST /_admin/signing-keys` `{"accessKeyId", "date", "region", "service"}` → `{"tenant", "signingKey"}`: the
///   SigV4 signing key (hex) of that key's scope, for a service other than `s3` (the queues service's SQS
///   endpoint verifies tenants' requests with it and never holds a secret key); 404 `NoSuchAccessKey`
struct TenantAdmin: Sendable {
    let store: any ObjectStore
    let keys: any AccessKeyStore
    let now: @Sendable () -> Date

    static let maxNameLength = 100

    /// Answers `parts` = `["tenants", tenant, …]`.
    func handle(method: String, parts: [Substring], body: [UInt8]) async throws -> AdminResponse {
        guard parts.count >= 3 else { throw AdminError(404, "NoSuchAdminRoute", "Use /_admin/tenants/{tenant}/keys or /_admin/tenants/{tenant}/buckets.") }
        let tenant = String(parts[1])
        guard Tenancy.isValidTenant(tenant) else {
            throw AdminError(400, "InvalidTenant", "A tenant id is 1 to 64 letters, digits, - and _.")
        }
        switch (method, parts[2], parts.count) {
        case ("POST", "keys", 3): return try await self.createKey(tenant: tenant, body: body)
        case ("GET", "keys", 3): return try await self.listKeys(tenant: tenant)
        case ("DELETE", "keys", 4): return try await self.deleteKey(tenant: tenant, accessKey: String(parts[3]))
        case ("POST", "buckets", 3): return try await self.createBucket(tenant: tenant, body: body)
        case ("GET", "buckets", 3): return try await self.listBuckets(tenant: tenant)
        case ("DELETE", "buckets", 4): return try await self.deleteBucket(tenant: tenant, name: String(parts[3]))
        default:
            throw AdminError(404, "NoSuchAdminRoute", "No admin route \(method) /\(parts.joined(separator: "/")).")
        }
    }

    /// The fields of a JSON object body; unknown fields and wrong types are refused.
    static func fields(_ body: [UInt8], allowed: [String: Bool]) throws -> [String: String] {
        if body.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) {
            if let missing = allowed.first(where: { $0.value })?.key {
                throw AdminError(400, "MissingField", "The body must be a JSON object with \"\(missing)\".")
            }
            return [:]
        }
        guard let object = (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] else {
            throw AdminError(400, "MalformedJSON", "The body is not a JSON object.")
        }
        var result: [String: String] = [:]
        for (name, value) in object {
            guard allowed[name] != nil else {
                throw AdminError(400, "UnknownField", "Unknown field \"\(name)\" (known: \(allowed.keys.sorted().joined(separator: ", "))).")
            }
            guard let text = value as? String else { throw AdminError(400, "InvalidField", "\"\(name)\" must be a string.") }
            result[name] = text
        }
        for (name, required) in allowed where required && result[name] == nil {
            throw AdminError(400, "MissingField", "The body needs \"\(name)\".")
        }
        return result
    }

    static func time(_ date: Date) -> String { date.formatted(.iso8601) }

    static func describe(_ key: AccessKeyRecord) -> [String: String] {
        ["accessKeyId": key.accessKey, "tenant": key.tenant, "name": key.name, "created": time(key.created)]
    }

    static func describe(_ bucket: BucketRecord, tenant: String) -> [String: String] {
        ["name": bucket.name, "tenant": tenant, "created": time(bucket.created)]
    }

    // MARK: Keys

    /// The signing key of one (access key, date, region, service) scope. Refused for `s3`: a holder of
    /// such a key could sign S3 requests, and no S3 request is ever verified outside the storage node.
    func signingKey(body: [UInt8]) async throws -> AdminResponse {
        let fields = try Self.fields(body, allowed: ["accessKeyId": true, "date": true, "region": true, "service": true])
        let accessKeyID = fields["accessKeyId"] ?? ""
        let date = fields["date"] ?? ""
        let region = fields["region"] ?? ""
        let service = fields["service"] ?? ""
        guard date.utf8.count == 8, date.utf8.allSatisfy({ (0x30...0x39).contains($0) }) else {
            throw AdminError(400, "InvalidField", "\"date\" is yyyyMMdd.")
        }
        let token: (String) -> Bool = { text in
            !text.isEmpty && text.utf8.count <= 64 && text.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x7a).contains($0) || $0 == 0x2d }
        }
        guard token(region), token(service) else {
            throw AdminError(400, "InvalidField", "\"region\" and \"service\" are 1 to 64 of lowercase letters, digits and -.")
        }
        guard service != "s3" else {
            throw AdminError(400, "InvalidField", "Signing keys of the s3 service are never handed out.")
        }
        guard let key = try await self.keys.accessKey(accessKeyID) else {
            throw AdminError(404, "NoSuchAccessKey", "No access key \(accessKeyID.prefix(64)).")
        }
        let signing = SigV4.signingKey(secretKey: key.secretKey, date: date, region: region, service: service)
        return try StorageAdmin.json(["tenant": key.tenant, "signingKey": Hex.encode(signing)])
    }

    func createKey(tenant: String, body: [UInt8]) async throws -> AdminResponse {
        let fields = try Self.fields(body, allowed: ["name": false])
        let name = (fields["name"] ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        guard name.count <= Self.maxNameLength, !name.contains(where: { $0.isNewline }) else {
            throw AdminError(400, "InvalidName", "A key name has at most \(Self.maxNameLength) characters on one line.")
        }
        let key = AccessKeyRecord(
            accessKey: AccessKeyGenerator.accessKey(), secretKey: AccessKeyGenerator.secretKey(), tenant: tenant,
            name: name.isEmpty ? "s3 key" : name, created: self.now())
        try await self.keys.createAccessKey(key)
        var answer = Self.describe(key)
        answer["secretAccessKey"] = key.secretKey
        var response = try StorageAdmin.json(answer)
        response.status = 201
        return response
    }

    func listKeys(tenant: String) async throws -> AdminResponse {
        let keys = try await self.keys.accessKeys(tenant: tenant)
        return try StorageAdmin.json(["keys": keys.map(Self.describe)])
    }

    func deleteKey(tenant: String, accessKey: String) async throws -> AdminResponse {
        guard let key = try await self.keys.accessKey(accessKey), key.tenant == tenant else {
            throw AdminError(404, "NoSuchAccessKey", "The tenant \(tenant) has no access key \(accessKey).")
        }
        guard try await self.keys.deleteAccessKey(key.accessKey) else {
            throw AdminError(404, "NoSuchAccessKey", "The tenant \(tenant) has no access key \(accessKey).")
        }
        return AdminResponse(status: 204, json: "")
    }

    // MARK: Buckets

    func createBucket(tenant: String, body: [UInt8]) async throws -> AdminResponse {
        let fields = try Self.fields(body, allowed: ["name": true])
        let name = fields["name"] ?? ""
        guard S3Handler.isValidBucketName(name) else {
            throw AdminError(
                400, "InvalidBucketName",
                "A bucket name is 3 to 63 lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit.")
        }
        do {
            try await self.store.createBucket(name, owner: Tenancy.owner(tenant: tenant))
        } catch let error as StorageError where error.code == .bucketAlreadyOwnedByYou {
            throw AdminError(409, "BucketAlreadyOwnedByYou", "The tenant \(tenant) already has a bucket \(name).")
        } catch let error as StorageError where error.code == .bucketAlreadyExists {
            throw AdminError(409, "BucketAlreadyExists", "The bucket name \(name) is taken; bucket names are shared by all tenants.")
        }
        let record = try await self.store.bucket(name) ?? BucketRecord(name: name, created: self.now(), owner: Tenancy.owner(tenant: tenant))
        var response = try StorageAdmin.json(Self.describe(record, tenant: tenant))
        response.status = 201
        return response
    }

    func listBuckets(tenant: String) async throws -> AdminResponse {
        let owner = Tenancy.owner(tenant: tenant)
        let buckets = try await self.store.listBuckets().filter { $0.owner == owner }
        return try StorageAdmin.json(["buckets": buckets.map { Self.describe($0, tenant: tenant) }])
    }

    func deleteBucket(tenant: String, name: String) async throws -> AdminResponse {
        guard let bucket = try await self.store.bucket(name), bucket.owner == Tenancy.owner(tenant: tenant) else {
            throw AdminError(404, "NoSuchBucket", "The tenant \(tenant) has no bucket \(name).")
        }
        do {
            try await self.store.deleteBucket(bucket.name)
        } catch let error as StorageError where error.code == .bucketNotEmpty {
            throw AdminError(409, "BucketNotEmpty", "The bucket \(name) is not empty; delete its objects first.")
        } catch let error as StorageError where error.code == .noSuchBucket {
            throw AdminError(404, "NoSuchBucket", "The tenant \(tenant) has no bucket \(name).")
        }
        return AdminResponse(status: 204, json: "")
    }
}
