"""The worker pool: worker threads fed by one dispatcher that claims and completes in batches.

The dispatcher is the pool's producer and completer (as River's): one statement claims as
many ready tasks as the pool has free worker threads, which run them; how each attempt ended
goes back to the dispatcher, which writes a group of endings and the next claim in one
transaction (``Store.complete``). A group is written as soon as every worker is idle, else once
its first ending has waited ``FLUSH_SECONDS``. Nothing is claimed beyond the free threads, so a
busy process never holds tasks that another could run.

A task submitted in this process, or in another (through api.wakeups: ``task_submitted``),
wakes the dispatcher at once; polling every ``poll_interval`` seconds covers a lost wake-up, and
the dispatcher looks again exactly when the next delayed task becomes ready. ``drain()`` runs
tasks in the calling thread until none is ready, with no thread started.

Beside them, the pool runs the monitor's thread (``api.worker.monitor``: leases, recovery,
purge) and the scheduler's (``api.scheduler.ticker``: the due fire times of schedules become
tasks; every process that runs workers ticks). One attempt of a task, from the call to the
ending it comes to, is ``api.worker.attempt``.
"""

from __future__ import annotations

import itertools
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Collection, Sequence
from datetime import datetime, timedelta

from api.callbacks.sender import Sender
from api.events import TaskEvents
from api.metrics import Metrics
from api.models import CALLBACK_TIMEOUT_SECONDS, TERMINAL, Status, Task
from api.registry import Registry
from api.scheduler.ticker import Ticker
from api.store import Claim, Ending, Store
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
#: The longest the dispatcher waits before looking at the store again after an error.
ERROR_PAUSE = 1.0
#: How often a stop in its grace looks whether ``hurry()`` cut it short.
HURRY_CHECK_SECONDS = 0.1
#: The longest an ending waits for others to share its transaction while some workers still
#: run (a long-poll waits on it). When every worker is idle, the group is written at once.
FLUSH_SECONDS = 0.001


def holder_prefix(pid: int) -> str:
    """How the holder ids of every claim made by the process ``pid`` of this machine start."""
    return f"{os.uname().nodename}:{pid}:"


class Wakeup:
    """Tells the dispatcher that tasks may be ready: signals before it looks count as one."""

    def __init__(self, cond: threading.Condition) -> None:
        self._cond = cond
        #: Set by a signal, cleared by the claim that looks (under the condition's lock).
        self.pending = False

    def notify(self) -> None:
        """Tasks may be ready: the dispatcher claims for its free workers."""
        with self._cond:
            self.pending = True
            self._cond.notify_all()

    #: One dispatcher claims for every worker: waking it once is waking them all.
    notify_all = notify


class _Ended:
    """An attempt that ended, waiting for its group to be written."""

    __slots__ = ("batch_id", "callback", "ending", "task_type")

    def __init__(
        self, task_type: str, ending: Ending, batch_id: str | None = None, callback: bool = False
    ) -> None:
        self.task_type = task_type
        self.ending = ending
        #: The batch of the task, whose long-polls its end wakes too.
        self.batch_id = batch_id
        #: The task has a callback_url: its end wakes the sender.
        self.callback = callback


class WorkerPool:
    """``size`` worker threads and their dispatcher running tasks from ``store``; ``drain()``
    runs them inline for tests.

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
        queues: Collection[str] | None = None,
        max_queued: int | None = None,
        sender: Sender | None = None,
    ) -> None:
        self.store = store
        #: Sends the callbacks of ended tasks, in every process that runs workers.
        self.sender = sender
        self._sender_thread: threading.Thread | None = None
        #: The queues whose tasks this pool takes (TASKS_QUEUES); None: every queue.
        self.queues = frozenset(queues) if queues else None
        self.registry = registry
        self.size = size
        self.result_ttl = result_ttl
        self.poll_interval = poll_interval
        self.lease_seconds = lease_seconds
        self.events = events or TaskEvents()
        self.metrics = metrics
        self.clock = clock
        self._lease = timedelta(seconds=lease_seconds)
        self._lock = threading.Lock()
        #: The dispatcher waits on it: for endings, for wake-ups, for the stop.
        self._cond = threading.Condition(self._lock)
        self.wakeup = Wakeup(self._cond)
        self._stop = threading.Event()
        #: Set by hurry(): the grace of stop() is over, running tasks go back to the queue now.
        self._hurry = threading.Event()
        self._monitor_stop = threading.Event()
        self._ticker_thread: threading.Thread | None = None
        #: Set by stop() once the workers are done: the dispatcher writes what is left, ends.
        self._closing = threading.Event()
        self._threads: list[threading.Thread] = []
        self._dispatcher: threading.Thread | None = None
        self._monitor_thread: threading.Thread | None = None
        #: Every task the pool holds, by id: from its claim until its attempt ended.
        self._running: dict[str, Running] = {}
        #: Claimed tasks on their way to a worker thread (None: a worker thread is to end).
        self._handoff: queue.SimpleQueue[tuple[Task, Running] | None] = queue.SimpleQueue()
        #: Endings waiting to be written, and when the first of them came (``time.monotonic``).
        self._ended: list[_Ended] = []
        self._first_ended_at = 0.0
        #: Worker threads waiting for a timed-out attempt to stop: not free to take a task.
        self._stuck = 0
        #: When the dispatcher polls the store next, while nothing wakes it.
        self._poll_at = 0.0
        self._id_prefix = f"{holder_prefix(os.getpid())}{uuid.uuid4().hex[:8]}"
        self._claims = itertools.count(1)
        self.attempts = AttemptRunner(
            store, registry, metrics=metrics, clock=clock, result_ttl=result_ttl
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
        #: Fires the schedules that are due, in every process that runs workers.
        self.ticker = Ticker(
            store,
            registry,
            metrics=metrics,
            max_queued=max_queued,
            made=self.wakeup.notify,
            clock=clock,
        )

    # -- what the service calls (api.service.Notifier) ---------------------------------------

    def task_submitted(self) -> None:
        """A task was submitted in this process: claim it if a worker is free."""
        if self.size:  # else no dispatcher waits: a submit must not wake a thread for nothing
            self.wakeup.notify()

    def cancel_requested(self, task_id: str) -> None:
        """A client asked to cancel ``task_id``: tell it to stop if this pool holds it."""
        with self._lock:
            running = self._running.get(task_id)
        if running is not None:
            running.context.request_stop(StopReason.CANCEL_ASKED)

    # -- lifecycle ---------------------------------------------------------------------------

    def alive(self) -> bool:
        """True when every thread of a started pool is running."""
        helpers = [
            t
            for t in (
                self._dispatcher,
                self._monitor_thread,
                self._ticker_thread,
                self._sender_thread,
            )
            if t is not None
        ]
        return bool(self._threads) and all(t.is_alive() for t in [*self._threads, *helpers])

    def start(self) -> None:
        """Start the worker threads, the dispatcher's and the monitor's (once)."""
        if self._threads:
            return
        self._stop.clear()
        self._closing.clear()
        self._monitor_stop.clear()
        self._handoff = queue.SimpleQueue()
        self._ended = []  # late endings of tasks the last stop handed back: they cannot apply
        for n in range(self.size):
            thread = threading.Thread(target=self._work, name=f"taskapi-worker-{n}", daemon=True)
            self._threads.append(thread)
            thread.start()
        if self.size:  # an API process of taskapi serve has no workers: nothing to dispatch
            if any(t.isolation == "process" for t in self.registry):
                self.attempts.children.warm()
            self.wakeup.notify()
            self._dispatcher = threading.Thread(
                target=self._dispatch, name="taskapi-dispatcher", daemon=True
            )
            self._dispatcher.start()
            self._ticker_thread = threading.Thread(
                target=self.ticker.run,
                args=(self._stop,),  # a stopping pool makes no more tasks
                name="taskapi-scheduler",
                daemon=True,
            )
            self._ticker_thread.start()
            if self.sender is not None:
                self.sender.holder = f"{self._id_prefix}:callbacks"
                self._sender_thread = threading.Thread(
                    target=self.sender.run,
                    args=(self._stop,),  # a stopping pool claims no more deliveries
                    name="taskapi-callbacks",
                    daemon=True,
                )
                self._sender_thread.start()
        self._monitor_thread = threading.Thread(
            target=self.monitor.run, args=(self._monitor_stop,), name="taskapi-monitor", daemon=True
        )
        self._monitor_thread.start()
        if self.size:
            taken = ", ".join(sorted(self.queues)) if self.queues else "every queue"
            log.info("started %d worker threads (tasks of %s)", self.size, taken)

    def running_count(self) -> int:
        """How many tasks this pool's threads are running now (started, not yet ended)."""
        with self._lock:
            return sum(1 for entry in self._running.values() if entry.started)

    def hurry(self) -> None:
        """End the grace of ``stop()`` now (before or during it): running tasks go back now."""
        self._hurry.set()

    def stop(self, grace: float) -> None:
        """Stop claiming; let running tasks finish for ``grace`` seconds, then hand them back.

        Tasks claimed and not started go back to the queue at once. ``hurry()``, from another
        thread or a signal handler, cuts the grace short.
        """
        with self._cond:
            self._stop.set()
            self._cond.notify_all()
            waiting = self._take_handoff()
        for task, entry in waiting:  # claimed, not started: back at once
            self._hand_back(task.id, entry.worker_id, task.type)
        for _ in self._threads:
            self._handoff.put(None)  # each worker thread ends once its task is done
        self._join(grace, until=self._hurry)
        with self._lock:
            left = list(self._running.items())
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
        with self._cond:
            self._closing.set()
            self._cond.notify_all()
        self._monitor_stop.set()
        if self.sender is not None:
            self.sender.wake()
        for helper in (self._dispatcher, self._monitor_thread, self._ticker_thread):
            if helper is not None:
                helper.join(WIND_DOWN_SECONDS)
        if self._sender_thread is not None:
            # Its attempts under way end within their timeout, then it records them: the
            # store must stay open until then.
            self._sender_thread.join(2 * CALLBACK_TIMEOUT_SECONDS + WIND_DOWN_SECONDS)
        self._threads = []
        self._dispatcher = self._monitor_thread = self._ticker_thread = None
        self._sender_thread = None
        self._hurry.clear()

    def _take_handoff(self) -> list[tuple[Task, Running]]:
        """Take back the claimed tasks no worker thread has taken yet (with the lock held)."""
        taken: list[tuple[Task, Running]] = []
        while True:
            try:
                item = self._handoff.get_nowait()
            except queue.Empty:
                return taken
            if item is not None:
                self._running.pop(item[0].id, None)
                taken.append(item)

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

    # -- the dispatcher ----------------------------------------------------------------------

    def _dispatch(self) -> None:
        """The dispatcher's thread: write endings and claim, until the pool closes; an error
        is logged, never fatal (the endings are written at the next turn)."""
        while True:
            try:
                group = self._next_group()
                if group is None:
                    return
                self._write(*group)
            except Exception:
                log.exception("dispatcher: error writing endings or claiming; carrying on")
                if self._closing.is_set():
                    return  # what is left stays held until its lease runs out (then it reruns)
                self._closing.wait(ERROR_PAUSE)

    def _next_group(self) -> tuple[list[_Ended], Claim | None] | None:
        """Wait until there is something to write: endings due, or a claim for free workers.

        None once the pool is closing and every ending is written.
        """
        now = time.monotonic
        with self._cond:
            while True:
                busy = len(self._running) + self._stuck
                stopping = self._stop.is_set()
                timeout: float | None
                if self._ended:
                    timeout = self._first_ended_at + FLUSH_SECONDS - now()
                    if busy == 0 or stopping or timeout <= 0:
                        break
                elif self._closing.is_set():
                    return None
                elif stopping or busy >= self.size:
                    timeout = None  # an ending, or the stop's next step, wakes it
                elif self.wakeup.pending:
                    break
                else:
                    timeout = self._poll_at - now()
                    if timeout <= 0:
                        self.wakeup.pending = True  # the poll: look at the store again
                        break
                self._cond.wait(timeout)
            ended, self._ended = self._ended, []
            claim = None
            # Claim when told that tasks may be ready, and with every group of endings: an
            # ended task frees a worker, and room in its queue if that has a concurrency.
            if not stopping and (self.wakeup.pending or ended) and busy < self.size:
                self.wakeup.pending = False
                at = self.clock()
                worker_id = f"{self._id_prefix}:{next(self._claims)}"
                claim = Claim(worker_id, self.size - busy, at, at + self._lease, self.queues)
            return ended, claim

    def _write(self, ended: list[_Ended], claim: Claim | None) -> None:
        """Write a group of endings and a claim in one transaction; then hand the claimed
        tasks to the workers, and log, count and announce the endings."""
        try:
            if ended:
                statuses, claimed = self.store.complete([e.ending for e in ended], claim=claim)
            else:
                assert claim is not None
                statuses, claimed = (
                    [],
                    self.store.claim_many(
                        claim.worker_id,
                        claim.limit,
                        claim.now,
                        claim.lease_until,
                        queues=claim.queues,
                    ),
                )
        except Exception:
            with self._cond:  # not written: first in the next group
                self._ended[:0] = ended
                if claim is not None:
                    self.wakeup.pending = True
            raise
        if claim is not None:
            self._hand_out(claimed, claim.worker_id)
            if len(claimed) == claim.limit:
                self.wakeup.pending = True  # more may be ready
        if Status.QUEUED in statuses:  # a retry: it may be due before the next poll
            self.wakeup.pending = True
        if self.sender is not None and any(
            one.callback and status in TERMINAL for one, status in zip(ended, statuses, strict=True)
        ):
            self.sender.wake()  # its delivery was written with the end: send it now
        if ended:  # long-polls here and in other processes: one message for the group
            woken = [one.ending.task_id for one in ended]
            woken += {one.batch_id: None for one in ended if one.batch_id is not None}
            self.events.changed_many(woken)
        recorded = self.attempts.recorded
        for one, status in zip(ended, statuses, strict=True):
            recorded(one.task_type, one.ending, status)
        if claim is not None and not claimed:  # none ready: when to look again
            # (Fewer than asked is no reason to look: the ends of those claimed claim again,
            # and a queue at its concurrency has ready tasks that only an end lets run.)
            self._poll_at = time.monotonic() + self._idle_wait(claim.now)

    def _hand_out(self, tasks: Sequence[Task], worker_id: str) -> None:
        """Hold claimed tasks and pass them to the worker threads; back to the queue at once
        if the pool began to stop meanwhile (``stop()`` may have looked already)."""
        with self._lock:
            stopping = self._stop.is_set()
            if not stopping:
                for task in tasks:
                    entry = Running(worker_id, RunContext(self.store, self.events, task, worker_id))
                    self._running[task.id] = entry
                    self._handoff.put((task, entry))
        if stopping:
            for task in tasks:
                self._hand_back(task.id, worker_id, task.type)

    def _idle_wait(self, claimed_at: datetime) -> float:
        """Seconds to wait when a claim at ``claimed_at`` found nothing: the poll interval, or
        less if a delayed task is due sooner."""
        # Only tasks due after the claim: one it could have taken waits for room in its queue
        # (the end of a running task, a change of settings), which wakes the pool, or for the
        # poll.
        due = self.store.next_run_after(claimed_at, queues=self.queues)
        if due is None:
            return self.poll_interval
        return min(self.poll_interval, max((due - self.clock()).total_seconds(), 0.001))

    # -- the workers -------------------------------------------------------------------------

    def _work(self) -> None:
        """A worker thread: run the tasks handed to it until told to end; an error is logged,
        never fatal."""
        while (item := self._handoff.get()) is not None:
            task, entry = item
            try:
                self._run(task, entry)
            except Exception:
                log.exception("worker: error running task %s; carrying on", task.id)

    def _run(self, task: Task, entry: Running) -> None:
        """Run a handed-out task, and pass its ending to the dispatcher."""
        with self._lock:
            entry.started = not self._stop.is_set()
            if not entry.started:  # taken just as the stop began: it goes back, not run
                self._running.pop(task.id, None)
        if not entry.started:
            self._hand_back(task.id, entry.worker_id, task.type)
            return
        if self.metrics is not None:
            self.metrics.task_started(task)
        try:
            ending, runner = self.attempts.run(task, entry.worker_id, entry.context)
        except BaseException as exc:  # a bug of ours, or what a task raised past call()
            log.exception("worker: error running task %s; it fails", task.id)
            ending, runner = self.attempts.crashed(task, entry.worker_id, exc), None
        with self._cond:
            self._running.pop(task.id, None)
            if runner is not None:
                self._stuck += 1
            if not self._ended:
                self._first_ended_at = time.monotonic()
                self._cond.notify()
            self._ended.append(
                _Ended(task.type, ending, task.batch_id, task.callback_url is not None)
            )
            if not self._running:
                self._cond.notify()  # every worker idle: write at once
        if runner is not None:
            # The attempt timed out; its thread has not stopped. This worker waits for it,
            # so that no more task threads run than the pool has workers.
            task_log(log.warning, task.id, "task %s: waiting for its timed-out attempt to stop")
            runner.join()
            with self._cond:
                self._stuck -= 1
                self._cond.notify()

    # -- inline, for tests -------------------------------------------------------------------

    def drain(self, worker_id: str = "drain") -> int:
        """Run tasks in this thread until none is ready; how many ran. For tests and scripts."""
        count = 0
        while self.run_one(worker_id):
            count += 1
        return count

    def run_one(self, worker_id: str) -> bool:
        """Claim and run at most one ready task in this thread; False when none was ready."""
        now = self.clock()
        claimed = self.store.claim_many(worker_id, 1, now, now + self._lease, queues=self.queues)
        if not claimed:
            return False
        task = claimed[0]
        if self.metrics is not None:
            self.metrics.task_started(task)
        entry = Running(worker_id, RunContext(self.store, self.events, task, worker_id), True)
        with self._lock:
            self._running[task.id] = entry
        runner: threading.Thread | None = None
        try:
            ending, runner = self.attempts.run(task, worker_id, entry.context)
            (status,), _ = self.store.complete([ending])
            self.attempts.recorded(task.type, ending, status)
            if (
                self.sender is not None
                and task.callback_url
                and status not in (None, Status.QUEUED)
            ):
                self.sender.wake()
        finally:
            with self._lock:
                self._running.pop(task.id, None)
            woken = [task.id] if task.batch_id is None else [task.id, task.batch_id]
            self.events.changed_many(woken)
        if runner is not None:
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
