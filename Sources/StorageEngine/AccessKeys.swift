import Foundation
import SQLite

/// The S3 access keys of tenants on a node that runs alone (`cloud dev`), in the `access_keys`
/// table. A clustered node keeps them as replicated records instead (the cluster's `Tables`).
extension StorageEngine {
    /// Stores a new key.
    /// - Throws: ``StorageError`` when a key with this id exists already.
    public func createAccessKey(_ key: AccessKeyRecord) async throws {
        try await self.metadata.write { db in
            var exists = false
            try db.query("SELECT 1 FROM access_keys WHERE access_key = ?", [.text(key.accessKey)]) { _ in exists = true }
            if exists { throw StorageError(.database, "the access key id exists already") }
            try db.query(
                "INSERT INTO access_keys (access_key, secret_key, tenant, name, created_ms) VALUES (?, ?, ?, ?, ?)",
                [
                    .text(key.accessKey), .text(key.secretKey), .text(key.tenant), .text(key.name),
                    .integer(Int64(key.created.timeIntervalSince1970 * 1000)),
                ])
        }
    }

    /// The key with this id, or nil.
    public func accessKey(_ accessKey: String) async throws -> AccessKeyRecord? {
        try self.metadata.lookup { db in
            var found: AccessKeyRecord?
            try db.query(
                "SELECT access_key, secret_key, tenant, name, created_ms FROM access_keys WHERE access_key = ?", [.text(accessKey)]
            ) { row in
                found = AccessKeyRecord(
                    accessKey: row.text(0), secretKey: row.text(1), tenant: row.text(2), name: row.text(3),
                    created: Date(timeIntervalSince1970: Double(row.int(4)) / 1000))
            }
            return found
        }
    }

    /// The keys of `tenant`, oldest first.
    public func accessKeys(tenant: String) async throws -> [AccessKeyRecord] {
        try await self.metadata.read { db in
            var result: [AccessKeyRecord] = []
            try db.query(
                "SELECT access_key, secret_key, tenant, name, created_ms FROM access_keys WHERE tenant = ? ORDER BY created_ms, access_key",
                [.text(tenant)]
            ) { row in
                result.append(
                    AccessKeyRecord(
                        accessKey: row.text(0), secretKey: row.text(1), tenant: row.text(2), name: row.text(3),
                        created: Date(timeIntervalSince1970: Double(row.int(4)) / 1000)))
            }
            return result
        }
    }

    /// Deletes a key; it stops working at once.
    /// - Returns: Whether there was such a key.
    @discardableResult
    public func deleteAccessKey(_ accessKey: String) async throws -> Bool {
        try await self.metadata.write { db in
            var exists = false
            try db.query("SELECT 1 FROM access_keys WHERE access_key = ?", [.text(accessKey)]) { _ in exists = true }
            if exists { try db.query("DELETE FROM access_keys WHERE access_key = ?", [.text(accessKey)]) }
            return exists
        }
    }
}
