"""The last minutes of the store, kept by each server process: what the dashboard charts.

Every ``INTERVAL_SECONDS`` a thread of the process reads how many tasks are in each status
(``Store.count_by_status``: one row per status with SQLite, an index-only count with
PostgreSQL) and keeps the reading for ``WINDOW_SECONDS``. ``GET /activity`` answers them, so a
page opened now draws the last minutes at once instead of starting empty.

Why counts from the store, sampled in every process, rather than the alternatives:

- The counts are the store's, so they are the same whichever process reads them: the
  processes of ``taskapi serve --processes N``, other machines on PostgreSQL, and tasks run by
  ``taskapi worker`` processes are all seen. Readings are taken on multiples of the interval
  of the wall clock, so the processes of a server keep nearly the same series, and polls that
  land on different processes draw the same lines.
- What is per process is only the memory of past readings: a process that started a minute
  ago answers a minute of history (a restart starts it over). Keeping the readings in the
  store would fix that, at the cost of a write per interval.
- Finished per second is the rise of the terminal counts (succeeded + failed + cancelled)
  between readings. Deleting finished tasks, or their expiry, lowers those counts, so an interval
  with deletions shows fewer (never below zero) than really ended. Counting by
  ``finished_at`` would be exact, but needs a store query the store does not have yet.

The thread runs in the processes of ``taskapi serve`` (api/server/http.py starts it); an app built
elsewhere (tests, ``flask``) answers only the reading taken at the request.
"""

from __future__ import annotations

import collections
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from flask import Flask

from api.models import Status
from api.store import Store

log = logging.getLogger(__name__)

INTERVAL_SECONDS = 2.0
WINDOW_SECONDS = 300.0
EXTENSION_KEY = "taskapi.history"


@dataclass(frozen=True, slots=True)
class Sample:
    """How many tasks were in each status at ``time``."""

    time: datetime
    counts: Mapping[Status, int]

    def as_dict(self) -> dict[str, object]:
        return {"time": self.time, **{s.value: self.counts.get(s, 0) for s in Status}}


class History:
    """Readings of the store's counts, one per interval, for the last window."""

    def __init__(
        self,
        store: Store,
        *,
        interval: float = INTERVAL_SECONDS,
        window: float = WINDOW_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.interval = interval
        self.window = window
        self.clock = clock
        self._kept: collections.deque[Sample] = collections.deque(maxlen=int(window / interval))
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def read(self) -> Sample:
        """A reading now (not kept)."""
        now = datetime.fromtimestamp(self.clock(), UTC)
        return Sample(now, self.store.count_by_status(now))

    def latest(self) -> Sample:
        """The newest reading kept, if under one interval old; else a reading now (not kept).

        The sampler reads every interval: a request in between need not read the store too.
        """
        with self._lock:
            newest = self._kept[-1] if self._kept else None
        if newest is not None and self.clock() - newest.time.timestamp() < self.interval:
            return newest
        return self.read()

    def record(self) -> Sample:
        """A reading now, kept; readings older than the window go."""
        sample = self.read()
        with self._lock:
            self._kept.append(sample)
        return sample

    def samples(self) -> list[Sample]:
        """The readings kept, oldest first, none older than the window."""
        oldest = self.clock() - self.window
        with self._lock:
            return [s for s in self._kept if s.time.timestamp() >= oldest]

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Take a reading every interval, on a daemon thread, until ``stop``."""
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="taskapi-history", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(self.interval + 5)

    def _next_wait(self, last: float) -> float:
        """Seconds to the next multiple of the interval (so every process of a server reads
        at once), skipping one that comes too soon after the reading at ``last``."""
        now = self.clock()
        due = (math.floor(now / self.interval) + 1) * self.interval
        if due - last < self.interval / 2:
            due += self.interval
        return due - now

    def _run(self) -> None:
        failing = False
        last = 0.0
        try:
            while not self._stop.wait(self._next_wait(last)):
                last = self.clock()
                try:
                    self.record()
                    failing = False
                except Exception:
                    if not failing:  # once per outage, not every interval
                        log.warning("history: cannot read the store; trying on", exc_info=True)
                    failing = True
        finally:
            self.store.detach_thread()


def of(app: Flask) -> History:
    """The app's history (made on first use, with the store of its runtime)."""
    history: History | None = app.extensions.get(EXTENSION_KEY)
    if history is None:
        from api.runtime import EXTENSION_KEY as RUNTIME

        history = app.extensions.setdefault(EXTENSION_KEY, History(app.extensions[RUNTIME].store))
    return history
