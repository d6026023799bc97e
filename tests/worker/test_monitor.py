"""The monitor: leases renewed, lost tasks taken back, expired tasks purged, one tick at a time.

Each test ticks the monitor itself, with a clock it moves on: no thread, no sleep. The ones
that kill real processes are in tests/test_execution.py and tests/test_worker_loss.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from marshmallow import Schema

import api.worker.monitor
from api.models import Task
from api.registry import TaskCancelled, TaskContext, TaskType
from api.runtime import Runtime
from api.worker import PURGE_INTERVAL_SECONDS, WorkerPool
from tests.conftest import make_app, runtime_of, submit, wait_for
from tests.store.tasks import claim

LEASE = 10.0
#: Shorter than PURGE_INTERVAL_SECONDS, so that a task expires between two purges.
TTL = 30.0


class FakeClock:
    """The store's time (a call) and the monitor's timer (``monotonic``), moved on together.

    It starts a second ahead of the real clock, so that tasks just submitted are ready.
    """

    def __init__(self) -> None:
        self.now = datetime.now(UTC) + timedelta(seconds=1)
        self.elapsed = 0.0

    def __call__(self) -> datetime:
        return self.now

    def monotonic(self) -> float:
        return self.elapsed

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        self.elapsed += seconds


def pool_on(runtime: Runtime, clock: FakeClock) -> WorkerPool:
    """A pool of the app's store and task types whose clock and timer are ``clock``."""
    settings = runtime.settings
    return WorkerPool(
        runtime.store,
        runtime.registry,
        size=1,
        result_ttl=settings.result_ttl,
        poll_interval=settings.poll_interval,
        lease_seconds=settings.lease_seconds,
        events=runtime.service.events,
        metrics=runtime.metrics,
        clock=clock,
        timer=clock.monotonic,
    )


@pytest.fixture
def runtime(db_path: Path, database_url: str) -> Iterator[Runtime]:
    app = make_app(
        db_path, TASKS_DATABASE_URL=database_url, TASKS_LEASE_SECONDS=LEASE, TASKS_RESULT_TTL=TTL
    )
    runtime = runtime_of(app)
    yield runtime
    runtime.pool.stop(grace=5)
    runtime.store.close()


def _status(runtime: Runtime, task: Task) -> tuple[str, int]:
    now = runtime.store.get(task.id, datetime.now(UTC))
    assert now is not None
    return now.status.value, now.attempts


def _gone(runtime: Runtime, task: Task) -> bool:
    """No row left for ``task``: the reads hide an expired task, so look from long before."""
    return runtime.store.get(task.id, datetime.now(UTC) - timedelta(days=365)) is None


def _add(runtime: Runtime) -> Task:
    return runtime.service.submit(
        {"type": "add", "params": {"x": 1, "y": 2, "delay_seconds": 0}}
    ).task


def test_a_lost_lease_is_taken_back_once_it_is_over(runtime: Runtime) -> None:
    clock = FakeClock()
    pool = pool_on(runtime, clock)
    task = _add(runtime)
    assert claim(runtime.store, "a-dead-worker", clock(), clock() + timedelta(seconds=LEASE))
    pool.monitor.tick()
    assert _status(runtime, task) == ("running", 1), "the lease is not over yet"
    clock.advance(LEASE + 1)
    pool.monitor.tick()
    assert _status(runtime, task) == ("queued", 1)
    assert pool.drain() == 1
    assert _status(runtime, task) == ("succeeded", 2), "the lost attempt counts"


def test_a_lost_attempt_does_not_use_up_max_attempts(runtime: Runtime) -> None:
    """Only failed attempts count against max_attempts, and set the backoff."""
    clock = FakeClock()
    pool = pool_on(runtime, clock)
    task = runtime.service.submit(
        {"type": "fail", "params": {"message": "no"}, "max_attempts": 2}
    ).task
    assert claim(runtime.store, "a-dead-worker", clock(), clock() - timedelta(seconds=1))
    pool.monitor.tick()
    assert _status(runtime, task) == ("queued", 1), "lost: back to the queue"
    assert pool.drain() == 1
    assert _status(runtime, task) == ("queued", 2), "one failure of two: retried"
    retried = runtime.store.get(task.id, clock())
    assert retried is not None
    # The first failure's backoff (base 0.5 s, equal jitter): 0.25 to 0.5 s, not the second's.
    assert 0.25 <= (retried.run_after - clock()).total_seconds() <= 0.5
    clock.advance(1)
    assert pool.drain() == 1
    assert _status(runtime, task) == ("failed", 3), "the second failure is the last"


def test_recovery_runs_every_half_lease(runtime: Runtime) -> None:
    clock = FakeClock()
    pool = pool_on(runtime, clock)
    pool.monitor.tick()  # the first tick recovers: the next recovery is half a lease later
    task = _add(runtime)
    assert claim(runtime.store, "a-dead-worker", clock(), clock() - timedelta(seconds=1))
    clock.advance(LEASE / 2 - 1)
    pool.monitor.tick()
    assert _status(runtime, task) == ("running", 1), "not due yet"
    clock.advance(1)
    pool.monitor.tick()
    assert _status(runtime, task) == ("queued", 1)


def test_a_running_task_keeps_its_lease_while_it_runs(runtime: Runtime) -> None:
    """Each tick renews the lease of what the pool runs, and takes back a lost task beside."""
    clock = FakeClock()
    pool = pool_on(runtime, clock)
    lost = _add(runtime)
    assert claim(runtime.store, "a-dead-worker", clock(), clock() + timedelta(seconds=LEASE))

    def long(context: TaskContext, params: dict[str, Any]) -> str:
        for _ in range(4):  # twice the lease in all
            clock.advance(LEASE / 2)
            pool.monitor.tick()
        seen.append(_status(runtime, lost))
        return "kept"

    seen: list[tuple[str, int]] = []
    runtime.registry.add(TaskType("long", Schema, long))
    task = runtime.service.submit({"type": "long", "params": {}}).task
    assert pool.run_one("the-worker")
    assert _status(runtime, task) == ("succeeded", 1), "never taken back"
    assert seen == [("queued", 1)], "the task nobody renewed was taken back meanwhile"


def test_a_cancel_asked_in_another_process_reaches_the_task_at_the_next_tick(
    db_path: Path, database_url: str
) -> None:
    """Two apps on one store stand for two processes: the one that does not run it cancels."""
    runner = runtime_of(make_app(db_path, TASKS_DATABASE_URL=database_url))
    other = runtime_of(make_app(db_path, TASKS_DATABASE_URL=database_url, TASKS_WORKERS=0))
    seen: list[bool] = []

    def obedient(context: TaskContext, params: dict[str, Any]) -> str:
        other.service.cancel(context.task_id)
        seen.append(context.should_abort)
        runner.pool.monitor.tick()
        seen.append(context.should_abort)
        if context.should_abort:
            raise TaskCancelled()
        return "ran on"

    runner.registry.add(TaskType("obedient", Schema, obedient))
    task = runner.service.submit({"type": "obedient", "params": {}}).task
    try:
        assert runner.pool.drain() == 1
        assert seen == [False, True], "heard at the heartbeat, not before"
        assert _status(runner, task) == ("cancelled", 1)
    finally:
        runner.store.close()
        other.store.close()


def test_a_worker_that_lost_its_task_tells_it_to_stop_and_drops_its_result(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    pool, elsewhere = pool_on(runtime, clock), pool_on(runtime, clock)
    seen: list[tuple[bool, bool]] = []

    def paused(context: TaskContext, params: dict[str, Any]) -> str:
        if context.attempt == 1:
            clock.advance(LEASE + 1)  # as if this process had been frozen past its lease
            elsewhere.monitor.tick()  # another process takes the task back
            pool.monitor.tick()  # this one hears that its lease is lost
            seen.append((context.should_abort, context.cancel_requested))
        return f"attempt {context.attempt}"

    runtime.registry.add(TaskType("paused", Schema, paused))
    task = runtime.service.submit({"type": "paused", "params": {}}).task
    assert pool.drain() == 2, "taken back, it ran again"
    assert seen == [(True, True)], "cancel_requested is should_abort: true for any reason"
    assert "lease lost; its result will be dropped" in caplog.text
    assert "ended after this worker lost it; result dropped" in caplog.text
    done = runtime.store.get(task.id, datetime.now(UTC))
    assert done is not None and (done.status.value, done.attempts) == ("succeeded", 2)
    assert done.result == "attempt 2", "the first attempt's result was dropped"


def test_expired_tasks_are_purged_when_a_purge_is_due(runtime: Runtime) -> None:
    """The first tick purges, the next ones each PURGE_INTERVAL_SECONDS after."""
    clock = FakeClock()
    pool = pool_on(runtime, clock)
    task = _add(runtime)
    assert pool.drain() == 1
    done = runtime.store.get(task.id, clock())
    assert done is not None and done.expires_at is not None and done.finished_at is not None
    assert done.expires_at > done.finished_at
    pool.monitor.tick()
    assert not _gone(runtime, task), "not expired at the first purge"
    clock.advance(runtime.settings.result_ttl + 1)
    pool.monitor.tick()
    assert not _gone(runtime, task), "expired, but no purge is due yet"
    clock.advance(PURGE_INTERVAL_SECONDS)
    pool.monitor.tick()
    assert _gone(runtime, task)


def test_a_backlog_is_purged_a_batch_per_tick(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api.worker.monitor, "PURGE_BATCH", 2)
    tasks = [_add(runtime) for _ in range(5)]
    assert runtime.pool.drain() == 5
    clock = FakeClock()
    clock.advance(runtime.settings.result_ttl + 1)
    pool = pool_on(runtime, clock)
    left = []
    for _ in range(4):
        pool.monitor.tick()  # no time passes: a full batch makes the next purge due at once
        left.append(sum(not _gone(runtime, t) for t in tasks))
    assert left == [3, 1, 0, 0]


def test_a_started_pool_ticks_its_monitor_on_a_thread(db_path: Path) -> None:
    """The thread is the tick, every ``interval``: here it takes back a task already lost."""
    app = make_app(db_path, TASKS_LEASE_SECONDS=0.3)
    runtime = runtime_of(app)
    client = app.test_client()
    task = submit(client, {"type": "add", "params": {"x": 1, "y": 2}, "max_attempts": 1})
    now = datetime.now(UTC)
    assert claim(runtime.store, "a-dead-worker", now, now - timedelta(seconds=1))
    runtime.pool.start()
    try:
        done = wait_for(client, task["id"], timeout=10)
        assert (done["status"], done["attempts"], done["result"]) == ("succeeded", 2, 3)
    finally:
        runtime.pool.stop(grace=5)
        runtime.store.close()
