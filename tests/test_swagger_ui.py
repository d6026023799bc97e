"""Swagger UI in a real browser, used as a person uses it: Debian's Chromium, headless.

Open ``/docs``, submit the default example of ``POST /tasks`` with "Try it out", then read that
task back with ``GET /tasks/{task_id}``. No request may leave the machine: the page's assets and
the spec come from the service itself. A screenshot is kept in ``test-artifacts/``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.browser import ARTIFACTS, TIMEOUT_MS, browse, origin
from tests.processes import Server, start_server

TOKEN = "s3cret-docs-41ab"


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
        tmp_path / "keyed.sqlite3", tmp_path, TASKS_WORKERS="2", TASKS_API_KEYS=f"ann:{TOKEN}"
    )
    try:
        yield server
    finally:
        server.stop()


def operation(page: Page, method: str, path: str) -> Locator:
    """The block of one operation, found by its method and path (not by tag or id)."""
    return page.locator(f".opblock.opblock-{method}").filter(
        has=page.locator(f'.opblock-summary-path[data-path="{path}"]')
    )


def execute(block: Locator) -> tuple[str, Any]:
    """Press Execute and read the live response as a person sees it: status and body."""
    clear = block.locator("button.btn-clear")
    if clear.count():
        clear.click()
    live = block.locator(".live-responses-table")
    expect(live).to_have_count(0)
    block.locator("button.execute").click()
    status = live.locator("tbody .response-col_status")
    expect(status).not_to_be_empty(timeout=TIMEOUT_MS)
    body = live.locator("tbody .response-col_description pre.microlight").first
    expect(body).not_to_be_empty()
    return status.inner_text().strip(), json.loads(body.inner_text())


def spec_example(spec: dict[str, Any]) -> Any:
    media = spec["paths"]["/tasks"]["post"]["requestBody"]["content"]["application/json"]
    if "example" in media:
        return media["example"]
    return next(iter(media["examples"].values()))["value"]


@pytest.mark.slow
def test_swagger_ui_submits_the_default_example_and_reads_the_task_back(server: Server) -> None:
    home = origin(server.url)
    status, spec = server.request("GET", "/openapi.json")
    assert status == 200
    example = spec_example(spec)
    assert example["type"] == "add", f"the example a newcomer tries first is a quick add: {example}"

    with browse(server) as seen:
        page = seen.page
        page.goto(server.url + "/docs", wait_until="networkidle")
        expect(page.locator(".swagger-ui .info .title")).to_contain_text("taskapi")

        # POST /tasks: Try it out, keep the default example, Execute.
        create = operation(page, "post", "/tasks")
        expect(create).to_have_count(1)
        create.locator(".opblock-summary-control").click()
        create.locator("button.try-out__btn").click()
        textarea = create.locator("textarea.body-param__text")
        expect(textarea).to_be_editable()
        assert json.loads(textarea.input_value()) == example, (
            "Swagger UI shows the spec's example, not a generated sample"
        )
        prefilled = {
            row.get_attribute("data-param-name"): value
            for row in create.locator("tr[data-param-name]").all()
            for value in [row.locator("input").first.input_value()]
            if value
        }
        assert not prefilled, (
            "Try it out fills these optional parameters from their examples, so the first "
            f"request a newcomer sends is not a plain submit: {prefilled}"
        )
        status, created = execute(create)
        assert status == "202", created
        task_id = created["id"]
        assert created["type"] == "add"

        # GET /tasks/{task_id}: Try it out, fill in the id, Execute until it has ended.
        read = operation(page, "get", "/tasks/{task_id}")
        expect(read).to_have_count(1)
        read.locator(".opblock-summary-control").click()
        read.locator("button.try-out__btn").click()
        read.locator('tr[data-param-name="task_id"] input').fill(task_id)
        for _ in range(10):
            status, task = execute(read)
            assert status == "200", task
            if task["status"] not in ("queued", "running"):
                break
            time.sleep(0.2)
        assert task["id"] == task_id
        assert task["status"] == "succeeded", task
        assert task["result"] == example["params"]["x"] + example["params"]["y"]
        expect(
            read.locator(".live-responses-table tbody .response-col_description")
        ).to_contain_text('"status": "succeeded"')

        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / "swagger-ui.png", full_page=True)

    requests = seen.urls()
    assert f"{home}/openapi.json" in requests
    assert f"{home}/tasks" in requests
    assert f"{home}/tasks/{task_id}" in requests
    assert not seen.console_errors, seen.console_errors


def open_docs(page: Page, server: Server) -> None:
    page.goto(server.url + "/docs", wait_until="networkidle")
    expect(operation(page, "get", "/tasks/{task_id}")).to_have_count(1, timeout=TIMEOUT_MS)


def locks(page: Page) -> Locator:
    """The lock buttons of the operations (Swagger UI's ``authorizeOperationBtn``)."""
    return page.locator(".opblock-summary button.authorization__btn")


@pytest.mark.slow
def test_swagger_ui_shows_no_lock_nor_authorize_while_keys_are_off(server: Server) -> None:
    """The spec offers the bearer scheme as optional on every guarded operation; a server run
    without keys asks for nothing, and its page says so: no lock, no Authorize button."""
    _, spec = server.request("GET", "/openapi.json")
    assert spec["paths"]["/tasks"]["post"]["security"] == [{"bearerAuth": []}, {}]

    with browse(server) as seen:
        page = seen.page
        open_docs(page, server)
        expect(page.locator(".opblock")).not_to_have_count(0)
        expect(locks(page)).to_have_count(0)
        expect(page.locator("button.authorize")).to_have_count(0)

        # And every operation still works without a token.
        types = operation(page, "get", "/task-types")
        types.locator(".opblock-summary-control").click()
        types.locator("button.try-out__btn").click()
        status, listed = execute(types)
        assert status == "200", listed
    assert not seen.console_errors, seen.console_errors


@pytest.mark.slow
def test_swagger_ui_with_keys_locks_operations_until_authorized(keyed_server: Server) -> None:
    """With keys on: Authorize is offered, the guarded operations carry an open lock until a
    token is given (then a closed one), open ones none, and Try it out sends the token."""
    server = keyed_server
    with browse(server) as seen:
        page = seen.page
        open_docs(page, server)
        create = operation(page, "post", "/tasks")
        health = operation(page, "get", "/health")
        expect(page.locator("button.authorize")).to_have_count(1)
        expect(create.locator("button.authorization__btn")).to_have_attribute(
            "aria-label", "authorization button unlocked"
        )
        expect(health.locator("button.authorization__btn")).to_have_count(0)

        types = operation(page, "get", "/task-types")
        types.locator(".opblock-summary-control").click()
        types.locator("button.try-out__btn").click()
        status, problem = execute(types)
        assert status == "401", problem

        page.locator("button.authorize").first.click()
        dialog = page.locator(".dialog-ux .modal-ux")
        dialog.locator("input").first.fill(TOKEN)
        dialog.locator("button.modal-btn.auth.authorize").click()
        expect(dialog.get_by_role("button", name="Remove authorization")).to_be_visible()
        dialog.locator("button.btn-done").click()
        expect(create.locator("button.authorization__btn")).to_have_attribute(
            "aria-label", "authorization button locked"
        )

        status, listed = execute(types)
        assert status == "200", listed
        assert {"add", "sleep", "fail"} <= {t["name"] for t in listed}
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / "swagger-ui-keys.png", full_page=True)

    sent = [r.headers.get("authorization") for r in seen.requests if r.url.endswith("/task-types")]
    assert sent == [None, f"Bearer {TOKEN}"], sent
