"""Callbacks on the command line: ``submit --callback``, what ``status`` says of a delivery,
and ``taskapi callback ID [--resend]``.

Most tests talk to a stand-in server (``FakeTaskapi``: canned TaskStatus documents and
problems, every request recorded), so that each state of a delivery (pending with attempts,
delivered, failed, a receiver's hostile error text) and each refusal of a resend is shown
exactly; the last ones run against a live ``taskapi serve`` with callbacks on and a receiver on
this machine.
"""

from __future__ import annotations

import http.server
import json
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from api.cli import main
from tests.processes import Server, start_server
from tests.test_cli import ESCAPE, TERMINAL_SETTINGS

TASK_ID = "0b7c2f4e-6a47-4a55-9d0c-3f1f8e1c2a9d"
#: The settings of a live server with callbacks on, to a receiver on this machine.
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
CALLBACKS_ON = {"TASKS_CALLBACK_HOSTS": "127.0.0.1", "TASKS_WEBHOOK_SECRET": SECRET}
HOOK = "https://hooks.example.com/taskapi"
LOCAL_TIME = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def task_status(
    status: str = "succeeded", callback_url: str | None = HOOK, **callback: Any
) -> dict[str, Any]:
    """A TaskStatus as the API answers it; ``callback`` given: its delivery, else none."""
    now = datetime.now(UTC)
    delivery = None
    if callback:
        delivery = {
            "state": "pending",
            "event": f"task.{status}",
            "webhook_id": f"msg_{TASK_ID}",
            "attempts": 0,
            "last_attempt_at": None,
            "next_attempt_at": None,
            "delivered_at": None,
            "last_status": None,
            "last_error": None,
            **callback,
        }
    return {
        "id": TASK_ID,
        "type": "add",
        "status": status,
        "params": {"x": 1, "y": 2, "delay_seconds": 0},
        "result": 3 if status == "succeeded" else None,
        "error": None,
        "progress": None,
        "attempts": 1,
        "max_attempts": 1,
        "priority": 0,
        "cancel_requested": False,
        "created_at": stamp(now - timedelta(minutes=10)),
        "finished_at": stamp(now - timedelta(minutes=9)),
        "queue": "default",
        "depends_on": [],
        "blocked_by": [],
        "batch_id": None,
        "callback_url": callback_url,
        "callback": delivery,
    }


def problem(status: int, title: str, detail: str) -> tuple[int, dict[str, Any]]:
    return status, {"type": "about:blank", "title": title, "status": status, "detail": detail}


class FakeTaskapi:
    """A stand-in server: ``answers`` maps ``(method, path)`` to ``(status, document)``;
    ``requests`` records ``(method, path, body)`` of every request."""

    def __init__(self) -> None:
        self.answers: dict[tuple[str, str], tuple[int, Any]] = {}
        self.requests: list[tuple[str, str, Any]] = []
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                fake.requests.append((self.command, self.path, json.loads(raw) if raw else None))
                status, document = fake.answers.get(
                    (self.command, self.path),
                    problem(404, "Not Found", f"There is no task at {self.path}."),
                )
                body = json.dumps(document).encode()
                self.send_response(status)
                kind = "application/json" if status < 400 else "application/problem+json"
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = answer

            def log_message(self, *args: Any) -> None:
                return None

        self.http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)

    def task(self, task: dict[str, Any]) -> None:
        """Answer ``GET /tasks/{id}`` with ``task``."""
        self.answers[("GET", f"/tasks/{task['id']}")] = (200, task)


@pytest.fixture
def fake() -> Iterator[FakeTaskapi]:
    server = FakeTaskapi()
    server.thread.start()
    yield server
    server.http.shutdown()
    server.http.server_close()
    server.thread.join()


@pytest.fixture(autouse=True)
def _plain_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*TERMINAL_SETTINGS, "TASKS_URL", "TASKS_TOKEN"):
        monkeypatch.delenv(name, raising=False)


def run(url: str, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [*args, "--url", url])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.stdout, result.stderr


# -- submit --callback ---------------------------------------------------------------------------


def test_submit_callback_sends_the_callback_url(fake: FakeTaskapi) -> None:
    queued = task_status("queued")
    fake.answers[("POST", "/tasks")] = (202, queued)
    code, out, _ = run(fake.url, "submit", "add", "x=1", "y=2", "--callback", HOOK)
    assert code == 0
    assert json.loads(out) == queued
    assert fake.requests == [
        ("POST", "/tasks", {"type": "add", "params": {"x": 1, "y": 2}, "callback_url": HOOK})
    ]


def test_submit_without_callback_sends_no_callback_url(fake: FakeTaskapi) -> None:
    fake.answers[("POST", "/tasks")] = (202, task_status("queued", callback_url=None))
    assert run(fake.url, "submit", "add", "x=1", "y=2")[0] == 0
    assert "callback_url" not in fake.requests[0][2]


def test_a_callback_url_the_server_refuses_is_said_with_its_field(fake: FakeTaskapi) -> None:
    fake.answers[("POST", "/tasks")] = (
        422,
        {
            "type": "about:blank",
            "title": "Unprocessable Entity",
            "status": 422,
            "detail": "Some fields of the request are invalid; `errors` says which and why.",
            "errors": {"json": {"callback_url": ["Host evil.example:443 is not allowed."]}},
        },
    )
    code, out, err = run(
        fake.url, "submit", "add", "x=1", "y=2", "--callback", "https://evil.example/"
    )
    assert (code, out) == (2, "")
    assert err.endswith("\n  json.callback_url: Host evil.example:443 is not allowed.\n"), err


def test_submit_batch_takes_the_callback_url_from_each_line(
    fake: FakeTaskapi, tmp_path: Path
) -> None:
    lines = tmp_path / "tasks.jsonl"
    lines.write_text(json.dumps({"type": "add", "params": {"x": 1, "y": 2}}) + "\n")
    code, _, err = run(fake.url, "submit", "--batch", str(lines), "--callback", HOOK)
    assert code == 2
    assert "callback_url" in err and "in each line instead" in err, err
    assert fake.requests == [], "nothing was sent"


# -- status ---------------------------------------------------------------------------------------


def test_status_says_a_delivered_callback(fake: FakeTaskapi) -> None:
    delivered = datetime.now(UTC) - timedelta(minutes=3, seconds=5)
    fake.task(
        task_status(
            state="delivered",
            attempts=2,
            last_status=204,
            delivered_at=stamp(delivered),
            last_attempt_at=stamp(delivered),
        )
    )
    code, out, err = run(fake.url, "status", TASK_ID)
    assert code == 0
    assert json.loads(out)["callback"]["state"] == "delivered", "stdout is the task, as it was"
    assert re.fullmatch(
        rf"callback delivered: task\.succeeded to {re.escape(HOOK)}\n"
        rf"delivered {LOCAL_TIME} \(3m0[5-9]s ago\) after 2 attempts: HTTP 204\n",
        err,
    ), err


def test_status_says_a_pending_callback_its_last_answer_and_next_attempt(
    fake: FakeTaskapi,
) -> None:
    due = datetime.now(UTC) + timedelta(minutes=29, seconds=58)
    fake.task(
        task_status(
            "failed",
            attempts=3,
            last_status=503,
            last_error="answered 503 Service Unavailable",
            next_attempt_at=stamp(due),
        )
    )
    code, _, err = run(fake.url, "status", TASK_ID)
    assert code == 0
    assert re.fullmatch(
        rf"callback pending: task\.failed to {re.escape(HOOK)}\n"
        rf"3 of 8 attempts made, the last: answered 503 Service Unavailable; next "
        rf"attempt "
        rf"{LOCAL_TIME} \(in 29m5[0-9]s\)\n",
        err,
    ), err


def test_status_says_a_failed_callback_that_got_no_answer(fake: FakeTaskapi) -> None:
    fake.task(
        task_status(
            state="failed",
            attempts=8,
            last_error="connection refused",
        )
    )
    code, _, err = run(fake.url, "status", TASK_ID)
    assert code == 0
    assert err == (
        f"callback failed: task.succeeded to {HOOK}\ngave up after 8 attempts: connection refused\n"
    )


def test_status_says_an_attempt_under_way(fake: FakeTaskapi) -> None:
    fake.task(task_status(state="pending", attempts=2))
    code, _, err = run(fake.url, "status", TASK_ID)
    assert (code, err) == (
        0,
        f"callback pending: task.succeeded to {HOOK}\nattempt 2 of 8 under way\n",
    )


def test_status_of_a_running_task_says_its_callback_comes_when_it_ends(fake: FakeTaskapi) -> None:
    fake.task(task_status("running"))
    code, _, err = run(fake.url, "status", TASK_ID)
    assert (code, err) == (0, f"callback to {HOOK}: sent when the task ends\n")


def test_status_of_a_task_without_callback_says_nothing_of_one(fake: FakeTaskapi) -> None:
    fake.task(task_status(callback_url=None))
    code, out, err = run(fake.url, "status", TASK_ID)
    assert (code, err) == (0, "")
    assert json.loads(out)["id"] == TASK_ID


def test_a_receivers_error_cannot_drive_the_terminal(fake: FakeTaskapi) -> None:
    """last_error is the receiver's text, callback_url the caller's: control characters in
    them are shown escaped, never written to the terminal."""
    fake.task(
        task_status(
            state="failed",
            attempts=1,
            last_status=410,
            last_error="Gone\x1b[2J\x1b]0;owned\x07\nfake line",
        )
        | {"callback_url": HOOK + "?\x1b[31m"}
    )
    code, _, err = run(fake.url, "status", TASK_ID)
    assert code == 0
    assert ESCAPE not in err and "\x07" not in err
    assert err == (
        f"callback failed: task.succeeded to {HOOK}?\\x1b[31m\n"
        "gave up after 1 attempt: Gone\\x1b[2J\\x1b]0;owned\\x07\\nfake line\n"
    )


# -- taskapi callback ------------------------------------------------------------------------------


def test_callback_prints_the_delivery_and_says_how_to_send_a_failed_one_again(
    fake: FakeTaskapi,
) -> None:
    task = task_status(
        state="failed",
        attempts=8,
        last_status=500,
        last_error="answered 500 Internal Server Error",
    )
    fake.task(task)
    code, out, err = run(fake.url, "callback", TASK_ID)
    assert code == 0
    assert json.loads(out) == task["callback"]
    assert err == (
        f"callback failed: task.succeeded to {HOOK}\n"
        "gave up after 8 attempts: answered 500 Internal Server Error\n"
        f"send it again with `taskapi callback {TASK_ID} --resend`\n"
    )
    assert [r[:2] for r in fake.requests] == [("GET", f"/tasks/{TASK_ID}")], "nothing was sent"


def test_callback_of_a_task_not_ended_prints_null(fake: FakeTaskapi) -> None:
    fake.task(task_status("queued"))
    code, out, err = run(fake.url, "callback", TASK_ID)
    assert (code, json.loads(out)) == (0, None)
    assert err == f"callback to {HOOK}: sent when the task ends\n"


def test_callback_of_a_task_without_callback_url_exits_2(fake: FakeTaskapi) -> None:
    fake.task(task_status(callback_url=None))
    code, out, err = run(fake.url, "callback", TASK_ID)
    assert (code, out) == (2, "")
    assert err == (
        f"error: task {TASK_ID} has no callback_url: it was submitted without one "
        "(taskapi submit TYPE … --callback URL sets it)\n"
    )


def test_callback_resend_sends_it_again_and_prints_the_pending_delivery(
    fake: FakeTaskapi,
) -> None:
    now = datetime.now(UTC)
    again = task_status(state="pending", attempts=0, next_attempt_at=stamp(now))
    fake.answers[("POST", f"/tasks/{TASK_ID}/callback/retry")] = (202, again)
    code, out, err = run(fake.url, "callback", TASK_ID, "--resend")
    assert code == 0
    assert json.loads(out) == again["callback"]
    assert [r[:2] for r in fake.requests] == [("POST", f"/tasks/{TASK_ID}/callback/retry")]
    assert re.fullmatch(
        rf"task {TASK_ID}: its callback is sent again\n"
        rf"callback pending: task\.succeeded to {re.escape(HOOK)}\n"
        rf"first attempt due {LOCAL_TIME} \([0-9]s ago\)\n",
        err,
    ), err


def test_callback_resend_of_a_pending_callback_says_it_is_still_being_sent(
    fake: FakeTaskapi,
) -> None:
    due = datetime.now(UTC) + timedelta(minutes=4, seconds=58)
    fake.answers[("POST", f"/tasks/{TASK_ID}/callback/retry")] = problem(
        409, "Conflict", f"The callback of task {TASK_ID} is still pending."
    )
    fake.task(task_status(attempts=2, last_status=502, next_attempt_at=stamp(due)))
    code, out, err = run(fake.url, "callback", TASK_ID, "--resend")
    assert (code, out) == (2, "")
    assert re.fullmatch(
        rf"error: Conflict: The callback of task {TASK_ID} is still pending\.\n"
        rf"callback pending: task\.succeeded to {re.escape(HOOK)}\n"
        rf"2 of 8 attempts made, the last: HTTP 502; next attempt {LOCAL_TIME} "
        rf"\(in 4m5[0-9]s\)\n"
        r"it is still being sent: the server retries it without being asked\n",
        err,
    ), err


@pytest.mark.parametrize(
    ("task", "why"),
    [
        (task_status(callback_url=None), "has no callback_url: it was submitted without one"),
        (task_status("running"), "is running: it has not ended yet"),
    ],
    ids=["no callback_url", "not ended"],
)
def test_callback_resend_refused_says_why(
    fake: FakeTaskapi, task: dict[str, Any], why: str
) -> None:
    fake.answers[("POST", f"/tasks/{TASK_ID}/callback/retry")] = problem(
        409, "Conflict", "Only a delivered or failed callback can be sent again."
    )
    fake.task(task)
    code, out, err = run(fake.url, "callback", TASK_ID, "--resend")
    assert (code, out) == (2, "")
    first, *rest = err.splitlines()
    assert first == "error: Conflict: Only a delivered or failed callback can be sent again."
    assert f"task {TASK_ID} {why}" in rest[-1], err


def test_callback_of_an_unknown_task_exits_2_with_the_problem(fake: FakeTaskapi) -> None:
    for args in (("callback", TASK_ID), ("callback", TASK_ID, "--resend")):
        code, out, err = run(fake.url, *args)
        assert (code, out) == (2, "")
        assert err == f"error: Not Found: There is no task at /tasks/{TASK_ID}" + (
            "/callback/retry.\n" if "--resend" in args else ".\n"
        )


def test_callback_help_shows_its_examples() -> None:
    result = CliRunner().invoke(main, ["callback", "--help"], terminal_width=100)
    assert result.exit_code == 0
    assert f"\n      taskapi callback {TASK_ID} --resend\n" in result.stdout
    assert "--callback URL" in CliRunner().invoke(main, ["submit", "--help"]).stdout


# -- against a live server with callbacks on (needs the server side of callbacks) ----------------


class Receiver:
    """A webhook receiver on this machine: it answers each delivery with the next status of
    ``statuses`` (the last one over and over) and keeps ``(headers, body)`` of each."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses) or [204]
        self.deliveries: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.deliveries.append((dict(self.headers), body))
                status = receiver.statuses[
                    min(len(receiver.deliveries), len(receiver.statuses)) - 1
                ]
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/hooks/taskapi"
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()
        self.thread.join()

    def verified(self) -> list[dict[str, Any]]:
        """Each delivery's event, verified as a receiver verifies it (standardwebhooks)."""
        from standardwebhooks.webhooks import Webhook

        return [Webhook(SECRET).verify(body, headers) for headers, body in self.deliveries]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir: Path = tmp_path_factory.mktemp("cli-callbacks")
    running = start_server(workdir / "tasks.sqlite3", workdir, **CALLBACKS_ON)
    yield running
    running.stop()


def wait_for_delivery(url: str, task_id: str, *states: str, timeout: float = 20) -> dict[str, Any]:
    """``taskapi callback ID`` until its state is one of ``states``: the delivery."""
    deadline = time.monotonic() + timeout
    while True:
        code, out, err = run(url, "callback", task_id)
        assert code == 0, err
        delivery = json.loads(out)
        if (delivery or {}).get("state") in states:
            return delivery
        assert time.monotonic() < deadline, f"still {delivery} after {timeout}s"
        time.sleep(0.2)


@pytest.mark.slow
def test_a_submitted_callback_is_delivered_signed_and_sent_again(
    live: Server, receiver: Receiver
) -> None:
    code, out, err = run(
        live.url, "submit", "add", "x=2", "y=3", "--callback", receiver.url, "--wait"
    )
    assert code == 0, err
    task = json.loads(out)
    assert (task["status"], task["callback_url"]) == ("succeeded", receiver.url)

    delivery = wait_for_delivery(live.url, task["id"], "delivered")
    assert delivery["webhook_id"] == f"msg_{task['id']}"
    assert (delivery["event"], delivery["attempts"], delivery["last_status"]) == (
        "task.succeeded",
        1,
        204,
    )
    [event] = receiver.verified()
    assert (event["type"], event["data"]["id"], event["data"]["result"]) == (
        "task.succeeded",
        task["id"],
        5,
    )
    code, _, err = run(live.url, "status", task["id"])
    assert code == 0
    assert err.startswith(f"callback delivered: task.succeeded to {receiver.url}\n"), err

    code, out, err = run(live.url, "callback", task["id"], "--resend")
    assert code == 0, err
    assert err.startswith(f"task {task['id']}: its callback is sent again\n"), err
    wait_for_delivery(live.url, task["id"], "delivered")
    assert len(receiver.deliveries) == 2
    first, again = receiver.verified()
    assert again["data"]["id"] == first["data"]["id"] == task["id"]
    ids = {headers["webhook-id"] for headers, _ in receiver.deliveries}
    assert ids == {f"msg_{task['id']}"}, "a resend keeps the webhook-id: receivers dedupe by it"


@pytest.mark.slow
def test_a_callback_host_not_allowed_is_refused_at_submit(live: Server) -> None:
    before = run(live.url, "list")[1]
    code, out, err = run(
        live.url, "submit", "add", "x=1", "y=2", "--callback", "https://hooks.example.com/x"
    )
    assert (code, out) == (2, "")
    assert "\n  json.callback_url: " in err and "TASKS_CALLBACK_HOSTS" in err, err
    assert run(live.url, "list")[1] == before, "nothing was created"


@pytest.mark.slow
def test_resend_of_a_task_without_callback_is_refused_and_explained(live: Server) -> None:
    code, out, err = run(live.url, "submit", "add", "x=1", "y=2", "--wait")
    task_id = json.loads(out)["id"]
    code, out, err = run(live.url, "callback", task_id, "--resend")
    assert (code, out) == (2, "")
    assert err.startswith("error: Conflict: "), err
    assert err.endswith(
        f"task {task_id} has no callback_url: it was submitted without one "
        "(taskapi submit TYPE … --callback URL sets it)\n"
    ), err
