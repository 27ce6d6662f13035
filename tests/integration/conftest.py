"""Fixtures for the integration suite.

The suite drives the real `cloud` server process (or an external endpoint
given by CLOUD_TEST_ENDPOINT) with S3 clients we did not write: aws-cli,
boto3/botocore, rclone and s3cmd.
"""
import os
import signal
import time
import uuid

import pytest

from cloudtest import (
    EXTERNAL_ENDPOINT,
    REGION,
    ServerProcess,
    make_client,
    new_credentials,
    run as _run,
    running_servers,
)

DEFAULT_TEST_DEADLINE = int(os.environ.get("CLOUD_TEST_DEADLINE", "180"))


# --------------------------------------------------------------------------
# per-test deadline (pytest-timeout is not available; SIGALRM does the job)
# --------------------------------------------------------------------------

def pytest_configure(config):
    config.addinivalue_line(
        "markers", "deadline(seconds): hard wall-clock limit for one test")
    config.addinivalue_line(
        "markers", "needs_binary: test starts its own server process "
        "(skipped when CLOUD_TEST_ENDPOINT points at an external server)")
    config.addinivalue_line(
        "markers", "moto_gap: AWS behaviour that moto (the development "
        "stand-in) does not implement; deselect with -m 'not moto_gap' "
        "when running against moto")


class TestDeadlineExceeded(Exception):
    pass


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    marker = item.get_closest_marker("deadline")
    seconds = int(marker.args[0]) if marker else DEFAULT_TEST_DEADLINE

    def on_alarm(signum, frame):
        raise TestDeadlineExceeded(
            f"{item.nodeid} exceeded its {seconds}s deadline")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def pytest_collection_modifyitems(config, items):
    if not EXTERNAL_ENDPOINT:
        return
    skip = pytest.mark.skip(
        reason="needs its own server process; CLOUD_TEST_ENDPOINT is set")
    for item in items:
        if item.get_closest_marker("needs_binary"):
            item.add_marker(skip)


# --------------------------------------------------------------------------
# print the server log tail when a test fails
# --------------------------------------------------------------------------

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    if call.when == "setup":
        item._cloud_started = time.time()
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        since = getattr(item, "_cloud_started", 0)
        for srv in running_servers(since):
            rep.sections.append(
                (f"server log tail ({srv.name}, {srv.log_path})",
                 srv.log_tail(60)))


# --------------------------------------------------------------------------
# servers
# --------------------------------------------------------------------------

@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """The shared server for every test that doesn't need its own."""
    if EXTERNAL_ENDPOINT:
        srv = ServerProcess.external(EXTERNAL_ENDPOINT)
        srv.wait_ready()
        yield srv
        return
    ak, sk = new_credentials()
    srv = ServerProcess(tmp_path_factory.mktemp("session-server"),
                        access_key=ak, secret_key=sk, name="session")
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def vhost_server(tmp_path_factory):
    """A second server that also answers virtual-hosted-style requests."""
    if EXTERNAL_ENDPOINT:
        domain = os.environ.get("CLOUD_TEST_VHOST_DOMAIN")
        if not domain:
            pytest.skip("virtual-hosted style against an external endpoint "
                        "needs CLOUD_TEST_VHOST_DOMAIN")
        srv = ServerProcess.external(EXTERNAL_ENDPOINT)
        srv.domain = domain
        yield srv
        return
    ak, sk = new_credentials()
    srv = ServerProcess(tmp_path_factory.mktemp("vhost-server"),
                        access_key=ak, secret_key=sk, name="vhost",
                        domain="s3.local")
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def fresh_server_factory(tmp_path):
    """Start private servers (restart/crash tests); all stopped at the end."""
    started = []

    def factory(data_dir=None, **kwargs):
        kwargs.setdefault("name", f"fresh-{len(started)}")
        srv = ServerProcess(data_dir or (tmp_path / "data"),
                            log_dir=tmp_path, **kwargs)
        started.append(srv)
        return srv

    yield factory
    for srv in started:
        srv.kill_if_running()


# --------------------------------------------------------------------------
# clients and helpers
# --------------------------------------------------------------------------

@pytest.fixture(scope="session")
def s3(server):
    """Path-style boto3 client against the shared server."""
    return make_client(server)


@pytest.fixture(scope="session")
def client_factory():
    """make_client(server, addressing_style='path', **config_kwargs)."""
    return make_client


@pytest.fixture
def bucket_name():
    """A factory of unique, valid bucket names."""
    def make(prefix="t"):
        return f"{prefix}-{uuid.uuid4().hex[:20]}"
    return make


@pytest.fixture
def bucket(s3, bucket_name):
    """A fresh, empty bucket on the shared server."""
    name = bucket_name()
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def aws_env(server, tmp_path):
    """Environment for aws-cli (and anything botocore-based) as a subprocess."""
    cfg = tmp_path / "aws-config"
    cfg.write_text(
        "[default]\n"
        f"region = {REGION}\n"
        "s3 =\n"
        "  signature_version = s3v4\n"
        "  addressing_style = path\n")
    env = dict(os.environ)
    for var in list(env):
        if var.startswith("AWS_"):
            del env[var]
    env.update({
        "AWS_ACCESS_KEY_ID": server.access_key,
        "AWS_SECRET_ACCESS_KEY": server.secret_key,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": str(cfg),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-such-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_MAX_ATTEMPTS": "1",
        "AWS_PAGER": "",
    })
    return env


@pytest.fixture(scope="session")
def run():
    """run(cmd, env=None, timeout=120, check=True, cwd=None, input=None)."""
    return _run


# --------------------------------------------------------------------------
# PostgreSQL for the control plane's tests (see controltest.py)
# --------------------------------------------------------------------------

@pytest.fixture(scope="session")
def postgres():
    from controltest import postgres_server
    pg = postgres_server()
    yield pg
    pg.stop()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def deployment(request, server, tmp_path_factory):
    """The control plane's API on each database in turn: `cloud dev`'s SQLite, then `cloud server`
    on a fresh PostgreSQL database (serving the same storage node). Tests that take it run twice."""
    from controltest import ControlServer, Deployment, wait_ready
    if request.param == "sqlite":
        def stored():
            data = b""
            for name in ["control.sqlite", "control.sqlite-wal"]:
                path = server.data_dir / name
                if path.exists():
                    data += path.read_bytes()
            return data
        url = wait_ready(f"http://127.0.0.1:{server.api_port}")
        yield Deployment(url, lambda: server.log_path.read_text(errors="replace"), stored)
        return
    postgres = request.getfixturevalue("postgres")
    database = postgres.new_database("api")
    control = ControlServer(database, tmp_path_factory.mktemp("control-pg"), storage_endpoint=server.endpoint,
                            storage_key=(server.access_key, server.secret_key))
    control.start()
    try:
        yield Deployment(control.url, control.output, lambda: postgres.dump(database).encode())
    finally:
        control.stop()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def control(request, tmp_path_factory):
    """A `cloud server` of the module's own on each database in turn, with the flags the tenant and
    security tests need (controlhelpers.own_control_plane): the module's tests run twice."""
    from controlhelpers import own_control_plane
    server = own_control_plane(request, tmp_path_factory, request.param)
    yield server
    server.stop()

