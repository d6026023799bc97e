"""The PostgreSQL store: several processes and machines share one queue.

Its verbs are SqlStore's; its statements are ``queries.sql`` beside this module, its schema
``migrations.sql``. What is PostgreSQL's own: a pool of connections shared by the threads,
an advisory lock that serialises bounded submits, an idempotency key taken by a concurrent
request found by its primary key, and ``NOTIFY taskapi_tasks`` whenever a task becomes ready,
so idle workers in other processes wake at once (api.wakeups.postgres listens); polling covers
a lost notification. JSON values are kept as text, exactly as the service wrote them (``jsonb``
would refuse a ``\\u0000`` that a client may legitimately send).

The schema may be chosen in the URL with libpq's options: ``?options=-csearch_path%3Dmyschema``.
"""

from __future__ import annotations

import contextlib
import json
import time
import weakref
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from api.models import IdempotencyKey, Status, Task
from api.store import Claim, Ending, KeyTaken, Settled, StoreError
from api.store.queries import load
from api.store.rows import task_from_row
from api.store.sql import Db, Ends, SqlStore

POOL_MAX_SIZE = 16
CONNECT_TIMEOUT_SECONDS = 10
#: Serialises migrations of one database, whichever process starts first.
MIGRATION_LOCK = 7_305_104_211
#: The statements of the store, by name.
QUERIES = load(__name__, "queries.sql")
#: Schema versions, applied in order; the table ``taskapi_schema`` records how many were.
MIGRATIONS: tuple[str, ...] = tuple(load(__name__, "migrations.sql", slots=False).values())


#: A connection back in the pool for longer than this is checked (a round trip) before use.
CHECK_AFTER_REST_SECONDS = 1.0
#: When each connection went back to the pool.
_returned: weakref.WeakKeyDictionary[psycopg.Connection[Any], float] = weakref.WeakKeyDictionary()


def _rested_from_now(conn: psycopg.Connection[Any]) -> None:
    _returned[conn] = time.monotonic()


def _check_after_rest(conn: psycopg.Connection[Any]) -> None:
    """The pool's check, skipped for a connection that was in use a moment ago.

    Checking every connection taken costs a round trip each time: a third of the worker's
    burn-down on PostgreSQL (2,700 tasks/s checked, 3,500 not). One back in the pool for less
    than CHECK_AFTER_REST_SECONDS was working then; should the server have dropped it since,
    the statement fails once, as any statement would in a failover.
    """
    returned = _returned.get(conn)
    if returned is None or time.monotonic() - returned > CHECK_AFTER_REST_SECONDS:
        ConnectionPool.check_connection(conn)


def _configure(conn: psycopg.Connection[Any]) -> None:
    """Each new connection: no JIT compilation. The claim's plan is estimated high (the
    planner cannot know how few rows each queue's LIMIT takes), and with PostgreSQL's default
    jit_above_cost every claim compiled itself first: 650 ms for a statement of 2 ms. The
    store runs only short statements, for which JIT never pays."""
    conn.execute("SET jit = off")


class PostgresStore(SqlStore):
    """A store in a PostgreSQL database, shared by every process that has its URL."""

    queries = QUERIES

    def __init__(self, url: str, *, max_size: int = POOL_MAX_SIZE) -> None:
        self.url = url
        try:
            self._pool = ConnectionPool(
                url,
                min_size=1,
                max_size=max_size,
                kwargs={"autocommit": True, "row_factory": dict_row},
                configure=_configure,
                # A connection the server dropped (restart, failover) is replaced, not used:
                # checked when it comes out of the pool after a rest, not after every use.
                check=_check_after_rest,
                reset=_rested_from_now,
                timeout=CONNECT_TIMEOUT_SECONDS,
                open=True,
            )
            self._pool.wait(CONNECT_TIMEOUT_SECONDS)
        except (psycopg.Error, Exception) as exc:
            self._close_quietly()
            raise StoreError(f"Cannot reach the PostgreSQL store: {exc}") from exc
        try:
            self._migrate()
        except BaseException:
            self._close_quietly()
            raise

    def _close_quietly(self) -> None:
        """Close the pool made so far (its threads go too) after a failed start."""
        pool = getattr(self, "_pool", None)
        if pool is not None:
            with contextlib.suppress(Exception):
                pool.close()

    @classmethod
    def from_url(cls, url: str) -> PostgresStore:
        """A store for a ``postgresql://`` (or ``postgres://``) URL."""
        return cls(url.replace("postgres://", "postgresql://", 1))

    # -- connections -------------------------------------------------------------------------

    def _reading(self) -> AbstractContextManager[psycopg.Connection[Any]]:
        return self._pool.connection()

    def _writing(self) -> AbstractContextManager[psycopg.Connection[Any]]:
        return self._pool.connection()  # in autocommit mode

    @contextmanager
    def _transaction(self) -> Iterator[psycopg.Connection[Any]]:
        with self._pool.connection() as conn, conn.transaction():
            yield conn

    def _migrate(self) -> None:
        with self._transaction() as conn:
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
        """Close the pool's connections."""
        self._pool.close()

    def detach_thread(self) -> None:
        """Nothing to do: connections belong to the pool, not to threads."""
        return None

    def ping(self) -> None:
        """Raise StoreError when the database does not answer."""
        try:
            with self._pool.connection() as conn:
                conn.execute("SELECT 1 FROM tasks LIMIT 1")
        except Exception as exc:
            raise StoreError(f"The PostgreSQL store does not answer: {exc}") from exc

    # -- the dialect -------------------------------------------------------------------------

    def _param(self, name: str) -> str:
        return f"%({name})s"

    def _names(self, names: Collection[str] | None) -> list[str] | None:
        return None if names is None else sorted(names)

    def _lock_queues(self, db: Db, claim: Claim) -> None:
        # A lock for each limited queue the claim may take, held until it commits: the
        # claim statement that follows counts their running tasks from a snapshot taken
        # after the lock.
        args = {"queues": self._names(claim.queues), "now": claim.now}
        db.execute(self.queries["lock_limited_queues"], args)

    def _status_in(self, statuses: Sequence[Status]) -> tuple[str, dict[str, Any]]:
        return "status = ANY(%(statuses)s)", {"statuses": [s.value for s in statuses]}

    def _has_room(self, db: Db, max_queued: int | None, count: int | None = None) -> bool:
        if max_queued is None:
            return True
        db.execute(self.queries["lock_queue"])
        row = db.execute(self.queries["count_queued"], {"max_queued": max_queued}).fetchone()
        return not (row and row["n"] + (count or 1) > max_queued)

    def _record_rows(self, db: Any, args: Sequence[Mapping[str, Any]]) -> list[Any]:
        # One executemany: psycopg pipelines its statements, one round trip for them all.
        cur = db.cursor()
        cur.executemany(self.queries["record_delivery"], args, returning=True)
        rows: list[Any] = []
        while True:
            rows.append(cur.fetchone())
            if not cur.nextset():
                return rows

    def _deadlocked(self, exc: Exception) -> bool:
        return isinstance(exc, psycopg.errors.DeadlockDetected)

    def _mark_dependencies(self, db: Db, args: Mapping[str, Any]) -> list[Any]:
        # Marked (a write: row locks) in one statement, then share-locked in another.
        db.execute(self.queries["mark_dependencies"], args).fetchall()
        return db.execute(self.queries["share_dependencies"], args).fetchall()

    def _json_rows(self, rows: list[list[Any]]) -> str:
        # Times as ISO 8601 text, which the statements cast to timestamptz.
        return json.dumps(rows, separators=(",", ":"), default=datetime.isoformat)

    def _put_key(self, db: Db, args: Mapping[str, Any]) -> None:
        db.execute(self.queries["drop_expired_key"], args)
        db.execute(self.queries["take_key"], args)

    def _key_race(self, exc: Exception, key: IdempotencyKey) -> KeyTaken | None:
        if not isinstance(exc, psycopg.errors.UniqueViolation):
            return None
        if exc.diag.constraint_name != "idempotency_keys_pkey":
            return None
        # A concurrent request took the same key first: answer as if it had come earlier.
        with self._reading() as db:
            row = db.execute(self.queries["key_holder"], {"owner": key.owner, "key": key.key})
            holder = row.fetchone()
        assert holder is not None  # the unique key that refused us belongs to a committed row
        return KeyTaken(holder["task_id"], holder["fingerprint"], in_flight=True)

    def _task(self, row: dict[str, Any]) -> Task:
        return task_from_row(tuple(row.values()), self._time_of)

    def _announce(self, db: Db) -> None:
        db.execute(self.queries["notify"])

    def complete(
        self, endings: Sequence[Ending], *, claim: Claim | None = None
    ) -> tuple[list[Status | None], list[Task]]:
        """SqlStore's, in two round trips: the endings (each group of one statement sent as
        one ``executemany``) and the claim are pipelined; then, only if an ended task has
        dependants, what its end does to them (a few statements more); then the COMMIT."""
        if not endings and (claim is None or claim.limit <= 0):
            return [], []
        writes = [self._ending_args(ending) for ending in endings]
        by_query: dict[str, list[int]] = {}
        # In the order of their ids, as a submit locks the tasks it depends on: two
        # transactions that lock the same rows in one order never wait on each other in a
        # circle.
        for n in sorted(range(len(writes)), key=lambda n: endings[n].task_id):
            by_query.setdefault(writes[n][0], []).append(n)
        sent: list[tuple[psycopg.Cursor[Any], list[int]]] = []
        claimed: psycopg.Cursor[Any] | None = None
        settled = Settled()
        with self._pool.connection() as conn:
            # BEGIN as a statement of the pipeline: psycopg's transaction() would sync (wait
            # for the server) at its start.
            try:
                with conn.pipeline():
                    conn.execute("BEGIN")
                    for query, numbers in by_query.items():
                        cur = conn.cursor()
                        args = [writes[n][1] for n in numbers]
                        cur.executemany(self.queries[query], args, returning=True)
                        sent.append((cur, numbers))
                    if claim is not None and claim.limit > 0:
                        self._lock_queues(conn, claim)
                        claimed = conn.execute(self.queries["claim"], self._claim_args(claim))
                    if "retry" in by_query:  # a retry may queue its task again
                        self._announce(conn)
                statuses: list[Status | None] = [None] * len(writes)
                ends = Ends()
                for cur, numbers in sent:
                    for n in numbers:
                        row: Any = cur.fetchone()  # a dict: the pool's row factory
                        if row is not None:
                            statuses[n] = Status(row["status"])
                            ends.add(endings[n].task_id, statuses[n], row["dependants"])
                        cur.nextset()
                rows = claimed.fetchall() if claimed is not None else []
                if ends:
                    settled = self._settle(conn, ends, endings[0].now)
                conn.execute("COMMIT")
            except BaseException:
                if conn.info.transaction_status != TransactionStatus.IDLE:
                    conn.execute("ROLLBACK")
                raise
        self._report(settled)
        return statuses, self._claimed(rows)
