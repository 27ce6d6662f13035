#!/usr/bin/env python3
"""Compute benchmark on one private dockerd (its own socket and data root), `cloud dev` beside it.

Rows:
- create-to-running: N instances, P at a time, each timed from its POST /compute/instances to the
  first GET that shows it `ready` (polled every 50 ms), and as the control plane recorded it
  (`created_at` to `updated_at` of the change to `ready`), beside `docker run -d` of the same image with
  the same limits on the same engine, P at a time, each timed until the CLI returns (the container
  then runs). Rounds alternate (docker, ours, docker, ours); every instance and container is removed
  between rounds.
- snapshot: a volume filled with random data inside a container, snapshotted (s1); then 10% of its
  1 MiB blocks rewritten at spread offsets and snapshotted again (s2): seconds from the POST to
  `completed`, and the bytes each added to the object store; beside a full local copy of the volume
  file (`cp` then `sync`) and a full upload of it into the same object store (boto3 upload_file,
  multipart), in the same run.

  python3 bench/compute.py --cloud-bin .build/release/cloud --instances 50 --parallel 10 --volume-mib 1024 --out /tmp/compute.md
"""
from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request

from control import PASSWORD, call, free_port, wait_ready  # bench/control.py

DOCKER = shutil.which("docker") or "docker"


def request(method, url, key, body=None, raw=None, content_type="application/json"):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    r = urllib.request.Request(url, data=data, method=method)
    r.add_header("Content-Type", content_type)
    r.add_header("X-API-Key", key)
    with urllib.request.urlopen(r, timeout=600) as answer:
        return json.loads(answer.read() or b"{}")


def get_or_none(url, key):
    try:
        return request("GET", url, key)
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


class Engine:
    def __init__(self, root):
        self.root = root
        self.socket = os.path.join(root, "docker.sock")
        self.log = open(os.path.join(root, "dockerd.log"), "w")
        self.proc = subprocess.Popen(
            ["dockerd", "--host", "unix://" + self.socket, "--data-root", os.path.join(root, "data"), "--exec-root", os.path.join(root, "exec"),
             "--pidfile", os.path.join(root, "docker.pid"), "--iptables=false", "--ip-masq=false", "--bridge=none"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 60
        while time.time() < deadline:
            if subprocess.run([DOCKER, "-H", "unix://" + self.socket, "version"], capture_output=True).returncode == 0:
                return
            time.sleep(0.3)
        sys.exit("dockerd did not start")

    def docker(self, *args):
        return subprocess.run([DOCKER, "-H", "unix://" + self.socket, *args], capture_output=True, text=True, check=True).stdout

    def stop(self):
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(60)


def busybox_tar(workdir):
    rootfs = os.path.join(workdir, "rootfs")
    os.makedirs(os.path.join(rootfs, "bin"))
    shutil.copy("/bin/busybox", os.path.join(rootfs, "bin", "busybox"))
    for applet in ["sh", "sleep", "dd", "sync", "seq", "cat"]:
        os.symlink("busybox", os.path.join(rootfs, "bin", applet))
    path = os.path.join(workdir, "busybox.tar")
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as t:
        t.add(rootfs, arcname=".")
    return open(path, "rb").read()


def docker_round(engine, reference, count, parallel, tag):
    def one(i):
        start = time.perf_counter()
        engine.docker("run", "-d", "--name", f"plain-{tag}-{i}", "--network", "none", "--cpus", "1", "--memory", "64m", reference, "sleep", "3600")
        return time.perf_counter() - start
    with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
        times = list(pool.map(one, range(count)))
    engine.docker("rm", "-f", *[f"plain-{tag}-{i}" for i in range(count)])
    return times


def rfc3339(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def ours_round(api, key, count, parallel, tag):
    """Each instance's time twice: as the client sees it (POST to the first GET showing `ready`,
    polled every 50 ms) and as the control plane recorded it (`created_at` to the `updated_at` of
    the change to `ready`, both in milliseconds)."""
    def one(i):
        name = f"b{tag}-{i}"
        start = time.perf_counter()
        request("POST", api + "/compute/instances", key, {"name": name, "image": "bb", "type": "nano", "command": ["sleep", "3600"]})
        while True:
            answer = request("GET", f"{api}/compute/instances/{name}", key)
            if answer["status"] == "ready":
                return time.perf_counter() - start, rfc3339(answer["updated_at"]) - rfc3339(answer["created_at"])
            if answer["status"] == "failed":
                sys.exit(f"{name} failed: {answer.get('status_reason')}")
            time.sleep(0.05)
    with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
        times = list(pool.map(one, range(count)))
    for i in range(count):
        request("DELETE", f"{api}/compute/instances/b{tag}-{i}", key)
    for i in range(count):
        while get_or_none(f"{api}/compute/instances/b{tag}-{i}", key) is not None:
            time.sleep(0.05)
    return times


def wait_status(url, key, target, passing):
    while True:
        answer = request("GET", url, key)
        if answer["status"] == target:
            return answer
        if answer["status"] not in passing:
            sys.exit(f"{url}: {answer['status']}: {answer.get('status_reason')}")
        time.sleep(0.02)


def exec_in(api, key, instance, script):
    answer = request("POST", f"{api}/compute/instances/{instance}/exec", key, {"command": ["sh", "-c", script + " 2>&1"], "timeout_seconds": 600})
    if answer["exit_code"] != 0:
        sys.exit(f"exec failed: {answer}")


def snapshot(api, key, volume, name):
    start = time.perf_counter()
    request("POST", api + "/compute/snapshots", key, {"name": name, "volume": volume})
    answer = wait_status(f"{api}/compute/snapshots/{name}", key, "completed", ["creating"])
    return time.perf_counter() - start, answer


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cloud-bin", default=".build/release/cloud")
    parser.add_argument("--instances", type=int, default=50)
    parser.add_argument("--parallel", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--volume-mib", type=int, default=1024)
    parser.add_argument("--out")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: dockerd and loop mounts")
    workdir = tempfile.mkdtemp(prefix="bench-compute-")
    os.makedirs(os.path.join(workdir, "engine"))
    engine = Engine(os.path.join(workdir, "engine"))
    api_port, s3_port = free_port(), free_port()
    api = f"http://127.0.0.1:{api_port}"
    email = "bench@example.com"
    data = os.path.join(workdir, "dev")
    dev = subprocess.Popen([args.cloud_bin, "dev", "--data-dir", data, "--platform-admin", email, "--api-address", f"127.0.0.1:{api_port}",
                            "--s3-address", f"127.0.0.1:{s3_port}", "--log-level", "warning",
                            "--quota", "instances=1000", "--quota", "vcpus=10000", "--quota", "memory_mib=1000000"],
                           stdout=open(os.path.join(workdir, "dev.log"), "w"), stderr=subprocess.STDOUT, start_new_session=True)
    lines = []
    try:
        wait_ready(api, dev, timeout=120)
        call("POST", api + "/auth/register", {"email": email, "name": "Bench", "password": PASSWORD})
        key = call("POST", api + "/auth/login", {"email": email, "password": PASSWORD})["api_key"]
        request("POST", api + "/compute/hosts", key, {"name": "h1", "docker_socket": "unix://" + engine.socket, "cpu_overcommit": 64})
        image = request("PUT", api + "/compute/images/bb", key, raw=busybox_tar(workdir), content_type="application/x-tar")
        reference = "cloud/image:sha256-" + image["digest"].split(":", 1)[1]
        # Warm-up: loads the image into the engine (a first create does), so both sides start from the same engine state.
        request("POST", api + "/compute/instances", key, {"name": "warm", "image": "bb", "type": "nano", "command": ["sleep", "3600"]})
        wait_status(f"{api}/compute/instances/warm", key, "ready", ["pending", "provisioning"])
        request("DELETE", f"{api}/compute/instances/warm", key)

        lines.append(f"## Compute: create-to-running and snapshots ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})")
        lines.append("")
        lines.append(f"{args.instances} instances per round, {args.parallel} at a time, busybox `sleep 3600`, 1 CPU and 64 MiB each, one dockerd "
                     f"({engine.docker('version', '--format', '{{.Server.Version}}').strip()}), `cloud dev` on SQLite beside it, {os.cpu_count()} CPUs.")
        lines.append("")
        lines.append("| round | plain `docker run -d` p50 / p99 (s) | ours, client-observed p50 / p99 (s) | ratio | ours, recorded p50 / p99 (s) | ratio |")
        lines.append("|---|---|---|---|---|---|")
        for r in range(args.rounds):
            plain = docker_round(engine, reference, args.instances, args.parallel, str(r))
            ours = ours_round(api, key, args.instances, args.parallel, str(r))
            p = (statistics.median(plain), percentile(plain, 99))
            seen = [t[0] for t in ours]
            recorded = [t[1] for t in ours]
            o = (statistics.median(seen), percentile(seen, 99))
            w = (statistics.median(recorded), percentile(recorded, 99))
            lines.append(f"| {r + 1} | {p[0]:.3f} / {p[1]:.3f} | {o[0]:.3f} / {o[1]:.3f} | {o[0] / p[0]:.2f} / {o[1] / p[1]:.2f} "
                         f"| {w[0]:.3f} / {w[1]:.3f} | {w[0] / p[0]:.2f} / {w[1] / p[1]:.2f} |")
            print(lines[-1], flush=True)

        # Snapshots.
        mib = args.volume_mib
        request("POST", api + "/compute/volumes", key, {"name": "vol", "size_mib": mib})
        volume = wait_status(f"{api}/compute/volumes/vol", key, "available", ["creating"])
        request("POST", api + "/compute/instances", key, {"name": "filler", "image": "bb", "type": "small", "command": ["sleep", "3600"]})
        wait_status(f"{api}/compute/instances/filler", key, "ready", ["pending", "provisioning"])
        request("POST", api + "/compute/volumes/vol/attach", key, {"instance": "filler"})
        wait_status(f"{api}/compute/volumes/vol", key, "attached", ["attaching"])
        fill = mib * 7 // 8  # within what ext4 leaves for data
        exec_in(api, key, "filler", f"dd if=/dev/urandom of=/volumes/vol/fill bs=1M count={fill} && sync")
        s1_seconds, s1 = snapshot(api, key, "vol", "s1")
        changed = len(range(0, fill, 10))
        exec_in(api, key, "filler", f"for i in $(seq 0 10 {fill - 1}); do dd if=/dev/urandom of=/volumes/vol/fill bs=1M count=1 seek=$i conv=notrunc 2>/dev/null; done; sync")
        s2_seconds, s2 = snapshot(api, key, "vol", "s2")
        path = os.path.join(data, "volumes", "files", volume["id"] + ".img")
        start = time.perf_counter()
        subprocess.run(["cp", "--sparse=never", path, os.path.join(workdir, "copy.img")], check=True)
        subprocess.run(["sync"], check=True)
        cp_seconds = time.perf_counter() - start
        os.unlink(os.path.join(workdir, "copy.img"))
        credentials = dict(line.split("=", 1) for line in open(os.path.join(data, "root-credentials")).read().splitlines() if "=" in line)
        import boto3
        s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{s3_port}", aws_access_key_id=credentials["access_key"],
                          aws_secret_access_key=credentials["secret_key"], region_name="us-east-1")
        s3.create_bucket(Bucket="full-copy")
        start = time.perf_counter()
        s3.upload_file(path, "full-copy", "vol.img")
        upload_seconds = time.perf_counter() - start
        size = os.path.getsize(path)
        lines.append("")
        lines.append(f"A {mib} MiB volume, {fill} MiB of random data written in the container; then {changed} of those 1 MiB blocks rewritten "
                     f"(every tenth), {changed * 100 // fill}% of the data.")
        lines.append("")
        lines.append("| what | seconds | bytes stored |")
        lines.append("|---|---|---|")
        lines.append(f"| snapshot s1 (first, attached: frozen while read) | {s1_seconds:.2f} | {s1['stored_bytes']} ({s1['blocks']} blocks held) |")
        lines.append(f"| snapshot s2 (after the rewrite) | {s2_seconds:.2f} | {s2['stored_bytes']} ({s2['blocks']} blocks held) |")
        lines.append(f"| full local copy (`cp --sparse=never` + `sync`) | {cp_seconds:.2f} | {size} |")
        lines.append(f"| full upload into the same object store (boto3 `upload_file`) | {upload_seconds:.2f} | {size} |")
        for line in lines[-6:]:
            print(line, flush=True)
    finally:
        try:
            os.killpg(dev.pid, signal.SIGTERM)
            dev.wait(60)
        finally:
            engine.stop()
            for line in reversed(open("/proc/self/mounts").read().splitlines()):
                if line.split()[1].startswith(workdir):
                    subprocess.run(["umount", "-l", line.split()[1]])
            shutil.rmtree(workdir, ignore_errors=True)
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
