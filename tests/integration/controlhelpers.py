"""Helpers for the tenant, quota, password-reset and security tests of the control plane.

`own_control_plane()` starts `cloud server` with the flags these tests need (a platform admin, an
outbox, optionally SMTP) on SQLite or on a fresh PostgreSQL database."""
import http.client
import json
import re
import time
import uuid
from pathlib import Path

import requests

from controltest import ControlServer

PASSWORD = "correct horse battery staple"
PLATFORM_ADMIN = "ops@example.com"
TOKEN = re.compile(r"crt_[A-Za-z0-9_-]{43}")


def own_control_plane(request, tmp_path_factory, database, extra_args=(), name="control"):
    """A `cloud server` on `database` ("sqlite" or "postgres") with --platform-admin and --outbox
    (unless extra_args bring --smtp-host). Returns the ControlServer with `.outbox` set."""
    directory = tmp_path_factory.mktemp(f"{name}-{database}")
    outbox = directory / "outbox"
    args = ["--platform-admin", PLATFORM_ADMIN] + list(extra_args)
    if "--smtp-host" not in args:
        args += ["--outbox", str(outbox)]
    if database == "sqlite":
        url = str(directory / "control.sqlite")
    else:
        url = request.getfixturevalue("postgres").new_database(name)
    server = ControlServer(url, directory, name=name, extra_args=args)
    server.start()
    server.outbox = outbox
    return server


def stored(request, server):
    """What the server's database holds: the SQLite file and its WAL, or a dump of the PostgreSQL one."""
    if "://" in server.database:
        return request.getfixturevalue("postgres").dump(server.database).encode()
    data = b""
    for suffix in ["", "-wal"]:
        path = Path(server.database + suffix)
        if path.exists():
            data += path.read_bytes()
    return data


def new_email(prefix="u"):
    return f"{prefix}-{uuid.uuid4().hex[:10]}@example.com"


def register(api, email, password=PASSWORD, name="Test User", allow_existing=False):
    r = requests.post(f"{api}/auth/register", json={"email": email, "name": name, "password": password})
    if allow_existing and r.status_code == 409:
        return None
    assert r.status_code == 201, r.text
    return r.json()


def login(api, email, password=PASSWORD, **extra):
    r = requests.post(f"{api}/auth/login", json={"email": email, "password": password, **extra})
    assert r.status_code == 200, r.text
    return r.json()["api_key"]


def user(api, prefix="u"):
    email = new_email(prefix)
    register(api, email)
    return email, login(api, email)


def call(api, method, path, key=None, body=None):
    headers = {"X-API-Key": key} if key else {}
    return requests.request(method, f"{api}{path}", headers=headers, json=body)


def error(r):
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return body["error"]["code"]


def post_from(source, api, path, body):
    """POSTs JSON from the local address `source` (127.0.0.x), so that per-address rate limits of
    one test do not spill into another. Returns (status, headers, parsed body)."""
    host, port = api.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30, source_address=(source, 0))
    try:
        connection.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        data = response.read()
        return response.status, dict(response.getheaders()), (json.loads(data) if data else None)
    finally:
        connection.close()


def tokens_in_outbox(outbox: Path, to, timeout=10):
    """Waits for a mail to `to` in the outbox; returns the reset token of each mail to them, oldest first."""
    deadline = time.time() + timeout
    while True:
        found = []
        if outbox.exists():
            for path in sorted(outbox.glob("*.eml")):
                text = path.read_bytes().decode()  # read_text() would turn CRLF into LF
                if f"To: {to}\r\n" in text:
                    found += list(dict.fromkeys(TOKEN.findall(text)))  # one per mail
        if found or time.time() > deadline:
            return found
        time.sleep(0.05)
