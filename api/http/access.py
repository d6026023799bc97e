"""Who is calling: API keys, the Bearer check, and the caller every task belongs to.

With ``TASKS_API_KEYS`` (``name:token`` pairs) or ``TASKS_API_KEYS_FILE`` (one pair a line),
every operation but the open ones needs ``Authorization: Bearer <token>``. Tokens are compared
in constant time and never logged. With no keys the API is open and every caller is ``""``.
With keys, only the callers named in ``TASKS_ADMINS`` may change queues (``admin_only``).
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import Response, current_app, g, request

from api.config import ConfigError
from api.errors import problem
from api.exceptions import NotAnAdmin

#: Endpoints anyone may call: liveness, readiness, the spec and its UI, the dashboard's page
#: and assets (they hold no data: the page calls the API with the token it is given).
#: Where ``api.http.init_app`` keeps the app's ApiKeys (``app.extensions``).
KEYS_EXTENSION = "taskapi.api_keys"
OPEN_ENDPOINTS = frozenset(
    {
        "ops.Health",
        "ops.Ready",
        "api-docs.openapi_json",
        "api-docs.openapi_swagger_ui",
        "docs_assets.swagger_asset",
        "dashboard.page",
        "dashboard.asset",
        "static",
    }
)
REALM = 'Bearer realm="taskapi"'


@dataclass(frozen=True)
class ApiKeys:
    """The callers and their tokens."""

    tokens: Mapping[str, str] = field(default_factory=dict)  # token -> caller name
    #: The callers that may change queues (TASKS_ADMINS).
    admins: frozenset[str] = frozenset()

    @property
    def enabled(self) -> bool:
        return bool(self.tokens)

    def may_administer(self, name: str) -> bool:
        """Whether caller ``name`` may change queues: anyone without keys, an admin with them."""
        return not self.enabled or name in self.admins

    @classmethod
    def load(cls, spec: str, path: str = "", admins: Collection[str] = ()) -> ApiKeys:
        """From ``name:token,…`` and/or a file of ``name:token`` lines (``#`` comments), with
        ``admins`` (TASKS_ADMINS), each of which must be one of those callers."""
        entries = [e for e in spec.split(",") if e.strip()]
        if path:
            try:
                text = Path(path).read_text()
            except OSError as exc:
                raise ConfigError(f"TASKS_API_KEYS_FILE: cannot read {path}: {exc}") from None
            entries += [line for line in text.splitlines() if line.strip() and line[0] != "#"]
        tokens: dict[str, str] = {}
        for entry in entries:
            name, sep, token = entry.strip().partition(":")
            if not sep or not name.strip() or not token.strip():
                raise ConfigError("TASKS_API_KEYS takes name:token pairs, comma-separated.")
            if token.strip() in tokens:
                raise ConfigError(f"TASKS_API_KEYS: two callers share the token of {name!r}.")
            tokens[token.strip()] = name.strip()
        _check_admins(admins, sorted(set(tokens.values())))
        return cls(tokens, frozenset(admins))

    def caller(self, token: str) -> str | None:
        """The caller whose token this is, or None; compares with every token, in constant time."""
        found = None
        for known, name in self.tokens.items():
            if hmac.compare_digest(known.encode(), token.encode()):
                found = name
        return found


def _check_admins(admins: Collection[str], callers: list[str]) -> None:
    if admins and not callers:
        raise ConfigError(
            "TASKS_ADMINS names callers of TASKS_API_KEYS, but no API keys are set: set "
            "TASKS_API_KEYS (or TASKS_API_KEYS_FILE) too, or leave TASKS_ADMINS empty (without "
            "keys, every caller may change queues)."
        )
    for admin in admins:
        if admin not in callers:
            raise ConfigError(
                f"TASKS_ADMINS: {admin!r} is not a caller of TASKS_API_KEYS (its callers: "
                f"{', '.join(callers)}); name each admin as its key names it, before the ':'."
            )


def caller() -> str:
    """The caller of this request ("" when the API runs without keys)."""
    return str(g.get("caller", ""))


def authenticate(keys: ApiKeys) -> None:
    """``before_request``: set the caller, or keep a 401 for ``refuse_unauthenticated``.

    The refusal waits until the rate limit has counted the request (by address), so that
    guessing tokens is limited like anything else.
    """
    g.refusal = _check(keys)


def refuse_unauthenticated() -> Response | None:
    """``before_request``, after the rate limit: the 401 of ``authenticate``, if any."""
    refusal: Response | None = g.pop("refusal", None)
    return refusal


def _check(keys: ApiKeys) -> Response | None:
    g.caller = ""
    if not keys.enabled or request.endpoint in OPEN_ENDPOINTS or request.endpoint is None:
        return None
    if request.method == "OPTIONS":  # a CORS preflight carries no credentials
        return None
    header = request.headers.get("Authorization")
    if header is None:
        return _unauthorized(
            "This operation needs an API key: send Authorization: Bearer <token>.", None
        )
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip() or " " in token.strip():
        return _unauthorized(
            "The Authorization header must read: Bearer <token>.", "invalid_request"
        )
    name = keys.caller(token.strip())
    if name is None:
        return _unauthorized("The token is not valid; check TASKS_TOKEN.", "invalid_token")
    g.caller = name
    return None


def _unauthorized(detail: str, error: str | None) -> Response:
    challenge = REALM if error is None else f'{REALM}, error="{error}"'
    return problem(401, detail, headers={"WWW-Authenticate": challenge})


def admin_only(view: Callable[..., Any]) -> Callable[..., Any]:
    """Let only a caller that may change queues through to ``view``; refuse the others (403)
    before their request is read."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        keys: ApiKeys = current_app.extensions[KEYS_EXTENSION]
        name = caller()
        if not keys.may_administer(name):
            raise NotAnAdmin(name)
        return view(*args, **kwargs)

    return wrapper
