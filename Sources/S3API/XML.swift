import TextEscaping

/// Builds the XML documents S3 responds with.
struct XMLWriter {
    private(set) var text = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"

    init() {}

    /// Opens `<name>` (with the S3 namespace when `namespace` is true).
    mutating func open(_ name: String, namespace: Bool = false) {
        self.text += namespace ? "<\(name) xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">" : "<\(name)>"
    }

    /// Appends markup as is.
    mutating func raw(_ markup: String) {
        self.text += markup
    }

    mutating func close(_ name: String) {
        self.text += "</\(name)>"
    }

    /// Writes `<name>value</name>`, escaping the value.
    mutating func element(_ name: String, _ value: String) {
        self.text += "<\(name)>\(XMLWriter.escape(value))</\(name)>"
    }

    mutating func element(_ name: String, _ value: some BinaryInteger) {
        self.text += "<\(name)>\(value)</\(name)>"
    }

    mutating func element(_ name: String, _ value: Bool) {
        self.text += "<\(name)>\(value ? "true" : "false")</\(name)>"
    }

    /// Writes the element only when `value` is not nil.
    mutating func optional(_ name: String, _ value: String?) {
        if let value { self.element(name, value) }
    }

    mutating func group(_ name: String, namespace: Bool = false, _ body: (inout XMLWriter) -> Void) {
        self.open(name, namespace: namespace)
        body(&self)
        self.close(name)
    }

    static func escape(_ value: String) -> String { XMLText.escape(value) }
}

/// A parsed XML element: name (without namespace prefix), children and text.
struct XMLElement: Equatable {
    var name: String
    var children: [XMLElement] = []
    var text: String = ""

    /// The first child named `name`.
    func child(_ name: String) -> XMLElement? { self.children.first { $0.name == name } }

    /// All children named `name`.
    func children(_ name: String) -> [XMLElement] { self.children.filter { $0.name == name } }
}

/// A small, strict XML parser for request bodies (CompleteMultipartUpload, Delete,
/// CreateBucketConfiguration). It accepts the XML declaration, comments, attributes (ignored),
/// CDATA and the predefined and numeric entities; it rejects DTDs and anything malformed.
struct XMLParser {
    struct Failure: Error {}

    private let bytes: [UInt8]
    private var index = 0
    private var depth = 0
    private static let maxDepth = 32

    /// Parses `bytes` into its root element.
    static func parse(_ bytes: [UInt8]) throws -> XMLElement {
        var parser = XMLParser(bytes: bytes)
        parser.skipProlog()
        guard parser.peek() == UInt8(ascii: "<") else { throw Failure() }
        let root = try parser.parseElement()
        parser.skipMisc()
        guard parser.index == parser.bytes.count else { throw Failure() }
        return root
    }

    private init(bytes: [UInt8]) {
        // Skip a UTF-8 byte order mark.
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) {
            self.bytes = Array(bytes.dropFirst(3))
        } else {
            self.bytes = bytes
        }
    }

    private func peek(_ offset: Int = 0) -> UInt8? {
        self.index + offset < self.bytes.count ? self.bytes[self.index + offset] : nil
    }

    private func starts(with literal: String) -> Bool {
        let utf8 = Array(literal.utf8)
        guard self.index + utf8.count <= self.bytes.count else { return false }
        return self.bytes[self.index..<self.index + utf8.count].elementsEqual(utf8)
    }

    private mutating func skipWhitespace() {
        while let byte = self.peek(), byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D { self.index += 1 }
    }

    private mutating func skip(past literal: String) -> Bool {
        let utf8 = Array(literal.utf8)
        while self.index + utf8.count <= self.bytes.count {
            if self.bytes[self.index..<self.index + utf8.count].elementsEqual(utf8) {
                self.index += utf8.count
                return true
            }
            self.index += 1
        }
        self.index = self.bytes.count
        return false
    }

    private mutating func skipProlog() {
        self.skipWhitespace()
        if self.starts(with: "<?xml") { _ = self.skip(past: "?>") }
        self.skipMisc()
    }

    private mutating func skipMisc() {
        while true {
            self.skipWhitespace()
            if self.starts(with: "<!--") {
                _ = self.skip(past: "-->")
            } else if self.starts(with: "<?") {
                _ = self.skip(past: "?>")
            } else {
                return
            }
        }
    }

    private mutating func parseName() throws -> String {
        let start = self.index
        while let byte = self.peek(), !(byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D || byte == UInt8(ascii: ">") || byte == UInt8(ascii: "/") || byte == UInt8(ascii: "=")) {
            self.index += 1
        }
        guard self.index > start else { throw Failure() }
        let name = String(decoding: self.bytes[start..<self.index], as: UTF8.self)
        // Drop a namespace prefix.
        if let colon = name.lastIndex(of: ":") { return String(name[name.index(after: colon)...]) }
        return name
    }

    private mutating func parseElement() throws -> XMLElement {
        self.depth += 1
        defer { self.depth -= 1 }
        guard self.depth <= Self.maxDepth else { throw Failure() }
        guard self.peek() == UInt8(ascii: "<") else { throw Failure() }
        self.index += 1
        let rawStart = self.index
        var element = XMLElement(name: try self.parseName())
        let rawName = String(decoding: self.bytes[rawStart..<self.index], as: UTF8.self)
        // Attributes: name="value" or name='value', ignored.
        while true {
            self.skipWhitespace()
            guard let byte = self.peek() else { throw Failure() }
            if byte == UInt8(ascii: "/") {
                guard self.peek(1) == UInt8(ascii: ">") else { throw Failure() }
                self.index += 2
                return element
            }
            if byte == UInt8(ascii: ">") {
                self.index += 1
                break
            }
            _ = try self.parseName()
            self.skipWhitespace()
            guard self.peek() == UInt8(ascii: "=") else { throw Failure() }
            self.index += 1
            self.skipWhitespace()
            guard let quote = self.peek(), quote == UInt8(ascii: "\"") || quote == UInt8(ascii: "'") else { throw Failure() }
            self.index += 1
            while let byte = self.peek(), byte != quote { self.index += 1 }
            guard self.peek() == quote else { throw Failure() }
            self.index += 1
        }
        // Content.
        var text: [UInt8] = []
        while true {
            guard let byte = self.peek() else { throw Failure() }
            if byte == UInt8(ascii: "<") {
                if self.starts(with: "</") {
                    self.index += 2
                    let start = self.index
                    while let byte = self.peek(), byte != UInt8(ascii: ">") { self.index += 1 }
                    let closing = String(decoding: self.bytes[start..<self.index], as: UTF8.self)
                        .trimmingCharacters(in: .whitespaces)
                    guard self.peek() == UInt8(ascii: ">"), closing == rawName else { throw Failure() }
                    self.index += 1
                    element.text = String(decoding: text, as: UTF8.self)
                    return element
                } else if self.starts(with: "<!--") {
                    guard self.skip(past: "-->") else { throw Failure() }
                } else if self.starts(with: "<![CDATA[") {
                    self.index += 9
                    let start = self.index
                    guard self.skip(past: "]]>") else { throw Failure() }
                    text.append(contentsOf: self.bytes[start..<self.index - 3])
                } else if self.starts(with: "<!") || self.starts(with: "<?") {
                    throw Failure()
                } else {
                    element.children.append(try self.parseElement())
                }
            } else if byte == UInt8(ascii: "&") {
                text.append(contentsOf: try self.parseEntity())
            } else {
                text.append(byte)
                self.index += 1
            }
        }
    }

    private mutating func parseEntity() throws -> [UInt8] {
        let start = self.index
        guard let end = self.bytes[start...].prefix(12).firstIndex(of: UInt8(ascii: ";")) else { throw Failure() }
        let name = String(decoding: self.bytes[start + 1..<end], as: UTF8.self)
        self.index = end + 1
        switch name {
        case "lt": return Array("<".utf8)
        case "gt": return Array(">".utf8)
        case "amp": return Array("&".utf8)
        case "quot": return Array("\"".utf8)
        case "apos": return Array("'".utf8)
        default:
            var value: UInt32?
            if name.hasPrefix("#x") || name.hasPrefix("#X") {
                value = UInt32(name.dropFirst(2), radix: 16)
            } else if name.hasPrefix("#") {
                value = UInt32(name.dropFirst(), radix: 10)
            }
            guard let value, let scalar = Unicode.Scalar(value) else { throw Failure() }
            return Array(String(Character(scalar)).utf8)
        }
    }
}

import Foundation
