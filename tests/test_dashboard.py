"""The dashboard at ``/dashboard`` in a real browser, as an operator uses it.

Debian's Chromium, headless, against a real ``taskapi serve``. Tasks are submitted over HTTP
before and while the page is open; the test reads what the page shows: the recent tasks with
their status, progress and errors, the counts by status, the charts drawn from ``/metrics``,
and the token form when the service runs with API keys. No request may leave the machine.
A screenshot is kept in ``test-artifacts/dashboard.png``.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import (
    BrowserContext,
    Expect,
    Locator,
    Page,
)

from tests.browser import ARTIFACTS, TIMEOUT_MS, browse
from tests.processes import Server, start_server, wait_terminal

pytestmark = pytest.mark.slow

ALICE = "s3cret-alice-5d1e"
KEYS = f"alice:{ALICE},bob:s3cret-bob-77b0"
expect = Expect()  # this module's own, with a longer default timeout
expect.set_options(timeout=TIMEOUT_MS)

HOSTILE = '<img id="injected" src="/x" onerror="window.owned=1">disk'


def call(
    server: Server, method: str, path: str, body: Any = None, token: str | None = None
) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(server.url + path, data, headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def submit(server: Server, body: dict[str, Any], token: str | None = None) -> str:
    status, task = call(server, "POST", "/tasks", body, token)
    assert status == 202, task
    return str(task["id"])


def metrics_status(server: Server) -> int:
    try:
        with urllib.request.urlopen(server.url + "/metrics", timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def row(page: Page, task_id: str) -> Locator:
    return page.locator(f'#task-rows tr[data-task-id="{task_id}"]')


def status_of(page: Page, task_id: str) -> Locator:
    return row(page, task_id).locator(".badge")


def series(page: Page, chart: str, name: str) -> Locator:
    return page.locator(f'#{chart} polyline[data-series="{name}"]')


def expect_series_moves(page: Page, chart: str, name: str) -> None:
    """The series is drawn, and not as a flat line: its values changed while the page watched."""
    expect(series(page, chart, name)).to_have_count(1, timeout=TIMEOUT_MS)
    page.wait_for_function(
        """([chart, name]) => {
            const line = document.querySelector(`#${chart} polyline[data-series="${name}"]`);
            if (!line) return false;
            const ys = line.getAttribute("points").trim().split(/\\s+/).map((p) => p.split(",")[1]);
            return ys.length >= 2 && new Set(ys).size > 1;
        }""",
        arg=[chart, name],
        timeout=TIMEOUT_MS,
    )


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    server = start_server(tmp_path / "tasks.sqlite3", tmp_path, TASKS_WORKERS="2")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def keyed_server(tmp_path: Path) -> Iterator[Server]:
    server = start_server(
        tmp_path / "keyed.sqlite3", tmp_path, TASKS_WORKERS="2", TASKS_API_KEYS=KEYS
    )
    try:
        yield server
    finally:
        server.stop()


def test_dashboard_shows_tasks_errors_progress_and_metrics_live(server: Server) -> None:
    assert metrics_status(server) == 200, "the charts are drawn from the service's /metrics"
    adds = [submit(server, {"type": "add", "params": {"x": n, "y": 10}}) for n in range(3)]
    failed = submit(
        server, {"type": "fail", "params": {"message": "disk on fire"}, "max_attempts": 1}
    )
    hostile = submit(server, {"type": "fail", "params": {"message": HOSTILE}, "max_attempts": 1})
    for task_id in [*adds, failed, hostile]:
        wait_terminal(server, task_id)

    with browse(server) as seen:
        page = seen.page
        page.goto(server.url + "/dashboard")
        expect(page).to_have_title("taskapi dashboard")
        for n, task_id in enumerate(adds):
            expect(status_of(page, task_id)).to_have_text("succeeded")
            expect(row(page, task_id)).to_contain_text(f"→ {n + 10}")
        expect(status_of(page, failed)).to_have_text("failed")
        expect(row(page, failed).locator(".error")).to_have_text("TaskFailure disk on fire")
        # A message is shown as the text it is, never read as HTML.
        expect(row(page, hostile).locator(".error-message")).to_have_text(HOSTILE)
        expect(page.locator("#injected")).to_have_count(0)
        assert page.evaluate("window.owned") is None
        expect(page.locator("[data-count='succeeded']")).to_have_text("3")
        expect(page.locator("[data-count='failed']")).to_have_text("2")
        expect(page.locator("#auth")).to_be_hidden()
        expect(page.locator("#metrics-state")).to_be_hidden()

        # Live: tasks submitted now appear, change and end without a reload.
        page.evaluate("window.sameDocument = true")
        late = submit(server, {"type": "add", "params": {"x": 40, "y": 2}})
        late_failure = submit(
            server, {"type": "fail", "params": {"message": "fan stuck"}, "max_attempts": 1}
        )
        sleeper = submit(server, {"type": "sleep", "params": {"seconds": 6}})
        expect(status_of(page, late)).to_have_text("succeeded")
        expect(row(page, late)).to_contain_text("→ 42")
        expect(row(page, late_failure).locator(".error")).to_have_text("TaskFailure fan stuck")
        expect(status_of(page, sleeper)).to_have_text("running")
        bar = row(page, sleeper).get_by_role("progressbar")
        expect(bar).to_be_visible()
        expect(bar).to_have_attribute("aria-valuemax", "6")
        expect(row(page, sleeper)).to_contain_text(re.compile(r"[1-5] / 6 · slept [1-5] of 6s"))
        expect(page.locator("[data-count='running']")).to_have_text("1")

        # The charts: depth moved (the sleep ran), finished and failed per second moved (tasks
        # ended while the page watched).
        expect_series_moves(page, "chart-depth", "running")
        expect(series(page, "chart-depth", "queued")).to_have_count(1)
        expect_series_moves(page, "chart-rate", "finished")
        expect_series_moves(page, "chart-rate", "failed")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / "dashboard.png", full_page=True)

        expect(status_of(page, sleeper)).to_have_text("succeeded", timeout=TIMEOUT_MS)
        expect(row(page, sleeper).get_by_role("progressbar")).to_have_count(0)
        expect(page.locator("[data-count='succeeded']")).to_have_text("5")
        expect(page.locator("[data-count='failed']")).to_have_text("3")
        expect(page.locator("#task-rows tr")).to_have_count(8)
        assert page.evaluate("window.sameDocument") is True, "the page was not reloaded"

    urls = seen.urls()
    assert f"{server.url}/dashboard/assets/dashboard.js" in urls
    assert f"{server.url}/dashboard/assets/dashboard.css" in urls
    assert urls.count(f"{server.url}/tasks?page_size=20") >= 3, "the page polls the list"
    assert urls.count(f"{server.url}/metrics") >= 3, "the page polls the metrics"
    assert not seen.console_errors, seen.console_errors


def test_dashboard_without_metrics_still_lists_tasks(server: Server) -> None:
    """A service without ``/metrics`` (an older one): the page says so and works on."""
    task_id = submit(server, {"type": "fail", "params": {"message": "no luck"}, "max_attempts": 1})
    wait_terminal(server, task_id)

    def no_metrics(context: BrowserContext) -> None:
        problem = {"type": "about:blank", "title": "Not Found", "status": 404}
        context.route(
            f"{server.url}/metrics",
            lambda route: route.fulfill(
                status=404, content_type="application/problem+json", body=json.dumps(problem)
            ),
        )

    with browse(server, no_metrics) as seen:
        page = seen.page
        page.goto(server.url + "/dashboard")
        expect(status_of(page, task_id)).to_have_text("failed")
        expect(row(page, task_id)).to_contain_text("TaskFailure no luck")
        expect(page.locator("#metrics-state")).to_have_text(
            re.compile(r"^Metrics are unavailable \(GET /metrics answered 404\)")
        )
        expect(page.locator("[data-count='failed']")).to_have_text("1")
        expect(page.locator("[data-count='queued']")).to_have_text("0")
        expect(page.locator("#notice")).to_be_hidden()
        expect(page.locator("#live")).to_contain_text("live")


def test_dashboard_asks_for_a_token_and_uses_it(keyed_server: Server) -> None:
    server = keyed_server
    status, problem = call(server, "GET", "/tasks")
    assert status == 401, problem
    mine = submit(server, {"type": "add", "params": {"x": 1, "y": 2}}, token=ALICE)
    wait_terminal_as(server, mine, ALICE)

    with browse(server) as seen:
        page = seen.page
        page.goto(server.url + "/dashboard")
        form = page.locator("#auth")
        expect(form).to_be_visible()
        expect(form).to_contain_text("This operation needs an API key")
        expect(page.locator("#task-rows tr")).to_have_count(0)

        page.get_by_label("API token").fill("not-a-token")
        page.get_by_role("button", name="Use token").click()
        expect(page.locator("#auth-message")).to_contain_text("The token was refused")
        expect(form).to_be_visible()

        page.get_by_label("API token").fill(ALICE)
        page.get_by_role("button", name="Use token").click()
        expect(form).to_be_hidden()
        expect(status_of(page, mine)).to_have_text("succeeded")
        expect(page.locator("[data-count='succeeded']")).to_have_text("1")
        expect(page.locator("#metrics-state")).to_be_hidden()  # /metrics takes the token too
        expect(series(page, "chart-depth", "queued")).to_have_count(1)

        # Live with the token too, and the token is kept for the session (not asked again).
        later = submit(server, {"type": "add", "params": {"x": 5, "y": 5}}, token=ALICE)
        expect(status_of(page, later)).to_have_text("succeeded")
        page.reload()
        expect(status_of(page, later)).to_have_text("succeeded")
        expect(form).to_be_hidden()

        page.get_by_role("button", name="Forget the token").click()
        expect(form).to_be_visible()

    api_calls = [r for r in seen.requests if "/dashboard" not in r.url]
    assert all(ALICE not in r.url for r in seen.requests), "the token never goes in a URL"
    sent = [r.headers.get("authorization") for r in api_calls]
    assert f"Bearer {ALICE}" in sent
    assert set(sent) <= {None, "Bearer not-a-token", f"Bearer {ALICE}"}, sent


def wait_terminal_as(server: Server, task_id: str, token: str) -> None:
    for _ in range(200):
        status, task = call(server, "GET", f"/tasks/{task_id}?wait=5", token=token)
        assert status == 200, task
        if task["status"] not in ("queued", "running"):
            return
    raise AssertionError(f"task {task_id} did not end")
