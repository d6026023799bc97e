"""The callback outbox: every end of a task with a callback_url writes its delivery in the
same transaction, whichever verb ends it; deliveries are claimed like tasks. Each backend."""

from __future__ import annotations

import dataclasses
import threading
from datetime import timedelta

from api.models import (
    DEPENDENCY_FAILED,
    Delivery,
    DeliveryState,
    NewBatch,
    NewTask,
    Status,
    TaskError,
)
from api.store import DeliveryAttempt, Store
from tests.store.tasks import LATER, T0, finish, new_task

URL = "http://127.0.0.1:9/hook"
SOON = T0 + timedelta(seconds=1)
EXPIRES = T0 + timedelta(hours=1)
LEASE = SOON + timedelta(seconds=60)


def with_callback(task: NewTask | None = None, url: str = URL) -> NewTask:
    return dataclasses.replace(task or new_task(), callback_url=url)


def test_a_task_without_an_end_has_no_delivery_and_its_url_is_kept(store: Store) -> None:
    task = store.create(with_callback())
    assert task.callback_url == URL
    assert store.deliveries([task.id]) == {}
    assert store.next_delivery_at() is None
    plain = store.create(new_task())
    assert plain.callback_url is None


def test_the_end_of_a_task_writes_its_pending_delivery_due_at_once(store: Store) -> None:
    task = store.create(with_callback())
    assert [t.id for t in store.claim_many("w", 1, SOON, LATER)] == [task.id]
    assert finish(store, task.id, "w", Status.SUCCEEDED, SOON, EXPIRES, result=3)
    delivery = store.deliveries([task.id])[task.id]
    assert delivery.state is DeliveryState.PENDING
    assert delivery.event == "task.succeeded"
    assert delivery.url == URL
    assert delivery.attempts == 0
    assert delivery.ended_at == SOON == delivery.next_attempt_at
    assert delivery.webhook_id == f"msg_{task.id}"
    assert store.next_delivery_at() == SOON


def test_every_way_of_ending_writes_one(store: Store) -> None:
    cancelled = store.create(with_callback())
    store.cancel(cancelled.id, SOON, EXPIRES)
    failing = store.create(with_callback())
    doomed = store.create(with_callback(dataclasses.replace(new_task(), depends_on=(failing.id,))))
    claimed = store.claim_many("w", 1, SOON, LATER)
    assert [t.id for t in claimed] == [failing.id]
    finish(store, failing.id, "w", Status.FAILED, SOON, EXPIRES, error=TaskError("E", "m"))
    found = store.deliveries([cancelled.id, failing.id, doomed.id])
    assert {k: v.event for k, v in found.items()} == {
        cancelled.id: "task.cancelled",
        failing.id: "task.failed",
        doomed.id: "task.cancelled",
    }
    got = store.get(doomed.id, SOON)
    assert got is not None and got.error is not None and got.error.type == DEPENDENCY_FAILED


def test_a_batch_keeps_each_tasks_callback(store: Store) -> None:
    tasks = (with_callback(), new_task(), with_callback(url=URL + "/2"))
    tasks = tuple(dataclasses.replace(t, batch_id="b" * 8) for t in tasks)
    store.create_batch(NewBatch("b" * 8, "", tasks, T0))
    stored = [store.get(t.id, SOON) for t in tasks]
    assert [t.callback_url if t else "gone" for t in stored] == [URL, None, URL + "/2"]


def record(store: Store, attempt: DeliveryAttempt) -> Delivery | None:
    """One attempt recorded alone (``record_deliveries`` of one)."""
    (recorded,) = store.record_deliveries([attempt])
    return recorded


def ended(store: Store) -> str:
    task = store.create(with_callback())
    store.cancel(task.id, SOON, EXPIRES)
    return task.id


def test_a_claim_holds_a_delivery_once_and_counts_the_attempt(store: Store) -> None:
    task_id = ended(store)
    (job,) = store.claim_deliveries("p1", 10, SOON, LEASE)
    assert job.delivery.attempts == 1 and job.body is None
    assert job.task is not None and job.task.id == task_id
    assert store.claim_deliveries("p2", 10, SOON, LEASE) == []  # held
    assert store.next_delivery_at() == LEASE  # due again only if its holder is lost
    # A holder that is lost: at the end of the lease another takes it, the attempt counted.
    (again,) = store.claim_deliveries("p2", 10, LEASE, LEASE + timedelta(seconds=60))
    assert again.delivery.attempts == 2
    # The first holder's late answer no longer applies.
    late = DeliveryAttempt(task_id, "p1", LEASE, DeliveryState.DELIVERED, status=200)
    assert record(store, late) is None


def test_a_failed_attempt_is_due_again_with_the_body_it_sent(store: Store) -> None:
    task_id = ended(store)
    before = store.get(task_id, SOON)
    store.claim_deliveries("p", 1, SOON, LEASE)
    retry_at = SOON + timedelta(seconds=5)
    after = record(
        store,
        DeliveryAttempt(
            task_id, "p", SOON, DeliveryState.PENDING, retry_at, 500, "answered 500", b"{}"
        ),
    )
    assert after is not None and after.state is DeliveryState.PENDING
    assert (after.last_status, after.last_error, after.next_attempt_at) == (
        500,
        "answered 500",
        retry_at,
    )
    task = store.get(task_id, SOON)
    assert task is not None and before is not None and task.version > before.version  # ETag
    assert store.claim_deliveries("p", 1, SOON, LEASE) == []  # not due yet
    (job,) = store.claim_deliveries("p", 1, retry_at, LEASE)
    assert job.body == b"{}" and job.delivery.attempts == 2
    done = record(
        store,
        DeliveryAttempt(task_id, "p", retry_at, DeliveryState.DELIVERED, None, 204, None, b"x"),
    )
    assert done is not None and done.state is DeliveryState.DELIVERED
    assert done.delivered_at == retry_at and done.next_attempt_at is None
    assert store.next_delivery_at() is None
    assert store.resend_delivery(task_id, LEASE) is not None
    (job,) = store.claim_deliveries("p", 1, LEASE, LEASE + timedelta(seconds=60))
    assert job.delivery.attempts == 1 and job.body == b"{}"  # the same body, sent again


def test_only_a_delivered_or_failed_delivery_is_sent_again(store: Store) -> None:
    task_id = ended(store)
    assert store.resend_delivery(task_id, SOON) is None  # pending
    assert store.resend_delivery(store.create(new_task()).id, SOON) is None  # none
    store.claim_deliveries("p", 1, SOON, LEASE)
    record(store, DeliveryAttempt(task_id, "p", SOON, DeliveryState.FAILED, None, 410))
    again = store.resend_delivery(task_id, LEASE)
    assert again is not None
    assert (again.state, again.attempts, again.next_attempt_at) == (
        DeliveryState.PENDING,
        0,
        LEASE,
    )


def test_a_delivery_goes_with_its_task_and_the_purge_waits_for_it(store: Store) -> None:
    deleted = ended(store)
    assert store.delete(deleted, SOON)
    assert store.deliveries([deleted]) == {}
    kept = ended(store)
    after_expiry = EXPIRES + timedelta(seconds=1)
    assert store.purge_expired(after_expiry, 100)[0] == 0  # its callback is pending
    (job,) = store.claim_deliveries("p", 1, after_expiry, after_expiry + timedelta(minutes=1))
    assert job.task is not None and job.task.id == kept  # read though expired
    record(store, DeliveryAttempt(kept, "p", after_expiry, DeliveryState.DELIVERED, None, 200))
    assert store.purge_expired(after_expiry, 100)[0] == 1
    assert store.deliveries([kept]) == {}


def test_the_leases_of_a_gone_process_end(store: Store) -> None:
    ended(store)
    store.claim_deliveries("proc-123:abc", 1, SOON, LEASE)
    store.end_leases("proc-123:", SOON)
    assert len(store.claim_deliveries("other", 1, SOON, LEASE)) == 1


def test_concurrent_claims_never_share_a_delivery(store: Store) -> None:
    for _ in range(40):
        ended(store)
    taken: list[str] = []
    lock = threading.Lock()

    def claim(name: str) -> None:
        while jobs := store.claim_deliveries(name, 3, SOON, LEASE):
            with lock:
                taken.extend(j.delivery.task_id for j in jobs)
        store.detach_thread()

    threads = [threading.Thread(target=claim, args=(f"p{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(taken) == 40 == len(set(taken))


def test_the_ends_of_lost_and_handed_back_tasks_write_theirs_too(store: Store) -> None:
    # A worker lost MAX_LOST_ATTEMPTS times: the recovery ends the task failed.
    lost = store.create(with_callback())
    at = SOON
    for _ in range(3):
        assert [t.id for t in store.claim_many("gone", 1, at, at)] == [lost.id]
        at += timedelta(seconds=1)
        store.recover_expired(at, EXPIRES)
    # A running task asked to stop, handed back at shutdown: it ends cancelled.
    handed = store.create(with_callback())
    assert [t.id for t in store.claim_many("w", 1, at, LATER)] == [handed.id]
    store.cancel(handed.id, at, EXPIRES)
    store.release(handed.id, "w", at, EXPIRES)
    found = store.deliveries([lost.id, handed.id])
    assert {k: v.event for k, v in found.items()} == {
        lost.id: "task.failed",
        handed.id: "task.cancelled",
    }


def test_attempts_are_recorded_together_each_only_by_its_holder(store: Store) -> None:
    ids = [ended(store) for _ in range(3)]
    jobs = store.claim_deliveries("p", 3, SOON, LEASE)
    assert sorted(j.delivery.task_id for j in jobs) == sorted(ids)
    store.claim_deliveries("q", 1, LEASE, LEASE + timedelta(minutes=1))  # one lease ran out
    attempts = [
        DeliveryAttempt(task_id, "p", SOON, DeliveryState.DELIVERED, None, 200) for task_id in ids
    ]
    recorded = store.record_deliveries(attempts)
    assert [r is None for r in recorded].count(True) == 1  # taken over by q: not p's to record
    assert all(r.state is DeliveryState.DELIVERED for r in recorded if r is not None)


def test_an_answer_applies_only_to_the_claim_it_was_made_for(store: Store) -> None:
    task_id = ended(store)
    (first,) = store.claim_deliveries("p", 1, SOON, LEASE)
    # Its lease ran out (a slow lookup, say): the same holder claims it again.
    (second,) = store.claim_deliveries("p", 1, LEASE, LEASE + timedelta(minutes=1))
    assert (first.delivery.attempts, second.delivery.attempts) == (1, 2)
    stale = DeliveryAttempt(
        task_id, "p", LEASE, DeliveryState.PENDING, LATER, 500, "answered 500", attempts=1
    )
    assert record(store, stale) is None
    live = DeliveryAttempt(task_id, "p", LEASE, DeliveryState.DELIVERED, None, 204, attempts=2)
    done = record(store, live)
    assert done is not None and done.state is DeliveryState.DELIVERED


def test_deliveries_claimed_and_never_attempted_are_handed_back(store: Store) -> None:
    ids = [ended(store) for _ in range(2)]
    store.claim_deliveries("p", 2, SOON, LEASE)
    assert store.release_deliveries("other", ids, SOON) == 0  # not its to hand back
    assert store.release_deliveries("p", ids, SOON) == 2
    again = store.claim_deliveries("q", 2, SOON, LEASE)
    assert sorted(j.delivery.task_id for j in again) == sorted(ids)
    assert {j.delivery.attempts for j in again} == {1}  # the handed-back claim not counted
