"""Attempts in child processes: the task types registered with ``isolation="process"``.

Each attempt of such a type runs in a child process taken from the worker process's
``ChildPool``, so CPU-bound attempts use every core, a timeout ends the attempt by killing its
process, and a crash of the process fails the attempt (``WorkerCrashed``) and nothing more.

- **Children.** Made with multiprocessing's ``forkserver`` start method (never ``fork``: the
  worker has threads and open database connections), the first when the first such attempt
  runs (or as the pool starts: ``warm``). The fork server imports this module once; each child
  is a fork of it. A child runs one attempt at a time and is kept for the next one; there are
  at most ``max_children`` (a core each, by default), further attempts wait for one. Children
  run at ``CHILD_NICENESS`` and die with their parent. A child is replaced after
  ``MAX_TASKS_PER_CHILD`` attempts, and after any attempt that did not end well (an exception,
  a timeout, a crash), so no state of a failed attempt lives on.
- **The function.** The child finds it as the parent did (``api.registry``): by the
  ``register`` of the ``TASKS_IMPORT`` module that added the type, or else by importing it by
  module and name, which needs a function defined at module level.
- **The pipe.** One duplex pipe per child, carrying pickled tuples. Parent to child:
  ``("run", Job)``, ``("abort",)``, ``("ack", should_abort, error)``; child to parent:
  ``("progress", current, total, message)``, ``("done", "ok", json)``, ``("done",
  "cancelled")``, ``("done", "error", type_name, message)``. The parent looks at the attempt's
  ``RunContext`` every ``POLL_SECONDS`` and forwards its abort; a progress report waits for the
  parent's answer, which records it (the store write, the lease and cancel checks happen in the
  parent). A child whose pipe closes exits: one whose parent dies does not outlive it.

``ChildPool.close`` (the worker pool's ``stop``, and interpreter exit) kills every child.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import importlib
import json
import logging
import multiprocessing
import multiprocessing.connection
import multiprocessing.forkserver
import multiprocessing.util
import os
import queue
import signal
import threading
import time
import weakref
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerContext
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any

from api.registry import Registry, StopSignal, TaskCancelled, TaskFunction, TaskType

if TYPE_CHECKING:
    from api.models import Task
    from api.worker.attempt import CallResult, RunContext

log = logging.getLogger("api.worker")

#: Attempts a child runs before it is replaced (after a failed one it is replaced at once).
MAX_TASKS_PER_CHILD = 100
#: How much lower the CPU priority of a child is than the worker's (``nice``): a machine busy
#: with process-isolated attempts still answers requests at once.
CHILD_NICENESS = 10
#: Linux's prctl option: a signal for this process when its parent dies.
PR_SET_PDEATHSIG = 1
#: How often the parent passes the attempt's abort on to the child, and looks at the deadline.
POLL_SECONDS = 0.05
#: multiprocessing's start method: a fork of a small single-threaded server, not of the worker.
START_METHOD = "forkserver"

#: Every pool of this process, for the kill at interpreter exit.
_POOLS: weakref.WeakSet[ChildPool] = weakref.WeakSet()
#: Serialises multiprocessing's process bookkeeping: starts, and the reads of exit codes.
_PROCESSES = threading.Lock()
_exit_hook: list[multiprocessing.util.Finalize] = []


class WorkerCrashed(Exception):
    """The child process running an attempt died before the attempt ended."""


class TaskNotImportable(Exception):
    """The child process could not find the function of the task type."""


class ChildError(Exception):
    """An exception raised in another process, rebuilt by its type's name and its message."""


@functools.cache
def named_error(type_name: str) -> type[ChildError]:
    """A ``ChildError`` class whose ``__name__`` is ``type_name``: the error recorded for an
    exception of that type in the child is the one the thread path records (name and str)."""
    return type(type_name, (ChildError,), {"__module__": __name__})


@dataclass(frozen=True, slots=True)
class Job:
    """One attempt, as the child gets it: where its function is, and the task's values."""

    type_name: str
    origin: str | None  # the module whose register() added the type, if one did
    func_module: str
    func_qualname: str
    task_id: str
    attempt: int
    params: dict[str, Any]

    @classmethod
    def of(cls, task_type: TaskType, origin: str | None, task: Task) -> Job:
        func = task_type.func
        return cls(
            type_name=task_type.name,
            origin=origin,
            func_module=getattr(func, "__module__", None) or "",
            func_qualname=getattr(func, "__qualname__", ""),
            task_id=task.id,
            attempt=task.attempts,
            params=task.params,
        )


# -- the parent's side -----------------------------------------------------------------------


@dataclass(eq=False)
class _Child:
    process: BaseProcess
    conn: Connection
    generation: int
    runs: int = 0


class ChildPool:
    """The child processes of one worker pool, started when an attempt needs one.

    ``call`` runs one attempt in a child and tells how it ended, as ``attempt.call`` does for
    a thread; ``close`` kills every child (the next ``call`` starts new ones).
    """

    def __init__(
        self,
        registry: Registry,
        *,
        max_tasks_per_child: int = MAX_TASKS_PER_CHILD,
        max_children: int | None = None,
    ):
        self._registry = registry
        self._max_tasks = max_tasks_per_child
        #: At most one child per core by default: CPU-bound attempts gain nothing from more,
        #: and each child is a whole interpreter. More attempts wait for a free child.
        self.max_children = max_children or os.cpu_count() or 1
        self._slots = threading.BoundedSemaphore(self.max_children)
        self._lock = threading.Lock()
        self._idle: list[_Child] = []
        self._busy: set[_Child] = set()
        #: Bumped by close(): a child of an older generation is not taken back after its attempt.
        self._generation = 0

    def call(self, task_type: TaskType, context: RunContext, task: Task) -> CallResult:
        """Run one attempt of ``task`` in a child; how it ended (``TIMED_OUT`` once past the
        task's timeout, the child then killed already)."""
        from api.worker.attempt import CallResult, Outcome  # that module imports this one

        while not self._slots.acquire(timeout=POLL_SECONDS):  # every child is busy: wait
            if context.should_abort:
                return CallResult(Outcome.RAISED_CANCELLED)
        try:
            try:
                child = self._take()
            except Exception as exc:
                log.exception("could not start a child process for %s", task.type)
                error = WorkerCrashed(
                    f"Could not start a child process: {type(exc).__name__}: {exc}"
                )
                return CallResult(Outcome.RAISED, error=error)
            job = Job.of(task_type, self._registry.origin(task_type.name), task)
            ended, reusable = self._watch(child, context, job, task.timeout_seconds)
            self._give_back(child, reusable)
        finally:
            self._slots.release()
        if isinstance(ended.error, WorkerCrashed):
            log.warning("task %s: %s", task.id, ended.error, extra={"task_id": task.id})
        return ended

    def warm(self) -> None:
        """Start the fork server now, on a thread, rather than at the first attempt (0.2 to
        0.6 s, once per worker process): for a pool whose registry has process types."""
        threading.Thread(target=_start_fork_server, name="taskapi-forkserver", daemon=True).start()

    def close(self) -> None:
        """Kill every child, idle or running an attempt (whose thread then records a crash)."""
        with self._lock:
            self._generation += 1
            idle, self._idle = self._idle, []
            for child in self._busy:
                child.process.kill()  # its thread sees it die, and ends it
        for child in idle:
            _end(child)

    def _take(self) -> _Child:
        """An idle child that is still alive, or a new one."""
        while True:
            with self._lock:
                child = self._idle.pop() if self._idle else None
                generation = self._generation
                if child is not None:
                    self._busy.add(child)
            if child is None:
                child = _start(generation)
                with self._lock:
                    self._busy.add(child)
                _POOLS.add(self)
                return child
            with _PROCESSES:
                alive = child.process.is_alive()
            if alive:
                return child
            with self._lock:
                self._busy.discard(child)
            _end(child)

    def _give_back(self, child: _Child, reusable: bool) -> None:
        """Keep ``child`` for the next attempt, or end it (worn out, failed, or closed)."""
        child.runs += 1
        with self._lock:
            self._busy.discard(child)
            keep = (
                reusable and child.generation == self._generation and child.runs < self._max_tasks
            )
            if keep:
                self._idle.append(child)
        if not keep:
            _end(child)

    def _watch(
        self, child: _Child, context: RunContext, job: Job, timeout: float | None
    ) -> tuple[CallResult, bool]:
        """Send ``job``, serve the child's progress, pass the abort on, enforce the deadline;
        how the attempt ended, and whether the child can run another."""
        from api.worker.attempt import CallResult, Outcome

        deadline = None if timeout is None else time.monotonic() + timeout
        told = not _send(child.conn, ("run", job))
        while True:
            if not told and context.should_abort:
                told = True
                _send(child.conn, ("abort",))
            wait = POLL_SECONDS
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
                if wait <= 0:
                    _kill(child)
                    return CallResult(Outcome.TIMED_OUT), False
            ready = multiprocessing.connection.wait([child.conn, child.process.sentinel], wait)
            if not ready:
                continue
            message: tuple[Any, ...] | None = None
            if child.conn in ready:
                try:
                    message = child.conn.recv()
                except (EOFError, OSError):
                    message = None
            if message is None:
                if child.generation != self._generation:
                    _kill(child)
                    how = "The attempt's process was killed: the worker stopped."
                else:
                    how = _death(child)
                return CallResult(Outcome.RAISED, error=WorkerCrashed(how)), False
            if message[0] == "progress":
                answer = _record_progress(context, message[1:])
                told = told or answer[1]
                _send(child.conn, answer)  # a broken pipe shows as the child's death, next turn
                continue
            match message[1:]:
                case ("ok", text):
                    return CallResult(Outcome.RETURNED, result=json.loads(text)), True
                case ("cancelled",):
                    return CallResult(Outcome.RAISED_CANCELLED), True
                case ("error", type_name, text):
                    return CallResult(Outcome.RAISED, error=named_error(type_name)(text)), False
            _kill(child)
            error = WorkerCrashed(f"The attempt's process sent {message!r}, not a result.")
            return CallResult(Outcome.RAISED, error=error), False


def _record_progress(context: RunContext, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """Record a progress report of the child; the answer: whether to stop, and any error."""
    try:
        context.progress(*args)
    except Exception as exc:
        return ("ack", context.should_abort, (type(exc).__name__, str(exc)))
    return ("ack", context.should_abort, None)


def _send(conn: Connection, message: tuple[Any, ...]) -> bool:
    """Send ``message``; False when the pipe is broken (the child died)."""
    try:
        conn.send(message)
    except (OSError, ValueError):
        return False
    return True


def _context() -> ForkServerContext:
    context = multiprocessing.get_context(START_METHOD)
    assert isinstance(context, ForkServerContext)
    # Read at the first start of the fork server only: it imports this module (and with it the
    # engine) once, and each child is a fork of it. The main module is imported again by every
    # child, as multiprocessing does (it must be safe to import): CPython 3.11's fork server
    # drops the "__main__" preload (its main_path never arrives), which would spare that.
    context.set_forkserver_preload(["__main__", __name__])
    return context


def _start_fork_server() -> None:
    try:
        with _PROCESSES:
            _context()
            multiprocessing.forkserver.ensure_running()
    except Exception:
        log.exception("could not start the fork server; the first attempt will try again")


def _start(generation: int) -> _Child:
    """Start a child process, with its end of a new pipe."""
    context = _context()
    parent_end, child_end = context.Pipe(duplex=True)
    # Not a daemon: a daemonic process may not start processes, and a task may want to.
    process = context.Process(target=child_main, args=(child_end,), name="taskapi-child")
    with _PROCESSES:
        if not _exit_hook:
            # Run by multiprocessing's own exit function, before it joins its children.
            _exit_hook.append(multiprocessing.util.Finalize(None, _close_all, exitpriority=100))
        process.start()
    child_end.close()
    log.debug("started child process %s", process.pid)
    return _Child(process, parent_end, generation)


def _kill(child: _Child) -> None:
    """SIGKILL the child and wait until it is gone."""
    child.process.kill()
    with _PROCESSES:
        child.process.join()


def _end(child: _Child) -> None:
    """Kill the child, wait for it, and let go of its pipe and its process object."""
    _kill(child)
    child.conn.close()
    child.process.close()


def _death(child: _Child) -> str:
    """How a child that stopped answering died: its exit code, or the signal that killed it."""
    multiprocessing.connection.wait([child.process.sentinel], 5)
    with _PROCESSES:
        code = child.process.exitcode
    if code is None:
        _kill(child)
        return "The attempt's process closed its pipe and was killed."
    if code < 0:
        name = signal.Signals(-code).name
        hint = " (out of memory, or killed from outside)" if -code == signal.SIGKILL else ""
        return f"The attempt's process was killed by signal {name}{hint}."
    return f"The attempt's process exited with code {code}."


def _close_all() -> None:
    for pool in list(_POOLS):
        pool.close()


# -- the child's side ------------------------------------------------------------------------


class _Inbox:
    """What the child's listener thread received: jobs to run, answers to progress reports,
    and the abort of the attempt running now."""

    def __init__(self) -> None:
        self.jobs: queue.Queue[tuple[Job, threading.Event]] = queue.Queue()
        self.answers: queue.Queue[tuple[bool, tuple[str, str] | None]] = queue.Queue()
        self.abort = threading.Event()

    def listen(self, conn: Connection) -> None:
        """Read the pipe until it closes, then exit the process: the parent let go, or died."""
        try:
            while True:
                message = conn.recv()
                if message[0] == "run":
                    self.abort = threading.Event()
                    self.jobs.put((message[1], self.abort))
                elif message[0] == "abort":
                    self.abort.set()
                elif message[0] == "ack":
                    self.answers.put((message[1], message[2]))
        except (EOFError, OSError):
            pass
        os._exit(0)


class ChildContext(StopSignal):
    """The ``TaskContext`` of an attempt in a child process (see ``api.registry``)."""

    def __init__(self, conn: Connection, job: Job, abort: threading.Event, inbox: _Inbox):
        self._conn = conn
        self._job = job
        self._abort = abort
        self._inbox = inbox
        self._lock = threading.Lock()

    @property
    def task_id(self) -> str:
        return self._job.task_id

    @property
    def attempt(self) -> int:
        return self._job.attempt

    def progress(
        self, current: float, total: float | None = None, message: str | None = None
    ) -> None:
        """Report progress to the parent, which records it; a cancel asked meanwhile, or a
        lost lease, tells the task to stop."""
        report = (
            float(current),
            None if total is None else float(total),
            None if message is None else str(message),
        )
        with self._lock:
            self._conn.send(("progress", *report))
            stop, error = self._inbox.answers.get()
        if stop:
            self._abort.set()
        if error is not None:
            raise named_error(error[0])(error[1])


def child_main(conn: Connection) -> None:
    """A child process: run the jobs that come down the pipe, one at a time, until it closes.

    A Ctrl-C, or a SIGTERM sent to the whole process group, is the parent's to handle: it
    hands its tasks back, and kills this process when it stops.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Below the API and the worker threads: a CPU-bound attempt never holds up a request.
    with contextlib.suppress(OSError):
        os.nice(CHILD_NICENESS)
    # Gone with its parent (the fork server, which ends with the worker), at once, even while
    # a task holds the interpreter in a long call: never beside the task's next attempt.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:
        os._exit(0)
    inbox = _Inbox()
    threading.Thread(
        target=inbox.listen, args=(conn,), name="taskapi-child-pipe", daemon=True
    ).start()
    found: dict[str, Registry] = {}
    while True:
        job, abort = inbox.jobs.get()
        conn.send(("done", *_attempt(job, ChildContext(conn, job, abort, inbox), found)))


def _attempt(job: Job, context: ChildContext, found: dict[str, Registry]) -> tuple[Any, ...]:
    """Run one job: ``("ok", json)``, ``("cancelled",)`` or ``("error", type_name, message)``."""
    try:
        func = _find(job, found)
        result = func(context, job.params)
    except TaskCancelled:
        return ("cancelled",)
    except Exception as exc:
        return ("error", type(exc).__name__, str(exc))
    try:
        return ("ok", json.dumps(result, allow_nan=False))
    except (TypeError, ValueError) as not_json:  # as the thread path records it
        return ("error", type(not_json).__name__, str(not_json))


def _find(job: Job, found: dict[str, Registry]) -> TaskFunction:
    """The function of ``job``'s type: from its module's ``register``, else by its name."""
    if job.origin is not None:
        registry = found.get(job.origin)
        if registry is None:
            registry = Registry()
            try:
                registry.load_module(job.origin)
            except Exception as exc:
                raise TaskNotImportable(
                    f"The child process could not load {job.origin!r}: {type(exc).__name__}: {exc}"
                ) from exc
            found[job.origin] = registry
        task_type = registry.get(job.type_name)
        if task_type is None:
            raise TaskNotImportable(
                f"In the child process, {job.origin}.register() adds no type {job.type_name!r}."
            )
        return task_type.func
    where = f"{job.func_module}.{job.func_qualname}"
    try:
        target: Any = importlib.import_module(job.func_module)
        for part in job.func_qualname.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError, ValueError) as exc:
        raise TaskNotImportable(
            f"The child process cannot import {where}, the function of {job.type_name!r} "
            f"({type(exc).__name__}: {exc}); a task type with isolation='process' needs a "
            "function defined at module level, or one registered by a TASKS_IMPORT module."
        ) from exc
    if not callable(target):
        raise TaskNotImportable(f"{where}, the function of {job.type_name!r}, is not callable.")
    return target
