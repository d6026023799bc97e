"""Scale-out on PostgreSQL: two servers and two worker processes share one queue."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.conftest import postgres_schema_url
from tests.processes import Server, start_server, start_worker

TASKS = 5000
KILL_AFTER = 1500
DRAIN_TIMEOUT_SECONDS = 180


@pytest.mark.slow
def test_two_servers_and_two_workers_run_every_task_exactly_once(tmp_path: Path) -> None:
    base = os.environ.get("TASKS_TEST_DATABASE_URL")
    if not base:
        pytest.skip("TASKS_TEST_DATABASE_URL is not set: no PostgreSQL to test against")
    import psycopg

    with ExitStack() as stack:
        url = stack.enter_context(_schema(base))
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE executions (task_id TEXT, attempt INT, pid INT)")
        env = {
            "TASKS_DATABASE_URL": url,
            "TASKS_IMPORT": "tests.task_probe",
            "PROBE_DATABASE_URL": url,
            # Slower than submits arrive, so a backlog builds and the victim dies mid-task.
            "PROBE_COUNT_SECONDS": "0.05",
            "TASKS_LEASE_SECONDS": "2",
            "TASKS_MAX_QUEUED": str(10 * TASKS),
            "TASKS_LOG_LEVEL": "WARNING",
        }
        servers = [start_server(tmp_path / "unused", tmp_path, **env, TASKS_WORKERS="2")]
        servers.append(start_server(tmp_path / "unused", tmp_path, **env, TASKS_WORKERS="2"))
        workers = [start_worker(tmp_path, str(n), **env, TASKS_WORKERS="4") for n in range(2)]
        stack.callback(_stop_all, servers, workers)

        def submit(n: int) -> str:
            status, task = servers[n % 2].request(
                "POST", "/tasks", {"type": "count", "params": {"n": n}}
            )
            assert status == 202, task
            return str(task["id"])

        with ThreadPoolExecutor(16) as pool:
            ids = list(pool.map(submit, range(KILL_AFTER)))
            victim = workers[0]
            _wait_until_running_in(url, victim.pid)
            os.killpg(victim.pid, signal.SIGKILL)
            victim.wait(10)
            ids += list(pool.map(submit, range(KILL_AFTER, TASKS)))

        with psycopg.connect(url, autocommit=True) as conn:
            deadline = time.monotonic() + DRAIN_TIMEOUT_SECONDS
            while True:
                row = conn.execute(
                    "SELECT COUNT(*) FROM tasks WHERE status IN ('succeeded', 'failed', "
                    "'cancelled')"
                ).fetchone()
                assert row is not None
                if row[0] == TASKS or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            tasks = conn.execute("SELECT id, status, attempts, result FROM tasks").fetchall()
            runs = conn.execute("SELECT task_id, attempt, pid FROM executions").fetchall()

    assert sorted(t[0] for t in tasks) == sorted(ids), "none lost, none made up"
    statuses = Counter(t[1] for t in tasks)
    assert statuses == {"succeeded": TASKS}, statuses
    assert sorted(int(t[3]) for t in tasks) == list(range(TASKS)), "each result is its own"
    executions = Counter(r[0] for r in runs)
    assert set(executions) == set(ids), "every task ran"
    attempts = {t[0]: t[2] for t in tasks}
    twice = {task_id for task_id, n in executions.items() if n > 1}
    dead = {r[2] for r in runs if r[0] in twice and r[1] == 1}
    assert dead <= {victim.pid}, "only the killed worker's tasks ran again"
    assert 1 <= len(twice) <= 4, "the killed worker's tasks in flight (one a thread) ran again"
    for task_id, n in executions.items():
        # An attempt is counted when it is claimed: the killed worker may have claimed a task
        # (with its last success) and died before the task's first line ran.
        assert n <= attempts[task_id] <= n + 1, "each execution is an attempt, counted"
    assert sum(attempts.values()) - sum(executions.values()) <= 4, "at most the victim's"
    by_pid = Counter(r[2] for r in runs)
    assert len(by_pid) == 4 and victim.pid in by_pid, f"the work was shared: {by_pid}"


def _wait_until_running_in(url: str, pid: int) -> None:
    """Until the process ``pid`` holds a running task (worker ids carry the pid)."""
    import psycopg

    deadline = time.monotonic() + 60
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT COUNT(*) FROM tasks WHERE status = 'running' AND worker_id LIKE %s",
                (f"%:{pid}:%",),
            ).fetchone()
            if row and row[0]:
                return
            time.sleep(0.005)
    raise AssertionError(f"worker {pid} never held a task")


def _schema(base: str):  # type: ignore[no-untyped-def]
    from contextlib import contextmanager

    return contextmanager(postgres_schema_url)(base)


def _stop_all(servers: list[Server], workers: list[subprocess.Popen[bytes]]) -> None:
    for server in servers:
        server.stop()
    for worker in workers:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(30)
