@testable import Ring
import Testing

@Suite struct EncodingTests {
    @Test func goldenBytes() throws {
        let layout = try build([node("a", "z", 1)], replicas: 1, power: 4)
        var expected: [UInt8] = [1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 4, 0, 1]
        expected += [1, 0x61, 1, 0x7a, 0, 0, 0, 0xe8, 0xd4, 0xa5, 0x10, 0x00]
        expected += [1] + [UInt8](repeating: 0, count: 32)
        #expect(layout.encoded() == expected)
        #expect(try Ring.Layout(decoding: expected) == layout)
    }

    @Test func emptyLayoutRoundTrips() throws {
        let layout = try Ring.Layout(replicationFactor: 2, partitionPower: 5)
        #expect(layout.encoded() == [1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 5, 0, 0, 0])
        #expect(try Ring.Layout(decoding: layout.encoded()) == layout)
    }

    @Test func laterFormatsWithAppendedFieldsStillDecode() throws {
        let layout = try build([node("a", "z1", 1), node("b", "z2", 2), node("c", "z3", 1)])
        var bytes = layout.encoded()
        bytes[0] = 2
        bytes += [0xde, 0xad, 0xbe, 0xef]
        #expect(try Ring.Layout(decoding: bytes) == layout)
    }

    @Test func everyTruncationIsRejected() throws {
        let bytes = try build([node("a", "z1", 1), node("b", "z2", 2)], replicas: 2, power: 4).encoded()
        for length in 0..<bytes.count {
            #expect(throws: Ring.LayoutError.malformedEncoding) { try Ring.Layout(decoding: bytes.prefix(length)) }
        }
    }

    @Test func brokenInvariantsAreRejected() throws {
        let layout = try build([node("a", "z1", 1), node("b", "z2", 2)], replicas: 2, power: 4)
        let good = layout.encoded()
        let slotsStart = good.count - 2 * 16 * 2
        var corrupt: [[UInt8]] = []
        corrupt.append([0] + good.dropFirst())  // format 0
        var badPower = good
        badPower[10] = 13
        corrupt.append(badPower)
        var badFactor = good
        badFactor[9] = 0
        corrupt.append(badFactor)
        var outOfRange = good
        outOfRange[slotsStart + 1] = 9  // node index 9 of 2
        corrupt.append(outOfRange)
        var twice = good
        twice[slotsStart + 3] = twice[slotsStart + 1]  // same node twice in partition 0
        corrupt.append(twice)
        var badCount = good
        badCount[slotsStart - 1] = 1  // replica count must be min(N, data nodes) = 2
        corrupt.append(badCount)
        var unsorted = good
        unsorted[14] = 0x62  // first id "a" -> "b", equal to the second
        corrupt.append(unsorted)
        var badUTF8 = good
        badUTF8[14] = 0xff
        corrupt.append(badUTF8)
        for bytes in corrupt {
            #expect(throws: Ring.LayoutError.malformedEncoding) { try Ring.Layout(decoding: bytes) }
        }
    }
}

@Suite struct BuilderTests {
    @Test func refusedChanges() throws {
        let layout = try build([node("a", "z1", 1)])
        #expect(throws: Ring.LayoutError.duplicateNode) { try layout.applying([.add(node("a", "z2", 1))]) }
        #expect(throws: Ring.LayoutError.unknownNode) { try layout.applying([.remove("b")]) }
        #expect(throws: Ring.LayoutError.unknownNode) { try layout.applying([.update(node("b", "z", 1))]) }
        #expect(throws: Ring.LayoutError.invalidNode) { try layout.applying([.add(node("", "z", 1))]) }
        let longZone = String(repeating: "x", count: 256)
        #expect(throws: Ring.LayoutError.invalidNode) { try layout.applying([.add(node("c", longZone, 1))]) }
        #expect(throws: Ring.LayoutError.invalidReplicationFactor) { try layout.applying([.setReplicationFactor(0)]) }
        #expect(throws: Ring.LayoutError.invalidReplicationFactor) { try Ring.Layout(replicationFactor: 17) }
        #expect(throws: Ring.LayoutError.invalidPartitionPower) { try Ring.Layout(partitionPower: 3) }
        #expect(throws: Ring.LayoutError.invalidPartitionPower) { try Ring.Layout(partitionPower: 13) }
        #expect(Ring.LayoutError.unknownNode.description == "node not in the layout")
    }

    @Test func versionsCountBuilds() throws {
        var layout = try Ring.Layout()
        #expect(layout.version == 0)
        layout = try layout.applying([.add(node("a", "z1", 1)), .add(node("b", "z2", 1))])
        #expect(layout.version == 1)
        layout = try layout.applying([])
        #expect(layout.version == 2)
    }

    @Test func growingFromOneNodeRaisesTheReplicaCount() throws {
        var layout = try build([node("a", "z1", 1)])
        #expect(layout.replicaCount == 1)
        layout = try layout.applying([.add(node("b", "z2", 1))])
        #expect(layout.replicaCount == 2)
        let before = layout.table
        layout = try layout.applying([.add(node("c", "z3", 1))])
        #expect(layout.replicaCount == 3)
        let table = layout.table
        for partition in 0..<table.partitionCount {
            let id = Ring.PartitionID(partition)
            #expect(table.replicas(of: id).count == 3)
            // Existing replicas stay where they are: only the new third copy is placed.
            #expect(Array(table.replicas(of: id).prefix(2)) == before.replicas(of: id))
        }
        #expect(movedSlots(before, table) == 256)
    }

    @Test func drainingANodeMovesOnlyItsSlots() throws {
        let layout = try build((1...6).map { node("n\($0)", "z\($0 % 3)", 2) })
        let old = layout.table
        let drained = try layout.applying([.update(node("n1", "z1", 0))]).table
        #expect(drained.partitions(of: "n1").isEmpty)
        #expect(drained.layout.node("n1")?.capacity == 0)
        #expect(movedSlots(old, drained) == old.partitions(of: "n1").count)
        for partition in 0..<drained.partitionCount {
            #expect(!drained.handoffs(of: Ring.PartitionID(partition)).contains("n1"))
        }
    }

    @Test func replicationFactorChanges() throws {
        let layout = try build((1...6).map { node("n\($0)", "z\($0 % 3)", 1) }, replicas: 2)
        let three = try layout.applying([.setReplicationFactor(3)])
        #expect(three.replicaCount == 3)
        #expect(movedSlots(layout.table, three.table) == 256)
        let one = try three.applying([.setReplicationFactor(1)])
        #expect(one.replicaCount == 1)
        // Lowering N only drops copies; at most a slot or two is copied to even out the counts.
        #expect(movedSlots(three.table, one.table) <= 2)
        #expect(slotCounts(one.table).values.sorted() == [42, 42, 43, 43, 43, 43])
    }

    @Test func movesListTheChangedReplicas() throws {
        let layout = try build((1...5).map { node("n\($0)", "z\($0)", 1) })
        let old = layout.table
        #expect(Ring.moves(from: old, to: old).isEmpty)
        let new = try layout.applying([.add(node("n6", "z6", 1))]).table
        let moves = Ring.moves(from: old, to: new)
        #expect(moves.allSatisfy { $0.to == ["n6"] && $0.from.count == 1 })
        #expect(moves.count == new.partitions(of: "n6").count)
        #expect(moves.count == 128)
        #expect(moves[0].description.hasSuffix("-> n6"))
    }

    @Test func mergeKeepsTheHigherVersionThenTheLargerEncoding() throws {
        let base = try build([node("a", "z1", 1), node("b", "z2", 1)])
        let left = try base.applying([.add(node("c", "z3", 1))])
        let right = try base.applying([.add(node("d", "z3", 1))])
        let newer = try left.applying([])
        #expect(left.merged(with: newer) == newer)
        #expect(newer.merged(with: left) == newer)
        #expect(left.merged(with: right) == right.merged(with: left))
        #expect(left.merged(with: left) == left)
    }

    @Test func apportionClampsAndPrefersCurrentCounts() {
        #expect(Placement.apportion(total: 10, weights: [1, 1, 1], lower: [0, 0, 0], upper: [9, 9, 9], current: [0, 0, 0]) == [4, 3, 3])
        #expect(Placement.apportion(total: 10, weights: [1, 1, 1], lower: [0, 0, 0], upper: [9, 9, 9], current: [3, 3, 4]) == [3, 3, 4])
        #expect(Placement.apportion(total: 10, weights: [8, 1, 1], lower: [0, 0, 0], upper: [4, 9, 9], current: [0, 0, 0]) == [4, 3, 3])
        #expect(Placement.apportion(total: 10, weights: [8, 1, 1], lower: [0, 4, 0], upper: [9, 9, 9], current: [0, 0, 0]) == [5, 4, 1])
    }
}
