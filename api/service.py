"""What the views call: submit, read, list, cancel and delete tasks.

The service owns the rules a client meets (defaults from the task type, which changes a task's
status allows, what a refusal says); the store owns how tasks are kept.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from api.models import NewTask, Status, Task
from api.registry import Registry
from api.store import Store, TaskFilter

#: The largest offset a listing asks of the store (a signed 64-bit integer).
MAX_OFFSET = 2**63 - 1


class ServiceError(Exception):
    """A request the service refuses; ``status`` is the HTTP status it maps to."""

    status = 400
    title = "Bad Request"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class TaskNotFound(ServiceError):
    status = 404
    title = "Task not found"

    def __init__(self, task_id: str) -> None:
        super().__init__(
            f"There is no task with id {task_id!r}; it may have expired or been deleted."
        )


class TaskConflict(ServiceError):
    status = 409
    title = "Conflict with the task's state"


class Notifier(Protocol):
    """Who hears of new tasks and cancellations in this process (the worker pool)."""

    def task_submitted(self) -> None: ...

    def cancel_requested(self, task_id: str) -> None: ...


class _Nobody:
    def task_submitted(self) -> None:
        pass

    def cancel_requested(self, task_id: str) -> None:
        pass


def utcnow() -> datetime:
    return datetime.now(UTC)


def canonical_id(task_id: str) -> str | None:
    """The canonical form of a task id, or None when it is not a UUID."""
    try:
        return str(uuid.UUID(task_id))
    except (ValueError, TypeError, AttributeError):
        return None


@dataclass
class TaskService:
    store: Store
    registry: Registry
    result_ttl: float
    notifier: Notifier = field(default_factory=_Nobody)
    clock: Callable[[], datetime] = utcnow

    def submit(self, request: dict[str, Any]) -> Task:
        """Queue a task from a validated TaskCreate body."""
        task_type = self.registry.get(request["type"])
        if task_type is None:  # the schema only lets registered types through
            raise ServiceError(f"Unknown task type {request['type']!r}.")
        now = self.clock()
        task = self.store.create(
            NewTask(
                id=str(uuid.uuid4()),
                type=task_type.name,
                params=request["params"],
                max_attempts=request.get("max_attempts", task_type.max_attempts),
                timeout_seconds=request.get("timeout_seconds", task_type.timeout_seconds),
                priority=request.get("priority", 0),
                created_at=now,
                run_after=now + timedelta(seconds=request.get("delay_seconds", 0)),
            )
        )
        self.notifier.task_submitted()
        return task

    def get(self, task_id: str) -> Task:
        key = canonical_id(task_id)
        task = self.store.get(key) if key else None
        if task is None:
            raise TaskNotFound(task_id)
        return task

    def list(
        self, statuses: Sequence[str], type_name: str | None, *, page: int, page_size: int
    ) -> tuple[list[Task], int]:
        where = TaskFilter(statuses=tuple(Status(s) for s in statuses), type=type_name)
        # A page far past the end is simply empty; keep its offset within what stores take.
        offset = min((page - 1) * page_size, MAX_OFFSET)
        return self.store.list(where, offset=offset, limit=page_size)

    def cancel(self, task_id: str) -> Task:
        """Cancel a queued task at once; ask a running one to stop."""
        current = self.get(task_id)
        if not current.is_terminal:
            now = self.clock()
            changed = self.store.cancel(current.id, now, now + timedelta(seconds=self.result_ttl))
            if changed is None:
                raise TaskNotFound(task_id)
            if changed.status is Status.RUNNING:
                self.notifier.cancel_requested(changed.id)
            # It may have ended on its own meanwhile: that is the 409 below, not a cancel.
            if changed.status is Status.CANCELLED or not changed.is_terminal:
                return changed
            current = changed
        raise TaskConflict(
            f"Task {current.id} is already {current.status.value}; only a queued or running "
            "task can be cancelled."
        )

    def delete(self, task_id: str) -> None:
        """Delete a terminal task."""
        task = self.get(task_id)
        if self.store.delete(task.id):
            return
        latest = self.store.get(task.id)
        if latest is None:
            raise TaskNotFound(task_id)
        raise TaskConflict(
            f"Task {latest.id} is {latest.status.value}; only a terminal task (succeeded, "
            "failed or cancelled) can be deleted. Cancel it first."
        )
