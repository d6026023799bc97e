"""Fill a SQLite store with finished tasks, fast, to measure a service with a full store."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from pathlib import Path

from api.store.sqlite import SQLiteStore

BATCH = 20_000
#: Finished long ago but kept for a year: the purge leaves them in place during the run.
KEPT_SECONDS = 365 * 24 * 3600


def fill(database: Path, total: int, *, keep_ids: int = 10_000) -> list[str]:
    """Add finished `add` tasks until the store holds `total`; a sample of their ids."""
    SQLiteStore(database).close()  # the schema, migrated as the service would
    now = time.time()
    params, result = json.dumps({"x": 1, "y": 2, "delay_seconds": 0}), "3"
    sample: list[str] = []
    with sqlite3.connect(database, isolation_level=None) as conn:
        have = conn.execute("SELECT COUNT(*) FROM tasks").fetchone()[0]
        while have < total:
            rows = []
            for _ in range(min(BATCH, total - have)):
                task_id = str(uuid.uuid4())
                if len(sample) < keep_ids:
                    sample.append(task_id)
                rows.append((task_id, params, result, now - 60, now + KEPT_SECONDS))
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                """INSERT INTO tasks (id, type, status, params, result, attempts, max_attempts,
                       created_at, run_after, started_at, finished_at, expires_at)
                   VALUES (?, 'add', 'succeeded', ?, ?, 1, 1, ?4, ?4, ?4, ?4, ?5)""",
                rows,
            )
            conn.execute("COMMIT")
            have += len(rows)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return sample
