/// Requests counted by operation and status, with a latency histogram per operation, rendered in
/// Prometheus's text format: what the S3 listener and the control plane's API both export. A value
/// type: its owner keeps it behind its own lock with its other counters.
public struct RequestMetrics: Sendable {
    /// Histogram bucket bounds, in seconds.
    public static let latencyBounds: [Double] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

    private struct Histogram: Sendable {
        var counts = [UInt64](repeating: 0, count: RequestMetrics.latencyBounds.count)
        var sum: Double = 0
        var count: UInt64 = 0
    }

    private var requests: [String: UInt64] = [:]  // "operation\u{0}status"
    private var latency: [String: Histogram] = [:]  // by operation

    public init() {}

    /// Records one answered request.
    public mutating func record(operation: String, status: Int, seconds: Double) {
        self.requests[operation + "\u{0}" + String(status), default: 0] += 1
        var histogram = self.latency[operation] ?? Histogram()
        for (index, bound) in Self.latencyBounds.enumerated() where seconds <= bound {
            histogram.counts[index] += 1
        }
        histogram.sum += seconds
        histogram.count += 1
        self.latency[operation] = histogram
    }

    /// `<prefix>_requests_total{operation,status}` and the `<prefix>_request_duration_seconds`
    /// histogram; `what` names the requests in the help text ("S3 requests").
    public func render(prefix: String, what: String) -> String {
        var text = ""
        text += "# HELP \(prefix)_requests_total \(what) answered, by operation and HTTP status.\n"
        text += "# TYPE \(prefix)_requests_total counter\n"
        for (label, count) in self.requests.sorted(by: { $0.key < $1.key }) {
            let parts = label.split(separator: "\u{0}", omittingEmptySubsequences: false)
            text += "\(prefix)_requests_total{operation=\"\(parts[0])\",status=\"\(parts[1])\"} \(count)\n"
        }
        let name = "\(prefix)_request_duration_seconds"
        text += "# HELP \(name) Time to answer \(what), by operation.\n"
        text += "# TYPE \(name) histogram\n"
        for (operation, histogram) in self.latency.sorted(by: { $0.key < $1.key }) {
            for (index, bound) in Self.latencyBounds.enumerated() {
                text += "\(name)_bucket{operation=\"\(operation)\",le=\"\(bound)\"} \(histogram.counts[index])\n"
            }
            text += "\(name)_bucket{operation=\"\(operation)\",le=\"+Inf\"} \(histogram.count)\n"
            text += "\(name)_sum{operation=\"\(operation)\"} \(histogram.sum)\n"
            text += "\(name)_count{operation=\"\(operation)\"} \(histogram.count)\n"
        }
        return text
    }
}
