"""The store contract: what every backend must do, run against each (tests/conftest.py)."""

from __future__ import annotations

import dataclasses
import multiprocessing
import threading
import uuid
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timedelta

import pytest

from api.models import (
    MAX_LOST_ATTEMPTS,
    IdempotencyKey,
    Progress,
    Status,
    TaskError,
)
from api.store import (
    Claim,
    Ending,
    KeyTaken,
    QueueFull,
    Store,
    StoreError,
    TaskFilter,
    open_store,
)
from tests.store.tasks import LATER, T0, claim, finish, new_task, retry


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
    claimed = claim(store, "w", T0, LATER)
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
    running = claim(store, "w", T0, LATER)
    assert running is not None
    store.cancel(queued[3].id, T0, LATER)
    assert counts() == {Status.QUEUED: 2, Status.RUNNING: 1, Status.CANCELLED: 1}
    finish(store, running.id, "w", Status.SUCCEEDED, T0, LATER, result=3)
    failing = claim(store, "w", T0, LATER)
    assert failing is not None
    finish(store, failing.id, "w", Status.FAILED, T0, LATER, error=TaskError("E", "x"))
    store.delete(queued[3].id, T0)
    assert counts() == {Status.QUEUED: 1, Status.SUCCEEDED: 1, Status.FAILED: 1}
    store.purge_expired(LATER, limit=10)
    assert counts() == {Status.QUEUED: 1}


def test_claim_takes_highest_priority_then_earliest_ready(store: Store) -> None:
    low = store.create(new_task(priority=-5))
    first = store.create(new_task(priority=10))
    second = store.create(new_task(priority=10, created=T0 + timedelta(seconds=1)))
    order = [claim(store, "w", T0 + timedelta(seconds=2), LATER) for _ in range(3)]
    assert [t.id for t in order if t] == [first.id, second.id, low.id]
    assert claim(store, "w", T0 + timedelta(seconds=2), LATER) is None


def test_claim_never_takes_a_task_before_run_after(store: Store) -> None:
    delayed = store.create(new_task(delay=60))
    assert claim(store, "w", T0 + timedelta(seconds=59), LATER) is None
    assert store.next_run_after() == delayed.run_after
    claimed = claim(store, "w", T0 + timedelta(seconds=60), LATER)
    assert claimed is not None and claimed.id == delayed.id


def test_claim_marks_running_and_counts_the_attempt(store: Store) -> None:
    task = store.create(new_task())
    claimed = claim(store, "worker-1", T0, LATER)
    assert claimed is not None and claimed.id == task.id
    assert claimed.status is Status.RUNNING
    assert claimed.attempts == 1
    assert claimed.started_at == T0
    assert claimed.worker_id == "worker-1"
    assert store.next_run_after() is None


def _claim_all(url: str, worker_id: str, limit: int) -> list[str]:
    """Claim batches of ``limit`` from the store at ``url`` until none is left; their ids."""
    store = open_store(url)
    ids: list[str] = []
    try:
        while claimed := store.claim_many(worker_id, limit, T0, LATER):
            ids.extend(t.id for t in claimed)
    finally:
        store.close()
    return ids


def test_concurrent_claims_never_hand_one_task_to_two_workers(database_url: str) -> None:
    url = database_url
    store = open_store(url)
    created = {store.create(new_task()).id for _ in range(300)}
    claimed: list[str] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        mine = open_store(url) if n % 2 else store  # other connections and the shared one
        try:
            while tasks := mine.claim_many(f"w{n}", 1 + n % 4, T0, LATER):
                with lock:
                    claimed.extend(t.id for t in tasks)
        finally:
            if mine is not store:
                mine.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    with ProcessPoolExecutor(3, mp_context=multiprocessing.get_context("spawn")) as processes:
        elsewhere = [processes.submit(_claim_all, url, f"p{n}", 3) for n in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for future in elsewhere:
            claimed.extend(future.result())
    assert len(claimed) == 300, "every task claimed once: none lost, none twice"
    assert set(claimed) == created
    store.close()


def test_outcomes_apply_only_to_the_holder_of_a_running_task(store: Store) -> None:
    task = store.create(new_task())
    assert not finish(store, task.id, "w", Status.SUCCEEDED, T0, LATER, result=3), (
        "a queued task cannot succeed"
    )
    claim(store, "w", T0, LATER)
    assert not finish(store, task.id, "other", Status.SUCCEEDED, T0, LATER, result=3)
    assert finish(store, task.id, "w", Status.SUCCEEDED, T0, LATER, result={"sum": 3})
    done = store.get(task.id, T0)
    assert done is not None
    assert (done.status, done.result, done.finished_at, done.expires_at) == (
        Status.SUCCEEDED,
        {"sum": 3},
        T0,
        LATER,
    )
    assert not finish(
        store, task.id, "w", Status.FAILED, T0, LATER, error=TaskError("E", "late")
    ), "terminal is final"
    assert retry(store, task.id, "w", TaskError("E", "late"), T0, T0, LATER) is None
    assert store.get(task.id, T0) == done


def test_claim_many_takes_up_to_its_limit_by_priority_then_readiness_then_submission(
    store: Store,
) -> None:
    first = store.create(new_task())
    second = store.create(new_task())
    low = store.create(new_task(priority=-1))
    high = store.create(new_task(priority=5, created=T0 + timedelta(seconds=1)))
    earlier = store.create(new_task(created=T0 - timedelta(seconds=1)))
    store.create(new_task(delay=60))
    now = T0 + timedelta(seconds=1)
    claimed = store.claim_many("w", 3, now, LATER)
    assert [t.id for t in claimed] == [high.id, earlier.id, first.id]
    assert all((t.status, t.worker_id, t.attempts) == (Status.RUNNING, "w", 1) for t in claimed)
    assert claimed == [store.get(t.id, T0) for t in claimed]
    assert [t.id for t in store.claim_many("w", 10, now, LATER)] == [second.id, low.id]
    assert store.claim_many("w", 10, now, LATER) == [], "the delayed task is not ready yet"
    assert store.claim_many("w", 0, now, LATER) == []


def test_complete_writes_every_ending_then_claims_in_one_go(store: Store) -> None:
    done, failed, again, stopped = (store.create(new_task()) for _ in range(4))
    assert len(store.claim_many("w", 4, T0, LATER)) == 4
    waiting = [store.create(new_task(created=T0 + timedelta(seconds=n))) for n in (1, 2, 3)]
    now = T0 + timedelta(seconds=5)
    boom = TaskError("ValueError", "boom")
    statuses, claimed = store.complete(
        [
            Ending(done.id, "w", Status.SUCCEEDED, now, LATER, {"sum": 3}),
            Ending(failed.id, "w", Status.FAILED, now, LATER, error=boom),
            Ending(again.id, "w", Status.QUEUED, now, LATER, error=boom, run_after=LATER),
            Ending(stopped.id, "w", Status.CANCELLED, now, LATER),
        ],
        claim=Claim("w2", 2, now, LATER),
    )
    assert statuses == [Status.SUCCEEDED, Status.FAILED, Status.QUEUED, Status.CANCELLED]
    assert [t.id for t in claimed] == [waiting[0].id, waiting[1].id]
    assert all(t.worker_id == "w2" for t in claimed)
    after = {t.id: store.get(t.id, T0) for t in (done, failed, again, stopped)}
    assert after[done.id].result == {"sum": 3}  # type: ignore[union-attr]
    assert after[failed.id].error == boom  # type: ignore[union-attr]
    assert after[again.id].run_after == LATER  # type: ignore[union-attr]
    assert after[stopped.id].status is Status.CANCELLED  # type: ignore[union-attr]


def test_an_ending_of_a_task_no_longer_held_changes_nothing_and_spares_the_others(
    store: Store,
) -> None:
    lost, mine, ended = (store.create(new_task()) for _ in range(3))
    claim(store, "w", T0, LATER)
    claim(store, "w", T0, LATER)
    claim(store, "w", T0, LATER)
    assert finish(store, ended.id, "w", Status.SUCCEEDED, T0, LATER, result=1)
    lost_before = store.get(lost.id, T0)
    waiting = store.create(new_task(created=T0 + timedelta(seconds=1)))
    now = T0 + timedelta(seconds=1)
    statuses, claimed = store.complete(
        [
            Ending(lost.id, "other", Status.SUCCEEDED, now, LATER, 3),
            Ending(ended.id, "w", Status.FAILED, now, LATER, error=TaskError("E", "late")),
            Ending(mine.id, "w", Status.SUCCEEDED, now, LATER, 4),
            Ending(lost.id, "other", Status.QUEUED, now, LATER, None, TaskError("E", "x"), now),
        ],
        claim=Claim("w", 5, now, LATER),
    )
    assert statuses == [None, None, Status.SUCCEEDED, None]
    assert store.get(lost.id, T0) == lost_before, "held by w, untouched by other's endings"
    assert store.get(ended.id, T0).status is Status.SUCCEEDED  # type: ignore[union-attr]
    assert store.get(mine.id, T0).result == 4  # type: ignore[union-attr]
    assert [t.id for t in claimed] == [waiting.id]


def test_endings_of_tasks_whose_cancel_was_asked_while_in_a_batch(store: Store) -> None:
    finished, retried = store.create(new_task()), store.create(new_task())
    store.claim_many("w", 2, T0, LATER)
    for task in (finished, retried):
        store.cancel(task.id, T0, LATER)  # running: asked to stop
    statuses, _ = store.complete(
        [
            Ending(finished.id, "w", Status.SUCCEEDED, T0, LATER, 1),
            Ending(retried.id, "w", Status.QUEUED, T0, LATER, None, TaskError("E", "x"), T0),
        ]
    )
    assert statuses == [Status.SUCCEEDED, Status.CANCELLED], "a retry asked to stop ends"
    assert store.claim_many("w", 5, T0, LATER) == [], "a cancelled task is never claimed"


def test_complete_writes_all_of_it_or_nothing(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = store.create(new_task()), store.create(new_task())
    store.claim_many("w", 2, T0, LATER)
    waiting = store.create(new_task(created=T0 + timedelta(seconds=1)))
    before = [store.get(t.id, T0) for t in (first, second, waiting)]

    def crash(*args: object) -> None:
        raise RuntimeError("the process dies between the endings and the claim")

    monkeypatch.setattr(store, "_claim_args", crash)  # after the endings, before the claim
    endings = [Ending(t.id, "w", Status.SUCCEEDED, T0, LATER, 1) for t in (first, second)]
    with pytest.raises(RuntimeError):
        store.complete(endings, claim=Claim("w", 2, T0 + timedelta(seconds=1), LATER))
    assert [store.get(t.id, T0) for t in (first, second, waiting)] == before
    monkeypatch.undo()
    now = T0 + timedelta(seconds=1)
    statuses, claimed = store.complete(endings, claim=Claim("w", 2, now, LATER))
    assert statuses == [Status.SUCCEEDED, Status.SUCCEEDED]
    assert [t.id for t in claimed] == [waiting.id]


def test_retry_requeues_with_the_error_and_a_later_run_after(store: Store) -> None:
    task = store.create(new_task())
    claim(store, "w", T0, LATER)
    again = T0 + timedelta(seconds=2)
    assert retry(store, task.id, "w", TaskError("ValueError", "boom"), again, T0, LATER) == (
        Status.QUEUED
    )
    queued = store.get(task.id, T0)
    assert queued is not None
    assert queued.status is Status.QUEUED
    assert queued.error == TaskError("ValueError", "boom")
    assert queued.run_after == again
    assert claim(store, "w", T0 + timedelta(seconds=1), LATER) is None
    second = claim(store, "w", again, LATER)
    assert second is not None and second.attempts == 2


def test_fail_and_cancelled_outcomes(store: Store) -> None:
    failed = store.create(new_task())
    claim(store, "w", T0, LATER)
    assert finish(store, failed.id, "w", Status.FAILED, T0, LATER, error=TaskError("KeyError", "x"))
    got = store.get(failed.id, T0)
    assert (
        got is not None and got.status is Status.FAILED and got.error == TaskError("KeyError", "x")
    )
    stopped = store.create(new_task())
    claim(store, "w", T0, LATER)
    assert finish(store, stopped.id, "w", Status.CANCELLED, T0, LATER)
    got = store.get(stopped.id, T0)
    assert got is not None and got.status is Status.CANCELLED and got.error is None


def test_progress_is_recorded_and_reports_a_cancel_request(store: Store) -> None:
    task = store.create(new_task())
    claim(store, "w", T0, LATER)
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
    assert claim(store, "w", T0, LATER) is None, "a cancelled task is never claimed"

    running = store.create(new_task())
    claim(store, "w", T0, LATER)
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
    claim(store, "w", T0, LATER)
    assert not store.delete(task.id, T0)
    finish(store, task.id, "w", Status.SUCCEEDED, T0, LATER, result=1)
    assert store.delete(task.id, T0)
    assert store.get(task.id, T0) is None
    assert not store.delete(task.id, T0)


def test_release_hands_a_running_task_back_without_using_its_attempt(store: Store) -> None:
    task = store.create(new_task())
    claim(store, "w", T0, LATER)
    assert store.release(task.id, "other", T0, LATER) is None
    assert store.release(task.id, "w", T0, LATER) is Status.QUEUED
    back = store.get(task.id, T0)
    assert back is not None and back.status is Status.QUEUED and back.attempts == 0
    assert not finish(store, task.id, "w", Status.SUCCEEDED, T0, LATER, result=1), (
        "the old holder lost it"
    )


def test_purge_deletes_expired_terminal_tasks_in_batches(store: Store) -> None:
    for i in range(5):
        task = store.create(new_task())
        claim(store, "w", T0, LATER)
        finish(store, task.id, "w", Status.SUCCEEDED, T0, T0 + timedelta(seconds=i), result=i)
    keep = store.create(new_task())
    assert store.purge_expired(T0 + timedelta(seconds=3), limit=2) == (2, 0)
    assert store.purge_expired(T0 + timedelta(seconds=3), limit=10) == (2, 0)
    remaining, total = store.list(TaskFilter(), offset=0, limit=10, now=T0)
    assert total == 2 and keep.id in {t.id for t in remaining}


def test_an_expired_task_is_gone_for_every_reader_before_the_purge(store: Store) -> None:
    expiry = T0 + timedelta(seconds=10)
    gone = store.create(dataclasses.replace(new_task(), owner="alice"))
    claim(store, "w", T0, LATER)
    finish(store, gone.id, "w", Status.SUCCEEDED, T0, expiry, result=1)
    kept = store.create(dataclasses.replace(new_task(), owner="alice"))
    claim(store, "w", T0, LATER)
    finish(store, kept.id, "w", Status.FAILED, T0, LATER, error=TaskError("E", "x"))
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
    claim(store, "w", T0, T0 + timedelta(seconds=30))
    assert store.heartbeat(task.id, "w", T0 + timedelta(seconds=60)) is False
    assert store.recover_expired(T0 + timedelta(seconds=45), LATER) == [], "renewed"
    assert store.heartbeat(task.id, "other", T0 + timedelta(seconds=90)) is None
    store.cancel(task.id, T0, LATER)
    assert store.heartbeat(task.id, "w", T0 + timedelta(seconds=90)) is True


def test_recovery_requeues_counting_the_lost_attempt(store: Store) -> None:
    task = store.create(new_task())
    claim(store, "dead", T0, T0 + timedelta(seconds=30))
    assert store.recover_expired(T0 + timedelta(seconds=29), LATER) == []
    taken = store.recover_expired(T0 + timedelta(seconds=31), LATER)
    assert [(t.id, t.type, t.status) for t in taken] == [(task.id, "add", Status.QUEUED)]
    back = store.get(task.id, T0)
    assert back is not None and back.status is Status.QUEUED
    assert back.attempts == 1 and back.error is not None and back.error.type == "WorkerLost"
    assert back.lost_attempts == 1, "lost, not failed: max_attempts is not used up"
    assert store.heartbeat(task.id, "dead", LATER) is None, "the lost worker holds nothing"
    assert not finish(store, task.id, "dead", Status.SUCCEEDED, T0, LATER, result=1)
    again = claim(store, "alive", T0 + timedelta(seconds=31), LATER)
    assert again is not None and again.attempts == 2


def test_recovery_requeues_whatever_max_attempts_and_honours_a_cancel(store: Store) -> None:
    only = store.create(dataclasses.replace(new_task(), max_attempts=1))
    claim(store, "dead", T0, T0 + timedelta(seconds=1))
    asked = store.create(new_task())
    claim(store, "dead", T0, T0 + timedelta(seconds=1))
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


def test_ending_the_leases_of_a_dead_process_lets_recovery_take_back_its_tasks_only(
    store: Store,
) -> None:
    dead = store.create(new_task())
    claim(store, "host:41:ab12:1", T0, T0 + timedelta(seconds=30))
    alive = store.create(new_task())
    claim(store, "host:411:cd34:1", T0, T0 + timedelta(seconds=30))  # a longer pid, same start
    soon = T0 + timedelta(seconds=1)
    assert store.end_leases("host:41:", soon) == 1
    assert store.end_leases("host:41:", soon) == 0, "already ended"
    taken = store.recover_expired(soon + timedelta(microseconds=1), LATER)
    assert [(t.id, t.status) for t in taken] == [(dead.id, Status.QUEUED)]
    still = store.get(alive.id, soon)
    assert still is not None and still.status is Status.RUNNING


def lose(store: Store, task_id: str, at: datetime) -> Status:
    """Claim the task for a worker that then dies; what recovery makes of it."""
    claimed = claim(store, "dead", at, at + timedelta(seconds=1))
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
    claim(store, "w", now, LATER)
    assert retry(store, task.id, "w", TaskError("E", "x"), now, now, LATER) is Status.QUEUED
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
    claim(store, "w", T0, LATER)
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
    claim(store, "w", T0, LATER)
    store.cancel(retried.id, T0, LATER)
    assert retry(store, retried.id, "w", TaskError("E", "x"), T0, T0, LATER) is Status.CANCELLED
    handed = store.create(new_task())
    claim(store, "w", T0, LATER)
    store.cancel(handed.id, T0, LATER)
    assert store.release(handed.id, "w", T0, LATER) is Status.CANCELLED
    for task_id in (retried.id, handed.id):
        task = store.get(task_id, T0)
        assert task is not None and task.status is Status.CANCELLED and task.error is None
        assert task.finished_at == T0 and task.expires_at == LATER
    assert claim(store, "w", T0, LATER) is None


def test_cancel_is_not_lost_when_the_task_moves_between_queued_and_running(store: Store) -> None:
    task = store.create(new_task())
    claim(store, "w", T0, LATER)
    retry(store, task.id, "w", TaskError("E", "x"), T0, T0, LATER)  # running -> queued
    after = store.cancel(task.id, T0, LATER)
    assert after is not None and after.ended and after.task.status is Status.CANCELLED
    again = store.create(new_task())
    claim(store, "w", T0, LATER)
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
