public import ServiceContract
import Database
import SQLite

/// A password-reset token as stored: only its hash.
public struct ResetTokenRecord: Sendable, Equatable {
    /// Hex SHA-256 of the token.
    public var tokenHash: String
    public var userID: String
    public var createdAt: Int64
    public var expiresAt: Int64
    public var usedAt: Int64?
}

/// Password-reset tokens and the rate limits of the anonymous routes.
extension ControlStore {
    public func insertResetToken(_ token: ResetTokenRecord) async throws {
        try await self.query(
            "INSERT INTO password_reset_tokens (token_hash, user_id, created_at, expires_at, used_at) VALUES ($1, $2, $3, $4, NULL)",
            [.text(token.tokenHash), .text(token.userID), .integer(token.createdAt), .integer(token.expiresAt)])
    }

    public func resetToken(hash: String) async throws -> ResetTokenRecord? {
        try await self.query(
            "SELECT token_hash, user_id, created_at, expires_at, used_at FROM password_reset_tokens WHERE token_hash = $1", [.text(hash)]
        ).first.map { row in
            ResetTokenRecord(tokenHash: row.text(0), userID: row.text(1), createdAt: row.int(2), expiresAt: row.int(3), usedAt: row.optionalInt(4))
        }
    }

    /// Uses the token: sets the user's password, marks every open token of the user used, forgets
    /// the email's failed logins (ending a lockout) and revokes all the user's API keys.
    /// - Returns: How many keys were revoked.
    /// - Throws: ``ControlStoreError/notFound(_:)`` when the token was used or expired meanwhile.
    public func completeReset(tokenHash: String, user: UserRecord, newPasswordHash: String, at now: Int64) async throws -> Int {
        try await self.transaction { db in
            let claimed = try await db.query(
                """
                UPDATE password_reset_tokens SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2
                RETURNING user_id
                """, [.text(tokenHash), .integer(now)])
            guard claimed.first?.text(0) == user.id else { throw ControlStoreError.notFound("the token is used or expired") }
            try await db.query(
                "UPDATE password_reset_tokens SET used_at = $2 WHERE user_id = $1 AND used_at IS NULL", [.text(user.id), .integer(now)])
            try await db.query("UPDATE users SET password_hash = $2 WHERE id = $1", [.text(user.id), .text(newPasswordHash)])
            try await db.query("DELETE FROM login_attempts WHERE email = $1 AND succeeded = 0", [.text(user.email)])
            // Old tokens are kept a day for the record, then dropped.
            try await db.query("DELETE FROM password_reset_tokens WHERE expires_at < $1", [.integer(now - 86_400)])
            return try await db.query(
                "UPDATE api_keys SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL RETURNING id", [.text(user.id), .integer(now)]
            ).count
        }
    }

    /// A sliding-window rate limit shared by every process on the database: when one of
    /// `subjects` already had `limit` events of `scope` in the last `window` seconds, refuses and
    /// returns the seconds until the oldest of them leaves the window; otherwise records one event
    /// for each subject and returns nil. Refused requests are not recorded.
    public func rateLimit(scope: String, subjects: [String], limit: Int, window: Int64, now: Int64) async throws -> Int64? {
        try await self.transaction { db in
            var retryAfter: Int64?
            for subject in subjects {
                try await db.query(
                    "DELETE FROM rate_limit_events WHERE scope = $1 AND subject = $2 AND occurred_at <= $3",
                    [.text(scope), .text(subject), .integer(now - window)])
                let times = try await db.query(
                    "SELECT occurred_at FROM rate_limit_events WHERE scope = $1 AND subject = $2 ORDER BY occurred_at",
                    [.text(scope), .text(subject)]
                ).map { $0.int(0) }
                if times.count >= limit {
                    let wait = max(1, times[times.count - limit] + window - now)
                    retryAfter = max(retryAfter ?? 0, wait)
                }
            }
            if let retryAfter { return retryAfter }
            for subject in subjects {
                try await db.query(
                    "INSERT INTO rate_limit_events (scope, subject, occurred_at) VALUES ($1, $2, $3)",
                    [.text(scope), .text(subject), .integer(now)])
            }
            return nil
        }
    }
}
