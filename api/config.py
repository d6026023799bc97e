"""Settings: their defaults, read from ``TASKS_*`` environment variables, in one place."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from api.callbacks.hosts import CallbackHosts, HostsError
from api.callbacks.signing import SecretError, parse_secrets
from api.models import QUEUE_NAME_PATTERN

DEFAULT_DATABASE_URL = "sqlite:///taskapi.sqlite3"
DEFAULT_WORKERS = 32
DEFAULT_MAX_QUEUED = 10_000
DEFAULT_RESULT_TTL = 7 * 24 * 3600.0
#: Room for a batch of 1000 small tasks ten times over: 1000 ``add`` items, each with one
#: ``depends_on`` id, are about 100 KB.
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_POLL_INTERVAL = 0.5
DEFAULT_SHUTDOWN_GRACE = 30.0
DEFAULT_LEASE_SECONDS = 30.0
DEFAULT_LOG_LEVEL = "INFO"
DEFAULT_LOG_FORMAT = "text"
#: The formats of log lines: plain text, or one JSON object per line for log pipelines.
LOG_FORMATS = ("text", "json")
#: What a name of a list setting (TASKS_QUEUES, TASKS_ADMINS) is: no separator, no space.
_CALLER_NAME = re.compile(r"^[^\s,:]+$")


class ConfigError(ValueError):
    """A setting has a value the service cannot use."""


@dataclass(frozen=True)
class Settings:
    """Every setting of the service; each is ``TASKS_<NAME>`` in the environment."""

    database_url: str = DEFAULT_DATABASE_URL
    workers: int = DEFAULT_WORKERS
    max_queued: int = DEFAULT_MAX_QUEUED
    result_ttl: float = DEFAULT_RESULT_TTL
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    poll_interval: float = DEFAULT_POLL_INTERVAL
    shutdown_grace: float = DEFAULT_SHUTDOWN_GRACE
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    api_keys: str = ""
    api_keys_file: str = ""
    rate_limit: str = ""
    cors_origins: str = ""
    import_: str = ""
    log_level: str = DEFAULT_LOG_LEVEL
    log_format: str = DEFAULT_LOG_FORMAT
    #: The queues this process's workers take; empty: every queue.
    queues: tuple[str, ...] = ()
    #: The callers of TASKS_API_KEYS that may change queues (``PATCH /queues/{name}``).
    admins: tuple[str, ...] = ()
    #: The hosts a ``callback_url`` may call (api.callbacks.hosts); empty: callbacks are off.
    callback_hosts: str = ""
    #: The ``whsec_…`` secrets (space-separated) callbacks are signed with; never shown.
    webhook_secret: str = field(default="", repr=False)

    @staticmethod
    def key(name: str) -> str:
        return "TASKS_" + name.rstrip("_").upper()

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {cls.key(f.name): f.default for f in fields(cls)}

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> dict[str, str]:
        """The ``TASKS_*`` variables that are set, as raw strings."""
        env = os.environ if environ is None else environ
        keys = {cls.key(f.name) for f in fields(cls)}
        return {k: v for k, v in env.items() if k in keys}

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Settings:
        """Settings from a mapping of ``TASKS_*`` keys, converting and checking each value."""
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            key = cls.key(f.name)
            if key not in values:
                continue
            kind: type = type(f.default)
            raw = values[key]
            if kind is tuple:
                kwargs[f.name] = names(key, raw)
                continue
            try:
                value = kind(raw)
            except (TypeError, ValueError):
                raise ConfigError(f"{key}={raw!r} is not a valid {kind.__name__}.") from None
            kwargs[f.name] = value
        settings = cls(**kwargs)
        settings.check()
        return settings

    @classmethod
    def for_logging(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The log settings of the environment, every other one at its default.

        A command sets up its logging before anything else; a bad value of another setting is
        reported by ``create_app``, which also applies the command's options.
        """
        wanted = {cls.key("log_level"), cls.key("log_format")}
        return cls.from_mapping({k: v for k, v in cls.from_environ(environ).items() if k in wanted})

    def check(self) -> None:
        if self.workers < 0:
            raise ConfigError("TASKS_WORKERS must be 0 or more (0 serves the API only).")
        if self.max_queued < 1:
            raise ConfigError("TASKS_MAX_QUEUED must be at least 1.")
        if self.result_ttl <= 0:
            raise ConfigError("TASKS_RESULT_TTL must be a positive number of seconds.")
        if self.max_body_bytes < 1024:
            raise ConfigError("TASKS_MAX_BODY_BYTES must be at least 1024.")
        if self.poll_interval <= 0 or self.shutdown_grace < 0 or self.lease_seconds <= 0:
            raise ConfigError(
                "TASKS_POLL_INTERVAL and TASKS_LEASE_SECONDS must be positive, "
                "TASKS_SHUTDOWN_GRACE zero or more."
            )
        if self.log_level.upper() not in logging.getLevelNamesMapping():
            raise ConfigError(
                "TASKS_LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, "
                f"not {self.log_level!r}."
            )
        if self.log_format not in LOG_FORMATS:
            raise ConfigError(f"TASKS_LOG_FORMAT must be text or json, not {self.log_format!r}.")
        for queue in self.queues:
            if not re.fullmatch(QUEUE_NAME_PATTERN, queue):
                raise ConfigError(
                    f"TASKS_QUEUES: {queue!r} is not a queue name; a queue name is 1 to 63 "
                    "lower-case letters, digits, '_', '.' or '-', starting with a letter or a "
                    "digit. List the queues comma-separated (TASKS_QUEUES=emails,reports), or "
                    "leave it empty for every queue."
                )
        for admin in self.admins:
            if not _CALLER_NAME.fullmatch(admin):
                raise ConfigError(
                    f"TASKS_ADMINS: {admin!r} is not a caller name; list the names of callers "
                    "of TASKS_API_KEYS (the part before ':'), comma-separated "
                    "(TASKS_ADMINS=alice,ops)."
                )

        try:
            hosts = CallbackHosts(self.callback_hosts)
        except HostsError as exc:
            raise ConfigError(f"TASKS_CALLBACK_HOSTS: {exc}") from None
        try:
            secrets = parse_secrets(self.webhook_secret)
        except SecretError as exc:
            raise ConfigError(str(exc)) from None
        if hosts and not secrets:
            raise ConfigError(
                "TASKS_CALLBACK_HOSTS is set but TASKS_WEBHOOK_SECRET is not: callbacks are "
                "signed. Set TASKS_WEBHOOK_SECRET to a whsec_ secret (make one with: "
                'python -c "import base64, os; '
                "print('whsec_' + base64.b64encode(os.urandom(32)).decode())\")."
            )

    @property
    def hosts(self) -> CallbackHosts:
        """The hosts callbacks may call (none: callbacks are off)."""
        return CallbackHosts(self.callback_hosts)

    @property
    def webhook_keys(self) -> tuple[bytes, ...]:
        """The keys of TASKS_WEBHOOK_SECRET's secrets, each signing every delivery."""
        return parse_secrets(self.webhook_secret)

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    @property
    def import_modules(self) -> list[str]:
        return [m.strip() for m in self.import_.split(",") if m.strip()]


def names(key: str, raw: Any) -> tuple[str, ...]:
    """The names of a list setting: a comma-separated string (or, from a test's mapping, an
    iterable of strings), blanks dropped, each once, in their order."""
    items = raw.split(",") if isinstance(raw, str) else raw
    listed = list(items) if isinstance(items, Iterable) else [items]
    if not all(isinstance(item, str) for item in listed):
        raise ConfigError(f"{key}={raw!r} is not a comma-separated list of names.")
    return tuple(dict.fromkeys(item.strip() for item in listed if item.strip()))
