"""One attempt of one task: the context it runs with, the call, and the store write of its end.

``AttemptRunner.run`` calls the task's function inline, or on a thread of its own when the task
has a timeout, and turns how the call ended into one store verb: ``finish`` (succeeded, failed
or cancelled), ``succeed_and_claim`` (a success and the next task, in one transaction) or
``retry`` (a failed attempt with attempts left).
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
from api.registry import Registry, TaskCancelled, TaskFunction
from api.store import Store
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


class RunContext:
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

    @property
    def should_abort(self) -> bool:
        """True once the task was told to stop, for any ``StopReason``."""
        return self._abort.is_set()

    @property
    def cancel_requested(self) -> bool:
        """``should_abort`` under the name ``TaskContext`` first had: true for any reason."""
        return self._abort.is_set()

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

    def sleep(self, seconds: float) -> bool:
        """Wait up to ``seconds``; True as soon as the task is told to stop."""
        return self._abort.wait(max(seconds, 0.0))


@dataclass
class Running:
    """A task that a worker of the pool runs now: which worker, and the task's context."""

    worker_id: str
    context: RunContext


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
        except Exception as exc:
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
    """Runs attempts, and writes how each ended through the store's verbs.

    Each write comes with its log line, its metrics and the wake-ups it calls for. A success
    is recorded together with the claim of the worker's next task unless ``stopping`` is set;
    the task so claimed goes to ``keep_claimed``.
    """

    def __init__(
        self,
        store: Store,
        registry: Registry,
        *,
        events: TaskEvents,
        metrics: Metrics | None,
        clock: Callable[[], datetime],
        lease_seconds: float,
        result_ttl: float,
        stopping: threading.Event,
        keep_claimed: Callable[[str, Task], None],
        wake_one: Callable[[], None],
    ) -> None:
        self.store = store
        self.registry = registry
        self.events = events
        self.metrics = metrics
        self.clock = clock
        self.lease_seconds = lease_seconds
        self.result_ttl = result_ttl
        self._stopping = stopping
        self._keep_claimed = keep_claimed
        self._wake_one = wake_one
        #: Child processes for the types with isolation="process", started when first needed.
        self.children = ChildPool(registry)

    def run(self, task: Task, worker_id: str, context: RunContext) -> threading.Thread | None:
        """Run one attempt and record its outcome; the thread of a timed-out attempt, if any."""
        task_type = self.registry.get(task.type)
        if task_type is None:
            error = TaskError("UnknownTaskType", f"No task type {task.type!r} in this worker.")
            self._failed(task, worker_id, error, retry=False)
            return None
        task_log(log.info, task.id, "task %s (%s) attempt %d started", task.type, task.attempts)
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
            self._failed(task, worker_id, error, retry=task.failed_attempts < task.max_attempts)
            return runner
        if ended.outcome is Outcome.RETURNED:
            try:
                json.dumps(ended.result, allow_nan=False)
            except (TypeError, ValueError) as not_json:
                ended = CallResult(Outcome.RAISED, error=not_json)
            else:
                self._succeeded(task, worker_id, ended.result)
                return None
        if (
            ended.outcome is Outcome.RAISED_CANCELLED
            or context.stop_reason is StopReason.CANCEL_ASKED
        ):
            self._cancelled(task, worker_id)
            return None
        raised = ended.error
        assert raised is not None
        error = TaskError(type(raised).__name__, str(raised) or type(raised).__name__)
        task_log(log.info, task.id, "task %s attempt %d failed: %s", task.attempts, error.type)
        self._failed(task, worker_id, error, retry=task.failed_attempts < task.max_attempts)
        return None

    def _expiry(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self.result_ttl)

    def _succeeded(self, task: Task, worker_id: str, result: Any) -> None:
        now = self.clock()
        if self._stopping.is_set():
            done = self.store.finish(
                task.id, worker_id, Status.SUCCEEDED, now, self._expiry(now), result=result
            )
        else:
            # Most successes are followed by a claim when tasks are waiting: one transaction
            # for both. The claimed task runs next on this worker; if the pool began to stop
            # meanwhile, it goes back to the queue (in keep_claimed, or in stop() if that
            # comes later still).
            lease_until = now + timedelta(seconds=self.lease_seconds)
            done, claimed = self.store.succeed_and_claim(
                task.id, worker_id, result, now, self._expiry(now), lease_until
            )
            if claimed is not None:
                self._keep_claimed(worker_id, claimed)
        if done:
            task_log(log.info, task.id, "task %s succeeded")
            self._count_finished(task, Status.SUCCEEDED)
        else:
            task_log(
                log.warning, task.id, "task %s ended after this worker lost it; result dropped"
            )

    def _cancelled(self, task: Task, worker_id: str) -> None:
        now = self.clock()
        if self.store.finish(task.id, worker_id, Status.CANCELLED, now, self._expiry(now)):
            task_log(log.info, task.id, "task %s cancelled")
            self._count_finished(task, Status.CANCELLED)

    def _failed(self, task: Task, worker_id: str, error: TaskError, *, retry: bool) -> None:
        now = self.clock()
        task_type = self.registry.get(task.type)
        if retry and task_type is not None:
            delay = task_type.backoff_seconds(task.failed_attempts, _JITTER.random())
            status = self.store.retry(
                task.id, worker_id, error, now + timedelta(seconds=delay), now, self._expiry(now)
            )
            if status is Status.QUEUED:
                task_log(log.info, task.id, "task %s: retry in %.2fs", delay)
                if self.metrics is not None:
                    self.metrics.task_retried(task.type)
                self._wake_one()
            elif status is Status.CANCELLED:
                task_log(log.info, task.id, "task %s cancelled (asked while its attempt ran)")
                self._count_finished(task, Status.CANCELLED)
            return
        if self.store.finish(
            task.id, worker_id, Status.FAILED, now, self._expiry(now), error=error
        ):
            task_log(log.info, task.id, "task %s failed: %s: %s", error.type, error.message[:200])
            self._count_finished(task, Status.FAILED)
        else:
            task_log(
                log.warning,
                task.id,
                "task %s failed after this worker lost it; its error is dropped",
            )

    def _count_finished(self, task: Task, outcome: Status) -> None:
        if self.metrics is not None:
            self.metrics.task_finished(task.type, outcome)
