import Foundation
import Hashing
import NIOCore
import SigV4
import Testing

/// One S3 example from the AWS documentation ("Signature Calculations for the Authorization Header:
/// Transferring Payload in a Single Chunk") with its published signature.
struct DocumentationExample: Sendable, CustomTestStringConvertible {
    var name: String
    var method: String
    var path: String
    var query: String
    var headers: [(String, String)]
    var signedHeaders: String
    var signature: String

    var testDescription: String { name }

    var head: SigV4.RequestHead {
        var fields = headers.map { (name: $0.0, value: $0.1) }
        fields.append((
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
                + "SignedHeaders=\(signedHeaders),Signature=\(signature)"
        ))
        return SigV4.RequestHead(method: method, rawPath: path, rawQuery: query, headers: fields)
    }
}

let emptyHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

let documentationExamples: [DocumentationExample] = [
    DocumentationExample(
        name: "GET Object with Range", method: "GET", path: "/test.txt", query: "",
        headers: [
            ("Host", "examplebucket.s3.amazonaws.com"), ("Range", "bytes=0-9"),
            ("x-amz-content-sha256", emptyHash), ("x-amz-date", "20130524T000000Z"),
        ],
        signedHeaders: "host;range;x-amz-content-sha256;x-amz-date",
        signature: "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"),
    DocumentationExample(
        name: "PUT Object", method: "PUT", path: "/test%24file.text", query: "",
        headers: [
            ("Host", "examplebucket.s3.amazonaws.com"), ("Date", "Fri, 24 May 2013 00:00:00 GMT"),
            ("x-amz-date", "20130524T000000Z"), ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            ("x-amz-content-sha256", "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"),
        ],
        signedHeaders: "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
        signature: "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"),
    DocumentationExample(
        name: "GET Bucket Lifecycle", method: "GET", path: "/", query: "lifecycle",
        headers: [
            ("Host", "examplebucket.s3.amazonaws.com"), ("x-amz-date", "20130524T000000Z"),
            ("x-amz-content-sha256", emptyHash),
        ],
        signedHeaders: "host;x-amz-content-sha256;x-amz-date",
        signature: "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"),
    DocumentationExample(
        name: "GET Bucket (List Objects)", method: "GET", path: "/", query: "max-keys=2&prefix=J",
        headers: [
            ("Host", "examplebucket.s3.amazonaws.com"), ("x-amz-date", "20130524T000000Z"),
            ("x-amz-content-sha256", emptyHash),
        ],
        signedHeaders: "host;x-amz-content-sha256;x-amz-date",
        signature: "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"),
]

/// The presigned GET of "Authenticating Requests: Using Query Parameters".
let documentationPresigned = SigV4.RequestHead(
    method: "GET", rawPath: "/test.txt",
    rawQuery: "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3"
        + "%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
        + "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404",
    headers: [("Host", "examplebucket.s3.amazonaws.com")])

/// The chunked upload example ("Transferring Payload in Multiple Chunks"): 65 KiB of "a" in 64 KiB chunks.
enum ChunkedExample {
    static let seedSignature = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
    static let chunkSignatures = [
        "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
        "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
        "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
    ]
    static let payload = [UInt8](repeating: UInt8(ascii: "a"), count: 66_560)

    static let head = SigV4.RequestHead(
        method: "PUT", rawPath: "/examplebucket/chunkObject.txt",
        headers: [
            ("Host", "s3.amazonaws.com"), ("x-amz-date", "20130524T000000Z"),
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            ("Authorization",
             "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
                + "SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;"
                + "x-amz-decoded-content-length;x-amz-storage-class,Signature=\(seedSignature)"),
            ("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"), ("Content-Encoding", "aws-chunked"),
            ("x-amz-decoded-content-length", "66560"), ("Content-Length", "66824"),
        ])

    /// The body exactly as the documentation lays it out.
    static var body: [UInt8] {
        var body: [UInt8] = []
        body += Array("10000;chunk-signature=\(chunkSignatures[0])\r\n".utf8) + payload[..<65_536] + Array("\r\n".utf8)
        body += Array("400;chunk-signature=\(chunkSignatures[1])\r\n".utf8) + payload[65_536...] + Array("\r\n".utf8)
        body += Array("0;chunk-signature=\(chunkSignatures[2])\r\n\r\n".utf8)
        return body
    }
}

@Suite struct AWSDocumentationTests {
    @Test func signingKey() {
        let key = SigV4.signingKey(secretKey: exampleSecretKey, date: "20130524", region: "us-east-1", service: "s3")
        #expect(Hex.encode(key) == "dbb893acc010964918f1fd433add87c70e8b0db6be30c1fbeafefa5ec6ba8378")
    }

    @Test(arguments: documentationExamples)
    func headerExample(example: DocumentationExample) throws {
        let (credential, context) = try parseAndVerify(example.head)
        #expect(credential.accessKey == exampleAccessKey)
        #expect(credential.scope == "20130524/us-east-1/s3/aws4_request")
        #expect(!credential.isPresigned)
        #expect(context.seedSignature == example.signature)
        #expect(SigV4.signature(for: example.head, credential: credential, secretKey: exampleSecretKey) == example.signature)
    }

    @Test(arguments: documentationExamples)
    func headerExampleWithWrongSecretFails(example: DocumentationExample) {
        expectSigV4Error(.signatureDoesNotMatch) { () throws(SigV4Error) in
            try parseAndVerify(example.head, secretKey: exampleSecretKey + "x")
        }
    }

    @Test func getObjectCanonicalRequest() throws {
        guard case .signed(let credential) = try SigV4.parse(documentationExamples[0].head) else {
            Issue.record("not signed")
            return
        }
        let canonical = SigV4.canonicalRequest(documentationExamples[0].head, credential: credential)
        #expect(
            canonical == """
                GET
                /test.txt

                host:examplebucket.s3.amazonaws.com
                range:bytes=0-9
                x-amz-content-sha256:\(emptyHash)
                x-amz-date:20130524T000000Z

                host;range;x-amz-content-sha256;x-amz-date
                \(emptyHash)
                """)
        #expect(
            SigV4.stringToSign(canonicalRequest: canonical, amzDate: credential.amzDate, scope: credential.scope)
                == "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n"
                + "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972")
    }

    @Test func presignedExample() throws {
        let (credential, context) = try parseAndVerify(documentationPresigned)
        #expect(credential.isPresigned)
        #expect(credential.expires == 86_400)
        #expect(credential.payloadMode == .unsigned)
        #expect(context.seedSignature == "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404")
        // Valid until the last second, then "Request has expired".
        _ = try parseAndVerify(documentationPresigned, now: exampleNow + 86_400)
        let expired = expectSigV4Error(.accessDenied) { () throws(SigV4Error) in
            try parseAndVerify(documentationPresigned, now: exampleNow + 86_401)
        }
        #expect(expired?.message == "Request has expired")
        // Not valid before X-Amz-Date beyond the allowed clock skew.
        _ = try parseAndVerify(documentationPresigned, now: exampleNow - 899)
        expectSigV4Error(.accessDenied) { () throws(SigV4Error) in
            try parseAndVerify(documentationPresigned, now: exampleNow - 901)
        }
    }

    @Test(arguments: [Split.whole, .byteByByte, .random(seed: 1), .random(seed: 2)])
    func chunkedUploadExample(split: Split) throws {
        let (credential, context) = try parseAndVerify(ChunkedExample.head)
        #expect(credential.payloadMode == .streamingSigned)
        #expect(context.seedSignature == ChunkedExample.seedSignature)
        #expect(ChunkedExample.body.count == 66_824)
        let (payload, trailers) = try decode(
            ChunkedExample.body, split: split, mode: .streamingSigned, signing: context, decodedContentLength: 66_560)
        #expect(payload == ChunkedExample.payload)
        #expect(trailers.isEmpty)
    }

    @Test func chunkedUploadExampleSignaturesAndEncoder() throws {
        let (_, context) = try parseAndVerify(ChunkedExample.head)
        var previous = context.seedSignature
        let chunks = [Array(ChunkedExample.payload[..<65_536]), Array(ChunkedExample.payload[65_536...]), []]
        for (chunk, expected) in zip(chunks, ChunkedExample.chunkSignatures) {
            previous = Hex.encode(context.chunkSignature(previousSignature: previous, chunkSHA256: Digests.sha256(chunk)))
            #expect(previous == expected)
        }
        let encoded = SigV4.encodeChunked(
            ChunkedExample.payload, chunkSize: 65_536, mode: .streamingSigned, signing: context)
        #expect(encoded == ChunkedExample.body)
    }

    /// Cross-check of the signed-trailer chain against an independent Python computation.
    @Test func independentSignedTrailer() throws {
        let vector = independentSignedTrailerVector
        let context = SigV4.SigningContext(
            signingKey: try #require(Hex.decode(vector.signingKeyHex)), scope: "20130524/us-east-1/s3/aws4_request",
            amzDate: "20130524T000000Z", seedSignature: vector.seed)
        let payload = [UInt8](repeating: UInt8(ascii: "a"), count: 70_000)
        let body = SigV4.encodeChunked(
            payload, chunkSize: 65_536, mode: .streamingSignedTrailer, signing: context,
            trailers: [("x-amz-checksum-crc32", vector.crc32)])
        #expect(body.count == vector.bodyLength)
        #expect(Hex.encode(Digests.sha256(body)) == vector.bodySHA256)
        for split in [Split.whole, .random(seed: 3)] {
            let (decoded, trailers) = try decode(
                body, split: split, mode: .streamingSignedTrailer, signing: context,
                declaredTrailers: ["x-amz-checksum-crc32"], decodedContentLength: 70_000)
            #expect(decoded == payload)
            #expect(trailers.map(\.name) == ["x-amz-checksum-crc32"])
            #expect(trailers.first?.value == vector.crc32)
            #expect(Base64.encode(ChecksumAlgorithm.crc32.checksum(of: decoded)) == vector.crc32)
        }
    }
}

@Suite struct UnsignedHeaderTests {
    @Test func amzHeadersOutsideTheSignatureAreNamed() throws {
        var head = documentationExamples[0].head
        guard case .signed(let credential) = try SigV4.parse(head) else {
            Issue.record("not signed")
            return
        }
        #expect(SigV4.unsignedAmzHeaders(head, credential: credential).isEmpty, "the example signs all it sends")
        head.headers += [("X-Amz-Copy-Source", "other/secret"), ("x-amz-acl", "public-read"), ("X-AMZ-ACL", "again"), ("user-agent", "x")]
        #expect(SigV4.unsignedAmzHeaders(head, credential: credential) == ["x-amz-acl", "x-amz-copy-source"])
    }
}
