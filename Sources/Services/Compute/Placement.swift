/// The sizes an instance can have.
struct InstanceType: Sendable, Equatable {
    var name: String
    var vcpus: Int64
    var memoryMiB: Int64

    /// The catalog, smallest first. vCPUs are shares of a host's CPUs (a host takes
    /// ``HostRecord/cpuOvercommit`` of them per CPU); memory is a hard limit and never overcommitted.
    static let all = [
        InstanceType(name: "nano", vcpus: 1, memoryMiB: 64),
        InstanceType(name: "micro", vcpus: 1, memoryMiB: 256),
        InstanceType(name: "small", vcpus: 1, memoryMiB: 512),
        InstanceType(name: "medium", vcpus: 2, memoryMiB: 2048),
        InstanceType(name: "large", vcpus: 4, memoryMiB: 8192),
    ]

    static func named(_ name: String) -> InstanceType? { Self.all.first { $0.name == name } }
}

/// Choosing a host for an instance: pure, so that spreading and refusals are tested without engines.
enum Placement {
    /// A host with what is already placed on it.
    struct Candidate: Sendable, Equatable {
        var host: String
        var state: HostState
        var cpus: Int64
        var memoryBytes: Int64
        var cpuOvercommit: Int64
        /// vCPUs and MiB of the instances placed there (deleting ones included until they are gone).
        var usedVCPUs: Int64
        var usedMemoryMiB: Int64
        var instances: Int64
        /// What it runs.
        var backend: Backend = .docker

        var vcpuCapacity: Int64 { self.cpus * self.cpuOvercommit }
        var memoryCapacityMiB: Int64 { self.memoryBytes / (1 << 20) }

        func fits(vcpus: Int64, memoryMiB: Int64) -> Bool {
            self.usedVCPUs + vcpus <= self.vcpuCapacity && self.usedMemoryMiB + memoryMiB <= self.memoryCapacityMiB
        }

        /// The larger of its CPU and memory shares in use, after adding the instance.
        func load(vcpus: Int64, memoryMiB: Int64) -> Double {
            let cpu = Double(self.usedVCPUs + vcpus) / Double(max(self.vcpuCapacity, 1))
            let memory = Double(self.usedMemoryMiB + memoryMiB) / Double(max(self.memoryCapacityMiB, 1))
            return max(cpu, memory)
        }
    }

    /// Where an instance goes.
    enum Decision: Sendable, Equatable {
        case place(host: String)
        /// No ready host has room; the reason says what was asked and what there is.
        case refuse(reason: String)
    }

    /// Spreads: the ready host of the instance's backend that would be least loaded after taking
    /// the instance (then the one with fewer instances, then by name, so the choice is deterministic).
    static func choose(vcpus: Int64, memoryMiB: Int64, backend: Backend = .docker, among all: [Candidate]) -> Decision {
        let candidates = all.filter { $0.backend == backend }
        let ready = candidates.filter { $0.state == .ready }
        guard !ready.isEmpty else {
            if candidates.isEmpty {
                return .refuse(reason: all.isEmpty ? "no compute host is registered" : "no compute host runs \(backend.rawValue) (cloud hosts add)")
            }
            return .refuse(reason: "no \(backend.rawValue) compute host is ready (\(candidates.count) unknown)")
        }
        let fitting = ready.filter { $0.fits(vcpus: vcpus, memoryMiB: memoryMiB) }
        guard
            let best = fitting.min(by: {
                let (a, b) = ($0.load(vcpus: vcpus, memoryMiB: memoryMiB), $1.load(vcpus: vcpus, memoryMiB: memoryMiB))
                return a != b ? a < b : $0.instances != $1.instances ? $0.instances < $1.instances : $0.host < $1.host
            })
        else {
            let free = ready.map { "\($0.host): \($0.vcpuCapacity - $0.usedVCPUs) vCPUs, \($0.memoryCapacityMiB - $0.usedMemoryMiB) MiB free" }
            return .refuse(reason: "no host has room for \(vcpus) vCPUs and \(memoryMiB) MiB (\(free.joined(separator: "; ")))")
        }
        return .place(host: best.host)
    }
}
