/// Standard base64 (RFC 4648 §4, `+/` alphabet, `=` padding), as used by Content-MD5 and `x-amz-checksum-*`.
public enum Base64 {
    private static let alphabet: [UInt8] = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    /// 0...63 for alphabet bytes, 0xFF otherwise.
    private static let reverse: [UInt8] = {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (index, c) in alphabet.enumerated() { table[Int(c)] = UInt8(index) }
        return table
    }()

    /// Encodes `bytes` as padded base64.
    public static func encode(_ bytes: [UInt8]) -> String {
        if bytes.isEmpty { return "" }
        let outputCount = (bytes.count + 2) / 3 * 4
        return String(unsafeUninitializedCapacity: outputCount) { out in
            alphabet.withUnsafeBufferPointer { table in
                bytes.withUnsafeBufferPointer { input in
                    var i = 0, o = 0
                    while i + 3 <= input.count {
                        let v = UInt32(input[i]) << 16 | UInt32(input[i + 1]) << 8 | UInt32(input[i + 2])
                        out[o] = table[Int(v >> 18)]
                        out[o + 1] = table[Int(v >> 12 & 63)]
                        out[o + 2] = table[Int(v >> 6 & 63)]
                        out[o + 3] = table[Int(v & 63)]
                        i += 3
                        o += 4
                    }
                    let rest = input.count - i
                    if rest > 0 {
                        let v = UInt32(input[i]) << 16 | (rest == 2 ? UInt32(input[i + 1]) << 8 : 0)
                        out[o] = table[Int(v >> 18)]
                        out[o + 1] = table[Int(v >> 12 & 63)]
                        out[o + 2] = rest == 2 ? table[Int(v >> 6 & 63)] : UInt8(ascii: "=")
                        out[o + 3] = UInt8(ascii: "=")
                    }
                }
            }
            return outputCount
        }
    }

    /// Decodes padded base64.
    ///
    /// Strict about shape: the length must be a multiple of 4, `=` may appear only as the last one or two
    /// characters, and whitespace or URL-safe characters are rejected. Unused low bits in the final
    /// character are ignored, as most decoders do.
    /// - Returns: the bytes, or `nil` for malformed input.
    public static func decode(_ text: String) -> [UInt8]? {
        var text = text
        return text.withUTF8 { decode(utf8: $0) }
    }

    private static func decode(utf8 input: UnsafeBufferPointer<UInt8>) -> [UInt8]? {
        guard input.count % 4 == 0 else { return nil }
        if input.isEmpty { return [] }
        var padding = 0
        if input[input.count - 1] == UInt8(ascii: "=") {
            padding = input[input.count - 2] == UInt8(ascii: "=") ? 2 : 1
        }
        let outputCount = input.count / 4 * 3 - padding
        var failed = false
        let result = reverse.withUnsafeBufferPointer { table in
            [UInt8](unsafeUninitializedCapacity: outputCount) { out, count in
                var i = 0, o = 0
                let dataCount = input.count - padding
                var accumulator: UInt32 = 0
                var bits = 0
                while i < dataCount {
                    let v = table[Int(input[i])]
                    if v == 0xFF {
                        failed = true
                        break
                    }
                    accumulator = accumulator << 6 | UInt32(v)
                    bits += 6
                    if bits >= 8 {
                        bits -= 8
                        out[o] = UInt8(truncatingIfNeeded: accumulator >> UInt32(bits))
                        o += 1
                    }
                    i += 1
                }
                count = failed ? 0 : o
                if !failed && o != outputCount { failed = true }
            }
        }
        return failed ? nil : result
    }
}
