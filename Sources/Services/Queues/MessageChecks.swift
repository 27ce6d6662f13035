import Hashing
import ServiceContract

/// The checks and digests SQS defines for messages, shared by the REST API and the SQS endpoint.
enum MessageChecks {
    /// The largest message (body plus attributes) any queue takes: 256 KiB.
    static let maximumMessageBytes: Int64 = 262_144
    /// The most attributes one message carries.
    static let maximumAttributes = 10

    /// Whether every character is one SQS accepts in a body or attribute value: `#x9 | #xA | #xD |
    /// #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF` (the XML 1.0 characters).
    static func isAllowedText(_ text: String) -> Bool {
        text.unicodeScalars.allSatisfy { scalar in
            switch scalar.value {
            case 0x9, 0xA, 0xD, 0x20...0xD7FF, 0xE000...0xFFFD, 0x10000...0x10FFFF: true
            default: false
            }
        }
    }

    /// The bytes a message counts against its queue's maximum: the body's UTF-8 plus each attribute's
    /// name, data type and value.
    static func size(body: String, attributes: [(String, MessageAttribute)]) -> Int64 {
        var total = body.utf8.count
        for (name, attribute) in attributes {
            total += name.utf8.count + attribute.dataType.utf8.count
            total += attribute.binary?.count ?? attribute.string?.utf8.count ?? 0
        }
        return Int64(total)
    }

    /// The hex MD5 of the body's UTF-8 (`MD5OfMessageBody`; clients check it).
    static func bodyMD5(_ body: String) -> String { Hex.encode(Digests.md5(Array(body.utf8))) }

    /// `MD5OfMessageAttributes` as SQS defines it: the attributes sorted by name, each as its name,
    /// data type and value (each length-prefixed with 4 big-endian bytes) with a transport byte (1 for
    /// strings and numbers, 2 for binary) before the value; nil when there are none.
    static func attributesMD5(_ attributes: [(String, MessageAttribute)]) -> String? {
        guard !attributes.isEmpty else { return nil }
        var bytes: [UInt8] = []
        func append(_ part: [UInt8]) {
            let count = UInt32(part.count)
            bytes += [UInt8(count >> 24 & 0xff), UInt8(count >> 16 & 0xff), UInt8(count >> 8 & 0xff), UInt8(count & 0xff)]
            bytes += part
        }
        for (name, attribute) in attributes.sorted(by: { $0.0.utf8.lexicographicallyPrecedes($1.0.utf8) }) {
            append(Array(name.utf8))
            append(Array(attribute.dataType.utf8))
            if attribute.isBinary {
                bytes.append(2)
                append(attribute.binary ?? [])
            } else {
                bytes.append(1)
                append(Array((attribute.string ?? "").utf8))
            }
        }
        return Hex.encode(Digests.md5(bytes))
    }

    /// Checks one message's attributes: at most 10, names of letters, digits, `_ - .` (1 to 256, not
    /// starting with `AWS.` or `Amazon.`, no `..`, not starting or ending with `.`), data types
    /// `String`, `Number` or `Binary` with an optional `.label`, values present and of allowed characters.
    static func checkAttributes(_ attributes: [(String, MessageAttribute)]) throws(QueuesError) {
        guard attributes.count <= Self.maximumAttributes else {
            throw QueuesError.invalidMessage("a message has at most \(Self.maximumAttributes) attributes; this one has \(attributes.count)")
        }
        var seen = Set<String>()
        for (name, attribute) in attributes {
            guard name.isName(maxLength: 256, allowing: "_-."), !name.hasPrefix("."), !name.hasSuffix("."), !name.contains(".."),
                !name.lowercased().hasPrefix("aws."), !name.lowercased().hasPrefix("amazon.")
            else {
                throw QueuesError.invalidMessage(
                    "\"\(name.prefix(80))\" is not an attribute name: 1 to 256 of letters, digits, _ - and ., not starting with AWS. or Amazon.")
            }
            guard seen.insert(name).inserted else { throw QueuesError.invalidMessage("the attribute \(name) is given twice") }
            let base = attribute.dataType.split(separator: ".", maxSplits: 1).first.map(String.init) ?? ""
            guard ["String", "Number", "Binary"].contains(base), attribute.dataType.utf8.count <= 256 else {
                throw QueuesError.invalidMessage("the attribute \(name) has data type \"\(attribute.dataType.prefix(80))\"; use String, Number or Binary (optionally with .label)")
            }
            if base == "Binary" {
                guard attribute.binary != nil else { throw QueuesError.invalidMessage("the Binary attribute \(name) needs a BinaryValue") }
            } else {
                guard let value = attribute.string, !value.isEmpty else {
                    throw QueuesError.invalidMessage("the attribute \(name) needs a StringValue")
                }
                guard Self.isAllowedText(value) else {
                    throw QueuesError.invalidCharacters("the value of attribute \(name)")
                }
                if base == "Number", Double(value) == nil {
                    throw QueuesError.invalidMessage("the Number attribute \(name) is not a number: \(value.prefix(40))")
                }
            }
        }
    }

    /// A message id in the form SQS uses (a random UUID, lowercase).
    static func newMessageID() -> String {
        let hex = Hex.encode(SecureRandom.bytes(16))
        let characters = Array(hex)
        func part(_ range: Range<Int>) -> String { String(characters[range]) }
        return "\(part(0..<8))-\(part(8..<12))-4\(part(13..<16))-a\(part(17..<20))-\(part(20..<32))"
    }
}
