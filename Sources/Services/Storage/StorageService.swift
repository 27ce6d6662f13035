import Logging
public import ServiceContract

/// Storage as a service: a tenant's S3 access keys and buckets, kept by the storage cluster (not in
/// the control plane's database) and reached through its admin API. Every route acts in the tenant
/// of the calling API key; another tenant's key or bucket is a 404.
public struct StorageService: CloudService {
    /// The cluster behind the routes; nil answers them with 503 `storage_unavailable` (a control plane
    /// started without `--storage-endpoint`).
    public let cluster: (any StorageCluster)?

    public init(cluster: (any StorageCluster)?) { self.cluster = cluster }

    public var name: String { "storage" }
    public var summary: String { "S3 access keys and buckets of the tenant, kept by the storage cluster." }

    public var permissions: [PermissionSpec] {
        [
            PermissionSpec("storage-key:read", "See the tenant's S3 access keys (never their secrets).", grantedTo: [.developer, .viewer]),
            PermissionSpec("storage-key:create", "Create S3 access keys.", grantedTo: [.developer]),
            PermissionSpec("storage-key:delete", "Delete S3 access keys.", grantedTo: [.developer]),
            PermissionSpec("bucket:read", "See the tenant's buckets.", grantedTo: [.developer, .viewer]),
            PermissionSpec("bucket:create", "Create buckets.", grantedTo: [.developer]),
            PermissionSpec("bucket:delete", "Delete empty buckets.", grantedTo: [.developer]),
        ]
    }

    public var quotas: [QuotaSpec] {
        [
            QuotaSpec(QuotaResource(rawValue: "buckets"), defaultLimit: 100, description: "Buckets the tenant owns."),
            QuotaSpec(QuotaResource(rawValue: "storage_bytes"), defaultLimit: 1 << 40, description: "Bytes the tenant's objects take."),
        ]
    }

    public var readinessChecks: [ReadinessCheck] {
        guard let cluster else { return [] }
        return [ReadinessCheck(name: "storage", check: cluster.check)]
    }

    static let keyShape = ResponseShape<StorageKey>("StorageKey") {
        $0.string("access_key_id") { $0.accessKeyID }
        $0.string("name") { $0.name }
        $0.string("tenant_id") { $0.tenantID }
        $0.string("created_at", "RFC 3339.") { $0.createdAt }
    }

    /// A new key: the key's fields, its secret (shown once), and where to use it.
    struct NewKey {
        var key: StorageKey
        var endpoint: String
        var region: String
    }

    static let newKeyShape = ResponseShape<NewKey>("NewStorageKey") {
        $0.string("access_key_id") { $0.key.accessKeyID }
        $0.string("name") { $0.key.name }
        $0.string("tenant_id") { $0.key.tenantID }
        $0.string("created_at", "RFC 3339.") { $0.key.createdAt }
        $0.string("secret_access_key", "Shown in this answer only.") { $0.key.secretAccessKey ?? "" }
        $0.string("endpoint", "The S3 endpoint to use the key with.") { $0.endpoint }
        $0.string("region", "The region of the key's signatures.") { $0.region }
    }

    static let bucketShape = ResponseShape<StorageBucket>("Bucket") {
        $0.string("name") { $0.name }
        $0.string("tenant_id") { $0.tenantID }
        $0.string("created_at", "RFC 3339.") { $0.createdAt }
    }

    static let keyList = ListShape("StorageKeyList", itemsKey: "keys", item: Self.keyShape)
    static let bucketList = ListShape("BucketList", itemsKey: "buckets", item: Self.bucketShape)

    public var routes: [Route] {
        var createKey = RouteSpec(
            method: "POST", path: "/storage/keys", operationID: "createStorageKey",
            summary: "Create an S3 access key for the tenant; the secret is in this answer only.",
            access: .permission(Permission("storage-key:create")!),
            body: BodySchema([.string("name", required: false, maxLength: 100, "A name to recognise the key by.")]),
            success: 201, response: .shape(Self.newKeyShape.component), errors: Self.unavailable)
        createKey.revealsSecret = true
        return [
            Route(createKey) { context in try await self.createKey(context) },
            Route(
                method: "GET", path: "/storage/keys", operationID: "listStorageKeys",
                summary: "The tenant's S3 access keys (never their secrets).",
                access: .permission(Permission("storage-key:read")!), success: 200, response: .shape(Self.keyList.component),
                errors: Self.unavailable, paginated: true
            ) { context in try await self.listKeys(context) },
            Route(
                method: "DELETE", path: "/storage/keys/{id}", operationID: "deleteStorageKey",
                summary: "Delete an S3 access key of the tenant; S3 refuses it from then on (InvalidAccessKeyId).",
                access: .permission(Permission("storage-key:delete")!), success: 204, response: .empty, errors: Self.unavailable
            ) { context in try await self.deleteKey(context) },
            Route(
                method: "GET", path: "/storage/buckets", operationID: "listBuckets", summary: "The tenant's buckets.",
                access: .permission(Permission("bucket:read")!), success: 200, response: .shape(Self.bucketList.component),
                errors: Self.unavailable, paginated: true
            ) { context in try await self.listBuckets(context) },
            Route(
                method: "POST", path: "/storage/buckets", operationID: "createBucket",
                summary: "Create a bucket for the tenant (names are shared by all tenants: 409 when taken).",
                access: .permission(Permission("bucket:create")!),
                body: BodySchema([.string("name", maxLength: 63, "3 to 63 lowercase letters, digits, dots and hyphens.")]),
                success: 201, response: .shape(Self.bucketShape.component), errors: Self.unavailable + [(409, "bucket_exists")]
            ) { context in try await self.createBucket(context) },
            Route(
                method: "DELETE", path: "/storage/buckets/{name}", operationID: "deleteBucket",
                summary: "Delete an empty bucket of the tenant (409 when it holds objects).",
                access: .permission(Permission("bucket:delete")!), success: 204, response: .empty,
                errors: Self.unavailable + [(409, "bucket_not_empty")]
            ) { context in try await self.deleteBucket(context) },
        ]
    }

    static let unavailable: [(status: Int, code: String)] = [(503, "storage_unavailable")]

    /// Runs a storage call; the cluster's refusals are ``StorageServiceError``s, which map to API errors.
    private func call<T>(_ context: RouteContext, _ body: (any StorageCluster) async throws -> T) async throws -> T {
        guard let cluster else {
            throw StorageServiceError.unavailable("this control plane has no storage cluster configured (--storage-endpoint)")
        }
        do {
            return try await body(cluster)
        } catch StorageServiceError.unavailable(let message) {
            context.environment.logger.warning("storage cluster unavailable", metadata: ["error": "\(message)"])
            throw StorageServiceError.unavailable(message)
        }
    }

    func createKey(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let name = context.body.string("name")?.trimmingSpaces()
        let key = try await self.call(context) { try await $0.createKey(tenant: caller.tenantID, name: name) }
        context.environment.logger.info(
            "storage key created",
            metadata: ["request-id": "\(context.request.requestID)", "tenant-id": "\(caller.tenantID)", "access-key-id": "\(key.accessKeyID)"])
        let created = NewKey(key: key, endpoint: self.cluster?.publicEndpoint ?? "", region: self.cluster?.region ?? "")
        return .json(201, Self.newKeyShape.json(created))
    }

    func listKeys(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let page = try context.page()
        let keys = try await self.call(context) { try await $0.keys(tenant: caller.tenantID) }
        let (items, next) = page.slice(keys.sorted { $0.accessKeyID < $1.accessKeyID }, key: \.accessKeyID)
        return .json(200, Self.keyList.json(items, nextToken: next))
    }

    func deleteKey(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let id = context.parameter("id")
        try await self.call(context) { cluster in
            do {
                try await cluster.deleteKey(tenant: caller.tenantID, accessKeyID: id)
            } catch StorageServiceError.notFound {
                throw StorageServiceError.notFound("this tenant has no storage key \(id)")
            }
        }
        context.environment.logger.info(
            "storage key deleted",
            metadata: ["request-id": "\(context.request.requestID)", "tenant-id": "\(caller.tenantID)", "access-key-id": "\(id)"])
        return .noContent
    }

    func listBuckets(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let page = try context.page()
        let buckets = try await self.call(context) { try await $0.buckets(tenant: caller.tenantID) }
        let (items, next) = page.slice(buckets.sorted { $0.name < $1.name }, key: \.name)
        return .json(200, Self.bucketList.json(items, nextToken: next))
    }

    func createBucket(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let name = context.body.string("name") ?? ""
        let bucket = try await self.call(context) { try await $0.createBucket(tenant: caller.tenantID, name: name) }
        return .json(201, Self.bucketShape.json(bucket))
    }

    func deleteBucket(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let name = context.parameter("name")
        try await self.call(context) { cluster in
            do {
                try await cluster.deleteBucket(tenant: caller.tenantID, name: name)
            } catch StorageServiceError.notFound {
                throw StorageServiceError.notFound("this tenant has no bucket \(name)")
            }
        }
        return .noContent
    }
}

extension StorageServiceError: APIErrorConvertible {
    /// The storage service's errors on the wire.
    public var apiError: APIError {
        switch self {
        case .notFound(let message): APIError.notFound(message)
        case .invalid(let message): APIError.invalidRequest(message)
        case .conflict(let code, let message): APIError.conflict(code, message)
        case .unavailable(let message): APIError(status: 503, code: "storage_unavailable", message: message)
        }
    }
}
