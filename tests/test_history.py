"""api.history: the readings kept for the dashboard's charts (no threads, a fake clock)."""

from __future__ import annotations

from datetime import datetime

from api.history import History
from api.models import Status


class Counts:
    def __init__(self) -> None:
        self.queued = 0

    def count_by_status(self, now: datetime) -> dict[Status, int]:
        return {s: (self.queued if s is Status.QUEUED else 0) for s in Status}


def test_readings_are_kept_for_the_window_then_dropped() -> None:
    now = [1000.0]
    store = Counts()
    history = History(store, interval=2, window=10, clock=lambda: now[0])  # type: ignore[arg-type]
    for n in range(8):
        store.queued = n
        history.record()
        now[0] += 2
    kept = history.samples()
    assert [s.counts[Status.QUEUED] for s in kept] == [3, 4, 5, 6, 7]
    assert kept[-1].as_dict()["queued"] == 7 and kept[-1].as_dict()["failed"] == 0


def test_readings_fall_on_multiples_of_the_interval_and_never_twice_at_once() -> None:
    now = [1001.5]
    history = History(Counts(), interval=2, clock=lambda: now[0])  # type: ignore[arg-type]
    assert history._next_wait(last=0.0) == 0.5  # at 1002, as every process of the server
    now[0] = 1001.999  # woke a hair early after the reading at 1000.0
    assert round(history._next_wait(last=1001.99), 6) == 2.001  # not at 1002, but at 1004


def test_a_request_between_readings_reuses_the_newest_one() -> None:
    now = [1000.0]
    store = Counts()
    reads = []
    real = store.count_by_status

    def counted(at: datetime) -> dict[Status, int]:
        reads.append(at)
        return real(at)

    store.count_by_status = counted  # type: ignore[method-assign]
    history = History(store, interval=2, clock=lambda: now[0])  # type: ignore[arg-type]
    kept = history.record()
    now[0] += 1.5
    assert history.latest() is kept and len(reads) == 1, "under an interval old: no read"
    now[0] += 1
    assert history.latest() is not kept and len(reads) == 2, "older: read the store"
