import Foundation
import Hashing
import NIOCore
import StorageEngine

extension S3Handler {
    // MARK: - Bucket names

    /// Whether `name` follows the S3 bucket naming rules (general purpose buckets).
    public static func isValidBucketName(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard bytes.count >= 3, bytes.count <= 63 else { return false }
        func isLowerOrDigit(_ byte: UInt8) -> Bool {
            (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
        }
        guard isLowerOrDigit(bytes.first!), isLowerOrDigit(bytes.last!) else { return false }
        for byte in bytes where !(isLowerOrDigit(byte) || byte == UInt8(ascii: "-") || byte == UInt8(ascii: ".")) {
            return false
        }
        if name.contains("..") || name.contains(".-") || name.contains("-.") { return false }
        if name.hasPrefix("xn--") || name.hasPrefix("sthree-") || name.hasSuffix("-s3alias") || name.hasSuffix("--ol-s3") {
            return false
        }
        // Not formatted as an IP address.
        let parts = name.split(separator: ".", omittingEmptySubsequences: false)
        if parts.count == 4 && parts.allSatisfy({ Int($0).map { (0...255).contains($0) } ?? false }) { return false }
        return true
    }

    // MARK: - ListBuckets

    /// The caller's buckets by name; with `max-buckets` (1 to 10000) a page of them, continued by
    /// `continuation-token` (the last name of the page before, opaque to clients); `prefix` filters.
    func listBuckets(_ context: Context) async throws -> S3Response {
        let principal = context.principal
        let q = context.query
        var maxBuckets: Int?
        if let text = q["max-buckets"] {
            guard let value = Int(text), (1...10_000).contains(value) else {
                throw S3Error.invalidArgument("Argument max-buckets must be an integer between 1 and 10000", name: "max-buckets", value: text)
            }
            maxBuckets = value
        }
        var after: String?
        if let token = q["continuation-token"] {
            guard let bytes = Base64.decode(token), let name = String(validating: bytes, as: UTF8.self) else {
                throw S3Error.invalidArgument("The continuation token provided is incorrect", name: "continuation-token", value: token)
            }
            after = name
        }
        let prefix = q["prefix"] ?? ""
        var buckets = try await self.engine.listBuckets()
            .filter { principal.mayUse(bucketOwnedBy: $0.owner) && $0.name.hasPrefix(prefix) }
            .sorted { $0.name.utf8.lexicographicallyPrecedes($1.name.utf8) }
        if let after { buckets = buckets.filter { after.utf8.lexicographicallyPrecedes($0.name.utf8) } }
        var next: String?
        if let maxBuckets, buckets.count > maxBuckets {
            buckets = Array(buckets.prefix(maxBuckets))
            next = buckets.last.map { Base64.encode(Array($0.name.utf8)) }
        }
        var xml = XMLWriter()
        xml.group("ListAllMyBucketsResult", namespace: true) { xml in
            Self.writeOwner(&xml, principal.owner)
            xml.group("Buckets") { xml in
                for bucket in buckets {
                    xml.group("Bucket") { xml in
                        xml.element("Name", bucket.name)
                        xml.element("CreationDate", HTTPDate.iso8601(bucket.created))
                        xml.element("BucketRegion", self.configuration.region)
                    }
                }
            }
            if let next { xml.element("ContinuationToken", next) }
            if q["prefix"] != nil { xml.element("Prefix", prefix) }
        }
        return Self.xmlResponse(xml, operation: "ListBuckets")
    }

    // MARK: - CreateBucket / HeadBucket / DeleteBucket / GetBucketLocation

    func createBucket(_ context: Context, bucket: String, payload: PayloadReader) async throws -> S3Response {
        guard Self.isValidBucketName(bucket) else { throw S3Error.invalidBucketName }
        let body = try await payload.readAll(limit: 64 * 1024)
        if !body.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) {
            let root = try XMLParser.parse(body)
            guard root.name == "CreateBucketConfiguration" else { throw S3Error.malformedXML }
            if let location = root.child("LocationConstraint")?.text, !location.isEmpty, location != self.configuration.region {
                throw S3Error(
                    "IllegalLocationConstraintException", 400,
                    "The \(location) location constraint is incompatible for the region specific endpoint this request was sent to."
                )
            }
        }
        if let acl = context.header("x-amz-acl"), acl != "private" {
            throw S3Error.notImplemented("x-amz-acl: \(acl)")
        }
        try await self.engine.createBucket(bucket, owner: context.principal.owner)
        return S3Response(status: 200, headers: [("Location", "/" + bucket)], operation: "CreateBucket")
    }

    /// The bucket if it exists and the caller may use it (their tenant's, or any for the root key);
    /// AccessDenied for another tenant's bucket.
    func ownedBucket(_ context: Context, _ bucket: String) async throws -> BucketRecord {
        if let record = context.authorizedBucket, record.name == bucket { return record }
        guard let record = try await self.engine.cachedBucket(bucket) else { throw S3Error.noSuchBucket }
        guard context.principal.mayUse(bucketOwnedBy: record.owner) else { throw S3Error.accessDenied() }
        return record
    }

    func headBucket(_ context: Context, bucket: String) async throws -> S3Response {
        _ = try await self.ownedBucket(context, bucket)
        return S3Response(status: 200, headers: [("x-amz-bucket-region", self.configuration.region)], operation: "HeadBucket")
    }

    func deleteBucket(_ context: Context, bucket: String) async throws -> S3Response {
        _ = try await self.ownedBucket(context, bucket)
        try await self.engine.deleteBucket(bucket)
        return S3Response(status: 204, operation: "DeleteBucket")
    }

    func getBucketLocation(_ context: Context, bucket: String) async throws -> S3Response {
        _ = try await self.ownedBucket(context, bucket)
        var xml = XMLWriter()
        xml.open("LocationConstraint", namespace: true)
        // AWS answers an empty constraint for us-east-1.
        if self.configuration.region != "us-east-1" { xml.raw(XMLWriter.escape(self.configuration.region)) }
        xml.close("LocationConstraint")
        return Self.xmlResponse(xml, operation: "GetBucketLocation")
    }

    func getBucketVersioning(_ context: Context, bucket: String) async throws -> S3Response {
        _ = try await self.ownedBucket(context, bucket)
        var xml = XMLWriter()
        // Versioning has never been enabled: the configuration is empty.
        xml.group("VersioningConfiguration", namespace: true) { _ in }
        return Self.xmlResponse(xml, operation: "GetBucketVersioning")
    }

    // MARK: - ListObjects (v1) and ListObjectsV2

    /// What every listing of a bucket's keys takes: `max-keys` (1000 when absent, at most 1000),
    /// `encoding-type`, `prefix` and `delimiter`.
    struct ListingQuery {
        var maxKeys: Int
        var encodesURL: Bool
        var prefix: String
        var delimiter: String?

        init(_ q: [String: String]) throws {
            self.maxKeys = 1000
            if let text = q["max-keys"] {
                guard let value = Int(text), value >= 0 else {
                    throw S3Error.invalidArgument("Provided max-keys not an integer or within integer range", name: "max-keys", value: text)
                }
                self.maxKeys = min(value, 1000)
            }
            switch q["encoding-type"] {
            case nil: self.encodesURL = false
            case "url": self.encodesURL = true
            case let other?: throw S3Error.invalidArgument("Invalid Encoding Method specified in Request", name: "encoding-type", value: other)
            }
            self.prefix = q["prefix"] ?? ""
            self.delimiter = q["delimiter"].flatMap { $0.isEmpty ? nil : $0 }
        }

        /// A key or prefix as the answer carries it.
        func encode(_ text: String) -> String { self.encodesURL ? URLEncoding.encode(text) : text }
    }

    /// A page of the bucket; `max-keys=0` asks for none (AWS answers an empty, untruncated page).
    func listPage(bucket: String, prefix: String, delimiter: String?, startAfter: String?, maxKeys: Int) async throws -> StorageEngine.ListPage {
        guard maxKeys > 0 else { return StorageEngine.ListPage() }
        return try await self.engine.list(
            bucket: bucket, prefix: prefix, delimiter: delimiter, startAfter: startAfter?.isEmpty == true ? nil : startAfter, maxKeys: maxKeys)
    }

    func listObjects(_ context: Context, bucket: String, version2: Bool) async throws -> S3Response {
        let q = context.query
        let listing = try ListingQuery(q)
        let (maxKeys, encodeURL, prefix, delimiter, encode) = (listing.maxKeys, listing.encodesURL, listing.prefix, listing.delimiter, listing.encode)
        var startAfter: String?
        if version2 {
            if let token = q["continuation-token"] {
                guard let bytes = Base64.decode(token), let key = String(validating: bytes, as: UTF8.self) else {
                    throw S3Error.invalidArgument("The continuation token provided is incorrect", name: "continuation-token", value: token)
                }
                startAfter = key
            } else {
                startAfter = q["start-after"]
            }
        } else {
            startAfter = q["marker"]
        }
        let owner = try await self.ownedBucket(context, bucket).owner
        let page = try await self.listPage(bucket: bucket, prefix: prefix, delimiter: delimiter, startAfter: startAfter, maxKeys: maxKeys)
        let fetchOwner = !version2 || q["fetch-owner"] == "true"
        var xml = XMLWriter()
        xml.group("ListBucketResult", namespace: true) { xml in
            xml.element("Name", bucket)
            xml.element("Prefix", encode(prefix))
            if version2 {
                if let token = q["continuation-token"] { xml.element("ContinuationToken", token) }
                if let after = q["start-after"] { xml.element("StartAfter", encode(after)) }
                xml.element("KeyCount", page.entries.count + page.commonPrefixes.count)
            } else {
                xml.element("Marker", encode(q["marker"] ?? ""))
            }
            xml.element("MaxKeys", maxKeys)
            if let delimiter { xml.element("Delimiter", encode(delimiter)) }
            if encodeURL { xml.element("EncodingType", "url") }
            xml.element("IsTruncated", page.isTruncated)
            if page.isTruncated, let last = page.lastReturned {
                if version2 {
                    xml.element("NextContinuationToken", Base64.encode(Array(last.utf8)))
                } else if delimiter != nil {
                    // As in AWS: without a delimiter, clients continue from the last key listed.
                    xml.element("NextMarker", encode(last))
                }
            }
            for entry in page.entries {
                xml.group("Contents") { xml in
                    xml.element("Key", encode(entry.key))
                    xml.element("LastModified", HTTPDate.iso8601(entry.lastModified))
                    xml.element("ETag", "\"\(entry.etag)\"")
                    xml.element("Size", entry.size)
                    if fetchOwner { Self.writeOwner(&xml, owner) }
                    xml.element("StorageClass", "STANDARD")
                }
            }
            for commonPrefix in page.commonPrefixes {
                xml.group("CommonPrefixes") { xml in xml.element("Prefix", encode(commonPrefix)) }
            }
        }
        return Self.xmlResponse(xml, operation: version2 ? "ListObjectsV2" : "ListObjects")
    }

    // MARK: - ListObjectVersions

    /// `GET /bucket?versions`. Buckets are not versioned, so every object has one version, `null`,
    /// the latest: the listing is the objects' (with `key-marker` and `version-id-marker` for
    /// pages), which is what tools that empty a bucket through it (Terraform's `force_destroy`,
    /// `aws s3api list-object-versions`, boto3's `object_versions`) need.
    func listObjectVersions(_ context: Context, bucket: String) async throws -> S3Response {
        let q = context.query
        let listing = try ListingQuery(q)
        let (maxKeys, encodeURL, prefix, delimiter, encode) = (listing.maxKeys, listing.encodesURL, listing.prefix, listing.delimiter, listing.encode)
        let keyMarker = q["key-marker"] ?? ""
        if let versionMarker = q["version-id-marker"], !versionMarker.isEmpty {
            guard !keyMarker.isEmpty else {
                throw S3Error.invalidArgument(
                    "A version-id marker cannot be specified without a key marker.", name: "version-id-marker", value: versionMarker)
            }
            guard versionMarker == "null" else {
                throw S3Error.invalidArgument("Invalid version id specified", name: "version-id-marker", value: versionMarker)
            }
        }
        let owner = try await self.ownedBucket(context, bucket).owner
        // A key's only version is null: a page that ended on it resumes after it, marker or not.
        let page = try await self.listPage(bucket: bucket, prefix: prefix, delimiter: delimiter, startAfter: keyMarker, maxKeys: maxKeys)
        var xml = XMLWriter()
        xml.group("ListVersionsResult", namespace: true) { xml in
            xml.element("Name", bucket)
            xml.element("Prefix", encode(prefix))
            xml.element("KeyMarker", encode(keyMarker))
            xml.element("VersionIdMarker", q["version-id-marker"] ?? "")
            xml.element("MaxKeys", maxKeys)
            if let delimiter { xml.element("Delimiter", encode(delimiter)) }
            if encodeURL { xml.element("EncodingType", "url") }
            xml.element("IsTruncated", page.isTruncated)
            if page.isTruncated, let last = page.lastReturned {
                xml.element("NextKeyMarker", encode(last))
                xml.element("NextVersionIdMarker", "null")
            }
            for entry in page.entries {
                xml.group("Version") { xml in
                    xml.element("Key", encode(entry.key))
                    xml.element("VersionId", "null")
                    xml.element("IsLatest", true)
                    xml.element("LastModified", HTTPDate.iso8601(entry.lastModified))
                    xml.element("ETag", "\"\(entry.etag)\"")
                    xml.element("Size", entry.size)
                    Self.writeOwner(&xml, owner)
                    xml.element("StorageClass", "STANDARD")
                }
            }
            for commonPrefix in page.commonPrefixes {
                xml.group("CommonPrefixes") { xml in xml.element("Prefix", encode(commonPrefix)) }
            }
        }
        return Self.xmlResponse(xml, operation: "ListObjectVersions")
    }

    // MARK: - DeleteObjects

    func deleteObjects(_ context: Context, bucket: String, payload: PayloadReader) async throws -> S3Response {
        var integrity = try IntegrityCheck(context)
        let body = try await payload.readAll(limit: 2 << 20)
        integrity.update(ByteBuffer(bytes: body))
        _ = try integrity.finish(payload)
        let root = try XMLParser.parse(body)
        guard root.name == "Delete" else { throw S3Error.malformedXML }
        let quiet = root.child("Quiet")?.text.trimmingCharacters(in: .whitespaces).lowercased() == "true"
        let objects = root.children("Object")
        guard !objects.isEmpty, objects.count <= 1000 else { throw S3Error.malformedXML }
        var keys: [String] = []
        // Keys whose request named a version: the only one there is, null, is echoed.
        var versioned: Set<String> = []
        var errors: [(String, S3Error)] = []
        for object in objects {
            guard let key = object.child("Key")?.text else { throw S3Error.malformedXML }
            let version = object.child("VersionId")?.text
            if key.isEmpty || key.utf8.count > 1024 {
                errors.append((key, key.isEmpty ? S3Error.invalidArgument("Invalid key") : S3Error.keyTooLong))
            } else if let version, version != "null" {
                errors.append((key, S3Error("NoSuchVersion", 404, "The specified version does not exist.")))
            } else {
                keys.append(key)
                if version != nil { versioned.insert(key) }
            }
        }
        _ = try await self.ownedBucket(context, bucket)
        try await self.engine.deleteObjects(bucket: bucket, keys: keys)
        var xml = XMLWriter()
        xml.group("DeleteResult", namespace: true) { xml in
            if !quiet {
                for key in keys {
                    xml.group("Deleted") { xml in
                        xml.element("Key", key)
                        if versioned.contains(key) { xml.element("VersionId", "null") }
                    }
                }
            }
            for (key, error) in errors {
                xml.group("Error") { xml in
                    xml.element("Key", key)
                    xml.element("Code", error.code)
                    xml.element("Message", error.message)
                }
            }
        }
        return Self.xmlResponse(xml, operation: "DeleteObjects")
    }
}
