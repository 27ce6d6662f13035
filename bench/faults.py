#!/usr/bin/env python3
"""The fault suite: a checker in the spirit of Jepsen for the storage cluster.

    python3 bench/faults.py --nodes 3 --clients 6 --duration 120 \\
        --faults kill,pause,partition,corrupt,layout

Several concurrent boto3 clients write, overwrite, read and delete keys of a
small key space (so keys are overwritten) with unique values (the op id is in
the first bytes; tiny inline values, one-block values and values of several
1 MiB blocks) through different nodes, and list the buckets now and then.
Every operation is recorded: start and end (monotonic), node, outcome
(`ok`; `fail`, definite: a 4xx answer or a connection that was never made;
`indet`, indeterminate: a 5xx answer, a timeout or a connection lost after
the request was sent) and the value's digests.

Meanwhile a nemesis injects faults one at a time, each healed before the
next: `kill` (kill -9 of a node, restart), `pause` (SIGSTOP, SIGCONT),
`partition` (one node cut off from the others; every node runs in its own
network namespace on a bridge the suite creates, as in
tests/integration/test_cluster_partition.py; needs root, otherwise skipped
with a message), `corrupt` (one block file of a live value overwritten in
the middle, another deleted, never two copies of one block), and `layout`
(a node removed from the layout with `cloud storage layout remove -y` and
added back).

After the faults stop and repair completes (every node's /metrics shows
cloud_hints_pending, cloud_partitions_out_of_sync and
cloud_rebalance_partitions_pending at 0; a metric a node does not export
counts as 0), the checker verifies:

1. Acknowledged writes. Every key is read through every node. The final value
   of a key must be explained by a write (or, for "absent", a delete) that
   was acknowledged or indeterminate, and not *definitely before* any
   acknowledged write or delete of that key. X is definitely before Y when X
   ended before Y started (X.end + margin < Y.start, margin = the 1 ms
   resolution of the coordinators' hybrid timestamps plus slack; all nodes
   share this machine's clock); an indeterminate op without an answer (a
   timeout) has no end (its coordinator may still apply it). An acknowledged
   write that is not the final value and that the explanation does not
   come after is LOST. Every read during the run (and at the end) must
   return bytes some op wrote to that key, and listings must show only
   written keys with the ETag and size of a written value; the final
   listings through every node must agree with the final reads.
2. Replicas. With N equal to the node count every node holds every
   partition: all nodes are stopped, then each is started alone with
   `--read-quorum 1 --write-quorum 1` and every key is read through it and
   compared with the final state.
3. Rebalancing. The nodes are started again, a node in a zone of its own is
   added to the layout, and once repair is complete the bytes the cluster
   moved and the new node's block directory are compared with the ideal
   share: the block bytes the old nodes stored / (nodes + 1) (three nodes,
   N=3, the new node in a fourth zone: it should own 3/4 of the partitions,
   a quarter of all replicas). Moved = cloud_repair_bytes_total summed over
   nodes (every transfer, pushes and pulls, counted once by the node that
   made it); cloud_rebalance_bytes_sent_total (the part that old owners
   handed over) is reported beside it. Moved/ideal must be within 0.5-1.5
   and the new node must hold at least half its share.

It prints a summary and exits 1 when a safety check failed (lost writes, bad
reads, listings that disagree), 2 when only a repair check failed
(replicas, repair timeout, rebalancing), 0 when everything held.
"""
import argparse
import concurrent.futures
import contextlib
import dataclasses
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

import botocore.exceptions  # noqa: E402

from cloudtest import CLOUD_BIN, new_credentials  # noqa: E402
from clustertest import Cluster, ClusterNode  # noqa: E402

MiB = 1024 * 1024
BLOCK = MiB            # a PUT body is cut into 1 MiB blocks
INLINE_MAX = 16 * 1024  # objects up to 16 KiB stay inline in their record
ALL_FAULTS = ("kill", "pause", "partition", "corrupt", "layout")
REPAIR_METRICS = ("cloud_hints_pending", "cloud_partitions_out_of_sync",
                  "cloud_rebalance_partitions_pending")
REBALANCE_SENT = "cloud_rebalance_bytes_sent_total"
# Every record and block that repair or a handover moved, counted once by
# the node that started the transfer (pushes and pulls alike).
REPAIR_BYTES = "cloud_repair_bytes_total"
REPAIR_ROUNDS = "cloud_repair_rounds_total"
SCRUB_PASSES = "cloud_scrub_passes_total"
GC_RUNS = "cloud_gc_runs_total"
INF = float("inf")
# Clients of the checker's own reads (the load's clients are 0, 1, ...).
FINAL, LONE, JOINED, SETUP = -1, -2, -3, -4


@dataclasses.dataclass
class Options:
    nodes: int = 3
    clients: int = 6
    duration: float = 120.0
    faults: tuple = ALL_FAULTS
    keys: int = 24
    cold_keys: int = 4                # written once, then only read
    buckets: int = 3
    large_max: int = int(2.5 * MiB)   # largest value (several blocks)
    fault_hold: float = 8.0           # seconds a node stays killed/paused/out
    partition_hold: float = 15.0      # seconds a partition lasts
    fault_gap: float = 4.0            # seconds of calm between faults
    warmup: float = 5.0               # seconds of load before the first fault
    repair_timeout: float = 180.0
    repair_interval: float = 2.0      # --repair-interval, when the node has it
    gc_grace: float = 30.0            # --gc-grace, when the node has it
    gc_interval: float = 5.0          # --gc-interval, when the node has it
    scrub_interval: float = 2.0       # --scrub-interval, when the node has it
    clock_margin: float = 0.005
    # Long enough for a coordinator to answer after its own deadlines, so
    # that few ops end without an answer.
    request_timeout: float = 60.0
    settle: float = 5.0               # seconds between final read passes
    final_passes: int = 5
    seed: int = None
    work_dir: str = None
    keep: bool = False
    out: str = None
    history: str = None
    checks: tuple = ("replicas", "rebalance")
    node_args: tuple = ()             # more `cloud node` flags, every node
    log = print


# --------------------------------------------------------------------------
# the history
# --------------------------------------------------------------------------

@dataclasses.dataclass
class Op:
    id: int
    client: int
    kind: str            # put, get, delete, list
    bucket: str
    key: str
    node: str
    start: float
    end: float = None
    outcome: str = None  # ok, fail, indet
    answered: bool = True  # an HTTP answer came back (end is then real)
    size: int = None
    sha: str = None      # put: the value written; get: the value read
    md5: str = None
    blocks: tuple = ()   # put: SHA-256 of each 1 MiB block (values > 16 KiB)
    absent: bool = False  # get: 404
    listing: dict = None  # list: {key: (etag, size)}
    error: str = None

    @property
    def effective_end(self):
        """When the op may have taken effect at the latest."""
        return self.end if self.answered else INF

    def row(self):
        d = dataclasses.asdict(self)
        if d["listing"] is not None:
            d["listing"] = {k: list(v) for k, v in d["listing"].items()}
        return d


class History:
    def __init__(self):
        self.ops = []
        self.lock = threading.Lock()
        self.next_id = 0

    def new(self, **kw):
        with self.lock:
            op = Op(id=self.next_id, start=time.monotonic(), **kw)
            self.next_id += 1
            self.ops.append(op)
            return op


def classify(op, exc):
    """Fills op.outcome/answered/error from an exception of a boto3 call."""
    op.end = time.monotonic()
    op.error = f"{type(exc).__name__}: {str(exc)[:200]}"
    if isinstance(exc, botocore.exceptions.ClientError):
        status = exc.response.get("ResponseMetadata", {}).get(
            "HTTPStatusCode", 0)
        op.error = f"{status} {exc.response.get('Error', {}).get('Code')}"
        op.outcome = "fail" if 400 <= status < 500 else "indet"
        op.answered = True
    elif isinstance(exc, (botocore.exceptions.EndpointConnectionError,
                          botocore.exceptions.ConnectTimeoutError)):
        # No connection, so no request: nothing can have happened.
        op.outcome = "fail"
        op.answered = True
    else:
        # Read timeout, connection reset or closed after the request went
        # out: the coordinator may still apply it, at any later time.
        op.outcome = "indet"
        op.answered = False


def make_value(run_tag, op_id, size, rng):
    head = f"faults/{run_tag}/op{op_id}/".encode()
    if size <= len(head):
        size = len(head) + 1
    return head + rng.randbytes(size - len(head))


def digests(body):
    blocks = ()
    if len(body) > INLINE_MAX:
        blocks = tuple(hashlib.sha256(body[i:i + BLOCK]).hexdigest()
                       for i in range(0, len(body), BLOCK))
    return (hashlib.sha256(body).hexdigest(), hashlib.md5(body).hexdigest(),
            blocks)


# --------------------------------------------------------------------------
# the clients
# --------------------------------------------------------------------------

class Workload:
    def __init__(self, opts, nodes, history, run_tag, rng):
        self.opts = opts
        self.nodes = nodes            # the nodes clients talk to
        self.history = history
        self.run_tag = run_tag
        hot = [f"faults-{i}" for i in range(opts.buckets)]
        # The hot keys are written, overwritten, read and deleted; the cold
        # ones are written once before the faults and then only read, so a
        # damaged copy of their blocks stays damaged unless repair fixes it.
        self.hot = [(hot[i % opts.buckets], f"k{i:03d}")
                    for i in range(opts.keys)]
        self.cold = [("faults-cold", f"c{i:03d}")
                     for i in range(opts.cold_keys)]
        self.buckets = hot + (["faults-cold"] if self.cold else [])
        self.keys = self.hot + self.cold
        self.stop = threading.Event()
        self.seeds = [rng.randrange(1 << 62) for _ in range(opts.clients)]

    def client_for(self, node):
        return node.client(connect_timeout=3,
                           read_timeout=self.opts.request_timeout,
                           retries={"total_max_attempts": 1})

    def pick_size(self, rng):
        r = rng.random()
        if r < 0.55:
            return rng.randint(1, 4000)                  # inline
        if r < 0.8:
            return rng.randint(INLINE_MAX + 1, 300_000)  # one block
        return rng.randint(BLOCK + 1, self.opts.large_max)  # several blocks

    def run_client(self, index):
        rng = random.Random(self.seeds[index])
        clients = {n.name: self.client_for(n) for n in self.nodes}
        while not self.stop.is_set():
            node = rng.choice(self.nodes)
            c = clients[node.name]
            bucket, key = rng.choice(self.hot)
            r = rng.random()
            if r < 0.45:
                self.put(c, index, node, bucket, key, rng)
            elif r < 0.80:
                self.get(c, index, node, bucket, key)
            elif r < 0.85 and self.cold:
                self.get(c, index, node, *rng.choice(self.cold))
            elif r < 0.95:
                self.delete(c, index, node, bucket, key)
            else:
                self.list(c, index, node, rng.choice(self.buckets))

    def put(self, c, index, node, bucket, key, rng, size=None):
        size = size or self.pick_size(rng)
        op = self.history.new(client=index, kind="put", bucket=bucket,
                              key=key, node=node.name)
        body = make_value(self.run_tag, op.id, size, rng)
        op.size = len(body)
        op.sha, op.md5, op.blocks = digests(body)
        try:
            c.put_object(Bucket=bucket, Key=key, Body=body)
            op.end = time.monotonic()
            op.outcome = "ok"
        except Exception as e:  # noqa: BLE001 - every outcome is recorded
            classify(op, e)
        return op

    def get(self, c, index, node, bucket, key):
        op = self.history.new(client=index, kind="get", bucket=bucket,
                              key=key, node=node.name)
        try:
            body = c.get_object(Bucket=bucket, Key=key)["Body"].read()
            op.end = time.monotonic()
            op.outcome = "ok"
            op.size = len(body)
            op.sha = hashlib.sha256(body).hexdigest()
        except botocore.exceptions.ClientError as e:
            if e.response.get("Error", {}).get("Code") == "NoSuchKey":
                op.end = time.monotonic()
                op.outcome = "ok"
                op.absent = True
            else:
                classify(op, e)
        except Exception as e:  # noqa: BLE001
            classify(op, e)
        return op

    def delete(self, c, index, node, bucket, key):
        op = self.history.new(client=index, kind="delete", bucket=bucket,
                              key=key, node=node.name)
        try:
            c.delete_object(Bucket=bucket, Key=key)
            op.end = time.monotonic()
            op.outcome = "ok"
        except Exception as e:  # noqa: BLE001
            classify(op, e)
        return op

    def list(self, c, index, node, bucket):
        op = self.history.new(client=index, kind="list", bucket=bucket,
                              key="", node=node.name)
        try:
            op.listing = list_bucket(c, bucket)
            op.end = time.monotonic()
            op.outcome = "ok"
        except Exception as e:  # noqa: BLE001
            classify(op, e)


def list_bucket(c, bucket):
    out = {}
    token = None
    while True:
        kw = {"Bucket": bucket, "MaxKeys": 1000}
        if token:
            kw["ContinuationToken"] = token
        page = c.list_objects_v2(**kw)
        for o in page.get("Contents", []):
            out[o["Key"]] = (o["ETag"].strip('"'), o["Size"])
        if not page.get("IsTruncated"):
            return out
        token = page["NextContinuationToken"]


# --------------------------------------------------------------------------
# the network (namespaces), from test_cluster_partition.py
# --------------------------------------------------------------------------

def netns_support():
    """(Net class, None) or (None, reason it cannot be used)."""
    try:
        from test_cluster_partition import Net, netns_unavailable
    except Exception as e:  # noqa: BLE001
        return None, f"cannot import the namespace helpers: {e!r}"
    reason = netns_unavailable()
    return (None, reason) if reason else (Net, None)


# --------------------------------------------------------------------------
# the harness
# --------------------------------------------------------------------------

def node_flags():
    """Flags of `cloud node` this binary has (the lead adds some)."""
    cp = subprocess.run([CLOUD_BIN, "node", "--help"], capture_output=True,
                        text=True, timeout=60)
    return cp.stdout + cp.stderr


def block_files(node):
    root = Path(node.data_dir) / "blocks"
    out = []
    if not root.is_dir():
        return out
    for sub in root.iterdir():
        if sub.is_dir():
            out.extend(p for p in sub.iterdir() if len(p.name) == 64)
    return out


def dir_bytes(node):
    total = 0
    for p in block_files(node):
        with contextlib.suppress(OSError):
            total += p.stat().st_size
    return total


def check_history(ops, keys, buckets, final_views, margin):
    """Check 1 over a history: lost writes, bad reads, listing agreement.

    ops: every Op (the load's and the checker's own reads); keys: the
    (bucket, key) pairs of the key space; final_views: {node name: (reads,
    listings)} from `Suite.read_all` after repair; margin: seconds added to
    an end before it counts as before a start.
    """
    m = margin
    by_key = {}
    for op in ops:
        if op.kind in ("put", "delete"):
            by_key.setdefault((op.bucket, op.key), []).append(op)
    writes_by_sha = {}
    for op in ops:
        if op.kind == "put":
            writes_by_sha[op.sha] = op

    def before(x, y):
        return x.effective_end + m < y.start

    bad_reads = []
    stale_reads = 0
    failed_visible = []
    for op in ops:
        if op.kind != "get" or op.outcome != "ok" or op.absent:
            continue
        w = writes_by_sha.get(op.sha)
        if (w is None or (w.bucket, w.key) != (op.bucket, op.key)
                or w.start > op.end):
            bad_reads.append(op)
        elif w.outcome == "fail":
            failed_visible.append(op)
    # Reads that missed an acknowledged write or delete that finished
    # before they began (R + W > N promises none; counted, not failed).
    for op in ops:
        if op.kind != "get" or op.outcome != "ok" or op.client < 0:
            continue
        if op.absent:
            cands = [o for o in by_key.get((op.bucket, op.key), ())
                     if o.kind == "delete" and o.outcome != "fail"
                     and o.start <= op.end]
            src = max(cands, key=lambda o: o.effective_end,
                      default=None)
        else:
            src = writes_by_sha.get(op.sha)
        for y in by_key.get((op.bucket, op.key), ()):
            if y.outcome == "ok" and y.end + m < op.start and (
                    src is None or before(src, y)):
                stale_reads += 1
                break
    bad_listings = []
    md5s = {}
    for op in ops:
        if op.kind == "put":
            md5s.setdefault((op.bucket, op.key), set()).add(
                (op.md5, op.size))
    for op in ops:
        if op.kind == "list" and op.outcome == "ok":
            for key, (etag, size) in op.listing.items():
                if (etag, size) not in md5s.get((op.bucket, key), set()):
                    bad_listings.append((op.id, op.bucket, key))

    lost = {}        # put op id -> (key, node views it is lost in)
    lost_deletes = {}
    unexplained = []
    disagreements = []
    acked_puts = [op for op in ops
                  if op.kind == "put" and op.outcome == "ok"]
    for k in keys:
        ops = by_key.get(k, [])
        acked = [o for o in ops if o.outcome == "ok"]
        seen = {}
        for node_name, (reads, _) in final_views.items():
            r = reads.get(k)
            if r is None or r.outcome != "ok":
                unexplained.append((node_name, k, "unreadable",
                                    r and r.error))
                continue
            # views named "node#pass" are compared within their pass
            seen.setdefault(node_name.partition("#")[2], {}).setdefault(
                "absent" if r.absent else r.sha, []).append(node_name)
            # the op that explains the final state
            if r.absent:
                cands = [o for o in ops if o.kind == "delete"
                         and o.outcome != "fail"]
                x = (max(cands, key=lambda o: o.effective_end)
                     if cands else None)
                if x is None and not any(o.kind == "put"
                                         for o in acked):
                    continue  # never written: absent from the start
            else:
                x = writes_by_sha.get(r.sha)
                if x is None or (x.bucket, x.key) != k or \
                        x.outcome == "fail":
                    x = None
            if x is None:
                unexplained.append((node_name, k, "no op explains it",
                                    None))
                for y in acked:
                    (lost if y.kind == "put" else lost_deletes) \
                        .setdefault(y.id, set()).add(node_name)
                continue
            for y in acked:
                if y is not x and before(x, y):
                    (lost if y.kind == "put" else lost_deletes) \
                        .setdefault(y.id, set()).add(node_name)
        for values in seen.values():
            if len(values) > 1:
                disagreements.append((k, {v[:12]: n for v, n in
                                          values.items()}))
    # listings agree with reads, through every node
    listing_mismatches = []
    for node_name, (reads, listings) in final_views.items():
        for bucket in buckets:
            listing = listings.get(bucket)
            if listing is None:
                listing_mismatches.append((node_name, bucket,
                                           "listing failed"))
                continue
            for b, key in keys:
                if b != bucket:
                    continue
                r = reads.get((b, key))
                if r is None or r.outcome != "ok":
                    continue
                if r.absent:
                    if key in listing:
                        listing_mismatches.append(
                            (node_name, bucket, key, "listed, reads 404"))
                else:
                    w = writes_by_sha.get(r.sha)
                    want = (w.md5, w.size) if w else None
                    if listing.get(key) != want:
                        listing_mismatches.append(
                            (node_name, bucket, key,
                             f"listed {listing.get(key)}, read {want}"))
            extra = set(listing) - {key for b, key in keys if b == bucket}
            for key in extra:
                listing_mismatches.append((node_name, bucket, key,
                                           "listed, never written"))
    return {
        "acknowledged_writes": len(acked_puts),
        "lost_writes": len(lost),
        "lost_write_ids": sorted(lost)[:50],
        "lost_deletes": len(lost_deletes),
        "bad_reads": len(bad_reads) + len(bad_listings),
        "bad_read_ids": [o.id for o in bad_reads][:50],
        "bad_listing_entries": bad_listings[:50],
        "failed_writes_visible": len(failed_visible),
        "stale_reads_during_run": stale_reads,
        "final_unexplained": unexplained[:50],
        "final_disagreements": disagreements[:50],
        "listing_mismatches": listing_mismatches[:50],
        "listing_mismatch_count": len(listing_mismatches),
    }


class Suite:
    def __init__(self, opts):
        self.opts = opts
        self.log = opts.log
        seed = opts.seed if opts.seed is not None else random.randrange(1 << 30)
        self.seed = seed
        self.rng = random.Random(seed)
        self.run_tag = f"{seed:x}"
        self.history = History()
        self.faults = {}          # kind -> count
        self.fault_log = []       # (t, text)
        self.damaged_blocks = set()
        self.skipped = {}         # fault kind -> reason
        self.nemesis_errors = []
        self.net = None
        self.cluster = None
        self.result = {"seed": seed}
        self.t0 = time.monotonic()

    # -- setup -------------------------------------------------------------
    def note(self, text):
        t = time.monotonic() - self.t0
        self.fault_log.append((round(t, 1), text))
        self.log(f"[{t:7.1f}s] {text}")

    def node_extra(self, help_text):
        extra = []
        if "--repair-interval" in help_text:
            extra += ["--repair-interval", f"{self.opts.repair_interval:g}"]
        if "--gc-grace" in help_text:
            extra += ["--gc-grace", f"{self.opts.gc_grace:g}"]
        if "--gc-interval" in help_text:
            extra += ["--gc-interval", f"{self.opts.gc_interval:g}"]
        if "--scrub-interval" in help_text:
            extra += ["--scrub-interval", f"{self.opts.scrub_interval:g}"]
        return extra

    def setup(self, base):
        opts = self.opts
        help_text = node_flags()
        self.extra = self.node_extra(help_text) + list(opts.node_args)
        self.result["node_flags"] = self.extra
        self.result["repair_service"] = "--repair-interval" in help_text
        ak, sk = new_credentials()
        count = opts.nodes + 1  # the last one joins in check 3
        net_cls, reason = (netns_support() if "partition" in opts.faults
                           else (None, None))
        if "partition" in opts.faults and net_cls is None:
            self.skipped["partition"] = reason
            self.log(f"SKIPPING the partition fault: {reason}")
        self.cluster = Cluster(base, 0, ak, sk, auto_layout=False)
        zones = [f"zone{i % 3}" for i in range(opts.nodes)] + [
            f"zone{opts.nodes}"]
        if net_cls is not None and "partition" in opts.faults:
            self.net = net_cls(count).create()
            self.all_nodes = [
                ClusterNode(base, i, ak, sk, host=self.net.addrs[i],
                            netns=self.net.ns[i], extra=self.extra,
                            zone=zones[i]) for i in range(count)]
        else:
            self.all_nodes = [ClusterNode(base, i, ak, sk, extra=self.extra,
                                          zone=zones[i])
                              for i in range(count)]
        self.nodes = self.all_nodes[:opts.nodes]
        self.spare = self.all_nodes[opts.nodes]
        self.cluster.nodes = list(self.nodes)
        first = self.nodes[0]
        first.start(auto_layout=False)
        for n in self.nodes[1:]:
            n.start(join=[first.gossip], auto_layout=False)
        self.cluster.wait_converged(layout_nodes=0, timeout=90)
        for n in self.nodes:
            first.cli("storage", "layout", "add", n.name, "--zone", n.zone,
                      "-y")
        self.cluster.wait_converged(timeout=90)
        status = first.status()
        self.result["layout"] = {
            "nodes": len(status["layout"]["nodes"]),
            "partitions": status["layout"]["partitions"],
            "N": status["replication"], "W": status["writeQuorum"],
            "R": status["readQuorum"]}
        c = first.client()
        self.workload = Workload(opts, self.nodes, self.history,
                                 self.run_tag, self.rng)
        for b in self.workload.buckets:
            c.create_bucket(Bucket=b)
        for i, (b, key) in enumerate(self.workload.cold):
            node = self.nodes[i % len(self.nodes)]
            op = self.workload.put(node.client(), SETUP, node, b, key,
                                   self.rng, size=BLOCK + BLOCK // 2)
            if op.outcome != "ok":
                raise RuntimeError(f"cold key {b}/{key}: {op.error}")
        m = first.metrics()
        self.result["services"] = {
            "anti_entropy": REPAIR_ROUNDS in m,
            "scrub": any(k.startswith("cloud_scrub_") for k in m),
            "gc": any(k.startswith("cloud_gc_") for k in m)}
        self.log(f"cluster up: {opts.nodes} nodes "
                 f"({'network namespaces' if self.net else 'loopback'}), "
                 f"layout {self.result['layout']}, node flags {self.extra}, "
                 f"repair services {self.result['services']}")

    def teardown(self):
        for n in getattr(self, "all_nodes", []):
            if n.is_running():
                with contextlib.suppress(Exception):
                    n.resume()
            with contextlib.suppress(Exception):
                n.kill()
        if self.net is not None:
            self.net.heal()
            problems = self.net.destroy()
            if problems:
                self.log(f"network teardown problems: {problems}")

    # -- faults ------------------------------------------------------------
    def others(self, node):
        return [n for n in self.nodes if n is not node]

    def restart(self, node, extra=()):
        seeds = [n.gossip for n in self.others(node) if n.is_running()]
        node.start(join=seeds, auto_layout=False, extra=extra)

    def settle(self, what, timeout=60):
        try:
            self.cluster.wait_converged(nodes=self.nodes, timeout=timeout)
        except AssertionError as e:
            self.note(f"after {what}: membership not converged within "
                      f"{timeout}s ({str(e).splitlines()[0][:200]})")

    def count(self, kind):
        self.faults[kind] = self.faults.get(kind, 0) + 1

    def fault_kill(self):
        node = self.rng.choice(self.nodes)
        self.note(f"kill -9 {node.name}")
        node.kill()
        self.count("kill")
        time.sleep(self.opts.fault_hold)
        self.restart(node)
        self.note(f"restarted {node.name}")
        self.settle("restart")

    def fault_pause(self):
        node = self.rng.choice(self.nodes)
        self.note(f"SIGSTOP {node.name}")
        node.pause()
        self.count("pause")
        try:
            time.sleep(self.opts.fault_hold)
        finally:
            node.resume()
        self.note(f"SIGCONT {node.name}")
        self.settle("pause")

    def fault_partition(self):
        i = self.rng.randrange(len(self.nodes))
        rest = [j for j in range(len(self.nodes)) if j != i]
        self.note(f"partition: node{i} | {', '.join(f'node{j}' for j in rest)}")
        self.net.partition([i], rest)
        self.count("partition")
        try:
            time.sleep(self.opts.partition_hold)
        finally:
            self.net.heal()
        self.note("partition healed")
        self.settle("partition", timeout=90)

    def live_blocks(self, cold):
        """Blocks of the newest acknowledged value of each (cold) key."""
        newest = {}
        cold_keys = set(self.workload.cold)
        for op in self.history.ops:
            if (op.kind == "put" and op.outcome == "ok" and op.blocks
                    and ((op.bucket, op.key) in cold_keys) == cold):
                k = (op.bucket, op.key)
                if k not in newest or newest[k].end < op.end:
                    newest[k] = op
        return [b for op in newest.values() for b in op.blocks]

    def pick_block_file(self, node):
        # A block of a cold key first (it stays as damaged as it is unless
        # repaired), then of the newest value of a hot key, then any.
        for which in ("cold", "live"):
            candidates = [b for b in self.live_blocks(which == "cold")
                          if b not in self.damaged_blocks]
            self.rng.shuffle(candidates)
            for b in candidates:
                p = Path(node.data_dir) / "blocks" / b[:2] / b
                if p.exists():
                    return p, which
        files = [p for p in block_files(node)
                 if p.name not in self.damaged_blocks]
        return (self.rng.choice(files), "any") if files else (None, None)

    def fault_corrupt(self):
        # One corrupted and one deleted block file, on random nodes; never
        # two damaged copies of one block (so N-1 copies stay intact).
        for action in ("corrupt", "delete"):
            node = self.rng.choice(self.nodes)
            path, which = self.pick_block_file(node)
            if path is None:
                self.note(f"{action}: {node.name} has no block files yet")
                continue
            self.damaged_blocks.add(path.name)
            if action == "corrupt":
                with open(path, "r+b") as f:
                    size = f.seek(0, os.SEEK_END)
                    at = 16 + (size - 16) // 2 if size > 17 else 0
                    f.seek(at)
                    old = f.read(64)
                    f.seek(at)
                    f.write(bytes(b ^ 0x5A for b in old))
            else:
                path.unlink()
            self.count(f"{action}-block")
            self.note(f"{action} block {path.name[:12]}… ({which}) on "
                      f"{node.name}")

    def fault_layout(self):
        node = self.rng.choice(self.nodes)
        via = self.rng.choice(self.others(node))
        self.note(f"layout remove {node.name} (via {via.name})")
        via.cli("storage", "layout", "remove", node.name, "-y")
        self.count("layout-remove")
        time.sleep(self.opts.fault_hold)
        via = self.rng.choice(self.others(node))
        via.cli("storage", "layout", "add", node.name, "--zone", node.zone,
                "-y")
        self.count("layout-add")
        self.note(f"layout add {node.name} (via {via.name})")
        self.settle("layout change")

    def nemesis(self, stop_at):
        kinds = [k for k in self.opts.faults if k not in self.skipped]
        done = set()
        time.sleep(self.opts.warmup)  # some data (and blocks) first
        while kinds and (time.monotonic() < stop_at or done != set(kinds)):
            order = list(kinds)
            self.rng.shuffle(order)
            for kind in order:
                if time.monotonic() >= stop_at and kind in done:
                    continue
                time.sleep(self.opts.fault_gap)
                try:
                    getattr(self, f"fault_{kind}")()
                except Exception as e:  # noqa: BLE001
                    self.nemesis_errors.append(f"{kind}: {e}"[:2000])
                    self.note(f"fault {kind} FAILED: {str(e)[:300]}")
                done.add(kind)
            if time.monotonic() >= stop_at:
                break
        while time.monotonic() < stop_at:
            time.sleep(0.2)

    # -- phases --------------------------------------------------------------
    def load_with_faults(self):
        opts = self.opts
        work = self.workload
        self.note(f"load: {opts.clients} clients, {opts.keys} keys in "
                  f"{opts.buckets} buckets (+ {opts.cold_keys} cold keys), "
                  f"{opts.duration:g}s; faults: "
                  f"{', '.join(k for k in opts.faults if k not in self.skipped)}")
        with concurrent.futures.ThreadPoolExecutor(opts.clients) as pool:
            futures = [pool.submit(work.run_client, i)
                       for i in range(opts.clients)]
            try:
                self.nemesis(time.monotonic() + opts.duration)
            finally:
                work.stop.set()
                for f in futures:
                    f.result()
        self.faults_healed_at = time.monotonic()
        self.note(f"load stopped: {len(self.history.ops)} operations")

    def repair_state(self, nodes):
        """({node: {metric: value}}, metrics missing somewhere, {node:
        (repair rounds finished, scrub passes finished), each None when the
        node does not count them})."""
        state, missing, rounds = {}, set(), {}
        for n in nodes:
            m = n.metrics()
            state[n.name] = {}
            for name in REPAIR_METRICS:
                if name in m:
                    state[n.name][name] = m[name]
                else:
                    missing.add(name)
                    state[n.name][name] = 0.0
            rounds[n.name] = (m.get(REPAIR_ROUNDS), m.get(SCRUB_PASSES))
        return state, missing, rounds

    def wait_repaired(self, nodes, since, what):
        """Seconds from `since` until repair is complete, or None at the
        timeout. Complete: on every node every repair gauge is 0 and (when
        the node counts them) two more repair rounds and one more scrub pass
        have finished than when the wait began, so that a whole round and a
        whole pass ran after the faults; seen so on two polls in a row."""
        deadline = time.monotonic() + self.opts.repair_timeout
        base = None
        zero_polls = 0
        last, missing = None, set()
        while time.monotonic() < deadline:
            try:
                last, missing, rounds = self.repair_state(nodes)
            except OSError as e:
                last, zero_polls = str(e), 0
                time.sleep(1)
                continue
            if base is None:
                base = rounds
            rounds_done = all(
                (now is None or before is None or now >= before + need)
                for n in rounds
                for now, before, need in zip(rounds[n], base.get(n, (None, None)), (2, 1)))
            if rounds_done and all(v == 0 for st in last.values()
                                   for v in st.values()):
                zero_polls += 1
                if zero_polls >= 2:
                    took = time.monotonic() - since
                    if any(v[0] is None for v in rounds.values()):
                        missing.add(REPAIR_ROUNDS)
                    self.note(f"{what}: repair complete after {took:.1f}s"
                              + (f" (metrics not exported, counted as 0: "
                                 f"{', '.join(sorted(missing))})"
                                 if missing else ""))
                    return took, sorted(missing)
            else:
                zero_polls = 0
            time.sleep(0.5)
        self.note(f"{what}: repair NOT complete after "
                  f"{self.opts.repair_timeout:g}s: {last}")
        return None, sorted(missing)

    def read_all(self, node, reader, attempts=3):
        """({(bucket, key): the get op}, {bucket: listing or None}) through
        `node`; the reads go into the history (client `reader`, < 0)."""
        c = node.client(read_timeout=30, retries={"total_max_attempts": 1})
        reads, listings = {}, {}
        err = None
        for bucket, key in self.workload.keys:
            for attempt in range(attempts):
                got = self.workload.get(c, reader, node, bucket, key)
                reads[(bucket, key)] = got
                if got.outcome == "ok":
                    break
                time.sleep(1)
        for bucket in self.workload.buckets:
            for attempt in range(attempts):
                try:
                    listings[bucket] = list_bucket(c, bucket)
                    break
                except Exception as e:  # noqa: BLE001
                    listings[bucket] = None
                    err = e
                    time.sleep(1)
            if listings[bucket] is None:
                self.note(f"listing {bucket} through {node.name} failed: "
                          f"{err!r}")
        return reads, listings

    # -- check 1 -----------------------------------------------------------
    def check_history(self, final_views):
        return check_history(self.history.ops, self.workload.keys,
                             self.workload.buckets, final_views,
                             self.opts.clock_margin)

    @staticmethod
    def state_of(reads):
        """{key: sha or 'absent' (None: unreadable)} of one node's reads."""
        return {k: ("absent" if r.absent else r.sha) if r.outcome == "ok"
                else None for k, r in reads.items()}

    def final_reads(self):
        """Every key and listing read through every node, in passes until
        two passes in a row agree. (An op whose client gave up may still
        land when its coordinator's own deadlines run out, and a write that
        failed may have left copies that repair then spreads: the state
        may still change after repair looked complete. Every pass is a
        state after the faults, so check 1 covers all of them.) Returns
        ({'node#pass': (reads, listings)}, the last pass's state)."""
        views, previous, changed, settled = {}, None, set(), False
        for attempt in range(1, self.opts.final_passes + 1):
            this = {}
            for n in self.nodes:
                this[n.name] = self.read_all(n, FINAL)
                views[f"{n.name}#{attempt}"] = this[n.name]
            state = self.state_of(this[self.nodes[0].name][0])
            if previous is not None:
                diff = {k for k in state if state[k] != previous[k]}
                if not diff:
                    settled = True
                    break
                changed |= diff
                self.note(f"final reads, pass {attempt}: {len(diff)} keys "
                          f"changed since the previous pass: "
                          f"{sorted(diff)[:5]}")
            previous = state
            time.sleep(self.opts.settle)
            self.wait_repaired(self.nodes, time.monotonic(),
                               f"before final pass {attempt + 1}")
        self.result["final_passes"] = attempt
        self.result["final_state_settled"] = settled
        self.result["keys_changed_between_final_passes"] = sorted(
            "/".join(k) for k in changed)
        return views, state

    # -- check 2 -----------------------------------------------------------
    def check_replicas(self, reference):
        """Every node alone (R=1, W=1) returns the final state."""
        out = {"per_node": {}, "divergent": 0}
        status = self.nodes[0].status()
        shares = {n["id"]: n["partitions"] for n in status["layout"]["nodes"]}
        total = status["layout"]["partitions"]
        out["partitions_per_node"] = shares
        if len(self.nodes) == status["replication"]:
            if any(shares.get(n.name) != total for n in self.nodes):
                self.note(f"not every node holds every partition: {shares}")
        else:
            out["note"] = ("N < nodes: a lone node holds only its "
                           "partitions; keys it does not own are skipped")
        for n in self.nodes:
            n.stop()
        self.note("all nodes stopped for the replica check")
        for n in self.nodes:
            n.start(join=(), auto_layout=False,
                    extra=["--read-quorum", "1", "--write-quorum", "1"])
            deadline = time.monotonic() + 30
            while not n.ready() and time.monotonic() < deadline:
                time.sleep(0.2)
            reads, listings = self.read_all(n, LONE, attempts=1)
            bad = []
            for k, want in reference.items():
                r = reads.get(k)
                got = None
                if r is not None and r.outcome == "ok":
                    got = "absent" if r.absent else r.sha
                if got != want:
                    bad.append((k, (want or "?")[:12],
                                (got or (r.error if r else "?"))[:40]))
            for bucket, listing in listings.items():
                want = {key for (b, key), v in reference.items()
                        if b == bucket and v not in (None, "absent")}
                if listing is None or set(listing) != want:
                    bad.append((bucket, "listing",
                                "failed" if listing is None else
                                f"{len(set(listing) ^ want)} keys differ"))
            out["per_node"][n.name] = {"checked": len(reference),
                                       "wrong": len(bad),
                                       "examples": bad[:10]}
            out["divergent"] += len(bad)
            self.note(f"{n.name} alone (R=1): {len(bad)} of "
                      f"{len(reference)} keys (+ listings) differ from the "
                      f"final state")
            n.stop()
        return out

    # -- check 3 -----------------------------------------------------------
    def check_rebalance(self, reference):
        out = {}
        first = self.nodes[0]
        first.start(auto_layout=False)
        for n in self.nodes[1:]:
            n.start(join=[first.gossip], auto_layout=False)
        self.settle("restart of all nodes", timeout=90)
        took, _ = self.wait_repaired(self.nodes, time.monotonic(),
                                     "before the join")
        self.wait_gc_quiet(self.nodes)
        stored = {n.name: dir_bytes(n) for n in self.nodes}
        sizes = [size for _, size in self.live_sizes(reference).values()]
        live = sum(sizes)
        live_blocks = sum(size for size in sizes if size > INLINE_MAX)
        sent_before = self.sum_metric(self.nodes, REBALANCE_SENT)
        repaired_before = self.sum_metric(self.nodes, REPAIR_BYTES)
        new = self.spare
        self.cluster.nodes = self.nodes + [new]
        t = time.monotonic()
        new.start(join=[first.gossip], auto_layout=False)
        first.cli("storage", "layout", "add", new.name, "--zone", new.zone,
                  "-y")
        self.count("join")
        self.note(f"{new.name} (zone {new.zone}) added to the layout")
        self.cluster.wait_converged(timeout=90)
        took, missing = self.wait_repaired(self.cluster.nodes, t,
                                           "after the join")
        status = new.status()
        shares = {n["id"]: n["partitions"] for n in status["layout"]["nodes"]}
        sent_after = self.sum_metric(self.cluster.nodes, REBALANCE_SENT)
        repaired_after = self.sum_metric(self.cluster.nodes, REPAIR_BYTES)
        new_bytes = dir_bytes(new)
        # The ideal: the new node takes 1/(nodes+1) of every byte the
        # cluster stores (N=3, a fourth node in a zone of its own: 3/4 of
        # the partitions, a quarter of all replicas), measured as the old
        # nodes' block directories. Those also hold blocks nothing refers to
        # any more until garbage collection deletes them; the share of the
        # live data (the final values x N) is shown beside it.
        k = len(self.nodes) + 1
        n_rep = status["replication"]
        ideal = sum(stored.values()) / k
        out.update({
            "repair_seconds": took,
            "metrics_missing": missing,
            "stored_block_bytes_before": stored,
            "ideal_bytes": int(ideal),
            "live_bytes": live,
            "live_ideal_bytes": int(live * n_rep / k),
            "new_node_partitions": shares.get(new.name),
            "partitions": status["layout"]["partitions"],
            "new_node_block_bytes": new_bytes,
            "new_node_ratio": round(new_bytes / ideal, 3) if ideal else None,
            "new_node_live_ratio": (round(new_bytes / (live_blocks * n_rep
                                                       / k), 3)
                                    if live_blocks else None),
            "stored_block_bytes_after": {n.name: dir_bytes(n)
                                         for n in self.cluster.nodes},
        })

        def delta(after, before):
            if after is None:
                return None
            return int(after - (before or 0))

        out["handed_over_bytes"] = delta(sent_after, sent_before)
        out["moved_bytes"] = delta(repaired_after, repaired_before)
        for name, value in (("moved_ratio", out["moved_bytes"]),
                            ("handed_over_ratio", out["handed_over_bytes"])):
            out[name] = (round(value / ideal, 3)
                         if value is not None and ideal else None)
        notes = [f"{m} is not exported" for m, v in
                 ((REBALANCE_SENT, sent_after), (REPAIR_BYTES,
                                                 repaired_after))
                 if v is None]
        if notes:
            out["note"] = "; ".join(notes)
        # Everything still reads right through the new node.
        reads, _ = self.read_all(new, JOINED)
        wrong = sum(1 for kk, want in reference.items()
                    if reads.get(kk) is None or reads[kk].outcome != "ok"
                    or ("absent" if reads[kk].absent else reads[kk].sha)
                    != want)
        out["reads_through_new_node_wrong"] = wrong
        self.note(f"join: ideal {mib(ideal)} (stored blocks / {k}), moved "
                  f"{mib(out['moved_bytes'])} (ratio {out['moved_ratio']};"
                  f" handed over {mib(out['handed_over_bytes'])}, ratio "
                  f"{out['handed_over_ratio']}), new node's blocks "
                  f"{mib(new_bytes)} (ratio {out['new_node_ratio']}), "
                  f"{wrong} keys read wrong through it")
        return out

    def wait_gc_quiet(self, nodes, timeout=120):
        """When the nodes collect garbage: until two more collection passes
        on every node, without a sweep skipped, deleted nothing, so that the
        bytes stored before the join are the live data's and not garbage the
        collector takes away while the new node fills."""
        runs, collected, skipped = (GC_RUNS, "cloud_gc_blocks_collected_total",
                                    "cloud_gc_skipped_total")

        def sample():
            return {n.name: {k: n.metrics().get(k) for k in (runs, collected, skipped)}
                    for n in nodes}

        base = sample()
        if any(v[runs] is None for v in base.values()):
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(1)
            now = sample()
            if not all(now[n][runs] >= base[n][runs] + 2 for n in now):
                continue
            if all(now[n][collected] == base[n][collected]
                   and now[n][skipped] == base[n][skipped] for n in now):
                self.note("garbage collection is quiet")
                return
            base = now
        self.note(f"garbage collection still busy after {timeout}s")

    def live_sizes(self, reference):
        by_sha = {op.sha: op for op in self.history.ops if op.kind == "put"}
        return {k: (v, by_sha[v].size) for k, v in reference.items()
                if v not in (None, "absent") and v in by_sha}

    @staticmethod
    def sum_metric(nodes, name):
        total, seen = 0.0, False
        for n in nodes:
            m = n.metrics()
            for sample, value in m.items():
                if sample == name or sample.startswith(name + "{"):
                    total += value
                    seen = True
        return total if seen else None

    # -- the whole run -------------------------------------------------------
    def run(self):
        opts = self.opts
        base = opts.work_dir or tempfile.mkdtemp(prefix="cloud-faults-")
        Path(base).mkdir(parents=True, exist_ok=True)
        self.base = base
        self.log(f"fault suite: seed {self.seed}, work dir {base}, "
                 f"binary {CLOUD_BIN}")
        r = self.result
        ok = False
        try:
            self.setup(base)
            self.load_with_faults()
            # All nodes run and are in the layout again (the nemesis heals
            # every fault before it returns).
            took, missing = self.wait_repaired(self.nodes,
                                               self.faults_healed_at,
                                               "after the faults")
            r["repair_seconds"] = took
            r["repair_metrics_missing"] = missing
            views, reference = self.final_reads()
            r.update(self.check_history(views))
            r["final_keys_present"] = sum(
                1 for v in reference.values() if v not in (None, "absent"))
            if "replicas" in opts.checks:
                r["replicas"] = self.check_replicas(reference)
            if "rebalance" in opts.checks:
                r["rebalance"] = self.check_rebalance(reference)
            ok = True
        finally:
            r["operations"] = self.op_counts()
            r["faults"] = dict(self.faults)
            r["faults_skipped"] = self.skipped
            r["nemesis_errors"] = self.nemesis_errors
            r["fault_log"] = self.fault_log
            r["elapsed_seconds"] = round(time.monotonic() - self.t0, 1)
            if opts.history:
                with open(opts.history, "w") as f:
                    for op in self.history.ops:
                        f.write(json.dumps(op.row()) + "\n")
            self.teardown()
            if ok and not opts.keep and not opts.work_dir:
                shutil.rmtree(base, ignore_errors=True)
            elif not ok:
                self.log(f"node logs kept in {base}/logs")
        return r

    def op_counts(self):
        counts = {}
        for op in self.history.ops:
            if op.client < 0:
                continue
            key = f"{op.kind}:{op.outcome}"
            counts[key] = counts.get(key, 0) + 1
        counts["total"] = sum(1 for op in self.history.ops if op.client >= 0)
        return counts


def verdict(r):
    """(exit code, [failed checks])."""
    safety, repair = [], []
    if r.get("lost_writes"):
        safety.append(f"{r['lost_writes']} lost writes")
    if r.get("lost_deletes"):
        safety.append(f"{r['lost_deletes']} lost deletes")
    if r.get("bad_reads"):
        safety.append(f"{r['bad_reads']} bad reads")
    if r.get("failed_writes_visible"):
        safety.append(f"{r['failed_writes_visible']} reads of failed writes")
    if r.get("listing_mismatch_count"):
        safety.append(f"{r['listing_mismatch_count']} listing mismatches")
    if r.get("final_unexplained"):
        safety.append(f"{len(r['final_unexplained'])} final reads "
                      f"unreadable or unexplained")
    if r.get("final_disagreements"):
        safety.append(f"{len(r['final_disagreements'])} keys read "
                      f"differently through different nodes")
    if r.get("repair_seconds") is None:
        repair.append("repair did not complete")
    if r.get("final_state_settled") is False:
        repair.append(f"the final state still changed after "
                      f"{r['final_passes']} passes")
    rep = r.get("replicas")
    if rep and rep["divergent"]:
        repair.append(f"{rep['divergent']} key/listing reads through lone "
                      f"replicas differ from the final state")
    reb = r.get("rebalance")
    if reb:
        if reb.get("repair_seconds") is None:
            repair.append("rebalancing did not complete")
        ratio = reb.get("moved_ratio")
        if ratio is None:
            repair.append(f"no {REPAIR_BYTES} metric")
        elif not 0.5 <= ratio <= 1.5:
            repair.append(f"moved/ideal = {ratio} (outside 0.5-1.5)")
        if reb.get("new_node_ratio") is None or reb["new_node_ratio"] < 0.5:
            repair.append(f"the new node holds {reb.get('new_node_ratio')} "
                          f"of its ideal share")
        if reb.get("reads_through_new_node_wrong"):
            repair.append(f"{reb['reads_through_new_node_wrong']} keys read "
                          f"wrong through the new node")
    if r.get("nemesis_errors"):
        repair.append(f"{len(r['nemesis_errors'])} fault injections failed")
    code = 1 if safety else (2 if repair else 0)
    return code, safety + repair


def mib(n):
    return "n/a" if n is None else f"{n / MiB:.1f} MiB"


def summary(r):
    ops = r.get("operations", {})
    lines = [
        f"operations: {ops.get('total', 0)} ("
        + ", ".join(f"{k} {v}" for k, v in sorted(ops.items())
                    if k != "total") + ")",
        "faults: " + (", ".join(f"{k} {v}" for k, v in
                                sorted(r.get("faults", {}).items())) or "none")
        + "".join(f"; {k} skipped: {v}" for k, v in
                  r.get("faults_skipped", {}).items()),
        f"acknowledged writes: {r.get('acknowledged_writes')}",
        f"lost writes: {r.get('lost_writes')} (lost deletes "
        f"{r.get('lost_deletes')})",
        f"bad reads: {r.get('bad_reads')} (reads of definitely failed "
        f"writes {r.get('failed_writes_visible')}; stale reads during the "
        f"run, not counted as failures: {r.get('stale_reads_during_run')})",
        f"final reads: {r.get('final_passes')} passes"
        + (f", keys that changed between them (ops that landed late): "
           f"{', '.join(r['keys_changed_between_final_passes'][:8])}"
           if r.get("keys_changed_between_final_passes") else "")
        + ("" if r.get("final_state_settled", True) else ", NOT settled"),
        f"listing/read mismatches at the end: "
        f"{r.get('listing_mismatch_count')}; keys read differently through "
        f"different nodes: {len(r.get('final_disagreements') or [])}",
        "time to full repair: " + (f"{r['repair_seconds']:.1f}s"
                                   if r.get("repair_seconds") is not None
                                   else "not reached")
        + (f" (not exported, counted as 0: "
           f"{', '.join(r['repair_metrics_missing'])})"
           if r.get("repair_metrics_missing") else ""),
    ]
    rep = r.get("replicas")
    if rep:
        lines.append("replicas (each node alone, R=1): " + ", ".join(
            f"{k} {v['wrong']}/{v['checked']} wrong"
            for k, v in rep["per_node"].items()))
    reb = r.get("rebalance")
    if reb:
        lines.append(
            f"join of a node: ideal {mib(reb['ideal_bytes'])} (the old "
            f"nodes' block directories / (nodes + 1)); moved "
            f"{mib(reb['moved_bytes'])} (ratio {reb['moved_ratio']}; of "
            f"which handed over by old owners {mib(reb['handed_over_bytes'])}"
            f", ratio {reb['handed_over_ratio']}); new node's block dir "
            f"{mib(reb['new_node_block_bytes'])} (ratio "
            f"{reb['new_node_ratio']}; {reb['new_node_live_ratio']} of the "
            f"live data's share {mib(reb['live_ideal_bytes'])}); partitions "
            f"{reb['new_node_partitions']}/{reb['partitions']}; rebalancing "
            + (f"{reb['repair_seconds']:.1f}s" if reb.get("repair_seconds")
               is not None else "not complete"))
    return "\n".join(lines)


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Jepsen-style fault suite for the storage cluster "
                    "(see the module docstring).")
    d = Options()
    p.add_argument("--nodes", type=int, default=d.nodes)
    p.add_argument("--clients", type=int, default=d.clients)
    p.add_argument("--duration", type=float, default=d.duration,
                   help="seconds of load with faults (every enabled fault "
                        "is injected at least once even if that takes "
                        "longer)")
    p.add_argument("--faults", default=",".join(ALL_FAULTS),
                   help=f"comma-separated, of {', '.join(ALL_FAULTS)}")
    p.add_argument("--keys", type=int, default=d.keys)
    p.add_argument("--buckets", type=int, default=d.buckets)
    p.add_argument("--cold-keys", type=int, default=d.cold_keys)
    p.add_argument("--large-max", type=float, default=d.large_max / MiB,
                   help="largest value, MiB")
    p.add_argument("--fault-hold", type=float, default=d.fault_hold)
    p.add_argument("--partition-hold", type=float, default=d.partition_hold)
    p.add_argument("--fault-gap", type=float, default=d.fault_gap)
    p.add_argument("--warmup", type=float, default=d.warmup)
    p.add_argument("--repair-timeout", type=float, default=d.repair_timeout)
    p.add_argument("--repair-interval", type=float,
                   default=d.repair_interval)
    p.add_argument("--gc-grace", type=float, default=d.gc_grace)
    p.add_argument("--gc-interval", type=float, default=d.gc_interval)
    p.add_argument("--scrub-interval", type=float, default=d.scrub_interval)
    p.add_argument("--checks", default="replicas,rebalance",
                   help="after check 1: replicas, rebalance (or none)")
    p.add_argument("--node-args", default="",
                   help="more flags for every `cloud node`, e.g. "
                        "'--write-quorum 1 --read-quorum 1' to see the "
                        "checker catch what a weaker setting loses")
    p.add_argument("--seed", type=int)
    p.add_argument("--work-dir", help="data and logs (kept)")
    p.add_argument("--keep", action="store_true",
                   help="keep the temporary work dir")
    p.add_argument("--out", help="write the result as JSON here")
    p.add_argument("--history", help="write every operation as JSON lines")
    a = p.parse_args(argv)
    faults = tuple(f for f in a.faults.split(",") if f)
    unknown = [f for f in faults if f not in ALL_FAULTS]
    if unknown:
        p.error(f"unknown faults: {unknown}")
    checks = tuple(c for c in a.checks.split(",") if c and c != "none")
    if any(c not in ("replicas", "rebalance") for c in checks):
        p.error(f"unknown checks in {a.checks}")
    if a.nodes < 3:
        p.error("--nodes must be at least 3 (N=3)")
    return Options(nodes=a.nodes, clients=a.clients, duration=a.duration,
                   faults=faults, keys=a.keys, buckets=a.buckets,
                   cold_keys=a.cold_keys,
                   large_max=int(a.large_max * MiB),
                   fault_hold=a.fault_hold, partition_hold=a.partition_hold,
                   fault_gap=a.fault_gap, warmup=a.warmup,
                   repair_timeout=a.repair_timeout,
                   repair_interval=a.repair_interval, gc_grace=a.gc_grace,
                   gc_interval=a.gc_interval, scrub_interval=a.scrub_interval,
                   checks=checks, node_args=tuple(a.node_args.split()),
                   seed=a.seed, work_dir=a.work_dir,
                   keep=a.keep, out=a.out, history=a.history)


def run_suite(opts):
    """Runs the suite; returns (result dict, exit code, failed checks)."""
    if not os.path.exists(CLOUD_BIN):
        raise SystemExit(f"no binary at {CLOUD_BIN}: build it or set "
                         f"CLOUD_BIN")
    r = Suite(opts).run()
    code, failed = verdict(r)
    r["failed_checks"] = failed
    r["exit_code"] = code
    if opts.out:
        Path(opts.out).write_text(json.dumps(r, indent=2, default=str) + "\n")
    return r, code, failed


def main(argv=None):
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    r, code, failed = run_suite(opts)
    print("\n" + summary(r))
    print("verdict: " + ("all checks held" if not failed else
                         "FAILED: " + "; ".join(failed)))
    return code


if __name__ == "__main__":
    sys.exit(main())
