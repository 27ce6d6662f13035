import Foundation
import Hashing
import NIOCore
import StorageEngine

extension S3Handler {
    // MARK: - CreateMultipartUpload

    func createUpload(_ context: Context, bucket: String, key: String) async throws -> S3Response {
        let metadata = try Self.metadata(from: context)
        var algorithm: ChecksumAlgorithm?
        if let name = context.header("x-amz-checksum-algorithm") {
            guard let parsed = ChecksumAlgorithm(name: name) else {
                throw S3Error.invalidRequest("Checksum algorithm provided is unsupported. Please try again with any of the valid types: [CRC32, CRC32C, CRC64NVME, SHA1, SHA256]")
            }
            algorithm = parsed
        }
        if let type = context.header("x-amz-checksum-type"), type.uppercased() != "COMPOSITE" {
            throw S3Error.notImplemented("x-amz-checksum-type: \(type)")
        }
        _ = try await self.ownedBucket(context, bucket)
        let upload = try await self.engine.createUpload(
            bucket: bucket,
            key: key,
            owner: context.accessKey,
            metadata: metadata,
            checksumAlgorithm: algorithm
        )
        var xml = XMLWriter()
        xml.group("InitiateMultipartUploadResult", namespace: true) { xml in
            xml.element("Bucket", bucket)
            xml.element("Key", key)
            xml.element("UploadId", upload.uploadID)
        }
        var headers: [(String, String)] = []
        if let algorithm {
            headers.append(("x-amz-checksum-algorithm", algorithm.rawValue))
            headers.append(("x-amz-checksum-type", "COMPOSITE"))
        }
        return Self.xmlResponse(xml, operation: "CreateMultipartUpload", headers: headers)
    }

    static func partNumber(_ context: Context) throws -> Int {
        let text = context.query["partNumber"] ?? ""
        guard let number = Int(text), number >= 1, number <= 10_000 else {
            throw S3Error.invalidArgument("Part number must be an integer between 1 and 10000, inclusive", name: "partNumber", value: text)
        }
        return number
    }

    // MARK: - UploadPart

    func uploadPart(_ context: Context, bucket: String, key: String, uploadID: String, payload: PayloadReader) async throws -> S3Response {
        let partNumber = try Self.partNumber(context)
        try self.checkDeclaredLength(context, limit: self.configuration.maxPartSize)
        let upload = try await self.engine.upload(uploadID, bucket: bucket, key: key)
        let (written, md5, checksum, writer) = try await self.receive(context, payload: payload, allowInline: false)
        if let expected = upload.checksumAlgorithm, let checksum, checksum.algorithm != expected {
            await writer.release()
            throw S3Error.invalidRequest("Checksum Type mismatch occurred, expected checksum Type: \(expected.rawValue.lowercased()), actual checksum Type: \(checksum.algorithm.rawValue.lowercased())")
        }
        let part = try await Self.commit(releasing: writer) {
            try await self.engine.putPart(
                uploadID: uploadID,
                bucket: bucket,
                key: key,
                partNumber: partNumber,
                written: written,
                etag: Hex.encode(md5),
                checksum: checksum
            )
        }
        var headers = [("ETag", "\"\(part.etag)\"")]
        if let checksum { headers.append((checksum.algorithm.headerName, checksum.value)) }
        return S3Response(status: 200, headers: headers, operation: "UploadPart")
    }

    // MARK: - UploadPartCopy

    func uploadPartCopy(_ context: Context, bucket: String, key: String, uploadID: String) async throws -> S3Response {
        let partNumber = try Self.partNumber(context)
        _ = try await self.engine.upload(uploadID, bucket: bucket, key: key)
        let (sourceBucket, sourceKey) = try Self.copySource(context)
        _ = try await self.ownedBucket(context, sourceBucket)
        guard let source = try await self.engine.object(bucket: sourceBucket, key: sourceKey) else { throw S3Error.noSuchKey }
        try Self.checkCopySourceConditions(context, etag: source.etag, lastModified: source.lastModified)
        var first: Int64 = 0
        var last: Int64 = source.size - 1
        if let rangeText = context.header("x-amz-copy-source-range") {
            let invalid = S3Error.invalidArgument(
                "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy",
                name: "x-amz-copy-source-range", value: rangeText
            )
            guard rangeText.hasPrefix("bytes=") else { throw invalid }
            let parts = rangeText.dropFirst(6).split(separator: "-", omittingEmptySubsequences: false)
            guard parts.count == 2, let start = Int64(parts[0]), let end = Int64(parts[1]), start <= end else { throw invalid }
            guard end < source.size else {
                throw S3Error.invalidRequest("The specified copy range is invalid for the source object size")
            }
            first = start
            last = end
        }
        guard last - first + 1 <= self.configuration.maxPartSize else { throw S3Error.entityTooLarge }

        let writer = self.engine.makeWriter()
        var md5 = MD5Hasher()
        let written: ObjectWriter.Written
        do {
            if source.size > 0 && last >= first {
                switch source.data {
                case .inline(let bytes):
                    let buffer = ByteBuffer(bytes: bytes[Int(first)...Int(last)])
                    md5.update(buffer)
                    try await writer.write(buffer)
                case .blocks(let blocks):
                    let plan = Self.plan(blocks, first: first, last: last)
                    try await Self.streamPieces(engine: self.engine, plan, firstBuffer: nil) { slice in
                        md5.update(slice)
                        try await writer.write(slice)
                    }
                }
            }
            written = try await writer.finish(allowInline: false)
        } catch {
            await writer.release()
            throw error
        }
        let etag = Hex.encode(md5.finalize())
        let part = try await Self.commit(releasing: writer) {
            try await self.engine.putPart(
                uploadID: uploadID,
                bucket: bucket,
                key: key,
                partNumber: partNumber,
                written: written,
                etag: etag,
                checksum: nil
            )
        }
        var xml = XMLWriter()
        xml.group("CopyPartResult", namespace: true) { xml in
            xml.element("LastModified", HTTPDate.iso8601(part.modified))
            xml.element("ETag", "\"\(part.etag)\"")
        }
        return Self.xmlResponse(xml, operation: "UploadPartCopy")
    }

    // MARK: - CompleteMultipartUpload

    func completeUpload(_ context: Context, bucket: String, key: String, uploadID: String, payload: PayloadReader) async throws -> S3Response {
        let body = try await payload.readAll(limit: 4 << 20)
        let root = try XMLParser.parse(body)
        guard root.name == "CompleteMultipartUpload" else { throw S3Error.malformedXML }
        struct Requested: Sendable {
            var number: Int
            var etag: String
            var checksums: [ChecksumAlgorithm: String]
        }
        var requested: [Requested] = []
        for element in root.children("Part") {
            guard let numberText = element.child("PartNumber")?.text.trimmingCharacters(in: .whitespacesAndNewlines),
                let number = Int(numberText),
                let etag = element.child("ETag")?.text
            else { throw S3Error.malformedXML }
            var checksums: [ChecksumAlgorithm: String] = [:]
            for algorithm in ChecksumAlgorithm.allCases {
                if let value = element.child("Checksum" + algorithm.rawValue)?.text {
                    checksums[algorithm] = value.trimmingCharacters(in: .whitespacesAndNewlines)
                }
            }
            let cleaned = etag.trimmingCharacters(in: .whitespacesAndNewlines).trimmingCharacters(in: CharacterSet(charactersIn: "\""))
            requested.append(Requested(number: number, etag: cleaned, checksums: checksums))
        }
        guard !requested.isEmpty else { throw S3Error.malformedXML }
        for index in requested.indices.dropFirst() where requested[index].number <= requested[index - 1].number {
            throw S3Error.invalidPartOrder
        }
        let minPartSize = self.configuration.minPartSize
        let list = requested
        let record = try await self.engine.completeUpload(uploadID: uploadID, bucket: bucket, key: key) { upload, parts in
            let byNumber = Dictionary(parts.map { ($0.partNumber, $0) }, uniquingKeysWith: { a, _ in a })
            var blocks: [BlockRef] = []
            var sizes: [Int64] = []
            var md5s: [UInt8] = []
            var checksumBytes: [UInt8] = []
            var allHaveChecksums = upload.checksumAlgorithm != nil
            // Every named part must exist with its ETag before sizes are judged.
            for wanted in list {
                guard let part = byNumber[wanted.number], part.etag == wanted.etag else { throw S3Error.invalidPart }
            }
            for (index, wanted) in list.enumerated() {
                let part = byNumber[wanted.number]!
                if index < list.count - 1 && part.size < minPartSize {
                    var error = S3Error.entityTooSmall
                    error.fields = [("ProposedSize", String(part.size)), ("MinSizeAllowed", String(minPartSize)), ("PartNumber", String(wanted.number)), ("ETag", "\"\(part.etag)\"")]
                    throw error
                }
                for (algorithm, value) in wanted.checksums {
                    if let stored = part.checksum, stored.algorithm == algorithm, stored.value != value {
                        throw S3Error.invalidPart
                    }
                }
                blocks.append(contentsOf: part.blocks)
                sizes.append(part.size)
                md5s.append(contentsOf: Hex.decode(part.etag) ?? [])
                if let checksum = part.checksum, checksum.algorithm == upload.checksumAlgorithm,
                    let raw = Base64.decode(checksum.value)
                {
                    checksumBytes.append(contentsOf: raw)
                } else {
                    allHaveChecksums = false
                }
            }
            let etag = Hex.encode(Digests.md5(md5s)) + "-\(list.count)"
            var metadata = upload.metadata
            metadata.partSizes = sizes
            if allHaveChecksums, let algorithm = upload.checksumAlgorithm {
                var hasher = algorithm.makeHasher()
                hasher.update(checksumBytes)
                metadata.checksum = StoredChecksum(
                    algorithm: algorithm,
                    value: Base64.encode(hasher.finalize()) + "-\(list.count)",
                    type: "COMPOSITE"
                )
            }
            return (.blocks(blocks), sizes.reduce(0, +), etag, metadata)
        }
        var xml = XMLWriter()
        xml.group("CompleteMultipartUploadResult", namespace: true) { xml in
            xml.element("Location", "/\(bucket)/\(URLEncoding.encode(key))")
            xml.element("Bucket", bucket)
            xml.element("Key", key)
            xml.element("ETag", "\"\(record.etag)\"")
            if let checksum = record.metadata.checksum {
                xml.element("Checksum" + checksum.algorithm.rawValue, checksum.value)
                xml.element("ChecksumType", checksum.type)
            }
        }
        return Self.xmlResponse(xml, operation: "CompleteMultipartUpload")
    }

    // MARK: - AbortMultipartUpload

    func abortUpload(_ context: Context, bucket: String, key: String, uploadID: String) async throws -> S3Response {
        try await self.engine.abortUpload(uploadID: uploadID, bucket: bucket, key: key)
        return S3Response(status: 204, operation: "AbortMultipartUpload")
    }

    // MARK: - ListParts

    func listParts(_ context: Context, bucket: String, key: String, uploadID: String) async throws -> S3Response {
        let upload = try await self.engine.upload(uploadID, bucket: bucket, key: key)
        var maxParts = 1000
        if let text = context.query["max-parts"] {
            guard let value = Int(text), value >= 0 else {
                throw S3Error.invalidArgument("Argument max-parts must be an integer between 0 and 2147483647", name: "max-parts", value: text)
            }
            maxParts = min(value, 1000)
        }
        var marker = 0
        if let text = context.query["part-number-marker"] {
            guard let value = Int(text), value >= 0 else {
                throw S3Error.invalidArgument("Argument part-number-marker must be an integer", name: "part-number-marker", value: text)
            }
            marker = value
        }
        let parts = try await self.engine.parts(bucket: bucket, uploadID: uploadID, after: marker, limit: maxParts + 1)
        let truncated = parts.count > maxParts
        let shown = Array(parts.prefix(maxParts))
        var xml = XMLWriter()
        xml.group("ListPartsResult", namespace: true) { xml in
            xml.element("Bucket", bucket)
            xml.element("Key", key)
            xml.element("UploadId", uploadID)
            Self.writeOwner(&xml, upload.owner, element: "Initiator")
            Self.writeOwner(&xml, upload.owner)
            xml.element("StorageClass", "STANDARD")
            xml.element("PartNumberMarker", marker)
            xml.element("NextPartNumberMarker", shown.last?.partNumber ?? 0)
            xml.element("MaxParts", maxParts)
            xml.element("IsTruncated", truncated)
            if let algorithm = upload.checksumAlgorithm {
                xml.element("ChecksumAlgorithm", algorithm.rawValue)
                xml.element("ChecksumType", "COMPOSITE")
            }
            for part in shown {
                xml.group("Part") { xml in
                    xml.element("PartNumber", part.partNumber)
                    xml.element("LastModified", HTTPDate.iso8601(part.modified))
                    xml.element("ETag", "\"\(part.etag)\"")
                    xml.element("Size", part.size)
                    if let checksum = part.checksum {
                        xml.element("Checksum" + checksum.algorithm.rawValue, checksum.value)
                    }
                }
            }
        }
        return Self.xmlResponse(xml, operation: "ListParts")
    }

    // MARK: - ListMultipartUploads

    func listUploads(_ context: Context, bucket: String) async throws -> S3Response {
        let q = context.query
        var maxUploads = 1000
        if let text = q["max-uploads"] {
            guard let value = Int(text), value >= 0 else {
                throw S3Error.invalidArgument("Argument max-uploads must be an integer between 0 and 2147483647", name: "max-uploads", value: text)
            }
            maxUploads = min(value, 1000)
        }
        let prefix = q["prefix"] ?? ""
        _ = try await self.ownedBucket(context, bucket)
        let uploads = try await self.engine.listUploads(
            bucket: bucket,
            prefix: prefix,
            keyMarker: q["key-marker"].flatMap { $0.isEmpty ? nil : $0 },
            uploadIDMarker: q["upload-id-marker"].flatMap { $0.isEmpty ? nil : $0 },
            limit: q["delimiter"].map { $0.isEmpty ? maxUploads : 100_000 } ?? maxUploads
        )
        // Roll keys with the delimiter after the prefix up into common prefixes.
        var shown: [UploadRecord] = []
        var commonPrefixes: [String] = []
        var truncated = false
        let delimiter = q["delimiter"].flatMap { $0.isEmpty ? nil : $0 }
        for upload in uploads {
            if let delimiter, let range = upload.key.dropFirst(prefix.count).range(of: delimiter) {
                let commonPrefix = String(upload.key[..<range.upperBound])
                if commonPrefixes.last == commonPrefix { continue }
                if shown.count + commonPrefixes.count >= maxUploads {
                    truncated = true
                    break
                }
                commonPrefixes.append(commonPrefix)
                continue
            }
            if shown.count + commonPrefixes.count >= maxUploads {
                truncated = true
                break
            }
            shown.append(upload)
        }
        let encodeURL = q["encoding-type"] == "url"
        func encode(_ text: String) -> String { encodeURL ? URLEncoding.encode(text) : text }
        var xml = XMLWriter()
        xml.group("ListMultipartUploadsResult", namespace: true) { xml in
            xml.element("Bucket", bucket)
            xml.element("KeyMarker", encode(q["key-marker"] ?? ""))
            xml.element("UploadIdMarker", q["upload-id-marker"] ?? "")
            xml.element("NextKeyMarker", encode(truncated ? shown.last?.key ?? "" : ""))
            xml.element("NextUploadIdMarker", truncated ? shown.last?.uploadID ?? "" : "")
            xml.element("Prefix", encode(prefix))
            if let delimiter = q["delimiter"] { xml.element("Delimiter", encode(delimiter)) }
            xml.element("MaxUploads", maxUploads)
            if encodeURL { xml.element("EncodingType", "url") }
            xml.element("IsTruncated", truncated)
            for upload in shown {
                xml.group("Upload") { xml in
                    xml.element("Key", encode(upload.key))
                    xml.element("UploadId", upload.uploadID)
                    Self.writeOwner(&xml, upload.owner, element: "Initiator")
                    Self.writeOwner(&xml, upload.owner)
                    xml.element("StorageClass", "STANDARD")
                    xml.element("Initiated", HTTPDate.iso8601(upload.initiated))
                    if let algorithm = upload.checksumAlgorithm { xml.element("ChecksumAlgorithm", algorithm.rawValue) }
                }
            }
            for commonPrefix in commonPrefixes {
                xml.group("CommonPrefixes") { xml in xml.element("Prefix", encode(commonPrefix)) }
            }
        }
        return Self.xmlResponse(xml, operation: "ListMultipartUploads")
    }
}

