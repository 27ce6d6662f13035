#!/usr/bin/env python3
"""Virtual-machine benchmark: create-to-first-serial-line of an instance on this machine's libvirt,
beside `virsh start` of the same domain made by hand, in the same run.

- ours: `POST /compute/instances` (backend libvirt) until `GET …/logs` first shows the guest's
  `cloud-guest: up` line (polled every 100 ms), and until the instance shows `ready`;
- plain: the domain XML the cloud gave one of its machines, defined under another name with its own
  copy-on-write disk on the same image disk and its own serial file; `virsh start` until the serial
  file first holds the same line (polled every 100 ms).

Rounds alternate (plain, ours); every machine is removed between rounds. The first create of an
image also prepares it (unpacks the tar, makes its ext4 disk): reported on its own row. The guest is
tests/integration/guestimage.py (the host's Debian kernel, a busybox initramfs and init).

  python3 bench/machines.py --cloud-bin .build/debug/cloud --rounds 5 --accelerator tcg --out /tmp/machines.md
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
import guestimage  # noqa: E402  (tests/integration/guestimage.py)
from compute import get_or_none, request  # noqa: E402  (bench/compute.py)
from control import PASSWORD, call, free_port, wait_ready  # noqa: E402  (bench/control.py)

URI = "qemu:///system"
LINE = "cloud-guest: up"


def virsh(*args, check=True):
    return subprocess.run(["virsh", "-c", URI, *args], capture_output=True, text=True, timeout=120, check=check)


def wait(what, probe, timeout=300, every=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(every)
    raise SystemExit(f"timed out waiting for {what}")


def ours(api, key, name):
    """Seconds to the first serial line and to `ready`, and the instance."""
    start = time.monotonic()
    request("POST", f"{api}/compute/instances", key, {"name": name, "image": "guest", "type": "micro", "backend": "libvirt"})
    ready = None
    line = None
    while line is None:
        if ready is None:
            state = request("GET", f"{api}/compute/instances/{name}", key)
            if state["status"] == "ready":
                ready = time.monotonic() - start
            elif state["status"] == "failed":
                raise SystemExit(f"{name} failed: {state['status_reason']}")
        if ready is not None:
            lines = request("GET", f"{api}/compute/instances/{name}/logs", key)["lines"]
            if any(LINE in x["text"] for x in lines):
                line = time.monotonic() - start
                break
        time.sleep(0.1)
    return line, ready, request("GET", f"{api}/compute/instances/{name}", key)


def delete(api, key, name):
    request("DELETE", f"{api}/compute/instances/{name}", key)
    wait(f"{name} to go", lambda: get_or_none(f"{api}/compute/instances/{name}", key) is None)


def plain(template, backing, work, name):
    """`virsh start` of the cloud's domain XML under another name, with its own disk (on the same
    image disk) and serial file."""
    disk = os.path.join(work, name + ".qcow2")
    serial = os.path.join(work, name + ".log")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", backing, disk], check=True)
    xml = re.sub(r"<name>[^<]+</name>", f"<name>{name}</name>", template)
    xml = re.sub(r"<uuid>[^<]+</uuid>", "", xml)
    xml = re.sub(r"<source file='[^']+/disk\.qcow2'", f"<source file='{disk}'", xml)
    xml = re.sub(r"<source path='[^']+/serial\.log'", f"<source path='{serial}'", xml)
    path = os.path.join(work, name + ".xml")
    open(path, "w").write(xml)
    virsh("define", path)
    start = time.monotonic()
    virsh("start", name)
    started = time.monotonic() - start
    wait(f"{name}'s serial line", lambda: os.path.exists(serial) and LINE in open(serial, errors="replace").read())
    line = time.monotonic() - start
    virsh("destroy", name, check=False)
    virsh("undefine", name)
    os.remove(disk)
    os.remove(serial)
    return line, started


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cloud-bin", default=".build/debug/cloud")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--accelerator", default="tcg", help="kvm or tcg (this machine's /dev/kvm does not run guests)")
    parser.add_argument("--out", help="also write the markdown table here")
    args = parser.parse_args()
    if virsh("version", check=False).returncode != 0:
        subprocess.run(["virtlogd", "-d"], check=True)
        subprocess.run(["libvirtd", "-d"], check=True)
        wait("libvirtd", lambda: virsh("version", check=False).returncode == 0, timeout=60)
    work = tempfile.mkdtemp(prefix="bench-machines-")
    api_port, s3_port = free_port(), free_port()
    api = f"http://127.0.0.1:{api_port}"
    operator = "ops@bench.example"
    log = open(os.path.join(work, "cloud.log"), "w")
    proc = subprocess.Popen(
        [args.cloud_bin, "dev", "--data-dir", os.path.join(work, "data"), "--platform-admin", operator,
         "--api-address", f"127.0.0.1:{api_port}", "--s3-address", f"127.0.0.1:{s3_port}"], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_ready(api, proc, timeout=120)
        call("POST", f"{api}/auth/register", {"email": operator, "name": "Ops", "password": PASSWORD})
        key = call("POST", f"{api}/auth/login", {"email": operator, "password": PASSWORD})["api_key"]
        host = request("POST", f"{api}/compute/hosts", key, {"name": "vm1", "libvirt_uri": URI, "accelerator": args.accelerator})
        request("PUT", f"{api}/compute/images/guest", key, raw=guestimage.guest_tar(), content_type="application/x-tar")

        first_line, first_ready, made = ours(api, key, "first")
        template = virsh("dumpxml", "--inactive", made["container_id"]).stdout
        own_disk = re.search(r"<source file='([^']+/disk\.qcow2)'", template).group(1)
        info = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", own_disk], capture_output=True, text=True, check=True).stdout)
        backing = info["full-backing-filename"]
        delete(api, key, "first")
        rows = []
        for n in range(args.rounds):
            p_line, p_start = plain(template, backing, work, f"bench-plain-{n}")
            o_line, o_ready, _ = ours(api, key, f"vm{n}")
            delete(api, key, f"vm{n}")
            rows.append((p_line, p_start, o_line, o_ready))
            print(f"round {n + 1}: plain {p_line:.2f} s (virsh start {p_start:.2f} s), ours {o_line:.2f} s (ready {o_ready:.2f} s)", flush=True)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        for name in virsh("list", "--all", "--name").stdout.split():
            if name.startswith("bench-plain-") or work in virsh("dumpxml", name, check=False).stdout:
                virsh("destroy", name, check=False)
                virsh("undefine", name, check=False)
        shutil.rmtree(work, ignore_errors=True)

    def med(i):
        return statistics.median(r[i] for r in rows)

    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"Run {when}: {host['engine_version']}, accelerator {args.accelerator}, {args.rounds} rounds, type micro (1 vCPU, 256 MiB).",
        "",
        "| round | plain: `virsh start` to first serial line (s) | `virsh start` returns (s) | ours: POST to first serial line (s) | POST to `ready` (s) | ratio (line) |",
        "|---|---|---|---|---|---|",
    ]
    for n, (p_line, p_start, o_line, o_ready) in enumerate(rows):
        lines.append(f"| {n + 1} | {p_line:.2f} | {p_start:.2f} | {o_line:.2f} | {o_ready:.2f} | {o_line / p_line:.2f} |")
    lines.append(f"| median | {med(0):.2f} | {med(1):.2f} | {med(2):.2f} | {med(3):.2f} | {med(2) / med(0):.2f} |")
    lines.append("")
    lines.append(f"First create of the image (prepares it: unpack, mkfs.ext4 -d): {first_line:.2f} s to the serial line, {first_ready:.2f} s to `ready`.")
    text = "\n".join(lines)
    print(text)
    if args.out:
        open(args.out, "w").write(text + "\n")


if __name__ == "__main__":
    try:
        main()
    except urllib.error.HTTPError as e:
        raise SystemExit(f"{e.code} {e.read().decode(errors='replace')}")
