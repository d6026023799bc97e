"""One store over SQL: every verb written once, for the backends to give it their dialect.

A backend subclasses SqlStore with its named queries (a ``queries.sql`` beside it, the same
names in each), its connections, and the few things that truly differ between databases,
each a small method: how a time is written and read, how a parameter is spelled, whether a
bounded submit must lock the queue first, how an idempotency key is taken, and how other
processes hear of a new ready task. The Python of each verb (its arguments, its
transaction, the mapping of its rows) lives here only.

Connections come in three kinds, each a context manager: ``_reading`` for reads,
``_writing`` for single writing statements (each commits on its own), and ``_transaction``
for several statements that commit together.
"""

from __future__ import annotations

import builtins
import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Protocol, TypeVar

from api.models import (
    DEFAULT_QUEUE,
    MAX_LOST_ATTEMPTS,
    Batch,
    Delivery,
    FireOutcome,
    IdempotencyKey,
    NewBatch,
    NewTask,
    Progress,
    QueueState,
    Schedule,
    ScheduleSpec,
    Status,
    Task,
)
from api.store import (
    CancelResult,
    Claim,
    DeliveryAttempt,
    DeliveryJob,
    Ending,
    Fire,
    KeyTaken,
    QueueFull,
    Recovered,
    Settled,
    TaskFilter,
    UnknownDependencies,
)
from api.store.rows import (
    WORKER_LOST,
    WORKER_LOST_AGAIN,
    delivery_from_row,
    dumps,
    error_json,
    finish_values,
    progress_json,
    schedule_from_row,
    task_from_row,
)

log = logging.getLogger(__name__)

#: A row, read by column name (sqlite3.Row, psycopg's dict rows).
Row = Any

#: A status by its column value, without the enum's call.
_STATUS: dict[str, Status] = {status.value: status for status in Status}


def _claim_order(row: Row) -> tuple[Any, ...]:
    """The order claims take ready tasks in: highest priority, earliest ready, first in."""
    return (-row["priority"], row["run_after"], row["seq"])


_T = TypeVar("_T")

#: How many times a submit that depends on tasks is tried when the database aborts it to break
#: a deadlock.
SUBMIT_ATTEMPTS = 3

#: The statuses of a dependency that end its dependants (cancelled, DependencyFailed).
_DOOMING = frozenset({Status.FAILED, Status.CANCELLED})


class Ends:
    """The tasks a transaction ended, gathered for ``SqlStore._settle``: only those that
    some task waits for (their ``dependants`` column) matter."""

    __slots__ = ("doomed", "succeeded")

    def __init__(self) -> None:
        self.succeeded: list[str] = []
        self.doomed: list[str] = []

    def add(self, task_id: str, status: Status | None, dependants: Any) -> None:
        """``task_id`` ended ``status`` (None: its write did not apply); ``dependants``:
        whether tasks wait for it."""
        if not dependants or status is None:
            return
        if status is Status.SUCCEEDED:
            self.succeeded.append(task_id)
        elif status in _DOOMING:
            self.doomed.append(task_id)

    def __bool__(self) -> bool:
        return bool(self.succeeded or self.doomed)


class _NoSuchSchedule(Exception):
    """A trigger found no schedule: its transaction is rolled back."""


class Cursor(Protocol):
    """What the store reads of a statement's cursor."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Db(Protocol):
    """A connection, as the verbs use it: sqlite3's and psycopg's alike."""

    def execute(self, sql: str, params: Mapping[str, Any] = ..., /) -> Cursor: ...


class SqlStore(ABC):
    """The Store protocol over SQL; a subclass supplies the dialect."""

    #: The backend's statements by name (api.store.queries.load).
    queries: Mapping[str, str]
    #: Told what the end of tasks did to their dependants (``on_settled``).
    _settled_callbacks: tuple[Callable[[Settled], None], ...] = ()

    def on_settled(self, callback: Callable[[Settled], None]) -> None:
        self._settled_callbacks = (*self._settled_callbacks, callback)

    # -- the dialect --------------------------------------------------------------------------

    @abstractmethod
    def _reading(self) -> AbstractContextManager[Db]:
        """A connection to read with."""

    @abstractmethod
    def _writing(self) -> AbstractContextManager[Db]:
        """A connection for writing statements, each committed on its own."""

    @abstractmethod
    def _transaction(self) -> AbstractContextManager[Db]:
        """A connection in a write transaction, committed at the end unless it raised."""

    @abstractmethod
    def _param(self, name: str) -> str:
        """The placeholder of the parameter ``name`` in this dialect's SQL."""

    @abstractmethod
    def _status_in(self, statuses: Sequence[Status]) -> tuple[str, dict[str, Any]]:
        """A condition that a task's status is one of ``statuses``, and its parameters."""

    @abstractmethod
    def _names(self, names: Collection[str] | None) -> Any:
        """A list of names as this dialect's parameter (None stays None)."""

    def _lock_queues(self, db: Db, claim: Claim) -> None:
        """Before a claim, in its transaction: make sure that no other claim counts the room
        of the same limited queue at once. By default the claim statement sees to it itself
        (a backend that runs one writer at a time)."""
        return None

    def _submitting(self, keyed: bool) -> AbstractContextManager[Db]:
        """Where ``create`` writes (``keyed``: it takes an idempotency key too)."""
        return self._transaction()

    def _time(self, value: datetime | None) -> Any:
        """A time as this dialect's parameter."""
        return value

    def _time_of(self, value: Any) -> datetime | None:
        """A time as this dialect's column holds it, as a datetime."""
        return value

    def _has_room(self, db: Db, max_queued: int | None, count: int | None = None) -> bool:
        """Whether the queue may take ``count`` more tasks (a batch's), or one more (None).
        By default ``insert_task`` sees to the one itself (and returns no row when it may
        not); a batch counts first."""
        if max_queued is None or count is None:
            return True
        row = self._first(db, "queued_total", {})
        return row is not None and row["n"] + count <= max_queued

    def _put_key(self, db: Db, args: Mapping[str, Any]) -> None:
        """Store the idempotency key of ``args``, once ``find_key`` found none live."""
        db.execute(self.queries["take_key"], args)

    def _key_race(self, exc: Exception, key: IdempotencyKey) -> KeyTaken | None:
        """What to raise when ``create`` failed with ``exc`` because a concurrent request
        took ``key`` first; None when ``exc`` is no such thing."""
        return None

    def _announce(self, db: Db) -> None:
        """A task became ready: tell the workers of other processes, if this dialect can."""
        return None

    def _read_one(self, query: str, args: Mapping[str, Any]) -> Row | None:
        """The first row of the read ``query``, or None."""
        with self._reading() as db:
            return db.execute(self.queries[query], args).fetchone()

    def _first(self, db: Db, query: str, args: Mapping[str, Any]) -> Row | None:
        """The first row of ``query`` run in ``db``, or None; every row is read, so that a
        writing statement is done before the next one."""
        rows = db.execute(self.queries[query], args).fetchall()
        return rows[0] if rows else None

    def _task(self, row: Row) -> Task:
        return task_from_row(row, self._time_of)

    # -- reads --------------------------------------------------------------------------------

    def get(self, task_id: str, now: datetime) -> Task | None:
        row = self._read_one("get", {"id": task_id, "now": self._time(now)})
        return None if row is None else self._task(row)

    def list(
        self, where: TaskFilter, *, offset: int, limit: int, now: datetime
    ) -> tuple[list[Task], int]:
        clauses: list[str] = []
        args: dict[str, Any] = {"now": self._time(now), "limit": limit, "offset": offset}
        if where.statuses:
            clause, values = self._status_in(where.statuses)
            clauses.append(clause)
            args.update(values)
        if where.type is not None:
            clauses.append(f"type = {self._param('type')}")
            args["type"] = where.type
        if where.queue is not None:
            clauses.append(f"queue = {self._param('queue')}")
            args["queue"] = where.queue
        if where.schedule is not None:
            clauses.append(f"schedule = {self._param('schedule')}")
            args["schedule"] = where.schedule
        if where.batch is not None:
            clauses.append(f"batch_id = {self._param('batch')}")
            args["batch"] = where.batch
        if where.owner is not None:
            clauses.append(f"owner = {self._param('owner')}")
            args["owner"] = where.owner
        matching = " AND ".join(clauses) or "TRUE"
        with self._reading() as db:
            total = db.execute(
                self.queries["list_total"].replace("{matching}", matching), args
            ).fetchone()
            rows = db.execute(
                self.queries["list_page"].replace("{matching}", matching), args
            ).fetchall()
        return [self._task(row) for row in rows], total["n"] if total else 0

    def count_by_status(self, now: datetime) -> dict[Status, int]:
        with self._reading() as db:
            rows = db.execute(self.queries["count_by_status"], {"now": self._time(now)})
            counted = dict.fromkeys(Status, 0)
            for row in rows.fetchall():
                counted[Status(row["status"])] += row["n"]
        return counted

    def next_run_after(
        self, after: datetime | None = None, *, queues: Collection[str] | None = None
    ) -> datetime | None:
        args = {"after": self._time(after), "queues": self._names(queues)}
        row = self._read_one("next_run_after", args)
        return None if row is None else self._time_of(row["due"])

    # -- queues -------------------------------------------------------------------------------

    def queues(self, now: datetime) -> builtins.list[QueueState]:
        return self._queue_states(None, now)

    def queue(self, name: str, now: datetime) -> QueueState | None:
        found = self._queue_states(name, now)
        return found[0] if found else None

    def _queue_states(self, name: str | None, now: datetime) -> builtins.list[QueueState]:
        """The queues (of ``name`` only, unless None) with tasks or settings; ``default``
        always when every queue is asked for."""
        args = {"name": name, "now": self._time(now)}
        counts: dict[str, dict[Status, int]] = {}
        with self._reading() as db:
            for row in db.execute(self.queries["queue_counts"], args).fetchall():
                if row["n"]:
                    by_status = counts.setdefault(row["queue"], dict.fromkeys(Status, 0))
                    by_status[_STATUS[row["status"]]] += row["n"]
            settings = {
                row["name"]: (bool(row["paused"]), row["concurrency"])
                for row in db.execute(self.queries["queue_settings"], args).fetchall()
            }
            oldest = {
                row["name"]: self._time_of(row["oldest"])
                for row in db.execute(self.queries["queue_oldest"], args).fetchall()
            }
        names = set(counts) | set(settings)
        if name is None:
            names.add(DEFAULT_QUEUE)
        states = []
        for queue in sorted(names):
            paused, concurrency = settings.get(queue, (False, None))
            due = oldest.get(queue)
            states.append(
                QueueState(
                    queue,
                    paused,
                    concurrency,
                    counts.get(queue) or dict.fromkeys(Status, 0),
                    due if due is not None and due <= now else None,
                )
            )
        return states

    def update_queue(self, name: str, changes: Mapping[str, Any]) -> None:
        unknown = set(changes) - {"paused", "concurrency"}
        if unknown:
            raise ValueError(f"unknown queue settings: {sorted(unknown)}")
        args = {
            "name": name,
            "paused": changes.get("paused"),
            "concurrency": changes.get("concurrency"),
            "set_paused": "paused" in changes,
            "set_concurrency": "concurrency" in changes,
        }
        with self._writing() as db:
            db.execute(self.queries["update_queue"], args)
            self._announce(db)

    # -- submits ------------------------------------------------------------------------------

    def create(
        self,
        task: NewTask,
        *,
        max_queued: int | None = None,
        idempotency: IdempotencyKey | None = None,
    ) -> Task:
        if task.depends_on:
            return self._create_waiting(task, max_queued, idempotency)
        args = self._task_args(task, max_queued)
        try:
            with self._submitting(keyed=idempotency is not None) as db:
                if idempotency is not None:
                    self._take_key(db, idempotency, task.id, task.created_at)
                if not self._has_room(db, max_queued):
                    raise QueueFull()
                rows = db.execute(self.queries["insert_task"], args).fetchall()
                if not rows:
                    raise QueueFull()
                self._announce(db)
        except Exception as exc:
            raise self._refusal(exc, idempotency) from None
        return self._task(rows[0])

    def _refusal(self, exc: Exception, key: IdempotencyKey | None) -> Exception:
        """What a submit that failed with ``exc`` raises: KeyTaken if a concurrent request
        took ``key`` first, else ``exc`` itself."""
        taken = None if key is None else self._key_race(exc, key)
        return exc if taken is None else taken

    def _create_waiting(
        self, task: NewTask, max_queued: int | None, idempotency: IdempotencyKey | None
    ) -> Task:
        """``create`` of a task with dependencies: a transaction of a few statements."""

        def submit(db: Db) -> tuple[Row, Settled]:
            if idempotency is not None:
                self._take_key(db, idempotency, task.id, task.created_at)
            (blocked,), doomed = self._dependencies(db, [task])
            if not self._has_room(db, max_queued):
                raise QueueFull()
            args = self._task_args(task, max_queued, blocked)
            if not db.execute(self.queries["insert_task"], args).fetchall():
                raise QueueFull()
            settled = self._wait(db, [(task.id, blocked)], doomed, task.created_at)
            if not blocked:
                self._announce(db)
            return self._first(
                db, "get", {"id": task.id, "now": self._time(task.created_at)}
            ), settled

        row, settled = self._submit(submit, idempotency)
        self._report(settled)
        return self._task(row)

    def _submit(self, work: Callable[[Db], _T], idempotency: IdempotencyKey | None) -> _T:
        """``work`` in a write transaction, for a submit that locks the tasks it depends on:
        run again (SUBMIT_ATTEMPTS in all) when the database broke a deadlock by aborting it,
        which on PostgreSQL a cancel down a chain may meet; its refusals as ``_refusal``."""
        for attempt in range(1, SUBMIT_ATTEMPTS + 1):
            try:
                with self._transaction() as db:
                    return work(db)
            except Exception as exc:
                if attempt < SUBMIT_ATTEMPTS and self._deadlocked(exc):
                    continue
                raise self._refusal(exc, idempotency) from None
        raise AssertionError("unreachable")  # the last attempt returned or raised

    def _deadlocked(self, exc: Exception) -> bool:
        """Whether ``exc`` is the database aborting a transaction to break a deadlock (it
        wrote nothing: it may run again). None by default (one writer at a time)."""
        return False

    def _dependencies(
        self, db: Db, tasks: Sequence[NewTask]
    ) -> tuple[builtins.list[tuple[str, ...]], builtins.list[str]]:
        """Check and mark the dependencies of ``tasks`` (all of one owner, submitted at
        once): what each must wait for (its dependencies that have not succeeded, in its
        order), and those that ended failed or cancelled already. Raises
        UnknownDependencies for any that is not a live task of the owner.

        Marking a dependency writes it: on PostgreSQL its row stays locked until the submit
        commits, so it cannot end meanwhile unseen (its end waits, then sees this task)."""
        first = tasks[0]
        wanted = sorted({dep for task in tasks for dep in task.depends_on})
        args = {
            "ids": self._names(wanted),
            "owner": first.owner,
            "now": self._time(first.created_at),
        }
        found = {row["id"]: _STATUS[row["status"]] for row in self._mark_dependencies(db, args)}
        missing = {
            n: unknown
            for n, task in enumerate(tasks)
            if (unknown := [dep for dep in task.depends_on if dep not in found])
        }
        if missing:
            raise UnknownDependencies(missing)
        blocked = [
            tuple(dep for dep in task.depends_on if found[dep] is not Status.SUCCEEDED)
            for task in tasks
        ]
        return blocked, [dep for dep, status in found.items() if status in _DOOMING]

    def _mark_dependencies(self, db: Db, args: Mapping[str, Any]) -> builtins.list[Row]:
        """Mark the dependencies of ``args`` as waited for, and hold them until the submit
        commits: their rows (id, status). By default one statement (a backend that runs one
        writer at a time)."""
        return db.execute(self.queries["mark_dependencies"], args).fetchall()

    def _wait(
        self,
        db: Db,
        waiting: Sequence[tuple[str, Sequence[str]]],
        doomed: Sequence[str],
        now: datetime,
    ) -> Settled:
        """Record what new tasks wait for (``waiting``: each one's id and blocked_by); those
        that wait for a task that ended failed or cancelled (``doomed``) end cancelled."""
        edges = [[dep, task_id] for task_id, blocked in waiting for dep in blocked]
        if edges:
            db.execute(self.queries["insert_waits"], {"edges": self._json_rows(edges)})
        if not doomed:
            return Settled()
        ends = Ends()
        ends.doomed.extend(doomed)
        return self._settle(db, ends, now)

    def _json_rows(self, rows: builtins.list[builtins.list[Any]]) -> Any:
        """Rows as one parameter of this dialect (a JSON list of lists)."""
        return dumps(rows)

    def _task_args(
        self, task: NewTask, max_queued: int | None, blocked: Sequence[str] = ()
    ) -> dict[str, Any]:
        """The arguments of ``insert_task`` for ``task`` (waiting for ``blocked``)."""
        return {
            "id": task.id,
            "type": task.type,
            "params": dumps(task.params),
            "max_attempts": task.max_attempts,
            "timeout_seconds": task.timeout_seconds,
            "priority": task.priority,
            "created_at": self._time(task.created_at),
            "run_after": self._time(task.run_after),
            "owner": task.owner,
            "queue": task.queue,
            "schedule": task.schedule,
            "scheduled_for": self._time(task.scheduled_for),
            "retry_of": task.retry_of,
            "batch_id": task.batch_id,
            "depends_on": dumps(task.depends_on) if task.depends_on else None,
            "blocked_by": dumps(blocked) if blocked else None,
            "callback_url": task.callback_url,
            "max_queued": max_queued,
        }

    def _insert(self, db: Db, task: NewTask, max_queued: int | None) -> Row | None:
        """Insert ``task`` in ``db``'s transaction: its row, None when the queue is full."""
        if not self._has_room(db, max_queued):
            return None
        rows = db.execute(self.queries["insert_task"], self._task_args(task, max_queued))
        found = rows.fetchall()  # all of them: the statement is done once they are read
        return found[0] if found else None

    def _take_key(self, db: Db, key: IdempotencyKey, made_id: str, now: datetime) -> None:
        """Take ``key`` for what the request makes (a task, or a batch: ``made_id``)."""
        args = {
            "owner": key.owner,
            "key": key.key,
            "now": self._time(now),
            "fingerprint": key.fingerprint,
            "task_id": made_id,
            "expires_at": self._time(key.expires_at),
            "in_flight_until": self._time(key.in_flight_until),
        }
        row = db.execute(self.queries["find_key"], args).fetchone()
        if row is not None:
            raise KeyTaken(row["task_id"], row["fingerprint"], in_flight=bool(row["busy"]))
        self._put_key(db, args)

    def settle_key(self, owner: str, key: str) -> None:
        with self._writing() as db:
            db.execute(self.queries["settle_key"], {"owner": owner, "key": key})

    # -- batches ------------------------------------------------------------------------------

    def create_batch(
        self,
        batch: NewBatch,
        *,
        max_queued: int | None = None,
        idempotency: IdempotencyKey | None = None,
    ) -> Batch:
        tasks = batch.tasks
        if not tasks:
            raise ValueError("a batch has at least one task")
        waiting = any(task.depends_on for task in tasks)
        # Rows made before the write turn is taken (a waiting task's need its dependencies).
        rows = None if waiting else [self._batch_row(task, ()) for task in tasks]

        def submit(db: Db) -> Settled:
            if idempotency is not None:
                self._take_key(db, idempotency, batch.id, batch.created_at)
            blocked, doomed = self._dependencies(db, tasks) if waiting else ([()] * len(tasks), [])
            if not self._has_room(db, max_queued, len(tasks)):
                raise QueueFull()
            made = rows or [
                self._batch_row(task, task_blocked)
                for task, task_blocked in zip(tasks, blocked, strict=True)
            ]
            self._insert_rows(db, tasks, made)
            db.execute(
                self.queries["insert_batch"],
                {
                    "id": batch.id,
                    "owner": batch.owner,
                    "task_ids": dumps([task.id for task in tasks]),
                    "created_at": self._time(batch.created_at),
                },
            )
            waits = [(t.id, b) for t, b in zip(tasks, blocked, strict=True) if b]
            settled = self._wait(db, waits, doomed, batch.created_at)
            if len(waits) < len(tasks):
                self._announce(db)
            return settled

        settled = self._submit(submit, idempotency)
        self._report(settled)
        found = self.batch(batch.id, batch.created_at)
        assert found is not None  # committed just now, with tasks not yet expired
        return found

    def _insert_rows(
        self, db: Db, tasks: Sequence[NewTask], rows: builtins.list[builtins.list[Any]]
    ) -> None:
        """Insert a batch's ``tasks`` (as ``rows`` of ``_batch_row``) in one statement."""
        db.execute(self.queries["insert_tasks"], {"rows": self._json_rows(rows)})

    def _batch_row(self, task: NewTask, blocked: Sequence[str]) -> builtins.list[Any]:
        """A row of ``insert_tasks``: the columns in its order, JSON text where they hold it."""
        time = self._time
        return [
            task.id,
            task.type,
            dumps(task.params),
            task.max_attempts,
            task.timeout_seconds,
            task.priority,
            time(task.created_at),
            time(task.run_after),
            task.owner,
            task.queue,
            task.schedule,
            time(task.scheduled_for),
            task.retry_of,
            task.batch_id,
            dumps(task.depends_on) if task.depends_on else None,
            dumps(blocked) if blocked else None,
            task.callback_url,
        ]

    def batch(self, batch_id: str, now: datetime) -> Batch | None:
        with self._reading() as db:
            row = db.execute(self.queries["get_batch"], {"id": batch_id}).fetchone()
            if row is None:
                return None
            args = {"id": batch_id, "now": self._time(now)}
            counted = db.execute(self.queries["batch_counts"], args).fetchall()
        if not counted:  # every task of it is gone: so is the batch
            return None
        counts = dict.fromkeys(Status, 0)
        versions = 0
        finished: datetime | None = None
        for by_status in counted:
            counts[_STATUS[by_status["status"]]] = by_status["n"]
            versions += int(by_status["versions"])
            last = self._time_of(by_status["finished"])
            if last is not None and (finished is None or last > finished):
                finished = last
        done = not (counts[Status.QUEUED] or counts[Status.RUNNING])
        return Batch(
            id=row["id"],
            owner=row["owner"],
            task_ids=tuple(json.loads(row["task_ids"])),
            counts=counts,
            created_at=self._time_of(row["created_at"]),  # type: ignore[arg-type]
            finished_at=finished if done else None,
            members_version=versions,
        )

    def cancel_batch(
        self, batch_id: str, now: datetime, expires_at: datetime
    ) -> builtins.list[Task]:
        args = {"id": batch_id, "now": self._time(now), "expires_at": self._time(expires_at)}
        with self._transaction() as db:
            rows = db.execute(self.queries["cancel_batch"], args).fetchall()
            changed = [self._task(row) for row in rows]
            ends = Ends()
            for task, row in zip(changed, rows, strict=True):
                ends.add(task.id, task.status, row["dependants"])
            settled = self._settle(db, ends, now)
        self._report(settled)
        return changed

    # -- what an end does to the tasks that wait for it --------------------------------------

    def _settle(self, db: Db, ends: Ends, now: datetime) -> Settled:
        """In the transaction of ``ends``: free the dependants of the tasks that succeeded,
        cancel (down their chains) those of the tasks that failed or were cancelled, and
        drop what they waited for.

        The cancel goes one step of the chain per statement: on PostgreSQL a statement reads
        the waits as they were when it began, and a step may first wait for the lock of a
        submit that adds a wait on the very task it cancels; the next step begins after it,
        and finds that wait."""
        if not ends:
            return Settled()
        ready: list[str] = []
        cancelled: list[tuple[str, str, str, str | None]] = []
        if ends.succeeded:
            args = {"ids": self._names(ends.succeeded)}
            for row in db.execute(self.queries["free_dependants"], args).fetchall():
                if row["ready"]:
                    ready.append(row["id"])
            db.execute(self.queries["drop_waits"], args)
        step = ends.doomed
        while step:
            args = {"ids": self._names(step), "now": self._time(now)}
            rows = db.execute(self.queries["cancel_dependants"], args).fetchall()
            db.execute(self.queries["drop_waits"], args)
            cancelled += [(row["id"], row["type"], row["queue"], row["batch_id"]) for row in rows]
            step = [row["id"] for row in rows if row["dependants"]]
        if ready:
            self._announce(db)
        return Settled(cancelled=cancelled, ready=ready)

    def _report(self, settled: Settled) -> None:
        """Tell ``on_settled``'s callbacks (after the commit); their errors are logged only:
        the write is done."""
        if not (settled.cancelled or settled.ready):
            return
        for callback in self._settled_callbacks:
            try:
                callback(settled)
            except Exception:
                log.exception("reporting the dependants of ended tasks failed")

    # -- schedules ----------------------------------------------------------------------------

    def _schedule(self, row: Row) -> Schedule:
        return schedule_from_row(row, self._time_of)

    def put_schedule(
        self,
        owner: str,
        name: str,
        spec: ScheduleSpec,
        next_run_at: datetime | None,
        now: datetime,
    ) -> tuple[Schedule, bool]:
        args = {
            "owner": owner,
            "name": name,
            "cron": spec.cron,
            "every_seconds": spec.every_seconds,
            "timezone": spec.timezone,
            "task": dumps(spec.task),
            "paused": spec.paused,
            "overlap": spec.overlap.value,
            "catch_up": spec.catch_up.value,
            "next_run_at": self._time(None if spec.paused else next_run_at),
            "now": self._time(now),
        }
        with self._writing() as db:
            row = db.execute(self.queries["put_schedule"], args).fetchone()
        schedule = self._schedule(row)
        return schedule, schedule.version == 1

    def schedule(self, owner: str, name: str) -> Schedule | None:
        row = self._read_one("get_schedule", {"owner": owner, "name": name})
        return None if row is None else self._schedule(row)

    def schedules(
        self, owner: str | None, *, offset: int, limit: int
    ) -> tuple[builtins.list[Schedule], int]:
        args = {"owner": owner, "offset": offset, "limit": limit}
        # One owner's by their key; every owner's (operators, tests) in a statement of its own.
        page = "schedules_page" if owner is not None else "schedules_page_all"
        with self._reading() as db:
            total = db.execute(self.queries["schedules_total"], args).fetchone()
            rows = db.execute(self.queries[page], args).fetchall()
        return [self._schedule(row) for row in rows], total["n"] if total else 0

    def delete_schedule(self, owner: str, name: str) -> bool:
        with self._transaction() as db:
            args = {"owner": owner, "name": name}
            deleted = db.execute(self.queries["delete_schedule"], args).rowcount > 0
            db.execute(self.queries["delete_fires"], args)
        return deleted

    def due_schedules(self, now: datetime, limit: int) -> builtins.list[Schedule]:
        with self._reading() as db:
            args = {"now": self._time(now), "limit": limit}
            rows = db.execute(self.queries["due_schedules"], args).fetchall()
        return [self._schedule(row) for row in rows]

    def next_schedule_at(self) -> datetime | None:
        row = self._read_one("next_schedule_at", {})
        return None if row is None else self._time_of(row["due"])

    def fire_schedule(self, fire: Fire) -> tuple[FireOutcome, Task | None]:
        key = {"owner": fire.owner, "name": fire.name, "fire_at": self._time(fire.fire_at)}
        with self._transaction() as db:
            advanced = self._first(
                db,
                "advance_schedule",
                {
                    "owner": fire.owner,
                    "name": fire.name,
                    "version": fire.version,
                    "due": self._time(fire.due),
                    "next_run_at": self._time(fire.next_run_at),
                },
            )
            if advanced is None:
                return FireOutcome.TAKEN, None
            outcome = self._fire_outcome(db, fire, advanced["last_task_id"])
            made = None if outcome is not FireOutcome.MADE or fire.task is None else fire.task
            recorded = self._first(
                db,
                "record_fire",
                {**key, "outcome": outcome.value, "task_id": made.id if made else None},
            )
            if recorded is None:  # this fire time was made already (by a schedule replaced since)
                return FireOutcome.TAKEN, None
            if made is None:
                return outcome, None
            row = self._insert(db, made, fire.max_queued)
            if row is None:
                db.execute(
                    self.queries["set_fire_outcome"],
                    {**key, "outcome": FireOutcome.QUEUE_FULL.value},
                )
                return FireOutcome.QUEUE_FULL, None
            ran = {"owner": fire.owner, "name": fire.name, "task_id": made.id}
            self._first(db, "schedule_ran", {**ran, "run_at": self._time(made.created_at)})
            self._announce(db)
        return FireOutcome.MADE, self._task(row)

    def _fire_outcome(self, db: Db, fire: Fire, last_task_id: str | None) -> FireOutcome:
        """What a fire that applies comes to, before its task is inserted."""
        if fire.skip is not None:
            return fire.skip
        if fire.skip_if_busy and last_task_id is not None:
            busy = self._first(db, "task_busy", {"id": last_task_id})
            if busy is not None:
                return FireOutcome.OVERLAP
        return FireOutcome.MADE

    def trigger_schedule(
        self, owner: str, name: str, task: NewTask, *, max_queued: int | None = None
    ) -> Task | None:
        args = {
            "owner": owner,
            "name": name,
            "run_at": self._time(task.created_at),
            "task_id": task.id,
        }
        try:
            with self._transaction() as db:
                if self._first(db, "schedule_ran", args) is None:
                    raise _NoSuchSchedule()
                row = self._insert(db, task, max_queued)
                if row is None:
                    raise QueueFull()
                self._announce(db)
        except _NoSuchSchedule:
            return None
        return self._task(row)

    # -- a worker's verbs ---------------------------------------------------------------------

    def claim_many(
        self,
        worker_id: str,
        limit: int,
        now: datetime,
        lease_until: datetime,
        *,
        queues: Collection[str] | None = None,
    ) -> builtins.list[Task]:
        # A claim reads the queues' rooms and then claims: a transaction, as with endings.
        return self.complete([], claim=Claim(worker_id, limit, now, lease_until, queues))[1]

    def _claim(self, db: Db, claim: Claim) -> builtins.list[Row]:
        self._lock_queues(db, claim)
        # All of them: the statement is done once they are read.
        return db.execute(self.queries["claim"], self._claim_args(claim)).fetchall()

    def _claim_args(self, claim: Claim) -> dict[str, Any]:
        return {
            "now": self._time(claim.now),
            "worker_id": claim.worker_id,
            "lease_until": self._time(claim.lease_until),
            "limit": claim.limit,
            "queues": self._names(claim.queues),
        }

    def _claimed(self, rows: builtins.list[Row]) -> builtins.list[Task]:
        """The tasks of claimed rows, in claim order (RETURNING has no order of its own)."""
        if len(rows) > 1:
            rows.sort(key=_claim_order)
        return [self._task(row) for row in rows]

    def report_progress(self, task_id: str, worker_id: str, progress: Progress) -> bool | None:
        return self._held(
            "report_progress",
            {"progress": progress_json(progress), "id": task_id, "worker_id": worker_id},
        )

    def heartbeat(self, task_id: str, worker_id: str, lease_until: datetime) -> bool | None:
        return self._held(
            "heartbeat",
            {"lease_until": self._time(lease_until), "id": task_id, "worker_id": worker_id},
        )

    def end_leases(self, holder_prefix: str, now: datetime) -> int:
        with self._transaction() as db:
            args = {"prefix": holder_prefix, "now": self._time(now)}
            db.execute(self.queries["end_delivery_leases"], args)
            return db.execute(self.queries["end_leases"], args).rowcount

    def _held(self, query: str, args: Mapping[str, Any]) -> bool | None:
        """Run a write on a task its worker holds: its ``cancel_requested``, None if not held."""
        with self._writing() as db:
            rows = db.execute(self.queries[query], args).fetchall()
        return bool(rows[0]["cancel_requested"]) if rows else None

    def complete(
        self, endings: Sequence[Ending], *, claim: Claim | None = None
    ) -> tuple[builtins.list[Status | None], builtins.list[Task]]:
        if not endings and (claim is None or claim.limit <= 0):
            return [], []
        with self._transaction() as db:
            ends = Ends()
            statuses = self._end(db, [self._ending_args(ending) for ending in endings], ends)
            settled = self._settle(db, ends, endings[0].now) if ends else Settled()
            rows = self._claim(db, claim) if claim is not None and claim.limit > 0 else []
            if Status.QUEUED in statuses:
                self._announce(db)
        self._report(settled)
        return statuses, self._claimed(rows)

    def _ending_args(self, ending: Ending) -> tuple[str, dict[str, Any]]:
        """The statement that writes ``ending`` (``finish`` or ``retry``), and its arguments."""
        time = self._time
        if ending.status is Status.QUEUED:
            if ending.error is None or ending.run_after is None:
                raise ValueError("a retry needs its error and its run_after")
            return "retry", {
                "now": time(ending.now),
                "expires_at": time(ending.expires_at),
                "run_after": time(ending.run_after),
                "error": error_json(ending.error),
                "id": ending.task_id,
                "worker_id": ending.worker_id,
            }
        result_json, error_text = finish_values(ending.status, ending.result, ending.error)
        return "finish", {
            "status": ending.status.value,
            "result": result_json,
            "error": error_text,
            "now": time(ending.now),
            "expires_at": time(ending.expires_at),
            "id": ending.task_id,
            "worker_id": ending.worker_id,
        }

    def _end(
        self, db: Db, writes: Sequence[tuple[str, Mapping[str, Any]]], ends: Ends
    ) -> builtins.list[Status | None]:
        """Run each conditional write in ``db``: the status after it, None where it did not
        apply; the ends that have dependants go to ``ends``. One statement each: cheap
        in-process (a backend over a network sends them all at once: see
        PostgresStore.complete)."""
        statuses: list[Status | None] = []
        for query, args in writes:
            row = db.execute(self.queries[query], args).fetchone()
            status = None if row is None else _STATUS[row["status"]]
            statuses.append(status)
            if status is not None:
                ends.add(args["id"], status, row["dependants"])
        return statuses

    def release(
        self, task_id: str, worker_id: str, now: datetime, expires_at: datetime
    ) -> Status | None:
        return self._hand_back(
            "release",
            {
                "now": self._time(now),
                "expires_at": self._time(expires_at),
                "id": task_id,
                "worker_id": worker_id,
            },
            now,
        )

    def _hand_back(self, query: str, args: Mapping[str, Any], now: datetime) -> Status | None:
        """A running task back to the queue (or cancelled): its status, None if not held."""
        with self._transaction() as db:
            rows = db.execute(self.queries[query], args).fetchall()
            status = Status(rows[0]["status"]) if rows else None
            if status is Status.QUEUED:
                self._announce(db)
            ends = Ends()
            if rows:
                ends.add(args["id"], status, rows[0]["dependants"])
            settled = self._settle(db, ends, now)
        self._report(settled)
        return status

    def recover_expired(self, now: datetime, expires_at: datetime) -> Sequence[Recovered]:
        args = {
            "now": self._time(now),
            "expires_at": self._time(expires_at),
            "lost": WORKER_LOST,
            "lost_again": WORKER_LOST_AGAIN,
            "most": MAX_LOST_ATTEMPTS,
        }
        with self._transaction() as db:
            rows = db.execute(self.queries["recover_cancelled"], args).fetchall()
            rows += db.execute(self.queries["recover_failed"], args).fetchall()
            requeued = db.execute(self.queries["recover_queued"], args).fetchall()
            if requeued:
                self._announce(db)
            ends = Ends()
            for row in rows:
                ends.add(row["id"], _STATUS[row["status"]], row["dependants"])
            settled = self._settle(db, ends, now)
        self._report(settled)
        return [Recovered(row["id"], row["type"], Status(row["status"])) for row in rows + requeued]

    # -- a client's verbs ---------------------------------------------------------------------

    def cancel(self, task_id: str, now: datetime, expires_at: datetime) -> CancelResult | None:
        args = {"now": self._time(now), "expires_at": self._time(expires_at), "id": task_id}
        with self._transaction() as db:
            rows = db.execute(self.queries["cancel"], args).fetchall()
            changed = self._task(rows[0]) if rows else None
            ends = Ends()
            if changed is not None:
                ends.add(changed.id, changed.status, rows[0]["dependants"])
            settled = self._settle(db, ends, now)
        self._report(settled)
        if changed is not None:
            return CancelResult(changed, ended=changed.status is Status.CANCELLED)
        current = self.get(task_id, now)
        return None if current is None else CancelResult(current, ended=False)

    def delete(self, task_id: str, now: datetime) -> bool:
        with self._writing() as db:
            args = {"id": task_id, "now": self._time(now)}
            return db.execute(self.queries["delete"], args).rowcount > 0

    def purge_expired(self, now: datetime, limit: int) -> tuple[int, int]:
        args = {"now": self._time(now), "limit": limit}
        with self._transaction() as db:
            keys = db.execute(self.queries["purge_keys"], args).rowcount
            tasks = db.execute(self.queries["purge_tasks"], args).rowcount
        return tasks, keys

    # -- callbacks: the outbox ------------------------------------------------------------------
    # A task's delivery is written by a trigger of the tasks table in the transaction that
    # ends the task (migrations.sql, "callbacks"): every verb that ends tasks, cascades too.

    def _delivery(self, row: Row) -> Delivery:
        return delivery_from_row(row, self._time_of)

    def deliveries(self, task_ids: Collection[str]) -> dict[str, Delivery]:
        if not task_ids:
            return {}
        with self._reading() as db:
            rows = db.execute(self.queries["deliveries"], {"ids": self._names(task_ids)})
            return {row["task_id"]: self._delivery(row) for row in rows.fetchall()}

    def next_delivery_at(self) -> datetime | None:
        row = self._read_one("next_delivery_at", {})
        return None if row is None else self._time_of(row["due"])

    def claim_deliveries(
        self, holder: str, limit: int, now: datetime, lease_until: datetime
    ) -> builtins.list[DeliveryJob]:
        if limit <= 0:
            return []
        args = {
            "holder": holder,
            "limit": limit,
            "now": self._time(now),
            "lease_until": self._time(lease_until),
        }
        with self._transaction() as db:
            claimed = db.execute(self.queries["claim_deliveries"], args).fetchall()
            if not claimed:
                return []
            ids = [row["task_id"] for row in claimed]
            # Its attempt count changed: so do the tasks' ETags.
            db.execute(self.queries["delivery_changed"], {"ids": self._names(ids)})
            tasks = {
                task.id: task
                for task in map(
                    self._task,
                    db.execute(self.queries["tasks_of"], {"ids": self._names(ids)}).fetchall(),
                )
            }
        claimed.sort(key=lambda row: row["ended_at"])  # earliest end first (one column type)
        return [
            DeliveryJob(
                self._delivery(row),
                tasks.get(row["task_id"]),
                None if row["body"] is None else bytes(row["body"]),
            )
            for row in claimed
        ]

    def record_deliveries(
        self, attempts: Sequence[DeliveryAttempt]
    ) -> builtins.list[Delivery | None]:
        if not attempts:
            return []
        args = [
            {
                "id": attempt.task_id,
                "holder": attempt.holder,
                "now": self._time(attempt.now),
                "state": attempt.state.value,
                "next_attempt_at": self._time(attempt.next_attempt_at),
                "status": attempt.status,
                "error": attempt.error,
                "body": attempt.body,
                "attempts": attempt.attempts,
            }
            for attempt in attempts
        ]
        ids = self._names([attempt.task_id for attempt in attempts])
        with self._transaction() as db:
            # The tasks first (their ETags), then their deliveries: the order in which a
            # delete locks them (the task, then its delivery through the trigger). An
            # attempt that no longer applies bumps its task's version for nothing: harmless.
            db.execute(self.queries["delivery_changed"], {"ids": ids})
            rows = self._record_rows(db, args)
        return [None if row is None else self._delivery(row) for row in rows]

    def _record_rows(self, db: Db, args: Sequence[Mapping[str, Any]]) -> builtins.list[Row | None]:
        """Run ``record_delivery`` for each of ``args`` in ``db``: its row, None where the
        holder no longer held the delivery. One statement each: cheap in-process (a backend
        over a network sends them at once)."""
        return [self._first(db, "record_delivery", one) for one in args]

    def release_deliveries(self, holder: str, task_ids: Collection[str], now: datetime) -> int:
        if not task_ids:
            return 0
        args = {"holder": holder, "ids": self._names(task_ids), "now": self._time(now)}
        with self._transaction() as db:
            released = [
                row["task_id"]
                for row in db.execute(self.queries["release_deliveries"], args).fetchall()
            ]
            if released:
                db.execute(self.queries["delivery_changed"], {"ids": self._names(released)})
        return len(released)

    def resend_delivery(self, task_id: str, now: datetime) -> Delivery | None:
        with self._transaction() as db:
            row = self._first(db, "resend_delivery", {"id": task_id, "now": self._time(now)})
            if row is None:
                return None
            db.execute(self.queries["delivery_changed"], {"ids": self._names([task_id])})
        return self._delivery(row)

    def purge_fires(self, before: datetime, limit: int) -> int:
        with self._writing() as db:
            args = {"fires_before": self._time(before), "limit": limit}
            return db.execute(self.queries["purge_fires"], args).rowcount
