/// Lowercase hexadecimal encoding and tolerant-case decoding.
public enum Hex {
    private static let digits: [UInt8] = Array("0123456789abcdef".utf8)

    /// Encodes `bytes` as lowercase hex, two characters per byte.
    public static func encode(_ bytes: some Sequence<UInt8>) -> String {
        if let result = bytes.withContiguousStorageIfAvailable({ encode(UnsafeRawBufferPointer($0)) }) {
            return result
        }
        return encode(Array(bytes))
    }

    /// Encodes `bytes` as lowercase hex, two characters per byte.
    public static func encode(_ bytes: UnsafeRawBufferPointer) -> String {
        if bytes.isEmpty { return "" }
        return String(unsafeUninitializedCapacity: bytes.count * 2) { out in
            digits.withUnsafeBufferPointer { table in
                var i = 0
                for byte in bytes {
                    out[i] = table[Int(byte >> 4)]
                    out[i + 1] = table[Int(byte & 0x0F)]
                    i += 2
                }
            }
            return bytes.count * 2
        }
    }

    /// Decodes hex text (upper or lower case).
    /// - Returns: the bytes, or `nil` when the length is odd or a character is not a hex digit.
    public static func decode(_ text: some StringProtocol) -> [UInt8]? {
        let utf8 = text.utf8
        if let result = utf8.withContiguousStorageIfAvailable({ decode(utf8: $0) }) {
            return result
        }
        return Array(utf8).withUnsafeBufferPointer { decode(utf8: $0) }
    }

    private static func decode(utf8: UnsafeBufferPointer<UInt8>) -> [UInt8]? {
        guard utf8.count % 2 == 0 else { return nil }
        var failed = false
        let result = [UInt8](unsafeUninitializedCapacity: utf8.count / 2) { out, count in
            var i = 0
            while i < utf8.count {
                guard let hi = nibble(utf8[i]), let lo = nibble(utf8[i + 1]) else {
                    failed = true
                    break
                }
                out[i / 2] = hi << 4 | lo
                i += 2
            }
            count = failed ? 0 : utf8.count / 2
        }
        return failed ? nil : result
    }

    @inline(__always)
    static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c &- UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c &- UInt8(ascii: "a") &+ 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c &- UInt8(ascii: "A") &+ 10
        default: nil
        }
    }
}
