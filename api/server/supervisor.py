"""The first process of ``taskapi serve``: it starts the others, restarts a dead worker process,
and turns a stop into the stop of every process.

It builds the app once, to report a bad setting plainly before anything starts, freezes what
it holds (``gc.freeze``: the processes it forks share those pages), then forks each child in a
process group of its own: a Ctrl-C reaches this process alone, which tells the children in the
order they need. On the first SIGTERM or SIGINT every child gets SIGTERM (the API stops taking
requests and answers its long-polls; the workers stop claiming and give running tasks the
grace); on a second, SIGTERM again (each hands its tasks back at once). A child whose
supervisor is killed gets SIGTERM too (``PR_SET_PDEATHSIG``), so no process outlives the
service. The exit status is 0 when every child stopped cleanly after a stop, 1 otherwise.
"""

from __future__ import annotations

import contextlib
import ctypes
import enum
import logging
import os
import select
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

log = logging.getLogger("api.server")

#: A worker process that dies within this many seconds of its start waits before the next one.
QUICK_DEATH_SECONDS = 10.0
#: The longest wait before starting a worker process again after quick deaths in a row.
MAX_RESTART_DELAY_SECONDS = 30.0
#: How long the supervisor waits for the children beyond the shutdown grace before SIGKILL.
KILL_MARGIN_SECONDS = 10.0
#: Linux's prctl option: a signal for this process when its parent dies.
PR_SET_PDEATHSIG = 1
#: The signals the supervisor handles (and its children get their own handlers for).
FORWARDED = {signal.SIGTERM, signal.SIGINT, signal.SIGCHLD}


class Kind(enum.StrEnum):
    API = "API"
    WORKER = "worker"


@dataclass
class Child:
    kind: Kind
    index: int
    pid: int
    started: float


@dataclass
class Supervisor:
    """Forks the API process and ``worker_processes`` worker processes, and watches them.

    ``run_api()`` and ``run_worker(index)`` are what a child runs; each returns (or raises
    SystemExit) when the child is done, and its exit status follows.
    """

    run_api: Callable[[], None]
    run_worker: Callable[[int], None]
    worker_processes: int
    #: The shutdown grace: how long the children may take to stop, with KILL_MARGIN_SECONDS.
    grace: float
    #: Called with a child's pid when it has exited (its metrics go).
    exited: Callable[[int], None] = lambda pid: None
    #: Called with a worker process's pid when it died: the tasks it held go back now.
    lost: Callable[[int], None] = lambda pid: None
    children: dict[int, Child] = field(default_factory=dict)
    stops: int = 0
    failed: bool = False
    wake_fds: tuple[int, ...] = ()
    _quick_deaths: dict[int, int] = field(default_factory=dict)
    _restart_at: dict[int, float] = field(default_factory=dict)

    def run(self) -> int:
        """Start the children and watch them until all have stopped; the exit status."""
        wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.wake_fds = (wake_read, wake_write)
        previous = signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
        handlers = {
            sig: signal.signal(sig, self._on_signal)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD)
        }
        try:
            self._start(Kind.API, 0)
            for index in range(self.worker_processes):
                self._start(Kind.WORKER, index)
            self._watch(wake_read)
        finally:
            signal.set_wakeup_fd(previous)
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            os.close(wake_read)
            os.close(wake_write)
        return 1 if self.failed else 0

    # -- signals -------------------------------------------------------------------------------

    def _on_signal(self, sig: int, frame: object) -> None:
        if sig in (signal.SIGTERM, signal.SIGINT):
            self.stops += 1  # acted on by the loop (a handler must not fork or wait)

    def _watch(self, wake_read: int) -> None:
        told = 0
        deadline: float | None = None
        while self.children or (not self.stops and self._restart_at):
            timeout = 1.0
            if self._restart_at and not self.stops:
                timeout = max(0.0, min(self._restart_at.values()) - time.monotonic())
            with contextlib.suppress(InterruptedError):
                select.select([wake_read], [], [], min(timeout, 1.0))
            with contextlib.suppress(BlockingIOError):
                while os.read(wake_read, 512):
                    pass
            self._reap()
            if self.stops > told:
                first = told == 0
                told = self.stops
                if first:
                    deadline = time.monotonic() + self.grace + KILL_MARGIN_SECONDS
                    self._restart_at.clear()
                # The first step, then the second: a child hears each once, however many
                # SIGTERMs reach it (systemd's included).
                self._tell_all(signal.SIGTERM if first else signal.SIGQUIT)
            if deadline is not None and time.monotonic() > deadline and self.children:
                log.error("processes still running after the grace: killing them")
                self.failed = True
                self._tell_all(signal.SIGKILL)
                deadline = None
            if not self.stops:
                self._restart_due()

    def _tell_all(self, sig: int) -> None:
        for child in list(self.children.values()):
            with contextlib.suppress(ProcessLookupError):
                if sig == signal.SIGKILL:  # the child's group: gunicorn's processes too
                    os.killpg(child.pid, sig)
                else:
                    os.kill(child.pid, sig)

    # -- children ------------------------------------------------------------------------------

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self.children.pop(pid, None)
            if child is not None:
                self._exited(child, status)

    def _exited(self, child: Child, status: int) -> None:
        self.exited(child.pid)
        how = _how(status)
        code = os.waitstatus_to_exitcode(status)
        # Told to stop while it booted, before its handlers were in place: stopped all the same.
        clean = code == 0 or (self.stops > 0 and code == -signal.SIGTERM)
        if child.kind is Kind.WORKER and not clean:
            self._release(child.pid)
        if self.stops:
            if not clean:
                log.error("%s process %d %s", child.kind, child.pid, how)
                self.failed = True
            return
        if child.kind is Kind.API:
            log.error("the API process %d %s: stopping the service", child.pid, how)
            self.failed = True
            self.stops += 1
            return
        quick = time.monotonic() - child.started < QUICK_DEATH_SECONDS
        deaths = self._quick_deaths.get(child.index, 0) + 1 if quick else 0
        self._quick_deaths[child.index] = deaths
        delay = min(MAX_RESTART_DELAY_SECONDS, 2.0 ** (deaths - 1)) if deaths else 0.0
        log.error(
            "worker process %d %s; starting another%s",
            child.pid,
            how,
            f" in {delay:g} s" if delay else "",
        )
        self._restart_at[child.index] = time.monotonic() + delay

    def _release(self, pid: int) -> None:
        """``lost(pid)`` on a thread of its own: it talks to the store, which may be the very
        reason the process died, and the supervisor must go on answering signals meanwhile."""

        def release() -> None:
            try:
                self.lost(pid)
            except Exception as exc:
                log.warning(
                    "the tasks of worker process %d go back to the queue when their lease "
                    "ends (%s)",
                    pid,
                    exc,
                )

        threading.Thread(target=release, name="taskapi-release", daemon=True).start()

    def _restart_due(self) -> None:
        now = time.monotonic()
        for index, at in list(self._restart_at.items()):
            if at <= now:
                del self._restart_at[index]
                self._start(Kind.WORKER, index)

    def _start(self, kind: Kind, index: int) -> None:
        supervisor = os.getpid()
        # Blocked across the fork: a stop sent to a child before it has its own handlers is
        # held until then, not taken by the copy of ours it starts with.
        held = signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
        try:
            pid = os.fork()
            if pid == 0:  # the child: never returns
                os._exit(_child(supervisor, self, kind, index, held))
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
        self.children[pid] = Child(kind, index, pid, time.monotonic())


def _child(
    supervisor: int, plan: Supervisor, kind: Kind, index: int, mask: set[int | signal.Signals]
) -> int:
    """Run in a forked child: its own group, its signals, the stop with its supervisor; its
    exit status."""
    code = 1
    try:
        os.setpgid(0, 0)
        signal.set_wakeup_fd(-1)
        for fd in plan.wake_fds:  # the supervisor's own
            with contextlib.suppress(OSError):
                os.close(fd)
        for sig in FORWARDED:
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        _die_with(supervisor)
        if kind is Kind.API:
            plan.run_api()
        else:
            plan.run_worker(index)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        log.exception("the %s process failed", kind)
    finally:
        for handler in logging.getLogger().handlers:
            with contextlib.suppress(Exception):
                handler.flush()
    return code


def _die_with(supervisor: int) -> None:
    """SIGTERM for this process when the supervisor dies (Linux); at once if it has."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != supervisor:
        os.kill(os.getpid(), signal.SIGTERM)


def _how(status: int) -> str:
    """How a child ended, in words."""
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with status {code}"


@contextlib.contextmanager
def metrics_dir() -> Iterator[None]:
    """prometheus_client's multiprocess mode for the processes about to be forked.

    Each app built after this (api.metrics.Metrics) writes its samples there, and a scrape of
    any API process sums those of every process, the worker processes' included. A directory
    in PROMETHEUS_MULTIPROC_DIR is emptied (its samples belong to an earlier run); else a new
    one is made, and removed when the service ends.
    """
    import shutil
    import tempfile
    from pathlib import Path

    from api.metrics import MULTIPROCESS_DIR

    given = os.environ.get(MULTIPROCESS_DIR)
    if given:
        Path(given).mkdir(parents=True, exist_ok=True)
        for stale in Path(given).glob("*.db"):
            stale.unlink()
        yield
        return
    made = tempfile.mkdtemp(prefix="taskapi-metrics-")
    os.environ[MULTIPROCESS_DIR] = made
    supervisor = os.getpid()
    try:
        yield
    finally:
        if os.getpid() == supervisor:
            shutil.rmtree(made, ignore_errors=True)
            os.environ.pop(MULTIPROCESS_DIR, None)
