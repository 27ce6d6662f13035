"""Scrub on a cluster of real `cloud node` processes.

Three nodes (N=3, every node holds every block) scrub every second. On one
node a block file is damaged (a flipped byte) and another deleted: scrub
finds the damaged copy, moves it to <data-dir>/quarantine and puts an
intact copy from another node in its place (byte for byte what the others
hold), and the metrics count it. A deleted file is not a corruption (it is
a missing copy, which anti-entropy restores); the object stays readable.
"""
import time
from pathlib import Path

import pytest

from cloudtest import new_credentials, payload
from clustertest import Cluster

pytestmark = [pytest.mark.needs_binary]


def block_files(node):
    root = node.data_dir / "blocks"
    return {p.name: p for p in root.glob("*/*") if len(p.name) == 64}


def wait_for(what, predicate, timeout=60, interval=0.3):
    deadline = time.time() + timeout
    while True:
        result = predicate()
        if result:
            return result
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)


@pytest.mark.deadline(240)
def test_scrub_replaces_a_damaged_block_copy_from_another_node(tmp_path):
    ak, sk = new_credentials()
    cluster = Cluster(tmp_path, 3, ak, sk,
                      extra=["--scrub-interval", "1",
                             "--scrub-rate-mib", "64"])
    try:
        cluster.start()
        nodes = cluster.nodes
        client = nodes[0].client()
        client.create_bucket(Bucket="scrubbed")
        objects = {f"o{i}": payload(1_500_000 + i, seed=f"scrub{i}")
                   for i in range(4)}
        for key, body in objects.items():
            client.put_object(Bucket="scrubbed", Key=key, Body=body)
        # Every node holds every block (N=3); the third copy of each lands
        # just after the write returned.
        names = wait_for("every block on every node", lambda: (
            set(block_files(nodes[0])) if all(
                set(block_files(n)) == set(block_files(nodes[0]))
                and len(block_files(n)) >= 8 for n in nodes) else None))
        names = sorted(names)
        damaged, deleted = names[0], names[1]
        victim = nodes[1]
        # The totals below are cumulative: wait until the victim's scrub has been over every block
        # once, so that "checked every block" does not depend on how far a pass got before the repair.
        wait_for("a scrub pass over every block of the victim", lambda: (
            victim.metrics().get("cloud_scrub_blocks_checked_total", 0) >= len(names)) or None)
        path = block_files(victim)[damaged]
        good = block_files(nodes[0])[damaged].read_bytes()
        before = victim.metrics()
        with open(path, "r+b") as f:
            f.seek(len(good) // 2)
            byte = f.read(1)
            f.seek(len(good) // 2)
            f.write(bytes([byte[0] ^ 0x40]))
        block_files(victim)[deleted].unlink()
        assert path.read_bytes() != good

        after = wait_for("scrub to repair the damaged copy", lambda: (
            lambda m: m if m.get("cloud_scrub_repaired_total", 0)
            > before.get("cloud_scrub_repaired_total", 0) else None)(
                victim.metrics()))
        assert path.read_bytes() == good, "the copy is not the intact one"
        assert after["cloud_scrub_corruptions_total"] == \
            before.get("cloud_scrub_corruptions_total", 0) + 1
        assert after["cloud_scrub_repaired_total"] == \
            before.get("cloud_scrub_repaired_total", 0) + 1
        assert after.get("cloud_scrub_unrepairable_total", 0) == 0
        assert after["cloud_scrub_blocks_checked_total"] >= len(names) - 1
        assert after["cloud_scrub_bytes_checked_total"] > 0
        assert 0 <= after["cloud_scrub_pass_progress"] <= 1
        quarantined = list((victim.data_dir / "quarantine").iterdir())
        assert [q.name.split(".")[0] for q in quarantined] == [damaged]
        assert quarantined[0].read_bytes() != good
        log = Path(victim.log_path).read_text(errors="replace")
        assert damaged in log and "intact copy" in log

        # Another pass over the node finds nothing new: the deleted file is
        # a missing copy, not a corruption.
        passes = after["cloud_scrub_passes_total"]
        wait_for("two more scrub passes", lambda: victim.metrics()[
            "cloud_scrub_passes_total"] >= passes + 2)
        final = victim.metrics()
        assert final["cloud_scrub_corruptions_total"] == \
            after["cloud_scrub_corruptions_total"]
        assert final["cloud_scrub_pass_progress"] == 1
        # Every object reads back through the scrubbed node.
        c1 = victim.client()
        for key, body in objects.items():
            assert c1.get_object(Bucket="scrubbed",
                                 Key=key)["Body"].read() == body
        # The other nodes found nothing to repair.
        for node in (nodes[0], nodes[2]):
            assert node.metrics()["cloud_scrub_corruptions_total"] == 0
            assert node.metrics()["cloud_scrub_passes_total"] >= 1
    finally:
        cluster.shutdown()
