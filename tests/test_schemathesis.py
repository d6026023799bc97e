"""Schemathesis against the app's own spec (/openapi.json), in process, with every check it has.

``test_api`` tests each operation in the examples, coverage and fuzzing phases with positive and
negative data, against an app whose worker threads run. ``TestAPIWorkflow`` is the stateful
test: sequences that follow the links schemathesis infers (``POST /tasks`` -> read, cancel,
delete, legacy status), so ``use_after_free`` and ``ensure_resource_availability`` see real
resources. Every built-in check is on, including the ones that send extra requests
(``unsupported_method``, ``missing_required_header``, ``ignored_auth``, ...) and
``max_response_time`` with a generous limit. A failure is a finding: fix the service or the
spec, never the check. tests/schemathesis_hooks.py keeps generated requests meaningful
(a fresh ``Idempotency-Key`` per request, long polls capped) without changing what they test.
``test_largest_valid_body_is_accepted`` adds the one boundary random generation rarely reaches:
the longest body the spec calls valid.

Reproducible: a fixed seed, ``deterministic`` generation (Hypothesis ``derandomize``), no example
database. The state machine runs against an app with no worker threads (``TASKS_WORKERS=0``):
its next step depends on the previous answers, and workers finishing tasks at their own pace
would make those answers, hence the run, depend on timing. Bounded: ``MAX_EXAMPLES`` per
operation in the fuzzing phase, ``STATEFUL_*`` for the state machine.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
from flask import Flask
from schemathesis import Case, GenerationMode

from api.store import Store, TaskFilter
from tests import schemathesis_hooks  # (importing it registers the hooks)
from tests.conftest import make_app, runtime_of

SEED = 20261123
MAX_EXAMPLES = 50
STATEFUL_MAX_EXAMPLES = 25
STATEFUL_MAX_STEPS = 10
#: Every request is served in process; none should come near this.
MAX_RESPONSE_TIME_SECONDS = 10.0
#: No run can fill a queue this long, so 503 "queue full" never happens.
MAX_QUEUED = 10**9

#: schemathesis's default statuses that count as refusing invalid data, and 413: the contract
#: refuses a body over TASKS_MAX_BODY_BYTES with 413 before reading it, and a negative body can
#: be any size (LIBRARY-NOTES: schemathesis does not count 413 by default).
NEGATIVE_DATA_REJECTED = [
    "400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx",
]  # fmt: skip

CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "generation": {
            "mode": "all",
            "deterministic": True,
            "database": "none",
            "max-examples": MAX_EXAMPLES,
        },
        "checks": {
            "enabled": True,
            "max_response_time": MAX_RESPONSE_TIME_SECONDS,
            "negative_data_rejection": {"expected-statuses": NEGATIVE_DATA_REJECTED},
        },
        "phases": {
            "examples": {"enabled": True},
            "coverage": {"enabled": True},
            "fuzzing": {"enabled": True},
            "stateful": {"enabled": True, "max-steps": STATEFUL_MAX_STEPS},
        },
    }
)


class _Apps:
    """The apps under test, each on its own SQLite file, closed once."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="taskapi-schemathesis-"))
        self.apps: list[Flask] = []
        self.closed = False

    def make(self, name: str, **config: object) -> Flask:
        app = make_app(
            self.directory / f"{name}.sqlite3",
            TASKS_MAX_QUEUED=MAX_QUEUED,
            **schemathesis_hooks.callback_settings(),
            **config,
        )
        self.apps.append(app)
        return app

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for app in self.apps:
            runtime = runtime_of(app)
            runtime.pool.stop(grace=5)
            runtime.store.close()
        shutil.rmtree(self.directory, ignore_errors=True)


APPS = _Apps()
# When this module is collected but none of its tests run, the fixture below never tears down.
atexit.register(APPS.close)

#: Workers started by the fixture below, as `taskapi serve` runs them.
LIVE_APP = APPS.make("live")
#: API only: the stateful test's answers must not depend on when a worker gets to a task.
STATEFUL_APP = APPS.make("stateful", TASKS_WORKERS=0)

schema = schemathesis.openapi.from_wsgi("/openapi.json", LIVE_APP, config=CONFIG)
stateful_schema = schemathesis.openapi.from_wsgi("/openapi.json", STATEFUL_APP, config=CONFIG)


@pytest.fixture(scope="module", autouse=True)
def _workers() -> Iterator[None]:
    runtime_of(LIVE_APP).pool.start()
    yield
    APPS.close()


@schema.parametrize()
def test_api(case: Case) -> None:
    case.call_and_validate()


def _largest_valid_body() -> dict[str, Any]:
    """A TaskCreate at the spec's own limits, in characters that JSON escapes the longest.

    Random generation rarely reaches a maximal string, so this boundary gets its own case:
    U+1F600 is sent as ``\\ud83d\\ude00``, 12 bytes for one character of ``maxLength``.
    """
    message = schema.raw_schema["components"]["schemas"]["FailParams"]["properties"]["message"]
    return {"type": "fail", "params": {"message": "\U0001f600" * message["maxLength"]}}


@hypothesis.given(case=schema["/tasks"]["POST"].as_strategy(GenerationMode.POSITIVE))
@hypothesis.settings(
    max_examples=1,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[hypothesis.Phase.generate],
    suppress_health_check=list(hypothesis.HealthCheck),
)
def test_largest_valid_body_is_accepted(case: Case) -> None:
    case.body = _largest_valid_body()
    case.call_and_validate()


def _empty(store: Store) -> None:
    """Delete every schedule, then cancel and delete every task, through the store's own
    operations."""
    while True:
        schedules, _ = store.schedules(None, offset=0, limit=1000)
        if not schedules:
            break
        for schedule in schedules:
            store.delete_schedule(schedule.owner, schedule.name)
    while True:
        tasks, _ = store.list(TaskFilter(), offset=0, limit=1000, now=datetime.now(UTC))
        if not tasks:
            return
        now = datetime.now(UTC)
        for task in tasks:
            if not task.is_terminal:
                store.cancel(task.id, now, now + timedelta(hours=1))
            assert store.delete(task.id, now), f"cannot delete task {task.id} ({task.status})"


class APIWorkflow(stateful_schema.as_state_machine()):  # type: ignore[misc]
    def setup(self) -> None:
        # Each scenario starts on an empty store: what a step can do next depends on earlier
        # answers (a listing's items become links), so leftovers of earlier scenarios would
        # make a scenario's replay differ from its first run.
        _empty(runtime_of(STATEFUL_APP).store)
        super().setup()


TestAPIWorkflow = APIWorkflow.TestCase
TestAPIWorkflow.settings = hypothesis.settings(
    CONFIG.projects.get_default().get_hypothesis_settings(phase="stateful"),
    max_examples=STATEFUL_MAX_EXAMPLES,
    stateful_step_count=STATEFUL_MAX_STEPS,
    phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate, hypothesis.Phase.shrink],
    suppress_health_check=list(hypothesis.HealthCheck),
    verbosity=hypothesis.Verbosity.normal,
)
