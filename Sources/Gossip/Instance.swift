public import NIOCore

extension Gossip {
    /// One member's SWIM + Lifeguard protocol state: events in, ``Gossip/Action``s out.
    ///
    /// The instance never reads a clock or a random source of its own: every event takes `now`, and the random
    /// generator is injected at creation. The shell MUST:
    /// - call ``join(seeds:now:)`` once to start (with no seeds for the first node of a cluster);
    /// - execute the returned actions in order: send packets, run timers and feed them back through
    ///   ``timeoutFired(_:now:)``, run push-pulls over TCP and pass the peer's payload to
    ///   ``mergePushPull(_:now:)``;
    /// - decode every received datagram with ``Gossip/Codec`` and pass it to ``receive(_:from:now:)``,
    ///   dropping those that fail to decode.
    public struct Instance: Sendable {
        /// The configuration this instance was created with.
        public let configuration: Configuration

        private var random: any RandomNumberGenerator & Sendable
        private let selfRef: NodeRef

        private struct Record: Sendable {
            var member: Member
            var changedAt: Time
        }

        private var table: [NodeID: Record] = [:]
        /// Member ids in insertion order: every iteration goes through it so that runs are deterministic.
        private var order: [NodeID] = []

        private var probeOrder: [NodeID] = []
        private var probeIndex = 0

        private struct PendingProbe: Sendable {
            var sequence: SequenceNumber
            var target: NodeRef
            var sentAt: Time
            var periodEnd: Time
            var indirect = false
            var expectedNacks = 0
            var nacks = 0
        }
        private var pendingProbe: PendingProbe?

        private struct Relay: Sendable {
            var originAddress: String
            var originSequence: SequenceNumber
        }
        private var relays: [SequenceNumber: Relay] = [:]

        private struct Suspicion: Sendable {
            var member: NodeRef
            var incarnation: Incarnation
            var origin: NodeID
            var start: Time
            var confirmations: Set<NodeID> = []
            var expected: Int
            var minTimeout: Duration
            var maxTimeout: Duration
            var deadline: Time
        }
        private var suspicions: [NodeID: Suspicion] = [:]
        private var notices: [NodeID: Time] = [:]

        private var queue = DisseminationQueue()
        private var entries: [String: StateEntry] = [:]
        private var entryOrder: [String] = []
        private var fetches: [String: (version: UInt64, digest: UInt64, at: Time)] = [:]

        private var nextSequence: SequenceNumber = 0
        /// Lifeguard's local health score, 0 ..< maxLocalHealthMultiplier.
        private var healthScore = 0
        private var started = false
        /// `true` once ``leave(now:)`` ran: the instance then ignores every event.
        public private(set) var hasLeft = false
        private var nextProbeAt = Time.zero
        private var nextGossipAt = Time.zero
        private var nextPushPullAt = Time.zero
        private var scheduledTickAt: Time?

        private var counters = Metrics()
        private var rttSamples: [Duration] = []

        /// Creates the instance of the local process.
        /// - Parameters:
        ///   - id: the node's stable id.
        ///   - uid: this process's unique id; SHOULD grow across restarts (for example the start time in µs).
        ///   - metadata: addresses, zone and capacity announced to the others.
        ///   - configuration: tunables; MUST pass ``Gossip/Configuration/validate()``.
        ///   - random: the generator for probe order, relays and jitter (seeded in tests).
        public init(
            id: NodeID, uid: UInt64, metadata: Metadata, configuration: Configuration = .lan,
            random: some RandomNumberGenerator & Sendable
        ) {
            precondition((try? configuration.validate()) != nil, "invalid Gossip.Configuration")
            precondition(metadata.isValid, "metadata strings MUST be at most 255 bytes")
            self.configuration = configuration
            self.random = random
            self.selfRef = NodeRef(id: id, uid: uid)
            let me = Member(id: id, uid: uid, incarnation: 0, state: .alive, metadata: metadata)
            table[id] = Record(member: me, changedAt: .zero)
            order.append(id)
        }

        // MARK: Views

        /// This process as the others should see it.
        public var localMember: Member { table[selfRef.id]!.member }

        /// Every known member, self included, dead and left tombstones included, in first-heard order.
        public var members: [Member] { order.compactMap { table[$0]?.member } }

        /// The member with `id`, if known.
        public func member(_ id: NodeID) -> Member? { table[id]?.member }

        /// The replicated state entry `key`, if any.
        public func state(_ key: String) -> StateEntry? { entries[key] }

        /// All replicated state entries.
        public var stateEntries: [StateEntry] { entryOrder.compactMap { entries[$0] } }

        /// Lifeguard's local health multiplier (1 when healthy, up to `maxLocalHealthMultiplier`).
        public var localHealthMultiplier: Int { healthScore + 1 }

        /// Updates waiting to be piggybacked.
        public var pendingUpdateCount: Int { queue.count }

        /// The counters, with the member gauges filled in.
        public var metrics: Metrics {
            var m = counters
            m.alive = 0
            m.suspect = 0
            m.dead = 0
            m.left = 0
            for record in table.values {
                switch record.member.state {
                case .alive: m.alive += 1
                case .suspect: m.suspect += 1
                case .dead: m.dead += 1
                case .left: m.left += 1
                }
            }
            m.localHealthMultiplier = localHealthMultiplier
            return m
        }

        /// Returns and forgets the probe round trips measured since the last call (at most 1024 kept).
        public mutating func takeProbeRTTSamples() -> [Duration] {
            defer { rttSamples.removeAll(keepingCapacity: true) }
            return rttSamples
        }

        /// Members alive or suspect, self included: the `n` of SWIM's formulas.
        private var liveCount: Int {
            var n = 0
            for record in table.values where record.member.state == .alive || record.member.state == .suspect {
                n += 1
            }
            return n
        }

        private var retransmitLimit: Int {
            Formula.retransmitLimit(multiplier: configuration.retransmitMultiplier, memberCount: liveCount)
        }

        // MARK: Events

        /// Starts the protocol and joins a cluster through any of its members (memberlist `Join`).
        ///
        /// Each seed gets a push-pull, which brings the full member list and state and tells the seed about
        /// us; our alive message is then gossiped. Calling it again later joins more seeds.
        /// - Parameters:
        ///   - seeds: RPC (push-pull) addresses of existing members; empty for the first node.
        ///   - now: the current time.
        /// - Returns: `.memberChanged` for ourselves on the first call, one `.requestPushPull` per seed, and
        ///   the first `.tick` timer.
        public mutating func join(seeds: [String], now: Time) -> [Action] {
            guard !hasLeft else { return [] }
            var actions: [Action] = []
            if !started {
                started = true
                table[selfRef.id]!.changedAt = now
                // Desynchronise probe rounds across members that start together.
                nextProbeAt = now + configuration.probeInterval.gossipScaled(by: randomFraction())
                if let interval = configuration.gossipInterval { nextGossipAt = now + interval }
                if let interval = configuration.pushPullInterval {
                    nextPushPullAt = now + interval.gossipScaled(by: 0.5 + randomFraction())
                }
                queue.enqueue(.alive(localMember))
                actions.append(.memberChanged(localMember))
            }
            for seed in seeds {
                counters.pushPullsRequested += 1
                actions.append(.requestPushPull(with: seed))
            }
            scheduleTick(now: now, &actions)
            return actions
        }

        /// The periodic driver: starts a probe, a gossip round or a push-pull when each is due, and forgets
        /// old tombstones. Idempotent: calling it early does only what is due.
        /// - Parameter now: the current time.
        /// - Returns: packets, push-pull requests and the next `.tick` timer.
        public mutating func tick(now: Time) -> [Action] {
            guard started, !hasLeft else { return [] }
            var actions: [Action] = []
            if now >= nextProbeAt {
                if let probe = pendingProbe {
                    // The previous protocol period (stretched by the local health multiplier) is still
                    // running: probe again right after it ends.
                    nextProbeAt = max(now, probe.periodEnd) + .milliseconds(1)
                } else {
                    nextProbeAt = now + configuration.probeInterval
                    startProbe(now: now, &actions)
                }
            }
            if let interval = configuration.gossipInterval, now >= nextGossipAt {
                nextGossipAt = now + interval
                gossipRound(now: now, &actions)
            }
            if let interval = configuration.pushPullInterval, now >= nextPushPullAt {
                nextPushPullAt = now + Formula.pushPullInterval(interval, memberCount: liveCount)
                periodicPushPull(&actions)
            }
            reap(now: now)
            scheduleTick(now: now, &actions)
            return actions
        }

        /// A timer from a `.scheduleTimeout` action fired.
        /// - Parameters:
        ///   - id: the timer's id.
        ///   - now: the current time (at or after the requested deadline).
        /// - Returns: what to do; stale timers return nothing.
        public mutating func timeoutFired(_ id: TimerID, now: Time) -> [Action] {
            guard started, !hasLeft else { return [] }
            var actions: [Action] = []
            switch id {
            case .tick:
                if scheduledTickAt.map({ $0 <= now }) ?? true { scheduledTickAt = nil }
                return tick(now: now)
            case .probeTimeout(let sequence):
                guard var probe = pendingProbe, probe.sequence == sequence, !probe.indirect else { return [] }
                probe.indirect = true
                let relays = sample(configuration.indirectProbeCount) {
                    $0.state == .alive && $0.id != probe.target.id
                }
                let address = table[probe.target.id]?.member.gossipAddress ?? ""
                for relay in relays {
                    send(
                        .pingRequest(sequence: sequence, target: probe.target, targetAddress: address),
                        to: relay.gossipAddress, &actions)
                    counters.indirectProbesSent += 1
                }
                probe.expectedNacks = configuration.lifeguard.localHealth ? relays.count : 0
                pendingProbe = probe
            case .probePeriodEnd(let sequence):
                guard let probe = pendingProbe, probe.sequence == sequence else { return [] }
                pendingProbe = nil
                probeFailed(probe, now: now, &actions)
            case .relayTimeout(let sequence):
                guard let relay = relays.removeValue(forKey: sequence) else { return [] }
                if configuration.lifeguard.localHealth {
                    send(.nack(sequence: relay.originSequence), to: relay.originAddress, &actions)
                }
            case .suspicion(let ref):
                guard let suspicion = suspicions[ref.id], suspicion.member == ref, now >= suspicion.deadline,
                    let record = table[ref.id], record.member.uid == ref.uid, record.member.state == .suspect
                else { return [] }
                suspicions[ref.id] = nil
                counters.membersDeclaredDead += 1
                markDead(ref, incarnation: suspicion.incarnation, from: selfRef.id, now: now, &actions)
            }
            return actions
        }

        /// A datagram arrived and decoded.
        /// - Parameters:
        ///   - message: the decoded packet.
        ///   - address: the UDP source address (acks and nacks go back there).
        ///   - now: the current time.
        /// - Returns: replies, relayed pings, membership and state changes.
        public mutating func receive(_ message: Message, from address: String, now: Time) -> [Action] {
            guard started, !hasLeft else { return [] }
            counters.messagesReceived += 1
            var actions: [Action] = []
            for update in message.updates {
                apply(update, sender: message.sender, now: now, &actions)
            }
            noticeAccusedSender(message.sender, address: address, now: now, &actions)
            switch message.kind {
            case .ping(let sequence, let target):
                guard target == selfRef else { break }
                send(.ack(sequence: sequence), to: address, &actions)
            case .pingRequest(let sequence, let target, let targetAddress):
                guard target != selfRef, !targetAddress.isEmpty else { break }
                let relaySequence = takeSequence()
                relays[relaySequence] = Relay(originAddress: address, originSequence: sequence)
                counters.relayedPings += 1
                send(.ping(sequence: relaySequence, target: target), to: targetAddress, &actions)
                actions.append(
                    .scheduleTimeout(
                        .relayTimeout(sequence: relaySequence),
                        at: now + configuration.probeTimeout))
            case .ack(let sequence):
                if let relay = relays.removeValue(forKey: sequence) {
                    send(.ack(sequence: relay.originSequence), to: relay.originAddress, &actions)
                } else if let probe = pendingProbe, probe.sequence == sequence {
                    pendingProbe = nil
                    counters.probesAcked += 1
                    adjustHealth(-1)
                    if !probe.indirect {
                        let rtt = now - probe.sentAt
                        counters.probeRTTCount += 1
                        counters.probeRTTSum += rtt
                        counters.probeRTTMax = max(counters.probeRTTMax, rtt)
                        if rttSamples.count < 1024 { rttSamples.append(rtt) }
                    }
                }
            case .nack(let sequence):
                if pendingProbe?.sequence == sequence {
                    pendingProbe!.nacks += 1
                    counters.nacksReceived += 1
                }
            case .gossip:
                break
            }
            return actions
        }

        /// Leaves the cluster gracefully: announces `left` to several members at once and stops.
        ///
        /// Afterwards every event returns nothing. The shell SHOULD send the returned packets before closing
        /// its socket.
        /// - Parameter now: the current time.
        /// - Returns: `.memberChanged` for ourselves and the leave packets.
        public mutating func leave(now: Time) -> [Action] {
            guard started, !hasLeft else { return [] }
            var actions: [Action] = []
            var me = localMember
            me.incarnation += 1
            me.state = .left
            table[me.id] = Record(member: me, changedAt: now)
            let update = Update.left(member: selfRef, incarnation: me.incarnation)
            queue.enqueue(update)
            actions.append(.memberChanged(me))
            let targets = sample(max(configuration.gossipFanout, retransmitLimit)) {
                $0.state == .alive || $0.state == .suspect
            }
            for target in targets {
                send(.gossip, to: target.gossipAddress, first: update, &actions)
            }
            hasLeft = true
            return actions
        }

        /// Announces new local metadata (addresses, zone, capacity) under a new incarnation.
        /// - Parameters:
        ///   - metadata: the new metadata; strings at most 255 bytes.
        ///   - now: the current time.
        /// - Returns: `.memberChanged` for ourselves.
        public mutating func setLocalMetadata(_ metadata: Metadata, now: Time) -> [Action] {
            precondition(metadata.isValid, "metadata strings MUST be at most 255 bytes")
            guard !hasLeft else { return [] }
            table[selfRef.id]!.member.metadata = metadata
            table[selfRef.id]!.member.incarnation += 1
            table[selfRef.id]!.changedAt = now
            queue.enqueue(.alive(localMember))
            return [.memberChanged(localMember)]
        }

        /// Publishes a new version of a replicated state entry (for example a new layout).
        ///
        /// Ignored unless it supersedes the local entry (higher version, or equal version with greater bytes).
        /// Entries up to ``Gossip/Configuration/maxInlineStateBytes`` travel inline; larger ones as a digest
        /// that makes others fetch them by push-pull.
        /// - Returns: `.stateUpdated` when the entry changed.
        public mutating func publishState(key: String, version: UInt64, bytes: [UInt8], now: Time) -> [Action] {
            precondition(key.utf8.count <= 255, "state keys are at most 255 bytes")
            precondition(bytes.count <= Int(UInt32.max))
            guard !hasLeft else { return [] }
            var actions: [Action] = []
            mergeState(StateEntry(key: key, version: version, bytes: bytes), &actions)
            return actions
        }

        /// The full local view for a push-pull: every member (tombstones included) and every state entry.
        public func pushPullPayload() -> ByteBuffer {
            Codec.encodePushPull(sender: selfRef, members: members, entries: stateEntries)
        }

        /// Merges a peer's push-pull payload (memberlist `mergeRemoteState`).
        ///
        /// Alive members merge as alive messages, suspect as suspicions, dead ones only as suspicions (a peer's
        /// death verdict is re-checked locally), left as left; state entries merge by the CRDT rule. The
        /// responder of a push-pull SHOULD merge the initiator's payload before sending its own, so that a
        /// refutation it makes reaches the initiator in the same exchange.
        /// - Returns: what changed; nothing (and `malformedPayloads` counted) when the payload is malformed.
        public mutating func mergePushPull(_ payload: ByteBuffer, now: Time) -> [Action] {
            guard started, !hasLeft else { return [] }
            let decoded: (sender: NodeRef, members: [Member], entries: [StateEntry])
            do {
                decoded = try Codec.decodePushPull(payload)
            } catch {
                counters.malformedPayloads += 1
                return []
            }
            var actions: [Action] = []
            for m in decoded.members {
                let known = table[m.id].map { $0.member.uid == m.uid } ?? false
                switch m.state {
                case .alive:
                    applyAlive(m, now: now, &actions)
                case .suspect, .dead:
                    if !known && m.id != selfRef.id {
                        if m.state == .dead {
                            insertTombstone(m, now: now, &actions)
                            continue
                        }
                        var alive = m
                        alive.state = .alive
                        applyAlive(alive, now: now, &actions)
                    }
                    applySuspect(m.ref, incarnation: m.incarnation, from: decoded.sender.id, now: now, &actions)
                case .left:
                    if !known && m.id != selfRef.id {
                        insertTombstone(m, now: now, &actions)
                    } else {
                        applyLeft(m.ref, incarnation: m.incarnation, now: now, &actions)
                    }
                }
            }
            for entry in decoded.entries { mergeState(entry, &actions) }
            return actions
        }

        // MARK: Probing

        private mutating func startProbe(now: Time, _ actions: inout [Action]) {
            guard let target = nextProbeTarget() else { return }
            let sequence = takeSequence()
            let scale = Double(localHealthMultiplier)
            let periodEnd = now + configuration.probeInterval.gossipScaled(by: scale)
            pendingProbe = PendingProbe(sequence: sequence, target: target.ref, sentAt: now, periodEnd: periodEnd)
            counters.probesSent += 1
            var first: Update?
            if configuration.lifeguard.buddySystem, target.state == .suspect {
                first = .suspect(member: target.ref, incarnation: target.incarnation, from: selfRef.id)
            }
            send(.ping(sequence: sequence, target: target.ref), to: target.gossipAddress, first: first, &actions)
            actions.append(
                .scheduleTimeout(
                    .probeTimeout(sequence: sequence),
                    at: now + configuration.probeTimeout.gossipScaled(by: scale)))
            actions.append(.scheduleTimeout(.probePeriodEnd(sequence: sequence), at: periodEnd))
        }

        /// Round-robin over a shuffled list, reshuffled after each pass (SWIM §4.3).
        private mutating func nextProbeTarget() -> Member? {
            for pass in 0..<2 {
                while probeIndex < probeOrder.count {
                    let id = probeOrder[probeIndex]
                    probeIndex += 1
                    if let m = table[id]?.member, m.id != selfRef.id, m.state == .alive || m.state == .suspect {
                        return m
                    }
                }
                guard pass == 0 else { break }
                var list = order.filter { id in
                    guard id != selfRef.id, let state = table[id]?.member.state else { return false }
                    return state == .alive || state == .suspect
                }
                shuffle(&list)
                probeOrder = list
                probeIndex = 0
            }
            return nil
        }

        private mutating func probeFailed(_ probe: PendingProbe, now: Time, _ actions: inout [Action]) {
            counters.probesFailed += 1
            if configuration.lifeguard.localHealth {
                // Lifeguard IV.A: missing nacks mean our own packets may be the problem.
                if probe.expectedNacks > 0 {
                    adjustHealth(probe.expectedNacks - probe.nacks)
                } else {
                    adjustHealth(1)
                }
            }
            guard let record = table[probe.target.id], record.member.uid == probe.target.uid,
                record.member.state == .alive
            else { return }
            counters.suspicionsRaised += 1
            applySuspect(probe.target, incarnation: record.member.incarnation, from: selfRef.id, now: now, &actions)
        }

        private mutating func adjustHealth(_ delta: Int) {
            guard configuration.lifeguard.localHealth else { return }
            healthScore = min(max(healthScore + delta, 0), configuration.lifeguard.maxLocalHealthMultiplier - 1)
        }

        // MARK: Dissemination

        private mutating func gossipRound(now: Time, _ actions: inout [Action]) {
            guard !queue.isEmpty else { return }
            let deadWindow = configuration.gossipToTheDeadTime
            let targets = sample(configuration.gossipFanout) { [table] m in
                switch m.state {
                case .alive, .suspect: return true
                case .dead: return now - (table[m.id]?.changedAt ?? now) < deadWindow
                case .left: return false
                }
            }
            for target in targets {
                guard !queue.isEmpty else { break }
                send(.gossip, to: target.gossipAddress, &actions)
            }
        }

        private mutating func periodicPushPull(_ actions: inout [Action]) {
            // Dead members are candidates too, so that two sides of a healed partition find each other
            // (Serf's reconnect, folded into push-pull).
            let peers = sample(1) { $0.state == .alive || $0.state == .suspect || $0.state == .dead }
            guard let peer = peers.first else { return }
            counters.pushPullsRequested += 1
            actions.append(.requestPushPull(with: peer.rpcAddress))
        }

        /// Sends one packet, filling it with piggybacked updates up to the packet budget.
        private mutating func send(
            _ kind: Message.Kind, to address: String, first: Update? = nil,
            _ actions: inout [Action]
        ) {
            let header = Codec.headerSize(sender: selfRef, kind: kind) + configuration.authenticationTagLength
            let updates = queue.select(
                budget: configuration.packetBudget - header, limit: retransmitLimit,
                first: first)
            if case .gossip = kind, updates.isEmpty { return }
            counters.messagesSent += 1
            actions.append(.send(Message(sender: selfRef, kind: kind, updates: updates), to: address))
        }

        /// Our extension of the buddy system: a member we hold as suspect or dead that talks to us is told so
        /// directly (at most once per probe interval), so it can refute at once. This is what lets the two
        /// sides of a healed partition find each other quickly.
        private mutating func noticeAccusedSender(
            _ sender: NodeRef, address: String, now: Time,
            _ actions: inout [Action]
        ) {
            guard let m = table[sender.id]?.member, m.uid == sender.uid,
                m.state == .dead || (m.state == .suspect && configuration.lifeguard.buddySystem)
            else { return }
            if let last = notices[sender.id], now < last + configuration.probeInterval { return }
            notices[sender.id] = now
            let update: Update =
                m.state == .dead
                ? .dead(member: sender, incarnation: m.incarnation, from: selfRef.id)
                : .suspect(member: sender, incarnation: m.incarnation, from: selfRef.id)
            send(.gossip, to: address, first: update, &actions)
        }

        // MARK: Merge rules (SWIM §4.2 with memberlist's refinements)

        private mutating func apply(_ update: Update, sender: NodeRef, now: Time, _ actions: inout [Action]) {
            switch update {
            case .alive(let m): applyAlive(m, now: now, &actions)
            case .suspect(let ref, let inc, let from):
                applySuspect(ref, incarnation: inc, from: from, now: now, &actions)
            case .dead(let ref, let inc, let from):
                if ref.id == selfRef.id {
                    if ref.uid == selfRef.uid { refute(inc, &actions) }
                    return
                }
                guard let record = table[ref.id], record.member.uid == ref.uid else { return }
                let cur = record.member
                guard cur.state == .alive || cur.state == .suspect, inc >= cur.incarnation else { return }
                suspicions[ref.id] = nil
                markDead(ref, incarnation: inc, from: from, now: now, &actions)
            case .left(let ref, let inc): applyLeft(ref, incarnation: inc, now: now, &actions)
            case .stateDigest(let key, let version, let digest):
                requestStateIfNewer(key: key, version: version, digest: digest, sender: sender, now: now, &actions)
            case .state(let entry): mergeState(entry, &actions)
            }
        }

        private mutating func applyAlive(_ m: Member, now: Time, _ actions: inout [Action]) {
            if m.id == selfRef.id {
                if m.uid == selfRef.uid {
                    let me = localMember
                    if me.state != .left,
                        m.incarnation > me.incarnation || (m.incarnation == me.incarnation && m.metadata != me.metadata)
                    {
                        refute(m.incarnation, &actions)
                    }
                } else if m.uid > selfRef.uid {
                    counters.identityConflicts += 1
                }
                return
            }
            var incoming = m
            incoming.state = .alive
            guard let record = table[m.id] else {
                insert(incoming, now: now)
                queue.enqueue(.alive(incoming))
                actions.append(.memberChanged(incoming))
                return
            }
            let cur = record.member
            if m.uid != cur.uid {
                guard m.uid > cur.uid || cur.state == .dead || cur.state == .left else { return }
                suspicions[m.id] = nil
                table[m.id] = Record(member: incoming, changedAt: now)
                queue.enqueue(.alive(incoming))
                actions.append(.memberChanged(incoming))
                return
            }
            switch cur.state {
            case .alive, .suspect, .dead:
                guard m.incarnation > cur.incarnation else { return }
                suspicions[m.id] = nil
                let changed = cur.state != .alive || cur.metadata != m.metadata
                table[m.id] = Record(member: incoming, changedAt: cur.state != .alive ? now : record.changedAt)
                queue.enqueue(.alive(incoming))
                if changed { actions.append(.memberChanged(incoming)) }
            case .left:
                return
            }
        }

        private mutating func applySuspect(
            _ ref: NodeRef, incarnation: Incarnation, from: NodeID, now: Time,
            _ actions: inout [Action]
        ) {
            if ref.id == selfRef.id {
                if ref.uid == selfRef.uid { refute(incarnation, &actions) }
                return
            }
            guard let record = table[ref.id], record.member.uid == ref.uid else { return }
            let cur = record.member
            switch cur.state {
            case .alive:
                guard incarnation >= cur.incarnation else { return }
                startSuspicion(record, incarnation: incarnation, from: from, now: now, &actions)
            case .suspect:
                if incarnation > cur.incarnation {
                    startSuspicion(record, incarnation: incarnation, from: from, now: now, &actions)
                } else if incarnation == cur.incarnation {
                    confirmSuspicion(ref, from: from, now: now, &actions)
                }
            case .dead, .left:
                return
            }
        }

        private mutating func startSuspicion(
            _ record: Record, incarnation: Incarnation, from: NodeID, now: Time,
            _ actions: inout [Action]
        ) {
            var m = record.member
            m.state = .suspect
            m.incarnation = incarnation
            table[m.id] = Record(member: m, changedAt: now)
            counters.suspicionsStarted += 1
            let n = liveCount
            var minTimeout = Formula.minSuspicionTimeout(
                multiplier: configuration.suspicionMultiplier, memberCount: n,
                probeInterval: configuration.probeInterval)
            minTimeout = min(max(minTimeout, configuration.minSuspicionTimeout), configuration.maxSuspicionTimeout)
            var maxTimeout = minTimeout
            var expected = 0
            if configuration.lifeguard.dynamicSuspicion {
                maxTimeout = min(
                    minTimeout * configuration.suspicionMaxTimeoutMultiplier,
                    configuration.maxSuspicionTimeout)
                expected = max(0, min(configuration.suspicionMultiplier - 2, n - 2))
            }
            let timeout = Formula.suspicionTimeout(
                min: minTimeout, max: maxTimeout, confirmations: 0,
                expected: expected)
            let suspicion = Suspicion(
                member: m.ref, incarnation: incarnation, origin: from, start: now,
                expected: expected, minTimeout: minTimeout, maxTimeout: maxTimeout,
                deadline: now + timeout)
            suspicions[m.id] = suspicion
            queue.enqueue(.suspect(member: m.ref, incarnation: incarnation, from: from))
            actions.append(.memberChanged(m))
            actions.append(.scheduleTimeout(.suspicion(m.ref), at: suspicion.deadline))
        }

        /// Lifeguard IV.B: an independent suspicion shortens the timeout.
        private mutating func confirmSuspicion(_ ref: NodeRef, from: NodeID, now: Time, _ actions: inout [Action]) {
            guard var s = suspicions[ref.id], s.member == ref, s.expected > 0, from != s.origin,
                s.confirmations.count < s.expected, s.confirmations.insert(from).inserted
            else { return }
            let timeout = Formula.suspicionTimeout(
                min: s.minTimeout, max: s.maxTimeout,
                confirmations: s.confirmations.count, expected: s.expected)
            s.deadline = s.start + timeout
            suspicions[ref.id] = s
            queue.enqueue(.suspect(member: ref, incarnation: s.incarnation, from: from))
            actions.append(.scheduleTimeout(.suspicion(ref), at: max(s.deadline, now)))
        }

        private mutating func markDead(
            _ ref: NodeRef, incarnation: Incarnation, from: NodeID, now: Time,
            _ actions: inout [Action]
        ) {
            guard var m = table[ref.id]?.member else { return }
            m.state = .dead
            m.incarnation = incarnation
            table[ref.id] = Record(member: m, changedAt: now)
            queue.enqueue(.dead(member: ref, incarnation: incarnation, from: from))
            actions.append(.memberChanged(m))
        }

        private mutating func applyLeft(
            _ ref: NodeRef, incarnation: Incarnation, now: Time,
            _ actions: inout [Action]
        ) {
            if ref.id == selfRef.id {
                if ref.uid == selfRef.uid, !hasLeft { refute(incarnation, &actions) }
                return
            }
            guard let record = table[ref.id], record.member.uid == ref.uid else { return }
            var m = record.member
            guard m.state != .left, incarnation >= m.incarnation else { return }
            suspicions[ref.id] = nil
            m.state = .left
            m.incarnation = incarnation
            table[ref.id] = Record(member: m, changedAt: now)
            queue.enqueue(.left(member: ref, incarnation: incarnation))
            actions.append(.memberChanged(m))
        }

        /// SWIM §4.2: raise our incarnation above the accusation and announce we are alive.
        private mutating func refute(_ incarnation: Incarnation, _ actions: inout [Action]) {
            guard !hasLeft else { return }
            var me = localMember
            guard incarnation >= me.incarnation else { return }
            me.incarnation = incarnation + 1
            table[me.id]!.member = me
            counters.refutations += 1
            adjustHealth(1)  // Lifeguard IV.A: being suspected hints that we are the slow one.
            queue.enqueue(.alive(me))
        }

        private mutating func insert(_ m: Member, now: Time) {
            table[m.id] = Record(member: m, changedAt: now)
            order.append(m.id)
            if m.state == .alive || m.state == .suspect {
                // SWIM §4.3: a new member goes to a random position of the probe list.
                let position = probeIndex + randomBelow(probeOrder.count - probeIndex + 1)
                probeOrder.insert(m.id, at: position)
            }
        }

        private mutating func insertTombstone(_ m: Member, now: Time, _ actions: inout [Action]) {
            guard table[m.id] == nil, m.id != selfRef.id else { return }
            insert(m, now: now)
            actions.append(.memberChanged(m))
        }

        private mutating func reap(now: Time) {
            let retention = configuration.deadMemberRetention
            var removed = false
            for id in order {
                guard let record = table[id], record.member.state == .dead || record.member.state == .left,
                    now - record.changedAt > retention
                else { continue }
                table[id] = nil
                suspicions[id] = nil
                notices[id] = nil
                removed = true
            }
            if removed { order.removeAll { table[$0] == nil } }
        }

        // MARK: Cluster state (CRDT)

        private mutating func mergeState(_ entry: StateEntry, _ actions: inout [Action]) {
            if let current = entries[entry.key], !entry.supersedes(current) { return }
            if entries[entry.key] == nil { entryOrder.append(entry.key) }
            entries[entry.key] = entry
            if let fetch = fetches[entry.key], fetch.version <= entry.version { fetches[entry.key] = nil }
            if entry.bytes.count <= configuration.maxInlineStateBytes {
                queue.enqueue(.state(entry))
            } else {
                queue.enqueue(.stateDigest(key: entry.key, version: entry.version, digest: entry.digest))
            }
            actions.append(.stateUpdated(key: entry.key, version: entry.version, bytes: entry.bytes))
        }

        private mutating func requestStateIfNewer(
            key: String, version: UInt64, digest: UInt64, sender: NodeRef,
            now: Time, _ actions: inout [Action]
        ) {
            if let current = entries[key] {
                guard version > current.version || (version == current.version && digest != current.digest) else {
                    return
                }
            }
            if let fetch = fetches[key],
                fetch.version > version || (fetch.version == version && fetch.digest == digest),
                now < fetch.at + configuration.stateFetchBackoff
            {
                return
            }
            guard let peer = table[sender.id]?.member, peer.uid == sender.uid, !peer.rpcAddress.isEmpty else { return }
            fetches[key] = (version, digest, now)
            counters.stateFetchesRequested += 1
            counters.pushPullsRequested += 1
            actions.append(.requestPushPull(with: peer.rpcAddress))
        }

        // MARK: Timers and randomness

        private mutating func scheduleTick(now: Time, _ actions: inout [Action]) {
            var next = nextProbeAt
            if configuration.gossipInterval != nil { next = min(next, nextGossipAt) }
            if configuration.pushPullInterval != nil { next = min(next, nextPushPullAt) }
            // A tick already pending at or before `next` will do; one that has passed will not fire again.
            if let scheduled = scheduledTickAt, scheduled > now, scheduled <= next { return }
            scheduledTickAt = next
            actions.append(.scheduleTimeout(.tick, at: next))
        }

        private mutating func takeSequence() -> SequenceNumber {
            nextSequence &+= 1
            return nextSequence
        }

        private mutating func randomBelow(_ n: Int) -> Int {
            precondition(n > 0)
            return Int(random.next(upperBound: UInt64(n)))
        }

        private mutating func randomFraction() -> Double {
            Double(random.next() >> 11) * 0x1.0p-53
        }

        private mutating func shuffle(_ ids: inout [NodeID]) {
            guard ids.count > 1 else { return }
            for i in stride(from: ids.count - 1, to: 0, by: -1) {
                ids.swapAt(i, randomBelow(i + 1))
            }
        }

        /// Up to `count` distinct random members other than ourselves that satisfy `include`.
        private mutating func sample(_ count: Int, where include: (Member) -> Bool) -> [Member] {
            guard count > 0 else { return [] }
            var candidates: [Member] = []
            for id in order where id != selfRef.id {
                if let m = table[id]?.member, include(m) { candidates.append(m) }
            }
            if candidates.count <= count {
                return candidates
            }
            // Partial Fisher-Yates.
            for i in 0..<count {
                candidates.swapAt(i, i + randomBelow(candidates.count - i))
            }
            return Array(candidates.prefix(count))
        }
    }
}
