// swift-tools-version:6.1
import PackageDescription

/// Settings every Swift target shares: Swift 6 language mode plus the upcoming features the style guide asks for.
let strictSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "TheCloud",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "cloud", targets: ["CLI"]),
        // For bench/listeners only (the control plane hosted behind another HTTP listener); not an API.
        .library(name: "CloudControlPlane", targets: ["ControlPlane", "ServiceContract", "HTTPServing"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
    ],
    targets: [
        // System libraries (Debian: libssl-dev, zlib1g-dev, libzstd-dev, liblz4-dev, libsqlite3-dev).
        .systemLibrary(name: "COpenSSL", pkgConfig: "openssl", providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CLZ4", pkgConfig: "liblz4", providers: [.apt(["liblz4-dev"])]),
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        // Small C kernels: hardware CRC32C and table-driven CRC64/NVME.
        .target(name: "CChecksums"),
        // Pure: "host:port" parsing shared by the node's listeners, gossip and RPC.
        .target(name: "HostAddress", dependencies: [], swiftSettings: strictSettings),
        // Pure: partitions, placement, layout versions and the builder. No I/O, no dependencies.
        .target(name: "Ring", dependencies: [], swiftSettings: strictSettings),
        // Pure: SWIM + Lifeguard state machine, member metadata, binary wire codec. NIOCore only.
        .target(name: "Gossip", dependencies: [.product(name: "NIOCore", package: "swift-nio")], swiftSettings: strictSettings),

        // Pure: quorum policy and the replicated write/read coordinators (state machines).
        .target(name: "Replication", dependencies: [], swiftSettings: strictSettings),

        // Pure: digests, HMAC, CRCs, hex.
        .target(
            name: "Hashing",
            dependencies: [
                "COpenSSL", "CZlib", "CChecksums",
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        // Pure: AWS Signature Version 4 (header, presigned, aws-chunked streaming and trailers).
        .target(
            name: "SigV4",
            dependencies: [
                "Hashing",
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        // A SigV4-signing HTTP client (URLSession) for S3 and the storage admin API: the CLI and the
        // control plane's storage service.
        .target(name: "StorageClient", dependencies: ["SigV4", "Hashing"], swiftSettings: strictSettings),
        // One SQLite connection wrapper (prepared-statement cache, `?` and `$n` parameters), shared by
        // the storage engine's metadata and the control plane's store.
        .target(name: "SQLite", dependencies: ["CSQLite"], swiftSettings: strictSettings),
        // The local storage engine: content-addressed blocks on disk, metadata in SQLite (WAL).
        .target(
            name: "StorageEngine",
            dependencies: [
                "Hashing", "SQLite", "CZstd", "CLZ4",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        // The S3 API over the engine: operations, XML, errors. No sockets.
        .target(
            name: "S3API",
            dependencies: [
                "Hashing", "SigV4", "StorageEngine", "TextEscaping",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        // The gossip shell: UDP SWIM packets and TCP push-pull on the gossip address, timers, metrics.
        .target(
            name: "Membership",
            dependencies: [
                "Gossip", "Hashing", "HostAddress", "HTTPServing",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings
        ),
        // Node-to-node calls over HTTP/1.1, authenticated with the cluster secret, with deadlines.
        .target(
            name: "ClusterRPC",
            dependencies: [
                "Hashing", "HostAddress", "HTTPServing",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings
        ),
        // The clustered store: replicated records and blocks behind the S3 layer's ObjectStore.
        .target(
            name: "Cluster",
            dependencies: [
                "StorageEngine", "S3API", "Ring", "Replication", "Hashing",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        // What the node's S3 listener and the control plane's API listener share: the accept loop with
        // graceful shutdown, idle connections closed.
        .target(
            name: "HTTPServing",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings
        ),
        // The storage daemon: HTTP server, configuration, metrics, services.
        .target(
            name: "StorageNode",
            dependencies: [
                "S3API", "StorageEngine", "SigV4", "Hashing", "Cluster", "Membership", "ClusterRPC", "Ring", "Gossip", "Replication",
                "HostAddress", "HTTPServing",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings
        ),
        // One async SQL interface over embedded SQLite and PostgreSQL (postgres-nio), database URLs and
        // the migration runner with a cross-process lock; the control plane's persistence builds on it.
        .target(
            name: "Database",
            dependencies: [
                "SQLite",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        // The service contract: what a cloud service declares (routes, permissions, migrations, tasks,
        // quotas) and what it gets (the environment, the task queue); JSON, errors, response shapes,
        // the REST conventions. No server in it: services and the CLI depend on it, not on the host.
        .target(
            name: "ServiceContract",
            dependencies: [
                "Database", "Hashing", "COpenSSL", "TextEscaping",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: strictSettings
        ),
        // The cloud services, one module each on the contract.
        .target(
            name: "Storage", dependencies: ["ServiceContract", "StorageClient", "Hashing", .product(name: "Logging", package: "swift-log")],
            path: "Sources/Services/Storage", swiftSettings: strictSettings),
        .target(
            name: "Queues",
            dependencies: ["ServiceContract", "Database", "SQLite", "Hashing", "SigV4", .product(name: "Logging", package: "swift-log")],
            path: "Sources/Services/Queues", swiftSettings: strictSettings),
        .target(
            name: "Notify",
            dependencies: ["ServiceContract", "Queues", "Database", "SQLite", "Hashing", .product(name: "Logging", package: "swift-log")],
            path: "Sources/Services/Notify", swiftSettings: strictSettings),
        .target(
            name: "Cron",
            dependencies: [
                "ServiceContract", "Queues", "Notify", "Database", "SQLite", .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Sources/Services/Cron", swiftSettings: strictSettings),
        .target(
            name: "Secrets",
            dependencies: ["ServiceContract", "Database", "SQLite", "Hashing", "COpenSSL", .product(name: "Logging", package: "swift-log")],
            path: "Sources/Services/Secrets", swiftSettings: strictSettings),
        // Drivers: hardware-facing code behind the protocols of the services that use it.
        // The Docker Engine API over its Unix socket (no docker CLI).
        .target(
            name: "DockerEngine",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            path: "Sources/Backends/DockerEngine", swiftSettings: strictSettings),
        // Block volumes as sparse files on the host, ext4 on a loop device, mounted where containers see them.
        .target(name: "VolumeFiles", path: "Sources/Backends/VolumeFiles", swiftSettings: strictSettings),
        // XML and JSON string escaping: one place for the S3 responses, the service contract's JSON and libvirt's XML.
        .target(name: "TextEscaping", path: "Sources/TextEscaping", swiftSettings: strictSettings),
        // QEMU domains through the libvirt C API, loaded with dlopen (no libvirt-dev to build; a host
        // without libvirt gets a clear error), and the disks and kernels of their images.
        .target(name: "Libvirt", dependencies: ["VolumeFiles", "TextEscaping"], path: "Sources/Backends/Libvirt", swiftSettings: strictSettings),
        // The compute agent (`cloud agent`): a machine's Docker Engine behind a token, for a control plane elsewhere.
        .target(
            name: "ComputeAgent",
            dependencies: [
                .product(name: "Logging", package: "swift-log"), .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"), .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings),
        .target(
            name: "Compute",
            dependencies: [
                "ServiceContract", "DockerEngine", "VolumeFiles", "Libvirt", "StorageClient", "Database", "SQLite", "Hashing",
                .product(name: "Logging", package: "swift-log"), .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"), .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Sources/Services/Compute", swiftSettings: strictSettings),
        // The control plane (the host): identity, API keys, tenants, RBAC, tasks, the REST API and its
        // persistence; it hosts the services.
        .target(
            name: "ControlPlane",
            dependencies: [
                "ServiceContract", "Hashing", "HostAddress", "HTTPServing", "COpenSSL", "SQLite", "Database",
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "CLI",
            dependencies: [
                "StorageNode", "ControlPlane", "ServiceContract", "Storage", "Secrets", "Queues", "Notify", "Cron", "Compute", "ComputeAgent", "VolumeFiles", "Libvirt", "Database", "SigV4", "Hashing",
                "Gossip", "Replication", "StorageClient",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: strictSettings
        ),
        // Test doubles shared by test targets; not a product.
        // What the cloud services' tests share (a fresh SQLite or PostgreSQL database, an API driver).
        .target(
            name: "ServiceTestSupport", dependencies: ["ControlPlane", "ServiceContract", "Database", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strictSettings),
        .target(
            name: "TestSupport",
            dependencies: [
                "StorageEngine",
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),

        .testTarget(name: "HashingTests", dependencies: ["Hashing"], swiftSettings: strictSettings),
        .testTarget(
            name: "SigV4Tests", dependencies: ["SigV4", "Hashing"], exclude: ["generate_botocore_vectors.py"],
            swiftSettings: strictSettings),
        .testTarget(
            name: "StorageEngineTests",
            dependencies: ["StorageEngine", "TestSupport", "Hashing", "SQLite"],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "S3APITests",
            dependencies: ["S3API", "StorageEngine", "TestSupport", "SigV4", "Hashing"],
            swiftSettings: strictSettings
        ),
        .testTarget(name: "ReplicationTests", dependencies: ["Replication"], swiftSettings: strictSettings),
        .testTarget(name: "RingTests", dependencies: ["Ring"], swiftSettings: strictSettings),
        .testTarget(name: "GossipTests", dependencies: ["Gossip"], swiftSettings: strictSettings),
        .testTarget(name: "MembershipTests", dependencies: ["Membership", "Gossip", "HostAddress"], swiftSettings: strictSettings),
        .testTarget(
            name: "ControlPlaneTests", dependencies: ["ControlPlane", "ServiceContract", "Storage", "Database", "SQLite", "Hashing"],
            swiftSettings: strictSettings),
        .testTarget(name: "DatabaseTests", dependencies: ["Database", "SQLite", .product(name: "Logging", package: "swift-log")], swiftSettings: strictSettings),
        .testTarget(
            name: "TenancyTests", dependencies: ["S3API", "StorageEngine", "TestSupport", "SigV4", "Hashing", "StorageNode"],
            swiftSettings: strictSettings),
        .testTarget(name: "ClusterRPCTests", dependencies: ["ClusterRPC"], swiftSettings: strictSettings),
        // The `cloud` CLI's pure parts (config file, output formats, API reference); tests the executable target.
        .testTarget(
            name: "CLITests",
            dependencies: ["CLI", "ControlPlane", "ServiceContract", "Storage", "Secrets", "Queues", "Notify", "Cron", "Compute", "Database", "SQLite"],
            swiftSettings: strictSettings),
        .testTarget(
            name: "SecretsTests", dependencies: ["ServiceTestSupport", "Secrets", "ControlPlane", "ServiceContract", "Database", "SQLite", "Hashing"],
            swiftSettings: strictSettings),
        .testTarget(
            name: "QueuesTests", dependencies: ["ServiceTestSupport", "Queues", "ControlPlane", "ServiceContract", "Database", "SQLite", "Hashing", "SigV4"],
            swiftSettings: strictSettings),
        .testTarget(
            name: "NotifyTests", dependencies: ["ServiceTestSupport", "Notify", "Queues", "ControlPlane", "ServiceContract", "Database", "SQLite", "Hashing"],
            swiftSettings: strictSettings),
        .testTarget(
            name: "CronTests", dependencies: ["ServiceTestSupport", "Cron", "Queues", "Notify", "ControlPlane", "ServiceContract", "Database", "SQLite"],
            swiftSettings: strictSettings),
        .testTarget(
            name: "ComputeTests", dependencies: ["Compute", "ComputeAgent", "DockerEngine", "VolumeFiles", "Libvirt", "ServiceContract", "ServiceTestSupport", "ControlPlane", "Database", "SQLite"], swiftSettings: strictSettings),
        .testTarget(
            name: "ClusterTests",
            dependencies: ["Cluster", "StorageEngine", "S3API", "Ring", "Replication", "TestSupport", "Hashing"],
            swiftSettings: strictSettings
        ),
    ]
)
