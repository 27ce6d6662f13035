import StorageEngine

/// A failure inside the cluster layer that is not a storage error: bad bytes between nodes, no layout
/// yet. Storage-facing failures (quorum not reached) are ``StorageError``s so that S3 maps them.
public struct ClusterError: Error, Sendable, Equatable, CustomStringConvertible {
    public var description: String

    public init(_ description: String) { self.description = description }

    /// A message between nodes could not be decoded.
    static let malformed = ClusterError("a cluster message was malformed")

    /// The storage error a client sees when `r` or `w` replicas could not be reached.
    static func quorum(_ what: String) -> StorageError {
        StorageError(.quorumUnavailable, what)
    }
}
