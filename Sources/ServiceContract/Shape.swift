/// A named schema of the OpenAPI document, with the components it refers to.
public struct SchemaComponent: Sendable {
    public var name: String
    /// The JSON Schema of the component.
    public var schema: JSONValue
    /// The components its schema refers to (`$ref`), so the document can include them.
    public var dependencies: [SchemaComponent]

    public init(name: String, schema: JSONValue, dependencies: [SchemaComponent] = []) {
        self.name = name
        self.schema = schema
        self.dependencies = dependencies
    }

    /// A `$ref` to this component.
    public var reference: JSONValue { .object([("$ref", .string("#/components/schemas/\(self.name)"))]) }

    /// This component and everything it refers to, each once, dependencies first.
    public var closure: [SchemaComponent] {
        var seen: Set<String> = []
        var out: [SchemaComponent] = []
        func visit(_ component: SchemaComponent) {
            guard seen.insert(component.name).inserted else { return }
            component.dependencies.forEach(visit)
            out.append(component)
        }
        visit(self)
        return out
    }
}

/// The JSON shape of one kind of answer, declared once: it renders a model as JSON and describes the
/// same JSON as an OpenAPI schema, so the two cannot disagree.
///
/// ```swift
/// static let shape = ResponseShape<Secret>("Secret") {
///     $0.string("name", \.name)
///     $0.integer("version", \.version)
///     $0.optionalString("deleted_at", \.deletedAt)
///     $0.array("tags", \.tags, of: TagShape)
/// }
/// ```
public struct ResponseShape<Model>: Sendable {
    /// One member of the object.
    public struct Field: Sendable {
        public var name: String
        public var schema: JSONValue
        public var required: Bool
        public var dependencies: [SchemaComponent]
        let render: @Sendable (Model) -> JSONValue?
    }

    /// Collects the fields in declaration order.
    public struct Builder {
        var fields: [Field] = []

        public mutating func string(_ name: String, _ description: String = "", _ value: @escaping @Sendable (Model) -> String) {
            self.add(name, Self.typed("string", description), required: true) { .string(value($0)) }
        }

        /// A string member that is `null` when the value is nil (present either way).
        public mutating func optionalString(_ name: String, _ description: String = "", _ value: @escaping @Sendable (Model) -> String?) {
            self.add(name, Self.nullable("string", description), required: true) { value($0).map(JSONValue.string) ?? .null }
        }

        public mutating func integer(_ name: String, _ description: String = "", _ value: @escaping @Sendable (Model) -> Int64) {
            self.add(name, Self.typed("integer", description), required: true) { .int(value($0)) }
        }

        public mutating func optionalInteger(_ name: String, _ description: String = "", _ value: @escaping @Sendable (Model) -> Int64?) {
            self.add(name, Self.nullable("integer", description), required: true) { value($0).map(JSONValue.int) ?? .null }
        }

        public mutating func boolean(_ name: String, _ description: String = "", _ value: @escaping @Sendable (Model) -> Bool) {
            self.add(name, Self.typed("boolean", description), required: true) { .bool(value($0)) }
        }

        /// A time, rendered as RFC 3339 from unix milliseconds.
        public mutating func time(_ name: String, _ description: String = "", _ value: @escaping @Sendable (Model) -> Int64) {
            self.add(name, Self.typed("string", description, format: "date-time"), required: true) { .string(Timestamp.rfc3339(milliseconds: value($0))) }
        }

        /// A time or `null`.
        public mutating func optionalTime(_ name: String, _ description: String = "", _ value: @escaping @Sendable (Model) -> Int64?) {
            self.add(name, Self.nullable("string", description, format: "date-time"), required: true) {
                value($0).map { .string(Timestamp.rfc3339(milliseconds: $0)) } ?? .null
            }
        }

        /// A string from a fixed set.
        public mutating func enumeration(
            _ name: String, _ cases: [String], _ description: String = "", _ value: @escaping @Sendable (Model) -> String
        ) {
            var schema = Self.typed("string", description)
            if case .object(var members) = schema {
                members.insert(("enum", .array(cases.map(JSONValue.string))), at: 1)
                schema = .object(members)
            }
            self.add(name, schema, required: true) { .string(value($0)) }
        }

        public mutating func strings(_ name: String, _ description: String = "", _ value: @escaping @Sendable (Model) -> [String]) {
            let schema = Self.described([("type", .string("array")), ("items", .object([("type", .string("string"))]))], description)
            self.add(name, schema, required: true) { .array(value($0).map(JSONValue.string)) }
        }

        /// An object of string members (attributes, labels).
        public mutating func stringMap(_ name: String, _ description: String = "", _ value: @escaping @Sendable (Model) -> [(String, String)]) {
            let schema = Self.described(
                [("type", .string("object")), ("additionalProperties", .object([("type", .string("string"))]))], description)
            self.add(name, schema, required: true) { .object(value($0).map { ($0.0, .string($0.1)) }) }
        }

        /// Any JSON value the model holds (a payload, a response).
        public mutating func json(_ name: String, _ description: String = "", _ value: @escaping @Sendable (Model) -> JSONValue) {
            self.add(name, .object([("description", .string(description.isEmpty ? "Any JSON." : description))]), required: true, value)
        }

        /// A nested object of another shape.
        public mutating func object<Nested>(
            _ name: String, _ shape: ResponseShape<Nested>, _ value: @escaping @Sendable (Model) -> Nested
        ) {
            let component = shape.component
            self.add(name, component.reference, required: true, dependencies: [component]) { shape.json(value($0)) }
        }

        /// A nested object of another shape, or `null`.
        public mutating func optionalObject<Nested>(
            _ name: String, _ shape: ResponseShape<Nested>, _ value: @escaping @Sendable (Model) -> Nested?
        ) {
            let component = shape.component
            let schema: JSONValue = .object([("oneOf", .array([component.reference, .object([("type", .string("null"))])]))])
            self.add(name, schema, required: true, dependencies: [component]) { value($0).map(shape.json) ?? .null }
        }

        /// An array of objects of another shape.
        public mutating func array<Item>(_ name: String, _ shape: ResponseShape<Item>, _ value: @escaping @Sendable (Model) -> [Item]) {
            let component = shape.component
            let schema: JSONValue = .object([("type", .string("array")), ("items", component.reference)])
            self.add(name, schema, required: true, dependencies: [component]) { .array(value($0).map(shape.json)) }
        }

        /// A member left out of the answer when `value` is nil (not required in the schema).
        public mutating func omittable(
            _ name: String, type: String, _ description: String = "", _ value: @escaping @Sendable (Model) -> JSONValue?
        ) {
            self.add(name, Self.typed(type, description), required: false, value)
        }

        private mutating func add(
            _ name: String, _ schema: JSONValue, required: Bool, dependencies: [SchemaComponent] = [],
            _ render: @escaping @Sendable (Model) -> JSONValue?
        ) {
            precondition(!self.fields.contains { $0.name == name }, "a shape declares the field \(name) twice")
            self.fields.append(Field(name: name, schema: schema, required: required, dependencies: dependencies, render: render))
        }

        static func typed(_ type: String, _ description: String, format: String? = nil) -> JSONValue {
            var members: [(String, JSONValue)] = [("type", .string(type))]
            if let format { members.append(("format", .string(format))) }
            return Self.described(members, description)
        }

        static func nullable(_ type: String, _ description: String, format: String? = nil) -> JSONValue {
            var members: [(String, JSONValue)] = [("type", .array([.string(type), .string("null")]))]
            if let format { members.append(("format", .string(format))) }
            return Self.described(members, description)
        }

        static func described(_ members: [(String, JSONValue)], _ description: String) -> JSONValue {
            description.isEmpty ? .object(members) : .object(members + [("description", .string(description))])
        }
    }

    /// The component name in the OpenAPI document (`Secret`).
    public let name: String
    public let fields: [Field]

    /// Declares a shape; `build` adds its fields in order.
    public init(_ name: String, _ build: (inout Builder) -> Void) {
        var builder = Builder()
        build(&builder)
        self.name = name
        self.fields = builder.fields
    }

    /// The model as JSON, members in declaration order.
    public func json(_ model: Model) -> JSONValue {
        .object(self.fields.compactMap { field in field.render(model).map { (field.name, $0) } })
    }

    /// The OpenAPI component: an object with these properties, the required ones listed.
    public var component: SchemaComponent {
        let schema: JSONValue = .object([
            ("type", .string("object")),
            ("required", .array(self.fields.filter(\.required).map { .string($0.name) })),
            ("properties", .object(self.fields.map { ($0.name, $0.schema) })),
        ])
        var dependencies: [SchemaComponent] = []
        for field in self.fields {
            for dependency in field.dependencies where !dependencies.contains(where: { $0.name == dependency.name }) {
                dependencies.append(dependency)
            }
        }
        return SchemaComponent(name: self.name, schema: schema, dependencies: dependencies)
    }
}

/// The answer of a paginated list: `{"<items>": [...], "next_token": "..." | null}`.
public struct ListShape<Item>: Sendable {
    public let name: String
    /// The member holding the items (`secrets`).
    public let itemsKey: String
    public let item: ResponseShape<Item>

    public init(_ name: String, itemsKey: String, item: ResponseShape<Item>) {
        self.name = name
        self.itemsKey = itemsKey
        self.item = item
    }

    /// One page as JSON.
    public func json(_ items: [Item], nextToken: String?) -> JSONValue {
        .object([(self.itemsKey, .array(items.map(self.item.json))), ("next_token", nextToken.map(JSONValue.string) ?? .null)])
    }

    public var component: SchemaComponent {
        let item = self.item.component
        let schema: JSONValue = .object([
            ("type", .string("object")),
            ("required", .array([.string(self.itemsKey), .string("next_token")])),
            (
                "properties",
                .object([
                    (self.itemsKey, .object([("type", .string("array")), ("items", item.reference)])),
                    (
                        "next_token",
                        .object([
                            ("type", .array([.string("string"), .string("null")])),
                            ("description", .string("Pass as ?next_token= for the next page; null on the last page.")),
                        ])
                    ),
                ])
            ),
        ])
        return SchemaComponent(name: self.name, schema: schema, dependencies: [item])
    }
}
