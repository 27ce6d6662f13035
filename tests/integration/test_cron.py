"""Cron: `cloud cron` against `cloud dev` with HTTP, queue and topic targets firing on the minute; and
three `cloud server` processes on one PostgreSQL (plus one on SQLite) firing each due time of a
`rate(1 minute)` schedule exactly once while the process running a call is killed with SIGKILL."""
import json
import os
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cloudtest import CLOUD_BIN, free_port
from controlhelpers import call, user
from controltest import ControlServer

pytestmark = pytest.mark.needs_binary


class Receiver:
    """Records every request; while `hold` is set, the first request of each run id waits for `release`."""

    def __init__(self):
        self.requests = []
        self.lock = threading.Lock()
        self.hold = threading.Event()
        self.release = threading.Event()
        self.held = threading.Semaphore(0)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def answer(self):
                length = int(self.headers.get("Content-Length", 0) or 0)
                body = self.rfile.read(length) if length else b""
                run = self.headers.get("X-Cloud-Run-Id")
                with receiver.lock:
                    first = not any(r["run"] == run for r in receiver.requests)
                    receiver.requests.append({"run": run, "method": self.command, "body": body, "headers": dict(self.headers),
                                              "port": self.client_address[1]})
                if first and receiver.hold.is_set():
                    receiver.held.release()
                    receiver.release.wait(60)
                try:
                    payload = b"ok " + (run or "").encode()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass

            do_GET = answer
            do_POST = answer

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path="/"):
        return f"http://127.0.0.1:{self.port}{path}"

    def runs(self):
        with self.lock:
            return {r["run"] for r in self.requests}

    def stop(self):
        self.release.set()
        self.server.shutdown()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


def cli(args, env, check=True):
    r = subprocess.run([CLOUD_BIN] + args, env=env, capture_output=True, text=True, timeout=60)
    if check:
        assert r.returncode == 0, f"{args}: {r.stdout}\n{r.stderr}"
    return r


def wait_for(condition, timeout, what):
    deadline = time.time() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)


def test_cli_and_targets(server, receiver, tmp_path):
    if server.external:
        pytest.skip("needs cloud dev's control plane")
    api = f"http://127.0.0.1:{server.api_port}"
    _, key = user(api, "cron")
    env = dict(os.environ, HOME=str(tmp_path), CLOUD_CONFIG=str(tmp_path / "config"), CLOUD_API_URL=api, CLOUD_API_KEY=key)
    cli(["queues", "create", "ticks"], env)
    cli(["queues", "create", "fanout"], env)
    cli(["notify", "topics", "create", "clock"], env)
    cli(["notify", "subscribe", "clock", "--queue", "fanout"], env)
    made = json.loads(cli(["cron", "create", "ping", "--schedule", "* * * * *", "--http", receiver.url("/ping"), "--body", "hello",
                           "-o", "json"], env).stdout)
    assert made["next_run_at"].endswith(":00Z")
    cli(["cron", "create", "to-queue", "--schedule", "* * * * *", "--queue", "ticks", "--body", "tick"], env)
    cli(["cron", "create", "to-topic", "--schedule", "* * * * *", "--timezone", "Europe/Berlin", "--topic", "clock", "--body", "tock"], env)
    bad = cli(["cron", "create", "never", "--schedule", "0 0 30 2 *", "--http", receiver.url()], env, check=False)
    assert bad.returncode != 0 and "never fires" in bad.stderr
    listed = json.loads(cli(["cron", "list", "-o", "json"], env).stdout)["schedules"]
    assert [s["name"] for s in listed] == ["ping", "to-queue", "to-topic"]

    # The next whole minute: each schedule runs once.
    def done(name):
        runs = json.loads(cli(["cron", "runs", name, "-o", "json"], env).stdout)["runs"]
        return runs if runs and runs[-1]["status"] == "succeeded" else None

    ping = wait_for(lambda: done("ping"), 90, "the HTTP schedule's first run")
    assert ping[-1]["response_status"] == 200 and ping[-1]["response"].startswith("ok run_")
    request = next(r for r in receiver.requests if r["run"] == ping[-1]["id"])
    assert request["method"] == "POST" and request["body"] == b"hello" and request["headers"]["X-Cloud-Schedule"] == "ping"
    wait_for(lambda: done("to-queue"), 30, "the queue schedule's run")
    wait_for(lambda: done("to-topic"), 30, "the topic schedule's run")
    got = json.loads(cli(["queues", "receive", "ticks", "--max", "10", "-o", "json"], env).stdout)["messages"]
    assert [m["body"] for m in got][:1] == ["tick"] and got[0]["attributes"]["schedule"] == "to-queue"
    fan = wait_for(lambda: json.loads(cli(["queues", "receive", "fanout", "--max", "10", "-o", "json"], env).stdout)["messages"], 30,
                   "the topic's delivery to its queue")
    assert fan[0]["body"] == "tock"

    paused = json.loads(cli(["cron", "pause", "ping", "-o", "json"], env).stdout)
    assert paused["paused"] is True and paused["next_run_at"] is None
    resumed = json.loads(cli(["cron", "resume", "ping", "-o", "json"], env).stdout)
    assert resumed["paused"] is False and resumed["next_run_at"]
    for name in ["ping", "to-queue", "to-topic"]:
        cli(["cron", "delete", name], env)


def pid_with_connection_to(port):
    """The pid of the process holding a TCP connection to 127.0.0.1:`port` (from /proc)."""
    inodes = set()
    for table in ["/proc/net/tcp", "/proc/net/tcp6"]:
        if not os.path.exists(table):
            continue
        for line in open(table).readlines()[1:]:
            fields = line.split()
            remote_port = int(fields[2].split(":")[1], 16)
            if remote_port == port and fields[3] == "01":  # ESTABLISHED
                inodes.add(fields[9])
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    return int(pid)
        except OSError:
            continue
    return None


def test_each_due_time_once_across_processes_with_one_killed(postgres, receiver, tmp_path):
    database = postgres.new_database("cron")
    args = ["--task-lease", "3"]
    servers = [ControlServer(database, tmp_path / f"cp{i}", name=f"cp{i}", extra_args=args) for i in range(3)]
    lone = ControlServer(str(tmp_path / "lone" / "control.sqlite"), tmp_path / "lone", name="lone", extra_args=args)
    for s in servers + [lone]:
        s.start()
    try:
        schedules = []
        for s in (servers[0], lone):
            _, key = user(s.url, "tick")
            r = call(s.url, "POST", "/cron/schedules", key,
                     {"name": "tick", "schedule": "rate(1 minute)", "target": "http", "destination": receiver.url("/tick")})
            assert r.status_code == 201, r.text
            schedules.append((s, key))
        # The first run of each deployment is held by the receiver; the process making the call is killed.
        receiver.hold.set()
        killed = []
        for _ in range(2):
            assert receiver.held.acquire(timeout=120), "no run reached the receiver"
            pid = pid_with_connection_to(receiver.port)
            victim = next((s for s in servers + [lone] if s.proc.pid == pid and s not in killed), None)
            assert victim is not None, f"no control plane holds the connection (pid {pid})"
            victim.kill()
            killed.append(victim)
        receiver.hold.clear()
        receiver.release.set()
        if lone in killed:
            lone.start()  # the SQLite deployment has one process: it comes back and finishes the run
        # Two due times of each deployment, each run once and succeeded.
        for s, key in schedules:
            url = s.url if s not in killed or s is lone else next(p for p in servers if p not in killed).url

            def two_succeeded():
                r = call(url, "GET", "/cron/schedules/tick/runs", key)
                runs = r.json()["runs"] if r.status_code == 200 else []
                return runs if len(runs) >= 2 and all(run["status"] == "succeeded" for run in runs[:2]) else None

            runs = wait_for(two_succeeded, 200, f"two runs on {s.name}")
            times = [run["scheduled_for"] for run in runs]
            assert len(times) == len(set(times)), f"a due time fired twice: {times}"
            assert set(run["id"] for run in runs[:2]) <= receiver.runs(), "every run called the endpoint"
        retried = [run for run, count in ((r, sum(1 for q in receiver.requests if q["run"] == r)) for r in receiver.runs()) if count > 1]
        assert retried, "the killed processes' calls were made again by the process that took the runs over"
    finally:
        for s in servers + [lone]:
            s.stop()
