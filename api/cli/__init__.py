"""The ``taskapi`` command: serve the API and workers, run workers, or talk to a server.

Its server commands are in api/cli/server.py, its client commands in api/cli/client.py,
api/cli/retry.py, api/cli/callbacks.py, api/cli/schedules.py and api/cli/batches.py (what they
show, in api/cli/views.py; what they share, in api/cli/common.py).
"""

from __future__ import annotations

import click

from api.cli.batches import BATCH_COMMANDS
from api.cli.callbacks import CALLBACK_COMMANDS
from api.cli.client import CLIENT_COMMANDS
from api.cli.retry import RETRY_COMMANDS
from api.cli.schedules import SCHEDULE_COMMANDS
from api.cli.server import SERVER_COMMANDS


@click.group()
@click.version_option(package_name="taskapi")
def main() -> None:
    """Durable background tasks behind an HTTP API."""


for _command in (
    *SERVER_COMMANDS,
    *CLIENT_COMMANDS,
    *BATCH_COMMANDS,
    *RETRY_COMMANDS,
    *CALLBACK_COMMANDS,
    *SCHEDULE_COMMANDS,
):
    main.add_command(_command)
