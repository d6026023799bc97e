"""The PostgreSQL benchmark script still runs (a small size; its figures are not judged here)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_pg_drain_benchmark_runs() -> None:
    url = os.environ.get("TASKS_TEST_DATABASE_URL")
    if not url:
        pytest.skip("TASKS_TEST_DATABASE_URL is not set: no PostgreSQL to test against")
    result = subprocess.run(
        [sys.executable, "-m", "bench.pg_drain", "--url", url, "--tasks", "300",
         "--processes", "2", "--threads", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    for figure in ("drain", "claim statement", "submit to start"):
        assert figure in result.stdout
