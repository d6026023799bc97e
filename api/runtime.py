"""What one application holds: settings, store, registry, services and worker pool.

Made by ``api.extension.TaskAPI``; the views reach it with ``current()``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from flask import current_app

from api.config import Settings
from api.metrics import Metrics
from api.registry import Registry
from api.service import BatchService, QueueService, ScheduleService, TaskService
from api.store import Store
from api.wakeups.link import Link
from api.worker import WorkerPool

EXTENSION_KEY = "taskapi"


@dataclass
class Runtime:
    settings: Settings
    store: Store
    registry: Registry
    service: TaskService
    pool: WorkerPool
    metrics: Metrics
    link: Link
    queues: QueueService
    schedules: ScheduleService
    batches: BatchService


def current() -> Runtime:
    """The runtime of the application handling this request."""
    return cast(Runtime, current_app.extensions[EXTENSION_KEY])
