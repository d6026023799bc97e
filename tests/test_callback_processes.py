"""Callbacks across real processes: ``taskapi serve`` sends them from its worker processes, to a
real receiver on 127.0.0.1; a SIGKILL loses none. Each store (``database_url``)."""

from __future__ import annotations

import json
import signal
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from tests.processes import Server, start_server, wait_terminal, wait_until
from tests.receiver import SECRET, Receiver, receiving

pytestmark = pytest.mark.slow


def _serve(tmp_path: Path, database_url: str, receiver: Receiver, *args: str, **env: str) -> Server:
    return start_server(
        tmp_path / "unused.sqlite3",
        tmp_path,
        *args,
        TASKS_DATABASE_URL=database_url,
        TASKS_CALLBACK_HOSTS=receiver.hosts,
        TASKS_WEBHOOK_SECRET=SECRET,
        **env,
    )


def _submit(server: Server, body: dict[str, Any]) -> dict[str, Any]:
    status, task = server.request("POST", "/tasks", body)
    assert status == 202, task
    return task


def _time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_a_delivery_arrives_signed_within_a_second_of_the_end(
    tmp_path: Path, database_url: str
) -> None:
    with receiving() as receiver:
        server = _serve(tmp_path, database_url, receiver, "--worker-processes", "2")
        try:
            task = _submit(
                server, {"type": "add", "params": {"x": 2, "y": 3}, "callback_url": receiver.url}
            )
            (got,) = receiver.wait(1)
            event = Webhook(SECRET).verify(got.body, got.headers)
            assert event["type"] == "task.succeeded" and event["data"]["result"] == 5
            assert event["data"]["id"] == task["id"]
            assert got.at - _time(event["data"]["finished_at"]) < 1.0
            wait_until(
                lambda: (
                    server.request("GET", f"/tasks/{task['id']}")[1]["callback"]["state"]
                    == "delivered"
                )
            )
            _, read = server.request("GET", f"/tasks/{task['id']}")
            assert read["callback"]["attempts"] == 1 and read["callback"]["last_status"] == 204
        finally:
            assert server.stop() == 0


def test_a_delivery_written_before_a_sigkill_is_sent_after_the_restart(
    tmp_path: Path, database_url: str
) -> None:
    with receiving() as receiver:
        # The API alone: the task ends (cancelled) and its delivery is written, but no
        # worker process runs to send it, when the whole service is killed.
        api_only = _serve(tmp_path, database_url, receiver, TASKS_WORKERS="0")
        try:
            task = _submit(
                api_only,
                {"type": "sleep", "params": {"seconds": 5}, "callback_url": receiver.url},
            )
            status, cancelled = api_only.request("POST", f"/tasks/{task['id']}/cancel")
            assert status == 200 and cancelled["status"] == "cancelled", cancelled
            assert cancelled["callback"]["state"] == "pending"
            assert cancelled["callback"]["attempts"] == 0
        finally:
            api_only.stop(signal.SIGKILL, group=True)
        assert receiver.received == []

        again = _serve(tmp_path, database_url, receiver)
        try:
            (got,) = receiver.wait(1)
            event = Webhook(SECRET).verify(got.body, got.headers)
            assert event["type"] == "task.cancelled" and event["data"]["id"] == task["id"]
            assert got.headers["webhook-id"] == f"msg_{task['id']}"
        finally:
            assert again.stop() == 0


def test_an_attempt_cut_short_by_a_sigkill_is_made_again_with_the_same_id(
    tmp_path: Path, database_url: str
) -> None:
    # The first attempt hangs at the receiver while the service is killed; the next service
    # makes it again once its lease (the timeout, 10 s, and TASKS_LEASE_SECONDS) is over.
    with receiving([(200, {}, 30.0)]) as receiver:
        first = _serve(tmp_path, database_url, receiver, TASKS_LEASE_SECONDS="1")
        try:
            task = _submit(
                first, {"type": "add", "params": {"x": 1, "y": 1}, "callback_url": receiver.url}
            )
            receiver.wait(1)
        finally:
            first.stop(signal.SIGKILL, group=True)

        again = _serve(tmp_path, database_url, receiver, TASKS_LEASE_SECONDS="1")
        try:
            cut, resent = receiver.wait(2, timeout=60)
            assert cut.headers["webhook-id"] == resent.headers["webhook-id"] == f"msg_{task['id']}"
            assert json.loads(cut.body) == json.loads(resent.body)
            Webhook(SECRET).verify(resent.body, resent.headers)
            wait_until(
                lambda: (
                    again.request("GET", f"/tasks/{task['id']}")[1]["callback"]["state"]
                    == "delivered"
                )
            )
            _, read = again.request("GET", f"/tasks/{task['id']}")
            assert read["callback"]["attempts"] == 2
            assert wait_terminal(again, task["id"])["status"] == "succeeded"
        finally:
            assert again.stop() == 0
