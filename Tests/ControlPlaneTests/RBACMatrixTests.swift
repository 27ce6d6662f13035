import ControlPlane
import ServiceContract
import Foundation
import Testing

/// Every route that names a permission, called by a user holding only one built-in role: refused
/// with 403 exactly when the role does not grant the permission. Routes are taken from the route
/// table the server dispatches from (the same one /openapi.json is generated from).
@Suite struct RBACMatrixTests {
    @Test func everyRouteWithEveryBuiltinRole() async throws {
        let h = try await Harness()
        defer { h.cleanUp() }
        let owner = try await h.user("owner@example.com")
        let (_, me, _) = await h.call("GET", "/auth/me", key: owner)
        guard case .string(let tenant) = try #require(me?["tenant"]?["id"]) else { return }

        var keys: [BuiltinRole: String] = [.admin: owner]
        for role in [BuiltinRole.developer, .viewer] {
            let email = "\(role.rawValue)@example.com"
            _ = try await h.user(email)
            #expect(await h.call("POST", "/rbac/bindings", key: owner, body: #"{"user": "\#(email)", "role": "\#(role.rawValue)"}"#).0 == 201)
            let (status, login, _) = await h.call(
                "POST", "/auth/login", body: #"{"email": "\#(email)", "password": "a long enough secret", "tenant_id": "\#(tenant)"}"#)
            #expect(status == 200)
            guard case .string(let key) = try #require(login?["api_key"]) else { return }
            keys[role] = key
        }

        var checked = 0
        for route in h.api.routeTable {
            let required: Permission
            switch route.access {
            case .permission(let permission): required = permission
            // No tenant role reaches the platform operators' routes, not even admin's `*:*`.
            case .platformAdmin: required = Permission("platform:admin")!
            case .anonymous, .authenticated: continue
            }
            for role in BuiltinRole.allCases {
                let path = route.path.replacingOccurrences(of: "{id}", with: "no-such-id")
                    .replacingOccurrences(of: "{name}", with: "no-such-role").replacingOccurrences(of: "{user_id}", with: "no-such-user")
                let (status, _, _) = await h.call(route.method, path, key: keys[role])
                let allowed = route.access != .platformAdmin && Permission.allows(h.store.catalog.permissions(of: role), required)
                #expect((status == 403) == !allowed, "\(role) \(route.method) \(route.path) → \(status)")
                #expect(status != 401 && status < 500, "\(role) \(route.method) \(route.path) → \(status)")
                checked += 1
            }
        }
        // 21 permission routes (5 for roles, 3 for bindings, 3 for storage keys, 3 for buckets, 3 for
        // members, 1 for quotas, 3 for tasks) and one platform route, times 3 roles.
        #expect(checked == 22 * 3)
    }
}
