"""The built-in task types: ``add``, ``sleep`` and ``fail``.

Each function's docstring is its type's description (``GET /task-types``, ``taskapi types``, the
spec): plain text, with `single backticks` at most, never reST markup.
"""

from __future__ import annotations

import math
from typing import Any

from api.registry import Registry, TaskCancelled, TaskContext
from schemas.params import AddParams, FailParams, SleepParams


class TaskFailure(Exception):
    """The error that ``fail`` raises."""


def add(context: TaskContext, params: dict[str, Any]) -> int:
    """Add two integers, after optional simulated work (the seed's task)."""
    if params["delay_seconds"] and context.sleep(params["delay_seconds"]):
        raise TaskCancelled()
    return int(params["x"]) + int(params["y"])


def sleep(context: TaskContext, params: dict[str, Any]) -> dict[str, float]:
    """Sleep, reporting progress each second; stops early when cancelled."""
    seconds = float(params["seconds"])
    steps = math.ceil(seconds)
    for step in range(steps):
        if context.sleep(min(1.0, seconds - step)):
            raise TaskCancelled()
        context.progress(step + 1, steps, f"slept {min(step + 1, seconds):g} of {seconds:g}s")
    return {"slept": params["seconds"]}


def fail(context: TaskContext, params: dict[str, Any]) -> dict[str, int]:
    """Raise `message`, on every attempt or on the first `succeed_after` attempts."""
    succeed_after = params.get("succeed_after")
    if succeed_after is None or context.attempt <= succeed_after:
        raise TaskFailure(params["message"])
    return {"attempts": context.attempt}


def register(registry: Registry) -> None:
    """Add the built-in types to ``registry``."""
    registry.task("add", params=AddParams, max_attempts=1)(add)
    registry.task("sleep", params=SleepParams, max_attempts=1)(sleep)
    registry.task(
        "fail",
        params=FailParams,
        max_attempts=3,
        backoff_base_seconds=0.5,
        backoff_cap_seconds=5,
    )(fail)
