"""One process's end of the wake-up channel: what it tells the others, and what it hears.

The service tells the workers of this process and of the others about a submit or a cancel
(``task_submitted``, ``cancel_requested``: the service's Notifier); the process's task events
send each end to the others (``TaskEvents(relay=link.ended)``). ``start`` listens, on a
thread, for what the others send: a ready task wakes a worker here, an ended task the
long-polls waiting on it here, a cancel the task if it runs here.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Protocol

from api.wakeups import Role, Wakeups


class Workers(Protocol):
    """This process's worker pool, as the link sees it."""

    def task_submitted(self) -> None: ...

    def cancel_requested(self, task_id: str) -> None: ...


class Readers(Protocol):
    """This process's task events, as the link sees them."""

    def wake(self, task_ids: Iterable[str]) -> None: ...


class Link:
    """The wake-ups of one process: a Notifier for the service, a Listener for the channel."""

    def __init__(self, wakeups: Wakeups, workers: Workers, readers: Readers) -> None:
        self.wakeups = wakeups
        self._workers = workers
        self._readers = readers
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- what this process tells --------------------------------------------------------------

    def task_submitted(self) -> None:
        self._workers.task_submitted()
        self.wakeups.ready()

    def cancel_requested(self, task_id: str) -> None:
        self._workers.cancel_requested(task_id)
        self.wakeups.cancel(task_id)

    def ended(self, task_ids: Iterable[str]) -> None:
        self.wakeups.ended(task_ids)

    # -- what it hears ------------------------------------------------------------------------

    def tasks_ready(self) -> None:
        self._workers.task_submitted()

    def tasks_ended(self, task_ids: Iterable[str]) -> None:
        self._readers.wake(task_ids)

    def cancel_asked(self, task_id: str) -> None:
        self._workers.cancel_requested(task_id)

    @property
    def listening(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, roles: Iterable[Role]) -> None:
        """Listen for what other processes send to ``roles``, on a thread, until ``stop``."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self.wakeups.listen,
            args=(frozenset(roles), self, self._stop),
            name="taskapi-wakeups",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop listening and let go of the channel."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
            self._thread = None
        self.wakeups.close()
