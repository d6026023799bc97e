"""The PostgreSQL store: several processes and machines share one queue.

Claims take the next ready task with ``FOR UPDATE SKIP LOCKED`` in one statement, so workers
never wait on each other's rows; every other change is one conditional statement, as on
SQLite. JSON values are kept as text, exactly as the service wrote them (``jsonb`` would refuse
a ``\\u0000`` that a client may legitimately send). A submit sends ``NOTIFY taskapi_tasks``, so
idle workers in other processes wake at once (``listen``); polling covers a lost notification.

The schema may be chosen in the URL with libpq's options: ``?options=-csearch_path%3Dmyschema``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from api.models import (
    MAX_LOST_ATTEMPTS,
    TERMINAL,
    IdempotencyKey,
    NewTask,
    Progress,
    Status,
    Task,
    TaskError,
    Verb,
)
from api.store import (
    CancelResult,
    KeyTaken,
    QueueFull,
    Recovered,
    StoreError,
    TaskFilter,
)
from api.store.rows import (
    COLUMNS,
    WORKER_LOST,
    WORKER_LOST_AGAIN,
    dumps,
    error_json,
    finish_values,
    progress_json,
    status_in,
    task_from_row,
)

log = logging.getLogger(__name__)

CHANNEL = "taskapi_tasks"
POOL_MAX_SIZE = 16
CONNECT_TIMEOUT_SECONDS = 10
#: Serialises migrations of one database, whichever process starts first.
MIGRATION_LOCK = 7_305_104_211
#: Serialises the count-and-insert of submits, so that TASKS_MAX_QUEUED holds exactly.
QUEUE_LOCK = 7_305_104_212

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE tasks (
        seq BIGSERIAL PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        type TEXT NOT NULL,
        status TEXT NOT NULL,
        params TEXT NOT NULL,
        result TEXT,
        error TEXT,
        progress TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        max_attempts INTEGER NOT NULL,
        timeout_seconds DOUBLE PRECISION,
        priority INTEGER NOT NULL DEFAULT 0,
        cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
        created_at TIMESTAMPTZ NOT NULL,
        run_after TIMESTAMPTZ NOT NULL,
        started_at TIMESTAMPTZ,
        finished_at TIMESTAMPTZ,
        expires_at TIMESTAMPTZ,
        worker_id TEXT,
        lease_expires_at TIMESTAMPTZ,
        version INTEGER NOT NULL DEFAULT 1,
        owner TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX tasks_ready ON tasks (priority DESC, run_after, seq) WHERE status = 'queued';
    CREATE INDEX tasks_queued_at ON tasks (run_after) WHERE status = 'queued';
    CREATE INDEX tasks_by_status ON tasks (status, seq);
    CREATE INDEX tasks_by_type ON tasks (type, seq);
    CREATE INDEX tasks_by_owner ON tasks (owner, seq);
    CREATE INDEX tasks_expiry ON tasks (expires_at) WHERE expires_at IS NOT NULL;
    CREATE INDEX tasks_leases ON tasks (lease_expires_at) WHERE status = 'running';
    CREATE TABLE idempotency_keys (
        owner TEXT NOT NULL,
        key TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        task_id TEXT NOT NULL,
        expires_at TIMESTAMPTZ NOT NULL,
        in_flight_until TIMESTAMPTZ,
        PRIMARY KEY (owner, key)
    );
    CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);
    """,
    # Attempts cut short by a lost worker: in all (they do not use up max_attempts), and in a
    # row since the last attempt that ended otherwise (MAX_LOST_ATTEMPTS ends the task).
    """
    ALTER TABLE tasks ADD COLUMN lost_attempts INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE tasks ADD COLUMN lost_in_a_row INTEGER NOT NULL DEFAULT 0;
    """,
)

_TERMINAL_SQL = ", ".join(f"'{s.value}'" for s in sorted(TERMINAL))
#: A task is readable until its ``expires_at``, whether or not the purge has deleted it yet.
VISIBLE = "(expires_at IS NULL OR expires_at > %(now)s)"
_QUEUE_UNLESS_CANCELLED = """
    status = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'queued' END,
    finished_at = CASE WHEN cancel_requested THEN %(now)s END,
    expires_at = CASE WHEN cancel_requested THEN %(expires_at)s END"""
_RELEASED = "worker_id = NULL, lease_expires_at = NULL, version = version + 1"
_CLAIM_SQL = f"""UPDATE tasks SET status = 'running', attempts = attempts + 1, started_at = %s,
        worker_id = %s, lease_expires_at = %s, progress = NULL, version = version + 1
    WHERE seq = (
        SELECT seq FROM tasks WHERE status = 'queued' AND run_after <= %s
        ORDER BY priority DESC, run_after, seq LIMIT 1 FOR UPDATE SKIP LOCKED
    )
    RETURNING {COLUMNS}"""
_FINISH_SQL = f"""UPDATE tasks SET status = %s, result = %s, error = %s,
        finished_at = %s, expires_at = %s, {_RELEASED}
    WHERE id = %s AND worker_id = %s AND {status_in(Verb.FINISH)}"""


def _finish_args(
    task_id: str,
    worker_id: str,
    status: Status,
    now: datetime,
    expires_at: datetime,
    result: Any,
    error: TaskError | None,
) -> tuple[Any, ...]:
    return (
        status.value,
        *finish_values(status, result, error),
        now,
        expires_at,
        task_id,
        worker_id,
    )


def _row_to_task(row: dict[str, Any]) -> Task:
    return task_from_row(row, lambda value: value)  # psycopg reads timestamptz as datetime


class PostgresStore:
    """A store in a PostgreSQL database, shared by every process that has its URL."""

    def __init__(self, url: str, *, max_size: int = POOL_MAX_SIZE) -> None:
        self.url = url
        try:
            self._pool = ConnectionPool(
                url,
                min_size=1,
                max_size=max_size,
                kwargs={"autocommit": True, "row_factory": dict_row},
                # A connection the server dropped (restart, failover) is replaced, not used.
                check=ConnectionPool.check_connection,
                timeout=CONNECT_TIMEOUT_SECONDS,
                open=True,
            )
            self._pool.wait(CONNECT_TIMEOUT_SECONDS)
        except (psycopg.Error, Exception) as exc:
            raise StoreError(f"Cannot reach the PostgreSQL store: {exc}") from exc
        self._migrate()

    @classmethod
    def from_url(cls, url: str) -> PostgresStore:
        return cls(url.replace("postgres://", "postgresql://", 1))

    # -- connections -------------------------------------------------------------------------

    @contextmanager
    def _conn(self) -> Iterator[psycopg.Connection[Any]]:
        with self._pool.connection() as conn:
            yield conn

    @contextmanager
    def _write(self) -> Iterator[psycopg.Connection[Any]]:
        with self._pool.connection() as conn, conn.transaction():
            yield conn

    def _migrate(self) -> None:
        with self._write() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            exists = conn.execute("SELECT to_regclass('taskapi_schema') AS t").fetchone()
            if exists is None or exists["t"] is None:  # first start: needs CREATE, only now
                conn.execute("CREATE TABLE taskapi_schema (version INTEGER NOT NULL)")
                conn.execute("INSERT INTO taskapi_schema (version) VALUES (0)")
            row = conn.execute("SELECT version FROM taskapi_schema").fetchone()
            version = row["version"] if row else 0
            if version == len(MIGRATIONS):
                return
            if version > len(MIGRATIONS):
                raise StoreError(
                    f"The database has schema version {version}, newer than this taskapi "
                    f"({len(MIGRATIONS)}): upgrade taskapi."
                )
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                conn.execute(script.encode())
                conn.execute("UPDATE taskapi_schema SET version = %s", (number,))

    def close(self) -> None:
        self._pool.close()

    def detach_thread(self) -> None:
        return None  # connections belong to the pool, not to threads

    def ping(self) -> None:
        try:
            with self._conn() as conn:
                conn.execute("SELECT 1 FROM tasks LIMIT 1")
        except Exception as exc:
            raise StoreError(f"The PostgreSQL store does not answer: {exc}") from exc

    def _one(self, sql: str, args: Any) -> Task | None:
        with self._conn() as conn:
            row = conn.execute(sql, args).fetchone()
        return None if row is None else _row_to_task(row)

    def _changed(self, sql: str, args: Any) -> bool:
        with self._conn() as conn:
            return conn.execute(sql, args).rowcount > 0

    def listen(self, on_submit: Callable[[], None], stop: threading.Event) -> None:
        """Call ``on_submit`` at each submit in any process, until ``stop``; blocks."""
        while not stop.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    while not stop.is_set():
                        for _ in conn.notifies(timeout=1.0, stop_after=64):
                            on_submit()
            except psycopg.Error as exc:
                log.warning("LISTEN %s lost (%s); polling covers it meanwhile", CHANNEL, exc)
                stop.wait(1.0)

    # -- reads -------------------------------------------------------------------------------

    def get(self, task_id: str, now: datetime) -> Task | None:
        return self._one(
            f"SELECT {COLUMNS} FROM tasks WHERE id = %(id)s AND {VISIBLE}",
            {"id": task_id, "now": now},
        )

    def list(
        self, where: TaskFilter, *, offset: int, limit: int, now: datetime
    ) -> tuple[list[Task], int]:
        clauses: list[str] = []
        args: dict[str, Any] = {"now": now, "limit": limit, "offset": offset}
        if where.statuses:
            clauses.append("status = ANY(%(statuses)s)")
            args["statuses"] = [s.value for s in where.statuses]
        if where.type is not None:
            clauses.append("type = %(type)s")
            args["type"] = where.type
        if where.owner is not None:
            clauses.append("owner = %(owner)s")
            args["owner"] = where.owner
        matching = " AND ".join(clauses) or "TRUE"
        with self._conn() as conn:
            # Every match, less those expired and not purged yet: both counts can use an
            # index, and one statement reads them from one snapshot.
            total = conn.execute(
                f"""SELECT (SELECT COUNT(*) FROM tasks WHERE {matching})
                        - (SELECT COUNT(*) FROM tasks
                           WHERE expires_at IS NOT NULL AND expires_at <= %(now)s
                           AND {matching}) AS n""",
                args,
            ).fetchone()
            rows = conn.execute(
                f"""SELECT {COLUMNS} FROM tasks WHERE {matching} AND {VISIBLE}
                    ORDER BY seq DESC LIMIT %(limit)s OFFSET %(offset)s""",
                args,
            ).fetchall()
        return [_row_to_task(r) for r in rows], total["n"] if total else 0

    def count_by_status(self, now: datetime) -> dict[Status, int]:
        # An index-only scan of tasks_by_status: linear in the table, unlike SQLite's counter
        # rows, which here would make every state change of every worker wait on one row.
        # Less the tasks expired and not purged yet, found by the expiry index.
        with self._conn() as conn:
            rows = conn.execute(
                """SELECT status, COUNT(*) AS n FROM tasks GROUP BY status
                   UNION ALL
                   SELECT status, -COUNT(*) AS n FROM tasks
                   WHERE expires_at IS NOT NULL AND expires_at <= %s GROUP BY status""",
                (now,),
            )
            counted = {status: 0 for status in Status}
            for row in rows:
                counted[Status(row["status"])] += int(row["n"])
        return counted

    def next_run_after(self) -> datetime | None:
        with self._conn() as conn:
            row = conn.execute(
                "SELECT MIN(run_after) AS due FROM tasks WHERE status = 'queued'"
            ).fetchone()
        return row["due"] if row else None

    # -- writes ------------------------------------------------------------------------------

    def create(
        self,
        task: NewTask,
        *,
        max_queued: int | None = None,
        idempotency: IdempotencyKey | None = None,
    ) -> Task:
        try:
            with self._write() as conn:
                if idempotency is not None:
                    self._take_key(conn, idempotency, task)
                if max_queued is not None:
                    # Submits count and insert one at a time, so the bound holds exactly.
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (QUEUE_LOCK,))
                    row = conn.execute(
                        "SELECT COUNT(*) AS n FROM "
                        "(SELECT 1 FROM tasks WHERE status = 'queued' LIMIT %s) AS q",
                        (max_queued,),
                    ).fetchone()
                    if row and row["n"] >= max_queued:
                        raise QueueFull()
                created = conn.execute(
                    f"""INSERT INTO tasks (id, type, status, params, max_attempts,
                            timeout_seconds, priority, created_at, run_after, owner)
                        VALUES (%s, %s, 'queued', %s, %s, %s, %s, %s, %s, %s)
                        RETURNING {COLUMNS}""",
                    (
                        task.id,
                        task.type,
                        dumps(task.params),
                        task.max_attempts,
                        task.timeout_seconds,
                        task.priority,
                        task.created_at,
                        task.run_after,
                        task.owner,
                    ),
                ).fetchone()
                conn.execute(f"NOTIFY {CHANNEL}")
        except psycopg.errors.UniqueViolation as exc:
            if idempotency is None or exc.diag.constraint_name != "idempotency_keys_pkey":
                raise
            # A concurrent request took the same key first: answer as if it had come earlier.
            with self._conn() as conn:
                row = conn.execute(
                    "SELECT task_id, fingerprint FROM idempotency_keys "
                    "WHERE owner = %s AND key = %s",
                    (idempotency.owner, idempotency.key),
                ).fetchone()
            assert row is not None  # the unique key that refused us belongs to a committed row
            raise KeyTaken(row["task_id"], row["fingerprint"], in_flight=True) from None
        assert created is not None
        return _row_to_task(created)

    def _take_key(self, conn: psycopg.Connection[Any], key: IdempotencyKey, task: NewTask) -> None:
        row = conn.execute(
            """SELECT task_id, fingerprint, COALESCE(in_flight_until > %(now)s, FALSE) AS busy
               FROM idempotency_keys
               WHERE owner = %(owner)s AND key = %(key)s AND expires_at > %(now)s""",
            {"now": task.created_at, "owner": key.owner, "key": key.key},
        ).fetchone()
        if row is not None:
            raise KeyTaken(row["task_id"], row["fingerprint"], in_flight=row["busy"])
        # Only an expired key may make way; a live one (committed meanwhile by a concurrent
        # request) stays, and our INSERT below then fails on its primary key: a 409.
        conn.execute(
            "DELETE FROM idempotency_keys WHERE owner = %s AND key = %s AND expires_at <= %s",
            (key.owner, key.key, task.created_at),
        )
        conn.execute(
            """INSERT INTO idempotency_keys
               (owner, key, fingerprint, task_id, expires_at, in_flight_until)
               VALUES (%s, %s, %s, %s, %s, %s)""",
            (key.owner, key.key, key.fingerprint, task.id, key.expires_at, key.in_flight_until),
        )

    def settle_key(self, owner: str, key: str) -> None:
        with self._conn() as conn:
            conn.execute(
                "UPDATE idempotency_keys SET in_flight_until = NULL WHERE owner = %s AND key = %s",
                (owner, key),
            )

    def claim(self, worker_id: str, now: datetime, lease_until: datetime) -> Task | None:
        return self._one(_CLAIM_SQL, (now, worker_id, lease_until, now))

    def report_progress(self, task_id: str, worker_id: str, progress: Progress) -> bool | None:
        with self._conn() as conn:
            row = conn.execute(
                """UPDATE tasks SET progress = %s, version = version + 1
                   WHERE id = %s AND worker_id = %s AND status = 'running'
                   RETURNING cancel_requested""",
                (
                    progress_json(progress),
                    task_id,
                    worker_id,
                ),
            ).fetchone()
        return None if row is None else bool(row["cancel_requested"])

    def heartbeat(self, task_id: str, worker_id: str, lease_until: datetime) -> bool | None:
        with self._conn() as conn:
            row = conn.execute(
                """UPDATE tasks SET lease_expires_at = %s
                   WHERE id = %s AND worker_id = %s AND status = 'running'
                   RETURNING cancel_requested""",
                (lease_until, task_id, worker_id),
            ).fetchone()
        return None if row is None else bool(row["cancel_requested"])

    def recover_expired(self, now: datetime, expires_at: datetime) -> Sequence[Recovered]:
        lost = "status = 'running' AND lease_expires_at < %(now)s"
        args = {
            "now": now,
            "expires_at": expires_at,
            "lost": WORKER_LOST,
            "lost_again": WORKER_LOST_AGAIN,
            "most": MAX_LOST_ATTEMPTS,
        }
        released = f"""{_RELEASED},
            lost_attempts = lost_attempts + 1, lost_in_a_row = lost_in_a_row + 1"""
        taken = "RETURNING id, type, status"
        with self._write() as conn:
            rows = conn.execute(
                f"""UPDATE tasks SET status = 'cancelled', error = NULL, finished_at = %(now)s,
                        expires_at = %(expires_at)s, {released}
                    WHERE {lost} AND cancel_requested {taken}""",
                args,
            ).fetchall()
            rows += conn.execute(
                f"""UPDATE tasks SET status = 'failed', error = %(lost_again)s,
                        finished_at = %(now)s, expires_at = %(expires_at)s, {released}
                    WHERE {lost} AND lost_in_a_row + 1 >= %(most)s {taken}""",
                args,
            ).fetchall()
            requeued = conn.execute(
                f"""UPDATE tasks SET status = 'queued', error = %(lost)s, run_after = %(now)s,
                        {released}
                    WHERE {lost} {taken}""",
                args,
            ).fetchall()
            rows += requeued
            if requeued:
                conn.execute(f"NOTIFY {CHANNEL}")
        return [Recovered(row["id"], row["type"], Status(row["status"])) for row in rows]

    def succeed_and_claim(
        self,
        task_id: str,
        worker_id: str,
        result: Any,
        now: datetime,
        expires_at: datetime,
        lease_until: datetime,
    ) -> tuple[bool, Task | None]:
        with self._write() as conn:
            done = conn.execute(
                _FINISH_SQL,
                _finish_args(task_id, worker_id, Status.SUCCEEDED, now, expires_at, result, None),
            ).rowcount
            row = conn.execute(_CLAIM_SQL, (now, worker_id, lease_until, now)).fetchone()
        return done > 0, None if row is None else _row_to_task(row)

    def finish(
        self,
        task_id: str,
        worker_id: str,
        status: Status,
        now: datetime,
        expires_at: datetime,
        *,
        result: Any = None,
        error: TaskError | None = None,
    ) -> bool:
        return self._changed(
            _FINISH_SQL, _finish_args(task_id, worker_id, status, now, expires_at, result, error)
        )

    def _requeue(self, sql: str, args: dict[str, Any]) -> Status | None:
        with self._conn() as conn:
            row = conn.execute(sql, args).fetchone()
            if row is not None and row["status"] == Status.QUEUED.value:
                conn.execute(f"NOTIFY {CHANNEL}")
        return None if row is None else Status(row["status"])

    def retry(
        self,
        task_id: str,
        worker_id: str,
        error: TaskError,
        run_after: datetime,
        now: datetime,
        expires_at: datetime,
    ) -> Status | None:
        return self._requeue(
            f"""UPDATE tasks SET {_QUEUE_UNLESS_CANCELLED}, run_after = %(run_after)s,
                    error = CASE WHEN cancel_requested THEN NULL ELSE %(error)s END,
                    lost_in_a_row = 0, {_RELEASED}
                WHERE id = %(id)s AND worker_id = %(worker)s AND status = 'running'
                RETURNING status""",
            {
                "now": now,
                "expires_at": expires_at,
                "run_after": run_after,
                "error": error_json(error),
                "id": task_id,
                "worker": worker_id,
            },
        )

    def release(
        self, task_id: str, worker_id: str, now: datetime, expires_at: datetime
    ) -> Status | None:
        return self._requeue(
            f"""UPDATE tasks SET {_QUEUE_UNLESS_CANCELLED},
                    attempts = CASE WHEN cancel_requested THEN attempts
                        ELSE GREATEST(attempts - 1, 0) END,
                    started_at = CASE WHEN cancel_requested THEN started_at END,
                    error = CASE WHEN cancel_requested THEN NULL ELSE error END,
                    {_RELEASED}
                WHERE id = %(id)s AND worker_id = %(worker)s AND status = 'running'
                RETURNING status""",
            {"now": now, "expires_at": expires_at, "id": task_id, "worker": worker_id},
        )

    def cancel(self, task_id: str, now: datetime, expires_at: datetime) -> CancelResult | None:
        changed = self._one(
            f"""UPDATE tasks SET cancel_requested = TRUE,
                    status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END,
                    error = CASE WHEN status = 'queued' THEN NULL ELSE error END,
                    finished_at = CASE WHEN status = 'queued' THEN %s ELSE finished_at END,
                    expires_at = CASE WHEN status = 'queued' THEN %s ELSE expires_at END,
                    version = version + 1
                WHERE id = %s AND (status = 'queued'
                    OR (status = 'running' AND NOT cancel_requested))
                RETURNING {COLUMNS}""",
            (now, expires_at, task_id),
        )
        if changed is not None:
            return CancelResult(changed, ended=changed.status is Status.CANCELLED)
        current = self.get(task_id, now)
        return None if current is None else CancelResult(current, ended=False)

    def delete(self, task_id: str, now: datetime) -> bool:
        return self._changed(
            f"DELETE FROM tasks WHERE id = %(id)s AND status IN ({_TERMINAL_SQL}) AND {VISIBLE}",
            {"id": task_id, "now": now},
        )

    def purge_expired(self, now: datetime, limit: int) -> tuple[int, int]:
        with self._conn() as conn:
            keys = conn.execute(
                """DELETE FROM idempotency_keys WHERE ctid IN (
                       SELECT ctid FROM idempotency_keys WHERE expires_at <= %s LIMIT %s)""",
                (now, limit),
            ).rowcount
            tasks = conn.execute(
                f"""DELETE FROM tasks WHERE seq IN (
                        SELECT seq FROM tasks WHERE expires_at IS NOT NULL AND expires_at <= %s
                        AND status IN ({_TERMINAL_SQL}) LIMIT %s)""",
                (now, limit),
            ).rowcount
        return tasks, keys
