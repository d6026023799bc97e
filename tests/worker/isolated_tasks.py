"""Task types with ``isolation="process"`` for the tests, loaded as ``TASKS_IMPORT`` is.

The child processes import this module and call ``register`` again, as a worker's children do
for a user's module; the functions are defined inside ``register`` on purpose, to show that
this works.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from marshmallow import Schema, fields

from api.registry import Registry, TaskCancelled, TaskContext


class NoParams(Schema):
    pass


class CountParams(Schema):
    n = fields.Integer(required=True)


def register(registry: Registry) -> None:
    @registry.task("primes", params=CountParams, isolation="process")
    def primes(context: TaskContext, params: dict[str, Any]) -> dict[str, int]:
        """Count the primes below `n` the slow way: CPU-bound work."""
        n = params["n"]
        count = sum(1 for k in range(2, n) if all(k % d for d in range(2, int(k**0.5) + 1)))
        return {"primes": count, "pid": os.getpid()}

    @registry.task("hang", params=NoParams, isolation="process", timeout_seconds=1)
    def hang(context: TaskContext, params: dict[str, Any]) -> None:
        """Say its pid, then run forever, deaf to every request to stop."""
        context.progress(0, None, f"pid {os.getpid()}")
        while True:
            time.sleep(0.01)

    @registry.task("exits", params=NoParams, isolation="process", max_attempts=2)
    def exits(context: TaskContext, params: dict[str, Any]) -> None:
        """Leave the process at once with exit code 3."""
        os._exit(3)

    @registry.task("killed", params=NoParams, isolation="process", max_attempts=1)
    def killed(context: TaskContext, params: dict[str, Any]) -> None:
        """Kill its own process with SIGKILL, as the kernel's out-of-memory killer does."""
        os.kill(os.getpid(), signal.SIGKILL)

    @registry.task("steps", params=NoParams, isolation="process", max_attempts=1)
    def steps(context: TaskContext, params: dict[str, Any]) -> dict[str, Any]:
        """Report progress, then wait for a cancel (returning if none comes in 60 s)."""
        context.progress(1, 2, f"pid {os.getpid()}")
        deadline = time.monotonic() + 60
        while not context.should_abort:
            if time.monotonic() > deadline:
                return {"aborted": False}
            time.sleep(0.01)
        assert context.cancel_requested
        raise TaskCancelled()

    @registry.task("raises", params=NoParams, isolation="process", max_attempts=1)
    def raises(context: TaskContext, params: dict[str, Any]) -> None:
        """Raise a ValueError."""
        raise ValueError(f"bad value in attempt {context.attempt} of {context.task_id}")

    @registry.task("not-json", params=NoParams, isolation="process", max_attempts=1)
    def not_json(context: TaskContext, params: dict[str, Any]) -> set[int]:
        """Return a set, which JSON has no spelling for."""
        return {1, 2}


def pid(context: TaskContext, params: dict[str, Any]) -> int:
    """A module-level function: the child imports it by name when a test registers it."""
    return os.getpid()
