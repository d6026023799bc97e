"""``taskapi callback``: how an ended task's callback went, and sending it again.

The callback of a task submitted with a ``callback_url`` (``taskapi submit … --callback URL``)
is the task's ``callback`` in ``GET /tasks/{id}``; ``--resend`` asks the server to send a
delivered or failed one again (``POST /tasks/{id}/callback/retry``). A refusal (404 for an
unknown task, 409 for one without a callback, not ended, or whose callback is still on its
way) is said on stderr with why, and exit status 2.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Any

import click

from api.cli.common import ERROR_EXIT, fail, print_json, task_id_argument, token_option, url_option
from api.cli.views import callback_lines
from api.client import Client, ClientError

#: HTTP status of the server's refusal of a resend that the task's state explains.
CONFLICT = 409


def _no_callback(task: dict[str, Any]) -> str:
    return (
        f"task {task['id']} has no callback_url: it was submitted without one "
        "(taskapi submit TYPE … --callback URL sets it)"
    )


def _explain_conflict(client: Client, task_id: str) -> None:
    """After a 409: read the task, and say why its callback cannot be sent again now."""
    try:
        task = client.get(task_id)
    except ClientError:
        return  # the refusal itself was said; a second error would only blur it
    if not task.get("callback_url"):
        click.echo(_no_callback(task), err=True)
        return
    lines = callback_lines(task, datetime.now(UTC))
    for line in lines:
        click.echo(line, err=True)
    if not task.get("callback"):
        click.echo(f"task {task_id} is {task['status']}: it has not ended yet", err=True)
    elif task["callback"].get("state") == "pending":
        click.echo("it is still being sent: the server retries it without being asked", err=True)


@click.command(name="callback")
@task_id_argument
@click.option(
    "--resend",
    is_flag=True,
    help="Send the callback again (one delivered, or failed for good), as a new delivery "
    "with the same webhook-id.",
)
@url_option
@token_option
def callback(task_id: str, resend: bool, url: str, token: str | None) -> None:
    """Show how a task's callback went, or send it again, and print it as JSON.

    \b
        taskapi callback 0b7c2f4e-6a47-4a55-9d0c-3f1f8e1c2a9d
        taskapi callback 0b7c2f4e-6a47-4a55-9d0c-3f1f8e1c2a9d --resend

    stdout is the task's callback as the API gives it (state, event, webhook_id, attempts,
    last_status, last_error, next_attempt_at, delivered_at, …; null until the task ends).
    stderr says it in words: where it goes, whether it was delivered, the receiver's last
    answer, and when the next attempt is due. --resend sends a delivered or failed callback
    again (the receiver dedupes by webhook-id); one that is still pending is already being
    retried, and a task that has not ended has nothing to send yet.
    """
    client = Client(url, token)
    try:
        task = client.resend_callback(task_id) if resend else client.get(task_id)
    except ClientError as exc:
        if resend and exc.status == CONFLICT:
            click.echo(f"error: {exc}", err=True)
            _explain_conflict(client, task_id)
            sys.exit(ERROR_EXIT)
        fail(exc)
    if not task.get("callback_url"):
        click.echo(f"error: {_no_callback(task)}", err=True)
        sys.exit(ERROR_EXIT)
    print_json(task.get("callback"))
    if resend:
        click.echo(f"task {task['id']}: its callback is sent again", err=True)
    for line in callback_lines(task, datetime.now(UTC)):
        click.echo(line, err=True)
    if (task.get("callback") or {}).get("state") == "failed":
        click.echo(f"send it again with `taskapi callback {task['id']} --resend`", err=True)


#: The commands api/cli/__init__.py adds to ``taskapi``.
CALLBACK_COMMANDS = (callback,)
