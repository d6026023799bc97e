"""Batches and dependencies across real processes: ``taskapi serve`` runs its API and its
workers in processes of their own, so every end a client waits on is reported from another
process. The readers and the idle workers poll every 30 s here: only wake-ups are quick.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.processes import Server, start_server

pytestmark = pytest.mark.slow

SLOW_POLL = "30"
#: Far less than SLOW_POLL, and far more than a woken answer takes.
PROMPT_SECONDS = 10


def _serve(tmp_path: Path, database_url: str, *args: str) -> Server:
    env = {"TASKS_DATABASE_URL": database_url, "TASKS_POLL_INTERVAL": SLOW_POLL}
    return start_server(tmp_path / "unused.sqlite3", tmp_path, *args, **env)


def _submit(server: Server, body: dict[str, Any]) -> dict[str, Any]:
    status, task = server.request("POST", "/tasks", body)
    assert status == 202, task
    return task


def _waited(server: Server, path: str) -> tuple[dict[str, Any], float]:
    """GET ``path`` (a long-poll) and how long it took."""
    started = time.monotonic()
    status, body = server.request("GET", path)
    assert status == 200, body
    return body, time.monotonic() - started


def test_a_batch_long_poll_is_woken_by_the_worker_processes(
    tmp_path: Path, database_url: str
) -> None:
    server = _serve(tmp_path, database_url, "--worker-processes", "2")
    try:
        items = [{"type": "add", "params": {"x": n, "y": 1, "delay_seconds": 1}} for n in range(8)]
        status, batch = server.request("POST", "/batches", {"tasks": items})
        assert status == 202, batch
        done, took = _waited(server, f"/batches/{batch['id']}?wait=60")
        assert done["done"] and done["counts"]["succeeded"] == 8, done
        assert took < PROMPT_SECONDS, "woken by the last end, not by a poll every 30 s"
        assert done["finished_at"] is not None
    finally:
        assert server.stop() == 0


def test_a_chain_runs_in_order_across_processes_and_a_failure_cancels_its_rest_at_once(
    tmp_path: Path, database_url: str
) -> None:
    server = _serve(tmp_path, database_url, "--worker-processes", "2")
    try:
        first = _submit(server, {"type": "sleep", "params": {"seconds": 1}})
        second = _submit(
            server, {"type": "add", "params": {"x": 1, "y": 2}, "depends_on": [first["id"]]}
        )
        third = _submit(
            server, {"type": "add", "params": {"x": 3, "y": 4}, "depends_on": [second["id"]]}
        )
        assert third["status"] == "queued" and third["blocked_by"] == [second["id"]]
        ended, took = _waited(server, f"/tasks/{third['id']}?wait=60")
        assert (ended["status"], ended["result"]) == ("succeeded", 7), ended
        assert took < PROMPT_SECONDS
        _, second_now = server.request("GET", f"/tasks/{second['id']}")
        assert second_now["finished_at"] <= ended["started_at"]

        failing = _submit(server, {"type": "fail", "params": {"message": "no"}, "max_attempts": 1})
        middle = _submit(
            server, {"type": "add", "params": {"x": 1, "y": 1}, "depends_on": [failing["id"]]}
        )
        last = _submit(
            server, {"type": "add", "params": {"x": 1, "y": 1}, "depends_on": [middle["id"]]}
        )
        cancelled, took = _waited(server, f"/tasks/{last['id']}?wait=60")
        assert cancelled["status"] == "cancelled", cancelled
        assert cancelled["error"]["type"] == "DependencyFailed"
        assert middle["id"] in cancelled["error"]["message"]
        assert took < PROMPT_SECONDS, "the cancel down the chain woke the reader"
    finally:
        assert server.stop() == 0
