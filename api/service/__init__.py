"""What the views call: submit, read, list, cancel and delete tasks (``tasks.py``), with
Idempotency-Key (``idempotency.py``); list, read and change queues (``queues.py``); set, read,
list, delete and trigger schedules (``schedules.py``). The service knows no HTTP: its refusals
are the exceptions of ``api/exceptions.py``, made into problems by ``api/errors.py``.
"""

from api.service.queues import Queue, QueueService
from api.service.schedules import ScheduleService
from api.service.tasks import Notifier, Submitted, TaskService

__all__ = ["Notifier", "Queue", "QueueService", "ScheduleService", "Submitted", "TaskService"]
