import Foundation
import Synchronization

/// Block volumes as files on the host: a sparse file per volume, formatted ext4 on first use and
/// loop-mounted where the instance that has it attached sees it.
///
/// Containers see their volumes live: every container gets `<root>/attach/<instance>` bound at
/// `/volumes` with `rslave` propagation, and `<root>/attach` itself is a shared mount, so mounting a
/// volume at `<root>/attach/<instance>/<volume>` on the host makes it appear at
/// `/volumes/<volume>` in the running container, and unmounting it takes it away (the kernel
/// refuses while a process in the container still uses it). Mounting needs root (CAP_SYS_ADMIN) and
/// the engine in the same mount namespace as this process.
public struct VolumeFiles: Sendable {
    /// The directory holding `files/` (the volume files) and `attach/` (the mount points).
    public let root: String
    /// The unit snapshots read, hash and store (1 MiB).
    public static let blockSize = 1 << 20

    /// - Parameter root: Created when missing; symbolic links in it are resolved, as the kernel's
    ///   mount table has them resolved.
    public init(root: String) {
        self.root = URL(fileURLWithPath: root).standardizedFileURL.resolvingSymlinksInPath().path
    }

    var files: String { self.root + "/files" }
    var attachRoot: String { self.root + "/attach" }

    /// The file of a volume.
    public func path(_ volume: String) -> String { self.files + "/" + volume + ".img" }

    /// Where an instance's volumes are mounted on the host (the container's `/volumes`).
    public func instanceDirectory(_ instance: String) -> String { self.attachRoot + "/" + instance }

    /// Where one volume of an instance is mounted on the host.
    public func mountPoint(instance: String, volume name: String) -> String { self.instanceDirectory(instance) + "/" + name }

    // MARK: - Files

    /// Makes a sparse file of `bytes` (again with the same size is fine: a task may run twice).
    public func create(_ volume: String, bytes: Int64) throws {
        try FileManager.default.createDirectory(atPath: self.files, withIntermediateDirectories: true)
        try self.setSize(volume, bytes, flags: O_CREAT)
    }

    /// Truncates or extends the file to `bytes` and syncs it.
    private func setSize(_ volume: String, _ bytes: Int64, flags: Int32 = 0) throws {
        let fd = open(self.path(volume), flags | O_WRONLY | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw VolumeError.io("opening \(self.path(volume))", errno) }
        defer { close(fd) }
        guard ftruncate(fd, off_t(bytes)) == 0 else { throw VolumeError.io("sizing \(self.path(volume))", errno) }
        guard fsync(fd) == 0 else { throw VolumeError.io("syncing \(self.path(volume))", errno) }
    }

    /// Whether the volume's file exists.
    public func exists(_ volume: String) -> Bool { FileManager.default.fileExists(atPath: self.path(volume)) }

    /// The file's size in bytes (what the instance sees), or nil when it is missing.
    public func size(_ volume: String) -> Int64? {
        var info = stat()
        guard stat(self.path(volume), &info) == 0 else { return nil }
        return Int64(info.st_size)
    }

    /// The bytes the file takes on disk (sparse: only what was written).
    public func allocatedBytes(_ volume: String) -> Int64? {
        var info = stat()
        guard stat(self.path(volume), &info) == 0 else { return nil }
        return Int64(info.st_blocks) * 512
    }

    /// Makes an ext4 file system on the whole file.
    public func format(_ volume: String, label: String) async throws {
        try await HostCommand.check(
            ["mkfs.ext4", "-q", "-F", "-m", "0", "-L", String(label.prefix(16)), self.path(volume)], doing: "formatting the volume")
    }

    /// Grows the file and its file system to `bytes` (the volume is detached).
    public func grow(_ volume: String, to bytes: Int64) async throws {
        try self.setSize(volume, bytes)
        // resize2fs wants a freshly checked file system; e2fsck's 1 means it corrected something.
        let check = try await HostCommand.run(["e2fsck", "-f", "-p", self.path(volume)])
        guard check.status == 0 || check.status == 1 else {
            throw VolumeError.tool("checking the file system before growing it: e2fsck exited with \(check.status): \(check.output)")
        }
        try await HostCommand.check(["resize2fs", self.path(volume)], doing: "growing the file system")
    }

    /// Removes the volume's file; missing is fine.
    public func remove(_ volume: String) throws {
        guard unlink(self.path(volume)) == 0 || errno == ENOENT else { throw VolumeError.io("removing \(self.path(volume))", errno) }
    }

    // MARK: - Mounts

    /// Makes the instance's directory (before its container is made, which binds it at `/volumes`).
    public func prepareInstance(_ instance: String) async throws {
        try await self.ensureSharedAttachRoot()
        try FileManager.default.createDirectory(atPath: self.instanceDirectory(instance), withIntermediateDirectories: true)
    }

    /// Removes an instance's directory once nothing is mounted in it; missing is fine.
    public func removeInstance(_ instance: String) throws {
        let directory = self.instanceDirectory(instance)
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return }
        let points = self.mountPoints()
        for name in names where !points.contains(directory + "/" + name) {
            rmdir(directory + "/" + name)
        }
        guard rmdir(directory) == 0 || errno == ENOENT else { throw VolumeError.io("removing \(directory)", errno) }
    }

    /// Mounts the volume where the instance sees it (mounted already is fine).
    public func mount(_ volume: String, instance: String, name: String) async throws {
        try await self.ensureSharedAttachRoot()
        let point = self.mountPoint(instance: instance, volume: name)
        try FileManager.default.createDirectory(atPath: point, withIntermediateDirectories: true)
        guard !Self.isMountPoint(point) else { return }
        try await HostCommand.check(["mount", "-t", "ext4", "-o", "loop,nosuid,nodev", self.path(volume), point], doing: "mounting the volume")
    }

    /// Unmounts a volume of an instance (not mounted is fine).
    /// - Throws: ``VolumeError/busy`` while a process still uses it, in the container or on the host.
    public func unmount(instance: String, name: String) async throws {
        let point = self.mountPoint(instance: instance, volume: name)
        if Self.isMountPoint(point) {
            let outcome = try await HostCommand.run(["umount", point])
            if outcome.status != 0 {
                if outcome.output.contains("busy") { throw VolumeError.busy(name) }
                throw VolumeError.tool("unmounting the volume: umount exited with \(outcome.status): \(outcome.output)")
            }
        }
        rmdir(point)
    }

    /// Whether the volume is mounted for the instance.
    public func isMounted(instance: String, name: String) -> Bool { Self.isMountPoint(self.mountPoint(instance: instance, volume: name)) }

    /// Runs `body` with the mounted file system frozen (writes wait; what was written is on the
    /// file), thawing it afterwards whatever happens.
    public func frozen<T: Sendable>(instance: String, name: String, _ body: () async throws -> T) async throws -> T {
        let point = self.mountPoint(instance: instance, volume: name)
        try await HostCommand.check(["fsfreeze", "--freeze", point], doing: "freezing the volume's file system")
        let result: Result<T, any Error>
        do { result = .success(try await body()) } catch { result = .failure(error) }
        try await HostCommand.check(["fsfreeze", "--unfreeze", point], doing: "thawing the volume's file system")
        return try result.get()
    }

    /// `<root>/attach` as a shared mount (a bind of itself), so that mounts below it propagate into
    /// the containers that bind its directories.
    ///
    /// Checked and made under a lock, blocking (two provisions at once would otherwise both find it
    /// missing and stack two binds); after the first time it is a look at the mount table.
    func ensureSharedAttachRoot() async throws {
        try FileManager.default.createDirectory(atPath: self.attachRoot, withIntermediateDirectories: true)
        guard geteuid() == 0 else {
            throw VolumeError.tool("attaching volumes needs root (mount and loop devices): this control plane runs as uid \(geteuid())")
        }
        let root = self.attachRoot
        try Self.attachRootLock.withLock { _ in
            let entry = Self.mountTable().last { $0.point == root }
            if entry == nil {
                try Self.checkBlocking(["mount", "--bind", root, root])
            }
            if entry?.shared != true {
                try Self.checkBlocking(["mount", "--make-shared", root])
            }
        }
    }

    private static let attachRootLock = Mutex(())

    private static func checkBlocking(_ arguments: [String]) throws {
        let outcome = try HostCommand.runBlocking(arguments)
        guard outcome.status == 0 else {
            throw VolumeError.tool("preparing the volume mount points: \(arguments.joined(separator: " ")) exited with \(outcome.status): \(outcome.output)")
        }
    }

    struct MountEntry {
        var point: String
        var shared: Bool
    }

    /// Where this process sees something mounted, read whole from `/proc/self/mountinfo`.
    public static func mountPoints() -> [String] { Self.mountTable().map(\.point) }

    /// This process's mount table (`/proc/self/mountinfo`).
    static func mountTable() -> [MountEntry] {
        guard let text = Self.readProcFile("/proc/self/mountinfo") else { return [] }
        return text.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ")
            guard fields.count > 6 else { return nil }
            let optional = fields.dropFirst(6).prefix { $0 != "-" }
            return MountEntry(point: Self.unescape(String(fields[4])), shared: optional.contains { $0.hasPrefix("shared:") })
        }
    }

    /// A file of /proc read to its end. Foundation's readers stop after the first 4000 bytes of
    /// these files (their size is 0 to `stat`), and a host running containers has a longer mount table.
    static func readProcFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count >= 0 else { return nil }
            if count == 0 { return String(decoding: bytes, as: UTF8.self) }
            bytes += chunk[0..<count]
        }
    }

    /// Where something is mounted now, from one read of the mount table.
    public func mountPoints() -> Set<String> { Set(Self.mountTable().map(\.point)) }

    static func isMountPoint(_ path: String) -> Bool { Self.mountTable().contains { $0.point == path } }

    /// The kernel writes space, tab, newline and backslash in mount points as `\ooo`.
    static func unescape(_ field: String) -> String {
        guard field.contains("\\") else { return field }
        var bytes: [UInt8] = []
        let utf8 = Array(field.utf8)
        var index = 0
        while index < utf8.count {
            if utf8[index] == UInt8(ascii: "\\"), index + 3 < utf8.count,
                let value = UInt8(String(decoding: utf8[(index + 1)...(index + 3)], as: UTF8.self), radix: 8)
            {
                bytes.append(value)
                index += 4
            } else {
                bytes.append(utf8[index])
                index += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    // MARK: - Blocks

    /// Reads the file block by block (``blockSize``), handing each to `body` with its index; an
    /// all-zero block is handed as nil (sparse files read as zeros where nothing was written).
    public func readBlocks(_ volume: String, _ body: (Int, [UInt8]?) async throws -> Void) async throws {
        guard let handle = FileHandle(forReadingAtPath: self.path(volume)) else { throw VolumeError.io("opening \(self.path(volume))", errno) }
        defer { try? handle.close() }
        var index = 0
        while true {
            guard let data = try handle.read(upToCount: Self.blockSize), !data.isEmpty else { return }
            let bytes = [UInt8](data)
            try await body(index, Self.isZero(bytes) ? nil : bytes)
            index += 1
        }
    }

    /// Writes one block at its index (blocks not written stay holes: zeros).
    public func writeBlock(_ volume: String, index: Int, _ bytes: [UInt8]) throws {
        let fd = open(self.path(volume), O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw VolumeError.io("opening \(self.path(volume))", errno) }
        defer { close(fd) }
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(index * Self.blockSize + offset)) }
            guard written > 0 else { throw VolumeError.io("writing \(self.path(volume))", errno) }
            offset += written
        }
    }

    /// Makes what was written durable.
    public func sync(_ volume: String) throws {
        let fd = open(self.path(volume), O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw VolumeError.io("opening \(self.path(volume))", errno) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw VolumeError.io("syncing \(self.path(volume))", errno) }
    }

    static func isZero(_ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { raw in
            let words = raw.count / 8
            for i in 0..<words where raw.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self) != 0 { return false }
            for i in (words * 8)..<raw.count where raw[i] != 0 { return false }
            return true
        }
    }
}

/// A volume operation the host refused.
public enum VolumeError: Error, Sendable, CustomStringConvertible {
    /// A host tool failed or is missing; the text has its own message.
    case tool(String)
    /// A system call failed.
    case io(String, Int32)
    /// A process still uses the mounted volume.
    case busy(String)

    public var description: String {
        switch self {
        case .tool(let message): message
        case .io(let what, let code): "\(what): \(String(cString: strerror(code)))"
        case .busy(let name): "volume \(name) is in use by a process of the instance; stop it (or the instance) first"
        }
    }
}
