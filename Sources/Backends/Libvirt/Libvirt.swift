import Dispatch
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A libvirt daemon reached at a connection URI (`qemu:///system`). Each operation opens a
/// connection, does its work and closes it, on a Dispatch queue: libvirt's calls block, and a
/// Swift concurrency thread must not.
public struct Libvirt: Sendable {
    public let uri: String

    public init(uri: String) { self.uri = uri }

    /// What the host reports.
    public struct Info: Sendable, Equatable {
        public var cpus: Int
        public var memoryBytes: Int64
        /// `9.0.0`.
        public var version: String
        /// KVM is usable: domains are `kvm`; otherwise they are `qemu` (TCG, emulated).
        public var kvm: Bool
    }

    /// A domain's power state, from `virDomainGetState`.
    public enum DomainState: Sendable, Equatable {
        case running
        /// Shut off, crashed or never started.
        case off
        /// Paused, suspended, or shutting down.
        case other(Int32)
    }

    public func info() async throws -> Info {
        try await self.run("reading the host's capacity") { library, connection in
            var version: UInt = 0
            guard library.connectGetLibVersion(connection, &version) == 0 else { throw library.lastError("virConnectGetLibVersion") }
            // virNodeInfo: char model[32]; unsigned long memory (KiB); unsigned int cpus; …
            let node = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 8)
            defer { node.deallocate() }
            guard library.nodeGetInfo(connection, node) == 0 else { throw library.lastError("virNodeGetInfo") }
            let memoryKiB = node.load(fromByteOffset: 32, as: UInt.self)
            let cpus = node.load(fromByteOffset: 40, as: UInt32.self)
            var kvm = false
            if let capabilities = library.connectGetCapabilities(connection) {
                kvm = String(cString: capabilities).contains("<domain type='kvm'")
                free(capabilities)
            }
            return Info(
                cpus: Int(cpus), memoryBytes: Int64(memoryKiB) * 1024,
                version: "\(version / 1_000_000).\(version / 1000 % 1000).\(version % 1000)", kvm: kvm)
        }
    }

    /// Defines (or redefines) a persistent domain from its XML.
    public func define(_ xml: String) async throws {
        try await self.run("defining a domain") { library, connection in
            guard let domain = library.domainDefineXML(connection, xml) else { throw library.lastError("virDomainDefineXML") }
            _ = library.domainFree(domain)
        }
    }

    /// Starts a defined domain; one already running is left as it is.
    public func start(_ name: String) async throws {
        try await self.withDomain(name, "starting") { library, domain in
            if Self.state(library, domain) == .running { return }
            guard library.domainCreate(domain) == 0 else { throw library.lastError("virDomainCreate") }
        }
    }

    /// Pulls the power: the domain stops at once. One that is not running is left as it is.
    public func destroy(_ name: String) async throws {
        try await self.withDomain(name, "stopping") { library, domain in
            try Self.powerOff(library, domain)
        }
    }

    /// Asks the guest to shut down (ACPI power button); true when it was running.
    public func shutdown(_ name: String) async throws -> Bool {
        try await self.withDomain(name, "shutting down") { library, domain in
            if Self.state(library, domain) == .off { return false }
            guard library.domainShutdown(domain) == 0 else { throw library.lastError("virDomainShutdown") }
            return true
        }
    }

    /// Stops and forgets a domain; one that does not exist is not an error.
    public func remove(_ name: String) async throws {
        do {
            try await self.withDomain(name, "removing") { library, domain in
                try Self.powerOff(library, domain)
                guard library.domainUndefineFlags(domain, 0) == 0 else { throw library.lastError("virDomainUndefineFlags") }
            }
        } catch let error as LibvirtError where error.kind == .noDomain {
            return
        }
    }

    /// The state of a domain, nil when there is none of that name.
    public func state(_ name: String) async throws -> DomainState? {
        do {
            return try await self.withDomain(name, "reading the state of") { library, domain in Self.state(library, domain) }
        } catch let error as LibvirtError where error.kind == .noDomain {
            return nil
        }
    }

    /// The names of every domain (running or not) whose name starts with `prefix`, with their state.
    public func domains(prefix: String) async throws -> [String: DomainState] {
        try await self.run("listing domains") { library, connection in
            var list: UnsafeMutablePointer<OpaquePointer?>?
            let count = library.listAllDomains(connection, &list, 0)
            guard count >= 0 else { throw library.lastError("virConnectListAllDomains") }
            defer { free(list) }
            var found: [String: DomainState] = [:]
            for index in 0..<Int(count) {
                guard let domain = list?[index] else { continue }
                if let name = library.domainGetName(domain).map({ String(cString: $0) }), name.hasPrefix(prefix) {
                    found[name] = Self.state(library, domain)
                }
                _ = library.domainFree(domain)
            }
            return found
        }
    }

    /// The running domain's XML (with the ports libvirt picked, such as the VNC port); `secure`
    /// includes its secrets (the VNC password).
    public func liveXML(_ name: String, secure: Bool = false) async throws -> String {
        try await self.withDomain(name, "describing") { library, domain in
            guard let text = library.domainGetXMLDesc(domain, secure ? 1 : 0) else { throw library.lastError("virDomainGetXMLDesc") }
            defer { free(text) }
            return String(cString: text)
        }
    }

    /// Runs `body` with the domain paused when it runs (its disks then change under no one: what
    /// is read is what a power cut would have left), and lets it run again afterwards.
    public func paused<T: Sendable>(_ name: String, _ body: () async throws -> T) async throws -> T {
        let suspended = try await self.withDomain(name, "pausing") { library, domain -> Bool in
            guard Self.state(library, domain) == .running else { return false }
            guard library.domainSuspend(domain) == 0 else { throw library.lastError("virDomainSuspend") }
            return true
        }
        let result: Result<T, any Error>
        do { result = .success(try await body()) } catch { result = .failure(error) }
        if suspended {
            try await self.withDomain(name, "resuming") { library, domain in
                guard library.domainResume(domain) == 0 else { throw library.lastError("virDomainResume") }
            }
        }
        return try result.get()
    }

    /// Adds a device (a disk) to the domain, live when it runs and in its definition.
    public func attach(_ name: String, device xml: String) async throws {
        try await self.withDomain(name, "attaching a device to") { library, domain in
            guard library.domainAttachDeviceFlags(domain, xml, Self.affect(library, domain)) == 0 else {
                throw library.lastError("virDomainAttachDeviceFlags")
            }
        }
    }

    /// Removes a device from the domain, live when it runs and from its definition.
    public func detach(_ name: String, device xml: String) async throws {
        try await self.withDomain(name, "detaching a device from") { library, domain in
            guard library.domainDetachDeviceFlags(domain, xml, Self.affect(library, domain)) == 0 else {
                throw library.lastError("virDomainDetachDeviceFlags")
            }
        }
    }

    // MARK: - Plumbing

    /// VIR_DOMAIN_AFFECT_CONFIG (2), plus VIR_DOMAIN_AFFECT_LIVE (1) when the domain runs.
    private static func affect(_ library: LibvirtLibrary, _ domain: OpaquePointer) -> UInt32 {
        Self.state(library, domain) == .running ? 3 : 2
    }

    /// Destroys a running domain; a failure that still left it off (it stopped meanwhile) is none.
    private static func powerOff(_ library: LibvirtLibrary, _ domain: OpaquePointer) throws {
        if Self.state(library, domain) == .off { return }
        if library.domainDestroy(domain) != 0 {
            let error = library.lastError("virDomainDestroy")
            if Self.state(library, domain) != .off { throw error }
        }
    }

    private static func state(_ library: LibvirtLibrary, _ domain: OpaquePointer) -> DomainState {
        var state: Int32 = 0
        var reason: Int32 = 0
        guard library.domainGetState(domain, &state, &reason, 0) == 0 else { return .other(-1) }
        switch state {
        case 1, 2: return .running  // VIR_DOMAIN_RUNNING, VIR_DOMAIN_BLOCKED
        case 0, 5, 6: return .off  // NOSTATE, SHUTOFF, CRASHED
        default: return .other(state)
        }
    }

    private func withDomain<T: Sendable>(
        _ name: String, _ doing: String, _ body: @escaping @Sendable (LibvirtLibrary, OpaquePointer) throws -> T
    ) async throws -> T {
        try await self.run("\(doing) domain \(name)") { library, connection in
            guard let domain = library.domainLookupByName(connection, name) else { throw library.lastError("domain \(name)") }
            defer { _ = library.domainFree(domain) }
            return try body(library, domain)
        }
    }

    /// Opens a connection, runs `body` with it on a Dispatch queue, and closes it.
    private func run<T: Sendable>(
        _ doing: String, _ body: @escaping @Sendable (LibvirtLibrary, OpaquePointer) throws -> T
    ) async throws -> T {
        let library: LibvirtLibrary
        switch LibvirtLibrary.shared {
        case .success(let loaded): library = loaded
        case .failure(let error): throw error
        }
        let uri = self.uri
        let result: Result<T, LibvirtError> = await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                guard let connection = library.connectOpen(uri) else {
                    var error = library.lastError("connecting to \(uri)")
                    error.kind = .unavailable
                    continuation.resume(returning: .failure(error))
                    return
                }
                defer { _ = library.connectClose(connection) }
                do {
                    continuation.resume(returning: .success(try body(library, connection)))
                } catch let error as LibvirtError {
                    continuation.resume(returning: .failure(error))
                } catch {
                    continuation.resume(returning: .failure(LibvirtError(.failed, "\(doing): \(error)")))
                }
            }
        }
        return try result.get()
    }
}
