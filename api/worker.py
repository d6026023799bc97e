"""The worker pool: a fixed number of threads that claim tasks from the store and run them.

Each thread runs ``while not stopping: run_one() or wait``. A task submitted in this process
wakes an idle thread at once; tasks submitted elsewhere are found by polling every
``poll_interval`` seconds, or exactly when the next delayed task becomes ready.

A monitor thread renews the lease of every running task (so a live worker keeps its tasks and
hears of cancellations from other processes), takes back tasks whose worker was lost (their
lease expired), and purges expired tasks in small batches.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from api.events import TaskEvents
from api.metrics import Metrics
from api.models import Progress, Status, Task, TaskError
from api.registry import Registry, TaskCancelled, TaskFunction
from api.store import Store

log = logging.getLogger(__name__)

#: How often the monitor renews leases and picks up cancellations asked elsewhere.
HEARTBEAT_SECONDS = 1.0
#: How often expired terminal tasks are purged, and how many rows one statement deletes. A
#: backlog is purged a batch per heartbeat, so that leases are never left unrenewed.
PURGE_INTERVAL_SECONDS = 60.0
PURGE_BATCH = 500
#: After the grace, how long tasks asked to stop get to do so before the pool lets go of them.
WIND_DOWN_SECONDS = 2.0
#: The longest an idle worker waits before looking at the store again after an error.
ERROR_PAUSE = 1.0
#: How often a stop in its grace looks whether ``hurry()`` cut it short.
HURRY_CHECK_SECONDS = 0.1


#: Jitter of retry delays, from a generator of the pool's own (the global one belongs to the app).
_JITTER = random.Random()


def _task_log(emit: Callable[..., None], task_id: str, text: str, *args: Any) -> None:
    """A line about one task (``text`` starts with ``task %s``), carrying its ``task_id``."""
    emit(text, task_id, *args, extra={"task_id": task_id})


def utcnow() -> datetime:
    return datetime.now(UTC)


class Wakeup:
    """Wakes idle workers: one per signal, never more pending signals than workers."""

    def __init__(self, cap: int) -> None:
        self._cond = threading.Condition()
        self._pending = 0
        self._cap = max(cap, 1)

    def notify(self) -> None:
        with self._cond:
            if self._pending < self._cap:
                self._pending += 1
                self._cond.notify()

    def notify_all(self) -> None:
        with self._cond:
            self._pending = self._cap
            self._cond.notify_all()

    def wait(self, timeout: float) -> bool:
        """Wait for a signal up to ``timeout`` seconds; True when one came."""
        with self._cond:
            if self._pending == 0:
                self._cond.wait(timeout)
            if self._pending:
                self._pending -= 1
                return True
            return False


class RunContext:
    """The ``TaskContext`` a running task gets: progress, and the signal to stop.

    The signal comes from a client's cancel, from the attempt's timeout, or from shutdown;
    ``stop_reason`` says which.
    """

    def __init__(self, store: Store, events: TaskEvents, task: Task, worker_id: str) -> None:
        self._store = store
        self._events = events
        self._task = task
        self._worker_id = worker_id
        self._stop = threading.Event()
        self.stop_reason: str | None = None
        #: The attempt has returned and its outcome is being written: no heartbeat needed.
        self.finished = False
        if task.cancel_requested:
            self.request_stop("cancel")

    @property
    def task_id(self) -> str:
        return self._task.id

    @property
    def attempt(self) -> int:
        return self._task.attempts

    def request_stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
        self._stop.set()

    @property
    def cancel_requested(self) -> bool:
        return self._stop.is_set()

    @property
    def task_type(self) -> str:
        return self._task.type

    def progress(
        self, current: float, total: float | None = None, message: str | None = None
    ) -> None:
        asked = self._store.report_progress(
            self._task.id,
            self._worker_id,
            Progress(
                float(current),
                None if total is None else float(total),
                None if message is None else str(message),
            ),
        )
        self._events.changed(self._task.id)
        if asked is None:
            self.request_stop("lost")
        elif asked:
            self.request_stop("cancel")

    def sleep(self, seconds: float) -> bool:
        return self._stop.wait(max(seconds, 0.0))


@dataclass
class _Running:
    worker_id: str
    context: RunContext


@dataclass
class _Outcome:
    kind: str  # "ok", "error", "cancelled" or "timeout"
    result: Any = None
    error: BaseException | None = None


class WorkerPool:
    """``size`` threads running tasks from ``store``; ``drain()`` runs them inline for tests."""

    def __init__(
        self,
        store: Store,
        registry: Registry,
        *,
        size: int,
        result_ttl: float,
        poll_interval: float,
        lease_seconds: float,
        events: TaskEvents | None = None,
        metrics: Metrics | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.registry = registry
        self.size = size
        self.result_ttl = result_ttl
        self.poll_interval = poll_interval
        self.lease_seconds = lease_seconds
        self.events = events or TaskEvents()
        self.metrics = metrics
        self.clock = clock
        self.wakeup = Wakeup(size)
        self.heartbeat_seconds = min(HEARTBEAT_SECONDS, lease_seconds / 3)
        self._stop = threading.Event()
        #: Set by hurry(): the grace of stop() is over, running tasks go back to the queue now.
        self._hurry = threading.Event()
        self._monitor_stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._monitor: threading.Thread | None = None
        self._listener: threading.Thread | None = None
        self._running: dict[str, _Running] = {}
        #: A task claimed for a worker in the transaction that recorded its last success.
        self._claimed: dict[str, Task] = {}
        self._lock = threading.Lock()
        self._id_prefix = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    # -- what the service calls (api.service.Notifier) ---------------------------------------

    def task_submitted(self) -> None:
        self.wakeup.notify()

    def cancel_requested(self, task_id: str) -> None:
        with self._lock:
            running = self._running.get(task_id)
        if running is not None:
            running.context.request_stop("cancel")

    # -- lifecycle ---------------------------------------------------------------------------

    def alive(self) -> bool:
        """True when every thread of a started pool is running."""
        threads = [*self._threads, *([self._monitor] if self._monitor else [])]
        return bool(self._threads) and all(t.is_alive() for t in threads)

    def start(self) -> None:
        if self._threads:
            return
        self._stop.clear()
        self._monitor_stop.clear()
        for n in range(self.size):
            thread = threading.Thread(
                target=self._loop,
                args=(f"{self._id_prefix}:{n}",),
                name=f"taskapi-worker-{n}",
                daemon=True,
            )
            self._threads.append(thread)
            thread.start()
        self._monitor = threading.Thread(target=self._watch, name="taskapi-monitor", daemon=True)
        self._monitor.start()
        self._listener = threading.Thread(
            target=self.store.listen,
            args=(self.wakeup.notify, self._monitor_stop),
            name="taskapi-listen",
            daemon=True,
        )
        self._listener.start()
        log.info("started %d worker threads", self.size)

    def running_count(self) -> int:
        """How many tasks this pool's threads are running now."""
        with self._lock:
            return len(self._running)

    def hurry(self) -> None:
        """End the grace of ``stop()`` now (before or during it): running tasks go back now."""
        self._hurry.set()

    def stop(self, grace: float) -> None:
        """Stop claiming; let running tasks finish for ``grace`` seconds, then hand them back.

        ``hurry()``, from another thread or a signal handler, cuts the grace short.
        """
        self._stop.set()
        self.wakeup.notify_all()
        self._join(grace, until=self._hurry)
        with self._lock:
            left = list(self._running.items())
            claimed, self._claimed = list(self._claimed.items()), {}
        for worker_id, task in claimed:  # claimed with a success, not started before the stop
            self._hand_back(task.id, worker_id, task.type)
        for task_id, running in left:
            # Hand it back first: a task that stops on the signal below must not record
            # itself cancelled, since no client asked for that.
            self._hand_back(task_id, running.worker_id, running.context.task_type)
            running.context.request_stop("shutdown")
        if left:
            # Tasks that heed the signal end within moments; let them, so that nothing
            # touches the store after the caller closes it.
            self._join(WIND_DOWN_SECONDS)
        self._monitor_stop.set()
        for helper in (self._monitor, self._listener):
            if helper is not None:
                helper.join(WIND_DOWN_SECONDS)
        self._threads = []
        self._monitor = self._listener = None
        self._hurry.clear()

    def _hand_back(self, task_id: str, worker_id: str, task_type: str) -> None:
        """Give a task this pool holds back to the queue (or to ``cancelled``, if asked)."""
        now = self.clock()
        status = self.store.release(task_id, worker_id, now, self._expiry(now))
        if status is Status.CANCELLED and self.metrics is not None:
            self.metrics.task_finished(task_type, Status.CANCELLED)
        if status is not None:
            _task_log(log.warning, task_id, "task %s handed back at shutdown: %s", status.value)
            self.events.changed(task_id)

    def _join(self, seconds: float, *, until: threading.Event | None = None) -> None:
        """Wait up to ``seconds`` for the worker threads to end, or until ``until`` is set."""
        deadline = time.monotonic() + seconds
        for thread in self._threads:
            if until is None:
                thread.join(max(0.0, deadline - time.monotonic()))
                continue
            while thread.is_alive() and not until.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                thread.join(min(left, HURRY_CHECK_SECONDS))

    def _loop(self, worker_id: str) -> None:
        while not self._stop.is_set():
            try:
                if self.run_one(worker_id):
                    continue
                self.wakeup.wait(self._idle_wait())
            except Exception:
                log.exception("worker %s: error in the worker loop; carrying on", worker_id)
                self._stop.wait(ERROR_PAUSE)

    def _idle_wait(self) -> float:
        """Seconds to wait when idle: the poll interval, or less if a delayed task is due."""
        due = self.store.next_run_after()
        if due is None:
            return self.poll_interval
        return min(self.poll_interval, max((due - self.clock()).total_seconds(), 0.001))

    # -- the monitor -------------------------------------------------------------------------

    def _watch(self) -> None:
        next_recovery = next_purge = 0.0
        while not self._monitor_stop.wait(self.heartbeat_seconds):
            try:
                self.renew_leases()
                if time.monotonic() >= next_recovery:
                    self.recover_lost()
                    next_recovery = time.monotonic() + self.lease_seconds / 2
                if time.monotonic() >= next_purge:
                    backlog = self._purge_batch() == PURGE_BATCH
                    next_purge = time.monotonic() + (0 if backlog else PURGE_INTERVAL_SECONDS)
            except Exception:
                log.exception("monitor: error; carrying on")

    def renew_leases(self) -> None:
        """Renew the lease of each running task; pass on cancels and lost leases to it."""
        with self._lock:
            running = list(self._running.items())
        until = self.clock() + timedelta(seconds=self.lease_seconds)
        for task_id, entry in running:
            if entry.context.finished:  # its outcome is being written, lease and all
                continue
            asked = self.store.heartbeat(task_id, entry.worker_id, until)
            if asked is None:
                with self._lock:
                    still_ours = self._running.get(task_id) is entry
                if still_ours and not entry.context.finished:  # not merely done meanwhile
                    _task_log(
                        log.warning, task_id, "task %s: lease lost; its result will be dropped"
                    )
                    entry.context.request_stop("lost")
            elif asked:
                entry.context.request_stop("cancel")

    def recover_lost(self) -> int:
        """Take back tasks whose worker was lost; how many."""
        now = self.clock()
        taken = self.store.recover_expired(now, self._expiry(now))
        for task in taken:
            _task_log(
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
            self.wakeup.notify_all()
        return len(taken)

    def _purge_batch(self) -> int:
        """One batch of expired tasks and keys; the larger of the two counts."""
        tasks, keys = self.store.purge_expired(self.clock(), PURGE_BATCH)
        if tasks or keys:
            log.info("purged %d expired tasks and %d idempotency keys", tasks, keys)
        return max(tasks, keys)

    def purge_expired(self) -> int:
        """Purge every expired task and key now, batch after batch; how many rows."""
        total = 0
        while (deleted := self._purge_batch()) == PURGE_BATCH:
            total += deleted
        return total + deleted

    # -- running tasks -----------------------------------------------------------------------

    def drain(self, worker_id: str = "drain") -> int:
        """Run tasks in this thread until none is ready; how many ran. For tests and scripts."""
        count = 0
        while self.run_one(worker_id):
            count += 1
        return count

    def run_one(self, worker_id: str) -> bool:
        """Claim and run at most one ready task; False when none was ready."""
        with self._lock:
            task = self._claimed.pop(worker_id, None)
        if task is None:
            now = self.clock()
            task = self.store.claim(worker_id, now, now + timedelta(seconds=self.lease_seconds))
        if task is None:
            return False
        # No wake-up for readers here: a long-poll waits for the end, not for the start.
        if self.metrics is not None:
            self.metrics.task_started(task)
        context = RunContext(self.store, self.events, task, worker_id)
        with self._lock:
            self._running[task.id] = _Running(worker_id, context)
        runner: threading.Thread | None = None
        try:
            runner = self._execute(task, worker_id, context)
        finally:
            with self._lock:
                self._running.pop(task.id, None)
            self.events.changed(task.id)
        if runner is not None:
            # The attempt timed out and is recorded; its thread has not stopped. This slot
            # waits for it, so that no more task threads run than the pool has workers.
            _task_log(log.warning, task.id, "task %s: waiting for its timed-out attempt to stop")
            runner.join()
        return True

    def _execute(self, task: Task, worker_id: str, context: RunContext) -> threading.Thread | None:
        """Run one attempt and record its outcome; the thread of a timed-out attempt, if any."""
        task_type = self.registry.get(task.type)
        if task_type is None:
            error = TaskError("UnknownTaskType", f"No task type {task.type!r} in this worker.")
            self._finish_failed(task, worker_id, error, retry=False)
            return None
        _task_log(log.info, task.id, "task %s (%s) attempt %d started", task.type, task.attempts)
        began = time.monotonic()
        outcome, runner = self._call(task_type.func, context, task)
        context.finished = True
        if self.metrics is not None:
            self.metrics.attempt_ended(task.type, time.monotonic() - began)
        if outcome.kind == "timeout":
            context.request_stop("timeout")
            error = TaskError(
                "TimeoutError", f"The attempt ran past its timeout of {task.timeout_seconds:g}s."
            )
            self._finish_failed(
                task, worker_id, error, retry=task.failed_attempts < task.max_attempts
            )
            return runner
        if outcome.kind == "ok":
            try:
                json.dumps(outcome.result, allow_nan=False)
            except (TypeError, ValueError) as not_json:
                outcome = _Outcome("error", error=not_json)
            else:
                self._finish_succeeded(task, worker_id, outcome.result)
                return None
        if outcome.kind == "cancelled" or context.stop_reason == "cancel":
            self._finish_cancelled(task, worker_id)
            return None
        raised = outcome.error
        assert raised is not None
        error = TaskError(type(raised).__name__, str(raised) or type(raised).__name__)
        _task_log(log.info, task.id, "task %s attempt %d failed: %s", task.attempts, error.type)
        self._finish_failed(task, worker_id, error, retry=task.failed_attempts < task.max_attempts)
        return None

    def _call(
        self, func: TaskFunction, context: RunContext, task: Task
    ) -> tuple[_Outcome, threading.Thread | None]:
        """Call the task function: inline, or on its own thread when it has a timeout."""

        def attempt() -> _Outcome:
            try:
                return _Outcome("ok", result=func(context, task.params))
            except TaskCancelled:
                return _Outcome("cancelled")
            except Exception as exc:
                return _Outcome("error", error=exc)

        if task.timeout_seconds is None:
            return attempt(), None
        box: list[_Outcome] = []

        def run_on_own_thread() -> None:
            try:
                box.append(attempt())
            finally:
                self.store.detach_thread()  # the thread ends: so must its connection

        runner = threading.Thread(
            target=run_on_own_thread, name=f"taskapi-task-{task.id}", daemon=True
        )
        runner.start()
        runner.join(task.timeout_seconds)
        if box:
            return box[0], None
        return _Outcome("timeout"), runner

    def _expiry(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self.result_ttl)

    def _finish_succeeded(self, task: Task, worker_id: str, result: Any) -> None:
        now = self.clock()
        if self._stop.is_set():
            done = self.store.finish(
                task.id, worker_id, Status.SUCCEEDED, now, self._expiry(now), result=result
            )
        else:
            # Under load most successes are followed by a claim: one transaction for both.
            # The claimed task runs next on this worker; if the pool began to stop meanwhile,
            # it goes back to the queue (here, or in stop() if that comes later still).
            lease_until = now + timedelta(seconds=self.lease_seconds)
            done, claimed = self.store.succeed_and_claim(
                task.id, worker_id, result, now, self._expiry(now), lease_until
            )
            if claimed is not None:
                with self._lock:
                    stopping = self._stop.is_set()
                    if not stopping:
                        self._claimed[worker_id] = claimed
                if stopping:
                    self._hand_back(claimed.id, worker_id, claimed.type)
        if done:
            _task_log(log.info, task.id, "task %s succeeded")
            self._count_finished(task, Status.SUCCEEDED)
        else:
            _task_log(
                log.warning, task.id, "task %s ended after this worker lost it; result dropped"
            )

    def _finish_cancelled(self, task: Task, worker_id: str) -> None:
        now = self.clock()
        if self.store.finish(task.id, worker_id, Status.CANCELLED, now, self._expiry(now)):
            _task_log(log.info, task.id, "task %s cancelled")
            self._count_finished(task, Status.CANCELLED)

    def _finish_failed(self, task: Task, worker_id: str, error: TaskError, *, retry: bool) -> None:
        now = self.clock()
        task_type = self.registry.get(task.type)
        if retry and task_type is not None:
            delay = task_type.backoff_seconds(task.failed_attempts, _JITTER.random())
            status = self.store.retry(
                task.id,
                worker_id,
                error,
                now + timedelta(seconds=delay),
                now,
                self._expiry(now),
            )
            if status is Status.QUEUED:
                _task_log(log.info, task.id, "task %s: retry in %.2fs", delay)
                if self.metrics is not None:
                    self.metrics.task_retried(task.type)
                self.wakeup.notify()
            elif status is Status.CANCELLED:
                _task_log(log.info, task.id, "task %s cancelled (asked while its attempt ran)")
                self._count_finished(task, Status.CANCELLED)
            return
        if self.store.finish(
            task.id, worker_id, Status.FAILED, now, self._expiry(now), error=error
        ):
            _task_log(log.info, task.id, "task %s failed: %s: %s", error.type, error.message[:200])
            self._count_finished(task, Status.FAILED)
        else:
            _task_log(
                log.warning,
                task.id,
                "task %s failed after this worker lost it; its error is dropped",
            )

    def _count_finished(self, task: Task, outcome: Status) -> None:
        if self.metrics is not None:
            self.metrics.task_finished(task.type, outcome)
