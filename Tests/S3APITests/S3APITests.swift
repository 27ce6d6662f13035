import Foundation
import Testing

@testable import S3API

@Suite struct XMLParserTests {
    @Test func parsesACompleteMultipartUploadBody() throws {
        let body = """
            <?xml version="1.0" encoding="UTF-8"?>
            <CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
              <!-- a comment -->
              <Part><PartNumber>1</PartNumber><ETag>&quot;abc&quot;</ETag></Part>
              <Part><PartNumber>2</PartNumber><ETag><![CDATA["d<e>f"]]></ETag></Part>
            </CompleteMultipartUpload>
            """
        let root = try XMLParser.parse(Array(body.utf8))
        #expect(root.name == "CompleteMultipartUpload")
        let parts = root.children("Part")
        #expect(parts.count == 2)
        #expect(parts[0].child("ETag")?.text == "\"abc\"")
        #expect(parts[1].child("ETag")?.text == "\"d<e>f\"")
        #expect(parts[1].child("PartNumber")?.text == "2")
    }

    @Test func decodesEntitiesAndNamespacePrefixes() throws {
        let root = try XMLParser.parse(Array("<s3:Delete><s3:Object><s3:Key>a&amp;b&#x20;&#233;&lt;</s3:Key></s3:Object></s3:Delete>".utf8))
        #expect(root.name == "Delete")
        #expect(root.child("Object")?.child("Key")?.text == "a&b é<")
    }

    @Test(arguments: [
        "", "<", "<a>", "<a></b>", "<a><b></a></b>", "<a>&bogus;</a>", "<a/><b/>", "<!DOCTYPE x><a/>",
        "<a x=1/>", "<a>&#xD800;</a>", String(repeating: "<a>", count: 100) + String(repeating: "</a>", count: 100),
        "\u{0}\u{1}\u{2}random", "<a></a>trailing",
    ])
    func rejectsMalformedDocuments(_ text: String) {
        #expect(throws: XMLParser.Failure.self) { try XMLParser.parse(Array(text.utf8)) }
    }

    @Test func writerEscapes() {
        var xml = XMLWriter()
        xml.element("Key", "a<b>&\"c'\u{1}")
        #expect(xml.text.hasSuffix("<Key>a&lt;b&gt;&amp;&quot;c&apos;&#1;</Key>"))
    }
}

@Suite struct EncodingTests {
    @Test func urlEncodingKeepsUnreservedAndSlash() {
        #expect(URLEncoding.encode("a b/c+d%é~_.-") == "a%20b/c%2Bd%25%C3%A9~_.-")
    }

    @Test func urlDecoding() {
        #expect(URLEncoding.decode("a%20b%2Fc") == "a b/c")
        #expect(URLEncoding.decode("a+b", plusAsSpace: true) == "a b")
        #expect(URLEncoding.decode("a+b") == "a+b")
        #expect(URLEncoding.decode("%zz") == nil)
        #expect(URLEncoding.decode("%C3") == nil, "invalid UTF-8 is refused")
    }

    @Test func queryParsing() throws {
        let pairs = try #require(URLEncoding.parseQuery("list-type=2&prefix=a%2Fb&delimiter=%2F&uploads"))
        #expect(pairs.map(\.0) == ["list-type", "prefix", "delimiter", "uploads"])
        #expect(pairs.map(\.1) == ["2", "a/b", "/", ""])
    }

    @Test func httpDates() throws {
        let date = Date(timeIntervalSince1970: 1_255_369_830.789)
        #expect(HTTPDate.rfc1123(date) == "Mon, 12 Oct 2009 17:50:30 GMT")
        #expect(HTTPDate.iso8601(date) == "2009-10-12T17:50:30.000Z")
        for text in ["Mon, 12 Oct 2009 17:50:30 GMT", "Monday, 12-Oct-09 17:50:30 GMT", "Mon Oct 12 17:50:30 2009", "2009-10-12T17:50:30.000Z"] {
            #expect(HTTPDate.parse(text) == Date(timeIntervalSince1970: 1_255_369_830), "\(text)")
        }
        #expect(HTTPDate.parse("yesterday") == nil)
        #expect(HTTPDate.parse("Mon, 42 Oct 2009 17:50:30 GMT") == nil)
    }
}

@Suite struct ObjectRulesTests {
    @Test(arguments: [
        ("bytes=0-9", 100, 0...9), ("bytes=90-", 100, 90...99), ("bytes=-5", 100, 95...99), ("bytes=0-1000", 100, 0...99),
        ("bytes=-1000", 100, 0...99),
    ] as [(String, Int64, ClosedRange<Int64>)])
    func satisfiableRanges(_ text: String, _ size: Int64, _ expected: ClosedRange<Int64>) throws {
        #expect(try S3Handler.parseRange(text, size: size) == expected)
    }

    @Test(arguments: ["bytes=0-1,5-6", "bytes=5-1", "items=0-1", "bytes=a-b", "bytes="])
    func ignoredRanges(_ text: String) throws {
        #expect(try S3Handler.parseRange(text, size: 100) == nil)
    }

    @Test(arguments: [("bytes=100-", Int64(100)), ("bytes=0-0", 0), ("bytes=-0", 100)])
    func unsatisfiableRanges(_ text: String, _ size: Int64) {
        #expect(throws: S3Error.self) { try S3Handler.parseRange(text, size: size) }
    }

    @Test func etagLists() {
        #expect(S3Handler.etagMatches("\"abc\"", "abc"))
        #expect(S3Handler.etagMatches("abc", "abc"))
        #expect(S3Handler.etagMatches("\"x\", \"abc\"", "abc"))
        #expect(S3Handler.etagMatches("*", "abc"))
        #expect(S3Handler.etagMatches("W/\"abc\"", "abc"))
        #expect(!S3Handler.etagMatches("\"abd\"", "abc"))
    }

    @Test(arguments: ["abc", "my-bucket", "my.bucket.2", String(repeating: "a", count: 63), "1-2"])
    func validBucketNames(_ name: String) {
        #expect(S3Handler.isValidBucketName(name))
    }

    @Test(arguments: [
        "ab", String(repeating: "a", count: 64), "MyBucket", "-abc", "abc-", "a..b", "a.-b", "192.168.1.1", "xn--abc",
        "abc-s3alias", "a_b", "abc ", "",
    ])
    func invalidBucketNames(_ name: String) {
        #expect(!S3Handler.isValidBucketName(name))
    }

    @Test func virtualHostedStyle() {
        #expect(S3Handler.virtualHostBucket(host: "photos.s3.local:9000", domain: "s3.local") == "photos")
        #expect(S3Handler.virtualHostBucket(host: "a.b.s3.local", domain: "s3.local") == "a.b")
        #expect(S3Handler.virtualHostBucket(host: "s3.local:9000", domain: "s3.local") == nil)
        #expect(S3Handler.virtualHostBucket(host: "127.0.0.1:9000", domain: "s3.local") == nil)
    }
}
