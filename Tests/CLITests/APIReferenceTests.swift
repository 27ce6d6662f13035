import ControlPlane
import Foundation
import Testing

@testable import CLI

@Suite struct APIReferenceTests {
    static let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../docs/api.md").standardized.path

    @Test func docsAPIMarkdownIsUpToDateWithTheRouteTable() throws {
        let expected = APIReference.markdown(ControlAPI.openAPIDocument)
        let actual = try? String(contentsOfFile: Self.path, encoding: .utf8)
        #expect(
            actual == expected,
            "docs/api.md is out of date with the route table: run `\(APIReference.regenerate)` (cloud openapi --markdown > docs/api.md) and commit it")
    }

    @Test func everyRouteIsDocumentedWithItsPermission() {
        let markdown = APIReference.markdown(ControlAPI.openAPIDocument)
        for route in ControlAPI.routeTable {
            let title = "\(route.method) \(route.path)"
            #expect(markdown.contains("| [`\(title)`](#\(APIReference.anchor(title))) | `\(route.access)` |"), "\(title)")
            #expect(markdown.contains("\n### `\(title)`\n"), "\(title)")
        }
    }

    @Test func anchorsAreGitHubs() {
        #expect(APIReference.anchor("POST /auth/keys/{id}/rotate") == "post-authkeysidrotate")
        #expect(APIReference.anchor("GET /openapi.json") == "get-openapijson")
        #expect(APIReference.anchor("NewKey") == "newkey")
    }
}
