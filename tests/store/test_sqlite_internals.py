"""The SQLite store's own machinery: its schema and migrations, the plan of its claim, its
per-thread connections and the write turn."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from api.models import (
    IdempotencyKey,
    Status,
)
from api.store import StoreError
from api.store.sqlite import MIGRATIONS, QUERIES, SQLiteStore
from tests.store.tasks import LATER, T0, new_task


def test_schema_is_versioned_and_data_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "versioned.sqlite3"
    first = SQLiteStore(path)
    task = first.create(new_task())
    first.close()
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    second = SQLiteStore(path)
    assert second.get(task.id, T0) is not None
    second.close()


def test_a_newer_schema_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "future.sqlite3"
    SQLiteStore(path).close()
    with sqlite3.connect(path) as raw:
        raw.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    with pytest.raises(StoreError, match="newer than this taskapi"):
        SQLiteStore(path)


def _plan(query: str, args: dict[str, object], tmp_path: Path) -> list[str]:
    store = SQLiteStore(tmp_path / "plan.sqlite3")
    try:
        return [row[3] for row in store._conn().execute("EXPLAIN QUERY PLAN " + query, args)]
    finally:
        store.close()


def test_a_claim_finds_its_queues_by_skipping_through_an_index(tmp_path: Path) -> None:
    plan = _plan(QUERIES["claim_queues"], {"limit": 4, "queues": None, "now": 0}, tmp_path)
    # The first queue, then each next one, by the index; each one's running tasks from the
    # kept counts; never a scan of the tasks.
    assert "SEARCH tasks USING INDEX tasks_queued_at (queue>?)" in plan, plan
    assert "SEARCH queue_counts USING PRIMARY KEY (status=? AND queue=?)" in plan, plan
    assert not any(step.startswith("SCAN tasks") for step in plan), plan


def test_a_claim_of_one_queue_reads_the_ready_index_in_order(tmp_path: Path) -> None:
    args = {"now": 0, "worker_id": "w", "lease_until": 0, "queue": "q", "room": 4}
    plan = _plan(QUERIES["claim"], args, tmp_path)
    # The task by its key, found in the ready index read in claim order (no sort).
    assert plan[0] == "SEARCH tasks USING INTEGER PRIMARY KEY (rowid=?)", plan
    assert "SEARCH tasks USING INDEX tasks_ready (queue=?)" in plan, plan
    assert not any("TEMP B-TREE" in step for step in plan), plan


def test_an_older_schema_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "v1.sqlite3"
    with sqlite3.connect(path) as raw:
        raw.executescript(MIGRATIONS[0])
        raw.execute(
            "INSERT INTO tasks (id, type, status, params, max_attempts, created_at, run_after) "
            "VALUES ('00000000-0000-4000-8000-000000000001', 'add', 'queued', '{}', 1, 0, 0)"
        )
        raw.execute("PRAGMA user_version=1")
    store = SQLiteStore(path)
    assert store.get("00000000-0000-4000-8000-000000000001", T0) is not None
    assert store.count_by_status(T0)[Status.QUEUED] == 1, "the counts start from the rows there"
    store.create(new_task(), idempotency=IdempotencyKey("o", "k", "f", LATER, T0))
    assert store.count_by_status(T0)[Status.QUEUED] == 2
    store.close()
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)


def test_a_thread_can_let_go_of_its_connection(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "threads.sqlite3")

    def one_thread() -> None:
        store.ping()
        store.detach_thread()

    for _ in range(20):
        t = threading.Thread(target=one_thread)
        t.start()
        t.join()
    assert len(store._connections) <= 1


# -- the SQLite write turn -------------------------------------------------------------------


def test_a_store_in_a_missing_directory_is_a_plain_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="Cannot open the SQLite store at"):
        SQLiteStore(tmp_path / "no" / "such" / "tasks.sqlite3")


def test_writers_racing_on_a_closed_store_all_get_their_turn(tmp_path: Path) -> None:
    path = tmp_path / "turns.sqlite3"
    for _ in range(5):
        store = SQLiteStore(path)
        store.close()  # as at shutdown, while late task threads still write
        start = threading.Barrier(8)
        done: list[int] = []

        def write(
            n: int,
            store: SQLiteStore = store,
            start: threading.Barrier = start,
            done: list[int] = done,
        ) -> None:
            start.wait()
            store.settle_key("o", f"k{n}")
            done.append(n)

        threads = [threading.Thread(target=write, args=(n,), daemon=True) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert len(done) == 8, "writers hung waiting for their turn"
        store.close()
    other = SQLiteStore(path)  # and nothing is left holding the turn
    other.create(new_task())
    other.close()


def test_a_child_forked_by_a_dead_writer_does_not_keep_the_turn(tmp_path: Path) -> None:
    path = tmp_path / "forked.sqlite3"
    SQLiteStore(path).close()
    holder = f"""
import os, sys, time
from api.store.sqlite import SQLiteStore
store = SQLiteStore({str(path)!r})
with store._turn.held():
    if os.fork() == 0:  # a task that starts a helper process, while a write is under way
        time.sleep(30)
        os._exit(0)
    print("holding", flush=True)
    time.sleep(30)
"""
    process = subprocess.Popen(
        [sys.executable, "-c", holder],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parent.parent,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None and process.stdout.readline() == b"holding\n"
        process.kill()  # the writer dies in the middle of its turn; its child lives on
        process.wait()
        finished = threading.Event()

        def write() -> None:
            store = SQLiteStore(path)  # its migration check writes too
            store.create(new_task())
            store.close()
            finished.set()

        threading.Thread(target=write, daemon=True).start()
        assert finished.wait(5), "the turn stayed with the dead writer's child"
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        if process.stdout is not None:
            process.stdout.close()
