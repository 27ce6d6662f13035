extension Gossip {
    /// The tunables of one ``Gossip/Instance``. Defaults are memberlist's LAN profile (`DefaultLANConfig`),
    /// which the Lifeguard paper evaluated; see docs/gossip.md for the reasoning behind each one.
    public struct Configuration: Sendable, Hashable {
        /// Time between the starts of two probes (SWIM's protocol period T'). Default 1 s.
        public var probeInterval: Duration = .seconds(1) {
            willSet { precondition(newValue > .zero, "probeInterval MUST be > 0") }
        }

        /// How long a direct ping waits for its ack before `k` indirect probes are sent. Default 500 ms:
        /// several LAN round trips, and at most half the interval so the indirect stage has time too.
        public var probeTimeout: Duration = .milliseconds(500) {
            willSet { precondition(newValue > .zero, "probeTimeout MUST be > 0") }
        }

        /// `k`, the number of members asked to probe a silent target for us (SWIM §4.3). Default 3.
        public var indirectProbeCount: Int = 3 {
            willSet { precondition(newValue >= 0, "indirectProbeCount MUST be >= 0") }
        }

        /// α: the minimum suspicion timeout is `α · max(1, log10(n)) · probeInterval` (memberlist
        /// `SuspicionMult`). Default 4.
        public var suspicionMultiplier: Int = 4 {
            willSet { precondition(newValue >= 1, "suspicionMultiplier MUST be >= 1") }
        }

        /// β: with Lifeguard's dynamic suspicion the timeout starts at `β ·` the minimum and shrinks to the
        /// minimum as independent confirmations arrive (Lifeguard IV.B). Default 6.
        public var suspicionMaxTimeoutMultiplier: Int = 6 {
            willSet { precondition(newValue >= 1, "suspicionMaxTimeoutMultiplier MUST be >= 1") }
        }

        /// An absolute floor for the suspicion timeout. Default 0 (no floor).
        public var minSuspicionTimeout: Duration = .zero

        /// An absolute ceiling for the suspicion timeout. Default 10 minutes.
        public var maxSuspicionTimeout: Duration = .seconds(600)

        /// λ: each update is piggybacked `λ · ⌈log10(n + 1)⌉` times (SWIM §4.1, memberlist `RetransmitMult`).
        /// Default 4.
        public var retransmitMultiplier: Int = 4 {
            willSet { precondition(newValue >= 1, "retransmitMultiplier MUST be >= 1") }
        }

        /// How often queued updates are also pushed to ``gossipFanout`` random members, in addition to
        /// piggybacking on probes; `nil` disables it (pure SWIM). Default 200 ms.
        public var gossipInterval: Duration? = .milliseconds(200)

        /// Members per gossip round. Default 3.
        public var gossipFanout: Int = 3 {
            willSet { precondition(newValue >= 0, "gossipFanout MUST be >= 0") }
        }

        /// Members dead for less than this still receive gossip rounds, so they learn of their death and can
        /// refute it. Default 30 s.
        public var gossipToTheDeadTime: Duration = .seconds(30)

        /// Base interval between periodic push-pull syncs (a full-state exchange over TCP); scaled up with
        /// the cluster size above 32 members like memberlist's `pushPullScale`. `nil` disables. Default 30 s.
        public var pushPullInterval: Duration? = .seconds(30)

        /// The shortest time between two push-pull requests caused by one newer state version. Default 2 s.
        public var stateFetchBackoff: Duration = .seconds(2)

        /// How long dead and left members stay as tombstones before they are forgotten. Default 1 h.
        public var deadMemberRetention: Duration = .seconds(3600)

        /// Lifeguard switches and limits.
        public var lifeguard: Lifeguard = Lifeguard()

        /// The largest packet produced, in bytes, including the authentication tag. Default 1400 (fits a
        /// 1500-byte Ethernet MTU after IP and UDP headers, memberlist `UDPBufferSize`).
        public var packetBudget: Int = 1400 {
            willSet { precondition(newValue >= 512, "packetBudget MUST be >= 512") }
        }

        /// The length of the tag the shell's authenticator appends to each packet (32 for HMAC-SHA256, 0
        /// when unauthenticated). Counted inside ``packetBudget``.
        public var authenticationTagLength: Int = 32 {
            willSet { precondition(newValue >= 0 && newValue <= 64, "authenticationTagLength MUST be 0...64") }
        }

        /// State entries up to this many bytes travel inline in packets; bigger ones only as a digest
        /// followed by a push-pull. Default 256.
        public var maxInlineStateBytes: Int = 256 {
            willSet { precondition(newValue >= 0 && newValue <= 700, "maxInlineStateBytes MUST be 0...700") }
        }

        /// Lifeguard's three mechanisms (arXiv 1707.00788), each switchable for comparison.
        public struct Lifeguard: Sendable, Hashable {
            /// Local health multiplier (IV.A): failed probes and refutations raise a score that stretches our
            /// probe timeout and period; successful probes lower it. Relays send nacks. Default on.
            public var localHealth: Bool = true
            /// The score's ceiling: timeouts are stretched at most `maxLocalHealthMultiplier`-fold. Default 8.
            public var maxLocalHealthMultiplier: Int = 8 {
                willSet { precondition(newValue >= 1, "maxLocalHealthMultiplier MUST be >= 1") }
            }
            /// Dynamic suspicion timeout (IV.B): start at the maximum, shrink with confirmations. Default on.
            public var dynamicSuspicion: Bool = true
            /// Buddy system (IV.C): a ping to a suspect carries the suspicion first. Default on.
            public var buddySystem: Bool = true

            /// All three mechanisms on.
            public init() {}

            /// All three mechanisms off: plain SWIM with the minimum suspicion timeout.
            public static var disabled: Lifeguard {
                var l = Lifeguard()
                l.localHealth = false
                l.dynamicSuspicion = false
                l.buddySystem = false
                return l
            }
        }

        /// The defaults (memberlist `DefaultLANConfig`).
        public init() {}

        /// A data-centre LAN: the defaults.
        public static var lan: Configuration { Configuration() }

        /// A WAN (memberlist `DefaultWANConfig`): slower probes, longer suspicion.
        public static var wan: Configuration {
            var c = Configuration()
            c.probeInterval = .seconds(5)
            c.probeTimeout = .seconds(3)
            c.suspicionMultiplier = 6
            c.gossipInterval = .milliseconds(500)
            c.gossipFanout = 4
            c.gossipToTheDeadTime = .seconds(60)
            c.pushPullInterval = .seconds(60)
            return c
        }

        /// Processes on one host or loopback test clusters (memberlist `DefaultLocalConfig`): fast
        /// dissemination, short timeouts.
        public static var localTest: Configuration {
            var c = Configuration()
            c.probeInterval = .seconds(1)
            c.probeTimeout = .milliseconds(200)
            c.suspicionMultiplier = 3
            c.retransmitMultiplier = 2
            c.gossipInterval = .milliseconds(100)
            c.gossipToTheDeadTime = .seconds(15)
            c.pushPullInterval = .seconds(15)
            c.stateFetchBackoff = .milliseconds(500)
            return c
        }

        /// Checks the relations between fields that single-field checks cannot see.
        public func validate() throws(ConfigurationError) {
            if probeTimeout >= probeInterval {
                throw ConfigurationError(message: "probeTimeout MUST be < probeInterval")
            }
            if maxSuspicionTimeout < minSuspicionTimeout {
                throw ConfigurationError(message: "maxSuspicionTimeout MUST be >= minSuspicionTimeout")
            }
        }
    }

    /// An inconsistent ``Gossip/Configuration``.
    public struct ConfigurationError: Error, Hashable, Sendable, CustomStringConvertible {
        /// What is wrong.
        public var message: String
        public var description: String { message }
    }
}

// MARK: - Formulas (SWIM, Lifeguard, memberlist util.go), pure and table-tested.

extension Gossip {
    /// The protocol's small formulas, kept as pure functions so they can be tested with tables.
    public enum Formula {
        /// Times an update is piggybacked: `λ · ⌈log10(n + 1)⌉` (SWIM §4.1's "λ log n").
        public static func retransmitLimit(multiplier: Int, memberCount n: Int) -> Int {
            multiplier * ceilingLog10(max(0, n) + 1)
        }

        /// ⌈log10(x)⌉ for x ≥ 1 (0 for x = 1).
        static func ceilingLog10(_ x: Int) -> Int {
            var power = 1
            var digits = 0
            while power < x {
                power *= 10
                digits += 1
            }
            return digits
        }

        /// The minimum suspicion timeout: `α · max(1, log10(n)) · interval`.
        public static func minSuspicionTimeout(multiplier: Int, memberCount n: Int, probeInterval: Duration)
            -> Duration
        {
            let scale = max(1.0, log10(Double(max(1, n))))
            return probeInterval.gossipScaled(by: Double(multiplier) * scale)
        }

        /// Lifeguard IV.B: the suspicion timeout after `confirmations` of `expected` independent suspicions,
        /// `max(min, max − (max − min) · log(c + 1) / log(k + 1))`.
        public static func suspicionTimeout(min: Duration, max: Duration, confirmations: Int, expected: Int)
            -> Duration
        {
            guard expected >= 1, max > min else { return min }
            let fraction = naturalLog(Double(confirmations + 1)) / naturalLog(Double(expected + 1))
            let span = Double((max - min).gossipNanoseconds)
            let timeout = Double(max.gossipNanoseconds) - span * Swift.min(1.0, fraction)
            return Swift.max(min, .nanoseconds(Int64(timeout.rounded())))
        }

        /// Periodic push-pull interval scaled for large clusters (memberlist `pushPullScale`):
        /// `interval · (⌈log2(n) − log2(32)⌉ + 1)` above 32 members.
        public static func pushPullInterval(_ interval: Duration, memberCount n: Int) -> Duration {
            guard n > 32 else { return interval }
            let multiplier = (log2(Double(n)) - 5.0).rounded(.up) + 1
            return interval.gossipScaled(by: multiplier)
        }

        /// ln(x) for x > 0 without Foundation: exponent · ln 2 plus an atanh series on the significand.
        public static func naturalLog(_ x: Double) -> Double {
            precondition(x > 0)
            let exponent = Double(x.exponent)
            let s = x.significand  // in [1, 2)
            let y = (s - 1) / (s + 1)
            let y2 = y * y
            var term = y
            var sum = 0.0
            var k = 1.0
            while k < 60 {
                sum += term / k
                term *= y2
                k += 2
            }
            return exponent * 0.693_147_180_559_945_3 + 2 * sum
        }

        static func log10(_ x: Double) -> Double { naturalLog(x) / 2.302_585_092_994_045_7 }
        static func log2(_ x: Double) -> Double { naturalLog(x) / 0.693_147_180_559_945_3 }
    }
}
