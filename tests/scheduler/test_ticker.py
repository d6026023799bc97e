"""The ticker on each store, with a clock of the test's own: what each fire time comes to."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from api.builtin_tasks import register
from api.models import CatchUp, FireOutcome, NewTask, Overlap, ScheduleSpec, Status, Task
from api.registry import Registry
from api.scheduler.ticker import (
    DUE_AGAIN_SECONDS,
    ERROR_BACKOFF,
    MISFIRE_GRACE,
    TICK_SECONDS,
    Ticker,
)
from api.store import Store, TaskFilter, open_store

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
ADD = {"type": "add", "params": {"x": 1, "y": 2, "delay_seconds": 0}}


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    s = open_store(database_url)
    yield s
    s.close()


@pytest.fixture
def registry() -> Registry:
    r = Registry()
    register(r)
    return r


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _put(
    store: Store,
    name: str = "probe",
    *,
    every: int | None = 10,
    cron: str | None = None,
    task: dict[str, Any] | None = None,
    owner: str = "",
    at: datetime = T0,
    **options: Any,
) -> None:
    spec = ScheduleSpec(cron=cron, every_seconds=every, timezone="UTC", task=task or ADD, **options)
    store.put_schedule(owner, name, spec, at + timedelta(seconds=every or 60), at)


def _made(store: Store, name: str = "probe", owner: str = "") -> list[Task]:
    tasks, _ = store.list(
        TaskFilter(schedule=name, owner=owner), offset=0, limit=100, now=T0 + timedelta(days=1)
    )
    return sorted(tasks, key=lambda t: t.scheduled_for or T0)


def _ticker(store: Store, registry: Registry, clock: Clock, **kwargs: Any) -> Ticker:
    return Ticker(store, registry, clock=clock, **kwargs)


def test_a_fire_time_makes_one_task_and_moves_the_schedule_on(
    store: Store, registry: Registry
) -> None:
    _put(store, owner="alice")
    clock = Clock(T0 + timedelta(seconds=9))
    ticker = _ticker(store, registry, clock)
    ticker.tick()
    assert _made(store, owner="alice") == []

    clock.now = T0 + timedelta(seconds=10, milliseconds=300)
    ticker.tick()
    [task] = _made(store, owner="alice")
    assert (task.schedule, task.scheduled_for, task.owner) == (
        "probe",
        T0 + timedelta(seconds=10),
        "alice",
    )
    assert (task.type, task.params, task.status) == ("add", ADD["params"], Status.QUEUED)
    assert task.max_attempts == registry.get("add").max_attempts  # the type's default
    schedule = store.schedule("alice", "probe")
    assert schedule is not None
    assert schedule.next_run_at == T0 + timedelta(seconds=20)
    assert (schedule.last_task_id, schedule.last_run_at) == (task.id, clock.now)


def test_two_tickers_at_once_make_one_task(store: Store, registry: Registry) -> None:
    _put(store, overlap=Overlap.ALLOW)
    clock = Clock(T0 + timedelta(seconds=10))
    first, second = _ticker(store, registry, clock), _ticker(store, registry, clock)
    [schedule] = store.due_schedules(clock.now, 10)
    assert first.fire(schedule, clock.now) is FireOutcome.MADE
    # The second read the schedule before the first fired it.
    assert second.fire(schedule, clock.now) is FireOutcome.TAKEN
    assert len(_made(store)) == 1


def test_many_threads_ticking_at_once_make_one_task_per_fire_time(
    store: Store, registry: Registry
) -> None:
    _put(store, every=1, overlap=Overlap.ALLOW)
    for second in range(1, 6):
        clock = Clock(T0 + timedelta(seconds=second))
        outcomes: list[FireOutcome] = []
        [schedule] = store.due_schedules(clock.now, 10)
        start = threading.Barrier(4)

        def fire(
            schedule: Any = schedule,
            clock: Clock = clock,
            start: threading.Barrier = start,
            outcomes: list[FireOutcome] = outcomes,
        ) -> None:
            ticker = _ticker(store, registry, clock)
            start.wait()
            outcomes.append(ticker.fire(schedule, clock.now))

        threads = [threading.Thread(target=fire) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(outcomes) == sorted([FireOutcome.MADE] + [FireOutcome.TAKEN] * 3)
    fired = [t.scheduled_for for t in _made(store)]
    assert fired == [T0 + timedelta(seconds=s) for s in range(1, 6)]


def test_overlap_skip_makes_nothing_while_the_last_task_is_queued_or_running(
    store: Store, registry: Registry
) -> None:
    _put(store)
    clock = Clock(T0 + timedelta(seconds=10))
    ticker = _ticker(store, registry, clock)
    ticker.tick()
    [first] = _made(store)

    clock.now = T0 + timedelta(seconds=20)
    ticker.tick()  # the first is still queued
    assert len(_made(store)) == 1
    schedule = store.schedule("", "probe")
    assert schedule is not None and schedule.next_run_at == T0 + timedelta(seconds=30)

    claimed = store.claim_many("w", 1, clock.now, clock.now + timedelta(seconds=30))
    assert [t.id for t in claimed] == [first.id]
    clock.now = T0 + timedelta(seconds=30)
    ticker.tick()  # running
    assert len(_made(store)) == 1

    store.cancel(first.id, clock.now, clock.now + timedelta(days=1))  # asked to stop
    store.release(first.id, "w", clock.now, clock.now + timedelta(days=1))  # ends cancelled
    clock.now = T0 + timedelta(seconds=40)
    ticker.tick()
    assert [t.scheduled_for for t in _made(store)] == [
        T0 + timedelta(seconds=10),
        T0 + timedelta(seconds=40),
    ]


def test_overlap_allow_makes_a_task_at_every_fire_time(store: Store, registry: Registry) -> None:
    _put(store, overlap=Overlap.ALLOW)
    clock = Clock()
    ticker = _ticker(store, registry, clock)
    for second in (10, 20, 30):
        clock.now = T0 + timedelta(seconds=second)
        ticker.tick()
    assert len(_made(store)) == 3


def test_catch_up_latest_makes_one_task_for_the_latest_missed_fire_time(
    store: Store, registry: Registry
) -> None:
    _put(store, every=1, overlap=Overlap.ALLOW)
    clock = Clock(T0 + timedelta(seconds=6, milliseconds=500))  # down for 5 s
    ticker = _ticker(store, registry, clock)
    ticker.tick()
    assert [t.scheduled_for for t in _made(store)] == [T0 + timedelta(seconds=6)]
    schedule = store.schedule("", "probe")
    assert schedule is not None and schedule.next_run_at == T0 + timedelta(seconds=7)


def test_catch_up_latest_after_hours_makes_one_late_task(store: Store, registry: Registry) -> None:
    _put(store, every=3600)
    clock = Clock(T0 + timedelta(hours=5, minutes=10))
    _ticker(store, registry, clock).tick()
    assert [t.scheduled_for for t in _made(store)] == [T0 + timedelta(hours=5)]


def test_catch_up_none_makes_no_task_for_a_missed_fire_time(
    store: Store, registry: Registry
) -> None:
    _put(store, every=3600, catch_up=CatchUp.NONE)
    clock = Clock(T0 + timedelta(hours=5, minutes=10))
    ticker = _ticker(store, registry, clock)
    ticker.tick()
    assert _made(store) == []
    schedule = store.schedule("", "probe")
    assert schedule is not None and schedule.next_run_at == T0 + timedelta(hours=6)

    clock.now = T0 + timedelta(hours=6) + MISFIRE_GRACE / 2  # late, but not missed
    ticker.tick()
    assert [t.scheduled_for for t in _made(store)] == [T0 + timedelta(hours=6)]


def test_a_paused_schedule_makes_nothing(store: Store, registry: Registry) -> None:
    _put(store, paused=True)
    assert store.schedule("", "probe").next_run_at is None  # type: ignore[union-attr]
    _ticker(store, registry, Clock(T0 + timedelta(days=1))).tick()
    assert _made(store) == []


def test_a_task_type_that_is_gone_is_skipped_with_a_warning(
    store: Store, registry: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    _put(store, "orphan", task={"type": "gone", "params": {}})
    _put(store)
    clock = Clock(T0 + timedelta(seconds=10))
    ticker = _ticker(store, registry, clock)
    ticker.tick()  # left a while to a process that may have the type
    assert len(_made(store)) == 1  # the other schedule fired all the same
    clock.now = T0 + timedelta(seconds=11) + MISFIRE_GRACE
    with caplog.at_level(logging.WARNING, logger="api.scheduler"):
        ticker.tick()
    assert _made(store, "orphan") == []
    assert "task type 'gone' is not registered" in caplog.text
    orphan = store.schedule("", "orphan")
    assert orphan is not None and orphan.next_run_at == T0 + timedelta(seconds=80)


def test_a_full_queue_skips_the_fire(store: Store, registry: Registry) -> None:
    store.create(NewTask(str(uuid.uuid4()), "add", {"x": 1, "y": 1}, 1, None, 0, T0, T0))
    _put(store)
    clock = Clock(T0 + timedelta(seconds=10))
    ticker = _ticker(store, registry, clock, max_queued=1)
    [schedule] = store.due_schedules(clock.now, 10)
    assert ticker.fire(schedule, clock.now) is FireOutcome.QUEUE_FULL
    assert _made(store) == []
    moved = store.schedule("", "probe")
    assert moved is not None and moved.next_run_at == T0 + timedelta(seconds=20)


def test_a_replace_between_read_and_fire_wins(store: Store, registry: Registry) -> None:
    _put(store)
    clock = Clock(T0 + timedelta(seconds=10))
    [schedule] = store.due_schedules(clock.now, 10)
    _put(store, task={"type": "add", "params": {"x": 5, "y": 5, "delay_seconds": 0}})
    assert _ticker(store, registry, clock).fire(schedule, clock.now) is FireOutcome.TAKEN
    _ticker(store, registry, clock).tick()  # the replaced one, as it is now
    [task] = _made(store)
    assert task.params["x"] == 5


def test_a_trigger_counts_as_the_previous_task_for_overlap(
    store: Store, registry: Registry
) -> None:
    _put(store)
    add = registry.get("add")
    assert add is not None
    now = T0 + timedelta(seconds=5)
    triggered = store.trigger_schedule(
        "", "probe", add.new_task(ADD, "", now, schedule="probe", scheduled_for=now)
    )
    assert triggered is not None and triggered.schedule == "probe"
    clock = Clock(T0 + timedelta(seconds=10))
    _ticker(store, registry, clock).tick()
    assert [t.id for t in _made(store)] == [triggered.id]


def test_tick_waits_until_the_next_fire_time_at_most_a_tick(
    store: Store, registry: Registry
) -> None:
    clock = Clock()
    ticker = _ticker(store, registry, clock)
    assert ticker.tick() == TICK_SECONDS  # no schedule
    _put(store)  # due at T0 + 10 s
    assert ticker.tick() == TICK_SECONDS
    clock.now = T0 + timedelta(seconds=9, milliseconds=750)
    assert ticker.tick() == pytest.approx(0.25)


def test_fires_are_counted_by_schedule_and_reason(store: Store, registry: Registry) -> None:
    counted: list[tuple[str, ...]] = []

    class Counting:
        def schedule_fired(self, owner: str, schedule: str) -> None:
            counted.append(("fired", owner, schedule))

        def schedule_skipped(self, owner: str, schedule: str, reason: str) -> None:
            counted.append(("skipped", owner, schedule, reason))

        def task_created(self, task_type: str) -> None:
            counted.append(("created", task_type))

    _put(store)
    clock = Clock(T0 + timedelta(seconds=10))
    ticker = _ticker(store, registry, clock, metrics=Counting())
    ticker.tick()
    clock.now = T0 + timedelta(seconds=20)
    ticker.tick()
    assert counted == [
        ("fired", "", "probe"),
        ("created", "add"),
        ("skipped", "", "probe", "overlap"),
    ]


def test_a_process_without_the_task_type_leaves_the_fire_to_one_that_has_it(
    store: Store, registry: Registry
) -> None:
    _put(store, overlap=Overlap.ALLOW)
    clock = Clock(T0 + timedelta(seconds=10))
    without = _ticker(store, Registry(), clock)  # a process that imports none of the types
    assert without.tick() == DUE_AGAIN_SECONDS
    assert _made(store) == []
    _ticker(store, registry, clock).tick()  # one that has it, a moment later
    assert [t.scheduled_for for t in _made(store)] == [T0 + timedelta(seconds=10)]

    clock.now = T0 + timedelta(seconds=21) + MISFIRE_GRACE  # nobody had it for a while
    [schedule] = store.due_schedules(clock.now, 10)
    assert without.fire(schedule, clock.now) is FireOutcome.UNKNOWN_TYPE


def test_a_schedule_whose_fire_fails_is_left_for_a_while_and_holds_up_no_other(
    store: Store, registry: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    _put(store, "broken", every=1, cron=None)
    _put(store, "healthy", every=5)
    clock = Clock(T0 + timedelta(seconds=5))

    class Failing(Ticker):
        def fire(self, schedule: Any, now: datetime) -> FireOutcome:
            if schedule.name == "broken":
                raise RuntimeError("this host lacks its time zone")
            return super().fire(schedule, now)

    ticker = Failing(store, registry, clock=clock)
    with caplog.at_level(logging.ERROR, logger="api.scheduler"):
        assert ticker.tick() == DUE_AGAIN_SECONDS
        assert len(_made(store, "healthy")) == 1
        clock.now += timedelta(seconds=1)
        ticker.tick()
        clock.now += timedelta(seconds=1)
        ticker.tick()
    assert caplog.text.count("error firing it") == 1, "not again before ERROR_BACKOFF"
    clock.now += ERROR_BACKOFF
    with caplog.at_level(logging.ERROR, logger="api.scheduler"):
        ticker.tick()
    assert caplog.text.count("error firing it") == 2


def test_old_records_of_fire_times_are_purged(store: Store, registry: Registry) -> None:
    _put(store, every=1, overlap=Overlap.ALLOW)
    clock = Clock()
    ticker = _ticker(store, registry, clock)
    for second in range(1, 4):
        clock.now = T0 + timedelta(seconds=second)
        ticker.tick()
    assert store.purge_fires(T0 + timedelta(seconds=2, milliseconds=1), 10) == 2
    assert store.purge_fires(T0 + timedelta(seconds=2, milliseconds=1), 10) == 0
    assert store.purge_fires(T0 + timedelta(days=1), 10) == 1
