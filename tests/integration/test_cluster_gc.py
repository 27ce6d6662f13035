"""Cluster-wide garbage collection with three real nodes and tiny settings.

Objects are put, some deleted, some overwritten, one copied and its source
deleted, and a multipart upload is left unfinished; with `--gc-interval 1
--gc-grace 3 --upload-expiry 5` (and anti-entropy every second, pulling
whatever one owner has and another lacks) every node's block directory shrinks to
exactly the blocks of the live objects (N = 3 on three nodes: every node holds
every block), every live object reads back intact, and the metrics count what
was collected.
"""
import hashlib
import time

import pytest

from cloudtest import new_credentials, payload
from clustertest import Cluster

pytestmark = [pytest.mark.needs_binary]

BLOCK = 1 << 20


def block_hashes(data):
    """The names of the block files of an object (1 MiB blocks)."""
    return {hashlib.sha256(data[i:i + BLOCK]).hexdigest()
            for i in range(0, len(data), BLOCK)}


def block_files(node):
    root = node.data_dir / "blocks"
    return {p.name for p in root.glob("*/*") if p.is_file()}


def total(cluster, name):
    return sum(node.metrics()[name] for node in cluster.nodes)


@pytest.mark.deadline(300)
def test_unreferenced_blocks_tombstones_and_stale_uploads_are_collected(
        tmp_path):
    ak, sk = new_credentials()
    cluster = Cluster(tmp_path, 3, ak, sk,
                      extra=["--gc-interval", "1", "--gc-grace", "3",
                             "--upload-expiry", "5", "--repair-interval", "1"])
    try:
        cluster.start()
        clients = [node.client() for node in cluster.nodes]
        c = clients[0]
        c.create_bucket(Bucket="gc-test")

        live = {
            "keep-a": payload(2 * BLOCK + 12345, seed=1),
            "keep-b": payload(BLOCK + 1, seed=2),
            "small": payload(3000, seed=3),  # inline: no block
        }
        for i, (key, body) in enumerate(live.items()):
            clients[i % 3].put_object(Bucket="gc-test", Key=key, Body=body)
        dead = {"dead-a": payload(2 * BLOCK, seed=4),
                "dead-b": payload(BLOCK + 500, seed=5)}
        for key, body in dead.items():
            clients[1].put_object(Bucket="gc-test", Key=key, Body=body)
        old_version = payload(BLOCK + 77, seed=6)
        clients[2].put_object(Bucket="gc-test", Key="over", Body=old_version)
        live["over"] = payload(BLOCK + 99, seed=7)
        clients[0].put_object(Bucket="gc-test", Key="over", Body=live["over"])
        # A copy outlives its deleted source: the blocks stay.
        source = payload(BLOCK + 4242, seed=8)
        clients[0].put_object(Bucket="gc-test", Key="source", Body=source)
        clients[1].copy_object(Bucket="gc-test", Key="copy",
                               CopySource={"Bucket": "gc-test", "Key": "source"})
        live["copy"] = source
        clients[2].delete_object(Bucket="gc-test", Key="source")
        for key in dead:
            clients[2].delete_object(Bucket="gc-test", Key=key)
        # A multipart upload never completed: aborted once it is stale.
        upload = c.create_multipart_upload(Bucket="gc-test", Key="stale")
        part = payload(BLOCK + 3, seed=9)
        c.upload_part(Bucket="gc-test", Key="stale", UploadId=upload["UploadId"],
                      PartNumber=1, Body=part)

        expected = set()
        for body in live.values():
            if len(body) > 16 << 10:
                expected |= block_hashes(body)
        garbage = (block_hashes(old_version) | block_hashes(part)
                   | set().union(*(block_hashes(b) for b in dead.values())))
        assert not expected & garbage

        deadline = time.time() + 120
        while time.time() < deadline:
            if all(block_files(n) == expected for n in cluster.nodes) and \
                    total(cluster, "cloud_gc_tombstones_collected_total") \
                    >= 3 * (len(dead) + 1):
                break
            time.sleep(0.5)
        for node in cluster.nodes:
            files = block_files(node)
            assert files == expected, (
                node.name, len(files), len(expected),
                len(files & garbage), len(expected - files),
                node.log_tail(20))

        for client in clients:
            for key, body in live.items():
                got = client.get_object(Bucket="gc-test", Key=key)["Body"].read()
                assert got == body, key
            keys = sorted(o["Key"] for o in
                          client.list_objects_v2(Bucket="gc-test")["Contents"])
            assert keys == sorted(live)
            assert client.list_multipart_uploads(Bucket="gc-test").get(
                "Uploads", []) == []

        # Every copy of every garbage block was deleted (some more than once:
        # anti-entropy, every second here, may copy a block back from an
        # owner whose copy was a little younger than the cutoff, and the copy
        # goes again one grace period later).
        assert total(cluster, "cloud_gc_blocks_collected_total") >= \
            3 * len(garbage)
        assert total(cluster, "cloud_gc_bytes_collected_total") > \
            3 * len(garbage) * BLOCK // 2
        assert total(cluster, "cloud_gc_uploads_aborted_total") == 1
        # The tombstones of dead-a, dead-b and source on each of 3 nodes
        # (the aborted upload's tombstones may still be young).
        assert total(cluster, "cloud_gc_tombstones_collected_total") >= 9
        for node in cluster.nodes:
            values = node.metrics()
            assert values["cloud_gc_runs_total"] >= 1
            assert "cloud_gc_skipped_total" in values
    finally:
        cluster.shutdown()
