"""A small HTTP client of the API, for the command line (standard library only)."""

from __future__ import annotations

import builtins
import http.client
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import Any

DEFAULT_URL = "http://127.0.0.1:5000"
#: Seconds a request may take, from connecting to the last byte of the answer.
TIMEOUT_SECONDS = 30.0
#: What to try when the server cannot be reached, appended to the reason.
REACH_HINT = "is `taskapi serve` running? --url or TASKS_URL changes it"


class ClientError(Exception):
    """The server refused a request, or could not be reached.

    ``status`` is the HTTP status of a refusal (None when there was no answer); ``title`` and
    ``detail`` are those of its problem document.
    """

    def __init__(
        self,
        message: str,
        status: int | None = None,
        title: str | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.detail = detail


class Client:
    """The calls of the command line, each answering the decoded JSON or raising ClientError."""

    def __init__(
        self, url: str = DEFAULT_URL, token: str | None = None, timeout: float | None = None
    ) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = TIMEOUT_SECONDS if timeout is None else timeout

    def _request(self, method: str, path: str, body: Any = None) -> tuple[Any, dict[str, str]]:
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if urllib.parse.urlsplit(self.url).scheme not in ("http", "https"):
            raise ClientError(
                f"{self.url!r} is not a URL like {DEFAULT_URL}; --url or TASKS_URL sets it"
            )
        request = urllib.request.Request(self.url + path, data, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
                answer_headers = dict(response.headers)
        except urllib.error.HTTPError as exc:
            raise _refusal(exc) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            raise ClientError(self._unreachable(exc)) from None
        try:
            return (json.loads(raw) if raw else None), answer_headers
        except ValueError:
            raise ClientError(
                f"{self.url} answered {method} {path} with something that is not JSON; "
                "is it a taskapi server? --url or TASKS_URL changes it"
            ) from None

    def _unreachable(self, error: Exception) -> str:
        """Why there was no answer, in one line that says what to try."""
        reason: Any = error.reason if isinstance(error, urllib.error.URLError) else error
        if isinstance(reason, TimeoutError):
            return (
                f"taskapi at {self.url} did not answer within {self.timeout:g}s (timed out); "
                "the server may be overloaded or stuck, or --url / TASKS_URL names another one"
            )
        if isinstance(reason, OSError) and reason.strerror:
            text = reason.strerror
        elif isinstance(reason, http.client.RemoteDisconnected | http.client.BadStatusLine):
            text = "it closed the connection without an HTTP answer"
        else:
            text = str(reason) or type(reason).__name__
        return f"cannot reach taskapi at {self.url} ({text[:1].lower()}{text[1:]}); {REACH_HINT}"

    @staticmethod
    def _task_path(task_id: str) -> str:
        return f"/tasks/{urllib.parse.quote(task_id, safe='')}"

    def submit(self, task_type: str, params: dict[str, Any], **options: Any) -> dict[str, Any]:
        body = {"type": task_type, "params": params}
        body.update({k: v for k, v in options.items() if v is not None})
        task, _ = self._request("POST", "/tasks", body)
        return task

    def get(self, task_id: str, wait: float | None = None) -> dict[str, Any]:
        """The task; with ``wait``, held by the server until it ends or ``wait`` seconds pass."""
        path = self._task_path(task_id)
        if wait:
            path += "?" + urllib.parse.urlencode({"wait": f"{wait:g}"})
        task, _ = self._request("GET", path)
        return task

    def cancel(self, task_id: str) -> dict[str, Any]:
        """Cancel a task: the task as it is after (``cancel_requested`` while it still runs)."""
        task, _ = self._request("POST", self._task_path(task_id) + "/cancel")
        return task

    def delete(self, task_id: str) -> None:
        """Delete a finished task."""
        self._request("DELETE", self._task_path(task_id))

    def resend_callback(self, task_id: str) -> dict[str, Any]:
        """Send an ended task's callback again, whether it was delivered or failed: the task,
        its ``callback`` pending again (attempts counted from zero, the same ``webhook-id``).
        Refused (409) for a task without a ``callback_url``, one that has not ended, or one
        whose callback is still pending."""
        task, _ = self._request("POST", self._task_path(task_id) + "/callback/retry")
        return task

    def task_types(self) -> list[dict[str, Any]]:
        """Every task type the server runs, with its params schema and defaults."""
        types, _ = self._request("GET", "/task-types")
        return types

    def list(
        self,
        statuses: Sequence[str] = (),
        task_type: str | None = None,
        page: int = 1,
        page_size: int = 20,
        queue: str | None = None,
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        query: list[tuple[str, str | int]] = [("status", s) for s in statuses]
        if task_type:
            query.append(("type", task_type))
        if queue is not None:  # even empty: the server says what is wrong with it
            query.append(("queue", queue))
        query += [("page", page), ("page_size", page_size)]
        tasks, headers = self._request("GET", "/tasks?" + urllib.parse.urlencode(query))
        pagination = json.loads(headers.get("X-Pagination", "{}"))
        return tasks, pagination

    @staticmethod
    def _queue_path(name: str) -> str:
        return f"/queues/{urllib.parse.quote(name, safe='')}"

    def queues(self) -> builtins.list[dict[str, Any]]:
        """Every queue that has tasks or settings, ``default`` always, by name."""
        queues, _ = self._request("GET", "/queues")
        return queues

    def queue(self, name: str) -> dict[str, Any]:
        """One queue: its settings, its counts by status and the age of its oldest ready task."""
        queue, _ = self._request("GET", self._queue_path(name))
        return queue

    def update_queue(self, name: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Change a queue's settings (``paused``, ``concurrency``: None for no limit): the
        queue as it is after. Only an admin may (403 otherwise, when the server has keys)."""
        queue, _ = self._request("PATCH", self._queue_path(name), changes)
        return queue


def _refusal(error: urllib.error.HTTPError) -> ClientError:
    """A ClientError from an HTTP error answer: its problem's title and detail, and any
    field errors of a 422, one per line."""
    try:
        problem = json.loads(error.read())
    except (ValueError, OSError):
        problem = None
    if not isinstance(problem, dict):
        return ClientError(f"HTTP {error.code} {error.reason}", error.code)
    title = str(problem.get("title") or error.code)
    detail = problem.get("detail")
    text = f"{title}: {detail}" if detail else title
    for location, fields in (problem.get("errors") or {}).items():
        for field, messages in fields.items():
            text += f"\n  {location}.{field}: {' '.join(messages)}"
    return ClientError(text, error.code, title, detail)
