"""The ticker: the fire times of schedules that came become tasks, each exactly once.

Every worker process runs a ticker (a thread of its pool); none is a leader, and none needs to
be: a fire is one transaction of the store (``Store.fire_schedule``) that applies only while
the schedule is as the ticker read it, so when several processes tick at once one of them
makes the task and the others find it ``TAKEN``.

``Ticker.tick()`` is one iteration: read the schedules due now, fire each, and say how long
to wait before the next look (at most ``TICK_SECONDS``, so that a schedule created or changed
by another process fires within about a second). Tests call it with a clock of their own.

What one fire does, for a schedule whose ``next_run_at`` came:

- **Catch-up.** The fire time is the latest one passed (its ``next_run_at`` itself, unless
  the processes were down over several): never a flood. With ``catch_up: none`` a fire time
  more than ``MISFIRE_GRACE`` in the past makes no task (``MISSED``): the processes were down
  when it came. With ``latest`` it makes one, late.
- **Overlap.** With ``overlap: skip`` no task is made while the schedule's last task is still
  queued or running (``OVERLAP``).
- **A task type that is gone** (its module no longer imported) makes no task
  (``UNKNOWN_TYPE``, a warning in the log), and the schedule moves on. A process that lacks
  the type leaves the fire to the others for ``MISFIRE_GRACE`` first: processes of one store
  may import different modules (and, in a rolling deploy, old ones run beside new ones).
- ``TASKS_MAX_QUEUED`` tasks queued: no task (``QUEUE_FULL``).

Each skip is counted by schedule and reason (``taskapi_schedule_skips_total``), each task made
too (``taskapi_schedule_fires_total``).
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from api.metrics import Metrics
from api.models import SKIPS, CatchUp, FireOutcome, Overlap, Schedule
from api.registry import Registry
from api.scheduler.cron import Timing
from api.store import Fire, Store

log = logging.getLogger("api.scheduler")

#: The longest a ticker waits between two looks at the store: a schedule created or changed
#: in another process, or a fire time that came, is seen within this.
TICK_SECONDS = 1.0
#: The shortest wait between two looks (a store that keeps failing is not hammered).
MIN_WAIT_SECONDS = 0.01
#: How many due schedules one look reads; more are fired at the next look, at once.
DUE_BATCH = 100
#: A schedule whose fire failed here (the store erred; this host lacks its time zone) is tried
#: again by this process no sooner than this: it neither spins the ticker nor holds up the
#: other schedules, and another process may fire it meanwhile.
ERROR_BACKOFF = timedelta(seconds=10)
#: How soon a ticker looks again while a schedule stays due that it left (failed here, its
#: task type unknown here, or held by another process's transaction).
DUE_AGAIN_SECONDS = 0.1
#: A fire time older than this when its tick comes was missed (the processes were down):
#: ``catch_up: none`` makes no task for it. Sidekiq-cron's grace period, for the same reason.
MISFIRE_GRACE = timedelta(seconds=60)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Ticker:
    """Fires the due schedules of ``store`` with the task types of ``registry``.

    ``made()`` is called after each task made (the pool wakes its workers); ``clock`` gives
    the times fires are computed at and written with.
    """

    def __init__(
        self,
        store: Store,
        registry: Registry,
        *,
        metrics: Metrics | None = None,
        max_queued: int | None = None,
        made: Callable[[], None] = lambda: None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.registry = registry
        self.metrics = metrics
        self.max_queued = max_queued
        self.clock = clock
        self._made = made
        #: Schedules whose fire failed here, by (owner, name, version): when to try again.
        self._failed: dict[tuple[str, str, int], datetime] = {}

    def run(self, stop: threading.Event) -> None:
        """Tick until ``stop``; an error is logged, never fatal."""
        try:
            while True:
                try:
                    wait = self.tick()
                except Exception:
                    log.exception("scheduler: error; carrying on")
                    wait = TICK_SECONDS
                if stop.wait(wait):
                    return
        finally:
            self.store.detach_thread()

    def tick(self) -> float:
        """Fire every schedule due now; the seconds to wait before the next tick."""
        now = self.clock()
        self._failed = {key: at for key, at in self._failed.items() if at > now}
        read = self.store.due_schedules(now, DUE_BATCH + len(self._failed))
        due = [s for s in read if (s.owner, s.name, s.version) not in self._failed]
        # In an order of this ticker's own: the tickers of several processes that find the
        # same schedules due each fire different ones first, instead of all racing for one.
        random.shuffle(due)
        for schedule in due:
            try:
                self.fire(schedule, now)
            except Exception:
                log.exception(
                    "schedule %s: error firing it; this process tries again in %g s",
                    schedule.name,
                    ERROR_BACKOFF.total_seconds(),
                )
                self._failed[(schedule.owner, schedule.name, schedule.version)] = (
                    now + ERROR_BACKOFF
                )
        if len(due) >= DUE_BATCH:
            return MIN_WAIT_SECONDS  # more are due
        upcoming = self.store.next_schedule_at()
        if upcoming is None:
            return TICK_SECONDS
        until = (upcoming - self.clock()).total_seconds()
        if until <= 0:  # one this tick left stays due
            return DUE_AGAIN_SECONDS
        return min(max(until, MIN_WAIT_SECONDS), TICK_SECONDS)

    def fire(self, schedule: Schedule, now: datetime) -> FireOutcome:
        """Fire ``schedule``, whose ``next_run_at`` came by ``now``: what it came to."""
        due = schedule.next_run_at
        if due is None:  # paused since it was read
            return FireOutcome.TAKEN
        spec = schedule.spec
        timing = Timing.of(spec)
        fire_at = timing.latest(due, now)
        task_type = self.registry.get(spec.task["type"])
        if task_type is None and now - due <= MISFIRE_GRACE:
            return FireOutcome.TAKEN  # left to a process that has the type, for a while
        skip: FireOutcome | None = None
        if spec.catch_up is CatchUp.NONE and now - fire_at > MISFIRE_GRACE:
            skip = FireOutcome.MISSED
        elif task_type is None:
            skip = FireOutcome.UNKNOWN_TYPE
        task = (
            None
            if skip is not None or task_type is None
            else task_type.new_task(
                spec.task, schedule.owner, now, schedule=schedule.name, scheduled_for=fire_at
            )
        )
        outcome, made = self.store.fire_schedule(
            Fire(
                owner=schedule.owner,
                name=schedule.name,
                version=schedule.version,
                due=due,
                next_run_at=timing.next_after(fire_at),
                fire_at=fire_at,
                task=task,
                skip=skip,
                skip_if_busy=spec.overlap is Overlap.SKIP,
                max_queued=self.max_queued,
            )
        )
        self._report(schedule, fire_at, outcome, made.id if made else None)
        return outcome

    def _report(
        self, schedule: Schedule, fire_at: datetime, outcome: FireOutcome, task_id: str | None
    ) -> None:
        """Log and count what a fire came to."""
        name, when = schedule.name, fire_at.isoformat()
        if outcome is FireOutcome.MADE:
            log.info("schedule %s: task %s made for %s", name, task_id, when)
            if self.metrics is not None:
                self.metrics.schedule_fired(schedule.owner, name)
                self.metrics.task_created(schedule.spec.task["type"])
            self._made()
            return
        if outcome not in SKIPS:
            return  # TAKEN: another process fired it
        if outcome is FireOutcome.UNKNOWN_TYPE:
            log.warning(
                "schedule %s: no task made for %s: task type %r is not registered (is the "
                "module that adds it in TASKS_IMPORT?)",
                name,
                when,
                schedule.spec.task["type"],
            )
        elif outcome is FireOutcome.QUEUE_FULL:
            log.warning("schedule %s: no task made for %s: the queue is full", name, when)
        else:
            reason = (
                "its previous task is still queued or running (overlap: skip)"
                if outcome is FireOutcome.OVERLAP
                else "it was missed while no worker process ran (catch_up: none)"
            )
            log.info("schedule %s: no task made for %s: %s", name, when, reason)
        if self.metrics is not None:
            self.metrics.schedule_skipped(schedule.owner, name, outcome.value)
