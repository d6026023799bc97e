"""The store's schedules, on each backend: create or replace, read, list, delete, trigger."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from api.models import (
    CatchUp,
    FireOutcome,
    NewTask,
    Overlap,
    ScheduleSpec,
)
from api.store import Fire, QueueFull, Store, TaskFilter

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
TASK = {"type": "add", "params": {"x": 1, "y": 2}}


def _spec(**changes: object) -> ScheduleSpec:
    values: dict[str, object] = {
        "cron": "*/5 * * * *",
        "every_seconds": None,
        "timezone": "Europe/Berlin",
        "task": TASK,
    }
    values.update(changes)
    return ScheduleSpec(**values)  # type: ignore[arg-type]


def _task(name: str, at: datetime, owner: str = "") -> NewTask:
    return NewTask(
        str(uuid.uuid4()), "add", {"x": 1, "y": 2}, 3, None, 0, at, at, owner,
        schedule=name, scheduled_for=at,
    )  # fmt: skip


def test_a_schedule_is_created_then_replaced(store: Store) -> None:
    spec = _spec(overlap=Overlap.ALLOW, catch_up=CatchUp.NONE)
    created, was_new = store.put_schedule("", "nightly", spec, T0 + timedelta(minutes=5), T0)
    assert was_new
    assert created.spec == spec
    assert (created.name, created.owner, created.created_at, created.updated_at) == (
        "nightly", "", T0, T0,
    )  # fmt: skip
    assert (created.next_run_at, created.last_run_at, created.last_task_id) == (
        T0 + timedelta(minutes=5), None, None,
    )  # fmt: skip

    later = T0 + timedelta(minutes=1)
    changed = _spec(task={"type": "add", "params": {"x": 5, "y": 5}})
    replaced, was_new = store.put_schedule(
        "", "nightly", changed, later + timedelta(hours=1), later
    )
    assert not was_new
    assert replaced.spec == changed
    assert (replaced.created_at, replaced.updated_at) == (T0, later)
    # The same timing: the next fire time stays as it was.
    assert replaced.next_run_at == T0 + timedelta(minutes=5)
    assert store.schedule("", "nightly") == replaced


def test_a_replace_with_another_timing_takes_its_next_fire_time(store: Store) -> None:
    store.put_schedule("", "s", _spec(), T0 + timedelta(minutes=5), T0)
    for changes in ({"cron": "0 * * * *"}, {"timezone": "UTC"}, {"cron": None, "every_seconds": 9}):
        moved, _ = store.put_schedule("", "s", _spec(**changes), T0 + timedelta(hours=2), T0)
        assert moved.next_run_at == T0 + timedelta(hours=2), changes
        store.put_schedule("", "s", _spec(), T0 + timedelta(minutes=5), T0)


def test_a_paused_schedule_has_no_next_fire_time(store: Store) -> None:
    paused, _ = store.put_schedule("", "s", _spec(paused=True), T0 + timedelta(minutes=5), T0)
    assert paused.next_run_at is None
    assert store.due_schedules(T0 + timedelta(days=1), 10) == []
    assert store.next_schedule_at() is None
    resumed, _ = store.put_schedule("", "s", _spec(), T0 + timedelta(minutes=5), T0)
    assert resumed.next_run_at == T0 + timedelta(minutes=5)
    assert store.next_schedule_at() == T0 + timedelta(minutes=5)


def test_schedules_belong_to_their_owner(store: Store) -> None:
    store.put_schedule("alice", "report", _spec(), T0, T0)
    store.put_schedule("bob", "report", _spec(timezone="UTC"), T0, T0)
    store.put_schedule("bob", "backup", _spec(), T0, T0)
    alice = store.schedule("alice", "report")
    assert alice is not None and alice.spec.timezone == "Europe/Berlin"
    assert store.schedule("alice", "backup") is None
    page, total = store.schedules("bob", offset=0, limit=1)
    assert ([s.name for s in page], total) == (["backup"], 2)
    page, total = store.schedules("bob", offset=1, limit=1)
    assert ([s.name for s in page], total) == (["report"], 2)
    every, total = store.schedules(None, offset=0, limit=10)
    assert ([(s.name, s.owner) for s in every], total) == (
        [("backup", "bob"), ("report", "alice"), ("report", "bob")], 3,
    )  # fmt: skip
    assert store.delete_schedule("alice", "report")
    assert not store.delete_schedule("alice", "report")
    assert store.schedule("bob", "report") is not None


def test_due_schedules_come_earliest_first(store: Store) -> None:
    for minutes, name in ((3, "c"), (1, "a"), (2, "b"), (9, "later")):
        store.put_schedule("", name, _spec(), T0 + timedelta(minutes=minutes), T0)
    due = store.due_schedules(T0 + timedelta(minutes=5), 10)
    assert [s.name for s in due] == ["a", "b", "c"]
    assert [s.name for s in store.due_schedules(T0 + timedelta(minutes=5), 2)] == ["a", "b"]
    assert store.next_schedule_at() == T0 + timedelta(minutes=1)


def test_a_fire_applies_once_and_its_task_names_the_schedule(store: Store) -> None:
    store.put_schedule("alice", "s", _spec(), T0, T0 - timedelta(minutes=5))
    [schedule] = store.due_schedules(T0, 10)
    task = _task("s", T0, "alice")
    fire = Fire("alice", "s", schedule.version, T0, T0 + timedelta(minutes=5), T0, task)
    outcome, made = store.fire_schedule(fire)
    assert outcome is FireOutcome.MADE and made is not None
    assert (made.schedule, made.scheduled_for, made.owner) == ("s", T0, "alice")
    assert store.fire_schedule(fire) == (FireOutcome.TAKEN, None)
    listed, total = store.list(TaskFilter(schedule="s", owner="alice"), offset=0, limit=10, now=T0)
    assert ([t.id for t in listed], total) == ([made.id], 1)
    assert store.list(TaskFilter(schedule="s", owner="bob"), offset=0, limit=10, now=T0)[1] == 0


def test_a_fire_time_made_once_is_never_made_again(store: Store) -> None:
    """Even when the schedule is set back to it (a replace computed on a lagging clock)."""
    store.put_schedule("", "s", _spec(), T0, T0 - timedelta(minutes=5))
    [schedule] = store.due_schedules(T0, 10)
    fire = Fire("", "s", schedule.version, T0, T0 + timedelta(minutes=5), T0, _task("s", T0))
    assert store.fire_schedule(fire)[0] is FireOutcome.MADE
    again, _ = store.put_schedule("", "s", _spec(timezone="UTC"), T0, T0)
    fire = Fire("", "s", again.version, T0, T0 + timedelta(minutes=5), T0, _task("s", T0))
    assert store.fire_schedule(fire) == (FireOutcome.TAKEN, None)
    assert store.list(TaskFilter(schedule="s"), offset=0, limit=10, now=T0)[1] == 1
    moved = store.schedule("", "s")
    assert moved is not None and moved.next_run_at == T0 + timedelta(minutes=5)


def test_a_skip_moves_the_schedule_on_and_makes_nothing(store: Store) -> None:
    store.put_schedule("", "s", _spec(), T0, T0 - timedelta(minutes=5))
    [schedule] = store.due_schedules(T0, 10)
    fire = Fire(
        "", "s", schedule.version, T0, T0 + timedelta(minutes=5), T0, None,
        skip=FireOutcome.MISSED,
    )  # fmt: skip
    assert store.fire_schedule(fire) == (FireOutcome.MISSED, None)
    moved = store.schedule("", "s")
    assert moved is not None
    assert (moved.next_run_at, moved.last_task_id) == (T0 + timedelta(minutes=5), None)


def test_a_trigger_makes_a_task_paused_or_not(store: Store) -> None:
    store.put_schedule("", "s", _spec(paused=True), None, T0)
    made = store.trigger_schedule("", "s", _task("s", T0))
    assert made is not None and made.schedule == "s"
    schedule = store.schedule("", "s")
    assert schedule is not None
    assert (schedule.last_task_id, schedule.last_run_at) == (made.id, T0)
    assert store.trigger_schedule("", "missing", _task("missing", T0)) is None
    assert store.trigger_schedule("bob", "s", _task("s", T0)) is None


def test_a_trigger_on_a_full_queue_makes_nothing(store: Store) -> None:
    store.put_schedule("", "s", _spec(), T0, T0)
    assert store.trigger_schedule("", "s", _task("s", T0), max_queued=1) is not None
    with pytest.raises(QueueFull):
        store.trigger_schedule("", "s", _task("s", T0), max_queued=1)
    assert store.list(TaskFilter(schedule="s"), offset=0, limit=10, now=T0)[1] == 1


def test_deleting_a_schedule_keeps_its_tasks(store: Store) -> None:
    store.put_schedule("", "s", _spec(), T0, T0)
    made = store.trigger_schedule("", "s", _task("s", T0))
    assert made is not None
    assert store.delete_schedule("", "s")
    kept = store.get(made.id, T0)
    assert kept is not None and kept.schedule == "s"


def test_a_fire_makes_its_task_or_says_why_not() -> None:
    with pytest.raises(ValueError, match="not both"):
        Fire("", "s", 1, T0, None, T0, None)  # neither a task nor a skip
    with pytest.raises(ValueError, match="not both"):
        Fire("", "s", 1, T0, None, T0, _task("s", T0), skip=FireOutcome.OVERLAP)
