"""A task's callback in the dashboard's detail panel, in a real browser: where it goes, its
delivery's state, attempts, last answer and next attempt or delivery time, and Send callback
again (``POST /tasks/{id}/callback/retry``).

The first test gives the page callback fields of its choosing (its route rewrites the real
server's answers for one task), so that a failed delivery with hostile text, a refused resend
and an accepted one are shown exactly; the second drives a live server with callbacks on and a
receiver on this machine, and needs the server side of callbacks.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Route

from tests.browser import ARTIFACTS, browse
from tests.processes import Server, start_server, wait_terminal
from tests.test_cli_callbacks import CALLBACKS_ON, Receiver
from tests.test_dashboard import HOSTILE, call, detail_field, expect, row, submit

pytestmark = pytest.mark.slow

HOSTILE_URL = (
    'https://hooks.example.com/"><img id="injected-url" src="/x" onerror="window.owned=2">'
)


def stamp(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def delivery(state: str, **fields: Any) -> dict[str, Any]:
    return {
        "state": state,
        "event": "task.succeeded",
        "webhook_id": "msg_x",
        "attempts": 0,
        "last_attempt_at": None,
        "next_attempt_at": None,
        "delivered_at": None,
        "last_status": None,
        "last_error": None,
        **fields,
    }


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    running = start_server(tmp_path / "tasks.sqlite3", tmp_path, TASKS_WORKERS="2")
    try:
        yield running
    finally:
        running.stop()


def test_dashboard_shows_a_failed_callback_and_sends_it_again(server: Server) -> None:
    task_id = submit(server, {"type": "add", "params": {"x": 1, "y": 2}})
    wait_terminal(server, task_id)
    now = datetime.now(UTC)
    shown = {
        "callback_url": HOSTILE_URL,
        "callback": delivery("failed", attempts=8, last_status=503, last_error=HOSTILE),
    }
    resends: list[str] = []

    def with_callback(context: BrowserContext) -> None:
        def read(route: Route) -> None:
            if route.request.method != "GET":
                route.fallback()
                return
            answer = route.fetch()
            task = answer.json() | shown
            route.fulfill(response=answer, body=json.dumps(task))

        def resend(route: Route) -> None:
            resends.append(route.request.method)
            if len(resends) == 1:  # the first click: another client resent it just before
                body = {
                    "type": "about:blank",
                    "title": "Conflict",
                    "status": 409,
                    "detail": f"The callback of task {task_id} is pending; it is being sent.",
                }
                route.fulfill(
                    status=409, content_type="application/problem+json", body=json.dumps(body)
                )
                return
            shown["callback"] = delivery("pending", next_attempt_at=stamp(now))
            task = call(server, "GET", f"/tasks/{task_id}")[1] | shown
            route.fulfill(status=202, content_type="application/json", body=json.dumps(task))

        context.route(f"{server.url}/tasks/{task_id}", read)
        context.route(f"{server.url}/tasks/{task_id}/callback/retry", resend)

    with browse(server, with_callback) as seen:  # the 409 is also in the console
        page = seen.page
        page.goto(server.url + "/dashboard")
        row(page, task_id).click()
        send = page.get_by_role("button", name="Send callback again")
        expect(detail_field(page, "callback_url")).to_have_text(HOSTILE_URL)
        badge = detail_field(page, "callback").locator(".badge")
        expect(badge).to_have_text("failed")
        expect(badge).to_have_class(re.compile(r"\bdelivery-failed\b"))
        expect(detail_field(page, "callback")).to_have_text(
            "failed · task.succeeded · 8 of 8 attempts"
        )
        expect(detail_field(page, "callback_last")).to_have_text(f"HTTP 503: {HOSTILE}")
        expect(detail_field(page, "callback_next")).to_have_count(0)
        # Both strings come from others (the caller, the receiver): shown as text, never HTML.
        expect(page.locator("#injected, #injected-url")).to_have_count(0)
        assert page.evaluate("window.owned") is None
        expect(send).to_be_visible()
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / "dashboard-callback.png", full_page=True)

        send.click()
        expect(page.locator("#detail-message")).to_have_text(
            f"Refused (409): The callback of task {task_id} is pending; it is being sent."
        )
        expect(send).to_be_enabled()
        expect(detail_field(page, "callback").locator(".badge")).to_have_text("failed")

        send.click()
        expect(page.locator("#detail-message")).to_have_text("The callback is sent again.")
        expect(detail_field(page, "callback").locator(".badge")).to_have_text("pending")
        expect(detail_field(page, "callback")).to_have_text(
            "pending · task.succeeded · 0 of 8 attempts"
        )
        expect(detail_field(page, "callback_next")).to_contain_text("(")
        expect(detail_field(page, "callback_last")).to_have_text("—")
        expect(send).to_be_hidden()  # pending: the server sends it without being asked
    assert resends == ["POST", "POST"]


def test_dashboard_without_callback_shows_no_callback_fields(server: Server) -> None:
    """A task submitted without callback_url: no callback fields, no button, as before."""
    task_id = submit(server, {"type": "add", "params": {"x": 1, "y": 2}})
    wait_terminal(server, task_id)
    with browse(server) as seen:
        page = seen.page
        page.goto(server.url + "/dashboard")
        row(page, task_id).click()
        expect(detail_field(page, "status")).to_have_text("succeeded")
        expect(detail_field(page, "callback_url")).to_have_count(0)
        expect(detail_field(page, "callback")).to_have_count(0)
        expect(page.get_by_role("button", name="Send callback again")).to_be_hidden()


def test_dashboard_follows_a_real_delivery_and_sends_it_again(tmp_path: Path) -> None:
    """A live server with callbacks on (needs the server side of callbacks): the receiver
    answers 410 Gone, so the delivery fails at once; Send callback again sends it anew, the
    receiver now answers 204, and the panel shows it delivered."""
    receiver = Receiver(410, 204)
    server = start_server(tmp_path / "tasks.sqlite3", tmp_path, TASKS_WORKERS="2", **CALLBACKS_ON)
    try:
        task_id = submit(
            server, {"type": "add", "params": {"x": 2, "y": 3}, "callback_url": receiver.url}
        )
        wait_terminal(server, task_id)
        with browse(server) as seen:
            page = seen.page
            page.goto(server.url + "/dashboard")
            row(page, task_id).click()
            send = page.get_by_role("button", name="Send callback again")
            expect(detail_field(page, "callback_url")).to_have_text(receiver.url)
            expect(detail_field(page, "callback").locator(".badge")).to_have_text("failed")
            expect(detail_field(page, "callback_last")).to_contain_text("HTTP 410")
            send.click()
            expect(page.locator("#detail-message")).to_have_text("The callback is sent again.")
            expect(detail_field(page, "callback").locator(".badge")).to_have_text("delivered")
            expect(detail_field(page, "callback_last")).to_have_text("HTTP 204")
            expect(detail_field(page, "callback_delivered")).to_contain_text("(")
            expect(send).to_be_visible()  # a delivered callback may be sent again too
        assert [event["data"]["id"] for event in receiver.verified()] == [task_id, task_id]
        assert not seen.console_errors, seen.console_errors
    finally:
        server.stop()
        receiver.close()
