"""Queues across real processes: a limit, a pause and a worker's queues hold for them all.

Each test runs ``taskapi worker`` processes on each store and reads what they did from the
store: when each task started and ended, and how many of a queue ran at once.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from api.models import NewTask, Status, Task
from api.store import Store, TaskFilter, open_store
from tests.processes import running_workers, wait_until

#: How far two tasks' times may disagree: a claim reads its clock before it waits its turn
#: (on a loaded machine, for tens of milliseconds); the tasks of these tests sleep 250 ms.
CLOCK_SLACK = timedelta(milliseconds=150)


def _submit(store: Store, queue: str, count: int, seconds: float = 0.0) -> list[str]:
    now = datetime.now(UTC)
    return [
        store.create(
            NewTask(
                id=str(uuid.uuid4()),
                type="sleep",
                params={"seconds": seconds},
                max_attempts=1,
                timeout_seconds=None,
                priority=0,
                created_at=now,
                run_after=now,
                queue=queue,
            )
        ).id
        for _ in range(count)
    ]


def _tasks(store: Store, queue: str) -> list[Task]:
    tasks, _ = store.list(TaskFilter(queue=queue), offset=0, limit=100, now=datetime.now(UTC))
    return tasks


def _ended(store: Store, ids: list[str]) -> bool:
    now = datetime.now(UTC)
    return all((t := store.get(i, now)) is not None and t.is_terminal for i in ids)


def _most_at_once(tasks: list[Task]) -> int:
    """The most of ``tasks`` that ran at once, by their start and end times."""
    moments = []
    for task in tasks:
        assert task.started_at is not None and task.finished_at is not None
        moments.append((task.started_at + CLOCK_SLACK, 1))
        moments.append((task.finished_at, -1))
    running = most = 0
    for _, step in sorted(moments):
        running += step
        most = max(most, running)
    return most


def test_a_limit_of_2_holds_for_3_worker_processes_of_4_threads(
    tmp_path: Path, database_url: str
) -> None:
    store = open_store(database_url)
    try:
        store.update_queue("emails", {"concurrency": 2})
        emails = _submit(store, "emails", 16, seconds=0.25)
        others = _submit(store, "default", 8, seconds=0.25)
        seen: list[int] = []
        done = threading.Event()

        def watch() -> None:  # the store's own count of the queue's running tasks
            while not done.is_set():
                state = store.queue("emails", datetime.now(UTC))
                assert state is not None
                seen.append(state.counts[Status.RUNNING])
                time.sleep(0.01)

        watcher = threading.Thread(target=watch)
        with running_workers(tmp_path, database_url, 3, 4):
            watcher.start()
            try:
                wait_until(lambda: _ended(store, emails + others))
            finally:
                done.set()
                watcher.join()
        ran = _tasks(store, "emails")
        assert {t.status for t in ran} == {Status.SUCCEEDED}
        assert max(seen) == 2, "never more than 2 running, and 2 reached"
        assert _most_at_once(ran) <= 2, "by their start and end times too"
        assert _most_at_once(_tasks(store, "default")) > 2, "other queues are not limited"
    finally:
        store.close()


def test_a_pause_holds_in_every_process_and_across_a_restart(
    tmp_path: Path, database_url: str
) -> None:
    store = open_store(database_url)
    try:
        backlog = _submit(store, "reports", 30, seconds=0.2)
        with running_workers(tmp_path, database_url, 2, 2):
            wait_until(lambda: any(t.status is not Status.QUEUED for t in _tasks(store, "reports")))
            store.update_queue("reports", {"paused": True})
            paused_at = datetime.now(UTC)
            time.sleep(1.5)
            started = [t for t in _tasks(store, "reports") if t.started_at is not None]
            assert all(t.started_at <= paused_at + CLOCK_SLACK for t in started)  # type: ignore[operator]
            assert all(t.status is not Status.RUNNING for t in started), "running ones finished"
            left = [t.id for t in _tasks(store, "reports") if t.status is Status.QUEUED]
            assert left, "the pause came before the backlog was done"
        with running_workers(tmp_path, database_url, 2, 2):
            probe = _submit(store, "default", 1)
            wait_until(lambda: _ended(store, probe))  # the new workers run
            time.sleep(0.5)
            now = datetime.now(UTC)
            assert all(store.get(i, now).status is Status.QUEUED for i in left)  # type: ignore[union-attr]
            store.update_queue("reports", {"paused": False})
            wait_until(lambda: _ended(store, backlog), timeout=30)
    finally:
        store.close()


def test_a_worker_of_one_queue_never_runs_another_queues_tasks(
    tmp_path: Path, database_url: str
) -> None:
    store = open_store(database_url)
    try:
        emails = _submit(store, "emails", 6)
        others = _submit(store, "reports", 3) + _submit(store, "default", 3)
        with running_workers(tmp_path, database_url, 2, 2, TASKS_QUEUES="emails"):
            wait_until(lambda: _ended(store, emails))
            time.sleep(0.5)
        now = datetime.now(UTC)
        assert all(store.get(i, now).status is Status.QUEUED for i in others)  # type: ignore[union-attr]
        assert all(store.get(i, now).status is Status.SUCCEEDED for i in emails)  # type: ignore[union-attr]
    finally:
        store.close()
