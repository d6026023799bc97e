"""What the views call: submit, read, list, cancel, delete and retry tasks.

The service owns the rules a client meets (defaults from the task type, which changes a task's
status allows, what a refusal says); the store owns how tasks are kept.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from api.callbacks.hosts import CallbackHosts
from api.events import TaskEvents
from api.exceptions import (
    CallbackNotDue,
    CallbackPending,
    CallbackRefused,
    DependenciesNotFound,
    NoCallback,
    NotCancellable,
    NotDeletable,
    NotRetryable,
    QueueFullError,
    TaskNotFound,
    UnknownTaskType,
)
from api.ids import new_id
from api.metrics import Metrics
from api.models import RETRYABLE, NewTask, Status, Task
from api.registry import Registry
from api.service import idempotency
from api.store import KeyTaken, QueueFull, Store, TaskFilter, UnknownDependencies

# The service's lines are logged as "api.service", as they were before it was a package.
log = logging.getLogger("api.service")

#: While a reader waits on a task, how often the store is read again by default, should the
#: wake-up of its end (from this process or another, api.wakeups) be lost.
FALLBACK_POLL_SECONDS = 0.5
#: What a client is told to wait before submitting again when the queue is full.
QUEUE_FULL_RETRY_AFTER = 5

#: The largest offset a listing asks of the store (a signed 64-bit integer).
MAX_OFFSET = 2**63 - 1


class Notifier(Protocol):
    """Who hears of new tasks and cancellations in this process (the worker pool)."""

    def task_submitted(self) -> None: ...

    def cancel_requested(self, task_id: str) -> None: ...


class Nobody:
    """A Notifier that tells no one (a service without workers to wake)."""

    def task_submitted(self) -> None:
        pass

    def cancel_requested(self, task_id: str) -> None:
        pass


def utcnow() -> datetime:
    return datetime.now(UTC)


def _nothing() -> None:
    pass


def with_callbacks(store: Store, tasks: Sequence[Task]) -> list[Task]:
    """``tasks`` with their ``callback`` (the store's task reads leave it None): one
    ``Store.deliveries`` call for those that ended with a ``callback_url``, none at all when
    no task has one."""
    ended = [task.id for task in tasks if task.callback_url is not None and task.is_terminal]
    if not ended:
        return list(tasks)
    deliveries = store.deliveries(ended)
    return [
        replace(task, callback=deliveries[task.id]) if task.id in deliveries else task
        for task in tasks
    ]


def canonical_id(task_id: str) -> str | None:
    """The canonical form of a task id, or None when it is not a UUID."""
    try:
        return str(uuid.UUID(task_id))
    except (ValueError, TypeError, AttributeError):
        return None


@dataclass(frozen=True)
class Submitted:
    """The task a submit answers with, whether this submit created it, and whether the
    answer waited for it to end (``Prefer: wait``)."""

    task: Task
    created: bool
    waited: bool = False


@dataclass
class TaskService:
    store: Store
    registry: Registry
    result_ttl: float
    max_queued: int | None = None
    notifier: Notifier = field(default_factory=Nobody)
    events: TaskEvents = field(default_factory=TaskEvents)
    metrics: Metrics | None = None
    clock: Callable[[], datetime] = utcnow
    #: A waiting reader reads the store again this often (TASKS_POLL_INTERVAL).
    poll_interval: float = FALLBACK_POLL_SECONDS
    #: Called when a callback is due now (``retry_callback``): wakes the callback sender.
    callback_due: Callable[[], None] = _nothing
    #: TASKS_CALLBACK_HOSTS: a retry or a resend of a callback_url it no longer allows is
    #: refused.
    callback_hosts: CallbackHosts = field(default_factory=CallbackHosts)

    def submit(
        self,
        request: dict[str, Any],
        *,
        owner: str = "",
        idempotency_key: str | None = None,
        wait: float | None = None,
    ) -> Submitted:
        """Queue a task from a validated TaskCreate body.

        With an ``idempotency_key`` already used by ``owner`` for the same body, answer the
        task it created (``created`` False) and create nothing; for another body, refuse;
        while the request that used it is still being handled, refuse as a conflict. With
        ``wait``, hold the answer until the new task ends or ``wait`` seconds pass.
        """
        task_type = self.registry.get(request["type"])
        if task_type is None:  # the schema only lets registered types through
            raise UnknownTaskType(request["type"])
        now = self.clock()
        new = task_type.new_task(request, owner, now)
        return self._create(new, request, idempotency_key=idempotency_key, wait=wait)

    def retry(
        self, task_id: str, *, owner: str = "", idempotency_key: str | None = None
    ) -> Submitted:
        """Submit a failed or cancelled task again, as a new task with the same type, params
        and options (``retry_of`` names the old one, which stays as it ended)."""
        old = self._find(task_id, owner=owner)
        if old.status not in RETRYABLE:
            raise NotRetryable(old.id, old.status.value)
        self._check_callback(old)
        now = self.clock()
        new = NewTask(
            id=new_id(),
            type=old.type,
            params=old.params,
            max_attempts=old.max_attempts,
            timeout_seconds=old.timeout_seconds,
            priority=old.priority,
            created_at=now,
            run_after=now,
            owner=owner,
            queue=old.queue,
            retry_of=old.id,
            callback_url=old.callback_url,
        )
        return self._create(new, {"retry_of": old.id}, idempotency_key=idempotency_key)

    def _create(
        self,
        new: NewTask,
        request: dict[str, Any],
        *,
        idempotency_key: str | None,
        wait: float | None = None,
    ) -> Submitted:
        """Store ``new``, asked for by ``request`` (what an Idempotency-Key is checked
        against), and answer as ``submit`` says."""
        owner = new.owner
        key = (
            idempotency.take(owner, idempotency_key, request, new.created_at)
            if idempotency_key is not None
            else None
        )
        try:
            task = self.store.create(new, max_queued=self.max_queued, idempotency=key)
        except KeyTaken as taken:
            assert key is not None  # only a submit with a key meets one taken
            task = idempotency.replay(self.store, taken, key.fingerprint, self.clock)
            return Submitted(self._with_callback(task), created=False)
        except QueueFull:
            raise QueueFullError(self.max_queued, QUEUE_FULL_RETRY_AFTER) from None
        except UnknownDependencies as unknown:
            raise DependenciesNotFound(unknown.missing, in_batch=False) from None
        self._queued(task)
        try:
            if wait is None:
                return Submitted(task, created=True)
            try:
                task = self.wait(task.id, wait, owner=owner)
            except TaskNotFound:  # it ended, and expired, while the submit waited for it
                return Submitted(task, created=True)
            return Submitted(task, created=True, waited=task.is_terminal)
        finally:
            if key is not None:
                self.store.settle_key(owner, key.key)

    def _queued(self, task: Task) -> None:
        self.notifier.task_submitted()
        log.info("task %s (%s) queued", task.id, task.type, extra={"task_id": task.id})
        if self.metrics is not None:
            self.metrics.task_created(task.type)

    def wait(self, task_id: str, seconds: float, *, owner: str = "") -> Task:
        """The task once it is terminal, or as it is after ``seconds``.

        The end of the task wakes the reader at once, whichever process ended it (api.wakeups);
        the store is read again every ``poll_interval`` seconds too, should a wake-up be lost.
        """
        task = self.events.wait_for(
            canonical_id(task_id) or task_id,
            lambda: self._find(task_id, owner=owner),
            lambda task: task.is_terminal,
            seconds,
            self.poll_interval,
        )
        return self._with_callback(task)

    def get(self, task_id: str, *, owner: str = "") -> Task:
        """The task, if ``owner`` submitted it: another caller's task is as good as unknown."""
        return self._with_callback(self._find(task_id, owner=owner))

    def _find(self, task_id: str, *, owner: str = "") -> Task:
        """The task as the store reads it (no ``callback``), if ``owner`` submitted it."""
        key = canonical_id(task_id)
        task = self.store.get(key, self.clock()) if key else None
        if task is None or task.owner != owner:
            raise TaskNotFound(task_id)
        return task

    def _with_callback(self, task: Task) -> Task:
        """The task with its ``callback`` (``with_callbacks``)."""
        if task.callback_url is None or not task.is_terminal:
            return task
        (task,) = with_callbacks(self.store, [task])
        return task

    def retry_callback(self, task_id: str, *, owner: str = "") -> Task:
        """Send the callback of an ended task again: its delivered or failed delivery is
        pending again, due now, its attempts counted from zero (the same ``webhook-id``); the
        task afterwards. Refused while the task has not ended or its delivery is pending, and
        for a task without a ``callback_url``."""
        task = self._find(task_id, owner=owner)
        if task.callback_url is None:
            raise NoCallback(task.id)
        if not task.is_terminal:
            raise CallbackNotDue(task.id, task.status.value)
        self._check_callback(task)
        if self.store.resend_delivery(task.id, self.clock()) is None:
            raise CallbackPending(task.id)
        log.info("task %s: callback to be sent again", task.id, extra={"task_id": task.id})
        self.callback_due()
        return self.get(task.id, owner=owner)

    def _check_callback(self, task: Task) -> None:
        """Refuse to send ``task``'s callback again (or to copy it into a retry) when
        TASKS_CALLBACK_HOSTS no longer allows its URL: it would only fail at each attempt."""
        if task.callback_url is not None:
            reason = self.callback_hosts.refusal(task.callback_url)
            if reason is not None:
                raise CallbackRefused(task.id, reason)

    def list(
        self,
        statuses: Sequence[str],
        type_name: str | None,
        *,
        page: int,
        page_size: int,
        owner: str = "",
        queue: str | None = None,
        schedule: str | None = None,
        batch: str | None = None,
    ) -> tuple[list[Task], int]:
        """One page of ``owner``'s tasks, newest first, and how many match the filters."""
        where = TaskFilter(
            statuses=tuple(Status(s) for s in statuses),
            type=type_name,
            queue=queue,
            schedule=schedule,
            batch=batch,
            owner=owner,
        )
        # A page far past the end is simply empty; keep its offset within what stores take.
        offset = min((page - 1) * page_size, MAX_OFFSET)
        tasks, total = self.store.list(where, offset=offset, limit=page_size, now=self.clock())
        return with_callbacks(self.store, tasks), total

    def cancel(self, task_id: str, *, owner: str = "") -> Task:
        """Cancel a queued task at once; ask a running one to stop."""
        current = self._find(task_id, owner=owner)
        if not current.is_terminal:
            now = self.clock()
            outcome = self.store.cancel(current.id, now, now + timedelta(seconds=self.result_ttl))
            if outcome is None:
                raise TaskNotFound(task_id)
            changed = outcome.task
            if outcome.ended:
                log.info("task %s cancelled", changed.id, extra={"task_id": changed.id})
                if self.metrics is not None:
                    self.metrics.task_finished(changed.type, Status.CANCELLED)
                if changed.callback_url is not None:
                    self.callback_due()  # its delivery was written with the cancel
            elif changed.status is Status.RUNNING:
                self.notifier.cancel_requested(changed.id)
                log.info("task %s: cancel asked", changed.id, extra={"task_id": changed.id})
            # Its long-polls, and its batch's (a batch is done once its last task ends).
            woken = [changed.id] if changed.batch_id is None else [changed.id, changed.batch_id]
            self.events.changed_many(woken)
            # It may have ended on its own meanwhile: that is the 409 below, not a cancel.
            if changed.status is Status.CANCELLED or not changed.is_terminal:
                return self._with_callback(changed)
            current = changed
        raise NotCancellable(current.id, current.status.value)

    def delete(self, task_id: str, *, owner: str = "") -> None:
        """Delete a terminal task."""
        task = self._find(task_id, owner=owner)
        now = self.clock()
        if self.store.delete(task.id, now):
            return
        latest = self.store.get(task.id, now)
        if latest is None:
            raise TaskNotFound(task_id)
        raise NotDeletable(latest.id, latest.status.value)
