"""What this process does when the end of tasks cancelled or freed the tasks that wait on them.

The store settles dependants in the transaction that ends their dependency, whichever verb
ended it (a worker's ending, a cancel, a recovery, a batch cancel, a submit that names a
dependency that failed already) and reports it through ``Store.on_settled``. This is the one
place that turns the report into what a user sees: the metrics, the long-polls of the tasks
and of their batches (here and in the other processes), and the workers woken for the tasks
that became ready.
"""

from __future__ import annotations

import logging
from typing import Protocol

from api.events import TaskEvents
from api.metrics import Metrics
from api.store import Settled

log = logging.getLogger("api.service")


class Notifier(Protocol):
    """Who hears that tasks became ready (the worker pools of every process)."""

    def task_submitted(self) -> None: ...


class DependantsReporter:
    """``Store.on_settled``'s callback of one process."""

    def __init__(self, events: TaskEvents, metrics: Metrics | None, notifier: Notifier) -> None:
        self.events = events
        self.metrics = metrics
        self.notifier = notifier

    def __call__(self, settled: Settled) -> None:
        woken: list[str] = []
        for task_id, task_type, _queue, batch_id in settled.cancelled:
            log.info(
                "task %s cancelled: a task it depends on did not succeed",
                task_id,
                extra={"task_id": task_id},
            )
            if self.metrics is not None:
                self.metrics.dependency_cancelled(task_type)
            woken.append(task_id)
            if batch_id is not None:
                woken.append(batch_id)
        if woken:
            self.events.changed_many(dict.fromkeys(woken))
        if settled.ready:
            self.notifier.task_submitted()
