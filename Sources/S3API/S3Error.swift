import SigV4
import StorageEngine

/// An S3 error as the wire shows it: AWS's code, HTTP status and message, plus extra XML fields.
///
/// Every failure of a request ends up as one of these, through ``S3Error/init(_:)`` — the one place
/// where engine, signature and parsing errors are mapped to what clients expect.
public struct S3Error: Error, Sendable, CustomStringConvertible {
    /// AWS's error code, e.g. `NoSuchKey`.
    public var code: String
    /// The HTTP status.
    public var status: Int
    /// A message for humans; never holds secrets or signatures.
    public var message: String
    /// Extra elements of the error document (e.g. `BucketName`, `Key`).
    public var fields: [(String, String)] = []
    /// Extra response headers (e.g. `Content-Range` for `InvalidRange`).
    public var headers: [(String, String)] = []

    public init(_ code: String, _ status: Int, _ message: String, fields: [(String, String)] = []) {
        self.code = code
        self.status = status
        self.message = message
        self.fields = fields
    }

    public var description: String { "\(self.code) (\(self.status)): \(self.message)" }

    // MARK: The table

    static func accessDenied(_ message: String = "Access Denied") -> S3Error { S3Error("AccessDenied", 403, message) }
    static let noSuchBucket = S3Error("NoSuchBucket", 404, "The specified bucket does not exist")
    static let noSuchKey = S3Error("NoSuchKey", 404, "The specified key does not exist.")
    static let noSuchUpload = S3Error(
        "NoSuchUpload", 404,
        "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed."
    )
    static let notModified = S3Error("NotModified", 304, "Not Modified")
    static let preconditionFailed = S3Error(
        "PreconditionFailed", 412, "At least one of the pre-conditions you specified did not hold"
    )
    static let malformedXML = S3Error(
        "MalformedXML", 400, "The XML you provided was not well-formed or did not validate against our published schema"
    )
    static let invalidPart = S3Error(
        "InvalidPart", 400,
        "One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not match the part's entity tag."
    )
    static let invalidPartOrder = S3Error(
        "InvalidPartOrder", 400, "The list of parts was not in ascending order. Parts must be ordered by part number."
    )
    static let entityTooSmall = S3Error("EntityTooSmall", 400, "Your proposed upload is smaller than the minimum allowed object size.")
    static let entityTooLarge = S3Error("EntityTooLarge", 400, "Your proposed upload exceeds the maximum allowed object size.")
    static let missingContentLength = S3Error("MissingContentLength", 411, "You must provide the Content-Length HTTP header.")
    static let keyTooLong = S3Error("KeyTooLongError", 400, "Your key is too long")
    static let metadataTooLarge = S3Error(
        "MetadataTooLarge", 400, "Your metadata headers exceed the maximum allowed metadata size."
    )
    static let badDigest = S3Error("BadDigest", 400, "The Content-MD5 you specified did not match what we received.")
    static let invalidDigest = S3Error("InvalidDigest", 400, "The Content-MD5 you specified is not valid.")
    static let incompleteBody = S3Error(
        "IncompleteBody", 400, "You did not provide the number of bytes specified by the Content-Length HTTP header."
    )
    static let invalidBucketName = S3Error("InvalidBucketName", 400, "The specified bucket is not valid.")
    static let internalError = S3Error("InternalError", 500, "We encountered an internal error. Please try again.")
    static let methodNotAllowed = S3Error(
        "MethodNotAllowed", 405, "The specified method is not allowed against this resource."
    )

    static func invalidArgument(_ message: String, name: String? = nil, value: String? = nil) -> S3Error {
        var fields: [(String, String)] = []
        if let name { fields.append(("ArgumentName", name)) }
        if let value { fields.append(("ArgumentValue", value)) }
        return S3Error("InvalidArgument", 400, message, fields: fields)
    }

    static func invalidRequest(_ message: String) -> S3Error { S3Error("InvalidRequest", 400, message) }

    static func notImplemented(_ what: String) -> S3Error {
        S3Error("NotImplemented", 501, "A header or query you provided implies functionality that is not implemented: \(what)")
    }

    static func invalidRange(size: Int64) -> S3Error {
        var error = S3Error("InvalidRange", 416, "The requested range is not satisfiable")
        error.fields = [("ActualObjectSize", String(size))]
        error.headers = [("Content-Range", "bytes */\(size)")]
        return error
    }

    static func checksumMismatch(_ algorithm: String) -> S3Error {
        S3Error("BadDigest", 400, "The \(algorithm) you specified did not match the calculated checksum.")
    }

    /// Maps any error raised while serving a request to its wire form.
    init(_ error: any Error) {
        switch error {
        case let error as S3Error:
            self = error
        case let error as StorageError:
            self = S3Error.from(error)
        case let error as SigV4Error:
            self = S3Error.from(error)
        case is XMLParser.Failure:
            self = .malformedXML
        default:
            self = .internalError
        }
    }

    private static func from(_ error: StorageError) -> S3Error {
        switch error.code {
        case .noSuchBucket: return .noSuchBucket
        case .bucketAlreadyOwnedByYou: return S3Error("BucketAlreadyOwnedByYou", 409, error.message)
        case .bucketAlreadyExists: return S3Error("BucketAlreadyExists", 409, error.message)
        case .bucketNotEmpty: return S3Error("BucketNotEmpty", 409, error.message)
        case .noSuchKey: return .noSuchKey
        case .noSuchUpload: return .noSuchUpload
        case .invalidPart: return .invalidPart
        case .invalidPartOrder: return .invalidPartOrder
        case .entityTooSmall: return .entityTooSmall
        case .unavailable: return S3Error("ServiceUnavailable", 503, "Please reduce your request rate.")
        case .quorumUnavailable: return S3Error("ServiceUnavailable", 503, error.message)
        case .corruptBlock, .missingBlock, .io, .database: return .internalError
        }
    }

    private static func from(_ error: SigV4Error) -> S3Error {
        let status: Int
        switch error.code {
        case .signatureDoesNotMatch, .accessDenied, .requestTimeTooSkewed: status = 403
        default: status = 400
        }
        return S3Error(error.code.rawValue, status, error.message)
    }
}
