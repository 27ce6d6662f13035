import CLZ4
import CZstd

/// How blocks are compressed on disk.
public enum BlockCompression: String, Sendable, CaseIterable, Codable {
    /// Never compress.
    case none
    /// LZ4 when it saves at least an eighth of the block (fast: ~800 MB/s in, ~4 GB/s out).
    case lz4
    /// zstd level 1 when it saves at least an eighth (better ratio, ~540 MB/s in, ~1.7 GB/s out).
    case zstd
}

/// The codec byte stored in a block file's header. Values are part of the on-disk format: never change them.
enum BlockCodec: UInt8 {
    case raw = 0
    case lz4 = 1
    case zstd = 2
}

enum Codec {
    /// Compresses `input` with `compression`, or returns nil when that would not save at least an eighth.
    ///
    /// A 64 KiB sample is tried first so that incompressible data (media, archives, encrypted
    /// bytes) costs little.
    static func compress(_ input: UnsafeRawBufferPointer, with compression: BlockCompression) -> (BlockCodec, [UInt8])? {
        guard compression != .none, input.count >= 4096 else { return nil }
        let sampleSize = min(input.count, 64 * 1024)
        if input.count > sampleSize {
            let sample = UnsafeRawBufferPointer(rebasing: input[0..<sampleSize])
            guard let compressed = Self.run(sample, compression), compressed.count <= sampleSize - sampleSize / 8 else {
                return nil
            }
        }
        guard let compressed = Self.run(input, compression), compressed.count <= input.count - input.count / 8 else {
            return nil
        }
        return (compression == .lz4 ? .lz4 : .zstd, compressed)
    }

    private static func run(_ input: UnsafeRawBufferPointer, _ compression: BlockCompression) -> [UInt8]? {
        switch compression {
        case .none:
            return nil
        case .lz4:
            let bound = Int(LZ4_compressBound(Int32(input.count)))
            var output = [UInt8](repeating: 0, count: bound)
            let written = output.withUnsafeMutableBytes { out in
                LZ4_compress_default(
                    input.baseAddress!.assumingMemoryBound(to: CChar.self),
                    out.baseAddress!.assumingMemoryBound(to: CChar.self),
                    Int32(input.count),
                    Int32(bound)
                )
            }
            guard written > 0 else { return nil }
            output.removeLast(output.count - Int(written))
            return output
        case .zstd:
            let bound = ZSTD_compressBound(input.count)
            var output = [UInt8](repeating: 0, count: bound)
            let written = output.withUnsafeMutableBytes { out in
                ZSTD_compress(out.baseAddress, bound, input.baseAddress, input.count, 1)
            }
            guard ZSTD_isError(written) == 0 else { return nil }
            output.removeLast(output.count - written)
            return output
        }
    }

    /// Decompresses `input` into exactly `output.count` bytes; false when the data is not valid.
    static func decompress(_ input: UnsafeRawBufferPointer, codec: BlockCodec, into output: UnsafeMutableRawBufferPointer) -> Bool {
        switch codec {
        case .raw:
            guard input.count == output.count else { return false }
            if input.count > 0 { output.copyMemory(from: input) }
            return true
        case .lz4:
            guard let source = input.baseAddress, let destination = output.baseAddress else { return output.count == 0 }
            let produced = LZ4_decompress_safe(
                source.assumingMemoryBound(to: CChar.self),
                destination.assumingMemoryBound(to: CChar.self),
                Int32(input.count),
                Int32(output.count)
            )
            return Int(produced) == output.count
        case .zstd:
            guard let destination = output.baseAddress else { return output.count == 0 }
            let produced = ZSTD_decompress(destination, output.count, input.baseAddress, input.count)
            return ZSTD_isError(produced) == 0 && produced == output.count
        }
    }
}
