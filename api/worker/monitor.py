"""The monitor: leases, recovery of lost tasks, and the purge of expired ones.

``Monitor.tick()`` runs one iteration: it renews the lease of every task the pool runs (so a
live worker keeps its tasks, and hears of cancellations asked in other processes), takes back
tasks whose worker was lost (their lease expired) when a recovery is due, and purges a batch of
expired tasks when a purge is due. The pool's monitor thread is ``run()``: a tick every
``interval`` seconds. Tests call ``tick()`` themselves, with a clock and a timer of their own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from api.metrics import Metrics
from api.models import FIRES_KEPT_SECONDS, Status
from api.store import Store
from api.worker.attempt import Running, StopReason, log, task_log, utcnow

#: How often the monitor renews leases and picks up cancellations asked elsewhere.
HEARTBEAT_SECONDS = 1.0
#: How often expired terminal tasks are purged, and how many rows one statement deletes. A
#: backlog is purged a batch per tick, so that leases are never left unrenewed.
PURGE_INTERVAL_SECONDS = 60.0
PURGE_BATCH = 500


class Monitor:
    """Keeps the leases of the tasks a pool runs, takes back lost tasks, purges expired ones.

    ``running`` lists the tasks the pool runs now, by id; ``holds(task_id, entry)`` says whether
    ``entry`` is still how the pool runs that task. ``clock`` gives the times written to the
    store; ``timer`` (monotonic seconds) decides when a recovery or a purge is due.
    """

    def __init__(
        self,
        store: Store,
        *,
        running: Callable[[], list[tuple[str, Running]]],
        holds: Callable[[str, Running], bool],
        lease_seconds: float,
        result_ttl: float,
        metrics: Metrics | None,
        wake_all: Callable[[], None],
        clock: Callable[[], datetime] = utcnow,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.lease_seconds = lease_seconds
        self.result_ttl = result_ttl
        self.metrics = metrics
        self.clock = clock
        self.timer = timer
        #: Seconds between ticks: a few renewals per lease, at least once a HEARTBEAT_SECONDS.
        self.interval = min(HEARTBEAT_SECONDS, lease_seconds / 3)
        self._running = running
        self._holds = holds
        self._wake_all = wake_all
        self._next_recovery = self._next_purge = float("-inf")  # both due at the first tick

    def run(self, stop: threading.Event) -> None:
        """Tick every ``interval`` seconds until ``stop``; an error is logged, never fatal."""
        self._next_recovery = self._next_purge = float("-inf")
        while not stop.wait(self.interval):
            try:
                self.tick()
            except Exception:
                log.exception("monitor: error; carrying on")

    def tick(self) -> None:
        """One iteration: renew leases, then recover lost tasks and purge a batch, when due."""
        self.renew_leases()
        if self.timer() >= self._next_recovery:
            self.recover_lost()
            self._next_recovery = self.timer() + self.lease_seconds / 2
        if self.timer() >= self._next_purge:
            backlog = self.purge_batch() == PURGE_BATCH
            self._next_purge = self.timer() + (0 if backlog else PURGE_INTERVAL_SECONDS)

    def renew_leases(self) -> None:
        """Renew the lease of each running task; pass on cancels and lost leases to it."""
        running = self._running()
        until = self.clock() + timedelta(seconds=self.lease_seconds)
        for task_id, entry in running:
            if entry.context.finished:  # its outcome is being written, lease and all
                continue
            asked = self.store.heartbeat(task_id, entry.worker_id, until)
            if asked is None:
                # Not merely done meanwhile: still run by the pool, and not finished.
                if self._holds(task_id, entry) and not entry.context.finished:
                    task_log(
                        log.warning, task_id, "task %s: lease lost; its result will be dropped"
                    )
                    entry.context.request_stop(StopReason.LEASE_LOST)
            elif asked:
                entry.context.request_stop(StopReason.CANCEL_ASKED)

    def recover_lost(self) -> int:
        """Take back tasks whose worker was lost; how many."""
        now = self.clock()
        taken = self.store.recover_expired(now, now + timedelta(seconds=self.result_ttl))
        for task in taken:
            task_log(
                log.warning,
                task.id,
                "task %s: its worker was lost; %s",
                "queued again" if task.status is Status.QUEUED else task.status.value,
            )
            if self.metrics is None:
                continue
            if task.status is Status.QUEUED:
                self.metrics.task_retried(task.type)
            else:
                self.metrics.task_finished(task.type, task.status)
        if taken:
            self._wake_all()
        return len(taken)

    def purge_batch(self) -> int:
        """Purge one batch of expired tasks, keys and old records of schedules' fire times;
        the largest of the three counts."""
        now = self.clock()
        tasks, keys = self.store.purge_expired(now, PURGE_BATCH)
        fires = self.store.purge_fires(now - timedelta(seconds=FIRES_KEPT_SECONDS), PURGE_BATCH)
        if tasks or keys or fires:
            log.info(
                "purged %d expired tasks, %d idempotency keys and %d records of fire times",
                tasks,
                keys,
                fires,
            )
        return max(tasks, keys, fires)
