import Testing

@testable import Compute
@testable import DockerEngine

@Suite struct PlacementTests {
    func host(_ name: String, cpus: Int64 = 2, memoryMiB: Int64 = 4096, usedVCPUs: Int64 = 0, usedMiB: Int64 = 0, count: Int64 = 0, state: HostState = .ready)
        -> Placement.Candidate
    {
        Placement.Candidate(
            host: name, state: state, cpus: cpus, memoryBytes: memoryMiB << 20, cpuOvercommit: 4, usedVCPUs: usedVCPUs, usedMemoryMiB: usedMiB,
            instances: count)
    }

    @Test func spreadsToTheLeastLoadedHost() {
        let hosts = [self.host("a", usedVCPUs: 2, usedMiB: 1024, count: 2), self.host("b", usedVCPUs: 1, usedMiB: 512, count: 1)]
        #expect(Placement.choose(vcpus: 1, memoryMiB: 512, among: hosts) == .place(host: "b"))
        // Ties go to the host with fewer instances, then by name.
        #expect(Placement.choose(vcpus: 1, memoryMiB: 512, among: [self.host("b"), self.host("a")]) == .place(host: "a"))
    }

    @Test func neverOvercommitsMemoryAndSaysWhatIsFree() {
        let hosts = [self.host("a", memoryMiB: 1024, usedMiB: 900)]
        guard case .refuse(let reason) = Placement.choose(vcpus: 1, memoryMiB: 512, among: hosts) else {
            Issue.record("placed an instance on a host without the memory")
            return
        }
        #expect(reason.contains("a: 8 vCPUs, 124 MiB free"))
        // CPU is overcommitted up to cpus × cpu_overcommit, no further.
        #expect(Placement.choose(vcpus: 1, memoryMiB: 64, among: [self.host("a", usedVCPUs: 7)]) == .place(host: "a"))
        #expect(Placement.choose(vcpus: 1, memoryMiB: 64, among: [self.host("a", usedVCPUs: 8)]) != .place(host: "a"))
    }

    @Test func skipsHostsThatAreNotReady() {
        #expect(Placement.choose(vcpus: 1, memoryMiB: 64, among: [self.host("a", state: .unknown), self.host("b", usedVCPUs: 6)]) == .place(host: "b"))
        #expect(Placement.choose(vcpus: 1, memoryMiB: 64, among: [self.host("a", state: .unknown)]) == .refuse(reason: "no docker compute host is ready (1 unknown)"))
        #expect(Placement.choose(vcpus: 1, memoryMiB: 64, among: []) == .refuse(reason: "no compute host is registered"))
    }

    @Test func lifecycleAllowsOnlyWhatTheStateAllows() {
        #expect(InstanceAction.stop.transition(from: .ready) == .stopping)
        #expect(InstanceAction.stop.transition(from: .pending) == nil)
        #expect(InstanceAction.start.transition(from: .ready) == nil)
        #expect(InstanceAction.start.transition(from: .stopped) == .starting)
        #expect(InstanceAction.reboot.transition(from: .stopped) == nil)
        for state in InstanceState.allCases where state != .deleting { #expect(InstanceAction.delete.transition(from: state) == .deleting) }
        #expect(InstanceAction.delete.transition(from: .deleting) == nil)
    }

    @Test func hostCheckReconcilesWhatTheEngineShows() {
        #expect(ContainerObservation.exited(code: 3, oomKilled: false).reconcile(.ready, host: "h")! == (.stopped, "the process exited with code 3"))
        #expect(ContainerObservation.exited(code: 137, oomKilled: true).reconcile(.ready, host: "h")!.0 == .stopped)
        #expect(ContainerObservation.missing.reconcile(.ready, host: "h")! == (.failed, "the container is gone from host h"))
        #expect(ContainerObservation.running.reconcile(.unknown, host: "h")!.0 == .ready)
        // A task is acting on these: the check leaves them alone.
        for state in [InstanceState.pending, .provisioning, .stopping, .starting, .rebooting, .deleting] {
            #expect(ContainerObservation.missing.reconcile(state, host: "h") == nil)
        }
    }

    @Test func logFramesSplitStreamsAndTimestamps() {
        func frame(_ stream: UInt8, _ text: String) -> [UInt8] {
            let bytes = Array(text.utf8)
            let n = UInt32(bytes.count)
            return [stream, 0, 0, 0, UInt8(n >> 24), UInt8(n >> 16 & 255), UInt8(n >> 8 & 255), UInt8(n & 255)] + bytes
        }
        let stream = frame(1, "2026-12-07T10:00:00.000000001Z hello\n") + frame(2, "2026-12-07T10:00:01.5Z oops\n") + frame(1, "2026-12-07T10:00:02Z par")
            + frame(1, "tial\n") + Array(frame(1, "cut off")[0..<9])
        #expect(
            LogFrames.lines(stream, timestamps: true) == [
                .init(stream: .stdout, timestamp: "2026-12-07T10:00:00.000000001Z", text: "hello"),
                .init(stream: .stderr, timestamp: "2026-12-07T10:00:01.5Z", text: "oops"),
                .init(stream: .stdout, timestamp: "2026-12-07T10:00:02Z", text: "partial"),
            ])
    }

    @Test func tarsAreRecognizedAndOthersRefused() throws {
        var tar = [UInt8](repeating: 0, count: 1024)
        tar.replaceSubrange(257..<262, with: Array("ustar".utf8))
        try ComputeService.checkTar(tar)
        #expect(throws: ComputeError.self) { try ComputeService.checkTar(Array("not a tar".utf8)) }
        #expect(throws: ComputeError.self) { try ComputeService.checkTar([UInt8](repeating: 0, count: 1024)) }
    }

    @Test func namesAreLowercaseDNSLabels() throws {
        for good in ["web1", "a", "api-2", String(repeating: "a", count: 63)] { try ComputeService.checkName(good) }
        for bad in ["", "Web1", "1web", "-a", "web_1", "wéb", String(repeating: "a", count: 64)] {
            #expect(throws: ComputeError.self, "\(bad)") { try ComputeService.checkName(bad) }
        }
    }

    @Test func queryValuesKeepOnlyUnreservedCharacters() {
        #expect(EngineConnection.encode([("filters", #"{"label":["cloud.instance"]}"#), ("t", "10")]) == "?filters=%7B%22label%22%3A%5B%22cloud.instance%22%5D%7D&t=10")
        #expect(EngineConnection.percentEncode("a b/é~") == "a%20b%2F%C3%A9~")
    }

    @Test func rfc3339WithNanoseconds() {
        #expect(LogFrames.Instant(rfc3339: "1970-01-01T00:00:01.5Z").map { [$0.seconds, $0.nanoseconds] } == [1, 500_000_000])
        #expect(LogFrames.Instant(rfc3339: "1970-01-01T00:00:10Z").map { [$0.seconds, $0.nanoseconds] } == [10, 0])
        #expect(LogFrames.Instant(rfc3339: "1970-01-01T00:00:10.000000001Z")?.engineText == "10.000000001")
        for bad in ["yesterday", "1970-01-01T00:00:10.Z", "1970-01-01T00:00:10.1234567890Z", "1970-01-01T00:00:10+01:00"] {
            #expect(LogFrames.Instant(rfc3339: bad) == nil, "\(bad)")
        }
    }

    @Test func linesAfterAnInstantCompareTimesNotText() throws {
        let lines = ["2026-12-07T10:00:10.000000001Z", "2026-12-07T10:00:10.150000000Z", "2026-12-07T10:00:10.100000000Z"].map {
            LogFrames.Line(stream: .stdout, timestamp: $0, text: $0)
        }
        // As text, "…10Z" sorts after "…10.000000001Z" and "…10.1Z" after "…10.15…": both would drop newer lines.
        #expect(LogFrames.lines(lines, after: try #require(LogFrames.Instant(rfc3339: "2026-12-07T10:00:10Z"))).count == 3)
        #expect(LogFrames.lines(lines, after: try #require(LogFrames.Instant(rfc3339: "2026-12-07T10:00:10.1Z"))).map(\.text) == [lines[1].text])
    }
}
