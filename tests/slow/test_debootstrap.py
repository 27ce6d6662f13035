"""Slow, outside `make test` (it downloads a minimal Debian from the mirror, a few minutes): `cloud
images import --debootstrap` makes an image that runs on a real engine. `make test-slow` runs it."""
import json
import os
import sys
import time

import pytest
import requests

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))

from test_compute import Dev, Dockerd, cli, wait_for  # noqa: E402

SUITE = os.environ.get("CLOUD_DEBOOTSTRAP_SUITE", "bookworm")


def test_a_debootstrapped_debian_runs_as_an_instance(tmp_path):
    engine = Dockerd(tmp_path / "h1")
    (tmp_path / "dev").mkdir()
    dev = Dev(tmp_path / "dev")
    try:
        dev.start_as_operator()
        env = dict(os.environ, HOME=str(tmp_path), CLOUD_CONFIG=str(tmp_path / "config"), CLOUD_API_URL=dev.api, CLOUD_API_KEY=dev.key)
        cli(["hosts", "add", "h1", "--docker-socket", "unix://" + engine.socket], env)
        started = time.monotonic()
        out = cli(["images", "import", "debian", "--debootstrap", SUITE, "--cmd", "sleep 3600", "-o", "json"], env, timeout=1800)
        took = time.monotonic() - started
        image = json.loads(out.stdout)
        print(f"debootstrap {SUITE} minbase: {image['size_bytes']} bytes in {took:.0f} s")
        assert 50 << 20 < image["size_bytes"] < 512 << 20, image
        cli(["instances", "create", "deb", "--image", "debian", "--type", "small", "--wait"], env, timeout=600)
        r = requests.post(f"{dev.api}/compute/instances/deb/exec", headers=dev.h, json={"command": ["cat", "/etc/debian_version"]})
        assert r.status_code == 200 and r.json()["exit_code"] == 0, r.text
        version = " ".join(line["text"] for line in r.json()["lines"]).strip()
        assert version[:2].isdigit() or "/sid" in version, version
        r = requests.post(f"{dev.api}/compute/instances/deb/exec", headers=dev.h, json={"command": ["ls", "/var/cache/apt/archives"]})
        assert sorted(line["text"] for line in r.json()["lines"]) in ([], ["lock"], ["partial"], ["lock", "partial"]), r.text
        cli(["instances", "delete", "deb", "--wait"], env)
    finally:
        dev.stop()
        engine.stop()
    assert not [p for p in os.listdir("/tmp") if p.startswith("cloud-debootstrap-")], "the debootstrap directory is removed"
