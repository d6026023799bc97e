"""The store contract: what every backend must do, run against each (tests/conftest.py)."""

from __future__ import annotations

import dataclasses
import threading
import uuid
from datetime import datetime, timedelta

import pytest

from api.models import (
    MAX_LOST_ATTEMPTS,
    IdempotencyKey,
    Progress,
    Status,
    TaskError,
)
from api.store import KeyTaken, QueueFull, Store, StoreError, TaskFilter, open_store
from tests.store.tasks import LATER, T0, new_task


def test_create_then_get_round_trips_every_field(store: Store) -> None:
    submitted = new_task(delay=5)
    created = store.create(submitted)
    assert created == store.get(submitted.id, T0)
    assert created.status is Status.QUEUED
    assert created.params == submitted.params
    assert created.run_after == T0 + timedelta(seconds=5)
    assert created.created_at == T0
    assert (created.attempts, created.cancel_requested, created.result) == (0, False, None)


def test_get_unknown_is_none(store: Store) -> None:
    assert store.get(str(uuid.uuid4()), T0) is None


def test_list_is_newest_first_filtered_and_paged(store: Store) -> None:
    ids = [store.create(new_task(type="add" if i % 2 else "sleep")).id for i in range(7)]
    page, total = store.list(TaskFilter(), offset=0, limit=3, now=T0)
    assert total == 7
    assert [t.id for t in page] == ids[::-1][:3]
    page, total = store.list(TaskFilter(), offset=6, limit=3, now=T0)
    assert [t.id for t in page] == [ids[0]]
    adds, total = store.list(TaskFilter(type="add"), offset=0, limit=10, now=T0)
    assert total == 3 and all(t.type == "add" for t in adds)
    claimed = store.claim("w", T0, LATER)
    assert claimed is not None
    running, total = store.list(TaskFilter(statuses=[Status.RUNNING]), offset=0, limit=10, now=T0)
    assert [t.id for t in running] == [claimed.id] and total == 1
    both, total = store.list(
        TaskFilter(statuses=[Status.RUNNING, Status.QUEUED], type="sleep"),
        offset=0,
        limit=10,
        now=T0,
    )
    assert total == 4 and {t.type for t in both} == {"sleep"}
    assert {t.status for t in both} == {Status.RUNNING, Status.QUEUED}


def test_counts_by_status_follow_every_change(store: Store) -> None:
    def counts() -> dict[Status, int]:
        return {s: n for s, n in store.count_by_status(T0).items() if n}

    assert set(store.count_by_status(T0)) == set(Status)
    assert counts() == {}
    queued = [store.create(new_task()) for _ in range(4)]
    assert counts() == {Status.QUEUED: 4}
    running = store.claim("w", T0, LATER)
    assert running is not None
    store.cancel(queued[3].id, T0, LATER)
    assert counts() == {Status.QUEUED: 2, Status.RUNNING: 1, Status.CANCELLED: 1}
    store.finish(running.id, "w", Status.SUCCEEDED, T0, LATER, result=3)
    failing = store.claim("w", T0, LATER)
    assert failing is not None
    store.finish(failing.id, "w", Status.FAILED, T0, LATER, error=TaskError("E", "x"))
    store.delete(queued[3].id, T0)
    assert counts() == {Status.QUEUED: 1, Status.SUCCEEDED: 1, Status.FAILED: 1}
    store.purge_expired(LATER, limit=10)
    assert counts() == {Status.QUEUED: 1}


def test_claim_takes_highest_priority_then_earliest_ready(store: Store) -> None:
    low = store.create(new_task(priority=-5))
    first = store.create(new_task(priority=10))
    second = store.create(new_task(priority=10, created=T0 + timedelta(seconds=1)))
    order = [store.claim("w", T0 + timedelta(seconds=2), LATER) for _ in range(3)]
    assert [t.id for t in order if t] == [first.id, second.id, low.id]
    assert store.claim("w", T0 + timedelta(seconds=2), LATER) is None


def test_claim_never_takes_a_task_before_run_after(store: Store) -> None:
    delayed = store.create(new_task(delay=60))
    assert store.claim("w", T0 + timedelta(seconds=59), LATER) is None
    assert store.next_run_after() == delayed.run_after
    claimed = store.claim("w", T0 + timedelta(seconds=60), LATER)
    assert claimed is not None and claimed.id == delayed.id


def test_claim_marks_running_and_counts_the_attempt(store: Store) -> None:
    task = store.create(new_task())
    claimed = store.claim("worker-1", T0, LATER)
    assert claimed is not None and claimed.id == task.id
    assert claimed.status is Status.RUNNING
    assert claimed.attempts == 1
    assert claimed.started_at == T0
    assert claimed.worker_id == "worker-1"
    assert store.next_run_after() is None


def test_concurrent_claims_never_hand_one_task_to_two_workers(database_url: str) -> None:
    url = database_url
    store = open_store(url)
    for _ in range(200):
        store.create(new_task())
    claimed: list[str] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        mine = open_store(url) if n % 2 else store  # other connections and the shared one
        while (task := mine.claim(f"w{n}", T0, LATER)) is not None:
            with lock:
                claimed.append(task.id)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(claimed) == 200
    assert len(set(claimed)) == 200
    store.close()


def test_outcomes_apply_only_to_the_holder_of_a_running_task(store: Store) -> None:
    task = store.create(new_task())
    assert not store.finish(task.id, "w", Status.SUCCEEDED, T0, LATER, result=3), (
        "a queued task cannot succeed"
    )
    store.claim("w", T0, LATER)
    assert not store.finish(task.id, "other", Status.SUCCEEDED, T0, LATER, result=3)
    assert store.finish(task.id, "w", Status.SUCCEEDED, T0, LATER, result={"sum": 3})
    done = store.get(task.id, T0)
    assert done is not None
    assert (done.status, done.result, done.finished_at, done.expires_at) == (
        Status.SUCCEEDED,
        {"sum": 3},
        T0,
        LATER,
    )
    assert not store.finish(task.id, "w", Status.FAILED, T0, LATER, error=TaskError("E", "late")), (
        "terminal is final"
    )
    assert store.retry(task.id, "w", TaskError("E", "late"), T0, T0, LATER) is None
    assert store.get(task.id, T0) == done


def test_succeed_and_claim_records_the_success_and_takes_the_next_ready_task(
    store: Store,
) -> None:
    first = store.create(new_task())
    low = store.create(new_task(priority=-1))
    high = store.create(new_task(priority=5, created=T0 + timedelta(seconds=1)))
    later = store.create(new_task(delay=60))
    assert store.claim("w", T0 + timedelta(seconds=1), LATER) == store.get(high.id, T0)
    now = T0 + timedelta(seconds=2)
    done, claimed = store.succeed_and_claim(high.id, "w", 8, now, LATER, LATER)
    assert done and store.get(high.id, T0).status is Status.SUCCEEDED  # type: ignore[union-attr]
    assert claimed is not None and claimed.id == first.id
    assert (claimed.status, claimed.worker_id, claimed.attempts) == (Status.RUNNING, "w", 1)
    assert claimed == store.get(first.id, T0)
    done, claimed = store.succeed_and_claim(first.id, "w", 1, now, LATER, LATER)
    assert done and claimed is not None and claimed.id == low.id
    done, claimed = store.succeed_and_claim(low.id, "w", 1, now, LATER, LATER)
    assert done and claimed is None, "the delayed task is not ready yet"
    assert store.get(later.id, T0).status is Status.QUEUED  # type: ignore[union-attr]


def test_succeed_and_claim_by_a_worker_that_lost_its_task_records_nothing(store: Store) -> None:
    lost = store.create(new_task())
    store.claim("w", T0, LATER)
    waiting = store.create(new_task(created=T0 + timedelta(seconds=1)))
    now = T0 + timedelta(seconds=1)
    done, claimed = store.succeed_and_claim(lost.id, "other", 3, now, LATER, LATER)
    assert not done and store.get(lost.id, T0).status is Status.RUNNING  # type: ignore[union-attr]
    assert claimed is not None and claimed.id == waiting.id and claimed.worker_id == "other"


def test_retry_requeues_with_the_error_and_a_later_run_after(store: Store) -> None:
    task = store.create(new_task())
    store.claim("w", T0, LATER)
    again = T0 + timedelta(seconds=2)
    assert store.retry(task.id, "w", TaskError("ValueError", "boom"), again, T0, LATER) == (
        Status.QUEUED
    )
    queued = store.get(task.id, T0)
    assert queued is not None
    assert queued.status is Status.QUEUED
    assert queued.error == TaskError("ValueError", "boom")
    assert queued.run_after == again
    assert store.claim("w", T0 + timedelta(seconds=1), LATER) is None
    second = store.claim("w", again, LATER)
    assert second is not None and second.attempts == 2


def test_fail_and_cancelled_outcomes(store: Store) -> None:
    failed = store.create(new_task())
    store.claim("w", T0, LATER)
    assert store.finish(failed.id, "w", Status.FAILED, T0, LATER, error=TaskError("KeyError", "x"))
    got = store.get(failed.id, T0)
    assert (
        got is not None and got.status is Status.FAILED and got.error == TaskError("KeyError", "x")
    )
    stopped = store.create(new_task())
    store.claim("w", T0, LATER)
    assert store.finish(stopped.id, "w", Status.CANCELLED, T0, LATER)
    got = store.get(stopped.id, T0)
    assert got is not None and got.status is Status.CANCELLED and got.error is None


def test_progress_is_recorded_and_reports_a_cancel_request(store: Store) -> None:
    task = store.create(new_task())
    store.claim("w", T0, LATER)
    assert store.report_progress(task.id, "w", Progress(1, 4, "one")) is False
    got = store.get(task.id, T0)
    assert got is not None and got.progress == Progress(1, 4, "one")
    store.cancel(task.id, T0, LATER)
    assert store.report_progress(task.id, "w", Progress(2, 4, None)) is True
    assert store.report_progress(task.id, "someone-else", Progress(3)) is None


def test_cancel_queued_is_immediate_running_is_a_request_terminal_unchanged(
    store: Store,
) -> None:
    queued = store.create(new_task())
    outcome = store.cancel(queued.id, T0, LATER)
    assert outcome is not None and outcome.ended
    cancelled = outcome.task
    assert cancelled.status is Status.CANCELLED
    assert cancelled.finished_at == T0 and cancelled.expires_at == LATER
    assert store.claim("w", T0, LATER) is None, "a cancelled task is never claimed"

    running = store.create(new_task())
    store.claim("w", T0, LATER)
    asked = store.cancel(running.id, T0, LATER)
    assert asked is not None and not asked.ended
    assert asked.task.status is Status.RUNNING and asked.task.cancel_requested
    assert store.heartbeat(running.id, "w", LATER) is True, "the worker hears of it"

    again = store.cancel(queued.id, T0 + timedelta(hours=1), LATER)
    assert again is not None and again.task == cancelled
    assert not again.ended, "a second cancel did not end it: the first one did"
    assert store.cancel(str(uuid.uuid4()), T0, LATER) is None


def test_delete_only_terminal_tasks(store: Store) -> None:
    task = store.create(new_task())
    assert not store.delete(task.id, T0)
    store.claim("w", T0, LATER)
    assert not store.delete(task.id, T0)
    store.finish(task.id, "w", Status.SUCCEEDED, T0, LATER, result=1)
    assert store.delete(task.id, T0)
    assert store.get(task.id, T0) is None
    assert not store.delete(task.id, T0)


def test_release_hands_a_running_task_back_without_using_its_attempt(store: Store) -> None:
    task = store.create(new_task())
    store.claim("w", T0, LATER)
    assert store.release(task.id, "other", T0, LATER) is None
    assert store.release(task.id, "w", T0, LATER) is Status.QUEUED
    back = store.get(task.id, T0)
    assert back is not None and back.status is Status.QUEUED and back.attempts == 0
    assert not store.finish(task.id, "w", Status.SUCCEEDED, T0, LATER, result=1), (
        "the old holder lost it"
    )


def test_purge_deletes_expired_terminal_tasks_in_batches(store: Store) -> None:
    for i in range(5):
        task = store.create(new_task())
        store.claim("w", T0, LATER)
        store.finish(task.id, "w", Status.SUCCEEDED, T0, T0 + timedelta(seconds=i), result=i)
    keep = store.create(new_task())
    assert store.purge_expired(T0 + timedelta(seconds=3), limit=2) == (2, 0)
    assert store.purge_expired(T0 + timedelta(seconds=3), limit=10) == (2, 0)
    remaining, total = store.list(TaskFilter(), offset=0, limit=10, now=T0)
    assert total == 2 and keep.id in {t.id for t in remaining}


def test_an_expired_task_is_gone_for_every_reader_before_the_purge(store: Store) -> None:
    expiry = T0 + timedelta(seconds=10)
    gone = store.create(dataclasses.replace(new_task(), owner="alice"))
    store.claim("w", T0, LATER)
    store.finish(gone.id, "w", Status.SUCCEEDED, T0, expiry, result=1)
    kept = store.create(dataclasses.replace(new_task(), owner="alice"))
    store.claim("w", T0, LATER)
    store.finish(kept.id, "w", Status.FAILED, T0, LATER, error=TaskError("E", "x"))
    queued = store.create(dataclasses.replace(new_task(), owner="alice"))
    before, at = expiry - timedelta(microseconds=1), expiry

    assert store.get(gone.id, before) is not None
    assert store.get(gone.id, at) is None, "expires_at is the end"
    for where in (TaskFilter(), TaskFilter(owner="alice"), TaskFilter(type="add")):
        shown, total = store.list(where, offset=0, limit=10, now=at)
        assert [t.id for t in shown] == [queued.id, kept.id] and total == 2, where
    ended, total = store.list(
        TaskFilter(statuses=[Status.SUCCEEDED, Status.FAILED]), offset=0, limit=10, now=at
    )
    assert [t.id for t in ended] == [kept.id] and total == 1
    assert store.list(TaskFilter(), offset=0, limit=10, now=before)[1] == 3
    counts = store.count_by_status(at)
    assert (counts[Status.SUCCEEDED], counts[Status.FAILED], counts[Status.QUEUED]) == (0, 1, 1)
    assert store.count_by_status(before)[Status.SUCCEEDED] == 1
    assert store.cancel(gone.id, at, LATER) is None
    assert not store.delete(gone.id, at)
    assert store.purge_expired(at, limit=10) == (1, 0), "the row was still there until now"
    assert store.count_by_status(at)[Status.SUCCEEDED] == 0


def test_ping_answers(store: Store) -> None:
    store.ping()


@pytest.mark.parametrize(
    "url", ["sqlite:///:memory:", "sqlite://", "mysql://localhost/x", "tasks.db"]
)
def test_bad_urls_are_refused_with_a_clear_error(url: str) -> None:
    with pytest.raises(StoreError, match="TASKS_DATABASE_URL"):
        open_store(url)


def test_heartbeat_renews_the_lease_of_its_holder_only(store: Store) -> None:
    task = store.create(new_task())
    store.claim("w", T0, T0 + timedelta(seconds=30))
    assert store.heartbeat(task.id, "w", T0 + timedelta(seconds=60)) is False
    assert store.recover_expired(T0 + timedelta(seconds=45), LATER) == [], "renewed"
    assert store.heartbeat(task.id, "other", T0 + timedelta(seconds=90)) is None
    store.cancel(task.id, T0, LATER)
    assert store.heartbeat(task.id, "w", T0 + timedelta(seconds=90)) is True


def test_recovery_requeues_counting_the_lost_attempt(store: Store) -> None:
    task = store.create(new_task())
    store.claim("dead", T0, T0 + timedelta(seconds=30))
    assert store.recover_expired(T0 + timedelta(seconds=29), LATER) == []
    taken = store.recover_expired(T0 + timedelta(seconds=31), LATER)
    assert [(t.id, t.type, t.status) for t in taken] == [(task.id, "add", Status.QUEUED)]
    back = store.get(task.id, T0)
    assert back is not None and back.status is Status.QUEUED
    assert back.attempts == 1 and back.error is not None and back.error.type == "WorkerLost"
    assert back.lost_attempts == 1, "lost, not failed: max_attempts is not used up"
    assert store.heartbeat(task.id, "dead", LATER) is None, "the lost worker holds nothing"
    assert not store.finish(task.id, "dead", Status.SUCCEEDED, T0, LATER, result=1)
    again = store.claim("alive", T0 + timedelta(seconds=31), LATER)
    assert again is not None and again.attempts == 2


def test_recovery_requeues_whatever_max_attempts_and_honours_a_cancel(store: Store) -> None:
    only = store.create(dataclasses.replace(new_task(), max_attempts=1))
    store.claim("dead", T0, T0 + timedelta(seconds=1))
    asked = store.create(new_task())
    store.claim("dead", T0, T0 + timedelta(seconds=1))
    store.cancel(asked.id, T0, LATER)
    taken = store.recover_expired(T0 + timedelta(seconds=5), LATER)
    assert {(t.id, t.status) for t in taken} == {
        (only.id, Status.QUEUED),
        (asked.id, Status.CANCELLED),
    }
    back, cancelled = store.get(only.id, T0), store.get(asked.id, T0)
    assert back is not None and back.status is Status.QUEUED
    assert (back.attempts, back.lost_attempts, back.failed_attempts) == (1, 1, 0)
    assert cancelled is not None and cancelled.status is Status.CANCELLED
    assert cancelled.error is None


def lose(store: Store, task_id: str, at: datetime) -> Status:
    """Claim the task for a worker that then dies; what recovery makes of it."""
    claimed = store.claim("dead", at, at + timedelta(seconds=1))
    assert claimed is not None and claimed.id == task_id
    (taken,) = store.recover_expired(at + timedelta(seconds=5), LATER)
    return taken.status


def test_a_task_that_loses_its_worker_three_times_in_a_row_fails(store: Store) -> None:
    task = store.create(dataclasses.replace(new_task(), max_attempts=1))
    statuses = [lose(store, task.id, T0 + timedelta(minutes=n)) for n in range(MAX_LOST_ATTEMPTS)]
    assert statuses == [Status.QUEUED] * (MAX_LOST_ATTEMPTS - 1) + [Status.FAILED]
    failed = store.get(task.id, T0)
    assert failed is not None and failed.status is Status.FAILED
    assert failed.error is not None and failed.error.type == "WorkerLost"
    assert f"{MAX_LOST_ATTEMPTS} times in a row" in failed.error.message
    assert failed.attempts == MAX_LOST_ATTEMPTS
    assert failed.finished_at is not None and failed.expires_at == LATER


def test_a_failed_attempt_ends_the_run_of_lost_attempts(store: Store) -> None:
    task = store.create(new_task())
    at = iter(T0 + timedelta(minutes=n) for n in range(100))
    for _ in range(MAX_LOST_ATTEMPTS - 1):
        assert lose(store, task.id, next(at)) is Status.QUEUED
    now = next(at)
    store.claim("w", now, LATER)
    assert store.retry(task.id, "w", TaskError("E", "x"), now, now, LATER) is Status.QUEUED
    for _ in range(MAX_LOST_ATTEMPTS - 1):
        assert lose(store, task.id, next(at)) is Status.QUEUED
    back = store.get(task.id, T0)
    assert back is not None
    assert (back.attempts, back.lost_attempts, back.failed_attempts) == (5, 4, 1)
    assert lose(store, task.id, next(at)) is Status.FAILED


def test_create_refuses_past_the_queue_limit_creating_nothing(store: Store) -> None:
    for _ in range(3):
        store.create(new_task(), max_queued=3)
    with pytest.raises(QueueFull):
        store.create(new_task(), max_queued=3)
    assert store.list(TaskFilter(), offset=0, limit=10, now=T0)[1] == 3
    store.claim("w", T0, LATER)
    store.create(new_task(), max_queued=3)  # a running task no longer counts as queued


def test_an_idempotency_key_is_taken_once_per_owner_until_it_expires(store: Store) -> None:
    def key(owner: str, fingerprint: str = "f1") -> IdempotencyKey:
        return IdempotencyKey(owner, "k", fingerprint, T0 + timedelta(hours=24), T0)

    first = store.create(new_task(), idempotency=key("alice"))
    with pytest.raises(KeyTaken) as taken:
        store.create(new_task(), idempotency=key("alice", "f2"))
    assert (taken.value.task_id, taken.value.fingerprint) == (first.id, "f1")
    store.create(new_task(), idempotency=key("bob"))
    assert store.list(TaskFilter(), offset=0, limit=10, now=T0)[1] == 2, (
        "the refused one left nothing"
    )
    later = new_task(created=T0 + timedelta(hours=25))
    assert store.create(later, idempotency=key("alice")).id == later.id, "an expired key is free"


def test_purge_also_drops_expired_idempotency_keys(store: Store) -> None:
    keys = [IdempotencyKey("alice", f"k{n}", "f", T0 + timedelta(hours=24), T0) for n in range(5)]
    for key in keys:
        store.create(new_task(), idempotency=key)
    assert store.purge_expired(T0 + timedelta(hours=24), limit=3) == (0, 3)
    assert store.purge_expired(T0 + timedelta(hours=24), limit=3) == (0, 2)
    store.create(new_task(), idempotency=keys[0])  # would raise KeyTaken if the key were kept


def test_a_key_is_in_flight_until_settled_or_its_window_ends(store: Store) -> None:
    key = IdempotencyKey("alice", "k", "f", LATER, T0 + timedelta(seconds=90))
    first = store.create(new_task(), idempotency=key)
    with pytest.raises(KeyTaken) as taken:
        store.create(new_task(created=T0 + timedelta(seconds=1)), idempotency=key)
    assert taken.value.in_flight and taken.value.task_id == first.id
    with pytest.raises(KeyTaken) as taken:
        store.create(new_task(created=T0 + timedelta(seconds=91)), idempotency=key)
    assert not taken.value.in_flight, "a request that died with its process frees the key"
    store.settle_key("alice", "k")
    with pytest.raises(KeyTaken) as taken:
        store.create(new_task(created=T0 + timedelta(seconds=1)), idempotency=key)
    assert not taken.value.in_flight


def test_a_cancel_asked_during_an_attempt_wins_over_its_retry_and_hand_back(store: Store) -> None:
    retried = store.create(new_task())
    store.claim("w", T0, LATER)
    store.cancel(retried.id, T0, LATER)
    assert store.retry(retried.id, "w", TaskError("E", "x"), T0, T0, LATER) is Status.CANCELLED
    handed = store.create(new_task())
    store.claim("w", T0, LATER)
    store.cancel(handed.id, T0, LATER)
    assert store.release(handed.id, "w", T0, LATER) is Status.CANCELLED
    for task_id in (retried.id, handed.id):
        task = store.get(task_id, T0)
        assert task is not None and task.status is Status.CANCELLED and task.error is None
        assert task.finished_at == T0 and task.expires_at == LATER
    assert store.claim("w", T0, LATER) is None


def test_cancel_is_not_lost_when_the_task_moves_between_queued_and_running(store: Store) -> None:
    task = store.create(new_task())
    store.claim("w", T0, LATER)
    store.retry(task.id, "w", TaskError("E", "x"), T0, T0, LATER)  # running -> queued
    after = store.cancel(task.id, T0, LATER)
    assert after is not None and after.ended and after.task.status is Status.CANCELLED
    again = store.create(new_task())
    store.claim("w", T0, LATER)
    asked = store.cancel(again.id, T0, LATER)
    assert asked is not None and asked.task.status is Status.RUNNING
    assert asked.task.cancel_requested
    unchanged = store.cancel(again.id, T0, LATER)
    assert unchanged is not None and unchanged.task.version == asked.task.version, (
        "asked once is enough"
    )


def test_concurrent_submits_with_one_key_make_one_task(database_url: str) -> None:
    stores = [open_store(database_url) for _ in range(2)]
    for round_ in range(15):
        key = IdempotencyKey("alice", f"k{round_}", "f", LATER, T0 + timedelta(seconds=90))
        outcomes: list[str] = []
        barrier = threading.Barrier(8)

        def submit(
            n: int,
            key: IdempotencyKey = key,
            outcomes: list[str] = outcomes,
            barrier: threading.Barrier = barrier,
        ) -> None:
            barrier.wait()
            try:
                stores[n % 2].create(new_task(), idempotency=key)
                outcomes.append("created")
            except KeyTaken:
                outcomes.append("taken")

        threads = [threading.Thread(target=submit, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert outcomes.count("created") == 1, (round_, outcomes)
    assert stores[0].list(TaskFilter(), offset=0, limit=100, now=T0)[1] == 15
    for s in stores:
        s.close()


def test_the_queue_limit_holds_under_concurrent_submits(database_url: str) -> None:
    stores = [open_store(database_url) for _ in range(4)]
    barrier = threading.Barrier(16)
    created: list[bool] = []

    def submit(n: int) -> None:
        barrier.wait()
        try:
            stores[n % 4].create(new_task(), max_queued=5)
            created.append(True)
        except QueueFull:
            created.append(False)

    threads = [threading.Thread(target=submit, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert created.count(True) == 5
    assert stores[0].list(TaskFilter(), offset=0, limit=100, now=T0)[1] == 5
    for s in stores:
        s.close()
