import ServiceContract
import Foundation

/// Writes docs/api.md, the API reference, from the OpenAPI document: every route with its method,
/// permission, path parameters, request fields, response and error codes, then the schemas.
enum APIReference {
    /// The command that regenerates docs/api.md.
    static let regenerate = "make api-docs"

    /// The Markdown reference for `document` (an OpenAPI 3 document as /openapi.json serves it).
    static func markdown(_ document: JSONValue) -> String {
        var out = "# API reference\n\n"
        out += "<!-- Generated from the route table by `\(Self.regenerate)` (`cloud openapi --markdown > docs/api.md`); do not edit. -->\n\n"
        let info = document["info"]
        out += "\(Self.text(info?["title"])) \(Self.text(info?["version"])), OpenAPI \(Self.text(document["openapi"])). "
        out += "\(Self.text(info?["description"]))\n\n"
        out += """
            The document itself is served at `GET /openapi.json` (and printed by `cloud openapi`). Concepts, \
            authentication and RBAC are described in [control-plane.md](control-plane.md), the CLI in [cli.md](cli.md).

            - Bodies are JSON objects (`Content-Type: application/json`, at most 64 KiB); a field a route does \
            not list is refused with `400 invalid_request`.
            - The permission column says who may call a route: `anonymous` anyone; `authenticated` any valid key \
            in the header `X-API-Key` (the route acts on the caller's own things); `resource:action` a key whose \
            user's roles in the key's tenant grant that permission.
            - Errors look like `{"error": {"code": "...", "message": "..."}}`; each route lists the statuses and \
            codes it can answer. Any route can also answer `404 not_found` (no such route), `405 method_not_allowed` \
            and `500 internal`.
            - Every response carries `X-Request-Id`. Times are RFC 3339 strings in UTC.


            """

        let operations = Self.operations(document)
        out += "## Routes\n\n| method and path | permission | summary |\n|---|---|---|\n"
        for operation in operations {
            let title = "\(operation.method) \(operation.path)"
            out += "| [`\(title)`](#\(Self.anchor(title))) | `\(Self.text(operation.value["x-permission"]))` | \(Self.cell(operation.value["summary"])) |\n"
        }
        out += "\n## Operations\n"
        for operation in operations { out += Self.section(operation.method, operation.path, operation.value) }

        out += "\n## Schemas\n"
        if case .object(let schemas) = document["components"]?["schemas"] {
            for (name, schema) in schemas {
                out += "\n### \(name)\n\n"
                out += Self.fieldTable(schema, withDescription: false)
            }
        }
        return out
    }

    private struct Operation {
        var method: String
        var path: String
        var value: JSONValue
    }

    /// The operations in the document's order.
    private static func operations(_ document: JSONValue) -> [Operation] {
        guard case .object(let paths) = document["paths"] else { return [] }
        var result: [Operation] = []
        for (path, item) in paths {
            guard case .object(let methods) = item else { continue }
            for (method, operation) in methods { result.append(Operation(method: method.uppercased(), path: path, value: operation)) }
        }
        return result
    }

    private static func section(_ method: String, _ path: String, _ operation: JSONValue) -> String {
        var out = "\n### `\(method) \(path)`\n\n"
        out += "\(Self.text(operation["summary"]))\n\n"
        out += "- Operation id: `\(Self.text(operation["operationId"]))`\n"
        out += "- Permission: `\(Self.text(operation["x-permission"]))`\n"
        if case .array(let parameters) = operation["parameters"], !parameters.isEmpty {
            let names = parameters.map { "`\(Self.text($0["name"]))` (\(Self.type($0["schema"])), in the \(Self.text($0["in"])))" }
            out += "- Parameters: \(names.joined(separator: ", "))\n"
        }
        if let body = operation["requestBody"]?["content"]?["application/json"]?["schema"] {
            out += "- Request body (JSON object):\n\n"
            out += Self.fieldTable(body, withDescription: true).split(separator: "\n").map { "  " + $0 }.joined(separator: "\n") + "\n\n"
        } else {
            out += "- Request body: none\n"
        }
        guard case .object(let responses) = operation["responses"] else { return out }
        var errors: [(String, String)] = []
        for (status, response) in responses where status != "default" {
            if status.hasPrefix("2") {
                let schema = response["content"]?["application/json"]?["schema"]
                let text = response["content"]?["text/plain"] != nil ? "text (`text/plain`)" : "no body"
                out += "- Response: `\(status)` " + (schema.map { Self.type($0) } ?? text) + "\n"
            } else if case .array(let codes) = response["x-error-codes"] {
                errors.append((status, codes.map { "`\(Self.text($0))`" }.joined(separator: ", ")))
            } else {
                errors.append((status, Self.cell(response["description"])))
            }
        }
        if !errors.isEmpty {
            out += "- Errors: " + errors.map { "\($0.0) \($0.1)" }.joined(separator: "; ") + "\n"
        }
        return out
    }

    /// A table of an object schema's properties.
    private static func fieldTable(_ schema: JSONValue, withDescription: Bool) -> String {
        guard case .object(let properties) = schema["properties"], !properties.isEmpty else {
            return "(\(Self.type(schema)))\n"
        }
        var required: Set<String> = []
        if case .array(let names) = schema["required"] {
            for case .string(let name) in names { required.insert(name) }
        }
        var out = withDescription ? "| field | type | required | description |\n|---|---|---|---|\n" : "| field | type | required |\n|---|---|---|\n"
        for (name, property) in properties {
            out += "| `\(name)` | \(Self.type(property)) | \(required.contains(name) ? "yes" : "no") |"
            out += withDescription ? " \(Self.cell(property["description"])) |\n" : "\n"
        }
        return out
    }

    /// A schema's type in words, with links to named schemas.
    static func type(_ schema: JSONValue?) -> String {
        guard let schema else { return "any" }
        if case .string(let reference) = schema["$ref"] {
            let name = String(reference.split(separator: "/").last ?? "")
            return "[\(name)](#\(Self.anchor(name)))"
        }
        switch schema["type"] {
        case .string("array"): return "array of \(Self.type(schema["items"]))"
        case .string("string"):
            if case .int(let limit) = schema["maxLength"] { return "string (at most \(limit))" }
            return "string"
        case .string(let type): return type
        case .array(let types): return types.map { Self.text($0) }.joined(separator: " or ")
        default: return "any"
        }
    }

    /// GitHub's heading anchor: lowercase, only letters, digits, `_`, `-` and spaces kept, spaces
    /// made hyphens.
    static func anchor(_ heading: String) -> String {
        String(
            heading.lowercased().unicodeScalars.compactMap { scalar -> Character? in
                if scalar == " " { return "-" }
                if ("a"..."z").contains(scalar) || ("0"..."9").contains(scalar) || scalar == "_" || scalar == "-" { return Character(scalar) }
                return nil
            })
    }

    private static func text(_ value: JSONValue?) -> String {
        if case .string(let text) = value { return text }
        return value.map { $0.serialized() } ?? ""
    }

    /// Text for a table cell: `|` escaped, one line.
    private static func cell(_ value: JSONValue?) -> String {
        Self.text(value).replacingOccurrences(of: "|", with: "\\|").replacingOccurrences(of: "\n", with: " ")
    }
}
