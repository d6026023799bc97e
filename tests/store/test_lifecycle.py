"""The lifecycle table: every verb of every store does exactly what api.models.VERBS says."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from api.models import (
    MAX_LOST_ATTEMPTS,
    VERBS,
    Status,
    TaskError,
    Verb,
)
from api.store import Store
from tests.store.tasks import LATER, T0, claim, finish, new_task, retry

#: The states a task can be in before a verb: its status, and for a running task whether a
#: cancel was asked (which turns the hand-backs into cancels).
STATES = (
    "queued",
    "running",
    "running, cancel asked",
    "running, its worker lost twice before",
    "succeeded",
    "failed",
    "cancelled",
)
#: How each verb is called on a task held by worker "w" (its lease over at T0 + 1 s).
CALLS: dict[Verb, Callable[[Store, str], object]] = {
    Verb.CLAIM: lambda store, task_id: claim(store, "w2", T0, LATER),
    Verb.RETRY: lambda store, task_id: retry(
        store, task_id, "w", TaskError("E", "x"), T0, T0, LATER
    ),
    Verb.RELEASE: lambda store, task_id: store.release(task_id, "w", T0, LATER),
    Verb.RECOVER: lambda store, task_id: store.recover_expired(T0 + timedelta(seconds=1), LATER),
    Verb.CANCEL: lambda store, task_id: store.cancel(task_id, T0, LATER),
    Verb.DELETE: lambda store, task_id: store.delete(task_id, T0),
    **{
        end: (lambda store, task_id, end=end: finish(store, task_id, "w", end, T0, LATER))
        for end in (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)
    },
}


def _task_in(store: Store, state: str) -> str:
    """A new task in ``state``; the only task of the store that is not terminal."""
    task = store.create(new_task())
    if state == "queued":
        return task.id
    if state == "cancelled":
        store.cancel(task.id, T0, LATER)
        return task.id
    if state == "running, its worker lost twice before":
        for _ in range(MAX_LOST_ATTEMPTS - 1):
            claim(store, "lost", T0, T0 - timedelta(seconds=1))
            store.recover_expired(T0, LATER)
    assert claim(store, "w", T0, T0) is not None
    if state == "running, cancel asked":
        store.cancel(task.id, T0, LATER)
    elif state in ("succeeded", "failed"):
        finish(store, task.id, "w", Status(state), T0, LATER)
    return task.id


def _put_away(store: Store, task_id: str) -> None:
    """End the task and delete it, so that the next case's claim sees no other task."""
    task = store.get(task_id, T0)
    if task is None:
        return
    if task.status is Status.QUEUED:
        store.cancel(task_id, T0, LATER)
    elif task.status is Status.RUNNING:
        assert task.worker_id is not None
        finish(store, task_id, task.worker_id, Status.CANCELLED, T0, LATER)
    assert store.delete(task_id, T0)


@pytest.mark.parametrize("verb", list(Verb))
def test_every_verb_makes_exactly_the_changes_of_the_lifecycle_table(
    store: Store, verb: Verb
) -> None:
    calls = (
        [CALLS[end] for end in (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)]
        if verb is Verb.FINISH
        else [CALLS[verb]]
    )
    seen: set[tuple[Status, Status | None]] = set()
    for call in calls:
        for state in STATES:
            task_id = _task_in(store, state)
            before = store.get(task_id, T0)
            assert before is not None
            call(store, task_id)
            after = store.get(task_id, T0)
            if after is None or after.version != before.version:
                seen.add((before.status, None if after is None else after.status))
            _put_away(store, task_id)
    assert seen == VERBS[verb], f"{verb} changed {seen}, the table says {VERBS[verb]}"
