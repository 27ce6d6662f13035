"""Anti-entropy and rebalancing between real `cloud node` processes.

A node that was away while writes, overwrites and deletes happened gets
them back from the other replicas (no hints exist with three nodes and
N=3: every node is an owner); afterwards each node alone, started with
`--read-quorum 1`, serves every object: every partition is back to N
replicas. A fourth node that joins three receives its share of the data and
the old owners drop what they no longer own.
"""
import time
from pathlib import Path

import botocore
import pytest

from cloudtest import error_code, new_credentials, payload
from clustertest import Cluster

pytestmark = [pytest.mark.needs_binary]

REPAIR = ["--repair-interval", "1"]


def metric(node, name):
    return node.metrics().get(name, 0)


def block_bytes(node):
    root = Path(node.data_dir) / "blocks"
    return sum(p.stat().st_size for p in root.glob("*/*") if p.is_file())


def wait_repaired(nodes, timeout=90):
    """Until two further repair rounds on every node found nothing out of
    sync and nothing left to move or hand back."""
    deadline = time.time() + timeout
    start = {n.name: metric(n, "cloud_repair_rounds_total") for n in nodes}
    began = time.time()
    while True:
        values = {n.name: n.metrics() for n in nodes}
        done = all(
            v.get("cloud_repair_rounds_total", 0) >= start[name] + 2
            and v.get("cloud_partitions_out_of_sync", 1) == 0
            and v.get("cloud_rebalance_partitions_pending", 1) == 0
            and v.get("cloud_hints_pending", 1) == 0
            for name, v in values.items())
        if done:
            return time.time() - began
        assert time.time() < deadline, f"repair did not finish: {values}"
        time.sleep(0.5)


def put(client, bucket, key, body):
    client.put_object(Bucket=bucket, Key=key, Body=body)


def get(client, bucket, key):
    return client.get_object(Bucket=bucket, Key=key)["Body"].read()


def check_contents(node, bucket, expected, deleted):
    client = node.client()
    for key, body in expected.items():
        assert get(client, bucket, key) == body, (node.name, key)
    for key in deleted:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            client.get_object(Bucket=bucket, Key=key)
        assert error_code(e.value) == "NoSuchKey", (node.name, key)
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket, MaxKeys=1000).get("Contents", [])]
    assert sorted(keys) == sorted(expected), node.name


@pytest.mark.deadline(300)
def test_a_node_that_missed_writes_gets_them_back_and_each_node_alone_serves_everything(tmp_path):
    ak, sk = new_credentials()
    cluster = Cluster(tmp_path, 3, ak, sk, extra=REPAIR)
    try:
        cluster.start()
        a, b, c = cluster.nodes
        client = a.client()
        client.create_bucket(Bucket="repair")
        expected = {f"old{i}": payload(200 + 300_000 * (i % 2), seed=f"old{i}") for i in range(10)}
        for key, body in expected.items():
            put(client, "repair", key, body)

        c.stop()  # SIGTERM: c leaves; with three nodes there is no handoff node, so no hints
        cluster.wait_state(a, "node2", "left", timeout=30)
        for i in range(15):
            key = f"new{i}"
            expected[key] = payload(100 + 700_000 * (i % 3 == 0), seed=key)
            put(cluster.nodes[i % 2].client(), "repair", key, expected[key])
        for i in range(3):
            expected[f"old{i}"] = payload(5000 + i, seed=f"overwrite{i}")
            put(b.client(), "repair", f"old{i}", expected[f"old{i}"])
        deleted = [f"old{i}" for i in range(3, 6)]
        for key in deleted:
            client.delete_object(Bucket="repair", Key=key)
            del expected[key]
        assert metric(a, "cloud_hints_pending") == 0

        c.start(join=[a.gossip])
        cluster.wait_converged()
        took = wait_repaired(cluster.nodes)
        print(f"repaired in {took:.1f}s; node2 repaired "
              f"{metric(c, 'cloud_repair_records_total'):.0f} records, "
              f"{metric(c, 'cloud_repair_blocks_total'):.0f} blocks")
        assert metric(c, "cloud_repair_records_total") + metric(a, "cloud_repair_records_total") \
            + metric(b, "cloud_repair_records_total") >= 21  # 15 new, 3 overwritten, 3 deleted

        # Every node holds every partition (N=3 of 3): each alone serves everything.
        for node in cluster.nodes:
            node.stop()
        for node in cluster.nodes:
            node.start(extra=["--read-quorum", "1", "--write-quorum", "1"])
            try:
                check_contents(node, "repair", expected, deleted)
            finally:
                node.stop()
    finally:
        cluster.shutdown()


@pytest.mark.deadline(300)
def test_a_fourth_node_receives_its_share_and_old_owners_drop_theirs(tmp_path):
    ak, sk = new_credentials()
    cluster = Cluster(tmp_path, 4, ak, sk, extra=REPAIR)
    try:
        a, b, c, d = cluster.nodes
        cluster.start_first(3)
        client = a.client()
        client.create_bucket(Bucket="grow")
        expected = {f"k{i:03d}": payload(150_000 + 97 * i, seed=i) for i in range(60)}
        for key, body in expected.items():
            put(client, "grow", key, body)
        before = {n.name: block_bytes(n) for n in (a, b, c)}
        total = sum(before.values())
        moved_before = sum(metric(n, "cloud_repair_bytes_total") for n in (a, b, c))

        d.start(join=[b.gossip])
        cluster.wait_converged(alive=4, layout_nodes=4)
        took = wait_repaired(cluster.nodes, timeout=120)
        after = {n.name: block_bytes(n) for n in cluster.nodes}
        moved = sum(metric(n, "cloud_repair_bytes_total") for n in cluster.nodes) - moved_before
        # The new node's share is what the ring gives it: zones are node index % 3 here, so node3
        # (zone0) shares zone0's replicas with node0 rather than taking a quarter of everything.
        layout = a.status()["layout"]
        share = {n["id"]: n["partitions"] for n in layout["nodes"]}["node3"]
        ideal = total * share / (layout["replication"] * layout["partitions"])
        print(f"rebalanced in {took:.1f}s: blocks before {before}, after {after}; "
              f"moved {moved} bytes, ideal {ideal:.0f}, ratio {moved / ideal:.2f}")
        # The new node holds about a quarter of the stored bytes, the old ones dropped what moved,
        # and nothing was lost or duplicated: still three copies of everything.
        assert 0.6 * ideal < after["node3"] < 1.4 * ideal
        assert after["node0"] < before["node0"]
        assert abs(sum(after.values()) - total) < 0.02 * total
        assert moved < 1.5 * ideal

        status = a.status()
        assert all(m.get("partitionsToMove") == 0 for m in status["members"]), status["members"]
        text = a.cli("storage", "status").stdout
        assert "nothing to move" in text
        for node in cluster.nodes:
            check_contents(node, "grow", expected, [])
    finally:
        cluster.shutdown()
