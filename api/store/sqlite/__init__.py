"""The embedded default store: one SQLite file in WAL mode, one connection per thread.

Its verbs are SqlStore's; its statements are ``queries.sql`` beside this module, its schema
``migrations.sql``. What is SQLite's own: a connection per thread, the write turn every
writer takes first (connection.WriteTurn), times as seconds since the epoch, and the queue
bound read from the trigger-kept ``queue_counts`` inside the insert itself.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import Counter
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from api.models import NewTask, Status
from api.store import Claim, StoreError
from api.store.queries import load
from api.store.sql import SqlStore
from api.store.sqlite.claims import open_queues, second_step
from api.store.sqlite.connection import (
    BUSY_TIMEOUT_MS,
    CACHE_KIB,
    Held,
    WriteTurn,
    connect,
    statements,
)

#: The statements of the store, by name.
QUERIES = load(__name__, "queries.sql")
#: Schema versions, applied in order; ``PRAGMA user_version`` records the last one applied.
MIGRATIONS: tuple[str, ...] = tuple(load(__name__, "migrations.sql", slots=False).values())


@lru_cache(maxsize=32)
def _values(insert: str, count: int, width: int) -> str:
    """``insert`` (ending in ``VALUES {values}``) with ``count`` rows of ``width`` parameters
    and the status (queued)."""
    row = "(" + "?, " * width + "'queued')"
    return insert.replace("{values}", ", ".join([row] * count))


def _seconds(value: datetime | None) -> float | None:
    """A time as SQLite keeps it: seconds since the epoch."""
    return None if value is None else value.timestamp()


def _datetime(value: float | None) -> datetime | None:
    """A time SQLite kept, as a timezone-aware UTC datetime."""
    return None if value is None else datetime.fromtimestamp(value, UTC)


class SQLiteStore(SqlStore):
    """A store in one SQLite file, safe to share between threads and processes."""

    queries = QUERIES

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._turn = WriteTurn(self.path)
        self._migrate()

    @classmethod
    def from_url(cls, url: str) -> SQLiteStore:
        """``sqlite:///relative.db``, ``sqlite:////absolute.db`` or ``sqlite:///:memory:``."""
        prefix = "sqlite:///"
        path = url[len(prefix) :] if url.startswith(prefix) else ""
        if not path or path == ":memory:":
            raise StoreError(
                f"TASKS_DATABASE_URL {url!r} needs a file path: sqlite:///tasks.db (relative) "
                "or sqlite:////var/lib/taskapi/tasks.db (absolute)."
            )
        return cls(path)

    # -- connections -------------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = connect(self.path)
            with self._lock:
                self._connections.append(conn)
        return conn

    def _reading(self) -> AbstractContextManager[sqlite3.Connection]:
        return nullcontext(self._conn())

    def _read_one(self, query: str, args: Mapping[str, Any]) -> sqlite3.Row | None:
        # Without a context manager: the thread's connection is always there, and this is
        # the path of every read of a task.
        return self._conn().execute(self.queries[query], args).fetchone()

    def _writing(self) -> Held[sqlite3.Connection]:
        return Held(self._turn, self._conn())

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that holds the lock from its start (no upgrade deadlocks)."""
        conn = self._conn()
        with self._turn.held():
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _claim(self, db: Any, claim: Claim) -> list[sqlite3.Row]:
        args = self._claim_args(claim)
        rooms = open_queues(db.execute(self.queries["claim_queues"], args).fetchall())
        if not rooms:
            return []
        statement, values = second_step(self.queries, rooms, args)
        return db.execute(statement, values).fetchall()

    def _insert_rows(self, db: Any, tasks: Sequence[NewTask], rows: list[list[Any]]) -> None:
        # Rows of VALUES, each value a parameter: SQLite reads no JSON for them (a JSON list
        # read with json_each took a third longer), and takes up to 32 766 parameters.
        statement = _values(self.queries["insert_tasks"], len(rows), len(rows[0]))
        db.execute(statement, [value for row in rows for value in row])
        # Counted once per queue (the insert trigger passes over a batch's tasks).
        for queue, count in Counter(task.queue for task in tasks).items():
            db.execute(self.queries["open_queue_counts"], {"queue": queue})
            db.execute(self.queries["count_batch"], {"queue": queue, "count": count})

    def _submitting(self, keyed: bool) -> AbstractContextManager[sqlite3.Connection]:
        # The usual submit is one statement (the bound and the insert), one commit.
        return self._transaction() if keyed else self._writing()

    def _migrate(self) -> None:
        with self._transaction() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > len(MIGRATIONS):
                raise StoreError(
                    f"{self.path} has schema version {version}, newer than this taskapi "
                    f"({len(MIGRATIONS)}): upgrade taskapi."
                )
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in statements(script):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version={number}")

    def close(self) -> None:
        """Close every thread's connection and the write turn's lock file."""
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()
        self._turn.close()

    def detach_thread(self) -> None:
        """Close the calling thread's connection (the thread is about to end)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            return
        del self._local.conn
        with self._lock:
            if conn in self._connections:
                self._connections.remove(conn)
        conn.close()

    def ping(self) -> None:
        """Raise StoreError when the file cannot be read."""
        try:
            self._conn().execute("SELECT 1 FROM tasks LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"The SQLite store does not answer: {exc}") from exc

    # -- the dialect -------------------------------------------------------------------------

    # Plain functions, not methods: they run for every parameter and every column of a time.
    _time = staticmethod(_seconds)
    _time_of = staticmethod(_datetime)

    def _param(self, name: str) -> str:
        return f":{name}"

    def _names(self, names: Collection[str] | None) -> str | None:
        # A JSON list, read in the SQL with json_each: one parameter, whatever its length.
        return None if names is None else json.dumps(sorted(names))

    def _status_in(self, statuses: Sequence[Status]) -> tuple[str, dict[str, Any]]:
        names = [f"status_{n}" for n in range(len(statuses))]
        clause = "status IN (" + ", ".join(f":{name}" for name in names) + ")"
        return clause, {name: status.value for name, status in zip(names, statuses, strict=True)}


__all__ = ["BUSY_TIMEOUT_MS", "CACHE_KIB", "MIGRATIONS", "QUERIES", "SQLiteStore", "WriteTurn"]
