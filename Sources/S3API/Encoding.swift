#if canImport(Glibc)
import Glibc
#endif
public import Foundation

/// Percent-encoding as S3 uses it.
enum URLEncoding {
    /// Decodes `%XX` escapes (and `+` as space when `plusAsSpace`); nil for a bad escape or bad UTF-8.
    static func decode(_ text: Substring, plusAsSpace: Bool = false) -> String? {
        // Most names and values have nothing to decode.
        if !text.utf8.contains(where: { $0 == UInt8(ascii: "%") || (plusAsSpace && $0 == UInt8(ascii: "+")) }) {
            return String(text)
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count)
        var iterator = text.utf8.makeIterator()
        while let byte = iterator.next() {
            if byte == UInt8(ascii: "%") {
                guard let high = iterator.next().flatMap(hexValue), let low = iterator.next().flatMap(hexValue) else {
                    return nil
                }
                bytes.append(high << 4 | low)
            } else if plusAsSpace && byte == UInt8(ascii: "+") {
                bytes.append(0x20)
            } else {
                bytes.append(byte)
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    /// Encodes everything but unreserved characters (and `/` when `keepSlash`), as S3 does for
    /// `encoding-type=url`.
    static func encode(_ text: String, keepSlash: Bool = true) -> String {
        var result = ""
        result.reserveCapacity(text.utf8.count)
        let digits = Array("0123456789ABCDEF".utf8)
        var bytes: [UInt8] = []
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."),
                UInt8(ascii: "~"):
                bytes.append(byte)
            case UInt8(ascii: "/") where keepSlash:
                bytes.append(byte)
            default:
                bytes.append(UInt8(ascii: "%"))
                bytes.append(digits[Int(byte >> 4)])
                bytes.append(digits[Int(byte & 0xF)])
            }
        }
        result = String(decoding: bytes, as: UTF8.self)
        return result
    }

    /// Parses a raw query string into decoded name/value pairs, in order.
    static func parseQuery(_ raw: String) -> [(String, String)]? {
        guard !raw.isEmpty else { return [] }
        var result: [(String, String)] = []
        for pair in raw.split(separator: "&", omittingEmptySubsequences: true) {
            if let equals = pair.firstIndex(of: "=") {
                guard let name = decode(pair[..<equals], plusAsSpace: true),
                    let value = decode(pair[pair.index(after: equals)...], plusAsSpace: true)
                else { return nil }
                result.append((name, value))
            } else {
                guard let name = decode(pair, plusAsSpace: true) else { return nil }
                result.append((name, ""))
            }
        }
        return result
    }
}

/// The date formats of S3: RFC 1123 in headers, ISO 8601 with milliseconds in XML.
public enum HTTPDate {
    private static let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    private static func components(_ date: Date) -> tm {
        var seconds = time_t(date.timeIntervalSince1970.rounded(.down))
        var parts = tm()
        gmtime_r(&seconds, &parts)
        return parts
    }

    private static func pad(_ value: Int32, _ width: Int = 2) -> String {
        let text = String(value)
        return text.count >= width ? text : String(repeating: "0", count: width - text.count) + text
    }

    /// `Wed, 12 Oct 2009 17:50:00 GMT`
    public static func rfc1123(_ date: Date) -> String {
        let t = components(date)
        return "\(days[Int(t.tm_wday)]), \(pad(t.tm_mday)) \(months[Int(t.tm_mon)]) \(t.tm_year + 1900) "
            + "\(pad(t.tm_hour)):\(pad(t.tm_min)):\(pad(t.tm_sec)) GMT"
    }

    /// `2009-10-12T17:50:30.000Z`. Whole seconds, like `Last-Modified`, so that a listing and a HEAD
    /// of the same object agree.
    public static func iso8601(_ date: Date) -> String {
        let t = components(date)
        return "\(t.tm_year + 1900)-\(pad(t.tm_mon + 1))-\(pad(t.tm_mday))T\(pad(t.tm_hour)):\(pad(t.tm_min)):\(pad(t.tm_sec)).000Z"
    }

    /// Parses an HTTP date (RFC 1123, RFC 850 or asctime) or ISO 8601; nil when it is none of them.
    public static func parse(_ text: String) -> Date? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        if let date = parseISO8601(trimmed) { return date }
        // Tokens without the weekday: "06 Nov 1994 08:49:37 GMT", "06-Nov-94 08:49:37 GMT", "Nov  6 08:49:37 1994".
        var tokens = trimmed.split(whereSeparator: { $0 == " " || $0 == "," }).map(String.init)
        guard tokens.count >= 4 else { return nil }
        if tokens[0].count >= 3, days.contains(where: { tokens[0].hasPrefix($0) }) { tokens.removeFirst() }
        var day: Int32?
        var month: Int32?
        var year: Int32?
        var clock: [Int32] = []
        if tokens.count >= 3, let monthIndex = months.firstIndex(of: tokens[0]) {
            // asctime: Nov 6 08:49:37 1994
            month = Int32(monthIndex)
            day = Int32(tokens[1])
            clock = tokens[2].split(separator: ":").compactMap { Int32($0) }
            year = tokens.count > 3 ? Int32(tokens[3]) : nil
        } else if tokens[0].contains("-") {
            // RFC 850: 06-Nov-94 08:49:37 GMT
            let parts = tokens[0].split(separator: "-").map(String.init)
            guard parts.count == 3, let monthIndex = months.firstIndex(of: parts[1]) else { return nil }
            day = Int32(parts[0])
            month = Int32(monthIndex)
            if let short = Int32(parts[2]) { year = short < 100 ? (short < 70 ? 2000 + short : 1900 + short) : short }
            clock = tokens[1].split(separator: ":").compactMap { Int32($0) }
        } else if tokens.count >= 4, let monthIndex = months.firstIndex(of: tokens[1]) {
            day = Int32(tokens[0])
            month = Int32(monthIndex)
            year = Int32(tokens[2])
            clock = tokens[3].split(separator: ":").compactMap { Int32($0) }
        }
        guard let day, let month, let year, clock.count == 3 else { return nil }
        return make(year: year, month: month, day: day, hour: clock[0], minute: clock[1], second: clock[2])
    }

    private static func parseISO8601(_ text: String) -> Date? {
        // 2009-10-12T17:50:30(.000)Z or 20091012T175030Z
        guard text.hasSuffix("Z") else { return nil }
        var body = String(text.dropLast())
        if let dot = body.firstIndex(of: ".") { body = String(body[..<dot]) }
        let digits = body.filter { $0.isNumber }
        guard digits.count == 14, body.contains("T") else { return nil }
        let d = Array(digits)
        func number(_ range: Range<Int>) -> Int32 { Int32(String(d[range]))! }
        return make(year: number(0..<4), month: number(4..<6) - 1, day: number(6..<8), hour: number(8..<10), minute: number(10..<12), second: number(12..<14))
    }

    private static func make(year: Int32, month: Int32, day: Int32, hour: Int32, minute: Int32, second: Int32) -> Date? {
        guard (0...11).contains(month), (1...31).contains(day), (0...23).contains(hour), (0...59).contains(minute), (0...60).contains(second) else {
            return nil
        }
        var parts = tm()
        parts.tm_year = year - 1900
        parts.tm_mon = month
        parts.tm_mday = day
        parts.tm_hour = hour
        parts.tm_min = minute
        parts.tm_sec = second
        return Date(timeIntervalSince1970: TimeInterval(timegm(&parts)))
    }
}
