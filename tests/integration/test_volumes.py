"""Volumes and snapshots on a real Docker Engine: a `cloud dev` (run as root, as it mounts loop
devices) with one private dockerd as its host. Data is written and read back from inside the
containers with `cloud instances exec`; snapshots go to the dev's own object store, and their
blocks are counted there with boto3."""
import json
import os
import shutil
import subprocess
import tarfile

import boto3
import pytest
import requests
from botocore.config import Config

from test_compute import Dev, Dockerd, cli, unmount_below, wait_for

pytestmark = pytest.mark.needs_binary

APPLETS = ["sh", "echo", "sleep", "cat", "dd", "df", "sync", "sha256sum", "tail", "killall", "ls", "rm", "grep", "wc", "head"]


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    if shutil.which("dockerd") is None:
        pytest.fail("dockerd is not installed (scripts/install-deps.sh installs docker.io)")
    if os.geteuid() != 0:
        pytest.fail("volumes mount loop devices: the test runs as root, as .ci/run does")
    d = Dockerd(tmp_path_factory.mktemp("volume-engine") / "h1")
    # A busy host's mount table is long (every container adds its own): make this one longer than
    # a page, as a control plane that read only its start would then miss its own mounts.
    filler = tmp_path_factory.mktemp("mount-table-filler")
    points = []
    try:
        for i in range(40):
            point = filler / f"tmpfs-{i:02d}-{'x' * 60}"
            point.mkdir()
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "filler", str(point)], check=True)
            points.append(point)
        assert len(open("/proc/self/mountinfo").read()) > 8192
        yield d
    finally:
        for point in points:
            subprocess.run(["umount", str(point)], check=True)
        d.stop()


class Platform:
    """The API under test, the S3 endpoint and root key of its object store, and its volume directory."""

    def __init__(self, api, key, s3_port, credentials, volumes):
        self.api, self.key, self.s3_port, self.credentials, self.volumes = api, key, s3_port, credentials, volumes


def _operator_key(api, email):
    from controlhelpers import PASSWORD
    requests.post(f"{api}/auth/register", json={"email": email, "name": "Ops", "password": PASSWORD}).raise_for_status()
    return requests.post(f"{api}/auth/login", json={"email": email, "password": PASSWORD}).json()["api_key"]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def platform(request, tmp_path_factory, engine):
    """`cloud dev` (SQLite, volumes in its data directory), then `cloud server` on PostgreSQL with
    --volumes-dir, using that dev's storage node as its object store: the module runs twice."""
    d = Dev(tmp_path_factory.mktemp("volumes-dev"))
    d.start()
    control = None
    try:
        credentials = dict(line.split("=", 1) for line in (d.root / "data" / "root-credentials").read_text().splitlines() if "=" in line)
        if request.param == "sqlite":
            yield Platform(d.api, _operator_key(d.api, d.operator), d.s3_port, credentials, d.root / "data" / "volumes")
        else:
            from controltest import ControlServer
            from controlhelpers import new_email
            volumes = tmp_path_factory.mktemp("server-volumes")
            operator = new_email("ops")
            control = ControlServer(request.getfixturevalue("postgres").new_database("volumes"), tmp_path_factory.mktemp("volumes-pg"),
                                    storage_endpoint=f"http://127.0.0.1:{d.s3_port}",
                                    storage_key=(credentials["access_key"], credentials["secret_key"]),
                                    extra_args=["--volumes-dir", str(volumes), "--platform-admin", operator])
            control.start()
            yield Platform(control.url, _operator_key(control.url, operator), d.s3_port, credentials, volumes)
    finally:
        if control:
            control.stop()
        d.stop()  # and unmounts what is below its directory
        if control:
            unmount_below(volumes)


@pytest.fixture(scope="module")
def env(platform, engine, tmp_path_factory):
    home = tmp_path_factory.mktemp("volumes-home")
    environment = dict(os.environ, HOME=str(home), CLOUD_CONFIG=str(home / "config"), CLOUD_API_URL=platform.api, CLOUD_API_KEY=platform.key)
    cli(["hosts", "add", "h1", "--docker-socket", "unix://" + engine.socket], environment)
    rootfs = home / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    (rootfs / "tmp").mkdir()
    shutil.copy("/bin/busybox", rootfs / "bin" / "busybox")
    for applet in APPLETS:
        os.symlink("busybox", rootfs / "bin" / applet)
    tar = home / "busybox.tar"
    with tarfile.open(tar, "w", format=tarfile.USTAR_FORMAT) as t:
        t.add(rootfs, arcname=".")
    cli(["images", "import", "bb", str(tar), "--cmd", "sleep 3600"], environment)
    return environment


def show(env, kind, name):
    return json.loads(cli([kind, "show", name, "-o", "json"], env).stdout)


def sh(env, instance, script, check=True):
    return cli(["instances", "exec", instance, "--", "sh", "-c", script], env, check=check)


def our_mounts(platform):
    root = str(platform.volumes)
    return [line.split()[1] for line in open("/proc/self/mounts").read().splitlines() if line.split()[1].startswith(root)]


def block_objects(platform):
    creds = platform.credentials
    s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{platform.s3_port}", aws_access_key_id=creds["access_key"],
                      aws_secret_access_key=creds["secret_key"], region_name="us-east-1", config=Config(s3={"addressing_style": "path"}))
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket="cloud-system-snapshots", Prefix="blocks/")
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def test_exec_runs_commands_and_passes_their_status(env):
    cli(["instances", "create", "x1", "--image", "bb", "--type", "nano", "--wait"], env)
    r = sh(env, "x1", "echo to-out; echo to-err >&2; exit 3", check=False)
    assert (r.returncode, r.stdout, r.stderr) == (3, "to-out\n", "to-err\n"), r
    answer = json.loads(cli(["instances", "exec", "x1", "-o", "json", "--", "echo", "hi"], env).stdout)
    assert answer["exit_code"] == 0 and answer["lines"] == [{"stream": "stdout", "time": "", "text": "hi"}], answer
    missing = cli(["instances", "exec", "x1", "--", "/no/such/program"], env, check=False)
    assert missing.returncode != 0, missing
    cli(["instances", "stop", "x1", "--wait"], env)
    stopped = sh(env, "x1", "true", check=False)
    assert stopped.returncode != 0 and "invalid_state" in stopped.stderr, stopped.stderr
    cli(["instances", "delete", "x1", "--wait"], env)


def test_volumes_attach_live_detach_snapshot_restore(platform, env):
    made = json.loads(cli(["volumes", "create", "data", "--size", "64M", "--wait", "-o", "json"], env).stdout)
    assert (made["status"], made["size_mib"], made["formatted"]) == ("available", 64, False), made
    for name in ["w1", "w2"]:
        cli(["instances", "create", name, "--image", "bb", "--type", "nano", "--wait"], env)

    # Attached to a running container, it appears at /volumes/data without a restart.
    before = show(env, "instances", "w1")["container_id"]
    assert "Volume data attached to w1 at /volumes/data." in cli(["volumes", "attach", "data", "--instance", "w1", "--wait"], env).stdout
    assert show(env, "instances", "w1")["container_id"] == before
    v = show(env, "volumes", "data")
    assert (v["status"], v["instance"], v["mount_path"], v["formatted"]) == ("attached", "w1", "/volumes/data", True), v
    first = sh(env, "w1", "echo hello > /volumes/data/greeting && dd if=/dev/urandom of=/volumes/data/blob bs=1M count=8 2>/dev/null"
                          " && sync && sha256sum /volumes/data/blob").stdout.split()[0]
    assert "/volumes/data" in sh(env, "w1", "df /volumes/data").stdout

    # A process that holds a file keeps the volume attached, and the user is told why.
    # The shell opens the file before it forks the holder, which inherits it: it is open when exec returns.
    sh(env, "w1", "exec 3</volumes/data/greeting; tail -f /dev/null > /dev/null 2>&1 &")
    busy = cli(["volumes", "detach", "data", "--wait"], env, check=False)
    assert busy.returncode != 0 and "in use" in busy.stderr, busy.stderr
    v = show(env, "volumes", "data")
    assert v["status"] == "attached" and "in use" in v["status_reason"], v
    assert sh(env, "w1", "cat /volumes/data/greeting").stdout == "hello\n"

    # Snapshots while attached (the file system is frozen while it is read); the second stores what changed.
    s1 = json.loads(cli(["snapshots", "create", "data", "--name", "s1", "--wait", "-o", "json"], env).stdout)
    assert s1["status"] == "completed" and s1["size_mib"] == 64 and s1["stored_bytes"] >= 8 << 20, s1
    assert s1["blocks"] * (1 << 20) >= s1["stored_bytes"]
    second = sh(env, "w1", "dd if=/dev/urandom of=/volumes/data/blob bs=1M count=2 conv=notrunc 2>/dev/null && sync"
                           " && sha256sum /volumes/data/blob").stdout.split()[0]
    assert second != first
    s2 = json.loads(cli(["snapshots", "create", "data", "--name", "s2", "--wait", "-o", "json"], env).stdout)
    assert s2["status"] == "completed" and 2 << 20 <= s2["stored_bytes"] < s1["stored_bytes"] / 2, (s1, s2)
    print(f"snapshots of a 64 MiB volume: s1 {s1['blocks']} blocks, {s1['stored_bytes']} bytes stored; "
          f"after 2 MiB rewritten, s2 {s2['blocks']} blocks, {s2['stored_bytes']} bytes stored")
    assert len(block_objects(platform)) == (s1["stored_bytes"] + s2["stored_bytes"]) >> 20

    sh(env, "w1", "killall tail")
    assert "Volume data available." in cli(["volumes", "detach", "data", "--wait"], env).stdout
    assert sh(env, "w1", "ls /volumes").stdout == ""

    # Restored into a bigger volume on another instance: the first snapshot's bytes, a grown file system.
    cli(["volumes", "create", "data2", "--from-snapshot", "s1", "--size", "128M", "--wait"], env)
    cli(["volumes", "attach", "data2", "--instance", "w2", "--wait"], env)
    assert sh(env, "w2", "cat /volumes/data2/greeting").stdout == "hello\n"
    assert sh(env, "w2", "sha256sum /volumes/data2/blob").stdout.split()[0] == first
    size_kib = int(sh(env, "w2", "df -k /volumes/data2").stdout.splitlines()[1].split()[1])
    assert size_kib > 100 * 1024, size_kib

    # LVM: this host says what it lacks (no device-mapper in the kernel here), and nothing is made.
    lvm = cli(["volumes", "create", "lv", "--size", "64M", "--storage", "lvm"], env, check=False)
    with open("/proc/misc") as misc:
        dm = any(line.split()[-1:] == ["device-mapper"] for line in misc)
    assert lvm.returncode != 0 and "lvm_unavailable" in lvm.stderr, lvm.stderr
    expected = ("no LVM volume backend yet" if shutil.which("lvm") else "(Debian: lvm2)") if dm else "its kernel has no device-mapper"
    assert expected in lvm.stderr, lvm.stderr
    assert cli(["volumes", "show", "lv"], env, check=False).returncode != 0
    odd = cli(["volumes", "create", "zz", "--size", "64M", "--storage", "tape"], env, check=False)
    assert odd.returncode != 0 and "storage must be file or lvm" in odd.stderr, odd.stderr

    # Bad input: a 4xx with a message, nothing half made.
    for args, code in [(["volumes", "create", "small", "--from-snapshot", "s1", "--size", "32M"], "invalid_request"),
                       (["volumes", "create", "tiny", "--size", "1M"], "invalid_request"),
                       (["volumes", "create", "data", "--size", "64M"], "volume_exists"),
                       (["volumes", "create", "d9", "--from-snapshot", "nope"], "snapshot_not_found"),
                       (["volumes", "attach", "data2", "--instance", "w1"], "invalid_state"),
                       (["volumes", "attach", "data", "--instance", "nope"], "instance_not_found"),
                       (["volumes", "delete", "data2"], "invalid_state"),
                       (["volumes", "resize", "data", "--size", "32M"], "invalid_request"),
                       (["snapshots", "create", "nope", "--name", "s9"], "volume_not_found"),
                       (["snapshots", "create", "data", "--name", "s1"], "snapshot_exists")]:
        r = cli(args, env, check=False)
        assert r.returncode != 0 and code in r.stderr, (args, r.stderr)
    assert {v["name"] for v in json.loads(cli(["volumes", "list", "-o", "json"], env).stdout)["volumes"]} == {"data", "data2"}

    # Grown while detached, attached again: bigger, and the data is still there.
    resized = json.loads(cli(["volumes", "resize", "data", "--size", "96M", "--wait", "-o", "json"], env).stdout)
    assert resized["size_mib"] == 96 and resized["status"] == "available", resized
    cli(["volumes", "attach", "data", "--instance", "w1", "--wait"], env)
    assert sh(env, "w1", "sha256sum /volumes/data/blob").stdout.split()[0] == second
    assert int(sh(env, "w1", "df -k /volumes/data").stdout.splitlines()[1].split()[1]) > 80 * 1024

    # Deleting an instance detaches its volumes; nothing stays mounted for it.
    cli(["instances", "delete", "w2", "--wait"], env)
    v = show(env, "volumes", "data2")
    assert v["status"] == "available" and v["instance"] is None and "instance was deleted" in v["status_reason"], v
    assert [m for m in our_mounts(platform) if "/data2" in m] == []

    # The first snapshot goes; blocks the second still holds stay, and it restores whole.
    cli(["snapshots", "delete", "s1", "--wait"], env)
    assert len(block_objects(platform)) < (s1["stored_bytes"] + s2["stored_bytes"]) >> 20
    cli(["volumes", "create", "data3", "--from-snapshot", "s2", "--wait"], env)
    cli(["volumes", "attach", "data3", "--instance", "w1", "--wait"], env)
    assert sh(env, "w1", "sha256sum /volumes/data3/blob").stdout.split()[0] == second
    assert sh(env, "w1", "cat /volumes/data3/greeting").stdout == "hello\n"
    cli(["snapshots", "delete", "s2", "--wait"], env)
    assert block_objects(platform) == [], "deleting every snapshot deletes every block"

    cli(["instances", "delete", "w1", "--wait"], env)
    assert our_mounts(platform) == [] or all(m.endswith("/attach") for m in our_mounts(platform)), our_mounts(platform)
    for name in ["data", "data2", "data3"]:
        assert show(env, "volumes", name)["status"] == "available"
        cli(["volumes", "delete", name, "--wait"], env)
    assert os.listdir(platform.volumes / "files") == []
