import Foundation
import Hashing
import SQLite

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
        var scan = ListingScan(prefix: prefix, delimiter: delimiter, startAfter: startAfter, maxKeys: maxKeys)
        while let query = scan.nextQuery {
            var rows: [ListingScan.Row] = []
            var sql = "SELECT key, size, etag, hlc FROM objects WHERE bucket = ? AND key \(query.inclusive ? ">=" : ">") ?"
            var parameters: [SQLValue] = [.text(bucket), .blob(query.cursor)]
            if let end = query.end {
                sql += " AND key < ?"
                parameters.append(.blob(end))
            }
            sql += " ORDER BY key LIMIT ?"
            parameters.append(.integer(Int64(query.limit)))
            try db.query(sql, parameters) { row in
                rows.append(
                    ListingScan.Row(
                        key: row.blob(0), size: row.int(1), etag: row.text(2),
                        timestamp: HybridTimestamp(rawValue: UInt64(bitPattern: row.int(3)))
                    )
                )
            }
            scan.consume(rows, exhausted: rows.count < query.limit)
        }
        return scan.page
    }

    static func lexicographicallyGreater(_ a: [UInt8], _ b: [UInt8]) -> Bool {
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

/// The delimiter roll-up and pagination of a listing as a state machine over batches of keys in byte
/// order, so that one node's SQL scan and a cluster's merged replica reads share one implementation.
///
/// Use: while ``nextQuery`` is not nil, fetch up to `limit` keys in `[cursor, end)` (strictly after
/// `cursor` unless `inclusive`) and pass them to ``consume(_:exhausted:)``; then read ``page``.
public struct ListingScan: Sendable {
    /// One stored key. Deleted keys (tombstones) are passed too, so that the scan moves past them.
    public struct Row: Sendable {
        public var key: [UInt8]
        public var size: Int64
        public var etag: String
        public var timestamp: HybridTimestamp
        public var deleted: Bool

        public init(key: [UInt8], size: Int64, etag: String, timestamp: HybridTimestamp, deleted: Bool = false) {
            self.key = key
            self.size = size
            self.etag = etag
            self.timestamp = timestamp
            self.deleted = deleted
        }
    }

    /// The next batch to fetch.
    public struct Query: Sendable {
        public var cursor: [UInt8]
        public var inclusive: Bool
        /// Exclusive upper bound (nil: none).
        public var end: [UInt8]?
        public var limit: Int
    }

    public private(set) var page = StorageEngine.ListPage()
    private let prefix: [UInt8]
    private let end: [UInt8]?
    private let delimiter: [UInt8]?
    private let marker: [UInt8]?
    private let maxKeys: Int
    private let batchSize: Int
    private var cursor: [UInt8]
    private var inclusive = true
    private var count = 0
    private var done = false

    public init(prefix: String, delimiter: String?, startAfter: String?, maxKeys: Int) {
        self.prefix = Array(prefix.utf8)
        self.end = Listing.upperBound(of: self.prefix)
        self.delimiter = (delimiter?.isEmpty ?? true) ? nil : Array(delimiter!.utf8)
        self.marker = startAfter.map { Array($0.utf8) }
        self.maxKeys = maxKeys
        self.batchSize = max(16, min(maxKeys + 1, 1000))
        self.cursor = self.prefix
        if let startAfter, Listing.compare(startAfter, prefix) != .orderedAscending {
            self.cursor = Array(startAfter.utf8)
            self.inclusive = false
        }
    }

    /// The batch to fetch next, or nil when the page is complete.
    public var nextQuery: Query? {
        self.done ? nil : Query(cursor: self.cursor, inclusive: self.inclusive, end: self.end, limit: self.batchSize)
    }

    /// Takes one fetched batch in key order; `exhausted` says that no key follows the batch's last.
    public mutating func consume(_ rows: [Row], exhausted: Bool) {
        for row in rows {
            if let end = self.end, !row.key.lexicographicallyPrecedes(end) {
                self.done = true
                return
            }
            if let delimiter, let range = Listing.findSubsequence(delimiter, in: row.key[self.prefix.count...]) {
                if row.deleted {
                    self.cursor = row.key
                    self.inclusive = false
                    continue
                }
                let commonPrefix = Array(row.key[..<range.upperBound])
                // A prefix at or before the marker was returned on an earlier page.
                if let marker, !Listing.lexicographicallyGreater(commonPrefix, marker) {
                    guard let next = Listing.upperBound(of: commonPrefix) else {
                        self.done = true
                        return
                    }
                    self.cursor = next
                    self.inclusive = true
                    return
                }
                if self.count >= self.maxKeys {
                    self.page.isTruncated = true
                    self.done = true
                    return
                }
                let text = String(decoding: commonPrefix, as: UTF8.self)
                self.page.commonPrefixes.append(text)
                self.page.lastReturned = text
                self.count += 1
                guard let next = Listing.upperBound(of: commonPrefix) else {
                    self.done = true
                    return
                }
                self.cursor = next
                self.inclusive = true
                return
            }
            self.cursor = row.key
            self.inclusive = false
            if row.deleted { continue }
            if self.count >= self.maxKeys {
                self.page.isTruncated = true
                self.done = true
                return
            }
            let key = String(decoding: row.key, as: UTF8.self)
            self.page.entries.append(StorageEngine.ListEntry(key: key, size: row.size, etag: row.etag, timestamp: row.timestamp))
            self.page.lastReturned = key
            self.count += 1
        }
        if exhausted { self.done = true }
    }
}
