extension Gossip {
    /// Counters and gauges of one instance, as plain values for the shell to export (Prometheus or logs).
    /// Counters only grow; gauges (`alive` … `left`, `localHealthMultiplier`) are current values.
    public struct Metrics: Sendable, Hashable {
        /// Members (self included) currently alive.
        public var alive = 0
        /// Members currently suspect.
        public var suspect = 0
        /// Dead members still kept as tombstones.
        public var dead = 0
        /// Left members still kept as tombstones.
        public var left = 0
        /// Lifeguard's local health multiplier: our timeouts are stretched by this factor (1 = healthy).
        public var localHealthMultiplier = 1

        /// Direct pings sent as probes.
        public var probesSent = 0
        /// Probes answered, directly or through a relay.
        public var probesAcked = 0
        /// Probes that ended without an answer (each raises a suspicion).
        public var probesFailed = 0
        /// Ping requests sent to relays (k per probe whose direct ping timed out).
        public var indirectProbesSent = 0
        /// Pings sent on behalf of other members.
        public var relayedPings = 0
        /// Nacks received from relays.
        public var nacksReceived = 0
        /// Suspicions raised by our own failed probes.
        public var suspicionsRaised = 0
        /// Suspicion timers started (ours and those learned by gossip).
        public var suspicionsStarted = 0
        /// Times we refuted a suspicion or death report about ourselves.
        public var refutations = 0
        /// Members our own suspicion timer declared dead.
        public var membersDeclaredDead = 0
        /// Packets produced / consumed.
        public var messagesSent = 0
        public var messagesReceived = 0
        /// Push-pulls asked of the shell (periodic, join and state fetches).
        public var pushPullsRequested = 0
        /// Push-pulls asked because a newer state version was announced.
        public var stateFetchesRequested = 0
        /// Push-pull payloads that failed to decode.
        public var malformedPayloads = 0
        /// Another live process claims our node id with a higher uid.
        public var identityConflicts = 0

        /// Direct probe round trips measured.
        public var probeRTTCount = 0
        /// Sum of the measured round trips.
        public var probeRTTSum: Duration = .zero
        /// Largest measured round trip.
        public var probeRTTMax: Duration = .zero

        /// All zero.
        public init() {}
    }
}
