import Cluster
import Logging
import ServiceLifecycle

/// Runs the cluster-wide garbage collector (``GarbageCollector``) every `--gc-interval` seconds; the
/// first pass one interval after start. Does nothing when the interval is zero.
struct GCService: Service {
    let node: ClusterNode

    func run() async throws {
        let interval = self.node.settings.gcInterval
        guard interval > .zero else { return }
        let logger = self.node.logger
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
            } catch {
                return
            }
            do {
                let report = try await self.node.collector.run()
                if let reason = report.sweepSkipped {
                    logger.warning("garbage collection skipped the block sweep", metadata: ["reason": "\(reason)"])
                }
                if report.blocksCollected + report.tombstonesCollected + report.uploadsAborted + report.hintsDropped > 0 {
                    logger.notice(
                        "garbage collected",
                        metadata: [
                            "blocks": "\(report.blocksCollected)", "bytes": "\(report.bytesCollected)",
                            "tombstones": "\(report.tombstonesCollected)", "uploads-aborted": "\(report.uploadsAborted)",
                            "hints-dropped": "\(report.hintsDropped)",
                        ])
                }
            } catch {
                logger.warning("garbage collection failed", metadata: ["error": "\(error)"])
            }
        }
    }
}
