"""The engine: the worker pool that claims tasks from the store and runs them.

- ``pool.py``: ``WorkerPool``: its dispatcher (one claim for every idle thread, a group of
  endings written with the next claim in one transaction), its worker threads, wake-ups, and
  shutdown (``stop``, ``hurry``, the hand-back of tasks still held); ``drain`` runs inline.
- ``attempt.py``: one attempt of one task: the ``RunContext`` it gets, the call (inline, or on
  a thread of its own when it has a timeout), and the ``Ending`` it comes to.
- ``isolation.py``: attempts of ``isolation="process"`` types, each in a child process.
- ``monitor.py``: ``Monitor.tick()``: lease renewal, recovery of tasks of lost workers, purge.

Everything the worker writes goes through the store's verbs; none of it is SQL.
"""

from api.worker.attempt import Outcome, RunContext, StopReason, utcnow
from api.worker.monitor import HEARTBEAT_SECONDS, PURGE_BATCH, PURGE_INTERVAL_SECONDS, Monitor
from api.worker.pool import Wakeup, WorkerPool

__all__ = [
    "HEARTBEAT_SECONDS",
    "PURGE_BATCH",
    "PURGE_INTERVAL_SECONDS",
    "Monitor",
    "Outcome",
    "RunContext",
    "StopReason",
    "Wakeup",
    "WorkerPool",
    "utcnow",
]
