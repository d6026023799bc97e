"""Schedules across real processes: every worker process ticks, each fire time makes one task.

Each test runs ``taskapi worker`` processes on each store (no leader among them) and reads
what they made from the store.
"""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from api.models import Overlap, ScheduleSpec, Status, Task
from api.scheduler.cron import Timing
from api.store import Store, TaskFilter, open_store
from tests.processes import running_workers, wait_until

SECOND = timedelta(seconds=1)


def _put(store: Store, name: str, task: dict[str, Any], **options: Any) -> None:
    spec = ScheduleSpec(cron=None, every_seconds=1, timezone="UTC", task=task, **options)
    now = datetime.now(UTC)
    store.put_schedule("", name, spec, Timing.of(spec).next_after(now), now)


def _made(store: Store, name: str) -> list[Task]:
    tasks, _ = store.list(TaskFilter(schedule=name), offset=0, limit=100, now=datetime.now(UTC))
    return sorted(tasks, key=lambda t: t.scheduled_for or datetime.min.replace(tzinfo=UTC))


def _each_fire_time_once(made: list[Task]) -> None:
    """No fire time made two tasks, and each made one, unless the tickers of every process
    were held up past the next (then one task stands for both, by design: catch-up)."""
    fired = [t.scheduled_for for t in made]
    assert len(fired) == len(set(fired)), "no fire time made two tasks"
    for previous, task in itertools.pairwise(made):
        assert previous.scheduled_for is not None and task.scheduled_for is not None
        missed = task.scheduled_for - previous.scheduled_for - SECOND
        if missed:  # the fire times in between made no task: the next one had come by then
            assert task.created_at >= previous.scheduled_for + 2 * SECOND, (previous, task)


ADD = {"type": "add", "params": {"x": 1, "y": 2, "delay_seconds": 0}}


def test_three_processes_ticking_make_one_task_per_fire_time(
    tmp_path: Path, database_url: str
) -> None:
    store = open_store(database_url)
    try:
        _put(store, "every-second", ADD, overlap=Overlap.ALLOW)
        with running_workers(tmp_path, database_url, 3, 2):
            wait_until(lambda: len(_made(store, "every-second")) >= 10)
        made = _made(store, "every-second")
        _each_fire_time_once(made)
        assert all(t.status is Status.SUCCEEDED for t in made[:-3])
    finally:
        store.close()


def test_after_a_stop_of_5_s_one_task_stands_for_the_missed_fire_times(
    tmp_path: Path, database_url: str
) -> None:
    store = open_store(database_url)
    try:
        _put(store, "catch-up", ADD, overlap=Overlap.ALLOW)
        with running_workers(tmp_path, database_url, 1, 2):
            wait_until(lambda: len(_made(store, "catch-up")) >= 2)
        last = _made(store, "catch-up")[-1].scheduled_for
        assert last is not None
        time.sleep(5)
        restarted = datetime.now(UTC)
        with running_workers(tmp_path, database_url, 1, 2):
            wait_until(
                lambda: len([t for t in _made(store, "catch-up") if t.created_at > restarted]) >= 3
            )
        after = [t for t in _made(store, "catch-up") if t.scheduled_for > last]  # type: ignore[operator]
        catch_up = after[0]
        assert catch_up.scheduled_for is not None
        # The fire times of the stop (at least 4 of them) made no task but this one...
        assert catch_up.scheduled_for - last >= 5 * SECOND
        assert catch_up.created_at > restarted, "made by the restarted process"
        # ...which stands for the latest of them: the next had not come when it was made.
        assert catch_up.created_at < catch_up.scheduled_for + SECOND
        _each_fire_time_once(after)
    finally:
        store.close()


def test_overlap_skip_never_has_two_tasks_of_a_schedule_at_once(
    tmp_path: Path, database_url: str
) -> None:
    store = open_store(database_url)
    try:
        _put(store, "slow", {"type": "sleep", "params": {"seconds": 2.5}})
        with running_workers(tmp_path, database_url, 2, 2):
            wait_until(lambda: sum(t.is_terminal for t in _made(store, "slow")) >= 2)
        made = [t for t in _made(store, "slow") if t.is_terminal]
        assert [t.status for t in made] == [Status.SUCCEEDED] * len(made)
        for previous, task in itertools.pairwise(made):
            assert previous.finished_at is not None and task.started_at is not None
            # Made only once the previous one ended (with 4 free workers, it starts at once).
            assert task.started_at >= previous.finished_at
    finally:
        store.close()
