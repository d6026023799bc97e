"""The worker pool: its threads, claims in order, wake-ups, and shutdown with its hand-backs."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from marshmallow import Schema

from api.models import Task
from api.registry import TaskCancelled, TaskContext, TaskType
from api.runtime import Runtime
from api.worker import Wakeup
from tests.conftest import make_app, runtime_of, submit, wait_for, wait_until


class NoParams(Schema):
    pass


def test_higher_priority_runs_first_and_delayed_tasks_wait(
    client: FlaskClient, drain: Callable[[], int]
) -> None:
    low = submit(client, {"type": "add", "params": {"x": 1, "y": 0}, "priority": -1})
    high = submit(client, {"type": "add", "params": {"x": 2, "y": 0}, "priority": 5})
    later = submit(client, {"type": "add", "params": {"x": 3, "y": 0}, "delay_seconds": 3600})
    assert drain() == 2
    started = {t["id"]: t["started_at"] for t in client.get("/tasks?status=succeeded").get_json()}
    assert started[high["id"]] < started[low["id"]]
    assert client.get(f"/tasks/{later['id']}").get_json()["status"] == "queued"


def test_a_submit_wakes_an_idle_worker_without_waiting_for_the_poll(db_path: Path) -> None:
    app = make_app(db_path, TASKS_POLL_INTERVAL=60)
    runtime = runtime_of(app)
    runtime.pool.start()
    try:
        time.sleep(0.2)  # every worker is now idle, waiting up to 60 s
        client = app.test_client()
        task = submit(client, {"type": "add", "params": {"x": 1, "y": 2}})
        assert wait_for(client, task["id"], timeout=10)["status"] == "succeeded"
    finally:
        runtime.pool.stop(grace=5)


def test_tasks_from_another_process_are_found_by_polling(db_path: Path) -> None:
    worker_app = make_app(db_path, TASKS_POLL_INTERVAL=0.1)
    api_app = make_app(db_path, TASKS_WORKERS=0)
    runtime_of(worker_app).pool.start()
    try:
        client = api_app.test_client()
        task = submit(client, {"type": "add", "params": {"x": 1, "y": 2}})
        assert wait_for(client, task["id"], timeout=10)["result"] == 3
    finally:
        runtime_of(worker_app).pool.stop(grace=5)


def test_stop_lets_a_running_task_finish_within_the_grace(
    client: FlaskClient, live: Runtime
) -> None:
    task = submit(client, {"type": "sleep", "params": {"seconds": 1}})
    wait_until(lambda: client.get(f"/tasks/{task['id']}").get_json()["status"] == "running")
    live.pool.stop(grace=10)
    assert client.get(f"/tasks/{task['id']}").get_json()["status"] == "succeeded"


def _one_worker_with(db_path: Path, name: str, func: Any, n: int) -> tuple[Runtime, list[Task]]:
    """A one-worker pool, not started, with task type ``name`` running ``func``, and ``n``
    such tasks queued."""
    runtime = runtime_of(make_app(db_path, TASKS_WORKERS=1))
    runtime.registry.add(TaskType(name, NoParams, func))
    return runtime, [runtime.service.submit({"type": name, "params": {}}).task for _ in range(n)]


def test_a_worker_finishing_during_stop_claims_nothing_more(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A success is recorded together with the claim of the next task, except once the pool
    # is stopping: then the next tasks stay queued for the next start, never claimed (a claim
    # handed straight back would end the same, but warn of a hand-back for a task not run).
    started, release = threading.Event(), threading.Event()

    def gated(context: TaskContext, params: dict) -> str:
        started.set()
        release.wait(30)
        return "done"

    runtime, (first, *rest) = _one_worker_with(db_path, "gated", gated, 3)
    claims: list[str] = []
    real = runtime.store.succeed_and_claim

    def recorded(task_id: str, *args: Any, **kwargs: Any) -> Any:
        claims.append(task_id)
        return real(task_id, *args, **kwargs)

    runtime.store.succeed_and_claim = recorded  # type: ignore[method-assign]
    caplog.set_level(logging.INFO, logger="api.worker")
    runtime.pool.start()
    assert started.wait(15)
    threading.Timer(0.3, release.set).start()  # the first ends while stop() waits
    runtime.pool.stop(grace=10)
    assert runtime.store.get(first.id, datetime.now(UTC)).status.value == "succeeded"  # type: ignore[union-attr]
    assert claims == [], "a stopping pool must not claim with its last success"
    assert "handed back" not in caplog.text
    for task in rest:
        left = runtime.store.get(task.id, datetime.now(UTC))
        assert left is not None and (left.status.value, left.attempts) == ("queued", 0)


def _quick_tasks(db_path: Path, n: int) -> tuple[Runtime, list[Task]]:
    return _one_worker_with(db_path, "quick", lambda context, params: "ok", n)


def test_a_stop_begun_during_a_success_sends_the_task_claimed_with_it_back(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime, (first, second) = _quick_tasks(db_path, 2)
    real = runtime.store.succeed_and_claim

    def stop_begins_meanwhile(*args: Any, **kwargs: Any) -> Any:
        runtime.pool._stop.set()  # as stop() does, while the success is being written
        return real(*args, **kwargs)

    monkeypatch.setattr(runtime.store, "succeed_and_claim", stop_begins_meanwhile)
    runtime.pool.start()
    wait_until(lambda: runtime.store.get(first.id, datetime.now(UTC)).status.value == "succeeded")  # type: ignore[union-attr]

    def handed_back() -> bool:
        back = runtime.store.get(second.id, datetime.now(UTC))
        assert back is not None
        return (back.status.value, back.attempts, back.started_at, back.worker_id) == (
            "queued",
            0,
            None,
            None,
        )

    # The worker itself hands it back, at once: stop() may have emptied what the pool holds
    # before the worker put the claimed task there, and would then never see it.
    wait_until(handed_back)
    runtime.pool.stop(grace=5)
    assert handed_back()


def test_stop_hands_back_a_task_claimed_for_a_worker_that_did_not_start_it(
    db_path: Path,
) -> None:
    runtime, (task,) = _quick_tasks(db_path, 1)
    now = datetime.now(UTC)
    claimed = runtime.store.claim("worker-gone", now, now + timedelta(seconds=30))
    assert claimed is not None
    runtime.pool._claimed["worker-gone"] = claimed  # left by a worker that saw the stop
    runtime.pool.stop(grace=0)
    back = runtime.store.get(task.id, datetime.now(UTC))
    assert back is not None and (back.status.value, back.attempts) == ("queued", 0)


def test_stop_hands_back_a_task_still_running_after_the_grace(db_path: Path) -> None:
    release = threading.Event()

    def stubborn(context: TaskContext, params: dict) -> str:
        release.wait(30)  # ignores cancellation, like a task blocked in I/O
        return "late"

    runtime, (task,) = _one_worker_with(db_path, "stubborn", stubborn, 1)
    runtime.pool.start()
    wait_until(lambda: runtime.store.get(task.id, datetime.now(UTC)).status.value == "running")  # type: ignore[union-attr]
    runtime.pool.stop(grace=0.2)
    back = runtime.store.get(task.id, datetime.now(UTC))
    assert back is not None and back.status.value == "queued" and back.attempts == 0
    release.set()
    time.sleep(0.1)
    after = runtime.store.get(task.id, datetime.now(UTC))
    assert after is not None and after.status.value == "queued", "the late result is dropped"


def test_a_task_told_to_stop_by_a_shutdown_goes_back_to_the_queue_not_cancelled(
    db_path: Path,
) -> None:
    seen: list[tuple[bool, bool]] = []

    def polite(context: TaskContext, params: dict) -> str:
        if context.sleep(30):
            seen.append((context.should_abort, context.cancel_requested))
            raise TaskCancelled()
        return "slept"

    runtime, (task,) = _one_worker_with(db_path, "polite", polite, 1)
    runtime.pool.start()
    wait_until(lambda: runtime.store.get(task.id, datetime.now(UTC)).status.value == "running")  # type: ignore[union-attr]
    runtime.pool.stop(grace=0.2)
    assert seen == [(True, True)], "told to stop once handed back"
    back = runtime.store.get(task.id, datetime.now(UTC))
    assert back is not None and (back.status.value, back.attempts) == ("queued", 0)


def test_an_error_in_the_loop_never_kills_a_worker_thread(
    client: FlaskClient, live: Runtime, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    calls = {"n": 0}
    real_claim = live.store.claim

    def flaky_claim(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] <= 2:
            raise RuntimeError("store hiccup")
        return real_claim(*args, **kwargs)

    monkeypatch.setattr(live.store, "claim", flaky_claim)
    live.pool.wakeup.notify_all()
    task = submit(client, {"type": "add", "params": {"x": 1, "y": 1}})
    assert wait_for(client, task["id"])["status"] == "succeeded"
    assert live.pool.alive()


def test_wakeup_never_keeps_more_signals_than_workers() -> None:
    wakeup = Wakeup(cap=2)
    for _ in range(100):
        wakeup.notify()
    assert wakeup.wait(0) and wakeup.wait(0)
    assert not wakeup.wait(0)


def test_restarting_a_pool_leaves_no_thread_behind(db_path: Path, database_url: str) -> None:
    app = make_app(db_path, TASKS_DATABASE_URL=database_url, TASKS_WORKERS=1)
    runtime = runtime_of(app)
    before = threading.active_count()
    for _ in range(3):
        runtime.pool.start()
        runtime.pool.stop(grace=1)
    time.sleep(0.2)
    names = [t.name for t in threading.enumerate() if t.name.startswith("taskapi-")]
    assert names == [] and threading.active_count() <= before
    runtime.store.close()
