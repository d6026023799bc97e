"""The client commands of ``taskapi``: submit, status, list, cancel, delete and types.

Each talks to a server over HTTP (api/client.py); api/cli.py adds them to its group.
rich is imported where it is used, so that ``serve`` and ``worker`` start without it.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from api.client import DEFAULT_URL, Client, ClientError

url_option = click.option(
    "--url",
    envvar="TASKS_URL",
    default=DEFAULT_URL,
    show_default=True,
    help="The server (or TASKS_URL).",
)
token_option = click.option(
    "--token",
    envvar="TASKS_TOKEN",
    default=None,
    help="API key, when the server has TASKS_API_KEYS (or TASKS_TOKEN).",
)
task_id_argument = click.argument("task_id", metavar="ID", help="The task's id.")

#: Long-poll of ``submit --wait``: each read is answered at once when the task ends, else then.
POLL_SECONDS = 0.5
#: Exit status of ``submit --wait`` when the task failed or was cancelled.
FAILED_EXIT = 1
#: Exit status of a refused request or an unreachable server.
ERROR_EXIT = 2
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
        raise click.BadParameter(f"{text!r} is not key=value", param_hint="KEY=VALUE")
    try:
        return key, json.loads(raw)
    except ValueError:
        return key, raw


def _print(task: Any) -> None:
    click.echo(json.dumps(task, indent=2, sort_keys=True))


def _fail(error: ClientError) -> None:
    click.echo(f"error: {error}", err=True)
    sys.exit(ERROR_EXIT)


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


@click.command()
@click.argument("task_type", metavar="TYPE", help="A task type: `taskapi types` lists them.")
@click.argument(
    "params",
    nargs=-1,
    metavar="KEY=VALUE...",
    help="The task's params. A value is read as JSON when it parses (x=2 is a number), "
    "else as a string.",
)
@click.option("--wait", is_flag=True, help="Show its progress until it ends, then print it.")
@click.option(
    "--priority", type=int, default=None, help="Higher runs first among ready tasks (-100..100)."
)
@click.option(
    "--delay", "delay_seconds", type=float, default=None, help="Seconds before it may start."
)
@click.option(
    "--max-attempts", type=int, default=None, help="Attempts at most (default: the type's)."
)
@click.option(
    "--timeout",
    "timeout_seconds",
    type=float,
    default=None,
    help="Seconds an attempt may run (default: the type's).",
)
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
    """Submit a task, and print it as JSON.

    \b
        taskapi submit add x=2 y=3 --wait

    With --wait, its progress shows on stderr (a live bar on a terminal, lines elsewhere) until
    it ends, then the task is printed and one line says how it ended; the exit status is 1 when
    it failed or was cancelled.
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
        sys.exit(ERROR_EXIT)
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


@click.command()
@task_id_argument
@url_option
@token_option
def status(task_id: str, url: str, token: str | None) -> None:
    """Print a task as JSON."""
    try:
        _print(Client(url, token).get(task_id))
    except ClientError as exc:
        _fail(exc)


@click.command()
@task_id_argument
@url_option
@token_option
def cancel(task_id: str, url: str, token: str | None) -> None:
    """Cancel a task, and print it as JSON.

    A queued task is cancelled at once. A running one is asked to stop: it ends cancelled when
    it next checks. A task that has already ended cannot be cancelled.
    """
    try:
        task = Client(url, token).cancel(task_id)
    except ClientError as exc:
        _fail(exc)
        return
    _print(task)
    if task["status"] == "cancelled":
        click.echo(f"task {task['id']} cancelled", err=True)
    else:
        click.echo(
            f"task {task['id']} is {task['status']}: asked to stop, it ends cancelled when it "
            f"next checks; follow it with `taskapi status {task['id']}`",
            err=True,
        )


@click.command()
@task_id_argument
@url_option
@token_option
def delete(task_id: str, url: str, token: str | None) -> None:
    """Delete a task that has ended (succeeded, failed or cancelled).

    A queued or running task cannot be deleted: cancel it first.
    """
    try:
        Client(url, token).delete(task_id)
    except ClientError as exc:
        _fail(exc)
        return
    click.echo(f"deleted task {task_id}")


def _params_text(schema: dict[str, Any]) -> str:
    """A params schema in one line: required names, then ``[optional=default]`` ones."""
    properties: dict[str, Any] = schema.get("properties") or {}
    required = [name for name in schema.get("required") or () if name in properties]
    words = list(required)
    for name, field in properties.items():
        if name in required:
            continue
        default = field.get("default")
        if isinstance(default, float) and default.is_integer():
            default = int(default)
        words.append(f"[{name}]" if default is None else f"[{name}={json.dumps(default)}]")
    return " ".join(words)


TYPE_HEADERS = ("type", "params", "attempts", "timeout", "description")


def _type_cells(task_type: dict[str, Any]) -> tuple[str, ...]:
    """A task type's cells, in the order of TYPE_HEADERS."""
    timeout = task_type.get("timeout_seconds")
    return (
        task_type["name"],
        _params_text(task_type.get("params_schema") or {}),
        str(task_type["max_attempts"]),
        "none" if timeout is None else f"{_number(timeout)}s",
        " ".join(str(task_type.get("description") or "").split()),
    )


@click.command()
@url_option
@token_option
def types(url: str, token: str | None) -> None:
    """List the task types, with their params and defaults.

    A table on a terminal; elsewhere, one line per type with the same columns, separated by
    tabs. Params in brackets are optional, with their default.
    """
    try:
        task_types = Client(url, token).task_types()
    except ClientError as exc:
        _fail(exc)
        return
    rows = [_type_cells(task_type) for task_type in task_types]
    console = _console(stderr=False)
    if not console.is_terminal:
        for row in rows:
            click.echo("\t".join(row))
        return
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0))
    for header in TYPE_HEADERS:  # on a narrow terminal, params and description wrap
        wraps = header in ("params", "description")
        table.add_column(header, no_wrap=not wraps, overflow="fold" if wraps else "ellipsis")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    console.print(table, soft_wrap=False)


def _created(stamp: str) -> str:
    """An API timestamp as month-day hour:minute, in local time."""
    from datetime import datetime

    try:
        return datetime.fromisoformat(stamp).astimezone().strftime("%m-%d %H:%M")
    except ValueError:
        return stamp


TASK_HEADERS = ("id", "type", "status", "progress", "created")


def _task_cells(task: dict[str, Any]) -> tuple[str, ...]:
    """A task's cells, in the order of TASK_HEADERS (``created`` as the API writes it)."""
    progress = task.get("progress")
    message = " ".join(str((progress or {}).get("message") or "").split())
    return (
        task["id"],
        task["type"],
        task["status"],
        f"{_count(progress)} {message}".strip(),
        task["created_at"],
    )


def _task_table(tasks: list[dict[str, Any]], width: int) -> Any:
    """A table of ``tasks`` for a terminal ``width`` columns wide: ids whole, progress cut."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    rows = [(*cells[:-1], _created(cells[-1])) for cells in map(_task_cells, tasks)]
    headers = TASK_HEADERS
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


@click.command(name="list")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(["queued", "running", "succeeded", "failed", "cancelled"]),
    help="Only tasks in this status (repeat for several).",
)
@click.option("--type", "task_type", default=None, help="Only tasks of this type.")
@click.option(
    "--page", type=click.IntRange(min=1), default=1, show_default=True, help="The page to show."
)
@click.option(
    "--page-size",
    type=click.IntRange(1, 100),
    default=20,
    show_default=True,
    help="Tasks per page.",
)
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
    """List tasks, newest first.

    A table on a terminal; elsewhere, one line per task with the same columns, separated by
    tabs (created as the API writes it). The page and the count go to stderr.
    """
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
            click.echo("\t".join(_task_cells(task)))
    total = pagination.get("total", len(tasks))
    if not total:
        click.echo("no tasks" if statuses or task_type else "no tasks yet", err=True)
        return
    click.echo(
        f"page {pagination.get('page', page)} of {pagination.get('total_pages', 0)}, "
        f"{total} task{'' if total == 1 else 's'}",
        err=True,
    )


#: The commands api/cli.py adds to ``taskapi``.
CLIENT_COMMANDS = (submit, status, list_tasks, cancel, delete, types)
