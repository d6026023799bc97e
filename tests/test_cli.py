"""The ``taskapi`` client commands against a live server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from api.cli import main
from tests.processes import Server, free_port, start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir: Path = tmp_path_factory.mktemp("cli")
    running = start_server(workdir / "tasks.sqlite3", workdir)
    yield running
    running.stop()


def run(server: Server, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [*args, "--url", server.url])
    return result.exit_code, result.stdout, result.stderr


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


def test_submit_wait_shows_progress_and_reads_strings(server: Server) -> None:
    code, out, err = run(server, "submit", "sleep", "seconds=1.5", "--wait")
    assert code == 0 and json.loads(out)["result"] == {"slept": 1.5}
    assert "1/2" in err, err


def test_a_failed_task_makes_submit_wait_exit_non_zero(server: Server) -> None:
    code, out, _ = run(server, "submit", "fail", "message=broken", "--max-attempts", "1", "--wait")
    assert code == 1
    assert json.loads(out)["error"] == {"type": "TaskFailure", "message": "broken"}


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
