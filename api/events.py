"""Wake-ups for readers waiting on a task: long-poll answers within moments of a change."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class TaskEvents:
    """Per-task events of this process: the worker pool and the service signal changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[str, set[threading.Event]] = {}
        self.closed = False

    def close(self) -> None:
        """The process is shutting down: wake every waiter, and let no one wait again."""
        with self._lock:
            self.closed = True
            waiting, self._waiting = self._waiting, {}
        for events in waiting.values():
            for event in events:
                event.set()

    def changed(self, task_id: str) -> None:
        """Wake everyone waiting on ``task_id``."""
        with self._lock:
            events = self._waiting.pop(task_id, ())
        for event in events:
            event.set()

    @contextmanager
    def subscribe(self, task_id: str) -> Iterator[threading.Event]:
        """An event set at the next change of ``task_id``; subscribe before reading the task,
        so that a change between the read and the wait is not missed."""
        event = threading.Event()
        with self._lock:
            if self.closed:
                event.set()
            else:
                self._waiting.setdefault(task_id, set()).add(event)
        try:
            yield event
        finally:
            with self._lock:
                waiting = self._waiting.get(task_id)
                if waiting is not None:
                    waiting.discard(event)
                    if not waiting:
                        del self._waiting[task_id]

    def waiting(self) -> int:
        """How many tasks have someone waiting on them (for tests and metrics)."""
        with self._lock:
            return len(self._waiting)
