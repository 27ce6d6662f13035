#if canImport(FoundationEssentials)
public import FoundationEssentials
#else
public import Foundation
#endif
import Hashing

extension SigV4 {
    /// What a verified request leaves for checking its `aws-chunked` body: the derived signing key, the scope,
    /// the request time and the seed signature.
    ///
    /// Holds key material: `description` is redacted; never log ``signingKey``.
    public struct SigningContext: Sendable, CustomStringConvertible, CustomDebugStringConvertible {
        /// `kSigning` = HMAC chain over date, region, service and `aws4_request` (SigV4 step 3). Secret.
        public let signingKey: [UInt8]
        /// `yyyyMMdd/region/service/aws4_request`.
        public let scope: String
        /// `yyyyMMdd'T'HHmmss'Z'`, as in the request's string to sign.
        public let amzDate: String
        /// The verified request signature (lowercase hex); the first chunk signature chains from it.
        public let seedSignature: String

        /// Creates a context (normally returned by ``SigV4/verify(_:head:secretKey:now:maxSkew:)``).
        public init(signingKey: [UInt8], scope: String, amzDate: String, seedSignature: String) {
            self.signingKey = signingKey
            self.scope = scope
            self.amzDate = amzDate
            self.seedSignature = seedSignature
        }

        /// Signature of one `aws-chunked` chunk: HMAC(kSigning, "AWS4-HMAC-SHA256-PAYLOAD\n" + amzDate + "\n"
        /// + scope + "\n" + previousSignature + "\n" + hex(sha256("")) + "\n" + hex(sha256(chunk))).
        /// - Parameters:
        ///   - previousSignature: The seed signature for the first chunk, else the previous chunk's signature.
        ///   - chunkSHA256: SHA-256 of the chunk data (32 bytes).
        /// - Returns: The 32-byte signature.
        public func chunkSignature(previousSignature: String, chunkSHA256: [UInt8]) -> [UInt8] {
            let stringToSign = "AWS4-HMAC-SHA256-PAYLOAD\n\(amzDate)\n\(scope)\n\(previousSignature)\n"
                + "\(SigV4.emptySHA256Hex)\n\(Hex.encode(chunkSHA256))"
            return Digests.hmacSHA256(key: signingKey, message: Array(stringToSign.utf8))
        }

        /// Signature of the trailing headers: HMAC(kSigning, "AWS4-HMAC-SHA256-TRAILER\n" + amzDate + "\n" + scope
        /// + "\n" + previousSignature + "\n" + hex(sha256(canonicalTrailers))).
        /// - Parameters:
        ///   - previousSignature: The signature of the final (empty) chunk.
        ///   - canonicalTrailers: See ``SigV4/canonicalTrailers(_:)``.
        /// - Returns: The 32-byte signature.
        public func trailerSignature(previousSignature: String, canonicalTrailers: String) -> [UInt8] {
            let stringToSign = "AWS4-HMAC-SHA256-TRAILER\n\(amzDate)\n\(scope)\n\(previousSignature)\n"
                + Hex.encode(Digests.sha256(Array(canonicalTrailers.utf8)))
            return Digests.hmacSHA256(key: signingKey, message: Array(stringToSign.utf8))
        }

        /// Redacted: scope and date only.
        public var description: String { "SigV4.SigningContext(scope: \(scope), amzDate: \(amzDate))" }
        /// Redacted: scope and date only.
        public var debugDescription: String { description }
    }

    /// `hex(sha256(""))`.
    public static let emptySHA256Hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

    /// The SigV4 signing key (step 3): kDate = HMAC("AWS4" + secret, date), kRegion, kService,
    /// kSigning = HMAC(kService, "aws4_request").
    /// - Parameters:
    ///   - secretKey: The secret access key.
    ///   - date: `yyyyMMdd`.
    ///   - region: The scope region.
    ///   - service: The scope service (`s3`).
    /// - Returns: The 32-byte signing key. Callers MAY cache it per (access key, date, region).
    public static func signingKey(secretKey: String, date: String, region: String, service: String) -> [UInt8] {
        let kDate = Digests.hmacSHA256(key: Array(("AWS4" + secretKey).utf8), message: Array(date.utf8))
        let kRegion = Digests.hmacSHA256(key: kDate, message: Array(region.utf8))
        let kService = Digests.hmacSHA256(key: kRegion, message: Array(service.utf8))
        return Digests.hmacSHA256(key: kService, message: Array("aws4_request".utf8))
    }

    /// The string to sign (step 2): `AWS4-HMAC-SHA256\n amzDate \n scope \n hex(sha256(canonicalRequest))`.
    public static func stringToSign(canonicalRequest: String, amzDate: String, scope: String) -> String {
        "\(algorithm)\n\(amzDate)\n\(scope)\n\(Hex.encode(Digests.sha256(Array(canonicalRequest.utf8))))"
    }

    /// The canonical trailers block signed by `x-amz-trailer-signature`: each trailer as
    /// `lowercase-name:trimmed-value\n`, sorted by name, excluding `x-amz-trailer-signature` itself.
    public static func canonicalTrailers(_ trailers: [(name: String, value: String)]) -> String {
        trailers
            .map { (asciiLowercased($0.name), canonicalHeaderValue($0.value)) }
            .filter { $0.0 != "x-amz-trailer-signature" }
            .sorted { $0.0.utf8.lexicographicallyPrecedes($1.0.utf8) }
            .map { "\($0.0):\($0.1)\n" }
            .joined()
    }

    /// The request's `x-amz-*` headers that the signature does not cover, lowercased and sorted. S3
    /// refuses a request with any (`AccessDenied`, "There were headers present in the request which
    /// were not signed"): an unsigned `x-amz-copy-source` would turn a presigned PUT into a copy of
    /// any object the signer can read, an unsigned `x-amz-acl` would change who may read it.
    public static func unsignedAmzHeaders(_ head: RequestHead, credential: Credential) -> [String] {
        let signed = Set(credential.signedHeaders)
        let names = head.headers.map { asciiLowercased($0.name) }.filter { $0.hasPrefix("x-amz-") && !signed.contains($0) }
        return Array(Set(names)).sorted()
    }

    /// The request signature (step 4) for `head` and `credential` under `secretKey`, lowercase hex.
    /// Exposed for clients and tests; servers call ``verify(_:head:secretKey:now:maxSkew:)``.
    public static func signature(for head: RequestHead, credential: Credential, secretKey: String) -> String {
        let key = signingKey(
            secretKey: secretKey, date: credential.date, region: credential.region, service: credential.service)
        let toSign = stringToSign(
            canonicalRequest: canonicalRequest(head, credential: credential), amzDate: credential.amzDate,
            scope: credential.scope)
        return Hex.encode(Digests.hmacSHA256(key: key, message: Array(toSign.utf8)))
    }

    /// Verifies a parsed credential against the request and the secret key.
    ///
    /// Header auth: the request time MUST be within `maxSkew` of `now` (else `RequestTimeTooSkewed`).
    /// Presigned: the URL is valid from `requestDate - maxSkew` (clock tolerance) to
    /// `requestDate + expires` (else `AccessDenied` "Request has expired" / "Request is not valid yet").
    /// The signature is compared in constant time.
    /// - Parameters:
    ///   - credential: From ``parse(_:)``.
    ///   - head: The same request head that was parsed.
    ///   - secretKey: The secret key of `credential.accessKey`.
    ///   - now: The server's current time (injected; this module never reads the clock).
    ///   - maxSkew: Allowed clock difference; S3 uses 15 minutes.
    /// - Returns: The context for checking an `aws-chunked` body.
    /// - Throws: `RequestTimeTooSkewed`, `AccessDenied` or `SignatureDoesNotMatch`.
    public static func verify(
        _ credential: Credential, head: RequestHead, secretKey: String, now: Date,
        maxSkew: Duration = .seconds(900)
    ) throws(SigV4Error) -> SigningContext {
        let key = signingKey(
            secretKey: secretKey, date: credential.date, region: credential.region, service: credential.service)
        return try verify(credential, head: head, signingKey: key, now: now, maxSkew: maxSkew)
    }

    /// ``verify(_:head:secretKey:now:maxSkew:)`` with the signing key of the credential's scope
    /// (``signingKey(secretKey:date:region:service:)``) instead of the secret: for a server that is
    /// given derived keys and never holds the secret (the queues service's SQS endpoint).
    public static func verify(
        _ credential: Credential, head: RequestHead, signingKey key: [UInt8], now: Date,
        maxSkew: Duration = .seconds(900)
    ) throws(SigV4Error) -> SigningContext {
        let skew = Double(maxSkew.components.seconds) + Double(maxSkew.components.attoseconds) * 1e-18
        let age = now.timeIntervalSince(credential.requestDate)
        if let expires = credential.expires {
            if age > Double(expires) {
                throw SigV4Error(
                    .accessDenied, "Request has expired",
                    detail: "X-Amz-Expires=\(expires), X-Amz-Date=\(credential.amzDate)")
            }
            if -age > skew {
                throw SigV4Error(.accessDenied, "Request is not valid yet", detail: "X-Amz-Date=\(credential.amzDate)")
            }
        } else if abs(age) > skew {
            throw SigV4Error(
                .requestTimeTooSkewed, "The difference between the request time and the server's time is too large.",
                detail: "RequestTime=\(credential.amzDate)")
        }

        let toSign = stringToSign(
            canonicalRequest: canonicalRequest(head, credential: credential), amzDate: credential.amzDate,
            scope: credential.scope)
        let expected = Digests.hmacSHA256(key: key, message: Array(toSign.utf8))
        guard let provided = Hex.decode(credential.signature), constantTimeEqual(expected, provided) else {
            throw SigV4Error(
                .signatureDoesNotMatch,
                "The request signature we calculated does not match the signature you provided. "
                    + "Check your key and signing method.",
                detail: "AWSAccessKeyId=\(credential.accessKey) StringToSign=\(toSign.debugDescription)")
        }
        return SigningContext(
            signingKey: key, scope: credential.scope, amzDate: credential.amzDate,
            seedSignature: credential.signature.lowercased())
    }
}

