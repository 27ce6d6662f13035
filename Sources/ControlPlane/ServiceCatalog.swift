public import ServiceContract

/// The services a control plane hosts, checked once, with what the host derives from their
/// declarations: the permissions and what the built-in roles grant, the quotas and their defaults,
/// the task handlers and schedules, the migrations per service.
///
/// Built-in roles are computed here, never stored: `admin` grants `*:*`, `viewer` `*:read`,
/// `developer` `*:read` plus every declared permission whose ``PermissionSpec/grantedTo`` names it.
public struct ServiceCatalog: Sendable {
    /// The host's own name in `schema_migrations`, task kinds and the API reference.
    public static let hostName = "core"

    public let services: [any CloudService]
    /// The host's permissions, then each service's.
    public let permissions: [PermissionSpec]
    /// The host's quotas (`api_keys`, `members`), then each service's.
    public let quotas: [QuotaSpec]
    private let grants: [BuiltinRole: [Permission]]

    /// The permissions of the host's own routes. Reads are `developer`'s and `viewer`'s through
    /// `*:read`; the rest is `admin`'s.
    public static let hostPermissions: [PermissionSpec] = [
        PermissionSpec("role:read", "See the tenant's roles.", grantedTo: [.developer, .viewer]),
        PermissionSpec("role:create", "Create roles in the tenant.", grantedTo: []),
        PermissionSpec("role:update", "Change the tenant's roles.", grantedTo: []),
        PermissionSpec("role:delete", "Delete the tenant's roles.", grantedTo: []),
        PermissionSpec("binding:read", "See who has which role.", grantedTo: [.developer, .viewer]),
        PermissionSpec("binding:create", "Give a user a role in the tenant.", grantedTo: []),
        PermissionSpec("binding:delete", "Take a role from a user.", grantedTo: []),
        PermissionSpec("member:read", "See the tenant's members.", grantedTo: [.developer, .viewer]),
        PermissionSpec("member:create", "Add members.", grantedTo: []),
        PermissionSpec("member:delete", "Remove members.", grantedTo: []),
        PermissionSpec("quota:read", "See the tenant's quotas and use.", grantedTo: [.developer, .viewer]),
        PermissionSpec("task:read", "See the tenant's background tasks.", grantedTo: [.developer, .viewer]),
        PermissionSpec("task:retry", "Queue a dead task again.", grantedTo: []),
    ]

    /// The host's own quotas (counted by the host itself).
    public static let hostQuotas: [QuotaSpec] = [
        QuotaSpec(.apiKeys, defaultLimit: 100, description: "Active API keys acting in the tenant."),
        QuotaSpec(.members, defaultLimit: 100, description: "Members."),
    ]

    /// Checks the services' declarations against each other and the host's.
    /// - Throws: ``ControlPlaneError`` naming the first conflict: a bad or repeated name, a permission
    ///   resource two services declare, a route outside the service's prefixes, a task kind outside
    ///   its name, a quota declared twice.
    public init(services: [any CloudService] = []) throws(ControlPlaneError) {
        var names: Set<String> = [Self.hostName]
        var resourceOwners: [String: String] = [:]
        for spec in Self.hostPermissions { resourceOwners[spec.permission.resource] = Self.hostName }
        var permissions = Self.hostPermissions
        var quotas = Self.hostQuotas
        for service in services {
            let name = service.name
            guard !name.isEmpty, name.utf8.count <= 30,
                name.unicodeScalars.allSatisfy({ ("a"..."z").contains($0) || ("0"..."9").contains($0) })
            else { throw ControlPlaneError("a service's name must be lowercase letters and digits, not '\(name)'") }
            guard names.insert(name).inserted else { throw ControlPlaneError("two services are named \(name)") }
            for spec in service.permissions {
                let resource = spec.permission.resource
                if let owner = resourceOwners[resource], owner != name {
                    throw ControlPlaneError("the permission resource '\(resource)' of \(name) is \(owner)'s already")
                }
                resourceOwners[resource] = name
                if permissions.contains(where: { $0.permission == spec.permission }) {
                    throw ControlPlaneError("\(name) declares the permission \(spec.permission) twice")
                }
                permissions.append(spec)
            }
            for route in service.routes {
                guard service.routePrefixes.contains(where: { route.spec.path == $0 || route.spec.path.hasPrefix($0 + "/") }) else {
                    throw ControlPlaneError("the route \(route.spec.method) \(route.spec.path) of \(name) is outside its prefixes \(service.routePrefixes)")
                }
                if case .permission(let required) = route.spec.access,
                    !service.permissions.contains(where: { $0.permission == required })
                {
                    throw ControlPlaneError("the route \(route.spec.operationID) of \(name) needs \(required), which \(name) does not declare")
                }
            }
            for kind in service.tasks.map(\.kind) + service.schedules.map(\.kind) where !kind.hasPrefix(name + ".") {
                throw ControlPlaneError("the task kind \(kind) of \(name) does not start with '\(name).'")
            }
            for quota in service.quotas {
                guard quota.resource.isValid else { throw ControlPlaneError("\(name)'s quota '\(quota.resource)' is not a valid name") }
                if quotas.contains(where: { $0.resource == quota.resource }) {
                    throw ControlPlaneError("the quota \(quota.resource) of \(name) is declared twice")
                }
                quotas.append(quota)
            }
        }
        self.services = services
        self.permissions = permissions
        self.quotas = quotas
        var grants: [BuiltinRole: [Permission]] = [:]
        for role in BuiltinRole.allCases { grants[role] = role.permissions(declared: permissions) }
        self.grants = grants
    }

    /// The host alone, with no services.
    public static let hostOnly: ServiceCatalog = {
        do { return try ServiceCatalog() } catch { preconditionFailure("the host's own declarations conflict: \(error)") }
    }()

    /// What a built-in role grants.
    public func permissions(of role: BuiltinRole) -> [Permission] { self.grants[role] ?? [] }

    /// The default limit of every quota.
    public var quotaDefaults: QuotaDefaults {
        var defaults = QuotaDefaults()
        defaults.limits = [:]
        for quota in self.quotas { defaults.limits[quota.resource] = quota.defaultLimit }
        return defaults
    }

    /// The quota resources in display order.
    public var quotaResources: [QuotaResource] { self.quotas.map(\.resource) }

    /// Every task handler of the services.
    public var taskHandlers: [TaskHandler] { self.services.flatMap(\.tasks) }

    /// Every schedule of the services.
    public var schedules: [TaskSchedule] { self.services.flatMap(\.schedules) }
}
