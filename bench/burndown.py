"""Burndown: a backlog of ready tasks, then the workers started; tasks per second.

    python -m bench.burndown [--tasks 50000] [--store sqlite|postgres] [--workers-processes 1]
                             [--concurrency N]

N ready no-op ``add`` tasks are written straight into the store in bulk (the store's own schema,
migrated as the service would), then ``taskapi worker`` processes are started as a user runs
them. The figure is N over the time from the first task's ``started_at`` to the last one's
``finished_at``, read back from the store: the method of ``river bench`` and of Oban's "one
million jobs a minute"; the workers' start-up is not counted. PostgreSQL works in a schema of
its own (``bench_burndown_<pid>``), made afresh each run and dropped after. With
``--concurrency N`` the tasks' queue (``default``) is given that limit before the workers
start: the cost of a global limit is this figure with a limit equal to the workers over the
figure without.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.servers import Running, script, sizing, spawn

BATCH = 10_000
DEFAULT_PG_URL = "postgresql://127.0.0.1:5432/test"
#: A schema of this run's own: two runs at once (two checkouts, CI beside a bench) never drop
#: each other's tables.
PG_SCHEMA = f"bench_burndown_{os.getpid()}"
TIMEOUT_SECONDS = 600
POLL_SECONDS = 0.1
PARAMS = json.dumps({"x": 1, "y": 2, "delay_seconds": 0})
TERMINAL = "('succeeded', 'failed', 'cancelled')"


@dataclass
class Burndown:
    store: str
    tasks: int
    failed: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.tasks / self.seconds if self.seconds > 0 else float("nan")


def fill_sqlite(database: Path, tasks: int) -> None:
    """`tasks` ready `add` tasks in a new SQLite store."""
    from api.store.sqlite import SQLiteStore

    SQLiteStore(database).close()
    now = time.time()
    with sqlite3.connect(database, isolation_level=None) as conn:
        for done in range(0, tasks, BATCH):
            rows = [(str(uuid.uuid4()), PARAMS, now) for _ in range(min(BATCH, tasks - done))]
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                """INSERT INTO tasks (id, type, status, params, max_attempts, created_at,
                       run_after) VALUES (?, 'add', 'queued', ?, 1, ?3, ?3)""",
                rows,
            )
            conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def pg_url(base: str, schema: str = PG_SCHEMA) -> str:
    """``base`` with libpq's options choosing ``schema`` (api/store/postgres reads it)."""
    return f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"


def fill_postgres(base_url: str, tasks: int) -> str:
    """`tasks` ready `add` tasks in a fresh schema; the URL that selects it."""
    import psycopg

    from api.store.postgres import PostgresStore

    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {PG_SCHEMA} CASCADE")
        conn.execute(f"CREATE SCHEMA {PG_SCHEMA}")
    url = pg_url(base_url)
    PostgresStore(url).close()
    now = datetime.now(UTC)
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy(
            "COPY tasks (id, type, status, params, max_attempts, created_at, run_after) FROM STDIN"
        ) as copy:
            for _ in range(tasks):
                copy.write_row((str(uuid.uuid4()), "add", "queued", PARAMS, 1, now, now))
        conn.commit()
        cur.execute("ANALYZE tasks")
    return url


def drop_postgres(base_url: str) -> None:
    import psycopg

    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {PG_SCHEMA} CASCADE")


class Reader:
    """Counts and times of one store, as the bench reads them back."""

    def __init__(self, store_url: str) -> None:
        self.url = store_url
        if store_url.startswith("sqlite:///"):
            self._sqlite = sqlite3.connect(store_url.removeprefix("sqlite:///"))
            self._sqlite.execute("PRAGMA busy_timeout = 5000")
        else:
            import psycopg

            self._pg = psycopg.connect(store_url, autocommit=True)

    def one(self, sql: str) -> tuple[Any, ...]:
        """The first row of a constant statement (no parameters)."""
        if self.url.startswith("sqlite:///"):
            return tuple(self._sqlite.execute(sql).fetchone())
        row = self._pg.execute(sql.encode()).fetchone()
        return tuple(row) if row else ()

    def ended(self) -> int:
        return int(self.one(f"SELECT COUNT(*) FROM tasks WHERE status IN {TERMINAL}")[0])

    def failed(self) -> int:
        return int(self.one("SELECT COUNT(*) FROM tasks WHERE status <> 'succeeded'")[0])

    def span_seconds(self) -> float:
        """From the first start to the last end (SQLite keeps epoch seconds, PostgreSQL
        timestamps)."""
        first, last = self.one("SELECT MIN(started_at), MAX(finished_at) FROM tasks")
        if isinstance(first, datetime):
            return float((last - first).total_seconds())
        return float(last) - float(first)

    def close(self) -> None:
        (self._sqlite if self.url.startswith("sqlite:///") else self._pg).close()


def limit_queue(store_url: str, concurrency: int | None) -> None:
    """Give the queue of the backlog (``default``) a concurrency, as an operator would."""
    if concurrency is None:
        return
    from api.store import open_store

    store = open_store(store_url)
    try:
        store.update_queue("default", {"concurrency": concurrency})
    finally:
        store.close()


def run_workers(
    store_url: str,
    tasks: int,
    *,
    processes: int,
    workers: int | None,
    log: Path,
    concurrency: int | None = None,
) -> tuple[int, float]:
    """Start `processes` ``taskapi worker``s; once `tasks` ended: (not succeeded, seconds)."""
    limit_queue(store_url, concurrency)
    env = {"TASKS_DATABASE_URL": store_url, "TASKS_LOG_LEVEL": "WARNING"}
    command = [script("taskapi"), "worker", *sizing(workers=workers)]
    first, *others = (spawn(command, env, log) for _ in range(processes))
    service = Running("burndown", first, 0, others)
    reader = Reader(store_url)
    try:
        deadline = time.monotonic() + TIMEOUT_SECONDS
        while reader.ended() < tasks:
            for process in [service.process, *service.companions]:
                if process.poll() is not None:
                    raise RuntimeError(f"a worker exited with {process.returncode}; see {log}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"burndown: not done after {TIMEOUT_SECONDS} s; see {log}")
            time.sleep(POLL_SECONDS)
        return reader.failed(), reader.span_seconds()
    finally:
        reader.close()
        service.stop()


def burndown_sqlite(
    database: Path,
    tasks: int,
    *,
    processes: int = 1,
    workers: int | None = None,
    log: Path,
    concurrency: int | None = None,
) -> Burndown:
    fill_sqlite(database, tasks)
    failed, seconds = run_workers(
        f"sqlite:///{database}",
        tasks,
        processes=processes,
        workers=workers,
        log=log,
        concurrency=concurrency,
    )
    return Burndown("SQLite", tasks, failed, seconds)


def burndown_postgres(
    base_url: str,
    tasks: int,
    *,
    processes: int = 1,
    workers: int | None = None,
    log: Path,
    concurrency: int | None = None,
) -> Burndown:
    url = fill_postgres(base_url, tasks)
    try:
        failed, seconds = run_workers(
            url, tasks, processes=processes, workers=workers, log=log, concurrency=concurrency
        )
    finally:
        drop_postgres(base_url)
    return Burndown("PostgreSQL", tasks, failed, seconds)


def postgres_answers(base_url: str) -> str | None:
    """None when PostgreSQL at ``base_url`` answers; else why not, in one line."""
    try:
        import psycopg

        with psycopg.connect(base_url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=50_000)
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL)
    parser.add_argument("--worker-processes", type=int, default=1)
    parser.add_argument("--workers", type=int, default=None, help="threads per worker process")
    parser.add_argument(
        "--concurrency", type=int, default=None, help="a limit on the queue of the backlog"
    )
    args = parser.parse_args()
    log = Path(f"/tmp/taskapi-burndown-{uuid.uuid4().hex[:6]}.log")
    if args.store == "sqlite":
        database = Path(f"/tmp/taskapi-burndown-{uuid.uuid4().hex[:6]}.db")
        result = burndown_sqlite(
            database,
            args.tasks,
            processes=args.worker_processes,
            workers=args.workers,
            log=log,
            concurrency=args.concurrency,
        )
    else:
        result = burndown_postgres(
            args.pg_url,
            args.tasks,
            processes=args.worker_processes,
            workers=args.workers,
            log=log,
            concurrency=args.concurrency,
        )
    print(
        f"burndown {result.store}: {result.tasks} tasks in {result.seconds:.2f} s, "
        f"{result.per_second:.0f} tasks/s ({result.failed} not succeeded); log {log}",
        file=sys.stdout,
    )


if __name__ == "__main__":
    main()
