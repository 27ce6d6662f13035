"""Virtual machines on the machine's real libvirtd and QEMU: a `cloud dev` with this machine's
libvirt daemon as a host boots an image that carries its own kernel (guestimage.py makes it from
the host's packages; nothing is pulled). The guest has no network."""
import io
import os
import shutil
import socket
import subprocess
import tarfile
import threading

import pytest
import requests
import websocket
import yaml

import guestimage
from cloudtest import CLOUD_BIN
from test_compute import Dev, settled, wait_for

pytestmark = pytest.mark.needs_binary

URI = "qemu:///system"


def virsh(*args, check=True):
    return subprocess.run(["virsh", "-c", URI, *args], capture_output=True, text=True, timeout=60, check=check)


@pytest.fixture(scope="module")
def libvirtd():
    for tool in ["virsh", "libvirtd", "virtlogd", "qemu-system-x86_64", "qemu-img", "mkfs.ext4", "vncdo"]:
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed (scripts/install-deps.sh installs libvirt, QEMU and vncdotool)")
    if virsh("version", check=False).returncode != 0:
        # Not running (a fresh CI machine has no init system): start the daemons.
        subprocess.run(["virtlogd", "-d"], check=True)
        subprocess.run(["libvirtd", "-d"], check=True)
        wait_for("libvirtd", lambda: virsh("version", check=False).returncode == 0, timeout=60)
    yield


@pytest.fixture(scope="module")
def guest_tar():
    try:
        return guestimage.guest_tar()
    except guestimage.MissingTool as e:
        pytest.fail(str(e))


@pytest.fixture(scope="module")
def platform(tmp_path_factory, libvirtd):
    d = Dev(tmp_path_factory.mktemp("machines-dev"))
    try:
        d.start_as_operator()
        yield d
    finally:
        d.stop()
        # Whatever a failed test left: this test's domains are the ones whose disks are in its data directory.
        for name in virsh("list", "--all", "--name").stdout.split():
            if name.startswith("cloud-i-") and str(d.root) in virsh("dumpxml", name, check=False).stdout:
                virsh("destroy", name, check=False)
                virsh("undefine", name, check=False)


def logs(api, h, name):
    r = requests.get(f"{api}/compute/instances/{name}/logs", headers=h)
    assert r.status_code == 200, r.text
    return [line["text"] for line in r.json()["lines"]]


def wait_line(api, h, name, text, timeout=120):
    return wait_for(f"'{text}' on {name}'s serial console",
                    lambda: next((line for line in logs(api, h, name) if text in line), None), timeout=timeout)


def domstate(instance_id):
    r = virsh("domstate", "cloud-" + instance_id, check=False)
    return r.stdout.strip() if r.returncode == 0 else None


class WebSocketBridge:
    """A local TCP port whose one connection is carried over a WebSocket (binary frames both ways)."""

    def __init__(self, url):
        self.url, self.errors, self.frames, self.subprotocol = url, [], 0, None
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.listener.close()
        self.thread.join(30)

    def _serve(self):
        try:
            client, _ = self.listener.accept()
        except OSError as error:
            self.errors.append(error)
            return
        ws = websocket.create_connection(self.url, subprotocols=["binary"], timeout=30)
        self.subprotocol = ws.getsubprotocol()

        def upstream():
            try:
                while data := client.recv(65536):
                    ws.send_binary(data)
            except OSError:
                pass
            finally:
                ws.close()

        pump = threading.Thread(target=upstream, daemon=True)
        pump.start()
        try:
            while True:
                opcode, data = ws.recv_data()
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    break
                self.frames += 1
                client.sendall(data)
        except (websocket.WebSocketException, OSError) as error:
            self.errors.append(error)
        finally:
            client.close()
            pump.join(30)


def vnc_capture(port, password, path):
    return subprocess.run(["vncdo", "-s", f"127.0.0.1::{port}", "-p", password, "capture", str(path)],
                          capture_output=True, text=True, timeout=60)


def test_virtual_machine_lifecycle(platform, guest_tar, tmp_path):
    api, h = platform.api, platform.h
    # Only this machine's libvirt can be a host; a host is one of the two kinds.
    r = requests.post(f"{api}/compute/hosts", headers=h, json={"name": "far", "libvirt_uri": "qemu+ssh://root@far/system"})
    assert r.status_code == 400 and "compute agent" in r.json()["error"]["message"], r.text
    r = requests.post(f"{api}/compute/hosts", headers=h, json={"name": "both", "libvirt_uri": URI, "docker_socket": "unix:///run/docker.sock"})
    assert r.status_code == 400, r.text
    env = dict(os.environ, HOME=str(tmp_path), CLOUD_CONFIG=str(tmp_path / "config"), CLOUD_API_URL=api, CLOUD_API_KEY=platform.key)
    # TCG: /dev/kvm on the machines this runs on does not run ordinary guests (MACHINE-NOTES).
    out = subprocess.run([CLOUD_BIN, "hosts", "add", "vm1", "--libvirt", URI, "--accelerator", "tcg"], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and "libvirt" in out.stdout, out.stdout + out.stderr
    hosts = requests.get(f"{api}/compute/hosts", headers=h).json()["hosts"]
    assert [(x["name"], x["backend"], x["libvirt_uri"], x["accelerator"], x["status"]) for x in hosts] == [("vm1", "libvirt", URI, "tcg", "ready")]
    assert hosts[0]["cpus"] >= 1 and hosts[0]["engine_version"].startswith("libvirt ")

    r = requests.put(f"{api}/compute/images/guest", headers={**h, "Content-Type": "application/x-tar"}, data=guest_tar)
    assert r.status_code == 201, r.text
    # A container's options mean nothing to a machine.
    r = requests.post(f"{api}/compute/instances", headers=h, json={"name": "bad", "image": "guest", "backend": "libvirt", "command": ["sh"]})
    assert r.status_code == 400, r.text
    # No Docker host: a container has nowhere to go, and says so.
    r = requests.post(f"{api}/compute/instances", headers=h, json={"name": "box", "image": "guest", "type": "nano"})
    assert r.status_code == 201, r.text
    s = settled(api, h, "box", ("pending", "provisioning"))
    assert s["status"] == "failed" and "no compute host runs docker" in s["status_reason"], s

    r = requests.post(f"{api}/compute/instances", headers=h, json={"name": "vm", "image": "guest", "type": "micro", "backend": "libvirt"})
    assert r.status_code == 201, r.text
    s = wait_for("vm to be placed and run", lambda: (lambda s: s if s["status"] not in ("pending", "provisioning") else None)(
        requests.get(f"{api}/compute/instances/vm", headers=h).json()), timeout=180)
    assert s["status"] == "ready" and s["host"] == "vm1" and s["backend"] == "libvirt", s
    vid = s["id"]
    assert domstate(vid) == "running"
    # The machine booted the image's kernel and initramfs, and its root is the image's tree on its own disk.
    wait_line(api, h, "vm", "cloud-guest: up")
    assert wait_line(api, h, "vm", "cloud-guest: root").startswith("cloud-guest: root /dev/vda ext4")
    assert wait_line(api, h, "vm", "cloud-guest: disks") == "cloud-guest: disks vda "
    assert not any("booted before" in line for line in logs(api, h, "vm"))
    r = requests.get(f"{api}/compute/instances/vm/logs?tail=1", headers=h)
    assert r.status_code == 200 and len(r.json()["lines"]) == 1, r.text

    # Its VNC console, with its own password; a wrong one is refused.
    r = requests.get(f"{api}/compute/instances/vm/console", headers=h)
    assert r.status_code == 200, r.text
    console = r.json()
    assert console["protocol"] == "vnc" and console["host"] == "127.0.0.1" and len(console["password"]) == 8
    shot = tmp_path / "screen.png"
    out = vnc_capture(console["port"], console["password"], shot)
    assert out.returncode == 0, out.stdout + out.stderr
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 1000
    wrong = "x" * 8 if console["password"] != "x" * 8 else "y" * 8
    assert vnc_capture(console["port"], wrong, tmp_path / "denied.png").returncode != 0
    out = subprocess.run([CLOUD_BIN, "instances", "console", "vm"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and f":{console['port']}" in out.stdout and "WebSocket ws://127.0.0.1:" in out.stdout, out.stdout + out.stderr

    # The same console over the gateway's WebSocket, as a browser's noVNC reaches it: vncdo talks
    # RFB to a local bridge that carries it in the WebSocket's binary frames.
    link = console["websocket_url"]
    assert link.startswith("ws://127.0.0.1:") and "/console/" in link, console
    over = tmp_path / "over-websocket.png"
    with WebSocketBridge(link) as bridge:
        out = vnc_capture(bridge.port, console["password"], over)
        assert out.returncode == 0, out.stdout + out.stderr + str(bridge.errors)
    assert bridge.subprotocol == "binary" and bridge.frames > 0, (bridge.subprotocol, bridge.frames)
    assert over.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and over.stat().st_size > 1000
    # A link serves one connection; a made-up one, none; plain HTTP is told what the gateway is.
    for url, status in [(link, 403), (link.rsplit("/", 1)[0] + "/0123abcd", 403), (link.split("/console/")[0] + "/other", 404)]:
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            websocket.create_connection(url, timeout=10)
        assert refused.value.status_code == status, (url, refused.value)
    plain = requests.get(link.replace("ws://", "http://"), timeout=10)
    assert plain.status_code == 400 and "console gateway" in plain.text, plain.text
    # What only containers do is refused, with what to do instead.
    r = requests.post(f"{api}/compute/instances/vm/exec", headers=h, json={"command": ["ls"]})
    assert r.status_code == 409 and r.json()["error"]["code"] == "unsupported_by_backend", r.text
    r = requests.get(f"{api}/compute/instances/box/console", headers=h)
    assert r.status_code == 409 and r.json()["error"]["code"] == "unsupported_by_backend", r.text

    # A volume, attached live: the guest sees a new disk with the volume's id as its serial, and
    # what it writes there is in the volume's file. A snapshot while attached pauses the machine.
    r = requests.post(f"{api}/compute/volumes", headers=h, json={"name": "data", "size_mib": 64})
    assert r.status_code == 201, r.text
    vol = wait_for("the volume", lambda: (lambda v: v if v["status"] == "available" else None)(
        requests.get(f"{api}/compute/volumes/data", headers=h).json()))
    out = subprocess.run([CLOUD_BIN, "volumes", "attach", "data", "--instance", "vm", "--wait"], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and f"/dev/disk/by-id/virtio-{vol['id']}" in out.stdout, out.stdout + out.stderr
    wrote = wait_line(api, h, "vm", "cloud-guest: wrote vdb", timeout=60)
    assert wrote == f"cloud-guest: wrote vdb serial {vol['id']}", wrote
    r = requests.post(f"{api}/compute/snapshots", headers=h, json={"name": "s1", "volume": "data"})
    assert r.status_code == 201, r.text
    snap = wait_for("the snapshot", lambda: (lambda x: x if x["status"] != "creating" else None)(
        requests.get(f"{api}/compute/snapshots/s1", headers=h).json()))
    assert snap["status"] == "completed" and snap["stored_bytes"] > 0, snap
    assert domstate(vid) == "running"
    r = requests.post(f"{api}/compute/volumes/data/detach", headers=h)
    assert r.status_code == 202, r.text
    v = wait_for("the detach", lambda: (lambda v: v if v["status"] != "detaching" else None)(
        requests.get(f"{api}/compute/volumes/data", headers=h).json()))
    assert v["status"] == "available", v
    wait_for("the guest to lose vdb", lambda: [x for x in logs(api, h, "vm") if x.startswith("cloud-guest: disks")][-1] == "cloud-guest: disks vda ")
    volume_file = platform.root / "data" / "volumes" / "files" / f"{vol['id']}.img"
    if not volume_file.exists():
        volume_file = next((platform.root / "data" / "volumes").rglob(f"{vol['id']}.img"))
    out = subprocess.run(["debugfs", "-R", "cat /from-guest", str(volume_file)], capture_output=True, text=True, timeout=60)
    assert out.stdout == "written by the guest on vdb\n", out.stdout + out.stderr
    assert "vdb" not in virsh("domblklist", "cloud-" + vid).stdout

    # Stop and start: the machine's disk keeps what the guest wrote.
    r = requests.post(f"{api}/compute/instances/vm/stop", headers=h)
    assert r.status_code == 202, r.text
    s = settled(api, h, "vm", ("stopping",))
    assert s["status"] == "stopped", s
    assert domstate(vid) == "shut off"
    r = requests.post(f"{api}/compute/instances/vm/start", headers=h)
    assert r.status_code == 202, r.text
    s = settled(api, h, "vm", ("starting",))
    assert s["status"] == "ready", s
    wait_line(api, h, "vm", "cloud-guest: booted before")

    # Powered off behind the cloud's back: the host check sees it.
    virsh("destroy", "cloud-" + vid)
    s = wait_for("vm to be seen stopped", lambda: (lambda s: s if s["status"] == "stopped" else None)(
        requests.get(f"{api}/compute/instances/vm", headers=h).json()), timeout=60)
    assert s["status_reason"] == "the machine powered off", s

    # Deleted: no domain and no files are left.
    machine_dir = platform.root / "data" / "machines" / "instances" / vid
    assert machine_dir.is_dir()
    for name in ["vm", "box"]:
        r = requests.delete(f"{api}/compute/instances/{name}", headers=h)
        assert r.status_code == 202, r.text
    wait_for("vm to go", lambda: requests.get(f"{api}/compute/instances/vm", headers=h).status_code == 404)
    assert domstate(vid) is None
    assert not machine_dir.exists()


def ensure_host(api, h):
    if not any(x["name"] == "vm1" for x in requests.get(f"{api}/compute/hosts", headers=h).json()["hosts"]):
        assert requests.post(f"{api}/compute/hosts", headers=h, json={"name": "vm1", "libvirt_uri": URI, "accelerator": "tcg"}).status_code == 201


def test_ssh_keys_and_user_data_reach_the_machine_through_its_cloud_init_disk(platform, guest_tar, tmp_path):
    api, h = platform.api, platform.h
    ensure_host(api, h)
    if requests.get(f"{api}/compute/images/guest", headers=h).status_code == 404:
        assert requests.put(f"{api}/compute/images/guest", headers={**h, "Content-Type": "application/x-tar"}, data=guest_tar).status_code == 201
    env = dict(os.environ, HOME=str(tmp_path), CLOUD_CONFIG=str(tmp_path / "config"), CLOUD_API_URL=api, CLOUD_API_KEY=platform.key)
    # A real key made by ssh-keygen; the fingerprint is the one ssh-keygen prints.
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ops@example", "-f", str(tmp_path / "id")], check=True)
    out = subprocess.run([CLOUD_BIN, "ssh-keys", "import", "laptop", "--public-key-file", str(tmp_path / "id.pub")], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    expected = subprocess.run(["ssh-keygen", "-lf", str(tmp_path / "id.pub")], capture_output=True, text=True, check=True).stdout.split()[1]
    key = requests.get(f"{api}/compute/ssh-keys/laptop", headers=h).json()
    assert key["fingerprint"] == expected and key["type"] == "ssh-ed25519", (key, expected)
    public = (tmp_path / "id.pub").read_text().strip()
    assert key["public_key"] == public
    # Not a key, a truncated one, a name taken: 4xx with a message.
    for body, status, code in [({"public_key": "hello"}, 400, "invalid_ssh_key"),
                               ({"public_key": public[:40]}, 400, "invalid_ssh_key"),
                               ({"public_key": public}, 409, "ssh_key_exists")]:
        r = requests.put(f"{api}/compute/ssh-keys/laptop", headers=h, json=body)
        assert r.status_code == status and r.json()["error"]["code"] == code, r.text
    r = requests.post(f"{api}/compute/instances", headers=h, json={"name": "k0", "image": "guest", "backend": "libvirt", "ssh_keys": ["nope"]})
    assert r.status_code == 404 and r.json()["error"]["code"] == "ssh_key_not_found", r.text
    r = requests.post(f"{api}/compute/instances", headers=h, json={"name": "k0", "image": "guest", "ssh_keys": ["laptop"]})
    assert r.status_code == 400, r.text

    user_data = "#cloud-config\nruncmd:\n  - echo 'hello from user data'\n"
    (tmp_path / "user-data").write_text(user_data)
    out = subprocess.run([CLOUD_BIN, "instances", "create", "seeded", "--image", "guest", "--type", "micro", "--backend", "libvirt",
                          "--ssh-key", "laptop", "--user-data-file", str(tmp_path / "user-data"), "--wait"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    s = requests.get(f"{api}/compute/instances/seeded", headers=h).json()
    assert s["ssh_keys"] == ["laptop"] and s["user_data_bytes"] == len(user_data), s
    # The guest sees a second disk whose serial is cidata...
    wait_line(api, h, "seeded", "cloud-guest: disk vdb serial cidata")
    # ...and it is what cloud-init's NoCloud source reads: vfat labelled CIDATA with meta-data and user-data.
    seed = platform.root / "data" / "machines" / "instances" / s["id"] / "seed.img"
    probe = subprocess.run(["blkid", "-o", "export", str(seed)], capture_output=True, text=True, check=True).stdout
    assert "TYPE=vfat" in probe and "LABEL=CIDATA" in probe, probe
    meta = yaml.safe_load(subprocess.run(["mtype", "-i", str(seed), "::meta-data"], capture_output=True, text=True, check=True).stdout)
    assert meta == {"instance-id": s["id"], "local-hostname": "seeded", "public-keys": [public]}, meta
    assert subprocess.run(["mtype", "-i", str(seed), "::user-data"], capture_output=True, text=True, check=True).stdout == user_data
    # Deleting the key leaves the machine's copy.
    assert requests.delete(f"{api}/compute/ssh-keys/laptop", headers=h).status_code == 204
    assert requests.get(f"{api}/compute/instances/seeded", headers=h).json()["ssh_keys"] == ["laptop"]
    r = requests.delete(f"{api}/compute/instances/seeded", headers=h)
    assert r.status_code == 202, r.text
    wait_for("seeded to go", lambda: requests.get(f"{api}/compute/instances/seeded", headers=h).status_code == 404)
    assert not seed.exists() and domstate(s["id"]) is None


def test_an_image_without_a_kernel_fails_with_the_reason(platform):
    api, h = platform.api, platform.h
    ensure_host(api, h)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        guestimage.add_dirs(tar, ["bin"])
        guestimage.add_busybox(tar, ["sh"])
    r = requests.put(f"{api}/compute/images/nokernel", headers={**h, "Content-Type": "application/x-tar"}, data=out.getvalue())
    assert r.status_code == 201, r.text
    r = requests.post(f"{api}/compute/instances", headers=h, json={"name": "nok", "image": "nokernel", "type": "micro", "backend": "libvirt"})
    assert r.status_code == 201, r.text
    s = wait_for("nok to fail", lambda: (lambda s: s if s["status"] not in ("pending", "provisioning") else None)(
        requests.get(f"{api}/compute/instances/nok", headers=h).json()), timeout=120)
    assert s["status"] == "failed" and "the image has no kernel" in s["status_reason"], s
    assert domstate(s["id"]) is None
    assert not (platform.root / "data" / "machines" / "instances" / s["id"]).exists()
