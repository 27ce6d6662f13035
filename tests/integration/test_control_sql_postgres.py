"""The control plane's SQL is meant for SQLite and PostgreSQL alike: apply the
migrations (Sources/ControlPlane/Migrations.swift) to a real PostgreSQL and
PREPARE every query of the SQLite store (Sources/ControlPlane/SQLiteControlStore.swift),
which parses and type-checks it there. Skipped when PostgreSQL is not installed."""
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from cloudtest import free_port

SOURCES = Path(__file__).resolve().parents[2] / "Sources" / "ControlPlane"


def swift_string_constants(text):
    constants = dict(re.findall(r'static let (\w+) = "([^"]*)"', text))
    constants.update(re.findall(r'static let (\w+) = """\n(.*?)\n\s*"""', text, re.S))
    return constants


def migrations():
    text = (SOURCES / "Migrations.swift").read_text()
    bootstrap = re.search(r'bootstrap = """\n(.*?)\n\s*"""', text, re.S).group(1)
    permission = (SOURCES / "Permission.swift").read_text()
    # The built-in roles' descriptions and permissions, as the Swift interpolations produce them.
    descriptions = dict(re.findall(r'case \.(\w+): "([^"]*)"', permission))
    lists = {
        "admin": "*:*",
        "viewer": "*:read",
        "developer": ",".join(re.search(r'case \.developer: \[(.*?)\]\.map', permission).group(1)
                              .replace('"', "").replace(" ", "").split(",")),
    }
    bodies = []
    for body in re.findall(r'sql: """\n(.*?)\n\s*"""\)', text, re.S):
        for role in ("admin", "developer", "viewer"):
            body = body.replace(f"\\(BuiltinRole.{role}.description)", descriptions[role])
            body = body.replace(f"\\(Self.encode(BuiltinRole.{role}.permissions))", lists[role])
        assert "\\(" not in body, "an interpolation the test does not know"
        bodies.append([s.strip() for s in body.split(";\n") if s.strip()])
    return bootstrap, bodies


def queries():
    text = (SOURCES / "SQLiteControlStore.swift").read_text()
    constants = swift_string_constants(text)
    found = []
    for triple, single in re.findall(r'db\.query\(\s*(?:"""\n(.*?)\n\s*"""|"((?:[^"\\]|\\.)*)")', text, re.S):
        sql = re.sub(r'\\\(Self\.(\w+)\)', lambda m: constants[m.group(1)], triple or single)
        found.append(sql)
    return found


@pytest.fixture(scope="module")
def postgres():
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    bindir = next((c for c in candidates if (c / "initdb").exists()), None)
    if bindir is None or shutil.which("psql") is None:
        pytest.skip("PostgreSQL is not installed")
    # Not under pytest's tmp dir: as root, the server runs as `postgres`, which cannot enter it.
    base = Path(tempfile.mkdtemp(prefix="cloud-postgres-"))
    run_as = []
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no postgres user")
        os.chmod(base, 0o777)
        run_as = ["runuser", "-u", "postgres", "--"]
    data = base / "data"
    port = free_port()
    subprocess.run(run_as + [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True)
    subprocess.run(run_as + [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(base / "log"), "-w",
                             "-o", f"-p {port} -k {base} -c listen_addresses=", "start"],
                   check=True, capture_output=True)
    try:
        yield ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", str(base), "-p", str(port), "-U", "postgres"]
    finally:
        subprocess.run(run_as + [str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
                       capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def psql(postgres, sql):
    r = subprocess.run(postgres, input=sql, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_migrations_and_queries_run_on_postgresql(postgres):
    bootstrap, bodies = migrations()
    assert bodies, "no migrations found"
    script = "BEGIN;\n" + bootstrap + ";\n"
    for version, statements in enumerate(bodies, start=1):
        script += ";\n".join(statements) + ";\n"
        script += f"INSERT INTO schema_migrations (version, name, applied_at) VALUES ({version}, 'm', 0);\n"
    psql(postgres, script + "COMMIT;\n")
    roles = psql(postgres, "SELECT name || '=' || permissions FROM roles ORDER BY name;").split()
    assert roles == ["admin=*:*", "developer=*:read,bucket:*,object:*,storage-key:*", "viewer=*:read"]
    found = queries()
    assert len(found) >= 30
    psql(postgres, "\n".join(f"PREPARE q{i} AS {sql};" for i, sql in enumerate(found)))
