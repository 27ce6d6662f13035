"""A node whose disk is full or read-only, in a cluster of real nodes.

Four nodes (N=3, W=2). One starts with a --min-free-mib larger than any
disk, so its disk counts as full from the start: `cloud storage status`
shows it `full` everywhere, it takes no data at all, writes go on (hinted
copies for it go to a handoff node) and it still serves reads as a
coordinator. Restarted with a normal setting it takes the hinted writes.

As root, a node's data directory on a tmpfs is made read-only under the
running node (a read-only bind mount over it): the node reports
`readonly`, writes go on around it, and once the mount is gone it takes
writes again.
"""
import os
import subprocess
import time

import pytest

from cloudtest import new_credentials, payload
from clustertest import Cluster

pytestmark = [pytest.mark.needs_binary]


def disk_states(observer):
    return {m["id"]: m.get("disk") for m in observer.status()["members"]}


def wait_for(what, predicate, timeout=60, interval=0.3):
    deadline = time.time() + timeout
    last = None
    while True:
        try:
            last = predicate()
        except Exception as e:  # a node restarting
            last = e
        if last and not isinstance(last, Exception):
            return last
        assert time.time() < deadline, f"timed out waiting for {what}: {last}"
        time.sleep(interval)


def hints_pending(nodes):
    return sum(n.metrics()["cloud_hints_pending"] for n in nodes)


def block_count(node):
    return sum(1 for p in (node.data_dir / "blocks").glob("*/*")
               if len(p.name) == 64)


@pytest.mark.deadline(300)
def test_a_full_node_takes_no_writes_and_gets_its_hints_once_it_has_room(
        tmp_path):
    ak, sk = new_credentials()
    cluster = Cluster(tmp_path, 4, ak, sk)
    nodes = cluster.nodes
    full = nodes[3]
    full.extra = ["--min-free-mib", str(1 << 30)]  # 1 PiB: more than any disk
    try:
        cluster.start()
        for observer in nodes:
            wait_for(f"{observer.name} to see node3 full", lambda: disk_states(
                observer) == {"node0": "ok", "node1": "ok", "node2": "ok",
                              "node3": "full"})
        table = nodes[0].cli("storage", "status").stdout
        assert "DISK" in table
        assert any(line.startswith("node3") and " full " in line
                   for line in table.splitlines()), table
        m = full.metrics()
        assert m["cloud_disk_state"] == 1 and m["cloud_disk_free_bytes"] > 0
        assert nodes[0].metrics()["cloud_disk_state"] == 0
        log = full.log_tail(200)
        assert "takes no writes" in log and "disk full" in log

        client = nodes[0].client()
        client.create_bucket(Bucket="roomy")
        objects = {f"f{i}": payload(200_000 + i, seed=f"full{i}")
                   for i in range(12)}
        for key, body in objects.items():
            client.put_object(Bucket="roomy", Key=key, Body=body)
        # Through the full node as coordinator: writes and reads work.
        c3 = full.client()
        c3.put_object(Bucket="roomy", Key="via-full", Body=b"x" * 100_000)
        objects["via-full"] = b"x" * 100_000
        for key, body in objects.items():
            assert c3.get_object(Bucket="roomy", Key=key)["Body"].read() == body
        assert block_count(full) == 0, "the full node stored data"
        held = wait_for("hints for the full node",
                        lambda: hints_pending(nodes[:3]))
        assert held > 0

        # Restarted with room to spare, it gets the hinted writes.
        full.kill()
        cluster.wait_state(nodes[0], "node3", "dead", timeout=60)
        full.extra = []
        full.start(join=[nodes[0].gossip])
        for observer in nodes:
            wait_for(f"{observer.name} to see node3 ok", lambda: disk_states(
                observer).get("node3") == "ok")
        wait_for("the hints to be handed back",
                 lambda: hints_pending(nodes[:3]) == 0, timeout=90)
        assert block_count(full) > 0
        assert full.metrics()["cloud_disk_state"] == 0
        for key, body in objects.items():
            assert full.client().get_object(
                Bucket="roomy", Key=key)["Body"].read() == body
    finally:
        cluster.shutdown()


def _mount(*args):
    return subprocess.run(["mount", *args], capture_output=True, text=True)


@pytest.mark.deadline(300)
@pytest.mark.skipif(os.geteuid() != 0,
                    reason="mounting a tmpfs and making it read-only needs "
                           "root")
def test_a_read_only_data_directory_takes_no_writes_until_it_is_writable(
        tmp_path):
    ak, sk = new_credentials()
    cluster = Cluster(tmp_path, 4, ak, sk)
    nodes = cluster.nodes
    victim = nodes[3]
    victim.data_dir.mkdir(parents=True)
    result = _mount("-t", "tmpfs", "-o", "size=256m", "tmpfs",
                    str(victim.data_dir))
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    bound = False
    try:
        victim.extra = ["--min-free-mib", "1"]
        cluster.start()
        client = nodes[0].client()
        client.create_bucket(Bucket="frozen")
        client.put_object(Bucket="frozen", Key="before", Body=b"b" * 50_000)
        # A read-only bind mount over the running node's data directory: a
        # remount of the tmpfs itself is refused while the node has files
        # open for writing, as it would be on a real disk.
        assert _mount("--bind", str(victim.data_dir),
                      str(victim.data_dir)).returncode == 0
        bound = True
        result = _mount("-o", "remount,bind,ro", str(victim.data_dir))
        assert result.returncode == 0, result.stderr
        for observer in nodes:
            wait_for(f"{observer.name} to see node3 read-only",
                     lambda: disk_states(observer).get("node3") == "readonly")
        assert victim.metrics()["cloud_disk_state"] == 2
        assert "read-only filesystem" in victim.log_tail(200)
        during = {f"d{i}": payload(300_000 + i, seed=f"ro{i}") for i in range(8)}
        for key, body in during.items():
            client.put_object(Bucket="frozen", Key=key, Body=body)
        c3 = victim.client()
        for key, body in during.items():
            assert c3.get_object(Bucket="frozen", Key=key)["Body"].read() == body
        assert c3.get_object(Bucket="frozen",
                             Key="before")["Body"].read() == b"b" * 50_000
        held = wait_for("hints for the read-only node",
                        lambda: hints_pending(nodes[:3]))
        assert held > 0

        assert subprocess.run(["umount", str(victim.data_dir)]).returncode == 0
        bound = False
        for observer in nodes:
            wait_for(f"{observer.name} to see node3 ok",
                     lambda: disk_states(observer).get("node3") == "ok")
        wait_for("the hints to be handed back",
                 lambda: hints_pending(nodes[:3]) == 0, timeout=90)
        assert victim.metrics()["cloud_disk_state"] == 0
    finally:
        cluster.shutdown()
        if bound:
            subprocess.run(["umount", str(victim.data_dir)])
        subprocess.run(["umount", str(victim.data_dir)])
