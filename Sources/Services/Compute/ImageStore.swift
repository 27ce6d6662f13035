public import Foundation
public import StorageClient

/// Where images' tars live: the platform's object store, one object per SHA-256 (tenants who import
/// the same tar share it). The compute service reads a tar back when an engine lacks the image.
public struct ImageStore: Sendable {
    /// The system bucket; created on first use with the storage cluster's root key.
    public static let bucket = "cloud-system-images"
    let client: SignedClient

    /// - Parameters:
    ///   - endpoint: The storage cluster's S3 endpoint and its root key.
    ///   - timeout: Seconds one transfer may take.
    public init(endpoint: S3Endpoint, timeout: TimeInterval = 600) {
        self.client = SignedClient(endpoint: endpoint, timeout: timeout)
    }

    static func key(_ digest: String) -> String { "sha256/\(digest).tar" }

    /// Stores a tar under its digest (again is fine: the same bytes).
    func put(digest: String, tar: [UInt8]) async throws {
        var response = try await self.client.send("PUT", "/\(Self.bucket)/\(Self.key(digest))", body: Data(tar))
        if response.status == 404, response.errorCode == "NoSuchBucket" {
            let created = try await self.client.send("PUT", "/\(Self.bucket)")
            guard created.status == 200 || created.errorCode == "BucketAlreadyOwnedByYou" else { throw Self.failure("creating the image bucket", created) }
            response = try await self.client.send("PUT", "/\(Self.bucket)/\(Self.key(digest))", body: Data(tar))
        }
        guard response.status == 200 else { throw Self.failure("storing an image", response) }
    }

    /// The tar of a digest.
    func get(digest: String) async throws -> [UInt8] {
        let response = try await self.client.send("GET", "/\(Self.bucket)/\(Self.key(digest))")
        guard response.status == 200 else { throw Self.failure("reading image sha256:\(digest)", response) }
        return Array(response.body)
    }

    /// Removes a tar no image names any more; missing is fine.
    func delete(digest: String) async throws {
        let response = try await self.client.send("DELETE", "/\(Self.bucket)/\(Self.key(digest))")
        guard response.status == 204 || response.status == 200 || response.status == 404 else { throw Self.failure("deleting an image", response) }
    }

    private static func failure(_ what: String, _ response: SignedResponse) -> ImageStoreError {
        ImageStoreError("object store: \(what): \(response.errorCode ?? "HTTP \(response.status)") \(response.errorMessage ?? "")")
    }
}

/// The object store refused or failed an image transfer.
struct ImageStoreError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
