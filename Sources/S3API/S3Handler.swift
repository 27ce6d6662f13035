public import Foundation
import Hashing
public import Logging
import NIOCore
import SigV4
import StorageEngine
import TextEscaping

/// Looks up who an access key is: its secret and what it may use.
public protocol CredentialStore: Sendable {
    /// The principal of `accessKey`, or nil when there is no such key.
    func principal(forAccessKey accessKey: String) async throws -> S3Principal?
}

/// A fixed set of credentials, each its own account (owner = the access key), and optionally a root
/// key that may use every bucket.
public struct StaticCredentialStore: CredentialStore {
    private let keys: [String: String]
    private let root: String?

    public init(_ keys: [String: String], root: String? = nil) {
        self.keys = keys
        self.root = root
    }

    public func principal(forAccessKey accessKey: String) async throws -> S3Principal? {
        guard let secret = self.keys[accessKey] else { return nil }
        return S3Principal(accessKey: accessKey, secretKey: secret, owner: accessKey, isRoot: accessKey == self.root)
    }
}

/// Settings of the S3 API.
public struct S3Configuration: Sendable {
    /// The region this endpoint reports (`GetBucketLocation`) and expects in signatures' scope.
    public var region: String = "us-east-1"
    /// When set, `bucket.<domain>` in the Host header addresses a bucket (virtual-hosted style).
    public var domain: String?
    /// The largest single PUT, 5 GiB as in AWS.
    public var maxObjectSize: Int64 = 5 << 30
    /// The smallest part but the last of a multipart upload, 5 MiB as in AWS.
    public var minPartSize: Int64 = 5 << 20
    /// The largest part, 5 GiB.
    public var maxPartSize: Int64 = 5 << 30
    /// The most parts of an upload.
    public var maxParts: Int = 10_000
    /// How far a signed request's time may be from ours.
    public var maxClockSkew: Duration = .seconds(15 * 60)

    public init() {}
}

/// Serves S3 requests against a storage engine. Has no sockets: the HTTP layer passes a request head,
/// a body reader, and writes the returned response.
public struct S3Handler: Sendable {
    let engine: any ObjectStore
    let credentials: any CredentialStore
    let configuration: S3Configuration
    let now: @Sendable () -> Date
    let logger: Logger
    let admin: (any AdminAPI)?

    public init(
        engine: any ObjectStore,
        credentials: any CredentialStore,
        configuration: S3Configuration,
        logger: Logger,
        admin: (any AdminAPI)? = nil,
        now: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.engine = engine
        self.admin = admin
        self.credentials = credentials
        self.configuration = configuration
        self.logger = logger
        self.now = now
    }

    /// Serves one request. Never throws: every failure becomes an S3 error response.
    public func handle(_ request: S3Request, body: any RequestBody) async -> S3Response {
        var operation = "Unknown"
        do {
            var context = try self.address(request)
            if let admin = self.admin, context.bucket == "_admin" {
                operation = "Admin"
                try await self.authenticate(&context)
                let payload = try PayloadReader(body: body, context: context, maxSize: 1 << 20)
                return try await self.serveAdmin(admin, context, payload: payload)
            }
            operation = Self.operationName(context)
            try await self.authenticate(&context)
            let payload = try PayloadReader(body: body, context: context, maxSize: self.configuration.maxObjectSize)
            return try await self.dispatch(context, payload: payload)
        } catch {
            let s3Error = S3Error(error)
            if s3Error.status == 503 {
                // Shutting down, or too few replicas reachable: expected during failures, one line each.
                self.logger.warning("request refused", metadata: ["request-id": "\(request.requestID)", "error": "\(error)"])
            } else if s3Error.status >= 500 {
                self.logger.error("request failed", metadata: ["request-id": "\(request.requestID)", "error": "\(error)"])
            }
            return self.errorResponse(s3Error, request: request, operation: operation)
        }
    }

    private func serveAdmin(_ admin: any AdminAPI, _ context: Context, payload: PayloadReader) async throws -> S3Response {
        let body = try await payload.readAll(limit: 1 << 20)
        let answer: AdminResponse
        do {
            answer = try await admin.handle(
                method: context.method, path: "/" + (context.key ?? ""), query: context.query, body: body, accessKey: context.accessKey)
        } catch let error as AdminError {
            let json = "{\"error\": {\"code\": \(JSONText.quote(error.code)), \"message\": \(JSONText.quote(error.message))}}\n"
            answer = AdminResponse(status: error.status, json: json)
        }
        return S3Response(
            status: answer.status,
            headers: [("Content-Type", "application/json")],
            body: .buffer(ByteBuffer(string: answer.json)),
            operation: "Admin"
        )
    }

    /// Renders an error document; HEAD responses carry no body.
    public func errorResponse(_ error: S3Error, request: S3Request, operation: String) -> S3Response {
        var headers = error.headers
        var body = S3Response.Body.empty
        if error.status != 304 {
            var xml = XMLWriter()
            xml.group("Error") { xml in
                xml.element("Code", error.code)
                xml.element("Message", error.message)
                for (name, value) in error.fields { xml.element(name, value) }
                xml.element("Resource", URLEncoding.decode(Substring(request.rawPath)) ?? request.rawPath)
                xml.element("RequestId", request.requestID)
                xml.element("HostId", request.requestID)
            }
            if request.method != "HEAD" {
                body = .buffer(ByteBuffer(string: xml.text))
            }
            headers.append(("Content-Type", "application/xml"))
        }
        var response = S3Response(status: error.status, headers: headers, body: body, operation: operation)
        response.errorCode = error.code
        if request.method == "HEAD", case .empty = body, error.status != 304 {
            // HEAD answers carry the status only.
            response.body = .empty
        }
        return response
    }

    // MARK: - Addressing and authentication

    /// What a request addresses and who signed it.
    struct Context {
        var request: S3Request
        var bucket: String?
        var key: String?
        /// Decoded query parameters, first value of each name.
        var query: [String: String]
        /// Who signed the request (set by ``S3Handler/authenticate(_:)``).
        var accessKey = ""
        /// What the signer may use (set by ``S3Handler/authenticate(_:)``).
        var principal = S3Principal(accessKey: "", secretKey: "", owner: "")
        /// The addressed bucket once ``S3Handler/ownedBucket(_:_:)`` allowed it.
        var authorizedBucket: BucketRecord?
        var payloadMode = SigV4.PayloadMode.unsigned
        var signing: SigV4.SigningContext?
        var method: String { self.request.method }

        func header(_ name: String) -> String? { self.request.header(name) }
    }

    /// Works out what a request addresses: bucket, key and query. No credentials are looked at.
    func address(_ request: S3Request) throws -> Context {
        guard let pairs = URLEncoding.parseQuery(request.rawQuery) else {
            throw S3Error.invalidArgument("The query string is not valid.")
        }
        var query: [String: String] = [:]
        for (name, value) in pairs where query[name] == nil { query[name] = value }
        guard let path = URLEncoding.decode(Substring(request.rawPath)), path.hasPrefix("/") else {
            throw S3Error.invalidRequest("The request path is not valid.")
        }
        var bucket: String?
        var key: String?
        if let domain = self.configuration.domain, let host = request.header("host"),
            let virtualBucket = Self.virtualHostBucket(host: host, domain: domain)
        {
            bucket = virtualBucket
            let rest = path.dropFirst()
            key = rest.isEmpty ? nil : String(rest)
        } else {
            let rest = path.dropFirst()
            if let slash = rest.firstIndex(of: "/") {
                bucket = String(rest[..<slash])
                let keyPart = rest[rest.index(after: slash)...]
                key = keyPart.isEmpty ? nil : String(keyPart)
            } else if !rest.isEmpty {
                bucket = String(rest)
            }
        }
        return Context(request: request, bucket: bucket, key: key, query: query)
    }

    /// Checks the request's signature and records who signed it.
    func authenticate(_ context: inout Context) async throws {
        let request = context.request
        let head = SigV4.RequestHead(
            method: request.method,
            rawPath: request.rawPath,
            rawQuery: request.rawQuery,
            headers: request.headers
        )
        guard case .signed(let credential) = try SigV4.parse(head) else {
            throw S3Error.accessDenied("Anonymous access is not allowed; sign the request with an access key.")
        }
        // The scope names this endpoint's region, as AWS requires (a key signed for another region is refused).
        guard credential.region == self.configuration.region else {
            throw S3Error(
                credential.isPresigned ? "AuthorizationQueryParametersError" : "AuthorizationHeaderMalformed", 400,
                "The authorization \(credential.isPresigned ? "query parameters are" : "header is") malformed; "
                    + "the region '\(credential.region.prefix(40))' is wrong; expecting '\(self.configuration.region)'",
                fields: [("Region", self.configuration.region)])
        }
        let unsigned = SigV4.unsignedAmzHeaders(head, credential: credential)
        guard unsigned.isEmpty else {
            throw S3Error(
                "AccessDenied", 403, "There were headers present in the request which were not signed",
                fields: [("HeadersNotSigned", unsigned.joined(separator: ", "))])
        }
        guard let principal = try await self.credentials.principal(forAccessKey: credential.accessKey) else {
            throw S3Error("InvalidAccessKeyId", 403, "The AWS Access Key Id you provided does not exist in our records.")
        }
        context.signing = try SigV4.verify(
            credential,
            head: head,
            secretKey: principal.secretKey,
            now: self.now(),
            maxSkew: self.configuration.maxClockSkew
        )
        context.accessKey = credential.accessKey
        context.principal = principal
        context.payloadMode = credential.payloadMode
    }

    /// The bucket named by a virtual-hosted-style Host header, or nil for path style.
    static func virtualHostBucket(host: String, domain: String) -> String? {
        var name = host.lowercased()
        if let colon = name.lastIndex(of: ":"), !name.hasSuffix("]") { name = String(name[..<colon]) }
        let suffix = "." + domain.lowercased()
        guard name.hasSuffix(suffix), name.count > suffix.count else { return nil }
        return String(name.dropLast(suffix.count))
    }

    // MARK: - Dispatch

    static let unsupportedSubresources: Set<String> = [
        "acl", "policy", "cors", "lifecycle", "tagging", "encryption", "website", "logging", "notification",
        "replication", "requestPayment", "object-lock", "retention", "legal-hold", "torrent", "restore", "select",
        "analytics", "inventory", "metrics", "intelligent-tiering", "ownershipControls", "publicAccessBlock",
        "accelerate", "policyStatus", "attributes",
    ]

    static func operationName(_ context: Context) -> String {
        let q = context.query
        guard context.bucket != nil else { return "ListBuckets" }
        if context.key == nil {
            switch context.method {
            case "PUT": return "CreateBucket"
            case "HEAD": return "HeadBucket"
            case "DELETE": return "DeleteBucket"
            case "POST": return q["delete"] != nil ? "DeleteObjects" : "PostBucket"
            default:
                if q["location"] != nil { return "GetBucketLocation" }
                if q["uploads"] != nil { return "ListMultipartUploads" }
                if q["versioning"] != nil { return "GetBucketVersioning" }
                if q["versions"] != nil { return "ListObjectVersions" }
                return q["list-type"] == "2" ? "ListObjectsV2" : "ListObjects"
            }
        }
        switch context.method {
        case "PUT":
            if q["uploadId"] != nil { return context.header("x-amz-copy-source") != nil ? "UploadPartCopy" : "UploadPart" }
            return context.header("x-amz-copy-source") != nil ? "CopyObject" : "PutObject"
        case "GET": return q["uploadId"] != nil ? "ListParts" : "GetObject"
        case "HEAD": return "HeadObject"
        case "DELETE": return q["uploadId"] != nil ? "AbortMultipartUpload" : "DeleteObject"
        case "POST":
            if q["uploads"] != nil { return "CreateMultipartUpload" }
            return q["uploadId"] != nil ? "CompleteMultipartUpload" : "PostObject"
        default: return "Unknown"
        }
    }

    func dispatch(_ context: Context, payload: PayloadReader) async throws -> S3Response {
        var context = context
        let q = context.query
        guard let bucket = context.bucket else {
            guard context.method == "GET" || context.method == "HEAD" else { throw S3Error.methodNotAllowed }
            return try await self.listBuckets(context)
        }
        if let key = context.key, key.utf8.count > 1024 {
            throw S3Error.keyTooLong
        }
        // Every operation on a bucket or its objects but creating it needs a bucket the signer may use:
        // NoSuchBucket when there is none, AccessDenied when it belongs to someone else. The root key may
        // use every bucket, so its object requests skip the owner lookup: in a cluster the bucket record
        // lives in the directory partition, and needing its quorum too would make a network partition
        // refuse reads of objects whose own partition still has one (the object operations find a
        // missing bucket themselves).
        if !(context.key == nil && context.method == "PUT"), !(context.principal.isRoot && context.key != nil) {
            context.authorizedBucket = try await self.ownedBucket(context, bucket)
        }
        // Read-only views of configuration we do not support, answered truthfully as "none".
        if context.method == "GET" {
            if q["acl"] != nil { return try await self.getACL(context, bucket: bucket) }
            if context.key == nil, let answer = Self.emptyConfigurationError(q) { throw answer }
        }
        for name in q.keys where Self.unsupportedSubresources.contains(name) {
            throw S3Error.notImplemented("?\(name)")
        }
        // Buckets are never versioned: the only version that exists is "null".
        if let versionID = q["versionId"], versionID != "null" {
            throw S3Error.invalidArgument("Invalid version id specified", name: "versionId", value: versionID)
        }
        guard let key = context.key else {
            switch context.method {
            case "PUT": return try await self.createBucket(context, bucket: bucket, payload: payload)
            case "HEAD": return try await self.headBucket(context, bucket: bucket)
            case "DELETE": return try await self.deleteBucket(context, bucket: bucket)
            case "POST":
                guard q["delete"] != nil else { throw S3Error.notImplemented("POST Object (browser-based form uploads)") }
                return try await self.deleteObjects(context, bucket: bucket, payload: payload)
            case "GET":
                if q["location"] != nil { return try await self.getBucketLocation(context, bucket: bucket) }
                if q["uploads"] != nil { return try await self.listUploads(context, bucket: bucket) }
                if q["versioning"] != nil { return try await self.getBucketVersioning(context, bucket: bucket) }
                if q["versions"] != nil { return try await self.listObjectVersions(context, bucket: bucket) }
                return try await self.listObjects(context, bucket: bucket, version2: q["list-type"] == "2")
            default:
                throw S3Error.methodNotAllowed
            }
        }
        switch context.method {
        case "PUT":
            if let uploadID = q["uploadId"] {
                if context.header("x-amz-copy-source") != nil {
                    return try await self.uploadPartCopy(context, bucket: bucket, key: key, uploadID: uploadID)
                }
                return try await self.uploadPart(context, bucket: bucket, key: key, uploadID: uploadID, payload: payload)
            }
            if context.header("x-amz-copy-source") != nil {
                return try await self.copyObject(context, bucket: bucket, key: key)
            }
            return try await self.putObject(context, bucket: bucket, key: key, payload: payload)
        case "GET", "HEAD":
            if let uploadID = q["uploadId"], context.method == "GET" {
                return try await self.listParts(context, bucket: bucket, key: key, uploadID: uploadID)
            }
            return try await self.getObject(context, bucket: bucket, key: key)
        case "DELETE":
            if let uploadID = q["uploadId"] {
                return try await self.abortUpload(context, bucket: bucket, key: key, uploadID: uploadID)
            }
            return try await self.deleteObject(context, bucket: bucket, key: key)
        case "POST":
            if q["uploads"] != nil { return try await self.createUpload(context, bucket: bucket, key: key) }
            if let uploadID = q["uploadId"] {
                return try await self.completeUpload(context, bucket: bucket, key: key, uploadID: uploadID, payload: payload)
            }
            throw S3Error.methodNotAllowed
        default:
            throw S3Error.methodNotAllowed
        }
    }

    /// For bucket configuration that this store does not keep, the "not configured" error AWS returns.
    static func emptyConfigurationError(_ query: [String: String]) -> S3Error? {
        if query["policy"] != nil { return S3Error("NoSuchBucketPolicy", 404, "The bucket policy does not exist") }
        if query["cors"] != nil { return S3Error("NoSuchCORSConfiguration", 404, "The CORS configuration does not exist") }
        if query["lifecycle"] != nil {
            return S3Error("NoSuchLifecycleConfiguration", 404, "The lifecycle configuration does not exist")
        }
        if query["tagging"] != nil { return S3Error("NoSuchTagSet", 404, "The TagSet does not exist") }
        if query["website"] != nil {
            return S3Error("NoSuchWebsiteConfiguration", 404, "The specified bucket does not have a website configuration")
        }
        if query["encryption"] != nil {
            return S3Error(
                "ServerSideEncryptionConfigurationNotFoundError", 404,
                "The server side encryption configuration was not found"
            )
        }
        return nil
    }

    // MARK: - Helpers shared by operations

    /// The canonical owner id of an access key.
    static func ownerID(_ accessKey: String) -> String { Hex.encode(Digests.sha256(Array(accessKey.utf8))) }

    static func writeOwner(_ xml: inout XMLWriter, _ accessKey: String, element: String = "Owner") {
        xml.group(element) { xml in
            xml.element("ID", ownerID(accessKey))
            xml.element("DisplayName", accessKey)
        }
    }

    static func xmlResponse(_ xml: XMLWriter, operation: String, status: Int = 200, headers: [(String, String)] = []) -> S3Response {
        S3Response(
            status: status,
            headers: [("Content-Type", "application/xml")] + headers,
            body: .buffer(ByteBuffer(string: xml.text)),
            operation: operation
        )
    }

    func getACL(_ context: Context, bucket: String) async throws -> S3Response {
        let record = try await self.ownedBucket(context, bucket)
        if let key = context.key, try await self.engine.object(bucket: bucket, key: key) == nil {
            throw S3Error.noSuchKey
        }
        var xml = XMLWriter()
        xml.group("AccessControlPolicy", namespace: true) { xml in
            Self.writeOwner(&xml, record.owner)
            xml.group("AccessControlList") { xml in
                xml.raw("<Grant><Grantee xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xsi:type=\"CanonicalUser\">")
                xml.element("ID", Self.ownerID(record.owner))
                xml.element("DisplayName", record.owner)
                xml.raw("</Grantee><Permission>FULL_CONTROL</Permission></Grant>")
            }
        }
        return Self.xmlResponse(xml, operation: context.key == nil ? "GetBucketAcl" : "GetObjectAcl")
    }
}

