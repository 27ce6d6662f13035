"""Notifications: `cloud notify` against `cloud dev` and `cloud server` on PostgreSQL, delivering to a
real HTTP receiver (signatures checked as a receiver would, retries after failures) and to a queue;
and `cloud server` killed with SIGKILL while deliveries are in flight, restarted, losing none."""
import hashlib
import hmac
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
    """A webhook receiver on loopback: records every request; `/flaky-N` answers 503 to the first N
    attempts of each delivery; `/slow` holds each request until `release` is set."""

    def __init__(self):
        self.requests = []
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.held = threading.Semaphore(0)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                entry = {"path": self.path, "headers": dict(self.headers), "body": body, "answered": None}
                with receiver.lock:
                    receiver.requests.append(entry)
                    earlier = sum(1 for r in receiver.requests
                                  if r["headers"].get("X-Cloud-Delivery-Id") == self.headers.get("X-Cloud-Delivery-Id"))
                status = 200
                if self.path.startswith("/flaky-") and earlier <= int(self.path.split("-")[1]):
                    status = 503
                if self.path == "/slow" and not receiver.release.is_set():
                    receiver.held.release()
                    receiver.release.wait(60)
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    entry["answered"] = status
                except OSError:
                    pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def answered(self, path, status=200):
        with self.lock:
            return [r for r in self.requests if r["path"] == path and r["answered"] == status]

    def wait(self, condition, timeout=60):
        deadline = time.time() + timeout
        while not condition():
            assert time.time() < deadline, f"the receiver never saw what the test waits for: {len(self.requests)} requests"
            time.sleep(0.05)

    def stop(self):
        self.release.set()
        self.server.shutdown()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture(scope="module")
def api(server, deployment):
    if server.external:
        pytest.skip("needs cloud dev's control plane")
    return deployment.url


def cli(args, env, check=True):
    r = subprocess.run([CLOUD_BIN] + args, env=env, capture_output=True, text=True, timeout=60)
    if check:
        assert r.returncode == 0, f"{args}: {r.stdout}\n{r.stderr}"
    return r


def verify(request, secret):
    """What a receiver does with X-Cloud-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>."""
    parts = dict(p.split("=", 1) for p in request["headers"]["X-Cloud-Signature"].split(","))
    expected = hmac.new(secret.encode(), parts["t"].encode() + b"." + request["body"], hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"]) and abs(time.time() - int(parts["t"])) < 300


def test_webhooks_queues_filters_and_retries(api, receiver, tmp_path):
    _, key = user(api, "notify")
    env = dict(os.environ, HOME=str(tmp_path), CLOUD_CONFIG=str(tmp_path / "config"), CLOUD_API_URL=api, CLOUD_API_KEY=key)
    cli(["notify", "topics", "create", "orders"], env)
    cli(["queues", "create", "audit"], env)
    hook = json.loads(cli(["notify", "subscribe", "orders", "--webhook", receiver.url("/hook"),
                           "--filter", '{"kind": ["paid"]}', "-o", "json"], env).stdout)
    flaky = json.loads(cli(["notify", "subscribe", "orders", "--webhook", receiver.url("/flaky-2"), "-o", "json"], env).stdout)
    cli(["notify", "subscribe", "orders", "--queue", "audit"], env)
    listed = json.loads(cli(["notify", "subscriptions", "orders", "-o", "json"], env).stdout)["subscriptions"]
    assert len(listed) == 3 and all(s["signing_secret"] is None for s in listed), "secrets are shown once only"

    published = {}
    for kind in ["paid", "refunded", "paid"]:
        out = json.loads(cli(["notify", "publish", "orders", "--message", f"order {kind}", "--attribute", f"kind={kind}",
                              "-o", "json"], env).stdout)
        published[out["message_id"]] = kind
        assert out["deliveries"] == (3 if kind == "paid" else 2)

    # The filtered webhook gets the two paid orders, each signed with its subscription's secret.
    receiver.wait(lambda: len(receiver.answered("/hook")) == 2)
    for request in receiver.answered("/hook"):
        assert verify(request, hook["signing_secret"])
        assert not verify(request, flaky["signing_secret"]), "the check can fail"
        body = json.loads(request["body"])
        assert published[body["message_id"]] == "paid" and body["attributes"] == {"kind": "paid"} and body["topic"] == "orders"
    # The flaky one answers 503 twice per delivery: every message is delivered on its third attempt.
    receiver.wait(lambda: len(receiver.answered("/flaky-2")) == 3, timeout=90)
    for message in published:
        history = json.loads(cli(["notify", "deliveries", message, "-o", "json"], env).stdout)["deliveries"]
        flaky_delivery = next(d for d in history if d["subscription_id"] == flaky["id"])
        assert flaky_delivery["attempts"] == 3 and flaky_delivery["status"] == "delivered" and flaky_delivery["last_status"] == 200
    assert len(receiver.answered("/flaky-2", 503)) == 6
    # The queue got all three, with the message's attributes.
    got = []
    deadline = time.time() + 30
    while len(got) < 3 and time.time() < deadline:
        got += json.loads(cli(["queues", "receive", "audit", "--max", "10", "--wait", "2", "--delete", "-o", "json"], env).stdout)["messages"]
    assert sorted(m["body"] for m in got) == ["order paid", "order paid", "order refunded"]
    assert {m["attributes"]["notify_message_id"] for m in got} == set(published)


def test_dead_letters_and_redrive(api, receiver, tmp_path):
    _, key = user(api, "dead")
    env = dict(os.environ, HOME=str(tmp_path), CLOUD_CONFIG=str(tmp_path / "config"), CLOUD_API_URL=api, CLOUD_API_KEY=key)
    cli(["notify", "topics", "create", "alerts"], env)
    sub = json.loads(cli(["notify", "subscribe", "alerts", "--webhook", receiver.url("/flaky-100"), "--max-attempts", "2",
                          "-o", "json"], env).stdout)
    message = json.loads(cli(["notify", "publish", "alerts", "--message", "disk full", "-o", "json"], env).stdout)["message_id"]
    deadline = time.time() + 60
    while True:
        dead = json.loads(cli(["notify", "dead-letters", sub["id"], "-o", "json"], env).stdout)["deliveries"]
        if dead:
            break
        assert time.time() < deadline, "the delivery never reached the dead letters"
        time.sleep(0.2)
    assert [d["message_id"] for d in dead] == [message] and dead[0]["attempts"] == 2 and dead[0]["last_status"] == 503
    assert len(receiver.answered("/flaky-100", 503)) == 2


def test_no_delivery_lost_when_killed_mid_delivery(postgres, receiver, tmp_path):
    """Twenty deliveries to a receiver that holds its requests; `cloud server` is killed with SIGKILL
    while they are in flight and started again on the same database: every message is delivered."""
    database = postgres.new_database("notify")
    control = ControlServer(database, tmp_path / "cp", extra_args=["--task-lease", "3", "--task-workers", "8"])
    control.start(env={"CLOUD_TEST_TASKS": "1"})
    try:
        _, key = user(control.url, "crash")
        assert call(control.url, "POST", "/notify/topics", key, {"name": "jobs"}).status_code == 201
        r = call(control.url, "POST", "/notify/topics/jobs/subscriptions", key, {"protocol": "webhook", "endpoint": receiver.url("/slow")})
        assert r.status_code == 201, r.text
        messages = []
        for i in range(20):
            r = call(control.url, "POST", "/notify/topics/jobs/publish", key, {"message": f"job {i}"})
            assert r.status_code == 201, r.text
            messages.append(r.json()["message_id"])
        # Deliveries are in flight: the receiver holds them.
        assert receiver.held.acquire(timeout=30), "no delivery reached the receiver"
        control.kill()
        receiver.release.set()
        control.start(env={"CLOUD_TEST_TASKS": "1"})
        receiver.wait(lambda: {json.loads(r["body"])["message_id"] for r in receiver.answered("/slow")} == set(messages), timeout=120)
        deadline = time.time() + 30
        for message in messages:
            while True:
                history = call(control.url, "GET", f"/notify/messages/{message}/deliveries", key).json()["deliveries"]
                if history and history[0]["status"] == "delivered":
                    break
                assert time.time() < deadline, f"{message}: {history}"
                time.sleep(0.1)
    finally:
        control.stop()
