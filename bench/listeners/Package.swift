// swift-tools-version:6.2
import PackageDescription

// The control API behind two HTTP listeners (ours on HTTPServing, Hummingbird 2), and the cost of
// recording a request in our metrics versus swift-prometheus. Built only by bench/listeners.py,
// never by `make build`, so the platform's build does not pay for Hummingbird. See docs/design.md.
let package = Package(
    name: "ListenerBench",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(path: "TheCloud"),  // a link to the repository, so the identity is the same in every clone
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", exact: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", exact: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
    ],
    targets: [
        .executableTarget(
            name: "ListenerBench",
            dependencies: [
                .product(name: "CloudControlPlane", package: "TheCloud"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
            ]
        )
    ]
)
