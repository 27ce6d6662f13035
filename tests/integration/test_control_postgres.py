"""Several `cloud server` processes on one PostgreSQL database, as behind a load balancer:
migrations apply once under the lock, a key made through one process works on the others, and
concurrent writes of the same unique value let exactly one through."""
import concurrent.futures
import time

import pytest
import requests

from controltest import ControlServer

pytestmark = pytest.mark.needs_binary

PASSWORD = "correct horse battery staple"


def start_together(servers):
    with concurrent.futures.ThreadPoolExecutor(len(servers)) as pool:
        list(pool.map(lambda s: s.start(), servers))


def test_processes_share_one_database(postgres, tmp_path):
    database = postgres.new_database("shared")
    servers = [ControlServer(database, tmp_path / f"c{i}", name=f"control{i}") for i in range(3)]
    try:
        start_together(servers)
        applied = postgres.psql("SELECT service || '/' || version || ':' || count(*) FROM schema_migrations GROUP BY service, version ORDER BY service, version;",
                                database=postgres.database_name(database)).split()
        assert applied and all(line.endswith(":1") for line in applied), applied
        migrated = sum("control-plane database migrated" in s.output() for s in servers)
        assert migrated == 1, "exactly one process applies the migrations"

        # Registered through one process, logged in through another, used on the third.
        r = requests.post(f"{servers[0].url}/auth/register",
                          json={"email": "shared@example.com", "name": "S", "password": PASSWORD})
        assert r.status_code == 201, r.text
        r = requests.post(f"{servers[1].url}/auth/login", json={"email": "shared@example.com", "password": PASSWORD})
        assert r.status_code == 200, r.text
        key = r.json()["api_key"]
        me = requests.get(f"{servers[2].url}/auth/me", headers={"X-API-Key": key})
        assert me.status_code == 200 and me.json()["user"]["email"] == "shared@example.com"

        # The same email registered through every process at once: one 201, the others 409.
        def register(server):
            return requests.post(f"{server.url}/auth/register",
                                 json={"email": "race@example.com", "name": "R", "password": PASSWORD}).status_code
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            statuses = list(pool.map(register, servers * 2))
        assert sorted(statuses) == [201] + [409] * 5, statuses

        # A key deleted through one process is refused by the others.
        created = requests.post(f"{servers[0].url}/auth/keys", headers={"X-API-Key": key}, json={"name": "temp"}).json()
        assert requests.get(f"{servers[1].url}/auth/me", headers={"X-API-Key": created["api_key"]}).status_code == 200
        assert requests.delete(f"{servers[2].url}/auth/keys/{created['key']['id']}", headers={"X-API-Key": key}).status_code == 204
        assert requests.get(f"{servers[1].url}/auth/me", headers={"X-API-Key": created["api_key"]}).status_code == 401
    finally:
        for s in servers:
            s.stop()


def test_ready_reports_a_database_that_went_away(postgres, tmp_path):
    database = postgres.new_database("gone")
    name = postgres.database_name(database)
    server = ControlServer(database, tmp_path / "c")
    try:
        server.start()
        assert requests.get(f"{server.url}/health/ready").status_code == 200
        postgres.psql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}';"
                      f" ALTER DATABASE {name} WITH ALLOW_CONNECTIONS false;")
        postgres.psql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}';")
        deadline = time.time() + 15
        while True:
            r = requests.get(f"{server.url}/health/ready", timeout=10)
            if r.status_code == 503:
                break
            assert time.time() < deadline, f"still {r.status_code} {r.text}"
            time.sleep(0.2)
        assert "database" in r.text
        # Requests that need the database answer 503, not 500, and the process keeps running.
        r = requests.post(f"{server.url}/auth/login", json={"email": "x@example.com", "password": PASSWORD})
        assert r.status_code == 503, r.text
        postgres.psql(f"ALTER DATABASE {name} WITH ALLOW_CONNECTIONS true;")
        deadline = time.time() + 15
        while requests.get(f"{server.url}/health/ready", timeout=10).status_code != 200:
            assert time.time() < deadline, "did not recover after the database came back"
            time.sleep(0.2)
    finally:
        server.stop()
