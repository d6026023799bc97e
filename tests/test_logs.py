"""Logs: a line per request and per task transition, tied together by ids; JSON on demand."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from api.logs import RequestContext, TextFormatter
from tests.processes import start_server

ROOT = Path(__file__).resolve().parent.parent


def test_a_request_id_is_made_when_absent_and_echoed_when_given(client: FlaskClient) -> None:
    made = client.get("/health").headers["X-Request-ID"]
    assert len(made) == 32 and made != client.get("/health").headers["X-Request-ID"]
    given = client.get("/health", headers={"X-Request-ID": "req-42.a:b/c"})
    assert given.headers["X-Request-ID"] == "req-42.a:b/c"
    for unusable in ("", "has space", "x" * 129, "ünï"):
        answered = client.get("/health", headers={"X-Request-ID": unusable})
        assert answered.headers["X-Request-ID"] not in (unusable, ""), unusable


def test_refusals_have_request_ids_too(client: FlaskClient) -> None:
    response = client.post("/tasks", data="not json", content_type="text/plain")
    assert response.status_code == 415 and response.headers["X-Request-ID"]


def test_one_line_per_request_and_the_submit_line_shares_its_id(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    caplog.handler.addFilter(RequestContext())  # as the service's own handler has it
    response = client.post(
        "/tasks", json={"type": "add", "params": {"x": 1, "y": 2}}, headers={"X-Request-ID": "r1"}
    )
    task_id = response.get_json()["id"]
    requests = [r for r in caplog.records if r.name == "api.requests"]
    assert [r.getMessage() for r in requests] == ["POST /tasks 202"]
    line = requests[0]
    assert (line.request_id, line.method, line.path, line.status) == ("r1", "POST", "/tasks", 202)
    assert line.duration_ms >= 0
    queued = [r for r in caplog.records if r.name == "api.service"]
    assert [(r.getMessage(), r.request_id, r.task_id) for r in queued] == [
        (f"task {task_id} (add) queued", "r1", task_id)
    ]


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
    about_task = [line for line in lines if line.get("task_id") == task["id"]]
    messages = [line["message"] for line in about_task]
    assert messages[0] == f"task {task['id']} (fail) queued"
    assert about_task[0]["request_id"] == submit["request_id"]
    assert any("attempt 1 started" in m for m in messages)
    assert messages[-1] == f"task {task['id']} failed: TaskFailure: disk on fire"
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
