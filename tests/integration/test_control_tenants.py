"""Tenants, members, quotas (with the platform operators' admin API), and `cloud tenants` /
`cloud auth forgot-password|reset-password`, over real HTTP on SQLite and on PostgreSQL."""
import json
import os
import subprocess

import pytest
import requests

from cloudtest import CLOUD_BIN
from controlhelpers import (
    PASSWORD, PLATFORM_ADMIN, call, error, login, new_email, register, tokens_in_outbox, user)

pytestmark = pytest.mark.needs_binary


@pytest.fixture(scope="module")
def api(control):
    return control.url


@pytest.fixture(scope="module")
def operator(api):
    register(api, PLATFORM_ADMIN, allow_existing=True)
    return login(api, PLATFORM_ADMIN)


def test_tenants_members_and_switching(api):
    ada_email, ada = user(api, "ada")
    bob_email, bob = user(api, "bob")
    r = call(api, "POST", "/tenants", ada, {"name": "Photos"})
    assert r.status_code == 201, r.text
    photos = r.json()["id"]
    listed = call(api, "GET", "/tenants", ada).json()["tenants"]
    assert [(t["name"], t["current"], t["roles"]) for t in listed] == [(ada_email, True, ["admin"]), ("Photos", False, ["admin"])]

    ada_photos = call(api, "POST", "/auth/keys", ada, {"name": "photos", "tenant_id": photos}).json()["api_key"]
    assert call(api, "GET", "/auth/me", ada_photos).json()["tenant"]["id"] == photos
    r = call(api, "POST", f"/tenants/{photos}/members", ada_photos, {"email": bob_email, "roles": ["developer", "viewer"]})
    assert r.status_code == 201, r.text
    assert r.json()["roles"] == ["developer", "viewer"]
    members = call(api, "GET", f"/tenants/{photos}/members", ada_photos).json()["members"]
    assert [(m["email"], m["roles"]) for m in members] == [(ada_email, ["admin"]), (bob_email, ["developer", "viewer"])]
    bob_photos = login(api, bob_email, tenant_id=photos)
    me = call(api, "GET", "/auth/me", bob_photos).json()
    assert me["tenant"]["id"] == photos and me["roles"] == ["developer", "viewer"]
    assert call(api, "DELETE", f"/tenants/{photos}/members/{me['user']['id']}", bob_photos).status_code == 403
    r = call(api, "DELETE", f"/tenants/{photos}/members/{me['user']['id']}", ada_photos)
    assert r.status_code == 204
    assert call(api, "GET", "/auth/me", bob_photos).status_code == 401
    assert call(api, "GET", "/auth/me", bob).status_code == 200
    r = requests.post(f"{api}/auth/login", json={"email": bob_email, "password": PASSWORD, "tenant_id": photos})
    assert r.status_code == 404 and error(r) == "not_found"


def test_quotas_defaults_enforcement_and_admin_api(api, operator):
    email, key = user(api, "quota")
    tenant = call(api, "GET", "/auth/me", key).json()["tenant"]["id"]
    quotas = {q["resource"]: q for q in call(api, "GET", f"/tenants/{tenant}/quotas", key).json()["quotas"]}
    assert set(quotas) == {"buckets", "storage_bytes", "api_keys", "members", "secrets", "queues", "topics", "subscriptions", "schedules",
                           "instances", "vcpus", "memory_mib", "images", "volumes", "volume_mib", "snapshots", "ssh_keys"}
    assert quotas["api_keys"]["used"] == 1 and quotas["api_keys"]["default"] is True
    assert quotas["buckets"]["used"] is None
    assert quotas["secrets"]["used"] == 0 and quotas["secrets"]["limit"] == 1000
    for resource, limit in [("queues", 1000), ("topics", 100), ("subscriptions", 200), ("schedules", 100),
                            ("instances", 20), ("vcpus", 40), ("memory_mib", 65536), ("images", 50), ("volumes", 20),
                            ("volume_mib", 102400), ("snapshots", 50), ("ssh_keys", 100)]:
        assert quotas[resource]["used"] == 0 and quotas[resource]["limit"] == limit, resource

    # A tenant admin cannot raise their own quotas; an operator can set anyone's.
    r = call(api, "PUT", f"/admin/tenants/{tenant}/quotas", key, {"max_api_keys": 1000})
    assert r.status_code == 403 and error(r) == "forbidden"
    r = call(api, "PUT", f"/admin/tenants/{tenant}/quotas", operator, {"max_api_keys": 2, "max_members": 1})
    assert r.status_code == 200, r.text
    limits = {q["resource"]: q["limit"] for q in r.json()["quotas"]}
    assert limits["api_keys"] == 2 and limits["members"] == 1
    assert call(api, "PUT", "/admin/tenants/tnt_nope/quotas", operator, {"max_api_keys": 2}).status_code == 404

    assert call(api, "POST", "/auth/keys", key, {"name": "second"}).status_code == 201
    r = call(api, "POST", "/auth/keys", key, {"name": "third"})
    assert r.status_code == 409 and error(r) == "quota_exceeded"
    assert "api_keys" in r.json()["error"]["message"]
    other, _ = user(api, "joiner")
    r = call(api, "POST", f"/tenants/{tenant}/members", key, {"email": other, "roles": ["viewer"]})
    assert r.status_code == 409 and error(r) == "quota_exceeded"
    # Revoking a key makes room again.
    second = [k for k in call(api, "GET", "/auth/keys", key).json()["keys"] if k["name"] == "second"][0]
    assert call(api, "DELETE", f"/auth/keys/{second['id']}", key).status_code == 204
    assert call(api, "POST", "/auth/keys", key, {"name": "third"}).status_code == 201
    assert "cloud_api_quota_refusals_total" in requests.get(f"{api}/metrics").text


def cli(args, env, input=None, check=True):
    r = subprocess.run([CLOUD_BIN] + args, env=env, input=input, capture_output=True, text=True, timeout=60)
    if check:
        assert r.returncode == 0, f"{args}: {r.stdout}\n{r.stderr}"
    return r


def test_cli_tenants_and_password_reset(api, control, tmp_path):
    env = dict(os.environ)
    env.pop("CLOUD_API_KEY", None)
    env["HOME"] = str(tmp_path)
    env["CLOUD_CONFIG"] = str(tmp_path / "cloud" / "config")
    env["CLOUD_API_URL"] = api
    email = new_email("clitenant")
    register(api, email)
    cli(["auth", "login", "--email", email, "--password-stdin"], env, input=PASSWORD + "\n")
    config = tmp_path / "cloud" / "config"
    personal = json.loads(cli(["auth", "me", "-o", "json"], env).stdout)["tenant"]["id"]
    assert f"tenant_id = {personal}" in config.read_text()

    created = json.loads(cli(["tenants", "create", "Staging", "-o", "json"], env).stdout)
    listing = cli(["tenants", "list"], env).stdout
    assert "Staging" in listing and created["id"] in listing
    old_key = [line.split(" = ")[1] for line in config.read_text().splitlines() if line.startswith("api_key")][0]
    cli(["tenants", "switch", created["id"]], env)
    assert f"tenant_id = {created['id']}" in config.read_text()
    assert json.loads(cli(["auth", "me", "-o", "json"], env).stdout)["tenant"]["id"] == created["id"]
    assert call(api, "GET", "/auth/me", old_key).status_code == 401  # the profile's previous key is revoked
    tenants = json.loads(cli(["tenants", "-o", "json"], env).stdout)["tenants"]
    assert [t["name"] for t in tenants if t["current"]] == ["Staging"]

    friend, _ = user(api, "friend")
    cli(["tenants", "add-member", friend, "--roles", "developer"], env)
    members = json.loads(cli(["tenants", "members", "-o", "json"], env).stdout)["members"]
    assert {m["email"]: m["roles"] for m in members} == {email: ["admin"], friend: ["developer"]}
    quotas = cli(["tenants", "quotas"], env).stdout
    assert "api_keys" in quotas and "members" in quotas
    cli(["tenants", "remove-member", friend], env)
    r = cli(["tenants", "set-quotas", created["id"], "--set", "api_keys=5"], env, check=False)
    assert r.returncode != 0 and "forbidden" in r.stderr
    r = cli(["tenants", "switch", personal + "x"], env, check=False)
    assert r.returncode != 0 and "not_found" in r.stderr

    # Forgot and reset the password with the CLI; the token comes from the outbox.
    cli(["auth", "forgot-password", "--email", email], env)
    token = tokens_in_outbox(control.outbox, email)[0]
    out = cli(["auth", "reset-password", "--token", token, "--password-stdin"], env, input="the newest passphrase\n").stdout
    assert "revoked" in out
    r = cli(["auth", "me"], env, check=False)
    assert r.returncode != 0
    cli(["auth", "login", "--email", email, "--password-stdin"], env, input="the newest passphrase\n")


def test_cloud_dev_writes_reset_mail_to_the_data_dirs_outbox(server):
    api = f"http://127.0.0.1:{server.api_port}"
    email = new_email("devoutbox")
    register(api, email)
    assert requests.post(f"{api}/auth/forgot-password", json={"email": email}).status_code == 202
    tokens = tokens_in_outbox(server.data_dir / "outbox", email)
    assert len(tokens) == 1
    r = requests.post(f"{api}/auth/reset-password", json={"token": tokens[0], "password": "dev outbox passphrase"})
    assert r.status_code == 200, r.text


def conforms(doc, schema, value, where="body"):
    """Checks `value` against the OpenAPI `schema` (types, required properties, no undocumented ones)."""
    if "$ref" in schema:
        return conforms(doc, doc["components"]["schemas"][schema["$ref"].split("/")[-1]], value, where)
    types = schema.get("type")
    types = types if isinstance(types, list) else [types]
    python = {"object": dict, "array": list, "string": str, "integer": int, "boolean": bool, "null": type(None)}
    assert any(isinstance(value, python[t]) for t in types), f"{where}: {value!r} is not {types}"
    if isinstance(value, dict):
        for name in schema.get("required", []):
            assert name in value, f"{where}: no {name}"
        for name, item in value.items():
            assert name in schema["properties"], f"{where}: undocumented {name}"
            conforms(doc, schema["properties"][name], item, f"{where}.{name}")
    if isinstance(value, list):
        for index, item in enumerate(value):
            conforms(doc, schema["items"], item, f"{where}[{index}]")


def test_answers_match_the_openapi_document(api, operator):
    doc = requests.get(f"{api}/openapi.json").json()

    def check(method, path, template, key, body=None, status=None):
        r = call(api, method, path, key, body)
        assert r.status_code == (status or 200), r.text
        response = doc["paths"][template][method.lower()]["responses"][str(r.status_code)]
        conforms(doc, response["content"]["application/json"]["schema"], r.json(), f"{method} {template}")

    email, key = user(api, "schema")
    friend, _ = user(api, "schemafriend")
    tenant = call(api, "GET", "/auth/me", key).json()["tenant"]["id"]
    check("POST", "/tenants", "/tenants", key, {"name": "Schema"}, 201)
    check("GET", "/tenants", "/tenants", key)
    check("GET", f"/tenants/{tenant}", "/tenants/{id}", key)
    check("POST", f"/tenants/{tenant}/members", "/tenants/{id}/members", key, {"email": friend, "roles": ["viewer"]}, 201)
    check("GET", f"/tenants/{tenant}/members", "/tenants/{id}/members", key)
    check("GET", f"/tenants/{tenant}/quotas", "/tenants/{id}/quotas", key)
    check("PUT", f"/admin/tenants/{tenant}/quotas", "/admin/tenants/{id}/quotas", operator, {"max_members": 10})
    check("POST", "/auth/forgot-password", "/auth/forgot-password", None, {"email": email}, 202)
