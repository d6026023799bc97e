"""A task type for tests about processes: it records every execution it starts.

Loaded with ``TASKS_IMPORT=tests.task_probe``; ``PROBE_LOG`` names the file it appends to.
"""

from __future__ import annotations

import os
import signal
import threading
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


class CountParams(Schema):
    n = fields.Integer(required=True)


_connections = threading.local()


def count(context: TaskContext, params: dict[str, Any]) -> int:
    """Record this execution in the ``executions`` table of PROBE_DATABASE_URL."""
    import psycopg

    conn = getattr(_connections, "conn", None)
    if conn is None:
        conn = _connections.conn = psycopg.connect(
            os.environ["PROBE_DATABASE_URL"], autocommit=True
        )
    conn.execute(
        "INSERT INTO executions (task_id, attempt, pid) VALUES (%s, %s, %s)",
        (context.task_id, context.attempt, os.getpid()),
    )
    if context.sleep(float(os.environ.get("PROBE_COUNT_SECONDS", "0"))):
        raise TaskCancelled()
    return int(params["n"])


class NoParams(Schema):
    pass


def poison(context: TaskContext, params: dict[str, Any]) -> None:
    """Append ``task_id attempt`` to PROBE_LOG, then kill the process running it."""
    with open(os.environ["PROBE_LOG"], "a") as log:
        log.write(f"{context.task_id} {context.attempt}\n")
    os.kill(os.getpid(), signal.SIGKILL)


def register(registry: Registry) -> None:
    registry.task("record", params=RecordParams, max_attempts=3, backoff_base_seconds=0.1)(record)
    registry.task("count", params=CountParams, max_attempts=3, backoff_base_seconds=0.1)(count)
    registry.task("poison", params=NoParams, max_attempts=1)(poison)
