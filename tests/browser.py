"""Debian's Chromium, headless, on one page of a test server: nothing may leave the machine.

Every request to another origin is refused and recorded; ``browse`` fails the test if the page
made one, made no request at all, or threw. Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from playwright.sync_api import BrowserContext, Page, Request, Route, sync_playwright

from tests.processes import Server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--disable-dev-shm-usage",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
TIMEOUT_MS = 15_000


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@dataclass
class Browsing:
    """A page on the server's origin, and what it did: requests, errors, refused requests."""

    page: Page
    requests: list[Request] = field(default_factory=list)
    strangers: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def urls(self) -> list[str]:
        return [request.url for request in self.requests]


@contextmanager
def browse(
    server: Server, setup: Callable[[BrowserContext], None] | None = None
) -> Iterator[Browsing]:
    home = origin(server.url)

    def only_this_server(route: Route) -> None:
        if origin(route.request.url) == home:
            route.fallback()
        else:
            seen.strangers.append(route.request.url)
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.set_default_timeout(TIMEOUT_MS)
            context.route("**/*", only_this_server)
            if setup:
                setup(context)  # routes added later run first
            page = context.new_page()
            seen = Browsing(page)
            context.on("request", lambda request: seen.requests.append(request))
            page.on(
                "console",
                lambda msg: seen.console_errors.append(msg.text) if msg.type == "error" else None,
            )
            page.on("pageerror", lambda exc: seen.page_errors.append(str(exc)))
            yield seen
            context.close()
        finally:
            browser.close()
    assert seen.requests, "the page made requests"
    assert not seen.strangers, f"requests that leave the machine: {seen.strangers}"
    assert not [url for url in seen.urls() if origin(url) != home]
    assert not seen.page_errors, seen.page_errors
