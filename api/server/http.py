"""The API processes of ``taskapi serve``: the application on gunicorn (gthread workers).

Each gunicorn process builds its own app after the fork, listens for the wake-ups of the other
processes (api.wakeups) and, when it runs worker threads of its own (``--worker-processes 0``),
starts them. A stop comes in two steps, as Celery's warm and cold shutdowns: on the first
SIGTERM or SIGINT each process stops taking requests, answers its long-polls, stops claiming
tasks, and lets running tasks finish for TASKS_SHUTDOWN_GRACE seconds before handing them back
to the queue; a second SIGTERM or SIGINT hands them back at once.
"""

from __future__ import annotations

import errno
import logging
import signal
import socket
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.glogging import Logger
from gunicorn.util import is_ipv6

from api import history
from api.server.workers import shutdown_notice
from api.wakeups import Role

log = logging.getLogger(__name__)

#: Seconds gunicorn waits beyond the shutdown grace before it kills a process.
KILL_MARGIN_SECONDS = 5
KEEPALIVE_SECONDS = 5


def _runtime(app: Flask) -> Any:
    from api.runtime import EXTENSION_KEY

    return app.extensions[EXTENSION_KEY]


class ListenError(Exception):
    """The server cannot listen where it was told to; the message says why, in one line."""


def _stop_pool(runtime: Any) -> None:
    pool, grace = runtime.pool, runtime.settings.shutdown_grace
    running = pool.running_count()
    if running and grace > 0:
        log.warning("%s", shutdown_notice(running, grace))
    pool.stop(grace)


def _begin_shutdown(worker: Any) -> threading.Thread | None:
    """Start stopping this process's workers, once; the thread doing it.

    Runs as soon as the process is told to stop, while gunicorn lets open requests finish:
    long-polls are answered at once, workers stop claiming, and running tasks get the grace.
    """
    started: threading.Thread | None = getattr(worker, "taskapi_shutdown", None)
    app = getattr(worker, "wsgi", None)
    if started is not None or not isinstance(app, Flask):
        return started
    runtime = _runtime(app)
    runtime.service.events.close()
    thread = threading.Thread(target=_stop_pool, args=(runtime,), name="taskapi-stop")
    thread.start()
    worker.taskapi_shutdown = thread
    return thread


def _finish_shutdown(worker: Any) -> None:
    thread = _begin_shutdown(worker)
    if thread is not None:
        thread.join()
        history.of(worker.wsgi).stop()
        _runtime(worker.wsgi).link.stop()
        _runtime(worker.wsgi).store.close()


def _post_worker_init(worker: Any) -> None:
    """Start this process's workers, unless it was told to stop while it booted; its signals.

    A process still building its app when the stop came (gunicorn's handler then only marks it
    not alive) starts no worker: it would claim tasks that the others just handed back.

    The master says when to stop, and how: SIGTERM is the first step (running tasks get the
    grace), SIGQUIT the second (they go back to the queue now); either ends the request loop,
    after which the worker_exit hook waits for the workers to stop. The SIGINT of a Ctrl-C
    reaches this process too, as it reaches the master: ignored, since the master answers it
    with the above.
    """
    handle_exit = worker.handle_exit

    def on_sigterm(sig: int, frame: Any) -> None:
        _begin_shutdown(worker)
        handle_exit(sig, frame)

    def on_sigquit(sig: int, frame: Any) -> None:
        _begin_shutdown(worker)
        _runtime(worker.wsgi).pool.hurry()
        handle_exit(sig, frame)

    if worker.alive:
        runtime = _runtime(worker.wsgi)
        runtime.link.start({Role.READERS, Role.WORKERS} if runtime.pool.size else {Role.READERS})
        runtime.pool.start()
        history.of(worker.wsgi).start()  # the dashboard's last minutes, from this process's start
    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGQUIT, on_sigquit)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _worker_int(worker: Any) -> None:
    # Only before _post_worker_init: gunicorn's own SIGINT and SIGQUIT handler calls this.
    _finish_shutdown(worker)


def _worker_exit(server: Any, worker: Any) -> None:
    _finish_shutdown(worker)


def _child_exit(server: Any, worker: Any) -> None:
    from api.metrics import process_exited

    process_exited(worker.pid)


class _ServerLogger(Logger):
    """gunicorn's logger without its access log: api/http/request_log.py logs each request,
    with its id.

    (Silencing the ``gunicorn.access`` logger is not enough: gunicorn would still build each
    line, at a tenth of a status read's time, before the logger dropped it.)
    """

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        return None


class _Arbiter(Arbiter):
    """gunicorn's master, stopping in two steps: SIGINT as SIGTERM, then either as SIGQUIT.

    gunicorn itself answers SIGINT with a quick stop (SIGQUIT to each worker) and drops a
    second SIGTERM. Here the first SIGINT or SIGTERM stops gracefully: SIGTERM to each worker,
    whose running tasks then get the grace, the master waiting for them up to its graceful
    timeout. A second one is gunicorn's quick stop (its stop() turns a SIGINT arriving while it
    waits into SIGQUIT to each worker): the workers hand their tasks back and leave.
    """

    stopping = False
    #: Run by the supervisor of ``taskapi serve``, which sends SIGQUIT for the second step: a
    #: SIGTERM repeated (systemd sends one to every process of the service, and the supervisor
    #: another) changes nothing.
    supervised = False

    def handle_int(self) -> None:
        self.handle_term()

    def halt(self, reason: Any = None, exit_status: int = 0) -> None:
        self.stopping = True
        super().halt(reason, exit_status)

    def signal(self, sig: int, frame: Any) -> None:
        if self.stopping and sig == signal.SIGTERM:
            if self.supervised:
                return
            sig = signal.SIGINT
        super().signal(sig, frame)


class _StartupLines(logging.Filter):
    """The lines create_app logs, shown once per ``taskapi serve`` rather than once per app.

    The app is built once before the fork, to check the settings, and again in each server
    process: each would log the same lines (the API keys warning). The first build records
    them; the later ones, in the forked processes, leave out the lines already shown.
    """

    def __init__(self) -> None:
        super().__init__()
        self.shown: set[tuple[int, str]] = set()
        self.repeating = False

    def filter(self, record: logging.LogRecord) -> bool:
        line = (record.levelno, record.getMessage())
        if self.repeating:
            return line not in self.shown
        self.shown.add(line)
        return True

    @contextmanager
    def watching(self, *, repeating: bool) -> Iterator[None]:
        logger = logging.getLogger("api")
        self.repeating = repeating
        logger.addFilter(self)
        try:
            yield
        finally:
            logger.removeFilter(self)


class TaskServer(BaseApplication):
    def __init__(
        self,
        options: Mapping[str, Any],
        config: Mapping[str, Any],
        startup: _StartupLines | None = None,
        *,
        supervised: bool = False,
    ) -> None:
        self.options = dict(options)
        self.app_config = dict(config)
        self.startup = startup or _StartupLines()
        self.supervised = supervised
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            if key == "control_socket_disable" and key not in self.cfg.settings:
                continue  # a gunicorn older than 25.1 has no control socket
            self.cfg.set(key, value)

    def load(self) -> Flask:
        from api import create_app

        with self.startup.watching(repeating=True):
            return create_app(self.app_config)

    def run(self) -> None:
        try:
            arbiter = _Arbiter(self)
            arbiter.supervised = self.supervised
            arbiter.run()
        except RuntimeError as exc:  # as BaseApplication.run
            print(f"\nError: {exc}\n", file=sys.stderr)
            sys.exit(1)


def check_address(host: str, port: int) -> None:
    """Raise ListenError, with what to change, when gunicorn could not listen there.

    gunicorn would try for five seconds and then say only that it "can't connect". The socket
    is made as gunicorn makes it (SO_REUSEADDR: a port left in TIME_WAIT by a server that just
    stopped is free), bound and closed at once.
    """
    where = f"[{host}]:{port}" if is_ipv6(host) else f"{host}:{port}"
    family = socket.AF_INET6 if is_ipv6(host) else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except socket.gaierror as exc:
        raise ListenError(f"cannot listen on {where}: unknown host; --host changes it") from exc
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            why = "the address is already in use (another server?)"
        elif exc.errno == errno.EACCES:
            why = "permission denied (ports below 1024 need privileges)"
        elif exc.errno == errno.EADDRNOTAVAIL:
            why = "this machine has no such address"
        else:
            why = exc.strerror or str(exc)
        raise ListenError(f"cannot listen on {where}: {why}; --port and --host change it") from exc


def http_options(
    *, host: str, port: int, processes: int, threads: int, settings: Any
) -> dict[str, Any]:
    """gunicorn's settings for the API processes."""
    from api.logs import gunicorn_config

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
        "logconfig_dict": gunicorn_config(settings.log_level, settings.log_format),
        "proc_name": "taskapi",
        # Idle keep-alive connections are kept this long: longer than clients that poll
        # every 2 s (the dashboard) wait, so a poll never races the server closing its socket.
        "keepalive": KEEPALIVE_SECONDS,
        "forwarded_allow_ips": "127.0.0.1",
        # gunicorn's control socket (for gunicornc) is one path per user by default: a second
        # server on the machine would take it over. Nothing here uses it.
        "control_socket_disable": True,
    }
    return options


def serve_http(options: Mapping[str, Any], config: Mapping[str, Any], startup: Any) -> None:
    """Run gunicorn's master with ``options`` until it stops, for the supervisor; each of its
    processes builds the app of ``config``."""
    TaskServer(options, config, startup, supervised=True).run()
