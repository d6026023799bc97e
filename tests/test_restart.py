"""Tasks survive a restart: stop the service, start a new one on the same file."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.conftest import make_app, runtime_of, submit, wait_for
from tests.processes import start_server, wait_terminal


def test_tasks_survive_an_app_restart_on_the_same_file(db_path: Path) -> None:
    first = make_app(db_path)
    client = first.test_client()
    ids = [submit(client, {"type": "add", "params": {"x": i, "y": i}})["id"] for i in range(10)]
    runtime_of(first).store.close()

    second = make_app(db_path)
    runtime_of(second).pool.start()
    try:
        client = second.test_client()
        listed = client.get("/tasks?page_size=100").get_json()
        assert {t["id"] for t in listed} == set(ids)
        results = [wait_for(client, task_id)["result"] for task_id in ids]
        assert results == [2 * i for i in range(10)]
    finally:
        runtime_of(second).pool.stop(grace=5)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sig", "group"), [(signal.SIGTERM, False), (signal.SIGINT, True)], ids=["sigterm", "ctrl-c"]
)
def test_a_stopped_server_loses_nothing(tmp_path: Path, sig: int, group: bool) -> None:
    db = tmp_path / "tasks.sqlite3"
    server = start_server(db, tmp_path, TASKS_WORKERS="2", TASKS_SHUTDOWN_GRACE="1")
    try:
        running = [
            server.request("POST", "/tasks", {"type": "sleep", "params": {"seconds": 30}})[1]["id"]
            for _ in range(2)
        ]
        queued = [
            server.request("POST", "/tasks", {"type": "add", "params": {"x": i, "y": 1}})[1]["id"]
            for i in range(20)
        ]
        assert server.stop(sig, group=group) == 0
    finally:
        server.stop(signal.SIGKILL)
    log = server.log.read_text()
    assert "handed back at shutdown" in log, log

    again = start_server(db, tmp_path, TASKS_WORKERS="4")
    try:
        for task_id in queued:
            task = wait_terminal(again, task_id)
            assert task["status"] == "succeeded"
        for task_id in running:
            status, task = again.request("GET", f"/tasks/{task_id}")
            assert status == 200
            assert task["status"] == "running", "handed back, then claimed again"
            assert task["attempts"] == 1, "the interrupted attempt was not counted"
            again.request("POST", f"/tasks/{task_id}/cancel")
            assert wait_terminal(again, task_id, timeout=10)["status"] == "cancelled"
    finally:
        again.stop()


@pytest.mark.slow
def test_the_seed_calls_work_verbatim_on_a_real_server(tmp_path: Path) -> None:
    server = start_server(tmp_path / "seed.sqlite3", tmp_path)
    try:
        status, started = server.request("GET", "/start/10/5")
        assert status == 200
        assert started["status"] == "started" and set(started) == {"task_id", "status"}
        status, body = server.request("GET", f"/status/{started['task_id']}")
        assert (status, body) == (200, {"status": "running"})
        wait_terminal(server, started["task_id"], timeout=15)
        status, body = server.request("GET", f"/status/{started['task_id']}")
        assert (status, body) == (200, {"status": "done", "result": 15})
        assert server.request("GET", "/status/nope") == (404, {"error": "Task not found"})
    finally:
        server.stop()
