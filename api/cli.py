"""The ``taskapi`` command: serve the API and workers, run workers, or talk to a server."""

from __future__ import annotations

import json
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
    """TASKS_LOG_LEVEL (INFO) and TASKS_LOG_FORMAT (text, or json for log pipelines)."""
    from api.logs import configure

    try:
        configure(
            os.environ.get("TASKS_LOG_LEVEL", "INFO"), os.environ.get("TASKS_LOG_FORMAT", "text")
        )
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


@main.command()
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


# -- client side ---------------------------------------------------------------------------
# rich is imported where it is used, so that ``serve`` and ``worker`` start without it.

url_option = click.option(
    "--url",
    envvar="TASKS_URL",
    default=DEFAULT_URL,
    show_default=True,
    help="The server (or TASKS_URL).",
)
token_option = click.option(
    "--token", envvar="TASKS_TOKEN", default=None, help="API token (or TASKS_TOKEN)."
)

ACTIVE_STATUSES = ("queued", "running")
#: Exit status of ``submit --wait`` interrupted by Ctrl-C (the task goes on).
INTERRUPTED_EXIT = 130
STATUS_STYLES = {
    "queued": "blue",
    "running": "cyan",
    "succeeded": "green",
    "failed": "red",
    "cancelled": "yellow",
}


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


def _console(*, stderr: bool) -> Any:
    """A rich Console: the terminal view on a terminal, plain text without control sequences
    elsewhere (rich decides from isatty, TTY_COMPATIBLE, FORCE_COLOR, TERM=dumb, NO_COLOR)."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def _number(value: float) -> str:
    return f"{value:g}"


def _count(progress: dict[str, Any] | None) -> str:
    """``current/total`` (or ``current`` when the total is unknown) of a task's progress."""
    if not progress:
        return ""
    total = progress.get("total")
    current = _number(progress["current"])
    return current if total is None else f"{current}/{_number(total)}"


def _describe(task: dict[str, Any]) -> str:
    """What a task is doing, in a few words: its progress message, a retry, or its status."""
    status: str = task["status"]
    error = task.get("error")
    if status == "queued" and task.get("attempts") and error:
        return (
            f"retrying after {error['type']}: {error['message']} "
            f"(attempt {task['attempts'] + 1} of {task['max_attempts']})"
        )
    message = (task.get("progress") or {}).get("message")
    if status == "running" and message:
        return " ".join(str(message).split())
    return status


class _PlainView:
    """Progress as lines (``1/2 slept 1 of 2s``), for logs and pipes: one per change."""

    def __init__(self) -> None:
        self.last_progress: Any = None
        self.last_retry: Any = None

    def __enter__(self) -> _PlainView:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, task: dict[str, Any]) -> None:
        progress = task.get("progress")
        if progress and progress != self.last_progress:
            click.echo(f"{_count(progress)} {progress.get('message') or ''}".rstrip(), err=True)
            self.last_progress = progress
        retry = (task.get("attempts"), task.get("error"))
        if task["status"] == "queued" and retry[0] and retry[1] and retry != self.last_retry:
            click.echo(_describe(task), err=True)
            self.last_retry = retry


class _LiveView:
    """A rich progress bar on a terminal, redrawn ten times a second and cleared at the end."""

    def __init__(self, console: Any) -> None:
        from rich.progress import (
            BarColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )
        from rich.table import Column

        self.progress = Progress(
            SpinnerColumn(),
            TextColumn(
                "{task.description}",
                markup=False,  # the text comes from the task: no rich markup in it
                table_column=Column(no_wrap=True, overflow="ellipsis", max_width=50),
            ),
            BarColumn(),  # a pulse while the total is unknown
            TextColumn("{task.fields[count]}", markup=False),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self.bar = self.progress.add_task("", total=None, count="")

    def __enter__(self) -> _LiveView:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def update(self, task: dict[str, Any]) -> None:
        progress = task.get("progress") or {}
        self.progress.update(
            self.bar,
            description=_describe(task),
            total=progress.get("total"),
            completed=progress.get("current", 0),
            count=_count(progress or None),
        )


def _outcome(console: Any, task: dict[str, Any], seconds: float) -> None:
    """One line on how the task ended: ``✓ succeeded in 1.2s``, ``✗ failed: Error: text``."""
    from rich.text import Text

    utf = console.encoding.lower().startswith("utf")
    status: str = task["status"]
    if status == "succeeded":
        line = f"{'✓' if utf else 'ok:'} succeeded in {seconds:.1f}s"
    else:
        line = f"{'✗' if utf else 'error:'} {status}"
        attempts = task.get("attempts") or 0
        if status == "failed" and attempts > 1:
            line += f" after {attempts} attempts"
        error = task.get("error")
        if status == "failed" and error:
            line += f": {error['type']}: {error['message']}"
    console.print(Text(line, style=STATUS_STYLES.get(status, "")))


@main.command()
@click.argument("task_type", metavar="TYPE")
@click.argument("params", nargs=-1, metavar="KEY=VALUE...")
@click.option("--wait", is_flag=True, help="Show its progress until it ends, then print it.")
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

    Values are read as JSON when they parse (``x=2`` is a number), else as strings. The task is
    printed as JSON on stdout. With --wait, its progress shows on stderr (a live bar on a
    terminal, lines elsewhere) until it ends, then the task and one line on how it ended; the
    exit status is 1 when it failed or was cancelled.
    """
    client = Client(url, token)
    started = time.monotonic()
    try:
        task = client.submit(task_type, dict(_parse_param(p) for p in params), **options)
    except ClientError as exc:
        _fail(exc)
        return
    if not wait:
        _print(task)
        return
    console = _console(stderr=True)
    view = _LiveView(console) if console.is_interactive else _PlainView()
    follow = f"follow it with `taskapi status {task['id']}`"
    try:
        task = _wait(client, task, view)
    except ClientError as exc:
        click.echo(f"error: {exc}\ntask {task['id']} was submitted: {follow}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo(f"interrupted: task {task['id']} goes on; {follow}", err=True)
        sys.exit(INTERRUPTED_EXIT)
    _print(task)
    _outcome(console, task, time.monotonic() - started)
    if task["status"] != "succeeded":
        sys.exit(FAILED_EXIT)


def _wait(client: Client, task: dict[str, Any], view: _LiveView | _PlainView) -> dict[str, Any]:
    """Follow ``task`` until it ends, showing each read in ``view``.

    Each read is a long-poll of POLL_SECONDS: the server answers at once when the task ends,
    else after POLL_SECONDS with its progress.
    """
    view.update(task)
    with view:
        while task["status"] in ACTIVE_STATUSES:
            asked = time.monotonic()
            task = client.get(task["id"], wait=POLL_SECONDS)
            view.update(task)
            if task["status"] in ACTIVE_STATUSES:  # in case the server did not hold the answer
                time.sleep(max(0.0, POLL_SECONDS - (time.monotonic() - asked)))
    return task


@main.command()
@click.argument("task_id")
@url_option
@token_option
def status(task_id: str, url: str, token: str | None) -> None:
    """Print a task as JSON."""
    try:
        _print(Client(url, token).get(task_id))
    except ClientError as exc:
        _fail(exc)


def _created(stamp: str) -> str:
    """An API timestamp as month-day hour:minute, in local time."""
    from datetime import datetime

    try:
        return datetime.fromisoformat(stamp).astimezone().strftime("%m-%d %H:%M")
    except ValueError:
        return stamp


def _task_table(tasks: list[dict[str, Any]], width: int) -> Any:
    """A table of ``tasks`` for a terminal ``width`` columns wide: ids whole, progress cut."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    rows = []
    for task in tasks:
        progress = task.get("progress")
        message = " ".join(str((progress or {}).get("message") or "").split())
        rows.append(
            (
                task["id"],
                task["type"],
                task["status"],
                f"{_count(progress)} {message}".strip(),
                _created(task["created_at"]),
            )
        )
    headers = ("id", "type", "status", "progress", "created")
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
    gap = 2  # one of padding, one of the (blank) column rule
    room = width - sum(widths) + widths[3] - gap * (len(headers) - 1)
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0))
    for i, header in enumerate(headers):
        table.add_column(
            header,
            no_wrap=True,
            overflow="ellipsis",
            max_width=max(room, len(header)) if i == 3 else None,
        )
    for task_id, type_name, status, progress_text, created in rows:
        table.add_row(
            Text(task_id),
            Text(type_name),
            Text(status, style=STATUS_STYLES.get(status, "")),
            Text(progress_text),
            Text(created),
        )
    return table


@main.command(name="list")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(["queued", "running", "succeeded", "failed", "cancelled"]),
    help="Only tasks in this status (repeat for several).",
)
@click.option("--type", "task_type", default=None, help="Only tasks of this type.")
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
    """List tasks, newest first: a table on a terminal, one line per task elsewhere."""
    try:
        tasks, pagination = Client(url, token).list(statuses, task_type, page, page_size)
    except ClientError as exc:
        _fail(exc)
        return
    console = _console(stderr=False)
    if console.is_terminal:
        if tasks:
            console.print(_task_table(tasks, console.width))
    else:
        for task in tasks:
            click.echo(
                f"{task['id']}  {task['status']:<9}  {task['type']:<12}  {task['created_at']}"
            )
    click.echo(
        f"page {pagination.get('page', page)} of {pagination.get('total_pages', 0)}, "
        f"{pagination.get('total', len(tasks))} tasks",
        err=True,
    )


if __name__ == "__main__":
    main()
