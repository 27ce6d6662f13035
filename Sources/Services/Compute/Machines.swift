import Database
import DockerEngine
import Foundation
import Hashing
import Libvirt
import Logging
import ServiceContract
import SQLite

/// Instances on libvirt hosts: virtual machines under QEMU (KVM where the host has it, TCG
/// otherwise) that boot their image's own kernel.
///
/// An image becomes a machine's boot files the first time a host boots it (``MachineFiles``): its
/// kernel, its initramfs and an ext4 disk of its tree; each machine gets a copy-on-write disk on
/// that, its serial console in a file (its logs) and a VNC console with a password of its own.
/// The domain is named like a container (`cloud-<instance id>`), so a task that runs again finds
/// what an earlier attempt made. The machines' files are on the control plane's machine, so a
/// libvirt host is the control plane's own libvirt daemon (`qemu:///system`).
extension ComputeService {
    /// How long a stop waits for the guest to power off after the ACPI power button before it
    /// pulls the power.
    static let shutdownGrace: Duration = .seconds(15)
    /// Where machines' VNC consoles listen: the host's loopback (``console(_:)`` names it).
    static let consoleListen = "127.0.0.1"
    /// What the kernel is told: its root is the first virtio disk, its console the first serial port.
    static let machineCommandLine = "root=/dev/vda rw console=ttyS0"

    func machineFiles() throws(LibvirtError) -> MachineFiles {
        guard let machines = self.machines else {
            throw LibvirtError(.unavailable, "this control plane has no machines directory (cloud server --machines-dir)")
        }
        return machines
    }

    /// The URIs a host can be added with: the local system or session daemon (the machines' files
    /// are on this machine).
    static func checkLibvirtURI(_ uri: String) throws(APIError) {
        guard ["qemu:///system", "qemu:///session"].contains(uri) else {
            throw APIError.invalidRequest(
                "libvirt_uri must be qemu:///system or qemu:///session: a libvirt host is this machine's own daemon (remote hosts need the compute agent, which is not built yet)"
            )
        }
    }

    /// Defines the instance's domain unless an earlier attempt did, and starts it. Libvirt
    /// failures make the instance `failed` with libvirt's message, after removing what this made;
    /// a daemon that does not answer is retried twice first.
    func provisionMachine(_ instance: InstanceRecord, on host: HostRecord, _ context: TaskContext) async throws -> TaskCompletion {
        let from: [InstanceState] = [.pending, .provisioning]
        let libvirt = Libvirt(uri: host.libvirtURI)
        let domain = instance.containerName
        let started = ContinuousClock.now
        do {
            let machines = try self.machineFiles()
            _ = try await libvirt.info()
            if try await libvirt.state(domain) == nil {
                let boot = try await self.machineImage(instance.imageDigest, machines, logger: context.logger)
                let disk = try await machines.createDisk(instance.id, on: boot)
                var disks = [DomainSpec.Disk(path: disk, format: "qcow2", target: "vda", serial: "root")]
                if !instance.userData.isEmpty || !instance.sshKeys.isEmpty {
                    let seed = try await machines.createSeed(
                        instance.id, metaData: CloudInitSeed.metaData(instanceID: instance.id, hostname: instance.name, publicKeys: instance.sshKeys.map(\.1)),
                        userData: instance.userData)
                    disks.append(DomainSpec.Disk(path: seed, format: "raw", target: "vdb", serial: "cidata", readOnly: true))
                }
                let spec = DomainSpec(
                    name: domain, title: "\(instance.tenantID)/\(instance.name)", vcpus: instance.vcpus, memoryMiB: instance.memoryMiB,
                    type: host.accelerator == "kvm" ? "kvm" : "qemu", kernel: boot.kernel, initrd: boot.initrd, cmdline: Self.machineCommandLine,
                    disks: disks,
                    serialLog: machines.serialLog(instance.id), vncListen: Self.consoleListen,
                    vncPassword: SecureRandom.identifier(prefix: "", bytes: 4), owner: try machines.owner())
                try await libvirt.define(spec.xml)
            }
            try await libvirt.start(domain)
            context.logger.info("machine running", metadata: ["instance": "\(instance.id)", "host": "\(host.name)", "accelerator": "\(host.accelerator)"])
            let elapsed = ContinuousClock.now - started
            self.countProvision("ready", seconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
            return self.settle(instance, from: from, to: .ready, reason: nil, backendID: domain, context)
        } catch let error as LibvirtError {
            if error.kind == .unavailable && context.attempt < 3 { throw TaskFailure.retryable(error.description) }
            if error.kind != .unavailable {
                // Leave nothing half made behind.
                do {
                    try await libvirt.remove(domain)
                    try self.machines?.removeInstance(instance.id)
                } catch {
                    context.logger.warning("machine of a failed instance not removed", metadata: ["instance": "\(instance.id)", "error": "\(error)"])
                }
            }
            context.logger.warning("machine failed", metadata: ["instance": "\(instance.id)", "host": "\(host.name)", "error": "\(error)"])
            self.countProvision("failed", seconds: nil)
            return self.settle(instance, from: from, to: .failed, reason: error.description, context)
        } catch let error as SystemStoreError {
            if context.attempt < 3 { throw TaskFailure.retryable(error.description) }
            return self.settle(instance, from: from, to: .failed, reason: error.description, context)
        }
    }

    /// The boot files of an image, made from its tar (read from the object store and checked
    /// against its digest) the first time.
    private func machineImage(_ digest: String, _ machines: MachineFiles, logger: Logger) async throws -> MachineFiles.Boot {
        if let boot = machines.boot(digest: digest) { return boot }
        guard let images = self.images else { throw SystemStoreError("no object store is configured for images") }
        let tar = try await images.image(digest: digest)
        guard Hex.encode(Digests.sha256(tar)) == digest else {
            throw SystemStoreError("the object store returned a tar whose SHA-256 is not the image's")
        }
        let boot = try await machines.prepare(digest: digest, tar: tar)
        logger.info("image prepared for machines", metadata: ["digest": "\(digest)"])
        return boot
    }

    /// Stop (the ACPI power button, then the power after ``shutdownGrace``), start, or reboot
    /// (a stop and a start: the guest's disk is flushed by its own shutdown when it listens).
    func powerMachine(_ action: InstanceAction, _ instance: InstanceRecord, on host: HostRecord, _ context: TaskContext) async throws {
        let libvirt = Libvirt(uri: host.libvirtURI)
        let domain = instance.containerName
        switch action {
        case .stop:
            try await self.stopMachine(domain, libvirt)
        case .start:
            try await libvirt.start(domain)
        case .reboot:
            try await self.stopMachine(domain, libvirt)
            try await libvirt.start(domain)
        case .delete:
            break
        }
    }

    private func stopMachine(_ domain: String, _ libvirt: Libvirt) async throws {
        if try await libvirt.shutdown(domain) {
            let deadline = ContinuousClock.now + Self.shutdownGrace
            while ContinuousClock.now < deadline {
                if try await libvirt.state(domain) != .running { break }
                try await Task.sleep(for: .milliseconds(250))
            }
        }
        try await libvirt.destroy(domain)
    }

    /// Pulls the power, forgets the domain and removes the machine's disk and log.
    func removeMachine(_ instance: InstanceRecord, on host: HostRecord) async throws {
        try await Libvirt(uri: host.libvirtURI).remove(instance.containerName)
        try self.machines?.removeInstance(instance.id)
    }

    /// What a libvirt host reports, with how each instance placed there is; domains of instances
    /// that are gone are removed with their files.
    func inspectMachines(_ host: HostRecord, placed: [InstanceRecord], _ context: TaskContext) async throws -> HostReport {
        let libvirt = Libvirt(uri: host.libvirtURI)
        let info = try await libvirt.info()
        let domains = try await libvirt.domains(prefix: "cloud-")
        var observations: [String: ContainerObservation] = [:]
        for instance in placed {
            switch domains[instance.containerName] {
            case nil: observations[instance.id] = .machineMissing
            case .running?: observations[instance.id] = .running
            case .off?: observations[instance.id] = .poweredOff
            case .other?: break  // paused or on its way: the next check sees where it went
            }
        }
        let ids = domains.keys.map { String($0.dropFirst("cloud-".count)) }
        let known = try await Self.existingInstances(context.queue.database, ids: ids)
        for id in ids where !known.contains(id) {
            try await libvirt.remove("cloud-" + id)
            try self.machines?.removeInstance(id)
            context.logger.info("orphaned machine removed", metadata: ["host": "\(host.name)", "instance": "\(id)"])
        }
        return HostReport(cpus: Int64(info.cpus), memoryBytes: info.memoryBytes, version: "libvirt \(info.version)", observations: observations)
    }

    /// The last lines of the machine's serial console.
    func machineLogs(_ instance: InstanceRecord, tail: Int) -> [LogFrames.Line] {
        (self.machines?.serialLines(instance.id, tail: tail) ?? []).map { LogFrames.Line(stream: .stdout, timestamp: nil, text: $0) }
    }

    // MARK: - Console

    struct Console: Sendable {
        var instance: String
        var host: String
        var port: Int64
        var password: String
        /// A one-time link through the console gateway, when there is one.
        var websocketURL: String?
        var websocketExpiresAt: Int64?
    }

    static let consoleShape = ResponseShape<Console>("InstanceConsole") {
        $0.string("instance") { $0.instance }
        $0.enumeration("protocol", ["vnc"]) { _ in "vnc" }
        $0.string("host", "The address the console listens on (the host machine's loopback).") { $0.host }
        $0.integer("port") { $0.port }
        $0.string("password", "The machine's VNC password.") { $0.password }
        $0.optionalString(
            "websocket_url",
            "A WebSocket to the console for browsers (noVNC): good for one connection within a minute; null without a console gateway."
        ) { $0.websocketURL }
        $0.optionalTime("websocket_expires_at") { $0.websocketExpiresAt }
    }

    /// Where a running machine's VNC console is, and its password.
    func console(_ context: RouteContext) async throws -> APIResponse {
        let (instance, host) = try await self.existingWithHost(context)
        guard instance.backend == .libvirt else { throw ComputeError.unsupported("a console is a virtual machine's (backend libvirt); use exec or logs for a container") }
        guard instance.state == .ready, let host, host.backend == .libvirt else {
            throw ComputeError.invalidState(name: instance.name, state: instance.state, action: "show its console")
        }
        let xml: String
        do { xml = try await Libvirt(uri: host.libvirtURI).liveXML(instance.containerName, secure: true) } catch let error as LibvirtError {
            throw ComputeError.engine(error.description)
        }
        guard let port = DomainSpec.vncPort(liveXML: xml), let password = DomainSpec.vncPassword(liveXML: xml) else {
            throw ComputeError.engine("the machine of instance \(instance.name) has no VNC console")
        }
        var console = Console(instance: instance.name, host: Self.consoleListen, port: Int64(port), password: password)
        if let base = self.consoleLinks.baseURL {
            let now = context.environment.clock.unixMilliseconds()
            let ticket = try await context.environment.database.transaction { db in
                try await ConsoleTickets.issue(db, instanceID: instance.id, now: now)
            }
            console.websocketURL = base + "/console/" + ticket
            console.websocketExpiresAt = now + ConsoleTickets.lifetime
        }
        Self.log(context, "console opened", ["instance": "\(instance.name)"])
        return .json(200, Self.consoleShape.json(console))
    }
}

/// What a host's check found: its capacity and how each placed instance is (an instance it could
/// not tell is missing from the map).
struct HostReport: Sendable {
    var cpus: Int64
    var memoryBytes: Int64
    var version: String
    var observations: [String: ContainerObservation]
}

// MARK: - Volumes

extension ComputeService {
    /// How long a detach waits for the guest to let go of the disk (it must answer the unplug).
    static let detachGrace: Duration = .seconds(10)

    /// Attaches a volume's file to the machine as a virtio disk (live when it runs, and in its
    /// definition): the guest sees `/dev/disk/by-id/virtio-<volume id>`. One already attached is left.
    func attachToMachine(file: String, volumeID: String, _ instance: InstanceRecord, on host: HostRecord) async throws {
        let libvirt = Libvirt(uri: host.libvirtURI)
        let xml = try await libvirt.liveXML(instance.containerName)
        if DomainSpec.diskTarget(file: file, liveXML: xml) != nil { return }
        guard let target = DomainSpec.freeTarget(liveXML: xml) else {
            throw LibvirtError(.failed, "machine \(instance.name) has no free disk (vdb to vdz are taken)")
        }
        try await libvirt.attach(
            instance.containerName, device: DomainSpec.diskXML(DomainSpec.Disk(path: file, format: "raw", target: target, serial: volumeID)))
    }

    /// Detaches a volume's disk from the machine; false when the running guest has not let go of
    /// it within ``detachGrace`` (it stays attached).
    func detachFromMachine(file: String, volumeID: String, _ instance: InstanceRecord, on host: HostRecord) async throws -> Bool {
        let libvirt = Libvirt(uri: host.libvirtURI)
        guard let target = DomainSpec.diskTarget(file: file, liveXML: try await libvirt.liveXML(instance.containerName)) else { return true }
        try await libvirt.detach(
            instance.containerName, device: DomainSpec.diskXML(DomainSpec.Disk(path: file, format: "raw", target: target, serial: volumeID)))
        let deadline = ContinuousClock.now + Self.detachGrace
        while true {
            if DomainSpec.diskTarget(file: file, liveXML: try await libvirt.liveXML(instance.containerName)) == nil { return true }
            guard ContinuousClock.now < deadline else { return false }
            try await Task.sleep(for: .milliseconds(250))
        }
    }
}
