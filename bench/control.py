#!/usr/bin/env python3
"""Load benchmark of the control plane's REST API on both databases.

Starts `cloud dev` (state in embedded SQLite) and `cloud server` on a PostgreSQL database (the
server CLOUD_TEST_POSTGRES_URL names: run under scripts/with-postgres.sh, as `make bench-control`
does), registers a user, and drives the core calls with wrk (one process on loopback, --connections
connections, 2 threads): GET /health/live (no database: the HTTP stack's own ceiling on this machine,
the reference for the ratios), GET /auth/me (key check + grants + user + tenants), GET /rbac/roles,
POST /rbac/roles (a write of a unique role), POST /auth/keys (a write of a new key). Prints a markdown
table with requests/s and p50/p95/p99 per call and database, and each call's throughput as a
fraction of /health/live measured in the same run.

  scripts/with-postgres.sh python3 bench/control.py --cloud-bin .build/release/cloud --duration 10
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
LUA = os.path.join(HERE, "wrk_api.lua")
PASSWORD = "correct horse battery staple"
# POST /auth/keys creates thousands of keys in one tenant: lift the default quota of 100.
QUOTA = ["--quota", "api_keys=1000000000"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    """User + system CPU seconds of a process and its children that were waited for."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return sum(int(x) for x in fields[11:15]) / ticks


def call(method, url, body=None, key=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if key:
        request.add_header("X-API-Key", key)
    with urllib.request.urlopen(request, timeout=30) as r:
        return json.loads(r.read() or b"{}")


def wait_ready(url, proc, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{url}: the process exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/health/ready", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit(f"{url} not ready after {timeout}s")


def start(kind, binary, workdir, pg_url):
    port = free_port()
    log = open(os.path.join(workdir, f"{kind}.log"), "wb")
    env = dict(os.environ)
    if kind == "sqlite":
        cmd = [binary, "dev", "--data-dir", os.path.join(workdir, "data"), "--s3-address", f"127.0.0.1:{free_port()}",
               "--api-address", f"127.0.0.1:{port}", "--log-level", "warning"] + QUOTA
        env["CLOUD_ROOT_ACCESS_KEY"] = "benchroot"
        env["CLOUD_ROOT_SECRET_KEY"] = "benchroot-secret"
    else:
        name = "bench_" + uuid.uuid4().hex[:8]
        subprocess.run(["psql", "-X", "-q", pg_url, "-c", f"CREATE DATABASE {name}"], check=True)
        parts = urllib.parse.urlsplit(pg_url)
        env["CLOUD_DATABASE_URL"] = urllib.parse.urlunsplit(parts._replace(path="/" + name))
        cmd = [binary, "server", "--api-address", f"127.0.0.1:{port}", "--log-level", "warning"] + QUOTA
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, proc)
    return proc, url


def wrk(url, method, path, key, body, connections, duration):
    env = dict(os.environ, API_METHOD=method, API_PATH=path, API_KEY=key or "", API_BODY=body or "",
               API_RUN=uuid.uuid4().hex[:8])
    out = subprocess.run(["wrk", "-t", "2", "-c", str(connections), "-d", f"{duration}s", "--timeout", "10s",
                          "-s", LUA, url], env=env, capture_output=True, text=True, check=True).stdout
    line = next(l for l in out.splitlines() if l.startswith("BENCHJSON "))
    result = json.loads(line[len("BENCHJSON "):])
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cloud-bin", default=os.path.join(os.path.dirname(HERE), ".build", "release", "cloud"))
    parser.add_argument("--duration", type=int, default=10, help="seconds per call and database")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--databases", default="sqlite,postgres")
    parser.add_argument("--out", help="also write the markdown table to this file")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (apt-get install wrk)")
    pg_url = os.environ.get("CLOUD_TEST_POSTGRES_URL")
    databases = args.databases.split(",")
    if "postgres" in databases and not pg_url:
        sys.exit("no PostgreSQL: run under scripts/with-postgres.sh (or set CLOUD_TEST_POSTGRES_URL)")

    calls = [
        ("GET /health/live", "GET", "/health/live", False, None),
        ("GET /auth/me", "GET", "/auth/me", True, None),
        ("GET /rbac/roles", "GET", "/rbac/roles", True, None),
        ("POST /rbac/roles", "POST", "/rbac/roles", True, '{"name": "r%n", "permissions": ["instance:read"]}'),
        ("POST /auth/keys", "POST", "/auth/keys", True, '{"name": "k%n"}'),
    ]
    results = {}
    workdir = tempfile.mkdtemp(prefix="cloud-control-bench-")
    try:
        for database in databases:
            proc, url = start(database, args.cloud_bin, workdir, pg_url)
            try:
                email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
                call("POST", url + "/auth/register", {"email": email, "name": "Bench", "password": PASSWORD})
                key = call("POST", url + "/auth/login", {"email": email, "password": PASSWORD})["api_key"]
                for name, method, path, needs_key, body in calls:
                    # A short warm-up, then the measured run.
                    wrk(url, method, path, key if needs_key else None, body, args.connections, 2)
                    results[(database, name)] = r = wrk(url, method, path, key if needs_key else None, body,
                                                         args.connections, args.duration)
                    print(f"{database:8} {name:18} {r['rps']:9.0f} req/s  p50 {r['p50']/1000:6.2f} ms  "
                          f"p95 {r['p95']/1000:6.2f} ms  p99 {r['p99']/1000:6.2f} ms  non-2xx {r['non2xx']}  "
                          f"errors {r['connect_errors'] + r['read_errors'] + r['write_errors'] + r['timeouts']}",
                          flush=True)
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    lines = [f"wrk -t 2 -c {args.connections} -d {args.duration}s per row, one process on loopback; "
             f"{platform.node()}, {os.cpu_count()} cores; binary {args.cloud_bin}", "",
             "| database | call | req/s | × /health/live | p50 ms | p95 ms | p99 ms | non-2xx |",
             "|---|---|---|---|---|---|---|---|"]
    for (database, name), r in results.items():
        ceiling = results[(database, "GET /health/live")]["rps"]
        lines.append(f"| {database} | {name} | {r['rps']:.0f} | {r['rps'] / ceiling:.2f} | {r['p50']/1000:.2f} | "
                     f"{r['p95']/1000:.2f} | {r['p99']/1000:.2f} | {r['non2xx']} |")
    report = "\n".join(lines)
    print("\n" + report)
    if args.out:
        with open(args.out, "w") as f:
            f.write(report + "\n")
    bad = sum(r["non2xx"] for r in results.values())
    if bad:
        sys.exit(f"{bad} responses were not 2xx")


if __name__ == "__main__":
    main()
