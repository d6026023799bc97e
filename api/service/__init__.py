"""What the views call: submit, read, list, cancel and delete tasks (``tasks.py``), with
Idempotency-Key (``idempotency.py``); list, read and change queues (``queues.py``); set, read,
list, delete and trigger schedules (``schedules.py``); submit, read, wait on and cancel batches
(``batches.py``). The service knows no HTTP: its refusals are the exceptions of
``api/exceptions.py``, made into problems by ``api/errors.py``.
"""

from api.service.batches import BatchService, SubmittedBatch
from api.service.queues import Queue, QueueService
from api.service.schedules import ScheduleService
from api.service.tasks import Notifier, Submitted, TaskService

__all__ = [
    "BatchService",
    "Notifier",
    "Queue",
    "QueueService",
    "ScheduleService",
    "Submitted",
    "SubmittedBatch",
    "TaskService",
]
