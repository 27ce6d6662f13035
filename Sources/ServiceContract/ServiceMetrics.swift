import Foundation
public import Prometheus

/// A service's metrics in the process's registry (the one `/metrics` shows), every name under
/// `cloud_<service>_`: a service cannot take another's names or the host's (`cloud_api_`).
/// Aggregates only, like every metric of the platform: no label may carry a tenant, user, key,
/// address or resource name.
///
/// Counters and histograms of one process; several control-plane processes on one database each
/// count what they did, so sums over the processes are the platform's totals.
public struct ServiceMetrics: Sendable {
    /// The process's registry.
    public let registry: PrometheusCollectorRegistry
    /// `cloud_<service>_`.
    public let prefix: String

    /// - Parameter registry: The process's; a fresh one (shown nowhere) by default, for tests.
    public init(service: String, registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        self.prefix = "cloud_" + service.replacingOccurrences(of: "-", with: "_") + "_"
    }

    /// The counter `cloud_<service>_<name>` with these labels (made on first use).
    public func counter(_ name: String, labels: [(String, String)] = [], help: String) -> Counter {
        self.registry.makeCounter(name: self.prefix + name, labels: labels, help: help)
    }

    /// The histogram `cloud_<service>_<name>` of values (seconds, bytes) with these bucket bounds.
    public func histogram(_ name: String, buckets: [Double], labels: [(String, String)] = [], help: String) -> ValueHistogram {
        self.registry.makeValueHistogram(name: self.prefix + name, labels: labels, buckets: buckets, help: help)
    }
}
