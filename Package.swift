// swift-tools-version: 6.1
// The vpm package: modules follow docs/architecture.md (dependency arrows point down).
import PackageDescription

let strict: [SwiftSetting] = [.enableUpcomingFeature("InternalImportsByDefault")]

let package = Package(
    name: "vpm",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "vpm", targets: ["vpm"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-system", from: "1.4.0"),
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
        // The only Swift module that touches the C libraries.
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
        .target(name: "NetworkLab", swiftSettings: strict),
        .executableTarget(
            name: "vpm",
            dependencies: [
                "Netfilter", "Packet", "NetworkLab",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: strict
        ),
        .testTarget(name: "PacketTests", dependencies: ["Packet"]),
        .testTarget(name: "NetfilterTests", dependencies: ["Netfilter", "Packet", "NetworkLab"]),
    ]
)
