#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import ServiceContract
import Foundation
import Hashing
import StorageClient

/// Storage as a service for users: S3 keys of the tenant through the control plane, and the common
/// S3 operations spoken directly to the S3 endpoint with the tenant's key (for users without aws-cli).
extension Storage {
    /// Where S3 requests go and which tenant key signs them: options, then `CLOUD_S3_*`, then the
    /// profile of the config file (`cloud storage keys create --save`).
    struct S3Options: ParsableArguments {
        @Option(help: "S3 endpoint (default: $CLOUD_S3_ENDPOINT, the config file's s3_endpoint, or http://127.0.0.1:9000).")
        var endpoint: String?

        @Option(help: "S3 access key id (default: $CLOUD_S3_ACCESS_KEY, or the config file's s3_access_key).")
        var accessKey: String?

        @Option(help: "S3 secret key (default: $CLOUD_S3_SECRET_KEY, or the config file's s3_secret_key).")
        var secretKey: String?

        @Option(help: "Region in the signature (default: $CLOUD_S3_REGION, the config file, or us-east-1).")
        var region: String?

        @OptionGroup var profileOption: ProfileOption

        func client() throws -> SignedClient {
            let environment = ProcessInfo.processInfo.environment
            let saved = StorageConfig.load()
            func pick(_ option: String?, _ variable: String, _ key: String) -> String? {
                for value in [option, environment[variable], saved[key]] { if let value, !value.isEmpty { return value } }
                return nil
            }
            let endpoint = pick(self.endpoint, "CLOUD_S3_ENDPOINT", StorageConfig.endpointKey) ?? "http://127.0.0.1:9000"
            guard let access = pick(self.accessKey, "CLOUD_S3_ACCESS_KEY", StorageConfig.accessKeyKey),
                let secret = pick(self.secretKey, "CLOUD_S3_SECRET_KEY", StorageConfig.secretKeyKey)
            else {
                throw CLIError(
                    "no S3 key: run `cloud storage keys create --save` (needs `cloud auth login`), pass --access-key and --secret-key, or set CLOUD_S3_ACCESS_KEY and CLOUD_S3_SECRET_KEY")
            }
            guard let url = URL(string: endpoint), url.scheme == "http" || url.scheme == "https", url.host != nil else {
                throw CLIError("the S3 endpoint \(endpoint) is not a URL such as http://127.0.0.1:9000")
            }
            let region = pick(self.region, "CLOUD_S3_REGION", StorageConfig.regionKey) ?? "us-east-1"
            return SignedClient(endpoint: S3Endpoint(url: endpoint, accessKey: access, secretKey: secret, region: region), timeout: 300)
        }
    }

    /// `s3://bucket/key`, `s3://bucket`, `bucket/key` or `bucket`.
    struct S3Location: Equatable {
        var bucket: String
        var key: String

        init(bucket: String, key: String) {
            self.bucket = bucket
            self.key = key
        }

        /// Nil when `text` has no bucket.
        init?(_ text: String) {
            var rest = Substring(text)
            if rest.hasPrefix("s3://") { rest = rest.dropFirst(5) }
            let parts = rest.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
            guard let bucket = parts.first, !bucket.isEmpty else { return nil }
            self.bucket = String(bucket)
            self.key = parts.count > 1 ? String(parts[1]) : ""
        }

        var path: String { "/" + SignedClient.encode(self.bucket, keepSlash: false) + (self.key.isEmpty ? "" : "/" + SignedClient.encode(self.key)) }
        var description: String { "s3://\(self.bucket)/\(self.key)" }
    }

    /// An S3 answer that is not a success, as a message that says what to do.
    static func failure(_ response: SignedResponse, _ what: String, endpoint: String) -> CLIError {
        let code = response.errorCode ?? "HTTP \(response.status)"
        let advice: String
        switch code {
        case "InvalidAccessKeyId":
            advice = "the S3 key is unknown (deleted?); create one with `cloud storage keys create --save`"
        case "SignatureDoesNotMatch":
            advice = "the secret key does not match the access key; check --secret-key or the config file"
        case "AccessDenied":
            advice = "the bucket belongs to another tenant, or this key may not do this"
        case "NoSuchBucket":
            advice = "there is no such bucket; `cloud storage ls` lists yours"
        case "NoSuchKey":
            advice = "there is no such object; `cloud storage ls BUCKET/PREFIX` lists them"
        case "BucketAlreadyExists":
            advice = "the name is taken (bucket names are shared by all tenants); choose another"
        case "BucketAlreadyOwnedByYou":
            advice = "your tenant already has this bucket"
        case "BucketNotEmpty":
            advice = "the bucket holds objects; delete them first, or use `cloud storage rb --force`"
        case "InvalidBucketName":
            advice = "bucket names are 3 to 63 lowercase letters, digits, dots and hyphens"
        default:
            advice = response.errorMessage ?? "the endpoint \(endpoint) answered \(response.status)"
        }
        return CLIError("\(what): \(code): \(advice)")
    }

    /// Sends a request and returns the answer, or throws the failure explained.
    static func send(
        _ client: SignedClient, _ what: String, _ method: String, _ path: String, query: [(String, String)] = [],
        headers: [(String, String)] = [], body: Data = Data()
    ) async throws -> SignedResponse {
        let response: SignedResponse
        do {
            response = try await client.send(method, path, query: query, headers: headers, body: body)
        } catch let error as SignedClientError {
            throw CLIError("\(what): \(error.description) (is the storage node running? see --endpoint)")
        }
        guard (200..<300).contains(response.status) else { throw Self.failure(response, what, endpoint: client.endpoint.url) }
        return response
    }

    /// The `<tag>…</tag>` blocks of an XML document.
    static func blocks(_ tag: String, in xml: String) -> [String] {
        var result: [String] = []
        var rest = xml[...]
        while let open = rest.range(of: "<\(tag)>"), let close = rest.range(of: "</\(tag)>", range: open.upperBound..<rest.endIndex) {
            result.append(String(rest[open.upperBound..<close.lowerBound]))
            rest = rest[close.upperBound...]
        }
        return result
    }

    /// One object of a listing.
    struct ListedObject {
        var key: String
        var size: Int64
        var modified: String
    }

    /// Every object (and, with a delimiter, common prefix) under `prefix`, page after page.
    static func listAll(_ client: SignedClient, bucket: String, prefix: String, delimiter: String?) async throws -> (
        objects: [ListedObject], prefixes: [String]
    ) {
        var objects: [ListedObject] = []
        var prefixes: [String] = []
        var token: String?
        repeat {
            var query: [(String, String)] = [("list-type", "2"), ("prefix", prefix)]
            if let delimiter { query.append(("delimiter", delimiter)) }
            if let token { query.append(("continuation-token", token)) }
            let answer = try await Self.send(
                client, "cannot list s3://\(bucket)/\(prefix)", "GET", S3Location(bucket: bucket, key: "").path, query: query)
            let xml = answer.text
            for block in Self.blocks("Contents", in: xml) {
                objects.append(
                    ListedObject(
                        key: SignedResponse.element("Key", in: block) ?? "", size: Int64(SignedResponse.element("Size", in: block) ?? "") ?? 0,
                        modified: SignedResponse.element("LastModified", in: block) ?? ""))
            }
            for block in Self.blocks("CommonPrefixes", in: xml) { prefixes.append(SignedResponse.element("Prefix", in: block) ?? "") }
            token = SignedResponse.element("IsTruncated", in: xml) == "true" ? SignedResponse.element("NextContinuationToken", in: xml) : nil
        } while token != nil
        return (objects, prefixes)
    }

    // MARK: - Keys (through the control plane)

    struct Keys: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "S3 access keys of your tenant (through the control plane, with your API key).",
            subcommands: [List.self, Create.self, Delete.self], defaultSubcommand: List.self)

        struct Create: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Create an S3 key pair for the tenant of your API key; the secret is shown once.",
                discussion: "With --save the endpoint and the pair go to the config file (mode 0600), where `cloud storage mb|ls|cp|rm` find them.")
            @Option(help: "A name to recognise the key by.") var name: String?
            @Flag(help: "Save the endpoint and the key pair in the config file for `cloud storage` S3 commands.") var save = false
            @OptionGroup var client: APIClientOptions

            func run() async throws {
                var body: [(String, JSONValue)] = []
                if let name = self.name { body.append(("name", .string(name))) }
                let answer = try await self.client.call("POST", "/storage/keys", body: .object(body))
                guard case .string(let access) = answer?["access_key_id"], case .string(let secret) = answer?["secret_access_key"] else {
                    throw CLIError("the control plane returned no key")
                }
                let endpoint = APIClientOptions.text(answer?["endpoint"])
                let region = APIClientOptions.text(answer?["region"])
                if self.save { try StorageConfig.save(endpoint: endpoint, accessKey: access, secretKey: secret, region: region) }
                if self.client.output == "json" {
                    print(answer?.prettyPrinted() ?? "")
                    return
                }
                print("New S3 key for tenant \(APIClientOptions.text(answer?["tenant_id"])) (the secret is shown this once):")
                print("  endpoint:          \(endpoint)")
                print("  region:            \(region)")
                print("  access key id:     \(access)")
                print("  secret access key: \(secret)")
                if self.save {
                    print("Saved in \(StorageConfig.path); try `cloud storage mb my-bucket`.")
                } else {
                    print("Use it with aws-cli: AWS_ACCESS_KEY_ID=\(access) AWS_SECRET_ACCESS_KEY=... aws --endpoint-url \(endpoint) s3 ls")
                }
            }
        }

        struct List: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "The tenant's S3 keys (never their secrets).")
            @OptionGroup var client: APIClientOptions

            func run() async throws {
                let answer = try await self.client.call("GET", "/storage/keys")
                self.client.show(
                    answer, rows: { if case .array(let items) = $0["keys"] { items } else { [] } },
                    columns: [("ACCESS KEY ID", "access_key_id"), ("NAME", "name"), ("CREATED", "created_at")])
            }
        }

        struct Delete: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Delete an S3 key of the tenant; S3 refuses it from then on.")
            @Argument(help: "The access key id.") var id: String
            @OptionGroup var client: APIClientOptions

            func run() async throws {
                try await self.client.call("DELETE", "/storage/keys/\(SignedClient.encode(self.id, keepSlash: false))")
                let forgotten = try StorageConfig.forget(accessKey: self.id)
                print("S3 key \(self.id) deleted\(forgotten ? " (and removed from \(StorageConfig.path))" : "").")
            }
        }
    }

    // MARK: - S3 operations

    struct MakeBucket: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "mb", abstract: "Create a bucket (it belongs to your key's tenant).")
        @Argument(help: "The bucket: NAME or s3://NAME.") var bucket: String
        @OptionGroup var s3: S3Options

        func run() async throws {
            guard let location = S3Location(self.bucket), location.key.isEmpty else { throw ValidationError("give a bucket name, e.g. s3://photos") }
            _ = try await Storage.send(try self.s3.client(), "cannot create s3://\(location.bucket)", "PUT", location.path)
            print("make_bucket: s3://\(location.bucket)")
        }
    }

    struct RemoveBucket: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "rb", abstract: "Delete an empty bucket (--force deletes its objects first).")
        @Argument(help: "The bucket: NAME or s3://NAME.") var bucket: String
        @Flag(help: "Delete every object of the bucket first.") var force = false
        @OptionGroup var s3: S3Options

        func run() async throws {
            guard let location = S3Location(self.bucket), location.key.isEmpty else { throw ValidationError("give a bucket name, e.g. s3://photos") }
            let client = try self.s3.client()
            if self.force {
                for object in try await Storage.listAll(client, bucket: location.bucket, prefix: "", delimiter: nil).objects {
                    let target = S3Location(bucket: location.bucket, key: object.key)
                    _ = try await Storage.send(client, "cannot delete \(target.description)", "DELETE", target.path)
                    print("delete: \(target.description)")
                }
            }
            _ = try await Storage.send(client, "cannot delete s3://\(location.bucket)", "DELETE", location.path)
            print("remove_bucket: s3://\(location.bucket)")
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "ls", abstract: "List your buckets, or the objects of a bucket under a prefix.")
        @Argument(help: "Nothing for your buckets, or BUCKET[/PREFIX] (s3:// optional).") var location: String?
        @Flag(name: .shortAndLong, help: "Every object under the prefix, not one level.") var recursive = false
        @OptionGroup var s3: S3Options

        func run() async throws {
            let client = try self.s3.client()
            guard let text = self.location else {
                let answer = try await Storage.send(client, "cannot list buckets", "GET", "/")
                for block in Storage.blocks("Bucket", in: answer.text) {
                    print("\(Self.date(SignedResponse.element("CreationDate", in: block) ?? ""))  \(SignedResponse.element("Name", in: block) ?? "")")
                }
                return
            }
            guard let location = S3Location(text) else { throw ValidationError("give BUCKET[/PREFIX], e.g. s3://photos/2024/") }
            let listing = try await Storage.listAll(
                client, bucket: location.bucket, prefix: location.key, delimiter: self.recursive ? nil : "/")
            for prefix in listing.prefixes {
                print("\("PRE".padding(toLength: 19, withPad: " ", startingAt: 0))  \(String(repeating: " ", count: 12))  \(prefix)")
            }
            for object in listing.objects {
                let size = String(object.size)
                print("\(Self.date(object.modified))  \(String(repeating: " ", count: max(0, 12 - size.count)) + size)  \(object.key)")
            }
        }

        /// `2024-01-02T03:04:05.000Z` as `2024-01-02 03:04:05`.
        static func date(_ text: String) -> String {
            String(text.prefix(19)).replacingOccurrences(of: "T", with: " ")
        }
    }

    struct Copy: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "cp", abstract: "Copy a file to S3, an object to a file (or - for stdout), or an object to another.",
            discussion: """
                cloud storage cp ./cat.jpg s3://photos/            (uploads as cat.jpg)
                cloud storage cp ./cat.jpg s3://photos/2024/pet.jpg
                cloud storage cp s3://photos/cat.jpg .              (downloads as ./cat.jpg)
                cloud storage cp s3://photos/cat.jpg s3://backup/cat.jpg

                Files over 16 MiB go up and come down in 16 MiB parts, --parallel at a time, with a progress
                line on a terminal. An interrupted upload (Ctrl-C, a lost connection) is resumed by running
                the same command again: the parts already uploaded are checked against the file and kept.
                """)
        @Argument(help: "A local file or s3://BUCKET/KEY.") var source: String
        @Argument(help: "s3://BUCKET[/KEY or PREFIX/], or a local file or directory.") var destination: String
        @Option(help: "Parts of a large file (16 MiB each) sent or fetched at the same time (1 to 16).") var parallel: Int = 4
        @Flag(help: "Start an interrupted upload of this file over instead of resuming it.") var noResume = false
        @OptionGroup var s3: S3Options

        func validate() throws {
            guard (1...16).contains(self.parallel) else { throw ValidationError("--parallel must be 1 to 16") }
        }

        func run() async throws {
            let fromS3 = self.source.hasPrefix("s3://")
            let toS3 = self.destination.hasPrefix("s3://")
            let client = try self.s3.client()
            switch (fromS3, toS3) {
            case (false, true): try await self.upload(client)
            case (true, false): try await self.download(client)
            case (true, true): try await self.copy(client)
            case (false, false): throw ValidationError("one side must be s3://BUCKET/KEY; use cp(1) for local copies")
            }
        }

        /// The key a file gets at `target`: the file's name when the target is a bucket or ends in `/`.
        static func uploadKey(file: String, target: S3Location) -> String {
            let name = (file as NSString).lastPathComponent
            if target.key.isEmpty || target.key.hasSuffix("/") { return target.key + name }
            return target.key
        }

        /// Files larger than this go up in parts of this size (multipart upload), and objects larger than
        /// this come down in ranges of it, so that memory holds one piece at a time.
        static let pieceSize = 16 << 20

        func upload(_ client: SignedClient) async throws {
            guard var target = S3Location(self.destination) else { throw ValidationError("the destination needs a bucket: s3://BUCKET/KEY") }
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: self.source, isDirectory: &isDirectory) else {
                throw CLIError("\(self.source): no such file")
            }
            guard !isDirectory.boolValue else { throw CLIError("\(self.source) is a directory; copy its files one by one") }
            guard let file = FileHandle(forReadingAtPath: self.source) else { throw CLIError("cannot read \(self.source)") }
            defer { try? file.close() }
            let attributes = try? FileManager.default.attributesOfItem(atPath: self.source)
            let size = (attributes?[.size] as? Int) ?? 0
            target.key = Self.uploadKey(file: self.source, target: target)
            let what = "cannot upload \(self.source) to \(target.description)"
            let headers = [("content-type", Self.contentType(target.key))]
            if size <= Self.pieceSize {
                let data = try file.readToEnd() ?? Data()
                _ = try await Storage.send(client, what, "PUT", target.path, headers: headers, body: data)
            } else {
                let store = ResumeStore()
                let state = store.file(
                    endpoint: client.endpoint.url, bucket: target.bucket, key: target.key, localPath: self.source, size: size,
                    modified: (attributes?[.modificationDate] as? Date) ?? Date(timeIntervalSince1970: 0))
                if self.noResume { store.remove(state) }
                try await Self.uploadInParts(
                    client, path: self.source, size: size, target: target, headers: headers, what: what, parallel: self.parallel, store: store,
                    state: state)
            }
            print("upload: \(self.source) to \(target.description)")
        }

        /// The parts of an upload in progress: number, ETag (quotes removed) and size.
        static func listParts(_ client: SignedClient, target: S3Location, uploadID: String) async throws -> [(Int, String, Int)] {
            let answer = try await client.send("GET", target.path, query: [("uploadId", uploadID)])
            guard answer.status == 200 else { throw CLIError("the upload \(uploadID) is gone (\(answer.status))") }
            return Storage.blocks("Part", in: answer.text).compactMap { block in
                guard let number = SignedResponse.element("PartNumber", in: block).flatMap({ Int($0) }),
                    let etag = SignedResponse.element("ETag", in: block), let size = SignedResponse.element("Size", in: block).flatMap({ Int($0) })
                else { return nil }
                return (number, Self.bareETag(etag), size)
            }
        }

        static func bareETag(_ etag: String) -> String {
            etag.replacingOccurrences(of: "&quot;", with: "").replacingOccurrences(of: "&#34;", with: "").replacingOccurrences(of: "\"", with: "")
        }

        /// A multipart upload of the file at `path` in pieces of ``pieceSize``, `parallel` at a time.
        ///
        /// Resumable: the upload's id is kept in `state` (``ResumeStore``) until it completes; a later
        /// call for the same file and target lists the parts already uploaded, keeps those whose MD5
        /// matches the file's bytes, and sends the rest. A failed piece leaves the upload for that resume.
        static func uploadInParts(
            _ client: SignedClient, path: String, size: Int, target: S3Location, headers: [(String, String)], what: String, parallel: Int,
            store: ResumeStore, state: String
        ) async throws {
            let partSize = Self.pieceSize
            let count = (size + partSize - 1) / partSize
            @Sendable func length(_ number: Int) -> Int { min(partSize, size - (number - 1) * partSize) }
            var uploadID: String?
            var done: [Int: String] = [:]
            if let entry = store.load(state), entry.partSize == partSize,
                let listed = try? await Self.listParts(client, target: target, uploadID: entry.uploadID)
            {
                uploadID = entry.uploadID
                for (number, etag, partBytes) in listed where number >= 1 && number <= count && partBytes == length(number) {
                    let piece = try readPiece(path, offset: (number - 1) * partSize, count: partBytes)
                    if Hex.encode(Digests.md5(Array(piece))) == etag { done[number] = etag }
                }
                FileHandle.standardError.write(Data("resuming the upload: \(done.count) of \(count) parts are already there\n".utf8))
            }
            if uploadID == nil {
                let created = try await Storage.send(client, what, "POST", target.path, query: [("uploads", "")], headers: headers)
                guard let id = SignedResponse.element("UploadId", in: created.text) else { throw CLIError("\(what): no upload id in the answer") }
                uploadID = id
                try? store.save(ResumeStore.Entry(uploadID: id, partSize: partSize), to: state)
            }
            guard let uploadID else { return }
            let missing = (1...count).filter { done[$0] == nil }
            let progress = ProgressReporter(
                total: Int64(size), already: Int64(done.keys.reduce(0) { $0 + length($1) }), label: "upload \(target.description)")
            do {
                try await concurrently(missing.count, width: parallel) { index in
                    let number = missing[index]
                    let piece = try readPiece(path, offset: (number - 1) * partSize, count: length(number))
                    let answer = try await Storage.send(
                        client, what, "PUT", target.path, query: [("partNumber", String(number)), ("uploadId", uploadID)], body: piece)
                    progress.add(piece.count)
                    return answer.headers["etag"] ?? ""
                } receive: { index, etag in
                    done[missing[index]] = etag
                }
            } catch {
                progress.finish()
                throw CLIError("\(error) — the parts sent so far are kept: run the same command again to resume the upload")
            }
            progress.finish()
            var xml = "<CompleteMultipartUpload>"
            for number in 1...count { xml += "<Part><PartNumber>\(number)</PartNumber><ETag>\(done[number] ?? "")</ETag></Part>" }
            xml += "</CompleteMultipartUpload>"
            let finished = try await Storage.send(
                client, what, "POST", target.path, query: [("uploadId", uploadID)], headers: [("content-type", "application/xml")],
                body: Data(xml.utf8))
            // A failure after the 200 status line is reported in the body.
            if finished.text.contains("<Error>") {
                throw CLIError("\(what): \(finished.errorCode ?? "error"): \(finished.errorMessage ?? finished.text)")
            }
            store.remove(state)
        }

        func download(_ client: SignedClient) async throws {
            guard let source = S3Location(self.source), !source.key.isEmpty, !source.key.hasSuffix("/") else {
                throw ValidationError("the source must be an object: s3://BUCKET/KEY")
            }
            let what = "cannot download \(source.description)"
            // The size first: a large object comes down in ranges.
            var size: Int?
            var etag: String?
            if let head = try? await client.send("HEAD", source.path), head.status == 200 {
                size = head.headers["content-length"].flatMap { Int($0) }
                etag = head.headers["etag"]
            }
            var path = self.destination
            let output: FileHandle
            var temporary: String?
            if path == "-" {
                output = FileHandle.standardOutput
            } else {
                var isDirectory: ObjCBool = false
                if path.hasSuffix("/") || (FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory.boolValue) {
                    path = (path as NSString).appendingPathComponent((source.key as NSString).lastPathComponent)
                }
                let partial = path + ".cloud-partial"
                guard FileManager.default.createFile(atPath: partial, contents: nil), let handle = FileHandle(forWritingAtPath: partial) else {
                    throw CLIError("cannot write \(path) (does its directory exist?)")
                }
                output = handle
                temporary = partial
            }
            do {
                if let size, size > Self.pieceSize {
                    // Ranges, `--parallel` at a time (in order for standard output), each bound to the
                    // object's ETag so that an object replaced meanwhile fails instead of mixing versions.
                    let pieceSize = Self.pieceSize
                    let count = (size + pieceSize - 1) / pieceSize
                    let progress = ProgressReporter(total: Int64(size), label: "download \(source.description)")
                    let condition = etag.map { [("if-match", $0)] } ?? []
                    try await concurrently(count, width: temporary == nil ? 1 : self.parallel) { index in
                        let offset = index * pieceSize
                        let last = min(size, offset + pieceSize) - 1
                        let piece = try await Storage.send(
                            client, what, "GET", source.path, headers: [("range", "bytes=\(offset)-\(last)")] + condition)
                        guard piece.body.count == last - offset + 1 else { throw CLIError("\(what): the object changed while it was read; try again") }
                        progress.add(piece.body.count)
                        return piece.body
                    } receive: { index, body in
                        if temporary != nil { try output.seek(toOffset: UInt64(index * pieceSize)) }
                        try output.write(contentsOf: body)
                    }
                    progress.finish()
                } else {
                    try output.write(contentsOf: try await Storage.send(client, what, "GET", source.path).body)
                }
                if let temporary {
                    try output.close()
                    guard rename(temporary, path) == 0 else { throw CLIError("cannot write \(path)") }
                }
            } catch {
                if let temporary {
                    try? output.close()
                    try? FileManager.default.removeItem(atPath: temporary)
                }
                throw error
            }
            if temporary != nil { print("download: \(source.description) to \(path)") }
        }

        func copy(_ client: SignedClient) async throws {
            guard let source = S3Location(self.source), !source.key.isEmpty, var target = S3Location(self.destination) else {
                throw ValidationError("give s3://BUCKET/KEY s3://BUCKET[/KEY]")
            }
            if target.key.isEmpty || target.key.hasSuffix("/") { target.key += (source.key as NSString).lastPathComponent }
            let copySource = "/" + source.bucket + "/" + SignedClient.encode(source.key)
            _ = try await Storage.send(
                client, "cannot copy \(source.description) to \(target.description)", "PUT", target.path,
                headers: [("x-amz-copy-source", copySource)])
            print("copy: \(source.description) to \(target.description)")
        }

        static func contentType(_ key: String) -> String {
            switch (key as NSString).pathExtension.lowercased() {
            case "jpg", "jpeg": "image/jpeg"
            case "png": "image/png"
            case "gif": "image/gif"
            case "txt": "text/plain"
            case "html", "htm": "text/html"
            case "json": "application/json"
            case "pdf": "application/pdf"
            case "csv": "text/csv"
            default: "application/octet-stream"
            }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "rm", abstract: "Delete an object (--recursive: every object under a prefix).")
        @Argument(help: "s3://BUCKET/KEY, or s3://BUCKET/PREFIX with --recursive.") var location: String
        @Flag(name: .shortAndLong, help: "Delete every object under the prefix.") var recursive = false
        @OptionGroup var s3: S3Options

        func run() async throws {
            guard let location = S3Location(self.location) else { throw ValidationError("give s3://BUCKET/KEY") }
            let client = try self.s3.client()
            if self.recursive {
                for object in try await Storage.listAll(client, bucket: location.bucket, prefix: location.key, delimiter: nil).objects {
                    let target = S3Location(bucket: location.bucket, key: object.key)
                    _ = try await Storage.send(client, "cannot delete \(target.description)", "DELETE", target.path)
                    print("delete: \(target.description)")
                }
                return
            }
            guard !location.key.isEmpty else { throw ValidationError("give s3://BUCKET/KEY (or a prefix with --recursive; `rb` deletes buckets)") }
            // DeleteObject succeeds for a missing key, as in S3; say so rather than pretend.
            if let head = try? await client.send("HEAD", location.path), head.status == 404 {
                throw CLIError("cannot delete \(location.description): there is no such object (or bucket); `cloud storage ls` lists them")
            }
            _ = try await Storage.send(client, "cannot delete \(location.description)", "DELETE", location.path)
            print("delete: \(location.description)")
        }
    }
}
