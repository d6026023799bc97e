"""``taskapi serve`` is one service of several processes: the supervisor, the API (gunicorn's
master and its HTTP processes) and the worker processes. Real processes, real signals.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import wait_until
from tests.processes import Server, children, descendants, start_server, wait_terminal

pytestmark = pytest.mark.slow

#: Idle workers and waiting readers look at the store this rarely: only wake-ups are quick.
SLOW_POLL = "30"


def _post(server: Server, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, Any]:
    address = urlsplit(server.url)
    conn = http.client.HTTPConnection(address.hostname or "", address.port, timeout=60)
    try:
        conn.request(
            "POST", "/tasks", json.dumps(body), {"Content-Type": "application/json", **headers}
        )
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def _worker_processes(server: Server) -> list[int]:
    master = server.api_master()
    return [pid for pid in children(server.process.pid) if pid != master]


def _gone(pids: list[int]) -> bool:
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            return False
    return True


def test_tasks_run_in_a_worker_process_woken_by_the_submit_and_the_end_wakes_the_api(
    tmp_path: Path, database_url: str
) -> None:
    env = {"TASKS_DATABASE_URL": database_url, "TASKS_POLL_INTERVAL": SLOW_POLL}
    server = start_server(tmp_path / "unused.sqlite3", tmp_path, **env)
    try:
        workers = _worker_processes(server)
        assert len(workers) == 1, "one worker process by default"
        body = {"type": "add", "params": {"x": 2, "y": 3}}
        _post(server, body, {})  # the first request of each side sets up its channel
        time.sleep(1)
        for _ in range(3):
            started = time.monotonic()
            status, task = _post(server, body, {"Prefer": "wait=20"})
            assert (status, task["status"], task["result"]) == (200, "succeeded", 5), task
            assert time.monotonic() - started < 10, "woken, not polled every 30 s"
        # The worker process's counts reach the API's /metrics (one multiprocess directory).
        address = urlsplit(server.url)
        conn = http.client.HTTPConnection(address.hostname or "", address.port, timeout=30)
        conn.request("GET", "/metrics")
        scraped = conn.getresponse().read().decode()
        conn.close()
        assert 'taskapi_tasks_finished_total{outcome="succeeded",type="add"} 4.0' in scraped
    finally:
        assert server.stop() == 0
    assert "started 32 worker threads" in server.log.read_text()


def test_a_worker_process_that_dies_is_replaced_and_its_task_runs_again_at_once(
    tmp_path: Path, database_url: str
) -> None:
    # The lease is long: the task comes back because the supervisor ends it, not by waiting.
    env = {"TASKS_DATABASE_URL": database_url, "TASKS_LEASE_SECONDS": "60"}
    server = start_server(tmp_path / "unused.sqlite3", tmp_path, **env)
    try:
        _, task = server.request("POST", "/tasks", {"type": "sleep", "params": {"seconds": 1}})
        wait_until(lambda: server.request("GET", f"/tasks/{task['id']}")[1]["status"] == "running")
        (dead,) = _worker_processes(server)
        os.kill(dead, signal.SIGKILL)
        wait_until(
            lambda: len(_worker_processes(server)) == 1 and dead not in _worker_processes(server)
        )
        final = wait_terminal(server, task["id"], timeout=30)
        assert (final["status"], final["attempts"]) == ("succeeded", 2), final
        _, after = server.request("POST", "/tasks", {"type": "add", "params": {"x": 1, "y": 1}})
        assert wait_terminal(server, after["id"])["status"] == "succeeded"
    finally:
        assert server.stop() == 0, "a restarted worker process is no failure of the service"
    log = server.log.read_text()
    assert f"worker process {dead} was killed by SIGKILL; starting another" in log
    assert f"1 task held by worker process {dead} back to the queue" in log


def test_one_sigterm_stops_every_process_with_status_0(tmp_path: Path) -> None:
    server = start_server(tmp_path / "tasks.sqlite3", tmp_path, "--processes", "2")
    server.api_master()
    # The API's master, its 2 processes, 1 worker process.
    wait_until(lambda: len(descendants(server.process.pid)) == 4)
    everyone = descendants(server.process.pid)
    assert server.stop(signal.SIGTERM) == 0
    wait_until(lambda: _gone(everyone))


def test_when_the_supervisor_is_killed_every_other_process_stops(tmp_path: Path) -> None:
    server = start_server(tmp_path / "tasks.sqlite3", tmp_path)
    server.api_master()
    everyone = descendants(server.process.pid)
    server.process.kill()  # SIGKILL: it cannot tell its children
    server.process.wait()
    wait_until(lambda: _gone(everyone), timeout=30)


def test_when_the_api_dies_the_service_stops_with_status_1(tmp_path: Path) -> None:
    server = start_server(tmp_path / "tasks.sqlite3", tmp_path)
    master = server.api_master()
    everyone = descendants(server.process.pid)
    os.kill(master, signal.SIGKILL)
    assert server.process.wait(30) == 1
    wait_until(lambda: _gone(everyone), timeout=30)
    assert "the API process" in server.log.read_text()


def test_a_sigterm_to_every_process_at_once_still_gives_running_tasks_the_grace(
    tmp_path: Path,
) -> None:
    """As systemd stops a service (KillMode=control-group): SIGTERM to each of its processes,
    which then also hear the supervisor's: the first step, once."""
    db = tmp_path / "tasks.sqlite3"
    server = start_server(db, tmp_path, TASKS_SHUTDOWN_GRACE="30")
    try:
        _, task = server.request("POST", "/tasks", {"type": "sleep", "params": {"seconds": 2}})
        wait_until(lambda: server.request("GET", f"/tasks/{task['id']}")[1]["status"] == "running")
        server.api_master()
        for pid in [server.process.pid, *descendants(server.process.pid)]:
            os.kill(pid, signal.SIGTERM)
        assert server.process.wait(60) == 0
    finally:
        server.stop(signal.SIGKILL, group=True)
    again = start_server(db, tmp_path, "--workers", "0")
    try:
        _, final = again.request("GET", f"/tasks/{task['id']}")
    finally:
        again.stop()
    assert (final["status"], final["result"]) == ("succeeded", {"slept": 2}), final
