"""One attempt of one task: the context it runs with, the call, and the ending it comes to.

``AttemptRunner.run`` calls the task's function inline, or on a thread of its own when the task
has a timeout, and turns how the call ended into an ``Ending`` for the store: succeeded, failed
or cancelled, or queued again (a failed attempt with attempts left). The pool writes endings
in batches (``Store.complete``); ``AttemptRunner.recorded`` then logs and counts each.
"""

from __future__ import annotations

import enum
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from api.events import TaskEvents
from api.metrics import Metrics
from api.models import Progress, Status, Task, TaskError
from api.registry import Registry, StopSignal, TaskCancelled, TaskFunction, TaskType
from api.store import Ending, Store
from api.worker.isolation import ChildPool

#: One logger for the whole worker package: its lines keep the name they always had.
log = logging.getLogger("api.worker")

#: Jitter of retry delays, from a generator of the pool's own (the global one belongs to the app).
_JITTER = random.Random()


def task_log(emit: Callable[..., None], task_id: str, text: str, *args: Any) -> None:
    """A line about one task (``text`` starts with ``task %s``), carrying its ``task_id``."""
    emit(text, task_id, *args, extra={"task_id": task_id})


def utcnow() -> datetime:
    """The current time, timezone-aware UTC: the worker's default clock."""
    return datetime.now(UTC)


class StopReason(enum.StrEnum):
    """Why a running task was told to stop; the first reason given is the one kept."""

    CANCEL_ASKED = "cancel"  # a client asked to cancel the task
    TIMED_OUT = "timeout"  # the attempt ran past its timeout_seconds (it is recorded failed)
    SHUTTING_DOWN = "shutdown"  # the pool is stopping and handed the task back to the queue
    LEASE_LOST = "lost"  # this worker no longer holds the task: its end will not be recorded


class Outcome(enum.StrEnum):
    """How the call of a task function ended."""

    RETURNED = "ok"  # it returned a result
    RAISED = "error"  # it raised an exception (not TaskCancelled)
    RAISED_CANCELLED = "cancelled"  # it raised TaskCancelled
    TIMED_OUT = "timeout"  # it was still running at the attempt's deadline


@dataclass(frozen=True, slots=True)
class CallResult:
    """What calling a task function gave: how it ended, and what it returned or raised."""

    outcome: Outcome
    result: Any = None
    error: BaseException | None = None


class RunContext(StopSignal):
    """The ``TaskContext`` a running task gets: progress, and the signal to stop.

    The signal comes from a client's cancel, from the attempt's timeout, from shutdown or from
    a lost lease; ``stop_reason`` says which came first, ``should_abort`` that one came.
    """

    def __init__(self, store: Store, events: TaskEvents, task: Task, worker_id: str) -> None:
        self._store = store
        self._events = events
        self._task = task
        self._worker_id = worker_id
        self._abort = threading.Event()
        self.stop_reason: StopReason | None = None
        #: The attempt has returned and its outcome is being written: no heartbeat needed.
        self.finished = False
        if task.cancel_requested:
            self.request_stop(StopReason.CANCEL_ASKED)

    @property
    def task_id(self) -> str:
        return self._task.id

    @property
    def attempt(self) -> int:
        return self._task.attempts

    @property
    def task_type(self) -> str:
        return self._task.type

    def request_stop(self, reason: StopReason) -> None:
        """Tell the task to stop; the first ``reason`` given stays the ``stop_reason``."""
        if self.stop_reason is None:
            self.stop_reason = reason
        self._abort.set()

    def progress(
        self, current: float, total: float | None = None, message: str | None = None
    ) -> None:
        """Record progress; a cancel asked meanwhile, or a lost lease, tells the task to stop."""
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
            self.request_stop(StopReason.LEASE_LOST)
        elif asked:
            self.request_stop(StopReason.CANCEL_ASKED)


@dataclass(slots=True)
class Running:
    """A task that the pool holds: which holder (``worker_id``), and the task's context.

    Held from its claim; ``started`` once a worker thread calls it.
    """

    worker_id: str
    context: RunContext
    started: bool = False


def call(
    func: TaskFunction, context: RunContext, task: Task, detach_thread: Callable[[], None]
) -> tuple[CallResult, threading.Thread | None]:
    """Call the task function: inline, or on its own thread when the task has a timeout.

    Returns how the call ended and, when it timed out, the thread still running it (whose
    store connection ``detach_thread`` lets go of when it ends).
    """

    def attempt() -> CallResult:
        try:
            return CallResult(Outcome.RETURNED, result=func(context, task.params))
        except TaskCancelled:
            return CallResult(Outcome.RAISED_CANCELLED)
        except (Exception, SystemExit) as exc:  # sys.exit() in a task ends the attempt only
            return CallResult(Outcome.RAISED, error=exc)

    if task.timeout_seconds is None:
        return attempt(), None
    box: list[CallResult] = []

    def run_on_own_thread() -> None:
        try:
            box.append(attempt())
        finally:
            detach_thread()  # the thread ends: so must its connection

    runner = threading.Thread(target=run_on_own_thread, name=f"taskapi-task-{task.id}", daemon=True)
    runner.start()
    runner.join(task.timeout_seconds)
    if box:
        return box[0], None
    return CallResult(Outcome.TIMED_OUT), runner


class AttemptRunner:
    """Runs attempts, and says how each ended as the ``Ending`` the store writes.

    ``run`` calls the task and returns its ending; the pool writes endings in batches
    (``Store.complete``), and then ``recorded`` gives each its log line and its metrics.
    """

    def __init__(
        self,
        store: Store,
        registry: Registry,
        *,
        metrics: Metrics | None,
        clock: Callable[[], datetime],
        result_ttl: float,
    ) -> None:
        self.store = store
        self.registry = registry
        self.metrics = metrics
        self.clock = clock
        self._ttl = timedelta(seconds=result_ttl)
        #: Child processes for the types with isolation="process", started when first needed.
        self.children = ChildPool(registry)

    def run(
        self, task: Task, worker_id: str, context: RunContext
    ) -> tuple[Ending, threading.Thread | None]:
        """Run one attempt: how it ended, and the thread of a timed-out attempt, if any."""
        task_type = self.registry.get(task.type)
        if task_type is None:
            error = TaskError("UnknownTaskType", f"No task type {task.type!r} in this worker.")
            return self._failed(task, worker_id, error, None), None
        task_log(log.debug, task.id, "task %s (%s) attempt %d started", task.type, task.attempts)
        began = time.monotonic()
        if task_type.isolation == "process":
            ended, runner = self.children.call(task_type, context, task), None
        else:
            ended, runner = call(task_type.func, context, task, self.store.detach_thread)
        context.finished = True
        if self.metrics is not None:
            self.metrics.attempt_ended(task.type, time.monotonic() - began)
        if ended.outcome is Outcome.TIMED_OUT:
            context.request_stop(StopReason.TIMED_OUT)
            error = TaskError(
                "TimeoutError", f"The attempt ran past its timeout of {task.timeout_seconds:g}s."
            )
            return self._failed(task, worker_id, error, task_type), runner
        if ended.outcome is Outcome.RETURNED:
            try:
                json.dumps(ended.result, allow_nan=False)
            except (TypeError, ValueError, RecursionError) as not_json:
                ended = CallResult(Outcome.RAISED, error=not_json)
            else:
                now = self.clock()
                return Ending(
                    task.id, worker_id, Status.SUCCEEDED, now, now + self._ttl, ended.result
                ), None
        if (
            ended.outcome is Outcome.RAISED_CANCELLED
            or context.stop_reason is StopReason.CANCEL_ASKED
        ):
            now = self.clock()
            return Ending(task.id, worker_id, Status.CANCELLED, now, now + self._ttl), None
        raised = ended.error
        assert raised is not None
        error = TaskError(type(raised).__name__, str(raised) or type(raised).__name__)
        task_log(log.info, task.id, "task %s attempt %d failed: %s", task.attempts, error.type)
        return self._failed(task, worker_id, error, task_type), None

    def crashed(self, task: Task, worker_id: str, exc: BaseException) -> Ending:
        """The ending of an attempt that ``run`` could not finish: failed, retried if it has
        attempts left, rather than a worker slot held for good."""
        error = TaskError(type(exc).__name__, str(exc) or type(exc).__name__)
        return self._failed(task, worker_id, error, self.registry.get(task.type))

    def _failed(
        self, task: Task, worker_id: str, error: TaskError, task_type: TaskType | None
    ) -> Ending:
        """A retry when the task has attempts left (and a known type), else its failure."""
        now = self.clock()
        if task_type is not None and task.failed_attempts < task.max_attempts:
            delay = task_type.backoff_seconds(task.failed_attempts, _JITTER.random())
            run_after = now + timedelta(seconds=delay)
            return Ending(
                task.id, worker_id, Status.QUEUED, now, now + self._ttl, None, error, run_after
            )
        return Ending(task.id, worker_id, Status.FAILED, now, now + self._ttl, None, error)

    def recorded(self, task_type: str, ending: Ending, status: Status | None) -> None:
        """The log line and the metrics of ``ending``, once written: ``status`` is the task's
        status afterwards, None when this worker no longer held it."""
        task_id, wanted = ending.task_id, ending.status
        if status is None:
            if wanted is Status.SUCCEEDED:
                task_log(
                    log.warning, task_id, "task %s ended after this worker lost it; result dropped"
                )
            elif wanted is Status.FAILED:
                task_log(
                    log.warning,
                    task_id,
                    "task %s failed after this worker lost it; its error is dropped",
                )
            return
        if status is Status.QUEUED:
            assert ending.run_after is not None
            delay = (ending.run_after - ending.now).total_seconds()
            task_log(log.info, task_id, "task %s: retry in %.2fs", delay)
            if self.metrics is not None:
                self.metrics.task_retried(task_type)
            return
        if status is Status.SUCCEEDED:
            task_log(log.info, task_id, "task %s succeeded")
        elif status is Status.FAILED:
            assert ending.error is not None
            error = ending.error
            task_log(log.info, task_id, "task %s failed: %s: %s", error.type, error.message[:200])
        elif wanted is Status.QUEUED:
            task_log(log.info, task_id, "task %s cancelled (asked while its attempt ran)")
        else:
            task_log(log.info, task_id, "task %s cancelled")
        if self.metrics is not None:
            self.metrics.task_finished(task_type, status)
