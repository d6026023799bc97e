"""What every client command of ``taskapi`` shares: the --url and --token options, exit
statuses, how ``key=value`` params are read, how a document is printed and a refusal said.

api/cli/client.py, retry.py, schedules.py and batches.py import it; it imports none of them.
"""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import click

from api.client import DEFAULT_URL, ClientError

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

#: Long-poll of ``--wait``: each read is answered at once when the task (or batch) ends, else
#: then.
POLL_SECONDS = 0.5
#: Exit status of ``--wait`` when the task (or a task of the batch) failed or was cancelled.
FAILED_EXIT = 1
#: Exit status of a refused request or an unreachable server.
ERROR_EXIT = 2
ACTIVE_STATUSES = ("queued", "running")
#: Exit status of ``--wait`` interrupted by Ctrl-C (the task, or the batch, goes on).
INTERRUPTED_EXIT = 130


def parse_param(text: str) -> tuple[str, Any]:
    """``key=value``: the value read as JSON when it parses (``x=2`` is a number), else as a
    string."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise click.BadParameter(f"{text!r} is not key=value", param_hint="KEY=VALUE")
    try:
        return key, json.loads(raw)
    except ValueError:
        return key, raw


def print_json(document: Any) -> None:
    """A task, batch, queue or schedule as the API gave it: indented JSON on stdout."""
    click.echo(json.dumps(document, indent=2, sort_keys=True))


def fail(error: ClientError) -> NoReturn:
    """Say on stderr why a request was refused (or not answered), and exit with ERROR_EXIT."""
    click.echo(f"error: {error}", err=True)
    sys.exit(ERROR_EXIT)
