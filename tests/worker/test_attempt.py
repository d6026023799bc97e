"""One attempt: how the end of a task function becomes the task's state (retries,
failures, cancellation, progress, timeouts)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from flask.testing import FlaskClient
from marshmallow import Schema, fields

from api.models import Progress
from api.registry import TaskContext, TaskType
from api.runtime import Runtime
from tests.conftest import make_app, runtime_of, submit, wait_for, wait_until


class NoParams(Schema):
    pass


def test_fail_with_succeed_after_shows_retries_end_to_end(
    client: FlaskClient, live: Runtime
) -> None:
    task = submit(client, {"type": "fail", "params": {"message": "flaky", "succeed_after": 2}})
    done = wait_for(client, task["id"])
    assert done["status"] == "succeeded"
    assert done["attempts"] == 3
    assert done["result"] == {"attempts": 3}
    assert done["error"] is None


def test_a_task_out_of_attempts_fails_with_its_last_error(
    client: FlaskClient, live: Runtime
) -> None:
    task = submit(client, {"type": "fail", "params": {"message": "always"}, "max_attempts": 2})
    done = wait_for(client, task["id"])
    assert (done["status"], done["attempts"]) == ("failed", 2)
    assert done["error"] == {"type": "TaskFailure", "message": "always"}


def test_between_attempts_the_task_waits_queued_with_a_backoff(
    client: FlaskClient, drain: Callable[[], int]
) -> None:
    task = submit(client, {"type": "fail", "params": {"message": "x", "succeed_after": 1}})
    assert drain() == 1, "the retry is not ready at once"
    waiting = client.get(f"/tasks/{task['id']}").get_json()
    assert waiting["status"] == "queued" and waiting["attempts"] == 1
    assert waiting["error"] == {"type": "TaskFailure", "message": "x"}
    assert waiting["run_after"] > waiting["created_at"]


def test_cancelling_a_task_waiting_to_retry_clears_the_old_error(
    client: FlaskClient, drain: Callable[[], int]
) -> None:
    task = submit(client, {"type": "fail", "params": {"message": "x", "succeed_after": 1}})
    drain()
    cancelled = client.post(f"/tasks/{task['id']}/cancel").get_json()
    assert cancelled["status"] == "cancelled"
    assert cancelled["error"] is None, "error is set only when failed"


def test_a_result_that_is_not_json_fails_the_attempt(db_path: Path) -> None:
    app = make_app(db_path)
    runtime = runtime_of(app)
    runtime.registry.add(TaskType("bad", NoParams, lambda c, p: {1, 2}, max_attempts=1))
    task = runtime.service.submit({"type": "bad", "params": {}}).task
    runtime.pool.drain()
    failed = runtime.store.get(task.id, datetime.now(UTC))
    assert failed is not None and failed.error is not None
    assert failed.status.value == "failed" and failed.error.type == "TypeError"


def test_a_task_type_unknown_to_this_worker_fails_clearly(db_path: Path) -> None:
    class P(Schema):
        n = fields.Integer()

    submitter = make_app(db_path)
    runtime_of(submitter).registry.add(TaskType("elsewhere", P, lambda c, p: 1))
    task = runtime_of(submitter).service.submit({"type": "elsewhere", "params": {}}).task
    worker = runtime_of(make_app(db_path))
    worker.pool.drain()
    failed = worker.store.get(task.id, datetime.now(UTC))
    assert failed is not None and failed.error is not None
    assert failed.error.type == "UnknownTaskType" and "elsewhere" in failed.error.message


def test_sleep_reports_progress_and_stops_soon_after_cancel(
    client: FlaskClient, live: Runtime
) -> None:
    task = submit(client, {"type": "sleep", "params": {"seconds": 60}})
    url = f"/tasks/{task['id']}"
    wait_until(lambda: (client.get(url).get_json()["progress"] or {}).get("current") == 1)
    progress = client.get(url).get_json()["progress"]
    assert progress["total"] == 60 and "1 of 60" in progress["message"]
    asked = time.monotonic()
    client.post(f"{url}/cancel")
    done = wait_for(client, task["id"])
    assert done["status"] == "cancelled"
    assert done["error"] is None and done["result"] is None
    assert time.monotonic() - asked < 5, "sleep checks for cancellation about every second"


def test_progress_is_stored_as_numbers_and_text_whatever_the_task_passes(
    db_path: Path,
) -> None:
    def chatty(context: TaskContext, params: dict) -> None:
        context.progress(1, 10, 5)  # type: ignore[arg-type]  # a careless task
        return None

    app = make_app(db_path, TASKS_WORKERS=0)
    runtime = runtime_of(app)
    runtime.registry.add(TaskType("chatty", NoParams, chatty))
    seen: list[Progress] = []
    report = runtime.store.report_progress

    def spy(task_id: str, worker_id: str, progress: Progress) -> bool | None:
        seen.append(progress)
        return report(task_id, worker_id, progress)

    runtime.store.report_progress = spy  # type: ignore[method-assign]
    runtime.service.submit({"type": "chatty", "params": {}})
    assert runtime.pool.drain() == 1
    assert seen == [Progress(1.0, 10.0, "5")]


def test_at_its_timeout_a_task_is_told_to_stop_and_its_result_is_dropped(db_path: Path) -> None:
    seen: list[tuple[bool, bool, bool]] = []

    def slow(context: TaskContext, params: dict) -> str:
        stopped = context.sleep(30)
        seen.append((stopped, context.should_abort, context.cancel_requested))
        return "late"

    runtime = runtime_of(make_app(db_path, TASKS_WORKERS=0))
    runtime.registry.add(TaskType("slow", NoParams, slow, max_attempts=1))
    task = runtime.service.submit({"type": "slow", "params": {}, "timeout_seconds": 0.2}).task
    assert runtime.pool.drain() == 1
    assert seen == [(True, True, True)], "cancel_requested turns true at the deadline too"
    failed = runtime.store.get(task.id, datetime.now(UTC))
    assert failed is not None and failed.error is not None
    assert (failed.status.value, failed.error.type, failed.result) == (
        "failed",
        "TimeoutError",
        None,
    )
