"""schemathesis's own command against a live `taskapi serve`, over a real socket.

The in-process run (test_schemathesis.py) goes through the WSGI adapter; this one goes through
gunicorn, its HTTP parsing and its headers, as a client does. Settings are schemathesis.toml's.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.processes import start_server
from tests.receiver import Receiver, receiving
from tests.schemathesis_hooks import callback_settings

ROOT = Path(__file__).resolve().parent.parent
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
#: Examples per operation and phase: enough to walk every operation, small enough for CI.
MAX_EXAMPLES = 25
#: A bound from outside: schemathesis's --max-time is not a cap (LIBRARY-NOTES).
RUN_TIMEOUT_SECONDS = 420


TOKEN = "tok-schemathesis-3b9e"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as running:
        yield running


@pytest.mark.slow
@pytest.mark.parametrize("keys", [False, True], ids=["open", "with-api-keys"])
def test_schemathesis_finds_nothing_against_a_live_server(
    tmp_path: Path, keys: bool, receiver: Receiver
) -> None:
    """With keys on, every request carries a token, and ``ignored_auth`` checks that the
    service refuses one without it. The caller is an admin: a run whose every change of a
    queue met 403 would test nothing of it (tests/test_queues_api.py has the 403). Callbacks
    go to a receiver that takes them (204), so that they end delivered and ``retryCallback``
    has some to send again."""
    env = {"TASKS_MAX_QUEUED": str(10**9), **callback_settings(receiver.url)}
    if keys:
        env["TASKS_API_KEYS"] = f"schemathesis:{TOKEN}"
        env["TASKS_ADMINS"] = "schemathesis"
    server = start_server(tmp_path / "tasks.sqlite3", tmp_path, **env)
    try:
        result = subprocess.run(
            [
                str(SCHEMATHESIS),
                "--config-file",
                str(ROOT / "schemathesis.toml"),
                "--no-color",
                "run",
                f"{server.url}/openapi.json",
                "--phases",
                "examples,coverage,fuzzing,stateful",
                "--max-examples",
                str(MAX_EXAMPLES),
                "--workers",
                "1",
                *(["--header", f"Authorization: Bearer {TOKEN}"] if keys else []),
            ],
            cwd=ROOT,
            env={
                **os.environ,
                "SCHEMATHESIS_HOOKS": "tests.schemathesis_hooks",
                "TASKS_TEST_CALLBACK_URL": receiver.url,
                "PYTHONPATH": str(ROOT),
            },
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_SECONDS,
        )
    finally:
        server.stop()
    report = result.stdout[-6000:] + result.stderr[-2000:]
    assert result.returncode == 0, report
    assert "No issues found" in result.stdout, report
    for phase in ("Examples", "Coverage", "Fuzzing", "Stateful"):
        assert f"✅  {phase}" in result.stdout, f"phase {phase} did not pass:\n{report}"
