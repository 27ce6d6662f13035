/// A permission `resource:action`, where either part may be the wildcard `*`.
///
/// Routes require concrete permissions (`role:read`); roles grant patterns (`bucket:*`, `*:read`,
/// `*:*`). A pattern matches a required permission when each part is equal or `*`. The single
/// token `*` is accepted as a shorthand for `*:*`.
public struct Permission: Sendable, Hashable, CustomStringConvertible, Comparable {
    /// The kind of resource (`bucket`, `role`), or `*`.
    public let resource: String
    /// What is done to it (`read`, `create`), or `*`.
    public let action: String

    /// The wildcard for everything.
    public static let all = Permission(uncheckedResource: "*", action: "*")

    /// Parses `resource:action`; nil when it is not of that form. Parts are lowercase letters,
    /// digits, `-` and `_` (at most 64 characters each), or `*`.
    public init?(_ text: String) {
        let trimmed = text.trimmingSpaces()
        if trimmed == "*" {
            self = .all
            return
        }
        let parts = trimmed.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, Self.isValidPart(parts[0]), Self.isValidPart(parts[1]) else { return nil }
        self.resource = String(parts[0])
        self.action = String(parts[1])
    }

    public init(uncheckedResource resource: String, action: String) {
        self.resource = resource
        self.action = action
    }

    public var description: String { "\(self.resource):\(self.action)" }

    /// Whether this granted pattern allows `required`.
    ///
    /// A wildcard in `required` is matched only by a wildcard here: `bucket:*` is needed to allow
    /// `bucket:*`, `bucket:read` does not allow it. This makes `matches` also the "covers" relation
    /// used to stop a user from granting more than they hold.
    /// - Parameter required: The permission a route (or a role being granted) needs.
    /// - Returns: True when this pattern allows it.
    public func matches(_ required: Permission) -> Bool {
        (self.resource == "*" || self.resource == required.resource)
            && (self.action == "*" || self.action == required.action)
    }

    /// Whether any of `granted` allows `required`.
    public static func allows(_ granted: some Sequence<Permission>, _ required: Permission) -> Bool {
        granted.contains { $0.matches(required) }
    }

    /// Parses a comma-separated list; returns the entries that are not permissions as the error.
    public static func parseList(_ items: [String]) -> Result<[Permission], InvalidPermissions> {
        var permissions: [Permission] = []
        var invalid: [String] = []
        for item in items {
            if let permission = Permission(item) {
                if !permissions.contains(permission) { permissions.append(permission) }
            } else {
                invalid.append(item)
            }
        }
        return invalid.isEmpty ? .success(permissions) : .failure(InvalidPermissions(items: invalid))
    }

    /// Entries of a permission list that do not parse.
    public struct InvalidPermissions: Error, Sendable {
        public var items: [String]
    }

    public static func < (lhs: Permission, rhs: Permission) -> Bool { lhs.description < rhs.description }

    private static func isValidPart(_ part: Substring) -> Bool {
        if part == "*" { return true }
        guard !part.isEmpty, part.count <= 64 else { return false }
        return part.unicodeScalars.allSatisfy { scalar in
            ("a"..."z").contains(scalar) || ("0"..."9").contains(scalar) || scalar == "-" || scalar == "_"
        }
    }
}

/// The roles every tenant has; they cannot be changed or deleted. What they grant is computed from
/// the services' declarations (``PermissionSpec``), not stored: a new service's permissions reach
/// `developer` without a data migration.
public enum BuiltinRole: String, Sendable, CaseIterable {
    case admin, developer, viewer

    /// The id of the role's row (kept so that bindings can reference it; its permission column is
    /// not read).
    public var id: String { "builtin-\(self.rawValue)" }

    public var description: String {
        switch self {
        case .admin: "Everything in the tenant, including roles and bindings."
        case .developer: "Reads everything; creates, changes and deletes the services' resources."
        case .viewer: "Reads everything, changes nothing."
        }
    }

    /// What the role grants, given every permission the host and its services declare: `admin`
    /// everything; `viewer` and `developer` every `read`, plus what a declaration grants them.
    public func permissions(declared: [PermissionSpec]) -> [Permission] {
        if self == .admin { return [.all] }
        var permissions = [Permission(uncheckedResource: "*", action: "read")]
        for spec in declared where spec.grantedTo.contains(self) && !Permission.allows(permissions, spec.permission) {
            permissions.append(spec.permission)
        }
        return permissions
    }
}

extension String {
    /// The text without leading and trailing spaces, tabs and newlines.
    public func trimmingSpaces() -> String {
        var scalars = Substring(self)
        while let first = scalars.first, first == " " || first == "\t" || first == "\n" { scalars.removeFirst() }
        while let last = scalars.last, last == " " || last == "\t" || last == "\n" { scalars.removeLast() }
        return String(scalars)
    }
}
