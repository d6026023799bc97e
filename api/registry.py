"""Task types: what a task of each name runs, with which params and defaults.

A user adds types from their own module, named in ``TASKS_IMPORT``; that module defines
``register(registry)``::

    from marshmallow import Schema, fields
    from api.registry import Registry, TaskCancelled, TaskContext

    class ResizeParams(Schema):
        url = fields.Url(required=True)

    def register(registry: Registry) -> None:
        @registry.task("resize", params=ResizeParams, max_attempts=5, timeout_seconds=60)
        def resize(context: TaskContext, params: dict) -> dict:
            context.progress(1, 2, "downloading")
            if context.should_abort:
                raise TaskCancelled()
            ...
            return {"ok": True}

A task type runs its attempts on the worker's threads (``isolation="thread"``, the default) or
each in a child process (``isolation="process"``, ``api.worker.isolation``). The child finds the
function as the parent did: by calling ``register`` of the ``TASKS_IMPORT`` module that added the
type (so a function defined inside ``register`` works), or, for a type added in other code, by
importing the function by its module and name: it must then be defined at module level (not a
lambda, not nested in a function, not in ``__main__``).
"""

from __future__ import annotations

import importlib
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol, get_args

from marshmallow import Schema

from api.ids import new_id
from api.models import DEFAULT_QUEUE, QUEUE_NAME_PATTERN, NewTask

DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_BACKOFF_BASE_SECONDS = 1.0
DEFAULT_BACKOFF_CAP_SECONDS = 300.0
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")

#: Where a task type's attempts run: on a worker thread, or each in a child process.
Isolation = Literal["thread", "process"]
ISOLATIONS: tuple[Isolation, ...] = get_args(Isolation)


class TaskCancelled(Exception):
    """Raised by a task function that stops because it was told to (``should_abort``)."""


class TaskContext(Protocol):
    """What a running task can ask of the worker that runs it.

    A running task is asked to stop, never killed: it checks ``should_abort`` (or waits with
    ``sleep``) and then stops, raising ``TaskCancelled``.
    """

    @property
    def task_id(self) -> str:
        """The id of the task."""

    @property
    def attempt(self) -> int:
        """Which attempt this is: 1 for the first."""

    @property
    def should_abort(self) -> bool:
        """True once this attempt should stop; stop soon and raise ``TaskCancelled``.

        It turns true, and stays true, on the first of: a client asked to cancel the task
        (from any process; seen within about a second); the attempt reached its
        ``timeout_seconds`` (it is recorded failed then, and retried if attempts are left);
        the worker shuts down and, its grace over, handed the task back to the queue; the
        worker lost the task (its lease expired and it was taken back). The task ends
        ``cancelled`` only if a client asked; after a timeout, a shutdown or a lost lease,
        what the attempt returns or raises is dropped.
        """

    @property
    def cancel_requested(self) -> bool:
        """The first name of ``should_abort``, kept for existing tasks: the same value, true
        for each of its reasons (a timeout, a shutdown, a lost lease), not only a cancel."""

    def progress(
        self, current: float, total: float | None = None, message: str | None = None
    ) -> None:
        """Report progress; clients see it in the task's ``progress``."""

    def sleep(self, seconds: float) -> bool:
        """Wait up to ``seconds``; True as soon as ``should_abort`` is (at once if it already
        is), False when the time ran out."""


TaskFunction = Callable[[TaskContext, dict[str, Any]], Any]


class StopSignal:
    """What every ``TaskContext`` shares: the signal to stop, an event set once, and its
    readings (a thread's context and a child process's alike)."""

    _abort: threading.Event

    @property
    def should_abort(self) -> bool:
        """True once the task was told to stop, for any reason."""
        return self._abort.is_set()

    @property
    def cancel_requested(self) -> bool:
        """``should_abort`` under the name ``TaskContext`` first had: true for any reason."""
        return self._abort.is_set()

    def sleep(self, seconds: float) -> bool:
        """Wait up to ``seconds``; True as soon as the task is told to stop."""
        return self._abort.wait(max(seconds, 0.0))


@dataclass(frozen=True)
class TaskType:
    """A registered kind of task."""

    name: str
    params: type[Schema]
    func: TaskFunction
    description: str = ""
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    timeout_seconds: float | None = None
    backoff_base_seconds: float = DEFAULT_BACKOFF_BASE_SECONDS
    backoff_cap_seconds: float = DEFAULT_BACKOFF_CAP_SECONDS
    isolation: Isolation = "thread"
    #: The queue of its tasks when a submit names none.
    queue: str = DEFAULT_QUEUE

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(
                f"Task type name {self.name!r} must be lowercase letters, digits, '-' or '_'."
            )
        if not 1 <= self.max_attempts <= 100:
            raise ValueError(f"{self.name}: max_attempts must be within 1..100.")
        if self.timeout_seconds is not None and not 0 < self.timeout_seconds <= 86400:
            raise ValueError(f"{self.name}: timeout_seconds must be within (0, 86400].")
        if not 0 < self.backoff_base_seconds <= self.backoff_cap_seconds:
            raise ValueError(f"{self.name}: need 0 < backoff_base_seconds <= backoff_cap_seconds.")
        if self.isolation not in ISOLATIONS:
            raise ValueError(
                f"{self.name}: isolation must be 'thread' or 'process', not {self.isolation!r}."
            )
        if not isinstance(self.queue, str) or not re.fullmatch(QUEUE_NAME_PATTERN, self.queue):
            raise ValueError(
                f"{self.name}: queue {self.queue!r} is not a queue name; use 1 to 63 lower-case "
                "letters, digits, '_', '.' or '-', starting with a letter or a digit."
            )

    def backoff_seconds(self, attempt: int, jitter: float) -> float:
        """Delay before retrying after failed attempt ``attempt`` (1-based).

        Exponential, capped, with "equal jitter": half the delay is fixed, half is
        ``jitter`` (0..1) of it, so retries of many tasks spread out but never come at once.
        """
        delay = min(self.backoff_cap_seconds, self.backoff_base_seconds * 2 ** (attempt - 1))
        return delay / 2 + delay / 2 * jitter

    def new_task(
        self,
        request: Mapping[str, Any],
        owner: str,
        now: datetime,
        *,
        schedule: str | None = None,
        scheduled_for: datetime | None = None,
        batch_id: str | None = None,
        task_id: str | None = None,
    ) -> NewTask:
        """The task a validated TaskCreate body (or a schedule's template) asks for, with this
        type's defaults for the options it leaves out; a new id unless ``task_id`` is given."""
        delay = request.get("delay_seconds")
        return NewTask(
            id=task_id or new_id(),
            type=self.name,
            params=request["params"],
            max_attempts=request.get("max_attempts", self.max_attempts),
            timeout_seconds=request.get("timeout_seconds", self.timeout_seconds),
            priority=request.get("priority", 0),
            created_at=now,
            run_after=now + timedelta(seconds=delay) if delay else now,
            owner=owner,
            queue=request.get("queue", self.queue),
            schedule=schedule,
            scheduled_for=scheduled_for,
            batch_id=batch_id,
            depends_on=tuple(request.get("depends_on", ())),
            callback_url=request.get("callback_url"),
        )


class Registry:
    """The task types of one application."""

    def __init__(self) -> None:
        self._types: dict[str, TaskType] = {}
        #: The module whose ``register`` added each type, for types added by ``load_module``.
        self._origins: dict[str, str] = {}
        self._loading: str | None = None

    def add(self, task_type: TaskType) -> TaskType:
        """Add ``task_type``; a ``ValueError`` if its name is taken, or if it runs in a child
        process that could not find its function (see the module's docstring)."""
        if task_type.name in self._types:
            raise ValueError(f"Task type {task_type.name!r} is already registered.")
        if task_type.isolation == "process" and self._loading is None:
            func = task_type.func
            module = getattr(func, "__module__", None)
            qualname = getattr(func, "__qualname__", "<unknown>")
            if module in (None, "__main__") or "<" in qualname:
                raise ValueError(
                    f"{task_type.name}: a task type with isolation='process' runs in a child "
                    f"process, which imports its function by name; {module}.{qualname} cannot "
                    "be imported. Define it at module level in an importable module, or "
                    "register it from a TASKS_IMPORT module's register(registry)."
                )
        self._types[task_type.name] = task_type
        if self._loading is not None:
            self._origins[task_type.name] = self._loading
        return task_type

    def task(
        self,
        name: str,
        *,
        params: type[Schema],
        description: str | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        timeout_seconds: float | None = None,
        backoff_base_seconds: float = DEFAULT_BACKOFF_BASE_SECONDS,
        backoff_cap_seconds: float = DEFAULT_BACKOFF_CAP_SECONDS,
        isolation: Isolation = "thread",
        queue: str = DEFAULT_QUEUE,
    ) -> Callable[[TaskFunction], TaskFunction]:
        """Decorator registering ``func(context, params)`` as the task type ``name``, whose
        tasks go to ``queue`` unless their submit names another."""

        def decorator(func: TaskFunction) -> TaskFunction:
            self.add(
                TaskType(
                    name=name,
                    params=params,
                    func=func,
                    description=description or (func.__doc__ or "").strip(),
                    max_attempts=max_attempts,
                    timeout_seconds=timeout_seconds,
                    backoff_base_seconds=backoff_base_seconds,
                    backoff_cap_seconds=backoff_cap_seconds,
                    isolation=isolation,
                    queue=queue,
                )
            )
            return func

        return decorator

    def get(self, name: str) -> TaskType | None:
        return self._types.get(name)

    def origin(self, name: str) -> str | None:
        """The module whose ``register`` added type ``name`` (by ``load_module``), if any."""
        return self._origins.get(name)

    def names(self) -> list[str]:
        return sorted(self._types)

    def __iter__(self) -> Iterator[TaskType]:
        return iter(self._types[name] for name in self.names())

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def load_module(self, dotted: str) -> None:
        """Import ``dotted`` and call its ``register(registry)``."""
        try:
            module = importlib.import_module(dotted)
        except ImportError as exc:
            raise ImportError(
                f"TASKS_IMPORT: cannot import {dotted!r} ({exc}); is its folder on PYTHONPATH?"
            ) from exc
        register = getattr(module, "register", None)
        if not callable(register):
            raise ValueError(f"TASKS_IMPORT module {dotted!r} has no register(registry) function.")
        loading, self._loading = self._loading, dotted
        try:
            register(self)
        finally:
            self._loading = loading
