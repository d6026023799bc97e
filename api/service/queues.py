"""What the queue views call: list queues, read one, change its settings.

A queue exists once a task names it or its settings are changed; ``default`` always does. Its
counts cover the tasks of every caller. Who may change a queue is the HTTP layer's to say
(``api.http.access.admin_only``); the service only keeps the rules of queues themselves.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from api.exceptions import NotAQueueName, QueueNotFound
from api.models import DEFAULT_QUEUE, QUEUE_NAME_PATTERN, QueueState, Status
from api.service.tasks import Nobody, Notifier, utcnow
from api.store import Store

log = logging.getLogger("api.service")

#: The settings a change may name (``QueueUpdate``).
SETTINGS = frozenset({"paused", "concurrency"})


@dataclass(frozen=True)
class Queue:
    """A queue as a client reads it (``Queue``): its settings, its counts by status, and how
    long its oldest ready task has waited."""

    name: str
    paused: bool
    concurrency: int | None
    counts: Mapping[str, int]
    oldest_queued_seconds: float | None

    @classmethod
    def of(cls, state: QueueState, now: datetime) -> Queue:
        """The queue ``state`` describes, read at ``now``."""
        oldest = state.oldest_ready_at
        return cls(
            name=state.name,
            paused=state.paused,
            concurrency=state.concurrency,
            counts={status.value: state.counts.get(status, 0) for status in Status},
            oldest_queued_seconds=None
            if oldest is None
            else max(0.0, (now - oldest).total_seconds()),
        )


def empty(name: str) -> QueueState:
    """A queue with no tasks and no settings (``default`` before it is used)."""
    return QueueState(
        name=name,
        paused=False,
        concurrency=None,
        counts=dict.fromkeys(Status, 0),
        oldest_ready_at=None,
    )


def check_name(name: str) -> None:
    """Refuse a name no queue can have, as a queue that does not exist."""
    if not re.fullmatch(QUEUE_NAME_PATTERN, name):
        raise NotAQueueName(name)


def may_start_tasks(changes: Mapping[str, Any]) -> bool:
    """Whether a change of settings may let tasks start: a resume, or a new concurrency."""
    return changes.get("paused") is False or "concurrency" in changes


@dataclass
class QueueService:
    """Queues as clients see them: every caller's tasks counted, settings kept in the store."""

    store: Store
    #: Told when a change may let tasks start, to wake the workers of every process.
    notifier: Notifier = field(default_factory=Nobody)
    clock: Callable[[], datetime] = utcnow

    def list(self) -> list[Queue]:
        """Every queue that has tasks or settings, and ``default``, by name."""
        now = self.clock()
        states = {state.name: state for state in self.store.queues(now)}
        states.setdefault(DEFAULT_QUEUE, empty(DEFAULT_QUEUE))
        return [Queue.of(states[name], now) for name in sorted(states)]

    def get(self, name: str) -> Queue:
        """The queue ``name``; ``default`` even before any task used it."""
        check_name(name)
        now = self.clock()
        state = self.store.queue(name, now)
        if state is None:
            if name != DEFAULT_QUEUE:
                raise QueueNotFound(name)
            state = empty(name)
        return Queue.of(state, now)

    def update(self, name: str, changes: Mapping[str, Any]) -> Queue:
        """Change the settings given in ``changes`` (``paused``, ``concurrency``), creating the
        queue's settings if it had none; the queue as it is then. No change at all changes
        nothing: for a queue that does not exist, that is QueueNotFound."""
        check_name(name)
        unknown = set(changes) - SETTINGS
        if unknown:  # the schema lets none through
            raise ValueError(f"Unknown queue settings: {', '.join(sorted(unknown))}")
        if not changes:  # nothing to set: no queue is made of it (a typo stays no queue)
            return self.get(name)
        self.store.update_queue(name, changes)
        log.info("queue %s: settings changed %s", name, dict(changes))
        if may_start_tasks(changes):
            self.notifier.task_submitted()
        return self.get(name)
