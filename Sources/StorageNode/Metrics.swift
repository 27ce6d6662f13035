import HTTPServing
import Synchronization

/// The node's Prometheus metrics: requests by operation and status, latency histograms, bytes in and
/// out. Rendered in the text exposition format at `/metrics`.
public final class NodeMetrics: Sendable {
    private struct State {
        var requests = RequestMetrics()
        var bytesIn: UInt64 = 0
        var bytesOut: UInt64 = 0
    }

    private let state = Mutex(State())

    public init() {}

    /// Records one finished request.
    public func record(operation: String, status: Int, seconds: Double, bytesIn: Int64, bytesOut: Int64) {
        self.state.withLock { state in
            state.requests.record(operation: operation, status: status, seconds: seconds)
            state.bytesIn += UInt64(max(0, bytesIn))
            state.bytesOut += UInt64(max(0, bytesOut))
        }
    }

    /// The exposition text, with the stored totals supplied by the caller.
    public func render(storedObjects: Int64, storedBytes: Int64) -> String {
        let snapshot = self.state.withLock { $0 }
        var text = snapshot.requests.render(prefix: "cloud_s3", what: "S3 requests")
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
