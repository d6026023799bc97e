"""A lost worker is not a failed attempt: its task runs again, unless it keeps killing workers.

Real processes, killed with SIGKILL, on each store.
"""

from __future__ import annotations

import http.client
import signal
from collections import Counter
from pathlib import Path

import pytest

from api.models import MAX_LOST_ATTEMPTS
from tests.conftest import wait_until
from tests.processes import start_server, wait_terminal

pytestmark = pytest.mark.slow


def test_tasks_running_when_the_server_is_killed_run_again_whatever_max_attempts(
    tmp_path: Path, database_url: str
) -> None:
    env = {"TASKS_DATABASE_URL": database_url, "TASKS_WORKERS": "2", "TASKS_LEASE_SECONDS": "2"}
    server = start_server(tmp_path / "unused.sqlite3", tmp_path, **env)
    try:
        ids = []
        for _ in range(6):
            status, task = server.request(
                "POST", "/tasks", {"type": "sleep", "params": {"seconds": 1}}
            )
            assert status == 202 and task["max_attempts"] == 1, task
            ids.append(task["id"])

        def running() -> list[str]:
            return [
                i for i in ids if server.request("GET", f"/tasks/{i}")[1]["status"] == "running"
            ]

        wait_until(lambda: len(running()) == 2)
        cut_short = running()
        server.stop(signal.SIGKILL, group=True)
    finally:
        server.stop(signal.SIGKILL, group=True)

    again = start_server(tmp_path / "unused.sqlite3", tmp_path, **env)
    try:
        finals = {task_id: wait_terminal(again, task_id) for task_id in ids}
    finally:
        again.stop()
    for task_id in cut_short:
        assert finals[task_id]["status"] == "succeeded", finals[task_id]
        assert finals[task_id]["attempts"] == 2, "every attempt started is counted"
        assert finals[task_id]["result"] == {"slept": 1}
    assert all(f["status"] == "succeeded" for f in finals.values()), finals


def test_a_task_that_kills_its_process_fails_after_three_lost_attempts(
    tmp_path: Path, database_url: str
) -> None:
    probe = tmp_path / "executions.log"
    env = {
        "TASKS_DATABASE_URL": database_url,
        "TASKS_IMPORT": "tests.task_probe",
        "PROBE_LOG": str(probe),
        "TASKS_WORKERS": "1",
        "TASKS_LEASE_SECONDS": "1",
    }
    # gunicorn starts a new server process each time the task kills one.
    server = start_server(tmp_path / "unused.sqlite3", tmp_path, **env)
    try:
        # Delayed, so that the process it kills first has answered the submit.
        status, task = server.request(
            "POST", "/tasks", {"type": "poison", "params": {}, "delay_seconds": 0.5}
        )
        assert status == 202, task

        def ended() -> bool:
            try:  # a read may meet a process as the task kills it
                status, now = server.request("GET", f"/tasks/{task['id']}")
            except (OSError, http.client.HTTPException):
                return False
            return status == 200 and now["status"] not in ("queued", "running")

        wait_until(ended, timeout=60)
        final = wait_terminal(server, task["id"])
    finally:
        server.stop()
    assert final["status"] == "failed", final
    assert final["error"]["type"] == "WorkerLost"
    assert f"{MAX_LOST_ATTEMPTS} times in a row" in final["error"]["message"]
    assert final["attempts"] == MAX_LOST_ATTEMPTS
    runs = Counter(line.split()[0] for line in probe.read_text().splitlines())
    assert runs == {task["id"]: MAX_LOST_ATTEMPTS}
