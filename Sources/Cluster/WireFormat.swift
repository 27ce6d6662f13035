import StorageEngine

/// Appends big-endian integers and length-prefixed bytes; the counterpart of ``WireReader``.
struct WireWriter {
    var bytes: [UInt8] = []

    mutating func u8(_ value: UInt8) { self.bytes.append(value) }

    mutating func u32(_ value: UInt32) {
        for shift in stride(from: 24, through: 0, by: -8) { self.bytes.append(UInt8(truncatingIfNeeded: value >> UInt32(shift))) }
    }

    mutating func u64(_ value: UInt64) {
        for shift in stride(from: 56, through: 0, by: -8) { self.bytes.append(UInt8(truncatingIfNeeded: value >> UInt64(shift))) }
    }

    mutating func data(_ value: [UInt8]) {
        self.u32(UInt32(value.count))
        self.bytes.append(contentsOf: value)
    }

    mutating func string(_ value: String) { self.data(Array(value.utf8)) }

    mutating func record(_ record: ReplicaRecord) {
        self.u8(record.table)
        self.data(record.partitionKey)
        self.data(record.sortKey)
        self.u64(record.timestamp.rawValue)
        self.u8(record.deleted ? 1 : 0)
        self.data(record.value)
    }
}

/// Reads what ``WireWriter`` wrote; every read checks bounds and throws ``ClusterError`` on short input.
struct WireReader {
    let bytes: [UInt8]
    var index = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var isAtEnd: Bool { self.index == self.bytes.count }

    private mutating func take(_ count: Int) throws(ClusterError) -> ArraySlice<UInt8> {
        guard count >= 0, self.bytes.count - self.index >= count else { throw ClusterError.malformed }
        defer { self.index += count }
        return self.bytes[self.index..<self.index + count]
    }

    mutating func u8() throws(ClusterError) -> UInt8 { try self.take(1).first! }

    mutating func u32() throws(ClusterError) -> UInt32 {
        try self.take(4).reduce(0) { $0 << 8 | UInt32($1) }
    }

    mutating func u64() throws(ClusterError) -> UInt64 {
        try self.take(8).reduce(0) { $0 << 8 | UInt64($1) }
    }

    mutating func data() throws(ClusterError) -> [UInt8] {
        let count = try self.u32()
        return Array(try self.take(Int(count)))
    }

    mutating func string() throws(ClusterError) -> String {
        let bytes = try self.data()
        guard let text = String(validating: bytes, as: UTF8.self) else { throw ClusterError.malformed }
        return text
    }

    mutating func record() throws(ClusterError) -> ReplicaRecord {
        ReplicaRecord(
            table: try self.u8(),
            partitionKey: try self.data(),
            sortKey: try self.data(),
            timestamp: HybridTimestamp(rawValue: try self.u64()),
            deleted: try self.u8() != 0,
            value: try self.data()
        )
    }

    func finish() throws(ClusterError) {
        guard self.isAtEnd else { throw ClusterError.malformed }
    }
}
