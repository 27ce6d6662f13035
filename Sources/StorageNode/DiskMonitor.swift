#if canImport(Glibc)
import Glibc
#endif
import Cluster
import Foundation
import Gossip
import Logging
import Membership
import NIOPosix
import ServiceLifecycle
import Synchronization

/// Looks at the filesystem of a node's data directory: free space (`statvfs`), and whether it takes
/// writes (the `ST_RDONLY` mount flag, and a probe file written and removed in `<data-dir>/tmp`).
/// Holds what the node last announced of its disk state to the cluster.
final class DiskMonitor: Sendable {
    /// One look at the filesystem.
    struct Reading: Sendable, Equatable {
        /// Bytes available to this process; 0 when the probe write found no space.
        var freeBytes: UInt64
        /// Mounted read-only, or the probe write failed with EROFS (or EIO).
        var readOnly: Bool
    }

    let directory: String
    let minFreeBytes: UInt64
    private let last = Mutex<Reading?>(nil)
    let announcer: Mutex<DiskStateAnnouncer>

    init(directory: String, minFreeBytes: UInt64, node: String) {
        self.directory = directory
        self.minFreeBytes = minFreeBytes
        self.announcer = Mutex(DiskStateAnnouncer(node: node))
    }

    /// Looks at the filesystem now (blocking: a `statvfs` and a one-byte file) and classifies it.
    func check() -> (state: DiskState, reading: Reading) {
        let reading = self.read()
        self.last.withLock { $0 = reading }
        return (DiskState.classify(freeBytes: reading.freeBytes, readOnly: reading.readOnly, minFreeBytes: self.minFreeBytes), reading)
    }

    /// The last reading, for `/metrics`.
    var lastReading: Reading? { self.last.withLock { $0 } }

    private func read() -> Reading {
        var info = statvfs()
        var reading = Reading(freeBytes: 0, readOnly: false)
        if statvfs(self.directory, &info) == 0 {
            reading.freeBytes = UInt64(info.f_bavail) &* UInt64(info.f_frsize)
            reading.readOnly = info.f_flag & UInt(ST_RDONLY) != 0
        }
        if !reading.readOnly {
            switch Self.probe(self.directory + "/tmp/.disk-probe") {
            case 0: break
            case ENOSPC, EDQUOT: reading.freeBytes = 0
            case EROFS, EIO: reading.readOnly = true
            default: break
            }
        }
        return reading
    }

    /// Writes and removes a one-byte file. - Returns: 0, or the errno of the failed step.
    static func probe(_ path: String) -> Int32 {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return errno }
        defer {
            close(fd)
            unlink(path)
        }
        var byte: UInt8 = 0
        guard Glibc.write(fd, &byte, 1) == 1 else { return errno }
        return 0
    }

    /// `cloud_disk_state` and `cloud_disk_free_bytes`.
    func prometheusMetrics(state: DiskState) -> String {
        var text = "# HELP cloud_disk_state The data directory's state: 0 ok, 1 full (below --min-free-mib), 2 read-only.\n"
        text += "# TYPE cloud_disk_state gauge\ncloud_disk_state \(state.rawValue)\n"
        text += "# HELP cloud_disk_free_bytes Free bytes on the data directory's filesystem (available to the node).\n"
        text += "# TYPE cloud_disk_free_bytes gauge\ncloud_disk_free_bytes \(self.lastReading?.freeBytes ?? 0)\n"
        return text
    }
}

extension ClusterNode {
    /// Looks at the local disk, records its state in the view (the request handler refuses writes from
    /// then on when it is not ok), logs a change, and announces it to the cluster when it changed.
    /// - Parameter first: the first check of the service (logs a state that is not ok even when the
    ///   node's initial check already found it).
    func checkDisk(first: Bool = false) async {
        let disk = self.disk
        // A statvfs and a one-byte file: blocking I/O, kept off the cooperative threads.
        guard let (state, reading) = try? await NIOThreadPool.singleton.runIfActive({ disk.check() }) else { return }
        let previous = self.view.diskState(of: self.nodeID)
        self.view.setDiskState(self.nodeID, state)
        if previous != state || (first && !state.takesWrites) {
            let metadata: Logger.Metadata = [
                "state": "\(state)", "free-bytes": "\(reading.freeBytes)", "min-free-bytes": "\(self.disk.minFreeBytes)",
                "data-dir": "\(self.disk.directory)",
            ]
            if state.takesWrites {
                self.logger.notice("the data directory takes writes again", metadata: metadata)
            } else {
                self.logger.error(
                    "the data directory takes no writes (\(state == .full ? "disk full" : "read-only filesystem")); this node refuses writes, reads go on",
                    metadata: metadata)
            }
        }
        let now = UInt64(Date().timeIntervalSince1970 * 1_000_000)
        if let entry = self.disk.announcer.withLock({ $0.localState(state, nowMicroseconds: now) }) {
            await self.membership.publishState(key: entry.key, version: entry.version, bytes: entry.bytes)
        }
    }

    /// A disk-state entry heard through gossip: another member's goes into the view; this node's own
    /// is answered with a newer one when it says something else (see ``DiskStateAnnouncer``).
    func heardDiskState(of node: String, _ entry: Gossip.StateEntry) async {
        if node == self.nodeID {
            if let answer = self.disk.announcer.withLock({ $0.heard(version: entry.version, bytes: entry.bytes) }) {
                await self.membership.publishState(key: answer.key, version: answer.version, bytes: answer.bytes)
            }
            return
        }
        guard let state = DiskStateAnnouncer.decode(entry.bytes) else { return }
        let previous = self.view.diskState(of: node)
        self.view.setDiskState(node, state)
        if previous != state {
            self.logger.notice("member disk \(state)", metadata: ["member": "\(node)"])
        }
    }
}

/// Checks the data directory's disk every few seconds (``ClusterSettings/diskCheckInterval``).
struct DiskService: Service {
    let node: ClusterNode

    func run() async throws {
        // Announce once gossip runs, then on every change.
        _ = try? await self.node.membership.waitUntilBound()
        var first = true
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            await self.node.checkDisk(first: first)
            first = false
            do {
                try await cancelWhenGracefulShutdown { [interval = self.node.settings.diskCheckInterval] in
                    try await Task.sleep(for: interval)
                }
            } catch {
                return
            }
        }
    }
}
