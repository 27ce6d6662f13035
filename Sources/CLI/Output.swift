import ServiceContract
import Foundation

/// How a command prints data: `-o table` (the default), `-o json` or `-o yaml`.
enum OutputFormat: String, CaseIterable, Sendable {
    case table, json, yaml

    static let names = Self.allCases.map(\.rawValue)

    /// Renders `value` as JSON or YAML text (with a final newline); nil for `table`, which each
    /// command lays out itself.
    func render(_ value: JSONValue) -> String? {
        switch self {
        case .table: nil
        case .json: value.prettyPrinted() + "\n"
        case .yaml: YAML.emit(value)
        }
    }
}

/// A small YAML emitter for JSON values: block style, keys in their order, strings quoted (JSON
/// style, which YAML's double-quoted scalars accept) whenever a YAML 1.1 or 1.2 reader could take
/// them for something else (a number, a date, `yes`, `null`, …) or they hold special characters.
enum YAML {
    /// The document for `value`, ending with a newline.
    static func emit(_ value: JSONValue) -> String {
        var out = ""
        switch value {
        case .object(let members) where !members.isEmpty: Self.writeObject(members, indent: 0, to: &out)
        case .array(let items) where !items.isEmpty: Self.writeArray(items, indent: 0, to: &out)
        default: out = Self.scalar(value) + "\n"
        }
        return out
    }

    private static func isBlock(_ value: JSONValue) -> Bool {
        switch value {
        case .object(let members): !members.isEmpty
        case .array(let items): !items.isEmpty
        default: false
        }
    }

    private static func writeObject(_ members: [(String, JSONValue)], indent: Int, to out: inout String) {
        let pad = String(repeating: " ", count: indent)
        for (key, value) in members {
            out += pad + Self.string(key) + ":"
            switch value {
            case .object(let inner) where !inner.isEmpty:
                out += "\n"
                Self.writeObject(inner, indent: indent + 2, to: &out)
            case .array(let items) where !items.isEmpty:
                out += "\n"
                Self.writeArray(items, indent: indent, to: &out)
            default:
                out += " " + Self.scalar(value) + "\n"
            }
        }
    }

    /// Sequences inside a mapping are written at the mapping's indentation (`key:\n- a`), as most
    /// YAML tools do.
    private static func writeArray(_ items: [JSONValue], indent: Int, to out: inout String) {
        let pad = String(repeating: " ", count: indent)
        for item in items {
            guard Self.isBlock(item) else {
                out += pad + "- " + Self.scalar(item) + "\n"
                continue
            }
            // The item's block at indent + 2, its first line's indentation replaced by "- ".
            var inner = ""
            switch item {
            case .object(let members): Self.writeObject(members, indent: indent + 2, to: &inner)
            case .array(let nested): Self.writeArray(nested, indent: indent + 2, to: &inner)
            default: break
            }
            out += pad + "- " + inner.dropFirst(indent + 2)
        }
    }

    /// A scalar, or `{}` / `[]` for an empty object or array.
    static func scalar(_ value: JSONValue) -> String {
        switch value {
        case .null: "null"
        case .bool(let flag): flag ? "true" : "false"
        case .int(let number): String(number)
        case .double(let number): Self.double(number)
        case .string(let text): Self.string(text)
        case .array: "[]"
        case .object: "{}"
        }
    }

    /// A float as YAML 1.1 readers (PyYAML) want it: with a `.` and a signed exponent.
    private static func double(_ number: Double) -> String {
        guard number.isFinite else { return "null" }
        var text = "\(number)"
        let exponent = text.firstIndex(where: { $0 == "e" || $0 == "E" })
        var mantissa = exponent.map { String(text[..<$0]) } ?? text
        var power = exponent.map { String(text[text.index(after: $0)...]) }
        if !mantissa.contains(".") { mantissa += ".0" }
        if let value = power, !value.hasPrefix("-"), !value.hasPrefix("+") { power = "+" + value }
        text = mantissa + (power.map { "e" + $0 } ?? "")
        return text
    }

    /// Words YAML 1.1 reads as booleans or null.
    private static let reserved: Set<String> = ["true", "false", "yes", "no", "on", "off", "y", "n", "null", "~"]

    /// The string plain when that is safe, else double-quoted with JSON escapes.
    static func string(_ text: String) -> String {
        Self.isPlainSafe(text) ? text : JSONValue.string(text).serialized()
    }

    private static func isPlainSafe(_ text: String) -> Bool {
        guard let first = text.unicodeScalars.first, let last = text.unicodeScalars.last else { return false }
        // Starting with a letter or '/' rules out numbers, dates, indicators (- ? : , [ ] { } # & * ! | > ' " % @ `) and `.inf`.
        guard ("a"..."z").contains(first) || ("A"..."Z").contains(first) || first == "/" || first == "_" else { return false }
        guard last != " ", last != ":" else { return false }
        guard !Self.reserved.contains(text.lowercased()) else { return false }
        guard !text.contains(": "), !text.contains(" #") else { return false }
        return text.unicodeScalars.allSatisfy { scalar in
            ("a"..."z").contains(scalar) || ("A"..."Z").contains(scalar) || ("0"..."9").contains(scalar)
                || "_-./@+: ".unicodeScalars.contains(scalar)
        }
    }
}

/// Text tables: a header row and rows, columns padded to their widest cell, two spaces apart.
enum TextTable {
    /// The table's lines joined with newlines (ending with one); no trailing spaces.
    static func render(_ header: [String], _ rows: [[String]]) -> String {
        var widths = header.map(\.count)
        for row in rows {
            for (index, cell) in row.enumerated() where index < widths.count { widths[index] = max(widths[index], cell.count) }
        }
        var out = ""
        for row in [header] + rows {
            var line = ""
            for (index, width) in widths.enumerated() {
                let cell = index < row.count ? row[index] : ""
                line += index == widths.count - 1 ? cell : cell + String(repeating: " ", count: width - cell.count + 2)
            }
            while line.hasSuffix(" ") { line.removeLast() }
            out += line + "\n"
        }
        return out
    }

    /// A cell for a JSON value: strings as they are, arrays joined with commas, `-` for null or missing.
    static func cell(_ value: JSONValue?) -> String {
        switch value {
        case .string(let text): text.isEmpty ? "-" : text
        case .int(let number): String(number)
        case .double(let number): "\(number)"
        case .bool(let flag): flag ? "yes" : "no"
        case .array(let items): items.isEmpty ? "-" : items.map { Self.cell($0) }.joined(separator: ",")
        case .null, nil: "-"
        case .object: value!.serialized()
        }
    }
}
