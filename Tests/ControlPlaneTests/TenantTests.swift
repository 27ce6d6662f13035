import Foundation
import ServiceContract
import Testing

@testable import ControlPlane

extension Harness {
    /// The id of the tenant a key acts in.
    func tenant(of key: String) async throws -> String {
        let (_, me, _) = await self.call("GET", "/auth/me", key: key)
        guard case .string(let id) = try #require(me?["tenant"]?["id"]) else { throw APIError.internalError }
        return id
    }

    func string(_ value: JSONValue?) throws -> String {
        guard case .string(let text) = try #require(value) else { throw APIError.internalError }
        return text
    }
}

@Suite struct TenantTests {
    @Test func createListSwitchAndMembers() async throws {
        let h = try await Harness()
        defer { h.cleanUp() }
        let ada = try await h.user("ada@example.com")
        let bob = try await h.user("bob@example.com")
        let personal = try await h.tenant(of: ada)

        h.clock.advance(1)
        let (created, tenant, _) = await h.call("POST", "/tenants", key: ada, body: #"{"name": "Photos"}"#)
        #expect(created == 201)
        #expect(tenant?["roles"] == .array([.string("admin")]))
        let photos = try h.string(tenant?["id"])
        let (_, list, _) = await h.call("GET", "/tenants", key: ada)
        guard case .array(let tenants) = try #require(list?["tenants"]) else { return }
        #expect(tenants.map { $0["id"] } == [.string(personal), .string(photos)])
        #expect(tenants.map { $0["current"] } == [.bool(true), .bool(false)])

        // Switching: a key for the new tenant, through POST /auth/keys and through login.
        let (made, newKey, _) = await h.call("POST", "/auth/keys", key: ada, body: #"{"tenant_id": "\#(photos)"}"#)
        #expect(made == 201)
        let adaPhotos = try h.string(newKey?["api_key"])
        #expect(try await h.tenant(of: adaPhotos) == photos)
        #expect(await h.call("POST", "/auth/login", body: #"{"email": "ada@example.com", "password": "a long enough secret", "tenant_id": "\#(photos)"}"#).0 == 200)

        // Bob is not a member: the tenant does not exist for him.
        #expect(await h.call("GET", "/tenants/\(photos)", key: bob).0 == 404)
        #expect(await h.call("POST", "/auth/keys", key: bob, body: #"{"tenant_id": "\#(photos)"}"#).0 == 404)
        let (loginStatus, loginBody, _) = await h.call(
            "POST", "/auth/login", body: #"{"email": "bob@example.com", "password": "a long enough secret", "tenant_id": "\#(photos)"}"#)
        #expect(loginStatus == 404)
        #expect(errorCode(loginBody) == "not_found")

        // Members: add Bob as developer, list, and his key in Photos works with those roles.
        let (added, member, _) = await h.call(
            "POST", "/tenants/\(photos)/members", key: adaPhotos, body: #"{"email": "bob@example.com", "roles": ["developer"]}"#)
        #expect(added == 201)
        #expect(member?["roles"] == .array([.string("developer")]))
        let bobID = try h.string(member?["user_id"])
        let (_, members, _) = await h.call("GET", "/tenants/\(photos)/members", key: adaPhotos)
        guard case .array(let items) = try #require(members?["members"]) else { return }
        #expect(items.map { $0["email"] } == [.string("ada@example.com"), .string("bob@example.com")])
        let (_, bobKeyBody, _) = await h.call("POST", "/auth/keys", key: bob, body: #"{"tenant_id": "\#(photos)"}"#)
        let bobPhotos = try h.string(bobKeyBody?["api_key"])
        #expect(await h.call("GET", "/tenants/\(photos)/members", key: bobPhotos).0 == 200)
        #expect(await h.call("POST", "/tenants/\(photos)/members", key: bobPhotos, body: #"{"email": "ada@example.com", "roles": ["admin"]}"#).0 == 403)
        // The member routes act only on the key's tenant.
        #expect(await h.call("GET", "/tenants/\(photos)/members", key: ada).0 == 404)

        // Removing Bob revokes his key there; the last admin cannot be removed.
        let adaID = try h.string((try await h.call("GET", "/auth/me", key: ada).1)?["user"]?["id"])
        let (lastAdmin, lastBody, _) = await h.call("DELETE", "/tenants/\(photos)/members/\(adaID)", key: adaPhotos)
        #expect(lastAdmin == 409)
        #expect(errorCode(lastBody) == "last_admin")
        #expect(await h.call("DELETE", "/tenants/\(photos)/members/\(bobID)", key: adaPhotos).0 == 204)
        #expect(await h.call("GET", "/auth/me", key: bobPhotos).0 == 401)
        #expect(await h.call("GET", "/auth/me", key: bob).0 == 200)
        #expect(await h.call("DELETE", "/tenants/\(photos)/members/\(bobID)", key: adaPhotos).0 == 404)
    }

    /// Every route that names something of a tenant answers 404, never 403, for another tenant's.
    @Test func anotherTenantsThingsAreNotFound() async throws {
        let h = try await Harness()
        defer { h.cleanUp() }
        let ada = try await h.user("ada@example.com")
        let eve = try await h.user("eve@example.com")
        let adaTenant = try await h.tenant(of: ada)
        #expect(await h.call("POST", "/rbac/roles", key: ada, body: #"{"name": "secret-role", "permissions": ["bucket:read"]}"#).0 == 201)
        let (_, bindings, _) = await h.call("GET", "/rbac/bindings", key: ada)
        guard case .array(let items) = try #require(bindings?["bindings"]) else { return }
        let bindingID = try h.string(items.first?["id"])
        let adaKeyID = try #require(APIKey.id(of: ada))
        let adaID = try h.string((try await h.call("GET", "/auth/me", key: ada).1)?["user"]?["id"])

        let probes: [(String, String, String)] = [
            ("GET", "/rbac/roles/secret-role", ""),
            ("PUT", "/rbac/roles/secret-role", #"{"description": "mine now"}"#),
            ("DELETE", "/rbac/roles/secret-role", ""),
            ("POST", "/rbac/bindings", #"{"user": "eve@example.com", "role": "secret-role"}"#),
            ("DELETE", "/rbac/bindings/\(bindingID)", ""),
            ("POST", "/auth/keys/\(adaKeyID)/rotate", "{}"),
            ("POST", "/auth/keys/\(adaKeyID)/regenerate", ""),
            ("DELETE", "/auth/keys/\(adaKeyID)", ""),
            ("GET", "/tenants/\(adaTenant)", ""),
            ("GET", "/tenants/\(adaTenant)/members", ""),
            ("POST", "/tenants/\(adaTenant)/members", #"{"email": "eve@example.com", "roles": ["admin"]}"#),
            ("DELETE", "/tenants/\(adaTenant)/members/\(adaID)", ""),
            ("GET", "/tenants/\(adaTenant)/quotas", ""),
            ("POST", "/auth/keys", #"{"tenant_id": "\#(adaTenant)"}"#),
        ]
        for (method, path, body) in probes {
            let (status, json, _) = await h.call(method, path, key: eve, body: body)
            #expect(status == 404, "\(method) \(path) → \(status)")
            #expect(errorCode(json) == "not_found", "\(method) \(path)")
        }
        // Nothing changed for Ada.
        #expect(await h.call("GET", "/rbac/roles/secret-role", key: ada).0 == 200)
        #expect(await h.call("GET", "/auth/me", key: ada).0 == 200)
    }

    @Test func quotasAreEnforcedAndSetByPlatformAdmins() async throws {
        var defaults = QuotaDefaults()
        defaults.limits[.apiKeys] = 3
        defaults.limits[.members] = 2
        let h = try await Harness(configure: { $0.platformAdmins = ["root@example.com"] }, quotaDefaults: defaults)
        defer { h.cleanUp() }
        let ada = try await h.user("ada@example.com")  // key 1 of ada's tenant
        let tenant = try await h.tenant(of: ada)
        _ = try await h.user("bob@example.com")
        _ = try await h.user("carol@example.com")
        let root = try await h.user("root@example.com")

        let (_, quotas, _) = await h.call("GET", "/tenants/\(tenant)/quotas", key: ada)
        guard case .array(let items) = try #require(quotas?["quotas"]) else { return }
        let keys = try #require(items.first { $0["resource"] == .string("api_keys") })
        #expect(keys["limit"] == .int(3) && keys["used"] == .int(1) && keys["default"] == .bool(true))

        #expect(await h.call("POST", "/auth/keys", key: ada, body: "{}").0 == 201)
        #expect(await h.call("POST", "/auth/keys", key: ada, body: "{}").0 == 201)
        let (refused, body, _) = await h.call("POST", "/auth/keys", key: ada, body: "{}")
        #expect(refused == 409)
        #expect(errorCode(body) == "quota_exceeded")
        #expect(await h.call("POST", "/auth/login", body: #"{"email": "ada@example.com", "password": "a long enough secret"}"#).0 == 409)

        #expect(await h.call("POST", "/tenants/\(tenant)/members", key: ada, body: #"{"email": "bob@example.com", "roles": ["viewer"]}"#).0 == 201)
        let (full, fullBody, _) = await h.call("POST", "/rbac/bindings", key: ada, body: #"{"user": "carol@example.com", "role": "viewer"}"#)
        #expect(full == 409)
        #expect(errorCode(fullBody) == "quota_exceeded")
        // Another role for an existing member is not a new member.
        #expect(await h.call("POST", "/rbac/bindings", key: ada, body: #"{"user": "bob@example.com", "role": "developer"}"#).0 == 201)

        // Only a platform admin sets quotas; tenant admins get 403, unknown tenants 404.
        #expect(await h.call("PUT", "/admin/tenants/\(tenant)/quotas", key: ada, body: #"{"max_api_keys": 50}"#).0 == 403)
        #expect(await h.call("PUT", "/admin/tenants/tnt_nope/quotas", key: root, body: #"{"max_api_keys": 50}"#).0 == 404)
        #expect(await h.call("PUT", "/admin/tenants/\(tenant)/quotas", key: root, body: "{}").0 == 400)
        #expect(await h.call("PUT", "/admin/tenants/\(tenant)/quotas", key: root, body: #"{"max_api_keys": -1}"#).0 == 400)
        let (set, setBody, _) = await h.call("PUT", "/admin/tenants/\(tenant)/quotas", key: root, body: #"{"max_api_keys": 4, "max_members": 3}"#)
        #expect(set == 200)
        guard case .array(let after) = try #require(setBody?["quotas"]) else { return }
        #expect(after.first { $0["resource"] == .string("api_keys") }?["limit"] == .int(4))
        #expect(after.first { $0["resource"] == .string("api_keys") }?["default"] == .bool(false))
        #expect(await h.call("POST", "/auth/keys", key: ada, body: "{}").0 == 201)
        #expect(await h.call("POST", "/rbac/bindings", key: ada, body: #"{"user": "carol@example.com", "role": "viewer"}"#).0 == 201)

        // The store method services call.
        await #expect(throws: QuotaExceeded.self) { try await h.store.checkQuota(tenantID: tenant, resource: QuotaResource(rawValue: "buckets"), current: 100) }
        try await h.store.checkQuota(tenantID: tenant, resource: QuotaResource(rawValue: "buckets"), current: 99)
    }
}

@Suite struct PasswordResetTests {
    func outboxHarness() async throws -> (Harness, String) {
        let outbox = NSTemporaryDirectory() + "outbox-" + UUID().uuidString
        let h = try await Harness(configure: { $0.mail = .outbox(directory: outbox) })
        return (h, outbox)
    }

    /// Waits for the reset mail (sent after the response) and returns the token in it.
    func token(in outbox: String, count: Int = 1) async throws -> String {
        for _ in 0..<200 {
            let files = ((try? FileManager.default.contentsOfDirectory(atPath: outbox)) ?? []).filter { $0.hasSuffix(".eml") }.sorted()
            if files.count >= count, let last = files.last {
                let text = try String(contentsOfFile: outbox + "/" + last, encoding: .utf8)
                let words = text.split(whereSeparator: \.isWhitespace)  // "\r\n" is one Character
                if let token = words.first(where: { $0.hasPrefix("crt_") }) { return String(token) }
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw APIError.internalError
    }

    @Test func resetWithTheMailedToken() async throws {
        let (h, outbox) = try await self.outboxHarness()
        defer {
            h.cleanUp()
            try? FileManager.default.removeItem(atPath: outbox)
        }
        let key = try await h.user("ada@example.com")
        // Lock the account.
        for _ in 0..<3 {
            _ = await h.call("POST", "/auth/login", body: #"{"email": "ada@example.com", "password": "wrong wrong wrong"}"#)
        }
        #expect(await h.call("POST", "/auth/login", body: #"{"email": "ada@example.com", "password": "a long enough secret"}"#).0 == 429)

        let (unknown, unknownBody, _) = await h.call("POST", "/auth/forgot-password", body: #"{"email": "nobody@example.com"}"#, client: "10.0.0.1")
        let (known, knownBody, _) = await h.call("POST", "/auth/forgot-password", body: #"{"email": "ada@example.com"}"#, client: "10.0.0.2")
        #expect(unknown == 202 && known == 202)
        #expect(unknownBody?["status"] == knownBody?["status"] && unknownBody?["message"] == knownBody?["message"])
        let token = try await self.token(in: outbox)
        #expect(try await h.store.resetToken(hash: APIKey.hash(token)) != nil)
        let mail = try String(contentsOfFile: outbox + "/" + (try FileManager.default.contentsOfDirectory(atPath: outbox)).first { $0.hasSuffix(".eml") }!, encoding: .utf8)
        #expect(mail.contains("To: ada@example.com"))

        let weak = await h.call("POST", "/auth/reset-password", body: #"{"token": "\#(token)", "password": "ada@example.com"}"#)
        #expect(weak.0 == 400 && errorCode(weak.1) == "weak_password")
        let (reset, resetBody, _) = await h.call("POST", "/auth/reset-password", body: #"{"token": "\#(token)", "password": "a brand new passphrase"}"#)
        #expect(reset == 200)
        #expect(resetBody?["revoked_keys"] == .int(1))
        // The old key is dead, the lockout is over, the new password works, the token works once.
        #expect(await h.call("GET", "/auth/me", key: key).0 == 401)
        #expect(await h.call("POST", "/auth/login", body: #"{"email": "ada@example.com", "password": "a brand new passphrase"}"#).0 == 200)
        #expect(await h.call("POST", "/auth/login", body: #"{"email": "ada@example.com", "password": "a long enough secret"}"#).0 == 401)
        let (again, againBody, _) = await h.call("POST", "/auth/reset-password", body: #"{"token": "\#(token)", "password": "yet another passphrase"}"#)
        #expect(again == 400 && errorCode(againBody) == "invalid_token")
        #expect(h.api.metrics.value(.resetsCompleted) == 1)
        #expect(h.api.metrics.render().contains("cloud_api_password_resets_completed_total 1\n"))
    }

    @Test func tokensExpire() async throws {
        let (h, outbox) = try await self.outboxHarness()
        defer {
            h.cleanUp()
            try? FileManager.default.removeItem(atPath: outbox)
        }
        _ = try await h.user("ada@example.com")
        #expect(await h.call("POST", "/auth/forgot-password", body: #"{"email": "ada@example.com"}"#).0 == 202)
        let token = try await self.token(in: outbox)
        h.clock.advance(30 * 60)
        let (status, body, _) = await h.call("POST", "/auth/reset-password", body: #"{"token": "\#(token)", "password": "a brand new passphrase"}"#)
        #expect(status == 400 && errorCode(body) == "invalid_token", "\(String(describing: body)) \(token)")
    }

    @Test func forgotPasswordIsRateLimitedPerEmailAndPerAddress() async throws {
        let (h, outbox) = try await self.outboxHarness()
        defer {
            h.cleanUp()
            try? FileManager.default.removeItem(atPath: outbox)
        }
        // Per email, from different addresses.
        for index in 0..<5 {
            #expect(await h.call("POST", "/auth/forgot-password", body: #"{"email": "x@example.com"}"#, client: "10.0.1.\(index)").0 == 202)
        }
        let (limited, body, response) = await h.call("POST", "/auth/forgot-password", body: #"{"email": "x@example.com"}"#, client: "10.0.2.1")
        #expect(limited == 429 && errorCode(body) == "too_many_requests")
        #expect(response.headers.first { $0.0 == "Retry-After" }?.1 == "60")
        // Per address, for different emails.
        for index in 0..<5 {
            #expect(await h.call("POST", "/auth/forgot-password", body: #"{"email": "y\#(index)@example.com"}"#, client: "10.0.3.1").0 == 202)
        }
        #expect(await h.call("POST", "/auth/forgot-password", body: #"{"email": "z@example.com"}"#, client: "10.0.3.1").0 == 429)
        // A minute later both are allowed again.
        h.clock.advance(60)
        #expect(await h.call("POST", "/auth/forgot-password", body: #"{"email": "x@example.com"}"#, client: "10.0.3.1").0 == 202)
        // Guessing tokens is limited per address too.
        for _ in 0..<10 {
            #expect(await h.call("POST", "/auth/reset-password", body: #"{"token": "crt_guess", "password": "a brand new passphrase"}"#, client: "10.0.4.1").0 == 400)
        }
        #expect(await h.call("POST", "/auth/reset-password", body: #"{"token": "crt_guess", "password": "a brand new passphrase"}"#, client: "10.0.4.1").0 == 429)
    }

    @Test func mailIsRenderedWithCRLFAndDotStuffingIsTheSMTPClientsJob() {
        let message = MailMessage(from: "The Cloud <no-reply@example.com>", to: "ada@example.com", subject: "S", body: "a\n.b")
        let text = message.rendered(messageID: "m1", date: Date(timeIntervalSince1970: 0))
        #expect(text.contains("Message-ID: <m1@example.com>\r\n"))
        #expect(text.contains("Date: Thu, 01 Jan 1970 00:00:00 +0000\r\n"))
        #expect(text.hasSuffix("\r\n\r\na\r\n.b\r\n"))
        #expect(SMTPConnection.dotStuffed(text).hasSuffix("\r\n\r\na\r\n..b\r\n"))
        #expect(SMTPConnection.dotStuffed("x\n.\ny") == "x\r\n..\r\ny\r\n")
        #expect(SMTPConnection.dotStuffed("x\r\n") == "x\r\n")
    }
}

@Suite struct KeyComparisonTests {
    /// The comparison of a presented key with the stored one runs on SHA-256 digests (and with
    /// CRYPTO_memcmp, which reads every byte): how much of the *key* an attacker has right does not
    /// carry over to how much of the compared *digest* matches. This checks that property by
    /// counting work rather than time: the length of the common prefix of the compared digests is
    /// the same (about 1/15 of a hex digit on average) for near misses sharing 62 of 63 characters
    /// of the key as for keys sharing none.
    @Test func nearMissesDoNotMatchMoreOfTheComparedDigest() {
        let (_, key) = APIKey.generate()
        let stored = Array(APIKey.hash(key).utf8)
        func commonPrefix(_ candidate: String) -> Int {
            zip(Array(APIKey.hash(candidate).utf8), stored).prefix { $0 == $1 }.count
        }
        var near = 0
        var far = 0
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        for index in 0..<2000 {
            var nearMiss = Array(key)
            nearMiss[nearMiss.count - 1] = alphabet[(alphabet.firstIndex(of: nearMiss.last!)! + 1 + index % 63) % 64]
            near += commonPrefix(String(nearMiss))
            let (_, other) = APIKey.generate()
            far += commonPrefix(other)
            #expect(!APIKey.matches(String(nearMiss), storedHash: APIKey.hash(key)))
        }
        // Expected 2000/15 ≈ 133 each; 400 would be a leak of three times the chance level.
        #expect(near < 400 && far < 400, "near \(near) far \(far)")
        #expect(APIKey.matches(key, storedHash: APIKey.hash(key)))
    }
}
