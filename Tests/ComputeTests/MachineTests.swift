import Foundation
import Testing

@testable import Compute
@testable import Libvirt

@Suite struct MachineTests {
    func spec(name: String = "cloud-i-1", password: String = "ab12cd34") -> DomainSpec {
        DomainSpec(
            name: name, title: "t-1/web <1>", vcpus: 2, memoryMiB: 512, type: "qemu", kernel: "/m/images/d/vmlinuz", initrd: "/m/images/d/initrd.img",
            cmdline: "root=/dev/vda rw console=ttyS0", disks: [DomainSpec.Disk(path: "/m/instances/i-1/disk.qcow2", format: "qcow2", target: "vda", serial: "root")],
            serialLog: "/m/instances/i-1/serial.log", vncListen: "127.0.0.1", vncPassword: password, owner: (uid: 0, gid: 0))
    }

    @Test func domainXMLBootsTheImageKernelWithItsDiskConsoleAndVNC() {
        let xml = self.spec().xml
        #expect(xml.contains("<domain type='qemu'>"))
        #expect(xml.contains("<memory unit='MiB'>512</memory>"))
        #expect(xml.contains("<vcpu>2</vcpu>"))
        #expect(xml.contains("<kernel>/m/images/d/vmlinuz</kernel>"))
        #expect(xml.contains("<initrd>/m/images/d/initrd.img</initrd>"))
        #expect(xml.contains("<cmdline>root=/dev/vda rw console=ttyS0</cmdline>"))
        #expect(xml.contains("<source file='/m/instances/i-1/disk.qcow2'/><target dev='vda' bus='virtio'/><serial>root</serial>"))
        #expect(xml.contains("<serial type='file'><source path='/m/instances/i-1/serial.log' append='on'/>"))
        #expect(xml.contains("listen='127.0.0.1' passwd='ab12cd34'"))
        #expect(xml.contains("<label>+0:+0</label>"))
        // The title is the user's text: escaped, never markup.
        #expect(xml.contains("<title>t-1/web &lt;1&gt;</title>"))
    }

    @Test func textOfTheUserIsEscapedInEveryPlace() {
        let xml = self.spec(password: "a'b&<c").xml
        #expect(xml.contains("passwd='a&apos;b&amp;&lt;c'"))
        #expect(!xml.contains("a'b"))
    }

    @Test func readsThePortAndPasswordLibvirtChose() {
        let live = """
            <domain type='qemu' id='3'><devices>
            <graphics type='vnc' port='5901' autoport='yes' listen='127.0.0.1' passwd='x&amp;y12345'>
              <listen type='address' address='127.0.0.1'/>
            </graphics></devices></domain>
            """
        #expect(DomainSpec.vncPort(liveXML: live) == 5901)
        #expect(DomainSpec.vncPassword(liveXML: live) == "x&y12345")
        // Not running: autoport leaves port -1; without VIR_DOMAIN_XML_SECURE there is no password.
        let off = "<domain><devices><graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1'/></devices></domain>"
        #expect(DomainSpec.vncPort(liveXML: off) == nil)
        #expect(DomainSpec.vncPassword(liveXML: off) == nil)
    }

    @Test func findsAVolumesDiskAndTheNextFreeTarget() {
        let live = """
            <domain><devices>
            <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
              <source file='/m/instances/i-1/disk.qcow2' index='1'/>
              <backingStore type='file' index='2'><format type='raw'/><source file='/m/images/d/disk.raw'/></backingStore>
              <target dev='vda' bus='virtio'/></disk>
            <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='/v/files/vol-1.img' index='3'/>
              <target dev='vdb' bus='virtio'/><serial>vol-1</serial></disk>
            </devices></domain>
            """
        #expect(DomainSpec.diskTarget(file: "/v/files/vol-1.img", liveXML: live) == "vdb")
        #expect(DomainSpec.diskTarget(file: "/v/files/vol-2.img", liveXML: live) == nil)
        // A disk is found by any of its sources, its backing file's too.
        #expect(DomainSpec.diskTarget(file: "/m/images/d/disk.raw", liveXML: live) == "vda")
        #expect(DomainSpec.freeTarget(liveXML: live) == "vdc")
        let full = (["a"] + "bcdefghijklmnopqrstuvwxyz".map(String.init)).map { "<disk type='file'><target dev='vd\($0)'/></disk>" }.joined()
        #expect(DomainSpec.freeTarget(liveXML: full) == nil)
    }

    @Test func bootFilesAreFoundInsideTheImageOnly() throws {
        let tree = FileManager.default.temporaryDirectory.appendingPathComponent("machine-tree-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: tree) }
        let manager = FileManager.default
        try manager.createDirectory(atPath: tree + "/boot", withIntermediateDirectories: true)
        try Data("kernel".utf8).write(to: URL(fileURLWithPath: tree + "/boot/vmlinuz-6.1.0-1-amd64"))
        try Data("kernel".utf8).write(to: URL(fileURLWithPath: tree + "/boot/vmlinuz-6.1.0-9-amd64"))
        // No /boot/vmlinuz: the newest versioned kernel.
        #expect(MachineFiles.bootFile(in: tree, names: ["boot/vmlinuz", "vmlinuz"], prefix: "vmlinuz-") == tree + "/boot/vmlinuz-6.1.0-9-amd64")
        // Debian's relative link at the root, followed.
        try manager.createSymbolicLink(atPath: tree + "/vmlinuz", withDestinationPath: "boot/vmlinuz-6.1.0-1-amd64")
        #expect(MachineFiles.bootFile(in: tree, names: ["boot/vmlinuz", "vmlinuz"], prefix: "none-") == tree + "/boot/vmlinuz-6.1.0-1-amd64")
        // An absolute link means the image's own file, never the host's.
        try manager.createSymbolicLink(atPath: tree + "/boot/initrd.img", withDestinationPath: "/boot/initrd.img-x")
        #expect(MachineFiles.bootFile(in: tree, names: ["boot/initrd.img"], prefix: "none-") == nil)
        try Data("initrd".utf8).write(to: URL(fileURLWithPath: tree + "/boot/initrd.img-x"))
        #expect(MachineFiles.bootFile(in: tree, names: ["boot/initrd.img"], prefix: "none-") == tree + "/boot/initrd.img-x")
        // A link that climbs out, and a linked directory that leads to the host's files, are refused.
        try manager.createSymbolicLink(atPath: tree + "/escape", withDestinationPath: "../../../../etc/hostname")
        #expect(MachineFiles.bootFile(in: tree, names: ["escape"], prefix: "none-") == nil)
        try manager.createSymbolicLink(atPath: tree + "/etc", withDestinationPath: "/etc")
        #expect(MachineFiles.bootFile(in: tree, names: ["etc/hostname"], prefix: "none-") == nil)
        // A directory is not a kernel.
        try manager.createDirectory(atPath: tree + "/boot/vmlinuz", withIntermediateDirectories: true)
        #expect(MachineFiles.bootFile(in: tree, names: ["boot/vmlinuz"], prefix: "none-") == nil)
    }

    @Test func machinesArePlacedOnLibvirtHostsOnly() {
        func host(_ name: String, _ backend: Backend, state: HostState = .ready) -> Placement.Candidate {
            Placement.Candidate(
                host: name, state: state, cpus: 4, memoryBytes: 8 << 30, cpuOvercommit: 4, usedVCPUs: 0, usedMemoryMiB: 0, instances: 0,
                backend: backend)
        }
        let hosts = [host("a", .docker), host("b", .libvirt)]
        #expect(Placement.choose(vcpus: 1, memoryMiB: 512, backend: .libvirt, among: hosts) == .place(host: "b"))
        #expect(Placement.choose(vcpus: 1, memoryMiB: 512, backend: .docker, among: hosts) == .place(host: "a"))
        #expect(
            Placement.choose(vcpus: 1, memoryMiB: 512, backend: .libvirt, among: [host("a", .docker)])
                == .refuse(reason: "no compute host runs libvirt (cloud hosts add)"))
        #expect(
            Placement.choose(vcpus: 1, memoryMiB: 512, backend: .libvirt, among: [host("b", .libvirt, state: .unknown), host("a", .docker)])
                == .refuse(reason: "no libvirt compute host is ready (1 unknown)"))
    }

    @Test func aMachineThatPowersOffIsStoppedAndOneThatVanishedFailed() {
        #expect(ContainerObservation.poweredOff.reconcile(.ready, host: "h")! == (.stopped, "the machine powered off"))
        #expect(ContainerObservation.poweredOff.reconcile(.stopped, host: "h") == nil)
        #expect(ContainerObservation.machineMissing.reconcile(.stopped, host: "h")! == (.failed, "the machine is gone from host h"))
        #expect(ContainerObservation.running.reconcile(.stopped, host: "h")! == (.ready, nil))
    }

    @Test func onlyThisMachinesLibvirtIsAHost() throws {
        try ComputeService.checkLibvirtURI("qemu:///system")
        #expect(throws: (any Error).self) { try ComputeService.checkLibvirtURI("qemu+ssh://root@far/system") }
        #expect(throws: (any Error).self) { try ComputeService.checkLibvirtURI("") }
    }
}

@Suite struct SSHKeyTests {
    // Made with `ssh-keygen -t ed25519 -C ops@example` and `ssh-keygen -t rsa -b 2048 -C 'r s a'`;
    // the fingerprints are what `ssh-keygen -lf` printed for them.
    static let ed25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILHNOKqu+NBjz86J55GcSC7VYufPh6WM18S0WFLBlI/j ops@example"
    static let rsa = """
        ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDEpJUkmiUcbEDYc10emRZ6u1dbQXuIoozqR6fXwtHTaj/90Wl/QDP9mrsx1AGYcuuTCLiCTWQGWVf8vQx7Z8ZXd4xSw86jV29YhtN9r0jq7vCKeu3Q2Nan+NS2KhDR5NcO+9XuWnxLjpNvAiA05kbRq21eUGLLVR5lGFK+HD++3A436EOBHwVJFyGyKX8V8OoLO6AQFVUIB5EhaYj/Iyt3WJujKG9aA3VkiVP7cM7rqvIUfTfgXnTNdcL8RJQP2zrF5xczJ4U/cYFE9p/jTS/wngMAaAie11kfryEnMgKmTt0MJ2ApRX6SQYjMlcYFfDfl9NeH1aS7Z/zAIT3IEr6l r s a
        """

    @Test func parsesKeysAndPrintsTheFingerprintsSSHKeygenDoes() throws {
        let ed = try SSHPublicKey.parse(Self.ed25519 + "\n")
        #expect(ed.type == "ssh-ed25519" && ed.comment == "ops@example")
        #expect(ed.fingerprint == "SHA256:AmwoX2HHzESLwNmbxo0LV2fuYW6f/qs1n+LgGF5/Z/M")
        #expect(ed.line == Self.ed25519)
        let rsa = try SSHPublicKey.parse(Self.rsa)
        #expect(rsa.fingerprint == "SHA256:TWjBPk/d1yrPgNitrLpx50matbLUlgfi4m6/drzfh44")
        #expect(rsa.comment == "r s a")
    }

    @Test func refusesWhatIsNotAKeyOfItsType() {
        let blob = Self.ed25519.split(separator: " ")[1]
        for bad in [
            "", "hello", "ssh-ed25519", "ssh-dss \(blob)", "ssh-rsa \(blob) claims the wrong type", "ssh-ed25519 !!!notbase64",
            "ssh-ed25519 \(blob)\nssh-ed25519 \(blob)", "ssh-ed25519 AAAA",
            // Cut short (whole base64 groups still) and with bytes added: not a whole key.
            String(Self.ed25519.prefix(40)), "ssh-ed25519 \(blob.dropLast(4))", "ssh-ed25519 \(blob.dropLast(1))AAAAAA==",
        ] {
            #expect(throws: ComputeError.self, "\(bad)") { try SSHPublicKey.parse(bad) }
        }
    }

    @Test func metaDataIsYAMLWithQuotedValues() {
        let text = CloudInitSeed.metaData(instanceID: "i-1", hostname: "web", publicKeys: ["ssh-ed25519 AAAA a \"quoted\" comment"])
        #expect(
            text == """
                instance-id: "i-1"
                local-hostname: "web"
                public-keys:
                  - "ssh-ed25519 AAAA a \\"quoted\\" comment"

                """)
        #expect(!CloudInitSeed.metaData(instanceID: "i-1", hostname: "web", publicKeys: []).contains("public-keys"))
    }
}
