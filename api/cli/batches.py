"""Batches on the command line: ``taskapi submit --batch FILE.jsonl`` (see api/cli/client.py)
submits the tasks of a file in one ``POST /batches``, and ``taskapi batch ID`` shows, waits
for or cancels a batch.

A batch file holds one TaskCreate object a line (the body of a ``POST /tasks``); blank lines
are skipped. It is read whole and checked before anything is sent, so a line that is not a JSON
object, or a file over the server's 1000 tasks, sends nothing; the server's refusals of items
(``tasks.3.params.x``) are said with the file's line numbers.
"""

from __future__ import annotations

import builtins
import json
import re
import sys
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any, NoReturn

import click

from api.cli.common import (
    ERROR_EXIT,
    FAILED_EXIT,
    INTERRUPTED_EXIT,
    POLL_SECONDS,
    fail,
    print_json,
    token_option,
    url_option,
)
from api.cli.views import (
    BatchLiveView,
    BatchPlainView,
    batch_outcome,
    batch_summary,
    make_console,
)
from api.client import Client, ClientError
from api.models import MAX_BATCH_SIZE

#: A field error of a batch item as api/client.py writes it in a refusal: the item's index.
ITEM_ERROR = re.compile(r"^  json\.tasks\.(\d+)\.", re.MULTILINE)


class BatchClient(Client):
    """The ``/batches`` calls of the command line, and ``GET /tasks`` with its ``batch``
    filter, on the client of the other commands."""

    @staticmethod
    def _batch_path(batch_id: str) -> str:
        return f"/batches/{urllib.parse.quote(batch_id, safe='')}"

    def create_batch(self, tasks: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Submit every task of ``tasks`` in one request: the batch, or a refusal (nothing
        created)."""
        batch, _ = self._request("POST", "/batches", {"tasks": list(tasks)})
        return batch

    def batch(self, batch_id: str, wait: float | None = None) -> dict[str, Any]:
        """The batch; with ``wait``, held by the server until it is done or ``wait`` seconds
        pass."""
        path = self._batch_path(batch_id)
        if wait:
            path += "?" + urllib.parse.urlencode({"wait": f"{wait:g}"})
        batch, _ = self._request("GET", path)
        return batch

    def cancel_batch(self, batch_id: str) -> dict[str, Any]:
        """Cancel every task of the batch that has not ended: the batch after."""
        batch, _ = self._request("POST", self._batch_path(batch_id) + "/cancel")
        return batch

    def list(
        self,
        statuses: Sequence[str] = (),
        task_type: str | None = None,
        page: int = 1,
        page_size: int = 20,
        queue: str | None = None,
        batch: str | None = None,
    ) -> tuple[builtins.list[dict[str, Any]], dict[str, Any]]:
        """``Client.list``, and with ``batch`` only the tasks of that batch."""
        if batch is None:
            return super().list(statuses, task_type, page, page_size, queue=queue)
        query: builtins.list[tuple[str, str | int]] = [("status", s) for s in statuses]
        if task_type:
            query.append(("type", task_type))
        if queue is not None:
            query.append(("queue", queue))
        query += [("batch", batch), ("page", page), ("page_size", page_size)]
        tasks, headers = self._request("GET", "/tasks?" + urllib.parse.urlencode(query))
        return tasks, json.loads(headers.get("X-Pagination", "{}"))


@dataclass(frozen=True)
class BatchFile:
    """The tasks of a batch file, and the line each came from."""

    name: str
    tasks: list[dict[str, Any]]
    lines: list[int]

    def on_lines(self, error: ClientError) -> str:
        """A refusal with its items' field errors (``json.tasks.1.params.x: …``) said on the
        lines of the file (``renders.jsonl:2: params.x: …``)."""

        def line(match: re.Match[str]) -> str:
            index = int(match[1])
            if index >= len(self.lines):
                return match[0]
            return f"  {self.name}:{self.lines[index]}: "

        return ITEM_ERROR.sub(line, str(error))


def refuse(message: str) -> NoReturn:
    """Say why nothing was sent, and exit with ERROR_EXIT."""
    click.echo(f"error: {message}", err=True)
    sys.exit(ERROR_EXIT)


def json_kind(value: Any) -> str:
    """What a JSON value is, in JSON's words: ``an array``, ``a string``, ``null``."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int | float):
        return "a number"
    return "a string" if isinstance(value, str) else "an array"


def _not_json(constant: str) -> NoReturn:
    """``json.loads`` takes NaN and Infinity, which JSON (and the server) does not."""
    raise ValueError(f"{constant} is not a JSON number")


def read_batch_file(stream: IO[str]) -> BatchFile:
    """The tasks of a JSON Lines file (one object a line, blank lines skipped), or an exit
    naming the first line that is not a JSON object, or saying the file holds too many."""
    name = "<stdin>" if stream.name in ("-", "<stdin>") else str(stream.name)
    tasks: list[dict[str, Any]] = []
    lines: list[int] = []
    number = 0
    try:
        for number, text in enumerate(stream, start=1):
            if number == 1:  # a byte order mark, as some editors write, is no part of the JSON
                text = text.removeprefix("\ufeff")
            if not text.strip():
                continue
            try:
                item = json.loads(text, parse_constant=_not_json)
            except json.JSONDecodeError as exc:
                refuse(f"{name}:{number}: not JSON: {exc.msg} (column {exc.colno})")
            except ValueError as exc:  # NaN, or a number too long for Python to read
                refuse(f"{name}:{number}: not JSON: {exc}")
            if not isinstance(item, dict):
                refuse(
                    f"{name}:{number}: {json_kind(item)}, not a task: a task is a JSON object "
                    'like {"type": "add", "params": {"x": 1, "y": 2}}'
                )
            tasks.append(item)
            lines.append(number)
    except UnicodeDecodeError:
        refuse(f"{name}:{number + 1}: not UTF-8 text")
    if not tasks:
        refuse(f"{name} has no tasks: write one JSON object a line")
    if len(tasks) > MAX_BATCH_SIZE:
        refuse(
            f"{name} has {len(tasks)} tasks; a batch holds at most {MAX_BATCH_SIZE} (the "
            f"server's limit).\nSplit the file (split -l {MAX_BATCH_SIZE}) and submit each part."
        )
    return BatchFile(name, tasks, lines)


def submit_batch(client: BatchClient, stream: IO[str], wait: bool, started: float) -> None:
    """``taskapi submit --batch FILE [--wait]``."""
    batch_file = read_batch_file(stream)
    try:
        batch = client.create_batch(batch_file.tasks)
    except ClientError as exc:
        refuse(batch_file.on_lines(exc))
    size = batch["size"]
    queued = f"batch {batch['id']}: {size} task{'' if size == 1 else 's'} queued"
    if not wait:
        print_json(batch)
        click.echo(f"{queued}\nfollow it with `taskapi batch {batch['id']} --wait`", err=True)
        return
    click.echo(queued, err=True)
    wait_for_batch(client, batch, started, "submitted")


def wait_for_batch(
    client: BatchClient, batch: dict[str, Any], started: float, done: str | None = None
) -> None:
    """``--wait`` of ``submit --batch`` and ``batch``: show the batch's progress on stderr until
    every task has ended, print it, and say how it ended; exit FAILED_EXIT when a task failed or
    was cancelled.

    ``done`` is what was done to the batch (``submitted``), said if the waiting stops early.
    The batch goes on either way.
    """
    console = make_console(stderr=True)
    view = BatchLiveView(console) if console.is_interactive else BatchPlainView()
    follow = f"follow it with `taskapi batch {batch['id']} --wait`"
    try:
        view.update(batch)
        with view:
            while not batch["done"]:
                asked = time.monotonic()
                batch = client.batch(batch["id"], wait=POLL_SECONDS)
                view.update(batch)
                if not batch["done"]:  # in case the server did not hold the answer
                    time.sleep(max(0.0, POLL_SECONDS - (time.monotonic() - asked)))
    except ClientError as exc:
        said = f"batch {batch['id']} was {done}: {follow}" if done else follow
        click.echo(f"error: {exc}\n{said}", err=True)
        sys.exit(ERROR_EXIT)
    except KeyboardInterrupt:
        click.echo(f"interrupted: batch {batch['id']} goes on; {follow}", err=True)
        sys.exit(INTERRUPTED_EXIT)
    print_json(batch)
    if not batch_outcome(console, batch, time.monotonic() - started):
        sys.exit(FAILED_EXIT)


@click.command(name="batch")
@click.argument("batch_id", metavar="ID", help="The batch's id, as `submit --batch` printed it.")
@click.option("--wait", is_flag=True, help="Show its progress until every task has ended.")
@click.option(
    "--cancel", is_flag=True, help="Cancel every task of it that has not ended (before --wait)."
)
@url_option
@token_option
def batch_command(batch_id: str, wait: bool, cancel: bool, url: str, token: str | None) -> None:
    """Show a batch, wait for it or cancel it, and print it as JSON.

    \b
        taskapi batch 01938c2e-5b7a-7cc1-9a3e-2f0e6d1b4c55 --wait

    stderr says its size, its tasks by status and whether every one has ended (done), when it
    was created and finished. --cancel cancels its tasks that have not ended: queued ones at
    once, running ones are asked to stop and end cancelled when they next check. With --wait,
    its progress shows on stderr (a live bar on a terminal, lines elsewhere) until every task
    has ended; the exit status is 1 when any failed or was cancelled.
    """
    client = BatchClient(url, token)
    started = time.monotonic()
    try:
        batch = client.cancel_batch(batch_id) if cancel else client.batch(batch_id)
    except ClientError as exc:
        fail(exc)
    if wait:
        wait_for_batch(client, batch, started, "cancelled" if cancel else None)
        return
    print_json(batch)
    for line in batch_summary(batch):
        click.echo(line, err=True)
    running = (batch.get("counts") or {}).get("running")
    if cancel and running:
        asked = f"its {running} running tasks were" if running > 1 else "its running task was"
        who = "each" if running > 1 else "it"
        click.echo(f"{asked} asked to stop: {who} ends cancelled when it next checks", err=True)


#: The commands api/cli/__init__.py adds to ``taskapi``.
BATCH_COMMANDS = (batch_command,)
