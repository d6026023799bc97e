"""taskapi against the bare stack: one command, one table.

    python -m bench            # the full run (about ten minutes on 2 cores)
    python -m bench --smoke    # small sizes, to see that it works (CI runs this)

Starts ``taskapi serve`` as production runs it (gunicorn, gthread workers, a SQLite file),
and the bare Flask app of bench/bare_app.py on the same server with the same processes and
threads, both on loopback; drives both from this process (bench/loadgen.py) and prints each
figure with its ratio to the bare app and the target it must meet. It also serves the floor
(bench/floor_app.py: Flask and one SQLite statement per request, nothing else) with the same
settings, to show how much of the gap to the bare app the store alone makes. The machine is
shared and noisy: read the ratios of one run, not absolute numbers across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import scenarios
from bench.fill import fill
from bench.loadgen import percentile
from bench.servers import Running, start_bare, start_floor, start_taskapi


@dataclass
class Sizes:
    seconds: float
    drain: int
    single: int
    growth_small: int
    growth_large: int
    growth_seconds: float
    memory_small: int
    memory_large: int


FULL = Sizes(10, 5000, 300, 1_000, 1_000_000, 5, 1_000, 100_000)
SMOKE = Sizes(1, 200, 20, 200, 2_000, 1, 200, 1_000)


@dataclass
class Row:
    figure: str
    unit: str
    taskapi: float
    bare: float | None = None
    #: "ratio>=0.6": taskapi/bare at least; "ratio<=1.5": at most; "<=5": taskapi at most.
    target: str = ""

    @property
    def ratio(self) -> float | None:
        return None if not self.bare else self.taskapi / self.bare

    @property
    def met(self) -> bool | None:
        if not self.target:
            return None
        kind, _, bound = self.target.partition("=")
        value = self.ratio if kind.startswith("ratio") else self.taskapi
        if value is None:
            return None
        return value >= float(bound) if kind.endswith(">") else value <= float(bound)


class MemoryWatch:
    """Samples the service's memory every 50 ms while it works: peak PSS and peak RSS."""

    def __init__(self, server: Running) -> None:
        self.server = server
        self.peak_pss = self.peak_rss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.sample()

    def sample(self) -> None:
        pss, rss = self.server.memory()
        self.peak_pss, self.peak_rss = max(self.peak_pss, pss), max(self.peak_rss, rss)

    def __enter__(self) -> MemoryWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@contextmanager
def serving(start: Callable[[], Running]) -> Iterator[Running]:
    server = start()
    try:
        yield server
    finally:
        server.stop()


def handle(port: int, tasks: int, chunk: int = 5000) -> None:
    """Run `tasks` tasks through the service, in chunks under its queue bound."""
    while tasks > 0:
        n = min(chunk, tasks)
        run(scenarios.submit_ids(port, n))
        run(scenarios.settle(port))
        tasks -= n


def measure(args: argparse.Namespace) -> list[Row]:
    size = SMOKE if args.smoke else FULL
    work = Path(tempfile.mkdtemp(prefix="taskapi-bench-"))
    shape = {"processes": args.processes, "threads": args.threads}
    ours = dict(shape, workers=args.workers)
    rows: list[Row] = []
    say(f"working in {work}; server logs there")

    say("bare app: submit, status, drain")
    with (
        serving(lambda: start_bare(**shape, log=work / "bare.log")) as bare,
        MemoryWatch(bare) as bare_memory,
    ):
        b_submit = run(scenarios.submit_load(bare.port, size.seconds))
        b_status = run(scenarios.status_load(bare.port, ["1"], size.seconds))
        b_drain = run(scenarios.drain(bare.port, size.drain))

    say("taskapi: submit, status, drain")
    with serving(lambda: start_taskapi(work / "main.db", **ours, log=work / "taskapi.log")) as t:
        with MemoryWatch(t) as memory:
            t_submit = run(scenarios.submit_load(t.port, size.seconds))
            run(scenarios.settle(t.port))
            ids = run(scenarios.submit_ids(t.port, 200))
            run(scenarios.settle(t.port))
            t_status = run(scenarios.status_load(t.port, ids, size.seconds))
            t_drain = run(scenarios.drain(t.port, size.drain))
        say("idle: taskapi and the bare app, one task at a time, alternately")
        with serving(lambda: start_bare(**shape, log=work / "bare.log")) as bare:
            t_single, b_single = run(scenarios.idle(t.port, bare.port, size.single))

    say("floor (Flask and one SQLite statement): submit, status")
    with serving(lambda: start_floor(work / "main.db", **shape, log=work / "floor.log")) as f:
        f_submit = run(scenarios.submit_load(f.port, size.seconds))
        f_status = run(scenarios.status_load(f.port, ids, size.seconds))

    p50, p99 = (lambda v: percentile(v, 50) * 1000), (lambda v: percentile(v, 99) * 1000)
    rows += [
        Row("submit throughput", "req/s", t_submit.per_second, b_submit.per_second,
            "ratio>=0.6"),
        Row("submit p50", "ms", p50(t_submit.latencies), p50(b_submit.latencies)),
        Row("submit p99", "ms", p99(t_submit.latencies), p99(b_submit.latencies)),
        Row("status reads", "req/s", t_status.per_second, b_status.per_second, "ratio>=0.7"),
        Row("drain", "tasks/s", t_drain.per_second, b_drain.per_second, "ratio>=0.7"),
        Row("drain submit to done p50", "ms", p50(t_drain.latencies), p50(b_drain.latencies)),
        Row("drain submit to done p99", "ms", p99(t_drain.latencies), p99(b_drain.latencies)),
        Row("idle: submit to done p50 (wait)", "ms", p50(t_single.round_trips),
            p50(b_single.round_trips), "ratio<=1.5"),
        Row("idle: submit to done p99 (wait)", "ms", p99(t_single.round_trips),
            p99(b_single.round_trips)),
        Row("idle: submit to start p50", "ms", p50(t_single.to_start), None, "<=5"),
        Row("idle: submit to start p99", "ms", p99(t_single.to_start)),
        Row("floor submit, 1 SQLite insert", "req/s", f_submit.per_second,
            b_submit.per_second),
        Row("floor status, 1 SQLite read", "req/s", f_status.per_second,
            b_status.per_second),
        Row("PSS under load", "MiB", memory.peak_pss / 2**20, bare_memory.peak_pss / 2**20,
            "<=100"),
    ]  # fmt: skip

    say(f"growth: {size.growth_small} then {size.growth_large} tasks in the store")
    growth: dict[int, tuple[float, float]] = {}
    database = work / "growth.db"
    for total in (size.growth_small, size.growth_large):
        say(f"filling the store to {total} tasks")
        sample = fill(database, total)
        with serving(lambda: start_taskapi(database, **ours, log=work / "growth.log")) as t:
            # One connection: what a request costs with a full store, not time in a queue.
            submit = run(scenarios.submit_load(t.port, size.growth_seconds, clients=1))
            run(scenarios.settle(t.port))
            status = run(scenarios.status_load(t.port, sample, size.growth_seconds, clients=1))
        growth[total] = (p50(submit.latencies), p50(status.latencies))
    small, large = growth[size.growth_small], growth[size.growth_large]
    rows += [
        Row(f"submit p50, {size.growth_large:,} stored", "ms", large[0], small[0], "ratio<=1.2"),
        Row(f"status p50, {size.growth_large:,} stored", "ms", large[1], small[1], "ratio<=1.2"),
    ]

    say(f"memory: {size.memory_small} then {size.memory_large} tasks handled")
    with serving(lambda: start_taskapi(work / "memory.db", **ours, log=work / "memory.log")) as t:
        with MemoryWatch(t) as after_small:
            handle(t.port, size.memory_small)
        with MemoryWatch(t) as after_large:
            handle(t.port, size.memory_large - size.memory_small)
    rows += [
        Row(f"peak PSS after {size.memory_large:,} tasks", "MiB", after_large.peak_pss / 2**20,
            after_small.peak_pss / 2**20, "ratio<=1.1"),
        Row(f"peak RSS after {size.memory_large:,} tasks", "MiB", after_large.peak_rss / 2**20,
            after_small.peak_rss / 2**20, "ratio<=1.1"),
    ]  # fmt: skip
    return rows


def table(rows: list[Row], args: argparse.Namespace) -> str:
    lines = [
        f"taskapi bench: {platform.node()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, {args.processes} process(es) x {args.threads} threads, "
        f"{args.workers} workers{' (smoke sizes)' if args.smoke else ''}",
        "",
        f"| {'figure':38} | {'taskapi':>10} | {'reference':>10} | {'ratio':>6} | "
        f"{'target':>10} | met |",
        f"|{'-' * 40}|{'-' * 12}|{'-' * 12}|{'-' * 8}|{'-' * 12}|-----|",
    ]
    for row in rows:
        ref = "" if row.bare is None else f"{row.bare:10.2f}"
        ratio = "" if row.ratio is None else f"{row.ratio:6.2f}"
        met = {None: "", True: "yes", False: "NO"}[row.met]
        lines.append(
            f"| {row.figure + ' (' + row.unit + ')':38} | {row.taskapi:10.2f} | {ref:>10} | "
            f"{ratio:>6} | {row.target:>10} | {met:3} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="small sizes (seconds, not minutes)")
    parser.add_argument("--processes", type=int, default=1, help="server processes (1)")
    parser.add_argument("--threads", type=int, default=32, help="HTTP threads each (32)")
    parser.add_argument("--workers", type=int, default=4, help="worker threads each (4)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    rows = measure(args)
    print(table(rows, args))
    if args.json:
        args.json.write_text(
            json.dumps([{**asdict(r), "ratio": r.ratio, "met": r.met} for r in rows], indent=2)
        )


if __name__ == "__main__":
    main()
