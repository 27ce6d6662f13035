import ControlPlane
import Foundation
import ServiceContract
import Testing

@testable import CLI

@Suite struct APIReferenceTests {
    static let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../docs/api.md").standardized.path

    @Test func docsAPIMarkdownIsUpToDateWithTheRouteTable() throws {
        let expected = APIReference.markdown(try ControlAPI.openAPIDocument(services: HostedServices.described))
        let actual = try? String(contentsOfFile: Self.path, encoding: .utf8)
        #expect(
            actual == expected,
            "docs/api.md is out of date with the route table: run `\(APIReference.regenerate)` (cloud openapi --markdown > docs/api.md) and commit it")
    }

    @Test func everyRouteIsDocumentedWithItsPermission() throws {
        let markdown = APIReference.markdown(try ControlAPI.openAPIDocument(services: HostedServices.described))
        let catalog = try ServiceCatalog(services: HostedServices.described)
        let routes = ControlAPI.hostRouteSpecs(quotas: catalog.quotaResources) + catalog.services.flatMap { $0.routes.map(\.spec) }
        for route in routes {
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
