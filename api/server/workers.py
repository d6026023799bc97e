"""A worker process: the worker threads of one app and its wake-ups, until told to stop.

The body of ``taskapi worker`` and of each worker process of ``taskapi serve``. The first
SIGTERM or SIGINT stops claiming and gives running tasks TASKS_SHUTDOWN_GRACE seconds; a
second one hands them back to the queue at once.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

from flask import Flask

from api.wakeups import Role

log = logging.getLogger("api.server")


class NothingToRun(Exception):
    """TASKS_WORKERS is 0: a worker process would have nothing to do."""


def shutdown_notice(running: int, grace: float) -> str:
    """What a stop waits for, and how to cut it short."""
    tasks, them = ("1 running task", "it") if running == 1 else (f"{running} running tasks", "them")
    return (
        f"stopping: waiting up to {grace:g} s for {tasks} to finish; press Ctrl-C again "
        f"(or send SIGTERM again) to hand {them} back to the queue now"
    )


def _log_stopping(message: str) -> None:
    log.log(logging.WARNING if message.startswith("stopping:") else logging.INFO, "%s", message)


def run_workers(
    build: Callable[[], Flask],
    *,
    started: Callable[[int, str], None] | None = None,
    say: Callable[[str], None] = _log_stopping,
    supervised: bool = False,
) -> None:
    """Build the app (``build()``), run its workers until SIGTERM or SIGINT, stop them.

    ``started(threads, database_url)`` is called once they run; ``say`` says what the stop
    waits for; ``supervised``: run by ``taskapi serve``'s supervisor. Raises NothingToRun when
    the app has no worker threads.
    """
    from api.runtime import EXTENSION_KEY, Runtime

    stop = threading.Event()
    runtime: Runtime | None = None

    def on_signal(sig: int, frame: Any) -> None:
        again = stop.is_set() and not (supervised and sig == signal.SIGTERM)
        if (again or sig == signal.SIGQUIT) and runtime is not None:
            runtime.pool.hurry()
        stop.set()

    # Before the app is built: a stop that comes while it boots stops it before any task.
    # SIGQUIT is the second step at once; under the supervisor, only SIGQUIT is (a repeated
    # SIGTERM, as systemd sends to every process of the service beside the supervisor's, is
    # the same first step).
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        signal.signal(sig, on_signal)
    runtime = build().extensions[EXTENSION_KEY]
    if runtime.pool.size == 0:
        runtime.store.close()
        raise NothingToRun("TASKS_WORKERS is 0: there is nothing to run.")
    if stop.is_set():
        runtime.store.close()
        return
    runtime.link.start({Role.WORKERS})
    runtime.pool.start()
    if started is not None:
        started(runtime.pool.size, runtime.settings.database_url)
    stop.wait()
    running, grace = runtime.pool.running_count(), runtime.settings.shutdown_grace
    say(shutdown_notice(running, grace) if running and grace > 0 else "stopping")
    runtime.pool.stop(grace)
    runtime.link.stop()
    runtime.store.close()


def release_tasks_of(database_url: str, pid: int) -> None:
    """The worker process ``pid`` of this machine died: end the leases of the tasks it held,
    so that the monitors take them back at their next look (within about a second) rather
    than when the leases would have run out (TASKS_LEASE_SECONDS)."""
    from api.store import open_store
    from api.worker.attempt import utcnow
    from api.worker.pool import holder_prefix

    store = open_store(database_url)
    try:
        ended = store.end_leases(holder_prefix(pid), utcnow())
    finally:
        store.close()
    if ended:
        held = "1 task" if ended == 1 else f"{ended} tasks"
        log.warning("%s held by worker process %d back to the queue", held, pid)
