/// A failure of the storage engine. The S3 layer maps each code to its wire error in one table.
///
/// `description` never contains object data or credentials.
public struct StorageError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What went wrong. New cases may be added.
    public enum Code: String, Sendable {
        case noSuchBucket
        case bucketAlreadyOwnedByYou
        case bucketAlreadyExists
        case bucketNotEmpty
        case noSuchKey
        case noSuchUpload
        case invalidPart
        case invalidPartOrder
        case entityTooSmall
        /// A stored block failed its integrity check or could not be decoded.
        case corruptBlock
        /// A block referenced by metadata is not on disk.
        case missingBlock
        /// A disk operation failed.
        case io
        /// The metadata database failed.
        case database
        /// The engine is shutting down.
        case unavailable
        /// Too few replicas answered a clustered read or write.
        case quorumUnavailable
    }

    public var code: Code
    /// A human-readable explanation, safe to show to clients and logs.
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(self.code.rawValue): \(self.message)" }

    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.code == rhs.code }
}
