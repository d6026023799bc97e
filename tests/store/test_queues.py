"""The store's queues: what every backend must do with them, run against each."""

from __future__ import annotations

import multiprocessing
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from datetime import timedelta

from api.models import Status
from api.store import Store, TaskFilter, open_store
from tests.store.tasks import LATER, T0, finish, new_task

SOON = T0 + timedelta(seconds=1)


def _claim(store: Store, limit: int, queues: list[str] | None = None) -> list[str]:
    """The queues of the tasks one claim of ``limit`` takes, in claim order."""
    return [t.queue for t in store.claim_many("w", limit, SOON, LATER, queues=queues)]


def test_a_task_keeps_its_queue_and_lists_filter_by_it(store: Store) -> None:
    email = store.create(new_task(queue="emails"))
    store.create(new_task())
    assert email.queue == "emails"
    got = store.get(email.id, T0)
    assert got is not None and got.queue == "emails"
    page, total = store.list(TaskFilter(queue="emails"), offset=0, limit=10, now=T0)
    assert total == 1 and [t.id for t in page] == [email.id]


def test_queues_lists_default_always_and_every_queue_with_tasks_or_settings(
    store: Store,
) -> None:
    assert [q.name for q in store.queues(T0)] == ["default"]
    assert store.queue("reports", T0) is None
    store.create(new_task(queue="emails", delay=-30))
    store.create(new_task(queue="emails"))
    store.update_queue("reports", {"paused": True})
    states = {q.name: q for q in store.queues(SOON)}
    assert list(states) == ["default", "emails", "reports"]
    emails = states["emails"]
    assert emails.counts[Status.QUEUED] == 2 and emails.counts[Status.RUNNING] == 0
    assert emails.oldest_ready_at == T0 - timedelta(seconds=30)
    assert (emails.paused, emails.concurrency) == (False, None)
    reports = store.queue("reports", SOON)
    assert reports is not None and reports.paused and reports.oldest_ready_at is None
    assert sum(reports.counts.values()) == 0


def test_oldest_ready_is_none_while_every_queued_task_waits_for_later(store: Store) -> None:
    store.create(new_task(queue="later", delay=60))
    later = store.queue("later", SOON)
    assert later is not None and later.oldest_ready_at is None
    assert later.counts[Status.QUEUED] == 1


def test_update_changes_only_the_settings_given(store: Store) -> None:
    store.update_queue("emails", {"concurrency": 2})
    store.update_queue("emails", {"paused": True})
    emails = store.queue("emails", T0)
    assert emails is not None and (emails.paused, emails.concurrency) == (True, 2)
    store.update_queue("emails", {"concurrency": None})
    store.update_queue("emails", {})
    emails = store.queue("emails", T0)
    assert emails is not None and (emails.paused, emails.concurrency) == (True, None)


def test_a_paused_queue_gives_no_task_until_resumed(store: Store) -> None:
    store.create(new_task(queue="reports"))
    store.create(new_task(queue="reports", delay=0.5))
    store.update_queue("reports", {"paused": True})
    assert _claim(store, 10) == []
    assert store.next_run_after(SOON) is None, "a paused queue's tasks are nobody's to wait for"
    store.update_queue("reports", {"paused": False})
    assert _claim(store, 10) == ["reports", "reports"]


def test_a_concurrency_caps_the_running_tasks_of_its_queue(store: Store) -> None:
    store.update_queue("emails", {"concurrency": 2})
    for _ in range(5):
        store.create(new_task(queue="emails"))
    store.create(new_task(queue="other"))
    first = store.claim_many("w", 10, SOON, LATER)
    assert sorted(t.queue for t in first) == ["emails", "emails", "other"]
    assert _claim(store, 10) == [], "no room left in emails"
    done = next(t for t in first if t.queue == "emails")
    assert finish(store, done.id, "w", Status.SUCCEEDED, SOON, LATER)
    assert _claim(store, 10) == ["emails"], "one ended: room for one"
    store.update_queue("emails", {"concurrency": 4})
    assert _claim(store, 10) == ["emails", "emails"]


def test_a_claim_takes_only_the_queues_asked_for(store: Store) -> None:
    store.create(new_task(queue="emails"))
    store.create(new_task(queue="reports"))
    store.create(new_task())
    assert _claim(store, 10, ["reports"]) == ["reports"]
    assert _claim(store, 10, ["reports", "nothing"]) == []
    assert sorted(_claim(store, 10, ["default", "emails"])) == ["default", "emails"]


def test_priority_goes_first_then_the_queues_take_turns(store: Store) -> None:
    for n in range(6):  # a backlog in busy, submitted first
        store.create(new_task(queue="busy", created=T0 + timedelta(milliseconds=n)))
    store.create(new_task(queue="quiet", created=T0 + timedelta(milliseconds=10)))
    store.create(new_task(queue="quiet", created=T0 + timedelta(milliseconds=11)))
    store.create(new_task(queue="late", priority=5, created=T0 + timedelta(milliseconds=12)))
    taken = store.claim_many("w", 5, SOON, LATER)
    assert taken[0].queue == "late", "a higher priority first, whatever its queue"
    assert Counter(t.queue for t in taken[1:]) == {"busy": 2, "quiet": 2}


def test_next_run_after_looks_only_at_what_a_claim_could_take(store: Store) -> None:
    store.create(new_task(queue="emails", delay=30))
    store.create(new_task(queue="reports", delay=10))
    assert store.next_run_after(SOON) == T0 + timedelta(seconds=10)
    assert store.next_run_after(SOON, queues=["emails"]) == T0 + timedelta(seconds=30)
    store.update_queue("reports", {"paused": True})
    assert store.next_run_after(SOON) == T0 + timedelta(seconds=30)


def _claim_and_hold(url: str, worker: str, rounds: int) -> list[int]:
    """Claim from the limited queue ``rounds`` times, each claim ending what it took the
    previous time; the running count seen right after each claim."""
    store = open_store(url)
    held: list[str] = []
    seen: list[int] = []
    try:
        for _ in range(rounds):
            for task_id in held:
                finish(store, task_id, worker, Status.SUCCEEDED, SOON, LATER)
            held = [t.id for t in store.claim_many(worker, 4, SOON, LATER)]
            emails = store.queue("emails", SOON)
            assert emails is not None
            seen.append(emails.counts[Status.RUNNING])
            time.sleep(0.001)
    finally:
        store.close()
    return seen


def test_a_concurrency_holds_for_claims_of_several_processes_at_once(
    store: Store, database_url: str
) -> None:
    store.update_queue("emails", {"concurrency": 2})
    for _ in range(300):
        store.create(new_task(queue="emails"))
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(3, mp_context=context) as pool:
        runs = [pool.submit(_claim_and_hold, database_url, f"w{n}", 40) for n in range(3)]
        seen = [count for run in runs for count in run.result(timeout=120)]
    assert max(seen) <= 2, seen
    assert 2 in seen, "the limit was reached, not only respected"


def test_counts_are_integers(store: Store) -> None:
    store.create(new_task(queue="emails"))
    emails = store.queue("emails", SOON)
    assert emails is not None
    assert all(type(n) is int for n in emails.counts.values()), emails.counts


def test_a_claim_over_hundreds_of_queues_takes_the_first_in_claim_order(store: Store) -> None:
    # A client names queues: 600 of them must not make a claim fail (SQLite's compound
    # SELECT takes at most 500 parts) nor change which tasks it takes.
    for n in range(600):
        store.create(new_task(queue=f"q{n:03}", created=T0 + timedelta(milliseconds=n)))
    urgent = store.create(new_task(queue="q599", priority=9, created=T0 + timedelta(seconds=1)))
    taken = store.claim_many("w", 32, SOON + timedelta(seconds=1), LATER)
    assert taken[0].id == urgent.id
    assert [t.queue for t in taken[1:]] == [f"q{n:03}" for n in range(31)]


def test_a_limit_set_between_the_lock_and_the_claim_gives_no_room(database_url: str) -> None:
    """PostgreSQL: a claim takes the locks of the limited queues, then claims; a queue limited
    in between (its lock not taken) gives the claim nothing rather than an unguarded count."""
    if not database_url.startswith("postgresql"):
        return  # SQLite's claim is one transaction with the write lock: nothing in between
    import psycopg
    from psycopg.rows import dict_row

    from api.store.postgres import QUERIES

    store = open_store(database_url)
    try:
        store.create(new_task(queue="c"))
        store.create(new_task(queue="c"))
        with psycopg.connect(database_url, row_factory=dict_row) as conn:
            args = {"queues": None, "now": SOON}
            conn.execute(QUERIES["lock_limited_queues"], args)  # opens a transaction
            store.update_queue("c", {"concurrency": 1})  # committed meanwhile
            claim = {"now": SOON, "worker_id": "a", "lease_until": LATER, "limit": 4, **args}
            assert conn.execute(QUERIES["claim"], claim).fetchall() == []
            conn.rollback()
        assert _claim(store, 4) == ["c"], "the next claim, with the lock, takes its room"
    finally:
        store.close()
