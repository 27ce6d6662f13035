/// A token bucket for the bytes that repair moves: `rate` bytes per second with bursts of one second's
/// worth. Pure: the caller passes the time and sleeps for what ``take(_:now:)`` returns.
public struct TokenBucket: Sendable {
    /// Bytes per second; 0 means unlimited.
    public let rate: Int
    private var tokens: Double
    private var last: Duration?

    public init(bytesPerSecond rate: Int) {
        self.rate = max(0, rate)
        self.tokens = Double(self.rate)
    }

    /// Takes `bytes` tokens at time `now` (any monotonic clock) and returns how long the caller must
    /// wait before sending them (zero when they were available). Debt is allowed, so a transfer larger
    /// than the burst waits in proportion instead of never going.
    public mutating func take(_ bytes: Int, now: Duration) -> Duration {
        guard self.rate > 0 else { return .zero }
        if let last = self.last {
            let elapsed = Double((now - last).components.seconds) + Double((now - last).components.attoseconds) / 1e18
            self.tokens = min(Double(self.rate), self.tokens + max(0, elapsed) * Double(self.rate))
        }
        self.last = now
        self.tokens -= Double(bytes)
        guard self.tokens < 0 else { return .zero }
        return .nanoseconds(Int64(-self.tokens / Double(self.rate) * 1e9))
    }
}
