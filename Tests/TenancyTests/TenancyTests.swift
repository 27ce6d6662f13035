import Foundation
import Hashing
import Logging
import NIOCore
import S3API
import SigV4
import StorageEngine
import Testing
import TestSupport

@testable import StorageNode

/// A request body handed over in one piece.
final class OneShotBody: RequestBody, @unchecked Sendable {
    private var pending: ByteBuffer?

    init(_ bytes: [UInt8]) { self.pending = bytes.isEmpty ? nil : ByteBuffer(bytes: bytes) }

    func next() async throws -> ByteBuffer? {
        defer { self.pending = nil }
        return self.pending
    }
}

/// A single node's S3 handler with the root key and tenants' keys in its engine, as `cloud dev` runs it.
struct Node {
    let directory = TemporaryDirectory("tenancy")
    let engine: StorageEngine
    let handler: S3Handler
    static let root = ("ROOTKEY", "root-secret-123")

    init() async throws {
        var configuration = StorageEngine.Configuration(dataDirectory: self.directory.path)
        configuration.syncWrites = false
        self.engine = try StorageEngine(configuration: configuration)
        try await self.engine.start()
        self.handler = S3Handler(
            engine: self.engine,
            credentials: TenantCredentialStore(rootAccessKey: Self.root.0, rootSecretKey: Self.root.1, keys: self.engine),
            configuration: S3Configuration(), logger: Logger(label: "test"),
            admin: StorageAdmin(
                rootAccessKey: Self.root.0, cluster: nil,
                tenants: TenantAdmin(store: self.engine, keys: self.engine, now: { Date() })))
    }

    func shutdown() async { await self.engine.shutdown() }

    /// Sends a request signed with `key`; returns the status, the error code (or nil) and the body.
    @discardableResult
    func call(
        _ key: (String, String), _ method: String, _ path: String, query: String = "", headers: [(String, String)] = [], body: String = ""
    ) async -> (status: Int, code: String?, body: String) {
        let bytes = Array(body.utf8)
        var head = SigV4.RequestHead(method: method, rawPath: path, rawQuery: query, headers: [("host", "127.0.0.1:9000")] + headers)
        if !bytes.isEmpty { head.headers.append(("content-length", String(bytes.count))) }
        SigV4.sign(
            &head, accessKey: key.0, secretKey: key.1, region: "us-east-1", now: Date(),
            payload: .sha256(hex: Hex.encode(Digests.sha256(bytes))))
        let request = S3Request(
            method: method, uri: path + (query.isEmpty ? "" : "?" + query), headers: head.headers.map { ($0.name, $0.value) },
            requestID: "test")
        let response = await self.handler.handle(request, body: OneShotBody(bytes))
        var text = ""
        if case .buffer(let buffer) = response.body { text = String(buffer: buffer) }
        return (response.status, response.errorCode ?? Self.jsonCode(text), text)
    }

    static func jsonCode(_ text: String) -> String? {
        guard let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
            let error = object["error"] as? [String: Any]
        else { return nil }
        return error["code"] as? String
    }

    /// Creates a key of `tenant` through the admin API.
    func key(tenant: String, name: String = "test") async throws -> (String, String) {
        let answer = await self.call(Self.root, "POST", "/_admin/tenants/\(tenant)/keys", body: #"{"name": "\#(name)"}"#)
        #expect(answer.status == 201, "\(answer.body)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(answer.body.utf8)) as? [String: Any])
        return (try #require(object["accessKeyId"] as? String), try #require(object["secretAccessKey"] as? String))
    }
}

@Suite struct TenancyTests {
    @Test func aTenantsKeysShareItsBucketsAndOtherTenantsAreDenied() async throws {
        let node = try await Node()
        let a1 = try await node.key(tenant: "tnt_a")
        let a2 = try await node.key(tenant: "tnt_a")
        let b = try await node.key(tenant: "tnt_b")

        #expect(await node.call(a1, "PUT", "/photos").status == 200)
        #expect(await node.call(a1, "PUT", "/photos/cat.jpg", body: "meow").status == 200)
        // The tenant's second key uses the bucket as its own.
        #expect(await node.call(a2, "GET", "/photos/cat.jpg").body == "meow")
        #expect(await node.call(a2, "PUT", "/photos/dog.jpg", body: "woof").status == 200)
        #expect(await node.call(a2, "GET", "/photos", query: "list-type=2").body.contains("<Key>dog.jpg</Key>"))
        #expect(await node.call(a2, "PUT", "/photos").code == "BucketAlreadyOwnedByYou")

        // Another tenant: AccessDenied on every bucket and object operation.
        let denied: [(String, String, String, [(String, String)], String)] = [
            ("GET", "/photos", "list-type=2", [], ""),
            ("GET", "/photos", "", [], ""),
            ("HEAD", "/photos", "", [], ""),
            ("GET", "/photos", "location", [], ""),
            ("GET", "/photos", "uploads", [], ""),
            ("GET", "/photos", "acl", [], ""),
            ("GET", "/photos", "policy", [], ""),
            ("DELETE", "/photos", "", [], ""),
            ("GET", "/photos/cat.jpg", "", [], ""),
            ("HEAD", "/photos/cat.jpg", "", [], ""),
            ("PUT", "/photos/cat.jpg", "", [], "overwritten"),
            ("DELETE", "/photos/cat.jpg", "", [], ""),
            ("POST", "/photos/big", "uploads", [], ""),
            ("POST", "/photos", "delete", [("content-md5", Base64.encode(Digests.md5(Array("<Delete><Object><Key>cat.jpg</Key></Object></Delete>".utf8))))],
             "<Delete><Object><Key>cat.jpg</Key></Object></Delete>"),
        ]
        for (method, path, query, headers, body) in denied {
            let answer = await node.call(b, method, path, query: query, headers: headers, body: body)
            #expect(answer.status == 403, "\(method) \(path)?\(query) → \(answer.status) \(answer.body)")
            if method != "HEAD" { #expect(answer.code == "AccessDenied", "\(method) \(path)?\(query)") }
        }
        // Creating a taken name is refused, as in AWS.
        #expect(await node.call(b, "PUT", "/photos").code == "BucketAlreadyExists")
        // Copying out of, or into, another tenant's bucket.
        #expect(await node.call(b, "PUT", "/mine").status == 200)
        #expect(await node.call(b, "PUT", "/mine/stolen", headers: [("x-amz-copy-source", "/photos/cat.jpg")]).code == "AccessDenied")
        #expect(await node.call(b, "PUT", "/photos/x", headers: [("x-amz-copy-source", "/mine/stolen")]).code == "AccessDenied")
        let own = await node.call(b, "POST", "/mine/part-copy", query: "uploads")
        let ownUpload = try #require(SignedXML.element("UploadId", own.body))
        let partCopy = await node.call(
            b, "PUT", "/mine/part-copy", query: "partNumber=1&uploadId=\(ownUpload)", headers: [("x-amz-copy-source", "/photos/cat.jpg")])
        #expect(partCopy.code == "AccessDenied", "UploadPartCopy from another tenant's bucket")
        // A multipart upload of tenant A cannot be touched by B (the bucket check comes first).
        let initiated = await node.call(a1, "POST", "/photos/big", query: "uploads")
        let uploadID = try #require(SignedXML.element("UploadId", initiated.body))
        #expect(await node.call(b, "PUT", "/photos/big", query: "partNumber=1&uploadId=\(uploadID)", body: "x").code == "AccessDenied")
        #expect(await node.call(b, "GET", "/photos/big", query: "uploadId=\(uploadID)").code == "AccessDenied")
        #expect(await node.call(b, "DELETE", "/photos/big", query: "uploadId=\(uploadID)").code == "AccessDenied")
        #expect(await node.call(a2, "DELETE", "/photos/big", query: "uploadId=\(uploadID)").status == 204)

        // Nothing of B's attempts changed A's object.
        #expect(await node.call(a1, "GET", "/photos/cat.jpg").body == "meow")

        // ListBuckets shows each tenant its own buckets; the root key sees all.
        let listedByA = await node.call(a2, "GET", "/").body
        #expect(listedByA.contains("<Name>photos</Name>") && !listedByA.contains("<Name>mine</Name>"))
        let listedByB = await node.call(b, "GET", "/").body
        #expect(listedByB.contains("<Name>mine</Name>") && !listedByB.contains("<Name>photos</Name>"))
        let listedByRoot = await node.call(Node.root, "GET", "/").body
        #expect(listedByRoot.contains("<Name>mine</Name>") && listedByRoot.contains("<Name>photos</Name>"))
        // The root key keeps full access to tenants' buckets.
        #expect(await node.call(Node.root, "GET", "/photos/cat.jpg").body == "meow")
        await node.shutdown()
    }

    @Test func aDeletedKeyIsRefusedAndUnknownKeysToo() async throws {
        let node = try await Node()
        let a = try await node.key(tenant: "tnt_a")
        #expect(await node.call(a, "GET", "/").status == 200)
        #expect(await node.call(Node.root, "DELETE", "/_admin/tenants/tnt_b/keys/\(a.0)").status == 404, "another tenant's key")
        #expect(await node.call(Node.root, "DELETE", "/_admin/tenants/tnt_a/keys/\(a.0)").status == 204)
        #expect(await node.call(a, "GET", "/").code == "InvalidAccessKeyId")
        #expect(await node.call(("NOSUCHKEY", "secret"), "GET", "/").code == "InvalidAccessKeyId")
        // The right id with a wrong secret.
        let c = try await node.key(tenant: "tnt_c")
        #expect(await node.call((c.0, "wrong-secret"), "GET", "/").code == "SignatureDoesNotMatch")
        await node.shutdown()
    }

    @Test func adminAPIManagesKeysAndBucketsPerTenant() async throws {
        let node = try await Node()
        let a = try await node.key(tenant: "tnt_a", name: "laptop")
        _ = try await node.key(tenant: "tnt_b")
        let listed = await node.call(Node.root, "GET", "/_admin/tenants/tnt_a/keys")
        #expect(listed.status == 200)
        #expect(listed.body.contains(a.0) && listed.body.contains("laptop"))
        #expect(!listed.body.contains(a.1), "a listing never shows secrets")
        #expect(!listed.body.contains("secret"), "a listing never shows secrets")

        #expect(await node.call(Node.root, "POST", "/_admin/tenants/tnt_a/buckets", body: #"{"name": "reports"}"#).status == 201)
        #expect(await node.call(Node.root, "POST", "/_admin/tenants/tnt_b/buckets", body: #"{"name": "reports"}"#).code == "BucketAlreadyExists")
        #expect(await node.call(Node.root, "POST", "/_admin/tenants/tnt_a/buckets", body: #"{"name": "reports"}"#).code == "BucketAlreadyOwnedByYou")
        #expect(await node.call(Node.root, "GET", "/_admin/tenants/tnt_a/buckets").body.contains("reports"))
        #expect(!(await node.call(Node.root, "GET", "/_admin/tenants/tnt_b/buckets").body.contains("reports")))
        // A bucket made through the admin API is the tenant's for S3.
        #expect(await node.call(a, "PUT", "/reports/q1.csv", body: "1,2").status == 200)
        #expect(await node.call(Node.root, "DELETE", "/_admin/tenants/tnt_b/buckets/reports").status == 404)
        #expect(await node.call(Node.root, "DELETE", "/_admin/tenants/tnt_a/buckets/reports").code == "BucketNotEmpty")
        #expect(await node.call(a, "DELETE", "/reports/q1.csv").status == 204)
        #expect(await node.call(Node.root, "DELETE", "/_admin/tenants/tnt_a/buckets/reports").status == 204)

        // Bad input: clear 4xx JSON errors.
        let bad: [(String, String, String, Int, String)] = [
            ("POST", "/_admin/tenants/tnt_a/buckets", #"{"name": "Bad_Name"}"#, 400, "InvalidBucketName"),
            ("POST", "/_admin/tenants/tnt_a/buckets", "", 400, "MissingField"),
            ("POST", "/_admin/tenants/tnt_a/buckets", "{not json", 400, "MalformedJSON"),
            ("POST", "/_admin/tenants/tnt_a/buckets", #"{"name": "ok-name", "acl": "public"}"#, 400, "UnknownField"),
            ("POST", "/_admin/tenants/tnt_a/keys", #"{"name": 5}"#, 400, "InvalidField"),
            ("POST", "/_admin/tenants/bad%20tenant/keys", "", 400, "InvalidTenant"),
            ("PUT", "/_admin/tenants/tnt_a/keys", "", 404, "NoSuchAdminRoute"),
            ("DELETE", "/_admin/tenants/tnt_a/keys/NOSUCH", "", 404, "NoSuchAccessKey"),
        ]
        for (method, path, body, status, code) in bad {
            let answer = await node.call(Node.root, method, path, body: body)
            #expect(answer.status == status && answer.code == code, "\(method) \(path) \(body) → \(answer.status) \(answer.body)")
        }
        // Only the root key may administer.
        #expect(await node.call(a, "GET", "/_admin/tenants/tnt_a/keys").status == 403)
        #expect(await node.call(a, "POST", "/_admin/tenants/tnt_a/keys").status == 403)
        await node.shutdown()
    }

    @Test func keysSurviveARestartOfTheEngine() async throws {
        let directory = TemporaryDirectory("tenancy-restart")
        var configuration = StorageEngine.Configuration(dataDirectory: directory.path)
        configuration.syncWrites = false
        let key = AccessKeyRecord(accessKey: "CKTEST", secretKey: "s3cr3t", tenant: "tnt_a", name: "n", created: Date(timeIntervalSince1970: 1_700_000_000))
        do {
            let engine = try StorageEngine(configuration: configuration)
            try await engine.start()
            try await engine.createAccessKey(key)
            await #expect(throws: StorageError.self) { try await engine.createAccessKey(key) }
            await engine.shutdown()
        }
        let engine = try StorageEngine(configuration: configuration)
        try await engine.start()
        #expect(try await engine.accessKey("CKTEST") == key)
        #expect(try await engine.accessKeys(tenant: "tnt_a") == [key])
        #expect(try await engine.accessKeys(tenant: "tnt_b").isEmpty)
        #expect(try await engine.deleteAccessKey("CKTEST"))
        #expect(try await engine.accessKey("CKTEST") == nil)
        #expect(!(try await engine.deleteAccessKey("CKTEST")))
        await engine.shutdown()
    }
}

/// Reads one element of an XML answer.
enum SignedXML {
    static func element(_ name: String, _ xml: String) -> String? {
        guard let open = xml.range(of: "<\(name)>"), let close = xml.range(of: "</\(name)>") else { return nil }
        return String(xml[open.upperBound..<close.lowerBound])
    }
}
