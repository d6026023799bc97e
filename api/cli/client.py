"""The client commands of ``taskapi``: submit, status, list, cancel, delete, types, queues and
queue.

Each talks to a server over HTTP (api/client.py) and shows what it got with api/cli/views.py;
api/cli/__init__.py adds them to the ``taskapi`` group.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from typing import IO, Any

import click

from api.cli.batches import BatchClient, submit_batch
from api.cli.common import (
    ACTIVE_STATUSES,
    ERROR_EXIT,
    FAILED_EXIT,
    INTERRUPTED_EXIT,
    POLL_SECONDS,
    fail,
    parse_param,
    print_json,
    task_id_argument,
    token_option,
    url_option,
)
from api.cli.views import (
    TYPE_HEADERS,
    LiveView,
    PlainView,
    callback_lines,
    dependency_lines,
    make_console,
    outcome,
    queue_cells,
    queue_summary,
    queue_table,
    task_cells,
    task_table,
    type_cells,
)
from api.client import Client, ClientError
from api.models import MAX_QUEUE_CONCURRENCY


@click.command()
@click.argument(
    "task_type",
    metavar="TYPE",
    required=False,
    help="A task type: `taskapi types` lists them (none with --batch).",
)
@click.argument(
    "params",
    nargs=-1,
    metavar="KEY=VALUE...",
    help="The task's params. A value is read as JSON when it parses (x=2 is a number), "
    "else as a string.",
)
@click.option("--wait", is_flag=True, help="Show its progress until it ends, then print it.")
@click.option(
    "--batch",
    "batch_file",
    type=click.File("r", encoding="utf-8"),
    default=None,
    metavar="FILE.jsonl",
    help="Submit the tasks of FILE (- for stdin) as one batch: a POST /tasks body a line, "
    "1 to 1000 of them, all created or none.",
)
@click.option(
    "--after",
    "depends_on",
    multiple=True,
    metavar="ID",
    help="A task that must succeed first (repeat for several): until then this one waits, "
    "queued; should one fail or be cancelled, this one is cancelled (DependencyFailed).",
)
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
@click.option(
    "--queue",
    default=None,
    metavar="NAME",
    help="The queue it waits in (default: the type's, else default).",
)
@click.option(
    "--callback",
    "callback_url",
    default=None,
    metavar="URL",
    help="POST the task, signed, to URL when it ends (callback_url; the server's "
    "TASKS_CALLBACK_HOSTS must allow its host); `taskapi callback ID` shows how it went.",
)
@url_option
@token_option
def submit(
    task_type: str | None,
    params: tuple[str, ...],
    wait: bool,
    batch_file: IO[str] | None,
    depends_on: tuple[str, ...],
    url: str,
    token: str | None,
    **options: Any,
) -> None:
    """Submit a task, or a batch of tasks, and print it as JSON.

    \b
        taskapi submit add x=2 y=3 --wait
        taskapi submit add x=1 y=2 --after ID --after ID2
        taskapi submit add x=1 y=2 --callback https://hooks.example.com/taskapi
        taskapi submit --batch renders.jsonl --wait

    With --wait, its progress shows on stderr (a live bar on a terminal, lines elsewhere) until
    it ends, then the task is printed and one line says how it ended; the exit status is 1 when
    it failed or was cancelled. A batch file holds one task a line, as JSON objects with type,
    params and the options of a POST /tasks body; the batch is followed until every task has
    ended, and the exit status is 1 when any failed or was cancelled.
    """
    started = time.monotonic()
    if batch_file is not None:
        given = [o for o, v in options.items() if v is not None]
        if task_type is not None or params or depends_on or given:
            raise click.UsageError(
                "--batch takes its tasks from the file: give TYPE, KEY=VALUE and their "
                "options (depends_on, priority, callback_url, …) in each line instead"
            )
        submit_batch(BatchClient(url, token), batch_file, wait, started)
        return
    if task_type is None:
        raise click.UsageError("Missing argument 'TYPE' (or --batch FILE.jsonl).")
    if depends_on:
        options["depends_on"] = list(depends_on)
    client = Client(url, token)
    try:
        task = client.submit(task_type, dict(parse_param(p) for p in params), **options)
    except ClientError as exc:
        fail(exc)
        return
    if not wait:
        print_json(task)
        return
    wait_and_print(client, task, started, "submitted")


def wait_and_print(client: Client, task: dict[str, Any], started: float, done: str) -> None:
    """``--wait`` of submit and retry: show the task's progress on stderr until it ends, print
    it, and say how it ended; exit FAILED_EXIT when it failed or was cancelled.

    ``done`` is what was done to make it (``submitted``), said if the waiting stops early.
    """
    console = make_console(stderr=True)
    view = LiveView(console) if console.is_interactive else PlainView()
    follow = f"follow it with `taskapi status {task['id']}`"
    try:
        task = _wait(client, task, view)
    except ClientError as exc:
        click.echo(f"error: {exc}\ntask {task['id']} was {done}: {follow}", err=True)
        sys.exit(ERROR_EXIT)
    except KeyboardInterrupt:
        click.echo(f"interrupted: task {task['id']} goes on; {follow}", err=True)
        sys.exit(INTERRUPTED_EXIT)
    print_json(task)
    outcome(console, task, time.monotonic() - started)
    if task["status"] != "succeeded":
        sys.exit(FAILED_EXIT)


def _wait(client: Client, task: dict[str, Any], view: LiveView | PlainView) -> dict[str, Any]:
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
    """Print a task as JSON.

    stderr says the batch it was submitted in, and while it waits for tasks it depends on, how
    many of them have not succeeded yet (blocked_by). For a task with a callback_url, it says
    how its callback goes: delivered, pending (attempts made, the receiver's last answer, the
    next attempt) or failed.
    """
    try:
        task = Client(url, token).get(task_id)
    except ClientError as exc:
        fail(exc)
    print_json(task)
    for line in dependency_lines(task) + callback_lines(task, datetime.now(UTC)):
        click.echo(line, err=True)


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
        fail(exc)
        return
    print_json(task)
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
        fail(exc)
        return
    click.echo(f"deleted task {task_id}")


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
        fail(exc)
        return
    rows = [type_cells(task_type) for task_type in task_types]
    console = make_console(stderr=False)
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


@click.command(name="list")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(["queued", "running", "succeeded", "failed", "cancelled"]),
    help="Only tasks in this status (repeat for several).",
)
@click.option("--type", "task_type", default=None, help="Only tasks of this type.")
@click.option("--queue", default=None, metavar="NAME", help="Only tasks of this queue.")
@click.option("--batch", "batch_id", default=None, metavar="ID", help="Only tasks of this batch.")
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
    queue: str | None,
    batch_id: str | None,
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
        tasks, pagination = BatchClient(url, token).list(
            statuses, task_type, page, page_size, queue=queue, batch=batch_id
        )
    except ClientError as exc:
        fail(exc)
        return
    console = make_console(stderr=False)
    if console.is_terminal:
        if tasks:
            console.print(task_table(tasks, console.width))
    else:
        for task in tasks:
            click.echo("\t".join(task_cells(task)))
    total = pagination.get("total", len(tasks))
    if not total:
        filtered = statuses or task_type or queue or batch_id
        click.echo("no tasks" if filtered else "no tasks yet", err=True)
        return
    click.echo(
        f"page {pagination.get('page', page)} of {pagination.get('total_pages', 0)}, "
        f"{total} task{'' if total == 1 else 's'}",
        err=True,
    )


@click.command()
@url_option
@token_option
def queues(url: str, token: str | None) -> None:
    """List the queues, with their settings and their tasks by status.

    Every queue that has tasks or settings, and default, by name. A table on a terminal (the
    oldest column is the age of the oldest task ready to start); elsewhere, one line per queue
    with the same columns, separated by tabs, the age in seconds (empty when none is ready).
    Counts cover every caller.
    """
    try:
        found = Client(url, token).queues()
    except ClientError as exc:
        fail(exc)
        return
    console = make_console(stderr=False)
    if console.is_terminal:
        console.print(queue_table(found, console.width), soft_wrap=False)
        return
    for one in found:
        click.echo("\t".join(queue_cells(one, terminal=False)))


@click.command()
@click.argument("name", metavar="NAME", help="The queue's name (`taskapi queues` lists them).")
@click.option(
    "--pause/--resume",
    "paused",
    default=None,
    help="Pause the queue: it accepts tasks and starts none (those running finish); or resume it.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, MAX_QUEUE_CONCURRENCY),
    default=None,
    metavar="N",
    help="At most N of its tasks running at once, across every process of the store.",
)
@click.option(
    "--no-limit",
    is_flag=True,
    help="No concurrency limit beyond the workers (undoes --concurrency).",
)
@url_option
@token_option
def queue(
    name: str,
    paused: bool | None,
    concurrency: int | None,
    no_limit: bool,
    url: str,
    token: str | None,
) -> None:
    """Show a queue, or change it, and print it as JSON.

    \b
        taskapi queue emails --concurrency 2
        taskapi queue reports --pause

    With an option, the queue is changed first (with API keys, only callers named in the
    server's TASKS_ADMINS may) and stderr says what it is now.
    """
    if concurrency is not None and no_limit:
        raise click.UsageError("--concurrency and --no-limit contradict each other")
    changes: dict[str, Any] = {}
    if paused is not None:
        changes["paused"] = paused
    if concurrency is not None or no_limit:
        changes["concurrency"] = concurrency
    client = Client(url, token)
    try:
        found = client.update_queue(name, changes) if changes else client.queue(name)
    except ClientError as exc:
        fail(exc)
        return
    print_json(found)
    if changes:
        click.echo(queue_summary(found), err=True)


#: The commands api/cli/__init__.py adds to ``taskapi``.
CLIENT_COMMANDS = (submit, status, list_tasks, cancel, delete, types, queues, queue)
