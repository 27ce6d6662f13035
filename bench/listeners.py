#!/usr/bin/env python3
"""The control API behind two HTTP listeners: ours (APIServer on HTTPServing/SwiftNIO) and Hummingbird 2.

bench/listeners is a separate Swift package (so `make build` never pays for Hummingbird) whose one
executable hosts the same ControlAPI, with the core routes on SQLite, behind either listener: both
hand the same APIRequest to the same ControlAPI.handle, so what differs is the listener alone.
Each listener runs in its own process, one at a time, driven by wrk on loopback (2 threads,
--connections) through GET /health/live (no database: the listener's own ceiling), GET /auth/me
(key check, grants, user and tenants read from SQLite) and POST /rbac/roles (a write). The rounds
alternate the listeners (ours, hummingbird, ours, …) so drift on the machine hits both; the table
shows the median of the rounds, the ratio hummingbird / ours, and the server's CPU seconds per
10 000 requests. Then the metrics micro-benchmark: nanoseconds to record one request in our
RequestMetrics versus a swift-prometheus registry, and whether both count the same total.

  (cd bench/listeners && swift build -c release)
  python3 bench/listeners.py --duration 10 --rounds 3
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile

from control import PASSWORD, call, cpu_seconds, free_port, wait_ready, wrk  # bench/control.py: the same helpers

HERE = os.path.dirname(os.path.abspath(__file__))
BINARY = os.path.join(HERE, "listeners", ".build", "release", "ListenerBench")
CALLS = [
    ("GET /health/live", "GET", "/health/live", False, None),
    ("GET /auth/me", "GET", "/auth/me", True, None),
    ("POST /rbac/roles", "POST", "/rbac/roles", True, '{"name": "r%n", "permissions": ["instance:read"]}'),
]


def run_listener(listener, workdir, round_index, args):
    port = free_port()
    database = os.path.join(workdir, f"{listener}-{round_index}.sqlite")
    log = open(os.path.join(workdir, f"{listener}-{round_index}.log"), "wb")
    proc = subprocess.Popen([args.binary, "serve", listener, f"127.0.0.1:{port}", database],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    results = {}
    try:
        wait_ready(url, proc)
        email = f"bench-{round_index}-{listener}@example.com"
        call("POST", url + "/auth/register", {"email": email, "name": "Bench", "password": PASSWORD})
        key = call("POST", url + "/auth/login", {"email": email, "password": PASSWORD})["api_key"]
        for name, method, path, needs_key, body in CALLS:
            wrk(url, method, path, key if needs_key else None, body, args.connections, 2)  # warm-up
            before = cpu_seconds(proc.pid)
            r = wrk(url, method, path, key if needs_key else None, body, args.connections, args.duration)
            r["cpu_per_10k"] = (cpu_seconds(proc.pid) - before) / r["requests"] * 10_000
            results[name] = r
            print(f"round {round_index} {listener:12} {name:18} {r['rps']:9.0f} req/s  p50 {r['p50']/1000:6.2f} ms  "
                  f"p99 {r['p99']/1000:6.2f} ms  cpu/10k {r['cpu_per_10k']:.2f} s  non-2xx {r['non2xx']}", flush=True)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=BINARY)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--out", help="also write the markdown tables to this file")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (apt-get install wrk)")
    if not os.path.exists(args.binary):
        sys.exit(f"{args.binary} is missing: (cd bench/listeners && swift build -c release)")

    rounds = {"ours": [], "hummingbird": []}
    workdir = tempfile.mkdtemp(prefix="cloud-listener-bench-")
    try:
        for index in range(args.rounds):
            for listener in ("ours", "hummingbird"):
                rounds[listener].append(run_listener(listener, workdir, index, args))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    def median(listener, name, field):
        return statistics.median(r[name][field] for r in rounds[listener])

    lines = [f"wrk -t 2 -c {args.connections} -d {args.duration}s per row, {args.rounds} alternating rounds (median), "
             f"one process on loopback, core routes on SQLite; {platform.node()}, {os.cpu_count()} cores", "",
             "| call | ours req/s | Hummingbird req/s | Hummingbird / ours | ours p99 ms | Hummingbird p99 ms "
             "| ours CPU s / 10k | Hummingbird CPU s / 10k |",
             "|---|---|---|---|---|---|---|---|"]
    for name, *_ in CALLS:
        ours, hb = median("ours", name, "rps"), median("hummingbird", name, "rps")
        lines.append(f"| {name} | {ours:.0f} | {hb:.0f} | {hb / ours:.2f} | {median('ours', name, 'p99')/1000:.2f} | "
                     f"{median('hummingbird', name, 'p99')/1000:.2f} | {median('ours', name, 'cpu_per_10k'):.2f} | "
                     f"{median('hummingbird', name, 'cpu_per_10k'):.2f} |")

    out = subprocess.run([args.binary, "metrics", "2000000"], capture_output=True, text=True, check=True).stdout
    m = json.loads(next(l for l in out.splitlines() if l.startswith("BENCHJSON "))[len("BENCHJSON "):])
    lines += ["", f"Recording one request (counter by operation and status + latency histogram by operation), "
              f"{m['count']} records over 20 operations × 3 statuses, one thread:", "",
              "| metrics | ns per record | requests counted | exposition bytes |", "|---|---|---|---|",
              f"| ours (RequestMetrics) | {m['ours_ns']:.0f} | {m['ours_total']} | {m['ours_bytes']} |",
              f"| swift-prometheus 2.4.1 | {m['prometheus_ns']:.0f} | {m['prometheus_total']} | {m['prometheus_bytes']} |"]
    report = "\n".join(lines)
    print("\n" + report)
    if args.out:
        with open(args.out, "w") as f:
            f.write(report + "\n")
    bad = sum(r[name]["non2xx"] for listener in rounds.values() for r in listener for name, *_ in CALLS)
    if bad:
        sys.exit(f"{bad} responses were not 2xx")
    if m["ours_total"] != m["count"] or m["prometheus_total"] != m["count"]:
        sys.exit("a metrics registry lost requests")


if __name__ == "__main__":
    main()
