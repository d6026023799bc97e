"""Tasks that wait for others, and batches: what every backend must do, run against each."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import timedelta

import pytest

from api.models import DEPENDENCY_FAILED, NewBatch, NewTask, Status, TaskError
from api.store import QueueFull, Settled, Store, TaskFilter, UnknownDependencies
from tests.store.tasks import LATER, T0, finish, new_task, retry

SOON = T0 + timedelta(seconds=1)
EXPIRES = T0 + timedelta(hours=1)


def waiting_on(*deps: str, owner: str = "") -> NewTask:
    return dataclasses.replace(new_task(), depends_on=tuple(deps), owner=owner)


def run(store: Store, task_id: str, status: Status, worker: str = "w") -> None:
    """Claim ``task_id`` (it must be the next ready task) and end it ``status``."""
    claimed = store.claim_many(worker, 1, SOON, LATER)
    assert [t.id for t in claimed] == [task_id]
    error = TaskError("Boom", "it broke") if status is Status.FAILED else None
    assert finish(store, task_id, worker, status, SOON, EXPIRES, error=error)


def status_of(store: Store, task_id: str) -> Status:
    task = store.get(task_id, SOON)
    assert task is not None
    return task.status


@pytest.fixture
def reports(store: Store) -> list[Settled]:
    seen: list[Settled] = []
    store.on_settled(seen.append)
    return seen


def test_a_waiting_task_is_never_claimed_until_its_dependencies_succeed(
    store: Store, reports: list[Settled]
) -> None:
    a = store.create(new_task())
    b = store.create(new_task(delay=0.5))
    c = store.create(waiting_on(a.id, b.id))
    assert c.status is Status.QUEUED
    assert (c.depends_on, c.blocked_by) == ((a.id, b.id), (a.id, b.id))
    run(store, a.id, Status.SUCCEEDED)
    waiting = store.get(c.id, SOON)
    assert waiting is not None and waiting.blocked_by == (b.id,)
    assert waiting.version > c.version  # what a reader sees changed: so does the ETag
    assert reports == []  # a's end freed c of one wait only: nothing became ready
    # b is the only task to claim (c still waits); its end makes c ready.
    assert [t.id for t in store.claim_many("w", 5, SOON, LATER)] == [b.id]
    assert finish(store, b.id, "w", Status.SUCCEEDED, SOON, EXPIRES)
    assert [r.ready for r in reports if r.ready] == [[c.id]]
    ready = store.get(c.id, SOON)
    assert ready is not None and ready.blocked_by == () and ready.depends_on == (a.id, b.id)
    assert [t.id for t in store.claim_many("w", 5, SOON, LATER)] == [c.id]


def test_a_waiting_task_is_not_ready_for_next_run_after_nor_oldest_queued(store: Store) -> None:
    a = store.create(new_task(delay=60))
    store.create(waiting_on(a.id))
    assert store.next_run_after() == T0 + timedelta(seconds=60)
    state = store.queue("default", SOON)
    assert state is not None and state.counts[Status.QUEUED] == 2
    assert state.oldest_ready_at is None


def test_a_chain_of_three_runs_in_order(store: Store) -> None:
    a = store.create(new_task())
    b = store.create(waiting_on(a.id))
    c = store.create(waiting_on(b.id))
    run(store, a.id, Status.SUCCEEDED)
    run(store, b.id, Status.SUCCEEDED)
    run(store, c.id, Status.SUCCEEDED)
    assert store.claim_many("w", 5, SOON, LATER) == []


@pytest.mark.parametrize("end", [Status.FAILED, Status.CANCELLED])
def test_a_failure_in_the_middle_cancels_the_rest_of_the_chain_at_once(
    store: Store, reports: list[Settled], end: Status
) -> None:
    a = store.create(new_task())
    b = store.create(waiting_on(a.id))
    c = store.create(waiting_on(b.id))
    d = store.create(waiting_on(c.id))
    run(store, a.id, Status.SUCCEEDED)
    run(store, b.id, end)
    for dependant, cause in ((c, b), (d, c)):
        task = store.get(dependant.id, SOON)
        assert task is not None and task.status is Status.CANCELLED
        assert task.error is not None and task.error.type == DEPENDENCY_FAILED
        assert cause.id in task.error.message
        assert task.finished_at == SOON and task.expires_at == EXPIRES
    cancelled = [one for r in reports for one in r.cancelled]
    assert sorted(t[0] for t in cancelled) == sorted([c.id, d.id])
    assert store.claim_many("w", 5, SOON, LATER) == []


def test_a_cancel_of_the_first_cancels_the_chain(store: Store, reports: list[Settled]) -> None:
    a = store.create(new_task(delay=60))
    b = store.create(waiting_on(a.id))
    c = store.create(waiting_on(b.id))
    outcome = store.cancel(a.id, SOON, EXPIRES)
    assert outcome is not None and outcome.ended
    assert [status_of(store, t.id) for t in (b, c)] == [Status.CANCELLED] * 2
    assert {t[0] for r in reports for t in r.cancelled} == {b.id, c.id}


def test_a_retry_with_attempts_left_keeps_its_dependants_waiting(store: Store) -> None:
    a = store.create(new_task())
    b = store.create(waiting_on(a.id))
    store.claim_many("w", 1, SOON, LATER)
    after = retry(store, a.id, "w", TaskError("Boom", "again"), SOON, SOON, EXPIRES)
    assert after is Status.QUEUED
    assert status_of(store, b.id) is Status.QUEUED
    run(store, a.id, Status.SUCCEEDED)
    assert [t.id for t in store.claim_many("w", 5, SOON, LATER)] == [b.id]


def test_a_dependency_that_failed_already_cancels_the_new_task_at_once(
    store: Store, reports: list[Settled]
) -> None:
    a = store.create(new_task())
    run(store, a.id, Status.FAILED)
    b = store.create(waiting_on(a.id))
    assert b.status is Status.CANCELLED
    assert b.error is not None and b.error.type == DEPENDENCY_FAILED
    # Kept as long after its end as its dependency is after its own (the result TTL).
    assert b.finished_at == T0 and b.expires_at == T0 + (EXPIRES - SOON)
    assert [t[0] for r in reports for t in r.cancelled] == [b.id]


def test_a_succeeded_dependency_deleted_later_does_not_disturb_its_dependants(
    store: Store,
) -> None:
    a = store.create(new_task())
    other = store.create(new_task(delay=60))
    b = store.create(waiting_on(a.id, other.id))
    run(store, a.id, Status.SUCCEEDED)
    assert store.delete(a.id, SOON)
    task = store.get(b.id, SOON)
    assert task is not None and task.status is Status.QUEUED and task.blocked_by == (other.id,)


def test_unknown_gone_and_other_callers_dependencies_are_refused_creating_nothing(
    store: Store,
) -> None:
    mine = store.create(dataclasses.replace(new_task(), owner="alice"))
    theirs = store.create(dataclasses.replace(new_task(), owner="bob"))
    done = store.create(dataclasses.replace(new_task(), owner="alice"))
    store.claim_many("w", 5, SOON, LATER)
    assert finish(store, done.id, "w", Status.SUCCEEDED, SOON, SOON + timedelta(seconds=1))
    unknown = str(uuid.uuid4())
    later = SOON + timedelta(seconds=2)  # done has expired by then
    for deps in ((theirs.id,), (mine.id, unknown), (done.id,)):
        task = dataclasses.replace(
            waiting_on(*deps, owner="alice"), created_at=later, run_after=later
        )
        with pytest.raises(UnknownDependencies) as refused:
            store.create(task)
        assert refused.value.missing == {0: [d for d in deps if d != mine.id]}
    _, total = store.list(TaskFilter(owner="alice"), offset=0, limit=10, now=T0)
    assert total == 2


def test_a_fan_in_of_a_hundred(store: Store, reports: list[Settled]) -> None:
    batch = NewBatch(
        str(uuid.uuid4()),
        "",
        tuple(dataclasses.replace(new_task(), batch_id="b") for _ in range(100)),
        T0,
    )
    batch = dataclasses.replace(
        batch, tasks=tuple(dataclasses.replace(t, batch_id=batch.id) for t in batch.tasks)
    )
    made = store.create_batch(batch)
    fan_in = store.create(waiting_on(*made.task_ids))
    assert len(fan_in.blocked_by) == 100
    claimed = store.claim_many("w", 200, SOON, LATER)
    assert {t.id for t in claimed} == set(made.task_ids)
    for task_id in made.task_ids[:-1]:
        assert finish(store, task_id, "w", Status.SUCCEEDED, SOON, EXPIRES)
    left = store.get(fan_in.id, SOON)
    assert left is not None and left.blocked_by == (made.task_ids[-1],)
    assert store.claim_many("w", 5, SOON, LATER) == []
    assert finish(store, made.task_ids[-1], "w", Status.SUCCEEDED, SOON, EXPIRES)
    assert [t.id for t in store.claim_many("w", 5, SOON, LATER)] == [fan_in.id]


def _batch(count: int, owner: str = "", **changes: object) -> NewBatch:
    batch_id = str(uuid.uuid4())
    tasks = tuple(
        dataclasses.replace(new_task(), batch_id=batch_id, owner=owner, **changes)  # type: ignore[arg-type]
        for _ in range(count)
    )
    return NewBatch(batch_id, owner, tasks, T0)


def test_a_batch_is_created_whole_and_counted(store: Store) -> None:
    new = _batch(5)
    batch = store.create_batch(new)
    assert batch.task_ids == tuple(t.id for t in new.tasks)
    assert batch.counts[Status.QUEUED] == 5 and not batch.done and batch.finished_at is None
    page, total = store.list(TaskFilter(batch=new.id), offset=0, limit=10, now=T0)
    assert total == 5 and [t.id for t in page] == list(reversed(batch.task_ids))
    assert all(t.batch_id == new.id for t in page)
    for task in store.claim_many("w", 5, SOON, LATER):
        assert finish(store, task.id, "w", Status.SUCCEEDED, SOON, EXPIRES)
    done = store.batch(new.id, SOON)
    assert done is not None and done.done and done.finished_at == SOON
    assert done.counts[Status.SUCCEEDED] == 5
    assert done.members_version > batch.members_version
    assert store.batch(new.id, EXPIRES) is None  # every task of it expired
    assert store.batch(str(uuid.uuid4()), T0) is None


def test_a_batch_over_the_queue_bound_creates_nothing(store: Store) -> None:
    store.create(new_task())
    with pytest.raises(QueueFull):
        store.create_batch(_batch(5), max_queued=5)
    assert store.count_by_status(T0)[Status.QUEUED] == 1
    store.create_batch(_batch(4), max_queued=5)
    assert store.count_by_status(T0)[Status.QUEUED] == 5


def test_a_batch_with_an_unknown_dependency_creates_nothing(store: Store) -> None:
    a = store.create(new_task())
    unknown = str(uuid.uuid4())
    new = _batch(3)
    tasks = list(new.tasks)
    tasks[1] = dataclasses.replace(tasks[1], depends_on=(a.id,))
    tasks[2] = dataclasses.replace(tasks[2], depends_on=(unknown, a.id))
    with pytest.raises(UnknownDependencies) as refused:
        store.create_batch(dataclasses.replace(new, tasks=tuple(tasks)))
    assert refused.value.missing == {2: [unknown]}
    assert store.count_by_status(T0)[Status.QUEUED] == 1
    assert store.batch(new.id, T0) is None


def test_a_batch_cancel_cancels_queued_members_and_asks_running_ones(
    store: Store, reports: list[Settled]
) -> None:
    new = _batch(3)
    store.create_batch(new)
    running = store.claim_many("w", 1, SOON, LATER)[0]
    outside = store.create(waiting_on(new.tasks[2].id))
    changed = store.cancel_batch(new.id, SOON, EXPIRES)
    assert {t.id: t.status for t in changed} == {
        new.tasks[0].id if running.id != new.tasks[0].id else new.tasks[1].id: Status.CANCELLED,
        new.tasks[2].id: Status.CANCELLED,
        running.id: Status.RUNNING,
    }
    got = store.get(running.id, SOON)
    assert got is not None and got.cancel_requested
    assert status_of(store, outside.id) is Status.CANCELLED
    assert [t[0] for r in reports for t in r.cancelled] == [outside.id]
    batch = store.batch(new.id, SOON)
    assert batch is not None and not batch.done
    assert store.cancel_batch(new.id, SOON, EXPIRES) == []  # nothing more to change


def test_a_batch_over_two_queues_is_counted_in_each(store: Store) -> None:
    new = _batch(3)
    tasks = (*new.tasks[:2], dataclasses.replace(new.tasks[2], queue="emails"))
    store.create_batch(dataclasses.replace(new, tasks=tasks))
    store.create(new_task(queue="emails"))
    counts = {q.name: q.counts for q in store.queues(T0)}
    assert counts["default"][Status.QUEUED] == 2 and counts["emails"][Status.QUEUED] == 2
    for task in store.claim_many("w", 5, SOON, LATER):
        assert finish(store, task.id, "w", Status.SUCCEEDED, SOON, EXPIRES)
    counts = {q.name: q.counts for q in store.queues(SOON)}
    assert counts["default"][Status.SUCCEEDED] == 2 and counts["emails"][Status.SUCCEEDED] == 2
    assert sum(c[Status.QUEUED] + c[Status.RUNNING] for c in counts.values()) == 0


def test_a_batch_of_one_keeps_to_the_queue_bound(store: Store) -> None:
    store.create(new_task())
    store.create_batch(_batch(1), max_queued=2)
    with pytest.raises(QueueFull):
        store.create_batch(_batch(1), max_queued=2)
    assert store.count_by_status(T0)[Status.QUEUED] == 2


def test_a_task_cancelled_by_a_dependency_that_failed_long_ago_is_kept_its_own_ttl(
    store: Store,
) -> None:
    a = store.create(new_task())
    run(store, a.id, Status.FAILED)  # ended at SOON, kept until EXPIRES
    later = SOON + timedelta(minutes=50)
    b = store.create(dataclasses.replace(waiting_on(a.id), created_at=later, run_after=later))
    assert b.status is Status.CANCELLED
    assert b.finished_at == later and b.expires_at == later + (EXPIRES - SOON)


def test_a_submit_on_a_task_that_a_cancel_down_its_chain_reaches_meanwhile_never_waits(
    store: Store,
) -> None:
    """x fails while a batch that waits for y (which waits for x) is submitted: whichever
    commits first, the batch ends cancelled (on PostgreSQL the cancel of y may wait for the
    submit's lock of y, and must then see the waits it added)."""
    import threading

    for _ in range(6):
        x = store.create(new_task())
        y = store.create(waiting_on(x.id))
        assert [t.id for t in store.claim_many("w", 5, SOON, LATER)] == [x.id]
        new = _batch(200)
        new = dataclasses.replace(
            new, tasks=tuple(dataclasses.replace(t, depends_on=(y.id,)) for t in new.tasks)
        )
        start = threading.Barrier(2)

        def submit(batch: NewBatch = new, start: threading.Barrier = start) -> None:
            start.wait()
            store.create_batch(batch)

        submitter = threading.Thread(target=submit)
        submitter.start()
        start.wait()
        assert finish(store, x.id, "w", Status.FAILED, SOON, EXPIRES)
        submitter.join()
        batch = store.batch(new.id, SOON)
        assert batch is not None and batch.counts[Status.CANCELLED] == 200, batch.counts
