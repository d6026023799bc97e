"""The server commands of ``taskapi``: serve (the API and the workers) and worker."""

from __future__ import annotations

import sys
from typing import Any

import click

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000
#: The shape of ``taskapi serve``, chosen by measurement on a 2-core machine (README, "How it
#: runs"): an API process per core, and one worker process, whose 32 worker threads claim up
#: to 32 tasks per transaction. Long-polls each hold an HTTP thread while they wait: 2 x 16 of
#: them before the next waits for a thread.
DEFAULT_API_PROCESSES = 2
DEFAULT_HTTP_THREADS = 16
DEFAULT_WORKER_PROCESSES = 1


def _configure_logging() -> None:
    """TASKS_LOG_LEVEL (INFO) and TASKS_LOG_FORMAT (text, or json for log pipelines)."""
    from api.config import Settings
    from api.logs import configure

    try:
        settings = Settings.for_logging()
        configure(settings.log_level, settings.log_format)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


def _app_config(workers: int | None, queues: str | None = None) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if workers is not None:
        config["TASKS_WORKERS"] = workers
    if queues is not None:
        config["TASKS_QUEUES"] = queues
    return config


def _queues_option(what: str) -> Any:
    return click.option(
        "--queues",
        default=None,
        metavar="NAME,...",
        help=f"Only tasks of these queues run on {what} (default TASKS_QUEUES, else every queue).",
    )


class _StartupErrors:
    """Turn a bad setting or an unreachable store into a one-line error and exit status 1."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, error: BaseException | None, tb: Any) -> None:
        from api.config import ConfigError
        from api.store import StoreError

        if isinstance(error, ConfigError | StoreError | ImportError):
            raise click.ClickException(str(error)) from error


@click.command()
@click.option("--host", default=DEFAULT_HOST, show_default=True, help="Address to listen on.")
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=int, help="Port to bind.")
@click.option(
    "--processes",
    type=click.IntRange(min=1),
    default=DEFAULT_API_PROCESSES,
    show_default=True,
    help="API processes (gunicorn's), each serving requests on its HTTP threads.",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=DEFAULT_HTTP_THREADS,
    show_default=True,
    help="HTTP threads per API process; each long-poll holds one while it waits.",
)
@click.option(
    "--worker-processes",
    type=click.IntRange(min=0),
    default=DEFAULT_WORKER_PROCESSES,
    show_default=True,
    help="Worker processes, beside the API processes (0 runs the workers inside them).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=None,
    help="Worker threads per worker process (default TASKS_WORKERS, else 32; 0 serves the "
    "API only).",
)
@_queues_option("its workers")
def serve(
    host: str,
    port: int,
    processes: int,
    threads: int,
    worker_processes: int,
    workers: int | None,
    queues: str | None,
) -> None:
    """Serve the API on gunicorn and run the workers in processes of their own.

    One service: one command, one SIGTERM, one exit status. A worker process that dies is
    started again. Ctrl-C or SIGTERM stops it: running tasks get TASKS_SHUTDOWN_GRACE seconds
    to finish; a second Ctrl-C or SIGTERM hands them back to the queue at once.
    """
    from api.server import ListenError, run_service

    _configure_logging()
    with _StartupErrors():
        try:
            status = run_service(
                host=host,
                port=port,
                processes=processes,
                threads=threads,
                worker_processes=worker_processes,
                config=_app_config(workers, queues),
            )
        except ListenError as exc:
            raise click.ClickException(str(exc)) from None
    sys.exit(status)


@click.command()
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Worker threads (default TASKS_WORKERS, else 32).",
)
@_queues_option("this worker")
def worker(workers: int | None, queues: str | None) -> None:
    """Run workers only, against the store of TASKS_DATABASE_URL, until SIGTERM or Ctrl-C.

    Running tasks then get TASKS_SHUTDOWN_GRACE seconds to finish; a second Ctrl-C or SIGTERM
    hands them back to the queue at once.
    """
    from api import create_app
    from api.server import NothingToRun, run_workers

    _configure_logging()

    def build() -> Any:
        with _StartupErrors():
            return create_app(_app_config(workers, queues))

    def started(threads: int, database_url: str) -> None:
        click.echo(f"taskapi worker: {threads} threads on {database_url}")

    try:
        run_workers(build, started=started, say=click.echo)
    except NothingToRun as exc:
        raise click.UsageError(str(exc)) from None


#: The commands api/cli/__init__.py adds to ``taskapi``.
SERVER_COMMANDS = (serve, worker)
