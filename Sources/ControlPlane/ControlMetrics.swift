public import ServiceContract
import HTTPServing
import Synchronization

/// The control plane's Prometheus metrics, in the text exposition format at `GET /metrics`:
/// requests by operation and status, a latency histogram by operation, and counters of the
/// security-relevant events. Aggregates only: no label carries a user, tenant, key or address.
public final class ControlMetrics: Sendable {
    /// Events counted by ``count(_:)``.
    public enum Event: String, Sendable, CaseIterable {
        case databaseErrors = "database_errors"
        case loginFailures = "login_failures"
        case lockouts
        case lockedLogins = "locked_logins"
        case keysCreated = "keys_created"
        case resetsRequested = "password_resets_requested"
        case resetsCompleted = "password_resets_completed"
        case resetTokensRejected = "password_reset_tokens_rejected"
        case rateLimited = "rate_limited"
        case mailFailures = "mail_failures"
        case quotaRefusals = "quota_refusals"

        var help: String {
            switch self {
            case .databaseErrors: "Requests that failed because the database did (answered 503)."
            case .loginFailures: "Logins refused for a wrong email or password."
            case .lockouts: "Lockouts started: an email reached the failed-login limit."
            case .lockedLogins: "Logins refused because the email was locked (429)."
            case .keysCreated: "API keys made (login, create, rotate, regenerate, tenant switch)."
            case .resetsRequested: "Password-reset mails sent for known emails."
            case .resetsCompleted: "Passwords reset with a valid token."
            case .resetTokensRejected: "Reset attempts with an unknown, used or expired token."
            case .rateLimited: "Requests refused by a rate limit (forgot-password, reset-password)."
            case .mailFailures: "Mails that could not be delivered."
            case .quotaRefusals: "Creations refused because a tenant quota was reached."
            }
        }
    }

    private struct State {
        var requests = RequestMetrics()
        var events: [Event: UInt64] = [:]
    }

    private let state = Mutex(State())

    public init() {}

    /// Records one answered request.
    public func record(operation: String, status: Int, seconds: Double) {
        self.state.withLock { state in
            state.requests.record(operation: operation, status: status, seconds: seconds)
        }
    }

    /// Counts one event.
    public func count(_ event: Event) {
        self.state.withLock { $0.events[event, default: 0] += 1 }
    }

    /// The value of an event's counter (for tests).
    public func value(_ event: Event) -> UInt64 { self.state.withLock { $0.events[event] ?? 0 } }

    /// The exposition text.
    public func render() -> String {
        let snapshot = self.state.withLock { $0 }
        var text = snapshot.requests.render(prefix: "cloud_api", what: "control-plane API requests")
        for event in Event.allCases {
            text += "# HELP cloud_api_\(event.rawValue)_total \(event.help)\n"
            text += "# TYPE cloud_api_\(event.rawValue)_total counter\n"
            text += "cloud_api_\(event.rawValue)_total \(snapshot.events[event] ?? 0)\n"
        }
        return text
    }
}
