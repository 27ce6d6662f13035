"""The control plane's REST API and the `cloud auth` / `cloud roles` CLI, over
real HTTP, on both databases: `cloud dev` (state in <data-dir>/control.sqlite)
and `cloud server --database postgres://…` on a real PostgreSQL."""
import json
import os
import stat
import subprocess
import time
import uuid

import pytest
import requests

from cloudtest import CLOUD_BIN

PASSWORD = "correct horse battery staple"

pytestmark = pytest.mark.needs_binary


@pytest.fixture(scope="module")
def api(deployment):
    return deployment.url


def new_email(prefix="u"):
    return f"{prefix}-{uuid.uuid4().hex[:10]}@example.com"


def register(api, email, password=PASSWORD, name="Test User"):
    r = requests.post(f"{api}/auth/register",
                      json={"email": email, "name": name, "password": password})
    assert r.status_code == 201, r.text
    return r.json()


def login(api, email, password=PASSWORD, **extra):
    r = requests.post(f"{api}/auth/login",
                      json={"email": email, "password": password, **extra})
    assert r.status_code == 200, r.text
    return r.json()["api_key"]


def user(api, prefix="u"):
    email = new_email(prefix)
    register(api, email)
    return email, login(api, email)


def get(api, path, key):
    return requests.get(f"{api}{path}", headers={"X-API-Key": key})


def error(r):
    body = r.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}, body
    return body["error"]["code"]


def test_health_and_openapi(api):
    assert requests.get(f"{api}/health/live").status_code == 200
    r = requests.get(f"{api}/health/ready")
    assert r.status_code == 200, r.text
    # No compute host is registered on a fresh cloud dev: compute names it, and the API still serves.
    assert r.json() == {"status": "degraded", "checks": {
        "database": "ok", "storage": "ok", "secrets": "ok",
        "compute": "no host is registered: instances fail until an operator adds one (cloud hosts add)"}}
    doc = requests.get(f"{api}/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    assert doc["paths"]["/auth/login"]["post"]["x-permission"] == "anonymous"
    assert doc["paths"]["/rbac/roles"]["post"]["x-permission"] == "role:create"
    assert doc["components"]["securitySchemes"]["apiKey"]["name"] == "X-API-Key"


def test_register_login_me(api):
    email = new_email("ada")
    reg = register(api, email.upper(), name="Ada")
    assert reg["user"]["email"] == email
    assert "password" not in json.dumps(reg)
    key = login(api, email)
    assert key.startswith("ck_") and len(key) >= 3 + 16 + 1 + 43
    r = get(api, "/auth/me", key)
    assert r.status_code == 200, r.text
    me = r.json()
    assert me["user"]["email"] == email and me["user"]["name"] == "Ada"
    assert me["roles"] == ["admin"] and me["permissions"] == ["*:*"]
    assert me["tenant"]["personal"] is True
    assert [t["id"] for t in me["tenants"]] == [me["tenant"]["id"]]
    # The same email again is a conflict; a weak password is refused.
    r = requests.post(f"{api}/auth/register",
                      json={"email": email, "name": "X", "password": PASSWORD})
    assert r.status_code == 409 and error(r) == "email_taken"
    r = requests.post(f"{api}/auth/register",
                      json={"email": new_email(), "name": "X", "password": "short"})
    assert r.status_code == 400 and error(r) == "weak_password"
    r = requests.post(f"{api}/auth/login", json={"email": email, "password": "wrong password"})
    assert r.status_code == 401 and error(r) == "invalid_credentials"


def test_routes_need_a_valid_key(api):
    _, key = user(api)
    r = requests.get(f"{api}/auth/me")
    assert r.status_code == 401 and error(r) == "unauthorized"
    for bad in ["nonsense", key[:-1] + ("A" if key[-1] != "A" else "B"),
                "ck_0123456789abcdef_" + "a" * 43]:
        r = get(api, "/auth/me", bad)
        assert r.status_code == 401, bad
    for method, path in [("GET", "/auth/keys"), ("GET", "/rbac/roles"),
                         ("POST", "/rbac/roles"), ("GET", "/rbac/bindings"),
                         ("DELETE", "/auth/keys/0123456789abcdef")]:
        r = requests.request(method, f"{api}{path}")
        assert r.status_code == 401, (method, path)


def test_keys_create_list_rotate_regenerate_delete(api):
    _, key = user(api)
    r = requests.post(f"{api}/auth/keys", headers={"X-API-Key": key}, json={"name": "ci"})
    assert r.status_code == 201, r.text
    second = r.json()["api_key"]
    second_id = r.json()["key"]["id"]
    assert second.startswith(f"ck_{second_id}_")
    listed = get(api, "/auth/keys", key).json()["keys"]
    assert {k["name"] for k in listed} == {"login", "ci"}
    assert all(second not in json.dumps(k) for k in listed)
    assert [k["current"] for k in listed if k["id"] == second_id] == [False]

    # Rotate with a 2 s grace: both work, then only the new one.
    r = requests.post(f"{api}/auth/keys/{second_id}/rotate",
                      headers={"X-API-Key": key}, json={"grace_seconds": 2})
    assert r.status_code == 201, r.text
    rotated = r.json()["api_key"]
    assert r.json()["previous"]["expires_at"] is not None
    assert get(api, "/auth/me", second).status_code == 200
    assert get(api, "/auth/me", rotated).status_code == 200
    time.sleep(3.1)
    assert get(api, "/auth/me", second).status_code == 401
    assert get(api, "/auth/me", rotated).status_code == 200

    # Regenerate: the old key is dead at once.
    rotated_id = rotated.split("_")[1]
    r = requests.post(f"{api}/auth/keys/{rotated_id}/regenerate", headers={"X-API-Key": key})
    assert r.status_code == 201, r.text
    regenerated = r.json()["api_key"]
    assert get(api, "/auth/me", rotated).status_code == 401
    assert get(api, "/auth/me", regenerated).status_code == 200

    # Delete (revoke): refused from then on, and gone from the list.
    regenerated_id = regenerated.split("_")[1]
    r = requests.delete(f"{api}/auth/keys/{regenerated_id}", headers={"X-API-Key": key})
    assert r.status_code == 204
    r = get(api, "/auth/me", regenerated)
    assert r.status_code == 401 and error(r) == "unauthorized"
    assert regenerated_id not in {k["id"] for k in get(api, "/auth/keys", key).json()["keys"]}
    # Another user cannot touch this user's keys.
    _, other = user(api)
    key_id = key.split("_")[1]
    r = requests.delete(f"{api}/auth/keys/{key_id}", headers={"X-API-Key": other})
    assert r.status_code == 404
    assert get(api, "/auth/me", key).status_code == 200


def test_lockout_after_repeated_failures(api):
    email = new_email("locked")
    register(api, email)
    for _ in range(5):
        r = requests.post(f"{api}/auth/login", json={"email": email, "password": "not the password"})
        assert r.status_code == 401
    r = requests.post(f"{api}/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 429 and error(r) == "too_many_attempts"
    assert int(r.headers["Retry-After"]) > 0
    # Another account is not affected.
    other = new_email()
    register(api, other)
    login(api, other)


def test_rbac_viewer_versus_admin(api):
    admin_email, admin = user(api, "admin")
    viewer_email, _ = user(api, "viewer")
    tenant = get(api, "/auth/me", admin).json()["tenant"]["id"]
    r = requests.post(f"{api}/rbac/bindings", headers={"X-API-Key": admin},
                      json={"user": viewer_email, "role": "viewer"})
    assert r.status_code == 201, r.text
    viewer = login(api, viewer_email, tenant_id=tenant)
    me = get(api, "/auth/me", viewer).json()
    assert me["tenant"]["id"] == tenant and me["roles"] == ["viewer"]

    role = {"name": "deployer", "permissions": ["instance:read", "volume:read", "bucket:*"]}
    r = requests.post(f"{api}/rbac/roles", headers={"X-API-Key": viewer}, json=role)
    assert r.status_code == 403 and error(r) == "forbidden"
    r = requests.post(f"{api}/rbac/roles", headers={"X-API-Key": admin}, json=role)
    assert r.status_code == 201, r.text
    assert r.json()["permissions"] == role["permissions"]
    names = {x["name"] for x in get(api, "/rbac/roles", viewer).json()["roles"]}
    assert {"admin", "developer", "viewer", "deployer"} <= names
    r = requests.post(f"{api}/rbac/bindings", headers={"X-API-Key": viewer},
                      json={"user": viewer_email, "role": "admin"})
    assert r.status_code == 403
    r = requests.delete(f"{api}/rbac/roles/deployer", headers={"X-API-Key": viewer})
    assert r.status_code == 403
    bindings = get(api, "/rbac/bindings", viewer).json()["bindings"]
    assert {(b["user"], b["role"]) for b in bindings} == {(admin_email, "admin"), (viewer_email, "viewer")}
    # Built-in roles cannot be changed; the last admin binding stays.
    r = requests.delete(f"{api}/rbac/roles/admin", headers={"X-API-Key": admin})
    assert r.status_code == 409 and error(r) == "builtin_role"
    admin_binding = [b["id"] for b in bindings if b["role"] == "admin"][0]
    r = requests.delete(f"{api}/rbac/bindings/{admin_binding}", headers={"X-API-Key": admin})
    assert r.status_code == 409 and error(r) == "last_admin"
    # Unbinding takes the viewer's access to this tenant away.
    viewer_binding = [b["id"] for b in bindings if b["role"] == "viewer"][0]
    r = requests.delete(f"{api}/rbac/bindings/{viewer_binding}", headers={"X-API-Key": admin})
    assert r.status_code == 204
    assert get(api, "/rbac/roles", viewer).status_code == 403
    assert requests.delete(f"{api}/rbac/roles/deployer", headers={"X-API-Key": admin}).status_code == 204
    # Nothing of this tenant is visible from the viewer's own.
    own = login(api, viewer_email)
    assert get(api, "/rbac/roles/deployer", own).status_code == 404


def test_bad_requests_get_4xx_with_request_ids(api):
    _, key = user(api)
    cases = [
        (b"{not json", "invalid_json"),
        (json.dumps({"name": "x", "permissions": ["a:b"], "extra": 1}).encode(), "invalid_request"),
        (json.dumps({"name": 5, "permissions": ["a:b"]}).encode(), "invalid_request"),
        (json.dumps({"name": "x", "permissions": "a:b"}).encode(), "invalid_request"),
        (json.dumps({"permissions": ["a:b"]}).encode(), "invalid_request"),
        (json.dumps({"name": "x", "permissions": ["not a permission"]}).encode(), "invalid_request"),
        (b"[]", "invalid_request"),
    ]
    for body, code in cases:
        r = requests.post(f"{api}/rbac/roles", data=body,
                          headers={"X-API-Key": key, "Content-Type": "application/json"})
        assert r.status_code == 400, (body, r.text)
        assert error(r) == code, body
        assert r.headers["X-Request-Id"]
    r = requests.post(f"{api}/rbac/roles", data=b"x" * (1 << 20),
                      headers={"X-API-Key": key, "Content-Type": "application/json"})
    assert r.status_code == 413 and error(r) == "payload_too_large"
    r = requests.post(f"{api}/auth/login", data="email=a", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415
    r = requests.get(f"{api}/no/such/route")
    assert r.status_code == 404 and error(r) == "not_found"
    r = requests.put(f"{api}/auth/me", headers={"X-API-Key": key})
    assert r.status_code == 405 and "GET" in r.headers["Allow"]
    # A client's request id is echoed; otherwise one is made up, different each time.
    r = requests.get(f"{api}/health/live", headers={"X-Request-Id": "trace-123"})
    assert r.headers["X-Request-Id"] == "trace-123"
    ids = {requests.get(f"{api}/health/live").headers["X-Request-Id"] for _ in range(3)}
    assert len(ids) == 3


def test_request_id_is_logged(api, deployment):
    requests.get(f"{api}/health/live", headers={"X-Request-Id": "find-me-in-the-log"})
    deadline = time.time() + 5
    while time.time() < deadline:
        if "find-me-in-the-log" in deployment.log():
            return
        time.sleep(0.1)
    pytest.fail("the request id is not in the server log")


def test_passwords_and_keys_are_not_stored_or_logged(api, deployment):
    email = new_email("secret")
    register(api, email)
    key = login(api, email)
    db = deployment.stored()
    assert email.encode() in db, "the check would not see what the database holds"
    assert PASSWORD.encode() not in db
    assert key.encode() not in db
    log = deployment.log()
    assert PASSWORD not in log and key not in log


def cli(args, env, input=None, check=True):
    r = subprocess.run([CLOUD_BIN] + args, env=env, input=input, capture_output=True,
                       text=True, timeout=60)
    if check:
        assert r.returncode == 0, f"{args}: {r.stdout}\n{r.stderr}"
    return r


def test_cli_flow(api, tmp_path):
    env = dict(os.environ)
    env.pop("CLOUD_API_KEY", None)
    env["HOME"] = str(tmp_path)
    env["CLOUD_CONFIG"] = str(tmp_path / "cloud" / "config")
    env["CLOUD_API_URL"] = api
    email = new_email("cli")
    cli(["auth", "register", "--email", email, "--name", "Cli User", "--password-stdin"], env,
        input=PASSWORD + "\n")
    r = cli(["auth", "me"], env, check=False)
    assert r.returncode != 0 and "cloud auth login" in r.stderr
    cli(["auth", "login", "--email", email, "--password-stdin"], env, input=PASSWORD + "\n")
    config = tmp_path / "cloud" / "config"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert "api_key = ck_" in config.read_text()
    me = json.loads(cli(["auth", "me", "-o", "json"], env).stdout)
    assert me["user"]["email"] == email and me["roles"] == ["admin"]
    assert email in cli(["auth", "me"], env).stdout

    created = json.loads(cli(["auth", "keys", "create", "--name", "deploy", "-o", "json"], env).stdout)
    keys = json.loads(cli(["auth", "keys", "list", "-o", "json"], env).stdout)["keys"]
    assert {k["name"] for k in keys} == {"cli", "deploy"}
    assert "deploy" in cli(["auth", "keys", "list"], env).stdout
    # Regenerating the key in use updates the config file.
    current = [k["id"] for k in keys if k["current"]][0]
    cli(["auth", "keys", "regenerate", current], env)
    assert current not in config.read_text()
    assert json.loads(cli(["auth", "me", "-o", "json"], env).stdout)["user"]["email"] == email
    rotated = cli(["auth", "keys", "rotate", created["key"]["id"], "--grace", "60"], env)
    assert "works until" in rotated.stdout
    new_id = [k["id"] for k in json.loads(cli(["auth", "keys", "list", "-o", "json"], env).stdout)["keys"]
              if k["name"] == "deploy" and k["id"] != created["key"]["id"]][0]
    cli(["auth", "keys", "delete", new_id], env)

    other = new_email("bob")
    requests.post(f"{api}/auth/register", json={"email": other, "name": "Bob", "password": PASSWORD})
    cli(["roles", "create", "developer2", "--permissions", "instance:read,volume:read,bucket:*"], env)
    roles = json.loads(cli(["roles", "list", "-o", "json"], env).stdout)["roles"]
    assert [r["permissions"] for r in roles if r["name"] == "developer2"] == [["instance:read", "volume:read", "bucket:*"]]
    cli(["roles", "bind", other, "developer2"], env)
    listing = cli(["roles", "list-bindings"], env).stdout
    assert other in listing and "developer2" in listing
    r = cli(["roles", "delete", "developer2"], env, check=False)
    assert r.returncode != 0 and "role_in_use" in r.stderr
    cli(["roles", "unbind", other, "developer2"], env)
    cli(["roles", "delete", "developer2"], env)
    assert "developer2" not in cli(["roles", "list"], env).stdout
    r = cli(["roles", "create", "bad", "--permissions", "nope"], env, check=False)
    assert r.returncode != 0 and "resource:action" in r.stderr
