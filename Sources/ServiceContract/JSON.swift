import Foundation
import TextEscaping

/// A JSON value. Objects keep their key order (for stable output).
public indirect enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([(String, JSONValue)])

    public static func == (lhs: JSONValue, rhs: JSONValue) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null): true
        case (.bool(let a), .bool(let b)): a == b
        case (.int(let a), .int(let b)): a == b
        case (.double(let a), .double(let b)): a == b
        case (.string(let a), .string(let b)): a == b
        case (.array(let a), .array(let b)): a == b
        case (.object(let a), .object(let b)): a.count == b.count && zip(a, b).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: false
        }
    }

    /// The value for `key` of an object.
    public subscript(key: String) -> JSONValue? {
        guard case .object(let members) = self else { return nil }
        return members.last { $0.0 == key }?.1
    }

    /// Parses JSON text; nil when it is not JSON.
    public static func parse(_ bytes: [UInt8]) -> JSONValue? {
        try? JSONDecoder().decode(DecodedJSON.self, from: Data(bytes)).value
    }

    /// Compact JSON text.
    public func serialized() -> String {
        var out = ""
        self.write(to: &out, indent: nil, level: 0)
        return out
    }

    /// JSON text indented by two spaces.
    public func prettyPrinted() -> String {
        var out = ""
        self.write(to: &out, indent: "  ", level: 0)
        return out
    }

    private func write(to out: inout String, indent: String?, level: Int) {
        switch self {
        case .null: out += "null"
        case .bool(let value): out += value ? "true" : "false"
        case .int(let value): out += String(value)
        case .double(let value): out += value.isFinite ? "\(value)" : "null"
        case .string(let value): Self.writeString(value, to: &out)
        case .array(let items):
            if items.isEmpty {
                out += "[]"
                return
            }
            out += "["
            for (index, item) in items.enumerated() {
                if index > 0 { out += "," }
                Self.newline(&out, indent, level + 1)
                item.write(to: &out, indent: indent, level: level + 1)
            }
            Self.newline(&out, indent, level)
            out += "]"
        case .object(let members):
            if members.isEmpty {
                out += "{}"
                return
            }
            out += "{"
            for (index, (key, value)) in members.enumerated() {
                if index > 0 { out += "," }
                Self.newline(&out, indent, level + 1)
                Self.writeString(key, to: &out)
                out += indent == nil ? ":" : ": "
                value.write(to: &out, indent: indent, level: level + 1)
            }
            Self.newline(&out, indent, level)
            out += "}"
        }
    }

    private static func newline(_ out: inout String, _ indent: String?, _ level: Int) {
        guard let indent else { return }
        out += "\n" + String(repeating: indent, count: level)
    }

    private static func writeString(_ value: String, to out: inout String) { out += JSONText.quote(value) }
}

/// Decodes any JSON into ``JSONValue`` through Foundation's strict parser.
private struct DecodedJSON: Decodable {
    let value: JSONValue

    struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    init(from decoder: any Decoder) throws {
        if var array = try? decoder.unkeyedContainer() {
            var items: [JSONValue] = []
            while !array.isAtEnd { items.append(try array.decode(DecodedJSON.self).value) }
            self.value = .array(items)
            return
        }
        if let object = try? decoder.container(keyedBy: Key.self) {
            var members: [(String, JSONValue)] = []
            for key in object.allKeys { members.append((key.stringValue, try object.decode(DecodedJSON.self, forKey: key).value)) }
            self.value = .object(members)
            return
        }
        let single = try decoder.singleValueContainer()
        if single.decodeNil() {
            self.value = .null
        } else if let value = try? single.decode(Bool.self) {
            self.value = .bool(value)
        } else if let value = try? single.decode(Int64.self) {
            self.value = .int(value)
        } else if let value = try? single.decode(Double.self) {
            self.value = .double(value)
        } else {
            self.value = .string(try single.decode(String.self))
        }
    }
}

/// The shape of a request body: a JSON object with these fields and no others. One declaration
/// validates requests and describes them in the OpenAPI document.
public struct BodySchema: Sendable {
    /// A field's JSON type.
    public enum FieldType: String, Sendable {
        case string, integer, boolean
        case stringArray = "array"
        /// A JSON object whose members are strings (attributes, labels, environment variables).
        case stringMap = "object"
    }

    /// One field.
    public struct Field: Sendable {
        public var name: String
        public var type: FieldType
        public var required: Bool
        public var description: String
        /// For strings: the largest accepted length in characters.
        public var maxLength: Int

        public static func string(_ name: String, required: Bool = true, maxLength: Int = 1024, _ description: String) -> Field {
            Field(name: name, type: .string, required: required, description: description, maxLength: maxLength)
        }

        public static func integer(_ name: String, required: Bool = false, _ description: String) -> Field {
            Field(name: name, type: .integer, required: required, description: description, maxLength: 0)
        }

        public static func strings(_ name: String, required: Bool = true, _ description: String) -> Field {
            Field(name: name, type: .stringArray, required: required, description: description, maxLength: 256)
        }

        public static func boolean(_ name: String, required: Bool = false, _ description: String) -> Field {
            Field(name: name, type: .boolean, required: required, description: description, maxLength: 0)
        }

        /// An object of at most `maxEntries` string members, each value at most 1024 characters.
        public static func stringMap(_ name: String, required: Bool = false, maxEntries: Int = 50, _ description: String) -> Field {
            Field(name: name, type: .stringMap, required: required, description: description, maxLength: maxEntries)
        }
    }

    public var fields: [Field]

    public init(_ fields: [Field]) { self.fields = fields }

    /// Validates a body against the schema.
    /// - Returns: The fields, checked.
    /// - Throws: ``APIError`` (400) naming the first problem: not JSON, not an object, an unknown
    ///   field, a missing one, or a value of the wrong type or size.
    public func validate(_ body: [UInt8]) throws(APIError) -> RequestBody {
        let trimmed = body.drop { $0 == 32 || $0 == 9 || $0 == 10 || $0 == 13 }
        guard !trimmed.isEmpty else {
            if let first = self.fields.first(where: \.required) {
                throw APIError.invalidRequest("the request needs a JSON body with the field \"\(first.name)\"")
            }
            return RequestBody(values: [:])
        }
        guard let value = JSONValue.parse(Array(trimmed)) else { throw APIError.invalidJSON }
        guard case .object(let members) = value else { throw APIError.invalidRequest("the body must be a JSON object") }
        var values: [String: JSONValue] = [:]
        for (key, member) in members {
            guard let field = self.fields.first(where: { $0.name == key }) else {
                let known = self.fields.map(\.name).joined(separator: ", ")
                throw APIError.invalidRequest("unknown field \"\(key)\"" + (known.isEmpty ? "" : " (known fields: \(known))"))
            }
            if case .null = member, !field.required { continue }
            switch (field.type, member) {
            case (.string, .string(let text)):
                guard text.count <= field.maxLength else {
                    throw APIError.invalidRequest("\"\(key)\" must have at most \(field.maxLength) characters")
                }
            case (.integer, .int): break
            case (.boolean, .bool): break
            case (.stringMap, .object(let entries)):
                guard entries.count <= field.maxLength else {
                    throw APIError.invalidRequest("\"\(key)\" must have at most \(field.maxLength) entries")
                }
                for (name, item) in entries {
                    guard case .string(let text) = item, text.count <= 1024, !name.isEmpty, name.count <= 256 else {
                        throw APIError.invalidRequest("\"\(key)\" must be an object of strings (names up to 256, values up to 1024 characters)")
                    }
                }
            case (.stringArray, .array(let items)):
                guard items.count <= field.maxLength else {
                    throw APIError.invalidRequest("\"\(key)\" must have at most \(field.maxLength) items")
                }
                for item in items {
                    guard case .string(let text) = item, text.count <= 256 else {
                        throw APIError.invalidRequest("\"\(key)\" must be an array of strings")
                    }
                }
            default:
                let expected =
                    switch field.type {
                    case .stringArray: "an array of strings"
                    case .stringMap: "an object of strings"
                    case .integer: "an integer"
                    case .string, .boolean: "a \(field.type.rawValue)"
                    }
                throw APIError.invalidRequest("\"\(key)\" must be \(expected)")
            }
            values[key] = member
        }
        for field in self.fields where field.required && values[field.name] == nil {
            throw APIError.invalidRequest("the field \"\(field.name)\" is required")
        }
        return RequestBody(values: values)
    }
}

/// A validated request body.
public struct RequestBody: Sendable {
    /// The fields the request set (a JSON `null` for an optional field is left out).
    public let values: [String: JSONValue]

    public init(values: [String: JSONValue]) { self.values = values }

    /// Whether the request set the field.
    public func has(_ name: String) -> Bool { self.values[name] != nil }

    public func boolean(_ name: String) -> Bool? {
        if case .bool(let value) = self.values[name] { return value }
        return nil
    }

    /// An object field's members.
    public func object(_ name: String) -> [(String, JSONValue)]? {
        if case .object(let members) = self.values[name] { return members }
        return nil
    }

    public func string(_ name: String) -> String? {
        if case .string(let value) = self.values[name] { return value }
        return nil
    }

    public func integer(_ name: String) -> Int64? {
        if case .int(let value) = self.values[name] { return value }
        return nil
    }

    public func strings(_ name: String) -> [String]? {
        guard case .array(let items) = self.values[name] else { return nil }
        var strings: [String] = []
        for case .string(let text) in items { strings.append(text) }
        return strings
    }
}
