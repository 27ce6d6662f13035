import Synchronization

/// The node's Prometheus metrics: requests by operation and status, latency histograms, bytes in and
/// out. Rendered in the text exposition format at `/metrics`.
public final class NodeMetrics: Sendable {
    /// Latency histogram bucket bounds, in seconds.
    static let latencyBounds: [Double] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

    private struct Histogram {
        var counts = [UInt64](repeating: 0, count: NodeMetrics.latencyBounds.count)
        var sum: Double = 0
        var count: UInt64 = 0
    }

    private struct State {
        var requests: [String: UInt64] = [:]  // "operation\u{0}status"
        var latency: [String: Histogram] = [:]  // by operation
        var bytesIn: UInt64 = 0
        var bytesOut: UInt64 = 0
    }

    private let state = Mutex(State())

    public init() {}

    /// Records one finished request.
    public func record(operation: String, status: Int, seconds: Double, bytesIn: Int64, bytesOut: Int64) {
        self.state.withLock { state in
            state.requests[operation + "\u{0}" + String(status), default: 0] += 1
            var histogram = state.latency[operation] ?? Histogram()
            for (index, bound) in Self.latencyBounds.enumerated() where seconds <= bound {
                histogram.counts[index] += 1
            }
            histogram.sum += seconds
            histogram.count += 1
            state.latency[operation] = histogram
            state.bytesIn += UInt64(max(0, bytesIn))
            state.bytesOut += UInt64(max(0, bytesOut))
        }
    }

    /// The exposition text, with the stored totals supplied by the caller.
    public func render(storedObjects: Int64, storedBytes: Int64) -> String {
        let snapshot = self.state.withLock { $0 }
        var text = ""
        text += "# HELP cloud_s3_requests_total S3 requests served, by operation and HTTP status.\n"
        text += "# TYPE cloud_s3_requests_total counter\n"
        for (label, count) in snapshot.requests.sorted(by: { $0.key < $1.key }) {
            let parts = label.split(separator: "\u{0}", omittingEmptySubsequences: false)
            text += "cloud_s3_requests_total{operation=\"\(parts[0])\",status=\"\(parts[1])\"} \(count)\n"
        }
        text += "# HELP cloud_s3_request_duration_seconds Time to serve an S3 request, by operation.\n"
        text += "# TYPE cloud_s3_request_duration_seconds histogram\n"
        for (operation, histogram) in snapshot.latency.sorted(by: { $0.key < $1.key }) {
            for (index, bound) in Self.latencyBounds.enumerated() {
                text += "cloud_s3_request_duration_seconds_bucket{operation=\"\(operation)\",le=\"\(bound)\"} \(histogram.counts[index])\n"
            }
            text += "cloud_s3_request_duration_seconds_bucket{operation=\"\(operation)\",le=\"+Inf\"} \(histogram.count)\n"
            text += "cloud_s3_request_duration_seconds_sum{operation=\"\(operation)\"} \(histogram.sum)\n"
            text += "cloud_s3_request_duration_seconds_count{operation=\"\(operation)\"} \(histogram.count)\n"
        }
        text += "# HELP cloud_s3_received_bytes_total Request body bytes received.\n"
        text += "# TYPE cloud_s3_received_bytes_total counter\n"
        text += "cloud_s3_received_bytes_total \(snapshot.bytesIn)\n"
        text += "# HELP cloud_s3_sent_bytes_total Response body bytes sent.\n"
        text += "# TYPE cloud_s3_sent_bytes_total counter\n"
        text += "cloud_s3_sent_bytes_total \(snapshot.bytesOut)\n"
        text += "# HELP cloud_storage_objects Objects stored on this node.\n"
        text += "# TYPE cloud_storage_objects gauge\n"
        text += "cloud_storage_objects \(storedObjects)\n"
        text += "# HELP cloud_storage_bytes Logical bytes of the objects stored on this node.\n"
        text += "# TYPE cloud_storage_bytes gauge\n"
        text += "cloud_storage_bytes \(storedBytes)\n"
        return text
    }
}
