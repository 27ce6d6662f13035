import Foundation
import Hashing
import NIOCore
import StorageEngine

/// Hashes a payload as it streams, for the ETag (MD5), `Content-MD5` and the additional checksum.
struct IntegrityCheck {
    private var md5 = MD5Hasher()
    private var contentMD5: [UInt8]?
    private(set) var algorithm: ChecksumAlgorithm?
    private var checksum: (any IncrementalHasher)?
    /// The base64 value sent in a header, when it came that way.
    private var expectedFromHeader: String?
    /// The trailer that will carry the value, when it comes that way.
    private var trailerName: String?

    init(_ context: S3Handler.Context) throws {
        if let text = context.header("content-md5") {
            guard let digest = Base64.decode(text.trimmingCharacters(in: .whitespaces)), digest.count == 16 else {
                throw S3Error.invalidDigest
            }
            self.contentMD5 = digest
        }
        var headerAlgorithms: [(ChecksumAlgorithm, String)] = []
        for header in context.request.headers {
            if let algorithm = ChecksumAlgorithm(headerName: header.name) {
                headerAlgorithms.append((algorithm, header.value.trimmingCharacters(in: .whitespaces)))
            }
        }
        guard headerAlgorithms.count <= 1 else {
            throw S3Error.invalidRequest("Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.")
        }
        if let (algorithm, value) = headerAlgorithms.first {
            self.algorithm = algorithm
            self.expectedFromHeader = value
        }
        if let trailer = context.header("x-amz-trailer") {
            for name in trailer.split(separator: ",") {
                let name = name.trimmingCharacters(in: .whitespaces).lowercased()
                if let algorithm = ChecksumAlgorithm(headerName: name) {
                    if let existing = self.algorithm, existing != algorithm {
                        throw S3Error.invalidRequest("Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.")
                    }
                    self.algorithm = algorithm
                    self.trailerName = name
                }
            }
        }
        if self.algorithm == nil,
            let name = context.header("x-amz-sdk-checksum-algorithm") ?? context.header("x-amz-checksum-algorithm")
        {
            guard let algorithm = ChecksumAlgorithm(name: name) else {
                throw S3Error.invalidRequest("Checksum algorithm provided is unsupported. Please try again with any of the valid types: [CRC32, CRC32C, CRC64NVME, SHA1, SHA256]")
            }
            self.algorithm = algorithm
        }
        self.checksum = self.algorithm?.makeHasher()
    }

    mutating func update(_ buffer: ByteBuffer) {
        self.md5.update(buffer)
        self.checksum?.update(buffer)
    }

    /// Checks what the client declared against what was received.
    /// - Returns: the MD5 (hex) and the checksum to store.
    mutating func finish(_ payload: PayloadReader) throws -> (md5: [UInt8], checksum: StoredChecksum?) {
        let md5 = self.md5.finalize()
        if let contentMD5 = self.contentMD5, !constantTimeEqual(contentMD5, md5) {
            throw S3Error.badDigest
        }
        guard let algorithm = self.algorithm, var checksum = self.checksum else { return (md5, nil) }
        let computed = Base64.encode(checksum.finalize())
        var expected = self.expectedFromHeader
        if let trailerName = self.trailerName {
            guard let value = payload.trailer(trailerName) else {
                throw S3Error("MalformedTrailerError", 400, "The request contained trailing data that was not well-formed or did not conform to our published schema.")
            }
            expected = value.trimmingCharacters(in: .whitespaces)
        }
        if let expected, expected != computed {
            throw S3Error.checksumMismatch(algorithm.rawValue)
        }
        return (md5, StoredChecksum(algorithm: algorithm, value: computed))
    }
}

extension S3Handler {
    // MARK: - Metadata from headers

    static let storedHeaders = ["content-encoding", "content-disposition", "content-language", "cache-control", "expires"]

    /// The object metadata a PUT, a copy with REPLACE, or CreateMultipartUpload sets.
    static func metadata(from context: Context) throws -> ObjectMetadata {
        var metadata = ObjectMetadata()
        metadata.contentType = context.header("content-type")
        for name in storedHeaders {
            guard var value = context.header(name) else { continue }
            if name == "content-encoding" {
                // aws-chunked describes the transfer, not the object.
                value = value.split(separator: ",")
                    .map { $0.trimmingCharacters(in: .whitespaces) }
                    .filter { !$0.isEmpty && $0.lowercased() != "aws-chunked" }
                    .joined(separator: ",")
                if value.isEmpty { continue }
            }
            metadata.headers[name] = value
        }
        var total = 0
        for header in context.request.headers {
            let lowered = header.name.lowercased()
            guard lowered.hasPrefix("x-amz-meta-") else { continue }
            let name = String(lowered.dropFirst("x-amz-meta-".count))
            if let existing = metadata.user[name] {
                metadata.user[name] = existing + "," + header.value
            } else {
                metadata.user[name] = header.value
            }
            total += name.utf8.count + header.value.utf8.count
        }
        if total > 2048 { throw S3Error.metadataTooLarge }
        return metadata
    }

    /// Refuses a body larger than allowed before reading it.
    func checkDeclaredLength(_ context: Context, limit: Int64) throws {
        if let text = context.header("x-amz-decoded-content-length") ?? context.header("content-length") {
            guard let length = Int64(text), length >= 0 else {
                throw S3Error.invalidArgument("Content-Length is not valid", name: "Content-Length", value: text)
            }
            if length > limit { throw S3Error.entityTooLarge }
        } else if context.header("transfer-encoding") == nil {
            throw S3Error.missingContentLength
        }
    }

    /// Streams the payload into a writer while hashing it; on any failure the writer is released.
    func receive(_ context: Context, payload: PayloadReader, allowInline: Bool) async throws
        -> (written: ObjectWriter.Written, md5: [UInt8], checksum: StoredChecksum?, writer: any ObjectDataWriter)
    {
        var integrity = try IntegrityCheck(context)
        let writer = self.engine.makeWriter()
        do {
            while let buffer = try await payload.next() {
                integrity.update(buffer)
                try await writer.write(buffer)
            }
            let (md5, checksum) = try integrity.finish(payload)
            let written = try await writer.finish(allowInline: allowInline)
            return (written, md5, checksum, writer)
        } catch {
            await writer.release()
            throw error
        }
    }

    /// Runs `commit` (the metadata commit of what `writer` wrote), then releases the writer's blocks,
    /// whether the commit succeeded or not.
    static func commit<T>(releasing writer: any ObjectDataWriter, _ commit: () async throws -> T) async throws -> T {
        do {
            let value = try await commit()
            await writer.release()
            return value
        } catch {
            await writer.release()
            throw error
        }
    }

    // MARK: - PutObject

    func putObject(_ context: Context, bucket: String, key: String, payload: PayloadReader) async throws -> S3Response {
        try self.checkDeclaredLength(context, limit: self.configuration.maxObjectSize)
        let metadata = try Self.metadata(from: context)
        let (written, md5, checksum, writer) = try await self.receive(context, payload: payload, allowInline: true)
        var stored = metadata
        stored.checksum = checksum
        let record = try await Self.commit(releasing: writer) {
            try await self.engine.putObject(
                bucket: bucket,
                key: key,
                written: written,
                etag: Hex.encode(md5),
                metadata: stored
            )
        }
        var headers = [("ETag", "\"\(record.etag)\"")]
        if let checksum {
            headers.append((checksum.algorithm.headerName, checksum.value))
            headers.append(("x-amz-checksum-type", checksum.type))
        }
        return S3Response(status: 200, headers: headers, operation: "PutObject")
    }

    // MARK: - GetObject / HeadObject

    func getObject(_ context: Context, bucket: String, key: String) async throws -> S3Response {
        let operation = context.method == "HEAD" ? "HeadObject" : "GetObject"
        guard let record = try await self.engine.object(bucket: bucket, key: key) else { throw S3Error.noSuchKey }
        try Self.checkConditions(context, etag: record.etag, lastModified: record.lastModified)

        var headers = Self.objectHeaders(record, context: context)
        var status = 200
        var first: Int64 = 0
        var last: Int64 = record.size - 1
        var partial = false

        if let partText = context.query["partNumber"] {
            guard let partNumber = Int(partText), partNumber >= 1, partNumber <= 10_000 else {
                throw S3Error.invalidArgument("Part number must be an integer between 1 and 10000, inclusive", name: "partNumber", value: partText)
            }
            let sizes = record.metadata.partSizes ?? [record.size]
            guard partNumber <= sizes.count else {
                throw S3Error("InvalidPartNumber", 416, "The requested partnumber is not satisfiable")
            }
            first = sizes[..<(partNumber - 1)].reduce(0, +)
            last = first + sizes[partNumber - 1] - 1
            partial = true
            headers.append(("x-amz-mp-parts-count", String(sizes.count)))
        } else if let rangeText = context.header("range"), let range = try Self.parseRange(rangeText, size: record.size) {
            first = range.lowerBound
            last = range.upperBound
            partial = true
        }
        if partial {
            status = 206
            headers.append(("Content-Range", "bytes \(first)-\(last)/\(record.size)"))
        }
        if !partial || (first == 0 && last == record.size - 1) {
            if context.header("x-amz-checksum-mode")?.uppercased() == "ENABLED", let checksum = record.metadata.checksum {
                headers.append((checksum.algorithm.headerName, checksum.value))
                headers.append(("x-amz-checksum-type", checksum.type))
            }
        }
        let length = max(0, last - first + 1)
        headers.append(("Content-Length", String(length)))

        if context.method == "HEAD" || length == 0 {
            var response = S3Response(status: status, headers: headers, operation: operation)
            response.body = .empty
            return response
        }
        switch record.data {
        case .inline(let bytes):
            let slice = bytes[Int(first)...Int(last)]
            return S3Response(status: status, headers: headers, body: .buffer(ByteBuffer(bytes: slice)), operation: operation)
        case .blocks(let blocks):
            let producer = try await Self.blockProducer(engine: self.engine, blocks: blocks, first: first, last: last)
            return S3Response(status: status, headers: headers, body: .stream(length: length, producer: producer), operation: operation)
        }
    }

    /// The pieces of blocks that hold bytes `first...last` of their concatenation.
    static func plan(_ blocks: [BlockRef], first: Int64, last: Int64) -> [(ref: BlockRef, from: Int, to: Int)] {
        var pieces: [(ref: BlockRef, from: Int, to: Int)] = []
        var offset: Int64 = 0
        for block in blocks {
            let blockEnd = offset + Int64(block.size) - 1
            if blockEnd >= first && offset <= last {
                let from = Int(max(first, offset) - offset)
                let to = Int(min(last, blockEnd) - offset)
                pieces.append((block, from, to))
            }
            offset += Int64(block.size)
            if offset > last { break }
        }
        return pieces
    }

    /// Reads the planned pieces in order, one block ahead, handing each slice to `body`.
    /// - Parameter firstBuffer: the first piece's block when the caller has read it already.
    static func streamPieces(
        engine: any ObjectStore,
        _ plan: [(ref: BlockRef, from: Int, to: Int)],
        firstBuffer: ByteBuffer?,
        _ body: (ByteBuffer) async throws -> Void
    ) async throws {
        guard !plan.isEmpty else { return }
        var current: ByteBuffer? = firstBuffer
        var next: EventLoopFuture<ByteBuffer>? = current == nil ? engine.startReadingBlock(plan[0].ref) : nil
        for index in plan.indices {
            let buffer: ByteBuffer
            if let ready = current {
                buffer = ready
                current = nil
            } else {
                buffer = try await next!.get()
            }
            next = index + 1 < plan.count ? engine.startReadingBlock(plan[index + 1].ref) : nil
            let piece = plan[index]
            let slice = buffer.getSlice(at: buffer.readerIndex + piece.from, length: piece.to - piece.from + 1)!
            try await body(slice)
        }
    }

    /// A producer that streams bytes `first...last` of the concatenated blocks, reading one block
    /// ahead. The first block is read before the response starts, so that a missing or corrupt
    /// first block is a clean error response rather than a cut-off body.
    static func blockProducer(
        engine: any ObjectStore,
        blocks: [BlockRef],
        first: Int64,
        last: Int64
    ) async throws -> @Sendable (any ResponseBodyWriter) async throws -> Void {
        let plan = Self.plan(blocks, first: first, last: last)
        guard !plan.isEmpty else { return { _ in } }
        let firstBuffer = try await engine.readBlock(plan[0].ref)
        return { writer in
            try await Self.streamPieces(engine: engine, plan, firstBuffer: firstBuffer) { slice in
                try await writer.write(slice)
            }
        }
    }

    /// The headers describing an object on GET and HEAD, with `response-*` overrides applied.
    static func objectHeaders(_ record: ObjectRecord, context: Context) -> [(String, String)] {
        var headers: [(String, String)] = [
            ("ETag", "\"\(record.etag)\""),
            ("Last-Modified", HTTPDate.rfc1123(record.lastModified)),
            ("Accept-Ranges", "bytes"),
        ]
        var contentType = record.metadata.contentType ?? "binary/octet-stream"
        var stored = record.metadata.headers
        let overrides = [
            ("response-content-type", "content-type"), ("response-content-language", "content-language"),
            ("response-expires", "expires"), ("response-cache-control", "cache-control"),
            ("response-content-disposition", "content-disposition"), ("response-content-encoding", "content-encoding"),
        ]
        for (parameter, header) in overrides {
            guard let value = context.query[parameter] else { continue }
            if header == "content-type" { contentType = value } else { stored[header] = value }
        }
        headers.append(("Content-Type", contentType))
        let names = ["content-encoding": "Content-Encoding", "content-disposition": "Content-Disposition",
                     "content-language": "Content-Language", "cache-control": "Cache-Control", "expires": "Expires"]
        for name in storedHeaders {
            if let value = stored[name] { headers.append((names[name] ?? name, value)) }
        }
        for (name, value) in record.metadata.user.sorted(by: { $0.key < $1.key }) {
            headers.append(("x-amz-meta-" + name, value))
        }
        return headers
    }

    /// Evaluates If-Match, If-None-Match, If-Modified-Since and If-Unmodified-Since as S3 does.
    static func checkConditions(_ context: Context, etag: String, lastModified: Date) throws {
        let modified = lastModified.timeIntervalSince1970.rounded(.down)
        var notModified = S3Error.notModified
        notModified.headers = [("ETag", "\"\(etag)\""), ("Last-Modified", HTTPDate.rfc1123(lastModified))]
        if let ifMatch = context.header("if-match") {
            if !etagMatches(ifMatch, etag) { throw S3Error.preconditionFailed }
        } else if let text = context.header("if-unmodified-since"), let date = HTTPDate.parse(text),
            modified > date.timeIntervalSince1970
        {
            throw S3Error.preconditionFailed
        }
        if let ifNoneMatch = context.header("if-none-match") {
            if etagMatches(ifNoneMatch, etag) {
                if context.method == "GET" || context.method == "HEAD" { throw notModified }
                throw S3Error.preconditionFailed
            }
        } else if let text = context.header("if-modified-since"), let date = HTTPDate.parse(text),
            modified <= date.timeIntervalSince1970, context.method == "GET" || context.method == "HEAD"
        {
            throw notModified
        }
    }

    /// Whether an If-Match / If-None-Match list matches `etag` (quotes and weak markers ignored).
    static func etagMatches(_ list: String, _ etag: String) -> Bool {
        for item in list.split(separator: ",") {
            var candidate = item.trimmingCharacters(in: .whitespaces)
            if candidate == "*" { return true }
            if candidate.hasPrefix("W/") { candidate = String(candidate.dropFirst(2)) }
            candidate = candidate.trimmingCharacters(in: CharacterSet(charactersIn: "\""))
            if candidate == etag { return true }
        }
        return false
    }

    /// Parses a single byte range. Returns nil to serve the whole object (absent, multiple or
    /// syntactically invalid ranges, as HTTP says), throws InvalidRange when it cannot be satisfied.
    static func parseRange(_ text: String, size: Int64) throws -> ClosedRange<Int64>? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        guard trimmed.lowercased().hasPrefix("bytes=") else { return nil }
        let spec = trimmed.dropFirst("bytes=".count).trimmingCharacters(in: .whitespaces)
        guard !spec.contains(","), let dash = spec.firstIndex(of: "-") else { return nil }
        let startText = spec[..<dash].trimmingCharacters(in: .whitespaces)
        let endText = spec[spec.index(after: dash)...].trimmingCharacters(in: .whitespaces)
        if startText.isEmpty {
            guard let suffix = Int64(endText), suffix >= 0 else { return nil }
            guard suffix > 0, size > 0 else { throw S3Error.invalidRange(size: size) }
            return max(0, size - suffix)...(size - 1)
        }
        guard let start = Int64(startText), start >= 0 else { return nil }
        var end = size - 1
        if !endText.isEmpty {
            guard let value = Int64(endText), value >= start else { return nil }
            end = min(value, size - 1)
        }
        guard start < size else { throw S3Error.invalidRange(size: size) }
        return start...end
    }

    // MARK: - DeleteObject

    func deleteObject(_ context: Context, bucket: String, key: String) async throws -> S3Response {
        try await self.engine.deleteObject(bucket: bucket, key: key)
        return S3Response(status: 204, operation: "DeleteObject")
    }

    // MARK: - CopyObject

    /// Parses `x-amz-copy-source`: `bucket/key` or `/bucket/key`, URL-encoded, optional `?versionId=`.
    static func copySource(_ context: Context) throws -> (bucket: String, key: String) {
        guard var text = context.header("x-amz-copy-source") else { throw S3Error.invalidArgument("Copy Source must mention the source bucket and key: sourcebucket/sourcekey") }
        if let question = text.firstIndex(of: "?") {
            let query = text[text.index(after: question)...]
            text = String(text[..<question])
            if query.hasPrefix("versionId="), query != "versionId=null" {
                throw S3Error.notImplemented("versioned copy source")
            }
        }
        guard let decoded = URLEncoding.decode(Substring(text)) else {
            throw S3Error.invalidArgument("Invalid copy source encoding", name: "x-amz-copy-source", value: text)
        }
        let trimmed = decoded.hasPrefix("/") ? String(decoded.dropFirst()) : decoded
        guard let slash = trimmed.firstIndex(of: "/"), slash != trimmed.startIndex,
            trimmed.index(after: slash) != trimmed.endIndex
        else {
            throw S3Error.invalidArgument("Copy Source must mention the source bucket and key: sourcebucket/sourcekey", name: "x-amz-copy-source", value: text)
        }
        return (String(trimmed[..<slash]), String(trimmed[trimmed.index(after: slash)...]))
    }

    /// Evaluates the x-amz-copy-source-if-* conditions; each failure is 412.
    static func checkCopySourceConditions(_ context: Context, etag: String, lastModified: Date) throws {
        let modified = lastModified.timeIntervalSince1970.rounded(.down)
        if let ifMatch = context.header("x-amz-copy-source-if-match") {
            if !etagMatches(ifMatch, etag) { throw S3Error.preconditionFailed }
        } else if let text = context.header("x-amz-copy-source-if-unmodified-since"), let date = HTTPDate.parse(text),
            modified > date.timeIntervalSince1970
        {
            throw S3Error.preconditionFailed
        }
        if let ifNoneMatch = context.header("x-amz-copy-source-if-none-match") {
            if etagMatches(ifNoneMatch, etag) { throw S3Error.preconditionFailed }
        } else if let text = context.header("x-amz-copy-source-if-modified-since"), let date = HTTPDate.parse(text),
            modified <= date.timeIntervalSince1970
        {
            throw S3Error.preconditionFailed
        }
    }

    func copyObject(_ context: Context, bucket: String, key: String) async throws -> S3Response {
        let (sourceBucket, sourceKey) = try Self.copySource(context)
        _ = try await self.ownedBucket(context, sourceBucket)
        guard let source = try await self.engine.object(bucket: sourceBucket, key: sourceKey) else { throw S3Error.noSuchKey }
        try Self.checkCopySourceConditions(context, etag: source.etag, lastModified: source.lastModified)
        let directive = context.header("x-amz-metadata-directive")?.uppercased() ?? "COPY"
        guard directive == "COPY" || directive == "REPLACE" else {
            throw S3Error.invalidArgument("Unknown metadata directive.", name: "x-amz-metadata-directive", value: directive)
        }
        if sourceBucket == bucket && sourceKey == key && directive == "COPY" {
            throw S3Error.invalidRequest(
                "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes."
            )
        }
        guard source.size <= self.configuration.maxObjectSize else {
            throw S3Error.invalidRequest("The specified copy source is larger than the maximum allowable size for a copy source: \(self.configuration.maxObjectSize)")
        }
        var metadata = source.metadata
        if directive == "REPLACE" {
            metadata = try Self.metadata(from: context)
            metadata.checksum = source.metadata.checksum
            metadata.partSizes = source.metadata.partSizes
        }
        let record = try await self.engine.copyObject(source, toBucket: bucket, key: key, metadata: metadata)
        var xml = XMLWriter()
        xml.group("CopyObjectResult", namespace: true) { xml in
            xml.element("LastModified", HTTPDate.iso8601(record.lastModified))
            xml.element("ETag", "\"\(record.etag)\"")
            if let checksum = record.metadata.checksum, checksum.type == "FULL_OBJECT" {
                xml.element("Checksum" + checksum.algorithm.rawValue, checksum.value)
            }
        }
        return Self.xmlResponse(xml, operation: "CopyObject")
    }
}
