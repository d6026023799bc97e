"""The worker pool: a fixed number of threads that claim tasks from the store and run them.

Each thread runs ``while not stopping: run_one() or wait``. A task submitted in this process
wakes an idle thread at once; tasks submitted elsewhere are found by polling every
``poll_interval`` seconds, or exactly when the next delayed task becomes ready.
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
from datetime import UTC, datetime, timedelta

from api.models import Progress, Task, TaskError
from api.registry import Registry, TaskCancelled
from api.store import Store

log = logging.getLogger(__name__)

#: How often a running task's ``cancel_requested`` re-reads the store (cancel from elsewhere).
CANCEL_CHECK_INTERVAL = 0.5
#: After the grace, how long tasks asked to stop get to do so before the pool lets go of them.
WIND_DOWN_SECONDS = 2.0
#: The longest an idle worker waits before looking at the store again after an error.
ERROR_PAUSE = 1.0


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
    """The ``TaskContext`` a running task gets: progress and cancellation."""

    def __init__(self, store: Store, task: Task, worker_id: str) -> None:
        self._store = store
        self._task = task
        self._worker_id = worker_id
        self._cancel = threading.Event()
        self._checked_at = time.monotonic()
        if task.cancel_requested:
            self._cancel.set()

    @property
    def task_id(self) -> str:
        return self._task.id

    @property
    def attempt(self) -> int:
        return self._task.attempts

    def request_cancel(self) -> None:
        self._cancel.set()

    @property
    def cancel_requested(self) -> bool:
        if (
            not self._cancel.is_set()
            and time.monotonic() - self._checked_at > CANCEL_CHECK_INTERVAL
        ):
            self._checked_at = time.monotonic()
            if self._store.cancel_requested(self._task.id):
                self._cancel.set()
        return self._cancel.is_set()

    def progress(
        self, current: float, total: float | None = None, message: str | None = None
    ) -> None:
        asked = self._store.report_progress(
            self._task.id, self._worker_id, Progress(float(current), total, message)
        )
        self._checked_at = time.monotonic()
        if asked:
            self._cancel.set()

    def sleep(self, seconds: float) -> bool:
        deadline = time.monotonic() + max(seconds, 0.0)
        while not self.cancel_requested:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._cancel.wait(min(left, CANCEL_CHECK_INTERVAL))
        return True


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
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.registry = registry
        self.size = size
        self.result_ttl = result_ttl
        self.poll_interval = poll_interval
        self.lease_seconds = lease_seconds
        self.clock = clock
        self.wakeup = Wakeup(size)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._running: dict[str, tuple[str, RunContext]] = {}
        self._lock = threading.Lock()
        self._id_prefix = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    # -- what the service calls (api.service.Notifier) ---------------------------------------

    def task_submitted(self) -> None:
        self.wakeup.notify()

    def cancel_requested(self, task_id: str) -> None:
        with self._lock:
            entry = self._running.get(task_id)
        if entry is not None:
            entry[1].request_cancel()

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        return bool(self._threads)

    def alive(self) -> bool:
        """True when every thread of a started pool is running."""
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    def start(self) -> None:
        if self._threads:
            return
        self._stop.clear()
        for n in range(self.size):
            worker_id = f"{self._id_prefix}:{n}"
            thread = threading.Thread(
                target=self._loop, args=(worker_id,), name=f"taskapi-worker-{n}", daemon=True
            )
            self._threads.append(thread)
            thread.start()
        log.info("started %d worker threads", self.size)

    def stop(self, grace: float) -> None:
        """Stop claiming; let running tasks finish for ``grace`` seconds, then hand them back."""
        self._stop.set()
        self.wakeup.notify_all()
        deadline = time.monotonic() + grace
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            left = list(self._running.items())
        for task_id, (worker_id, context) in left:
            # Hand it back first: a task that stops on the signal below must not record
            # itself cancelled, since no client asked for that.
            if self.store.release(task_id, worker_id):
                log.warning("handed task %s back to the queue at shutdown", task_id)
            context.request_cancel()
        # Tasks that heed the signal end within moments; let them, so that nothing touches
        # the store after the caller closes it. One that ignores it is left to the process exit.
        if left:
            deadline = time.monotonic() + WIND_DOWN_SECONDS
            for thread in self._threads:
                thread.join(max(0.0, deadline - time.monotonic()))
        self._threads = []

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

    # -- running tasks -----------------------------------------------------------------------

    def drain(self, worker_id: str = "drain") -> int:
        """Run tasks in this thread until none is ready; how many ran. For tests and scripts."""
        count = 0
        while self.run_one(worker_id):
            count += 1
        return count

    def run_one(self, worker_id: str) -> bool:
        """Claim and run at most one ready task; False when none was ready."""
        now = self.clock()
        task = self.store.claim(worker_id, now, now + timedelta(seconds=self.lease_seconds))
        if task is None:
            return False
        context = RunContext(self.store, task, worker_id)
        with self._lock:
            self._running[task.id] = (worker_id, context)
        try:
            self._execute(task, worker_id, context)
        finally:
            with self._lock:
                self._running.pop(task.id, None)
        return True

    def _execute(self, task: Task, worker_id: str, context: RunContext) -> None:
        task_type = self.registry.get(task.type)
        if task_type is None:
            error = TaskError("UnknownTaskType", f"No task type {task.type!r} in this worker.")
            self._finish_failed(task, worker_id, error, retry=False)
            return
        log.info("task %s (%s) attempt %d started", task.id, task.type, task.attempts)
        try:
            result = task_type.func(context, task.params)
            json.dumps(result, allow_nan=False)
        except TaskCancelled:
            self._finish_cancelled(task, worker_id)
        except Exception as exc:
            if context.cancel_requested:
                self._finish_cancelled(task, worker_id)
                return
            error = TaskError(type(exc).__name__, str(exc) or type(exc).__name__)
            log.info("task %s attempt %d failed: %s", task.id, task.attempts, error.type)
            self._finish_failed(task, worker_id, error, retry=task.attempts < task.max_attempts)
        else:
            now = self.clock()
            if self.store.succeed(task.id, worker_id, result, now, self._expiry(now)):
                log.info("task %s succeeded", task.id)
            else:
                log.warning("task %s ended after this worker lost it; result dropped", task.id)

    def _expiry(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self.result_ttl)

    def _finish_cancelled(self, task: Task, worker_id: str) -> None:
        now = self.clock()
        error = TaskError("TaskCancelled", "Cancelled on request.")
        if self.store.fail(task.id, worker_id, error, now, self._expiry(now), cancelled=True):
            log.info("task %s cancelled", task.id)

    def _finish_failed(self, task: Task, worker_id: str, error: TaskError, *, retry: bool) -> None:
        now = self.clock()
        task_type = self.registry.get(task.type)
        if retry and task_type is not None:
            delay = task_type.backoff_seconds(task.attempts, random.random())
            self.store.retry(task.id, worker_id, error, now + timedelta(seconds=delay))
            self.wakeup.notify()
            return
        self.store.fail(task.id, worker_id, error, now, self._expiry(now))
