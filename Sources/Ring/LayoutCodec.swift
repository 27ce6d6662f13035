extension Ring.Layout {
    /// The format number this code writes. Formats are append-only: a later format adds fields after the
    /// last field of the earlier one and bumps this number; no field is ever removed, reordered or resized.
    public static let encodingFormat: UInt8 = 1

    /// The layout in its stable binary form (all integers big-endian).
    ///
    /// Format 1:
    /// ```
    /// u8  format (1)
    /// u64 version
    /// u8  replicationFactor N
    /// u8  partitionPower p
    /// u16 nodeCount, then per node (sorted by id):
    ///     u8 idLength, id (UTF-8) · u8 zoneLength, zone (UTF-8) · u64 capacity
    /// u8  replicaCount R
    /// 2^p · R × u16 node index (partition-major, slot order)
    /// ```
    /// A 3-replica, 256-partition layout of 10 nodes takes about 1.7 KB; 4096 partitions about 25 KB, so it
    /// travels by push-pull rather than in a gossip packet.
    public func encoded() -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(14 + nodes.count * 24 + slots.count * 2)
        bytes.append(Self.encodingFormat)
        bytes.appendBigEndian(version)
        bytes.append(UInt8(replicationFactor))
        bytes.append(UInt8(partitionPower))
        bytes.appendBigEndian(UInt16(nodes.count))
        for node in nodes {
            bytes.append(UInt8(node.id.rawValue.utf8.count))
            bytes.append(contentsOf: node.id.rawValue.utf8)
            bytes.append(UInt8(node.zone.utf8.count))
            bytes.append(contentsOf: node.zone.utf8)
            bytes.appendBigEndian(node.capacity)
        }
        bytes.append(UInt8(replicaCount))
        for slot in slots { bytes.appendBigEndian(slot) }
        return bytes
    }

    /// Decodes a layout written by ``encoded()`` (this or any later format).
    ///
    /// Bytes after the fields of format 1 are ignored, so a node running older code still reads a layout
    /// from newer code. Every invariant is checked, so hostile input cannot produce a table that crashes:
    /// nodes strictly ascending by id, names within limits and valid UTF-8, the replica count matching
    /// the data nodes, every slot a data node and no node twice in a partition.
    /// - Parameter bytes: the encoding.
    /// - Throws: ``Ring/LayoutError/malformedEncoding``.
    public init(decoding bytes: some Collection<UInt8>) throws(Ring.LayoutError) {
        var reader = ByteReader(Array(bytes))
        guard let format = reader.u8(), format >= 1,
            let version = reader.u64(), let factor = reader.u8(), let power = reader.u8(),
            Self.replicationFactors.contains(Int(factor)), Self.partitionPowers.contains(Int(power)),
            let nodeCount = reader.u16(), Int(nodeCount) <= Self.maxNodes
        else { throw .malformedEncoding }
        var nodes: [Ring.Node] = []
        nodes.reserveCapacity(Int(nodeCount))
        for _ in 0..<nodeCount {
            guard let idLength = reader.u8(), idLength > 0, let idBytes = reader.bytes(Int(idLength)),
                let id = String(validating: idBytes, as: UTF8.self),
                let zoneLength = reader.u8(), let zoneBytes = reader.bytes(Int(zoneLength)),
                let zone = String(validating: zoneBytes, as: UTF8.self),
                let capacity = reader.u64()
            else { throw .malformedEncoding }
            let node = Ring.Node(id: Ring.NodeID(id), zone: zone, capacity: capacity)
            if let last = nodes.last, !(last.id < node.id) { throw .malformedEncoding }
            nodes.append(node)
        }
        let dataNodes = nodes.reduce(0) { $0 + ($1.capacity > 0 ? 1 : 0) }
        guard let replicas = reader.u8(), Int(replicas) == min(Int(factor), dataNodes) else {
            throw .malformedEncoding
        }
        let partitions = 1 << Int(power)
        var slots: [UInt16] = []
        slots.reserveCapacity(partitions * Int(replicas))
        for _ in 0..<partitions {
            let start = slots.count
            for _ in 0..<replicas {
                guard let slot = reader.u16(), Int(slot) < nodes.count, nodes[Int(slot)].capacity > 0,
                    !slots[start...].contains(slot)
                else { throw .malformedEncoding }
                slots.append(slot)
            }
        }
        self.init(
            version: version, replicationFactor: Int(factor), partitionPower: Int(power), nodes: nodes,
            replicaCount: Int(replicas), slots: slots)
    }
}

extension [UInt8] {
    /// Appends `value` big-endian.
    fileprivate mutating func appendBigEndian<T: FixedWidthInteger>(_ value: T) {
        var bigEndian = value.bigEndian
        Swift.withUnsafeBytes(of: &bigEndian) { append(contentsOf: $0) }
    }
}

/// A bounds-checked big-endian cursor over bytes; every read returns `nil` past the end.
private struct ByteReader {
    let bytes: [UInt8]
    var offset = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    mutating func bytes(_ count: Int) -> ArraySlice<UInt8>? {
        guard count <= bytes.count - offset else { return nil }
        defer { offset += count }
        return bytes[offset..<offset + count]
    }

    mutating func integer<T: FixedWidthInteger>(_: T.Type) -> T? {
        guard let raw = bytes(MemoryLayout<T>.size) else { return nil }
        return raw.reduce(T.zero) { $0 << 8 | T($1) }
    }

    mutating func u8() -> UInt8? { integer(UInt8.self) }
    mutating func u16() -> UInt16? { integer(UInt16.self) }
    mutating func u64() -> UInt64? { integer(UInt64.self) }
}
