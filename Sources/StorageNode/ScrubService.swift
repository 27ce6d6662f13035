import Cluster
import Foundation
import Logging
import ServiceLifecycle
import StorageEngine

/// Runs scrub passes (``Scrubber``) every ``Scrub/Configuration/interval``, paced to
/// ``Scrub/Configuration/bytesPerSecond``.
///
/// The end of the last pass and the directory a pass in progress has reached are kept in the
/// engine's settings, so a restart neither restarts the clock nor the pass. A node that never ran a
/// pass starts the clock at its first start.
struct ScrubService: Service {
    static let lastPassSetting = "scrub.last-pass"
    static let cursorSetting = "scrub.cursor"

    let node: ClusterNode

    func run() async throws {
        guard let interval = self.node.settings.scrub.interval else {
            // Disabled: stay until the node stops (a service that returns would stop the node).
            try? await gracefulShutdown()
            return
        }
        let engine = self.node.engine
        let logger = self.node.logger
        var lastPass = (try? await engine.setting(Self.lastPassSetting)).flatMap { Double($0) }
        if lastPass == nil {
            lastPass = Date().timeIntervalSince1970
            try? await engine.setSetting(Self.lastPassSetting, String(lastPass!))
        }
        var cursor = (try? await engine.setting(Self.cursorSetting)).flatMap { Int($0) }
        let seconds = Double(interval.components.seconds) + Double(interval.components.attoseconds) / 1e18
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            if cursor == nil {
                let wait = lastPass! + seconds - Date().timeIntervalSince1970
                if wait > 0 {
                    do {
                        try await cancelWhenGracefulShutdown { try await Task.sleep(for: .milliseconds(Int64(wait * 1000) + 1)) }
                    } catch {
                        return
                    }
                    continue
                }
                cursor = 0
            }
            let start = cursor ?? 0
            logger.notice("scrub pass starting", metadata: ["from-directory": "\(start)"])
            let started = ContinuousClock.now
            let before = self.node.scrubber.current
            var pacer = Pacer<ContinuousClock.Instant>(bytesPerSecond: self.node.settings.scrub.bytesPerSecond)
            do {
                try await self.node.scrubber.runPass(
                    from: start,
                    pace: { bytes in
                        if Task.isShuttingDownGracefully { throw CancellationError() }
                        let delay = pacer.consumed(bytes, now: .now)
                        if delay > .zero { try await cancelWhenGracefulShutdown { try await Task.sleep(for: delay) } }
                    },
                    outcome: { outcome in Self.log(outcome, logger) },
                    directoryDone: { next in
                        try? await engine.setSetting(Self.cursorSetting, String(next))
                    })
            } catch is CancellationError {
                return
            } catch {
                logger.warning("scrub pass stopped; it resumes where it stopped in a minute", metadata: ["error": "\(error)"])
                try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(60)) }
                cursor = (try? await engine.setting(Self.cursorSetting)).flatMap { Int($0) } ?? start
                continue
            }
            let after = self.node.scrubber.current
            lastPass = Date().timeIntervalSince1970
            cursor = nil
            try? await engine.setSetting(Self.lastPassSetting, String(lastPass!))
            try? await engine.setSetting(Self.cursorSetting, "")
            logger.notice(
                "scrub pass finished",
                metadata: [
                    "blocks": "\(after.blocksChecked - before.blocksChecked)", "bytes": "\(after.bytesChecked - before.bytesChecked)",
                    "corruptions": "\(after.corruptions - before.corruptions)", "repaired": "\(after.repaired - before.repaired)",
                    "seconds": "\((ContinuousClock.now - started).components.seconds)",
                ])
        }
    }

    static func log(_ outcome: Scrub.Outcome, _ logger: Logger) {
        switch outcome {
        case .intact, .missing:
            break
        case .repaired(let damage, let quarantined):
            logger.warning(
                "scrub replaced a damaged block with an intact copy from another node",
                metadata: ["block": "\(damage.hex)", "damage": "\(damage.reason)", "quarantined": "\(quarantined)"])
        case .unrepairable(let damage, let quarantined, let error):
            logger.error(
                "scrub found a damaged block that no other node has an intact copy of",
                metadata: [
                    "block": "\(damage.hex)", "damage": "\(damage.reason)", "quarantined": "\(quarantined ?? "no")",
                    "error": "\(error ?? "")",
                ])
        case .busy(let damage):
            logger.notice("scrub found a damaged block in use by an upload; it tries again later", metadata: ["block": "\(damage.hex)"])
        case .changed(let damage):
            logger.debug("a damaged block was replaced before scrub repaired it", metadata: ["block": "\(damage.hex)"])
        case .failed(let damage, let error):
            logger.error(
                "scrub could not put an intact copy in place of a damaged block",
                metadata: ["block": "\(damage.hex)", "damage": "\(damage.reason)", "error": "\(error)"])
        }
    }
}
