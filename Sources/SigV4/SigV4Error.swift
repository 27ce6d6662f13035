/// A SigV4 authentication or `aws-chunked` decoding failure, mapped to an S3 error code.
///
/// ``message`` is safe to send to the client and to log: it MUST NEVER contain secret keys, signing keys,
/// signatures or the canonical request. ``debugDescription`` may add non-secret detail (such as the
/// string to sign, as AWS itself returns) for debug logs. Equality compares ``code`` only.
public struct SigV4Error: Error, Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible {
    /// The S3 error code.
    public var code: Code
    /// A client-safe explanation.
    public var message: String
    /// Extra non-secret detail for debug logs only.
    public var detail: String?

    /// The S3 error codes this module produces; the raw value is the S3 `<Code>`.
    public enum Code: String, Sendable, Hashable, CaseIterable {
        /// The computed signature differs from the one sent (request, chunk or trailer).
        case signatureDoesNotMatch = "SignatureDoesNotMatch"
        /// Authentication refused for another reason, e.g. "Request has expired" (presigned).
        case accessDenied = "AccessDenied"
        /// Header auth: the request time is more than the allowed skew from the server clock.
        case requestTimeTooSkewed = "RequestTimeTooSkewed"
        /// The `Authorization` header cannot be parsed or has a wrong scope.
        case authorizationHeaderMalformed = "AuthorizationHeaderMalformed"
        /// The presigned `X-Amz-*` query parameters are missing or malformed.
        case authorizationQueryParametersError = "AuthorizationQueryParametersError"
        /// Unsupported or inconsistent request (e.g. SigV2, missing `x-amz-content-sha256`, bad framing).
        case invalidRequest = "InvalidRequest"
        /// The body ended early (truncated `aws-chunked` stream or short decoded length).
        case incompleteBody = "IncompleteBody"
        /// A parameter has an invalid value (e.g. `x-amz-content-sha256`).
        case invalidArgument = "InvalidArgument"
        /// The body's SHA-256 differs from `x-amz-content-sha256` (raised by the caller).
        case xAmzContentSHA256Mismatch = "XAmzContentSHA256Mismatch"
        /// The trailing headers of an `aws-chunked` body are malformed, undeclared or missing.
        case malformedTrailer = "MalformedTrailerError"
        /// An `aws-chunked` chunk size is not hex or exceeds the limit.
        case invalidChunkSize = "InvalidChunkSizeError"
        /// A required security header is missing.
        case missingSecurityHeader = "MissingSecurityHeader"
        /// A trailer checksum does not match the body (raised by the caller).
        case badDigest = "BadDigest"

        /// The HTTP status S3 uses for this code.
        public var httpStatus: Int {
            switch self {
            case .signatureDoesNotMatch, .accessDenied, .requestTimeTooSkewed: 403
            default: 400
            }
        }
    }

    /// Creates an error.
    /// - Parameters:
    ///   - code: The S3 error code.
    ///   - message: Client-safe text; MUST NOT contain secrets, signatures or the canonical request.
    ///   - detail: Optional non-secret detail for ``debugDescription``.
    public init(_ code: Code, _ message: String, detail: String? = nil) {
        self.code = code
        self.message = message
        self.detail = detail
    }

    /// The code only, bounded: suitable as a metric label.
    public var shortDescription: String { code.rawValue }

    /// `Code: message`.
    public var description: String { "\(code.rawValue): \(message)" }

    /// `Code: message (detail)`.
    public var debugDescription: String {
        guard let detail else { return description }
        return "\(description) [\(detail)]"
    }

    /// Compares the codes only.
    public static func == (lhs: SigV4Error, rhs: SigV4Error) -> Bool { lhs.code == rhs.code }
}
