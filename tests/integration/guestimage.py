"""The guest image of the virtual-machine tests and benchmark, made from the host's packages: its
Debian kernel (linux-image-cloud-amd64), an initramfs of busybox that loads the virtio modules and
switches to the root disk, and a root file system whose init reports on the serial console what it
sees (`cloud-guest: …` lines) and writes into each disk attached later. Nothing is downloaded."""
import glob
import gzip
import io
import lzma
import os
import shutil
import subprocess
import tarfile


class MissingTool(Exception):
    pass


def kernel():
    kernels = sorted(glob.glob("/boot/vmlinuz-*"))
    if not kernels:
        raise MissingTool("no kernel in /boot (scripts/install-deps.sh installs linux-image-cloud-amd64)")
    version = kernels[-1][len("/boot/vmlinuz-"):]
    return kernels[-1], version


def add_busybox(tar, applets):
    info = tar.gettarinfo("/bin/busybox", arcname="bin/busybox")
    with open("/bin/busybox", "rb") as f:
        tar.addfile(info, f)
    for applet in applets:
        link = tarfile.TarInfo("bin/" + applet)
        link.type = tarfile.SYMTYPE
        link.linkname = "busybox"
        tar.addfile(link)


def add_file(tar, name, data, mode=0o644):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    tar.addfile(info, io.BytesIO(data))


def add_dirs(tar, names):
    for name in names:
        info = tarfile.TarInfo(name)
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        tar.addfile(info)


INITRAMFS_INIT = """#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for module in MODULES; do insmod /modules/$module || echo "initramfs: insmod $module failed" > /dev/ttyS0; done
n=0
while [ ! -b /dev/vda ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
mount -t ext4 /dev/vda /newroot || { echo "initramfs: no root disk" > /dev/ttyS0; exec sh; }
mount --move /dev /newroot/dev
umount /proc /sys
exec switch_root /newroot /sbin/init
"""

GUEST_INIT = """#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sys /sys
echo "cloud-guest: up"
echo "cloud-guest: root $(grep ' / ' /proc/mounts | cut -d' ' -f1,3)"
if [ -e /var/booted ]; then echo "cloud-guest: booted before at $(cat /var/booted)"; fi
cat /proc/uptime > /var/booted
sync
# Reports the disks whenever they change; writes a file into each new one (a volume) and lets it go.
last=""
while true; do
    now="$(ls /sys/block | tr '\\n' ' ')"
    if [ "$now" != "$last" ]; then
        echo "cloud-guest: disks $now"
        for disk in $now; do
            case " $last " in *" $disk "*) continue ;; esac
            [ "$disk" = vda ] && continue
            echo "cloud-guest: disk $disk serial $(cat /sys/block/$disk/serial)"
            mkdir -p /mnt/$disk
            if mount -t ext4 /dev/$disk /mnt/$disk; then
                echo "written by the guest on $disk" > /mnt/$disk/from-guest
                sync
                umount /mnt/$disk
                echo "cloud-guest: wrote $disk serial $(cat /sys/block/$disk/serial)"
            else
                echo "cloud-guest: cannot mount $disk"
            fi
        done
        last="$now"
    fi
    sleep 0.5
done
"""


def initramfs(version):
    """A gzipped newc cpio of busybox, the virtio modules of `version` and an /init that mounts /dev/vda."""
    base = f"/lib/modules/{version}/kernel/drivers"
    order = ["virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci", "virtio_blk"]
    work = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"initramfs-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    for d in ["bin", "modules", "proc", "sys", "dev", "newroot"]:
        os.makedirs(os.path.join(work, d))
    shutil.copy("/bin/busybox", os.path.join(work, "bin", "busybox"))
    for applet in ["sh", "mount", "umount", "insmod", "sleep", "switch_root", "echo"]:
        os.symlink("busybox", os.path.join(work, "bin", applet))
    names = []
    for module in order:
        found = glob.glob(f"{base}/**/{module}.ko*", recursive=True)
        if not found:
            continue  # built into the kernel
        data = open(found[0], "rb").read()
        if found[0].endswith(".xz"):
            data = lzma.decompress(data)
        open(os.path.join(work, "modules", module + ".ko"), "wb").write(data)
        names.append(module + ".ko")
    init = os.path.join(work, "init")
    open(init, "w").write(INITRAMFS_INIT.replace("MODULES", " ".join(names)))
    os.chmod(init, 0o755)
    files = subprocess.run(["find", "."], cwd=work, capture_output=True, text=True, check=True).stdout
    cpio = subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=work, input=files.encode(), capture_output=True, check=True).stdout
    shutil.rmtree(work)
    return gzip.compress(cpio)


def guest_tar():
    """A tar of a root file system with the host's kernel, an initramfs for it and GUEST_INIT as /sbin/init."""
    path, version = kernel()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        add_dirs(tar, ["bin", "sbin", "boot", "proc", "sys", "dev", "var", "tmp", "mnt"])
        add_busybox(tar, ["sh", "mount", "umount", "mkdir", "grep", "cut", "ls", "tr", "cat", "sleep", "sync", "echo"])
        add_file(tar, "sbin/init", GUEST_INIT.encode(), mode=0o755)
        add_file(tar, f"boot/vmlinuz-{version}", open(path, "rb").read())
        add_file(tar, f"boot/initrd.img-{version}", initramfs(version))
        # Debian's links at the root of the tree.
        for name, target in [("vmlinuz", f"boot/vmlinuz-{version}"), ("initrd.img", f"boot/initrd.img-{version}")]:
            link = tarfile.TarInfo(name)
            link.type = tarfile.SYMTYPE
            link.linkname = target
            tar.addfile(link)
    return out.getvalue()
