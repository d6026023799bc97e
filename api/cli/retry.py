"""``taskapi retry``: submit a failed or cancelled task again, as a new task.

It talks to the server's ``POST /tasks/{id}/retry`` (RetryClient, below) and shows what it got
as ``taskapi submit`` does; a refusal (404 for an unknown task, 409 for one that has not failed
or been cancelled) is said on stderr with exit status 2.
"""

from __future__ import annotations

import time
from typing import Any

import click

from api.cli.client import wait_and_print
from api.cli.common import fail, print_json, task_id_argument, token_option, url_option
from api.client import Client, ClientError


class RetryClient(Client):
    """The retry call of the command line, on the client of the other commands."""

    def retry(self, task_id: str) -> dict[str, Any]:
        """Submit a failed or cancelled task again: the new task (``retry_of`` the old id).
        The old task stays as it is."""
        task, _ = self._request("POST", self._task_path(task_id) + "/retry")
        return task


@click.command()
@task_id_argument
@click.option("--wait", is_flag=True, help="Show the new task's progress until it ends.")
@url_option
@token_option
def retry(task_id: str, wait: bool, url: str, token: str | None) -> None:
    """Submit a failed or cancelled task again, and print the new task as JSON.

    \b
        taskapi retry 0b7c2f4e-6a47-4a55-9d0c-3f1f8e1c2a9d --wait

    The new task has a new id, the same type, params and options, and retry_of set to the old
    task's id; the old task stays as it is, with its error and attempts. A task that is queued,
    running or succeeded cannot be retried. With --wait, it is followed as `taskapi submit
    --wait` follows a task: the exit status is 1 when it failed or was cancelled again.
    """
    client = RetryClient(url, token)
    started = time.monotonic()
    try:
        task = client.retry(task_id)
    except ClientError as exc:
        fail(exc)
    if not wait:
        print_json(task)
        click.echo(
            f"task {task['id']} retries {task_id}; follow it with `taskapi status {task['id']}`",
            err=True,
        )
        return
    click.echo(f"task {task['id']} retries {task_id}", err=True)
    wait_and_print(client, task, started, "submitted again")


#: The commands api/cli/__init__.py adds to ``taskapi``.
RETRY_COMMANDS = (retry,)
