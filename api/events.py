"""Wake-ups for readers waiting on a task: long-poll answers within moments of a change."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

_T = TypeVar("_T")


class TaskEvents:
    """Per-task events of this process: the worker pool and the service signal changes.

    ``relay``, when given, hears of every change signalled here (``changed``), to tell the
    other processes of the store (api.wakeups); what they tell comes back through ``wake``.
    """

    def __init__(self, relay: Callable[[Iterable[str]], None] | None = None) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[str, set[threading.Event]] = {}
        self.closed = False
        self.relay = relay

    def close(self) -> None:
        """The process is shutting down: wake every waiter, and let no one wait again."""
        with self._lock:
            self.closed = True
            waiting, self._waiting = self._waiting, {}
        for events in waiting.values():
            for event in events:
                event.set()

    def changed(self, task_id: str) -> None:
        """Wake everyone waiting on ``task_id``, here and in the other processes."""
        self.wake((task_id,))
        if self.relay is not None:
            self.relay((task_id,))

    def changed_many(self, task_ids: Iterable[str]) -> None:
        """``changed`` for each of ``task_ids``, told to the other processes at once."""
        ids = list(task_ids)
        self.wake(ids)
        if self.relay is not None and ids:
            self.relay(ids)

    def wake(self, task_ids: Iterable[str]) -> None:
        """Wake everyone waiting in this process on any of ``task_ids``."""
        if not self._waiting:
            return
        woken: list[threading.Event] = []
        with self._lock:
            for task_id in task_ids:
                woken.extend(self._waiting.pop(task_id, ()))
        for event in woken:
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

    def wait_for(
        self,
        key: str,
        read: Callable[[], _T],
        done: Callable[[_T], bool],
        seconds: float,
        poll: float,
    ) -> _T:
        """What ``read`` gives once ``done`` says so, or after ``seconds``: read again at each
        change of ``key`` (a task's id, or a batch's), and every ``poll`` seconds should a
        wake-up be lost. Errors of ``read`` (it is gone) reach the caller."""
        deadline = time.monotonic() + seconds
        while True:
            with self.subscribe(key) as changed:
                value = read()
                left = deadline - time.monotonic()
                if done(value) or left <= 0 or self.closed:
                    return value
                changed.wait(min(left, poll))

    def waiting(self) -> int:
        """How many tasks have someone waiting on them (for tests and metrics)."""
        with self._lock:
            return len(self._waiting)
