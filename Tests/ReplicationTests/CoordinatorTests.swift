import Replication
import Testing

private typealias Write = Replication.WriteCoordinator<String>
private typealias Read = Replication.ReadCoordinator<String, Versioned>

/// A record with a timestamp, as the metadata store keeps them.
private struct Versioned: Equatable, Sendable {
    var timestamp: Int
    var body: String
}

private let newer: @Sendable (Versioned, Versioned) -> Bool = { a, b in
    a.timestamp != b.timestamp ? a.timestamp > b.timestamp : a.body > b.body
}

@Suite struct QuorumPolicyTests {
    @Test(arguments: [(3, 2, 2, true), (3, 1, 1, false), (3, 3, 1, true), (5, 3, 3, true), (1, 1, 1, true)])
    func overlap(n: Int, w: Int, r: Int, overlaps: Bool) throws {
        #expect(try Replication.QuorumPolicy(replicas: n, writeQuorum: w, readQuorum: r).readsSeeLatestWrite == overlaps)
    }

    @Test(arguments: [(0, 1, 1), (3, 0, 2), (3, 4, 2), (3, 2, 0), (3, 2, 4)])
    func invalidPolicies(n: Int, w: Int, r: Int) {
        #expect(throws: Replication.PolicyError.self) {
            try Replication.QuorumPolicy(replicas: n, writeQuorum: w, readQuorum: r)
        }
    }
}

@Suite struct WriteCoordinatorTests {
    @Test func succeedsOnTheWthAcknowledgement() {
        var write = Write(owners: ["a", "b", "c"], handoffs: ["d", "e"], writeQuorum: 2)
        #expect(write.start { _ in true } == [.send(to: "a", hintFor: nil), .send(to: "b", hintFor: nil), .send(to: "c", hintFor: nil)])
        #expect(write.ownerAcknowledged("b") == [])
        #expect(write.ownerAcknowledged("b") == [], "a duplicate answer is ignored")
        #expect(write.ownerAcknowledged("c") == [.succeed(acknowledged: ["b", "c"])])
        #expect(write.ownerAcknowledged("a") == [], "one result only")
        #expect(write.isFinished)
    }

    @Test func unreachableOwnerGetsAHintedCopyThatDoesNotCount() {
        var write = Write(owners: ["a", "b", "c"], handoffs: ["d", "e"], writeQuorum: 2)
        let actions = write.start { $0 != "b" }
        #expect(actions == [.send(to: "a", hintFor: nil), .send(to: "d", hintFor: "b"), .send(to: "c", hintFor: nil)])
        #expect(write.handoffAcknowledged("d") == [])
        #expect(write.ownerAcknowledged("a") == [])
        #expect(write.ownerAcknowledged("c") == [.succeed(acknowledged: ["a", "c"])])
    }

    @Test func failsBeforeSendingAnythingWhenTooFewOwnersAreReachable() {
        var write = Write(owners: ["a", "b", "c"], handoffs: ["d"], writeQuorum: 2)
        let actions = write.start { $0 == "a" || $0 == "d" }
        #expect(actions == [.fail(.init(.write, reason: .notEnoughOwners, responded: 1, required: 2))])
        #expect(write.isFinished)
    }

    @Test func failsOnceTheQuorumIsOutOfReach() {
        var write = Write(owners: ["a", "b", "c"], handoffs: ["d", "e"], writeQuorum: 2)
        _ = write.start { _ in true }
        #expect(write.ownerFailed("a") == [.send(to: "d", hintFor: "a")])
        #expect(write.ownerFailed("b") == [.send(to: "e", hintFor: "b"), .fail(.init(.write, reason: .notEnoughOwners, responded: 0, required: 2))])
        #expect(write.ownerAcknowledged("c") == [])
    }

    @Test func aFailedHandoffMovesToTheNextOne() {
        var write = Write(owners: ["a", "b"], handoffs: ["c", "d", "e"], writeQuorum: 1)
        _ = write.start { $0 != "b" && $0 != "c" }
        #expect(write.handoffFailed("d") == [.send(to: "e", hintFor: "b")])
        #expect(write.handoffFailed("e") == [], "no handoff left")
        #expect(write.ownerAcknowledged("a") == [.succeed(acknowledged: ["a"])])
    }

    @Test func anOwnerFailingAfterSuccessStillGetsItsHint() {
        var write = Write(owners: ["a", "b", "c"], handoffs: ["d"], writeQuorum: 2)
        _ = write.start { _ in true }
        _ = write.ownerAcknowledged("a")
        _ = write.ownerAcknowledged("b")
        #expect(write.ownerFailed("c") == [.send(to: "d", hintFor: "c")])
    }

    @Test func deadline() {
        var write = Write(owners: ["a", "b", "c"], handoffs: [], writeQuorum: 2)
        _ = write.start { _ in true }
        _ = write.ownerAcknowledged("a")
        #expect(write.deadlinePassed() == [.fail(.init(.write, reason: .timedOut, responded: 1, required: 2))])
        #expect(write.deadlinePassed() == [])
        #expect(write.ownerAcknowledged("b") == [])
    }
}

@Suite struct ReadCoordinatorTests {
    private let old = Versioned(timestamp: 1, body: "old")
    private let new = Versioned(timestamp: 2, body: "new")

    @Test func newestOfTheFirstRAnswersWinsAndStaleOwnersAreRepaired() {
        var read = Read(owners: ["a", "b", "c"], readQuorum: 2, isNewer: newer)
        #expect(read.start { _ in true } == [.query("a"), .query("b"), .query("c")])
        #expect(read.ownerAnswered("a", value: old) == [])
        #expect(read.ownerAnswered("b", value: new) == [.succeed(new), .repair("a", with: new)])
        #expect(read.ownerAnswered("c", value: nil) == [.repair("c", with: new)], "a late, empty answer is repaired too")
    }

    @Test func noOwnerHasTheKey() {
        var read = Read(owners: ["a", "b", "c"], readQuorum: 2, isNewer: newer)
        _ = read.start { _ in true }
        _ = read.ownerAnswered("a", value: nil)
        #expect(read.ownerAnswered("c", value: nil) == [.succeed(nil)])
        #expect(read.ownerAnswered("b", value: nil) == [])
    }

    @Test func tiesAreBrokenTheSameWayEverywhere() {
        let x = Versioned(timestamp: 5, body: "x")
        let y = Versioned(timestamp: 5, body: "y")
        var first = Read(owners: ["a", "b"], readQuorum: 2, isNewer: newer)
        var second = Read(owners: ["a", "b"], readQuorum: 2, isNewer: newer)
        _ = first.start { _ in true }
        _ = second.start { _ in true }
        _ = first.ownerAnswered("a", value: x)
        _ = second.ownerAnswered("b", value: y)
        #expect(first.ownerAnswered("b", value: y).first == .succeed(y))
        #expect(second.ownerAnswered("a", value: x).first == .succeed(y))
    }

    @Test func failsWhenTooFewOwnersCanAnswer() {
        var read = Read(owners: ["a", "b", "c"], readQuorum: 2, isNewer: newer)
        #expect(read.start { $0 == "a" } == [.fail(.init(.read, reason: .notEnoughOwners, responded: 0, required: 2))])

        var second = Read(owners: ["a", "b", "c"], readQuorum: 2, isNewer: newer)
        _ = second.start { _ in true }
        _ = second.ownerAnswered("a", value: old)
        #expect(second.ownerFailed("b") == [])
        #expect(second.ownerFailed("c") == [.fail(.init(.read, reason: .notEnoughOwners, responded: 1, required: 2))])
    }

    @Test func readQuorumOfOneIsTheDegradedMode() {
        var read = Read(owners: ["a", "b", "c"], readQuorum: 1, isNewer: newer)
        _ = read.start { $0 == "c" }
        #expect(read.ownerAnswered("c", value: old) == [.succeed(old)])
    }

    @Test func deadline() {
        var read = Read(owners: ["a", "b", "c"], readQuorum: 2, isNewer: newer)
        _ = read.start { _ in true }
        #expect(read.deadlinePassed() == [.fail(.init(.read, reason: .timedOut, responded: 0, required: 2))])
        #expect(read.ownerAnswered("a", value: old) == [])
    }
}
