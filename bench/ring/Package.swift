// swift-tools-version:6.1
import PackageDescription

// Microbenchmark of ring lookups and a release-mode survey of placement quality.
// `Sources/Ring` is a symlink to the root package's `Sources/Ring`, so this package builds the very same
// sources without the root manifest having to export a library product, and without resolving the
// root package's dependencies. Run: swift run -c release --package-path bench/ring
let strictSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "ring-bench",
    platforms: [.macOS(.v15)],
    targets: [
        .target(name: "Ring", path: "Sources/Ring", swiftSettings: strictSettings),
        .executableTarget(name: "ring-bench", dependencies: ["Ring"], swiftSettings: strictSettings),
    ]
)
