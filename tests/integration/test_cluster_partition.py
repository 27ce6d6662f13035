"""A network partition between two groups of `cloud node` processes.

Topology (only what the test creates, removed again at the end): one
network namespace per node, a veth pair per node (`eth0` inside the
namespace, the other end on a Linux bridge in the root namespace), one
free 10.x.y.0/24 for all of them, and 10.x.y.254 on the bridge, so the
test process reaches every node's S3 port throughout the partition.

The cut: inside each node's namespace, permanent neighbour (ARP) entries
send the frames for the other group's addresses to a MAC address that no
port owns. The bridge floods them and nobody takes them: packets vanish
silently, as in a real partition (no ICMP, no RST; connects and calls in
flight hang until their deadlines). Deleting the entries heals it. This
machine's kernel has no netfilter and no tc actions, and blackhole or
unreachable routes would fail every send at once (EINVAL, EHOSTUNREACH),
which a real partition does not.

Nodes: node0..node4, zones zone0..zone2 by index mod 3 (clustertest),
N=3, W=2, R=2. With three zones and N=3 every partition has one replica
per zone (docs/ring.md, zone rule 2); node2 is alone in zone2 and holds
every partition. Two cuts:

* zone0 (node0, node3) against the rest: every partition has exactly one
  replica on the zone0 side, so there every read and write fails with a
  clean 503 and on the other side every read and write succeeds.
* node0, node1 against node2, node3, node4 (across zones): for every
  partition exactly one side holds two of its three replicas, whichever
  the layout; which side that is, is not visible from outside, so the
  test asserts what holds for every layout: each bucket is readable on
  exactly one side, a write is only acknowledged on the side that can
  read its bucket, never on both sides, and one side (the one without
  two replicas of the bucket directory) fails every write.

Right after the zone cut, before anyone noticed it, one write goes to
each side: side B's succeeds at once, side A's fails with 503 at the RPC
deadline (10 s). All other writes start only after every node has
declared the other side dead, so a write that fails does so before
anything is sent (the coordinator sees fewer than W reachable owners):
after the heal a failed write has left nothing behind, and every node
returns the newest acknowledged value of every key. The zone cut is held
until every death is older than the local gossip profile's
gossip-to-the-dead window (15 s), so that healing depends on push-pull
with dead members (Serf's reconnect); the cross-zone cut heals sooner.
"""
import concurrent.futures
import contextlib
import ipaddress
import json
import os
import secrets
import shutil
import subprocess
import time

import botocore
import pytest

from cloudtest import http_status, error_code, new_credentials, payload
from clustertest import Cluster, ClusterNode

pytestmark = [pytest.mark.needs_binary]

NODES = 5
BOGUS_MAC = "02:00:00:00:00:01"  # locally administered; no port has it
# A request must never take longer than this (the RPC record deadline is
# 10 s; after the failure detector has spoken, a 503 needs no waiting).
MAX_REQUEST_SECONDS = 12.0


# --------------------------------------------------------------------------
# the network
# --------------------------------------------------------------------------

def ip(*args, check=True):
    cp = subprocess.run(["ip", *args], capture_output=True, text=True,
                        timeout=30)
    if check and cp.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {cp.stderr.strip()}")
    return cp


def used_networks():
    nets = []
    for args in (["-j", "-4", "addr"], ["-j", "-4", "route", "show",
                                        "table", "all"]):
        try:
            data = json.loads(ip(*args).stdout or "[]")
        except (RuntimeError, ValueError):
            continue
        for entry in data:
            for a in entry.get("addr_info", []):
                nets.append(ipaddress.ip_network(
                    f"{a['local']}/{a['prefixlen']}", strict=False))
            dst = entry.get("dst")
            if dst and dst != "default":
                try:
                    nets.append(ipaddress.ip_network(dst, strict=False))
                except ValueError:
                    pass
    return nets


def pick_subnet():
    used = used_networks()
    for _ in range(200):
        net = ipaddress.ip_network(
            f"10.{secrets.randbelow(150) + 100}.{secrets.randbelow(256)}.0/24")
        if not any(net.overlaps(u) for u in used):
            return net
    raise RuntimeError("no free 10.x.y.0/24")


class Net:
    """Namespaces, veths and a bridge for `count` nodes, and the cut."""

    def __init__(self, count):
        tag = secrets.token_hex(3)
        self.subnet = pick_subnet()
        hosts = list(self.subnet.hosts())
        self.addrs = [str(hosts[i]) for i in range(count)]
        self.gateway = str(hosts[253])  # .254
        self.bridge = f"cpb{tag}"
        self.ns = [f"cpt{tag}{i}" for i in range(count)]
        self.veths = [f"cpv{tag}{i}" for i in range(count)]
        self.made_ns = []
        self.made_veths = []
        self.made_bridge = False
        self.cuts = []

    def create(self):
        ip("link", "add", self.bridge, "type", "bridge")
        self.made_bridge = True
        ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        for ns, veth, addr in zip(self.ns, self.veths, self.addrs):
            ip("netns", "add", ns)
            self.made_ns.append(ns)
            ip("link", "add", veth, "type", "veth", "peer", "name", "eth0",
               "netns", ns)
            self.made_veths.append(veth)
            ip("link", "set", veth, "master", self.bridge)
            ip("link", "set", veth, "up")
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
        return self

    def destroy(self):
        problems = []
        for veth in self.made_veths:
            cp = ip("link", "del", veth, check=False)
            if cp.returncode != 0 and "Cannot find" not in cp.stderr:
                problems.append(cp.stderr.strip())
        if self.made_bridge:
            cp = ip("link", "del", self.bridge, check=False)
            if cp.returncode != 0:
                problems.append(cp.stderr.strip())
        for ns in self.made_ns:
            cp = ip("netns", "del", ns, check=False)
            if cp.returncode != 0:
                problems.append(cp.stderr.strip())
        return problems

    def partition(self, side_a, side_b):
        """Cut every path between the nodes of side_a and of side_b."""
        for here, there in ([(i, j) for i in side_a for j in side_b] +
                            [(j, i) for i in side_a for j in side_b]):
            ip("-n", self.ns[here], "neigh", "replace", self.addrs[there],
               "lladdr", BOGUS_MAC, "dev", "eth0", "nud", "permanent")
            self.cuts.append((here, there))

    def heal(self):
        for here, there in self.cuts:
            ip("-n", self.ns[here], "neigh", "del", self.addrs[there],
               "dev", "eth0", check=False)
        self.cuts = []

    def connects(self, here, there, port=9000, timeout=1.5):
        """Whether a TCP connect from node `here`'s namespace to node
        `there`'s S3 port succeeds."""
        code = ("import socket,sys\n"
                "try:\n"
                f"  socket.create_connection(('{self.addrs[there]}', {port}),"
                f" timeout={timeout}).close()\n"
                "except OSError:\n"
                "  sys.exit(1)\n")
        cp = subprocess.run(["ip", "netns", "exec", self.ns[here],
                             "python3", "-c", code], capture_output=True,
                            timeout=30)
        return cp.returncode == 0


def netns_unavailable():
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2 (`ip`) is not installed"
    probe = f"cptprobe{secrets.token_hex(3)}"
    cp = subprocess.run(["ip", "netns", "add", probe], capture_output=True,
                        text=True, timeout=30)
    if cp.returncode != 0:
        return f"`ip netns add` does not work here: {cp.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True,
                   timeout=30)
    return None


@pytest.fixture
def netcluster(tmp_path):
    reason = netns_unavailable()
    if reason:
        pytest.skip(reason)
    ak, sk = new_credentials()
    net = Net(NODES)
    cluster = Cluster(tmp_path, 0, ak, sk)
    try:
        net.create()
        cluster.nodes = [
            ClusterNode(tmp_path, i, ak, sk, host=net.addrs[i],
                        netns=net.ns[i])
            for i in range(NODES)]
        with logs_on_failure(cluster.nodes):
            cluster.start(timeout=90)
        cluster.net = net
        yield cluster
    finally:
        cluster.shutdown()
        problems = net.destroy()
        assert not problems, f"network teardown: {problems}"


@contextlib.contextmanager
def logs_on_failure(nodes, lines=80):
    try:
        yield
    except BaseException:
        for node in nodes:
            print(f"\n----- {node.name} {getattr(node, 'log_path', '')} "
                  f"(last {lines} lines) -----\n{node.log_tail(lines)}")
        raise


# --------------------------------------------------------------------------
# observing the cluster
# --------------------------------------------------------------------------

def views(nodes):
    """{observer name: {member id: state}}."""
    out = {}
    for node in nodes:
        out[node.name] = {m["id"]: m["state"]
                          for m in node.status()["members"]}
    return out


def wait_partition_seen(cluster, side_a, side_b, since, timeout=90):
    """Until every node sees its own side alive and the other side dead.
    Returns {observer: seconds after `since` it first did}."""
    nodes = cluster.nodes
    names = {i: nodes[i].name for i in range(len(nodes))}
    expect = {}
    for mine, other in ((side_a, side_b), (side_b, side_a)):
        for i in mine:
            want = {names[j]: "alive" for j in mine}
            want.update({names[j]: "dead" for j in other})
            expect[names[i]] = want
    seen_at = {}
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = views(nodes)
        now = time.time()
        for observer, want in expect.items():
            if observer in seen_at:
                continue
            states = last[observer]
            if all(states.get(m) == s for m, s in want.items()):
                seen_at[observer] = now - since
        if len(seen_at) == len(expect):
            # Still true for everyone at the end (no flapping back).
            final = views(nodes)
            if all(all(final[o].get(m) == s for m, s in want.items())
                   for o, want in expect.items()):
                return seen_at
            seen_at = {}
        time.sleep(0.3)
    raise AssertionError(
        f"the sides did not see each other dead within {timeout}s: "
        f"{json.dumps(last, sort_keys=True)}")


def check_topology(cluster):
    """The zone layout this file relies on, as `storage status` shows it."""
    status = cluster.nodes[0].status()
    assert (status["replication"], status["writeQuorum"],
            status["readQuorum"]) == (3, 2, 2)
    zones = {m["id"]: m["zone"] for m in status["members"]}
    assert zones == {f"node{i}": f"zone{i % 3}" for i in range(NODES)}
    layout = status["layout"]
    shares = {n["id"]: n["partitions"] for n in layout["nodes"]}
    p = layout["partitions"]
    # One replica of every partition per zone: node2 (alone in zone2)
    # holds all of them; each other zone's two nodes share them.
    assert shares["node2"] == p, shares
    assert shares["node0"] + shares["node3"] == p, shares
    assert shares["node1"] + shares["node4"] == p, shares


# --------------------------------------------------------------------------
# S3 outcomes
# --------------------------------------------------------------------------

class Outcomes:
    """Runs S3 calls that must either succeed or fail with a clean 503."""

    def __init__(self):
        self.slowest = 0.0
        self.counts = {}

    def __call__(self, side, what, fn, limit=MAX_REQUEST_SECONDS):
        t0 = time.time()
        try:
            result = fn()
            outcome = "ok"
        except botocore.exceptions.ClientError as e:
            status, code = http_status(e), error_code(e)
            if (status, code) != (503, "ServiceUnavailable"):
                raise AssertionError(
                    f"{what} on side {side}: {status} {code} "
                    f"({e.response.get('Error', {}).get('Message')}); "
                    f"expected success or 503 ServiceUnavailable") from e
            result, outcome = None, "503"
        except botocore.exceptions.BotoCoreError as e:
            raise AssertionError(
                f"{what} on side {side}: no HTTP answer after "
                f"{time.time() - t0:.1f}s: {e!r}") from e
        took = time.time() - t0
        self.slowest = max(self.slowest, took)
        assert took < limit, f"{what} on side {side} took {took:.1f}s"
        key = (side, what.split(" ")[0], outcome)
        self.counts[key] = self.counts.get(key, 0) + 1
        return outcome, result

    def summary(self):
        return ", ".join(f"{s}/{w}/{o}={n}"
                         for (s, w, o), n in sorted(self.counts.items()))


def put(client, bucket, key, body):
    return lambda: client.put_object(Bucket=bucket, Key=key, Body=body)


def get(client, bucket, key):
    return lambda: client.get_object(Bucket=bucket, Key=key)["Body"].read()


def read_or_none(client, bucket, key):
    try:
        return client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except botocore.exceptions.ClientError as e:
        if http_status(e) == 404 and error_code(e) == "NoSuchKey":
            return None
        raise


def list_keys(client, bucket):
    keys = []
    token = None
    while True:
        kwargs = {"Bucket": bucket}
        if token:
            kwargs["ContinuationToken"] = token
        page = client.list_objects_v2(**kwargs)
        keys += [o["Key"] for o in page.get("Contents", [])]
        if not page.get("IsTruncated"):
            return sorted(keys)
        token = page["NextContinuationToken"]


def cut_and_wait(cluster, side_a, side_b, before_detection=None):
    net = cluster.net
    t0 = time.time()
    net.partition(side_a, side_b)
    # The cut is real: no TCP across it, everything within each side.
    assert not net.connects(side_a[0], side_b[0])
    assert not net.connects(side_b[-1], side_a[-1])
    assert net.connects(side_a[0], side_a[-1])
    assert net.connects(side_b[0], side_b[-1])
    # Requests sent before detection run alongside the watch for it.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(before_detection or (lambda: None))
        seen = wait_partition_seen(cluster, side_a, side_b, since=t0)
        pending.result(timeout=60)
    print("\npartition seen (s after the cut): " + ", ".join(
        f"{k}={v:.1f}" for k, v in sorted(seen.items())))
    return t0, seen


def heal_and_wait(cluster, side_a, side_b):
    net = cluster.net
    t0 = time.time()
    net.heal()
    assert net.connects(side_a[0], side_b[0])
    assert net.connects(side_b[-1], side_a[-1])
    cluster.wait_converged(timeout=120)
    took = time.time() - t0
    print(f"membership converged {took:.1f}s after the heal")
    return took


# --------------------------------------------------------------------------
# the tests
# --------------------------------------------------------------------------

@pytest.mark.deadline(300)
def test_a_zone_cut_off_fails_cleanly_and_the_cluster_heals(netcluster):
    cluster = netcluster
    nodes = cluster.nodes
    side_a, side_b = [0, 3], [1, 2, 4]  # zone0 | zone1 + zone2
    with logs_on_failure(nodes):
        check_topology(cluster)
        clients = [n.client() for n in nodes]
        bucket = "zonecut"
        clients[1].create_bucket(Bucket=bucket)
        before = {f"k{i}": payload(1000 + i, seed=i) for i in range(6)}
        before["big"] = payload(300_000, seed=99)  # blocks, not inline
        for i, (key, body) in enumerate(before.items()):
            put(clients[i % NODES], bucket, key, body)()

        early_run, run = Outcomes(), Outcomes()
        early = {}

        def before_detection():
            # Right after the cut every node still believes every member
            # alive: side B reaches two owners at once; side A waits for
            # the deadline of the calls that cannot arrive (RPC record
            # deadline 10 s) and then fails cleanly.
            body = b"written on side B before anyone noticed the cut"
            outcome, _ = early_run("B", "put early-b via node2",
                             put(clients[2], bucket, "early-b", body))
            assert outcome == "ok"
            early["early-b"] = body
            t = time.time()
            outcome, _ = early_run("A", "put early-a via node0",
                             put(clients[0], bucket, "early-a",
                                 b"attempted on side A before detection"),
                             limit=MAX_REQUEST_SECONDS + 5)
            assert outcome == "503"
            print(f"\nside A's write before detection failed after "
                  f"{time.time() - t:.1f}s")

        started, seen = cut_and_wait(cluster, side_a, side_b,
                                     before_detection)

        # Side A (one replica of everything): reads and writes fail, 503.
        for i in side_a:
            for key in ("k3", "big"):
                outcome, _ = run("A", f"get {key} via node{i}",
                                 get(clients[i], bucket, key))
                assert outcome == "503", (key, i)
            outcome, _ = run("A", f"list via node{i}",
                             lambda: list_keys(clients[i], bucket))
            assert outcome == "503"
        attempted_a = {f"a{i}": payload(2000 + i, seed=200 + i)
                       for i in range(8)}
        attempted_a["k1"] = b"overwrite attempted on side A"
        for n, (key, body) in enumerate(attempted_a.items()):
            via = side_a[n % len(side_a)]
            outcome, _ = run("A", f"put {key} via node{via}",
                             put(clients[via], bucket, key, body))
            assert outcome == "503", key
        outcome, _ = run("A", "delete k3 via node3", lambda: clients[3]
                         .delete_object(Bucket=bucket, Key="k3"))
        assert outcome == "503"

        # Side B (two replicas of everything): reads and writes succeed.
        for n, (key, body) in enumerate(before.items()):
            via = side_b[n % len(side_b)]
            outcome, got = run("B", f"get {key} via node{via}",
                               get(clients[via], bucket, key))
            assert outcome == "ok" and got == body, key
        written_b = {f"b{i}": payload(3000 + i, seed=300 + i)
                     for i in range(8)}
        written_b["k0"] = b"newer, written on side B"
        written_b["big-b"] = payload(400_000, seed=301)
        for n, (key, body) in enumerate(written_b.items()):
            via = side_b[n % len(side_b)]
            outcome, _ = run("B", f"put {key} via node{via}",
                             put(clients[via], bucket, key, body))
            assert outcome == "ok", key
        outcome, _ = run("B", "delete k2 via node4", lambda: clients[4]
                         .delete_object(Bucket=bucket, Key="k2"))
        assert outcome == "ok"
        expected = {**before, **written_b, **early}
        del expected["k2"]
        outcome, listed = run("B", "list via node2",
                              lambda: list_keys(clients[2], bucket))
        assert outcome == "ok" and listed == sorted(expected)
        # Keep the cut until the last death is older than the local
        # profile's gossip-to-the-dead window (15 s): then nobody sends
        # the dead anything, and only push-pull with dead members (Serf's
        # reconnect) can bring the sides together again.
        hold_until = started + max(seen.values()) + 20
        while time.time() < hold_until:
            time.sleep(0.5)
        partitioned_for = time.time() - started
        print(f"requests before detection: {early_run.summary()}; "
              f"after: {run.summary()}, slowest {run.slowest:.2f}s; "
              f"partition lasted {partitioned_for:.1f}s")

        heal_and_wait(cluster, side_a, side_b)
        # Every node, either side before, serves the newest acknowledged
        # data; nothing of what failed on side A is anywhere.
        for node, client in zip(nodes, clients):
            for key, body in expected.items():
                got = read_or_none(client, bucket, key)
                assert got == body, (node.name, key, got and got[:40])
            for key in list(attempted_a) + ["k2"]:
                if key in expected:
                    continue
                assert read_or_none(client, bucket, key) is None, \
                    (node.name, key)
            # Before detection a write may in general leave its record on
            # fewer than W replicas (docs/cluster.md, known limit): absent
            # or exactly the attempted bytes, never anything else.
            assert read_or_none(client, bucket, "early-a") in (
                None, b"attempted on side A before detection"), node.name
            listed = [k for k in list_keys(client, bucket) if k != "early-a"]
            assert listed == sorted(expected), node.name
        # And the healed cluster takes writes through a formerly cut node.
        put(clients[0], bucket, "after", b"healed")()
        assert get(clients[4], bucket, "after")() == b"healed"


@pytest.mark.deadline(300)
def test_a_cut_across_zones_never_acknowledges_a_write_on_both_sides(
        netcluster):
    cluster = netcluster
    nodes = cluster.nodes
    side_a, side_b = [0, 1], [2, 3, 4]
    sides = {"A": side_a, "B": side_b}
    with logs_on_failure(nodes):
        check_topology(cluster)
        clients = [n.client() for n in nodes]
        buckets = [f"cross{i:02d}" for i in range(16)]
        original = {}
        for i, bucket in enumerate(buckets):
            clients[i % NODES].create_bucket(Bucket=bucket)
            original[bucket] = payload(500 + i, seed=i)
            put(clients[(i + 1) % NODES], bucket, "pre", original[bucket])()

        started, seen = cut_and_wait(cluster, side_a, side_b)
        run = Outcomes()

        # Each bucket's records live in one partition: exactly one side
        # holds two of its three replicas and can read it.
        readable = {}
        for n, bucket in enumerate(buckets):
            ok_sides = []
            for side, members in sides.items():
                via = members[n % len(members)]
                outcome, got = run(side, f"get {bucket}/pre via node{via}",
                                   get(clients[via], bucket, "pre"))
                if outcome == "ok":
                    assert got == original[bucket], bucket
                    ok_sides.append(side)
            assert len(ok_sides) == 1, (bucket, ok_sides)
            readable[bucket] = ok_sides[0]

        # Writes: a new key per side, and the same existing key overwritten
        # from both sides with different bytes.
        acked = {}      # (bucket, key) -> body
        attempted = {}  # (bucket, key) -> [bodies that failed]
        successes = {"A": set(), "B": set()}
        for n, bucket in enumerate(buckets):
            for side, members in sides.items():
                via = members[(n + 1) % len(members)]
                for key, body in ((f"new-{side}",
                                   payload(700 + n, seed=f"{side}{n}")),
                                  ("pre", f"{bucket} from {side}".encode())):
                    outcome, _ = run(side, f"put {bucket}/{key} via "
                                     f"node{via}",
                                     put(clients[via], bucket, key, body))
                    if outcome == "ok":
                        assert (bucket, key) not in acked, \
                            f"{bucket}/{key} acknowledged on both sides"
                        assert readable[bucket] == side, (bucket, key, side)
                        acked[(bucket, key)] = body
                        successes[side].add(bucket)
                    else:
                        attempted.setdefault((bucket, key), []).append(body)
        # The bucket directory has two replicas on one side only: the
        # other side cannot check that a bucket exists, so it writes
        # nothing (a node remembers an existing bucket for 2 s only, and
        # the failure detector took longer than that); the directory's
        # side writes exactly the buckets it can read.
        assert not (successes["A"] and successes["B"]), successes
        for side in sides:
            if successes[side]:
                assert successes[side] == {b for b in buckets
                                           if readable[b] == side}
        directory_side = ("A" if successes["A"] else
                          "B" if successes["B"] else "unknown")
        print(f"buckets readable on A: "
              f"{sum(1 for b in buckets if readable[b] == 'A')}, on B: "
              f"{sum(1 for b in buckets if readable[b] == 'B')}; bucket "
              f"directory writable on side {directory_side}; "
              f"requests during the partition: {run.summary()}; slowest "
              f"{run.slowest:.2f}s; partition lasted "
              f"{time.time() - started:.1f}s")

        heal_and_wait(cluster, side_a, side_b)
        for node, client in zip(nodes, clients):
            for bucket in buckets:
                expected = {"pre": acked.get((bucket, "pre"),
                                             original[bucket])}
                for side in sides:
                    if (bucket, f"new-{side}") in acked:
                        expected[f"new-{side}"] = acked[(bucket,
                                                         f"new-{side}")]
                for key in ("pre", "new-A", "new-B"):
                    got = read_or_none(client, bucket, key)
                    assert got == expected.get(key), \
                        (node.name, bucket, key, got and got[:40],
                         attempted.get((bucket, key)))
                assert list_keys(client, bucket) == sorted(expected), \
                    (node.name, bucket)
