"""The control plane on either database for the integration tests.

`postgres_server()` gives a PostgreSQL to test against: the one `scripts/with-postgres.sh` started
(CLOUD_TEST_POSTGRES_URL, as `make test` does), else a throwaway one started here, else the test
skips. `ControlServer` runs `cloud server --database URL` as its own process."""
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.parse
import uuid
from pathlib import Path

import pytest
import requests

from cloudtest import CLOUD_BIN, free_port


class Postgres:
    """A PostgreSQL server reachable through a Unix socket, with fresh databases on demand."""

    def __init__(self, url, stop=None):
        self.url = url
        self._stop = stop

    def psql(self, sql, database=None):
        url = self.url_for(database) if database else self.url
        r = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", url],
                           input=sql, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout

    def url_for(self, database):
        parts = urllib.parse.urlsplit(self.url)
        return urllib.parse.urlunsplit(parts._replace(path="/" + database))

    @staticmethod
    def database_name(url):
        return urllib.parse.urlsplit(url).path.lstrip("/")

    def new_database(self, prefix="cloud"):
        """Creates an empty database and returns its URL."""
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        self.psql(f"CREATE DATABASE {name};")
        return self.url_for(name)

    def dump(self, url):
        """The whole database as SQL text (pg_dump)."""
        bindir = _bindir()
        r = subprocess.run([str(bindir / "pg_dump"), "--data-only", url],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout

    def stop(self):
        if self._stop:
            self._stop()


def _bindir():
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    return next((c for c in candidates if (c / "initdb").exists()), None)


def postgres_server():
    """A Postgres (see the module doc); skips the test when there is none."""
    url = os.environ.get("CLOUD_TEST_POSTGRES_URL")
    if url:
        return Postgres(url)
    bindir = _bindir()
    if bindir is None or shutil.which("psql") is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed on a CI machine (scripts/install-deps.sh installs it)")
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
    subprocess.run(run_as + [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"],
                   check=True, capture_output=True)
    subprocess.run(run_as + [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(base / "log"), "-w",
                             "-o", f"-c listen_addresses= -k {base} -c fsync=off -c max_connections=200", "start"],
                   check=True, capture_output=True)

    def stop():
        subprocess.run(run_as + [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(base, ignore_errors=True)

    return Postgres(f"postgres://postgres@localhost/postgres?host={base}", stop)


class ControlServer:
    """One `cloud server` process (the control plane alone) on `database`."""

    def __init__(self, database, log_dir, storage_endpoint=None, name="control", extra_args=(), storage_key=None):
        self.database = database
        self.log_dir = Path(log_dir)
        self.storage_endpoint = storage_endpoint
        # (access key, secret key): the storage cluster's root key, which signs admin requests.
        self.storage_key = storage_key
        self.name = name
        self.extra_args = list(extra_args)
        self.proc = None
        self.port = None
        self.starts = 0

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self, port=None, env=None):
        self.port = port or self.port or free_port()
        self.starts += 1
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.log_dir / f"{self.name}-start{self.starts}.log"
        cmd = [CLOUD_BIN, "server", "--api-address", f"127.0.0.1:{self.port}"] + self.extra_args
        if not any(a.startswith("--master-key-file") for a in self.extra_args):
            # The secrets service's key: one per server's log directory (not ./cloud-data of the checkout).
            cmd += ["--master-key-file", str(self.log_dir / "master.key")]
        if self.storage_endpoint:
            cmd += ["--storage-endpoint", self.storage_endpoint]
        environment = dict(os.environ)
        environment["CLOUD_DATABASE_URL"] = self.database  # not on the command line: it may hold a password
        if self.storage_key:
            environment["CLOUD_STORAGE_ACCESS_KEY"], environment["CLOUD_STORAGE_SECRET_KEY"] = self.storage_key
        environment.update(env or {})
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=environment, start_new_session=True)
        self.wait_ready()
        return self

    def wait_ready(self, timeout=60):
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"cloud server exited with {self.proc.returncode}:\n{self.output()}")
            try:
                r = requests.get(f"{self.url}/health/ready", timeout=2)
                if r.status_code == 200:
                    return
                last = f"{r.status_code} {r.text}"
            except requests.ConnectionError as e:
                last = repr(e)
            time.sleep(0.1)
        raise AssertionError(f"cloud server not ready after {timeout}s ({last}):\n{self.output()}")

    def output(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout=30):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                raise AssertionError(f"cloud server did not exit within {timeout}s of SIGTERM")
        return self.proc.returncode if self.proc else None

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class Deployment:
    """The API under test: its URL, its log and what its database holds on disk."""

    def __init__(self, url, log, stored):
        self.url = url
        self.log = log
        self.stored = stored


def wait_ready(url):
    deadline = time.time() + 30
    while True:
        try:
            if requests.get(f"{url}/health/ready", timeout=2).status_code == 200:
                return url
        except requests.ConnectionError:
            pass
        assert time.time() < deadline, "the control plane did not become ready"
        time.sleep(0.1)
