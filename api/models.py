"""The task lifecycle as data: statuses, allowed transitions, and the task record."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any


class Status(enum.StrEnum):
    """Where a task is in its life."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL: frozenset[Status] = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELLED})

#: Every change of status a task may go through. Terminal states have no way out.
TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.QUEUED: frozenset({Status.RUNNING, Status.CANCELLED}),
    Status.RUNNING: frozenset({Status.QUEUED, Status.SUCCEEDED, Status.FAILED, Status.CANCELLED}),
    Status.SUCCEEDED: frozenset(),
    Status.FAILED: frozenset(),
    Status.CANCELLED: frozenset(),
}


class Verb(enum.StrEnum):
    """The store's writes that may change a task's status."""

    CLAIM = "claim"  # a worker takes a ready task
    FINISH = "finish"  # its worker records how the task ended
    RETRY = "retry"  # a failed attempt with attempts left goes back to the queue
    RELEASE = "release"  # a stopping worker hands its task back
    RECOVER = "recover"  # a task whose worker was lost is taken back
    CANCEL = "cancel"  # a client cancels a queued task, or asks a running one to stop
    DELETE = "delete"  # a client deletes an ended task (the purge does so at its expiry)


#: What each verb may do to a task, as (before, after) pairs. Every store write is conditional
#: on the task's status being one of its verb's "before" statuses (``sources``), and every pair
#: is a transition of TRANSITIONS, or leaves the status as it is (a cancel asked of a running
#: task). A deleted task has no status after: its pairs end in None.
VERBS: dict[Verb, frozenset[tuple[Status, Status | None]]] = {
    Verb.CLAIM: frozenset({(Status.QUEUED, Status.RUNNING)}),
    Verb.FINISH: frozenset((Status.RUNNING, end) for end in TERMINAL),
    # Each of the three hand-backs ends the task cancelled instead if a cancel was asked.
    Verb.RETRY: frozenset({(Status.RUNNING, Status.QUEUED), (Status.RUNNING, Status.CANCELLED)}),
    Verb.RELEASE: frozenset({(Status.RUNNING, Status.QUEUED), (Status.RUNNING, Status.CANCELLED)}),
    # Back to the queue; cancelled if asked; failed after MAX_LOST_ATTEMPTS losses in a row.
    Verb.RECOVER: frozenset(
        {
            (Status.RUNNING, Status.QUEUED),
            (Status.RUNNING, Status.CANCELLED),
            (Status.RUNNING, Status.FAILED),
        }
    ),
    Verb.CANCEL: frozenset({(Status.QUEUED, Status.CANCELLED), (Status.RUNNING, Status.RUNNING)}),
    Verb.DELETE: frozenset((end, None) for end in TERMINAL),
}


def _check_verbs() -> None:
    for verb, pairs in VERBS.items():
        for before, after in pairs:
            if after is not None and after != before and after not in TRANSITIONS[before]:
                raise AssertionError(f"{verb}: {before} -> {after} is not a transition")


_check_verbs()


#: The error type of a task cancelled because a task it depends on ended failed or
#: cancelled (and so on down the chain).
DEPENDENCY_FAILED = "DependencyFailed"
#: The most tasks one ``depends_on`` may name, and the most tasks one batch may hold.
MAX_DEPENDENCIES = 1000
MAX_BATCH_SIZE = 1000

#: The statuses of a task that ``POST /tasks/{id}/retry`` submits again (as a new task: the
#: old one stays as it ended).
RETRYABLE: frozenset[Status] = frozenset({Status.FAILED, Status.CANCELLED})


def sources(verb: Verb) -> tuple[Status, ...]:
    """The statuses a task may have for ``verb`` to change it, in a stable order."""
    return tuple(sorted({before for before, _ in VERBS[verb]}))


#: A task whose worker is lost this many times in a row ends ``failed`` with ``WorkerLost``:
#: it is most likely what kills its process (a poison pill), and running it again would only
#: take down another worker. Losses before that send it back to the queue whatever its
#: ``max_attempts``: an attempt cut short by a dead process is not a failure of the task.
MAX_LOST_ATTEMPTS = 3

#: The queue of a task whose submit and type name none.
DEFAULT_QUEUE = "default"
#: What a queue's name may be: lower-case letters, digits and ``_.-``, 1 to 63 characters.
QUEUE_NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
#: The largest ``concurrency`` a queue may be given.
MAX_QUEUE_CONCURRENCY = 10_000


@dataclass(frozen=True, slots=True)
class TaskError:
    """The error of a failed attempt: the exception's type name and its message."""

    type: str
    message: str


@dataclass(frozen=True, slots=True)
class Progress:
    """What a running task last reported of its progress."""

    current: float
    total: float | None = None
    message: str | None = None


@dataclass(frozen=True, slots=True)
class IdempotencyKey:
    """A client's ``Idempotency-Key``, scoped to the caller, with what it was first sent with."""

    owner: str
    key: str
    fingerprint: str
    expires_at: datetime
    #: Until then, a duplicate is refused as in flight (unless the request is answered first).
    in_flight_until: datetime


@dataclass(frozen=True, slots=True)
class NewTask:
    """A task as it is submitted, before the store gives it a row."""

    id: str
    type: str
    params: dict[str, Any]
    max_attempts: int
    timeout_seconds: float | None
    priority: int
    created_at: datetime
    run_after: datetime
    #: The caller that submitted it ("" when the API runs without keys).
    owner: str = ""
    queue: str = DEFAULT_QUEUE
    #: The schedule that made it, and the fire time it stands for (a trigger's: its time).
    schedule: str | None = None
    scheduled_for: datetime | None = None
    #: The failed or cancelled task it submits again (``POST /tasks/{id}/retry``).
    retry_of: str | None = None
    #: The batch it is submitted in (``POST /batches``).
    batch_id: str | None = None
    #: The tasks (of the same owner, existing before it) that must succeed before it runs:
    #: distinct ids, in the order given.
    depends_on: tuple[str, ...] = ()
    #: Where its end is delivered (``POST``, signed): an allowed http(s) URL, or None.
    callback_url: str | None = None


@dataclass(frozen=True, slots=True)
class Task:
    """A task as stored: everything a client may read about it."""

    id: str
    type: str
    status: Status
    params: dict[str, Any]
    result: Any
    error: TaskError | None
    progress: Progress | None
    attempts: int
    max_attempts: int
    timeout_seconds: float | None
    priority: int
    cancel_requested: bool
    created_at: datetime
    run_after: datetime
    started_at: datetime | None
    finished_at: datetime | None
    expires_at: datetime | None
    worker_id: str | None = None
    #: Grows with every change a client can see; the ETag of the task.
    version: int = 1
    #: The caller that submitted it; no other caller sees it.
    owner: str = ""
    #: Attempts cut short by a lost worker: counted in ``attempts``, not against
    #: ``max_attempts``.
    lost_attempts: int = 0
    queue: str = DEFAULT_QUEUE
    #: The schedule that made it, and the fire time it stands for.
    schedule: str | None = None
    scheduled_for: datetime | None = None
    #: The task it submits again, if it is a retry of one.
    retry_of: str | None = None
    #: The batch it was submitted in.
    batch_id: str | None = None
    #: What it waits for, and which of those have not succeeded yet (in ``depends_on``'s
    #: order). A queued task with ``blocked_by`` is never claimed.
    depends_on: tuple[str, ...] = ()
    blocked_by: tuple[str, ...] = ()
    #: Where its end is delivered, and how that delivery goes (None until it ended; the
    #: store's task reads leave it None: the service adds it, ``Store.deliveries``).
    callback_url: str | None = None
    callback: Delivery | None = None

    @property
    def failed_attempts(self) -> int:
        """Attempts that ended in an error or a timeout: what ``max_attempts`` bounds."""
        return self.attempts - self.lost_attempts

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL


@dataclass(frozen=True, slots=True)
class QueueState:
    """A queue as the store sees it: its settings, and its tasks of every caller."""

    name: str
    #: A paused queue accepts tasks and starts none.
    paused: bool
    #: The most tasks of the queue running at once across every process of the store; None:
    #: no limit beyond the workers.
    concurrency: int | None
    #: Tasks not expired, in each status (every status present).
    counts: dict[Status, int]
    #: When the oldest ready queued task became ready (its ``run_after``); None when none is.
    oldest_ready_at: datetime | None


#: The most seconds ``every_seconds`` may be: a year.
MAX_EVERY_SECONDS = 31_536_000
#: What a schedule's name may be: the same rule as a queue's.
SCHEDULE_NAME_PATTERN = QUEUE_NAME_PATTERN


class Overlap(enum.StrEnum):
    """What a fire time does while the schedule's previous task is queued or running."""

    SKIP = "skip"  # makes no task
    ALLOW = "allow"  # makes one all the same


class CatchUp(enum.StrEnum):
    """What a schedule does about the fire times it missed (no worker process ran then)."""

    LATEST = "latest"  # one task, for the latest missed fire time
    NONE = "none"  # none


class FireOutcome(enum.StrEnum):
    """What one fire time of a schedule came to: a task made, or why none was.

    Each fire time of a schedule comes to exactly one of them, once, in whichever process
    ticked first (``Store.fire_schedule``); the others find it ``TAKEN``.
    """

    MADE = "made"  # a task was made for it
    OVERLAP = "overlap"  # skipped: the previous task is still queued or running (overlap: skip)
    MISSED = "missed"  # skipped: it passed while no worker process ran (catch_up: none)
    UNKNOWN_TYPE = "unknown_type"  # skipped: its task type is no longer registered
    QUEUE_FULL = "queue_full"  # skipped: TASKS_MAX_QUEUED tasks were queued
    #: Another process fired it first, or the schedule changed meanwhile (or this process
    #: left it to one that has its task type).
    TAKEN = "taken"


#: How long the record of a fire time is kept: far longer than the clocks of two processes
#: could differ, so that no process computes again a fire time whose record is gone.
FIRES_KEPT_SECONDS = 86_400

#: The outcomes that are skips: counted by reason.
SKIPS: frozenset[FireOutcome] = frozenset(
    {
        FireOutcome.OVERLAP,
        FireOutcome.MISSED,
        FireOutcome.UNKNOWN_TYPE,
        FireOutcome.QUEUE_FULL,
    }
)


@dataclass(frozen=True, slots=True)
class ScheduleSpec:
    """What a ``PUT /schedules/{name}`` sets (ScheduleWrite): when, and which task."""

    #: A 5-field cron expression (or ``@daily``-style name) read in ``timezone``; or None.
    cron: str | None
    #: The seconds between fire times; or None. Exactly one of ``cron`` and this is set.
    every_seconds: int | None
    #: The IANA time zone ``cron`` is read in.
    timezone: str
    #: The task each fire makes: a validated TaskCreate body (``type``, ``params`` and the
    #: options given), as accepted; the type's defaults apply when it is made.
    task: dict[str, Any]
    paused: bool = False
    overlap: Overlap = Overlap.SKIP
    catch_up: CatchUp = CatchUp.LATEST


@dataclass(frozen=True, slots=True)
class Schedule:
    """A schedule as stored."""

    owner: str
    name: str
    spec: ScheduleSpec
    #: The next fire time; None while paused (or when the cron has no more fire times).
    next_run_at: datetime | None
    #: When it last made a task (a fire or a trigger), and that task.
    last_run_at: datetime | None
    last_task_id: str | None
    created_at: datetime
    updated_at: datetime
    #: Grows with every replace: a fire applies only to the schedule it was computed from.
    version: int = 1


@dataclass(frozen=True, slots=True)
class NewBatch:
    """Tasks submitted together (``POST /batches``): created all of them, or none."""

    id: str
    owner: str
    #: Each with ``batch_id`` set to ``id``, in the order given.
    tasks: tuple[NewTask, ...]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Batch:
    """A batch as stored, with where its tasks are."""

    id: str
    owner: str
    #: Its tasks' ids, in the order given (also those deleted or expired since).
    task_ids: tuple[str, ...]
    #: Its tasks not deleted nor expired, in each status (every status present).
    counts: dict[Status, int]
    created_at: datetime
    #: When its last task ended, once every one has (None until then).
    finished_at: datetime | None
    #: Grows whenever one of its tasks changes (the sum of their versions): with ``counts``,
    #: what its ETag is made of.
    members_version: int

    @property
    def size(self) -> int:
        return len(self.task_ids)

    @property
    def done(self) -> bool:
        """Every task it still has is terminal."""
        return not (self.counts[Status.QUEUED] or self.counts[Status.RUNNING])


class DeliveryState(enum.StrEnum):
    """Where the callback of an ended task is (``Delivery``)."""

    PENDING = "pending"  # an attempt is due now or later (or is being made)
    DELIVERED = "delivered"  # the receiver answered 2xx
    FAILED = "failed"  # every attempt failed, or the receiver answered 410 Gone


#: Every change of state a delivery may go through. An attempt that fails with attempts left
#: keeps it pending (a later one is due); a delivered or failed one is pending again when a
#: client asks for it to be sent again (``POST /tasks/{id}/callback/retry``).
DELIVERY_TRANSITIONS: dict[DeliveryState, frozenset[DeliveryState]] = {
    DeliveryState.PENDING: frozenset(
        {DeliveryState.PENDING, DeliveryState.DELIVERED, DeliveryState.FAILED}
    ),
    DeliveryState.DELIVERED: frozenset({DeliveryState.PENDING}),
    DeliveryState.FAILED: frozenset({DeliveryState.PENDING}),
}

#: The event type of a task's end, by the status it ended in.
CALLBACK_EVENTS: dict[Status, str] = {
    Status.SUCCEEDED: "task.succeeded",
    Status.FAILED: "task.failed",
    Status.CANCELLED: "task.cancelled",
}
#: The waits before each attempt after the first (the first is sent at once): the Standard
#: Webhooks schedule, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h; 27.6 hours in all, so that a
#: receiver that is down for a day still gets it. After the last, the delivery is failed.
CALLBACK_RETRY_DELAYS: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 36000)
#: The longest ``callback_url``.
MAX_CALLBACK_URL_LENGTH = 2048
#: The largest body sent: a task whose event is larger is sent without its result (and
#: params, if still too large), with a link to read it.
MAX_CALLBACK_BODY_BYTES = 64 * 1024
#: How long one attempt may take, from the connection to the answer.
CALLBACK_TIMEOUT_SECONDS = 10.0
#: What is left out of an event's ``data``, in this order, while its body is over
#: MAX_CALLBACK_BODY_BYTES: each field, and the empty value it is sent with instead.
CALLBACK_OMITTABLE: tuple[tuple[str, Any], ...] = (
    ("result", None),
    ("params", {}),
    ("progress", None),
    ("error", None),
    ("depends_on", []),
    ("blocked_by", []),
)


@dataclass(frozen=True, slots=True)
class Delivery:
    """The callback of an ended task: its one event, and how sending it goes."""

    task_id: str
    url: str
    #: One of CALLBACK_EVENTS' values.
    event: str
    state: DeliveryState
    #: Attempts made so far (also those under way).
    attempts: int
    #: When the task ended: the event's ``timestamp``.
    ended_at: datetime
    #: When the next attempt is due (pending only).
    next_attempt_at: datetime | None = None
    last_attempt_at: datetime | None = None
    delivered_at: datetime | None = None
    #: The HTTP status of the receiver's last answer (None: it gave none).
    last_status: int | None = None
    #: What went wrong with the last attempt (None when it was delivered).
    last_error: str | None = None

    @property
    def webhook_id(self) -> str:
        """The ``webhook-id`` of every attempt of this event: the same across retries."""
        return f"msg_{self.task_id}"
