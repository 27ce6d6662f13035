import Foundation

/// The engine's multiplexed log stream (containers without a TTY): frames of an 8-byte header
/// (stream 1 = stdout, 2 = stderr; 3 bytes of zero; a big-endian UInt32 length) and the payload.
public enum LogFrames {
    /// One line of a container's output.
    public struct Line: Sendable, Equatable {
        public enum Stream: String, Sendable { case stdout, stderr }
        public var stream: Stream
        /// The engine's RFC 3339 timestamp with nanoseconds, when asked for (`timestamps=1`).
        public var timestamp: String?
        public var text: String

        public init(stream: Stream, timestamp: String?, text: String) {
            self.stream = stream
            self.timestamp = timestamp
            self.text = text
        }
    }

    /// Splits a stream into lines.
    /// - Parameters:
    ///   - bytes: The stream as read; a cut last frame is dropped.
    ///   - timestamps: Each line starts with the engine's timestamp and a space.
    /// - Returns: The lines in order, without their newlines.
    public static func lines(_ bytes: [UInt8], timestamps: Bool) -> [Line] {
        var lines: [Line] = []
        var pending: [LogFrames.Line.Stream: [UInt8]] = [:]
        var offset = 0
        while offset + 8 <= bytes.count {
            let kind = bytes[offset]
            let length = Int(bytes[offset + 4]) << 24 | Int(bytes[offset + 5]) << 16 | Int(bytes[offset + 6]) << 8 | Int(bytes[offset + 7])
            let start = offset + 8
            guard start + length <= bytes.count else { break }
            let stream: Line.Stream = kind == 2 ? .stderr : .stdout
            var buffer = pending[stream, default: []] + bytes[start..<start + length]
            while let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                lines.append(Self.line(Array(buffer[..<newline]), stream: stream, timestamps: timestamps))
                buffer.removeSubrange(...newline)
            }
            pending[stream] = buffer
            offset = start + length
        }
        for stream in [Line.Stream.stdout, .stderr] {
            if let rest = pending[stream], !rest.isEmpty { lines.append(Self.line(rest, stream: stream, timestamps: timestamps)) }
        }
        return lines
    }

    private static func line(_ bytes: [UInt8], stream: Line.Stream, timestamps: Bool) -> Line {
        let text = String(decoding: bytes, as: UTF8.self)
        guard timestamps, let space = text.firstIndex(of: " ") else { return Line(stream: stream, timestamp: nil, text: text) }
        return Line(stream: stream, timestamp: String(text[..<space]), text: String(text[text.index(after: space)...]))
    }

    /// A time to the nanosecond, as the engine stamps log lines (`2026-12-07T10:00:00.123456789Z`).
    public struct Instant: Sendable, Comparable {
        public var seconds: Int64
        /// 0 to 999 999 999.
        public var nanoseconds: Int64

        /// Parses an RFC 3339 time in UTC with 0 to 9 digits of fraction; nil for anything else.
        public init?(rfc3339 text: String) {
            guard text.utf8.count >= 20, text.hasSuffix("Z") else { return nil }
            let formatter = ISO8601DateFormatter()
            formatter.formatOptions = [.withInternetDateTime]
            guard let date = formatter.date(from: String(text.prefix(19)) + "Z") else { return nil }
            let fraction = text.dropFirst(19).dropLast()
            var nanoseconds: Int64 = 0
            if !fraction.isEmpty {
                let digits = fraction.dropFirst()
                guard fraction.hasPrefix("."), (1...9).contains(digits.count), digits.allSatisfy({ $0.isASCII && $0.isNumber }),
                    let value = Int64(digits + String(repeating: "0", count: 9 - digits.count))
                else { return nil }
                nanoseconds = value
            }
            self.seconds = Int64(date.timeIntervalSince1970)
            self.nanoseconds = nanoseconds
        }

        public static func < (lhs: Self, rhs: Self) -> Bool { (lhs.seconds, lhs.nanoseconds) < (rhs.seconds, rhs.nanoseconds) }

        /// The engine's form of a time in a query (`seconds.nanoseconds`).
        var engineText: String {
            let fraction = String(self.nanoseconds)
            return "\(self.seconds)." + String(repeating: "0", count: 9 - fraction.count) + fraction
        }
    }

    /// The lines stamped after `instant` (a line without a readable stamp is kept).
    public static func lines(_ lines: [Line], after instant: Instant) -> [Line] {
        lines.filter { line in line.timestamp.flatMap(Instant.init(rfc3339:)).map { $0 > instant } ?? true }
    }
}
