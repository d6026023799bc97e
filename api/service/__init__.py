"""What the views call: submit, read, list, cancel and delete tasks (``tasks.py``), with
Idempotency-Key (``idempotency.py``). The service knows no HTTP: its refusals are the
exceptions of ``api/exceptions.py``, made into problems by ``api/errors.py``.
"""

from api.exceptions import (
    KeyReused,
    QueueFullError,
    ServiceError,
    TaskConflict,
    TaskNotFound,
)
from api.service.idempotency import fingerprint
from api.service.tasks import Notifier, Submitted, TaskService, canonical_id, utcnow

__all__ = [
    "KeyReused",
    "Notifier",
    "QueueFullError",
    "ServiceError",
    "Submitted",
    "TaskConflict",
    "TaskNotFound",
    "TaskService",
    "canonical_id",
    "fingerprint",
    "utcnow",
]
