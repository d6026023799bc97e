"""The schedule commands of ``taskapi``: ``schedules`` (list them) and ``schedule`` (create or
replace one; show, pause, resume, trigger or delete it).

They talk to the server's ``/schedules`` operations (ScheduleClient, below) and show what they
got as the other client commands do (api/cli/views.py); a refusal is said on stderr with exit
status 2.
"""

from __future__ import annotations

import builtins
import json
import urllib.parse
from datetime import UTC, datetime
from typing import Any

import click

from api.cli.common import fail, parse_param, print_json, token_option, url_option
from api.cli.views import make_console, schedule_cells, schedule_summary, schedule_table
from api.client import Client, ClientError
from api.models import MAX_EVERY_SECONDS

#: The fields of a Schedule that a ``PUT /schedules/{name}`` takes back (ScheduleWrite).
WRITE_FIELDS = ("cron", "every_seconds", "timezone", "task", "paused", "overlap", "catch_up")
#: The most schedules a page of ``GET /schedules`` holds: ``taskapi schedules`` shows that many.
MAX_PAGE_SIZE = 100


class ScheduleClient(Client):
    """The ``/schedules`` calls of the command line, on the client of the other commands."""

    @staticmethod
    def _path(name: str) -> str:
        return f"/schedules/{urllib.parse.quote(name, safe='')}"

    def schedules(
        self, page: int = 1, page_size: int = MAX_PAGE_SIZE
    ) -> tuple[builtins.list[dict[str, Any]], dict[str, Any]]:
        """One page of the caller's schedules, by name, and its X-Pagination."""
        query = urllib.parse.urlencode({"page": page, "page_size": page_size})
        found, headers = self._request("GET", f"/schedules?{query}")
        return found, json.loads(headers.get("X-Pagination", "{}"))

    def schedule(self, name: str) -> dict[str, Any]:
        """One schedule of the caller."""
        found, _ = self._request("GET", self._path(name))
        return found

    def put_schedule(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create the schedule, or replace what it does: the schedule afterwards."""
        found, _ = self._request("PUT", self._path(name), body)
        return found

    def delete_schedule(self, name: str) -> None:
        """Delete the schedule; the tasks it made stay."""
        self._request("DELETE", self._path(name))

    def trigger_schedule(self, name: str) -> dict[str, Any]:
        """Make the schedule's task now (even while it is paused): the new task."""
        task, _ = self._request("POST", self._path(name) + "/trigger")
        return task


def write_body(schedule: dict[str, Any]) -> dict[str, Any]:
    """The ScheduleWrite that sets ``schedule`` as it is (its one of cron / every_seconds)."""
    return {k: schedule[k] for k in WRITE_FIELDS if schedule.get(k) is not None}


def was_created(schedule: dict[str, Any]) -> bool:
    """Whether a PUT's answer is a schedule it created rather than replaced: one never
    replaced was last written when it was created. (The API also says so with 201 against
    200; the client of api/client.py answers bodies only.)"""
    return bool(schedule.get("created_at")) and schedule["created_at"] == schedule.get("updated_at")


@click.command()
@click.option(
    "--page", type=click.IntRange(min=1), default=1, show_default=True, help="The page to show."
)
@click.option(
    "--page-size",
    type=click.IntRange(1, MAX_PAGE_SIZE),
    default=MAX_PAGE_SIZE,
    show_default=True,
    help="Schedules per page.",
)
@url_option
@token_option
def schedules(page: int, page_size: int, url: str, token: str | None) -> None:
    """List your schedules, by name: when each fires, its task, its next and last run.

    A table on a terminal (times relative to now; next run says paused while the schedule is
    paused; queue - : the task type's); elsewhere, one line per schedule with the same columns,
    separated by tabs, the times as the API writes them. The page and the count go to stderr.
    """
    try:
        found, pagination = ScheduleClient(url, token).schedules(page, page_size)
    except ClientError as exc:
        fail(exc)
    console = make_console(stderr=False)
    if console.is_terminal:
        if found:
            console.print(schedule_table(found, console.width, datetime.now(UTC)), soft_wrap=False)
    else:
        for one in found:
            click.echo("\t".join(schedule_cells(one, terminal=False)))
    total = pagination.get("total", len(found))
    if not total:
        click.echo("no schedules yet", err=True)
        return
    click.echo(
        f"page {pagination.get('page', page)} of {pagination.get('total_pages', 0)}, "
        f"{total} schedule{'' if total == 1 else 's'}",
        err=True,
    )


def _write(
    name: str,
    task_type: str | None,
    params: tuple[str, ...],
    when: dict[str, Any],
    options: dict[str, Any],
) -> dict[str, Any]:
    """The ScheduleWrite of ``taskapi schedule NAME --cron …|--every … TYPE key=value…``."""
    if task_type is None:
        raise click.UsageError(f"which task? taskapi schedule {name} --cron EXPR TYPE key=value…")
    if sum(value is not None for value in when.values()) != 1:
        raise click.UsageError("give one of --cron EXPR and --every SECONDS")
    task: dict[str, Any] = {"type": task_type, "params": dict(map(parse_param, params))}
    for key in ("max_attempts", "timeout_seconds", "priority", "queue"):
        if options[key] is not None:
            task[key] = options[key]
    body: dict[str, Any] = {k: v for k, v in when.items() if v is not None}
    body["task"] = task
    for key in ("timezone", "overlap", "catch_up"):
        if options[key] is not None:
            body[key] = options[key]
    if options["paused"]:
        body["paused"] = True
    return body


@click.command()
@click.argument(
    "name", metavar="NAME", help="The schedule's name (`taskapi schedules` lists them)."
)
@click.argument(
    "task_type",
    metavar="TYPE",
    required=False,
    help="The task type each fire makes (with --cron or --every).",
)
@click.argument(
    "params",
    nargs=-1,
    metavar="KEY=VALUE...",
    help="The task's params, read as `taskapi submit` reads them (x=2 is a number).",
)
@click.option("--cron", default=None, metavar="EXPR", help="Fire at the times of a 5-field cron.")
@click.option(
    "--every",
    "every_seconds",
    type=click.IntRange(1, MAX_EVERY_SECONDS),
    default=None,
    metavar="SECONDS",
    help="Fire every SECONDS seconds instead.",
)
@click.option(
    "--timezone", default=None, metavar="TZ", help="The IANA zone the cron is read in (UTC)."
)
@click.option("--paused", is_flag=True, help="Create or replace it paused.")
@click.option(
    "--overlap",
    type=click.Choice(["skip", "allow"]),
    default=None,
    help="A fire while the previous task is queued or running: skip it (the default) or not.",
)
@click.option(
    "--catch-up",
    type=click.Choice(["latest", "none"]),
    default=None,
    help="After downtime: one task for the latest missed fire time (the default), or none.",
)
@click.option("--queue", default=None, metavar="NAME", help="The queue of its tasks.")
@click.option("--priority", type=int, default=None, help="The priority of its tasks.")
@click.option("--max-attempts", type=int, default=None, help="Attempts of each task at most.")
@click.option(
    "--timeout",
    "timeout_seconds",
    type=float,
    default=None,
    help="Seconds an attempt of its tasks may run.",
)
@click.option("--pause", is_flag=True, help="Pause it: no fire until it is resumed.")
@click.option("--resume", is_flag=True, help="Resume it: it fires at its next time.")
@click.option("--trigger", is_flag=True, help="Make its task now, paused or not.")
@click.option("--delete", is_flag=True, help="Delete it; the tasks it made stay.")
@url_option
@token_option
def schedule(
    name: str,
    task_type: str | None,
    params: tuple[str, ...],
    cron: str | None,
    every_seconds: int | None,
    pause: bool,
    resume: bool,
    trigger: bool,
    delete: bool,
    url: str,
    token: str | None,
    **options: Any,
) -> None:
    """Create or replace a schedule, or show, pause, resume, trigger or delete one.

    \b
        taskapi schedule nightly-report --cron '0 2 * * *' --timezone Europe/Berlin \\
            report day=yesterday
        taskapi schedule health-probe --every 30 probe
        taskapi schedule nightly-report --pause

    With --cron or --every and a TYPE, the schedule is created or replaced (PUT: every option
    not given takes its default) and printed as JSON; stderr says which, and its next run.
    With NAME alone, it is printed. --pause and --resume put it back with only paused changed
    (printed, with its next run on stderr); --trigger prints the task it made; --delete says so.
    """
    flags = {"--pause": pause, "--resume": resume, "--trigger": trigger, "--delete": delete}
    actions = [flag for flag, on in flags.items() if on]
    writes = task_type is not None or params or cron is not None or every_seconds is not None
    if len(actions) > 1:
        raise click.UsageError(f"{' and '.join(actions)} contradict each other")
    changes = [o for o, v in options.items() if v is not None and v is not False]
    if actions and (writes or changes):
        raise click.UsageError(f"{actions[0]} takes only the schedule's NAME")
    client = ScheduleClient(url, token)
    try:
        if writes or changes:
            when = {"cron": cron, "every_seconds": every_seconds}
            body = _write(name, task_type, params, when, options)
            found = client.put_schedule(name, body)
            print_json(found)
            done = "created" if was_created(found) else "replaced"
            click.echo(schedule_summary(found, done), err=True)
        elif pause or resume:
            _pause_or_resume(client, name, pause)
        elif trigger:
            task = client.trigger_schedule(name)
            print_json(task)
            click.echo(
                f"schedule {name} made task {task['id']}; follow it with "
                f"`taskapi status {task['id']}`",
                err=True,
            )
        elif delete:
            client.delete_schedule(name)
            click.echo(f"deleted schedule {name}; the tasks it made stay")
        else:
            print_json(client.schedule(name))
    except ClientError as exc:
        fail(exc)


def _pause_or_resume(client: ScheduleClient, name: str, pause: bool) -> None:
    """Read the schedule and put it back with ``paused`` changed (nothing to put when it is
    already so). Another client's change between the two requests would be undone by this
    one's PUT: the API has no conditional PUT of schedules."""
    found = client.schedule(name)
    if bool(found.get("paused")) == pause:
        print_json(found)
        state = "paused" if pause else "active"
        click.echo(schedule_summary(found, f"was already {state}"), err=True)
        return
    found = client.put_schedule(name, {**write_body(found), "paused": pause})
    print_json(found)
    click.echo(schedule_summary(found, "paused" if pause else "resumed"), err=True)


#: The commands api/cli/__init__.py adds to ``taskapi``.
SCHEDULE_COMMANDS = (schedules, schedule)
