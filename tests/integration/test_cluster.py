"""A storage cluster of real `cloud node` processes on 127.0.0.x.

Objects written through one node are read through every other; a node
killed with SIGKILL is declared dead while reads and writes go on, and
rejoins with a new incarnation; writes that cannot reach W replicas fail
with 503 and leave nothing behind; SIGTERM leaves the gossip gracefully.
"""
import random
import time

import botocore
import pytest

from cloudtest import error_code, http_status, new_credentials, payload
from clustertest import Cluster

pytestmark = [pytest.mark.needs_binary]


def running_cluster(tmp_path, count):
    ak, sk = new_credentials()
    cluster = Cluster(tmp_path, count, ak, sk)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.shutdown()


@pytest.fixture
def cluster5(tmp_path):
    yield from running_cluster(tmp_path, 5)


@pytest.fixture
def cluster3(tmp_path):
    yield from running_cluster(tmp_path, 3)


def put(client, bucket, key, body):
    return client.put_object(Bucket=bucket, Key=key, Body=body)


def get(client, bucket, key):
    return client.get_object(Bucket=bucket, Key=key)["Body"].read()


@pytest.mark.deadline(240)
def test_status_lists_every_member_and_the_layout(cluster5):
    status = cluster5.nodes[2].status()
    assert status["mode"] == "cluster"
    assert status["node"] == "node2"
    assert (status["replication"], status["writeQuorum"],
            status["readQuorum"]) == (3, 2, 2)
    members = {m["id"]: m for m in status["members"]}
    assert sorted(members) == [f"node{i}" for i in range(5)]
    for i, node in enumerate(cluster5.nodes):
        m = members[f"node{i}"]
        assert m["state"] == "alive"
        assert m["s3Address"] == node.hostport
        assert m["gossipAddress"] == node.gossip
        assert m["zone"] == f"zone{i % 3}"
        assert m["partitions"] > 0
    layout = status["layout"]
    assert len(layout["nodes"]) == 5 and layout["replication"] == 3
    # Every partition has N = 3 replicas.
    assert sum(n["partitions"] for n in layout["nodes"]) == \
        3 * layout["partitions"]
    table = cluster5.nodes[0].cli("storage", "status").stdout
    assert "node4" in table and "alive" in table


@pytest.mark.deadline(300)
def test_objects_written_through_one_node_are_read_through_every_other(
        cluster5):
    clients = [n.client() for n in cluster5.nodes]
    clients[0].create_bucket(Bucket="shared")
    rng = random.Random(5)
    objects = {}
    for i in range(24):
        size = rng.choice([0, 1, 1000, 20_000, 300_000, 3 * 1024 * 1024 + 7])
        body = payload(size, seed=i)
        key = f"dir{i % 3}/obj-{i}"
        put(clients[rng.randrange(5)], "shared", key, body)
        objects[key] = body
    for client in clients:
        for key, body in objects.items():
            assert get(client, "shared", key) == body, key
        listed = client.list_objects_v2(Bucket="shared")
        assert sorted(o["Key"] for o in listed["Contents"]) == sorted(objects)
        rolled = client.list_objects_v2(Bucket="shared", Delimiter="/")
        assert [p["Prefix"] for p in rolled["CommonPrefixes"]] == \
            ["dir0/", "dir1/", "dir2/"]
        assert [b["Name"] for b in client.list_buckets()["Buckets"]] == \
            ["shared"]
    # Overwrite through one node, delete through another: everyone agrees.
    put(clients[3], "shared", "dir0/obj-0", b"newer")
    clients[4].delete_object(Bucket="shared", Key="dir1/obj-1")
    for client in clients:
        assert get(client, "shared", "dir0/obj-0") == b"newer"
        with pytest.raises(botocore.exceptions.ClientError) as e:
            client.head_object(Bucket="shared", Key="dir1/obj-1")
        assert http_status(e.value) == 404


@pytest.mark.deadline(300)
def test_kill9_reads_and_writes_go_on_and_the_node_rejoins(cluster5):
    nodes = cluster5.nodes
    c0 = nodes[0].client()
    c0.create_bucket(Bucket="bbucket")
    before = {f"k{i}": payload(50_000 + i, seed=i) for i in range(10)}
    for key, body in before.items():
        put(c0, "bbucket", key, body)
    victim = nodes[3]
    old = {m["id"]: m for m in nodes[0].status()["members"]}["node3"]
    victim.kill()
    t0 = time.time()
    # Reads and writes go on through the others while it is down.
    during = {f"d{i}": payload(70_000 + i, seed=100 + i) for i in range(10)}
    for i, (key, body) in enumerate(during.items()):
        put(nodes[[0, 1, 2, 4][i % 4]].client(), "bbucket", key, body)
    for node in [nodes[1], nodes[4]]:
        client = node.client()
        for key, body in {**before, **during}.items():
            assert get(client, "bbucket", key) == body
    cluster5.wait_state(nodes[1], "node3", "dead", timeout=60)
    detected = time.time() - t0
    print(f"node3 declared dead {detected:.1f}s after SIGKILL")
    # Restart: a new process (uid) and incarnation, alive again, and it
    # serves everything, including what was written while it was down.
    victim.start(join=[nodes[0].gossip])
    member = cluster5.wait_state(nodes[0], "node3", "alive", timeout=60)
    assert member["uid"] != old["uid"]
    client = victim.client()
    for key, body in {**before, **during}.items():
        assert get(client, "bbucket", key) == body
    put(client, "bbucket", "after", b"back")
    assert get(nodes[2].client(), "bbucket", "after") == b"back"


@pytest.mark.deadline(240)
def test_writes_without_a_write_quorum_fail_cleanly(cluster3):
    a, b, c = cluster3.nodes
    ca = a.client()
    ca.create_bucket(Bucket="qbucket")
    put(ca, "qbucket", "kept", b"safe")
    b.kill()
    c.kill()
    with pytest.raises(botocore.exceptions.ClientError) as e:
        put(ca, "qbucket", "lost", payload(200_000))
    assert http_status(e.value) == 503
    assert error_code(e.value) == "ServiceUnavailable"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        get(ca, "qbucket", "kept")
    assert http_status(e.value) == 503
    b.start(join=[a.gossip])
    c.start(join=[a.gossip])
    cluster3.wait_converged()
    for node in cluster3.nodes:
        client = node.client()
        assert get(client, "qbucket", "kept") == b"safe"
        with pytest.raises(botocore.exceptions.ClientError) as e:
            client.head_object(Bucket="qbucket", Key="lost")
        assert http_status(e.value) == 404


@pytest.mark.deadline(180)
def test_sigterm_leaves_the_gossip_gracefully(cluster3):
    a, b, c = cluster3.nodes
    assert c.stop() == 0
    cluster3.wait_state(a, "node2", "left", timeout=20)
    cluster3.wait_state(b, "node2", "left", timeout=20)


@pytest.mark.deadline(240)
def test_layout_is_managed_by_the_operator_without_auto_layout(tmp_path):
    ak, sk = new_credentials()
    cluster = Cluster(tmp_path, 3, ak, sk, auto_layout=False)
    try:
        cluster.start()
        a = cluster.nodes[0]
        cluster.wait_converged(alive=3, layout_nodes=0)
        assert not a.ready()
        with pytest.raises(botocore.exceptions.ClientError) as e:
            a.client().create_bucket(Bucket="xbucket")
        assert http_status(e.value) == 503
        out = a.cli("storage", "layout", "add", "node0", "--zone", "r1",
                    "--capacity", "2T", "-y").stdout
        assert "Applied layout version" in out
        # The preview names the partitions that move to the new node.
        out = a.cli("storage", "layout", "add", "node1", "--zone", "r2",
                    "--capacity", "2T", "--dry-run").stdout
        assert "partitions change owners" in out and "-> node1" in out
        a.cli("storage", "layout", "add", "node1", "--zone", "r2",
              "--capacity", "2T", "-y")
        a.cli("storage", "layout", "add", "node2", "--zone", "r3",
              "--capacity", "4T", "-y")
        cluster.wait_converged(alive=3, layout_nodes=3)
        status = cluster.nodes[2].status()
        shares = {n["id"]: n["partitions"] for n in status["layout"]["nodes"]}
        assert shares["node2"] >= shares["node0"]
        c = cluster.nodes[2].client()
        c.create_bucket(Bucket="xbucket")
        put(c, "xbucket", "k", b"v")
        assert get(cluster.nodes[1].client(), "xbucket", "k") == b"v"
        bad = a.cli("storage", "layout", "remove", "nobody", "-y",
                    check=False)
        assert bad.returncode != 0 and "400" in bad.stderr
    finally:
        cluster.shutdown()


@pytest.mark.deadline(240)
def test_a_fourth_node_joins_and_everything_stays_readable(tmp_path):
    ak, sk = new_credentials()
    cluster = Cluster(tmp_path, 4, ak, sk)
    try:
        a, b, c, d = cluster.nodes
        cluster.start_first(3)
        client = a.client()
        client.create_bucket(Bucket="grow")
        objects = {f"k{i:03d}": payload(1000 + 97 * i, seed=i)
                   for i in range(60)}
        objects["big"] = payload(3 * 1024 * 1024, seed="big")
        for key, body in objects.items():
            put(client, "grow", key, body)
        before = a.status()["layout"]["version"]
        d.start(join=[b.gossip])
        cluster.wait_converged(alive=4, layout_nodes=4)
        status = d.status()
        assert status["layout"]["version"] > before
        assert {m["id"]: m["partitions"] for m in status["members"]}["node3"] > 0
        # Every partition changed at most one owner, so every read quorum
        # still reaches an old owner; reads through the new node see all.
        for node in cluster.nodes:
            c = node.client()
            for key, body in objects.items():
                assert get(c, "grow", key) == body, (node.name, key)
            keys = [o["Key"] for o in c.list_objects_v2(
                Bucket="grow", MaxKeys=1000)["Contents"]]
            assert sorted(keys) == sorted(objects)
    finally:
        cluster.shutdown()


def hints_pending(node):
    import urllib.request
    text = urllib.request.urlopen(f"{node.endpoint}/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith("cloud_hints_pending "):
            return int(float(line.split()[1]))
    raise AssertionError("no cloud_hints_pending in /metrics")


@pytest.mark.deadline(240)
def test_hinted_writes_are_handed_back_when_the_owner_returns(tmp_path):
    ak, sk = new_credentials()
    cluster = Cluster(tmp_path, 4, ak, sk)
    try:
        cluster.start()
        nodes = cluster.nodes
        client = nodes[0].client()
        client.create_bucket(Bucket="hinted")
        nodes[3].kill()
        cluster.wait_state(nodes[0], "node3", "dead", timeout=60)
        objects = {f"h{i}": payload(100_000 + i, seed=f"h{i}") for i in range(12)}
        for key, body in objects.items():
            put(client, "hinted", key, body)
        deadline = time.time() + 10
        while sum(hints_pending(n) for n in nodes[:3]) == 0 and time.time() < deadline:
            time.sleep(0.5)
        held = sum(hints_pending(n) for n in nodes[:3])
        assert held > 0, "no node holds hints for the dead owner"
        nodes[3].start(join=[nodes[0].gossip])
        deadline = time.time() + 60
        while sum(hints_pending(n) for n in nodes[:3]) > 0:
            assert time.time() < deadline, "hints were not handed back"
            time.sleep(0.5)
        c3 = nodes[3].client()
        for key, body in objects.items():
            assert get(c3, "hinted", key) == body
    finally:
        cluster.shutdown()
