/// Whether a node's data directory can take writes. Raw values are what `cloud_disk_state` shows and
/// what travels in gossip; they never change.
public enum DiskState: UInt8, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// Writable, with at least the minimum free space.
    case ok = 0
    /// Less free space than the node's `--min-free-mib`: it takes no writes until space is freed.
    case full = 1
    /// The filesystem is mounted read-only (or refuses writes with EROFS).
    case readOnly = 2

    /// Whether the node takes replica writes, hints and block copies.
    public var takesWrites: Bool { self == .ok }

    public var description: String {
        switch self {
        case .ok: "ok"
        case .full: "full"
        case .readOnly: "readonly"
        }
    }

    /// Classifies one look at the data directory's filesystem.
    /// - Parameters:
    ///   - freeBytes: bytes available to this process (`statvfs` `f_bavail × f_frsize`).
    ///   - readOnly: the filesystem is mounted read-only (`ST_RDONLY`) or a probe write failed with EROFS.
    ///   - minFreeBytes: below this much free space the disk counts as full.
    /// - Returns: `.readOnly` first (nothing can be written however much space is free), then `.full`.
    public static func classify(freeBytes: UInt64, readOnly: Bool, minFreeBytes: UInt64) -> DiskState {
        if readOnly { return .readOnly }
        if freeBytes < minFreeBytes { return .full }
        return .ok
    }
}

/// The error a node answers a write call with while its disk is full or read-only. Coordinators
/// normally skip such a node (its gossiped state says so); this is the answer for those that do not
/// know yet.
public struct WriteRefused: Error, Sendable, Equatable, CustomStringConvertible {
    /// This node's disk state.
    public var state: DiskState
    /// This node's id.
    public var node: String

    public init(state: DiskState, node: String) {
        self.state = state
        self.node = node
    }

    /// `DiskFull` or `DiskReadOnly`, for the RPC error code.
    public var code: String { self.state == .readOnly ? "DiskReadOnly" : "DiskFull" }

    public var description: String {
        switch self.state {
        case .readOnly: "node \(self.node) takes no writes: its data directory is on a read-only filesystem (reads still work)"
        default: "node \(self.node) takes no writes: its disk is full (less free space than --min-free-mib; reads still work)"
        }
    }
}

/// How nodes tell each other their disk state: each node publishes a replicated cluster-state entry
/// `disk/<node id>` holding one byte (the ``DiskState`` raw value). The entry's version is the
/// publishing time in microseconds (at least one more than the previous), so a restarted node's
/// entry supersedes the one it published before; when the cluster holds a newer entry for this node
/// that says something else (a clock that went back), the node answers with a newer one.
///
/// A pure state machine: the shell calls ``localState(_:nowMicroseconds:)`` after each disk check and
/// ``heard(version:bytes:)`` for every entry of its own key, and publishes what they return.
public struct DiskStateAnnouncer: Sendable {
    /// An entry to publish.
    public struct Entry: Sendable, Equatable {
        public var key: String
        public var version: UInt64
        public var bytes: [UInt8]

        public init(key: String, version: UInt64, bytes: [UInt8]) {
            self.key = key
            self.version = version
            self.bytes = bytes
        }
    }

    /// The key prefix of disk-state entries.
    public static let keyPrefix = "disk/"

    /// The key of `node`'s entry.
    public static func key(for node: String) -> String { keyPrefix + node }

    /// The node an entry key belongs to, or nil for other keys.
    public static func node(fromKey key: String) -> String? {
        key.hasPrefix(keyPrefix) ? String(key.dropFirst(keyPrefix.count)) : nil
    }

    /// The state an entry holds; nil when malformed (ignored).
    public static func decode(_ bytes: [UInt8]) -> DiskState? {
        guard bytes.count == 1 else { return nil }
        return DiskState(rawValue: bytes[0])
    }

    public let node: String
    /// The last state announced, nil before the first.
    public private(set) var announced: DiskState?
    /// The version of the last entry announced.
    public private(set) var version: UInt64 = 0

    public init(node: String) {
        self.node = node
    }

    /// The local disk was found in `state`. Returns the entry to publish: always the first time (a
    /// restarted node replaces what it said before it stopped), then on every change.
    public mutating func localState(_ state: DiskState, nowMicroseconds: UInt64) -> Entry? {
        guard state != self.announced else { return nil }
        return self.announce(state, after: nowMicroseconds &- 1)
    }

    /// The cluster state holds `version` of this node's entry. Returns an entry to publish when that
    /// one is not ours and says something else than our current state.
    public mutating func heard(version: UInt64, bytes: [UInt8]) -> Entry? {
        guard let announced = self.announced else {
            // Heard before our first announcement (an entry from before a restart): ours goes above it.
            self.version = max(self.version, version)
            return nil
        }
        guard version >= self.version else { return nil }
        if Self.decode(bytes) == announced {
            // Ours, or one that says the same under a newer version (published before a restart with
            // a clock ahead): take its version so that ours keep increasing.
            self.version = version
            return nil
        }
        return self.announce(announced, after: version)
    }

    private mutating func announce(_ state: DiskState, after floor: UInt64) -> Entry {
        self.version = max(self.version, floor) + 1
        self.announced = state
        return Entry(key: Self.key(for: self.node), version: self.version, bytes: [state.rawValue])
    }
}
