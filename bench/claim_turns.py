"""What a claim's statement costs when several queues have ready tasks (SQLite).

    python -m bench.claim_turns [--tasks 20000] [--queues 1,2,8] [--limit 32]

N ready tasks spread over 8 queues are written into a fresh SQLite store; then the part of the
claim that picks the tasks (its SELECT, the same text the store runs) is timed alone, over the
first 1, 2 and 8 queues: microseconds per claim of ``--limit``. The queues take turns among
tasks of one priority, so each queue's next tasks up to its room are read and ordered.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from pathlib import Path

from api.store.sqlite import QUERIES
from api.store.sqlite.claims import second_step
from bench.burndown import fill_sqlite

ROUNDS = 2000
QUEUES = 8


def picking(statement: str) -> str:
    """The SELECT of a claim statement that picks its tasks (inside ``seq IN (...)``)."""
    start = statement.index("WHERE seq IN (") + len("WHERE seq IN (")
    return statement[start : statement.rindex(")\n    AND +status")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--queues", default="1,2,8", help="numbers of queues to claim from")
    parser.add_argument("--limit", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        database = Path(work) / "turns.db"
        fill_sqlite(database, args.tasks)
        conn = sqlite3.connect(database)
        conn.execute(f"UPDATE tasks SET queue = 'q' || (seq % {QUEUES})")
        conn.commit()
        claim = {"now": time.time() + 60, "worker_id": "w", "lease_until": 0, "limit": args.limit}
        for count in (int(n) for n in args.queues.split(",")):
            rooms = [(f"q{n}", args.limit) for n in range(min(count, QUEUES))]
            statement, values = second_step(QUERIES, rooms, claim)
            select = picking(statement)
            for _ in range(50):
                conn.execute(select, values).fetchall()
            started = time.perf_counter()
            for _ in range(ROUNDS):
                conn.execute(select, values).fetchall()
            micros = (time.perf_counter() - started) / ROUNDS * 1e6
            print(f"{count} queue(s): {micros:.1f} us per claim of {args.limit}")
        conn.close()


if __name__ == "__main__":
    main()
