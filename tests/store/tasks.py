"""What the store tests share: the times they run at and the task they submit."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from api.models import NewTask

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
LATER = T0 + timedelta(days=7)


def new_task(
    *, type: str = "add", priority: int = 0, created: datetime = T0, delay: float = 0
) -> NewTask:
    return NewTask(
        id=str(uuid.uuid4()),
        type=type,
        params={"x": 1, "y": 2, "text": "nul\u0000 and ünïcode"},
        max_attempts=3,
        timeout_seconds=None,
        priority=priority,
        created_at=created,
        run_after=created + timedelta(seconds=delay),
    )
