/// What a user asks of an instance, and which states allow it: pure, so the rules are tested
/// without an engine.
enum InstanceAction: String, Sendable, CaseIterable {
    case stop, start, reboot, delete

    /// The state the instance shows while its task runs, or nil when `state` does not allow it.
    func transition(from state: InstanceState) -> InstanceState? {
        switch (self, state) {
        case (.stop, .ready), (.stop, .unknown): .stopping
        case (.start, .stopped): .starting
        case (.reboot, .ready): .rebooting
        // Deleting is allowed from every state but deleting: a failed or half-made instance must go too.
        case (.delete, .deleting): nil
        case (.delete, _): .deleting
        default: nil
        }
    }

    /// The state once the backend did it.
    var outcome: InstanceState {
        switch self {
        case .stop: .stopped
        case .start, .reboot: .ready
        case .delete: .deleting
        }
    }
}

/// What the host check concludes about one instance from its container's or machine's state.
enum ContainerObservation: Sendable, Equatable {
    /// No container of that name on the host.
    case missing
    case running
    case exited(code: Int, oomKilled: Bool)
    /// No domain of that name on the libvirt host.
    case machineMissing
    /// The machine is shut off (the guest powered down, or crashed).
    case poweredOff

    /// The instance's new state and reason, or nil to leave it alone.
    func reconcile(_ state: InstanceState, host: String) -> (InstanceState, String?)? {
        switch (state, self) {
        case (.ready, .exited(let code, let oom)), (.unknown, .exited(let code, let oom)):
            return (.stopped, oom ? "killed: out of memory (exit code \(code))" : "the process exited with code \(code)")
        case (.ready, .poweredOff), (.unknown, .poweredOff):
            return (.stopped, "the machine powered off")
        case (.ready, .missing), (.unknown, .missing), (.stopped, .missing):
            return (.failed, "the container is gone from host \(host)")
        case (.ready, .machineMissing), (.unknown, .machineMissing), (.stopped, .machineMissing):
            return (.failed, "the machine is gone from host \(host)")
        case (.unknown, .running):
            return (.ready, nil)
        case (.stopped, .running):
            // Started outside the cloud (or by the engine's restart policy).
            return (.ready, nil)
        default:
            return nil
        }
    }
}
