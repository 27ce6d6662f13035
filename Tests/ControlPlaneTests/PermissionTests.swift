import ControlPlane
import ServiceContract
import Storage
import Testing

@Suite struct PermissionTests {
    @Test(arguments: [
        ("*:*", "role:read", true),
        ("*", "binding:delete", true),
        ("role:*", "role:read", true),
        ("role:*", "binding:read", false),
        ("*:read", "bucket:read", true),
        ("*:read", "bucket:write", false),
        ("bucket:read", "bucket:read", true),
        ("bucket:read", "bucket:delete", false),
        ("bucket:read", "bucket:*", false),
        ("bucket:*", "bucket:*", true),
        ("*:read", "*:*", false),
        ("*:*", "*:*", true),
    ])
    func matches(granted: String, required: String, expected: Bool) throws {
        let pattern = try #require(Permission(granted))
        let permission = try #require(Permission(required))
        #expect(pattern.matches(permission) == expected)
    }

    @Test(arguments: ["", "role", "role:", ":read", "Role:read", "a:b:c", "role:re ad", "ro*le:read", "role:read,bucket:read"])
    func rejectsMalformed(text: String) {
        #expect(Permission(text) == nil)
    }

    @Test func parsesAndPrints() throws {
        #expect(Permission(" bucket:read ")?.description == "bucket:read")
        #expect(Permission("*")?.description == "*:*")
        #expect(Permission("storage-key:create")?.resource == "storage-key")
        let list = try Permission.parseList(["bucket:read", "bucket:read", "*:read"]).get()
        #expect(list.map(\.description) == ["bucket:read", "*:read"])
        guard case .failure(let invalid) = Permission.parseList(["bucket:read", "nope"]) else {
            Issue.record("a malformed entry was accepted")
            return
        }
        #expect(invalid.items == ["nope"])
    }

    @Test func builtinRoles() throws {
        let catalog = try ServiceCatalog(services: [StorageService(cluster: nil)])
        let admin = catalog.permissions(of: .admin)
        let developer = catalog.permissions(of: .developer)
        let viewer = catalog.permissions(of: .viewer)
        for required in ["role:create", "binding:delete", "bucket:delete"] {
            #expect(Permission.allows(admin, try #require(Permission(required))))
        }
        #expect(Permission.allows(developer, try #require(Permission("bucket:create"))))
        #expect(Permission.allows(developer, try #require(Permission("role:read"))))
        #expect(!Permission.allows(developer, try #require(Permission("role:create"))))
        #expect(!Permission.allows(developer, try #require(Permission("binding:create"))))
        #expect(Permission.allows(viewer, try #require(Permission("bucket:read"))))
        #expect(!Permission.allows(viewer, try #require(Permission("bucket:create"))))
        #expect(!Permission.allows([], try #require(Permission("role:read"))))
    }
}

@Suite struct CredentialTests {
    @Test func passwordRoundTrip() throws {
        let hash = PasswordHasher.hash("correct horse battery", parameters: .test)
        #expect(hash.hasPrefix("$scrypt$ln=10,r=8,p=1$"))
        #expect(!hash.contains("correct horse"))
        #expect(PasswordHasher.verify("correct horse battery", against: hash))
        #expect(!PasswordHasher.verify("correct horse batterY", against: hash))
        #expect(!PasswordHasher.verify("", against: hash))
        #expect(PasswordHasher.parameters(of: hash) == .test)
    }

    @Test func saltsDiffer() {
        let first = PasswordHasher.hash("the same password", parameters: .test)
        let second = PasswordHasher.hash("the same password", parameters: .test)
        #expect(first != second)
        #expect(PasswordHasher.verify("the same password", against: first))
        #expect(PasswordHasher.verify("the same password", against: second))
    }

    @Test(arguments: ["", "plain", "$scrypt$ln=10,r=8,p=1$", "$scrypt$ln=99,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "$bcrypt$x$y$z"])
    func damagedHashesNeverVerify(hash: String) {
        #expect(!PasswordHasher.verify("anything at all", against: hash))
    }

    @Test func passwordRules() {
        #expect(PasswordPolicy.problem(with: "short", email: "a@example.com", name: "Ada") != nil)
        #expect(PasswordPolicy.problem(with: "aaaaaaaaaaaa", email: "a@example.com", name: "Ada") != nil)
        #expect(PasswordPolicy.problem(with: "password123", email: "a@example.com", name: "Ada") != nil)
        #expect(PasswordPolicy.problem(with: "xx-ada.lovelace-xx", email: "ada.lovelace@example.com", name: "Ada") != nil)
        #expect(PasswordPolicy.problem(with: String(repeating: "ab1", count: 100), email: "a@example.com", name: "Ada") != nil)
        #expect(PasswordPolicy.problem(with: "analytical engine 1843", email: "ada@example.com", name: "Ada") == nil)
    }

    @Test func apiKeys() {
        let (id, key) = APIKey.generate()
        #expect(key.hasPrefix("ck_\(id)_"))
        #expect(key.count == 63)
        #expect(APIKey.id(of: key) == id)
        let hash = APIKey.hash(key)
        #expect(hash.count == 64)
        #expect(!hash.contains(key))
        #expect(APIKey.matches(key, storedHash: hash))
        var altered = Array(key)
        altered[altered.count - 1] = altered[altered.count - 1] == "A" ? "B" : "A"
        #expect(!APIKey.matches(String(altered), storedHash: hash))
        #expect(APIKey.generate().key != key)
        #expect(APIKey.id(of: "ck_zz") == nil)
        #expect(APIKey.id(of: "xx" + key.dropFirst(2)) == nil)
        #expect(APIKey.id(of: "ck_" + String(repeating: "G", count: 16) + "_" + String(repeating: "a", count: 43)) == nil)
    }

    @Test func lockout() {
        var policy = LockoutPolicy()
        policy.maximumFailures = 3
        policy.window = 60
        policy.lockDuration = 100
        #expect(policy.lockedUntil(failures: [10, 20], now: 30) == nil)
        #expect(policy.lockedUntil(failures: [10, 20, 30], now: 31) == 130)
        #expect(policy.lockedUntil(failures: [10, 20, 30], now: 130) == nil)
        // Failures older than the window do not count.
        #expect(policy.lockedUntil(failures: [0, 50, 100], now: 101) == nil)
    }
}
