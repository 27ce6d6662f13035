#!/usr/bin/env bash
# Installs what building and testing The Cloud needs on Debian 12 (run as root).
# Safe to run again: it installs only what is missing.
set -euo pipefail

# iproute2: network namespaces for the partition tests; libcurl4: FoundationNetworking (the `cloud storage` CLI).
# postgresql: the control plane's tests run against a real PostgreSQL (scripts/with-postgres.sh starts one).
# docker.io: the Docker Engine the compute tests start privately (their own sockets and data roots);
# busybox-static: the root file system of the images they import; curl: talks to the engines' sockets.
# e2fsprogs, mount, util-linux: compute volumes (mkfs.ext4, resize2fs, loop mounts, fsfreeze).
# libvirt-daemon-system, qemu-system-x86, qemu-utils: virtual machines (the tests start libvirtd); dosfstools,
# mtools: their cloud-init disks (mkfs.vfat, mcopy);
# linux-image-cloud-amd64 and cpio: the kernel and initramfs of the guest image the tests build;
# openssh-client: ssh-keygen makes the keys they import.
apt_packages=(libssl-dev zlib1g-dev libzstd-dev liblz4-dev libsqlite3-dev rclone s3cmd wrk nginx-light iproute2 libcurl4 postgresql docker.io busybox-static curl e2fsprogs mount util-linux
    libvirt-daemon-system qemu-system-x86 qemu-utils dosfstools mtools linux-image-cloud-amd64 cpio openssh-client)
missing=()
for package in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The S3 clients the integration tests drive (aws-cli v1, boto3, the AWS CRT for CRC32C/CRC64NVME)
# and pytest; PyYAML parses `cloud -o yaml` in the CLI tests.
here="$(cd "$(dirname "$0")" && pwd)"
if ! python3 -c 'import boto3, botocore, awscli, awscrt, requests, pytest, yaml, aiosmtpd, vncdotool, websocket' 2>/dev/null || ! command -v aws >/dev/null; then
    echo "installing Python test clients"
    python3 -m pip install -q -r "$here/requirements-test.txt" -r "$here/../tests/requirements.txt"
fi
