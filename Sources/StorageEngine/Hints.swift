import SQLite

/// A write this node holds for a replica that was unreachable when it was made (hinted handoff):
/// replayed to `owner` once it is reachable again, and dropped only after the owner stored it.
public struct Hint: Sendable, Equatable {
    /// What the payload holds.
    public enum Kind: UInt8, Sendable {
        /// Records, encoded as the cluster's apply call body.
        case records = 0
        /// A block kept in this node's block store: the payload is its 32-byte SHA-256 and its size
        /// as a big-endian UInt32.
        case block = 1
    }

    public var id: Int64
    public var owner: String
    public var kind: Kind
    public var payload: [UInt8]
    /// When the hint was stored, milliseconds since the epoch.
    public var createdMilliseconds: Int64
}

extension StorageEngine {
    /// Stores a hint durably.
    public func addHint(owner: String, kind: Hint.Kind, payload: [UInt8]) async throws {
        let now = Int64(self.nowMilliseconds())
        try await self.metadata.write { db in
            try db.query(
                "INSERT INTO hints (owner, kind, payload, created_ms) VALUES (?, ?, ?, ?)",
                [.text(owner), .integer(Int64(kind.rawValue)), .blob(payload), .integer(now)]
            )
        }
    }

    /// The oldest hints, at most `limit`.
    public func hints(limit: Int) async throws -> [Hint] {
        try await self.metadata.read { db in
            var result: [Hint] = []
            try db.query(
                "SELECT id, owner, kind, payload, created_ms FROM hints ORDER BY id LIMIT ?", [.integer(Int64(limit))]
            ) { row in
                guard let kind = Hint.Kind(rawValue: UInt8(truncatingIfNeeded: row.int(2))) else { return }
                result.append(
                    Hint(id: row.int(0), owner: row.text(1), kind: kind, payload: row.blob(3), createdMilliseconds: row.int(4)))
            }
            return result
        }
    }

    /// The number of hints held.
    public func hintCount() async throws -> Int {
        try await self.metadata.read { db in
            var count = 0
            try db.query("SELECT count(*) FROM hints") { row in count = Int(row.int(0)) }
            return count
        }
    }

    /// Drops a hint whose owner confirmed the write.
    public func deleteHint(_ id: Int64) async throws {
        try await self.metadata.write { db in
            try db.query("DELETE FROM hints WHERE id = ?", [.integer(id)])
        }
    }
}
