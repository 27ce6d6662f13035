import Gossip

/// Counters kept by the shell itself (the instance keeps the protocol's own).
struct ShellCounters: Sendable {
    /// Datagrams dropped because they failed to decode, by `DecodeError.shortDescription`.
    var decodeFailures: [String: Int] = [:]
    /// Datagrams that decoded and went to the instance.
    var datagramsReceived = 0
    /// Packets not sent because their address is malformed or does not resolve.
    var unresolvableAddresses = 0
    /// Completed push-pulls we initiated / answered.
    var pushPullsInitiated = 0
    var pushPullsServed = 0
    /// Failed push-pulls by direction ("outbound", "inbound") and `PushPullFailure.shortDescription`.
    var pushPullFailures: [String: Int] = [:]

    static func failureKey(direction: String, _ failure: PushPullFailure) -> String {
        "\(direction)|\(failure.shortDescription)"
    }
}

/// A cumulative histogram of durations, in seconds.
struct DurationHistogram: Sendable {
    /// Upper bounds in seconds: 0.5 ms … 5 s.
    static let bounds: [Double] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]

    private(set) var counts = [Int](repeating: 0, count: DurationHistogram.bounds.count)
    private(set) var count = 0
    private(set) var sum = 0.0

    mutating func record(_ samples: [Duration]) {
        for sample in samples {
            let (seconds, attoseconds) = sample.components
            let value = Double(seconds) + Double(attoseconds) * 1e-18
            count += 1
            sum += value
            for (index, bound) in Self.bounds.enumerated() where value <= bound {
                counts[index] += 1
            }
        }
    }
}

enum PrometheusText {
    /// Renders the text exposition format (version 0.0.4); every name starts with `cloud_gossip_`.
    static func render(metrics m: Gossip.Metrics, shell: ShellCounters, rtt: DurationHistogram) -> String {
        var out = ""
        func family(_ name: String, _ type: String, _ help: String) {
            out += "# HELP cloud_gossip_\(name) \(help)\n# TYPE cloud_gossip_\(name) \(type)\n"
        }
        func sample(_ name: String, _ labels: String = "", _ value: some CustomStringConvertible) {
            out += "cloud_gossip_\(name)\(labels.isEmpty ? "" : "{\(labels)}") \(value)\n"
        }
        func single(_ name: String, _ type: String, _ help: String, _ value: some CustomStringConvertible) {
            family(name, type, help)
            sample(name, "", value)
        }

        family("members", "gauge", "Members known locally, self included, by state.")
        sample("members", "state=\"alive\"", m.alive)
        sample("members", "state=\"suspect\"", m.suspect)
        sample("members", "state=\"dead\"", m.dead)
        sample("members", "state=\"left\"", m.left)
        single(
            "local_health_multiplier", "gauge", "Lifeguard local health multiplier (1 = healthy).",
            m.localHealthMultiplier)

        family("probes_total", "counter", "Direct probes by outcome.")
        sample("probes_total", "result=\"sent\"", m.probesSent)
        sample("probes_total", "result=\"acked\"", m.probesAcked)
        sample("probes_total", "result=\"failed\"", m.probesFailed)
        single("indirect_probes_total", "counter", "Ping requests sent to relays.", m.indirectProbesSent)
        single("relayed_pings_total", "counter", "Pings sent on behalf of other members.", m.relayedPings)
        single("nacks_received_total", "counter", "Nacks received from relays.", m.nacksReceived)
        single("suspicions_raised_total", "counter", "Suspicions raised by our own failed probes.", m.suspicionsRaised)
        single(
            "suspicions_started_total", "counter", "Suspicion timers started (ours and learned).",
            m.suspicionsStarted)
        single("refutations_total", "counter", "Suspicions or deaths about ourselves refuted.", m.refutations)
        single(
            "declared_dead_total", "counter", "Members our own suspicion timer declared dead.",
            m.membersDeclaredDead)
        single(
            "identity_conflicts_total", "counter", "Another process claims our id with a higher uid.",
            m.identityConflicts)

        family("messages_total", "counter", "Gossip packets by direction.")
        sample("messages_total", "direction=\"sent\"", m.messagesSent)
        sample("messages_total", "direction=\"received\"", m.messagesReceived)
        family("decode_failures_total", "counter", "Datagrams dropped because they failed to decode, by reason.")
        let reasons: [Gossip.DecodeError] = [
            .truncated, .unsupportedVersion, .unknownType, .badAuthentication, .invalidString, .trailingBytes,
            .invalidValue,
        ]
        var known = Set<String>()
        for reason in reasons.map(\.shortDescription) {
            known.insert(reason)
            sample("decode_failures_total", "reason=\"\(reason)\"", shell.decodeFailures[reason] ?? 0)
        }
        for (reason, count) in shell.decodeFailures.sorted(by: { $0.key < $1.key }) where !known.contains(reason) {
            sample("decode_failures_total", "reason=\"\(reason)\"", count)
        }
        single(
            "unresolvable_addresses_total", "counter", "Packets not sent: the address did not resolve.",
            shell.unresolvableAddresses)

        family("push_pulls_requested_total", "counter", "Push-pulls the protocol asked for, by cause.")
        sample("push_pulls_requested_total", "cause=\"any\"", m.pushPullsRequested)
        sample("push_pulls_requested_total", "cause=\"state_fetch\"", m.stateFetchesRequested)
        family("push_pulls_total", "counter", "Completed push-pull exchanges by direction.")
        sample("push_pulls_total", "direction=\"outbound\"", shell.pushPullsInitiated)
        sample("push_pulls_total", "direction=\"inbound\"", shell.pushPullsServed)
        family("push_pull_failures_total", "counter", "Failed push-pull exchanges by direction and reason.")
        for direction in ["outbound", "inbound"] {
            for failure in PushPullFailure.all {
                let key = ShellCounters.failureKey(direction: direction, failure)
                sample(
                    "push_pull_failures_total",
                    "direction=\"\(direction)\",reason=\"\(failure.shortDescription)\"",
                    shell.pushPullFailures[key] ?? 0)
            }
        }
        single(
            "malformed_push_pull_payloads_total", "counter", "Authentic push-pull payloads that failed to decode.",
            m.malformedPayloads)

        family("probe_rtt_seconds", "histogram", "Round trip of answered direct probes.")
        for (index, bound) in DurationHistogram.bounds.enumerated() {
            sample("probe_rtt_seconds_bucket", "le=\"\(bound)\"", rtt.counts[index])
        }
        sample("probe_rtt_seconds_bucket", "le=\"+Inf\"", rtt.count)
        sample("probe_rtt_seconds_sum", "", rtt.sum)
        sample("probe_rtt_seconds_count", "", rtt.count)
        return out
    }
}
