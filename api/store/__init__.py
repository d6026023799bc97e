"""The store: where tasks live. One interface; one SQL store (sql.py) with a package per backend.

Every method that changes a task is a single conditional write: it says whether the change
happened instead of reading, checking and writing. Times are timezone-aware UTC datetimes.

A terminal task is gone for every reader from its ``expires_at`` on: the reads and the delete
take ``now`` and leave such a task out, whether or not ``purge_expired`` has deleted its row
yet (the purge only reclaims the space, in small batches).
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from api.models import (
    Batch,
    Delivery,
    DeliveryState,
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
    TaskError,
)


class StoreError(Exception):
    """The store could not do what was asked (bad URL, unreachable database)."""


class QueueFull(Exception):
    """``create`` found as many queued tasks as it may hold; nothing was created."""


class UnknownDependencies(Exception):
    """A submit named dependencies that are not tasks of its owner (unknown, another
    caller's, deleted or expired); nothing was created."""

    def __init__(self, missing: Mapping[int, Sequence[str]]) -> None:
        super().__init__(dict(missing))
        #: By the index of the task that named them (0 for a single submit), in its order.
        self.missing = dict(missing)


class KeyTaken(Exception):
    """``create`` found the idempotency key already used; nothing was created."""

    def __init__(self, task_id: str, fingerprint: str, *, in_flight: bool = False) -> None:
        super().__init__(task_id)
        self.task_id = task_id
        self.fingerprint = fingerprint
        #: The request that took the key is still being handled.
        self.in_flight = in_flight


@dataclass(frozen=True, slots=True)
class TaskFilter:
    """Which tasks a listing returns."""

    statuses: Sequence[Status] = ()
    type: str | None = None
    queue: str | None = None
    #: Only tasks this schedule (of the filter's owner) made.
    schedule: str | None = None
    #: Only the tasks of this batch.
    batch: str | None = None
    #: Only this caller's tasks; None for every caller's (operators, tests).
    owner: str | None = None


@dataclass(frozen=True)
class CancelResult:
    """What a cancel did."""

    #: The task afterwards.
    task: Task
    #: This call moved it from queued to cancelled (not: asked a running task to stop, nor
    #: found it ended by someone else meanwhile).
    ended: bool


@dataclass(frozen=True, slots=True)
class Settled:
    """What the end of tasks did to the tasks that depend on them (``Store.on_settled``)."""

    #: Tasks cancelled (DependencyFailed) because a task they wait for, directly or down a
    #: chain, ended failed or cancelled: (id, type, queue, batch_id).
    cancelled: Sequence[tuple[str, str, str, str | None]] = ()
    #: Tasks whose last dependency succeeded: ready to run now.
    ready: Sequence[str] = ()


@dataclass(frozen=True)
class Recovered:
    """A task taken back from a lost worker."""

    id: str
    type: str
    #: queued (to run again), failed (its MAX_LOST_ATTEMPTS-th loss in a row) or cancelled
    #: (it had been asked).
    status: Status


@dataclass(frozen=True, slots=True)
class Ending:
    """How one attempt ended, as ``Store.complete`` writes it."""

    task_id: str
    #: The holder the attempt ran for: the ending applies only while it holds the task.
    worker_id: str
    #: succeeded, failed or cancelled: the task ends so; queued: a retry.
    status: Status
    now: datetime
    #: When the ended task expires (a retry that ends cancelled, too).
    expires_at: datetime
    result: Any = None
    error: TaskError | None = None
    #: A retry's: when the task is ready again.
    run_after: datetime | None = None


@dataclass(frozen=True, slots=True)
class Claim:
    """A claim of up to ``limit`` ready tasks for ``worker_id`` (``Store.claim_many``)."""

    worker_id: str
    limit: int
    now: datetime
    lease_until: datetime
    #: Only tasks of these queues; None: of every queue.
    queues: Collection[str] | None = None


@dataclass(frozen=True, slots=True)
class Fire:
    """One fire time of a schedule, as a ticker computed it (``Store.fire_schedule``)."""

    owner: str
    name: str
    #: The schedule as the ticker read it: the fire applies only while it is still that
    #: version and its ``next_run_at`` is still ``due`` (no other process fired it first).
    version: int
    due: datetime
    #: The schedule's next fire time afterwards.
    next_run_at: datetime | None
    #: The fire time the task stands for (``due``, or the latest missed one).
    fire_at: datetime
    #: The task to make (its ``schedule`` and ``scheduled_for`` set); None: make none, only
    #: move on (``skip`` says why).
    task: NewTask | None
    skip: FireOutcome | None = None
    #: overlap: skip: make no task while the schedule's last task is queued or running.
    skip_if_busy: bool = True
    #: TASKS_MAX_QUEUED: make no task while that many are queued.
    max_queued: int | None = None

    def __post_init__(self) -> None:
        if (self.task is None) == (self.skip is None):
            raise ValueError("a fire makes its task, or says why it makes none: not both")


@dataclass(frozen=True, slots=True)
class DeliveryJob:
    """A delivery claimed for one attempt (``Store.claim_deliveries``)."""

    delivery: Delivery
    #: The ended task, as stored (also when it expired since); None when it was deleted.
    task: Task | None
    #: The body an earlier attempt sent (every attempt sends the same); None before the first.
    body: bytes | None


@dataclass(frozen=True, slots=True)
class DeliveryAttempt:
    """How one attempt went, as ``Store.record_deliveries`` writes it."""

    task_id: str
    #: The holder the attempt was claimed for: it applies only while it holds the delivery.
    holder: str
    now: datetime
    #: pending (another attempt is due at ``next_attempt_at``), delivered or failed.
    state: DeliveryState
    next_attempt_at: datetime | None = None
    #: The HTTP status of the answer (None: none came), and what went wrong (None: nothing).
    status: int | None = None
    error: str | None = None
    #: The body sent: kept for the next attempts.
    body: bytes | None = None
    #: The delivery's ``attempts`` when it was claimed for this one: it applies only to
    #: that claim (not to a later one of the same holder, once its lease ran out).
    attempts: int | None = None


class Store(Protocol):
    """What the service and the workers need from a backend."""

    def create(
        self,
        task: NewTask,
        *,
        max_queued: int | None = None,
        idempotency: IdempotencyKey | None = None,
    ) -> Task:
        """Insert a new queued task and return it as stored, all or nothing.

        Raises QueueFull when ``max_queued`` tasks are queued already, KeyTaken when an
        unexpired ``idempotency`` key of the same owner exists, and UnknownDependencies when
        ``depends_on`` names a task that is not its owner's (or is gone); then nothing is
        created.

        A task with ``depends_on`` waits (``blocked_by``) for those that have not succeeded;
        if one of them ended failed or cancelled already, it is created ``cancelled`` with a
        DependencyFailed error, as it would have been had it waited.
        """

    def create_batch(
        self,
        batch: NewBatch,
        *,
        max_queued: int | None = None,
        idempotency: IdempotencyKey | None = None,
    ) -> Batch:
        """Insert every task of ``batch`` (in one statement) and the batch, all or nothing,
        as ``create`` does for one; QueueFull when the queued tasks and these would be more
        than ``max_queued``. The key of ``idempotency`` records the batch's id."""

    def batch(self, batch_id: str, now: datetime) -> Batch | None:
        """The batch, or None (also once every task of it is deleted or expired)."""

    def cancel_batch(
        self, batch_id: str, now: datetime, expires_at: datetime
    ) -> builtins.list[Task]:
        """Cancel every queued task of the batch at once, and ask every running one to stop,
        in one transaction (as ``cancel`` does each); the tasks this changed."""

    def on_settled(self, callback: Callable[[Settled], None]) -> None:
        """Call ``callback`` after every write whose ended tasks cancelled or freed tasks
        that depend on them (in the writing thread, after the commit)."""

    def settle_key(self, owner: str, key: str) -> None:
        """The request that took this idempotency key has been answered."""

    def get(self, task_id: str, now: datetime) -> Task | None:
        """The task with this id, or None (also when it expired before ``now``)."""

    def list(
        self, where: TaskFilter, *, offset: int, limit: int, now: datetime
    ) -> tuple[list[Task], int]:
        """Tasks matching ``where`` and not expired at ``now``, newest first, one page of
        them, and how many match."""

    def claim_many(
        self,
        worker_id: str,
        limit: int,
        now: datetime,
        lease_until: datetime,
        *,
        queues: Collection[str] | None = None,
    ) -> builtins.list[Task]:
        """Atomically take up to ``limit`` ready tasks of ``queues`` (None: of every queue).

        Claim order: highest priority first; among tasks of one priority, the queues take
        turns (the first of each, then the second of each, ...), and within a queue the
        earliest ready, then the earliest submitted, go first. A paused queue gives none; a
        queue with a ``concurrency`` gives no more than it has room for, counting the tasks
        of the queue running in every process.

        Each becomes ``running`` and held by ``worker_id`` until ``lease_until``; its attempt
        count grows by one. Empty when no task is ready at ``now``. No task is ever held by
        two claims, whichever processes claim at once.
        """

    def count_by_status(self, now: datetime) -> dict[Status, int]:
        """How many tasks not expired at ``now`` are in each status, every status included
        (cheap to ask)."""

    def next_run_after(
        self, after: datetime | None = None, *, queues: Collection[str] | None = None
    ) -> datetime | None:
        """When the earliest queued task due after ``after`` (None: any) becomes ready, of
        the queues a claim of ``queues`` (None: every queue) could take, paused ones left
        out; None when there is none."""

    def report_progress(self, task_id: str, worker_id: str, progress: Progress) -> bool | None:
        """Record progress of a task this worker holds; returns its ``cancel_requested``.

        None when the worker no longer holds the task.
        """

    def heartbeat(self, task_id: str, worker_id: str, lease_until: datetime) -> bool | None:
        """Renew the lease of a task this worker holds; returns its ``cancel_requested``.

        None when the worker no longer holds the task (its lease expired and it was taken back).
        """

    def queues(self, now: datetime) -> builtins.list[QueueState]:
        """Every queue that has tasks not expired at ``now`` or settings, and ``default``,
        by name."""

    def queue(self, name: str, now: datetime) -> QueueState | None:
        """The queue ``name``, or None when it has neither tasks (not expired at ``now``) nor
        settings."""

    def update_queue(self, name: str, changes: Mapping[str, Any]) -> None:
        """Change the settings of the queue ``name`` (``paused``: bool, ``concurrency``: int
        or None; only the keys given), creating them if the queue had none. Workers of every
        process see the change at their next claim, and are woken to look."""

    def put_schedule(
        self,
        owner: str,
        name: str,
        spec: ScheduleSpec,
        next_run_at: datetime | None,
        now: datetime,
    ) -> tuple[Schedule, bool]:
        """Create the schedule ``name`` of ``owner``, or replace what it does (its
        ``created_at``, ``last_run_at`` and ``last_task_id`` stay; its version grows); the
        schedule afterwards, and whether it was created.

        ``next_run_at`` is its next fire time (None while paused), unless a replace keeps the
        timing (``cron``, ``every_seconds``, ``timezone``, ``paused``): then the stored one
        stays, in the same statement, so that a deploy that sets its schedules again neither
        loses nor repeats a fire, whatever a ticker does meanwhile."""

    def schedule(self, owner: str, name: str) -> Schedule | None:
        """The schedule ``name`` of ``owner``, or None."""

    def schedules(
        self, owner: str | None, *, offset: int, limit: int
    ) -> tuple[builtins.list[Schedule], int]:
        """The schedules of ``owner`` (None: of every owner) by name, one page of them, and
        how many there are."""

    def delete_schedule(self, owner: str, name: str) -> bool:
        """Delete the schedule (its tasks stay); False when there is none."""

    def due_schedules(self, now: datetime, limit: int) -> builtins.list[Schedule]:
        """Up to ``limit`` schedules of every owner, not paused, whose ``next_run_at`` is at
        or before ``now``, the earliest first."""

    def next_schedule_at(self) -> datetime | None:
        """The earliest ``next_run_at`` of every schedule not paused; None when none has one."""

    def fire_schedule(self, fire: Fire) -> tuple[FireOutcome, Task | None]:
        """Fire one schedule once, in one transaction: move its ``next_run_at`` on from
        ``fire.due``, record the fire time under its unique key (owner, name, fire time) and
        make its task, unless a skip applies (``fire.skip``; the last task still queued or
        running with ``skip_if_busy``; ``max_queued`` reached). Nothing happens (``TAKEN``)
        when another process fired it first or the schedule was replaced or deleted since it
        was read: each fire time makes at most one task, whichever processes tick at once.
        Returns the outcome, and the task made (MADE only)."""

    def trigger_schedule(
        self, owner: str, name: str, task: NewTask, *, max_queued: int | None = None
    ) -> Task | None:
        """Make ``task`` for the schedule now, paused or not, and record it as the schedule's
        last run; None when there is no such schedule. Raises QueueFull as ``create``."""

    def end_leases(self, holder_prefix: str, now: datetime) -> int:
        """End at ``now`` the leases of the running tasks (and of the callbacks being sent)
        whose holder id starts with ``holder_prefix`` (a process known to be gone), for
        ``recover_expired`` to take them back; how many tasks."""

    # -- callbacks: the outbox ------------------------------------------------------------------
    # A task with a ``callback_url`` gets its delivery (pending, due at its end) in the very
    # transaction that ends it, whichever write ends it; the delivery goes with its task
    # (deleted with it; the purge keeps a task while its delivery is pending).

    def deliveries(self, task_ids: Collection[str]) -> dict[str, Delivery]:
        """The deliveries of these tasks, by task id (tasks without one left out)."""

    def next_delivery_at(self) -> datetime | None:
        """When the earliest pending delivery is due (its lease, if claimed, not counted);
        None when none is pending."""

    def claim_deliveries(
        self, holder: str, limit: int, now: datetime, lease_until: datetime
    ) -> builtins.list[DeliveryJob]:
        """Take up to ``limit`` pending deliveries due at ``now`` (earliest first) whose
        lease, if any, ran out: each is held by ``holder`` until ``lease_until``, and its
        ``attempts`` grows by one. No delivery is held by two claims at once."""

    def record_deliveries(
        self, attempts: Sequence[DeliveryAttempt]
    ) -> builtins.list[Delivery | None]:
        """Write how attempts went, in one transaction, and let go of their deliveries (their
        tasks' versions grow): each delivery afterwards, None where its ``holder`` no longer
        held it (that attempt changes nothing)."""

    def release_deliveries(self, holder: str, task_ids: Collection[str], now: datetime) -> int:
        """Hand back deliveries ``holder`` claimed and never attempted (its process stops):
        due at ``now``, their claim's attempt not counted; how many."""

    def resend_delivery(self, task_id: str, now: datetime) -> Delivery | None:
        """Make a delivered or failed delivery pending again, due at ``now``, with its
        attempts counted from zero (its ``webhook-id`` stays); None when the task has no
        such delivery (none, or pending)."""

    def recover_expired(self, now: datetime, expires_at: datetime) -> Sequence[Recovered]:
        """Take back running tasks whose lease expired before ``now`` (their worker is lost).

        Each ends ``cancelled`` if cancellation was asked; ends ``failed`` with a
        ``WorkerLost`` error if this is its MAX_LOST_ATTEMPTS-th lost attempt in a row; else
        goes back to ``queued``, whatever its ``max_attempts``: the lost attempt stays in
        ``attempts`` and is counted in ``lost_attempts``, not against ``max_attempts``.
        Returns the tasks taken back, each with its status afterwards.
        """

    def complete(
        self, endings: Sequence[Ending], *, claim: Claim | None = None
    ) -> tuple[builtins.list[Status | None], builtins.list[Task]]:
        """Write how attempts ended, then ``claim_many`` with ``claim``, in one transaction.

        Each ending applies only if its worker still holds the task (``running`` and held
        by ``worker_id``); one that does not changes nothing and leaves the others be. An
        ending ``succeeded``, ``failed`` or ``cancelled`` ends the task so (with its
        ``result`` when it succeeded, its ``error`` when it failed); an ending ``queued`` is a
        retry: the task waits until ``run_after`` (a task whose cancel was asked ends
        ``cancelled`` instead, and the run of lost attempts is over). Returns the status of
        each task afterwards, None where its ending did not apply, and the tasks claimed
        (none without ``claim``). All of it or none of it is written.
        """

    def release(
        self, task_id: str, worker_id: str, now: datetime, expires_at: datetime
    ) -> Status | None:
        """Hand a running task back to the queue without using up its attempt (shutdown).

        A task whose cancel was asked ends ``cancelled`` instead. Returns the new status, or
        None when the worker did not hold the task.
        """

    def cancel(self, task_id: str, now: datetime, expires_at: datetime) -> CancelResult | None:
        """Cancel a queued task at once, or ask a running one to stop.

        Returns the task as it is afterwards (unchanged when it was already terminal), and
        whether this call is the one that ended it; None when there is no such task (or it
        expired before ``now``).
        """

    def delete(self, task_id: str, now: datetime) -> bool:
        """Delete a terminal task; False when there is none (or it is not terminal, or it
        expired before ``now``)."""

    def purge_expired(self, now: datetime, limit: int) -> tuple[int, int]:
        """Delete up to ``limit`` terminal tasks whose ``expires_at`` has passed, and up to
        ``limit`` expired idempotency keys; how many of each were deleted."""

    def purge_fires(self, before: datetime, limit: int) -> int:
        """Delete up to ``limit`` records of schedules' fire times before ``before``; how
        many."""

    def detach_thread(self) -> None:
        """Let go of what the store keeps for the calling thread (it is about to end)."""

    def ping(self) -> None:
        """Raise StoreError when the store does not answer."""

    def close(self) -> None:
        """Release the connections of this store."""


def open_store(url: str) -> Store:
    """The store for a ``TASKS_DATABASE_URL``: ``sqlite:///path`` (default) or ``postgresql://``."""
    if url.startswith("sqlite:"):
        from api.store.sqlite import SQLiteStore

        return SQLiteStore.from_url(url)
    if url.startswith(("postgresql:", "postgres:")):
        try:
            from api.store.postgres import PostgresStore
        except ImportError:
            raise StoreError(
                "TASKS_DATABASE_URL is a PostgreSQL URL: install taskapi[postgres]."
            ) from None
        return PostgresStore.from_url(url)
    raise StoreError(
        f"Unsupported TASKS_DATABASE_URL {url!r}: use sqlite:///path/to/file.db or "
        "postgresql://user@host/db."
    )


__all__ = [
    "Claim",
    "DeliveryAttempt",
    "DeliveryJob",
    "Ending",
    "Fire",
    "KeyTaken",
    "QueueFull",
    "Settled",
    "Store",
    "StoreError",
    "TaskFilter",
    "UnknownDependencies",
    "open_store",
]
