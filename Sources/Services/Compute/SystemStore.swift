public import Foundation
public import StorageClient

/// What compute keeps in the platform's object store, in two system buckets created on first use
/// with the storage cluster's root key: image tars (one object per SHA-256: tenants who import the
/// same tar share it) and the blocks of volume snapshots (one object per tenant and SHA-256, so an
/// unchanged block is stored once however many snapshots hold it).
public struct SystemStore: Sendable {
    public static let imageBucket = "cloud-system-images"
    public static let snapshotBucket = "cloud-system-snapshots"
    let client: SignedClient

    /// - Parameters:
    ///   - endpoint: The storage cluster's S3 endpoint and its root key.
    ///   - timeout: Seconds one transfer may take.
    public init(endpoint: S3Endpoint, timeout: TimeInterval = 600) {
        self.client = SignedClient(endpoint: endpoint, timeout: timeout)
    }

    static func imagePath(_ digest: String) -> String { "/\(Self.imageBucket)/sha256/\(digest).tar" }
    static func blockPath(tenantID: String, digest: String) -> String { "/\(Self.snapshotBucket)/blocks/\(tenantID)/\(digest)" }

    /// Stores a tar under its digest (again is fine: the same bytes).
    func putImage(digest: String, tar: [UInt8]) async throws {
        try await self.put(Self.imagePath(digest), Data(tar), bucket: Self.imageBucket, doing: "storing an image")
    }

    /// The tar of a digest.
    func image(digest: String) async throws -> [UInt8] {
        try await self.get(Self.imagePath(digest), doing: "reading image sha256:\(digest)")
    }

    /// Removes a tar no image names any more; missing is fine.
    func deleteImage(digest: String) async throws {
        try await self.delete(Self.imagePath(digest), doing: "deleting an image")
    }

    /// Stores a snapshot block under the tenant and its digest.
    func putBlock(tenantID: String, digest: String, bytes: [UInt8]) async throws {
        try await self.put(Self.blockPath(tenantID: tenantID, digest: digest), Data(bytes), bucket: Self.snapshotBucket, doing: "storing a snapshot block")
    }

    /// A snapshot block.
    func block(tenantID: String, digest: String) async throws -> [UInt8] {
        try await self.get(Self.blockPath(tenantID: tenantID, digest: digest), doing: "reading snapshot block \(digest)")
    }

    /// Removes a block no snapshot holds any more; missing is fine.
    func deleteBlock(tenantID: String, digest: String) async throws {
        try await self.delete(Self.blockPath(tenantID: tenantID, digest: digest), doing: "deleting a snapshot block")
    }

    private func put(_ path: String, _ body: Data, bucket: String, doing what: String) async throws {
        var response = try await self.client.send("PUT", path, body: body)
        if response.status == 404, response.errorCode == "NoSuchBucket" {
            let created = try await self.client.send("PUT", "/\(bucket)")
            guard created.status == 200 || created.errorCode == "BucketAlreadyOwnedByYou" else { throw Self.failure("creating bucket \(bucket)", created) }
            response = try await self.client.send("PUT", path, body: body)
        }
        guard response.status == 200 else { throw Self.failure(what, response) }
    }

    private func get(_ path: String, doing what: String) async throws -> [UInt8] {
        let response = try await self.client.send("GET", path)
        guard response.status == 200 else { throw Self.failure(what, response) }
        return Array(response.body)
    }

    private func delete(_ path: String, doing what: String) async throws {
        let response = try await self.client.send("DELETE", path)
        guard response.status == 204 || response.status == 200 || response.status == 404 else { throw Self.failure(what, response) }
    }

    private static func failure(_ what: String, _ response: SignedResponse) -> SystemStoreError {
        SystemStoreError("object store: \(what): \(response.errorCode ?? "HTTP \(response.status)") \(response.errorMessage ?? "")")
    }
}

/// The object store refused or failed a transfer.
struct SystemStoreError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
