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

import api.worker.pool
from api.models import Status, Task
from api.registry import TaskCancelled, TaskContext, TaskType
from api.runtime import Runtime
from api.store import Claim
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
    # Started by a worker thread: "running" in the store is claimed, and a task claimed and
    # not started yet goes back to the queue at the stop.
    wait_until(lambda: live.pool.running_count() == 1)
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
    # Endings are written together with a claim for the free workers, except once the pool
    # is stopping: then the next tasks stay queued for the next start, never claimed (a claim
    # handed straight back would end the same, but warn of a hand-back for a task not run).
    started, release = threading.Event(), threading.Event()

    def gated(context: TaskContext, params: dict) -> str:
        started.set()
        release.wait(30)
        return "done"

    runtime, (first, *rest) = _one_worker_with(db_path, "gated", gated, 3)
    claims: list[Claim | None] = []
    real = runtime.store.complete

    def recorded(endings: Any, *, claim: Claim | None = None) -> Any:
        if endings:  # a claim alone (claim_many) is written by complete too
            claims.append(claim)
        return real(endings, claim=claim)

    runtime.store.complete = recorded  # type: ignore[method-assign]
    caplog.set_level(logging.INFO, logger="api.worker")
    runtime.pool.start()
    assert started.wait(15)
    threading.Timer(0.3, release.set).start()  # the first ends while stop() waits
    runtime.pool.stop(grace=10)
    assert runtime.store.get(first.id, datetime.now(UTC)).status.value == "succeeded"  # type: ignore[union-attr]
    assert claims == [None], "a stopping pool writes its last ending without a claim"
    assert "handed back" not in caplog.text
    for task in rest:
        left = runtime.store.get(task.id, datetime.now(UTC))
        assert left is not None and (left.status.value, left.attempts) == ("queued", 0)


def _quick_tasks(db_path: Path, n: int) -> tuple[Runtime, list[Task]]:
    return _one_worker_with(db_path, "quick", lambda context, params: "ok", n)


def test_a_stop_begun_during_a_write_sends_the_tasks_claimed_with_it_back(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime, (first, second) = _quick_tasks(db_path, 2)
    real = runtime.store.complete

    def stop_begins_meanwhile(endings: Any, **kwargs: Any) -> Any:
        if endings:  # not the first claim, alone: the first task's ending and the next claim
            runtime.pool._stop.set()  # as stop() does, while the ending is being written
        return real(endings, **kwargs)

    monkeypatch.setattr(runtime.store, "complete", stop_begins_meanwhile)
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

    # The dispatcher itself hands it back, at once: stop() may have taken back what the
    # workers had not started before the dispatcher handed this one out, and never see it.
    wait_until(handed_back)
    runtime.pool.stop(grace=5)
    assert handed_back()


def test_stop_hands_back_tasks_claimed_and_not_started(db_path: Path) -> None:
    runtime, tasks = _quick_tasks(db_path, 3)
    now = datetime.now(UTC)
    claimed = runtime.store.claim_many("pool", 3, now, now + timedelta(seconds=30))
    assert len(claimed) == 3
    runtime.pool._hand_out(claimed, "pool")  # handed out, no worker thread took them yet
    assert runtime.pool.running_count() == 0, "held, not running"
    runtime.pool.stop(grace=0)
    for task in tasks:
        back = runtime.store.get(task.id, datetime.now(UTC))
        assert back is not None and (back.status.value, back.attempts) == ("queued", 0)


def test_one_claim_takes_tasks_for_every_free_worker_and_no_more(db_path: Path) -> None:
    release = threading.Event()

    def held(context: TaskContext, params: dict) -> str:
        release.wait(30)
        return "ok"

    runtime = runtime_of(make_app(db_path, TASKS_WORKERS=3))
    runtime.registry.add(TaskType("held", NoParams, held))
    for _ in range(5):
        runtime.service.submit({"type": "held", "params": {}})
    limits: list[int] = []
    real = runtime.store.claim_many

    def recorded(worker_id: str, limit: int, *args: Any, **kwargs: Any) -> Any:
        limits.append(limit)
        return real(worker_id, limit, *args, **kwargs)

    runtime.store.claim_many = recorded  # type: ignore[method-assign]
    runtime.pool.start()
    try:
        wait_until(lambda: runtime.pool.running_count() == 3)
        time.sleep(0.2)
        counts = runtime.store.count_by_status(datetime.now(UTC))
        assert (counts[Status.RUNNING], counts[Status.QUEUED]) == (3, 2), "nothing prefetched"
        assert limits == [3], "one statement for the three free workers"
        release.set()
        wait_until(lambda: runtime.store.count_by_status(datetime.now(UTC))[Status.SUCCEEDED] == 5)
    finally:
        release.set()
        runtime.pool.stop(grace=10)


def test_stop_hands_back_a_task_still_running_after_the_grace(db_path: Path) -> None:
    release = threading.Event()

    def stubborn(context: TaskContext, params: dict) -> str:
        release.wait(30)  # ignores cancellation, like a task blocked in I/O
        return "late"

    runtime, (task,) = _one_worker_with(db_path, "stubborn", stubborn, 1)
    runtime.pool.start()
    wait_until(lambda: runtime.pool.running_count() == 1)  # started, not merely claimed
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
    wait_until(lambda: runtime.pool.running_count() == 1)  # started, not merely claimed
    runtime.pool.stop(grace=0.2)
    assert seen == [(True, True)], "told to stop once handed back"
    back = runtime.store.get(task.id, datetime.now(UTC))
    assert back is not None and (back.status.value, back.attempts) == ("queued", 0)


def test_an_error_in_the_loop_never_kills_a_thread_nor_loses_an_ending(
    client: FlaskClient, live: Runtime, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    calls = {"claims": 0, "completes": 0}
    real_claim, real_complete = live.store.claim_many, live.store.complete

    def flaky_claim(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["claims"] += 1
        if calls["claims"] <= 2:
            raise RuntimeError("store hiccup")
        return real_claim(*args, **kwargs)

    def flaky_complete(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["completes"] += 1
        if calls["completes"] <= 1:
            raise RuntimeError("store hiccup")
        return real_complete(*args, **kwargs)

    monkeypatch.setattr(live.store, "claim_many", flaky_claim)
    monkeypatch.setattr(live.store, "complete", flaky_complete)
    monkeypatch.setattr(api.worker.pool, "ERROR_PAUSE", 0.05)
    live.pool.wakeup.notify_all()
    task = submit(client, {"type": "add", "params": {"x": 1, "y": 1}})
    assert wait_for(client, task["id"])["status"] == "succeeded"
    assert calls["completes"] >= 2, "the ending not written at first was written next"
    assert live.pool.alive()


def test_wakeups_before_the_dispatcher_looks_count_as_one() -> None:
    wakeup = Wakeup(threading.Condition())
    for _ in range(100):
        wakeup.notify()
    assert wakeup.pending
    wakeup.pending = False  # the claim that looks
    assert not wakeup.pending


def test_restarting_a_pool_leaves_no_thread_behind(db_path: Path, database_url: str) -> None:
    app = make_app(db_path, TASKS_DATABASE_URL=database_url, TASKS_WORKERS=1)
    runtime = runtime_of(app)
    before = set(threading.enumerate())  # other tests' helpers may still be ending
    for _ in range(3):
        runtime.pool.start()
        runtime.pool.stop(grace=1)
    time.sleep(0.2)
    left = [t.name for t in set(threading.enumerate()) - before]
    assert left == []
    runtime.store.close()


@pytest.mark.parametrize("trouble", ["too deep to write", "sys.exit"])
def test_an_attempt_that_breaks_the_worker_fails_and_frees_its_worker(
    db_path: Path, database_url: str, trouble: str
) -> None:
    app = make_app(db_path, TASKS_DATABASE_URL=database_url, TASKS_WORKERS=1)
    runtime = runtime_of(app)

    def breaks(context: TaskContext, params: dict[str, Any]) -> Any:
        if trouble == "sys.exit":
            raise SystemExit(3)
        deep: list[Any] = []
        for _ in range(100_000):
            deep = [deep]
        return deep

    runtime.registry.add(TaskType("breaks", NoParams, breaks, max_attempts=1))
    broken = runtime.service.submit({"type": "breaks", "params": {}}).task
    after = runtime.service.submit(
        {"type": "add", "params": {"x": 1, "y": 1, "delay_seconds": 0}}
    ).task
    runtime.pool.start()
    try:
        wait_until(lambda: runtime.service.get(after.id).status is Status.SUCCEEDED)
        failed = runtime.service.get(broken.id)
        assert failed.status is Status.FAILED and failed.error is not None
        assert failed.error.type == ("SystemExit" if trouble == "sys.exit" else "RecursionError")
    finally:
        runtime.pool.stop(grace=1)
        runtime.store.close()


def test_a_pool_without_workers_starts_no_dispatcher(db_path: Path) -> None:
    """The API processes of taskapi serve: their submits wake no thread of theirs."""
    app = make_app(db_path, TASKS_WORKERS=0)
    runtime = runtime_of(app)
    runtime.pool.start()
    try:
        submit(app.test_client(), {"type": "add", "params": {"x": 1, "y": 1}})
        names = {t.name for t in threading.enumerate()}
        assert "taskapi-dispatcher" not in names and "taskapi-monitor" in names
    finally:
        runtime.pool.stop(grace=1)
        runtime.store.close()
