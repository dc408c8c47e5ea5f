// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "QuantLM",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "Quant", targets: ["Quant"]),
        .library(name: "Runtime", targets: ["Runtime"]),
        // The public Swift API (`Model`) under a name an app can import.
        .library(name: "QuantLM", targets: ["QuantLM"]),
        .executable(name: "convert", targets: ["convert"]),
        .executable(name: "run", targets: ["run"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        // `run serve`'s HTTP/1.1 stack (NIOHTTP1); nothing else in the package uses it.
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
    ],
    targets: [
        // libzstd from the system (Debian: libzstd-dev). See Sources/CZstd/module.modulemap.
        .systemLibrary(
            name: "CZstd",
            pkgConfig: "libzstd",
            providers: [.apt(["libzstd-dev"]), .brew(["zstd"])]
        ),
        // SIMD kernels in C: Swift has no per-function target attribute, so one Swift binary
        // cannot carry AVX-512 code and still run on a CPU without it. See include/qlm_kernels.h.
        .target(name: "CKernels"),
        .target(name: "Quant", dependencies: ["CKernels", "CZstd"]),
        .target(name: "Runtime", dependencies: ["Quant", "CKernels", "CZstd"]),
        .target(name: "QuantLM", dependencies: ["Runtime"]),
        .executableTarget(
            name: "convert",
            dependencies: ["Quant", "Runtime", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .executableTarget(
            name: "run",
            dependencies: ["Quant", "Runtime", .product(name: "ArgumentParser", package: "swift-argument-parser"),
                           .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
                           .product(name: "NIOHTTP1", package: "swift-nio")]
        ),
        // Test helpers every test target shares: locating ../shared and the fetched models, one
        // seeded RNG, one stories260K conversion, running the built executables.
        .target(name: "TestSupport", dependencies: ["CKernels", "Quant", "Runtime"], path: "Tests/TestSupport"),
        .testTarget(name: "KernelTests", dependencies: ["CKernels", "Quant", "TestSupport"]),
        .testTarget(name: "QuantTests", dependencies: ["Quant", "Runtime", "CKernels", "TestSupport"]),
        // Uses only the public API (the README's example): what a Swift app can call.
        .testTarget(name: "PublicAPITests", dependencies: ["QuantLM", "TestSupport"]),
        .testTarget(name: "RuntimeTests", dependencies: ["Runtime", "Quant", "CKernels", "TestSupport"]),
    ],
    swiftLanguageModes: [.v5]
)
