import ControlPlane
import Foundation
import Hashing
import ServiceContract
import ServiceTestSupport
import SigV4
import Testing

@testable import Queues

/// The REST API under /queues and the SQS endpoint at /sqs, through the control plane's `handle`.
@Suite struct QueuesAPITests {
    @Test(arguments: Backing.available) func restLifecycle(_ backing: Backing) async throws {
        let h = try await QueuesHarness(backing)
        let ada = try await h.user("ada@example.com")
        let (created, queue, response) = await h.call(
            "POST", "/queues", key: ada, body: #"{"name": "jobs", "visibility_timeout": 60, "delay_seconds": 0}"#)
        #expect(created == 201 && queue?["visibility_timeout"] == .int(60) && queue?["fifo"] == .bool(false))
        #expect(response.headers.contains { $0.0 == "ETag" && $0.1 == "\"1\"" })
        #expect(await h.call("POST", "/queues", key: ada, body: #"{"name": "jobs"}"#).0 == 409)

        let (sent, message, _) = await h.call("POST", "/queues/jobs/messages", key: ada, body: #"{"body": "hi", "attributes": {"kind": "greeting"}}"#)
        #expect(sent == 201 && text(message?["body_md5"]) == MessageChecks.bodyMD5("hi"))
        let (_, shown, _) = await h.call("GET", "/queues/jobs", key: ada)
        #expect(shown?["messages_visible"] == .int(1) && shown?["messages_in_flight"] == .int(0))

        let (received, got, _) = await h.call("POST", "/queues/jobs/messages/receive", key: ada, body: #"{"max_messages": 10}"#)
        guard received == 200, case .array(let messages) = got?["messages"], let first = messages.first else {
            Issue.record("no message: \(String(describing: got))")
            return
        }
        #expect(text(first["body"]) == "hi" && text(first["attributes"]?["kind"]) == "greeting" && first["receive_count"] == .int(1))
        let receipt = try #require(text(first["receipt_handle"]))
        #expect(await h.call("POST", "/queues/jobs/messages/\(receipt)/visibility", key: ada, body: #"{"timeout": 0}"#).0 == 204)
        let (_, again, _) = await h.call("POST", "/queues/jobs/messages/receive", key: ada)
        guard case .array(let retried) = again?["messages"], let newer = retried.first.flatMap({ text($0["receipt_handle"]) }) else {
            Issue.record("not received again")
            return
        }
        #expect(await h.call("DELETE", "/queues/jobs/messages/\(receipt)", key: ada).0 == 409, "an older receipt is stale")
        #expect(await h.call("DELETE", "/queues/jobs/messages/\(newer)", key: ada).0 == 204)
        #expect(await h.call("DELETE", "/queues/jobs/messages/\(newer)", key: ada).0 == 404)
        #expect(await h.call("DELETE", "/queues/jobs/messages/not-a-receipt", key: ada).0 == 400)

        // Settings: If-Match refuses a lost update; the list pages.
        #expect(await h.call("PATCH", "/queues/jobs", key: ada, body: #"{"delay_seconds": 5}"#, headers: [("If-Match", "\"1\"")]).0 == 200)
        #expect(await h.call("PATCH", "/queues/jobs", key: ada, body: #"{"delay_seconds": 6}"#, headers: [("If-Match", "\"1\"")]).0 == 412)
        #expect(await h.call("PATCH", "/queues/jobs", key: ada, body: #"{"delay_seconds": 901}"#).0 == 400)
        for name in ["b", "c", "d"] { #expect(await h.call("POST", "/queues", key: ada, body: #"{"name": "\#(name)"}"#).0 == 201) }
        let (_, page, _) = await h.call("GET", "/queues?limit=2", key: ada)
        guard case .array(let items) = page?["queues"], let token = text(page?["next_token"]) else {
            Issue.record("no page")
            return
        }
        #expect(items.map { text($0["name"]) } == ["b", "c"])
        let (_, rest, _) = await h.call("GET", "/queues?limit=2&next_token=\(token)", key: ada)
        guard case .array(let restItems) = rest?["queues"] else { return }
        #expect(restItems.map { text($0["name"]) } == ["d", "jobs"] && (rest?["next_token"] ?? .null) == .null)

        _ = await h.call("POST", "/queues/jobs/messages", key: ada, body: #"{"body": "x"}"#)
        #expect(await h.call("POST", "/queues/jobs/purge", key: ada).1?["purged"] == .int(1))
        #expect(await h.call("DELETE", "/queues/jobs", key: ada).0 == 204)
        #expect(await h.call("GET", "/queues/jobs", key: ada).0 == 404)
    }

    @Test(arguments: Backing.available) func rolesTenantsAndBadBodies(_ backing: Backing) async throws {
        let h = try await QueuesHarness(backing)
        let ada = try await h.user("ada@example.com")
        let eve = try await h.user("eve@example.com")
        #expect(await h.call("POST", "/queues", key: ada, body: #"{"name": "jobs"}"#).0 == 201)
        for (method, path, body) in [
            ("GET", "/queues/jobs", ""), ("POST", "/queues/jobs/messages", #"{"body": "x"}"#), ("POST", "/queues/jobs/messages/receive", ""),
            ("DELETE", "/queues/jobs", ""),
        ] {
            #expect(await h.call(method, path, key: eve, body: body).0 == 404, "another tenant: \(method) \(path)")
        }
        // A viewer of ada's tenant sees the queue and cannot send or receive.
        let tenant = await h.tenant(of: ada)
        _ = try await h.user("vic@example.com")
        #expect(await h.call("POST", "/rbac/bindings", key: ada, body: #"{"user": "vic@example.com", "role": "viewer"}"#).0 == 201)
        let vic = try await h.user("vic@example.com", tenant: tenant)
        #expect(await h.call("GET", "/queues/jobs", key: vic).0 == 200)
        #expect(await h.call("POST", "/queues/jobs/messages", key: vic, body: #"{"body": "x"}"#).0 == 403)
        #expect(await h.call("POST", "/queues/jobs/messages/receive", key: vic).0 == 403)

        #expect(await h.call("POST", "/queues/jobs/messages", key: ada, body: #"{"body": 5}"#).0 == 400)
        #expect(await h.call("POST", "/queues/jobs/messages", key: ada, body: #"{"body": "x", "colour": "red"}"#).0 == 400)
        #expect(await h.call("POST", "/queues/jobs/messages", key: ada, body: "not json").0 == 400)
        let big = String(repeating: "y", count: 262_145)
        let (status, error, _) = await h.call("POST", "/queues/jobs/messages", key: ada, body: #"{"body": "\#(big)"}"#)
        #expect(status == 400 || status == 413, "\(status) \(String(describing: error))")
        #expect(await h.call("POST", "/queues/jobs/messages/receive", key: ada, body: #"{"max_messages": 0}"#).0 == 400)
        #expect(await h.call("POST", "/queues", key: ada, body: #"{"name": "x.fifo"}"#).0 == 400)
    }

    @Test(arguments: Backing.available) func idempotentSendAndQuota(_ backing: Backing) async throws {
        let h = try await QueuesHarness(backing, quota: 3)
        let ada = try await h.user("ada@example.com")
        #expect(await h.call("POST", "/queues", key: ada, body: #"{"name": "jobs"}"#).0 == 201)
        let key = [("Idempotency-Key", "send-1")]
        let (_, first, _) = await h.call("POST", "/queues/jobs/messages", key: ada, body: #"{"body": "once"}"#, headers: key)
        let (_, retry, _) = await h.call("POST", "/queues/jobs/messages", key: ada, body: #"{"body": "once"}"#, headers: key)
        #expect(first?["message_id"] != nil && first?["message_id"] == retry?["message_id"])
        #expect(await h.call("GET", "/queues/jobs", key: ada).1?["messages_visible"] == .int(1), "a retried send stores one message")

        // 12 concurrent creates against a quota of 3 (one used): exactly two more succeed.
        let statuses = await withTaskGroup(of: Int.self) { group in
            for index in 0..<12 { group.addTask { await h.call("POST", "/queues", key: ada, body: #"{"name": "q\#(index)"}"#).0 } }
            var all: [Int] = []
            for await status in group { all.append(status) }
            return all
        }
        #expect(statuses.filter { $0 == 201 }.count == 2 && statuses.filter { $0 == 409 }.count == 10, "\(statuses)")
    }

    // MARK: - SQS endpoint

    static let secret = "test-secret-key-of-the-storage-cluster"

    /// Credentials as the storage cluster would derive them: key `AKTEST` of `tenant`.
    static func credentials(tenant: String) -> SQSCredentials {
        SQSCredentials(region: "us-east-1") { accessKeyID, date, region in
            guard accessKeyID == "AKTEST" else { return nil }
            return (tenant, SigV4.signingKey(secretKey: Self.secret, date: date, region: region, service: "sqs"))
        }
    }

    /// An SQS JSON call signed as boto3 signs it.
    static func sqs(
        _ h: QueuesHarness, _ operation: String, _ input: String, accessKey: String = "AKTEST", secret: String = Self.secret,
        region: String = "us-east-1", date: Date = Date()
    ) async -> (Int, JSONValue?, APIResponse) {
        let body = Array(input.utf8)
        var head = SigV4.RequestHead(
            method: "POST", rawPath: "/sqs",
            headers: [("host", "127.0.0.1:8080"), ("content-type", "application/x-amz-json-1.0"), ("x-amz-target", "AmazonSQS.\(operation)")])
        SigV4.sign(
            &head, accessKey: accessKey, secretKey: secret, region: region, now: date,
            payload: .sha256(hex: Hex.encode(Digests.sha256(body))), service: "sqs")
        let request = APIRequest(
            method: "POST", target: "/sqs", headers: head.headers.map { ($0.name, $0.value) }, body: body, requestID: "test",
            clientAddress: "127.0.0.1")
        let (response, _) = await h.api.handle(request)
        return (response.status, JSONValue.parse(response.body), response)
    }

    @Test(arguments: Backing.available) func sqsEndpoint(_ backing: Backing) async throws {
        let h = try await QueuesHarness(backing, sqs: Self.credentials(tenant: "tnt_a"))
        let (created, answer, _) = await Self.sqs(h, "CreateQueue", #"{"QueueName": "jobs", "Attributes": {"VisibilityTimeout": "45"}}"#)
        #expect(created == 200 && text(answer?["QueueUrl"]) == "http://127.0.0.1:8080/sqs/tnt_a/jobs")
        let url = "http://127.0.0.1:8080/sqs/tnt_a/jobs"
        let (_, sent, _) = await Self.sqs(h, "SendMessage", #"{"QueueUrl": "\#(url)", "MessageBody": "hello"}"#)
        #expect(text(sent?["MD5OfMessageBody"]) == MessageChecks.bodyMD5("hello"))
        let (_, got, _) = await Self.sqs(h, "ReceiveMessage", #"{"QueueUrl": "\#(url)", "AttributeNames": ["All"]}"#)
        guard case .array(let messages) = got?["Messages"], let message = messages.first else {
            Issue.record("nothing received: \(String(describing: got))")
            return
        }
        #expect(text(message["Body"]) == "hello" && text(message["Attributes"]?["ApproximateReceiveCount"]) == "1")

        // Errors in the protocol's form.
        let (missing, error, response) = await Self.sqs(h, "GetQueueUrl", #"{"QueueName": "nope"}"#)
        #expect(missing == 400 && text(error?["__type"]) == "com.amazonaws.sqs#QueueDoesNotExist")
        #expect(response.headers.contains { $0.0 == "x-amzn-query-error" && $0.1 == "AWS.SimpleQueueService.NonExistentQueue;Sender" })
        let (_, otherTenant, _) = await Self.sqs(h, "SendMessage", #"{"QueueUrl": "http://127.0.0.1:8080/sqs/tnt_b/jobs", "MessageBody": "x"}"#)
        #expect(text(otherTenant?["__type"]) == "com.amazonaws.sqs#QueueDoesNotExist")
        let (_, unknownOp, _) = await Self.sqs(h, "TagQueue", #"{"QueueUrl": "\#(url)"}"#)
        #expect(text(unknownOp?["__type"]) == "com.amazonaws.sqs#UnsupportedOperation")
        let (_, batch, _) = await Self.sqs(h, "SendMessageBatch", #"{"QueueUrl": "\#(url)", "Entries": []}"#)
        #expect(text(batch?["__type"]) == "com.amazonaws.sqs#EmptyBatchRequest")

        // Authentication: a wrong secret, an unknown key, another region, a stale date, no signature.
        #expect(text(await Self.sqs(h, "ListQueues", "{}", secret: "wrong").1?["__type"]) == "com.amazonaws.sqs#SignatureDoesNotMatch")
        #expect(text(await Self.sqs(h, "ListQueues", "{}", accessKey: "AKOTHER").1?["__type"]) == "com.amazonaws.sqs#InvalidClientTokenId")
        #expect(await Self.sqs(h, "ListQueues", "{}", region: "eu-west-1").0 == 403)
        #expect(text(await Self.sqs(h, "ListQueues", "{}", date: Date().addingTimeInterval(-3600)).1?["__type"]) == "com.amazonaws.sqs#RequestExpired")
        let unsigned = APIRequest(
            method: "POST", target: "/sqs", headers: [("X-Amz-Target", "AmazonSQS.ListQueues")], body: Array("{}".utf8), requestID: "t",
            clientAddress: "127.0.0.1")
        #expect(await h.api.handle(unsigned).0.status == 403)
        // A body changed after signing does not verify.
        var head = SigV4.RequestHead(method: "POST", rawPath: "/sqs", headers: [("host", "h"), ("x-amz-target", "AmazonSQS.ListQueues")])
        SigV4.sign(&head, accessKey: "AKTEST", secretKey: Self.secret, region: "us-east-1", now: Date(), payload: .sha256(hex: Hex.encode(Digests.sha256(Array("{}".utf8)))), service: "sqs")
        let tampered = APIRequest(
            method: "POST", target: "/sqs", headers: head.headers.map { ($0.name, $0.value) }, body: Array(#"{"QueueNamePrefix": "j"}"#.utf8),
            requestID: "t", clientAddress: "127.0.0.1")
        #expect([400, 403].contains(await h.api.handle(tampered).0.status))
    }

    @Test func sqsWithoutAStorageClusterIsAClearError() async throws {
        let h = try await QueuesHarness(.sqlite)
        let (status, error, _) = await Self.sqs(h, "ListQueues", "{}")
        #expect(status == 503 && text(error?["message"])?.contains("storage cluster") == true)
    }
}
