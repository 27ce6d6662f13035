import ControlPlane
import ServiceContract
import Testing

@testable import CLI

@Suite struct YAMLTests {
    @Test func writesNestedObjectsAndArraysInBlockStyle() {
        let value = JSONValue.object([
            ("user", .object([("id", .string("usr_1")), ("email", .string("ada@example.com"))])),
            ("roles", .array([.string("admin"), .string("viewer")])),
            ("tenants", .array([.object([("id", .string("tnt_1")), ("personal", .bool(true)), ("tags", .array([.string("a")]))])])),
            ("empty", .object([])), ("none", .array([])), ("expires_at", .null), ("count", .int(-3)), ("ratio", .double(0.5)),
            ("matrix", .array([.array([.int(1), .int(2)]), .array([])])),
        ])
        #expect(
            YAML.emit(value) == """
                user:
                  id: usr_1
                  email: ada@example.com
                roles:
                - admin
                - viewer
                tenants:
                - id: tnt_1
                  personal: true
                  tags:
                  - a
                empty: {}
                none: []
                expires_at: null
                count: -3
                ratio: 0.5
                matrix:
                - - 1
                  - 2
                - []

                """)
    }

    @Test func scalarsAtTheTop() {
        #expect(YAML.emit(.string("x")) == "x\n")
        #expect(YAML.emit(.array([])) == "[]\n")
        #expect(YAML.emit(.null) == "null\n")
    }

    @Test(arguments: [
        ("admin", "admin"),
        ("ada@example.com", "ada@example.com"),
        ("http://127.0.0.1:8080/x", "http://127.0.0.1:8080/x"),
        ("role:read", "role:read"),
        ("two words", "two words"),
        ("", #""""#),
        ("*:*", #""*:*""#),
        ("2026-11-27T10:47:11Z", #""2026-11-27T10:47:11Z""#),
        ("0123456789abcdef", #""0123456789abcdef""#),
        ("1e3", #""1e3""#),
        ("yes", #""yes""#),
        ("No", #""No""#),
        ("null", #""null""#),
        ("~", #""~""#),
        (".inf", #"".inf""#),
        ("-x", #""-x""#),
        ("a: b", #""a: b""#),
        ("a #b", #""a #b""#),
        ("ends:", #""ends:""#),
        ("trailing ", #""trailing ""#),
        ("line\nbreak", #""line\nbreak""#),
        ("quote\"s", #""quote\"s""#),
        ("{x}", #""{x}""#),
        ("ünï", #""ünï""#),
    ])
    func quotesStringsAReaderCouldTakeForSomethingElse(text: String, expected: String) {
        #expect(YAML.string(text) == expected)
    }

    @Test func floatsHaveADotAndASignedExponent() {
        #expect(YAML.scalar(.double(1e20)) == "1.0e+20")
        #expect(YAML.scalar(.double(1.5e-7)) == "1.5e-07")
        #expect(YAML.scalar(.double(2)) == "2.0")
        #expect(YAML.scalar(.double(.infinity)) == "null")
    }
}

@Suite struct TextTableTests {
    @Test func alignsColumnsWithoutTrailingSpaces() {
        let table = TextTable.render(["ID", "NAME", "NOTE"], [["1", "alpha", ""], ["200", "b", "last"], ["3"]])
        #expect(
            table == """
                ID   NAME   NOTE
                1    alpha
                200  b      last
                3

                """)
    }

    @Test func cells() {
        #expect(TextTable.cell(.array([.string("a"), .string("b")])) == "a,b")
        #expect(TextTable.cell(nil) == "-")
        #expect(TextTable.cell(.null) == "-")
        #expect(TextTable.cell(.string("")) == "-")
        #expect(TextTable.cell(.bool(true)) == "yes")
        #expect(TextTable.cell(.int(42)) == "42")
    }
}

@Suite struct OrderedJSONTests {
    @Test func keepsTheOrderOfKeys() {
        let parsed = OrderedJSON.parse(Array(#" {"z": 1, "a": {"y": [true, false, null], "b": "x"}, "m": -2.5e3} "#.utf8))
        #expect(
            parsed
                == .object([
                    ("z", .int(1)), ("a", .object([("y", .array([.bool(true), .bool(false), .null])), ("b", .string("x"))])),
                    ("m", .double(-2500)),
                ]))
    }

    @Test func decodesEscapes() {
        let parsed = OrderedJSON.parse(Array(#"["a\"b\\c\/d\n\t\u00e9\ud83d\ude00", "héllo"]"#.utf8))
        #expect(parsed == .array([.string("a\"b\\c/d\n\té😀"), .string("héllo")]))
    }

    @Test func bigIntegersBecomeDoubles() {
        #expect(OrderedJSON.parse(Array("9223372036854775807".utf8)) == .int(Int64.max))
        #expect(OrderedJSON.parse(Array("92233720368547758070".utf8)) == .double(92233720368547758070))
    }

    @Test(arguments: [
        "", "{", "[1,]", "{\"a\" 1}", "{\"a\":1,}", "01", "1.", ".5", "-", "tru", "\"unterminated", "\"tab\there\"", "[1] x",
        "\"\\ud800\"", "\"\\x\"", "{1: 2}", "1e",
    ])
    func refusesWhatIsNotJSON(text: String) {
        #expect(OrderedJSON.parse(Array(text.utf8)) == nil)
    }

    @Test func refusesDeepNesting() {
        #expect(OrderedJSON.parse(Array((String(repeating: "[", count: 10000) + String(repeating: "]", count: 10000)).utf8)) == nil)
        #expect(OrderedJSON.parse(Array((String(repeating: "[", count: 100) + String(repeating: "]", count: 100)).utf8)) != nil)
    }

    @Test func readsWhatTheServerWrites() {
        let value = JSONValue.object([("s", .string("ü\"\n\u{01}")), ("n", .array([.int(1), .double(0.25)]))])
        #expect(OrderedJSON.parse(Array(value.prettyPrinted().utf8)) == value)
        #expect(OrderedJSON.parse(Array(value.serialized().utf8)) == value)
    }
}

@Suite struct APIErrorAdviceTests {
    func message(_ status: Int, _ code: String?, _ text: String?, retryAfter: String? = nil, authenticated: Bool = true, profile: String = "default")
        -> String
    {
        APIErrorAdvice.message(
            status: status, code: code, message: text, retryAfter: retryAfter, requestID: "req_1", apiURL: "http://127.0.0.1:8080",
            profile: profile, authenticated: authenticated)
    }

    @Test func aRefusedKeyAsksForALogin() {
        let text = self.message(401, "unauthorized", "the API key is invalid, expired or revoked")
        #expect(text.contains("your API key was refused") && text.contains("cloud auth login"))
        #expect(self.message(401, "unauthorized", "x", profile: "prod").contains("--profile prod"))
        // Logging in with a wrong password is not about the key.
        #expect(self.message(401, "invalid_credentials", "the email or the password is wrong", authenticated: false)
            == "the email or the password is wrong [401 invalid_credentials]")
    }

    @Test func aDenialNamesTheMissingPermission() {
        let text = self.message(403, "forbidden", "this needs the permission role:create, which your roles in this tenant do not grant")
        #expect(text.hasPrefix("permission denied: this needs role:create,"))
        #expect(text.contains("cloud roles bind"))
        #expect(self.message(403, "forbidden", "you cannot grant bucket:*, which …") == "permission denied: you cannot grant bucket:*, which … [403 forbidden]")
    }

    @Test func otherStatuses() {
        #expect(self.message(429, "too_many_attempts", "too many failed logins", retryAfter: "900").hasSuffix("; try again in 15 minutes"))
        #expect(self.message(429, "too_many_attempts", "locked; try again in 900 seconds", retryAfter: "900")
            == "locked; try again in 900 seconds [429 too_many_attempts]")
        #expect(self.message(429, "too_many_attempts", "slow down", retryAfter: "7").hasSuffix("; try again in 7 seconds"))
        #expect(self.message(404, "not_found", "no role named x in this tenant") == "not found: no role named x in this tenant [404 not_found]")
        #expect(self.message(404, "not_found", "no route GET /x; see /openapi.json").contains("does not have this API"))
        #expect(self.message(409, "role_in_use", "the role is bound") == "the role is bound [409 role_in_use]")
        #expect(self.message(500, "internal", "the server failed").contains("request id req_1"))
        #expect(self.message(403, nil, nil).contains("not the control plane's error JSON"))
    }

    @Test func unreachableSaysWhatToDo() {
        let text = APIErrorAdvice.unreachable("http://127.0.0.1:8080", reason: "connection refused")
        #expect(text.hasPrefix("cannot reach http://127.0.0.1:8080: connection refused"))
        #expect(text.contains("cloud dev") && text.contains("--api-url") && text.contains("CLOUD_API_URL"))
    }
}
