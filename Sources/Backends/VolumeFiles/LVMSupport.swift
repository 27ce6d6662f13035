import Foundation

/// Whether volumes can be LVM logical volumes on this host. They need the kernel's device-mapper
/// (listed in `/proc/misc`) and the `lvm` tools; this build has no LVM volume backend yet, so even
/// a host with both is told so. Volumes are files (`storage: file`) everywhere meanwhile.
public enum LVMSupport {
    /// Why LVM volumes cannot be made here, from the host's `/proc/misc` and whether `lvm` is installed.
    public static func unavailable(procMisc: String, lvmInstalled: Bool) -> String {
        let deviceMapper = procMisc.split(separator: "\n").contains { line in
            line.split(separator: " ", omittingEmptySubsequences: true).last == "device-mapper"
        }
        if !deviceMapper { return "LVM volumes are unavailable on this host: its kernel has no device-mapper (/proc/misc lists none); use storage file" }
        if !lvmInstalled { return "LVM volumes are unavailable on this host: the lvm tools are not installed (Debian: lvm2); use storage file" }
        return "LVM volumes are unavailable: this build of The Cloud has no LVM volume backend yet; use storage file"
    }

    /// ``unavailable(procMisc:lvmInstalled:)`` for this host.
    public static func unavailableHere() -> String {
        let misc = VolumeFiles.readProcFile("/proc/misc") ?? ""
        return Self.unavailable(procMisc: misc, lvmInstalled: HostCommand.locate("lvm") != nil)
    }
}
