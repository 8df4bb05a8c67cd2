// swift-tools-version: 6.1
// The vpm package: modules follow docs/architecture.md (dependency arrows point down).
import PackageDescription

let strict: [SwiftSetting] = [.enableUpcomingFeature("InternalImportsByDefault")]

let package = Package(
    name: "vpm",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "vpm", targets: ["vpm"]),
        // For the micro-benchmarks in Benchmarks/ (a package of their own).
        .library(name: "VPMCore", targets: ["Packet", "FlowTable", "Netfilter", "Policy", "Decision", "Engine"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-system", from: "1.4.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.70.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.0.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.0.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.30.0"),
    ],
    targets: [
        // The real Debian libraries: libnetfilter-queue-dev, libnfnetlink-dev, libmnl-dev.
        .systemLibrary(
            name: "CNetfilterQueue",
            pkgConfig: "libnetfilter_queue",
            providers: [.apt(["libnetfilter-queue-dev", "libnfnetlink-dev", "libmnl-dev"])]
        ),
        // Only what Swift cannot import: function-like macros and static inline helpers.
        .target(name: "CNetfilterShim"),
        // `vpm exec`'s seccomp filter, the fork that installs it, the seccomp ioctls and the
        // raw syscalls (pidfd_getfd, process_vm_readv) Swift cannot call: no library.
        .target(name: "CInterceptionShim"),
        // `vpm exec`'s supervisor: the program's bind/connect/getsockname through seccomp
        // user notification, for every program and every user.
        .target(
            name: "Interception",
            dependencies: ["CInterceptionShim", "Control", "Policy", "Packet"],
            swiftSettings: strict
        ),
        // The socket datapath's C side: the sk_lookup program (bpf/steer.bpf.c, compiled by
        // scripts/build-bpf.sh into steer_object.c), loaded and attached through libbpf.
        .target(name: "CSteering", exclude: ["bpf"], linkerSettings: [.linkedLibrary("bpf")]),
        // The socket datapath's maps, pins and program (docs/datapaths.md): beside Netfilter,
        // the other Swift module that touches C libraries.
        .target(name: "Steering", dependencies: ["CSteering", "Packet"], swiftSettings: strict),
        // The only Swift module that touches the netfilter C libraries.
        .target(
            name: "Netfilter",
            dependencies: [
                "CNetfilterQueue", "CNetfilterShim",
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: strict
        ),
        // Zero-copy packet views and checksums. Standard library only.
        .target(name: "Packet", swiftSettings: strict),
        // Throwaway network namespaces for `vpm demo` and the privileged tests.
        .target(name: "NetworkLab", dependencies: ["HostCommand"], swiftSettings: strict),
        // Runs control-plane commands (ip, iptables) with a time limit.
        .target(name: "HostCommand", swiftSettings: strict),
        // Configuration model and parsing (YAML), AID and source matching.
        .target(
            name: "Policy",
            dependencies: ["Packet", "FlowTable", .product(name: "Yams", package: "Yams")],
            swiftSettings: strict
        ),
        // Translations, TCP/UDP state, expiry, capacity, snapshots.
        .target(name: "FlowTable", dependencies: ["Packet"], swiftSettings: strict),
        // Request/response types and the Unix socket shared by the engine and the CLI.
        .target(name: "Control", swiftSettings: strict),
        // The negotiation channel between cooperative engines (TCP, HMAC-SHA256).
        .target(
            name: "Negotiation",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strict
        ),
        // A fleet's directory of engines and instances in etcd (docs/fleet.md): etcd's JSON
        // gateway through async-http-client, X25519 + HKDF pairwise keys through swift-crypto.
        .target(
            name: "Fleet",
            dependencies: [
                "Policy", "Packet",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // The Prometheus/OpenMetrics endpoint: the engine's counters (the table vpm stats
        // renders) through swift-prometheus (swift-metrics' CoreMetrics), served over HTTP by SwiftNIO.
        .target(
            name: "MetricsEndpoint",
            dependencies: [
                "Control",
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        // The per-packet decision: policy, AID, flow table, holding for negotiation. No
        // netfilter and no root: tested with byte fixtures.
        .target(name: "Decision", dependencies: ["Packet", "FlowTable", "Policy"], swiftSettings: strict),
        // The queue loop, the datapaths (rules, verdicts), instances, control server.
        .target(
            name: "Engine",
            dependencies: [
                "Decision", "Netfilter", "Steering", "Packet", "FlowTable", "Policy", "Control", "HostCommand", "Negotiation",
                "MetricsEndpoint", "Fleet",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "vpm",
            dependencies: [
                "Engine", "Decision", "Netfilter", "Packet", "Policy", "Control", "NetworkLab", "HostCommand", "Interception",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: strict
        ),
        // Shared by the privileged test targets: root checks, the vpm binary, scratch folders.
        .target(name: "TestSupport", dependencies: ["NetworkLab", "Control"], path: "Tests/TestSupport"),
        .testTarget(name: "PacketTests", dependencies: ["Packet"]),
        .testTarget(name: "PolicyTests", dependencies: ["Policy", "Packet", "FlowTable"]),
        .testTarget(name: "FlowTableTests", dependencies: ["FlowTable", "Packet"]),
        // Golden/: the control protocol's messages as JSON files, read by path.
        .testTarget(name: "ControlTests", dependencies: ["Control"], exclude: ["Golden"]),
        .testTarget(name: "HostCommandTests", dependencies: ["HostCommand"]),
        .testTarget(name: "MetricsEndpointTests", dependencies: ["MetricsEndpoint", "Control", "TestSupport"]),
        .testTarget(name: "NegotiationTests", dependencies: ["Negotiation"]),
        .testTarget(name: "FleetTests", dependencies: ["Fleet", "Policy", "Packet"]),
        .testTarget(name: "NetfilterTests", dependencies: ["Netfilter", "Packet", "NetworkLab", "TestSupport"]),
        .testTarget(name: "SteeringTests", dependencies: ["Steering", "Packet", "NetworkLab", "TestSupport"]),
        .testTarget(name: "DecisionTests", dependencies: ["Decision", "Packet", "FlowTable", "Policy"]),
        .testTarget(name: "EngineTests", dependencies: ["Engine", "Decision", "Packet", "FlowTable", "Policy", "Control", "Netfilter", "Steering"]),
        .testTarget(name: "EndToEndTests", dependencies: ["NetworkLab", "Control", "TestSupport", "MetricsEndpoint", "Fleet", "Negotiation"]),
    ]
)
