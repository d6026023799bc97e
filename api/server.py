"""``taskapi serve``: the application and its workers on gunicorn (gthread workers).

Each gunicorn process builds its own app after the fork and starts its worker threads; on
SIGTERM or SIGINT it stops taking requests, stops claiming tasks, and lets running tasks
finish for TASKS_SHUTDOWN_GRACE seconds before handing them back to the queue.
"""

from __future__ import annotations

import gc
import logging
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger

from api import history

log = logging.getLogger(__name__)

#: Seconds gunicorn waits beyond the shutdown grace before it kills a process.
KILL_MARGIN_SECONDS = 5
KEEPALIVE_SECONDS = 5


def _runtime(app: Flask) -> Any:
    from api.runtime import EXTENSION_KEY

    return app.extensions[EXTENSION_KEY]


def _begin_shutdown(worker: Any) -> threading.Thread | None:
    """Start stopping this process's workers, once; the thread doing it.

    Runs as soon as the process is told to stop, while gunicorn lets open requests finish:
    long-polls are answered at once, workers stop claiming, and running tasks get the grace.
    Ctrl-C reaches the master and this process alike, and the master then sends SIGQUIT:
    each would end the process in the middle of the grace, so they are ignored from here on
    (the master still kills the process after its graceful timeout).
    """
    started: threading.Thread | None = getattr(worker, "taskapi_shutdown", None)
    app = getattr(worker, "wsgi", None)
    if started is not None or not isinstance(app, Flask):
        return started
    for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    runtime = _runtime(app)
    runtime.service.events.close()
    thread = threading.Thread(
        target=runtime.pool.stop, args=(runtime.settings.shutdown_grace,), name="taskapi-stop"
    )
    thread.start()
    worker.taskapi_shutdown = thread
    return thread


def _finish_shutdown(worker: Any) -> None:
    thread = _begin_shutdown(worker)
    if thread is not None:
        thread.join()
        history.of(worker.wsgi).stop()
        _runtime(worker.wsgi).store.close()


def _post_worker_init(worker: Any) -> None:
    # gunicorn's own SIGTERM handler only stops the request loop, and the worker_exit hook
    # comes after open requests ended: start the shutdown at the signal itself.
    handle_exit = worker.handle_exit

    def on_sigterm(sig: int, frame: Any) -> None:
        _begin_shutdown(worker)
        handle_exit(sig, frame)

    signal.signal(signal.SIGTERM, on_sigterm)


def _worker_int(worker: Any) -> None:
    _finish_shutdown(worker)


def _worker_exit(server: Any, worker: Any) -> None:
    _finish_shutdown(worker)


def _child_exit(server: Any, worker: Any) -> None:
    from api.metrics import process_exited

    process_exited(worker.pid)


def _metrics_dir() -> str | None:
    """Set up prometheus_client's multiprocess mode for the processes about to be forked.

    Each app built after this (api.metrics.Metrics) writes its samples there. A directory in
    PROMETHEUS_MULTIPROC_DIR is emptied (its samples belong to an earlier run); else a new
    one is made, and removed when the server ends (returned).
    """
    from api.metrics import MULTIPROCESS_DIR

    given = os.environ.get(MULTIPROCESS_DIR)
    if given:
        Path(given).mkdir(parents=True, exist_ok=True)
        for stale in Path(given).glob("*.db"):
            stale.unlink()
        return None
    made = tempfile.mkdtemp(prefix="taskapi-metrics-")
    os.environ[MULTIPROCESS_DIR] = made
    return made


class _ServerLogger(Logger):
    """gunicorn's logger without its access log: api/logs.py logs each request, with its id.

    (Silencing the ``gunicorn.access`` logger is not enough: gunicorn would still build each
    line, at a tenth of a status read's time, before the logger dropped it.)
    """

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        return None


class TaskServer(BaseApplication):
    def __init__(self, options: Mapping[str, Any], config: Mapping[str, Any]) -> None:
        self.options = dict(options)
        self.app_config = dict(config)
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        from api import create_app

        app = create_app(self.app_config)
        _runtime(app).pool.start()
        history.of(app).start()  # the dashboard's last minutes, kept from this process's start
        return app


def run_server(
    *, host: str, port: int, processes: int, threads: int, config: Mapping[str, Any]
) -> None:
    from api.metrics import MULTIPROCESS_DIR

    made, master = _metrics_dir(), os.getpid()
    try:
        _run(host=host, port=port, processes=processes, threads=threads, config=config)
    finally:
        # A forked server process leaves through here too when it exits: only the master,
        # which outlives them all, may remove the directory.
        if made is not None and os.getpid() == master:
            shutil.rmtree(made, ignore_errors=True)
            os.environ.pop(MULTIPROCESS_DIR, None)


def _run(*, host: str, port: int, processes: int, threads: int, config: Mapping[str, Any]) -> None:
    from api import create_app
    from api.logs import gunicorn_config
    from api.runtime import EXTENSION_KEY

    # Build the app once before forking, so a bad setting, store URL or TASKS_IMPORT is
    # reported here, plainly, rather than as a worker that fails to boot.
    probe = create_app(config)
    settings = probe.extensions[EXTENSION_KEY].settings
    probe.extensions[EXTENSION_KEY].store.close()
    options = {
        "bind": f"{host}:{port}",
        "workers": processes,
        "worker_class": "gthread",
        "threads": threads,
        "graceful_timeout": int(settings.shutdown_grace) + KILL_MARGIN_SECONDS,
        "post_worker_init": _post_worker_init,
        "worker_int": _worker_int,
        "worker_exit": _worker_exit,
        "child_exit": _child_exit,
        "logger_class": _ServerLogger,
        "logconfig_dict": gunicorn_config(
            os.environ.get("TASKS_LOG_LEVEL", "INFO"), os.environ.get("TASKS_LOG_FORMAT", "text")
        ),
        "proc_name": "taskapi",
        # Idle keep-alive connections are kept this long: longer than clients that poll
        # every 2 s (the dashboard) wait, so a poll never races the server closing its socket.
        "keepalive": KEEPALIVE_SECONDS,
        "forwarded_allow_ips": "127.0.0.1",
    }
    # The processes forked from here share this one's memory until they write to it: keep
    # their garbage collector off the objects already here (gc.freeze), so that sharing lasts.
    del probe
    gc.collect()
    gc.freeze()
    TaskServer(options, config).run()
