"""Compute on real Docker Engines: two private dockerd processes (own sockets and data roots) are two
hosts of a `cloud dev` started with a platform operator. Images are tars built here from
busybox-static and imported through the REST API; nothing is pulled."""
import os
import shutil
import signal
import subprocess
import tarfile
import time

import pytest
import requests

from cloudtest import CLOUD_BIN, free_port
from controlhelpers import PASSWORD, new_email

pytestmark = pytest.mark.needs_binary


def wait_for(what, probe, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


class Dockerd:
    def __init__(self, root):
        self.root = root
        self.socket = str(root / "docker.sock")
        root.mkdir(parents=True)
        self.log = open(root / "dockerd.log", "w")
        # --iptables=false and no bridge: the engine must not touch the host's firewall or routes.
        self.proc = subprocess.Popen(
            ["dockerd", "--host", "unix://" + self.socket, "--data-root", str(root / "data"), "--exec-root", str(root / "exec"),
             "--pidfile", str(root / "docker.pid"), "--iptables=false", "--ip-masq=false", "--bridge=none",
             "--storage-driver", "overlay2"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for("dockerd", self.ping, timeout=60)

    def ping(self):
        r = subprocess.run(["curl", "-s", "--unix-socket", self.socket, "http://docker/_ping"], capture_output=True, text=True)
        return r.stdout == "OK"

    def containers(self):
        r = subprocess.run(["curl", "-s", "--unix-socket", self.socket, "http://docker/v1.41/containers/json?all=1"],
                           capture_output=True, text=True, check=True)
        import json
        return json.loads(r.stdout)

    def kill_container(self, container_id):
        subprocess.run(["curl", "-s", "-X", "POST", "--unix-socket", self.socket,
                        f"http://docker/v1.41/containers/{container_id}/kill"], check=True, capture_output=True)

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    if shutil.which("dockerd") is None:
        pytest.fail("dockerd is not installed (scripts/install-deps.sh installs docker.io)")
    root = tmp_path_factory.mktemp("engines")
    started = []
    try:
        for name in ["h1", "h2"]:
            started.append(Dockerd(root / name))
        yield started
    finally:
        for engine in started:
            engine.stop()


@pytest.fixture(scope="module")
def cloud(tmp_path_factory, engines):
    root = tmp_path_factory.mktemp("compute-dev")
    operator = new_email("ops")
    api_port, s3_port = free_port(), free_port()
    log = open(root / "cloud.log", "w")
    proc = subprocess.Popen(
        [CLOUD_BIN, "dev", "--data-dir", str(root / "data"), "--platform-admin", operator,
         "--api-address", f"127.0.0.1:{api_port}", "--s3-address", f"127.0.0.1:{s3_port}"],
        stdout=log, stderr=subprocess.STDOUT)
    api = f"http://127.0.0.1:{api_port}"
    try:
        wait_for("cloud dev", lambda: _ready(api), timeout=90)
        requests.post(f"{api}/auth/register", json={"email": operator, "name": "Ops", "password": PASSWORD}).raise_for_status()
        key = requests.post(f"{api}/auth/login", json={"email": operator, "password": PASSWORD}).json()["api_key"]
        yield api, {"X-API-Key": key}
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def _ready(api):
    try:
        return requests.get(f"{api}/health/ready", timeout=2).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture(scope="module")
def busybox_tar(tmp_path_factory):
    root = tmp_path_factory.mktemp("rootfs")
    rootfs = root / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    shutil.copy("/bin/busybox", rootfs / "bin" / "busybox")
    for applet in ["sh", "echo", "sleep", "cat", "yes"]:
        os.symlink("busybox", rootfs / "bin" / applet)
    path = root / "busybox.tar"
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        tar.add(rootfs, arcname=".")
    return path.read_bytes()


def instance(api, h, name):
    return requests.get(f"{api}/compute/instances/{name}", headers=h).json()


def settled(api, h, name, passing):
    return wait_for(f"{name} to leave {passing}", lambda: (lambda s: s if s["status"] not in passing else None)(instance(api, h, name)))


def test_instances_on_two_hosts(cloud, engines, busybox_tar):
    api, h = cloud
    for name, engine in zip(["h1", "h2"], engines):
        r = requests.post(f"{api}/compute/hosts", headers=h, json={"name": name, "docker_socket": "unix://" + engine.socket})
        assert r.status_code == 201, r.text
        assert r.json()["status"] == "ready" and r.json()["cpus"] >= 1
    r = requests.post(f"{api}/compute/hosts", headers=h, json={"name": "gone", "docker_socket": "unix:///nonexistent/docker.sock"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "host_unreachable", r.text

    r = requests.put(f"{api}/compute/images/busybox", headers={**h, "Content-Type": "application/x-tar"}, data=busybox_tar)
    assert r.status_code == 201, r.text
    r = requests.put(f"{api}/compute/images/junk", headers={**h, "Content-Type": "application/x-tar"}, data=b"not a tar" * 200)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_image", r.text

    for n in range(4):
        r = requests.post(f"{api}/compute/instances", headers=h, json={
            "name": f"web{n}", "image": "busybox", "type": "nano",
            "command": ["sh", "-c", f"echo hello from web{n}; exec sleep 3600"]})
        assert r.status_code == 201, r.text
        assert r.json()["status"] == "pending"
    hosts = []
    for n in range(4):
        s = settled(api, h, f"web{n}", ("pending", "provisioning"))
        assert s["status"] == "ready", s
        hosts.append(s["host"])
    # Spread: two on each engine, and each engine really runs them.
    assert sorted(hosts) == ["h1", "h1", "h2", "h2"], hosts
    for name, engine in zip(["h1", "h2"], engines):
        running = [c for c in engine.containers() if c["State"] == "running" and "cloud.instance" in c["Labels"]]
        assert len(running) == 2, running

    logs = wait_for("logs", lambda: requests.get(f"{api}/compute/instances/web0/logs", headers=h).json()["lines"])
    assert [line["text"] for line in logs] == ["hello from web0"]
    since = logs[-1]["time"]
    assert requests.get(f"{api}/compute/instances/web0/logs", headers=h, params={"since": since}).json()["lines"] == []

    # Bad input: a 4xx with a message, nothing made.
    for body, status, code in [({"name": "x1", "image": "nope"}, 404, "image_not_found"),
                               ({"name": "x2", "image": "busybox", "type": "huge"}, 400, "unknown_instance_type"),
                               ({"name": "web0", "image": "busybox"}, 409, "instance_exists"),
                               ({"name": "Bad_Name", "image": "busybox"}, 400, "invalid_request")]:
        r = requests.post(f"{api}/compute/instances", headers=h, json=body)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), r.text
    r = requests.delete(f"{api}/compute/images/busybox", headers=h)
    assert r.status_code == 409 and r.json()["error"]["code"] == "image_in_use"

    # Stop, start, reboot.
    assert requests.post(f"{api}/compute/instances/web1/stop", headers=h).json()["status"] == "stopping"
    assert settled(api, h, "web1", ("stopping",))["status"] == "stopped"
    r = requests.post(f"{api}/compute/instances/web1/reboot", headers=h)
    assert r.status_code == 409 and r.json()["error"]["code"] == "invalid_state"
    assert requests.post(f"{api}/compute/instances/web1/start", headers=h).json()["status"] == "starting"
    assert settled(api, h, "web1", ("starting",))["status"] == "ready"

    # A process killed behind the cloud's back: the host check reports it stopped with its exit code.
    victim = instance(api, h, "web2")
    engine = engines[["h1", "h2"].index(victim["host"])]
    engine.kill_container(victim["container_id"])
    s = wait_for("web2 stopped", lambda: (lambda s: s if s["status"] == "stopped" else None)(instance(api, h, "web2")), timeout=30)
    assert "exit" in s["status_reason"], s

    # An engine refusal fails the instance with the engine's reason and leaves no container.
    r = requests.post(f"{api}/compute/instances", headers=h, json={"name": "broken", "image": "busybox", "command": ["/no/such/binary"]})
    assert r.status_code == 201
    s = settled(api, h, "broken", ("pending", "provisioning"))
    assert s["status"] == "failed" and s["status_reason"].startswith("docker:"), s
    for e in engines:
        assert not [c for c in e.containers() if c["Labels"].get("cloud.instance") == s["id"]]

    # Delete everything: the containers go, the instances go, the host can be removed.
    for name in ["web0", "web1", "web2", "web3", "broken"]:
        assert requests.delete(f"{api}/compute/instances/{name}", headers=h).status_code == 202
    for name in ["web0", "web1", "web2", "web3", "broken"]:
        wait_for(f"{name} gone", lambda: requests.get(f"{api}/compute/instances/{name}", headers=h).status_code == 404)
    for e in engines:
        assert not [c for c in e.containers() if "cloud.instance" in c["Labels"]]
    assert requests.delete(f"{api}/compute/images/busybox", headers=h).status_code == 204
    assert requests.delete(f"{api}/compute/hosts/h2", headers=h).status_code == 204
