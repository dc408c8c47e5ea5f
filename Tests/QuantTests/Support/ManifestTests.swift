import Foundation
import Quant
import XCTest
import TestSupport

/// models/manifest.json must describe the copies this project's machines have byte for byte.
final class ManifestTests: XCTestCase {
    func testSharedCopiesMatchTheManifest() throws {
        let url = SharedData.packageRoot.appendingPathComponent("models/manifest.json")
        let obj = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        let models = obj["models"] as! [[String: Any]]
        var checked = 0
        for m in models {
            for f in m["files"] as! [[String: Any]] {
                guard let rel = f["shared_path"] as? String else { continue }
                let path = try SharedData.path(rel)
                let data = try MappedFile(path)
                XCTAssertEqual(data.count, f["bytes"] as? Int, rel)
                XCTAssertEqual(SHA256.hex(of: data.bytes), f["sha256"] as? String, rel)
                checked += 1
            }
            // Every model names where to get it and its licence.
            XCTAssertNotNil(m["source"] as? String)
            XCTAssertNotNil(m["license"] as? String)
        }
        XCTAssertEqual(checked, 6)
    }
}
