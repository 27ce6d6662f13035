import Foundation
import Synchronization

/// A temporary directory removed when the value is released. For tests only.
public final class TemporaryDirectory: Sendable {
    /// The directory's path.
    public let path: String

    public init(_ prefix: String = "cloud-test") {
        let base = FileManager.default.temporaryDirectory.path
        self.path = base + "/" + prefix + "-" + UUID().uuidString
        try! FileManager.default.createDirectory(atPath: self.path, withIntermediateDirectories: true)
    }

    deinit {
        try? FileManager.default.removeItem(atPath: self.path)
    }
}

/// A wall clock that moves only when told to, in milliseconds since the epoch. For tests only.
public final class ManualClock: Sendable {
    private let current: Mutex<UInt64>

    public init(milliseconds: UInt64 = 1_700_000_000_000) {
        self.current = Mutex(milliseconds)
    }

    /// The current time.
    public var milliseconds: UInt64 { self.current.withLock { $0 } }

    /// Moves the clock forward.
    public func advance(by duration: Duration) {
        let ms = UInt64(duration.components.seconds) * 1000 + UInt64(duration.components.attoseconds / 1_000_000_000_000_000)
        self.current.withLock { $0 += ms }
    }
}

/// Deterministic pseudo-random bytes (SplitMix64), so tests can regenerate what they wrote.
public struct SeededBytes: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { self.state = seed }

    public mutating func next() -> UInt64 {
        self.state &+= 0x9E37_79B9_7F4A_7C15
        var z = self.state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// `count` pseudo-random bytes.
    public mutating func bytes(_ count: Int) -> [UInt8] {
        var result = [UInt8](repeating: 0, count: count)
        var index = 0
        while index < count {
            var value = self.next()
            for _ in 0..<8 where index < count {
                result[index] = UInt8(truncatingIfNeeded: value)
                value >>= 8
                index += 1
            }
        }
        return result
    }
}
