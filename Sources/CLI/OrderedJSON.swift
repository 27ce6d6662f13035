import ServiceContract

/// A strict JSON parser (RFC 8259) that keeps the key order of objects, so `-o json`, `-o yaml`
/// and tables show the API's fields in the order the API writes them.
/// (``JSONValue/parse(_:)`` goes through Foundation's decoder, which does not keep it.)
enum OrderedJSON {
    /// The value of the text, or nil when it is not exactly one JSON value (whitespace around it allowed).
    static func parse(_ bytes: [UInt8]) -> JSONValue? {
        var parser = Parser(bytes: bytes)
        guard let value = parser.value(depth: 0) else { return nil }
        parser.skipWhitespace()
        return parser.index == bytes.count ? value : nil
    }

    private struct Parser {
        let bytes: [UInt8]
        var index = 0

        /// Deeper nesting is refused rather than risking the stack.
        static let maximumDepth = 512

        mutating func skipWhitespace() {
            while self.index < self.bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(self.bytes[self.index]) { self.index += 1 }
        }

        mutating func value(depth: Int) -> JSONValue? {
            guard depth < Self.maximumDepth else { return nil }
            self.skipWhitespace()
            guard self.index < self.bytes.count else { return nil }
            switch self.bytes[self.index] {
            case UInt8(ascii: "{"): return self.object(depth: depth)
            case UInt8(ascii: "["): return self.array(depth: depth)
            case UInt8(ascii: "\""): return self.string().map { .string($0) }
            case UInt8(ascii: "t"): return self.literal("true", .bool(true))
            case UInt8(ascii: "f"): return self.literal("false", .bool(false))
            case UInt8(ascii: "n"): return self.literal("null", .null)
            default: return self.number()
            }
        }

        mutating func literal(_ word: String, _ value: JSONValue) -> JSONValue? {
            let expected = Array(word.utf8)
            guard self.index + expected.count <= self.bytes.count, Array(self.bytes[self.index..<self.index + expected.count]) == expected else {
                return nil
            }
            self.index += expected.count
            return value
        }

        mutating func object(depth: Int) -> JSONValue? {
            self.index += 1
            var members: [(String, JSONValue)] = []
            self.skipWhitespace()
            if self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: "}") {
                self.index += 1
                return .object(members)
            }
            while true {
                self.skipWhitespace()
                guard self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: "\""), let key = self.string() else { return nil }
                self.skipWhitespace()
                guard self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: ":") else { return nil }
                self.index += 1
                guard let value = self.value(depth: depth + 1) else { return nil }
                members.append((key, value))
                self.skipWhitespace()
                guard self.index < self.bytes.count else { return nil }
                if self.bytes[self.index] == UInt8(ascii: ",") {
                    self.index += 1
                } else if self.bytes[self.index] == UInt8(ascii: "}") {
                    self.index += 1
                    return .object(members)
                } else {
                    return nil
                }
            }
        }

        mutating func array(depth: Int) -> JSONValue? {
            self.index += 1
            var items: [JSONValue] = []
            self.skipWhitespace()
            if self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: "]") {
                self.index += 1
                return .array(items)
            }
            while true {
                guard let item = self.value(depth: depth + 1) else { return nil }
                items.append(item)
                self.skipWhitespace()
                guard self.index < self.bytes.count else { return nil }
                if self.bytes[self.index] == UInt8(ascii: ",") {
                    self.index += 1
                } else if self.bytes[self.index] == UInt8(ascii: "]") {
                    self.index += 1
                    return .array(items)
                } else {
                    return nil
                }
            }
        }

        /// At the opening quote.
        mutating func string() -> String? {
            self.index += 1
            var scalars = String.UnicodeScalarView()
            var run: [UInt8] = []  // unescaped UTF-8 bytes not yet decoded
            func flush() -> Bool {
                guard !run.isEmpty else { return true }
                guard let text = String(validating: run, as: UTF8.self) else { return false }
                scalars.append(contentsOf: text.unicodeScalars)
                run.removeAll()
                return true
            }
            while self.index < self.bytes.count {
                let byte = self.bytes[self.index]
                self.index += 1
                switch byte {
                case UInt8(ascii: "\""):
                    guard flush() else { return nil }
                    return String(scalars)
                case UInt8(ascii: "\\"):
                    guard flush(), self.index < self.bytes.count else { return nil }
                    let escape = self.bytes[self.index]
                    self.index += 1
                    switch escape {
                    case UInt8(ascii: "\""): scalars.append("\"")
                    case UInt8(ascii: "\\"): scalars.append("\\")
                    case UInt8(ascii: "/"): scalars.append("/")
                    case UInt8(ascii: "b"): scalars.append("\u{08}")
                    case UInt8(ascii: "f"): scalars.append("\u{0C}")
                    case UInt8(ascii: "n"): scalars.append("\n")
                    case UInt8(ascii: "r"): scalars.append("\r")
                    case UInt8(ascii: "t"): scalars.append("\t")
                    case UInt8(ascii: "u"):
                        guard let high = self.hex4() else { return nil }
                        if (0xD800..<0xDC00).contains(high) {
                            guard self.index + 1 < self.bytes.count, self.bytes[self.index] == UInt8(ascii: "\\"),
                                self.bytes[self.index + 1] == UInt8(ascii: "u")
                            else { return nil }
                            self.index += 2
                            guard let low = self.hex4(), (0xDC00..<0xE000).contains(low),
                                let scalar = Unicode.Scalar(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))
                            else { return nil }
                            scalars.append(scalar)
                        } else {
                            guard let scalar = Unicode.Scalar(high) else { return nil }  // a lone low surrogate
                            scalars.append(scalar)
                        }
                    default: return nil
                    }
                case 0..<0x20:
                    return nil  // control characters must be escaped
                default:
                    run.append(byte)
                }
            }
            return nil
        }

        mutating func hex4() -> UInt32? {
            guard self.index + 4 <= self.bytes.count else { return nil }
            var value: UInt32 = 0
            for byte in self.bytes[self.index..<self.index + 4] {
                let digit: UInt32
                switch byte {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(byte - UInt8(ascii: "0"))
                case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(byte - UInt8(ascii: "a") + 10)
                case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(byte - UInt8(ascii: "A") + 10)
                default: return nil
                }
                value = value * 16 + digit
            }
            self.index += 4
            return value
        }

        /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`; an integer that fits Int64 stays one.
        mutating func number() -> JSONValue? {
            let start = self.index
            func digits() -> Int {
                let first = self.index
                while self.index < self.bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(self.bytes[self.index]) { self.index += 1 }
                return self.index - first
            }
            if self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: "-") { self.index += 1 }
            let integerStart = self.index
            let integerDigits = digits()
            guard integerDigits > 0, integerDigits == 1 || self.bytes[integerStart] != UInt8(ascii: "0") else { return nil }
            var integral = true
            if self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: ".") {
                self.index += 1
                guard digits() > 0 else { return nil }
                integral = false
            }
            if self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: "e") || self.bytes[self.index] == UInt8(ascii: "E") {
                self.index += 1
                if self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: "+") || self.bytes[self.index] == UInt8(ascii: "-") {
                    self.index += 1
                }
                guard digits() > 0 else { return nil }
                integral = false
            }
            let text = String(decoding: self.bytes[start..<self.index], as: UTF8.self)
            if integral, let value = Int64(text) { return .int(value) }
            return Double(text).map { .double($0) }
        }
    }
}
