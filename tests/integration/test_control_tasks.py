"""The durable task queue with real processes: three `cloud server` processes on one database
(PostgreSQL, then one SQLite file) run `test.sleep-and-record` tasks (CLOUD_TEST_TASKS=1); one is
killed with SIGKILL in the middle. Every task must complete exactly once, no two processes may ever
hold the same task at the same time, and the killed process's tasks must be taken over after their
leases expire. Then `cloud tasks` shows, and retries, a tenant's dead task."""
import json
import os
import signal
import sqlite3
import subprocess
import time
import uuid

import pytest
import requests

from cloudtest import CLOUD_BIN
from controltest import ControlServer

pytestmark = pytest.mark.needs_binary

PASSWORD = "correct horse battery staple"
LEASE_SECONDS = 3


class Database:
    """SQL on the deployment's database from the test: psql for PostgreSQL, sqlite3 for a file."""

    def __init__(self, kind, postgres, tmp_path):
        self.kind = kind
        self.postgres = postgres
        if kind == "postgres":
            self.url = postgres.new_database("tasks")
        else:
            self.url = str(tmp_path / "shared" / "control.sqlite")
            (tmp_path / "shared").mkdir()

    def rows(self, sql):
        if self.kind == "postgres":
            out = self.postgres.psql(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv);",
                                     database=self.postgres.database_name(self.url))
            import csv
            return [tuple(None if v == "" else v for v in row) for row in csv.reader(out.splitlines())]
        with sqlite3.connect(self.url, timeout=30) as db:
            return [tuple(None if v is None else str(v) for v in row) for row in db.execute(sql).fetchall()]

    def execute(self, statements):
        if self.kind == "postgres":
            self.postgres.psql("BEGIN;\n" + ";\n".join(statements) + ";\nCOMMIT;",
                               database=self.postgres.database_name(self.url))
            return
        with sqlite3.connect(self.url, timeout=30) as db:
            for statement in statements:
                db.execute(statement)


def enqueue_statement(tenant, payload, max_attempts=5):
    """A task row as `TaskQueue.enqueue` writes it (times in unix milliseconds)."""
    now = int(time.time() * 1000)
    task_id = "task_" + uuid.uuid4().hex[:20]
    text = json.dumps(payload).replace("'", "''")
    return task_id, (
        "INSERT INTO tasks (id, tenant_id, kind, payload, state, attempts, max_attempts, run_at, fence, created_at, updated_at) "
        f"VALUES ('{task_id}', '{tenant}', 'test.sleep-and-record', '{text}', 'queued', 0, {max_attempts}, {now}, 0, {now}, {now})")


def start_servers(database, tmp_path, count):
    servers = [ControlServer(database.url, tmp_path / f"c{i}", name=f"control{i}",
                             extra_args=["--task-lease", str(LEASE_SECONDS), "--task-workers", "4"])
               for i in range(count)]
    for s in servers:
        s.start(env={"CLOUD_TEST_TASKS": "1"})
    return servers


def pid_of(owner):
    # Owners are host:pid:random.
    return int(owner.split(":")[-2])


def wait_for(what, condition, timeout=120):
    deadline = time.time() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.fixture(params=["postgres", "sqlite"])
def database(request, tmp_path):
    postgres = request.getfixturevalue("postgres") if request.param == "postgres" else None
    return Database(request.param, postgres, tmp_path)


def test_a_killed_process_neither_loses_nor_repeats_tasks(database, tmp_path):
    servers = start_servers(database, tmp_path, 3)
    try:
        count = 36
        ids = []
        statements = []
        for _ in range(count):
            task_id, statement = enqueue_statement("tnt_integration", {"sleep_ms": 1500})
            ids.append(task_id)
            statements.append(statement)
        database.execute(statements)

        # Kill the first process in the middle: it has completed tasks and is running others.
        victim = servers[0]
        victim_pid = victim.proc.pid

        # Busy with a run that started under 700 ms ago: it sleeps 1500 ms, so it is still running when
        # the kill lands a moment later (a run seen unfinished 1.4 s into its sleep could finish first).
        def victim_busy():
            runs = [r for r in database.rows("SELECT owner, outcome, started_at FROM test_task_runs") if pid_of(r[0]) == victim_pid]
            now = int(time.time() * 1000)
            return any(r[1] == "succeeded" for r in runs) and any(r[1] is None and now - int(r[2]) < 700 for r in runs)
        wait_for("the first process to complete tasks and start more", victim_busy, timeout=60)
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait(10)
        killed_at = int(time.time() * 1000)

        def all_done():
            done = database.rows("SELECT count(*) FROM tasks WHERE kind = 'test.sleep-and-record' AND state = 'succeeded'")
            return int(done[0][0]) == count
        wait_for("every task to succeed", all_done, timeout=180)

        tasks = {row[0]: row for row in database.rows(
            "SELECT id, state, attempts, fence, lease_owner, last_error FROM tasks WHERE kind = 'test.sleep-and-record'")}
        assert sorted(tasks) == sorted(ids), "no task lost, none invented"
        runs = database.rows("SELECT task_id, owner, fence, started_at, finished_at, outcome FROM test_task_runs")
        by_task = {}
        for task_id, owner, fence, started, finished, outcome in runs:
            by_task.setdefault(task_id, []).append(
                (int(started), int(finished) if finished else None, owner, int(fence), outcome))

        interrupted = 0
        claimed_unrecorded = 0
        for task_id in ids:
            _, state, attempts, fence, owner, last_error = tasks[task_id]
            task_runs = sorted(by_task.get(task_id, []))
            # Exactly one completion record, by the process that held the task's final fence.
            succeeded = [r for r in task_runs if r[4] == "succeeded"]
            assert len(succeeded) == 1, (task_id, task_runs)
            assert succeeded[0][3] == int(fence) and succeeded[0][2] == owner, (task_id, task_runs, tasks[task_id])
            # Each attempt had its own fence. An attempt without a run record was claimed by the killed
            # process, which died before recording its start; the takeover says so.
            assert int(attempts) == int(fence) and len({r[3] for r in task_runs}) == len(task_runs), (task_id, task_runs)
            if len(task_runs) < int(attempts):
                assert len(task_runs) == int(attempts) - 1 and f":{victim_pid}:" in (last_error or ""), (tasks[task_id], task_runs)
                claimed_unrecorded += 1
            # Only the killed process left runs unfinished, and it started them before it died.
            for started, finished, run_owner, _, outcome in task_runs:
                if outcome is None:
                    assert pid_of(run_owner) == victim_pid and started <= killed_at, (task_id, task_runs)
                    interrupted += 1
            # No two runs of a task overlap (an interrupted run lasted until the kill at the latest).
            for earlier, later in zip(task_runs, task_runs[1:]):
                end = earlier[1] if earlier[1] is not None else killed_at
                assert end <= later[0], f"{task_id}: {earlier} overlaps {later}"
                assert later[3] > earlier[3], "each attempt has a larger fence"
        assert interrupted >= 1, "the killed process was running tasks"
        # Every task the killed process was running was taken over after its lease expired.
        assert all(by_task.get(t) for t in ids), "every task ran"
        taken_over = [t for t in ids if any(r[4] is None for r in by_task[t])]
        assert len(taken_over) == interrupted
        survivors = {s.proc.pid for s in servers[1:]}
        assert all(pid_of(tasks[t][4]) in survivors for t in taken_over)
        for task_id in taken_over:
            interrupted_run = next(r for r in sorted(by_task[task_id]) if r[4] is None)
            takeover = next(r for r in sorted(by_task[task_id]) if r[0] > interrupted_run[0])
            assert takeover[0] >= killed_at, "taken over only after the process died"

        per_process = {}
        for task_runs in by_task.values():
            for run in task_runs:
                per_process[pid_of(run[2])] = per_process.get(pid_of(run[2]), 0) + 1
        takeover_ms = [min(r[0] for r in by_task[t] if r[0] >= killed_at) - killed_at for t in taken_over]
        print(f"\n{database.kind}: {count} tasks, {len(runs)} runs, runs per process {sorted(per_process.values())}, "
              f"{interrupted} interrupted by SIGKILL (+{claimed_unrecorded} claimed but not started) and taken over {min(takeover_ms)}-{max(takeover_ms)} ms after the kill")

        # The survivors shut down cleanly.
        for s in servers[1:]:
            assert s.stop() == 0, s.output()
        for s in servers[1:]:
            assert "task runner stopped" in s.output()
    finally:
        for s in servers:
            s.kill()


def test_cloud_tasks_shows_and_retries_a_dead_task(database, tmp_path):
    servers = start_servers(database, tmp_path, 1)
    server = servers[0]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUD_") and k != "XDG_CONFIG_HOME"}
    env["HOME"] = str(tmp_path)

    def cloud(*args):
        r = subprocess.run([CLOUD_BIN, *args, "--api-url", server.url], env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, f"cloud {' '.join(args)}: {r.stdout}\n{r.stderr}"
        return r.stdout

    try:
        email = f"tasks-{uuid.uuid4().hex[:8]}@example.com"
        r = requests.post(f"{server.url}/auth/register", json={"email": email, "name": "T", "password": PASSWORD})
        assert r.status_code == 201, r.text
        tenant = r.json()["tenant"]["id"]
        subprocess.run([CLOUD_BIN, "auth", "login", "--email", email, "--password-stdin", "--api-url", server.url],
                       env=env, input=PASSWORD + "\n", capture_output=True, text=True, check=True, timeout=60)

        # A task that fails every attempt: two attempts (with a backoff between), then dead.
        task_id, statement = enqueue_statement(tenant, {"sleep_ms": 0, "fail_attempts": 100}, max_attempts=2)
        database.execute([statement])
        wait_for("the task to die", lambda: json.loads(cloud("tasks", "show", task_id, "-o", "json"))["state"] == "dead", timeout=60)
        shown = json.loads(cloud("tasks", "show", task_id, "-o", "json"))
        assert shown["attempts"] == 2 and shown["last_error"] == "planned failure of attempt 2", shown
        listed = json.loads(cloud("tasks", "list", "--state", "dead", "-o", "json"))["tasks"]
        assert [t["id"] for t in listed] == [task_id]
        table = cloud("tasks", "list")
        assert task_id in table and "dead" in table and "planned failure" in table
        assert "planned failure of attempt 2" in cloud("tasks", "show", task_id)

        # Retried: it runs again (two more attempts, dies again).
        assert json.loads(cloud("tasks", "retry", task_id, "-o", "json"))["state"] == "queued"
        wait_for("the retried task to run twice more",
                 lambda: int(database.rows(f"SELECT count(*) FROM test_task_runs WHERE task_id = '{task_id}'")[0][0]) == 4,
                 timeout=60)
        wait_for("the task to die again", lambda: json.loads(cloud("tasks", "show", task_id, "-o", "json"))["state"] == "dead")
        r = subprocess.run([CLOUD_BIN, "tasks", "show", "task_nope", "--api-url", server.url], env=env,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode != 0 and "not found" in r.stderr
    finally:
        server.stop()
