"""The ``taskapi`` command: serve the API and workers, run workers, or talk to a server."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from typing import Any

import click

from api.client import DEFAULT_URL, Client, ClientError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000
#: Long-polls (wait=N, Prefer: wait) each hold a thread while they wait: keep plenty.
DEFAULT_HTTP_THREADS = 32
POLL_SECONDS = 0.5
FAILED_EXIT = 1


def _configure_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("TASKS_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


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


@click.group()
@click.version_option(package_name="taskapi")
def main() -> None:
    """Durable background tasks behind an HTTP API."""


# -- server side ---------------------------------------------------------------------------


@main.command()
@click.option("--host", default=DEFAULT_HOST, show_default=True, help="Address to listen on.")
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=int)
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
    """Serve the API and run workers, on gunicorn."""
    from api.server import run_server

    _configure_logging()
    with _StartupErrors():
        run_server(
            host=host, port=port, processes=processes, threads=threads, config=_app_config(workers)
        )


@main.command()
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Worker threads (default TASKS_WORKERS, else 4).",
)
def worker(workers: int | None) -> None:
    """Run workers only, against the store of TASKS_DATABASE_URL, until SIGTERM or Ctrl-C."""
    from api import create_app
    from api.runtime import EXTENSION_KEY, Runtime

    _configure_logging()
    with _StartupErrors():
        app = create_app(_app_config(workers))
    runtime: Runtime = app.extensions[EXTENSION_KEY]
    if runtime.pool.size == 0:
        raise click.UsageError("TASKS_WORKERS is 0: there is nothing to run.")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    runtime.pool.start()
    click.echo(f"taskapi worker: {runtime.pool.size} threads on {runtime.settings.database_url}")
    stop.wait()
    click.echo(f"stopping: letting running tasks finish (up to {runtime.settings.shutdown_grace}s)")
    runtime.pool.stop(runtime.settings.shutdown_grace)
    runtime.store.close()


# -- client side ---------------------------------------------------------------------------

url_option = click.option(
    "--url",
    envvar="TASKS_URL",
    default=DEFAULT_URL,
    show_default=True,
    help="The server (or TASKS_URL).",
)
token_option = click.option("--token", envvar="TASKS_TOKEN", default=None, help="API token.")


def _parse_param(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise click.BadParameter(f"{text!r} is not key=value", param_hint="PARAMS")
    try:
        return key, json.loads(raw)
    except ValueError:
        return key, raw


def _print(task: Any) -> None:
    click.echo(json.dumps(task, indent=2, sort_keys=True))


def _fail(error: ClientError) -> None:
    click.echo(f"error: {error}", err=True)
    sys.exit(2)


@main.command()
@click.argument("task_type", metavar="TYPE")
@click.argument("params", nargs=-1, metavar="KEY=VALUE...")
@click.option("--wait", is_flag=True, help="Wait for the task to end and print its result.")
@click.option("--priority", type=int, default=None)
@click.option("--delay", "delay_seconds", type=float, default=None, help="Seconds to wait first.")
@click.option("--max-attempts", type=int, default=None)
@click.option("--timeout", "timeout_seconds", type=float, default=None)
@url_option
@token_option
def submit(
    task_type: str,
    params: tuple[str, ...],
    wait: bool,
    url: str,
    token: str | None,
    **options: Any,
) -> None:
    """Submit a task: ``taskapi submit add x=2 y=3 --wait``.

    Values are read as JSON when they parse (``x=2`` is a number), else as strings. With
    --wait, the exit status is non-zero when the task fails or is cancelled.
    """
    client = Client(url, token)
    try:
        task = client.submit(task_type, dict(_parse_param(p) for p in params), **options)
        if not wait:
            _print(task)
            return
        task = _wait(client, task)
    except ClientError as exc:
        _fail(exc)
        return
    _print(task)
    if task["status"] != "succeeded":
        sys.exit(FAILED_EXIT)


def _wait(client: Client, task: dict[str, Any]) -> dict[str, Any]:
    last = None
    while task["status"] in ("queued", "running"):
        progress = task.get("progress")
        if progress and progress != last:
            total = f"/{progress['total']:g}" if progress.get("total") is not None else ""
            click.echo(f"{progress['current']:g}{total} {progress.get('message') or ''}", err=True)
            last = progress
        time.sleep(POLL_SECONDS)
        task = client.get(task["id"])
    return task


@main.command()
@click.argument("task_id")
@url_option
@token_option
def status(task_id: str, url: str, token: str | None) -> None:
    """Print a task."""
    try:
        _print(Client(url, token).get(task_id))
    except ClientError as exc:
        _fail(exc)


@main.command(name="list")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(["queued", "running", "succeeded", "failed", "cancelled"]),
)
@click.option("--type", "task_type", default=None)
@click.option("--page", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--page-size", type=click.IntRange(1, 100), default=20, show_default=True)
@url_option
@token_option
def list_tasks(
    statuses: tuple[str, ...],
    task_type: str | None,
    page: int,
    page_size: int,
    url: str,
    token: str | None,
) -> None:
    """List tasks, newest first."""
    try:
        tasks, pagination = Client(url, token).list(statuses, task_type, page, page_size)
    except ClientError as exc:
        _fail(exc)
        return
    for task in tasks:
        click.echo(f"{task['id']}  {task['status']:<9}  {task['type']:<12}  {task['created_at']}")
    click.echo(
        f"page {pagination.get('page', page)} of {pagination.get('total_pages', 0)}, "
        f"{pagination.get('total', len(tasks))} tasks",
        err=True,
    )


if __name__ == "__main__":
    main()
