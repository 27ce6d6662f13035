public import Foundation
import ServiceContract
import Hashing
import StorageClient

/// Where the storage cluster is and how the control plane signs its admin requests: any node's S3
/// address and the cluster's root key (`cloud dev`: the local node; `cloud server`:
/// `--storage-endpoint`, `--storage-access-key`, `--storage-secret-key`).
public struct StorageServiceConfiguration: Sendable {
    /// The admin endpoint, `http://host:port` of any node's S3 listener.
    public var endpoint: String
    /// The root key of the storage cluster (the admin API takes no other).
    public var accessKey: String
    public var secretKey: String
    public var region: String
    /// The S3 endpoint users are told to use with their keys; default ``endpoint``.
    public var publicEndpoint: String?
    /// Seconds an admin request may take.
    public var timeout: TimeInterval = 10

    public init(endpoint: String, accessKey: String, secretKey: String, region: String = "us-east-1", publicEndpoint: String? = nil) {
        self.endpoint = endpoint
        self.accessKey = accessKey
        self.secretKey = secretKey
        self.region = region
        self.publicEndpoint = publicEndpoint
    }

    /// Checks the settings a person typed.
    /// - Throws: ``StorageConfigurationError`` naming the first bad one.
    public func validate() throws(StorageConfigurationError) {
        for (option, value) in [("--storage-endpoint", self.endpoint), ("the public storage endpoint", self.publicEndpoint ?? self.endpoint)] {
            guard let url = URL(string: value), url.scheme == "http" || url.scheme == "https", url.host != nil else {
                throw StorageConfigurationError("\(option) '\(value)' is not a URL such as http://127.0.0.1:9000")
            }
        }
        guard !self.accessKey.isEmpty, !self.secretKey.isEmpty else {
            throw StorageConfigurationError("the storage cluster's root key needs both --storage-access-key and --storage-secret-key")
        }
    }
}

/// A storage setting an operator typed that cannot work.
public struct StorageConfigurationError: Error, Sendable, CustomStringConvertible {
    public var description: String

    public init(_ description: String) { self.description = description }
}

/// An S3 access key of a tenant as the storage cluster describes it (the secret only on creation).
public struct StorageKey: Sendable, Equatable {
    public var accessKeyID: String
    public var tenantID: String
    public var name: String
    /// RFC 3339.
    public var createdAt: String
    /// Present only in the answer that created the key.
    public var secretAccessKey: String?

    public init(accessKeyID: String, tenantID: String, name: String, createdAt: String, secretAccessKey: String? = nil) {
        self.accessKeyID = accessKeyID
        self.tenantID = tenantID
        self.name = name
        self.createdAt = createdAt
        self.secretAccessKey = secretAccessKey
    }
}

/// A tenant's bucket.
public struct StorageBucket: Sendable, Equatable {
    public var name: String
    public var tenantID: String
    /// RFC 3339.
    public var createdAt: String

    public init(name: String, tenantID: String, createdAt: String) {
        self.name = name
        self.tenantID = tenantID
        self.createdAt = createdAt
    }
}

/// A refusal or failure of the storage cluster, as the API should answer it.
public enum StorageServiceError: Error, Sendable, Equatable {
    /// No such key or bucket in this tenant.
    case notFound(String)
    /// The request is wrong (a bad bucket name).
    case invalid(String)
    /// A conflict with a stable code (`bucket_exists`, `bucket_not_empty`).
    case conflict(code: String, message: String)
    /// The cluster does not answer, or refuses the control plane's key.
    case unavailable(String)
}

/// The storage cluster, as the control plane's `/storage/…` routes use it. ``StorageAdminClient``
/// talks to a real cluster; tests use an in-memory one. Methods throw ``StorageServiceError``s.
public protocol StorageCluster: Sendable {
    /// The S3 endpoint users should use with their keys.
    var publicEndpoint: String { get }
    /// The region in their signatures' scope.
    var region: String { get }
    func createKey(tenant: String, name: String?) async throws -> StorageKey
    func keys(tenant: String) async throws -> [StorageKey]
    /// - Throws: ``StorageServiceError/notFound(_:)`` when the tenant has no such key.
    func deleteKey(tenant: String, accessKeyID: String) async throws
    func buckets(tenant: String) async throws -> [StorageBucket]
    func createBucket(tenant: String, name: String) async throws -> StorageBucket
    /// - Throws: ``StorageServiceError/notFound(_:)`` when the tenant has no such bucket.
    func deleteBucket(tenant: String, name: String) async throws
    /// Nil when the cluster answers and accepts the control plane's key, else why not (for `/health/ready`).
    func check() async -> String?
}

/// The storage cluster's admin API (`/_admin/tenants/…` on the S3 port), over HTTP, signed with
/// SigV4 with the cluster's root key.
public struct StorageAdminClient: StorageCluster {
    public let configuration: StorageServiceConfiguration
    let client: SignedClient

    public init(_ configuration: StorageServiceConfiguration) {
        self.configuration = configuration
        self.client = SignedClient(
            endpoint: S3Endpoint(
                url: configuration.endpoint, accessKey: configuration.accessKey, secretKey: configuration.secretKey,
                region: configuration.region),
            timeout: configuration.timeout)
    }

    public var publicEndpoint: String { self.configuration.publicEndpoint ?? self.configuration.endpoint }
    public var region: String { self.configuration.region }

    /// Sends an admin request; 2xx answers return their JSON object, others become ``StorageServiceError``s.
    func call(_ method: String, _ path: String, body: [String: String]? = nil) async throws -> [String: Any] {
        let response: SignedResponse
        do {
            let data = try body.map { try JSONSerialization.data(withJSONObject: $0) } ?? Data()
            response = try await self.client.send(
                method, "/_admin" + path, headers: body == nil ? [] : [("content-type", "application/json")], body: data)
        } catch let error as SignedClientError {
            throw StorageServiceError.unavailable("the storage cluster does not answer: \(error.description)")
        } catch {
            throw StorageServiceError.unavailable("the storage cluster does not answer: \(error)")
        }
        let message = response.errorMessage ?? "the storage cluster answered \(response.status)"
        switch response.status {
        case 200..<300:
            if response.body.isEmpty { return [:] }
            guard let object = (try? JSONSerialization.jsonObject(with: response.body)) as? [String: Any] else {
                throw StorageServiceError.unavailable("the storage cluster's answer is not JSON")
            }
            return object
        case 400: throw StorageServiceError.invalid(message)
        case 404: throw StorageServiceError.notFound(message)
        case 409:
            switch response.errorCode {
            case "BucketNotEmpty": throw StorageServiceError.conflict(code: "bucket_not_empty", message: message)
            default: throw StorageServiceError.conflict(code: "bucket_exists", message: message)
            }
        case 401, 403:
            throw StorageServiceError.unavailable("the storage cluster refuses the control plane's admin key (\(response.errorCode ?? "\(response.status)"))")
        default:
            throw StorageServiceError.unavailable("the storage cluster failed: \(response.status) \(message)")
        }
    }

    static func segment(_ text: String) -> String { SignedClient.encode(text, keepSlash: false) }

    static func key(_ object: [String: Any]) -> StorageKey {
        StorageKey(
            accessKeyID: object["accessKeyId"] as? String ?? "", tenantID: object["tenant"] as? String ?? "",
            name: object["name"] as? String ?? "", createdAt: object["created"] as? String ?? "",
            secretAccessKey: object["secretAccessKey"] as? String)
    }

    static func bucket(_ object: [String: Any]) -> StorageBucket {
        StorageBucket(
            name: object["name"] as? String ?? "", tenantID: object["tenant"] as? String ?? "", createdAt: object["created"] as? String ?? "")
    }

    public func createKey(tenant: String, name: String?) async throws -> StorageKey {
        let answer = try await self.call("POST", "/tenants/\(Self.segment(tenant))/keys", body: name.map { ["name": $0] } ?? [:])
        return Self.key(answer)
    }

    public func keys(tenant: String) async throws -> [StorageKey] {
        let answer = try await self.call("GET", "/tenants/\(Self.segment(tenant))/keys")
        return (answer["keys"] as? [[String: Any]] ?? []).map(Self.key)
    }

    public func deleteKey(tenant: String, accessKeyID: String) async throws {
        _ = try await self.call("DELETE", "/tenants/\(Self.segment(tenant))/keys/\(Self.segment(accessKeyID))")
    }

    public func buckets(tenant: String) async throws -> [StorageBucket] {
        let answer = try await self.call("GET", "/tenants/\(Self.segment(tenant))/buckets")
        return (answer["buckets"] as? [[String: Any]] ?? []).map(Self.bucket)
    }

    public func createBucket(tenant: String, name: String) async throws -> StorageBucket {
        Self.bucket(try await self.call("POST", "/tenants/\(Self.segment(tenant))/buckets", body: ["name": name]))
    }

    public func deleteBucket(tenant: String, name: String) async throws {
        _ = try await self.call("DELETE", "/tenants/\(Self.segment(tenant))/buckets/\(Self.segment(name))")
    }

    /// The SigV4 signing key of a tenant's access key for one scope of a service other than `s3`
    /// (`POST /_admin/signing-keys`), with the key's tenant; nil when there is no such key.
    public func signingKey(accessKeyID: String, date: String, region: String, service: String) async throws
        -> (tenantID: String, key: [UInt8])?
    {
        do {
            let answer = try await self.call(
                "POST", "/signing-keys", body: ["accessKeyId": accessKeyID, "date": date, "region": region, "service": service])
            guard let tenant = answer["tenant"] as? String, let hex = answer["signingKey"] as? String, let key = Hex.decode(hex) else {
                throw StorageServiceError.unavailable("the storage cluster's signing-key answer is not readable")
            }
            return (tenant, key)
        } catch StorageServiceError.notFound {
            return nil
        }
    }

    public func check() async -> String? {
        let base = self.configuration.endpoint.hasSuffix("/") ? String(self.configuration.endpoint.dropLast()) : self.configuration.endpoint
        do {
            let ready = try await SignedClient.get(base + "/health/ready", timeout: min(self.configuration.timeout, 3))
            guard ready.status == 200 else {
                return "the storage cluster at \(base) is not ready (\(ready.status) \(ready.text.trimmingCharacters(in: .whitespacesAndNewlines)))"
            }
            _ = try await self.call("GET", "/storage/ping")
            return nil
        } catch let error as StorageServiceError {
            switch error {
            case .unavailable(let message), .notFound(let message), .invalid(let message), .conflict(_, let message): return message
            }
        } catch {
            return "the storage cluster does not answer at \(base)"
        }
    }
}
