import Cluster
import Foundation
import S3API
import StorageEngine
import Testing

/// Tenants' S3 keys as replicated records: written through one node, verified by every other, and
/// still there with one replica down.
@Suite struct AccessKeyTests {
    @Test func aKeyWrittenThroughOneNodeIsFoundThroughEveryOther() async throws {
        let cluster = try await TestCluster()
        let key = AccessKeyRecord(
            accessKey: "CKCLUSTERKEY", secretKey: "s3cr3t/+x", tenant: "tnt_a", name: "laptop", created: Date(timeIntervalSince1970: 1_700_000_000))
        try await cluster.stores[0].createAccessKey(key)
        try await cluster.stores[0].createAccessKey(
            AccessKeyRecord(accessKey: "CKOTHER", secretKey: "x", tenant: "tnt_b", name: "", created: Date(timeIntervalSince1970: 1_700_000_001)))
        for store in cluster.stores[1...] {
            #expect(try await store.accessKey("CKCLUSTERKEY") == key)
            #expect(try await store.accessKeys(tenant: "tnt_a") == [key])
            #expect(try await store.accessKeys(tenant: "tnt_b").map(\.accessKey) == ["CKOTHER"])
            #expect(try await store.accessKey("CKNOSUCH") == nil)
        }
        // The credential store of another node verifies it as the tenant's.
        let credentials = TenantCredentialStore(rootAccessKey: "ROOT", rootSecretKey: "rootsecret", keys: cluster.stores[2])
        let principal = try #require(try await credentials.principal(forAccessKey: "CKCLUSTERKEY"))
        #expect(principal.owner == Tenancy.owner(tenant: "tnt_a") && !principal.isRoot && principal.secretKey == "s3cr3t/+x")

        // One node down: keys are still found (R = 2 of 3) and can be deleted (W = 2).
        cluster.stop(1)
        #expect(try await cluster.stores[2].deleteAccessKey("CKCLUSTERKEY"))
        #expect(try await cluster.stores[2].accessKey("CKCLUSTERKEY") == nil)
        #expect(!(try await cluster.stores[2].deleteAccessKey("CKCLUSTERKEY")))
        cluster.start(1)
        // Node 0 only wrote the key, so it has it in no cache: the deletion is seen at once there.
        // (A node that verified the key within the last 2 seconds may accept it that long.)
        #expect(try await cluster.stores[0].accessKey("CKCLUSTERKEY") == nil)
        #expect(try await cluster.stores[1].accessKeys(tenant: "tnt_a").isEmpty)
        await cluster.shutdown()
    }

    @Test func bucketOwnersAreReplicatedWithTheBuckets() async throws {
        let cluster = try await TestCluster()
        try await cluster.stores[0].createBucket("photos", owner: Tenancy.owner(tenant: "tnt_a"))
        for store in cluster.stores {
            #expect(try await store.cachedBucket("photos")?.owner == "tenant:tnt_a")
        }
        await #expect(throws: StorageError.self) { try await cluster.stores[1].createBucket("photos", owner: Tenancy.owner(tenant: "tnt_b")) }
        await cluster.shutdown()
    }
}
