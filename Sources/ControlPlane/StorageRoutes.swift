import Logging

/// Storage as a service: a tenant's S3 access keys and buckets, kept by the storage cluster (not in
/// the control plane's database) and reached through its admin API. Every route acts in the tenant
/// of the calling API key; another tenant's key or bucket is a 404.
extension ControlAPI {
    static let storageRoutes: [Route] = [
        Route(
            method: "POST", path: "/storage/keys", operationID: "createStorageKey",
            summary: "Create an S3 access key for the tenant; the secret is in this answer only.",
            access: .permission(Permission("storage-key:create")!),
            body: BodySchema([.string("name", required: false, maxLength: 100, "A name to recognise the key by.")]),
            success: 201, responseSchema: "NewStorageKey",
            handler: { api, context in try await api.createStorageKey(context) }),
        Route(
            method: "GET", path: "/storage/keys", operationID: "listStorageKeys",
            summary: "The tenant's S3 access keys (never their secrets).",
            access: .permission(Permission("storage-key:read")!), body: nil, success: 200, responseSchema: "StorageKeyList",
            handler: { api, context in try await api.listStorageKeys(context) }),
        Route(
            method: "DELETE", path: "/storage/keys/{id}", operationID: "deleteStorageKey",
            summary: "Delete an S3 access key of the tenant; S3 refuses it from then on (InvalidAccessKeyId).",
            access: .permission(Permission("storage-key:delete")!), body: nil, success: 204, responseSchema: nil,
            handler: { api, context in try await api.deleteStorageKey(context) }),
        Route(
            method: "GET", path: "/storage/buckets", operationID: "listBuckets", summary: "The tenant's buckets.",
            access: .permission(Permission("bucket:read")!), body: nil, success: 200, responseSchema: "BucketList",
            handler: { api, context in try await api.listBuckets(context) }),
        Route(
            method: "POST", path: "/storage/buckets", operationID: "createBucket",
            summary: "Create a bucket for the tenant (names are shared by all tenants: 409 when taken).",
            access: .permission(Permission("bucket:create")!),
            body: BodySchema([.string("name", maxLength: 63, "3 to 63 lowercase letters, digits, dots and hyphens.")]),
            success: 201, responseSchema: "Bucket",
            handler: { api, context in try await api.createBucket(context) }),
        Route(
            method: "DELETE", path: "/storage/buckets/{name}", operationID: "deleteBucket",
            summary: "Delete an empty bucket of the tenant (409 when it holds objects).",
            access: .permission(Permission("bucket:delete")!), body: nil, success: 204, responseSchema: nil,
            handler: { api, context in try await api.deleteBucket(context) }),
    ]

    /// The storage service, or 503 when this control plane has none configured.
    private func storageService() throws(APIError) -> any StorageService {
        guard let storage = self.configuration.storage else {
            throw APIError(
                status: 503, code: "storage_unavailable",
                message: "this control plane has no storage cluster configured (--storage-endpoint)")
        }
        return storage
    }

    /// Runs a storage call, turning its refusals into API errors.
    private func storage<T>(_ body: (any StorageService) async throws -> T) async throws -> T {
        let service = try self.storageService()
        do {
            return try await body(service)
        } catch let error as StorageServiceError {
            switch error {
            case .notFound(let message): throw APIError.notFound(message)
            case .invalid(let message): throw APIError.invalidRequest(message)
            case .conflict(let code, let message): throw APIError.conflict(code, message)
            case .unavailable(let message):
                self.logger.warning("storage cluster unavailable", metadata: ["error": "\(message)"])
                throw APIError(status: 503, code: "storage_unavailable", message: message)
            }
        }
    }

    func createStorageKey(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let name = context.body.string("name")?.trimmingSpaces()
        let service = try self.storageService()
        let key = try await self.storage { service in try await service.createKey(tenant: caller.tenant.id, name: name) }
        self.logger.info(
            "storage key created",
            metadata: ["request-id": "\(context.request.requestID)", "tenant-id": "\(caller.tenant.id)", "access-key-id": "\(key.accessKeyID)"])
        var members: [(String, JSONValue)] = [("secret_access_key", .string(key.secretAccessKey ?? ""))]
        members.append(("endpoint", .string(service.publicEndpoint)))
        members.append(("region", .string(service.region)))
        guard case .object(let described) = Self.json(key) else { return .json(201, .object(members)) }
        return .json(201, .object(described + members))
    }

    func listStorageKeys(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let keys = try await self.storage { service in try await service.keys(tenant: caller.tenant.id) }
        return .json(200, .object([("keys", .array(keys.map(Self.json)))]))
    }

    func deleteStorageKey(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let id = context.parameter("id")
        try await self.storage { service in
            do {
                try await service.deleteKey(tenant: caller.tenant.id, accessKeyID: id)
            } catch StorageServiceError.notFound {
                throw StorageServiceError.notFound("this tenant has no storage key \(id)")
            }
        }
        self.logger.info(
            "storage key deleted",
            metadata: ["request-id": "\(context.request.requestID)", "tenant-id": "\(caller.tenant.id)", "access-key-id": "\(id)"])
        return .noContent
    }

    func listBuckets(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let buckets = try await self.storage { service in try await service.buckets(tenant: caller.tenant.id) }
        return .json(200, .object([("buckets", .array(buckets.map(Self.json)))]))
    }

    func createBucket(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let name = context.body.string("name") ?? ""
        let bucket = try await self.storage { service in try await service.createBucket(tenant: caller.tenant.id, name: name) }
        return .json(201, Self.json(bucket))
    }

    func deleteBucket(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let name = context.parameter("name")
        try await self.storage { service in
            do {
                try await service.deleteBucket(tenant: caller.tenant.id, name: name)
            } catch StorageServiceError.notFound {
                throw StorageServiceError.notFound("this tenant has no bucket \(name)")
            }
        }
        return .noContent
    }

    static func json(_ key: StorageKey) -> JSONValue {
        .object([
            ("access_key_id", .string(key.accessKeyID)), ("name", .string(key.name)), ("tenant_id", .string(key.tenantID)),
            ("created_at", .string(key.createdAt)),
        ])
    }

    static func json(_ bucket: StorageBucket) -> JSONValue {
        .object([("name", .string(bucket.name)), ("tenant_id", .string(bucket.tenantID)), ("created_at", .string(bucket.createdAt))])
    }
}
