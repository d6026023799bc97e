"""Wake-ups between the processes of one service: a task is ready, tasks ended, a cancel.

A process that submits a task wakes the worker processes; a worker process that ends a task
wakes the API processes whose long-polls wait on it; an API process that asks a running task
to stop tells the worker processes. Each store has its channel: on SQLite a pipe (FIFO) per
process in a directory beside the database file (``local``), on PostgreSQL
LISTEN/NOTIFY (``postgres``). A message lost or a channel down costs only time: every waiter
also reads the store again at its fallback interval.

The channel is ``Wakeups``; what a process does when woken is its ``Listener``.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Iterable
from typing import Protocol


class Role(enum.StrEnum):
    """What a listening process wants to hear."""

    #: It runs workers: new ready tasks and cancels.
    WORKERS = "w"
    #: It answers long-polls: ended tasks.
    READERS = "r"


class Listener(Protocol):
    """What a process does with a wake-up from another process."""

    def tasks_ready(self) -> None:
        """Tasks became ready: wake an idle worker."""

    def tasks_ended(self, task_ids: Iterable[str]) -> None:
        """These tasks ended (or changed): wake whoever waits on them here."""

    def cancel_asked(self, task_id: str) -> None:
        """A client asked to cancel this task: stop it if it runs here."""


class Wakeups(Protocol):
    """The channel between the processes of one store."""

    def ready(self) -> None:
        """Tell the worker processes that a task became ready."""

    def ended(self, task_ids: Iterable[str]) -> None:
        """Tell the reading processes that these tasks ended."""

    def cancel(self, task_id: str) -> None:
        """Tell the worker processes that a client asked to cancel this task."""

    def listen(self, roles: frozenset[Role], listener: Listener, stop: threading.Event) -> None:
        """Deliver what other processes send to ``listener`` until ``stop``; blocks.

        Returns at once if this channel cannot listen (then waiters poll).
        """

    def close(self) -> None:
        """Let go of the channel's sockets or connections."""


class Nowhere:
    """No other process to tell: the channel of a store that cannot have any."""

    def ready(self) -> None:
        return None

    def ended(self, task_ids: Iterable[str]) -> None:
        return None

    def cancel(self, task_id: str) -> None:
        return None

    def listen(self, roles: frozenset[Role], listener: Listener, stop: threading.Event) -> None:
        return None

    def close(self) -> None:
        return None


def open_wakeups(database_url: str) -> Wakeups:
    """The channel of the store at ``database_url``."""
    if database_url.startswith("sqlite:///"):
        from api.wakeups.local import LocalWakeups

        return LocalWakeups.for_database(database_url[len("sqlite:///") :])
    if database_url.startswith(("postgresql:", "postgres:")):
        from api.wakeups.postgres import PostgresWakeups

        return PostgresWakeups(database_url.replace("postgres://", "postgresql://", 1))
    return Nowhere()


__all__ = ["Listener", "Nowhere", "Role", "Wakeups", "open_wakeups"]
