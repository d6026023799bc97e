"""The server commands of ``taskapi``: serve (the API and workers on gunicorn) and worker."""

from __future__ import annotations

import signal
import threading
from typing import Any

import click

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000
#: Long-polls (wait=N, Prefer: wait) each hold a thread while they wait: keep plenty.
DEFAULT_HTTP_THREADS = 32


def _configure_logging() -> None:
    """TASKS_LOG_LEVEL (INFO) and TASKS_LOG_FORMAT (text, or json for log pipelines)."""
    from api.config import Settings
    from api.logs import configure

    try:
        settings = Settings.for_logging()
        configure(settings.log_level, settings.log_format)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


def _app_config(workers: int | None) -> dict[str, Any]:
    return {} if workers is None else {"TASKS_WORKERS": workers}


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
    "--workers",
    type=click.IntRange(min=0),
    default=None,
    help="Worker threads per process (default TASKS_WORKERS, else 4; 0 serves the API only).",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=DEFAULT_HTTP_THREADS,
    show_default=True,
    help="HTTP threads per process.",
)
@click.option(
    "--processes",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Server processes, each with its own worker threads.",
)
def serve(host: str, port: int, workers: int | None, threads: int, processes: int) -> None:
    """Serve the API and run workers, on gunicorn.

    Ctrl-C or SIGTERM stops it: running tasks get TASKS_SHUTDOWN_GRACE seconds to finish; a
    second Ctrl-C or SIGTERM hands them back to the queue at once.
    """
    from api.server import ListenError, run_server

    _configure_logging()
    with _StartupErrors():
        try:
            run_server(
                host=host,
                port=port,
                processes=processes,
                threads=threads,
                config=_app_config(workers),
            )
        except ListenError as exc:
            raise click.ClickException(str(exc)) from None


@click.command()
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Worker threads (default TASKS_WORKERS, else 4).",
)
def worker(workers: int | None) -> None:
    """Run workers only, against the store of TASKS_DATABASE_URL, until SIGTERM or Ctrl-C.

    Running tasks then get TASKS_SHUTDOWN_GRACE seconds to finish; a second Ctrl-C or SIGTERM
    hands them back to the queue at once.
    """
    from api import create_app
    from api.runtime import EXTENSION_KEY, Runtime
    from api.server import shutdown_notice

    _configure_logging()
    with _StartupErrors():
        app = create_app(_app_config(workers))
    runtime: Runtime = app.extensions[EXTENSION_KEY]
    if runtime.pool.size == 0:
        raise click.UsageError("TASKS_WORKERS is 0: there is nothing to run.")
    stop = threading.Event()

    def on_signal(sig: int, frame: Any) -> None:
        if stop.is_set():
            runtime.pool.hurry()
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    runtime.pool.start()
    click.echo(f"taskapi worker: {runtime.pool.size} threads on {runtime.settings.database_url}")
    stop.wait()
    running, grace = runtime.pool.running_count(), runtime.settings.shutdown_grace
    click.echo(shutdown_notice(running, grace) if running and grace > 0 else "stopping")
    runtime.pool.stop(grace)
    runtime.store.close()


#: The commands api/cli/__init__.py adds to ``taskapi``.
SERVER_COMMANDS = (serve, worker)
