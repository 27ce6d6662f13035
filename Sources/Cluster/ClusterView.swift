public import Ring
import Synchronization

/// What this node currently believes about the cluster: the layout (and the partition table computed
/// from it) and which members are reachable at which RPC address. Updated by the membership shell,
/// read on every request.
public final class ClusterView: Sendable {
    /// How a member looks from here.
    public struct Peer: Sendable, Hashable {
        public var rpcAddress: String
        /// Alive or suspect: worth sending to. Dead and left members are not.
        public var reachable: Bool

        public init(rpcAddress: String, reachable: Bool) {
            self.rpcAddress = rpcAddress
            self.reachable = reachable
        }
    }

    private struct State: Sendable {
        var table: Ring.Table?
        var peers: [String: Peer] = [:]
        /// Disk states heard (and this node's own); a member missing here counts as ok.
        var disks: [String: DiskState] = [:]
    }

    /// This node's id.
    public let localID: String
    private let state = Mutex(State())

    public init(localID: String) {
        self.localID = localID
    }

    /// The partition table of the current layout, or nil before any layout is known.
    public var table: Ring.Table? { self.state.withLock { $0.table } }

    /// The current layout, if any.
    public var layout: Ring.Layout? { self.table?.layout }

    /// Installs `layout` if it is newer than the current one (or there is none). Returns whether it did.
    @discardableResult
    public func install(_ layout: Ring.Layout) -> Bool {
        let table = Ring.Table(layout)
        return self.state.withLock { state in
            if let current = state.table, current.version >= layout.version { return false }
            state.table = table
            return true
        }
    }

    /// Records a member's address and reachability.
    public func update(_ id: String, _ peer: Peer) {
        self.state.withLock { $0.peers[id] = peer }
    }

    /// The RPC address of `id`, if known.
    public func address(of id: String) -> String? { self.state.withLock { $0.peers[id]?.rpcAddress } }

    /// Whether a request to `id` is worth sending (this node always is).
    public func isReachable(_ id: String) -> Bool {
        id == self.localID || self.state.withLock { $0.peers[id]?.reachable ?? false }
    }

    /// Every known member but this one that is reachable.
    public var reachablePeers: [String] {
        self.state.withLock { state in state.peers.filter { $0.value.reachable && $0.key != self.localID }.map(\.key).sorted() }
    }

    // MARK: Disk states

    /// Records a member's disk state (from its gossiped entry, or this node's own monitor).
    public func setDiskState(_ id: String, _ disk: DiskState) {
        self.state.withLock { $0.disks[id] = disk }
    }

    /// A member's last known disk state (ok when nothing was heard).
    public func diskState(of id: String) -> DiskState {
        self.state.withLock { $0.disks[id] ?? .ok }
    }

    /// Whether a write to `id` is worth sending: it is reachable and its disk takes writes. Writes treat
    /// a member whose disk is full or read-only like an unreachable one.
    public func takesWrites(_ id: String) -> Bool {
        self.isReachable(id) && self.diskState(of: id).takesWrites
    }
}
