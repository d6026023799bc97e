"""Starting and stopping ``taskapi serve`` and ``taskapi worker``, as a newcomer meets them.

Stopping: what they say while they wait for running tasks, and the second Ctrl-C (or SIGTERM)
that ends the wait. Starting: a port in use, two servers on one machine, the startup warning.
Real processes; a Ctrl-C is a SIGINT to the whole process group, as a terminal sends it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_app, runtime_of, submit
from tests.processes import (
    TASKAPI,
    Server,
    default_sigint,
    free_port,
    start_server,
    start_worker,
    wait_output,
)

ROOT = Path(__file__).resolve().parent.parent
#: Long enough that a stop which waited it out would fail the test's wait for the exit.
GRACE = "120"
EXIT_WAIT_SECONDS = 30
WAITING = "waiting up to 120 s for 1 running task to finish; press Ctrl-C again"

pytestmark = pytest.mark.slow


def _wait_status(read: Any, task_id: str, status: str, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        task: dict[str, Any] = read(task_id)
        if task["status"] == status or time.monotonic() > deadline:
            return task
        time.sleep(0.05)


def _server_task(server: Server) -> Any:
    return lambda task_id: server.request("GET", f"/tasks/{task_id}")[1]


def _assert_handed_back(db: Path, tmp_path: Path, task_id: str) -> None:
    """Started again on the same file (without workers), the task waits, its attempt unused."""
    again = start_server(db, tmp_path, TASKS_WORKERS="0")
    try:
        status, task = again.request("GET", f"/tasks/{task_id}")
        assert status == 200
        assert (task["status"], task["attempts"]) == ("queued", 0), task
    finally:
        again.stop()


def test_ctrl_c_on_serve_says_what_it_waits_for_and_a_second_hands_tasks_back(
    tmp_path: Path,
) -> None:
    db = tmp_path / "tasks.sqlite3"
    server = start_server(db, tmp_path, "--processes", "2", TASKS_SHUTDOWN_GRACE=GRACE)
    try:
        _, task = server.request("POST", "/tasks", {"type": "sleep", "params": {"seconds": 600}})
        assert _wait_status(_server_task(server), task["id"], "running")["status"] == "running"

        os.killpg(server.process.pid, signal.SIGINT)
        output = wait_output(server.log, WAITING)
        assert output.count(WAITING) == 1, output  # from the process running it, only
        assert server.process.poll() is None, "the first Ctrl-C lets the task finish"

        os.killpg(server.process.pid, signal.SIGINT)
        assert server.process.wait(EXIT_WAIT_SECONDS) == 0
    finally:
        server.stop(signal.SIGKILL, group=True)
    assert f"task {task['id']} handed back at shutdown: queued" in server.log.read_text()
    _assert_handed_back(db, tmp_path, task["id"])


def test_a_second_sigterm_hands_tasks_back_too(tmp_path: Path) -> None:
    db = tmp_path / "tasks.sqlite3"
    server = start_server(db, tmp_path, TASKS_SHUTDOWN_GRACE=GRACE)
    try:
        _, task = server.request("POST", "/tasks", {"type": "sleep", "params": {"seconds": 600}})
        assert _wait_status(_server_task(server), task["id"], "running")["status"] == "running"
        server.process.send_signal(signal.SIGTERM)  # to the master alone, as a service manager
        assert WAITING in wait_output(server.log, WAITING)
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(EXIT_WAIT_SECONDS) == 0
    finally:
        server.stop(signal.SIGKILL, group=True)
    _assert_handed_back(db, tmp_path, task["id"])


def test_ctrl_c_on_an_idle_worker_just_stops(tmp_path: Path) -> None:
    worker = start_worker(
        tmp_path,
        "idle",
        TASKS_DATABASE_URL=f"sqlite:///{tmp_path / 'tasks.sqlite3'}",
        TASKS_SHUTDOWN_GRACE=GRACE,
    )
    log = tmp_path / "worker-idle.log"
    try:
        assert "taskapi worker: 32 threads" in wait_output(log, "taskapi worker: 32 threads")
        os.killpg(worker.pid, signal.SIGINT)
        assert worker.wait(EXIT_WAIT_SECONDS) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert log.read_text().splitlines()[-1] == "stopping"


def test_ctrl_c_on_a_worker_says_what_it_waits_for_and_a_second_hands_tasks_back(
    tmp_path: Path,
) -> None:
    db = tmp_path / "tasks.sqlite3"
    app = make_app(db, TASKS_WORKERS=0)
    read = runtime_of(app).service.get
    task_id = submit(app.test_client(), {"type": "sleep", "params": {"seconds": 600}})["id"]
    worker = start_worker(
        tmp_path,
        "w",
        TASKS_DATABASE_URL=f"sqlite:///{db}",
        TASKS_WORKERS="1",
        TASKS_SHUTDOWN_GRACE=GRACE,
    )
    log = tmp_path / "worker-w.log"
    try:
        task = _wait_status(lambda i: {"status": read(i).status.value}, task_id, "running")
        assert task["status"] == "running"
        os.killpg(worker.pid, signal.SIGINT)
        assert WAITING in wait_output(log, WAITING)
        assert worker.poll() is None, "the first Ctrl-C lets the task finish"
        os.killpg(worker.pid, signal.SIGINT)
        assert worker.wait(EXIT_WAIT_SECONDS) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert f"task {task_id} handed back at shutdown: queued" in log.read_text()
    again = read(task_id)
    assert (again.status.value, again.attempts) == ("queued", 0)
    runtime_of(app).store.close()


def test_a_port_in_use_is_one_line_that_says_what_to_change(tmp_path: Path) -> None:
    port = free_port()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        done = subprocess.run(
            [*TASKAPI, "serve", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            env={**os.environ, "TASKS_DATABASE_URL": f"sqlite:///{tmp_path / 't.sqlite3'}"},
            preexec_fn=default_sigint,
        )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == (
        f"Error: cannot listen on 127.0.0.1:{port}: the address is already in use "
        "(another server?); --port and --host change it\n"
    )


def test_two_servers_on_one_machine_leave_no_control_socket(tmp_path: Path) -> None:
    home, runtime_dir = tmp_path / "home", tmp_path / "run"
    home.mkdir()
    runtime_dir.mkdir()
    env = {"HOME": str(home), "XDG_RUNTIME_DIR": str(runtime_dir)}
    servers = [start_server(tmp_path / "tasks.sqlite3", tmp_path, **env) for _ in range(2)]
    try:
        assert [s.request("GET", "/ready")[0] for s in servers] == [200, 200]
        assert list(home.iterdir()) == list(runtime_dir.iterdir()) == []
    finally:
        for server in servers:
            server.stop()
    for server in servers:
        assert "ontrol socket" not in server.log.read_text()


def test_the_open_api_warning_is_logged_once_per_start(tmp_path: Path) -> None:
    server = start_server(
        tmp_path / "tasks.sqlite3", tmp_path, "--processes", "2", "--worker-processes", "2"
    )
    try:
        # Four apps are built (two API processes, two worker processes), after the first.
        booted = "started 32 worker threads"
        deadline = time.monotonic() + 20
        while server.log.read_text().count(booted) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        server.stop()
    output = server.log.read_text()
    assert output.count(booted) == 2, output
    assert output.count("TASKS_API_KEYS is not set") == 1, output
