"""The dashboard at ``/dashboard`` in a real browser, as an operator uses it.

Debian's Chromium, headless, against a real ``taskapi serve``. Tasks are submitted over HTTP
before and while the page is open; the test reads what the page shows: the tasks with their
status, progress and errors, a page of them at a time, filtered, one in full, the counts by
status, the charts of the last minutes (``/activity``, kept by the server, so drawn from the
first paint), the queues with their pause switch, and the token form when the service runs with
API keys. No request may leave the machine.
A screenshot is kept in ``test-artifacts/dashboard.png``.
"""

from __future__ import annotations

import json
import re
import time
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
    Route,
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


def row(page: Page, task_id: str) -> Locator:
    return page.locator(f'#task-rows tr[data-task-id="{task_id}"]')


def status_of(page: Page, task_id: str) -> Locator:
    return row(page, task_id).locator(".badge")


def detail_field(page: Page, name: str) -> Locator:
    return page.locator(f'#detail-fields dd[data-field="{name}"]')


def badges(page: Page) -> list[str]:
    return [b.inner_text() for b in page.locator("#task-rows .badge").all()]


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
        tmp_path / "keyed.sqlite3",
        tmp_path,
        TASKS_WORKERS="2",
        TASKS_API_KEYS=KEYS,
        TASKS_ADMINS="alice",
    )
    try:
        yield server
    finally:
        server.stop()


def test_dashboard_shows_tasks_errors_progress_and_charts_live(server: Server) -> None:
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
        expect(page.locator("#history-state")).to_be_hidden()

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
    assert urls.count(f"{server.url}/tasks?page=1&page_size=20") >= 3, "the page polls the list"
    assert urls.count(f"{server.url}/activity") >= 3, "the page polls the last minutes"
    assert not seen.console_errors, seen.console_errors


def test_dashboard_without_activity_still_lists_tasks(server: Server) -> None:
    """A service without ``/activity`` (an older one): the page says so and works on."""
    task_id = submit(server, {"type": "fail", "params": {"message": "no luck"}, "max_attempts": 1})
    wait_terminal(server, task_id)

    def no_activity(context: BrowserContext) -> None:
        problem = {"type": "about:blank", "title": "Not Found", "status": 404}
        context.route(
            f"{server.url}/activity",
            lambda route: route.fulfill(
                status=404, content_type="application/problem+json", body=json.dumps(problem)
            ),
        )

    with browse(server, no_activity) as seen:
        page = seen.page
        page.goto(server.url + "/dashboard")
        expect(status_of(page, task_id)).to_have_text("failed")
        expect(row(page, task_id)).to_contain_text("TaskFailure no luck")
        expect(page.locator("#history-state")).to_have_text(
            re.compile(r"^The last minutes are unavailable \(GET /activity answered 404\)")
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
        expect(page.locator("#history-state")).to_be_hidden()  # /activity takes the token too
        expect(series(page, "chart-depth", "queued")).to_have_count(1)

        # One task in full, read with the token.
        row(page, mine).click()
        expect(page.locator("#detail-id")).to_have_text(mine)
        expect(detail_field(page, "result")).to_have_text("3")

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


def ys(page: Page, chart: str, name: str) -> list[float]:
    """The values a series is drawn at (SVG y: smaller is higher), oldest first."""
    points = series(page, chart, name).get_attribute("points") or ""
    return [float(p.split(",")[1]) for p in points.split()]


def wait_kept(server: Server, done: Any) -> list[dict[str, Any]]:
    """The readings ``/activity`` kept, once ``done``."""
    for _ in range(120):
        status, activity = call(server, "GET", "/activity")
        assert status == 200, activity
        kept: list[dict[str, Any]] = activity["samples"]
        if kept and done(kept):
            return kept
        time.sleep(0.25)
    raise AssertionError(f"the server did not keep such readings: {activity}")


def test_dashboard_draws_the_last_minutes_at_first_paint(server: Server) -> None:
    """Tasks ran, and ended, before the page was opened: its first drawing already shows it,
    from the readings the server kept (not only from what the page itself polled)."""
    sleeper = submit(server, {"type": "sleep", "params": {"seconds": 3}})
    kept = wait_kept(server, lambda kept: any(s["running"] for s in kept))
    ended = [submit(server, {"type": "add", "params": {"x": n, "y": 1}}) for n in range(5)]
    ended.append(
        submit(server, {"type": "fail", "params": {"message": "early"}, "max_attempts": 1})
    )
    for task_id in [sleeper, *ended]:
        wait_terminal(server, task_id)
    # The server has kept readings of the sleep running, then of everything ended.
    kept = wait_kept(server, lambda kept: kept[-1]["running"] == 0 and kept[-1]["failed"] == 1)
    assert len(kept) >= 2, kept

    with browse(server) as seen:
        page = seen.page
        page.goto(server.url + "/dashboard")
        expect(series(page, "chart-depth", "running")).to_have_count(1)
        expect(series(page, "chart-rate", "finished")).to_have_count(1)
        polls = [u for u in seen.urls() if u.endswith("/activity")]
        running, finished, failed = (
            ys(page, "chart-depth", "running"),
            ys(page, "chart-rate", "finished"),
            ys(page, "chart-rate", "failed"),
        )
        assert len(polls) <= 2, "drawn from the first answers, not after minutes of polling"
        assert len(running) >= len(kept) >= 2, running
        assert len(set(running)) > 1, f"the sleep shows as running, then not: {running}"
        zero = float(page.locator("#chart-rate line.grid").first.get_attribute("y1") or 0)
        assert min(finished) < zero, f"the tasks that ended show above 0/s: {finished}"
        assert min(failed) < zero, f"the failure shows above 0/s: {failed}"
        expect(page.locator("[data-count='succeeded']")).to_have_text("6")
        expect(page.locator("[data-count='failed']")).to_have_text("1")


def test_dashboard_pages_through_the_tasks(server: Server) -> None:
    ids = [submit(server, {"type": "add", "params": {"x": n, "y": 0}}) for n in range(25)]
    for task_id in ids:
        wait_terminal(server, task_id)
    newest_first = ids[::-1]

    with browse(server) as seen:
        page = seen.page
        page.goto(server.url + "/dashboard")
        info = page.locator("#page-info")
        newer = page.get_by_role("button", name="\u2039 Newer")
        older = page.get_by_role("button", name="Older \u203a")
        expect(info).to_have_text("page 1 of 2 · 25 tasks")
        expect(page.locator("#task-rows tr")).to_have_count(20)
        expect(page.locator("#task-rows tr").first).to_have_attribute(
            "data-task-id", newest_first[0]
        )
        expect(newer).to_be_disabled()

        older.click()
        expect(info).to_have_text("page 2 of 2 · 25 tasks")
        expect(page.locator("#task-rows tr")).to_have_count(5)
        shown = [r.get_attribute("data-task-id") for r in page.locator("#task-rows tr").all()]
        assert shown == newest_first[20:], "the oldest five, newest first"
        expect(older).to_be_disabled()

        newer.click()
        expect(info).to_have_text("page 1 of 2 · 25 tasks")
        expect(row(page, newest_first[0])).to_be_visible()
    assert f"{server.url}/tasks?page=2&page_size=20" in seen.urls()


def test_dashboard_filters_by_status_and_type(server: Server) -> None:
    adds = [submit(server, {"type": "add", "params": {"x": n, "y": 0}}) for n in range(3)]
    fails = [
        submit(server, {"type": "fail", "params": {"message": f"no {n}"}, "max_attempts": 1})
        for n in range(2)
    ]
    nap = submit(server, {"type": "sleep", "params": {"seconds": 0}})
    for task_id in [*adds, *fails, nap]:
        wait_terminal(server, task_id)

    with browse(server) as seen:
        page = seen.page
        page.goto(server.url + "/dashboard")
        info = page.locator("#page-info")
        expect(info).to_have_text("page 1 of 1 · 6 tasks")
        types = page.locator("#filter-type option")
        expect(types).to_have_text(["any", "add", "fail", "sleep"])

        page.get_by_label("Status", exact=True).select_option("failed")
        expect(info).to_have_text("page 1 of 1 · 2 tasks")
        expect(page.locator("#task-rows tr")).to_have_count(2)
        assert badges(page) == ["failed", "failed"]
        for task_id in fails:
            expect(row(page, task_id)).to_be_visible()

        page.get_by_label("Status", exact=True).select_option("")
        page.get_by_label("Type", exact=True).select_option("add")
        expect(info).to_have_text("page 1 of 1 · 3 tasks")
        shown = {r.get_attribute("data-task-id") for r in page.locator("#task-rows tr").all()}
        assert shown == set(adds)

        page.get_by_label("Status", exact=True).select_option("failed")
        expect(info).to_have_text("page 1 of 1 · 0 tasks")
        expect(page.locator("#empty")).to_have_text("No tasks match.")

        # Still filtered while it polls: a new add that succeeds does not show among failures.
        late = submit(server, {"type": "add", "params": {"x": 1, "y": 1}})
        wait_terminal(server, late)
        page.get_by_label("Status", exact=True).select_option("succeeded")
        expect(info).to_have_text("page 1 of 1 · 4 tasks")
        expect(row(page, late)).to_be_visible()
    urls = seen.urls()
    assert f"{server.url}/tasks?page=1&page_size=20&status=failed&type=add" in urls


def test_dashboard_shows_one_task_in_full_and_cancels_and_deletes_it(server: Server) -> None:
    failed = submit(
        server,
        {"type": "fail", "params": {"message": HOSTILE}, "max_attempts": 2, "priority": 7},
    )
    added = submit(server, {"type": "add", "params": {"x": 20, "y": 22}})
    for task_id in (failed, added):
        wait_terminal(server, task_id)

    with browse(server) as seen:
        page = seen.page
        page.goto(server.url + "/dashboard")
        panel = page.locator("#detail")
        expect(panel).to_be_hidden()

        row(page, failed).click()
        expect(panel).to_be_visible()
        expect(page.locator("#detail-id")).to_have_text(failed)
        expect(detail_field(page, "status")).to_have_text("failed")
        expect(detail_field(page, "type")).to_have_text("fail")
        params = json.loads(detail_field(page, "params").inner_text())
        assert params["message"] == HOSTILE
        expect(detail_field(page, "error")).to_have_text(f"TaskFailure {HOSTILE}")
        expect(page.locator("#injected")).to_have_count(0)
        expect(detail_field(page, "attempts")).to_have_text("2 (at most 2 may fail)")
        expect(detail_field(page, "priority")).to_have_text("7")
        expect(detail_field(page, "result")).to_have_text("—")
        for when in ("created_at", "started_at", "finished_at", "expires_at"):
            expect(detail_field(page, when)).to_contain_text(" ago)")
        expect(page.get_by_role("button", name="Cancel task")).to_be_hidden()

        row(page, added).click()
        expect(page.locator("#detail-id")).to_have_text(added)
        expect(detail_field(page, "result")).to_have_text("42")
        expect(detail_field(page, "error")).to_have_text("—")

        # A running task: its progress, then cancel it, then delete it.
        sleeper = submit(server, {"type": "sleep", "params": {"seconds": 60}})
        expect(status_of(page, sleeper)).to_have_text("running")
        row(page, sleeper).click()
        expect(detail_field(page, "progress")).to_contain_text(re.compile(r"slept \d+ of 60s"))
        expect(page.get_by_role("button", name="Delete task")).to_be_hidden()
        page.get_by_role("button", name="Cancel task").click()
        expect(detail_field(page, "status")).to_have_text("cancelled")
        expect(status_of(page, sleeper)).to_have_text("cancelled")
        page.get_by_role("button", name="Delete task").click()
        expect(panel).to_be_hidden()
        expect(page.locator("#list-message")).to_have_text(f"Task {sleeper} deleted.")
        expect(row(page, sleeper)).to_have_count(0)
        ARTIFACTS.mkdir(exist_ok=True)
        row(page, failed).click()
        expect(detail_field(page, "status")).to_have_text("failed")
        page.screenshot(path=ARTIFACTS / "dashboard-detail.png", full_page=True)
        page.get_by_role("button", name="Close").click()
        expect(panel).to_be_hidden()

    assert call(server, "GET", f"/tasks/{sleeper}")[0] == 404
    assert not seen.console_errors, seen.console_errors


def queue_row(page: Page, name: str) -> Locator:
    return page.locator(f'#queue-rows tr[data-queue="{name}"]')


def queue_cell(page: Page, name: str, field: str) -> Locator:
    return queue_row(page, name).locator(f'[data-field="{field}"]')


def test_dashboard_shows_the_queues_and_pauses_and_resumes_them(server: Server) -> None:
    mails = [
        submit(server, {"type": "add", "params": {"x": n, "y": 0}, "queue": "emails"})
        for n in range(2)
    ]
    for task_id in mails:
        wait_terminal(server, task_id)
    status, queue = call(server, "PATCH", "/queues/reports", {"paused": True, "concurrency": 3})
    assert status == 200, queue
    report = submit(server, {"type": "add", "params": {"x": 40, "y": 2}, "queue": "reports"})

    with browse(server) as seen:
        page = seen.page
        page.goto(server.url + "/dashboard")
        names = page.locator("#queue-rows tr")
        expect(names).to_have_count(3)
        assert [r.get_attribute("data-queue") for r in names.all()] == [
            "default",
            "emails",
            "reports",
        ]
        expect(queue_cell(page, "emails", "succeeded")).to_have_text("2")
        expect(queue_cell(page, "emails", "oldest")).to_have_text("—")
        expect(queue_cell(page, "emails", "concurrency")).to_have_text("no limit")
        expect(queue_cell(page, "reports", "queued")).to_have_text("1")
        expect(queue_cell(page, "reports", "concurrency")).to_have_text("3")
        expect(queue_cell(page, "reports", "oldest")).to_have_text(re.compile(r"^\d+ s$"))
        reports = page.get_by_role("switch", name="Pause queue reports")
        expect(reports).to_have_attribute("aria-checked", "true")
        expect(status_of(page, report)).to_have_text("queued")
        expect(row(page, report).locator(".queue-cell")).to_have_text("reports")
        expect(row(page, mails[0]).locator(".queue-cell")).to_have_text("emails")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / "dashboard-queues.png", full_page=True)

        # Resume: the waiting report runs.
        reports.click()
        expect(reports).to_have_attribute("aria-checked", "false")
        expect(page.locator("#queue-message")).to_have_text("Queue reports resumed.")
        expect(status_of(page, report)).to_have_text("succeeded")
        expect(queue_cell(page, "reports", "succeeded")).to_have_text("1")

        # Pause emails: a new email waits, and the store says it is paused.
        emails = page.get_by_role("switch", name="Pause queue emails")
        emails.click()
        expect(emails).to_have_attribute("aria-checked", "true")
        expect(page.locator("#queue-message")).to_contain_text("Queue emails paused")
        assert call(server, "GET", "/queues/emails")[1]["paused"] is True
        waiting = submit(server, {"type": "add", "params": {"x": 1, "y": 1}, "queue": "emails"})
        expect(status_of(page, waiting)).to_have_text("queued")
        expect(queue_cell(page, "emails", "queued")).to_have_text("1")

        # The list filtered by queue, and a task in full with its queue.
        page.get_by_label("Queue", exact=True).select_option("emails")
        expect(page.locator("#page-info")).to_have_text("page 1 of 1 · 3 tasks")
        row(page, waiting).click()
        expect(detail_field(page, "queue")).to_have_text("emails")

    patches = [r for r in seen.requests if r.method == "PATCH"]
    assert [(r.url, r.post_data_json) for r in patches] == [
        (f"{server.url}/queues/reports", {"paused": False}),
        (f"{server.url}/queues/emails", {"paused": True}),
    ]
    assert f"{server.url}/tasks?page=1&page_size=20&queue=emails" in seen.urls()
    assert not seen.console_errors, seen.console_errors


def test_dashboard_says_why_a_queue_change_is_refused(keyed_server: Server) -> None:
    """bob is not in TASKS_ADMINS: he sees the queues, and his switch is refused with a 403."""
    server = keyed_server
    status, _ = call(server, "PATCH", "/queues/emails", {"paused": True}, token=ALICE)
    assert status == 200

    def as_bob(context: BrowserContext) -> None:
        context.add_init_script(
            "sessionStorage.setItem('taskapi.dashboard.token', 's3cret-bob-77b0')"
        )

    with browse(server, as_bob) as seen:
        page = seen.page
        page.goto(server.url + "/dashboard")
        emails = page.get_by_role("switch", name="Pause queue emails")
        expect(emails).to_have_attribute("aria-checked", "true")
        emails.click()
        expect(page.locator("#queue-message")).to_have_text(re.compile(r"^Refused \(403\): .+"))
        expect(emails).to_have_attribute("aria-checked", "true")
        expect(emails).to_be_enabled()
    assert call(server, "GET", "/queues/emails", token=ALICE)[1]["paused"] is True


def schedule_row(page: Page, name: str) -> Locator:
    return page.locator(f'#schedule-rows tr[data-schedule="{name}"]')


def schedule_cell(page: Page, name: str, field: str) -> Locator:
    return schedule_row(page, name).locator(f'[data-field="{field}"]')


NIGHTLY = {
    "cron": "0 2 * * *",
    "timezone": "Europe/Berlin",
    "task": {"type": "add", "params": {"x": 40, "y": 2}, "queue": "reports"},
}
PROBE = {"every_seconds": 3600, "task": {"type": "sleep", "params": {"seconds": 0}}, "paused": True}


def put_schedule(server: Server, name: str, body: dict[str, Any]) -> dict[str, Any]:
    status, schedule = call(server, "PUT", f"/schedules/{name}", body)
    assert status in (200, 201), schedule
    return dict(schedule)


def test_dashboard_lists_schedules_pauses_them_and_runs_them_now(server: Server) -> None:
    nightly_set = put_schedule(server, "nightly-report", NIGHTLY)
    probe_set = put_schedule(server, "health-probe", PROBE)

    with browse(server) as seen:
        page = seen.page
        page.goto(server.url + "/dashboard")
        rows = page.locator("#schedule-rows tr")
        expect(rows).to_have_count(2)
        assert [r.get_attribute("data-schedule") for r in rows.all()] == [
            "health-probe",
            "nightly-report",
        ]
        expect(schedule_cell(page, "nightly-report", "when")).to_have_text(
            "0 2 * * * Europe/Berlin"
        )
        expect(schedule_cell(page, "nightly-report", "task")).to_contain_text("add · reports")
        expect(schedule_cell(page, "nightly-report", "next_run")).to_have_text(
            re.compile(r"^in \d+ (s|min|h)$")
        )
        expect(schedule_cell(page, "nightly-report", "last_run")).to_have_text("—")
        expect(schedule_cell(page, "health-probe", "when")).to_have_text("every 1 h")
        expect(schedule_cell(page, "health-probe", "next_run")).to_have_text("paused")
        nightly = page.get_by_role("switch", name="Pause schedule nightly-report")
        probe = page.get_by_role("switch", name="Pause schedule health-probe")
        expect(nightly).to_have_attribute("aria-checked", "false")
        expect(probe).to_have_attribute("aria-checked", "true")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / "dashboard-schedules.png", full_page=True)

        # Pause nightly-report: the store says so, and what it does is unchanged.
        nightly.click()
        expect(nightly).to_have_attribute("aria-checked", "true")
        expect(page.locator("#schedule-message")).to_have_text(
            "Schedule nightly-report paused: it makes no task until it is resumed."
        )
        expect(schedule_cell(page, "nightly-report", "next_run")).to_have_text("paused")
        stored = call(server, "GET", "/schedules/nightly-report")[1]
        assert (stored["paused"], stored["next_run_at"]) == (True, None)
        assert written(stored) == {**written(nightly_set), "paused": True}
        # Resume health-probe.
        probe.click()
        expect(probe).to_have_attribute("aria-checked", "false")
        expect(page.locator("#schedule-message")).to_have_text(
            re.compile(r"^Schedule health-probe resumed: next run in \d+ (s|min|h)\.$")
        )

        # Run now (paused or not): a task at once, shown in full with its schedule.
        page.get_by_role("button", name="Run schedule nightly-report now").click()
        message = page.locator("#schedule-message")
        expect(message).to_have_text(re.compile(r"^Schedule nightly-report made task \S+\.$"))
        task_id = message.inner_text().split()[-1].rstrip(".")
        expect(page.locator("#detail-id")).to_have_text(task_id)
        expect(detail_field(page, "schedule")).to_have_text("nightly-report")
        expect(detail_field(page, "scheduled_for")).to_contain_text(" ago)")
        expect(detail_field(page, "queue")).to_have_text("reports")
        expect(detail_field(page, "result")).to_have_text("42")
        expect(status_of(page, task_id)).to_have_text("succeeded")

        # Its last run links the task; the list filters by schedule.
        page.get_by_role("button", name="Close").click()
        last = schedule_cell(page, "nightly-report", "last_run").get_by_role("button")
        expect(last).to_have_text(re.compile(r"^\d+ s ago$"))
        last.click()
        expect(page.locator("#detail-id")).to_have_text(task_id)
        other = submit(server, {"type": "add", "params": {"x": 1, "y": 1}})
        expect(status_of(page, other)).to_have_text("succeeded")
        page.get_by_label("Schedule", exact=True).select_option("nightly-report")
        expect(page.locator("#page-info")).to_have_text("page 1 of 1 · 1 task")
        expect(row(page, task_id)).to_be_visible()
        expect(row(page, other)).to_have_count(0)

    puts = [r for r in seen.requests if r.method == "PUT"]
    assert [(r.url, r.post_data_json) for r in puts] == [
        (f"{server.url}/schedules/nightly-report", {**written(nightly_set), "paused": True}),
        (f"{server.url}/schedules/health-probe", {**written(probe_set), "paused": False}),
    ], "the same body back, with only paused changed"
    posts = [r.url for r in seen.requests if r.method == "POST"]
    assert posts == [f"{server.url}/schedules/nightly-report/trigger"]
    assert f"{server.url}/tasks?page=1&page_size=20&schedule=nightly-report" in seen.urls()
    assert not seen.console_errors, seen.console_errors


def written(schedule: dict[str, Any]) -> dict[str, Any]:
    """What a PUT sets of ``schedule`` (its ScheduleWrite), as the server gave it back."""
    fields = ("cron", "every_seconds", "timezone", "task", "paused", "overlap", "catch_up")
    return {k: schedule[k] for k in fields if schedule[k] is not None}


def test_dashboard_says_why_a_schedule_run_is_refused(tmp_path: Path) -> None:
    """The queue is full (TASKS_MAX_QUEUED=1, a task waiting in a paused queue): Run now is
    refused with the 503, said under the table, and the page works on."""
    server = start_server(
        tmp_path / "full.sqlite3", tmp_path, TASKS_WORKERS="1", TASKS_MAX_QUEUED="1"
    )
    try:
        assert call(server, "PATCH", "/queues/default", {"paused": True})[0] == 200
        submit(server, {"type": "add", "params": {"x": 1, "y": 1}})
        put_schedule(server, "nightly-report", NIGHTLY)
        with browse(server) as seen:  # the 503 is also in the console: not checked here
            page = seen.page
            page.goto(server.url + "/dashboard")
            run_now = page.get_by_role("button", name="Run schedule nightly-report now")
            run_now.click()
            expect(page.locator("#schedule-message")).to_have_text(
                re.compile(r"^Refused \(503\): .+")
            )
            expect(run_now).to_be_enabled()
            expect(page.locator("#detail")).to_be_hidden()
        assert call(server, "GET", "/tasks?schedule=nightly-report")[1] == []
    finally:
        server.stop()


def test_dashboard_retries_a_failed_task_and_links_the_new_one_back(server: Server) -> None:
    failed = submit(server, {"type": "fail", "params": {"message": "once"}, "max_attempts": 1})
    added = submit(server, {"type": "add", "params": {"x": 1, "y": 2}})
    waiting = submit(server, {"type": "add", "params": {"x": 3, "y": 4}, "delay_seconds": 600})
    for task_id in (failed, added):
        wait_terminal(server, task_id)

    with browse(server) as seen:
        page = seen.page
        page.goto(server.url + "/dashboard")
        retry = page.get_by_role("button", name="Retry task")

        row(page, added).click()
        expect(detail_field(page, "status")).to_have_text("succeeded")
        expect(retry).to_be_hidden()
        row(page, waiting).click()
        expect(detail_field(page, "status")).to_have_text("queued")
        expect(retry).to_be_hidden()
        expect(detail_field(page, "retry_of")).to_have_count(0)

        # Cancelled: it may be retried too.
        page.get_by_role("button", name="Cancel task").click()
        expect(detail_field(page, "status")).to_have_text("cancelled")
        expect(retry).to_be_visible()

        row(page, failed).click()
        expect(detail_field(page, "status")).to_have_text("failed")
        expect(retry).to_be_visible()
        retry.click()
        expect(page.locator("#detail-id")).not_to_have_text(failed)
        new = page.locator("#detail-id").inner_text()
        expect(page.locator("#detail-message")).to_have_text(f"Task {new} retries {failed}.")
        expect(detail_field(page, "retry_of")).to_have_text(failed)
        expect(detail_field(page, "type")).to_have_text("fail")
        expect(row(page, new)).to_be_visible()
        expect(detail_field(page, "status")).to_have_text("failed")
        expect(retry).to_be_visible()  # failed again: it may be retried again

        # The link opens the old task, as it was.
        page.get_by_role("link", name=failed).click()
        expect(page.locator("#detail-id")).to_have_text(failed)
        expect(detail_field(page, "status")).to_have_text("failed")
        expect(detail_field(page, "retry_of")).to_have_count(0)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / "dashboard-retry.png", full_page=True)

    status, task = call(server, "GET", f"/tasks/{new}")
    assert status == 200 and task["retry_of"] == failed
    status, old = call(server, "GET", f"/tasks/{failed}")
    assert status == 200 and (old["status"], old["attempts"]) == ("failed", 1)
    assert not seen.console_errors, seen.console_errors


def test_dashboard_says_why_a_retry_is_refused(server: Server) -> None:
    """The task is deleted by another client just as Retry is clicked (the route deletes it
    before the request goes on): the server's 404 is said as the other buttons' refusals are,
    and no task is made."""
    failed = submit(server, {"type": "fail", "params": {"message": "gone"}, "max_attempts": 1})
    wait_terminal(server, failed)

    def deleted_meanwhile(context: BrowserContext) -> None:
        def delete_then_send(route: Route) -> None:
            assert call(server, "DELETE", f"/tasks/{failed}")[0] == 204
            route.fallback()

        context.route(f"{server.url}/tasks/{failed}/retry", delete_then_send)

    with browse(server, deleted_meanwhile) as seen:  # the 404 is also in the console
        page = seen.page
        page.goto(server.url + "/dashboard")
        row(page, failed).click()
        page.get_by_role("button", name="Retry task").click()
        expect(page.locator("#detail-message")).to_have_text(
            re.compile(rf"^Refused \(404\): There is no task with id '{failed}'")
        )
        expect(page.locator("#detail-id")).to_have_text(failed)
    assert call(server, "GET", "/tasks?type=fail")[1] == []


def batch_row(page: Page, batch_id: str) -> Locator:
    return page.locator(f'#batch-rows tr[data-batch="{batch_id}"]')


def batch_cell(page: Page, batch_id: str, field: str) -> Locator:
    return batch_row(page, batch_id).locator(f'[data-field="{field}"]')


def create_batch(server: Server, tasks: list[dict[str, Any]]) -> dict[str, Any]:
    status, batch = call(server, "POST", "/batches", {"tasks": tasks})
    assert status == 202, batch
    return dict(batch)


def pause(server: Server, queue: str, paused: bool = True) -> None:
    status, answer = call(server, "PATCH", f"/queues/{queue}", {"paused": paused})
    assert status == 200, answer


def test_dashboard_follows_a_batch_as_the_pool_drains_and_lists_its_tasks(server: Server) -> None:
    """A batch of six over two paused queues: the page shows none ended, then four (one failed)
    when the first queue is resumed, then all six when the second is; its tasks are listed by
    the batch's button, by the Batch filter and by the link in a task's detail."""
    alone = submit(server, {"type": "add", "params": {"x": 0, "y": 0}})
    wait_terminal(server, alone)
    pause(server, "first")
    pause(server, "second")
    first = [{"type": "add", "params": {"x": n, "y": 1}, "queue": "first"} for n in range(3)]
    fails = {"type": "fail", "params": {"message": "bad page"}, "max_attempts": 1}
    second = [{"type": "add", "params": {"x": n, "y": 2}, "queue": "second"} for n in range(2)]
    batch = create_batch(server, [*first, {**fails, "queue": "first"}, *second])
    batch_id = batch["id"]
    reads: list[tuple[str, int]] = []

    def record_reads(context: BrowserContext) -> None:
        context.on("response", lambda r: reads.append((r.url, r.status)))

    with browse(server, record_reads) as seen:
        page = seen.page
        page.goto(server.url + "/dashboard")
        expect(page.locator("#batch-rows tr")).to_have_count(1)
        bar = batch_row(page, batch_id).get_by_role("progressbar")
        expect(bar).to_have_attribute("aria-valuenow", "0")
        expect(bar).to_have_attribute("aria-valuemax", "6")
        expect(batch_cell(page, batch_id, "progress")).to_have_text("0 / 6 ended")
        expect(batch_cell(page, batch_id, "queued")).to_have_text("6")
        expect(batch_cell(page, batch_id, "created_at")).to_have_text(re.compile(r" ago$"))
        expect(batch_cell(page, batch_id, "finished_at")).to_have_text("—")
        cancel = page.get_by_role("button", name=f"Cancel batch {batch_id}")
        expect(cancel).to_be_enabled()

        # The first queue drains: four of six ended, the failure shown as its share.
        pause(server, "first", False)
        expect(bar).to_have_attribute("aria-valuenow", "4")
        expect(batch_cell(page, batch_id, "progress")).to_have_text("4 / 6 ended · 1 failed")
        expect(bar).to_have_attribute("aria-valuetext", "4 / 6 ended · 1 failed")
        for part, share in (("succeeded", 50), ("failed", 100 / 6)):
            width = bar.locator(f'[data-part="{part}"]').evaluate("e => e.style.width")
            assert float(width.rstrip("%")) == pytest.approx(share, abs=0.01), (part, width)
        expect(batch_cell(page, batch_id, "succeeded")).to_have_text("3")
        expect(batch_cell(page, batch_id, "failed")).to_have_text("1")
        expect(batch_cell(page, batch_id, "queued")).to_have_text("2")
        expect(batch_cell(page, batch_id, "finished_at")).to_have_text("—")
        expect(cancel).to_be_enabled()

        # The second one: done, full, and nothing left to cancel.
        pause(server, "second", False)
        expect(bar).to_have_attribute("aria-valuenow", "6")
        expect(batch_cell(page, batch_id, "progress")).to_have_text("6 / 6 ended · 1 failed")
        expect(batch_cell(page, batch_id, "finished_at")).to_have_text(re.compile(r"^\d+ s ago$"))
        expect(cancel).to_be_disabled()
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / "dashboard-batches.png", full_page=True)

        # Its tasks, by the batch's button: the six, not the task submitted alone.
        info = page.locator("#page-info")
        expect(info).to_have_text("page 1 of 1 · 7 tasks")
        page.get_by_role("button", name=f"Show tasks of batch {batch_id}").click()
        expect(info).to_have_text("page 1 of 1 · 6 tasks")
        expect(page.get_by_label("Batch", exact=True)).to_have_value(batch_id)
        expect(batch_row(page, batch_id)).to_have_attribute("aria-current", "true")
        for task_id in batch["task_ids"]:
            expect(row(page, task_id)).to_be_visible()
        expect(row(page, alone)).to_have_count(0)
        page.get_by_label("Batch", exact=True).select_option("")
        expect(info).to_have_text("page 1 of 1 · 7 tasks")
        expect(batch_row(page, batch_id)).not_to_have_attribute("aria-current", "true")

        # A task in full names its batch; following it lists the batch again.
        failed = batch["task_ids"][3]
        row(page, failed).click()
        expect(detail_field(page, "error")).to_have_text("TaskFailure bad page")
        expect(detail_field(page, "batch_id")).to_have_text(batch_id)
        expect(detail_field(page, "depends_on")).to_have_count(0)
        detail_field(page, "batch_id").get_by_role("link", name=batch_id).click()
        expect(info).to_have_text("page 1 of 1 · 6 tasks")
        expect(page.get_by_label("Batch", exact=True)).to_have_value(batch_id)
        expect(row(page, alone)).to_have_count(0)

    batch_url = f"{server.url}/batches/{batch_id}"
    assert (batch_url, 200) in reads and (batch_url, 304) in reads, "read again only on change"
    assert f"{server.url}/tasks?page_size=100" in seen.urls()
    assert f"{server.url}/tasks?page=1&page_size=20&batch={batch_id}" in seen.urls()
    assert not [r for r in seen.requests if r.method == "POST"], "following a batch changes none"
    assert not seen.console_errors, seen.console_errors


def test_dashboard_cancels_a_batch(server: Server) -> None:
    """One task of the batch runs (a long sleep), three wait in a paused queue: Cancel ends the
    three at once and stops the sleep when it next checks; then there is nothing to cancel."""
    pause(server, "later")
    batch = create_batch(
        server,
        [
            {"type": "sleep", "params": {"seconds": 60}},
            *[{"type": "add", "params": {"x": n, "y": 0}, "queue": "later"} for n in range(3)],
        ],
    )
    batch_id, sleeper = batch["id"], batch["task_ids"][0]
    for _ in range(200):
        if call(server, "GET", f"/tasks/{sleeper}")[1]["status"] == "running":
            break
        time.sleep(0.05)

    with browse(server) as seen:
        page = seen.page
        page.goto(server.url + "/dashboard")
        expect(batch_cell(page, batch_id, "running")).to_have_text("1")
        expect(batch_cell(page, batch_id, "queued")).to_have_text("3")
        cancel = page.get_by_role("button", name=f"Cancel batch {batch_id}")
        cancel.click()
        expect(page.locator("#batch-message")).to_have_text(
            re.compile(
                rf"^Batch {batch_id} cancelled: no more of its tasks start"
                r"(; 1 running task stops when it next check)?\.$"
            )
        )
        bar = batch_row(page, batch_id).get_by_role("progressbar")
        expect(bar).to_have_attribute("aria-valuenow", "4")
        expect(batch_cell(page, batch_id, "progress")).to_have_text("4 / 4 ended · 4 cancelled")
        expect(batch_cell(page, batch_id, "cancelled")).to_have_text("4")
        expect(batch_cell(page, batch_id, "finished_at")).to_have_text(re.compile(r" ago$"))
        expect(cancel).to_be_disabled()
        expect(status_of(page, sleeper)).to_have_text("cancelled")

    posts = [r.url for r in seen.requests if r.method == "POST"]
    assert posts == [f"{server.url}/batches/{batch_id}/cancel"], "one click, one request"
    status, after = call(server, "GET", f"/batches/{batch_id}")
    assert status == 200 and after["done"] and after["counts"]["cancelled"] == 4, after
    assert not seen.console_errors, seen.console_errors


def test_dashboard_shows_what_a_task_waits_for_and_why_it_will_not_run(server: Server) -> None:
    """first waits in a paused queue; second depends on it, third on both. Each shows what it
    waits for, as links; cancelling first cancels the others with DependencyFailed, shown as
    the reason they ended. A task whose dependency succeeds stops waiting and runs."""
    pause(server, "gate")
    first = submit(server, {"type": "add", "params": {"x": 1, "y": 0}, "queue": "gate"})
    second = submit(server, {"type": "add", "params": {"x": 2, "y": 0}, "depends_on": [first]})
    third = submit(
        server, {"type": "add", "params": {"x": 3, "y": 0}, "depends_on": [first, second]}
    )
    pause(server, "slow")
    ahead = submit(server, {"type": "add", "params": {"x": 4, "y": 0}, "queue": "slow"})
    after = submit(server, {"type": "add", "params": {"x": 5, "y": 0}, "depends_on": [ahead]})

    with browse(server) as seen:
        page = seen.page
        page.goto(server.url + "/dashboard")
        expect(row(page, second).locator(".waiting")).to_have_text("waiting for 1 dependency")
        expect(row(page, third).locator(".waiting")).to_have_text("waiting for 2 dependencies")
        expect(row(page, first).locator(".waiting")).to_have_count(0)

        row(page, third).click()
        expect(detail_field(page, "status")).to_have_text("queued · waiting for 2 dependencies")
        for name in ("depends_on", "blocked_by"):
            links = detail_field(page, name).get_by_role("link")
            expect(links).to_have_text([first, second])
        expect(detail_field(page, "batch_id")).to_have_count(0)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / "dashboard-waiting.png", full_page=True)

        # Follow what it waits for, and cancel that: the chain ends, with its reason.
        detail_field(page, "blocked_by").get_by_role("link", name=first).click()
        expect(page.locator("#detail-id")).to_have_text(first)
        expect(detail_field(page, "status")).to_have_text("queued")
        expect(detail_field(page, "blocked_by")).to_have_count(0)
        page.get_by_role("button", name="Cancel task").click()
        expect(detail_field(page, "status")).to_have_text("cancelled")
        for task_id in (second, third):
            expect(status_of(page, task_id)).to_have_text("cancelled")
            expect(row(page, task_id).locator(".error")).to_have_text(
                re.compile(r"^DependencyFailed Task \S+, which this task depends on, ended")
            )
            expect(row(page, task_id).locator(".waiting")).to_have_count(0)
        row(page, third).click()
        expect(detail_field(page, "status")).to_have_text("cancelled")
        expect(detail_field(page, "error")).to_have_text(
            re.compile(r"^DependencyFailed Task .+ ended cancelled: this task will not run\.")
        )
        expect(page.get_by_role("button", name="Retry task")).to_be_visible()

        # A dependency that succeeds: the waiting task runs.
        expect(row(page, after).locator(".waiting")).to_have_text("waiting for 1 dependency")
        pause(server, "slow", False)
        expect(status_of(page, after)).to_have_text("succeeded")
        expect(row(page, after).locator(".waiting")).to_have_count(0)
        row(page, after).click()
        expect(detail_field(page, "status")).to_have_text("succeeded")
        expect(detail_field(page, "depends_on")).to_have_text(ahead)
        expect(detail_field(page, "blocked_by")).to_have_count(0)

    assert call(server, "GET", f"/tasks/{third}")[1]["error"]["type"] == "DependencyFailed"
    assert not seen.console_errors, seen.console_errors
