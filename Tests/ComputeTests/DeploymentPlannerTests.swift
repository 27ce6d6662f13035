import Testing

@testable import Compute

@Suite struct DeploymentPlannerTests {
    func member(_ id: String, _ state: InstanceState, at createdAt: Int64 = 0) -> InstanceRecord {
        InstanceRecord(
            id: id, tenantID: "t", name: "api-" + id, image: "busybox", imageDigest: "d", type: "nano", backend: "docker", vcpus: 1, memoryMiB: 64,
            command: [], environment: [], restart: "no", state: state, reason: nil, host: "h1", backendID: nil, version: 1, createdAt: createdAt,
            updatedAt: createdAt, deploymentID: "dep")
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
        #expect(DeploymentPlanner.plan(replicas: 4, deleting: false, members: members, mayCreate: true) == .init(delete: ["b", "c", "d"], create: 3, failed: 2))
        // While backing off, broken replicas still go, but nothing new is made.
        #expect(DeploymentPlanner.plan(replicas: 4, deleting: false, members: members, mayCreate: false) == .init(delete: ["b", "c", "d"], failed: 2))
        #expect(DeploymentPlanner.backoff(failures: 0) == 0)
        #expect((1...12).map { DeploymentPlanner.backoff(failures: $0) } == [5_000, 10_000, 20_000, 40_000, 80_000, 160_000] + Array(repeating: 300_000, count: 6))
    }

    @Test func scalesDownTheLeastFarAlongThenTheNewest() {
        let members = [
            self.member("old", .ready, at: 1), self.member("new", .ready, at: 9), self.member("mid", .ready, at: 5),
            self.member("boot", .provisioning, at: 2),
        ]
        #expect(DeploymentPlanner.plan(replicas: 2, deleting: false, members: members, mayCreate: true) == .init(delete: ["boot", "new"]))
        #expect(DeploymentPlanner.plan(replicas: 0, deleting: false, members: members, mayCreate: true).delete.count == 4)
    }

    @Test func aDeletedDeploymentDeletesEverythingItHas() {
        let members = [self.member("a", .ready), self.member("b", .deleting), self.member("c", .failed)]
        #expect(DeploymentPlanner.plan(replicas: 3, deleting: true, members: members, mayCreate: true) == .init(delete: ["a", "c"]))
    }

    @Test func statusIsReadyOnlyWithExactlyTheReplicasRunning() {
        var record = DeploymentRecord(
            id: "dep", tenantID: "t", name: "api", image: "busybox", type: "nano", vcpus: 1, memoryMiB: 64, command: [], environment: [],
            replicas: 2, deleting: false, reason: nil, failures: 0, retryAt: 0, version: 1, createdAt: 0, updatedAt: 0)
        #expect(DeploymentPlanner.status(record, members: [self.member("a", .ready), self.member("b", .ready)]) == "ready")
        #expect(DeploymentPlanner.status(record, members: [self.member("a", .ready), self.member("b", .pending)]) == "progressing")
        #expect(DeploymentPlanner.status(record, members: [self.member("a", .ready), self.member("b", .ready), self.member("c", .ready)]) == "progressing")
        #expect(DeploymentPlanner.status(record, members: [self.member("a", .ready), self.member("b", .ready), self.member("c", .deleting)]) == "ready")
        record.deleting = true
        #expect(DeploymentPlanner.status(record, members: []) == "deleting")
    }
}
