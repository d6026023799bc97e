"""``taskapi serve`` and ``taskapi worker``: the processes of the service.

    taskapi serve                      the supervisor (supervisor.py)
    ├── API: gunicorn's master         http.py
    │   └── N HTTP processes           requests, long-polls; no task runs here
    └── M worker processes             workers.py: K worker threads each, the monitor

A submit in an API process wakes a worker process at once, and a task's end wakes the
long-polls of the API processes at once, through the store's channel (api.wakeups: a pipe per
process on SQLite, LISTEN/NOTIFY on PostgreSQL); each also reads the store again now and then,
should a wake-up be lost. ``--worker-processes 0`` runs the worker threads inside the API
processes instead, as one process did before; ``taskapi worker`` runs a worker process alone,
for other machines.
"""

from __future__ import annotations

import gc
from collections.abc import Mapping
from typing import Any

from flask import Flask

from api.server.http import ListenError, _StartupLines, check_address, http_options, serve_http
from api.server.supervisor import Supervisor, metrics_dir
from api.server.workers import NothingToRun, release_tasks_of, run_workers, shutdown_notice


def run_service(
    *,
    host: str,
    port: int,
    processes: int,
    threads: int,
    worker_processes: int,
    config: Mapping[str, Any],
) -> int:
    """Serve the API on ``processes`` gunicorn processes of ``threads`` HTTP threads each, and
    run the workers in ``worker_processes`` processes of their own; the exit status."""
    from api import create_app
    from api.metrics import process_exited
    from api.runtime import EXTENSION_KEY

    check_address(host, port)
    with metrics_dir():
        # Build the app once before forking, so a bad setting, store URL or TASKS_IMPORT is
        # reported here, plainly, rather than as a process that fails to boot.
        startup = _StartupLines()
        with startup.watching(repeating=False):
            probe = create_app(config)
        settings = probe.extensions[EXTENSION_KEY].settings
        probe.extensions[EXTENSION_KEY].store.close()
        separate = worker_processes > 0 and settings.workers > 0
        api_config = {**config, "TASKS_WORKERS": 0} if separate else dict(config)
        options = http_options(
            host=host, port=port, processes=processes, threads=threads, settings=settings
        )

        def run_api() -> None:
            serve_http(options, api_config, startup)

        def build_worker_app() -> Flask:
            with startup.watching(repeating=True):
                return create_app(config)

        def run_worker(index: int) -> None:
            run_workers(build_worker_app, supervised=True)

        # The processes forked from here share this one's memory until they write to it: keep
        # their garbage collector off the objects already here (gc.freeze), so that sharing lasts.
        del probe
        gc.collect()
        gc.freeze()
        supervisor = Supervisor(
            run_api=run_api,
            run_worker=run_worker,
            worker_processes=worker_processes if separate else 0,
            grace=settings.shutdown_grace,
            exited=process_exited,
            lost=lambda pid: release_tasks_of(settings.database_url, pid),
        )
        return supervisor.run()


__all__ = [
    "ListenError",
    "NothingToRun",
    "run_service",
    "run_workers",
    "shutdown_notice",
]
