import ServiceContract

/// A subscription's filter policy, in the language of SNS's attribute filter policies: a JSON object
/// from attribute names to lists of conditions. A message matches when, for every name of the
/// policy, one of its conditions holds for the message's attribute of that name (AND across names,
/// OR within a list). Conditions:
///
/// - `"text"`: the attribute equals it; `123`: the attribute is that number;
/// - `{"prefix": "text"}`, `{"suffix": "text"}`;
/// - `{"anything-but": ["a", "b"]}` (or one value, or `{"anything-but": {"prefix": "x"}}`): present and none of them;
/// - `{"numeric": [">", 0, "<=", 100]}`: a number within the bounds (`=`, `<`, `<=`, `>`, `>=`);
/// - `{"exists": true}` / `{"exists": false}`: the attribute is present / absent.
///
/// Pure: parsed once when the subscription is made (bad policies are refused then), matched per message.
struct FilterPolicy: Sendable, Equatable {
    enum Condition: Sendable, Equatable {
        case equals(String)
        case number(Double)
        case prefix(String)
        case suffix(String)
        case anythingBut([String])
        case anythingButPrefix(String)
        case numeric([(Comparison, Double)])
        case exists(Bool)

        static func == (a: Condition, b: Condition) -> Bool {
            switch (a, b) {
            case (.equals(let x), .equals(let y)), (.prefix(let x), .prefix(let y)), (.suffix(let x), .suffix(let y)),
                (.anythingButPrefix(let x), .anythingButPrefix(let y)):
                x == y
            case (.number(let x), .number(let y)): x == y
            case (.anythingBut(let x), .anythingBut(let y)): x == y
            case (.exists(let x), .exists(let y)): x == y
            case (.numeric(let x), .numeric(let y)): x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
            default: false
            }
        }
    }

    enum Comparison: String, Sendable, Equatable {
        case equal = "=", less = "<", lessOrEqual = "<=", greater = ">", greaterOrEqual = ">="

        func holds(_ value: Double, _ bound: Double) -> Bool {
            switch self {
            case .equal: value == bound
            case .less: value < bound
            case .lessOrEqual: value <= bound
            case .greater: value > bound
            case .greaterOrEqual: value >= bound
            }
        }
    }

    /// Attribute name → its conditions, in the policy's order.
    var rules: [(String, [Condition])]

    static func == (a: FilterPolicy, b: FilterPolicy) -> Bool {
        a.rules.count == b.rules.count && zip(a.rules, b.rules).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
    }

    /// Most attribute names in one policy, and most conditions in all (SNS allows 5 keys and 150 combinations).
    static let maximumNames = 5
    static let maximumConditions = 150

    /// Parses a policy.
    /// - Throws: ``NotifyError`` `invalid_filter_policy` naming what is wrong.
    init(parsing value: JSONValue) throws(NotifyError) {
        guard case .object(let members) = value else { throw NotifyError.invalidFilter("a filter policy is a JSON object") }
        guard !members.isEmpty, members.count <= Self.maximumNames else {
            throw NotifyError.invalidFilter("a filter policy names 1 to \(Self.maximumNames) attributes")
        }
        var rules: [(String, [Condition])] = []
        var total = 0
        for (name, list) in members {
            guard case .array(let items) = list, !items.isEmpty else {
                throw NotifyError.invalidFilter("the conditions of \(name) must be a non-empty array")
            }
            total += items.count
            rules.append((name, try items.map { item throws(NotifyError) in try Self.condition(item, name) }))
        }
        guard total <= Self.maximumConditions else {
            throw NotifyError.invalidFilter("a filter policy has at most \(Self.maximumConditions) conditions")
        }
        self.rules = rules
    }

    private static func condition(_ item: JSONValue, _ name: String) throws(NotifyError) -> Condition {
        switch item {
        case .string(let text): return .equals(text)
        case .int(let number): return .number(Double(number))
        case .double(let number): return .number(number)
        case .object(let members) where members.count == 1:
            let (operation, argument) = members[0]
            switch (operation, argument) {
            case ("prefix", .string(let text)): return .prefix(text)
            case ("suffix", .string(let text)): return .suffix(text)
            case ("exists", .bool(let flag)): return .exists(flag)
            case ("anything-but", .string(let text)): return .anythingBut([text])
            case ("anything-but", .array(let values)):
                var texts: [String] = []
                for value in values {
                    switch value {
                    case .string(let text): texts.append(text)
                    case .int(let number): texts.append(String(number))
                    default: throw NotifyError.invalidFilter("anything-but of \(name) takes strings or numbers")
                    }
                }
                return .anythingBut(texts)
            case ("anything-but", .object(let inner)) where inner.count == 1:
                if inner[0].0 == "prefix", case .string(let text) = inner[0].1 { return .anythingButPrefix(text) }
                throw NotifyError.invalidFilter("anything-but of \(name) takes a list or {\"prefix\": …}")
            case ("numeric", .array(let parts)):
                guard !parts.isEmpty, parts.count % 2 == 0, parts.count <= 4 else {
                    throw NotifyError.invalidFilter("numeric of \(name) is [op, number] or [op, number, op, number]")
                }
                var bounds: [(Comparison, Double)] = []
                for index in stride(from: 0, to: parts.count, by: 2) {
                    guard case .string(let symbol) = parts[index], let comparison = Comparison(rawValue: symbol) else {
                        throw NotifyError.invalidFilter("numeric of \(name): the operators are = < <= > >=")
                    }
                    let bound: Double
                    switch parts[index + 1] {
                    case .int(let number): bound = Double(number)
                    case .double(let number): bound = number
                    default: throw NotifyError.invalidFilter("numeric of \(name): each operator is followed by a number")
                    }
                    bounds.append((comparison, bound))
                }
                return .numeric(bounds)
            default:
                throw NotifyError.invalidFilter("unknown condition \"\(operation.prefix(40))\" for \(name)")
            }
        default:
            throw NotifyError.invalidFilter("a condition of \(name) is a string, a number or an object of one operator")
        }
    }

    /// Whether a message with these attributes matches.
    func matches(_ attributes: [String: String]) -> Bool {
        self.rules.allSatisfy { name, conditions in
            let value = attributes[name]
            return conditions.contains { Self.holds($0, value) }
        }
    }

    private static func holds(_ condition: Condition, _ value: String?) -> Bool {
        switch condition {
        case .exists(let flag): return (value != nil) == flag
        case .equals(let text): return value == text
        case .number(let number): return value.flatMap(Double.init) == number
        case .prefix(let text): return value?.hasPrefix(text) ?? false
        case .suffix(let text): return value?.hasSuffix(text) ?? false
        case .anythingBut(let texts): return value.map { !texts.contains($0) } ?? false
        case .anythingButPrefix(let text): return value.map { !$0.hasPrefix(text) } ?? false
        case .numeric(let bounds):
            guard let number = value.flatMap(Double.init) else { return false }
            return bounds.allSatisfy { $0.0.holds(number, $0.1) }
        }
    }
}
