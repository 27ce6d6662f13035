import Foundation
import TextEscaping

/// The definition of a QEMU domain for one instance: pure, so what libvirt is given is tested
/// without a daemon.
public struct DomainSpec: Sendable, Equatable {
    /// A disk of the domain.
    public struct Disk: Sendable, Equatable {
        public var path: String
        /// `qcow2` or `raw`.
        public var format: String
        /// `vda`, `vdb`, … (virtio).
        public var target: String
        /// A stable id the guest sees (`/dev/disk/by-id/virtio-<serial>`), at most 20 characters.
        public var serial: String?
        /// The guest cannot write it.
        public var readOnly: Bool

        public init(path: String, format: String, target: String, serial: String? = nil, readOnly: Bool = false) {
            self.path = path
            self.format = format
            self.target = target
            self.serial = serial
            self.readOnly = readOnly
        }
    }

    public var name: String
    /// Shown by `virsh list --title`: the instance's tenant and name.
    public var title: String
    public var vcpus: Int64
    public var memoryMiB: Int64
    /// `kvm` where it is usable, else `qemu` (TCG).
    public var type: String
    public var kernel: String
    public var initrd: String?
    public var cmdline: String
    public var disks: [Disk]
    /// The file the first serial port writes to (the instance's logs).
    public var serialLog: String
    /// The address VNC listens on (the host's private address).
    public var vncListen: String
    /// VNC's password: at most 8 characters are used by the protocol.
    public var vncPassword: String
    /// The user and group QEMU runs as (`+uid:+gid`), nil for libvirt's own default.
    public var owner: (uid: UInt32, gid: UInt32)?

    public init(
        name: String, title: String, vcpus: Int64, memoryMiB: Int64, type: String, kernel: String, initrd: String?, cmdline: String,
        disks: [Disk], serialLog: String, vncListen: String, vncPassword: String, owner: (uid: UInt32, gid: UInt32)?
    ) {
        self.name = name
        self.title = title
        self.vcpus = vcpus
        self.memoryMiB = memoryMiB
        self.type = type
        self.kernel = kernel
        self.initrd = initrd
        self.cmdline = cmdline
        self.disks = disks
        self.serialLog = serialLog
        self.vncListen = vncListen
        self.vncPassword = vncPassword
        self.owner = owner
    }

    public static func == (left: DomainSpec, right: DomainSpec) -> Bool { left.xml == right.xml }

    /// The domain's XML for `virDomainDefineXML`.
    public var xml: String {
        let e = Self.escape
        var lines = [
            "<domain type='\(e(self.type))'>",
            "  <name>\(e(self.name))</name>",
            "  <title>\(e(self.title))</title>",
            "  <memory unit='MiB'>\(self.memoryMiB)</memory>",
            "  <vcpu>\(self.vcpus)</vcpu>",
            "  <os>",
            "    <type arch='x86_64' machine='pc'>hvm</type>",
            "    <kernel>\(e(self.kernel))</kernel>",
        ]
        if let initrd = self.initrd { lines.append("    <initrd>\(e(initrd))</initrd>") }
        lines += [
            "    <cmdline>\(e(self.cmdline))</cmdline>",
            "  </os>",
            "  <features><acpi/></features>",
            "  <on_poweroff>destroy</on_poweroff>",
            "  <on_reboot>restart</on_reboot>",
            "  <on_crash>destroy</on_crash>",
            "  <devices>",
        ]
        lines += self.disks.map { "    " + Self.diskXML($0) }
        lines += [
            "    <serial type='file'><source path='\(e(self.serialLog))' append='on'/><target port='0'/></serial>",
            "    <graphics type='vnc' port='-1' autoport='yes' listen='\(e(self.vncListen))' passwd='\(e(self.vncPassword))'/>",
            "    <video><model type='vga'/></video>",
            "    <memballoon model='none'/>",
            "  </devices>",
        ]
        if let owner = self.owner {
            lines.append("  <seclabel type='static' model='dac' relabel='no'><label>+\(owner.uid):+\(owner.gid)</label></seclabel>")
        }
        lines.append("</domain>")
        return lines.joined(separator: "\n") + "\n"
    }

    /// One disk's `<disk>` element (also what attach and detach send).
    public static func diskXML(_ disk: Disk) -> String {
        let e = Self.escape
        var xml = "<disk type='file' device='disk'><driver name='qemu' type='\(e(disk.format))'/><source file='\(e(disk.path))'/>"
        xml += "<target dev='\(e(disk.target))' bus='virtio'/>"
        if let serial = disk.serial { xml += "<serial>\(e(serial))</serial>" }
        if disk.readOnly { xml += "<readonly/>" }
        return xml + "</disk>"
    }

    /// Text for an XML attribute or element.
    static func escape(_ text: String) -> String { XMLText.escape(text) }

    /// The target (`vdb`) of the disk whose source is `path`, from the domain's XML; nil when it has none.
    public static func diskTarget(file path: String, liveXML xml: String) -> String? {
        for disk in Self.disks(xml) where disk.contains("<source file='\(Self.escape(path))'") {
            return Self.attribute("dev", of: "<target", in: disk)
        }
        return nil
    }

    /// The first of `vdb` to `vdz` no disk of the domain uses.
    public static func freeTarget(liveXML xml: String) -> String? {
        let used = Set(Self.disks(xml).compactMap { Self.attribute("dev", of: "<target", in: $0) })
        return "bcdefghijklmnopqrstuvwxyz".map { "vd\($0)" }.first { !used.contains($0) }
    }

    /// The `<disk …>…</disk>` elements of a domain's XML.
    static func disks(_ xml: String) -> [Substring] {
        xml.components(separatedBy: "<disk ").dropFirst().map { chunk in
            chunk.range(of: "</disk>").map { chunk[..<$0.lowerBound] } ?? Substring(chunk)
        }
    }

    /// An attribute of the first `element` (`<target`) in `text`, as libvirt writes it (single quotes).
    static func attribute(_ name: String, of element: String, in text: Substring) -> String? {
        guard let start = text.range(of: element) else { return nil }
        let rest = text[start.upperBound...]
        guard let end = rest.firstIndex(of: ">"), let value = rest[..<end].range(of: " \(name)='") else { return nil }
        return String(rest[value.upperBound..<end].prefix { $0 != "'" })
    }

    /// The VNC port of a running domain, from its live XML (`<graphics type='vnc' port='5901' …>`).
    public static func vncPort(liveXML xml: String) -> Int? {
        guard let text = Self.vncAttribute("port", liveXML: xml), let value = Int(text), value > 0 else { return nil }
        return value
    }

    /// The VNC password of a domain, from its XML read with `VIR_DOMAIN_XML_SECURE`.
    public static func vncPassword(liveXML xml: String) -> String? {
        Self.vncAttribute("passwd", liveXML: xml).map(Self.unescape)
    }

    /// An attribute of the VNC `<graphics>` element, as libvirt writes it (single quotes).
    static func vncAttribute(_ name: String, liveXML xml: String) -> String? {
        Self.attribute(name, of: "<graphics type='vnc'", in: Substring(xml))
    }

    static func unescape(_ text: String) -> String {
        text.replacingOccurrences(of: "&apos;", with: "'").replacingOccurrences(of: "&quot;", with: "\"")
            .replacingOccurrences(of: "&lt;", with: "<").replacingOccurrences(of: "&gt;", with: ">").replacingOccurrences(of: "&amp;", with: "&")
    }
}
