"""Compute on real Docker Engines: two private dockerd processes (own sockets and data roots) are two
hosts of a `cloud dev` started with a platform operator. Images are tars built here from
busybox-static and imported through the REST API; nothing is pulled."""
import io
import json
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


class Dev:
    """A `cloud dev` with a platform operator; kill() and start() restart it on the same data and ports."""

    def __init__(self, root):
        self.root = root
        self.operator = new_email("ops")
        self.api_port, self.s3_port = free_port(), free_port()
        self.api = f"http://127.0.0.1:{self.api_port}"
        self.proc = None
        self.starts = 0

    def start(self):
        self.starts += 1
        self.log = open(self.root / f"cloud-{self.starts}.log", "w")
        self.proc = subprocess.Popen(
            [CLOUD_BIN, "dev", "--data-dir", str(self.root / "data"), "--platform-admin", self.operator,
             "--api-address", f"127.0.0.1:{self.api_port}", "--s3-address", f"127.0.0.1:{self.s3_port}"],
            stdout=self.log, stderr=subprocess.STDOUT)
        wait_for("cloud dev", lambda: _ready(self.api), timeout=90)

    def start_as_operator(self):
        """Starts it for the first time, registers the platform operator and logs in: `key` and `h` are its API key."""
        self.start()
        requests.post(f"{self.api}/auth/register", json={"email": self.operator, "name": "Ops", "password": PASSWORD}).raise_for_status()
        self.key = requests.post(f"{self.api}/auth/login", json={"email": self.operator, "password": PASSWORD}).json()["api_key"]
        self.h = {"X-API-Key": self.key}

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self.log.close()

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)
        self.log.close()
        # Volume mounts outlive the control plane by design (docs/services/compute.md); the test's go with it.
        unmount_below(self.root)


def unmount_below(root):
    """Lazily unmounts every mount below `root`, the deepest first (one that went with its parent's is fine)."""
    def below():
        return [line.split()[1] for line in open("/proc/self/mounts").read().splitlines() if line.split()[1].startswith(str(root) + "/")]
    for point in sorted(below(), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)
    assert below() == [], f"still mounted: {below()}"


@pytest.fixture(scope="module")
def dev(tmp_path_factory, engines):
    d = Dev(tmp_path_factory.mktemp("compute-dev"))
    try:
        d.start_as_operator()
        yield d
    finally:
        d.stop()


@pytest.fixture(scope="module")
def cloud(dev):
    return dev.api, {"X-API-Key": dev.key}


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

    # The service's counters are in the control plane's /metrics (swift-prometheus, one registry).
    metrics = requests.get(f"{api}/metrics").text
    counts = {line.split(" ")[0]: float(line.split(" ")[1]) for line in metrics.splitlines() if line.startswith("cloud_compute_provisions_total")}
    assert counts.get('cloud_compute_provisions_total{outcome="ready"}', 0) >= 4 and counts.get('cloud_compute_provisions_total{outcome="failed"}', 0) >= 1, counts
    assert "# TYPE cloud_compute_provision_seconds histogram" in metrics
    assert 'cloud_api_requests_total{operation="createInstance",status="201"} ' in metrics


def cli(args, env, check=True, timeout=120):
    r = subprocess.run([CLOUD_BIN] + args, env=env, capture_output=True, text=True, timeout=timeout)
    if check:
        assert r.returncode == 0, f"{args}: {r.stdout}\n{r.stderr}"
    return r


def ensure_hosts(api, h, engines):
    have = {host["name"] for host in requests.get(f"{api}/compute/hosts", headers=h).json()["hosts"]}
    for name, engine in zip(["h1", "h2"], engines):
        if name not in have:
            r = requests.post(f"{api}/compute/hosts", headers=h, json={"name": name, "docker_socket": "unix://" + engine.socket})
            assert r.status_code == 201, r.text


def test_cli(dev, engines, busybox_tar, tmp_path):
    api, h = dev.api, {"X-API-Key": dev.key}
    env = dict(os.environ, HOME=str(tmp_path), CLOUD_CONFIG=str(tmp_path / "config"), CLOUD_API_URL=api, CLOUD_API_KEY=dev.key)
    have = {host["name"] for host in json.loads(cli(["hosts", "list", "-o", "json"], env).stdout)["hosts"]}
    for name, engine in zip(["h1", "h2"], engines):
        if name not in have:
            assert f"Host {name} added" in cli(["hosts", "add", name, "--docker-socket", "unix://" + engine.socket], env).stdout
    assert {host["name"] for host in json.loads(cli(["hosts", "list", "-o", "json"], env).stdout)["hosts"]} == {"h1", "h2"}
    bad = cli(["hosts", "add", "gone", "--docker-socket", "unix:///nonexistent/docker.sock"], env, check=False)
    assert bad.returncode != 0 and "host_unreachable" in bad.stderr, bad.stderr

    tar = tmp_path / "busybox.tar"
    tar.write_bytes(busybox_tar)
    imported = json.loads(cli(["images", "import", "bb", str(tar), "--cmd", "sleep 3600", "-o", "json"], env).stdout)
    assert imported["command"] == ["sleep", "3600"] and imported["size_bytes"] == len(busybox_tar)
    # --debootstrap (the real one is tests/slow/test_debootstrap.py: it downloads Debian): bad input is refused before anything runs.
    for args, message in [(["--debootstrap", "book worm"], "takes a suite name"), ([str(tar), "--debootstrap", "bookworm"], "exactly one of"),
                          ([str(tar), "--include", "curl"], "--include goes with --debootstrap")]:
        refused = cli(["images", "import", "deb"] + args, env, check=False)
        assert refused.returncode != 0 and message in refused.stderr, refused.stderr
    if shutil.which("debootstrap") is None:
        missing = cli(["images", "import", "deb", "--debootstrap", "bookworm"], env, check=False)
        assert missing.returncode != 0 and "debootstrap is not installed" in missing.stderr, missing.stderr
    rootfs = tmp_path / "rootfs"
    with tarfile.open(tar) as t:
        t.extractall(rootfs)
    assert "Image bb2 imported" in cli(["images", "import", "bb2", "--from-dir", str(rootfs)], env).stdout
    assert {i["name"] for i in json.loads(cli(["images", "list", "-o", "json"], env).stdout)["images"]} >= {"bb", "bb2"}
    types = json.loads(cli(["instance-types", "list", "-o", "json"], env).stdout)["instance_types"]
    assert [(t["name"], t["vcpus"], t["memory_mib"]) for t in types] == [
        ("nano", 1, 64), ("micro", 1, 256), ("small", 1, 512), ("medium", 2, 2048), ("large", 4, 8192)]

    # --wait returns once the instance runs; logs split stdout and stderr; --follow prints new lines.
    script = "echo out; echo err >&2; i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done"
    made = json.loads(cli(["instances", "create", "c1", "--image", "bb", "--type", "nano", "--wait", "-o", "json",
                           "--", "sh", "-c", script], env).stdout)
    assert made["status"] == "ready" and made["host"] in ("h1", "h2"), made
    logs = wait_for("c1's ticks", lambda: (lambda r: r if "tick 2" in r.stdout else None)(cli(["instances", "logs", "c1"], env)))
    assert logs.stdout.startswith("out\ntick 1\n") and logs.stderr == "err\n", (logs.stdout, logs.stderr)
    follow = subprocess.Popen([CLOUD_BIN, "instances", "logs", "c1", "--tail", "1", "--follow"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = int(follow.stdout.readline().split()[1])
    seen = [first]
    while len(seen) < 10:
        seen.append(int(follow.stdout.readline().split()[1]))
    assert seen == list(range(first, first + 10)), "--follow prints every new line once, in order"
    assert "Instance c1 deleted." in cli(["instances", "delete", "c1", "--wait"], env).stdout
    assert follow.wait(30) == 0, "--follow ends when the instance is deleted"

    made = json.loads(cli(["instances", "create", "c2", "--image", "bb2", "--cmd", "sleep 3600", "--env", "MODE=test",
                           "--wait", "-o", "json"], env).stdout)
    assert made["command"] == ["sleep", "3600"] and made["environment"] == {"MODE": "test"}
    assert "Instance c2 stopped." in cli(["instances", "stop", "c2", "--wait"], env).stdout
    assert json.loads(cli(["instances", "show", "c2", "-o", "json"], env).stdout)["status"] == "stopped"
    assert "Instance c2 started." in cli(["instances", "start", "c2", "--wait"], env).stdout
    assert "Instance c2 rebooted." in cli(["instances", "reboot", "c2", "--wait"], env).stdout
    table = cli(["instances", "list"], env).stdout.splitlines()
    assert table[0].split()[:3] == ["NAME", "STATUS", "TYPE"] and table[1].split()[:3] == ["c2", "ready", "small"], table
    assert "c2" in cli(["instances", "show", "c2"], env).stdout

    failed = cli(["instances", "create", "bad", "--image", "bb", "--wait", "--", "/no/such/binary"], env, check=False)
    assert failed.returncode != 0 and "the resource failed: docker:" in failed.stderr, failed.stderr
    missing = cli(["instances", "create", "x", "--image", "nope"], env, check=False)
    assert missing.returncode != 0 and "image_not_found" in missing.stderr
    both = cli(["instances", "create", "y", "--image", "bb", "--cmd", "sleep 1", "--", "sleep", "2"], env, check=False)
    assert both.returncode != 0 and "not both" in both.stderr
    assert cli(["hosts", "remove", made["host"]], env, check=False).returncode != 0, "a host with an instance stays"

    for name in ["c2", "bad"]:
        cli(["instances", "delete", name, "--wait"], env)
    assert json.loads(cli(["instances", "list", "-o", "json"], env).stdout)["instances"] == []
    for name in ["bb", "bb2"]:
        assert f"Image {name} deleted." in cli(["images", "delete", name], env).stdout
    for e in engines:
        assert not [c for c in e.containers() if "cloud.instance" in c["Labels"]]


def test_control_plane_killed_mid_create(dev, engines, busybox_tar):
    """SIGKILL of the control plane while instances are being made: after a restart each instance
    runs exactly once (one container on one engine), none is lost and none is made twice."""
    api, h = dev.api, {"X-API-Key": dev.key}
    ensure_hosts(api, h, engines)
    # A tar with a new digest: each engine loads it on the first instance, so provisioning takes a while.
    extra = tarfile.TarInfo("etc/restart-test")
    extra.size = 0
    buf = io.BytesIO(busybox_tar)
    with tarfile.open(fileobj=buf, mode="a", format=tarfile.USTAR_FORMAT) as t:
        t.addfile(extra, io.BytesIO(b""))
    r = requests.put(f"{api}/compute/images/rs", headers={**h, "Content-Type": "application/x-tar"}, data=buf.getvalue())
    assert r.status_code == 201, r.text
    names = [f"rs{n}" for n in range(6)]
    for name in names:
        r = requests.post(f"{api}/compute/instances", headers=h, json={"name": name, "image": "rs", "type": "nano", "command": ["sleep", "3600"]})
        assert r.status_code == 201, r.text
    before = {i["name"]: i["status"] for i in requests.get(f"{api}/compute/instances", headers=h).json()["instances"]}
    dev.kill()
    assert any(before[n] != "ready" for n in names), f"the kill came after every instance was made: {before}"
    dev.start()
    # The dead process's tasks are taken over when their leases (30 s) end.
    for name in names:
        s = wait_for(f"{name} to run", lambda: (lambda s: s if s["status"] not in ("pending", "provisioning") else None)(instance(api, h, name)),
                     timeout=120)
        assert s["status"] == "ready", s
    listed = requests.get(f"{api}/compute/instances", headers=h).json()["instances"]
    assert sorted(i["name"] for i in listed if i["name"].startswith("rs")) == names
    ids = {i["id"]: i for i in listed if i["name"].startswith("rs")}
    containers = [c for e in engines for c in e.containers() if c["Labels"].get("cloud.instance") in ids]
    assert sorted(c["Labels"]["cloud.instance"] for c in containers) == sorted(ids), "one container per instance"
    for c in containers:
        assert c["State"] == "running" and c["Id"] == ids[c["Labels"]["cloud.instance"]]["container_id"]
    for name in names:
        assert requests.delete(f"{api}/compute/instances/{name}", headers=h).status_code == 202
    for name in names:
        wait_for(f"{name} gone", lambda: requests.get(f"{api}/compute/instances/{name}", headers=h).status_code == 404)
    assert requests.delete(f"{api}/compute/images/rs", headers=h).status_code == 204


def test_readiness_names_a_host_that_stops_answering(dev, engines, tmp_path):
    api, h = dev.api, {"X-API-Key": dev.key}
    ensure_hosts(api, h, engines)
    third = Dockerd(tmp_path / "h3")
    try:
        r = requests.post(f"{api}/compute/hosts", headers=h, json={"name": "h3", "docker_socket": "unix://" + third.socket})
        assert r.status_code == 201, r.text
        ready = requests.get(f"{api}/health/ready").json()
        assert ready["status"] == "ready" and ready["checks"]["compute"] == "ok", ready
        third.stop()
        # After the host grace (15 s) the host check marks it unknown; the API keeps serving.
        degraded = wait_for("h3 named in /health/ready", lambda: (lambda r: r.json() if r.status_code == 200 and r.json()["status"] == "degraded" else None)(
            requests.get(f"{api}/health/ready")), timeout=60)
        assert degraded["checks"]["compute"].startswith("host h3 unknown: docker:"), degraded
        assert third.socket in degraded["checks"]["compute"], degraded
        assert requests.delete(f"{api}/compute/hosts/h3", headers=h).status_code == 204
        assert requests.get(f"{api}/health/ready").json()["checks"]["compute"] == "ok"
    finally:
        third.stop()


def test_deployments_replace_what_fails_and_what_a_lost_host_ran(dev, engines, busybox_tar, tmp_path):
    api, h = dev.api, {"X-API-Key": dev.key}
    ensure_hosts(api, h, engines)
    env = dict(os.environ, HOME=str(tmp_path), CLOUD_CONFIG=str(tmp_path / "config"), CLOUD_API_URL=api, CLOUD_API_KEY=dev.key)
    r = requests.put(f"{api}/compute/images/dep", headers={**h, "Content-Type": "application/x-tar"}, data=busybox_tar)
    assert r.status_code == 201, r.text

    def deployment():
        return requests.get(f"{api}/compute/deployments/api", headers=h).json()

    def containers_of(names):
        ids = {instance(api, h, n)["id"] for n in names}
        return [c for e in engines for c in e.containers() if c["Labels"].get("cloud.instance") in ids and c["State"] == "running"]

    for body, status, code in [({"name": "big", "image": "dep", "replicas": 100}, 409, "quota_exceeded"),
                               ({"name": "neg", "image": "dep", "replicas": -1}, 400, "invalid_request"),
                               ({"name": "none", "image": "nope", "replicas": 1}, 404, "image_not_found")]:
        r = requests.post(f"{api}/compute/deployments", headers=h, json=body)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), r.text

    made = json.loads(cli(["deployments", "create", "api", "--image", "dep", "--replicas", "3", "--type", "nano", "--wait", "-o", "json",
                           "--", "sh", "-c", "exec sleep 3600"], env).stdout)
    assert made["status"] == "ready" and made["ready_replicas"] == 3 and len(made["instances"]) == 3, made
    assert all(n.startswith("api-") for n in made["instances"])
    r = requests.delete(f"{api}/compute/images/dep", headers=h)
    assert r.status_code == 409 and r.json()["error"]["code"] == "image_in_use", "a deployment's image stays"
    assert len(containers_of(made["instances"])) == 3

    # A replica whose process dies is replaced by a new one.
    victim = instance(api, h, made["instances"][0])
    engines[["h1", "h2"].index(victim["host"])].kill_container(victim["container_id"])
    healed = wait_for("a replacement", lambda: (lambda d: d if d["status"] == "ready" and victim["name"] not in d["instances"] else None)(
        deployment()), timeout=60)
    assert len(healed["instances"]) == 3 and len(containers_of(healed["instances"])) == 3, healed
    wait_for("the dead replica's row to go", lambda: requests.get(f"{api}/compute/instances/{victim['name']}", headers=h).status_code == 404)

    assert "scaled to 1" in cli(["deployments", "scale", "api", "--replicas", "1", "--wait"], env).stdout
    one = deployment()
    assert one["ready_replicas"] == 1 and len(one["instances"]) == 1, one
    wait_for("surplus containers gone", lambda: len([c for e in engines for c in e.containers()
                                                     if c["Labels"].get("cloud.name", "").startswith("api-")]) == 1)

    # A host that stops answering: its replica is replaced on the hosts that do.
    third = Dockerd(tmp_path / "h3")
    try:
        r = requests.post(f"{api}/compute/hosts", headers=h, json={"name": "h3", "docker_socket": "unix://" + third.socket})
        assert r.status_code == 201, r.text
        three = json.loads(cli(["deployments", "scale", "api", "--replicas", "3", "--wait", "-o", "json"], env).stdout)
        hosts = sorted(instance(api, h, n)["host"] for n in three["instances"])
        assert hosts == ["h1", "h2", "h3"], f"spread puts one replica on each host: {hosts}"
        lost = next(n for n in three["instances"] if instance(api, h, n)["host"] == "h3")
        third.stop()
        moved = wait_for("the lost replica replaced", lambda: (lambda d: d if d["status"] == "ready" and lost not in d["instances"] else None)(
            deployment()), timeout=120)
        assert sorted(instance(api, h, n)["host"] for n in moved["instances"]) in (["h1", "h1", "h2"], ["h1", "h2", "h2"]), moved
        assert "Deployment api deleted." in cli(["deployments", "delete", "api", "--wait"], env).stdout
        assert [c for e in engines for c in e.containers() if c["Labels"].get("cloud.name", "").startswith("api-")] == []
        wait_for("h3 removable", lambda: requests.delete(f"{api}/compute/hosts/h3", headers=h).status_code == 204, timeout=120)
    finally:
        third.stop()
    assert requests.delete(f"{api}/compute/images/dep", headers=h).status_code == 204


def test_an_agent_host_runs_replicas_and_its_loss_moves_them(dev, engines, busybox_tar, tmp_path):
    """A third engine reached only through `cloud agent` (its own dockerd, the agent on a TCP port
    with a token it made): it registers itself, takes a replica of a spread deployment, answers for
    it (logs), refuses requests without its token; killed, its replica moves to the other hosts;
    started again, it registers again with a new address and its leftovers are removed."""
    api, h = dev.api, {"X-API-Key": dev.key}
    ensure_hosts(api, h, engines)
    env = dict(os.environ, HOME=str(tmp_path), CLOUD_CONFIG=str(tmp_path / "config"), CLOUD_API_URL=api, CLOUD_API_KEY=dev.key)
    r = requests.put(f"{api}/compute/images/agent", headers={**h, "Content-Type": "application/x-tar"}, data=busybox_tar)
    assert r.status_code == 201, r.text
    fourth = Dockerd(tmp_path / "h4")
    agents = []

    def host_a1():
        return next((x for x in requests.get(f"{api}/compute/hosts", headers=h).json()["hosts"] if x["name"] == "a1"), None)

    def start_agent(previous=None):
        log = open(tmp_path / f"agent-{len(agents)}.log", "w")
        agents.append(subprocess.Popen([CLOUD_BIN, "agent", "a1", "--docker-socket", "unix://" + fourth.socket, "--listen", "127.0.0.1:0"],
                                       env=env, stdout=log, stderr=subprocess.STDOUT))
        return wait_for("the agent registered", lambda: (lambda x: x if x and x["status"] == "ready" and x["docker_socket"] != previous
                                                         else None)(host_a1()), timeout=60)

    try:
        a1 = start_agent()
        assert a1["docker_socket"].startswith("tcp://127.0.0.1:") and a1["cpus"] > 0 and a1["backend"] == "docker", a1
        assert "agent_token" not in a1 and not any("token" in key for key in a1), a1
        agent_url = "http://" + a1["docker_socket"][len("tcp://"):]
        assert requests.get(f"{agent_url}/v1.41/info", timeout=10).status_code == 401
        wrong = requests.get(f"{agent_url}/v1.41/info", headers={"Authorization": "Bearer " + "0" * 64}, timeout=10)
        assert wrong.status_code == 401 and "token" in wrong.json()["message"], wrong.text
        r = requests.post(f"{api}/compute/hosts", headers=h, json={"name": "a2", "docker_socket": a1["docker_socket"]})
        assert r.status_code == 400 and "agent_token" in r.json()["error"]["message"], r.text

        made = json.loads(cli(["deployments", "create", "spread", "--image", "agent", "--replicas", "3", "--type", "nano", "--wait", "-o", "json",
                               "--", "sh", "-c", "echo on my host; exec sleep 3600"], env).stdout)
        placed = {instance(api, h, n)["host"]: n for n in made["instances"]}
        assert sorted(placed) == ["a1", "h1", "h2"], placed
        remote = instance(api, h, placed["a1"])
        assert [c["Id"] for c in fourth.containers() if c["State"] == "running"] == [remote["container_id"]]
        lines = wait_for("logs through the agent", lambda: requests.get(f"{api}/compute/instances/{remote['name']}/logs", headers=h).json()["lines"])
        assert [line["text"] for line in lines] == ["on my host"], lines
        r = requests.post(f"{api}/compute/volumes", headers=h, json={"name": "far", "size_mib": 16})
        if r.status_code == 201:  # the module's cloud dev has a volume directory
            wait_for("the volume", lambda: requests.get(f"{api}/compute/volumes/far", headers=h).json()["status"] == "available")
            r = requests.post(f"{api}/compute/volumes/far/attach", headers=h, json={"instance": remote["name"]})
            assert r.status_code == 409 and "compute agent" in r.json()["error"]["message"], r.text
            assert requests.delete(f"{api}/compute/volumes/far", headers=h).status_code == 202

        # The agent dies: its host goes unknown and the replica moves to the hosts that answer.
        agents[-1].kill()
        agents[-1].wait(30)
        moved = wait_for("the replica moved", lambda: (lambda d: d if d["status"] == "ready" and remote["name"] not in d["instances"] else None)(
            requests.get(f"{api}/compute/deployments/spread", headers=h).json()), timeout=120)
        assert sorted(instance(api, h, n)["host"] for n in moved["instances"]) in (["h1", "h1", "h2"], ["h1", "h2", "h2"]), moved
        assert host_a1()["status"] == "unknown"

        # Started again: a new port and token, registered again; what the lost replica left is removed.
        again = start_agent(previous=a1["docker_socket"])
        assert again["docker_socket"] != a1["docker_socket"]
        wait_for("the leftover container removed", lambda: not [c for c in fourth.containers() if c["Labels"].get("cloud.instance")], timeout=60)
        assert "Deployment spread deleted." in cli(["deployments", "delete", "spread", "--wait"], env).stdout
        wait_for("a1 removable", lambda: requests.delete(f"{api}/compute/hosts/a1", headers=h).status_code == 204, timeout=60)
    finally:
        for agent in agents:
            if agent.poll() is None:
                agent.terminate()
                agent.wait(30)
        fourth.stop()
    assert requests.delete(f"{api}/compute/images/agent", headers=h).status_code == 204


def test_rolling_update_keeps_replicas_running_and_stops_at_a_bad_revision(dev, engines, busybox_tar, tmp_path):
    """An update of a 3-replica deployment with max_unavailable 1: a sampler watches, through the API
    and the engines, that at least 2 replicas run throughout; at the end every replica runs the new
    revision (its logs say so) and the events tell the update. A revision whose replicas exit stops
    the update with 2 of the old replicas running; the next revision repairs it."""
    import threading

    api, h = dev.api, {"X-API-Key": dev.key}
    ensure_hosts(api, h, engines)
    env = dict(os.environ, HOME=str(tmp_path), CLOUD_CONFIG=str(tmp_path / "config"), CLOUD_API_URL=api, CLOUD_API_KEY=dev.key)
    r = requests.put(f"{api}/compute/images/roll", headers={**h, "Content-Type": "application/x-tar"}, data=busybox_tar)
    assert r.status_code == 201, r.text
    serve = ["--", "sh", "-c", "echo running version $VERSION; exec sleep 3600"]
    made = json.loads(cli(["deployments", "create", "web", "--image", "roll", "--replicas", "3", "--type", "nano", "--env", "VERSION=1",
                           "--wait", "-o", "json"] + serve, env).stdout)
    assert made["revision"] == 1 and made["updated_replicas"] == 3 and made["max_unavailable"] == 1, made
    first = set(made["instances"])

    def deployment():
        return requests.get(f"{api}/compute/deployments/web", headers=h).json()

    def rolled_out(revision):
        # The event is written by the reconciler's pass after the last replica runs, so it may follow --wait.
        return wait_for(f"revision {revision} rolled out", lambda: [
            e for e in requests.get(f"{api}/compute/deployments/web/events", headers=h).json()["events"]
            if e["kind"] == "rolled-out" and e["message"].startswith(f"revision {revision} ")])

    rolled_out(1)

    for body, status, code in [({}, 400, "invalid_request"), ({"image": "nope"}, 404, "image_not_found"),
                               ({"max_unavailable": 0}, 400, "invalid_request"), ({"type": "huge-x"}, 400, "unknown_instance_type"),
                               ({"type": "large", "replicas": 15}, 409, "quota_exceeded")]:
        r = requests.patch(f"{api}/compute/deployments/web", headers=h, json=body)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), (body, r.text)
    assert deployment()["revision"] == 1, "a refused update changes nothing"

    samples, stop = [], threading.Event()

    def sample():
        while not stop.is_set():
            d = deployment()
            ids = {instance(api, h, n)["id"] for n in d["instances"]} if d["instances"] else set()
            running = [c for e in engines for c in e.containers()
                       if c["Labels"].get("cloud.name", "").startswith("web-") and c["State"] == "running"]
            samples.append((d["ready_replicas"], len(running), d["updated_replicas"], len(ids)))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        out = cli(["deployments", "update", "web", "--env", "VERSION=2", "--wait"], env).stdout
    finally:
        stop.set()
        sampler.join()
    assert "at revision 2: 3 of 3 replicas run it" in out, out
    assert len(samples) > 10, samples
    assert min(s[0] for s in samples) >= 2, f"the API saw fewer than 2 replicas running: {samples}"
    assert min(s[1] for s in samples) >= 2, f"the engines ran fewer than 2 replicas: {samples}"
    assert any(s[2] in (1, 2) for s in samples), f"the update went one replica at a time: {samples}"
    done = deployment()
    assert done["status"] == "ready" and done["updated_replicas"] == 3 and not first & set(done["instances"]), done
    for name in done["instances"]:
        lines = wait_for("logs", lambda: requests.get(f"{api}/compute/instances/{name}/logs", headers=h).json()["lines"])
        assert [line["text"] for line in lines] == ["running version 2"], (name, lines)
    rolled_out(2)
    events = json.loads(cli(["deployments", "events", "web", "-o", "json"], env).stdout)["events"]
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "created" and kinds.count("rolled-out") == 2 and kinds[-1] == "rolled-out", kinds
    assert kinds.count("replica-created") == 6 and kinds.count("replica-deleted") == 3, kinds
    assert [e["instance"] for e in events if e["kind"] == "replica-deleted"] and \
        {e["instance"] for e in events if e["kind"] == "replica-deleted"} == first, events
    assert all("runs revision 1, not 2" in e["message"] for e in events if e["kind"] == "replica-deleted"), events
    assert [e["sequence"] for e in events] == list(range(1, len(events) + 1)), events
    table = cli(["deployments", "events", "web"], env).stdout
    assert "rolled-out" in table and "revision 2 runs on all 3 replicas" in table, table

    # Revision 3 exits at once: the update stops with 2 replicas of revision 2 running.
    r = requests.patch(f"{api}/compute/deployments/web", headers=h, json={"command": ["sh", "-c", "exit 3"]})
    assert r.status_code == 200 and r.json()["revision"] == 3, r.text
    # Two of its replicas in turn start and exit (a second one is made only after the first failed,
    # after the backoff): meanwhile the update went no further than one old replica.
    wait_for("two replicas of revision 3 to fail", lambda: sum(
        e["kind"] == "replica-failed" for e in requests.get(f"{api}/compute/deployments/web/events", headers=h).json()["events"]) >= 2,
        timeout=120)
    stuck = deployment()
    old = [n for n in stuck["instances"] if n in done["instances"]]
    assert stuck["status"] == "progressing" and len(old) == 2, (stuck, done)
    assert all(instance(api, h, n)["status"] == "ready" for n in old), stuck
    # Revision 4 runs again: its update replaces all of it.
    out = cli(["deployments", "update", "web", "--wait", "-o", "json"] + serve, env).stdout
    fixed = json.loads(out)
    assert fixed["revision"] == 4 and fixed["updated_replicas"] == 3 and fixed["status_reason"] is None, fixed
    assert "Deployment web deleted." in cli(["deployments", "delete", "web", "--wait"], env).stdout
    assert requests.delete(f"{api}/compute/images/roll", headers=h).status_code == 204


def test_autoscaling_follows_cpu_use(dev, engines, busybox_tar, tmp_path):
    """A group of replicas that each burn a CPU for 30 s, then idle: the autoscaler takes it from
    --min to --max while they burn (never beyond), and back to --min once they idle."""
    api, h = dev.api, {"X-API-Key": dev.key}
    ensure_hosts(api, h, engines)
    env = dict(os.environ, HOME=str(tmp_path), CLOUD_CONFIG=str(tmp_path / "config"), CLOUD_API_URL=api, CLOUD_API_KEY=dev.key)
    r = requests.put(f"{api}/compute/images/burn", headers={**h, "Content-Type": "application/x-tar"}, data=busybox_tar)
    assert r.status_code == 201, r.text
    out = cli(["autoscaling", "create", "burners", "--image", "burn", "--min", "1", "--max", "3", "--target-cpu", "30", "--type", "nano",
               "--", "sh", "-c", "yes > /dev/null & p=$!; sleep 30; kill $p; exec sleep 3600"], env).stdout
    assert "1 to 3 replicas towards 30% CPU" in out, out
    groups = json.loads(cli(["autoscaling", "list", "-o", "json"], env).stdout)["deployments"]
    assert [(g["name"], g["min_replicas"], g["max_replicas"], g["target_cpu_percent"]) for g in groups] == [("burners", 1, 3, 30)]
    r = requests.patch(f"{api}/compute/deployments/burners", headers=h, json={"replicas": 2})
    assert r.status_code == 409 and r.json()["error"]["code"] == "invalid_state", r.text

    seen = []

    def group(condition):
        d = requests.get(f"{api}/compute/deployments/burners", headers=h).json()
        seen.append(d["replicas"])
        return d if condition(d) else None

    up = wait_for("scale-up to 3", lambda: group(lambda d: d["replicas"] == 3 and d["ready_replicas"] == 3), timeout=90)
    assert up["cpu_percent"] is not None and up["cpu_percent"] > 30, up
    down = wait_for("scale-down to 1", lambda: group(lambda d: d["replicas"] == 1 and d["status"] == "ready"), timeout=150)
    assert down["cpu_percent"] is not None and down["cpu_percent"] < 30, down
    assert max(seen) == 3 and seen[0] >= 1, seen
    events = requests.get(f"{api}/compute/deployments/burners/events", headers=h).json()["events"]
    scalings = [e["message"] for e in events if e["kind"] == "autoscaled"]
    assert len(scalings) >= 2 and "auto-scaled from 1 to" in scalings[0] and scalings[-1].endswith("against a target of 30 %"), scalings
    assert "deleted" in cli(["autoscaling", "delete", "burners", "--wait"], env).stdout
    assert requests.delete(f"{api}/compute/images/burn", headers=h).status_code == 204
