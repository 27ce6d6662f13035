#if canImport(FoundationEssentials)
public import FoundationEssentials
#else
public import Foundation
#endif

/// AWS Signature Version 4 for S3, as a server verifies it.
///
/// The module is pure: it does no I/O and never reads the clock (`now` is always a parameter).
/// Verification is a chain of pure steps (AWS SigV4 "Create a canonical request" → "Create a string to sign"
/// → "Derive a signing key" → "Calculate the signature"):
///
/// 1. ``SigV4/parse(_:)`` reads the `Authorization` header, or the `X-Amz-*` query parameters of a
///    presigned URL, into a ``SigV4/Credential``. No secret is needed, so the caller can look up the
///    secret key by ``SigV4/Credential/accessKey`` afterwards.
/// 2. ``SigV4/verify(_:head:secretKey:now:maxSkew:)`` checks the time window and the signature (in
///    constant time) and returns a ``SigV4/SigningContext``.
/// 3. For `aws-chunked` bodies, ``AwsChunkedDecoder`` uses that context to check every chunk signature
///    and the trailer signature.
///
/// Terms: *scope* is `yyyyMMdd/region/service/aws4_request`; *amz date* is the request time as
/// `yyyyMMdd'T'HHmmss'Z'`; the *seed signature* is the request signature that the first chunk signature
/// chains from.
///
/// How this differs from the generic SigV4 description, following what the S3 service does:
/// - The canonical URI is the decoded path re-encoded once (no dot-segment normalisation, no double encoding).
/// - The hashed payload is the `x-amz-content-sha256` header value verbatim (required for header auth);
///   presigned URLs use `UNSIGNED-PAYLOAD` when the header is absent.
/// - Only `AWS4-HMAC-SHA256` is accepted (no SigV2, no SigV4a / ECDSA).
public enum SigV4 {}

extension SigV4 {
    /// The parts of an HTTP request head that signing covers, exactly as received.
    public struct RequestHead: Sendable {
        /// The HTTP method, e.g. `GET`.
        public var method: String
        /// The path as on the wire (still percent-encoded), before any `?`.
        public var rawPath: String
        /// The query as on the wire, after `?`; `""` when there is none.
        public var rawQuery: String
        /// All header fields in arrival order; names in any case, repeated names allowed.
        public var headers: [(name: String, value: String)]

        /// Creates a request head.
        /// - Parameters:
        ///   - method: The HTTP method.
        ///   - rawPath: The still-encoded path, without the query.
        ///   - rawQuery: The still-encoded query without the leading `?` (may be empty).
        ///   - headers: The header fields as received.
        public init(method: String, rawPath: String, rawQuery: String = "", headers: [(name: String, value: String)]) {
            self.method = method
            self.rawPath = rawPath
            self.rawQuery = rawQuery
            self.headers = headers
        }

        /// The values of every header field called `name` (ASCII case-insensitive), in order.
        public func values(_ name: String) -> [String] {
            headers.compactMap { asciiCaseInsensitiveEqual($0.name, name) ? $0.value : nil }
        }

        /// The first value of the header `name` (ASCII case-insensitive), if any.
        public func value(_ name: String) -> String? {
            headers.first { asciiCaseInsensitiveEqual($0.name, name) }?.value
        }
    }

    /// How the request body is protected, from `x-amz-content-sha256`.
    public enum PayloadMode: Sendable, Equatable, Hashable {
        /// `UNSIGNED-PAYLOAD`: the body is not covered by the signature.
        case unsigned
        /// A single-chunk body whose SHA-256 MUST equal `hex` (lowercase); else `XAmzContentSHA256Mismatch`.
        case sha256(hex: String)
        /// `STREAMING-AWS4-HMAC-SHA256-PAYLOAD`: `aws-chunked` with a signature per chunk.
        case streamingSigned
        /// `STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER`: signed chunks plus signed trailing headers.
        case streamingSignedTrailer
        /// `STREAMING-UNSIGNED-PAYLOAD-TRAILER`: `aws-chunked` without chunk signatures, with trailing headers.
        case streamingUnsignedTrailer

        /// Whether the body uses `aws-chunked` framing (decode it with ``AwsChunkedDecoder``).
        public var isStreaming: Bool {
            switch self {
            case .unsigned, .sha256: false
            case .streamingSigned, .streamingSignedTrailer, .streamingUnsignedTrailer: true
            }
        }

        /// Whether the body ends with trailing headers (`x-amz-trailer`).
        public var hasTrailer: Bool { self == .streamingSignedTrailer || self == .streamingUnsignedTrailer }

        /// The `x-amz-content-sha256` token for this mode.
        public var headerValue: String {
            switch self {
            case .unsigned: "UNSIGNED-PAYLOAD"
            case .sha256(let hex): hex
            case .streamingSigned: "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
            case .streamingSignedTrailer: "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
            case .streamingUnsignedTrailer: "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
            }
        }

        /// Parses an `x-amz-content-sha256` value.
        /// - Returns: the mode, or `nil` for anything else (including the unsupported ECDSA / SigV4a tokens).
        public init?(headerValue: String) {
            switch headerValue {
            case "UNSIGNED-PAYLOAD": self = .unsigned
            case "STREAMING-AWS4-HMAC-SHA256-PAYLOAD": self = .streamingSigned
            case "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER": self = .streamingSignedTrailer
            case "STREAMING-UNSIGNED-PAYLOAD-TRAILER": self = .streamingUnsignedTrailer
            default:
                guard headerValue.utf8.count == 64, headerValue.utf8.allSatisfy({ isHexDigit($0) }) else { return nil }
                self = .sha256(hex: headerValue.lowercased())
            }
        }
    }

    /// The authentication a request carries, as parsed by ``SigV4/parse(_:)``.
    public enum ParsedAuth: Sendable {
        /// No `Authorization` header and no `X-Amz-*` signing query parameters.
        case anonymous
        /// A SigV4 signature, not yet verified.
        case signed(Credential)
    }

    /// A parsed, not yet verified, SigV4 authorization (header or presigned query).
    ///
    /// `description` omits the signature; log it rather than the value itself.
    public struct Credential: Sendable, Equatable, CustomStringConvertible {
        /// The access key ID; look up its secret key with it.
        public var accessKey: String
        /// The scope date, `yyyyMMdd` (equal to the first 8 characters of ``amzDate``).
        public var date: String
        /// The scope region, e.g. `us-east-1`. The caller SHOULD check it with ``SigV4/checkRegion(_:expected:)``.
        public var region: String
        /// The scope service; always `s3` after parsing.
        public var service: String
        /// The signed header names, lowercase, in the order the client listed them.
        public var signedHeaders: [String]
        /// The request signature, lowercase hex.
        public var signature: String
        /// The request time as it enters the string to sign: `yyyyMMdd'T'HHmmss'Z'`.
        public var amzDate: String
        /// ``amzDate`` as a `Date`.
        public var requestDate: Date
        /// Whether the signature came from the query string (presigned URL).
        public var isPresigned: Bool
        /// Presigned URLs: validity in seconds from ``requestDate`` (1...604800); `nil` for header auth.
        public var expires: Int?
        /// How the body is protected.
        public var payloadMode: PayloadMode
        /// The hashed-payload line of the canonical request, verbatim (e.g. `UNSIGNED-PAYLOAD` or 64 hex).
        public var hashedPayload: String
        /// `x-amz-security-token` (header or query), for temporary credentials; the caller validates it.
        public var securityToken: String?

        /// The credential scope, `date/region/service/aws4_request`.
        public var scope: String { "\(date)/\(region)/\(service)/aws4_request" }

        /// A log-safe summary (no signature, no token).
        public var description: String {
            "SigV4.Credential(accessKey: \(accessKey), scope: \(scope), amzDate: \(amzDate), "
                + "presigned: \(isPresigned), signedHeaders: \(signedHeaders.joined(separator: ";")))"
        }

        /// Creates a credential; normally produced by ``SigV4/parse(_:)``.
        public init(
            accessKey: String, date: String, region: String, service: String, signedHeaders: [String],
            signature: String, amzDate: String, requestDate: Date, isPresigned: Bool, expires: Int?,
            payloadMode: PayloadMode, hashedPayload: String, securityToken: String? = nil
        ) {
            self.accessKey = accessKey
            self.date = date
            self.region = region
            self.service = service
            self.signedHeaders = signedHeaders
            self.signature = signature
            self.amzDate = amzDate
            self.requestDate = requestDate
            self.isPresigned = isPresigned
            self.expires = expires
            self.payloadMode = payloadMode
            self.hashedPayload = hashedPayload
            self.securityToken = securityToken
        }
    }
}

// MARK: - small byte helpers shared by the module

@inline(__always)
func isHexDigit(_ c: UInt8) -> Bool {
    (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66)
}

@inline(__always)
func hexValue(_ c: UInt8) -> Int? {
    switch c {
    case 0x30...0x39: Int(c - 0x30)
    case 0x41...0x46: Int(c - 0x41 + 10)
    case 0x61...0x66: Int(c - 0x61 + 10)
    default: nil
    }
}

/// ASCII case-insensitive string equality (header names are ASCII).
func asciiCaseInsensitiveEqual(_ a: String, _ b: String) -> Bool {
    let a = a.utf8, b = b.utf8
    guard a.count == b.count else { return false }
    for (x, y) in zip(a, b) where asciiLower(x) != asciiLower(y) { return false }
    return true
}

@inline(__always)
func asciiLower(_ c: UInt8) -> UInt8 { (c >= 0x41 && c <= 0x5A) ? c | 0x20 : c }

/// Lowercases ASCII letters only (header names; avoids locale and Unicode case mapping).
func asciiLowercased(_ s: some StringProtocol) -> String {
    String(decoding: s.utf8.map(asciiLower), as: UTF8.self)
}
