"""The ``taskapi`` client commands against a live server."""

from __future__ import annotations

import http.server
import json
import os
import re
import select
import signal
import socket
import subprocess
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

import api.client
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
    running = start_server(
        workdir / "tasks.sqlite3", workdir, TASKS_API_KEYS=KEYS, TASKS_ADMINS="alice"
    )
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
    rows = [line.split("\t") for line in out.strip().splitlines()]
    assert rows and all(row[1:3] == ["add", "succeeded"] for row in rows), out
    assert "tasks" in err


def test_list_status_failed_shows_only_failed_tasks(server: Server) -> None:
    _, out, _ = run(server, "submit", "fail", "message=no", "--max-attempts", "1", "--wait")
    failed = json.loads(out)["id"]
    _, out, _ = run(server, "submit", "add", "x=1", "y=2", "--wait")
    succeeded = json.loads(out)["id"]

    code, out, err = run(server, "list", "--status", "failed")
    assert code == 0 and ESCAPE not in out
    ids = [line.split("\t")[0] for line in out.splitlines()]
    assert failed in ids and succeeded not in ids
    assert all(line.split("\t")[2] == "failed" for line in out.splitlines()), out
    assert re.fullmatch(r"page 1 of \d+, \d+ tasks?\n", err)

    # On a terminal (TTY_COMPATIBLE=1 makes rich take the output for one), a table.
    code, table, _ = run(server, "list", "--status", "failed", TTY_COMPATIBLE="1", COLUMNS="100")
    text = re.sub(r"\x1b\[[0-9;]*m", "", table)
    header, rule, *rows = text.splitlines()
    assert header.split() == ["id", "type", "status", "progress", "created", "queue"]
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


def test_list_of_no_tasks_says_so_and_counts_one_task_in_the_singular(
    tmp_path: Path,
) -> None:
    running = start_server(tmp_path / "tasks.sqlite3", tmp_path)
    try:
        code, out, err = run(running, "list")
        assert (code, out, err) == (0, "", "no tasks yet\n")
        run(running, "submit", "add", "x=1", "y=2")
        assert run(running, "list", "--type", "sleep") == (0, "", "no tasks\n")
        code, _, err = run(running, "list")
        assert (code, err) == (0, "page 1 of 1, 1 task\n")
    finally:
        running.stop()


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


@pytest.mark.parametrize(
    "command",
    [
        "status",
        "list",
        "cancel",
        "delete",
        "retry",
        "batch",
        "types",
        "queues",
        "queue",
        "schedules",
        "schedule",
    ],
)
def test_an_unreachable_server_is_reported_plainly(command: str) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with_id = ("status", "cancel", "delete", "retry", "batch", "queue", "schedule")
    args = [command, "some-id"] if command in with_id else [command]
    result = CliRunner().invoke(main, [*args, "--url", url])
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr == (
        f"error: cannot reach taskapi at {url} (connection refused); "
        "is `taskapi serve` running? --url or TASKS_URL changes it\n"
    )


def test_a_server_that_does_not_answer_is_reported_as_a_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(api.client, "TIMEOUT_SECONDS", 0.2)
    with socket.socket() as silent:  # accepts connections (the backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        result = CliRunner().invoke(main, ["status", "some-id", "--url", url])
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith(
        f"error: taskapi at {url} did not answer within 0.2s (timed out); "
    ), result.stderr


def test_a_url_without_a_scheme_is_reported() -> None:
    result = CliRunner().invoke(main, ["list", "--url", "localhost:5000"])
    assert result.exit_code == 2
    assert result.stderr == (
        "error: 'localhost:5000' is not a URL like http://127.0.0.1:5000; "
        "--url or TASKS_URL sets it\n"
    )


class _NotTaskapi(http.server.BaseHTTPRequestHandler):
    """Another web server: a page of HTML for every GET."""

    def do_GET(self) -> None:
        body = b"<html><body>It works!</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        return None


def test_a_url_that_is_not_taskapi_is_reported() -> None:
    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotTaskapi)
    thread = threading.Thread(target=other.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{other.server_address[1]}"
        result = CliRunner().invoke(main, ["status", "some-id", "--url", url])
    finally:
        other.shutdown()
        other.server_close()
        thread.join()
    assert result.exit_code == 2, result.exception  # a traceback would be exit status 1
    assert result.stderr == (
        f"error: {url} answered GET /tasks/some-id with something that is not JSON; "
        "is it a taskapi server? --url or TASKS_URL changes it\n"
    )


def wait_for(server: Server, task_id: str, *statuses: str) -> dict[str, Any]:
    """The task once it is in one of ``statuses`` (long-polls of the server, 20s at most)."""
    deadline = time.monotonic() + 20
    while True:
        _, task = server.request("GET", f"/tasks/{task_id}?wait=1")
        if task["status"] in statuses or time.monotonic() > deadline:
            assert task["status"] in statuses, task
            return task


def test_cancel_then_delete_a_running_task(server: Server) -> None:
    _, out, _ = run(server, "submit", "sleep", "seconds=30")
    task_id = json.loads(out)["id"]
    deadline = time.monotonic() + 20
    while server.request("GET", f"/tasks/{task_id}")[1]["progress"] is None:
        assert time.monotonic() < deadline, "the sleep never reported progress"
        time.sleep(0.1)

    code, out, _ = run(server, "list", "--status", "running")
    assert code == 0
    assert f"{task_id}\tsleep\trunning\t1/30 slept 1 of 30s\t" in out, "progress, piped"

    code, out, err = run(server, "delete", task_id)
    assert code == 2 and out == ""
    assert err == (
        f"error: Conflict: Task {task_id} is running; only a terminal task (succeeded, failed "
        "or cancelled) can be deleted. Cancel it first.\n"
    )

    code, out, err = run(server, "cancel", task_id)
    assert code == 0
    task = json.loads(out)
    assert (task["id"], task["status"], task["cancel_requested"]) == (task_id, "running", True)
    assert err == (
        f"task {task_id} is running: asked to stop, it ends cancelled when it next checks; "
        f"follow it with `taskapi status {task_id}`\n"
    )
    wait_for(server, task_id, "cancelled")

    code, out, err = run(server, "cancel", task_id)
    assert code == 2 and out == ""
    assert err == (
        f"error: Conflict: Task {task_id} is already cancelled; only a queued or running task "
        "can be cancelled.\n"
    )

    code, out, err = run(server, "delete", task_id)
    assert (code, out, err) == (0, f"deleted task {task_id}\n", "")
    code, _, err = run(server, "status", task_id)
    assert code == 2 and err.startswith(f"error: Not Found: There is no task with id '{task_id}'")


def test_cancel_cancels_a_queued_task_at_once(server: Server) -> None:
    _, out, _ = run(server, "submit", "add", "x=1", "y=2", "--delay", "600")
    task_id = json.loads(out)["id"]
    code, out, err = run(server, "cancel", task_id)
    assert code == 0
    assert json.loads(out)["status"] == "cancelled"
    assert err == f"task {task_id} cancelled\n"


@pytest.mark.parametrize("command", ["status", "cancel", "delete"])
def test_an_unknown_task_id_exits_2_with_the_problem(server: Server, command: str) -> None:
    unknown = "00000000-0000-4000-8000-000000000000"
    code, out, err = run(server, command, unknown)
    assert code == 2 and out == ""
    assert err == (
        f"error: Not Found: There is no task with id '{unknown}'; it may have expired or been "
        "deleted.\n"
    )


def test_types_on_a_pipe_prints_a_line_per_type_in_the_table_columns(server: Server) -> None:
    code, out, err = run(server, "types")
    assert (code, err) == (0, "")
    assert ESCAPE not in out
    assert [line.split("\t") for line in out.splitlines()] == [
        [
            "add",
            "x y [delay_seconds=0]",
            "1",
            "none",
            "thread",
            "default",
            "Add two integers, after optional simulated work (the seed's task).",
        ],
        [
            "fail",
            "message [succeed_after]",
            "3",
            "none",
            "thread",
            "default",
            "Raise `message`, on every attempt or on the first `succeed_after` attempts.",
        ],
        [
            "sleep",
            "seconds",
            "1",
            "none",
            "thread",
            "default",
            "Sleep, reporting progress each second; stops early when cancelled.",
        ],
    ]


def test_types_on_a_terminal_is_a_table(server: Server) -> None:
    code, table, _ = run(server, "types", TTY_COMPATIBLE="1", COLUMNS="140")
    assert code == 0
    header, rule, *rows = re.sub(r"\x1b\[[0-9;]*m", "", table).splitlines()
    assert header.split() == [
        "type",
        "params",
        "attempts",
        "timeout",
        "isolation",
        "queue",
        "description",
    ]
    assert set(rule) == {"─"}
    assert rows[1].split()[:7] == [
        "fail",
        "message",
        "[succeed_after]",
        "3",
        "none",
        "thread",
        "default",
    ]
    assert "Raise `message`, on every attempt" in rows[1], table


def test_the_task_types_describe_themselves_in_plain_text(server: Server) -> None:
    status, types = server.request("GET", "/task-types")
    assert status == 200
    descriptions = {t["name"]: t["description"] for t in types}
    assert descriptions["fail"] == (
        "Raise `message`, on every attempt or on the first `succeed_after` attempts."
    )
    assert not [text for text in descriptions.values() if "``" in text], descriptions


def _help(*command: str) -> str:
    result = CliRunner().invoke(main, [*command, "--help"], terminal_width=100)
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize("command", ["", *sorted(main.commands)])
def test_help_reads_as_plain_text(command: str) -> None:
    text = _help(*filter(None, [command]))
    assert "``" not in text, text
    assert "\\b" not in text, text


@pytest.mark.parametrize("command", sorted(main.commands))
def test_every_option_and_argument_of_every_command_has_help(command: str) -> None:
    text = " ".join(_help(command).split())
    for param in main.commands[command].params:
        assert isinstance(param, click.Option | click.Argument)
        assert param.help, f"taskapi {command}: {param.human_readable_name} has no help"
        assert " ".join(param.help.split()) in text, (param.human_readable_name, text)


def test_submit_help_shows_its_example_on_a_line_of_its_own() -> None:
    assert "\n      taskapi submit add x=2 y=3 --wait\n" in _help("submit")


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


# -- queues ------------------------------------------------------------------------------------

QUEUE_COLUMNS = [
    "queue",
    "paused",
    "limit",
    "queued",
    "running",
    "succeeded",
    "failed",
    "cancelled",
    "oldest",
]


def queue_lines(server: Server, **env: str) -> dict[str, list[str]]:
    """``taskapi queues`` on a pipe: each queue's cells, by name."""
    code, out, err = run(server, "queues", **env)
    assert (code, err) == (0, ""), err
    assert ESCAPE not in out
    rows = [line.split("\t") for line in out.splitlines()]
    assert all(len(row) == len(QUEUE_COLUMNS) for row in rows), out
    return {row[0]: row[1:] for row in rows}


def test_submit_and_list_by_queue_and_queues_counts_them(server: Server) -> None:
    code, out, _ = run(server, "submit", "add", "x=1", "y=2", "--queue", "cli-mail", "--wait")
    assert code == 0
    done = json.loads(out)
    assert (done["queue"], done["status"]) == ("cli-mail", "succeeded")
    _, out, _ = run(server, "submit", "add", "x=1", "y=2", "--queue", "cli-mail", "--delay", "600")
    later = json.loads(out)

    code, out, err = run(server, "list", "--queue", "cli-mail")
    assert code == 0 and err == "page 1 of 1, 2 tasks\n"
    rows = [line.split("\t") for line in out.splitlines()]
    assert [(row[0], row[2], row[-1]) for row in rows] == [
        (later["id"], "queued", "cli-mail"),
        (done["id"], "succeeded", "cli-mail"),
    ]
    assert run(server, "list", "--queue", "cli-none") == (0, "", "no tasks\n")

    queues = queue_lines(server)
    assert "default" in queues
    # Not paused, no limit, 1 queued (not ready: no oldest age), 1 succeeded.
    assert queues["cli-mail"] == ["no", "none", "1", "0", "1", "0", "0", ""]
    assert list(queues) == sorted(queues), "by name"


def test_queue_pauses_limits_and_resumes(server: Server) -> None:
    code, out, err = run(server, "queue", "cli-reports", "--pause", "--concurrency", "2")
    assert code == 0
    queue = json.loads(out)
    assert (queue["name"], queue["paused"], queue["concurrency"]) == ("cli-reports", True, 2)
    assert err == "queue cli-reports: paused, concurrency 2\n"

    _, out, _ = run(server, "submit", "add", "x=2", "y=2", "--queue", "cli-reports")
    task_id = json.loads(out)["id"]
    # A task of another queue, submitted after it, runs; the paused queue's task waits.
    assert run(server, "submit", "add", "x=0", "y=0", "--wait")[0] == 0
    assert server.request("GET", f"/tasks/{task_id}")[1]["status"] == "queued"
    waiting = queue_lines(server)["cli-reports"]
    assert waiting[:4] == ["yes", "2", "1", "0"], waiting
    assert float(waiting[-1]) > 0, "the age of the ready task that waits"

    code, out, err = run(server, "queue", "cli-reports")
    assert (code, err) == (0, "")
    assert json.loads(out)["counts"]["queued"] == 1

    code, out, err = run(server, "queue", "cli-reports", "--resume", "--no-limit")
    assert code == 0
    assert (json.loads(out)["paused"], json.loads(out)["concurrency"]) == (False, None)
    assert err == "queue cli-reports: active, no concurrency limit\n"
    assert wait_for(server, task_id, "succeeded")["result"] == 4


def test_queues_on_a_terminal_is_a_table(server: Server) -> None:
    run(server, "queue", "cli-table", "--pause")
    code, table, _ = run(server, "queues", TTY_COMPATIBLE="1", COLUMNS="100")
    assert code == 0
    header, rule, *rows = re.sub(r"\x1b\[[0-9;]*m", "", table).splitlines()
    assert header.split() == QUEUE_COLUMNS
    assert set(rule) == {"─"}
    assert ["cli-table", "yes", "none", "0", "0", "0", "0", "0", "-"] in [r.split() for r in rows]


def _lines(text: str) -> list[str]:
    return re.sub(r"\x1b\[[0-9;]*m", "", text).splitlines()


def test_tables_fit_80_columns_with_long_queue_names(server: Server) -> None:
    long = "reports-monthly-" + "x" * 47  # 63 characters, the longest name a queue may have
    assert run(server, "queue", long, "--pause")[0] == 0  # its task stays queued
    status, task = server.request(
        "POST", "/tasks", {"type": "add", "params": {"x": 1, "y": 2}, "queue": long}
    )
    assert status == 202, task
    code, listed, _ = run(server, "list", "--queue", long, TTY_COMPATIBLE="1", COLUMNS="80")
    assert code == 0
    header, _, row = _lines(listed)[:3]
    assert header.split()[:3] == ["id", "type", "status"]
    assert all(len(line) <= 80 for line in _lines(listed)), listed
    assert row.split()[:3] == [task["id"], "add", "queued"], "id, type and status whole"
    code, table, _ = run(server, "queues", TTY_COMPATIBLE="1", COLUMNS="80")
    assert code == 0
    lines = _lines(table)
    assert all(len(line) <= 80 for line in lines), table
    assert lines[0].split() == QUEUE_COLUMNS
    cut = next(line.split() for line in lines if line.startswith("reports-m"))
    assert cut[0].endswith("…") and cut[1:4] == ["yes", "none", "1"], "the name cut, not the rest"


def test_an_unknown_queue_exits_2_with_the_problem(server: Server) -> None:
    code, out, err = run(server, "queue", "cli-never-used")
    assert code == 2 and out == ""
    assert err.startswith("error: Not Found: "), err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--concurrency", "0"], "0 is not in the range 1<=x<=10000"),
        (["--concurrency", "2", "--no-limit"], "--concurrency and --no-limit contradict"),
    ],
)
def test_queue_refuses_contradictory_or_out_of_range_options(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["queue", "emails", *args, "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 2 and result.stdout == ""
    assert message in result.stderr, result.stderr


def test_a_bad_queue_name_is_refused_with_the_field(server: Server) -> None:
    code, out, err = run(server, "submit", "add", "x=1", "y=2", "--queue", "Not A Queue")
    assert code == 2 and out == ""
    assert "json.queue:" in err, err


def test_only_admins_change_queues(keyed_server: Server) -> None:
    code, out, err = run(keyed_server, "queue", "cli-admin", "--pause", "--token", "s3cret-b")
    assert code == 2 and out == ""
    assert err.startswith("error: Forbidden: "), err
    code, out, _ = run(keyed_server, "queue", "cli-admin", "--pause", "--token", "s3cret-a")
    assert code == 0 and json.loads(out)["paused"] is True
    # Reading is for every caller.
    assert queue_lines(keyed_server, TASKS_TOKEN="s3cret-b")["cli-admin"][0] == "yes"


# -- schedules ---------------------------------------------------------------------------------

SCHEDULE_COLUMNS = ["schedule", "when", "type", "queue", "next run", "last run"]
#: The queue of the schedules' tasks here, so that they stay out of the other tests' counts.
SCHEDULED = "cli-scheduled"
NEXT_RUN = r"next run (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+) \(in [0-9dhms]+\)"


def schedule_lines(server: Server, *args: str, **env: str) -> dict[str, list[str]]:
    """``taskapi schedules`` on a pipe: each schedule's cells, by name."""
    code, out, err = run(server, "schedules", *args, **env)
    assert code == 0, err
    assert ESCAPE not in out
    rows = [line.split("\t") for line in out.splitlines()]
    assert all(len(row) == len(SCHEDULE_COLUMNS) for row in rows), out
    return {row[0]: row[1:] for row in rows}


def test_schedule_creates_then_replaces_a_schedule_and_says_its_next_run(server: Server) -> None:
    args = ["--cron", "0 2 * * *", "--timezone", "Europe/Berlin", "--queue", SCHEDULED]
    code, out, err = run(server, "schedule", "cli-nightly", *args, "add", "x=1", "y=2")
    assert code == 0, err
    made = json.loads(out)
    assert (made["name"], made["cron"], made["every_seconds"]) == ("cli-nightly", "0 2 * * *", None)
    assert made["timezone"] == "Europe/Berlin" and made["paused"] is False
    assert (made["task"]["type"], made["task"]["queue"]) == ("add", SCHEDULED)
    assert made["task"]["params"] == {"x": 1, "y": 2, "delay_seconds": 0}, "its defaults applied"
    assert (made["overlap"], made["catch_up"], made["last_run_at"]) == ("skip", "latest", None)
    found = re.fullmatch(f"schedule cli-nightly created: {NEXT_RUN}\n", err)
    assert found, err
    assert found[1].endswith(" 02:00:00 CET") or found[1].endswith(" 02:00:00 CEST"), err

    # Again, another way: replaced; every option not given is back to its default.
    code, out, err = run(
        server, "schedule", "cli-nightly", "--every", "3600", "--overlap", "allow",
        "--catch-up", "none", "--priority", "3", "--max-attempts", "2", "--timeout", "9.5",
        "--queue", SCHEDULED, "fail", "message=\"42\"", "succeed_after=2",
    )  # fmt: skip
    assert code == 0, err
    replaced = json.loads(out)
    assert (replaced["cron"], replaced["every_seconds"]) == (None, 3600)
    assert (replaced["overlap"], replaced["catch_up"]) == ("allow", "none")
    assert replaced["timezone"] == "UTC" and replaced["created_at"] == made["created_at"]
    assert replaced["task"]["type"] == "fail"
    assert replaced["task"]["params"]["message"] == "42", "key=value read as submit reads it"
    assert replaced["task"]["params"]["succeed_after"] == 2
    assert (replaced["task"]["priority"], replaced["task"]["max_attempts"]) == (3, 2)
    assert replaced["task"]["timeout_seconds"] == 9.5
    found = re.fullmatch(f"schedule cli-nightly replaced: {NEXT_RUN}\n", err)
    assert found and found[1].endswith(" UTC"), err
    # With NAME alone, it is printed as it is.
    code, out, err = run(server, "schedule", "cli-nightly")
    assert (code, err) == (0, "") and json.loads(out) == replaced


def test_schedules_lists_them_on_a_pipe_and_in_a_table(server: Server) -> None:
    run(server, "schedule", "cli-list-a", "--cron", "0 6 * * 1", "--timezone", "America/New_York",
        "--queue", SCHEDULED, "sleep", "seconds=0")  # fmt: skip
    run(server, "schedule", "cli-list-b", "--every", "90", "--paused", "add", "x=1", "y=1")
    lines = schedule_lines(server)
    assert list(lines) == sorted(lines), "by name"
    a, b = lines["cli-list-a"], lines["cli-list-b"]
    assert a[:3] == ["0 6 * * 1 America/New_York", "sleep", SCHEDULED]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:00(\.0+)?Z", a[3]), a
    assert a[4] == "", "never ran"
    assert b == ["every 90 s", "add", "", "paused", ""]
    code, _, err = run(server, "schedules", "--page-size", "1")
    assert code == 0 and re.fullmatch(r"page 1 of (\d+), \1 schedules\n", err), err

    code, table, _ = run(server, "schedules", TTY_COMPATIBLE="1", COLUMNS="100")
    assert code == 0
    header, rule, *rows = _lines(table)
    assert header.split() == ["schedule", "when", "type", "queue", "next", "run", "last", "run"]
    assert set(rule) == {"─"}
    row_a = next(r for r in rows if r.startswith("cli-list-a "))
    assert re.search(r"0 6 \* \* 1 America/New_York +sleep +cli-scheduled +in \S+ +- *$", row_a)
    row_b = next(r for r in rows if r.startswith("cli-list-b "))
    assert re.search(r"every 90 s +add +- +paused +- *$", row_b), row_b


def test_schedules_fit_80_columns_with_long_names(server: Server) -> None:
    long = "nightly-reports-" + "x" * 47  # 63 characters, the longest name a schedule may have
    code, _, err = run(
        server, "schedule", long, "--cron", "*/15 9-17 * * mon-fri",
        "--timezone", "America/Argentina/Buenos_Aires", "--queue", "q" * 63, "add", "x=1", "y=1",
    )  # fmt: skip
    assert code == 0, err
    code, table, _ = run(server, "schedules", TTY_COMPATIBLE="1", COLUMNS="80")
    assert code == 0
    lines = _lines(table)
    assert all(len(line) <= 80 for line in lines), table
    assert lines[0].split()[:2] == ["schedule", "when"]
    cut = next(line for line in lines if line.startswith("nightly-repo"))
    assert cut.split()[0].endswith("…"), "the name cut"
    assert re.search(r" add +q+… +in [0-9dhms]+ +- *$", cut), "the type and the times whole"


def test_schedule_pauses_resumes_and_keeps_what_it_does(server: Server) -> None:
    run(server, "schedule", "cli-pausing", "--cron", "30 4 * * *", "--overlap", "allow",
        "--queue", SCHEDULED, "add", "x=7", "y=8")  # fmt: skip
    code, out, err = run(server, "schedule", "cli-pausing", "--pause")
    assert code == 0, err
    paused = json.loads(out)
    assert (paused["paused"], paused["next_run_at"]) == (True, None)
    assert err == "schedule cli-pausing paused: no run until it is resumed\n"
    assert paused["overlap"] == "allow" and paused["task"]["params"]["x"] == 7
    code, out, err = run(server, "schedule", "cli-pausing", "--pause")
    assert (code, err) == (
        0,
        "schedule cli-pausing was already paused: no run until it is resumed\n",
    )

    code, out, err = run(server, "schedule", "cli-pausing", "--resume")
    assert code == 0, err
    resumed = json.loads(out)
    assert resumed["paused"] is False and resumed["next_run_at"].endswith("T04:30:00.000000Z")
    assert re.fullmatch(f"schedule cli-pausing resumed: {NEXT_RUN}\n", err), err
    assert {
        k: v for k, v in resumed.items() if k not in ("paused", "next_run_at", "updated_at")
    } == {k: v for k, v in paused.items() if k not in ("paused", "next_run_at", "updated_at")}, (
        "only paused changed"
    )


def test_schedule_trigger_makes_its_task_now_even_while_paused(server: Server) -> None:
    run(server, "schedule", "cli-trigger", "--cron", "0 0 1 1 *", "--paused", "--queue",
        SCHEDULED, "add", "x=40", "y=2")  # fmt: skip
    code, out, err = run(server, "schedule", "cli-trigger", "--trigger")
    assert code == 0, err
    task = json.loads(out)
    assert (task["type"], task["schedule"], task["queue"]) == ("add", "cli-trigger", SCHEDULED)
    assert err == (
        f"schedule cli-trigger made task {task['id']}; follow it with "
        f"`taskapi status {task['id']}`\n"
    )
    assert wait_for(server, task["id"], "succeeded")["result"] == 42
    shown = json.loads(run(server, "schedule", "cli-trigger")[1])
    assert shown["last_task_id"] == task["id"] and shown["last_run_at"]
    assert shown["paused"] is True, "a trigger leaves it paused"
    status, made = server.request("GET", "/tasks?schedule=cli-trigger")
    assert status == 200 and [t["id"] for t in made] == [task["id"]]


def test_schedule_fires_and_delete_keeps_its_tasks(server: Server) -> None:
    code, _, err = run(server, "schedule", "cli-every", "--every", "1", "--queue", SCHEDULED,
                       "add", "x=1", "y=1")  # fmt: skip
    assert code == 0, err
    deadline = time.monotonic() + 20
    while not (made := server.request("GET", "/tasks?schedule=cli-every")[1]):
        assert time.monotonic() < deadline, "the schedule never fired"
        time.sleep(0.2)
    assert made[-1]["scheduled_for"] and made[-1]["schedule"] == "cli-every"
    cells = schedule_lines(server)["cli-every"]
    assert cells[:3] == ["every 1 s", "add", SCHEDULED] and cells[4], "it ran"

    code, out, err = run(server, "schedule", "cli-every", "--delete")
    assert (code, out, err) == (0, "deleted schedule cli-every; the tasks it made stay\n", "")
    assert server.request("GET", f"/tasks/{made[-1]['id']}")[0] == 200
    assert "cli-every" not in schedule_lines(server)
    code, out, err = run(server, "schedule", "cli-every", "--trigger")
    assert code == 2 and out == ""
    assert err.startswith("error: Not Found: "), err


def test_a_refused_schedule_says_which_fields_and_why(server: Server) -> None:
    code, out, err = run(server, "schedule", "cli-bad", "--cron", "61 * * * *", "add", "x=two")
    assert code == 2 and out == ""
    assert err.startswith("error: Unprocessable Entity: "), err
    lines = err.splitlines()
    assert any(line.startswith("  json.cron: ") for line in lines), err
    assert "  json.task.params.x: Not a valid integer." in lines, err
    assert "  json.task.params.y: Missing data for required field." in lines, err
    code, _, err = run(server, "schedule", "cli-bad", "--every", "5", "--timezone", "Mars/Base",
                       "add", "x=1", "y=2")  # fmt: skip
    assert code == 2 and "\n  json.timezone: " in err, err
    assert run(server, "schedule", "cli-bad")[0] == 2, "nothing was made"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pause", "--trigger"], "--pause and --trigger contradict each other"),
        (["--delete", "add"], "--delete takes only the schedule's NAME"),
        (["--resume", "--every", "5"], "--resume takes only the schedule's NAME"),
        (["--cron", "0 2 * * *"], "which task?"),
        (["add", "x=1"], "give one of --cron EXPR and --every SECONDS"),
        (["--cron", "0 2 * * *", "--every", "5", "add"], "give one of --cron EXPR and --every"),
        (["--every", "0", "add"], "0 is not in the range 1<=x<=31536000"),
        (["--every", "5", "add", "x"], "'x' is not key=value"),
    ],
)
def test_schedule_refuses_contradictory_or_incomplete_options(
    args: list[str], message: str
) -> None:
    result = CliRunner().invoke(main, ["schedule", "s", *args, "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 2 and result.stdout == ""
    assert message in result.stderr, result.stderr


def test_schedules_belong_to_their_caller(keyed_server: Server) -> None:
    alice, bob = ("--token", "s3cret-a"), ("--token", "s3cret-b")
    code, _, err = run(keyed_server, "schedule", "cli-mine", "--cron", "0 3 * * *", "--paused",
                       "add", "x=1", "y=2", *alice)  # fmt: skip
    assert code == 0, err
    assert "cli-mine" in schedule_lines(keyed_server, *alice)
    assert run(keyed_server, "schedules", *bob) == (0, "", "no schedules yet\n")
    code, out, err = run(keyed_server, "schedule", "cli-mine", "--trigger", *bob)
    assert code == 2 and out == "" and err.startswith("error: Not Found: "), err
    code, _, err = run(keyed_server, "schedules")
    assert code == 2 and err.startswith("error: Unauthorized: "), err


def test_a_usual_schedule_table_fits_80_columns_whole() -> None:
    """A name, a cron with its zone, a type and a queue as people write them: nothing cut."""
    from datetime import UTC, datetime, timedelta

    from rich.console import Console

    from api.cli.views import schedule_table

    now = datetime(2026, 12, 6, 9, 40, tzinfo=UTC)
    nightly = {
        "name": "nightly-report",
        "cron": "0 2 * * *",
        "timezone": "Europe/Berlin",
        "every_seconds": None,
        "task": {"type": "report", "params": {}, "queue": "reports"},
        "paused": False,
        "next_run_at": "2026-12-07T01:00:00Z",
        "last_run_at": "2026-12-06T01:00:00.012345Z",
    }
    probe = {
        **nightly,
        "name": "health-probe",
        "cron": None,
        "every_seconds": 30,
        "task": {"type": "probe", "params": {}},
        "paused": True,
        "next_run_at": None,
        "last_run_at": (now - timedelta(seconds=75)).isoformat(),
    }
    console = Console(width=80, color_system=None, force_terminal=True)
    with console.capture() as captured:
        console.print(schedule_table([nightly, probe], 80, now), soft_wrap=False)
    lines = captured.get().splitlines()
    assert all(len(line) <= 80 for line in lines), lines
    assert lines[2].split() == [
        "nightly-report", "0", "2", "*", "*", "*", "Europe/Berlin", "report", "reports",
        "in", "15h20m", "8h39m", "ago",
    ]  # fmt: skip
    assert lines[3].split() == ["health-probe", "every", "30", "s", "probe", "-", "paused",
                                "1m15s", "ago"]  # fmt: skip


def test_retry_submits_a_failed_task_again_as_a_new_one(server: Server) -> None:
    _, out, _ = run(server, "submit", "fail", "message=once", "--max-attempts", "1", "--wait")
    old = json.loads(out)
    assert old["status"] == "failed"

    code, out, err = run(server, "retry", old["id"])
    assert code == 0, err
    new = json.loads(out)
    assert new["id"] != old["id"] and new["retry_of"] == old["id"]
    assert (new["type"], new["params"], new["max_attempts"]) == (
        "fail",
        old["params"],
        1,
    )
    assert err == (
        f"task {new['id']} retries {old['id']}; follow it with `taskapi status {new['id']}`\n"
    )
    assert wait_for(server, new["id"], "failed")["retry_of"] == old["id"]
    code, out, _ = run(server, "status", old["id"])
    kept = json.loads(out)
    assert (code, kept["status"], kept["retry_of"]) == (0, "failed", None), "the old one stays"
    assert kept["error"] == old["error"] and kept["attempts"] == old["attempts"]


def test_retry_wait_follows_the_new_task_and_exits_1_when_it_fails_again(
    server: Server,
) -> None:
    _, out, _ = run(server, "submit", "fail", "message=twice", "--max-attempts", "1", "--wait")
    old = json.loads(out)["id"]
    code, out, err = run(server, "retry", old, "--wait")
    assert code == 1
    new = json.loads(out)
    assert (new["status"], new["retry_of"]) == ("failed", old)
    lines = err.splitlines()
    assert lines[0] == f"task {new['id']} retries {old}", err
    assert lines[-1] == "✗ failed: TaskFailure: twice", err


def test_retry_of_a_cancelled_task_waits_for_it_to_succeed(server: Server) -> None:
    _, out, _ = run(server, "submit", "add", "x=40", "y=2", "--delay", "600")
    old = json.loads(out)["id"]
    run(server, "cancel", old)
    code, out, err = run(server, "retry", old, "--wait")
    assert code == 0, err
    new = json.loads(out)
    assert (new["status"], new["result"], new["retry_of"]) == ("succeeded", 42, old)


def test_retry_of_a_task_that_has_not_failed_exits_2_with_the_conflict(server: Server) -> None:
    _, out, _ = run(server, "submit", "add", "x=1", "y=2", "--wait")
    task_id = json.loads(out)["id"]
    code, out, err = run(server, "retry", task_id)
    assert code == 2 and out == ""
    assert err.startswith("error: Conflict: "), err
    assert task_id in err and "succeeded" in err, err
    assert len(err.splitlines()) == 1, err


def test_retry_of_an_unknown_task_exits_2_with_the_problem(server: Server) -> None:
    unknown = "00000000-0000-4000-8000-000000000000"
    code, out, err = run(server, "retry", unknown)
    assert code == 2 and out == ""
    assert err.startswith(f"error: Not Found: There is no task with id '{unknown}'"), err
