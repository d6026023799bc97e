"""Burn-down of one pool in this process, for profiling: N ready no-op `add` tasks, run to the last.

    python -m bench.pool_burndown [--store sqlite|postgres] [--tasks 20000] [--threads 4]
                             [--url postgresql://127.0.0.1:5432/test] [--log-level INFO]
                             [--profile out.prof]

The tasks are inserted in bulk (as bench/fill.py does), then the clock runs from
``WorkerPool.start()`` until the store counts every task ended. The pool is the app's, made by
``create_app`` with its metrics, and logs go through the service's handler at ``--log-level``
to /dev/null, as a worker process would write them. SQLite works in a temporary file;
PostgreSQL in a schema of its own, dropped at the end.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import logging
import os
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from api import create_app
from api.logs import handler, lean_records
from api.models import Status
from api.runtime import EXTENSION_KEY, Runtime

BATCH = 10_000
INSERT = (
    "INSERT INTO tasks (id, type, status, params, max_attempts, priority, created_at, run_after)"
    " VALUES ({p}, 'add', 'queued', {p}, 1, 0, {p}, {p})"
)


def _rows(n: int, now: Any) -> Iterator[tuple[Any, ...]]:
    for i in range(n):
        params = json.dumps({"x": i, "y": 1, "delay_seconds": 0}, separators=(",", ":"))
        yield (str(uuid.uuid4()), params, now, now)


def fill_sqlite(path: Path, n: int) -> None:
    with sqlite3.connect(path, isolation_level=None) as conn:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(INSERT.format(p="?"), _rows(n, time.time()))
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def fill_postgres(url: str, n: int) -> None:
    import psycopg

    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.executemany(INSERT.format(p="%s"), list(_rows(n, datetime.now(UTC))))
        cur.execute("ANALYZE tasks")


@contextmanager
def database(kind: str, base: str) -> Iterator[str]:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{tmp}/tasks.sqlite3"
        return
    import psycopg

    schema = f"burn_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def burn(url: str, tasks: int, threads: int) -> float:
    app = create_app(
        {"TASKS_DATABASE_URL": url, "TASKS_WORKERS": threads, "TASKS_POLL_INTERVAL": 0.5}
    )
    runtime: Runtime = app.extensions[EXTENSION_KEY]
    if url.startswith("sqlite"):
        fill_sqlite(Path(url.removeprefix("sqlite:///")), tasks)
    else:
        fill_postgres(url, tasks)
    store = runtime.store
    started = time.perf_counter()
    runtime.pool.start()
    try:
        while True:
            counts = store.count_by_status(datetime.now(UTC))
            if counts[Status.QUEUED] == 0 and counts[Status.RUNNING] == 0:
                break
            time.sleep(0.005)
        seconds = time.perf_counter() - started
    finally:
        runtime.pool.stop(5)
    done = store.count_by_status(datetime.now(UTC))
    assert done[Status.SUCCEEDED] == tasks, done
    store.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument(
        "--url",
        default=os.environ.get("TASKS_TEST_DATABASE_URL", "postgresql://127.0.0.1:5432/test"),
    )
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--profile", help="write a cProfile of every thread (threading.setprofile) here"
    )
    args = parser.parse_args()
    with open(os.devnull, "w") as devnull:
        made = handler("text")
        assert isinstance(made, logging.StreamHandler)
        made.setStream(devnull)
        logging.basicConfig(level=args.log_level.upper(), handlers=[made])
        lean_records()
        if args.profile:
            _profile_all_threads(args.profile)
        for _ in range(args.repeat):
            with database(args.store, args.url) as url:
                seconds = burn(url, args.tasks, args.threads)
            print(
                f"{args.store}: {args.tasks} tasks, 1 process x {args.threads} threads, "
                f"log {args.log_level}: {seconds:.2f} s, {args.tasks / seconds:,.0f} tasks/s",
                flush=True,
            )
        logging.shutdown()


def _profile_all_threads(path: str) -> None:
    """Profile every thread started from now on; their stats merged into ``path`` at exit."""
    import atexit
    import pstats
    import threading

    profiles: list[cProfile.Profile] = []
    lock = threading.Lock()
    real_run = threading.Thread.run

    def run(self: threading.Thread) -> None:
        profiler = cProfile.Profile()
        with lock:
            profiles.append(profiler)
        profiler.enable()
        try:
            real_run(self)
        finally:
            profiler.disable()

    threading.Thread.run = run  # type: ignore[method-assign]

    def dump() -> None:
        with lock:
            done = [p for p in profiles if p.getstats()]
        if done:
            stats = pstats.Stats(done[0])
            for more in done[1:]:
                stats.add(more)
            stats.dump_stats(path)

    atexit.register(dump)


if __name__ == "__main__":
    main()
