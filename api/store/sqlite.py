"""The embedded default store: one SQLite file in WAL mode, one connection per thread.

Each state change is a single statement (``UPDATE … WHERE status IN (…) RETURNING``). SQLite
takes the write lock at the start of a writing statement, so a claim never races another one,
whichever thread or process runs it; the busy timeout queues concurrent writers.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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

BUSY_TIMEOUT_MS = 10_000
#: Page cache of each connection, in KiB. Every HTTP and worker thread has a connection, and
#: SQLite's default (2 MiB each) grows the process by tens of MiB as the store grows; pages
#: not cached here are read from the operating system's cache, shared by all of them.
CACHE_KIB = 256

#: Schema versions, applied in order; ``PRAGMA user_version`` records the last one applied.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE tasks (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        type TEXT NOT NULL,
        status TEXT NOT NULL,
        params TEXT NOT NULL,
        result TEXT,
        error TEXT,
        progress TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        max_attempts INTEGER NOT NULL,
        timeout_seconds REAL,
        priority INTEGER NOT NULL DEFAULT 0,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        run_after REAL NOT NULL,
        started_at REAL,
        finished_at REAL,
        expires_at REAL,
        worker_id TEXT,
        lease_expires_at REAL,
        version INTEGER NOT NULL DEFAULT 1
    );
    CREATE INDEX tasks_ready ON tasks (priority DESC, run_after, seq) WHERE status = 'queued';
    CREATE INDEX tasks_queued_at ON tasks (run_after) WHERE status = 'queued';
    CREATE INDEX tasks_by_status ON tasks (status, seq);
    CREATE INDEX tasks_by_type ON tasks (type, seq);
    CREATE INDEX tasks_expiry ON tasks (expires_at) WHERE expires_at IS NOT NULL;
    """,
    """
    CREATE TABLE idempotency_keys (
        owner TEXT NOT NULL,
        key TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        task_id TEXT NOT NULL,
        expires_at REAL NOT NULL,
        in_flight_until REAL,
        PRIMARY KEY (owner, key)
    );
    CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);
    CREATE INDEX tasks_leases ON tasks (lease_expires_at) WHERE status = 'running';
    """,
    """
    ALTER TABLE tasks ADD COLUMN owner TEXT NOT NULL DEFAULT '';
    CREATE INDEX tasks_by_owner ON tasks (owner, seq);
    """,
    # How many tasks are in each status, kept by triggers in the same transactions as the
    # changes: the queue bound and the metrics read one row instead of counting an index.
    """
    CREATE TABLE task_counts (status TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
    INSERT INTO task_counts (status, n) VALUES
        ('queued', 0), ('running', 0), ('succeeded', 0), ('failed', 0), ('cancelled', 0);
    UPDATE task_counts SET n = (SELECT COUNT(*) FROM tasks WHERE tasks.status = task_counts.status);
    CREATE TRIGGER tasks_counted_in AFTER INSERT ON tasks BEGIN
        UPDATE task_counts SET n = n + 1 WHERE status = new.status;
    END;
    CREATE TRIGGER tasks_counted_out AFTER DELETE ON tasks BEGIN
        UPDATE task_counts SET n = n - 1 WHERE status = old.status;
    END;
    CREATE TRIGGER tasks_counted_moved AFTER UPDATE OF status ON tasks
    WHEN old.status <> new.status BEGIN
        UPDATE task_counts SET n = n - 1 WHERE status = old.status;
        UPDATE task_counts SET n = n + 1 WHERE status = new.status;
    END;
    """,
    # Attempts cut short by a lost worker: in all (they do not use up max_attempts), and in a
    # row since the last attempt that ended otherwise (MAX_LOST_ATTEMPTS ends the task).
    """
    ALTER TABLE tasks ADD COLUMN lost_attempts INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE tasks ADD COLUMN lost_in_a_row INTEGER NOT NULL DEFAULT 0;
    """,
)

#: The next ready task, in claim order. ``INDEXED BY`` keeps the planner on the partial index
#: that yields this order, whatever the table's statistics say.
NEXT_READY_SQL = (
    "SELECT seq FROM tasks INDEXED BY tasks_ready WHERE status = 'queued' AND run_after <= ? "
    "ORDER BY priority DESC, run_after, seq LIMIT 1"
)
#: A new task, unless the queue is full. Its parameters: those of ``_insert_args``, then the
#: queue bound twice (None: no bound). The count is the trigger-kept row of ``task_counts``.
_INSERT_IF_ROOM = f"""
    INSERT INTO tasks (id, type, status, params, max_attempts, timeout_seconds, priority,
        created_at, run_after, owner)
    SELECT ?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?
    WHERE ? IS NULL OR (SELECT n FROM task_counts WHERE status = 'queued') < ?
    RETURNING {COLUMNS}"""
_TERMINAL_SQL = ", ".join(f"'{s.value}'" for s in sorted(TERMINAL))
#: A task is readable until its ``expires_at``, whether or not the purge has deleted it yet.
#: Its parameter: now.
VISIBLE = "(expires_at IS NULL OR expires_at > ?)"


def _ts(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def _dt(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def _insert_args(task: NewTask) -> tuple[Any, ...]:
    return (
        task.id,
        task.type,
        dumps(task.params),
        task.max_attempts,
        task.timeout_seconds,
        task.priority,
        _ts(task.created_at),
        _ts(task.run_after),
        task.owner,
    )


_CLAIM_SQL = f"""UPDATE tasks SET status = 'running', attempts = attempts + 1, started_at = ?,
        worker_id = ?, lease_expires_at = ?, progress = NULL, version = version + 1
    WHERE seq = ({NEXT_READY_SQL}) AND status = 'queued'
    RETURNING {COLUMNS}"""
_FINISH_SQL = f"""UPDATE tasks SET status = ?, result = ?, error = ?,
        finished_at = ?, expires_at = ?, worker_id = NULL, lease_expires_at = NULL,
        version = version + 1
    WHERE id = ? AND worker_id = ? AND {status_in(Verb.FINISH)}"""


def _claim_args(worker_id: str, now: datetime, lease_until: datetime) -> tuple[Any, ...]:
    return (_ts(now), worker_id, _ts(lease_until), _ts(now))


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
        _ts(now),
        _ts(expires_at),
        task_id,
        worker_id,
    )


#: A running task goes back to the queue, unless a client asked to cancel it meanwhile: then
#: it ends cancelled. Its parameters: now, expires_at.
_QUEUE_UNLESS_CANCELLED = """
    status = CASE WHEN cancel_requested = 1 THEN 'cancelled' ELSE 'queued' END,
    finished_at = CASE WHEN cancel_requested = 1 THEN ? END,
    expires_at = CASE WHEN cancel_requested = 1 THEN ? END"""


def _statements(script: str) -> Iterator[str]:
    """The statements of a script, one by one (a trigger's body has semicolons of its own).

    ``executescript`` would do it, but it commits first: a migration runs in one transaction.
    """
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip().strip(";").strip():
                yield pending
            pending = ""


def _row_to_task(row: sqlite3.Row) -> Task:
    return task_from_row(row, _dt)  # type: ignore[arg-type]  # a Row reads by column name


#: Guards the set-up of write turns; a forked child gets a fresh one (the parent's may have
#: been held by another thread at the fork).
_SETUP = threading.Lock()


def _new_setup_lock() -> None:
    global _SETUP
    _SETUP = threading.Lock()


os.register_at_fork(after_in_child=_new_setup_lock)


class WriteTurn:
    """One writer at a time on this machine, handed from one to the next without sleeping.

    SQLite lets one connection write at a time and makes the others retry with sleeps that
    grow to 100 ms, so a busy store spends its time waiting rather than writing. Writers
    queue here instead, first on a lock of their process, then on a POSIX record lock of a
    file beside the database (``<store>-lock``), which the kernel hands over at once, which a
    forked child does not inherit, and which goes with its process if that dies. This only
    orders the writers: SQLite's own locking still guards the data, so anything that escapes
    the order (another program, a second store object on the same file in one process) waits
    on SQLite's busy timeout as before.
    """

    def __init__(self, path: str) -> None:
        self.path = f"{path}-lock"
        #: (pid, thread lock, lock file) of the process that made them.
        self._own: tuple[int, threading.Lock, int] | None = None

    def _for_this_process(self) -> tuple[threading.Lock, int]:
        pid, own = os.getpid(), self._own
        if own is None or own[0] != pid:
            with _SETUP:
                own = self._own
                if own is None or own[0] != pid:
                    try:
                        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
                    except OSError as exc:
                        raise StoreError(
                            f"Cannot open the SQLite store's lock file {self.path}: {exc}"
                        ) from exc
                    own = self._own = (pid, threading.Lock(), fd)
        return own[1], own[2]

    @contextmanager
    def held(self) -> Iterator[None]:
        lock, fd = self._for_this_process()  # released through the very same pair
        with lock:
            fcntl.lockf(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.lockf(fd, fcntl.LOCK_UN)

    def close(self) -> None:
        with _SETUP:
            own, self._own = self._own, None
        if own is not None and own[0] == os.getpid():
            with own[1]:  # after the writer holding it, if any
                os.close(own[2])


class SQLiteStore:
    """A store in one SQLite file, safe to share between threads and processes."""

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
            try:
                conn = sqlite3.connect(
                    self.path,
                    isolation_level=None,
                    check_same_thread=False,
                    timeout=BUSY_TIMEOUT_MS / 1000,
                )
            except sqlite3.Error as exc:
                raise StoreError(f"Cannot open the SQLite store at {self.path}: {exc}") from exc
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def _migrate(self) -> None:
        with self._write() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > len(MIGRATIONS):
                raise StoreError(
                    f"{self.path} has schema version {version}, newer than this taskapi "
                    f"({len(MIGRATIONS)}): upgrade taskapi."
                )
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in _statements(script):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version={number}")

    def close(self) -> None:
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()
        self._turn.close()

    def listen(self, on_submit: Callable[[], None], stop: threading.Event) -> None:
        return None  # no notifications between processes: workers poll

    def detach_thread(self) -> None:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            return
        del self._local.conn
        with self._lock:
            if conn in self._connections:
                self._connections.remove(conn)
        conn.close()

    def ping(self) -> None:
        try:
            self._conn().execute("SELECT 1 FROM tasks LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"The SQLite store does not answer: {exc}") from exc

    def _one(self, sql: str, args: Iterable[Any]) -> Task | None:
        row = self._conn().execute(sql, tuple(args)).fetchone()
        return None if row is None else _row_to_task(row)

    def _changed(self, sql: str, args: Iterable[Any]) -> bool:
        """Run one writing statement in its turn; whether it changed a row."""
        with self._turn.held():
            return self._conn().execute(sql, tuple(args)).rowcount > 0

    def _returning(self, sql: str, args: Iterable[Any]) -> sqlite3.Row | None:
        """Run one ``… RETURNING`` statement in its turn; the row it returned, if any.

        The row is read before the turn ends: the statement, and its implicit transaction,
        is done only once its rows are read.
        """
        with self._turn.held():
            rows = self._conn().execute(sql, tuple(args)).fetchall()
        return rows[0] if rows else None

    def _write_one(self, sql: str, args: Iterable[Any]) -> Task | None:
        row = self._returning(sql, args)
        return None if row is None else _row_to_task(row)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
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

    # -- reads -------------------------------------------------------------------------------

    def get(self, task_id: str, now: datetime) -> Task | None:
        return self._one(
            f"SELECT {COLUMNS} FROM tasks WHERE id = ? AND {VISIBLE}", (task_id, _ts(now))
        )

    def list(
        self, where: TaskFilter, *, offset: int, limit: int, now: datetime
    ) -> tuple[list[Task], int]:
        clauses: list[str] = []
        args: list[Any] = []
        if where.statuses:
            clauses.append(f"status IN ({', '.join('?' for _ in where.statuses)})")
            args.extend(s.value for s in where.statuses)
        if where.type is not None:
            clauses.append("type = ?")
            args.append(where.type)
        if where.owner is not None:
            clauses.append("owner = ?")
            args.append(where.owner)
        matching = " AND ".join(clauses) or "1"
        conn = self._conn()
        # Every match, less those expired and not purged yet: both counts use an index, and one
        # statement reads them from one snapshot.
        total = conn.execute(
            f"""SELECT (SELECT COUNT(*) FROM tasks WHERE {matching})
                    - (SELECT COUNT(*) FROM tasks INDEXED BY tasks_expiry
                       WHERE expires_at IS NOT NULL AND expires_at <= ? AND {matching})""",
            [*args, _ts(now), *args],
        ).fetchone()[0]
        rows = conn.execute(
            f"""SELECT {COLUMNS} FROM tasks WHERE {matching} AND {VISIBLE}
                ORDER BY seq DESC LIMIT ? OFFSET ?""",
            [*args, _ts(now), limit, offset],
        ).fetchall()
        return [_row_to_task(r) for r in rows], total

    def count_by_status(self, now: datetime) -> dict[Status, int]:
        # The trigger-kept rows, less the tasks expired and not purged yet (a minute's worth).
        rows = (
            self._conn()
            .execute(
                """SELECT status, task_counts.n - COALESCE(expired.n, 0) FROM task_counts
               LEFT JOIN (SELECT status, COUNT(*) AS n FROM tasks INDEXED BY tasks_expiry
                          WHERE expires_at IS NOT NULL AND expires_at <= ? GROUP BY status)
                   AS expired USING (status)""",
                (_ts(now),),
            )
            .fetchall()
        )
        return {Status(status): n for status, n in rows}

    def next_run_after(self) -> datetime | None:
        row = (
            self._conn()
            .execute("SELECT MIN(run_after) FROM tasks WHERE status = 'queued'")
            .fetchone()
        )
        return _dt(row[0])

    # -- writes ------------------------------------------------------------------------------

    def create(
        self,
        task: NewTask,
        *,
        max_queued: int | None = None,
        idempotency: IdempotencyKey | None = None,
    ) -> Task:
        if idempotency is None:
            # The usual submit: the bound and the insert in one statement, one commit.
            row = self._returning(_INSERT_IF_ROOM, (*_insert_args(task), max_queued, max_queued))
            if row is None:
                raise QueueFull()
            return _row_to_task(row)
        now = _ts(task.created_at)
        with self._write() as conn:
            row = conn.execute(
                """SELECT task_id, fingerprint, COALESCE(in_flight_until > ?, 0)
                   FROM idempotency_keys WHERE owner = ? AND key = ? AND expires_at > ?""",
                (now, idempotency.owner, idempotency.key, now),
            ).fetchone()
            if row is not None:
                raise KeyTaken(row[0], row[1], in_flight=bool(row[2]))
            row = conn.execute(
                _INSERT_IF_ROOM, (*_insert_args(task), max_queued, max_queued)
            ).fetchone()
            if row is None:
                raise QueueFull()
            conn.execute(
                """INSERT OR REPLACE INTO idempotency_keys
                   (owner, key, fingerprint, task_id, expires_at, in_flight_until)
                   VALUES (?, ?, ?, ?, ?, ?)""",
                (
                    idempotency.owner,
                    idempotency.key,
                    idempotency.fingerprint,
                    row["id"],
                    _ts(idempotency.expires_at),
                    _ts(idempotency.in_flight_until),
                ),
            )
        return _row_to_task(row)

    def settle_key(self, owner: str, key: str) -> None:
        self._changed(
            "UPDATE idempotency_keys SET in_flight_until = NULL WHERE owner = ? AND key = ?",
            (owner, key),
        )

    def claim(self, worker_id: str, now: datetime, lease_until: datetime) -> Task | None:
        return self._write_one(_CLAIM_SQL, _claim_args(worker_id, now, lease_until))

    def report_progress(self, task_id: str, worker_id: str, progress: Progress) -> bool | None:
        row = self._returning(
            """UPDATE tasks SET progress = ?, version = version + 1
               WHERE id = ? AND worker_id = ? AND status = 'running'
               RETURNING cancel_requested""",
            (
                progress_json(progress),
                task_id,
                worker_id,
            ),
        )
        return None if row is None else bool(row[0])

    def heartbeat(self, task_id: str, worker_id: str, lease_until: datetime) -> bool | None:
        row = self._returning(
            """UPDATE tasks SET lease_expires_at = ?
               WHERE id = ? AND worker_id = ? AND status = 'running'
               RETURNING cancel_requested""",
            (_ts(lease_until), task_id, worker_id),
        )
        return None if row is None else bool(row[0])

    def recover_expired(self, now: datetime, expires_at: datetime) -> Sequence[Recovered]:
        lost = "status = 'running' AND lease_expires_at < ?"
        released = """worker_id = NULL, lease_expires_at = NULL, version = version + 1,
            lost_attempts = lost_attempts + 1, lost_in_a_row = lost_in_a_row + 1"""
        taken = "RETURNING id, type, status"
        with self._write() as conn:
            rows = conn.execute(
                f"""UPDATE tasks SET status = 'cancelled', error = NULL, finished_at = ?,
                        expires_at = ?, {released}
                    WHERE {lost} AND cancel_requested = 1 {taken}""",
                (_ts(now), _ts(expires_at), _ts(now)),
            ).fetchall()
            rows += conn.execute(
                f"""UPDATE tasks SET status = 'failed', error = ?, finished_at = ?, expires_at = ?,
                        {released}
                    WHERE {lost} AND lost_in_a_row + 1 >= ? {taken}""",
                (WORKER_LOST_AGAIN, _ts(now), _ts(expires_at), _ts(now), MAX_LOST_ATTEMPTS),
            ).fetchall()
            rows += conn.execute(
                f"""UPDATE tasks SET status = 'queued', error = ?, run_after = ?, {released}
                    WHERE {lost} {taken}""",
                (WORKER_LOST, _ts(now), _ts(now)),
            ).fetchall()
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
            rows = conn.execute(_CLAIM_SQL, _claim_args(worker_id, now, lease_until)).fetchall()
        return done > 0, _row_to_task(rows[0]) if rows else None

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

    def retry(
        self,
        task_id: str,
        worker_id: str,
        error: TaskError,
        run_after: datetime,
        now: datetime,
        expires_at: datetime,
    ) -> Status | None:
        row = self._returning(
            f"""UPDATE tasks SET {_QUEUE_UNLESS_CANCELLED}, run_after = ?,
                    error = CASE WHEN cancel_requested = 1 THEN NULL ELSE ? END,
                    lost_in_a_row = 0,
                    worker_id = NULL, lease_expires_at = NULL, version = version + 1
                WHERE id = ? AND worker_id = ? AND status = 'running' RETURNING status""",
            (
                _ts(now),
                _ts(expires_at),
                _ts(run_after),
                error_json(error),
                task_id,
                worker_id,
            ),
        )
        return None if row is None else Status(row[0])

    def release(
        self, task_id: str, worker_id: str, now: datetime, expires_at: datetime
    ) -> Status | None:
        row = self._returning(
            f"""UPDATE tasks SET {_QUEUE_UNLESS_CANCELLED},
                    attempts = CASE WHEN cancel_requested = 1 THEN attempts
                        ELSE MAX(attempts - 1, 0) END,
                    started_at = CASE WHEN cancel_requested = 1 THEN started_at END,
                    error = CASE WHEN cancel_requested = 1 THEN NULL ELSE error END,
                    worker_id = NULL, lease_expires_at = NULL, version = version + 1
                WHERE id = ? AND worker_id = ? AND status = 'running' RETURNING status""",
            (_ts(now), _ts(expires_at), task_id, worker_id),
        )
        return None if row is None else Status(row[0])

    def cancel(self, task_id: str, now: datetime, expires_at: datetime) -> CancelResult | None:
        # One statement: a queued task is cancelled, a running one is asked to stop, whatever
        # moves it between the two (a retry, a recovery) in the meantime.
        changed = self._write_one(
            f"""UPDATE tasks SET cancel_requested = 1,
                    status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END,
                    error = CASE WHEN status = 'queued' THEN NULL ELSE error END,
                    finished_at = CASE WHEN status = 'queued' THEN ? ELSE finished_at END,
                    expires_at = CASE WHEN status = 'queued' THEN ? ELSE expires_at END,
                    version = version + 1
                WHERE id = ? AND (status = 'queued' OR (status = 'running'
                    AND cancel_requested = 0))
                RETURNING {COLUMNS}""",
            (_ts(now), _ts(expires_at), task_id),
        )
        if changed is not None:
            return CancelResult(changed, ended=changed.status is Status.CANCELLED)
        current = self.get(task_id, now)
        return None if current is None else CancelResult(current, ended=False)

    def delete(self, task_id: str, now: datetime) -> bool:
        return self._changed(
            f"DELETE FROM tasks WHERE id = ? AND status IN ({_TERMINAL_SQL}) AND {VISIBLE}",
            (task_id, _ts(now)),
        )

    def purge_expired(self, now: datetime, limit: int) -> tuple[int, int]:
        with self._write() as conn:
            return self._purge(conn, now, limit)

    def _purge(self, conn: sqlite3.Connection, now: datetime, limit: int) -> tuple[int, int]:
        keys = conn.execute(
            """DELETE FROM idempotency_keys WHERE rowid IN (
                   SELECT rowid FROM idempotency_keys WHERE expires_at <= ? LIMIT ?)""",
            (_ts(now), limit),
        ).rowcount
        tasks = conn.execute(
            f"""DELETE FROM tasks WHERE seq IN (
                    SELECT seq FROM tasks WHERE expires_at IS NOT NULL AND expires_at <= ?
                    AND status IN ({_TERMINAL_SQL}) LIMIT ?)""",
            (_ts(now), limit),
        ).rowcount
        return tasks, keys
