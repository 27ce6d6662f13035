"""Secrets: the `cloud secrets` CLI against `cloud dev` (SQLite) and `cloud server` (PostgreSQL),
values absent from what the database holds, other tenants' 404, and `cloud server` restarted with
another master key (a clear 503) until `cloud master-key rotate` re-wraps the data keys."""
import json
import os
import subprocess
import uuid

import pytest
import requests

from cloudtest import CLOUD_BIN
from controlhelpers import call, error, user

pytestmark = pytest.mark.needs_binary


@pytest.fixture(scope="module")
def api(server, deployment):
    if server.external:
        pytest.skip("needs cloud dev's control plane")
    return deployment.url


def cli(args, env, input=None, check=True):
    r = subprocess.run([CLOUD_BIN] + args, env=env, input=input, capture_output=True, text=True, timeout=60)
    if check:
        assert r.returncode == 0, f"{args}: {r.stdout}\n{r.stderr}"
    return r


def cli_env(api, key, tmp_path):
    env = dict(os.environ)
    env["HOME"] = str(tmp_path)
    env["CLOUD_CONFIG"] = str(tmp_path / "cloud" / "config")
    env["CLOUD_API_URL"] = api
    env["CLOUD_API_KEY"] = key
    return env


def test_cli_lifecycle_and_values_not_stored(api, deployment, tmp_path):
    _, key = user(api, "sec")
    env = cli_env(api, key, tmp_path)
    marker = "s3cr3t-" + uuid.uuid4().hex
    (tmp_path / "value").write_text(marker)
    cli(["secrets", "create", "db/password", "--from-file", str(tmp_path / "value"), "--description", "orders"], env)
    assert cli(["secrets", "get", "db/password"], env).stdout == marker + "\n"
    listed = json.loads(cli(["secrets", "list", "-o", "json"], env).stdout)
    assert [s["name"] for s in listed["secrets"]] == ["db/password"]
    assert marker not in json.dumps(listed)

    cli(["secrets", "put", "db/password", "--from-file", "-", "--if-version", "1"], env, input=marker + "-v2")
    assert cli(["secrets", "get", "db/password"], env).stdout == marker + "-v2\n"
    assert cli(["secrets", "get", "db/password", "--version", "1"], env).stdout == marker + "\n"
    # The secret is at version 2 now: a put against version 1 is a lost update, refused.
    stale = cli(["secrets", "put", "db/password", "--value", "x", "--if-version", "1"], env, check=False)
    assert stale.returncode != 0 and "precondition_failed" in stale.stderr
    versions = json.loads(cli(["secrets", "versions", "db/password", "-o", "json"], env).stdout)
    assert [v["version"] for v in versions["versions"]] == [1, 2]

    cli(["secrets", "delete", "db/password", "--recovery-days", "2"], env)
    gone = cli(["secrets", "get", "db/password"], env, check=False)
    assert gone.returncode != 0 and "secret_deleted" in gone.stderr
    cli(["secrets", "restore", "db/password"], env)
    assert cli(["secrets", "get", "db/password"], env).stdout == marker + "-v2\n"

    stored = deployment.stored()
    assert b"db/password" in stored, "the check would not see what the database holds"
    assert marker.encode() not in stored
    assert marker not in deployment.log()


def test_other_tenants_and_roles(api):
    _, ada = user(api, "ada")
    _, eve = user(api, "eve")
    assert call(api, "POST", "/secrets", ada, {"name": "token", "value": "v"}).status_code == 201
    for method, path in [("GET", "/secrets/token"), ("GET", "/secrets/token/value"), ("DELETE", "/secrets/token"),
                         ("POST", "/secrets/token/restore")]:
        r = call(api, method, path, eve)
        assert r.status_code == 404, (method, path, r.text)
    r = call(api, "POST", "/secrets", ada, {"name": "big", "value": "x" * (64 * 1024 + 1)})
    assert r.status_code == 400 and "65536" in r.json()["error"]["message"]
    r = call(api, "POST", "/secrets", ada, {"name": "token", "value": "v", "extra": 1})
    assert r.status_code == 400 and "unknown field" in r.json()["error"]["message"]


def test_wrong_master_key_then_rotation(postgres, tmp_path):
    from controltest import ControlServer
    database = postgres.new_database("secrets")
    old, new = tmp_path / "old.key", tmp_path / "new.key"
    server = ControlServer(database, tmp_path / "logs", extra_args=["--master-key-file", str(old)])
    server.start()
    try:
        _, key = user(server.url, "rot")
        assert call(server.url, "POST", "/secrets", key, {"name": "kept", "value": "across rotation"}).status_code == 201
        assert oct(old.stat().st_mode & 0o777) == "0o600"
        server.stop()
        server.extra_args = ["--master-key-file", str(new)]
        server.start()
        r = call(server.url, "GET", "/secrets/kept/value", key)
        assert r.status_code == 503 and error(r) == "master_key_mismatch", r.text
        old_id = cli(["master-key", "id", str(old)], dict(os.environ)).stdout.strip()
        assert old_id in r.json()["error"]["message"]
        server.stop()
        env = dict(os.environ, CLOUD_DATABASE_URL=database)
        out = cli(["master-key", "rotate", "--from", str(old), "--to", str(new)], env).stdout
        assert "Re-wrapped 1 data key" in out
        server.start()
        r = call(server.url, "GET", "/secrets/kept/value", key)
        assert r.status_code == 200 and r.json()["value"] == "across rotation"
        assert b"across rotation" not in postgres.dump(database).encode()
    finally:
        server.stop()
