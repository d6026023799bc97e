"""The worker pool: a fixed number of threads that claim tasks from the store and run them.

Each thread runs ``while not stopping: run_one() or wait``. A task submitted in this process
wakes an idle thread at once; tasks submitted elsewhere are found by polling every
``poll_interval`` seconds, or exactly when the next delayed task becomes ready. ``drain()``
runs tasks in the calling thread until none is ready, with no thread started.

Beside the workers, the pool runs the monitor's thread (``api.worker.monitor``: leases,
recovery, purge) and the store's listener (wake-ups from other processes). One attempt of a
task, from the call to the store write of its end, is ``api.worker.attempt``.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from api.events import TaskEvents
from api.metrics import Metrics
from api.models import Status, Task
from api.registry import Registry
from api.store import Store
from api.worker.attempt import (
    AttemptRunner,
    RunContext,
    Running,
    StopReason,
    log,
    task_log,
    utcnow,
)
from api.worker.monitor import Monitor

#: After the grace, how long tasks asked to stop get to do so before the pool lets go of them.
WIND_DOWN_SECONDS = 2.0
#: The longest an idle worker waits before looking at the store again after an error.
ERROR_PAUSE = 1.0
#: How often a stop in its grace looks whether ``hurry()`` cut it short.
HURRY_CHECK_SECONDS = 0.1


class Wakeup:
    """Wakes idle workers: one per signal, never more pending signals than workers."""

    def __init__(self, cap: int) -> None:
        self._cond = threading.Condition()
        self._pending = 0
        self._cap = max(cap, 1)

    def notify(self) -> None:
        """Wake one idle worker (or the next one to wait)."""
        with self._cond:
            if self._pending < self._cap:
                self._pending += 1
                self._cond.notify()

    def notify_all(self) -> None:
        """Wake every worker."""
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


class WorkerPool:
    """``size`` threads running tasks from ``store``; ``drain()`` runs them inline for tests.

    ``clock`` gives the times written to the store; ``timer`` (monotonic seconds) schedules the
    monitor's recoveries and purges.
    """

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
        timer: Callable[[], float] = time.monotonic,
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
        self._stop = threading.Event()
        #: Set by hurry(): the grace of stop() is over, running tasks go back to the queue now.
        self._hurry = threading.Event()
        self._monitor_stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._monitor_thread: threading.Thread | None = None
        self._listener: threading.Thread | None = None
        self._running: dict[str, Running] = {}
        #: A task claimed for a worker in the transaction that recorded its last success.
        self._claimed: dict[str, Task] = {}
        self._lock = threading.Lock()
        self._id_prefix = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.attempts = AttemptRunner(
            store,
            registry,
            events=self.events,
            metrics=metrics,
            clock=clock,
            lease_seconds=lease_seconds,
            result_ttl=result_ttl,
            stopping=self._stop,
            keep_claimed=self._keep_claimed,
            wake_one=self.wakeup.notify,
        )
        self.monitor = Monitor(
            store,
            running=self._running_now,
            holds=self._holds,
            lease_seconds=lease_seconds,
            result_ttl=result_ttl,
            metrics=metrics,
            wake_all=self.wakeup.notify_all,
            clock=clock,
            timer=timer,
        )

    # -- what the service calls (api.service.Notifier) ---------------------------------------

    def task_submitted(self) -> None:
        """A task was submitted in this process: wake an idle worker."""
        self.wakeup.notify()

    def cancel_requested(self, task_id: str) -> None:
        """A client asked to cancel ``task_id``: tell it to stop if this pool runs it."""
        with self._lock:
            running = self._running.get(task_id)
        if running is not None:
            running.context.request_stop(StopReason.CANCEL_ASKED)

    # -- lifecycle ---------------------------------------------------------------------------

    def alive(self) -> bool:
        """True when every thread of a started pool is running."""
        threads = [*self._threads, *([self._monitor_thread] if self._monitor_thread else [])]
        return bool(self._threads) and all(t.is_alive() for t in threads)

    def start(self) -> None:
        """Start the worker threads, the monitor's and the listener's (once)."""
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
        self._monitor_thread = threading.Thread(
            target=self.monitor.run, args=(self._monitor_stop,), name="taskapi-monitor", daemon=True
        )
        self._monitor_thread.start()
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
            running.context.request_stop(StopReason.SHUTTING_DOWN)
        if left:
            # Tasks that heed the signal end within moments; let them, so that nothing
            # touches the store after the caller closes it.
            self._join(WIND_DOWN_SECONDS)
        self.attempts.children.close()  # child processes still running an attempt are killed
        self._monitor_stop.set()
        for helper in (self._monitor_thread, self._listener):
            if helper is not None:
                helper.join(WIND_DOWN_SECONDS)
        self._threads = []
        self._monitor_thread = self._listener = None
        self._hurry.clear()

    def _hand_back(self, task_id: str, worker_id: str, task_type: str) -> None:
        """Give a task this pool holds back to the queue (or to ``cancelled``, if asked)."""
        now = self.clock()
        expires_at = now + timedelta(seconds=self.result_ttl)
        status = self.store.release(task_id, worker_id, now, expires_at)
        if status is Status.CANCELLED and self.metrics is not None:
            self.metrics.task_finished(task_type, Status.CANCELLED)
        if status is not None:
            task_log(log.warning, task_id, "task %s handed back at shutdown: %s", status.value)
            self.events.changed(task_id)

    def _keep_claimed(self, worker_id: str, task: Task) -> None:
        """Keep a task claimed with a success for the worker's next ``run_one``; hand it back
        at once if the pool is stopping (``stop()`` may have looked already)."""
        with self._lock:
            stopping = self._stop.is_set()
            if not stopping:
                self._claimed[worker_id] = task
        if stopping:
            self._hand_back(task.id, worker_id, task.type)

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

    # -- the workers -------------------------------------------------------------------------

    def _loop(self, worker_id: str) -> None:
        """A worker thread: run tasks until the pool stops; an error is logged, never fatal."""
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
            self._running[task.id] = Running(worker_id, context)
        runner: threading.Thread | None = None
        try:
            runner = self.attempts.run(task, worker_id, context)
        finally:
            with self._lock:
                self._running.pop(task.id, None)
            self.events.changed(task.id)
        if runner is not None:
            # The attempt timed out and is recorded; its thread has not stopped. This slot
            # waits for it, so that no more task threads run than the pool has workers.
            task_log(log.warning, task.id, "task %s: waiting for its timed-out attempt to stop")
            runner.join()
        return True

    # -- what the monitor reads ----------------------------------------------------------------

    def _running_now(self) -> list[tuple[str, Running]]:
        """The tasks this pool runs now, by id (a copy)."""
        with self._lock:
            return list(self._running.items())

    def _holds(self, task_id: str, entry: Running) -> bool:
        """Whether ``entry`` is still how this pool runs ``task_id``."""
        with self._lock:
            return self._running.get(task_id) is entry
