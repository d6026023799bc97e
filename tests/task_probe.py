"""A task type for tests about processes: it records every execution it starts.

Loaded with ``TASKS_IMPORT=tests.task_probe``; ``PROBE_LOG`` names the file it appends to.
"""

from __future__ import annotations

import os
from typing import Any

from marshmallow import Schema, fields

from api.registry import Registry, TaskCancelled, TaskContext


class RecordParams(Schema):
    first_attempt_seconds = fields.Float(load_default=0)
    seconds = fields.Float(load_default=0)


def record(context: TaskContext, params: dict[str, Any]) -> dict[str, int]:
    """Append ``task_id attempt`` to PROBE_LOG, then take some time."""
    with open(os.environ["PROBE_LOG"], "a") as log:
        log.write(f"{context.task_id} {context.attempt}\n")
    seconds = params["first_attempt_seconds"] if context.attempt == 1 else params["seconds"]
    if context.sleep(seconds):
        raise TaskCancelled()
    return {"attempt": context.attempt}


def register(registry: Registry) -> None:
    registry.task("record", params=RecordParams, max_attempts=3, backoff_base_seconds=0.1)(record)
