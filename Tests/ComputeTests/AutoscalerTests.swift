import Foundation
import Testing

@testable import Compute
@testable import DockerEngine

@Suite struct AutoscalerTests {
    let policy = AutoscalingPolicy(minimum: 1, maximum: 5, targetCPUPercent: 50)

    func desired(_ replicas: Int64, _ percents: [Double], scaledAt: Int64 = 0, now: Int64 = 1_000_000) -> Int64 {
        Autoscaler.desired(replicas: replicas, cpuPercents: percents, policy: self.policy, scaledAt: scaledAt, now: now)
    }

    @Test func scalesTowardsTheTargetWithinTheBounds() {
        #expect(self.desired(2, [100, 100]) == 4, "ceil(2 × 100 / 50)")
        #expect(self.desired(2, [90, 100]) == 4, "ceil(2 × 95 / 50) = ceil(3.8)")
        #expect(self.desired(1, [100]) == 2)
        #expect(self.desired(4, [100, 100, 100, 100]) == 5, "at most max")
        #expect(self.desired(4, [10, 0, 5, 5]) == 1, "at least min")
        #expect(self.desired(3, [20, 20, 20]) == 2, "ceil(3 × 20 / 50) = ceil(1.2)")
    }

    @Test func holdsWithinTheToleranceAndWithoutMeasurements() {
        #expect(self.desired(3, [54, 46, 50]) == 3, "within 10 % of the target")
        #expect(self.desired(3, []) == 3, "nothing measured: no change")
        #expect(self.desired(0, []) == 1, "out of bounds: back within them first")
        #expect(self.desired(9, [100]) == 5)
    }

    @Test func waitsAfterAChange() {
        #expect(self.desired(2, [100, 100], scaledAt: 1_000_000 - 10_000) == 2, "10 s after a change: no scale-up yet")
        #expect(self.desired(2, [100, 100], scaledAt: 1_000_000 - 15_000) == 4)
        #expect(self.desired(4, [0, 0, 0, 0], scaledAt: 1_000_000 - 20_000) == 4, "20 s after a change: no scale-down yet")
        #expect(self.desired(4, [0, 0, 0, 0], scaledAt: 1_000_000 - 30_000) == 1)
    }

    @Test func readsTheEnginesTwoSamples() throws {
        // The shape of /containers/{id}/stats?stream=false (Docker 20.10): a replica busy on half a
        // CPU of a 2-CPU host over the interval.
        let json = #"""
            {"cpu_stats": {"cpu_usage": {"total_usage": 1500000000}, "system_cpu_usage": 20000000000, "online_cpus": 2},
             "precpu_stats": {"cpu_usage": {"total_usage": 1000000000}, "system_cpu_usage": 18000000000},
             "memory_stats": {"usage": 1048576}}
            """#
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        let stats = ContainerStats(object)
        #expect(stats.cpusUsed == 0.5 && stats.memoryBytes == 1_048_576)
        #expect(Autoscaler.percent(stats, vcpus: 1) == 50)
        #expect(Autoscaler.percent(stats, vcpus: 2) == 25)
        let first = ContainerStats(["cpu_stats": ["cpu_usage": ["total_usage": 5], "system_cpu_usage": 10, "online_cpus": 2]])
        #expect(first.cpusUsed == nil, "no previous sample: no share")
    }
}
