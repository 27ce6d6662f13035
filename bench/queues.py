#!/usr/bin/env python3
"""Queue benchmark: The Cloud's SQS endpoint on SQLite (`cloud dev`) and on PostgreSQL (`cloud server`)
beside moto's SQS server (PyPI `moto[server]`), all driven by the same unmodified boto3 clients in the
same run.

Rows:
- cycle 1: each worker process loops send_message, receive_message (1, no wait), delete_message on
  one shared standard queue; messages/s = messages deleted per second, all workers together.
- cycle 10: the same with batches of 10 (send_message_batch, receive_message 10, delete_message_batch).
- long poll: a receiver waits (WaitTimeSeconds=20) on an empty queue; the time from just before a
  send to the receive's answer, repeated; p50 and p99.

Every target runs on the same machine as the load (2 CPUs here); the server's CPU use per row is
shown. Run under scripts/with-postgres.sh for the PostgreSQL target:

  scripts/with-postgres.sh python3 bench/queues.py --cloud-bin .build/release/cloud --duration 10 --out /tmp/queues.md
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import uuid

from control import PASSWORD, call, cpu_seconds, free_port  # bench/control.py: the same helpers
ROOT = ("benchroot", "benchroot-secret-key-0123456789")


def wait_http(url, proc, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{url}: the process exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.1)
    sys.exit(f"{url} not answering after {timeout}s")


def machine_busy_seconds():
    """CPU seconds all CPUs spent not idle (user, nice, system, irq, softirq, steal) since boot."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


class Target:
    def __init__(self, name, proc, endpoint, key, secret, version):
        self.name, self.proc, self.endpoint, self.key, self.secret, self.version = name, proc, endpoint, key, secret, version


def start_ours(kind, binary, workdir, pg_url, dev):
    """`cloud dev` (kind sqlite) or `cloud server` on a fresh PostgreSQL database whose storage is `dev`'s node."""
    port = free_port()
    log = open(os.path.join(workdir, f"{kind}.log"), "wb")
    env = dict(os.environ, CLOUD_ROOT_ACCESS_KEY=ROOT[0], CLOUD_ROOT_SECRET_KEY=ROOT[1])
    if kind == "sqlite":
        s3 = free_port()
        cmd = [binary, "dev", "--data-dir", os.path.join(workdir, "data"), "--s3-address", f"127.0.0.1:{s3}",
               "--api-address", f"127.0.0.1:{port}", "--log-level", "warning"]
    else:
        name = "qbench_" + uuid.uuid4().hex[:8]
        subprocess.run(["psql", "-X", "-q", pg_url, "-c", f"CREATE DATABASE {name}"], check=True)
        parts = urllib.parse.urlsplit(pg_url)
        env["CLOUD_DATABASE_URL"] = urllib.parse.urlunsplit(parts._replace(path="/" + name))
        env["CLOUD_STORAGE_ACCESS_KEY"], env["CLOUD_STORAGE_SECRET_KEY"] = ROOT
        cmd = [binary, "server", "--api-address", f"127.0.0.1:{port}", "--log-level", "warning",
               "--storage-endpoint", dev.s3, "--master-key-file", os.path.join(workdir, "master.key")]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/health/ready", proc)
    email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
    call("POST", url + "/auth/register", {"email": email, "name": "Bench", "password": PASSWORD})
    api_key = call("POST", url + "/auth/login", {"email": email, "password": PASSWORD})["api_key"]
    k = call("POST", url + "/storage/keys", {"name": "bench"}, api_key)
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip()
    target = Target(f"The Cloud ({'SQLite' if kind == 'sqlite' else 'PostgreSQL'})", proc, url + "/sqs",
                    k["access_key_id"], k["secret_access_key"], version)
    if kind == "sqlite":
        target.s3 = f"http://127.0.0.1:{s3}"
    return target


def start_moto(workdir):
    port = free_port()
    log = open(os.path.join(workdir, "moto.log"), "wb")
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/moto-api/", proc)
    import moto
    return Target("moto", proc, url, "testing", "testing", f"moto {moto.__version__}")


def client(endpoint, key, secret):
    import boto3
    from botocore.config import Config
    return boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=key,
                        aws_secret_access_key=secret, config=Config(retries={"max_attempts": 1}, read_timeout=60,
                                                                    max_pool_connections=4))


def worker(endpoint, key, secret, url, batch, seconds, start_at, out):
    sqs = client(endpoint, key, secret)
    done = errors = 0
    while time.time() < start_at:
        time.sleep(0.001)
    end = start_at + seconds
    while time.time() < end:
        try:
            if batch == 1:
                sqs.send_message(QueueUrl=url, MessageBody="x" * 100)
                got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1).get("Messages", [])
                for m in got:
                    sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
            else:
                sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": "x" * 100} for i in range(batch)])
                got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=batch).get("Messages", [])
                if got:
                    r = sqs.delete_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                                                                         for i, m in enumerate(got)])
                    errors += len(r.get("Failed", []))
            done += len(got)
        except Exception:  # counted and reported in the table, never hidden
            errors += 1
    out.put((done, errors))


def cycle(target, batch, workers, seconds):
    sqs = client(target.endpoint, target.key, target.secret)
    url = sqs.create_queue(QueueName=f"cycle{batch}-{uuid.uuid4().hex[:6]}")["QueueUrl"]
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    start_at = time.time() + 3  # the workers import boto3 first
    procs = [ctx.Process(target=worker, args=(target.endpoint, target.key, target.secret, url, batch, seconds, start_at, out))
             for _ in range(workers)]
    for p in procs:
        p.start()
    while time.time() < start_at:
        time.sleep(0.01)
    cpu0, busy0 = cpu_seconds(target.proc.pid), machine_busy_seconds()
    results = [out.get(timeout=seconds + 120) for _ in procs]
    cpu1, busy1 = cpu_seconds(target.proc.pid), machine_busy_seconds()
    for p in procs:
        p.join(30)
    done = sum(r[0] for r in results)
    return {"rate": done / seconds, "errors": sum(r[1] for r in results), "cpu": 100 * (cpu1 - cpu0) / seconds,
            "others": 100 * ((busy1 - busy0) - (cpu1 - cpu0)) / seconds}


def long_poll(target, samples):
    sqs = client(target.endpoint, target.key, target.secret)
    receiver = client(target.endpoint, target.key, target.secret)
    url = sqs.create_queue(QueueName=f"poll-{uuid.uuid4().hex[:6]}")["QueueUrl"]
    answered = []
    stop = threading.Event()
    ready = threading.Event()

    def receive():
        while not stop.is_set():
            ready.set()
            for m in receiver.receive_message(QueueUrl=url, WaitTimeSeconds=20).get("Messages", []):
                answered.append(time.monotonic())
                receiver.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])

    thread = threading.Thread(target=receive, daemon=True)
    thread.start()
    latencies = []
    for i in range(samples):
        ready.wait(30)
        ready.clear()
        time.sleep(0.2)  # the scenario: the receive has been waiting a moment when the message arrives
        before = len(answered)
        sent = time.monotonic()
        sqs.send_message(QueueUrl=url, MessageBody=str(i))
        deadline = time.monotonic() + 30
        while len(answered) == before and time.monotonic() < deadline:
            time.sleep(0.0005)
        if len(answered) == before:
            sys.exit(f"{target.name}: a long-poll receive did not answer within 30 s of a send")
        latencies.append((answered[-1] - sent) * 1000)
    stop.set()
    sqs.send_message(QueueUrl=url, MessageBody="stop")
    thread.join(30)
    latencies.sort()
    return {"p50": statistics.median(latencies), "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    here = os.path.dirname(os.path.abspath(__file__))
    parser.add_argument("--cloud-bin", default=os.path.join(os.path.dirname(here), ".build", "release", "cloud"))
    parser.add_argument("--duration", type=int, default=10, help="seconds per cycle row")
    parser.add_argument("--workers", type=int, default=8, help="client processes per cycle row")
    parser.add_argument("--samples", type=int, default=100, help="long-poll samples")
    parser.add_argument("--targets", default="sqlite,postgres,moto")
    parser.add_argument("--out", help="also write the markdown section to this file")
    args = parser.parse_args()
    pg_url = os.environ.get("CLOUD_TEST_POSTGRES_URL")
    names = args.targets.split(",")
    if "postgres" in names and not pg_url:
        sys.exit("no PostgreSQL: run under scripts/with-postgres.sh (or set CLOUD_TEST_POSTGRES_URL)")
    workdir = tempfile.mkdtemp(prefix="cloud-queues-bench-")
    targets = []
    started = time.time()
    try:
        dev = start_ours("sqlite", args.cloud_bin, workdir, pg_url, None)
        targets.append(("sqlite", dev))
        if "postgres" in names:
            targets.append(("postgres", start_ours("postgres", args.cloud_bin, workdir, pg_url, dev)))
        if "moto" in names:
            targets.append(("moto", start_moto(workdir)))
        targets = [(n, t) for n, t in targets if n in names]
        rows = {}
        for name, target in targets:
            for batch in (1, 10):
                rows[(name, f"cycle {batch}")] = r = cycle(target, batch, args.workers, args.duration)
                print(f"{target.name:26} cycle {batch:2}: {r['rate']:8.0f} msg/s  server CPU {r['cpu']:5.0f}%  "
                      f"clients and the rest {r['others']:5.0f}%  errors {r['errors']}",
                      flush=True)
            rows[(name, "long poll")] = r = long_poll(target, args.samples)
            print(f"{target.name:26} long poll: p50 {r['p50']:.2f} ms  p99 {r['p99']:.2f} ms", flush=True)
    finally:
        for _, target in targets:
            target.proc.send_signal(signal.SIGTERM)
        for _, target in targets:
            try:
                target.proc.wait(20)
            except subprocess.TimeoutExpired:
                target.proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)

    import boto3
    lines = [
        f"## Queues: the SQS endpoint beside moto ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})",
        "",
        f"- Machine: {os.cpu_count()} CPUs, {platform.platform()}; servers and the load share the machine",
        f"- Command: `{' '.join(['python3', 'bench/queues.py'] + sys.argv[1:])}` (took {(time.time() - started) / 60:.1f} min)",
        f"- Load: {args.workers} client processes with boto3 {boto3.__version__} for {args.duration} s per cycle row, one shared "
        "standard queue, 100-byte bodies; long poll: {args.samples} sends to a receiver waiting with WaitTimeSeconds=20".replace("{args.samples}", str(args.samples)),
        "- Targets: " + "; ".join(f"{t.name}: {t.version}" for _, t in targets),
        "- Durability: The Cloud on SQLite commits each call's transaction to the WAL with synchronous=FULL (fsynced); on "
        "PostgreSQL each call commits (the test PostgreSQL runs with fsync=off, as scripts/with-postgres.sh starts it); "
        "moto keeps messages in the memory of its one process only",
        f"- CPU: % of one CPU over the row ({os.cpu_count()} CPUs = {os.cpu_count() * 100}%); 'clients' is every other process "
        "(the boto3 workers, PostgreSQL for that target): where server + clients is near the machine's total, the shared "
        "machine, not the server, is the limit",
        "",
        "| Row | " + " | ".join(t.name for _, t in targets) + " | " + " | ".join(f"{t.name} / moto" for n, t in targets if n != "moto" and "moto" in names) + " |",
        "|---|" + "---|" * (len(targets) + sum(1 for n, _ in targets if n != "moto" and "moto" in names)),
    ]
    for row in ("cycle 1", "cycle 10"):
        cells = [f"{rows[(n, row)]['rate']:,.0f} msg/s (server CPU {rows[(n, row)]['cpu']:.0f}%, clients {rows[(n, row)]['others']:.0f}%, "
                 f"errors {rows[(n, row)]['errors']})" for n, _ in targets]
        ratios = [f"{rows[(n, row)]['rate'] / rows[('moto', row)]['rate']:.2f}" for n, _ in targets if n != "moto" and "moto" in names]
        lines.append(f"| send+receive+delete, {row.split()[1]} per call | " + " | ".join(cells + ratios) + " |")
    cells = [f"p50 {rows[(n, 'long poll')]['p50']:.1f} ms, p99 {rows[(n, 'long poll')]['p99']:.1f} ms" for n, _ in targets]
    ratios = [f"{rows[(n, 'long poll')]['p50'] / rows[('moto', 'long poll')]['p50']:.2f} (p50)" for n, _ in targets if n != "moto" and "moto" in names]
    lines.append("| long poll: send → receive answered | " + " | ".join(cells + ratios) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "a") as f:
            f.write("\n" + text)


if __name__ == "__main__":
    main()
