"""The benchmark's own task type, loaded by the server with ``TASKS_IMPORT=bench.tasks``.

``spin``: ``seconds`` of pure-Python CPU work, measured on the CPU clock of the thread that runs
it, so each task costs the same CPU whatever runs beside it. It asks for ``isolation="process"``
(each attempt in a child process: CPU-bound tasks use every core and leave the API's GIL alone).
A taskapi that does not know that parameter yet gets the default isolation instead, and says so.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from marshmallow import Schema, fields, validate

from api.registry import Registry, TaskContext

log = logging.getLogger(__name__)

SPIN_TIMEOUT_SECONDS = 60
#: How the bench reads which isolation ``spin`` got: in its description.
ISOLATION_FALLBACK_NOTE = "(default isolation: this taskapi has no isolation parameter)"


class SpinParams(Schema):
    seconds = fields.Float(required=True, validate=validate.Range(min=0, max=30))


def spin(context: TaskContext, params: dict[str, Any]) -> float:
    """Spin the CPU for `seconds` of this thread's CPU time; the loop's iterations."""
    deadline = time.thread_time() + float(params["seconds"])
    turns = 0
    while time.thread_time() < deadline:
        for _ in range(10_000):
            turns += 1
    return turns


def register(registry: Registry) -> None:
    """Add ``spin``, in a process of its own per attempt where taskapi can do that."""
    options: dict[str, Any] = {"params": SpinParams, "max_attempts": 1}
    # Typed loosely: the isolation parameter is new (TaskType.isolation); until this taskapi
    # has it, the call raises TypeError and spin keeps the default isolation.
    task: Any = registry.task
    try:
        decorate = task(
            "spin", isolation="process", timeout_seconds=SPIN_TIMEOUT_SECONDS, **options
        )
    except TypeError:
        log.warning("spin: this taskapi has no isolation parameter; spin runs on worker threads")
        decorate = task(
            "spin",
            timeout_seconds=SPIN_TIMEOUT_SECONDS,
            description=f"{spin.__doc__} {ISOLATION_FALLBACK_NOTE}",
            **options,
        )
    decorate(spin)
