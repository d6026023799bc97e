"""What the store tests share: the times they run at and the task they submit."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from api.models import NewTask, Status, Task, TaskError
from api.store import Ending, Store

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
LATER = T0 + timedelta(days=7)


def new_task(
    *,
    type: str = "add",
    priority: int = 0,
    created: datetime = T0,
    delay: float = 0,
    queue: str = "default",
) -> NewTask:
    return NewTask(
        id=str(uuid.uuid4()),
        type=type,
        params={"x": 1, "y": 2, "text": "nul\u0000 and ünïcode"},
        max_attempts=3,
        timeout_seconds=None,
        priority=priority,
        created_at=created,
        run_after=created + timedelta(seconds=delay),
        queue=queue,
    )


def claim(store: Store, worker_id: str, now: datetime, lease_until: datetime) -> Task | None:
    """The next ready task, claimed alone (``claim_many`` of one)."""
    claimed = store.claim_many(worker_id, 1, now, lease_until)
    return claimed[0] if claimed else None


def finish(
    store: Store,
    task_id: str,
    worker_id: str,
    status: Status,
    now: datetime,
    expires_at: datetime,
    *,
    result: Any = None,
    error: TaskError | None = None,
) -> bool:
    """One task ended alone (``complete`` of one ending): whether it applied."""
    ending = Ending(task_id, worker_id, status, now, expires_at, result, error)
    (after,), _ = store.complete([ending])
    return after is not None


def retry(
    store: Store,
    task_id: str,
    worker_id: str,
    error: TaskError,
    run_after: datetime,
    now: datetime,
    expires_at: datetime,
) -> Status | None:
    """One failed attempt queued again alone (``complete`` of one retry): the status after."""
    ending = Ending(task_id, worker_id, Status.QUEUED, now, expires_at, None, error, run_after)
    (after,), _ = store.complete([ending])
    return after
