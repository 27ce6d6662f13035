import Foundation
public import StorageEngine

/// Who signed a request and what they may use.
///
/// A tenant's keys share the tenant's buckets: a bucket's owner is `tenant:<id>` and every key of
/// that tenant may use it; a key of another tenant gets `AccessDenied`. The root key may use every
/// bucket. A key outside any tenant (``StaticCredentialStore``) owns the buckets it creates alone.
public struct S3Principal: Sendable, Equatable {
    /// The access key id the request was signed with.
    public var accessKey: String
    /// Its secret, which SigV4 verification needs.
    public var secretKey: String
    /// What the buckets this principal creates record as their owner, and which buckets it may use.
    public var owner: String
    /// The root key: every bucket, and the admin API.
    public var isRoot: Bool

    public init(accessKey: String, secretKey: String, owner: String, isRoot: Bool = false) {
        self.accessKey = accessKey
        self.secretKey = secretKey
        self.owner = owner
        self.isRoot = isRoot
    }

    /// Whether this principal may use a bucket owned by `owner`.
    public func mayUse(bucketOwnedBy owner: String) -> Bool { self.isRoot || owner == self.owner }
}

/// Bucket owners of tenants.
public enum Tenancy {
    /// The owner recorded on the buckets of `tenant`.
    public static func owner(tenant: String) -> String { "tenant:" + tenant }

    /// The tenant whose buckets carry `owner`, or nil when the owner is not a tenant (the root key).
    public static func tenant(ofOwner owner: String) -> String? {
        owner.hasPrefix("tenant:") ? String(owner.dropFirst("tenant:".count)) : nil
    }

    /// Whether `tenant` is an acceptable tenant id: 1 to 64 ASCII letters, digits, `-` and `_`.
    public static func isValidTenant(_ tenant: String) -> Bool {
        !tenant.isEmpty && tenant.utf8.count <= 64
            && tenant.unicodeScalars.allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "-" || $0 == "_") }
    }
}

/// Where tenants' S3 access keys are kept: the local engine of a node that runs alone, or the
/// cluster's replicated records, so that a key created through one node works on every node.
public protocol AccessKeyStore: Sendable {
    /// Stores a new key.
    func createAccessKey(_ key: AccessKeyRecord) async throws
    /// The key with this id, or nil (also for a deleted one).
    func accessKey(_ accessKey: String) async throws -> AccessKeyRecord?
    /// The keys of `tenant`, oldest first.
    func accessKeys(tenant: String) async throws -> [AccessKeyRecord]
    /// Deletes a key; returns whether there was one.
    @discardableResult
    func deleteAccessKey(_ accessKey: String) async throws -> Bool
}

extension StorageEngine: AccessKeyStore {}

/// The root key, then tenants' keys from an ``AccessKeyStore``.
public struct TenantCredentialStore: CredentialStore {
    let rootAccessKey: String
    let rootSecretKey: String
    let keys: any AccessKeyStore

    public init(rootAccessKey: String, rootSecretKey: String, keys: any AccessKeyStore) {
        self.rootAccessKey = rootAccessKey
        self.rootSecretKey = rootSecretKey
        self.keys = keys
    }

    public func principal(forAccessKey accessKey: String) async throws -> S3Principal? {
        if accessKey == self.rootAccessKey {
            return S3Principal(accessKey: accessKey, secretKey: self.rootSecretKey, owner: accessKey, isRoot: true)
        }
        guard let key = try await self.keys.accessKey(accessKey) else { return nil }
        return S3Principal(accessKey: key.accessKey, secretKey: key.secretKey, owner: Tenancy.owner(tenant: key.tenant))
    }
}

/// Random access key ids and secrets, in the alphabet AWS uses.
public enum AccessKeyGenerator {
    /// `CK` and 18 uppercase letters or digits (like the root key), from the system's secure generator.
    public static func accessKey() -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
        var generator = SystemRandomNumberGenerator()
        return "CK" + String((0..<18).map { _ in alphabet.randomElement(using: &generator)! })
    }

    /// 40 characters of letters, digits, `+` and `/` (238 bits).
    public static func secretKey() -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
        var generator = SystemRandomNumberGenerator()
        return String((0..<40).map { _ in alphabet.randomElement(using: &generator)! })
    }
}
