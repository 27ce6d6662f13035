import Testing

@testable import Compute

@Suite struct DeploymentPlannerTests {
    func member(_ id: String, _ state: InstanceState, at createdAt: Int64 = 0, revision: Int64 = 1) -> InstanceRecord {
        InstanceRecord(
            id: id, tenantID: "t", name: "api-" + id, image: "busybox", imageDigest: "d", type: "nano", backend: .docker, vcpus: 1, memoryMiB: 64,
            command: [], environment: [], restart: "no", state: state, reason: nil, host: "h1", backendID: nil, version: 1, createdAt: createdAt,
            updatedAt: createdAt, deploymentID: "dep", revision: revision)
    }

    @Test func makesWhatIsMissingAndCountsWhatIsOnItsWay() {
        #expect(DeploymentPlanner.plan(replicas: 3, deleting: false, members: [], mayCreate: true) == .init(create: 3))
        let starting = [self.member("a", .ready), self.member("b", .pending), self.member("c", .provisioning)]
        #expect(DeploymentPlanner.plan(replicas: 3, deleting: false, members: starting, mayCreate: true) == .init())
        // Instances being deleted do not count: their replacements are made at once.
        let going = [self.member("a", .ready), self.member("b", .deleting)]
        #expect(DeploymentPlanner.plan(replicas: 2, deleting: false, members: going, mayCreate: true) == .init(create: 1))
    }

    @Test func replacesBrokenReplicasAndBacksOffOnlyForFailures() {
        let members = [self.member("a", .ready), self.member("b", .failed), self.member("c", .stopped), self.member("d", .unknown)]
        #expect(DeploymentPlanner.plan(replicas: 4, deleting: false, members: members, mayCreate: true) == .init(broken: ["b", "c", "d"], create: 3, failed: 2))
        // While backing off, broken replicas still go, but nothing new is made.
        #expect(DeploymentPlanner.plan(replicas: 4, deleting: false, members: members, mayCreate: false) == .init(broken: ["b", "c", "d"], failed: 2))
        #expect(DeploymentPlanner.backoff(failures: 0) == 0)
        #expect((1...12).map { DeploymentPlanner.backoff(failures: $0) } == [5_000, 10_000, 20_000, 40_000, 80_000, 160_000] + Array(repeating: 300_000, count: 6))
    }

    @Test func scalesDownTheLeastFarAlongThenTheNewest() {
        let members = [
            self.member("old", .ready, at: 1), self.member("new", .ready, at: 9), self.member("mid", .ready, at: 5),
            self.member("boot", .provisioning, at: 2),
        ]
        #expect(DeploymentPlanner.plan(replicas: 2, deleting: false, members: members, mayCreate: true) == .init(surplus: ["boot", "new"]))
        #expect(DeploymentPlanner.plan(replicas: 0, deleting: false, members: members, mayCreate: true).delete.count == 4)
    }

    @Test func aDeletedDeploymentDeletesEverythingItHas() {
        let members = [self.member("a", .ready), self.member("b", .deleting), self.member("c", .failed)]
        #expect(DeploymentPlanner.plan(replicas: 3, deleting: true, members: members, mayCreate: true) == .init(broken: ["a", "c"]))
    }

    /// Replays a rolling update to its end: each pass applies its plan, and the replicas it makes
    /// start running before the next pass (`startAtOnce`) or one pass later. Returns the fewest
    /// replicas that ran between two passes.
    func rollOut(replicas: Int64, maxUnavailable: Int64, startAtOnce: Bool) -> (fewestRunning: Int, passes: Int, members: [InstanceRecord]) {
        var members = (0..<Int(replicas)).map { self.member("old\($0)", .ready, at: Int64($0)) }
        var fewest = members.count
        var passes = 0
        var next = 0
        while passes < 100 {
            let plan = DeploymentPlanner.plan(replicas: replicas, revision: 2, maxUnavailable: maxUnavailable, deleting: false, members: members, mayCreate: true)
            passes += 1
            #expect(plan.broken.isEmpty && plan.surplus.isEmpty)
            // What the last pass made runs now.
            let starting = members.contains { $0.state == .pending }
            members = members.map { var m = $0; if m.state == .pending { m.state = .ready }; return m }
            if plan == .init() && !starting { break }
            members.removeAll { plan.outdated.contains($0.id) }
            for _ in 0..<plan.create {
                next += 1
                members.append(self.member("new\(next)", startAtOnce ? .ready : .pending, at: 100 + Int64(next), revision: 2))
            }
            #expect(members.count == Int(replicas), "never more live replicas than asked for")
            fewest = min(fewest, members.filter { $0.state == .ready }.count)
        }
        return (fewest, passes, members)
    }

    @Test func aRollingUpdateReplacesAtMostMaxUnavailableAtATimeOldestFirst() {
        let members = [self.member("a", .ready, at: 3), self.member("b", .ready, at: 1), self.member("c", .ready, at: 2)]
        #expect(DeploymentPlanner.plan(replicas: 3, revision: 2, maxUnavailable: 1, deleting: false, members: members, mayCreate: true)
            == .init(outdated: ["b"], create: 1))
        #expect(DeploymentPlanner.plan(replicas: 3, revision: 2, maxUnavailable: 2, deleting: false, members: members, mayCreate: true)
            == .init(outdated: ["b", "c"], create: 2))
        // One replica short already: a budget of one is spent.
        let short = [self.member("a", .ready), self.member("b", .ready), self.member("n", .pending, revision: 2)]
        #expect(DeploymentPlanner.plan(replicas: 3, revision: 2, maxUnavailable: 1, deleting: false, members: short, mayCreate: true) == .init())
        // Outdated replicas that do not run go at once, whatever the budget.
        let idle = [self.member("a", .ready), self.member("b", .provisioning), self.member("c", .pending)]
        #expect(DeploymentPlanner.plan(replicas: 3, revision: 2, maxUnavailable: 1, deleting: false, members: idle, mayCreate: true)
            == .init(outdated: ["b", "c"], create: 2))
        // While failures are backed off, nothing is replaced.
        #expect(DeploymentPlanner.plan(replicas: 3, revision: 2, maxUnavailable: 1, deleting: false, members: members, mayCreate: false) == .init())
        // Scaling down during an update deletes the outdated first.
        #expect(DeploymentPlanner.plan(replicas: 2, revision: 2, maxUnavailable: 1, deleting: false, members: short, mayCreate: true)
            == .init(surplus: ["b"]))
    }

    @Test func aRollingUpdateEndsWithEveryReplicaOnTheRevisionAndKeepsTheRestRunning() {
        for (replicas, maxUnavailable) in [(Int64(1), Int64(1)), (3, 1), (5, 2), (4, 4), (3, 10)] {
            for startAtOnce in [true, false] {
                let result = self.rollOut(replicas: replicas, maxUnavailable: maxUnavailable, startAtOnce: startAtOnce)
                #expect(result.members.allSatisfy { $0.revision == 2 && $0.state == .ready }, "\(replicas)/\(maxUnavailable)")
                #expect(result.fewestRunning >= Int(max(replicas - maxUnavailable, 0)), "\(replicas)/\(maxUnavailable): \(result.fewestRunning)")
                #expect(result.passes < 100, "it ends")
            }
        }
    }

    @Test func statusIsReadyOnlyWithExactlyTheReplicasRunning() {
        var record = DeploymentRecord(
            id: "dep", tenantID: "t", name: "api", image: "busybox", type: "nano", vcpus: 1, memoryMiB: 64, command: [], environment: [],
            replicas: 2, deleting: false, reason: nil, failures: 0, retryAt: 0, version: 1, createdAt: 0, updatedAt: 0)
        #expect(DeploymentPlanner.status(record, members: [self.member("a", .ready), self.member("b", .ready)]) == "ready")
        #expect(DeploymentPlanner.status(record, members: [self.member("a", .ready), self.member("b", .pending)]) == "progressing")
        #expect(DeploymentPlanner.status(record, members: [self.member("a", .ready), self.member("b", .ready), self.member("c", .ready)]) == "progressing")
        #expect(DeploymentPlanner.status(record, members: [self.member("a", .ready), self.member("b", .ready), self.member("c", .deleting)]) == "ready")
        record.revision = 2
        #expect(DeploymentPlanner.status(record, members: [self.member("a", .ready), self.member("b", .ready, revision: 2)]) == "progressing")
        #expect(DeploymentPlanner.status(record, members: [self.member("a", .ready, revision: 2), self.member("b", .ready, revision: 2)]) == "ready")
        record.deleting = true
        #expect(DeploymentPlanner.status(record, members: []) == "deleting")
    }
}
