"""What the batch views call: submit a batch of tasks, read it (or wait until it is done), and
cancel what is left of it.

A batch belongs to its caller, as its tasks do: another caller's is as good as unknown. Its
tasks are created in one transaction, all of them or none (``Store.create_batch``); its
Idempotency-Key works as a task submit's, over the whole body (a key used for a task submit is
"another body" here, and the other way round).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from api.events import TaskEvents
from api.exceptions import (
    BatchNotFound,
    DependenciesNotFound,
    KeyBatchGone,
    QueueFullError,
    UnknownTaskType,
)
from api.ids import new_ids
from api.metrics import Metrics
from api.models import Batch, NewBatch, NewTask, Status
from api.registry import Registry, TaskType
from api.service import idempotency
from api.service.tasks import (
    FALLBACK_POLL_SECONDS,
    QUEUE_FULL_RETRY_AFTER,
    Nobody,
    Notifier,
    canonical_id,
    utcnow,
)
from api.store import KeyTaken, QueueFull, Store, UnknownDependencies

log = logging.getLogger("api.service")


@dataclass(frozen=True)
class SubmittedBatch:
    """The batch a submit answers with, and whether this submit created it."""

    batch: Batch
    created: bool


@dataclass
class BatchService:
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

    def create(
        self,
        body: Mapping[str, Any],
        *,
        owner: str = "",
        idempotency_key: str | None = None,
    ) -> SubmittedBatch:
        """Queue every task of a validated BatchCreate body, or none.

        With an ``idempotency_key`` already used by ``owner`` for the same body, answer the
        batch it created (``created`` False) and create nothing; for another body, refuse;
        while the request that used it is still being handled, refuse as a conflict.
        """
        items: Sequence[Mapping[str, Any]] = body["tasks"]
        now = self.clock()
        batch_id, *task_ids = new_ids(1 + len(items))
        tasks = tuple(self._new_tasks(items, owner, now, batch_id, task_ids))
        key = (
            idempotency.take(owner, idempotency_key, {"batch": items}, now)
            if idempotency_key is not None
            else None
        )
        try:
            batch = self.store.create_batch(
                NewBatch(batch_id, owner, tasks, now), max_queued=self.max_queued, idempotency=key
            )
        except KeyTaken as taken:
            assert key is not None  # only a submit with a key meets one taken
            return SubmittedBatch(self._replay(taken, key.fingerprint), created=False)
        except QueueFull:
            raise QueueFullError(self.max_queued, QUEUE_FULL_RETRY_AFTER) from None
        except UnknownDependencies as unknown:
            raise DependenciesNotFound(unknown.missing, in_batch=True) from None
        try:
            self._queued(batch, tasks)
        finally:
            if key is not None:
                self.store.settle_key(owner, key.key)
        return SubmittedBatch(batch, created=True)

    def _new_tasks(
        self,
        items: Sequence[Mapping[str, Any]],
        owner: str,
        now: datetime,
        batch_id: str,
        task_ids: Sequence[str],
    ) -> Iterator[NewTask]:
        types: dict[str, TaskType | None] = {}
        for item, task_id in zip(items, task_ids, strict=True):
            name = item["type"]
            task_type = types.get(name) or types.setdefault(name, self.registry.get(name))
            if task_type is None:  # the schema only lets registered types through
                raise UnknownTaskType(name)
            yield task_type.new_task(item, owner, now, batch_id=batch_id, task_id=task_id)

    def _replay(self, taken: KeyTaken, print_: str) -> Batch:
        idempotency.check_replay(taken, print_)
        batch = self.store.batch(taken.task_id, self.clock())
        if batch is None:
            raise KeyBatchGone()
        return batch

    def _queued(self, batch: Batch, tasks: Sequence[NewTask]) -> None:
        self.notifier.task_submitted()
        log.info("batch %s of %d tasks queued", batch.id, batch.size)
        if self.metrics is not None:
            self.metrics.batch_created()
            for task_type, count in Counter(task.type for task in tasks).items():
                self.metrics.task_created(task_type, count)

    def get(self, batch_id: str, *, owner: str = "") -> Batch:
        """The batch, if ``owner`` submitted it: another caller's is as good as unknown."""
        key = canonical_id(batch_id)
        batch = self.store.batch(key, self.clock()) if key else None
        if batch is None or batch.owner != owner:
            raise BatchNotFound(batch_id)
        return batch

    def wait(self, batch_id: str, seconds: float, *, owner: str = "") -> Batch:
        """The batch once it is done, or as it is after ``seconds``.

        The end of its tasks wakes the reader at once, whichever process ended them
        (api.wakeups); the store is read again every ``poll_interval`` seconds too, should a
        wake-up be lost.
        """
        return self.events.wait_for(
            canonical_id(batch_id) or batch_id,
            lambda: self.get(batch_id, owner=owner),
            lambda batch: batch.done,
            seconds,
            self.poll_interval,
        )

    def cancel(self, batch_id: str, *, owner: str = "") -> Batch:
        """Cancel every queued task of the batch at once, and ask every running one to stop;
        the batch afterwards (its ended tasks are left as they are)."""
        batch = self.get(batch_id, owner=owner)
        now = self.clock()
        changed = self.store.cancel_batch(batch.id, now, now + timedelta(seconds=self.result_ttl))
        cancelled = asked = 0
        for task in changed:
            if task.status is Status.CANCELLED:
                cancelled += 1
                if self.metrics is not None:
                    self.metrics.task_finished(task.type, Status.CANCELLED)
            elif task.status is Status.RUNNING:
                asked += 1
                self.notifier.cancel_requested(task.id)
        if changed:
            log.info(
                "batch %s: %d tasks cancelled, %d running asked to stop", batch.id, cancelled, asked
            )
            self.events.changed_many([*(task.id for task in changed), batch.id])
        return self.get(batch.id, owner=owner)
