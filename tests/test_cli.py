"""The ``taskapi`` client commands against a live server."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from api.cli import main
from tests.processes import TASKAPI, Server, default_sigint, free_port, start_server

ROOT = Path(__file__).resolve().parent.parent
#: What rich reads to decide on a terminal view besides isatty (see rich.console.Console).
TERMINAL_SETTINGS = ("FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS")
ESCAPE = "\x1b"
KEYS = "alice:s3cret-a,bob:s3cret-b"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir: Path = tmp_path_factory.mktemp("cli")
    running = start_server(workdir / "tasks.sqlite3", workdir)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir: Path = tmp_path_factory.mktemp("cli-keys")
    running = start_server(workdir / "tasks.sqlite3", workdir, TASKS_API_KEYS=KEYS)
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def _plain_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the shell running the suite sets, the terminal view is the tests' choice."""
    for name in (*TERMINAL_SETTINGS, "TASKS_URL", "TASKS_TOKEN"):
        monkeypatch.delenv(name, raising=False)


def run(server: Server, *args: str, **env: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [*args, "--url", server.url], env=env)
    return result.exit_code, result.stdout, result.stderr


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in TERMINAL_SETTINGS}
    return {**env, "TERM": "xterm-256color", "PYTHONUTF8": "1", **extra}


def run_on_terminal(*args: str, timeout: float = 20) -> tuple[int, str, str]:
    """Run ``taskapi ARGS`` with stderr on a 100x24 pseudo-terminal and stdout on a pipe.

    Returns the exit status, all that was written to the terminal, and stdout.
    """
    master, slave = os.openpty()
    termios.tcsetwinsize(slave, (24, 100))
    process = subprocess.Popen(
        [*TASKAPI, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
        env=child_env(),
        cwd=ROOT,
    )
    os.close(slave)
    screen = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not select.select([master], [], [], 0.5)[0]:
                if process.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            screen += chunk
        stdout, _ = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, screen.decode(), stdout.decode()


def test_submit_wait_prints_the_result(server: Server) -> None:
    code, out, _ = run(server, "submit", "add", "x=2", "y=3", "--wait")
    assert code == 0
    task = json.loads(out)
    assert (task["status"], task["result"]) == ("succeeded", 5)


def test_submit_without_wait_prints_the_queued_task(server: Server) -> None:
    code, out, _ = run(server, "submit", "sleep", "seconds=0", "--priority", "5")
    assert code == 0
    task = json.loads(out)
    assert task["status"] == "queued" and task["priority"] == 5
    code, out, _ = run(server, "status", task["id"])
    assert code == 0 and json.loads(out)["id"] == task["id"]


def test_submit_wait_draws_a_progress_bar_on_a_terminal(server: Server) -> None:
    code, screen, out = run_on_terminal(
        "submit", "sleep", "seconds=2", "--wait", "--url", server.url
    )
    assert code == 0, screen
    assert json.loads(out)["result"] == {"slept": 2}, "stdout keeps the task as JSON"
    assert ESCAPE not in out
    frames = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)  # the text, without colours
    assert "slept 1 of 2s" in frames and " 1/2 " in frames, frames
    assert "━" in frames, "the bar"
    assert re.search(r"0:00:0[0-9]", frames), "the elapsed time"
    assert re.search(r"✓ succeeded in [0-9.]+s", frames), frames
    assert "\x1b[?25l" in screen, "a live view: the cursor is hidden while it draws"
    assert frames.strip().splitlines()[-1].startswith("✓ succeeded in"), "the bar gives way"


def test_submit_wait_on_a_pipe_prints_plain_progress_lines(server: Server) -> None:
    done = subprocess.run(
        [*TASKAPI, "submit", "sleep", "seconds=2", "--wait", "--url", server.url],
        capture_output=True,
        text=True,
        env=child_env(),
        cwd=ROOT,
        timeout=20,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["result"] == {"slept": 2}
    lines = done.stderr.splitlines()
    assert lines[:2] == ["1/2 slept 1 of 2s", "2/2 slept 2 of 2s"], done.stderr
    assert re.fullmatch(r"✓ succeeded in [0-9.]+s", lines[2]), done.stderr
    assert ESCAPE not in done.stderr + done.stdout


def test_interrupting_submit_wait_leaves_the_task_running(server: Server) -> None:
    process = subprocess.Popen(
        [*TASKAPI, "submit", "sleep", "seconds=3", "--wait", "--url", server.url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
        cwd=ROOT,
        preexec_fn=default_sigint,
    )
    assert process.stderr is not None
    assert process.stderr.readline() == "1/3 slept 1 of 3s\n"
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=10)
    assert process.returncode == 130 and out == ""
    task_id = re.search(r"interrupted: task (\S+) goes on", err)
    assert task_id, err
    status, task = server.request("GET", f"/tasks/{task_id[1]}")
    assert status == 200 and task["status"] in ("running", "succeeded")


def test_a_failed_task_makes_submit_wait_exit_non_zero(server: Server) -> None:
    code, out, err = run(
        server, "submit", "fail", "message=broken", "--max-attempts", "1", "--wait"
    )
    assert code == 1
    assert json.loads(out)["error"] == {"type": "TaskFailure", "message": "broken"}
    assert err.splitlines()[-1] == "✗ failed: TaskFailure: broken"


def test_a_retried_failure_says_how_many_attempts(server: Server) -> None:
    code, _, err = run(
        server,
        "submit",
        "fail",
        "message=again",
        "succeed_after=5",
        "--max-attempts",
        "2",
        "--wait",
    )
    assert code == 1
    assert err.splitlines()[-1] == "✗ failed after 2 attempts: TaskFailure: again"


def test_a_refused_submit_says_why(server: Server) -> None:
    code, _, err = run(server, "submit", "add", "x=two", "y=3")
    assert code == 2
    assert "json.params.x: Not a valid integer." in err


def test_list_filters_by_status(server: Server) -> None:
    run(server, "submit", "add", "x=1", "y=1", "--wait")
    code, out, err = run(server, "list", "--status", "succeeded", "--type", "add")
    assert code == 0
    lines = out.strip().splitlines()
    assert lines and all("succeeded" in line and " add " in line for line in lines)
    assert "tasks" in err


def test_list_status_failed_shows_only_failed_tasks(server: Server) -> None:
    _, out, _ = run(server, "submit", "fail", "message=no", "--max-attempts", "1", "--wait")
    failed = json.loads(out)["id"]
    _, out, _ = run(server, "submit", "add", "x=1", "y=2", "--wait")
    succeeded = json.loads(out)["id"]

    code, out, err = run(server, "list", "--status", "failed")
    assert code == 0 and ESCAPE not in out
    ids = [line.split()[0] for line in out.splitlines()]
    assert failed in ids and succeeded not in ids
    assert all(line.split()[1] == "failed" for line in out.splitlines()), out
    assert re.fullmatch(r"page 1 of \d+, \d+ tasks\n", err)

    # On a terminal (TTY_COMPATIBLE=1 makes rich take the output for one), a table.
    code, table, _ = run(server, "list", "--status", "failed", TTY_COMPATIBLE="1", COLUMNS="100")
    text = re.sub(r"\x1b\[[0-9;]*m", "", table)
    header, rule, *rows = text.splitlines()
    assert header.split() == ["id", "type", "status", "progress", "created"]
    assert set(rule) == {"─"}
    assert any(row.startswith(failed) for row in rows), text
    assert all(row.split()[2] == "failed" for row in rows), text
    assert succeeded not in text


def test_the_token_is_sent_to_a_server_with_api_keys(keyed_server: Server) -> None:
    code, out, _ = run(keyed_server, "submit", "add", "x=1", "y=2", "--wait", "--token", "s3cret-a")
    assert code == 0
    task = json.loads(out)
    assert task["result"] == 3
    code, out, _ = run(keyed_server, "status", task["id"], TASKS_TOKEN="s3cret-a")
    assert code == 0 and json.loads(out)["id"] == task["id"]
    code, out, _ = run(keyed_server, "list", "--token", "s3cret-b")
    assert code == 0 and task["id"] not in out, "bob does not see alice's task"


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("wrong", "error: Unauthorized: The token is not valid; check TASKS_TOKEN."),
        (None, "error: Unauthorized: This operation needs an API key"),
    ],
)
def test_a_refused_token_exits_2_with_the_reason(
    keyed_server: Server, token: str | None, message: str
) -> None:
    args = ["list"] if token is None else ["list", "--token", token]
    code, out, err = run(keyed_server, *args)
    assert code == 2 and out == ""
    assert err.startswith(message), err


def test_status_of_an_unknown_task_exits_2(server: Server) -> None:
    code, _, err = run(server, "status", "00000000-0000-4000-8000-000000000000")
    assert code == 2 and "Not Found" in err


def test_an_unreachable_server_is_reported() -> None:
    result = CliRunner().invoke(main, ["status", "x", "--url", f"http://127.0.0.1:{free_port()}"])
    assert result.exit_code == 2 and "Cannot reach" in result.stderr


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("TASKS_WORKERS", "many", "TASKS_WORKERS='many' is not a valid int."),
        ("TASKS_DATABASE_URL", "mysql://db/tasks", "Unsupported TASKS_DATABASE_URL"),
        ("TASKS_IMPORT", "no_such_module", "TASKS_IMPORT: cannot import 'no_such_module'"),
    ],
)
@pytest.mark.parametrize("command", ["serve", "worker"])
def test_a_bad_setting_stops_start_up_with_a_plain_message(
    command: str, setting: str, value: str, message: str, tmp_path: Path
) -> None:
    env = {"TASKS_DATABASE_URL": f"sqlite:///{tmp_path / 't.sqlite3'}", setting: value}
    result = CliRunner().invoke(
        main, [command, "--port", "1"] if command == "serve" else [command], env=env
    )
    assert result.exit_code == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr
