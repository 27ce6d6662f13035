public import ServiceContract
import Database
import Foundation
import Logging

/// Tenants, their members and quotas.
///
/// Visibility: a tenant the caller is not a member of does not exist for them (404, whether it
/// exists or not). `GET /tenants/{id}` answers for any tenant the caller is a member of; the routes
/// below `/tenants/{id}/` act only on the tenant of the calling key, with the permissions the caller
/// holds there, and answer 404 for any other id.
extension ControlAPI {
    /// The tenant `tenantID` when `userID` is a member; 404 otherwise.
    func memberTenant(_ tenantID: String, userID: String) async throws -> TenantRecord {
        guard try await self.store.isMember(userID: userID, tenantID: tenantID), let tenant = try await self.store.tenant(id: tenantID) else {
            throw APIError.notFound("no tenant \(tenantID) among yours")
        }
        return tenant
    }

    /// The path's tenant when it is the calling key's; 404 otherwise.
    func keyTenant(_ context: RouteContext) throws -> Caller {
        let caller = try context.authenticated
        let id = context.parameter("id")
        guard id == caller.tenantID else {
            throw APIError.notFound(
                "no tenant \(id) for this key: a key acts in one tenant (\(caller.tenantID)); use a key of that tenant (cloud tenants switch)")
        }
        return caller
    }

    /// Stores a new key unless the tenant has its quota of active keys.
    func insertKeyWithinQuota(_ record: APIKeyRecord) async throws {
        let current = try await self.store.activeKeyCount(tenantID: record.tenantID, now: record.createdAt)
        try await self.store.checkQuota(tenantID: record.tenantID, resource: .apiKeys, current: current)
        try await self.store.insertKey(record)
        self.metrics.count(.keysCreated)
    }

    func createTenant(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let name = (context.body.string("name") ?? "").trimmingSpaces()
        guard !name.isEmpty else { throw APIError.invalidRequest("\"name\" must not be empty") }
        let tenant = TenantRecord(id: SecureRandom.identifier(prefix: "tnt_"), name: name, personalUserID: nil, createdAt: self.now())
        try await self.store.createTenant(tenant, owner: caller.userID, adminBindingID: SecureRandom.identifier(prefix: "rb_"))
        self.logger.info("tenant created", metadata: ["request-id": "\(context.request.requestID)", "tenant-id": "\(tenant.id)"])
        return .json(201, self.tenantJSON(tenant, roles: [BuiltinRole.admin.rawValue], current: false))
    }

    func listTenants(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        var items: [JSONValue] = []
        // The personal tenant first, then by when the caller joined.
        let tenants = try await self.store.tenants(ofUser: caller.userID)
        let ordered = tenants.filter({ $0.personalUserID == caller.userID }) + tenants.filter({ $0.personalUserID != caller.userID })
        let (page, next) = try Self.paged(context, ordered, id: \.id)
        for tenant in page {
            let roles = try await self.store.grants(userID: caller.userID, tenantID: tenant.id).roles
            items.append(self.tenantJSON(tenant, roles: roles, current: tenant.id == caller.tenantID))
        }
        return .json(200, .object([("tenants", .array(items)), Self.next(next)]))
    }

    func getTenant(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let tenant = try await self.memberTenant(context.parameter("id"), userID: caller.userID)
        let roles = try await self.store.grants(userID: caller.userID, tenantID: tenant.id).roles
        return .json(200, self.tenantJSON(tenant, roles: roles, current: tenant.id == caller.tenantID))
    }

    func tenantJSON(_ tenant: TenantRecord, roles: [String], current: Bool) -> JSONValue {
        guard case .object(var members) = Self.json(tenant) else { return Self.json(tenant) }
        members.append(("roles", .array(roles.map { .string($0) })))
        members.append(("current", .bool(current)))
        return .object(members)
    }

    func listMembers(_ context: RouteContext) async throws -> APIResponse {
        let caller = try self.keyTenant(context)
        let members = try await self.store.members(tenantID: caller.tenantID)
        let (page, next) = try Self.paged(context, members, id: \.userID)
        return .json(200, .object([("members", .array(page.map(Self.json))), Self.next(next)]))
    }

    func addMember(_ context: RouteContext) async throws -> APIResponse {
        let caller = try self.keyTenant(context)
        let email = (context.body.string("email") ?? "").trimmingSpaces().lowercased()
        let roleNames = (context.body.strings("roles") ?? []).flatMap { $0.split(separator: ",").map { String($0).trimmingSpaces() } }
        guard !roleNames.isEmpty else { throw APIError.invalidRequest("\"roles\" must name at least one role") }
        guard let user = try await self.store.user(email: email) else {
            throw APIError.notFound("no user with the email \(email); they must register first")
        }
        var roles: [RoleRecord] = []
        for name in roleNames where !roles.contains(where: { $0.name == name }) {
            guard let role = try await self.store.role(tenantID: caller.tenantID, name: name) else {
                throw APIError.notFound("no role named \(name) in this tenant")
            }
            try self.checkGrantable(role.permissions, by: caller)
            roles.append(role)
        }
        if try await !self.store.isMember(userID: user.id, tenantID: caller.tenantID) {
            try await self.store.checkQuota(
                tenantID: caller.tenantID, resource: .members, current: try await self.store.memberCount(tenantID: caller.tenantID))
        }
        let now = self.now()
        for role in roles {
            let binding = BindingRecord(
                id: SecureRandom.identifier(prefix: "rb_"), tenantID: caller.tenantID, userID: user.id, roleID: role.id, createdAt: now)
            do {
                try await self.store.insertBinding(binding)
            } catch let error as ControlStoreError where error.isDuplicate {
                continue  // adding a member with a role they have is not an error
            }
        }
        self.logger.info(
            "member added", metadata: ["request-id": "\(context.request.requestID)", "tenant-id": "\(caller.tenantID)", "user-id": "\(user.id)"])
        let member = try await self.store.members(tenantID: caller.tenantID).first { $0.userID == user.id }
        return .json(201, member.map(Self.json) ?? .null)
    }

    func removeMember(_ context: RouteContext) async throws -> APIResponse {
        let caller = try self.keyTenant(context)
        let userID = context.parameter("user_id")
        let revoked: Int
        do {
            revoked = try await self.store.removeMember(tenantID: caller.tenantID, userID: userID, at: self.now())
        } catch let error as ControlStoreError where error.isNotFound {
            throw APIError.notFound("no member \(userID) in this tenant")
        } catch let error as ControlStoreError where error.isInUse {
            throw APIError.conflict("last_admin", "this member is the tenant's last admin; make another member admin first")
        }
        self.logger.info(
            "member removed",
            metadata: [
                "request-id": "\(context.request.requestID)", "tenant-id": "\(caller.tenantID)", "user-id": "\(userID)",
                "revoked-keys": "\(revoked)",
            ])
        return .noContent
    }

    func getQuotas(_ context: RouteContext) async throws -> APIResponse {
        let caller = try self.keyTenant(context)
        return .json(200, try await self.quotasJSON(tenantID: caller.tenantID))
    }

    func setQuotas(_ context: RouteContext) async throws -> APIResponse {
        let id = context.parameter("id")
        guard try await self.store.tenant(id: id) != nil else { throw APIError.notFound("no tenant \(id)") }
        var limits: [QuotaResource: Int64?] = [:]
        for resource in self.store.catalog.quotaResources {
            if let value = context.body.integer("max_" + resource.rawValue) {
                guard value >= 0 else { throw APIError.invalidRequest("\"max_\(resource.rawValue)\" must be 0 or more") }
                limits[resource] = value
            }
        }
        guard !limits.isEmpty else {
            throw APIError.invalidRequest("give at least one of \(self.store.catalog.quotaResources.map { "\"max_\($0.rawValue)\"" }.joined(separator: ", "))")
        }
        try await self.store.setQuotas(tenantID: id, limits: limits, at: self.now())
        self.logger.notice(
            "quotas set",
            metadata: [
                "request-id": "\(context.request.requestID)", "tenant-id": "\(id)",
                "by": "\(context.caller?.userID ?? "")",
                "limits": "\(limits.map { "\($0.key)=\($0.value.map { String($0) } ?? "default")" }.sorted().joined(separator: ","))",
            ])
        return .json(200, try await self.quotasJSON(tenantID: id))
    }

    func quotasJSON(tenantID: String) async throws -> JSONValue {
        let overrides = try await self.store.quotaOverrides(tenantID: tenantID)
        var usage: [QuotaResource: Int64] = [:]
        usage[.apiKeys] = try await self.store.activeKeyCount(tenantID: tenantID, now: self.now())
        usage[.members] = try await self.store.memberCount(tenantID: tenantID)
        for quota in self.store.catalog.quotas where usage[quota.resource] == nil {
            if let count = quota.usage {
                usage[quota.resource] = try await self.store.database.transaction { db in try await count(tenantID, db) }
            }
        }
        let items: [JSONValue] = self.store.catalog.quotaResources.map { resource in
            var members: [(String, JSONValue)] = [
                ("resource", .string(resource.rawValue)),
                ("limit", .int(overrides[resource] ?? self.store.quotaDefaults.limit(resource))),
                ("default", .bool(overrides[resource] == nil)),
            ]
            members.append(("used", usage[resource].map { .int($0) } ?? .null))
            return .object(members)
        }
        return .object([("tenant_id", .string(tenantID)), ("quotas", .array(items))])
    }

    static func json(_ member: MemberRecord) -> JSONValue {
        .object([
            ("user_id", .string(member.userID)), ("email", .string(member.email)), ("name", .string(member.name)),
            ("roles", .array(member.roles.map { .string($0) })), ("joined_at", time(member.joinedAt)),
        ])
    }
}
