public import ServiceContract

extension ControlAPI {
    /// The host's route table: the only place the host's routes, their permissions and their
    /// documentation are declared (each service declares its own). The router dispatches from it and
    /// /openapi.json is generated from it.
    /// - Parameter quotas: The quota resources of the host and its services (the fields of `setQuotas`).
    static func hostRoutes(quotas: [QuotaResource]) -> [HostRoute] { [
        HostRoute(
            method: "GET", path: "/health/live", operationID: "healthLive", summary: "The process is up.",
            access: .anonymous, body: nil, success: 200, responseSchema: "Health",
            handler: { api, _ in .json(200, .object([("status", .string("live"))])) }),
        HostRoute(
            method: "GET", path: "/health/ready", operationID: "healthReady",
            summary: "The database and the storage node answer (503 with the reason when one does not); status degraded names an optional backend that does not (a compute host).",
            access: .anonymous, body: nil, success: 200, responseSchema: "Health",
            handler: { api, _ in try await api.ready() }),
        HostRoute(
            method: "GET", path: "/openapi.json", operationID: "openAPI", summary: "This API's OpenAPI 3 document.",
            access: .anonymous, body: nil, success: 200, responseSchema: nil,
            handler: { api, _ in .json(200, api.document) }),
        HostRoute(
            method: "GET", path: "/metrics", operationID: "metrics",
            summary: "Prometheus text: requests, latency, security events (aggregates only, like the storage node's /metrics).",
            access: .anonymous, body: nil, success: 200, responseSchema: nil,
            textResponse: "Prometheus text exposition format 0.0.4.",
            handler: { api, context in try await api.metricsText(context) }),

        HostRoute(
            method: "POST", path: "/auth/register", operationID: "register",
            summary: "Create a user, with a personal tenant in which they are admin.",
            access: .anonymous,
            body: BodySchema([
                .string("email", maxLength: 254, "The login; unique, case-insensitive."),
                .string("name", maxLength: 100, "The name shown to others."),
                .string("password", maxLength: 256, "At least 10 characters; not the email, not a common password."),
            ]),
            success: 201, responseSchema: "Registration",
            handler: { api, context in try await api.register(context) }),
        HostRoute(
            method: "POST", path: "/auth/login", operationID: "login",
            summary: "Check the password and return a new API key (locked for a while after repeated failures).",
            access: .anonymous,
            body: BodySchema([
                .string("email", maxLength: 254, "The user's email."),
                .string("password", maxLength: 256, "The user's password."),
                .string("tenant_id", required: false, maxLength: 64, "The tenant the key acts in; default the personal tenant."),
                .string("key_name", required: false, maxLength: 100, "A name for the new key; default \"login\"."),
            ]),
            success: 200, responseSchema: "NewKey",
            handler: { api, context in try await api.login(context) }),
        HostRoute(
            method: "POST", path: "/auth/forgot-password", operationID: "forgotPassword",
            summary: "Mail a one-time password-reset token (202 whether or not the email is registered; 5 a minute per email and per address).",
            access: .anonymous,
            body: BodySchema([.string("email", maxLength: 254, "The account's email.")]),
            success: 202, responseSchema: "Accepted",
            handler: { api, context in try await api.forgotPassword(context) }),
        HostRoute(
            method: "POST", path: "/auth/reset-password", operationID: "resetPassword",
            summary: "Set a new password with a reset token; revokes all the user's API keys and ends a lockout.",
            access: .anonymous,
            body: BodySchema([
                .string("token", maxLength: 100, "The token from the reset mail."),
                .string("password", maxLength: 256, "The new password (the rules of registration)."),
            ]),
            success: 200, responseSchema: "PasswordReset",
            handler: { api, context in try await api.resetPassword(context) }),
        HostRoute(
            method: "GET", path: "/auth/me", operationID: "me",
            summary: "The caller: user, tenant of the key, roles and permissions there, tenants.",
            access: .authenticated, body: nil, success: 200, responseSchema: "Me",
            handler: { api, context in try await api.me(context) }),
        HostRoute(
            method: "POST", path: "/auth/keys", operationID: "createKey",
            summary: "Create another API key for the caller, in the tenant of the calling key or another of the caller's.",
            access: .authenticated,
            body: BodySchema([
                .string("name", required: false, maxLength: 100, "A name to recognise the key by."),
                .integer("expires_in_seconds", "Lifetime; default unlimited (60 to 315360000)."),
                .string("tenant_id", required: false, maxLength: 64, "The tenant the key acts in (one you are a member of); default the calling key's."),
            ]),
            success: 201, responseSchema: "NewKey",
            revealsSecret: true,
            handler: { api, context in try await api.createKey(context) }),
        HostRoute(
            method: "GET", path: "/auth/keys", operationID: "listKeys",
            summary: "The caller's keys that are neither revoked nor expired (never the keys themselves).",
            access: .authenticated, body: nil, success: 200, paginated: true, responseSchema: "KeyList",
            handler: { api, context in try await api.listKeys(context) }),
        HostRoute(
            method: "POST", path: "/auth/keys/{id}/rotate", operationID: "rotateKey",
            summary: "Replace a key with a new one; the old one stays valid for a grace period.",
            access: .authenticated,
            body: BodySchema([.integer("grace_seconds", "How long the old key keeps working; default 86400, at most 2592000.")]),
            success: 201, responseSchema: "NewKey",
            revealsSecret: true,
            handler: { api, context in try await api.replaceKey(context, rotate: true) }),
        HostRoute(
            method: "POST", path: "/auth/keys/{id}/regenerate", operationID: "regenerateKey",
            summary: "Replace a key with a new one; the old one stops working now.",
            access: .authenticated, body: nil, success: 201, responseSchema: "NewKey",
            revealsSecret: true,
            handler: { api, context in try await api.replaceKey(context, rotate: false) }),
        HostRoute(
            method: "DELETE", path: "/auth/keys/{id}", operationID: "deleteKey", summary: "Revoke a key now.",
            access: .authenticated, body: nil, success: 204, responseSchema: nil,
            handler: { api, context in try await api.deleteKey(context) }),

        HostRoute(
            method: "GET", path: "/rbac/roles", operationID: "listRoles",
            summary: "The built-in roles and the tenant's own.",
            access: .permission(Permission("role:read")!), body: nil, success: 200, paginated: true, responseSchema: "RoleList",
            handler: { api, context in try await api.listRoles(context) }),
        HostRoute(
            method: "POST", path: "/rbac/roles", operationID: "createRole",
            summary: "Create a role in the tenant (only with permissions the caller holds).",
            access: .permission(Permission("role:create")!),
            body: BodySchema([
                .string("name", maxLength: 63, "Lowercase letters, digits, - and _; unique in the tenant."),
                .strings("permissions", "Patterns resource:action, * allowed in either part."),
                .string("description", required: false, maxLength: 500, "What the role is for."),
            ]),
            success: 201, responseSchema: "Role",
            handler: { api, context in try await api.createRole(context) }),
        HostRoute(
            method: "GET", path: "/rbac/roles/{name}", operationID: "getRole", summary: "One role.",
            access: .permission(Permission("role:read")!), body: nil, success: 200, responseSchema: "Role",
            handler: { api, context in try await api.getRole(context) }),
        HostRoute(
            method: "PUT", path: "/rbac/roles/{name}", operationID: "updateRole",
            summary: "Change a role's permissions or description (built-in roles cannot change).",
            access: .permission(Permission("role:update")!),
            body: BodySchema([
                .strings("permissions", required: false, "The new permission list."),
                .string("description", required: false, maxLength: 500, "The new description."),
            ]),
            success: 200, responseSchema: "Role",
            handler: { api, context in try await api.updateRole(context) }),
        HostRoute(
            method: "DELETE", path: "/rbac/roles/{name}", operationID: "deleteRole",
            summary: "Delete a role that no binding uses.",
            access: .permission(Permission("role:delete")!), body: nil, success: 204, responseSchema: nil,
            handler: { api, context in try await api.deleteRole(context) }),
        HostRoute(
            method: "POST", path: "/rbac/bindings", operationID: "createBinding",
            summary: "Give a user a role in the tenant (making them a member).",
            access: .permission(Permission("binding:create")!),
            body: BodySchema([
                .string("user", maxLength: 254, "The user's email."),
                .string("role", maxLength: 63, "The role's name."),
            ]),
            success: 201, responseSchema: "Binding",
            handler: { api, context in try await api.createBinding(context) }),
        HostRoute(
            method: "GET", path: "/rbac/bindings", operationID: "listBindings", summary: "The tenant's bindings.",
            access: .permission(Permission("binding:read")!), body: nil, success: 200, paginated: true, responseSchema: "BindingList",
            handler: { api, context in try await api.listBindings(context) }),
        HostRoute(
            method: "DELETE", path: "/rbac/bindings/{id}", operationID: "deleteBinding",
            summary: "Remove a binding (not the tenant's last admin binding).",
            access: .permission(Permission("binding:delete")!), body: nil, success: 204, responseSchema: nil,
            handler: { api, context in try await api.deleteBinding(context) }),

        HostRoute(
            method: "POST", path: "/tenants", operationID: "createTenant",
            summary: "Create a tenant (project); the caller becomes its admin.",
            access: .authenticated,
            body: BodySchema([.string("name", maxLength: 100, "A name for people; need not be unique.")]),
            success: 201, responseSchema: "MyTenant",
            handler: { api, context in try await api.createTenant(context) }),
        HostRoute(
            method: "GET", path: "/tenants", operationID: "listTenants",
            summary: "The tenants the caller is a member of, with their roles there.",
            access: .authenticated, body: nil, success: 200, paginated: true, responseSchema: "TenantList",
            handler: { api, context in try await api.listTenants(context) }),
        HostRoute(
            method: "GET", path: "/tenants/{id}", operationID: "getTenant",
            summary: "One of the caller's tenants (404 for any other).",
            access: .authenticated, body: nil, success: 200, responseSchema: "MyTenant",
            handler: { api, context in try await api.getTenant(context) }),
        HostRoute(
            method: "GET", path: "/tenants/{id}/members", operationID: "listMembers",
            summary: "The members of the key's tenant and their roles.",
            access: .permission(Permission("member:read")!), body: nil, success: 200, paginated: true, responseSchema: "MemberList",
            handler: { api, context in try await api.listMembers(context) }),
        HostRoute(
            method: "POST", path: "/tenants/{id}/members", operationID: "addMember",
            summary: "Add a registered user to the key's tenant with roles (bindings; only roles the caller could grant).",
            access: .permission(Permission("member:create")!),
            body: BodySchema([
                .string("email", maxLength: 254, "The user's email; they must have registered."),
                .strings("roles", "Role names in this tenant."),
            ]),
            success: 201, responseSchema: "Member",
            handler: { api, context in try await api.addMember(context) }),
        HostRoute(
            method: "DELETE", path: "/tenants/{id}/members/{user_id}", operationID: "removeMember",
            summary: "Remove a member: their bindings go and their keys in this tenant are revoked (not the last admin).",
            access: .permission(Permission("member:delete")!), body: nil, success: 204, responseSchema: nil,
            handler: { api, context in try await api.removeMember(context) }),
        HostRoute(
            method: "GET", path: "/tenants/{id}/quotas", operationID: "getQuotas",
            summary: "The key's tenant's quotas and what it uses of them.",
            access: .permission(Permission("quota:read")!), body: nil, success: 200, responseSchema: "Quotas",
            handler: { api, context in try await api.getQuotas(context) }),
        HostRoute(
            method: "PUT", path: "/admin/tenants/{id}/quotas", operationID: "setQuotas",
            summary: "Set any tenant's quotas (platform operators only).",
            access: .platformAdmin,
            body: BodySchema(quotas.map { .integer("max_" + $0.rawValue, "The limit of \($0.rawValue).") }),
            success: 200, responseSchema: "Quotas",
            handler: { api, context in try await api.setQuotas(context) }),
        HostRoute(
            method: "GET", path: "/tasks", operationID: "listTasks",
            summary: "The tenant's background tasks, newest first (?state=queued|running|succeeded|dead, ?kind=, ?limit= up to 1000).",
            access: .permission(Permission("task:read")!), body: nil, success: 200, paginated: true, responseSchema: "TaskList",
            handler: { api, context in try await api.listTasks(context) }),
        HostRoute(
            method: "GET", path: "/tasks/{id}", operationID: "getTask", summary: "One background task of the tenant.",
            access: .permission(Permission("task:read")!), body: nil, success: 200, responseSchema: "Task",
            handler: { api, context in try await api.getTask(context) }),
        HostRoute(
            method: "POST", path: "/tasks/{id}/retry", operationID: "retryTask",
            summary: "Queue a dead task again, now, with a fresh set of attempts.",
            access: .permission(Permission("task:retry")!), body: nil, success: 200, responseSchema: "Task",
            handler: { api, context in try await api.retryTask(context) }),
    ] }
}

extension ControlAPI {
    /// The specs of the host's own routes (for the API reference's tests).
    public static func hostRouteSpecs(quotas: [QuotaResource]) -> [RouteSpec] { Self.hostRoutes(quotas: quotas).map(\.spec) }
}
