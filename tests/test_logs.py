"""Logs: a line per request and per task transition, tied together by ids; JSON on demand."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from api.logs import FLUSH_SECONDS, BatchingHandler, TextFormatter
from tests.processes import start_server

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_json_logs_of_a_live_server_follow_a_task_from_request_to_end(tmp_path: Path) -> None:
    server = start_server(tmp_path / "tasks.sqlite3", tmp_path, TASKS_LOG_FORMAT="json")
    try:
        status, task = server.request(
            "POST", "/tasks", {"type": "fail", "params": {"message": "disk on fire"}}
        )
        assert status == 202
        deadline = time.monotonic() + 15
        while server.request("GET", f"/tasks/{task['id']}")[1]["status"] != "failed":
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        server.stop()
    lines = [json.loads(line) for line in server.log.read_text().splitlines() if line.strip()]
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    submit = next(
        line for line in lines if line["logger"] == "api.requests" and line["method"] == "POST"
    )
    assert submit["status"] == 202 and submit["path"] == "/tasks"
    # The API process logs the submit, the worker process the attempts: each process's lines
    # keep their order, the two interleave as they are written.
    about_task = [line for line in lines if line.get("task_id") == task["id"]]
    messages = [line["message"] for line in about_task]
    queued = about_task[messages.index(f"task {task['id']} (fail) queued")]
    assert queued["request_id"] == submit["request_id"]
    attempts = [m for m in messages if "queued" not in m]
    assert any("attempt 1 failed: TaskFailure" in m for m in attempts)
    assert attempts[-1] == f"task {task['id']} failed: TaskFailure: disk on fire"
    assert any(line["logger"] == "gunicorn.error" for line in lines), "gunicorn's lines too"


def test_an_unknown_log_format_stops_start_up_with_a_plain_message(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "api.cli", "serve", "--port", "1"],
        env={"TASKS_LOG_FORMAT": "xml", "TASKS_DATABASE_URL": f"sqlite:///{tmp_path}/t.db",
             "PATH": "/usr/bin:/bin"},
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert "TASKS_LOG_FORMAT must be text or json, not 'xml'" in result.stderr


def test_text_lines_cannot_be_forged_by_client_text() -> None:
    record = logging.LogRecord(
        "api.requests", logging.INFO, __file__, 1, "GET %s 404", ("/x\n2030-01-01 INFO forged",),
        None,
    )  # fmt: skip
    line = TextFormatter().format(record)
    assert "\n" not in line and "/x\\n2030-01-01 INFO forged" in line


class _Collected(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


@pytest.fixture
def batching() -> Iterator[Callable[[io.StringIO], logging.Logger]]:
    """A logger of its own writing through a BatchingHandler to a stream; removed after."""
    made: list[tuple[logging.Logger, logging.Handler]] = []

    def make(stream: io.StringIO) -> logging.Logger:
        handler = BatchingHandler(stream)
        logger = logging.getLogger(f"test.batching.{id(handler)}")
        logger.propagate = False
        logger.setLevel(logging.INFO)
        logger.addHandler(handler)
        made.append((logger, handler))
        return logger

    yield make
    for logger, handler in made:
        logger.removeHandler(handler)
        handler.close()


def test_info_lines_are_written_together_within_moments(batching: Any) -> None:
    stream = _Collected()
    logger = batching(stream)
    for n in range(50):
        logger.info("line %d", n)
    deadline = time.monotonic() + 5
    while stream.getvalue().count("\n") < 50 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert stream.getvalue().splitlines() == [f"line {n}" for n in range(50)]
    assert stream.writes < 10  # in batches, not a write per line


def test_a_warning_is_written_at_once_after_the_lines_before_it(batching: Any) -> None:
    stream = _Collected()
    logger = batching(stream)
    logger.info("before")
    logger.warning("trouble")
    assert stream.getvalue().splitlines() == ["before", "trouble"]


def test_lines_pending_at_exit_are_written() -> None:
    script = (
        "import logging, sys\n"
        "from api.logs import handler\n"
        "logging.basicConfig(level='INFO', handlers=[handler('text')])\n"
        "for n in range(3): logging.getLogger('t').info('bye %d', n)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    said = [line.split(": ")[-1] for line in done.stderr.splitlines()]
    assert said == ["bye 0", "bye 1", "bye 2"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_write_its_parents_lines_again(tmp_path: Path) -> None:
    out = tmp_path / "log"
    script = (
        "import logging, os, sys\n"
        "from api.logs import BatchingHandler\n"
        f"stream = open({str(out)!r}, 'a', buffering=1)\n"
        "logging.basicConfig(level='INFO', format='%(message)s',\n"
        "                    handlers=[BatchingHandler(stream)])\n"
        "import time\n"
        "logging.getLogger('t').info('parent, first')\n"
        "time.sleep(0.3)  # the flusher has written the first line and sleeps\n"
        "logging.getLogger('t').info('parent, before the fork')\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    logging.getLogger('t').info('child')\n"
        "    logging.shutdown(); os._exit(0)\n"
        "os.waitpid(pid, 0)\n"
        "logging.getLogger('t').info('parent, after')\n"
    )
    subprocess.run([sys.executable, "-c", script], timeout=60, check=True)
    lines = out.read_text().splitlines()
    assert sorted(lines) == sorted(
        ["parent, first", "parent, before the fork", "child", "parent, after"]
    )
    assert lines[:2] == ["parent, first", "parent, before the fork"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_writes_its_lines_without_waiting_for_exit(tmp_path: Path) -> None:
    # The parent's flusher thread does not survive the fork: the child must start its own,
    # or its lines would wait for its exit (a gunicorn worker lives for days).
    out = tmp_path / "log"
    script = (
        "import logging, os, time\n"
        "from api.logs import BatchingHandler\n"
        f"stream = open({str(out)!r}, 'a', buffering=1)\n"
        "logging.basicConfig(level='INFO', format='%(message)s',\n"
        "                    handlers=[BatchingHandler(stream)])\n"
        "logging.getLogger('t').info('parent')  # starts the parent's flusher\n"
        "time.sleep(0.3)\n"
        "if os.fork() == 0:\n"
        "    logging.getLogger('t').info('child')\n"
        "    time.sleep(1)\n"
        "    os._exit(0)  # no logging.shutdown: only a flusher could have written it\n"
        "os.wait()\n"
    )
    subprocess.run([sys.executable, "-c", script], timeout=60, check=True)
    assert out.read_text().splitlines() == ["parent", "child"]


def test_after_close_lines_are_written_at_once(batching: Any) -> None:
    stream = _Collected()
    logger = batching(stream)
    logger.info("before")
    logger.handlers[0].close()
    assert stream.getvalue().splitlines() == ["before"]
    logger.info("late")  # a thread still logging after logging.shutdown()
    assert stream.getvalue().splitlines() == ["before", "late"]


def test_a_closed_stream_loses_its_lines_once_and_says_so_once(
    batching: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    stream = _Collected()
    logger = batching(stream)
    stream.close()
    logger.info("nowhere to go")
    time.sleep(4 * FLUSH_SECONDS)
    assert capsys.readouterr().err.count("log lines lost") == 1
