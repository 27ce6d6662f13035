import Foundation
import Hashing
import SigV4
import Testing

/// A header-signed GET built with the module's own signer, as a base for malformation tests.
func signedGET(now: Date = exampleNow, extraHeaders: [(String, String)] = []) -> SigV4.RequestHead {
    var head = SigV4.RequestHead(
        method: "GET", rawPath: "/bucket/key", rawQuery: "",
        headers: [("Host", "s3.example.com")] + extraHeaders.map { (name: $0.0, value: $0.1) })
    SigV4.sign(&head, accessKey: exampleAccessKey, secretKey: exampleSecretKey, region: "us-east-1", now: now)
    return head
}

extension SigV4.RequestHead {
    /// A copy with the header `name` replaced (or removed when `value` is nil).
    func replacing(_ name: String, with value: String?) -> SigV4.RequestHead {
        var copy = self
        copy.headers.removeAll { $0.name.lowercased() == name.lowercased() }
        if let value { copy.headers.append((name, value)) }
        return copy
    }
}

let credentialPart = "Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request"
let signaturePart = "Signature=" + String(repeating: "ab", count: 32)

/// Malformed `Authorization` headers and the S3 error each must produce.
let malformedAuthorizations: [(String, SigV4Error.Code)] = [
    ("AWS4-HMAC-SHA256", .authorizationHeaderMalformed),
    ("AWS4-HMAC-SHA256 ", .authorizationHeaderMalformed),
    ("AWS4-HMAC-SHA256 \(credentialPart)", .authorizationHeaderMalformed),
    ("AWS4-HMAC-SHA256 \(credentialPart), SignedHeaders=host", .authorizationHeaderMalformed),
    ("AWS4-HMAC-SHA256 \(credentialPart), SignedHeaders=host, Signature=abc", .authorizationHeaderMalformed),
    ("AWS4-HMAC-SHA256 \(credentialPart), SignedHeaders=host, Signature=\(String(repeating: "z", count: 64))",
     .authorizationHeaderMalformed),
    ("AWS4-HMAC-SHA256 \(credentialPart), SignedHeaders=host, \(signaturePart), Extra=1", .authorizationHeaderMalformed),
    ("AWS4-HMAC-SHA256 \(credentialPart), \(credentialPart), SignedHeaders=host, \(signaturePart)",
     .authorizationHeaderMalformed),
    ("AWS4-HMAC-SHA256 Credential=AKID/20130524/us-east-1/s3, SignedHeaders=host, \(signaturePart)",
     .authorizationHeaderMalformed),
    ("AWS4-HMAC-SHA256 Credential=AKID/2013052/us-east-1/s3/aws4_request, SignedHeaders=host, \(signaturePart)",
     .authorizationHeaderMalformed),
    ("AWS4-HMAC-SHA256 Credential=AKID/20130524/us-east-1/ec2/aws4_request, SignedHeaders=host, \(signaturePart)",
     .authorizationHeaderMalformed),
    ("AWS4-HMAC-SHA256 Credential=AKID/20130524/us-east-1/s3/aws5_request, SignedHeaders=host, \(signaturePart)",
     .authorizationHeaderMalformed),
    ("AWS4-HMAC-SHA256 Credential=AKID/20130525/us-east-1/s3/aws4_request, SignedHeaders=host, \(signaturePart)",
     .authorizationHeaderMalformed),
    ("AWS4-HMAC-SHA256 Credential=/20130524/us-east-1/s3/aws4_request, SignedHeaders=host, \(signaturePart)",
     .authorizationHeaderMalformed),
    ("AWS4-HMAC-SHA256 \(credentialPart), SignedHeaders=, \(signaturePart)", .authorizationHeaderMalformed),
    ("AWS4-HMAC-SHA256 \(credentialPart), SignedHeaders=host;;x-amz-date, \(signaturePart)",
     .authorizationHeaderMalformed),
    ("AWS4-HMAC-SHA256 \(credentialPart), SignedHeaders=x-amz-date, \(signaturePart)", .accessDenied),
    ("AWS4-HMAC-SHA512 \(credentialPart), SignedHeaders=host, \(signaturePart)", .authorizationHeaderMalformed),
    ("AWS AKIAIOSFODNN7EXAMPLE:frJIUN8DYpKDtOLCwo//yllqDzg=", .invalidRequest),
    ("AWS4-ECDSA-P256-SHA256 \(credentialPart), SignedHeaders=host, \(signaturePart)", .invalidRequest),
    ("Bearer abc", .authorizationHeaderMalformed),
    ("", .invalidRequest),
]

/// Malformed presigned query strings and the error each must produce.
let presignedBase =
    "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
    + "&X-Amz-Date=20130524T000000Z&X-Amz-SignedHeaders=host&X-Amz-Signature=" + String(repeating: "ab", count: 32)
let malformedPresigned: [(String, SigV4Error.Code)] = [
    (presignedBase, .authorizationQueryParametersError),  // no X-Amz-Expires
    (presignedBase + "&X-Amz-Expires=0", .authorizationQueryParametersError),
    (presignedBase + "&X-Amz-Expires=-1", .authorizationQueryParametersError),
    (presignedBase + "&X-Amz-Expires=604801", .authorizationQueryParametersError),
    (presignedBase + "&X-Amz-Expires=99999999999999999999999", .authorizationQueryParametersError),
    (presignedBase + "&X-Amz-Expires=1e3", .authorizationQueryParametersError),
    (presignedBase + "&X-Amz-Expires=60&X-Amz-Expires=60", .authorizationQueryParametersError),
    (presignedBase.replacingOccurrences(of: "HMAC-SHA256", with: "HMAC-SHA1") + "&X-Amz-Expires=60",
     .authorizationQueryParametersError),
    (presignedBase.replacingOccurrences(of: "20130524T000000Z", with: "2013-05-24T00:00:00Z") + "&X-Amz-Expires=60",
     .authorizationQueryParametersError),
    (presignedBase.replacingOccurrences(of: "20130524T000000Z", with: "20130532T000000Z") + "&X-Amz-Expires=60",
     .authorizationQueryParametersError),
    (presignedBase.replacingOccurrences(of: "20130524T000000Z", with: "20130525T000000Z") + "&X-Amz-Expires=60",
     .authorizationQueryParametersError),
    (presignedBase.replacingOccurrences(of: "%2Fs3%2F", with: "%2Fsqs%2F") + "&X-Amz-Expires=60",
     .authorizationQueryParametersError),
    (presignedBase.replacingOccurrences(of: "X-Amz-SignedHeaders=host", with: "X-Amz-SignedHeaders=range")
        + "&X-Amz-Expires=60", .accessDenied),
    (presignedBase.replacingOccurrences(of: "&X-Amz-Signature=", with: "&X-Amz-Signature=00") + "&X-Amz-Expires=60",
     .authorizationQueryParametersError),
    ("X-Amz-Algorithm=AWS4-HMAC-SHA256", .authorizationQueryParametersError),
    ("AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Expires=1141889120&Signature=vjbyPxybdZaNmGa%2ByT272YEAiv4%3D",
     .invalidRequest),
]

@Suite struct ParseVerifyTests {
    @Test func anonymous() throws {
        let head = SigV4.RequestHead(method: "GET", rawPath: "/b/k", rawQuery: "acl&versionId=3", headers: [("Host", "h")])
        guard case .anonymous = try SigV4.parse(head) else {
            Issue.record("expected anonymous")
            return
        }
    }

    @Test func signerRoundTrip() throws {
        let head = signedGET(extraHeaders: [("Range", "bytes=1-2"), ("x-amz-meta-a", "  x   y ")])
        let (credential, context) = try parseAndVerify(head)
        #expect(credential.signedHeaders == ["host", "range", "x-amz-content-sha256", "x-amz-date", "x-amz-meta-a"])
        #expect(credential.payloadMode == .sha256(hex: emptyHash))
        #expect(context.scope == "20130524/us-east-1/s3/aws4_request")
        #expect(!String(describing: context).contains(Hex.encode(context.signingKey)))
        #expect(!String(describing: credential).contains(credential.signature))
    }

    @Test func presignerRoundTrip() throws {
        var head = SigV4.RequestHead(method: "GET", rawPath: "/b/a%20b", rawQuery: "versionId=7", headers: [("Host", "h")])
        SigV4.presign(&head, accessKey: "AK", secretKey: "SK", region: "eu-west-1", now: exampleNow, expires: 60)
        let (credential, _) = try parseAndVerify(head, secretKey: "SK")
        #expect(credential.region == "eu-west-1")
        #expect(credential.expires == 60)
        expectSigV4Error(.accessDenied) { () throws(SigV4Error) in
            try parseAndVerify(head, secretKey: "SK", now: exampleNow + 61)
        }
    }

    @Test(arguments: [-901.0, 901, 3600, -86400])
    func clockSkewRejected(offset: Double) {
        let head = signedGET(now: exampleNow + offset)
        let error = expectSigV4Error(.requestTimeTooSkewed) { () throws(SigV4Error) in try parseAndVerify(head) }
        #expect(error?.code.httpStatus == 403)
    }

    @Test(arguments: [-899.0, 0, 899])
    func clockSkewAccepted(offset: Double) throws {
        _ = try parseAndVerify(signedGET(now: exampleNow + offset))
    }

    @Test func customMaxSkew() throws {
        let head = signedGET(now: exampleNow + 120)
        _ = try parseAndVerify(head, maxSkew: .seconds(121))
        expectSigV4Error(.requestTimeTooSkewed) { () throws(SigV4Error) in try parseAndVerify(head, maxSkew: .seconds(60)) }
    }

    @Test(arguments: malformedAuthorizations)
    func malformedAuthorizationHeader(authorization: String, code: SigV4Error.Code) {
        let head = signedGET().replacing("Authorization", with: authorization)
        let error = expectSigV4Error(code) { () throws(SigV4Error) in try parseAndVerify(head) }
        if let error {
            #expect(!error.message.contains(String(repeating: "ab", count: 32)))
            #expect(!error.message.contains(exampleSecretKey))
        }
    }

    @Test(arguments: malformedPresigned)
    func malformedPresignedQuery(query: String, code: SigV4Error.Code) {
        let head = SigV4.RequestHead(method: "GET", rawPath: "/b/k", rawQuery: query, headers: [("Host", "h")])
        expectSigV4Error(code) { () throws(SigV4Error) in try parseAndVerify(head) }
    }

    @Test func contentSHA256Header() {
        let head = signedGET()
        expectSigV4Error(.invalidRequest) { () throws(SigV4Error) in
            try SigV4.parse(head.replacing("x-amz-content-sha256", with: nil))
        }
        for bad in ["abc", String(repeating: "g", count: 64), "STREAMING-PAYLOAD", "unsigned-payload"] {
            expectSigV4Error(.invalidArgument) { () throws(SigV4Error) in
                try SigV4.parse(head.replacing("x-amz-content-sha256", with: bad))
            }
        }
        expectSigV4Error(.invalidRequest) { () throws(SigV4Error) in
            try SigV4.parse(head.replacing("x-amz-content-sha256", with: "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD"))
        }
        var twice = head
        twice.headers.append(("X-Amz-Content-SHA256", emptyHash))
        expectSigV4Error(.invalidArgument) { () throws(SigV4Error) in try SigV4.parse(twice) }
    }

    @Test(arguments: [
        ("UNSIGNED-PAYLOAD", SigV4.PayloadMode.unsigned),
        ("STREAMING-AWS4-HMAC-SHA256-PAYLOAD", .streamingSigned),
        ("STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER", .streamingSignedTrailer),
        ("STREAMING-UNSIGNED-PAYLOAD-TRAILER", .streamingUnsignedTrailer),
        (emptyHash.uppercased(), .sha256(hex: emptyHash)),
    ])
    func payloadModes(value: String, mode: SigV4.PayloadMode) throws {
        // Signed by hand so the raw header value (e.g. upper-case hex) enters the signature verbatim.
        let head = SigV4.RequestHead(
            method: "PUT", rawPath: "/b/k",
            headers: [("Host", "h"), ("x-amz-date", "20130524T000000Z"), ("x-amz-content-sha256", value)])
        let credential = SigV4.Credential(
            accessKey: "AK", date: "20130524", region: "r", service: "s3",
            signedHeaders: ["host", "x-amz-content-sha256", "x-amz-date"], signature: "",
            amzDate: "20130524T000000Z", requestDate: exampleNow, isPresigned: false, expires: nil,
            payloadMode: mode, hashedPayload: value)
        let signature = SigV4.signature(for: head, credential: credential, secretKey: "SK")
        let signedHead = head.replacing(
            "Authorization",
            with: "AWS4-HMAC-SHA256 Credential=AK/20130524/r/s3/aws4_request, "
                + "SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=\(signature)")
        let (parsed, _) = try parseAndVerify(signedHead, secretKey: "SK")
        #expect(parsed.payloadMode == mode)
        #expect(parsed.hashedPayload == value)
        #expect(mode.isStreaming == value.hasPrefix("STREAMING"))
    }

    @Test func dateHeaders() throws {
        // Only the Date header (no x-amz-date): accepted, converted to ISO 8601 for the string to sign.
        var head = signedGET()
        head = head.replacing("x-amz-date", with: nil).replacing("Date", with: "Fri, 24 May 2013 00:00:00 GMT")
        guard case .signed(let credential) = try SigV4.parse(head) else {
            Issue.record("not signed")
            return
        }
        #expect(credential.amzDate == "20130524T000000Z")
        #expect(credential.requestDate == exampleNow)
        for bad in ["20130524", "20130524T000000", "2013-05-24T00:00:00Z", "20130230T000000Z", "20130524T246000Z"] {
            expectSigV4Error(.accessDenied) { () throws(SigV4Error) in try SigV4.parse(signedGET().replacing("x-amz-date", with: bad)) }
        }
        expectSigV4Error(.accessDenied) { () throws(SigV4Error) in try SigV4.parse(signedGET().replacing("x-amz-date", with: nil)) }
        expectSigV4Error(.accessDenied) { () throws(SigV4Error) in
            try SigV4.parse(signedGET().replacing("x-amz-date", with: nil).replacing("Date", with: "yesterday"))
        }
    }

    @Test func bothMechanismsRejected() {
        var head = signedGET()
        head.rawQuery = "X-Amz-Algorithm=AWS4-HMAC-SHA256"
        expectSigV4Error(.invalidArgument) { () throws(SigV4Error) in try SigV4.parse(head) }
        var twice = signedGET()
        twice.headers.append(("authorization", "AWS4-HMAC-SHA256 x"))
        expectSigV4Error(.invalidArgument) { () throws(SigV4Error) in try SigV4.parse(twice) }
    }

    @Test func signedHeaderValuesAreCanonicalised() throws {
        // Repeated headers join with ',', values are trimmed and inner whitespace collapses.
        var head = SigV4.RequestHead(
            method: "GET", rawPath: "/b/k",
            headers: [("Host", "h"), ("X-Amz-Meta-List", " a  b "), ("x-amz-meta-list", "\tc\t d")])
        SigV4.sign(&head, accessKey: "AK", secretKey: "SK", region: "r", now: exampleNow)
        guard case .signed(let credential) = try SigV4.parse(head) else {
            Issue.record("not signed")
            return
        }
        #expect(SigV4.canonicalHeaders(head, signedHeaders: ["x-amz-meta-list"]) == "x-amz-meta-list:a b,c d\n")
        _ = try SigV4.verify(credential, head: head, secretKey: "SK", now: exampleNow)
        // Whitespace changes inside a value do not break the signature; content changes do.
        let respaced = head.replacing("x-amz-meta-list", with: nil)
        var moved = respaced
        moved.headers.append(("x-amz-meta-list", "a b"))
        moved.headers.append(("x-amz-meta-list", "c    d  "))
        _ = try SigV4.verify(credential, head: moved, secretKey: "SK", now: exampleNow)
        var reordered = respaced
        reordered.headers.append(("x-amz-meta-list", "c d"))
        reordered.headers.append(("x-amz-meta-list", "a b"))
        expectSigV4Error(.signatureDoesNotMatch) { () throws(SigV4Error) in
            try SigV4.verify(credential, head: reordered, secretKey: "SK", now: exampleNow)
        }
    }

    @Test func regionCheck() throws {
        let (credential, _) = try parseAndVerify(signedGET())
        try SigV4.checkRegion(credential, expected: "us-east-1")
        let error = expectSigV4Error(.authorizationHeaderMalformed) { () throws(SigV4Error) in
            try SigV4.checkRegion(credential, expected: "eu-central-1")
        }
        #expect(error?.message.contains("eu-central-1") == true)
    }

    @Test func signatureMismatchMessageIsSafe() {
        let head = signedGET()
        let error = expectSigV4Error(.signatureDoesNotMatch) { () throws(SigV4Error) in
            try parseAndVerify(head, secretKey: "wrong")
        }
        guard let error, case .signed(let credential) = try? SigV4.parse(head) else { return }
        for text in [error.message, error.description] {
            #expect(!text.contains(credential.signature))
            #expect(!text.contains(exampleSecretKey))
            #expect(!text.contains("x-amz-content-sha256:"))  // no canonical request
        }
        #expect(error.debugDescription.contains("AWS4-HMAC-SHA256"))  // string to sign, for debug logs
        #expect(!error.debugDescription.contains(credential.signature))
        #expect(error == SigV4Error(.signatureDoesNotMatch, "other text"))
    }
}

@Suite struct CanonicalFormTests {
    @Test(arguments: [
        ("/", "/"), ("", "/"), ("/test%24file.text", "/test%24file.text"), ("/a b", "/a%20b"),
        ("/%7euser/%2a", "/~user/%2A"), ("/a+b", "/a%2Bb"), ("/a//b/../c", "/a//b/../c"),
        ("/%C3%BC", "/%C3%BC"), ("/ü", "/%C3%BC"), ("/bad%zz%4", "/bad%25zz%254"), ("/a%2Fb", "/a/b"),
    ])
    func canonicalURI(raw: String, canonical: String) {
        #expect(SigV4.canonicalURI(rawPath: raw) == canonical)
    }

    @Test(arguments: [
        ("", ""), ("acl", "acl="), ("b=2&a=1", "a=1&b=2"), ("a=2&a=1&a=10", "a=1&a=10&a=2"),
        ("prefix=a%20b&max-keys=2", "max-keys=2&prefix=a%20b"), ("q=a+b", "q=a%20b"), ("q=%7e*", "q=~%2A"),
        ("x=&y", "x=&y="), ("&&a=1&", "a=1"), ("Z=1&a=1", "Z=1&a=1"), ("k=v=w", "k=v%3Dw"),
    ])
    func canonicalQuery(raw: String, canonical: String) {
        #expect(SigV4.canonicalQuery(rawQuery: raw, excludingSignature: false) == canonical)
    }

    @Test func presignedQueryExcludesSignatureOnly() {
        #expect(
            SigV4.canonicalQuery(rawQuery: "X-Amz-Signature=abc&X-Amz-Date=1&x-amz-signature=k", excludingSignature: true)
                == "X-Amz-Date=1&x-amz-signature=k")
    }

    @Test(arguments: [("  a  ", "a"), ("a   b\t\tc", "a b c"), ("", ""), ("\t", ""), ("x", "x")])
    func headerValue(raw: String, canonical: String) {
        #expect(SigV4.canonicalHeaderValue(raw) == canonical)
    }

    @Test func trailerCanonicalForm() {
        #expect(
            SigV4.canonicalTrailers([
                ("x-amz-checksum-sha256", " B "), ("X-Amz-Checksum-CRC32", "A"), ("x-amz-trailer-signature", "z"),
            ]) == "x-amz-checksum-crc32:A\nx-amz-checksum-sha256:B\n")
    }
}
