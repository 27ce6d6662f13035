import Foundation
import Hashing

/// The compact binary form of ``ObjectMetadata`` kept in the `meta` column.
///
/// Format version 1: the byte `0x01`, then fields, each a tag byte and its payload. Strings are a
/// LEB128 length and UTF-8 bytes; integers are LEB128. Tags (never reuse or renumber them):
/// `1` content type · `2` stored header (name, value) · `3` user metadata (name, value) ·
/// `4` checksum (algorithm, value, type) · `5` part sizes (count, sizes). Unknown tags are an error,
/// so a newer format is never misread. Rows written as JSON (first byte `{`) are still read.
public enum MetadataCodec {
    static let version: UInt8 = 1

    public static func encode(_ metadata: ObjectMetadata) -> [UInt8] {
        var out: [UInt8] = [version]
        out.reserveCapacity(64)
        if let contentType = metadata.contentType {
            out.append(1)
            appendString(contentType, to: &out)
        }
        for (name, value) in metadata.headers.sorted(by: { $0.key < $1.key }) {
            out.append(2)
            appendString(name, to: &out)
            appendString(value, to: &out)
        }
        for (name, value) in metadata.user.sorted(by: { $0.key < $1.key }) {
            out.append(3)
            appendString(name, to: &out)
            appendString(value, to: &out)
        }
        if let checksum = metadata.checksum {
            out.append(4)
            appendString(checksum.algorithm.rawValue, to: &out)
            appendString(checksum.value, to: &out)
            appendString(checksum.type, to: &out)
        }
        if let sizes = metadata.partSizes {
            out.append(5)
            appendInteger(UInt64(sizes.count), to: &out)
            for size in sizes { appendInteger(UInt64(size), to: &out) }
        }
        return out
    }

    public static func decode(_ bytes: [UInt8]) throws -> ObjectMetadata {
        guard let first = bytes.first else { throw corrupt }
        if first == UInt8(ascii: "{") {
            return try JSONDecoder().decode(ObjectMetadata.self, from: Data(bytes))
        }
        guard first == version else { throw corrupt }
        var reader = Reader(bytes: bytes, index: 1)
        var metadata = ObjectMetadata()
        while reader.index < bytes.count {
            let tag = bytes[reader.index]
            reader.index += 1
            switch tag {
            case 1:
                metadata.contentType = try reader.string()
            case 2:
                let name = try reader.string()
                metadata.headers[name] = try reader.string()
            case 3:
                let name = try reader.string()
                metadata.user[name] = try reader.string()
            case 4:
                guard let algorithm = ChecksumAlgorithm(rawValue: try reader.string()) else { throw corrupt }
                let value = try reader.string()
                metadata.checksum = StoredChecksum(algorithm: algorithm, value: value, type: try reader.string())
            case 5:
                let count = try reader.integer()
                guard count <= 10_000 else { throw corrupt }
                var sizes: [Int64] = []
                sizes.reserveCapacity(Int(count))
                for _ in 0..<count { sizes.append(Int64(try reader.integer())) }
                metadata.partSizes = sizes
            default:
                throw corrupt
            }
        }
        return metadata
    }

    static let corrupt = StorageError(.database, "an object's metadata record is not readable")

    private static func appendInteger(_ value: UInt64, to out: inout [UInt8]) {
        var value = value
        while value >= 0x80 {
            out.append(UInt8(truncatingIfNeeded: value) | 0x80)
            value >>= 7
        }
        out.append(UInt8(value))
    }

    private static func appendString(_ text: String, to out: inout [UInt8]) {
        appendInteger(UInt64(text.utf8.count), to: &out)
        out.append(contentsOf: text.utf8)
    }

    private struct Reader {
        let bytes: [UInt8]
        var index: Int

        mutating func integer() throws -> UInt64 {
            var value: UInt64 = 0
            var shift: UInt64 = 0
            while true {
                guard self.index < self.bytes.count, shift < 64 else { throw MetadataCodec.corrupt }
                let byte = self.bytes[self.index]
                self.index += 1
                value |= UInt64(byte & 0x7F) << shift
                if byte & 0x80 == 0 { return value }
                shift += 7
            }
        }

        mutating func string() throws -> String {
            let length = try self.integer()
            guard length <= UInt64(self.bytes.count - self.index) else { throw MetadataCodec.corrupt }
            let end = self.index + Int(length)
            let text = String(decoding: self.bytes[self.index..<end], as: UTF8.self)
            self.index = end
            return text
        }
    }
}
