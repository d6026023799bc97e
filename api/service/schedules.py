"""What the schedule views call: set, read, list and delete schedules, and trigger one now.

A schedule belongs to its caller, as a task does: another caller's is as good as unknown. Its
fire times are made into tasks by the scheduler (``api.scheduler``), in whichever worker
process ticks first; the service only sets when the next one is (``next_run_at``) and makes
the task of a trigger.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from api.exceptions import (
    NotAScheduleName,
    QueueFullError,
    ScheduleNotFound,
    ScheduleTypeUnknown,
)
from api.metrics import Metrics
from api.models import SCHEDULE_NAME_PATTERN, CatchUp, Overlap, Schedule, ScheduleSpec, Task
from api.registry import Registry
from api.scheduler.cron import Timing
from api.service.tasks import MAX_OFFSET, QUEUE_FULL_RETRY_AFTER, Nobody, Notifier, utcnow
from api.store import QueueFull, Store

log = logging.getLogger("api.service")


def is_schedule_name(name: str) -> bool:
    """Whether ``name`` can name a schedule."""
    return re.fullmatch(SCHEDULE_NAME_PATTERN, name) is not None


def spec_of(body: Mapping[str, Any]) -> ScheduleSpec:
    """The spec a validated ScheduleWrite body sets."""
    return ScheduleSpec(
        cron=body.get("cron"),
        every_seconds=body.get("every_seconds"),
        timezone=body["timezone"],
        task=dict(body["task"]),
        paused=body["paused"],
        overlap=Overlap(body["overlap"]),
        catch_up=CatchUp(body["catch_up"]),
    )


def next_run(spec: ScheduleSpec, now: datetime) -> datetime | None:
    """When a schedule set to ``spec`` at ``now`` fires next: never while paused, else the first
    fire time after ``now`` (the store keeps the one it has when the timing is unchanged)."""
    return None if spec.paused else Timing.of(spec).next_after(now)


@dataclass
class ScheduleService:
    """Schedules as clients see them: each caller's own."""

    store: Store
    registry: Registry
    max_queued: int | None = None
    #: Told of the task a trigger makes, to wake the workers of every process.
    notifier: Notifier = field(default_factory=Nobody)
    metrics: Metrics | None = None
    clock: Callable[[], datetime] = utcnow

    def put(self, name: str, body: Mapping[str, Any], owner: str = "") -> tuple[Schedule, bool]:
        """Create the schedule ``name`` of ``owner`` from a validated ScheduleWrite body, or
        replace what it does; the schedule afterwards, and whether it was created."""
        if not is_schedule_name(name):
            raise NotAScheduleName(name)
        spec = spec_of(body)
        now = self.clock()
        schedule, created = self.store.put_schedule(owner, name, spec, next_run(spec, now), now)
        log.info("schedule %s %s", name, "created" if created else "replaced")
        return schedule, created

    def get(self, name: str, owner: str = "") -> Schedule:
        """The schedule ``name`` of ``owner``."""
        schedule = self.store.schedule(owner, name) if is_schedule_name(name) else None
        if schedule is None:
            raise ScheduleNotFound(name)
        return schedule

    def list(self, owner: str = "", *, page: int, page_size: int) -> tuple[list[Schedule], int]:
        """One page of ``owner``'s schedules, by name, and how many there are."""
        offset = min((page - 1) * page_size, MAX_OFFSET)
        return self.store.schedules(owner, offset=offset, limit=page_size)

    def delete(self, name: str, owner: str = "") -> None:
        """Delete the schedule; the tasks it made stay."""
        if not (is_schedule_name(name) and self.store.delete_schedule(owner, name)):
            raise ScheduleNotFound(name)
        log.info("schedule %s deleted", name)

    def trigger(self, name: str, owner: str = "") -> Task:
        """Make the schedule's task now, paused or not (``scheduled_for`` = now)."""
        spec = self.get(name, owner).spec
        task_type = self.registry.get(spec.task["type"])
        if task_type is None:
            raise ScheduleTypeUnknown(name, spec.task["type"])
        now = self.clock()
        new = task_type.new_task(spec.task, owner, now, schedule=name, scheduled_for=now)
        try:
            task = self.store.trigger_schedule(owner, name, new, max_queued=self.max_queued)
        except QueueFull:
            raise QueueFullError(self.max_queued, QUEUE_FULL_RETRY_AFTER) from None
        if task is None:  # deleted since it was read
            raise ScheduleNotFound(name)
        self.notifier.task_submitted()
        log.info(
            "task %s (%s) queued by a trigger of schedule %s",
            task.id,
            task.type,
            name,
            extra={"task_id": task.id},
        )
        if self.metrics is not None:
            self.metrics.task_created(task.type)
        return task
