public import Prometheus
public import ServiceContract
import HTTPServing

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

    /// The process's registry: these metrics and the services' (``ServiceMetrics``).
    public let registry: PrometheusCollectorRegistry
    private let events: [Event: Counter]

    /// - Parameter registry: The process's (`cloud dev` and `cloud server` share one with the
    ///   services they host); a fresh one by default.
    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        // Made at once, so that every event shows from the start, at 0.
        self.events = Dictionary(uniqueKeysWithValues: Event.allCases.map { event in
            (event, registry.makeCounter(name: "cloud_api_\(event.rawValue)_total", help: event.help))
        })
    }

    /// Records one answered request: `cloud_api_requests_total{operation,status}` and the
    /// `cloud_api_request_duration_seconds{operation}` histogram.
    public func record(operation: String, status: Int, seconds: Double) {
        self.registry.makeCounter(
            name: "cloud_api_requests_total", labels: [("operation", operation), ("status", String(status))],
            help: "control-plane API requests answered, by operation and HTTP status."
        ).increment()
        self.registry.makeValueHistogram(
            name: "cloud_api_request_duration_seconds", labels: [("operation", operation)], buckets: RequestMetrics.latencyBounds,
            help: "Time to answer control-plane API requests, by operation."
        ).record(seconds)
    }

    /// Counts one event.
    public func count(_ event: Event) {
        self.events[event]?.increment()
    }

    /// The value of an event's counter, read from the exposition (for tests).
    public func value(_ event: Event) -> UInt64 {
        let prefix = "cloud_api_\(event.rawValue)_total "
        return self.render().split(separator: "\n").first { $0.hasPrefix(prefix) }.flatMap { UInt64($0.dropFirst(prefix.count)) } ?? 0
    }

    /// The exposition text: everything in the registry.
    public func render() -> String { self.registry.emitToString() }
}
