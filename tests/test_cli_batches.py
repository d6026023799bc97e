"""``taskapi submit --batch``, ``submit --after``, ``taskapi batch`` and ``list --batch``
against a live server, on each store."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from api.cli import main
from tests.conftest import postgres_schema_url
from tests.processes import (
    TASKAPI,
    Server,
    default_sigint,
    free_port,
    start_server,
    wait_terminal,
)
from tests.test_cli import ESCAPE, ROOT, TERMINAL_SETTINGS, child_env, run, run_on_terminal

ADD = {"type": "add", "params": {"x": 1, "y": 2}}
SUMMARY = re.compile(
    r"batch (?P<id>\S+): (?P<size>\d+) tasks?, (?P<done>done|not done)\n"
    r"(?P<counts>.*)\n"
    r"created \d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?P<finished>, finished .* \([0-9.]+s\))?\n"
)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """``taskapi serve`` on a SQLite file, and on a schema of its own in
    TASKS_TEST_DATABASE_URL."""
    workdir: Path = tmp_path_factory.mktemp(f"cli-batches-{request.param}")
    with contextlib.ExitStack() as stack:
        env = {}
        if request.param == "postgres":
            base = os.environ.get("TASKS_TEST_DATABASE_URL")
            if not base:
                pytest.skip("TASKS_TEST_DATABASE_URL is not set: no PostgreSQL to test against")
            url = stack.enter_context(contextlib.contextmanager(postgres_schema_url)(base))
            env["TASKS_DATABASE_URL"] = url
        running = start_server(workdir / "tasks.sqlite3", workdir, **env)
        stack.callback(running.stop)
        yield running


@pytest.fixture(autouse=True)
def _plain_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the shell running the suite sets, the terminal view is the tests' choice."""
    for name in (*TERMINAL_SETTINGS, "TASKS_URL", "TASKS_TOKEN"):
        monkeypatch.delenv(name, raising=False)


def batch_file(tmp_path: Path, *lines: Any) -> str:
    """A JSON Lines file of ``lines`` (each dumped as JSON unless it is a string already)."""
    path = tmp_path / "tasks.jsonl"
    path.write_text("".join(f"{x if isinstance(x, str) else json.dumps(x)}\n" for x in lines))
    return str(path)


def summary(err: str) -> re.Match[str]:
    found = SUMMARY.search(err)
    assert found, err
    return found


def test_submit_batch_prints_the_batch_and_its_tasks_know_it(
    server: Server, tmp_path: Path
) -> None:
    sleep = {"type": "sleep", "params": {"seconds": 0}, "queue": "cli-batch-lines"}
    path = batch_file(tmp_path, ADD, "", "   ", sleep, {**ADD, "priority": 5})
    code, out, err = run(server, "submit", "--batch", path)
    assert code == 0, err
    batch = json.loads(out)
    assert batch["size"] == 3 and len(batch["task_ids"]) == 3, "blank lines are skipped"
    assert err == (
        f"batch {batch['id']}: 3 tasks queued\n"
        f"follow it with `taskapi batch {batch['id']} --wait`\n"
    )
    assert all(len(line) <= 80 for line in err.splitlines())

    code, out, err = run(server, "list", "--batch", batch["id"])
    assert code == 0 and err == "page 1 of 1, 3 tasks\n"
    rows = [line.split("\t") for line in out.splitlines()]
    assert [row[0] for row in rows] == batch["task_ids"][::-1], "newest first"
    assert [row[1] for row in rows] == ["add", "sleep", "add"]

    code, out, err = run(server, "status", batch["task_ids"][2])
    assert code == 0 and json.loads(out)["priority"] == 5
    assert err == f"in batch {batch['id']}\n"


def test_submit_batch_wait_shows_progress_and_exits_0_when_all_succeeded(
    server: Server, tmp_path: Path
) -> None:
    lines = [{"type": "add", "params": {"x": n, "y": 1}} for n in range(5)]
    code, out, err = run(server, "submit", "--batch", batch_file(tmp_path, *lines), "--wait")
    assert code == 0, err
    batch = json.loads(out)
    assert batch["done"] and batch["counts"]["succeeded"] == 5
    assert batch["finished_at"] is not None
    said = err.splitlines()
    assert said[0] == f"batch {batch['id']}: 5 tasks queued"
    assert said[-2] == "5/5 ended: 5 succeeded", err
    assert re.fullmatch(r"✓ 5 succeeded in [0-9.]+s", said[-1]), err
    assert all(re.fullmatch(r"\d/5 ended: .+", line) for line in said[1:-1]), err


def test_submit_batch_wait_exits_1_when_a_task_failed(server: Server, tmp_path: Path) -> None:
    failing = {"type": "fail", "params": {"message": "broken"}, "max_attempts": 1}
    code, out, err = run(
        server, "submit", "--batch", batch_file(tmp_path, ADD, failing, ADD), "--wait"
    )
    assert code == 1, err
    assert json.loads(out)["counts"] == {
        "queued": 0,
        "running": 0,
        "succeeded": 2,
        "failed": 1,
        "cancelled": 0,
    }
    assert err.splitlines()[-1] == "✗ 2 of 3 succeeded: 1 failed", err


def test_a_batch_is_read_from_stdin(server: Server) -> None:
    result = CliRunner().invoke(
        main,
        ["submit", "--batch", "-", "--wait", "--url", server.url],
        input=f"{json.dumps(ADD)}\n{json.dumps(ADD)}\n",
    )
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["counts"]["succeeded"] == 2


def test_a_batch_file_that_starts_with_a_byte_order_mark_is_read(
    server: Server, tmp_path: Path
) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_text(f"{json.dumps(ADD)}\n{json.dumps(ADD)}\n", encoding="utf-8-sig")
    code, out, err = run(server, "submit", "--batch", str(path))
    assert code == 0, err
    assert json.loads(out)["size"] == 2


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([ADD, "", '{"type": add}'], "error: tasks.jsonl:3: not JSON: Expecting value (column 10)"),
        ([ADD, [ADD]], "error: tasks.jsonl:2: an array, not a task: a task is a JSON object like"),
        (['"add x=1"'], "error: tasks.jsonl:1: a string, not a task"),
        (['{"type": "add", "params": {"x": NaN, "y": 2}}'], "error: tasks.jsonl:1: not JSON: NaN "),
        (["", "  "], "error: tasks.jsonl has no tasks: write one JSON object a line"),
        (
            [ADD] * 1001,
            "error: tasks.jsonl has 1001 tasks; a batch holds at most 1000 (the server's "
            "limit).\nSplit the file (split -l 1000) and submit each part.",
        ),
    ],
)
def test_a_bad_batch_file_is_refused_before_anything_is_sent(
    tmp_path: Path, lines: list[Any], message: str
) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens: a request would say so
    path = batch_file(tmp_path, *lines)
    result = CliRunner().invoke(main, ["submit", "--batch", path, "--url", url])
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith(message.replace("tasks.jsonl", path)), result.stderr
    assert "cannot reach" not in result.stderr


def test_a_refused_batch_names_the_lines_of_the_file_and_creates_nothing(
    server: Server, tmp_path: Path
) -> None:
    queue = "cli-refused-batch"
    path = batch_file(
        tmp_path,
        {**ADD, "queue": queue},
        "",
        {"type": "add", "params": {"x": "two"}, "queue": queue},
        {"type": "nope", "params": {}},
        {**ADD, "depends_on": ["not-an-id"]},
    )
    code, out, err = run(server, "submit", "--batch", path)
    assert (code, out) == (2, "")
    lines = err.splitlines()
    assert lines[0].startswith("error: Unprocessable Entity: "), err
    assert lines[1:] == [
        f"  {path}:3: params.x: Not a valid integer.",
        f"  {path}:3: params.y: Missing data for required field.",
        f"  {path}:4: type: Unknown task type; use one of: add, fail, sleep.",
        f"  {path}:5: depends_on.0: Not a valid id: a UUID such as "
        "0b9f7d2e-8c1a-4f43-9d8e-5c2b1a7e6f10.",
    ], err
    assert run(server, "list", "--queue", queue) == (0, "", "no tasks\n"), "all or nothing"


def test_a_batch_depending_on_an_unknown_task_is_refused_on_its_line(
    server: Server, tmp_path: Path
) -> None:
    unknown = "00000000-0000-4000-8000-000000000000"
    path = batch_file(tmp_path, ADD, {**ADD, "depends_on": [unknown]})
    code, _, err = run(server, "submit", "--batch", path)
    assert code == 2
    assert f"\n  {path}:2: depends_on: {unknown}: no task of yours has this id" in err, err


@pytest.mark.parametrize(
    "extra", [["add", "x=1"], ["--priority", "3"], ["--after", "00000000-0000-4000-8000-0"]]
)
def test_batch_takes_its_tasks_from_the_file_only(tmp_path: Path, extra: list[str]) -> None:
    result = CliRunner().invoke(main, ["submit", "--batch", batch_file(tmp_path, ADD), *extra])
    assert result.exit_code == 2
    assert "--batch takes its tasks from the file" in result.stderr


def test_submit_needs_a_type_or_a_batch() -> None:
    result = CliRunner().invoke(main, ["submit"])
    assert result.exit_code == 2
    assert "Missing argument 'TYPE' (or --batch FILE.jsonl)." in result.stderr


def _submit(server: Server, *args: str) -> dict[str, Any]:
    code, out, err = run(server, "submit", *args)
    assert code == 0, err
    task: dict[str, Any] = json.loads(out)
    return task


def test_submit_after_waits_for_its_dependencies_then_runs(server: Server) -> None:
    first = _submit(server, "sleep", "seconds=2")
    second = _submit(server, "sleep", "seconds=3")
    code, out, err = run(
        server, "submit", "add", "x=4", "y=5", "--after", first["id"], "--after", second["id"]
    )
    assert code == 0, err
    task = json.loads(out)
    assert task["depends_on"] == [first["id"], second["id"]]
    assert task["status"] == "queued" and task["blocked_by"]

    code, _, err = run(server, "status", task["id"])
    assert code == 0 and re.fullmatch(r"waiting for [12] of its 2 dependencies\n", err), err

    code, out, err = run(server, "submit", "add", "x=1", "y=1", "--after", task["id"], "--wait")
    assert code == 0, err
    assert json.loads(out)["result"] == 2
    lines = err.splitlines()
    assert lines[0] == "waiting for its dependency", err
    assert lines[-2:-1] == ["its dependency succeeded"], err
    assert lines[-1].startswith("✓ succeeded in"), err
    code, _, err = run(server, "status", task["id"])
    assert (code, err) == (0, ""), "a task that ran says nothing of its dependencies"


def test_a_failed_dependency_cancels_the_task_waiting_for_it(server: Server) -> None:
    held = _submit(server, "add", "x=1", "y=2", "--delay", "600")
    waiting = _submit(server, "add", "x=3", "y=4", "--after", held["id"])
    last = _submit(server, "add", "x=5", "y=6", "--after", waiting["id"])
    assert run(server, "cancel", held["id"])[0] == 0

    code, out, err = run(server, "submit", "add", "x=1", "y=1", "--after", last["id"], "--wait")
    assert code == 1
    assert json.loads(out)["error"]["type"] == "DependencyFailed"
    assert err.splitlines()[-1].startswith(
        f"✗ cancelled: DependencyFailed: Task {last['id']}, which this task depends on, ended "
        "cancelled"
    ), err
    ended = wait_terminal(server, waiting["id"])
    assert (ended["status"], ended["error"]["type"]) == ("cancelled", "DependencyFailed")
    assert f"Task {held['id']}," in ended["error"]["message"]


def test_submit_after_an_unknown_task_exits_2_naming_it(server: Server) -> None:
    unknown = "00000000-0000-4000-8000-000000000000"
    code, out, err = run(server, "submit", "add", "x=1", "y=2", "--after", unknown)
    assert (code, out) == (2, "")
    assert f"json.depends_on: {unknown}: no task of yours has this id" in err, err


def test_batch_shows_cancels_and_waits_for_a_batch(server: Server, tmp_path: Path) -> None:
    sleep = {"type": "sleep", "params": {"seconds": 30}}
    _, out, _ = run(server, "submit", "--batch", batch_file(tmp_path, sleep, sleep))
    batch_id = json.loads(out)["id"]

    code, out, err = run(server, "batch", batch_id)
    assert code == 0 and json.loads(out)["id"] == batch_id
    shown = summary(err)
    assert (shown["id"], shown["size"], shown["done"]) == (batch_id, "2", "not done")
    assert shown["finished"] is None and shown["counts"] in (
        "2 running",
        "1 running, 1 queued",
        "2 queued",
    )
    assert all(len(line) <= 80 for line in err.splitlines())

    code, out, err = run(server, "batch", batch_id, "--cancel")
    assert code == 0, err
    cancelled = json.loads(out)
    assert cancelled["counts"]["queued"] == 0, "queued tasks are cancelled at once"
    if cancelled["counts"]["running"]:
        assert "asked to stop" in err.splitlines()[-1], err

    code, out, err = run(server, "batch", batch_id, "--wait")
    assert code == 1, err
    done = json.loads(out)
    assert done["done"] and done["counts"]["cancelled"] == 2
    assert err.splitlines()[-1] == "✗ 0 of 2 succeeded: 2 cancelled", err

    code, _, err = run(server, "batch", batch_id)
    shown = summary(err)
    assert (shown["done"], shown["counts"]) == ("done", "2 cancelled")
    assert shown["finished"], err


def test_batch_cancel_wait_follows_the_cancelled_batch_to_its_end(
    server: Server, tmp_path: Path
) -> None:
    held = {**ADD, "delay_seconds": 600}
    _, out, _ = run(server, "submit", "--batch", batch_file(tmp_path, held, held))
    batch_id = json.loads(out)["id"]
    code, out, err = run(server, "batch", batch_id, "--cancel", "--wait")
    assert code == 1
    assert json.loads(out)["counts"]["cancelled"] == 2
    assert err.splitlines()[-1] == "✗ 0 of 2 succeeded: 2 cancelled", err


@pytest.mark.parametrize("args", [[], ["--wait"], ["--cancel"]])
def test_an_unknown_batch_exits_2_with_the_problem(server: Server, args: list[str]) -> None:
    unknown = "00000000-0000-7000-8000-000000000000"
    code, out, err = run(server, "batch", unknown, *args)
    assert (code, out) == (2, "")
    assert err.startswith(f"error: Not Found: There is no batch with id '{unknown}'"), err


def test_list_batch_of_an_unknown_or_malformed_id(server: Server) -> None:
    assert run(server, "list", "--batch", "00000000-0000-7000-8000-000000000000") == (
        0,
        "",
        "no tasks\n",
    )
    code, _, err = run(server, "list", "--batch", "not-an-id")
    assert code == 2 and "query.batch: " in err, err


def test_batch_wait_draws_a_progress_bar_on_a_terminal(server: Server, tmp_path: Path) -> None:
    sleeps = [{"type": "sleep", "params": {"seconds": s}} for s in (1, 2)]
    path = batch_file(tmp_path, *sleeps)
    code, screen, out = run_on_terminal("submit", "--batch", path, "--wait", "--url", server.url)
    assert code == 0, screen
    assert json.loads(out)["counts"]["succeeded"] == 2, "stdout keeps the batch as JSON"
    assert ESCAPE not in out
    frames = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)
    assert "━" in frames, "the bar"
    assert re.search(r" [01]/2 ", frames), frames
    assert "running" in frames, frames
    assert frames.strip().splitlines()[-1].startswith("✓ 2 succeeded in"), frames


def test_interrupting_batch_wait_leaves_the_batch_going_on(server: Server, tmp_path: Path) -> None:
    path = batch_file(tmp_path, {"type": "sleep", "params": {"seconds": 3}})
    process = subprocess.Popen(
        [*TASKAPI, "submit", "--batch", path, "--wait", "--url", server.url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
        cwd=ROOT,
        preexec_fn=default_sigint,
    )
    assert process.stderr is not None
    queued = re.fullmatch(r"batch (\S+): 1 task queued\n", process.stderr.readline())
    assert queued, "the batch's id comes first"
    assert process.stderr.readline().startswith("0/1 ended: "), "then its progress"
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=10)
    assert process.returncode == 130 and out == ""
    assert err.endswith(
        f"interrupted: batch {queued[1]} goes on; "
        f"follow it with `taskapi batch {queued[1]} --wait`\n"
    ), err
    status, batch = server.request("GET", f"/batches/{queued[1]}?wait=10")
    assert status == 200 and batch["counts"]["succeeded"] == 1, batch
