#!/usr/bin/env python3
"""Foreground latency while the cluster repairs, and how fast it repairs.

Starts three `cloud node` processes (tests/integration/clustertest.py: 127.0.0.10-12, zones 0-2,
`--gossip-profile local --no-fsync`), loads `--data-mib` MiB of 1 MiB objects, then measures the
latency of 4 KiB GETs from `--readers` client threads in three phases of one run:

  idle       nothing else happens (the baseline)
  rebalance  a fourth node joins (zone 0, so it takes half of zone 0's partitions) and the cluster
             moves its share, at `--repair-rate-mib` (the default 64, and 0 = unlimited in a second
             cluster); the phase lasts until every node reports nothing to move and nothing out of sync

and reports, per rate, p50/p99 during rebalance divided by p50/p99 idle (ratios, same run), the
bytes moved, the time it took and the MiB/s. Results go to stdout and, with --out, as markdown.

    python3 bench/repair.py --cloud-bin .build/release/cloud --data-mib 512 --out /tmp/repair.md
"""
import argparse
import datetime as dt
import os
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "integration"))


def metrics(node):
    text = urllib.request.urlopen(f"{node.endpoint}/metrics", timeout=5).read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            try:
                values[name] = float(value)
            except ValueError:
                pass
    return values


def settled(nodes, since_rounds):
    values = [metrics(n) for n in nodes]
    return all(
        v.get("cloud_repair_rounds_total", 0) >= since_rounds.get(n.name, 0) + 2
        and v.get("cloud_partitions_out_of_sync", 1) == 0
        and v.get("cloud_rebalance_partitions_pending", 1) == 0
        for n, v in zip(nodes, values))


class Readers:
    """Threads that GET small objects in a loop and record each latency with its phase."""

    def __init__(self, nodes, bucket, keys, count):
        self.nodes, self.bucket, self.keys = nodes, bucket, keys
        self.phase = "idle"
        self.samples = {}
        self.errors = 0
        self.stop = False
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True) for i in range(count)]

    def run(self, index):
        client = self.nodes[index % len(self.nodes)].client()
        i = index
        while not self.stop:
            key = self.keys[i % len(self.keys)]
            i += 1
            started = time.perf_counter()
            try:
                client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            except Exception:
                with self.lock:
                    self.errors += 1
                continue
            elapsed = time.perf_counter() - started
            with self.lock:
                self.samples.setdefault(self.phase, []).append(elapsed)

    def start(self):
        for t in self.threads:
            t.start()

    def finish(self):
        self.stop = True
        for t in self.threads:
            t.join(30)


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def one_run(args, rate, base):
    from cloudtest import new_credentials, payload
    from clustertest import Cluster

    ak, sk = new_credentials()
    extra = ["--repair-interval", "1", "--repair-rate-mib", str(rate)]
    cluster = Cluster(base, 4, ak, sk, extra=extra)
    try:
        a, b, c, d = cluster.nodes
        cluster.start_first(3)
        client = a.client()
        client.create_bucket(Bucket="bench")
        body = payload(1 << 20, seed="bulk")
        for i in range(args.data_mib):
            # Distinct contents: a per-object prefix changes every block's hash.
            client.put_object(Bucket="bench", Key=f"bulk/{i:06d}", Body=f"{i:08d}".encode() + body[8:])
        small = [f"small/{i:03d}" for i in range(64)]
        for key in small:
            client.put_object(Bucket="bench", Key=key, Body=payload(4096, seed=key))

        readers = Readers([a, b, c], "bench", small, args.readers)
        readers.start()
        time.sleep(args.idle_seconds)
        rounds = {n.name: metrics(n).get("cloud_repair_rounds_total", 0) for n in (a, b, c)}
        moved_before = sum(metrics(n).get("cloud_repair_bytes_total", 0) for n in (a, b, c))
        readers.phase = "rebalance"
        started = time.time()
        d.start(join=[b.gossip])
        rounds[d.name] = 0
        deadline = started + args.timeout
        while not settled(cluster.nodes, rounds):
            if time.time() > deadline:
                raise SystemExit(f"rebalancing at {rate} MiB/s did not finish in {args.timeout}s")
            time.sleep(0.5)
        took = time.time() - started
        readers.phase = "after"
        readers.finish()
        moved = sum(metrics(n).get("cloud_repair_bytes_total", 0) for n in cluster.nodes) - moved_before
        received = sum(p.stat().st_size for p in (Path(d.data_dir) / "blocks").glob("*/*") if p.is_file())
        idle, busy = readers.samples.get("idle", []), readers.samples.get("rebalance", [])
        return {
            "rate": rate, "moved": moved, "received": received, "seconds": took, "errors": readers.errors,
            "idle": (len(idle), percentile(idle, 0.5), percentile(idle, 0.99)),
            "rebalance": (len(busy), percentile(busy, 0.5), percentile(busy, 0.99)),
        }
    finally:
        cluster.shutdown()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cloud-bin", default=str(HERE.parent / ".build" / "release" / "cloud"))
    parser.add_argument("--data-mib", type=int, default=512, help="MiB of 1 MiB objects loaded first")
    parser.add_argument("--readers", type=int, default=4)
    parser.add_argument("--idle-seconds", type=float, default=10)
    parser.add_argument("--rates", default="64,0", help="comma list of --repair-rate-mib values (0 = unlimited)")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--out", help="append a markdown section to this file")
    args = parser.parse_args()
    os.environ["CLOUD_BIN"] = args.cloud_bin

    results = []
    for rate in [int(r) for r in args.rates.split(",")]:
        with tempfile.TemporaryDirectory(prefix="repair-bench-") as base:
            result = one_run(args, rate, base)
        results.append(result)
        print(result, flush=True)

    lines = [
        f"### Latency while a fourth node takes its share ({dt.date.today().isoformat()})",
        "",
        f"`python3 bench/repair.py --data-mib {args.data_mib} --readers {args.readers} --rates {args.rates}` "
        f"({os.cpu_count()} CPUs; binary {args.cloud_bin}). Three nodes with {args.data_mib} MiB of 1 MiB objects, "
        f"{args.readers} threads GET 4 KiB objects through the three old nodes; p50/p99 during the rebalance "
        "divided by p50/p99 in the idle phase before it, in the same run. \"took\" runs from the fourth "
        "node's start until every node reports nothing to move and nothing out of sync.",
        "",
        "| repair rate | moved (all nodes) | new node holds | took | repair MiB/s | GETs idle / during | p50 idle → during (ratio) | p99 idle → during (ratio) | errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        (ni, p50i, p99i), (nb, p50b, p99b) = r["idle"], r["rebalance"]
        rate = f"{r['rate']} MiB/s" if r["rate"] else "unlimited"
        lines.append(
            f"| {rate} | {r['moved'] / 2**20:.0f} MiB | {r['received'] / 2**20:.0f} MiB | {r['seconds']:.1f} s | {r['moved'] / 2**20 / r['seconds']:.1f} | "
            f"{ni} / {nb} | {p50i * 1000:.1f} → {p50b * 1000:.1f} ms ({p50b / p50i:.2f}×) | "
            f"{p99i * 1000:.1f} → {p99b * 1000:.1f} ms ({p99b / p99i:.2f}×) | {r['errors']} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "a") as f:
            f.write("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
