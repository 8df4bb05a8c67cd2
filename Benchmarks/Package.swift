// swift-tools-version: 6.1
// Micro-benchmarks for vpm's packet path: a package of its own, so `make test` and CI never
// build ordo-one/benchmark. Run them with `make bench-micro` (see docs/performance.md).
import PackageDescription

let package = Package(
    name: "vpm-benchmarks",
    platforms: [.macOS(.v13)],
    dependencies: [
        .package(name: "vpm", path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.0", traits: ["MallocInterposer"]),
    ],
    targets: [
        // IPPacket parse + setDestinationPort: IPv4/IPv6, 64 B/64 KB, complete/partial checksum.
        .executableTarget(
            name: "PacketRewrite",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "VPMCore", package: "vpm"),
            ],
            path: "Benchmarks/PacketRewrite",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        // PacketPipeline.process: the whole per-packet decision and verdict, both datapaths.
        .executableTarget(
            name: "PacketDecision",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "VPMCore", package: "vpm"),
            ],
            path: "Benchmarks/PacketDecision",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        // FlowTable lookup + update at 10 to 1,000,000 flows, and resident memory per flow.
        .executableTarget(
            name: "FlowTableLookup",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "VPMCore", package: "vpm"),
            ],
            path: "Benchmarks/FlowTableLookup",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ],
    swiftLanguageModes: [.v5]
)
