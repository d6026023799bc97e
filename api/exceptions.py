"""What the service refuses, and why: each exception's message is its docstring.

A docstring is formatted with the exception's attributes (``{task_id!r}``); its whitespace is
folded, so a message may span lines here and still read as one line. Exceptions carry what
the domain knows (a task id, the queue's limit, how long to wait), never HTTP: ``api/errors.py``
alone maps each one to a status, headers and a problem document.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


class ServiceError(Exception):
    """The service refused this request."""

    #: Seconds after which the same request may succeed; None when waiting would not help.
    retry_after: int | None = None

    def __init__(self) -> None:
        template = " ".join((type(self).__doc__ or "").split())
        super().__init__(template.format_map(vars(self)))

    @property
    def detail(self) -> str:
        """The message, as a client reads it."""
        return str(self)


class UnknownTaskType(ServiceError):
    """Unknown task type {type_name!r}."""

    def __init__(self, type_name: str) -> None:
        self.type_name = type_name
        super().__init__()


class TaskNotFound(ServiceError):
    """There is no task with id {task_id!r}; it may have expired or been deleted."""

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        super().__init__()


class BatchNotFound(ServiceError):
    """There is no batch with id {batch_id!r}; its tasks may all have expired or been deleted."""

    def __init__(self, batch_id: str) -> None:
        self.batch_id = batch_id
        super().__init__()


class DependenciesNotFound(ServiceError):
    """{count} of the ids in depends_on name no task of yours (unknown, another caller's,
    deleted or expired; a task can depend only on tasks that exist before it, not on one of
    its own batch); nothing was created. `errors` names them."""

    def __init__(self, missing: Mapping[int, Sequence[str]], *, in_batch: bool) -> None:
        #: By the index of the item that named them (0 for a single submit).
        self.missing = {index: list(ids) for index, ids in missing.items()}
        self.in_batch = in_batch
        self.count = sum(len(ids) for ids in self.missing.values())
        super().__init__()


class TaskConflict(ServiceError):
    """The task is not in a state that allows this."""


class NotCancellable(TaskConflict):
    """Task {task_id} is already {status}; only a queued or running task can be cancelled."""

    def __init__(self, task_id: str, status: str) -> None:
        self.task_id, self.status = task_id, status
        super().__init__()


class NotRetryable(TaskConflict):
    """Task {task_id} is {status}; only a failed or cancelled task can be retried (a queued or
    running one will still run, a succeeded one has its result)."""

    def __init__(self, task_id: str, status: str) -> None:
        self.task_id, self.status = task_id, status
        super().__init__()


class NotDeletable(TaskConflict):
    """Task {task_id} is {status}; only a terminal task (succeeded, failed or cancelled) can be
    deleted. Cancel it first."""

    def __init__(self, task_id: str, status: str) -> None:
        self.task_id, self.status = task_id, status
        super().__init__()


class NoCallback(TaskConflict):
    """Task {task_id} has no callback_url, so it has no callback to send again. A callback_url
    is given when the task is submitted (POST /tasks)."""

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        super().__init__()


class CallbackRefused(TaskConflict):
    """Task {task_id}'s callback_url can no longer be called: {reason} Submit the task anew
    (POST /tasks) with a callback_url this server allows, or without one."""

    def __init__(self, task_id: str, reason: str) -> None:
        self.task_id, self.reason = task_id, reason
        super().__init__()


class CallbackNotDue(TaskConflict):
    """Task {task_id} is {status}: its callback is sent once it ends (succeeded, failed or
    cancelled), and can be sent again only after that. Wait for it to end
    (GET /tasks/{task_id}?wait=60)."""

    def __init__(self, task_id: str, status: str) -> None:
        self.task_id, self.status = task_id, status
        super().__init__()


class CallbackPending(TaskConflict):
    """The callback of task {task_id} is still pending: it is being sent, or will be tried
    again at callback.next_attempt_at. Only a delivered or failed callback can be sent again;
    read the task (GET /tasks/{task_id}) to follow it."""

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        super().__init__()


class KeyInFlight(TaskConflict):
    """The request that first used this Idempotency-Key is still being handled; send this one
    again once it has been answered."""

    retry_after = 1


class KeyTaskGone(TaskConflict):
    """The task first created with this Idempotency-Key no longer exists (deleted or expired);
    send the request with a new key."""


class KeyBatchGone(TaskConflict):
    """The batch first created with this Idempotency-Key no longer exists (every task of it
    deleted or expired); send the request with a new key."""


class KeyReused(ServiceError):
    """This Idempotency-Key was first used with a different body; a key stands for one request.
    Send this body with a new key."""


class QueueFullError(ServiceError):
    """The queue holds its limit of {limit} tasks (TASKS_MAX_QUEUED); nothing was created.
    Submit again after {retry_after} seconds."""

    def __init__(self, limit: int | None, retry_after: int) -> None:
        self.limit, self.retry_after = limit, retry_after
        super().__init__()


class QueueNotFound(ServiceError):
    """There is no queue {name!r}: a queue exists once a task names it or its settings are
    changed (PATCH /queues/{name})."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__()


class NotAQueueName(QueueNotFound):
    """There is no queue {name!r}, nor can there be: a queue name is 1 to 63 lower-case letters,
    digits, '_', '.' or '-', starting with a letter or a digit."""


class NotAnAdmin(ServiceError):
    """Only the callers named in TASKS_ADMINS may change queues, and {caller!r} is not one of
    them. To let it, add {caller!r} to TASKS_ADMINS (comma-separated caller names of
    TASKS_API_KEYS) and restart the service."""

    def __init__(self, caller: str) -> None:
        self.caller = caller
        super().__init__()


class ScheduleNotFound(ServiceError):
    """There is no schedule {name!r} (of this caller): GET /schedules lists yours; make it with
    PUT /schedules/{name}."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__()


class NotAScheduleName(ServiceError):
    """{name!r} cannot name a schedule: use 1 to 63 lower-case letters, digits, '_', '.' or
    '-', starting with a letter or a digit."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__()


class ScheduleTypeUnknown(ServiceError):
    """Schedule {name!r} makes tasks of type {type_name!r}, which this service no longer has
    (was the module of TASKS_IMPORT that registered it removed?); no task was made. Register
    the type again, or PUT the schedule with a task of a type GET /task-types lists."""

    def __init__(self, name: str, type_name: str) -> None:
        self.name, self.type_name = name, type_name
        super().__init__()
