public import ServiceContract
import Foundation
import Logging
import NIOPosix

/// Password reset: `POST /auth/forgot-password` mails a one-time token, `POST /auth/reset-password`
/// uses it. Only the token's SHA-256 is stored.
extension ControlAPI {
    /// Reset tokens look like `crt_<43 characters>`: 32 random bytes in base64url.
    static let resetTokenPrefix = "crt_"

    func forgotPassword(_ context: RouteContext) async throws -> APIResponse {
        let email = try Self.normalizeEmail(context.body.string("email") ?? "")
        let now = self.now()
        let client = context.request.clientAddress
        if let wait = try await self.store.rateLimit(
            scope: "forgot-password", subjects: ["email:" + email, "client:" + client],
            limit: self.configuration.forgotPasswordLimit, window: self.configuration.forgotPasswordWindow, now: now)
        {
            self.metrics.count(.rateLimited)
            throw APIError.tooManyRequests(
                "too many password-reset requests for this email or from this address; try again in \(wait) seconds", retryAfter: wait)
        }
        // The answer is the same whether the email is known or not, and takes the same time: the
        // token is stored and mailed after the response, off the request's path.
        if let user = try await self.store.user(email: email) {
            let token = Self.resetTokenPrefix + APIKey.base64url(SecureRandom.bytes(32))
            let record = ResetTokenRecord(
                tokenHash: APIKey.hash(token), userID: user.id, createdAt: now, expiresAt: now + self.configuration.resetTokenLifetime)
            let message = self.resetMessage(to: user, token: token)
            let requestID = context.request.requestID
            Task { await self.deliverReset(record, message: message, requestID: requestID) }
        }
        return .json(
            202,
            .object([
                ("status", .string("accepted")),
                ("message", .string("if this email is registered, a reset token is on its way; it is valid for \(self.configuration.resetTokenLifetime / 60) minutes")),
            ]))
    }

    private func deliverReset(_ record: ResetTokenRecord, message: MailMessage, requestID: String) async {
        let metadata: Logger.Metadata = ["request-id": "\(requestID)", "user-id": "\(record.userID)"]
        do {
            try await self.store.insertResetToken(record)
        } catch {
            self.metrics.count(.databaseErrors)
            self.logger.error("cannot store a reset token", metadata: metadata.merging(["error": "\(error)"]) { $1 })
            return
        }
        self.metrics.count(.resetsRequested)
        let mailer = Mailer(delivery: self.configuration.mail)
        if mailer.delivery == .none {
            self.logger.warning(
                "password-reset mail dropped: no mail delivery is configured (--smtp-host or --outbox)", metadata: metadata)
            return
        }
        do {
            let place = try await self.threadPool.runIfActive { try mailer.send(message) }
            self.logger.info("password-reset mail sent", metadata: metadata.merging(["to": "\(place ?? "")"]) { $1 })
        } catch {
            self.metrics.count(.mailFailures)
            self.logger.error("password-reset mail failed", metadata: metadata.merging(["error": "\(error)"]) { $1 })
        }
    }

    func resetMessage(to user: UserRecord, token: String) -> MailMessage {
        let minutes = self.configuration.resetTokenLifetime / 60
        let body = """
            Hello \(user.name),

            someone (hopefully you) asked to reset the password of \(user.email) on The Cloud.
            This token works once, for \(minutes) minutes:

                \(token)

            Reset the password with

                cloud auth reset-password --token \(token)

            or POST /auth/reset-password with {"token": "...", "password": "..."}.
            A reset revokes all your API keys: log in again afterwards.

            If you did not ask for this, ignore this mail; your password stays as it is.
            """
        return MailMessage(from: self.configuration.mailFrom, to: user.email, subject: "Reset your password for The Cloud", body: body)
    }

    func resetPassword(_ context: RouteContext) async throws -> APIResponse {
        let token = context.body.string("token") ?? ""
        let password = context.body.string("password") ?? ""
        let now = self.now()
        if let wait = try await self.store.rateLimit(
            scope: "reset-password", subjects: ["client:" + context.request.clientAddress],
            limit: self.configuration.resetPasswordLimit, window: self.configuration.forgotPasswordWindow, now: now)
        {
            self.metrics.count(.rateLimited)
            throw APIError.tooManyRequests("too many password-reset attempts from this address; try again in \(wait) seconds", retryAfter: wait)
        }
        let invalid = APIError(
            status: 400, code: "invalid_token",
            message: "the reset token is unknown, used or expired; ask for a new one with POST /auth/forgot-password")
        let hash = APIKey.hash(token)
        guard token.hasPrefix(Self.resetTokenPrefix), let record = try await self.store.resetToken(hash: hash), record.usedAt == nil,
            record.expiresAt > now, let user = try await self.store.user(id: record.userID)
        else {
            self.metrics.count(.resetTokensRejected)
            throw invalid
        }
        if let problem = PasswordPolicy.problem(with: password, email: user.email, name: user.name) {
            throw APIError(status: 400, code: "weak_password", message: problem)
        }
        let parameters = self.configuration.passwordHashing
        let newHash = try await self.threadPool.runIfActive { PasswordHasher.hash(password, parameters: parameters) }
        let revoked: Int
        do {
            revoked = try await self.store.completeReset(tokenHash: hash, user: user, newPasswordHash: newHash, at: now)
        } catch let error as ControlStoreError where error.isNotFound {
            self.metrics.count(.resetTokensRejected)
            throw invalid
        }
        self.metrics.count(.resetsCompleted)
        self.logger.notice(
            "password reset",
            metadata: ["request-id": "\(context.request.requestID)", "user-id": "\(user.id)", "revoked-keys": "\(revoked)"])
        return .json(200, .object([("user", Self.json(user)), ("revoked_keys", .int(Int64(revoked)))]))
    }

    func metricsText(_ context: RouteContext) async throws -> APIResponse {
        APIResponse(status: 200, headers: [("Content-Type", "text/plain; version=0.0.4")], body: Array(self.metrics.render().utf8))
    }
}
