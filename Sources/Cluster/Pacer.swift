/// A token bucket that spaces reads or transfers to a rate (scrub, anti-entropy): after each one,
/// ``consumed(_:now:)`` says how long to wait. Up to one second's worth may go at once (the bucket
/// starts full); a transfer larger than that waits in proportion. Pure: the caller passes the time.
public struct Pacer<Instant: InstantProtocol>: Sendable where Instant.Duration == Swift.Duration {
    private let rate: Double
    private let burst: Double
    private var available: Double
    private var last: Instant?

    /// - Parameter bytesPerSecond: the sustained rate, at least 1.
    public init(bytesPerSecond: Int) {
        precondition(bytesPerSecond > 0, "the rate MUST be positive")
        self.rate = Double(bytesPerSecond)
        self.burst = Double(bytesPerSecond)
        self.available = self.burst
    }

    /// `bytes` were just read at `now`. - Returns: how long to wait before the next read (zero when
    /// the bucket still holds tokens).
    public mutating func consumed(_ bytes: Int, now: Instant) -> Duration {
        if let last {
            let elapsed = last.duration(to: now)
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            self.available = min(self.burst, self.available + max(0, seconds) * self.rate)
        }
        self.last = now
        self.available -= Double(bytes)
        guard self.available < 0 else { return .zero }
        return .nanoseconds(Int64((-self.available / self.rate * 1e9).rounded(.up)))
    }
}
