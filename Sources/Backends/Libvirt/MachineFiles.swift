import Foundation
import VolumeFiles

/// The files of virtual machines in one directory of the host:
/// - `images/<digest>/`: what an image's tar becomes the first time a machine boots it: its kernel
///   (`vmlinuz`), its initramfs if it has one (`initrd.img`) and the root file system as an ext4
///   disk (`disk.raw`, made by `mkfs.ext4 -d` from the tar without mounting anything);
/// - `instances/<id>/`: a machine's own disk (`disk.qcow2`, a copy-on-write overlay on its image's
///   disk, so the image is never written) and its serial console's output (`serial.log`).
public struct MachineFiles: Sendable {
    public let root: String

    /// - Parameter root: The directory; a relative path is taken from the working directory
    ///   (libvirt needs absolute paths).
    public init(root: String) { self.root = URL(fileURLWithPath: root).standardizedFileURL.path }

    /// The user and group that own the directory (made if missing). QEMU runs as them, so it reaches
    /// the machines' files without libvirt relabelling them.
    public func owner() throws -> (uid: UInt32, gid: UInt32) {
        do { try FileManager.default.createDirectory(atPath: self.instances, withIntermediateDirectories: true) } catch {
            throw LibvirtError(.files, "cannot make \(self.instances): \(error)")
        }
        var status = stat()
        guard stat(self.root, &status) == 0 else { throw LibvirtError(.files, "cannot read \(self.root): \(String(cString: strerror(errno)))") }
        return (status.st_uid, status.st_gid)
    }

    /// What a machine boots.
    public struct Boot: Sendable, Equatable {
        public var kernel: String
        public var initrd: String?
        /// The image's root file system (raw ext4).
        public var disk: String
    }

    var images: String { self.root + "/images" }
    var instances: String { self.root + "/instances" }

    public func instanceDirectory(_ id: String) -> String { self.instances + "/" + id }
    public func disk(_ id: String) -> String { self.instanceDirectory(id) + "/disk.qcow2" }
    public func serialLog(_ id: String) -> String { self.instanceDirectory(id) + "/serial.log" }
    public func seed(_ id: String) -> String { self.instanceDirectory(id) + "/seed.img" }

    /// The boot files of an image prepared earlier, nil when it has not been.
    public func boot(digest: String) -> Boot? {
        let directory = self.images + "/" + digest
        let manager = FileManager.default
        guard manager.fileExists(atPath: directory + "/vmlinuz"), manager.fileExists(atPath: directory + "/disk.raw") else { return nil }
        let initrd = directory + "/initrd.img"
        return Boot(kernel: directory + "/vmlinuz", initrd: manager.fileExists(atPath: initrd) ? initrd : nil, disk: directory + "/disk.raw")
    }

    /// Turns an image's tar into boot files: unpacks it, takes its kernel (`/boot/vmlinuz`,
    /// `/vmlinuz` or the newest `/boot/vmlinuz-*`) and initramfs (`/boot/initrd.img`, `/initrd.img`
    /// or `/boot/initrd.img-*`), and makes an ext4 disk of the whole tree. Done in a directory of
    /// its own and renamed into place, so a crash leaves no half-made image.
    /// - Throws: ``LibvirtError`` of kind `files` when the tar has no kernel or a tool fails.
    public func prepare(digest: String, tar: [UInt8]) async throws -> Boot {
        if let boot = self.boot(digest: digest) { return boot }
        let manager = FileManager.default
        let work = self.images + "/.new-\(digest)-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? manager.removeItem(atPath: work) }
        do {
            try manager.createDirectory(atPath: work + "/root", withIntermediateDirectories: true)
            try Data(tar).write(to: URL(fileURLWithPath: work + "/image.tar"))
            try await HostCommand.check(
                ["tar", "-x", "--numeric-owner", "-f", work + "/image.tar", "-C", work + "/root"], doing: "unpacking the image")
            try manager.removeItem(atPath: work + "/image.tar")
            let tree = work + "/root"
            guard let kernel = Self.bootFile(in: tree, names: ["boot/vmlinuz", "vmlinuz"], prefix: "vmlinuz-") else {
                throw LibvirtError(.files, "the image has no kernel (/boot/vmlinuz): a virtual machine boots the kernel of its image")
            }
            try manager.copyItem(atPath: kernel, toPath: work + "/vmlinuz")
            if let initrd = Self.bootFile(in: tree, names: ["boot/initrd.img", "initrd.img"], prefix: "initrd.img-") {
                try manager.copyItem(atPath: initrd, toPath: work + "/initrd.img")
            }
            // Room for the tree and for the machine to write (its writes go to its overlay, which
            // is as large as this disk).
            let bytes = max(Int64(64 << 20), (Int64(tar.count) * 2 + Int64(64 << 20)) / Int64(1 << 20) * Int64(1 << 20))
            guard manager.createFile(atPath: work + "/disk.raw", contents: nil) else {
                throw LibvirtError(.files, "cannot create \(work)/disk.raw")
            }
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: work + "/disk.raw"))
            try handle.truncate(atOffset: UInt64(bytes))
            try handle.close()
            try await HostCommand.check(
                ["mkfs.ext4", "-q", "-F", "-L", "root", "-d", tree, work + "/disk.raw"], doing: "making the image's disk")
            try manager.removeItem(atPath: tree)
            let target = self.images + "/" + digest
            if rename(work, target) != 0 && self.boot(digest: digest) == nil {
                throw LibvirtError(.files, "cannot move the prepared image to \(target): \(String(cString: strerror(errno)))")
            }
        } catch let error as LibvirtError {
            throw error
        } catch {
            throw LibvirtError(.files, "preparing the image: \(error)")
        }
        guard let boot = self.boot(digest: digest) else { throw LibvirtError(.files, "the prepared image \(digest) is not complete") }
        return boot
    }

    /// A boot file of an unpacked tree, resolved within the tree: a link that leads out of it (an
    /// absolute link to the host's own files) is not followed.
    static func bootFile(in tree: String, names: [String], prefix: String) -> String? {
        let manager = FileManager.default
        var candidates = names.map { tree + "/" + $0 }
        if let entries = try? manager.contentsOfDirectory(atPath: tree + "/boot") {
            candidates += entries.filter { $0.hasPrefix(prefix) && !$0.hasSuffix(".dpkg-bak") }.sorted().reversed().map { tree + "/boot/" + $0 }
        }
        for candidate in candidates {
            guard let resolved = Self.resolve(candidate, within: tree) else { continue }
            var directory: ObjCBool = false
            if manager.fileExists(atPath: resolved, isDirectory: &directory), !directory.boolValue { return resolved }
        }
        return nil
    }

    /// Follows symbolic links of `path` as if `tree` were the root (at most 16). The file found
    /// must really be inside the tree: a linked directory on the way (`boot -> /boot`) that leads
    /// out of it makes the answer nil.
    static func resolve(_ path: String, within tree: String) -> String? {
        var current = path
        for _ in 0..<16 {
            guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: current) else {
                guard current.hasPrefix(tree + "/"), let real = realpath(current, nil), let root = realpath(tree, nil) else { return nil }
                defer { free(real); free(root) }
                return String(cString: real).hasPrefix(String(cString: root) + "/") ? current : nil
            }
            let base = target.hasPrefix("/") ? tree : (current as NSString).deletingLastPathComponent
            current = ((base + "/" + target) as NSString).standardizingPath
            guard current.hasPrefix(tree + "/") else { return nil }
        }
        return nil
    }

    /// Makes a machine's disk: a qcow2 overlay on its image's disk. One made by an earlier attempt is kept.
    public func createDisk(_ id: String, on boot: Boot) async throws -> String {
        let disk = self.disk(id)
        do {
            try FileManager.default.createDirectory(atPath: self.instanceDirectory(id), withIntermediateDirectories: true)
            if FileManager.default.fileExists(atPath: disk) { return disk }
            let partial = disk + ".new"
            try await HostCommand.check(
                ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", boot.disk, partial], doing: "making the machine's disk")
            guard rename(partial, disk) == 0 else { throw LibvirtError(.files, "cannot rename \(partial): \(String(cString: strerror(errno)))") }
            return disk
        } catch let error as LibvirtError {
            throw error
        } catch {
            throw LibvirtError(.files, "making the machine's disk: \(error)")
        }
    }

    /// Makes a machine's NoCloud seed: a small vfat disk labelled CIDATA holding `meta-data` and
    /// `user-data`, which cloud-init in the guest finds by its label (`mkfs.vfat` and `mcopy`: no mount).
    public func createSeed(_ id: String, metaData: String, userData: String) async throws -> String {
        let seed = self.seed(id)
        let partial = seed + ".new"
        do {
            try FileManager.default.createDirectory(atPath: self.instanceDirectory(id), withIntermediateDirectories: true)
            try? FileManager.default.removeItem(atPath: partial)
            try await HostCommand.check(["mkfs.vfat", "-n", "CIDATA", "-C", partial, "2048"], doing: "making the machine's cloud-init disk")
            for (name, text) in [("meta-data", metaData), ("user-data", userData)] {
                let file = self.instanceDirectory(id) + "/" + name
                try Data(text.utf8).write(to: URL(fileURLWithPath: file))
                defer { try? FileManager.default.removeItem(atPath: file) }
                try await HostCommand.check(["mcopy", "-o", "-i", partial, file, "::" + name], doing: "writing \(name) to the cloud-init disk")
            }
            guard rename(partial, seed) == 0 else { throw LibvirtError(.files, "cannot rename \(partial): \(String(cString: strerror(errno)))") }
            return seed
        } catch let error as LibvirtError {
            throw error
        } catch {
            throw LibvirtError(.files, "making the machine's cloud-init disk: \(error)")
        }
    }

    /// Removes a machine's disk and log.
    public func removeInstance(_ id: String) throws {
        let directory = self.instanceDirectory(id)
        guard FileManager.default.fileExists(atPath: directory) else { return }
        do { try FileManager.default.removeItem(atPath: directory) } catch {
            throw LibvirtError(.files, "removing \(directory): \(error)")
        }
    }

    /// The last `tail` lines the machine wrote to its serial console (carriage returns dropped).
    public func serialLines(_ id: String, tail: Int) -> [String] {
        guard let handle = FileHandle(forReadingAtPath: self.serialLog(id)) else { return [] }
        defer { try? handle.close() }
        // The tail of the file is enough for 10 000 lines of ordinary console output.
        let window: UInt64 = 4 << 20
        let end = (try? handle.seekToEnd()) ?? 0
        let start = end > window ? end - window : 0
        try? handle.seek(toOffset: start)
        let data = (try? handle.readToEnd()) ?? Data()
        var lines = String(decoding: data, as: UTF8.self).replacingOccurrences(of: "\r", with: "").split(
            separator: "\n", omittingEmptySubsequences: false
        ).map(String.init)
        if start > 0, !lines.isEmpty { lines.removeFirst() }  // cut in the middle
        if lines.last == "" { lines.removeLast() }
        return Array(lines.suffix(tail))
    }
}
