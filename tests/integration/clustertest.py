"""Helpers for tests that run several `cloud node` processes as a cluster.

Each node gets its own loopback address (127.0.0.x), data directory and
log files; the S3, RPC and gossip ports are free ports on that address.
Nodes use the fast gossip profile (`--gossip-profile local`).
"""
import http.client
import json
import os
import signal
import subprocess
import time
from pathlib import Path

from cloudtest import CLOUD_BIN, ServerStartError, free_port, make_client, run

CLUSTER_SECRET = "integration-test-cluster-secret"


def free_port_on(host):
    import socket
    for _ in range(100):
        port = free_port()
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                u.bind((host, port))
            with socket.socket() as t:
                t.bind((host, port))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port")


class ClusterNode:
    """One `cloud node` process of a test cluster."""

    def __init__(self, base, index, access_key, secret_key, host=None,
                 extra=(), netns=None, zone=None):
        self.index = index
        # Failure domain; by default three zones, by index mod 3.
        self.zone = zone or f"zone{index % 3}"
        self.name = f"node{index}"
        self.host = host or f"127.0.0.{10 + index}"
        self.data_dir = Path(base) / self.name
        self.log_dir = Path(base) / "logs"
        self.access_key = access_key
        self.secret_key = secret_key
        self.port = free_port_on(self.host) if netns is None else 9000
        self.rpc_port = free_port_on(self.host) if netns is None else 9001
        self.gossip_port = free_port_on(self.host) if netns is None else 9002
        self.extra = list(extra)
        self.netns = netns
        self.proc = None
        self.starts = 0
        self.domain = None
        self.external = False

    @property
    def endpoint(self):
        return f"http://{self.host}:{self.port}"

    @property
    def hostport(self):
        return f"{self.host}:{self.port}"

    @property
    def gossip(self):
        return f"{self.host}:{self.gossip_port}"

    def start(self, join=(), auto_layout=True, wait=True, extra=()):
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        cmd = [CLOUD_BIN, "node", "--data-dir", str(self.data_dir),
               "--s3-address", f"{self.host}:{self.port}",
               "--rpc-address", f"{self.host}:{self.rpc_port}",
               "--gossip-address", self.gossip,
               "--node-id", self.name, "--zone", self.zone,
               "--gossip-profile", "local", "--no-fsync"]
        if auto_layout:
            cmd.append("--auto-layout")
        for seed in join:
            cmd += ["--join", seed]
        cmd += self.extra + list(extra)
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns] + cmd
        env = dict(os.environ)
        env["CLOUD_ROOT_ACCESS_KEY"] = self.access_key
        env["CLOUD_ROOT_SECRET_KEY"] = self.secret_key
        env["CLOUD_CLUSTER_SECRET"] = CLUSTER_SECRET
        base = self.log_dir / f"{self.name}-start{self.starts}"
        self.log_path = Path(str(base) + ".stderr.log")
        with open(str(base) + ".stdout.log", "wb") as out, \
                open(self.log_path, "wb") as err:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=err,
                                         stdin=subprocess.DEVNULL, env=env,
                                         start_new_session=True)
        if wait:
            self.wait_listening()
        return self

    def wait_listening(self, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise ServerStartError(
                    f"{self.name} exited with {self.proc.returncode}:\n"
                    f"{self.log_tail()}")
            try:
                conn = http.client.HTTPConnection(self.host, self.port,
                                                  timeout=2)
                conn.request("GET", "/health/live")
                conn.getresponse().read()
                conn.close()
                return
            except OSError:
                time.sleep(0.1)
        raise ServerStartError(f"{self.name} not listening:\n{self.log_tail()}")

    def ready(self):
        try:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=2)
            conn.request("GET", "/health/ready")
            resp = conn.getresponse()
            resp.read()
            return resp.status == 200
        except OSError:
            return False

    def is_running(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        if self.is_running():
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout=30):
        if not self.is_running():
            return self.proc.returncode if self.proc else None
        os.killpg(self.proc.pid, signal.SIGTERM)
        return self.proc.wait(timeout)

    def pause(self):
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self):
        os.killpg(self.proc.pid, signal.SIGCONT)

    def client(self, **kwargs):
        return make_client(self, **kwargs)

    def metrics(self, timeout=5):
        """The node's `/metrics` as {sample name (with labels): value}."""
        conn = http.client.HTTPConnection(self.host, self.port,
                                          timeout=timeout)
        try:
            conn.request("GET", "/metrics")
            text = conn.getresponse().read().decode()
        finally:
            conn.close()
        out = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            name, _, value = line.rpartition(" ")
            try:
                out[name] = float(value)
            except ValueError:
                pass
        return out

    def cli(self, *args, check=True, timeout=60):
        env = dict(os.environ)
        env["CLOUD_ROOT_ACCESS_KEY"] = self.access_key
        env["CLOUD_ROOT_SECRET_KEY"] = self.secret_key
        cmd = [CLOUD_BIN] + list(args) + ["--endpoint", self.endpoint]
        return run(cmd, env=env, check=check, timeout=timeout)

    def status(self):
        return json.loads(self.cli("storage", "status", "-o", "json").stdout)

    def log_tail(self, lines=60):
        try:
            text = Path(self.log_path).read_text(errors="replace")
        except (OSError, AttributeError):
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


class Cluster:
    def __init__(self, base, count, access_key, secret_key, auto_layout=True,
                 extra=()):
        self.nodes = [ClusterNode(base, i, access_key, secret_key,
                                  extra=extra) for i in range(count)]
        self.auto_layout = auto_layout

    def start(self, timeout=60):
        first = self.nodes[0]
        first.start(auto_layout=self.auto_layout)
        for node in self.nodes[1:]:
            node.start(join=[first.gossip], auto_layout=self.auto_layout)
        if self.auto_layout:
            self.wait_converged(timeout=timeout)
        return self

    def start_first(self, count, timeout=60):
        """Starts only the first `count` nodes (the others join later) and
        waits until they see each other alive in a layout of `count` nodes."""
        first = self.nodes[0]
        first.start(auto_layout=self.auto_layout)
        for node in self.nodes[1:count]:
            node.start(join=[first.gossip], auto_layout=self.auto_layout)
        self.wait_converged(nodes=self.nodes[:count], alive=count,
                            layout_nodes=count, timeout=timeout)
        return self

    def wait_converged(self, nodes=None, alive=None, layout_nodes=None,
                       timeout=60):
        """Until every given node sees `alive` members alive and a layout of
        `layout_nodes` nodes (defaults: all nodes)."""
        nodes = nodes or [n for n in self.nodes if n.is_running()]
        alive = len(nodes) if alive is None else alive
        layout_nodes = len(self.nodes) if layout_nodes is None else layout_nodes
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            try:
                ok = True
                versions = set()
                for node in nodes:
                    status = node.status()
                    states = [m["state"] for m in status["members"]]
                    layout = status.get("layout") or {"nodes": []}
                    versions.add(layout.get("version"))
                    if (states.count("alive") != alive
                            or len(layout["nodes"]) != layout_nodes):
                        ok = False
                        last = (node.name, states, len(layout["nodes"]))
                        break
                if ok and len(versions) == 1:
                    return
            except AssertionError as e:
                last = str(e)[-300:]
            time.sleep(0.3)
        raise AssertionError(f"cluster did not converge: {last}\n" +
                             "\n".join(n.log_tail(20) for n in nodes))

    def wait_state(self, observer, name, state, timeout=60):
        deadline = time.time() + timeout
        seen = None
        while time.time() < deadline:
            members = {m["id"]: m for m in observer.status()["members"]}
            seen = members.get(name, {}).get("state")
            if seen == state:
                return members[name]
            time.sleep(0.2)
        raise AssertionError(f"{observer.name} sees {name} as {seen}, "
                             f"not {state}, after {timeout}s")

    def shutdown(self):
        for node in self.nodes:
            try:
                node.kill()
            except Exception:
                pass
