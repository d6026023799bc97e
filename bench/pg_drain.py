"""PostgreSQL numbers: drain throughput of worker processes, claim latency, submit-to-start.

    python -m bench.pg_drain [--url postgresql://127.0.0.1:5432/test] [--tasks 5000]
                             [--processes 4] [--threads 4]

Works in a schema of its own, dropped at the end. Tasks are `add` with no simulated work, so the
figures are the queue's own cost. One run on a shared machine: compare figures of one run.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from api.models import NewTask
from api.store.postgres import PostgresStore

ROOT = Path(__file__).resolve().parent.parent


def new_task(n: int) -> NewTask:
    now = datetime.now(UTC)
    return NewTask(
        id=str(uuid.uuid4()),
        type="add",
        params={"x": n, "y": 1, "delay_seconds": 0},
        max_attempts=1,
        timeout_seconds=None,
        priority=0,
        created_at=now,
        run_after=now,
    )


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


DRAIN_TIMEOUT_SECONDS = 300


def count_done(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT COUNT(*) FROM tasks WHERE status IN ('succeeded', 'failed', 'cancelled')"
        ).fetchone()
    return int(row[0]) if row else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--url",
        default=os.environ.get("TASKS_TEST_DATABASE_URL", "postgresql://127.0.0.1:5432/test"),
    )
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    url = f"{args.url}{'&' if '?' in args.url else '?'}options=-csearch_path%3D{schema}"
    workers: list[subprocess.Popen[bytes]] = []
    try:
        store = PostgresStore(url)

        # Claim latency: one claim statement, with a queue of `tasks` waiting.
        for n in range(args.tasks):
            store.create(new_task(n))
        claims = []
        for _ in range(500):
            started = time.perf_counter()
            now = datetime.now(UTC)
            store.claim_many("bench", 1, now, now + timedelta(seconds=30))
            claims.append((time.perf_counter() - started) * 1000)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DELETE FROM tasks")

        # Drain: `tasks` queued, then `processes` worker processes started; until all done.
        for n in range(args.tasks):
            store.create(new_task(n))
        env = {
            **os.environ,
            "TASKS_DATABASE_URL": url,
            "TASKS_WORKERS": str(args.threads),
            "TASKS_LOG_LEVEL": "WARNING",
        }
        started = time.perf_counter()
        workers = [
            subprocess.Popen(
                [sys.executable, "-m", "api.cli", "worker"],
                env=env,
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                start_new_session=True,
            )
            for _ in range(args.processes)
        ]
        deadline = time.monotonic() + DRAIN_TIMEOUT_SECONDS
        while count_done(url) < args.tasks:
            if time.monotonic() > deadline:
                raise SystemExit(f"not drained after {DRAIN_TIMEOUT_SECONDS} s")
            time.sleep(0.05)
        drain_seconds = time.perf_counter() - started

        # Submit to start on idle workers of other processes (woken by NOTIFY).
        latencies = []
        for n in range(100):
            task = store.create(new_task(n))
            while (got := store.get(task.id, datetime.now(UTC))) is None or got.started_at is None:
                time.sleep(0.0005)
            latencies.append((got.started_at - task.created_at).total_seconds() * 1000)
            time.sleep(0.02)
        store.close()
    finally:
        for worker in workers:
            os.killpg(worker.pid, signal.SIGTERM)
        for worker in workers:
            worker.wait(30)
        with psycopg.connect(args.url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")

    print(
        f"PostgreSQL at {args.url}, {args.tasks} tasks, "
        f"{args.processes} worker processes x {args.threads} threads"
    )
    print(
        f"  drain (includes process start-up): {args.tasks / drain_seconds:8.0f} tasks/s "
        f"({drain_seconds:.2f} s)"
    )
    print(
        f"  claim statement:   p50 {statistics.median(claims):6.2f} ms   "
        f"p99 {percentile(claims, 99):6.2f} ms"
    )
    print(
        f"  submit to start:   p50 {statistics.median(latencies):6.2f} ms   "
        f"p99 {percentile(latencies, 99):6.2f} ms  (idle workers in other processes)"
    )


if __name__ == "__main__":
    main()
