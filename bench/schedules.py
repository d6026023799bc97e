"""What schedules cost the worker processes: a tick with nothing due, and fires per second.

    python -m bench.schedules [--store sqlite|postgres] [--schedules 1000] [--tickers 1]

``--schedules`` schedules (every 60 s, `add`, overlap allow) are written into a fresh store, all
due at once; then ``--tickers`` tickers (threads, each with its own ``Ticker`` as a worker
process has) tick until every one has fired once: fires per second, and how many fire attempts
found their fire time taken by another ticker. Then the cost of an idle tick (nothing due: the
two reads every worker process makes about once a second), in microseconds.

PostgreSQL runs in a fresh schema ``bench_schedules_<pid>`` of TASKS_BENCH_DATABASE_URL
(default ``postgresql://127.0.0.1:5432/test``), dropped after.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from api.builtin_tasks import register
from api.models import FireOutcome, Overlap, Schedule, ScheduleSpec
from api.registry import Registry
from api.scheduler.ticker import Ticker
from api.store import Store, open_store

IDLE_ROUNDS = 2000
TASK = {"type": "add", "params": {"x": 1, "y": 2, "delay_seconds": 0}}


@contextmanager
def fresh_store(kind: str) -> Iterator[Store]:
    """An empty store of ``kind``, gone afterwards."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as work:
            store = open_store(f"sqlite:///{Path(work) / 'schedules.db'}")
            try:
                yield store
            finally:
                store.close()
        return
    import psycopg

    base = os.environ.get("TASKS_BENCH_DATABASE_URL", "postgresql://127.0.0.1:5432/test")
    schema = f"bench_schedules_{os.getpid()}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    store = open_store(f"{base}?options=-csearch_path%3D{schema}")
    try:
        yield store
    finally:
        store.close()
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def fire_all(store: Store, count: int, tickers: int) -> None:
    registry = Registry()
    register(registry)
    now = datetime.now(UTC)
    spec = ScheduleSpec(None, 60, "UTC", TASK, overlap=Overlap.ALLOW)
    for n in range(count):
        store.put_schedule("", f"s{n}", spec, now, now - timedelta(seconds=1))
    outcomes: Counter[FireOutcome] = Counter()
    lock = threading.Lock()

    class Counting(Ticker):
        def fire(self, schedule: Schedule, now: datetime) -> FireOutcome:
            outcome = super().fire(schedule, now)
            with lock:
                outcomes[outcome] += 1
            return outcome

    def tick() -> None:
        ticker = Counting(store, registry)
        while store.due_schedules(datetime.now(UTC), 1):
            ticker.tick()

    threads = [threading.Thread(target=tick) for _ in range(tickers)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    made = outcomes[FireOutcome.MADE]
    print(
        f"{count} schedules due, {tickers} ticker(s): {made} tasks made in {seconds:.2f} s, "
        f"{made / seconds:,.0f} fires/s; {outcomes[FireOutcome.TAKEN]} attempts found "
        "their fire time taken"
    )
    assert made == count, outcomes

    idle = Ticker(store, registry)
    idle.tick()
    started = time.perf_counter()
    for _ in range(IDLE_ROUNDS):
        idle.tick()
    micros = (time.perf_counter() - started) / IDLE_ROUNDS * 1e6
    print(f"an idle tick (nothing due, {count} schedules): {micros:.0f} us")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--schedules", type=int, default=1000)
    parser.add_argument("--tickers", type=int, default=1)
    args = parser.parse_args()
    with fresh_store(args.store) as store:
        fire_all(store, args.schedules, args.tickers)


if __name__ == "__main__":
    main()
