"""A small HTTP client of the API, for the command line (standard library only)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import Any

DEFAULT_URL = "http://127.0.0.1:5000"
TIMEOUT_SECONDS = 30.0


class ClientError(Exception):
    """The server refused a request, or could not be reached."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Client:
    def __init__(self, url: str = DEFAULT_URL, token: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.token = token

    def _request(self, method: str, path: str, body: Any = None) -> tuple[Any, dict[str, str]]:
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.url + path, data, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
                raw = response.read()
                return (json.loads(raw) if raw else None), dict(response.headers)
        except urllib.error.HTTPError as exc:
            raise ClientError(_problem_text(exc), exc.code) from None
        except (urllib.error.URLError, OSError) as exc:
            raise ClientError(f"Cannot reach {self.url}: {exc}") from None

    def submit(self, task_type: str, params: dict[str, Any], **options: Any) -> dict[str, Any]:
        body = {"type": task_type, "params": params}
        body.update({k: v for k, v in options.items() if v is not None})
        task, _ = self._request("POST", "/tasks", body)
        return task

    def get(self, task_id: str, wait: float | None = None) -> dict[str, Any]:
        """The task; with ``wait``, held by the server until it ends or ``wait`` seconds pass."""
        path = f"/tasks/{urllib.parse.quote(task_id, safe='')}"
        if wait:
            path += "?" + urllib.parse.urlencode({"wait": f"{wait:g}"})
        task, _ = self._request("GET", path)
        return task

    def list(
        self,
        statuses: Sequence[str] = (),
        task_type: str | None = None,
        page: int = 1,
        page_size: int = 20,
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        query: list[tuple[str, str | int]] = [("status", s) for s in statuses]
        if task_type:
            query.append(("type", task_type))
        query += [("page", page), ("page_size", page_size)]
        tasks, headers = self._request("GET", "/tasks?" + urllib.parse.urlencode(query))
        pagination = json.loads(headers.get("X-Pagination", "{}"))
        return tasks, pagination


def _problem_text(error: urllib.error.HTTPError) -> str:
    try:
        problem = json.loads(error.read())
    except ValueError:
        return f"HTTP {error.code}"
    text = f"{problem.get('title', error.code)}: {problem.get('detail', '')}".strip()
    for location, fields in (problem.get("errors") or {}).items():
        for field, messages in fields.items():
            text += f"\n  {location}.{field}: {' '.join(messages)}"
    return text
