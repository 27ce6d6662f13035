"""Security tests of the control plane's API over real HTTP, on SQLite and on PostgreSQL: no key,
revoked and rotated keys, other tenants' things (404), brute force of login (lockout) and of password
reset (rate limits), the reset flow through an outbox and through a real SMTP sink (aiosmtpd), the
timing of key comparison, and /metrics."""
import random
import statistics
import time

import pytest
import requests

from controlhelpers import (
    PASSWORD, TOKEN, call, error, login, new_email, own_control_plane, post_from, register, stored, tokens_in_outbox, user)

pytestmark = pytest.mark.needs_binary


@pytest.fixture(scope="module")
def api(control):
    return control.url


def test_every_route_but_the_anonymous_ones_needs_a_valid_key(api):
    email, key = user(api)
    doc = requests.get(f"{api}/openapi.json").json()
    revoked = requests.post(f"{api}/auth/keys", headers={"X-API-Key": key}, json={"name": "doomed"}).json()
    assert call(api, "DELETE", f"/auth/keys/{revoked['key']['id']}", key).status_code == 204
    checked = 0
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            if operation["x-permission"] == "anonymous":
                continue
            concrete = path.replace("{id}", "0123456789abcdef").replace("{name}", "viewer").replace("{user_id}", "usr_x")
            for bad in [None, "ck_0123456789abcdef_" + "a" * 43, revoked["api_key"], "not a key"]:
                r = call(api, method.upper(), concrete, bad)
                assert r.status_code == 401, (method, path, bad and bad[:12], r.text)
                assert error(r) == "unauthorized"
                checked += 1
    assert checked >= 4 * 20


def test_rotated_key_stops_after_the_grace_period(api):
    _, key = user(api)
    created = requests.post(f"{api}/auth/keys", headers={"X-API-Key": key}, json={"name": "ci"}).json()
    r = call(api, "POST", f"/auth/keys/{created['key']['id']}/rotate", key, {"grace_seconds": 1})
    assert r.status_code == 201, r.text
    new = r.json()["api_key"]
    assert call(api, "GET", "/auth/me", created["api_key"]).status_code == 200
    time.sleep(2.2)
    r = call(api, "GET", "/auth/me", created["api_key"])
    assert r.status_code == 401 and error(r) == "unauthorized"
    assert call(api, "GET", "/auth/me", new).status_code == 200


def test_another_tenants_things_are_404_never_403(api):
    ada_email, ada = user(api, "ada")
    _, eve = user(api, "eve")
    me = call(api, "GET", "/auth/me", ada).json()
    tenant, ada_id = me["tenant"]["id"], me["user"]["id"]
    assert call(api, "POST", "/rbac/roles", ada, {"name": "secret", "permissions": ["bucket:read"]}).status_code == 201
    binding = call(api, "GET", "/rbac/bindings", ada).json()["bindings"][0]["id"]
    project = call(api, "POST", "/tenants", ada, {"name": "Project X"}).json()["id"]
    key_id = ada.split("_")[1]
    probes = [
        ("GET", "/rbac/roles/secret", None),
        ("PUT", "/rbac/roles/secret", {"description": "mine"}),
        ("DELETE", "/rbac/roles/secret", None),
        ("POST", "/rbac/bindings", {"user": new_email(), "role": "secret"}),
        ("DELETE", f"/rbac/bindings/{binding}", None),
        ("POST", f"/auth/keys/{key_id}/rotate", {}),
        ("POST", f"/auth/keys/{key_id}/regenerate", None),
        ("DELETE", f"/auth/keys/{key_id}", None),
        ("GET", f"/tenants/{tenant}", None),
        ("GET", f"/tenants/{project}", None),
        ("GET", f"/tenants/{tenant}/members", None),
        ("POST", f"/tenants/{tenant}/members", {"email": ada_email, "roles": ["admin"]}),
        ("DELETE", f"/tenants/{tenant}/members/{ada_id}", None),
        ("GET", f"/tenants/{tenant}/quotas", None),
        ("POST", "/auth/keys", {"tenant_id": project}),
    ]
    for method, path, body in probes:
        r = call(api, method, path, eve, body)
        assert r.status_code == 404, (method, path, r.status_code, r.text)
        assert error(r) == "not_found"
    r = requests.post(f"{api}/auth/login", json={"email": new_email(), "password": PASSWORD, "tenant_id": tenant})
    assert r.status_code == 401  # an unknown user is refused before the tenant is looked at
    eve_email = call(api, "GET", "/auth/me", eve).json()["user"]["email"]
    r = requests.post(f"{api}/auth/login", json={"email": eve_email, "password": PASSWORD, "tenant_id": project})
    assert r.status_code == 404 and error(r) == "not_found"
    # Ada's things are intact.
    assert call(api, "GET", "/rbac/roles/secret", ada).status_code == 200
    assert call(api, "GET", "/auth/me", ada).status_code == 200


def test_login_brute_force_is_locked_out(api):
    email = new_email("locked")
    register(api, email)
    for _ in range(5):
        r = requests.post(f"{api}/auth/login", json={"email": email, "password": "not the password at all"})
        assert r.status_code == 401 and error(r) == "invalid_credentials"
    r = requests.post(f"{api}/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 429 and error(r) == "too_many_attempts"
    assert 800 < int(r.headers["Retry-After"]) <= 900
    metrics = requests.get(f"{api}/metrics").text
    assert "cloud_api_lockouts_total " in metrics and "cloud_api_lockouts_total 0\n" not in metrics


def test_password_reset_through_the_outbox(request, api, control):
    email, key = user(api, "forgetful")
    for _ in range(5):
        requests.post(f"{api}/auth/login", json={"email": email, "password": "not the password at all"})
    assert requests.post(f"{api}/auth/login", json={"email": email, "password": PASSWORD}).status_code == 429
    # Known and unknown emails get the same answer.
    known = post_from("127.0.0.21", api, "/auth/forgot-password", {"email": email})
    unknown = post_from("127.0.0.22", api, "/auth/forgot-password", {"email": new_email("nobody")})
    assert known[0] == unknown[0] == 202 and known[2] == unknown[2]
    tokens = tokens_in_outbox(control.outbox, email)
    assert len(tokens) == 1
    token = tokens[0]
    assert token not in control.output()
    held = stored(request, control)
    assert email.encode() in held, "the check would not see what the database holds"
    assert token.encode() not in held  # only its hash is stored
    status, _, body = post_from("127.0.0.21", api, "/auth/reset-password", {"token": token, "password": "short"})
    assert status == 400 and body["error"]["code"] == "weak_password"
    status, _, body = post_from("127.0.0.21", api, "/auth/reset-password", {"token": token, "password": "a whole new passphrase"})
    assert status == 200, body
    assert body["revoked_keys"] == 1
    assert call(api, "GET", "/auth/me", key).status_code == 401  # keys are revoked
    login(api, email, "a whole new passphrase")  # and the lockout is over
    status, _, body = post_from("127.0.0.21", api, "/auth/reset-password", {"token": token, "password": "another passphrase!"})
    assert status == 400 and body["error"]["code"] == "invalid_token"


def test_reset_brute_force_is_rate_limited(api, control):
    email, _ = user(api, "target")
    # Per email: 5 a minute, whatever the address.
    for index in range(5):
        assert post_from(f"127.0.0.{30 + index}", api, "/auth/forgot-password", {"email": email})[0] == 202
    status, headers, body = post_from("127.0.0.40", api, "/auth/forgot-password", {"email": email})
    assert status == 429 and body["error"]["code"] == "too_many_requests"
    assert 1 <= int(headers["Retry-After"]) <= 60
    # Per address: 5 a minute, whatever the email.
    for _ in range(5):
        assert post_from("127.0.0.41", api, "/auth/forgot-password", {"email": new_email()})[0] == 202
    assert post_from("127.0.0.41", api, "/auth/forgot-password", {"email": new_email()})[0] == 429
    # Guessing tokens: 10 a minute per address, then 429.
    statuses = [post_from("127.0.0.42", api, "/auth/reset-password", {"token": "crt_" + "A" * 43, "password": "a whole new passphrase"})[0]
                for _ in range(11)]
    assert statuses == [400] * 10 + [429]
    assert len(tokens_in_outbox(control.outbox, email)) == 5


def median_difference(a, b):
    return statistics.median(a) - statistics.median(b)


def permutation_p_value(a, b, rounds=2000, seed=7):
    """Two-sided p-value of the difference of medians under the hypothesis that a and b come from
    one distribution, and the 99.9th percentile of |difference| under it (what the test can see)."""
    rng = random.Random(seed)
    observed = abs(median_difference(a, b))
    pooled = list(a) + list(b)
    differences = []
    for _ in range(rounds):
        rng.shuffle(pooled)
        differences.append(abs(median_difference(pooled[:len(a)], pooled[len(a):])))
    differences.sort()
    p = (1 + sum(d >= observed for d in differences)) / (1 + rounds)
    return p, differences[int(0.999 * len(differences)) - 1]


@pytest.mark.deadline(300)
def test_key_comparison_time_does_not_depend_on_the_key(api):
    """Wrong keys that share all but the last character with a real key against wrong keys that
    share only the public id: the medians of their response times must not differ more than
    relabelling the same measurements at random makes them differ (keys with an unknown id are
    measured too, and printed).

    What this can detect: a difference of medians above the printed bound (the 99.9th percentile of
    the relabelled differences, tens of microseconds on loopback), such as a lookup by the secret's
    prefix or an early exit before hashing. It cannot detect nanosecond differences (a byte-wise
    compare of 64 bytes): for those the design is the guard (the comparison runs on SHA-256 digests
    with CRYPTO_memcmp) and the Swift test KeyComparisonTests checks that near misses do not match
    more of the compared digest."""
    _, key = user(api, "timing")
    prefix, secret = key[:20], key[20:]
    flip = {c: d for c, d in zip("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
                                 "BCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_A")}
    near = prefix + secret[:-1] + flip[secret[-1]]
    far = prefix + "".join(flip[c] for c in secret)
    stranger = "ck_" + "".join(random.choice("0123456789abcdef") for _ in range(16)) + "_" + "".join(flip[c] for c in secret)
    session = requests.Session()
    kinds = {"near": near, "far": far, "stranger": stranger}
    times = {name: [] for name in kinds}
    for name, candidate in kinds.items():  # warm up
        for _ in range(20):
            session.get(f"{api}/auth/me", headers={"X-API-Key": candidate})
    rng = random.Random(1)
    for _ in range(400):
        order = list(kinds.items())
        rng.shuffle(order)  # interleaved in random order, so drift hits all kinds alike
        for name, candidate in order:
            start = time.perf_counter()
            r = session.get(f"{api}/auth/me", headers={"X-API-Key": candidate})
            times[name].append(time.perf_counter() - start)
            assert r.status_code == 401
    assert session.get(f"{api}/auth/me", headers={"X-API-Key": key}).status_code == 200
    # The same measurement repeated: even against odd rounds of one kind.
    same_p, same_bound = permutation_p_value(times["near"][0::2], times["near"][1::2])
    p, bound = permutation_p_value(times["near"], times["far"])
    p_stranger, bound_stranger = permutation_p_value(times["near"], times["stranger"])
    us = {name: statistics.median(values) * 1e6 for name, values in times.items()}
    print(f"\nmedians µs: {us}; near-far p={p:.3f} (can see > {bound * 1e6:.1f} µs); "
          f"near-stranger p={p_stranger:.3f} (> {bound_stranger * 1e6:.1f} µs); near-near p={same_p:.3f}")
    assert p > 0.001, f"near misses and far misses differ: medians {us}, p={p}"
    # Unknown ids are measured and printed but not asserted: the id is the public half of a key (listed
    # by GET /auth/keys, logged as key-id, like an AWS access key id), and looking up an id that exists
    # costs the database more than one that does not (the joins to the user and tenant, the row's
    # decoding) — a debug build on PostgreSQL answered ~0.4 ms faster for unknown ids. That reveals
    # whether an id exists, never how much of a secret matched, which the near/far check above guards.


def test_metrics(api):
    email, key = user(api, "metrics")
    call(api, "GET", "/auth/me", key)
    r = requests.get(f"{api}/metrics")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain")
    text = r.text
    assert 'cloud_api_requests_total{operation="me",status="200"}' in text
    assert 'cloud_api_request_duration_seconds_bucket{operation="login",le="+Inf"}' in text
    for name in ["database_errors", "login_failures", "lockouts", "keys_created", "password_resets_requested",
                 "password_resets_completed", "rate_limited"]:
        assert f"\ncloud_api_{name}_total " in text, name
    keys = [line for line in text.splitlines() if line.startswith("cloud_api_keys_created_total ")]
    assert int(keys[0].split()[1]) >= 1
    assert email not in text and key not in text


@pytest.fixture(scope="module")
def smtp_sink():
    from aiosmtpd.controller import Controller
    from cloudtest import free_port

    class Sink:
        def __init__(self):
            self.messages = []

        async def handle_DATA(self, server, session, envelope):
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content.decode("utf-8", "replace")))
            return "250 OK"

    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    sink.port = controller.port
    yield sink
    controller.stop()


def test_password_reset_mail_over_smtp(request, tmp_path_factory, control, smtp_sink):
    database = request.node.callspec.params["control"]
    server = own_control_plane(request, tmp_path_factory, database, name="smtp", extra_args=[
        "--smtp-host", "127.0.0.1", "--smtp-port", str(smtp_sink.port), "--smtp-from", "The Cloud <cloud@example.com>"])
    try:
        api = server.url
        email, _ = user(api, "smtp")
        r = requests.post(f"{api}/auth/forgot-password", json={"email": email})
        assert r.status_code == 202
        deadline = time.time() + 10
        while not any(email in rcpts for _, rcpts, _ in smtp_sink.messages) and time.time() < deadline:
            time.sleep(0.05)
        mail_from, rcpts, content = [m for m in smtp_sink.messages if email in m[1]][0]
        assert mail_from == "cloud@example.com" and rcpts == [email]
        assert "Subject: Reset your password for The Cloud" in content
        token = TOKEN.findall(content)[0]
        r = requests.post(f"{api}/auth/reset-password", json={"token": token, "password": "mailed new passphrase"})
        assert r.status_code == 200, r.text
        login(api, email, "mailed new passphrase")
        # A sink that is down: the answer is still 202 and the failure is counted and logged.
        smtp_down = own_control_plane(request, tmp_path_factory, database, name="smtpdown", extra_args=[
            "--smtp-host", "127.0.0.1", "--smtp-port", "1"])
        try:
            email2, _ = user(smtp_down.url, "down")
            assert requests.post(f"{smtp_down.url}/auth/forgot-password", json={"email": email2}).status_code == 202
            deadline = time.time() + 10
            while "password-reset mail failed" not in smtp_down.output() and time.time() < deadline:
                time.sleep(0.05)
            assert "password-reset mail failed" in smtp_down.output()
            assert "cloud_api_mail_failures_total 1" in requests.get(f"{smtp_down.url}/metrics").text
        finally:
            smtp_down.stop()
    finally:
        server.stop()


def test_reset_rate_limit_is_shared_by_processes_on_one_postgres(postgres, tmp_path):
    """Behind a load balancer the limit holds across processes: it is counted in the database."""
    from controltest import ControlServer
    database = postgres.new_database("ratelimit")
    servers = [ControlServer(database, tmp_path / f"c{i}", name=f"rl{i}", extra_args=["--outbox", str(tmp_path / "outbox")])
               for i in range(2)]
    try:
        for server in servers:
            server.start()
        email = new_email("shared")
        register(servers[0].url, email)
        statuses = [post_from(f"127.0.0.{50 + i}", servers[i % 2].url, "/auth/forgot-password", {"email": email})[0]
                    for i in range(6)]
        assert statuses == [202] * 5 + [429]
        assert len(tokens_in_outbox(tmp_path / "outbox", email)) == 5
    finally:
        for server in servers:
            server.stop()


def test_failures_from_one_address_do_not_lock_the_owner_out_elsewhere(api):
    """Another address guessing an email's password locks it out only for itself."""
    email = new_email("targeted")
    register(api, email)
    for _ in range(5):
        status, _, body = post_from("127.0.0.31", api, "/auth/login", {"email": email, "password": "not the password at all"})
        assert status == 401 and body["error"]["code"] == "invalid_credentials"
    status, _, body = post_from("127.0.0.31", api, "/auth/login", {"email": email, "password": PASSWORD})
    assert status == 429 and body["error"]["code"] == "too_many_attempts", body
    status, _, body = post_from("127.0.0.32", api, "/auth/login", {"email": email, "password": PASSWORD})
    assert status == 200 and body["api_key"], body
