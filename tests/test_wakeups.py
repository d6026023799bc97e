"""Wake-ups between processes (api.wakeups): a submit starts a task in another process at once,
and a task's end answers the long-polls of another process at once, on each store.

The fallback polls are set to 30 s here: only a wake-up can make these tests pass in time.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from api.runtime import Runtime
from api.wakeups import Role
from api.wakeups.local import LINE_BYTES, LocalWakeups, directory_for, lines
from tests.conftest import make_app, runtime_of, submit, wait_until

SLOW_POLL = 30


class Heard:
    """A Listener that records what it hears."""

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.ended: list[str] = []
        self.cancels: list[str] = []

    def tasks_ready(self) -> None:
        self.ready.set()

    def tasks_ended(self, task_ids: Iterable[str]) -> None:
        self.ended.extend(task_ids)

    def cancel_asked(self, task_id: str) -> None:
        self.cancels.append(task_id)


def _listening(wakeups: LocalWakeups, roles: set[Role], heard: Heard) -> threading.Event:
    stop = threading.Event()
    threading.Thread(
        target=wakeups.listen, args=(frozenset(roles), heard, stop), daemon=True
    ).start()
    wait_until(lambda: wakeups.directory.exists() and bool(os.listdir(wakeups.directory)))
    return stop


def test_a_pipe_carries_each_message_to_the_processes_that_want_it(tmp_path: Path) -> None:
    directory = directory_for(str(tmp_path / "tasks.sqlite3"))
    workers, readers, sender = Heard(), Heard(), LocalWakeups(directory)
    stops = [
        _listening(LocalWakeups(directory), {Role.WORKERS}, workers),
        _listening(LocalWakeups(directory), {Role.READERS}, readers),
    ]
    wait_until(lambda: len([n for n in os.listdir(directory) if not n.startswith(".")]) == 2)
    try:
        many = [f"{n:08d}-0000-0000-0000-000000000000" for n in range(500)]  # > one line
        assert len(lines(b"E", many)) > 1 and all(len(x) <= LINE_BYTES for x in lines(b"E", many))
        sender.ready()
        sender.ended(many)
        sender.cancel("c-1")
        wait_until(lambda: workers.ready.is_set() and workers.cancels == ["c-1"])
        wait_until(lambda: readers.ended == many)
        assert not readers.ready.is_set() and readers.cancels == []
        assert workers.ended == []
    finally:
        for stop in stops:
            stop.set()
    wait_until(lambda: os.listdir(directory) == [])  # each listener removes its pipe


def test_the_pipe_of_a_process_that_died_is_removed_by_the_next_sender(tmp_path: Path) -> None:
    directory = directory_for(str(tmp_path / "tasks.sqlite3"))
    directory.mkdir(mode=0o700)
    os.mkfifo(directory / "w-999999-dead", 0o600)  # no process reads it
    LocalWakeups(directory).ready()
    assert os.listdir(directory) == []


@contextmanager
def api_and_worker(db_path: Path, database_url: str) -> Iterator[tuple[FlaskClient, Runtime]]:
    """Two apps on one store, as two processes would be: one answers, one works; each with
    its end of the channel listening, and polls only every SLOW_POLL seconds."""
    slow = {"TASKS_DATABASE_URL": database_url, "TASKS_POLL_INTERVAL": SLOW_POLL}
    api_app = make_app(db_path, TASKS_WORKERS=0, **slow)
    api = runtime_of(api_app)
    worker = runtime_of(make_app(db_path, TASKS_WORKERS=1, TASKS_LEASE_SECONDS=600, **slow))
    api.link.start({Role.READERS})
    worker.link.start({Role.WORKERS})
    worker.pool.start()
    try:
        yield api_app.test_client(), api
    finally:
        worker.pool.stop(grace=5)
        for runtime in (api, worker):
            runtime.link.stop()
            runtime.store.close()


def test_a_submit_starts_a_task_in_another_process_and_its_end_answers_the_long_poll(
    db_path: Path, database_url: str
) -> None:
    with api_and_worker(db_path, database_url) as (client, _):
        submit(client, {"type": "add", "params": {"x": 0, "y": 0}})  # both channels are up
        time.sleep(0.5)
        started = time.monotonic()
        answer = client.post(
            "/tasks",
            json={"type": "add", "params": {"x": 1, "y": 2}},
            headers={"Prefer": "wait=20"},
        )
        assert answer.get_json()["status"] == "succeeded", answer.get_json()
        assert time.monotonic() - started < SLOW_POLL / 3, "woken, not polled"

        task = submit(client, {"type": "sleep", "params": {"seconds": 0.3}})
        started = time.monotonic()
        done = client.get(f"/tasks/{task['id']}?wait=20").get_json()
        assert done["status"] == "succeeded"
        assert time.monotonic() - started < SLOW_POLL / 3, "woken, not polled"


def test_a_cancel_reaches_the_task_running_in_another_process(
    db_path: Path, database_url: str
) -> None:
    with api_and_worker(db_path, database_url) as (client, api):
        task = submit(client, {"type": "sleep", "params": {"seconds": 600}})
        wait_until(lambda: api.service.get(task["id"]).status.value == "running")
        started = time.monotonic()
        assert client.post(f"/tasks/{task['id']}/cancel").status_code == 200
        done = client.get(f"/tasks/{task['id']}?wait=20").get_json()
        # The heartbeat that would also carry the cancel comes every lease / 3 = 200 s.
        assert done["status"] == "cancelled", done
        assert time.monotonic() - started < SLOW_POLL / 3


def test_a_planted_link_or_file_is_never_written_to(tmp_path: Path) -> None:
    directory = directory_for(str(tmp_path / "tasks.sqlite3"))
    directory.mkdir(mode=0o700)
    precious = tmp_path / "precious"
    precious.write_bytes(b"keep me")
    (directory / "w-1-link").symlink_to(precious)
    (directory / "w-2-file").write_bytes(b"")
    LocalWakeups(directory).ready()
    assert precious.read_bytes() == b"keep me"
    assert (directory / "w-2-file").read_bytes() == b""


def test_a_directory_others_may_enter_is_not_used(tmp_path: Path) -> None:
    directory = directory_for(str(tmp_path / "tasks.sqlite3"))
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    stop = threading.Event()
    thread = threading.Thread(
        target=LocalWakeups(directory).listen, args=(frozenset({Role.WORKERS}), Heard(), stop)
    )
    thread.start()
    thread.join(5)
    assert not thread.is_alive(), "it gives up at once: the store is polled instead"
    assert os.listdir(directory) == []


def test_a_pipe_made_within_the_same_tick_of_the_directory_clock_is_found_soon(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import api.wakeups.local

    monkeypatch.setattr(api.wakeups.local, "RELIST_SECONDS", 0.2)
    directory = directory_for(str(tmp_path / "tasks.sqlite3"))
    directory.mkdir(mode=0o700)
    sender, workers = LocalWakeups(directory), Heard()
    sender.ready()  # lists the empty directory
    before = os.stat(directory).st_mtime_ns
    stop = _listening(LocalWakeups(directory), {Role.WORKERS}, workers)
    wait_until(lambda: any(not n.startswith(".") for n in os.listdir(directory)))
    os.utime(directory, ns=(before, before))  # as if it had changed within the same tick
    try:
        wait_until(lambda: (sender.ready(), workers.ready.is_set())[1], timeout=5)
    finally:
        stop.set()
