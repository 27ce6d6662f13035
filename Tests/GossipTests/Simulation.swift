import Gossip
import NIOCore

/// A deterministic discrete-event simulation of `N` instances on an in-memory network with per-link loss,
/// delay, degraded members, crashes and partitions. Time is simulated; one seed gives one run.
struct Simulation {
    struct Settings {
        var nodes: Int
        var seed: UInt64 = 1
        var configuration: Gossip.Configuration = .lan
        /// Probability that any packet is lost (UDP only; push-pull runs over "TCP" and is never lost).
        var loss: Double = 0
        var minDelay: Duration = .milliseconds(1)
        var maxDelay: Duration = .milliseconds(5)
        /// Run every packet through the codec (encode, check the budget, decode). Slower; on for small runs.
        var encodePackets = false
    }

    enum Event {
        case join(node: Int)
        case deliver(to: Int, from: Int, message: Gossip.Message)
        case timer(node: Int, id: Gossip.TimerID)
        case pushPullRequest(from: Int, to: Int, payload: ByteBuffer)
        case pushPullReply(to: Int, from: Int, payload: ByteBuffer)
    }

    struct Scheduled {
        var time: Int64
        var sequence: UInt64
        var event: Event

        func before(_ other: Scheduled) -> Bool {
            time != other.time ? time < other.time : sequence < other.sequence
        }
    }

    var settings: Settings
    private(set) var now = Gossip.Time.zero
    var instances: [Gossip.Instance] = []
    var crashed: [Bool]
    /// Partition group per node: packets and push-pulls between different groups are dropped.
    var group: [Int]
    /// Extra loss on every packet to or from a node (a degraded, overloaded member).
    var nodeLoss: [Double]
    /// Extra delay on every packet to or from a node (a slow, CPU-starved member: Lifeguard's case).
    var nodeDelay: [Duration]
    /// view[observer][subject]: the state the observer last reported for the subject.
    var view: [[Gossip.MemberState?]]
    /// stateVersions[observer][key]: the version the observer holds.
    var stateVersions: [[String: UInt64]]

    var packetsSent = 0
    var packetsDropped = 0
    var maxPacketSize = 0
    var pushPulls = 0
    /// Suspicion timers that declared a member dead that had not crashed.
    var falseDeclarations = 0
    /// Of those, declarations of members that were neither slow nor lossy.
    var healthyFalseDeclarations = 0
    /// Members that some observer declared dead although they had not crashed.
    var falselyDeclared: Set<Int> = []

    private var heap: [Scheduled] = []
    private var sequence: UInt64 = 0
    private var rng: SplitMix64
    private var gossipIndex: [String: Int] = [:]
    private var rpcIndex: [String: Int] = [:]
    private var nameIndex: [Gossip.NodeID: Int] = [:]
    private let codec = Gossip.Codec(authenticator: toyAuthenticator(key: 42))

    init(_ settings: Settings) {
        self.settings = settings
        var configuration = settings.configuration
        configuration.authenticationTagLength = 8
        let n = settings.nodes
        rng = SplitMix64(seed: settings.seed &* 0x9E37_79B9 &+ 17)
        crashed = Array(repeating: false, count: n)
        group = Array(repeating: 0, count: n)
        nodeLoss = Array(repeating: 0, count: n)
        nodeDelay = Array(repeating: .zero, count: n)
        view = Array(repeating: Array(repeating: nil, count: n), count: n)
        stateVersions = Array(repeating: [:], count: n)
        for i in 0..<n {
            let name = "n\(i)"
            let meta = metadata(name)
            gossipIndex[meta.gossipAddress] = i
            rpcIndex[meta.rpcAddress] = i
            nameIndex[Gossip.NodeID(name)] = i
            instances.append(
                Gossip.Instance(
                    id: Gossip.NodeID(name), uid: 1, metadata: meta, configuration: configuration,
                    random: SplitMix64(seed: settings.seed &* 1_000_003 &+ UInt64(i))))
        }
    }

    // MARK: Scenario controls

    /// Node 0 starts; node i joins through node 0 at `i · 5 ms`.
    mutating func startAll() {
        for i in 0..<settings.nodes { schedule(at: now + .milliseconds(5 * i), .join(node: i)) }
    }

    mutating func crash(_ node: Int) { crashed[node] = true }

    /// Splits the nodes into the groups given (node → group).
    mutating func partition(_ assign: (Int) -> Int) {
        for i in 0..<settings.nodes { group[i] = assign(i) }
    }

    mutating func heal() { group = Array(repeating: 0, count: settings.nodes) }

    mutating func publish(node: Int, key: String, version: UInt64, bytes: [UInt8]) {
        let actions = instances[node].publishState(key: key, version: version, bytes: bytes, now: now)
        execute(actions, node: node)
    }

    // MARK: Predicates

    var liveNodes: [Int] { (0..<settings.nodes).filter { !crashed[$0] } }

    /// Every live node sees every other live node alive.
    var converged: Bool {
        let live = liveNodes
        for o in live {
            for s in live where s != o && view[o][s] != .alive { return false }
        }
        return true
    }

    /// How many live observers (other than `subject`) hold `subject` in one of `states`.
    func observers(of subject: Int, in states: Set<Gossip.MemberState>) -> Int {
        liveNodes.filter { $0 != subject && view[$0][subject].map { states.contains($0) } == true }.count
    }

    // MARK: Running

    /// Runs events up to `end`.
    mutating func run(until end: Gossip.Time) {
        while let first = heap.first, first.time <= end.nanoseconds {
            let next = pop()
            now = Gossip.Time(nanoseconds: next.time)
            handle(next.event)
        }
        now = max(now, end)
    }

    /// Runs in steps of `step` until `condition` holds or `limit` passes.
    /// - Returns: the simulated time at which the condition first held (to within `step`), or nil.
    @discardableResult
    mutating func run(
        until condition: (Simulation) -> Bool, limit: Duration,
        step: Duration = .milliseconds(50)
    ) -> Gossip.Time? {
        let end = now + limit
        while now < end {
            if condition(self) { return now }
            run(until: min(now + step, end))
        }
        return condition(self) ? now : nil
    }

    private mutating func handle(_ event: Event) {
        switch event {
        case .join(let node):
            guard !crashed[node] else { return }
            let seeds = node == 0 ? [] : [instances[0].localMember.rpcAddress]
            execute(instances[node].join(seeds: seeds, now: now), node: node)
        case .deliver(let to, let from, let message):
            guard !crashed[to], group[to] == group[from] else { return }
            execute(
                instances[to].receive(message, from: instances[from].localMember.gossipAddress, now: now),
                node: to)
        case .timer(let node, let id):
            guard !crashed[node] else { return }
            let actions = instances[node].timeoutFired(id, now: now)
            if case .suspicion = id {
                for m in actions.changes where m.state == .dead {
                    if let s = nameIndex[m.id], !crashed[s] {
                        falseDeclarations += 1
                        if nodeDelay[s] == .zero && nodeLoss[s] == 0 { healthyFalseDeclarations += 1 }
                    }
                }
            }
            execute(actions, node: node)
        case .pushPullRequest(let from, let to, let payload):
            guard !crashed[to], group[to] == group[from] else { return }
            // The responder merges first, then answers with its (possibly refuted) state.
            execute(instances[to].mergePushPull(payload, now: now), node: to)
            schedule(at: now + delay(), .pushPullReply(to: from, from: to, payload: instances[to].pushPullPayload()))
        case .pushPullReply(let to, let from, let payload):
            guard !crashed[to], group[to] == group[from] else { return }
            execute(instances[to].mergePushPull(payload, now: now), node: to)
        }
    }

    private mutating func execute(_ actions: [Gossip.Action], node i: Int) {
        for action in actions {
            switch action {
            case .send(var message, let address):
                guard let j = gossipIndex[address] else { continue }
                packetsSent += 1
                if settings.encodePackets {
                    let packet = codec.encode(message)
                    maxPacketSize = max(maxPacketSize, packet.readableBytes)
                    precondition(packet.readableBytes <= settings.configuration.packetBudget, "packet over budget")
                    message = try! codec.decode(packet)
                } else {
                    maxPacketSize = max(maxPacketSize, Gossip.Codec.encodedSize(of: message, tagLength: 8))
                }
                let lossProbability = 1 - (1 - settings.loss) * (1 - nodeLoss[i]) * (1 - nodeLoss[j])
                if lossProbability > 0, rng.nextDouble() < lossProbability {
                    packetsDropped += 1
                    continue
                }
                schedule(at: now + delay() + nodeDelay[i] + nodeDelay[j], .deliver(to: j, from: i, message: message))
            case .scheduleTimeout(let id, let at):
                schedule(at: max(at, now), .timer(node: i, id: id))
            case .memberChanged(let m):
                if let s = nameIndex[m.id] {
                    view[i][s] = m.state
                    if m.state == .dead, !crashed[s], s != i { falselyDeclared.insert(s) }
                }
            case .requestPushPull(let address):
                guard let j = rpcIndex[address], j != i else { continue }
                pushPulls += 1
                schedule(at: now + delay(), .pushPullRequest(from: i, to: j, payload: instances[i].pushPullPayload()))
            case .stateUpdated(let key, let version, _):
                stateVersions[i][key] = version
            }
        }
    }

    private mutating func delay() -> Duration {
        let lo =
            settings.minDelay.components.attoseconds / 1_000_000_000 + settings.minDelay.components.seconds
            * 1_000_000_000
        let hi =
            settings.maxDelay.components.attoseconds / 1_000_000_000 + settings.maxDelay.components.seconds
            * 1_000_000_000
        return .nanoseconds(lo + Int64(rng.nextDouble() * Double(hi - lo)))
    }

    // MARK: Binary heap

    private mutating func schedule(at time: Gossip.Time, _ event: Event) {
        sequence += 1
        heap.append(Scheduled(time: time.nanoseconds, sequence: sequence, event: event))
        var child = heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard heap[child].before(heap[parent]) else { break }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    private mutating func pop() -> Scheduled {
        let top = heap[0]
        let last = heap.removeLast()
        if !heap.isEmpty {
            heap[0] = last
            var parent = 0
            while true {
                let left = 2 * parent + 1
                let right = left + 1
                var smallest = parent
                if left < heap.count, heap[left].before(heap[smallest]) { smallest = left }
                if right < heap.count, heap[right].before(heap[smallest]) { smallest = right }
                if smallest == parent { break }
                heap.swapAt(parent, smallest)
                parent = smallest
            }
        }
        return top
    }
}
