import Foundation
import Hashing

/// Key listing with prefix, delimiter roll-up and pagination, in UTF-8 byte order (as S3 orders keys).
enum Listing {
    /// Compares two keys by their UTF-8 bytes.
    static func compare(_ a: String, _ b: String) -> ComparisonResult {
        var left = a.utf8.makeIterator()
        var right = b.utf8.makeIterator()
        while true {
            switch (left.next(), right.next()) {
            case (nil, nil): return .orderedSame
            case (nil, _): return .orderedAscending
            case (_, nil): return .orderedDescending
            case (let x?, let y?):
                if x != y { return x < y ? .orderedAscending : .orderedDescending }
            }
        }
    }

    /// The smallest byte string greater than every string that starts with `prefix`, or nil when
    /// there is none (empty prefix, or all 0xFF).
    static func upperBound(of prefix: [UInt8]) -> [UInt8]? {
        var bytes = prefix
        while let last = bytes.last {
            if last < 0xFF {
                bytes[bytes.count - 1] = last + 1
                return bytes
            }
            bytes.removeLast()
        }
        return nil
    }

    static func run(
        _ db: SQLiteConnection,
        bucket: String,
        prefix: String,
        delimiter: String?,
        startAfter: String?,
        maxKeys: Int
    ) throws -> StorageEngine.ListPage {
        var page = StorageEngine.ListPage()
        let prefixBytes = Array(prefix.utf8)
        let end = upperBound(of: prefixBytes)
        let delimiter = (delimiter?.isEmpty ?? true) ? nil : delimiter
        // The scan resumes at `cursor`: strictly after it when `inclusive` is false.
        var cursor = prefixBytes
        var inclusive = true
        if let startAfter, compare(startAfter, prefix) != .orderedAscending {
            cursor = Array(startAfter.utf8)
            inclusive = false
        }
        let marker = startAfter.map { Array($0.utf8) }
        var count = 0
        let batchSize = max(16, min(maxKeys + 1, 1000))

        scan: while true {
            var rows: [(key: [UInt8], size: Int64, etag: String, hlc: Int64)] = []
            var sql = "SELECT key, size, etag, hlc FROM objects WHERE bucket = ? AND key \(inclusive ? ">=" : ">") ?"
            var parameters: [SQLValue] = [.text(bucket), .blob(cursor)]
            if let end {
                sql += " AND key < ?"
                parameters.append(.blob(end))
            }
            sql += " ORDER BY key LIMIT ?"
            parameters.append(.integer(Int64(batchSize)))
            try db.query(sql, parameters) { row in
                rows.append((row.blob(0), row.int(1), row.text(2), row.int(3)))
            }
            if rows.isEmpty { break }
            for row in rows {
                let key = String(decoding: row.key, as: UTF8.self)
                if let delimiter {
                    let rest = row.key[prefixBytes.count...]
                    if let range = findSubsequence(Array(delimiter.utf8), in: rest) {
                        let commonPrefix = Array(row.key[..<range.upperBound])
                        // A prefix at or before the marker was returned on an earlier page.
                        if let marker, !lexicographicallyGreater(commonPrefix, marker) {
                            if let next = upperBound(of: commonPrefix) {
                                cursor = next
                                inclusive = true
                                continue scan
                            }
                            break scan
                        }
                        if count >= maxKeys {
                            page.isTruncated = true
                            break scan
                        }
                        let text = String(decoding: commonPrefix, as: UTF8.self)
                        page.commonPrefixes.append(text)
                        page.lastReturned = text
                        count += 1
                        guard let next = upperBound(of: commonPrefix) else { break scan }
                        cursor = next
                        inclusive = true
                        continue scan
                    }
                }
                if count >= maxKeys {
                    page.isTruncated = true
                    break scan
                }
                page.entries.append(
                    StorageEngine.ListEntry(
                        key: key,
                        size: row.size,
                        etag: row.etag,
                        timestamp: HybridTimestamp(rawValue: UInt64(bitPattern: row.hlc))
                    )
                )
                page.lastReturned = key
                count += 1
                cursor = row.key
                inclusive = false
            }
            if rows.count < batchSize { break }
        }
        return page
    }

    private static func lexicographicallyGreater(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        b.lexicographicallyPrecedes(a)
    }

    /// The range of the first occurrence of `needle` in `haystack` (indices of `haystack`).
    static func findSubsequence(_ needle: [UInt8], in haystack: ArraySlice<UInt8>) -> Range<Int>? {
        guard !needle.isEmpty, haystack.count >= needle.count else { return nil }
        var index = haystack.startIndex
        let last = haystack.endIndex - needle.count
        while index <= last {
            if haystack[index] == needle[0] && haystack[index..<index + needle.count].elementsEqual(needle) {
                return index..<index + needle.count
            }
            index += 1
        }
        return nil
    }
}
