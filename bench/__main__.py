"""taskapi against the bare stack and its peers: one command, two tables.

    python -m bench            # the full run, peers included (about 15 minutes on 2 cores)
    python -m bench --smoke    # small sizes, no peers unless --peers (CI runs this)

Starts ``taskapi serve`` as a user starts it (a SQLite file, its own defaults for processes,
threads and workers unless the bench is given ``--processes``/``--threads``/``--workers``/
``--worker-processes``), and the bare Flask app of bench/bare_app.py on gunicorn gthread (2
processes x 8 threads unless told otherwise), both on loopback; drives both from this process
(bench/loadgen.py) and prints each figure with its ratio to the bare app and the target it must
meet. It also serves the floor (bench/floor_app.py: Flask and one SQLite statement per request,
nothing else) on the bare app's settings, to show how much of the gap the store alone makes.

The peers (bench/peers/: Flask + Celery + Redis, Flask + Huey on SQLite, Flask + RQ + Redis)
serve the same two endpoints on the same server; the second table sets taskapi beside each of
them and its ratio to the best. Burndown (bench/burndown.py) times ``taskapi worker`` processes
through a backlog written straight into the store, SQLite and PostgreSQL; the CPU figures run
bench/tasks.py's ``spin``. The machine is shared and noisy: read the ratios of one run, not
absolute numbers across runs.
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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from api.config import DEFAULT_WORKERS
from bench import cpu, scenarios
from bench.burndown import (
    DEFAULT_PG_URL,
    Burndown,
    burndown_postgres,
    burndown_sqlite,
    postgres_answers,
)
from bench.fill import fill
from bench.loadgen import percentile
from bench.peers import PEERS, Peer, redis_answers
from bench.servers import (
    REFERENCE_PROCESSES,
    REFERENCE_THREADS,
    Running,
    start_bare,
    start_floor,
    start_taskapi,
)


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
    burndown_sqlite: int
    burndown_postgres: int


FULL = Sizes(10, 2000, 300, 1_000, 1_000_000, 5, 1_000, 100_000, 50_000, 20_000)
SMOKE = Sizes(1, 200, 20, 200, 2_000, 1, 200, 1_000, 500, 500)


@dataclass
class Row:
    figure: str
    unit: str
    taskapi: float
    bare: float | None = None
    #: "ratio>=0.6": taskapi/bare at least; "ratio<=1.5": at most; "<=5": taskapi at most.
    target: str = ""
    #: The same figure of each peer that ran (bench/peers/), by name.
    peers: dict[str, float] = field(default_factory=dict)
    #: Whether more is better (throughput) or less (latency, memory): picks the best peer.
    higher_is_better: bool = True

    @property
    def ratio(self) -> float | None:
        return None if not self.bare else self.taskapi / self.bare

    @property
    def best_peer(self) -> tuple[str, float] | None:
        if not self.peers:
            return None
        pick = max if self.higher_is_better else min
        return pick(self.peers.items(), key=lambda item: item[1])

    @property
    def peer_ratio(self) -> float | None:
        """taskapi over the best peer."""
        best = self.best_peer
        return None if best is None or not best[1] else self.taskapi / best[1]

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


@dataclass
class PeerFigures:
    submit: float
    drain_polls: float
    idle_p50: float
    pss: float


def p50(values: list[float]) -> float:
    return percentile(values, 50) * 1000


def p99(values: list[float]) -> float:
    return percentile(values, 99) * 1000


def reference_shape(args: argparse.Namespace) -> dict[str, int]:
    """The bare app's, the floor's and the peers' server: as told, else gunicorn 2 x 8."""
    return {
        "processes": args.processes or REFERENCE_PROCESSES,
        "threads": args.threads or REFERENCE_THREADS,
    }


def taskapi_sizing(args: argparse.Namespace) -> dict[str, int | None]:
    """Only the sizing flags the bench was given: ``taskapi serve`` keeps its own defaults."""
    return {
        "processes": args.processes,
        "threads": args.threads,
        "workers": args.workers,
        "worker_processes": args.worker_processes,
    }


def measure(args: argparse.Namespace, notes: list[str]) -> list[Row]:
    size = SMOKE if args.smoke else FULL
    work = Path(tempfile.mkdtemp(prefix="taskapi-bench-"))
    shape = reference_shape(args)
    ours = taskapi_sizing(args)
    spin_env = {"TASKS_IMPORT": "bench.tasks"}
    say(f"working in {work}; server logs there")

    say("bare app: submit, status, drain")
    with (
        serving(lambda: start_bare(**shape, log=work / "bare.log")) as bare,
        MemoryWatch(bare) as bare_memory,
    ):
        b_submit = run(scenarios.submit_load(bare.port, size.seconds))
        b_status = run(scenarios.status_load(bare.port, ["1"], size.seconds))
        b_drain = run(scenarios.drain(bare.port, size.drain))

    say("taskapi: submit, status, drain (long-polls, then polls)")
    with serving(
        lambda: start_taskapi(work / "main.db", **ours, env=spin_env, log=work / "taskapi.log")
    ) as t:
        # /ready may answer before separate worker processes claim: one task done first.
        run(scenarios.until_done(t.port))
        with MemoryWatch(t) as memory:
            t_submit = run(scenarios.submit_load(t.port, size.seconds))
            run(scenarios.settle(t.port))
            ids = run(scenarios.submit_ids(t.port, 200))
            run(scenarios.settle(t.port))
            t_status = run(scenarios.status_load(t.port, ids, size.seconds))
            t_drain = run(scenarios.drain(t.port, size.drain))
            t_drain_polls = run(scenarios.drain(t.port, size.drain, long_poll=False))
        say("idle: taskapi and the bare app, one task at a time, alternately")
        with serving(lambda: start_bare(**shape, log=work / "bare.log")) as bare:
            t_single, b_single = run(scenarios.idle(t.port, bare.port, size.single))
        say("CPU-bound: 4 spin tasks of 1 s; /health while 2 run")
        isolation = run(cpu.isolation(t.port))
        if isolation != "process":
            say(f"spin runs with isolation {isolation}: this taskapi cannot isolate it yet")
        notes.append(f"spin tasks ran with isolation: {isolation}")
        spin_wall = run(cpu.spin_wall(t.port))
        health = run(cpu.health_while_spinning(t.port))

    say("taskapi: bulk submit (batches of 1 000), on a store of its own")
    with serving(
        lambda: start_taskapi(
            work / "bulk.db", **ours, env=scenarios.BULK_ENV, log=work / "bulk.log"
        )
    ) as t:
        t_bulk = run(scenarios.bulk_submit(t.port, size.seconds))

    say("floor (Flask and one SQLite statement): submit, status")
    with serving(lambda: start_floor(work / "main.db", **shape, log=work / "floor.log")) as f:
        f_submit = run(scenarios.submit_load(f.port, size.seconds))
        f_status = run(scenarios.status_load(f.port, ids, size.seconds))

    peers = measure_peers(args, size, work, shape, notes)
    by_figure: dict[str, dict[str, float]] = {
        key: {name: getattr(fig, key) for name, fig in peers.items()}
        for key in ("submit", "drain_polls", "idle_p50", "pss")
    }

    rows = [
        Row("submit throughput", "req/s", t_submit.per_second, b_submit.per_second,
            "ratio>=0.6", peers=by_figure["submit"]),
        Row("submit p50", "ms", p50(t_submit.latencies), p50(b_submit.latencies)),
        Row("submit p99", "ms", p99(t_submit.latencies), p99(b_submit.latencies)),
        Row("status reads", "req/s", t_status.per_second, b_status.per_second, "ratio>=0.7"),
        Row("drain", "tasks/s", t_drain.per_second, b_drain.per_second, "ratio>=0.7",
            peers=by_figure["drain_polls"]),
        Row("drain, polls every 10 ms", "tasks/s", t_drain_polls.per_second,
            b_drain.per_second, peers=by_figure["drain_polls"]),
        Row("bulk submit, POST /batches of 1 000", "tasks/s", t_bulk, None, ">=50000"),
        Row("drain submit to done p50", "ms", p50(t_drain.latencies), p50(b_drain.latencies)),
        Row("drain submit to done p99", "ms", p99(t_drain.latencies), p99(b_drain.latencies)),
        Row("idle: submit to done p50 (wait)", "ms", p50(t_single.round_trips),
            p50(b_single.round_trips), "ratio<=1.5", peers=by_figure["idle_p50"],
            higher_is_better=False),
        Row("idle: submit to done p99 (wait)", "ms", p99(t_single.round_trips),
            p99(b_single.round_trips)),
        Row("idle: submit to start p50", "ms", p50(t_single.to_start), None, "<=5"),
        Row("idle: submit to start p99", "ms", p99(t_single.to_start)),
        Row("floor submit, 1 SQLite insert", "req/s", f_submit.per_second,
            b_submit.per_second),
        Row("floor status, 1 SQLite read", "req/s", f_status.per_second,
            b_status.per_second),
        Row("PSS under load", "MiB", memory.peak_pss / 2**20, bare_memory.peak_pss / 2**20,
            "<=120", peers=by_figure["pss"], higher_is_better=False),
        Row("CPU: 4 x 1 s tasks, submit to done", "s", spin_wall, None, "<=2.5",
            higher_is_better=False),
        Row("CPU: /health p99 while 2 run", "ms", p99(health), None, "<=20",
            higher_is_better=False),
    ]  # fmt: skip
    rows += measure_burndown(args, size, work, notes)
    rows += measure_growth(size, work, ours)
    return rows


def measure_peers(
    args: argparse.Namespace,
    size: Sizes,
    work: Path,
    shape: dict[str, int],
    notes: list[str],
) -> dict[str, PeerFigures]:
    """Each peer that can run here: idle, drain with polls, then submit load (its backlog of
    unrun tasks is left behind: the peer is stopped and its queue flushed next time)."""
    if not args.peers:
        return {}
    missing_redis = redis_answers()
    figures: dict[str, PeerFigures] = {}
    for peer in PEERS:
        if peer.redis_db is not None and missing_redis:
            line = f"{peer.name}: skipped, Redis does not answer ({missing_redis})"
            say(line)
            notes.append(line)
            continue
        say(f"peer {peer.name}: idle, drain (polls every 10 ms), submit")
        figures[peer.name] = measure_peer(peer, size, work, shape)
    return figures


def measure_peer(peer: Peer, size: Sizes, work: Path, shape: dict[str, int]) -> PeerFigures:
    log = work / f"{peer.name}.log"
    with serving(lambda: peer.start(work, **shape, log=log)) as server:
        run(scenarios.until_done(server.port))
        idle = run(scenarios.peer_idle(server.port, size.single))
        with MemoryWatch(server) as memory:
            drain = run(scenarios.drain(server.port, size.drain, long_poll=False))
            submit = run(scenarios.submit_load(server.port, size.seconds))
    return PeerFigures(submit.per_second, drain.per_second, p50(idle), memory.peak_pss / 2**20)


def measure_burndown(
    args: argparse.Namespace, size: Sizes, work: Path, notes: list[str]
) -> list[Row]:
    """Burndown on SQLite, and on PostgreSQL where it answers, with each number of worker
    processes of ``--burndown-workers``."""
    missing = postgres_answers(args.pg_url)
    if missing:
        line = f"burndown on PostgreSQL: skipped, {args.pg_url} does not answer ({missing})"
        say(line)
        notes.append(line)
    targets = {"SQLite": ">=20000", "PostgreSQL": ">=10000"}
    rows: list[Row] = []
    for processes in args.burndown_workers:
        options = {"processes": processes, "workers": args.workers}
        say(f"burndown: {size.burndown_sqlite:,} ready tasks in SQLite, then "
            f"{processes} taskapi worker process(es)")  # fmt: skip
        results: list[Burndown] = [
            burndown_sqlite(
                work / f"burndown-{processes}.db",
                size.burndown_sqlite,
                **options,
                log=work / "burndown.log",
            )
        ]
        if not missing:
            say(f"burndown: {size.burndown_postgres:,} ready tasks in PostgreSQL")
            results.append(
                burndown_postgres(
                    args.pg_url, size.burndown_postgres, **options, log=work / "burndown.log"
                )
            )
        for result in results:
            if result.failed:
                notes.append(f"burndown {result.store}: {result.failed} tasks did not succeed")
        rows += [
            Row(f"burndown, {r.tasks:,} in {r.store}, {processes} proc", "tasks/s",
                r.per_second, None, targets[r.store])
            for r in results
        ]  # fmt: skip
        if processes == args.burndown_workers[0]:
            rows += measure_limited_burndown(args, size, work, processes, results, missing)
            notes.append(
                "burndown with a concurrency: its reference is the same burndown without one"
            )
    return rows


def measure_limited_burndown(
    args: argparse.Namespace,
    size: Sizes,
    work: Path,
    processes: int,
    unlimited: list[Burndown],
    missing: str | None,
) -> list[Row]:
    """The same burndown with the queue's concurrency equal to the workers: the cost of a
    global limit, as the ratio to the figure without one (the same run)."""
    limit = processes * (args.workers or DEFAULT_WORKERS)
    options = {"processes": processes, "workers": args.workers, "concurrency": limit}
    say(f"burndown: the same, with the queue's concurrency {limit} (the workers)")
    limited = [
        burndown_sqlite(
            work / f"burndown-limited-{processes}.db",
            size.burndown_sqlite,
            **options,
            log=work / "burndown.log",
        )
    ]
    if not missing:
        limited.append(
            burndown_postgres(
                args.pg_url, size.burndown_postgres, **options, log=work / "burndown.log"
            )
        )
    return [
        Row(f"burndown, {r.tasks:,} in {r.store}, {processes} proc, concurrency {limit}",
            "tasks/s", r.per_second, free.per_second, "ratio>=0.9")
        for r, free in zip(limited, unlimited, strict=True)
    ]  # fmt: skip


def measure_growth(size: Sizes, work: Path, ours: dict[str, int | None]) -> list[Row]:
    """Request latency with a full store, and memory after many tasks."""
    say(f"growth: {size.growth_small} then {size.growth_large} tasks in the store")
    growth: dict[int, tuple[float, float]] = {}
    database = work / "growth.db"
    for total in (size.growth_small, size.growth_large):
        say(f"filling the store to {total} tasks")
        sample = fill(database, total)
        with serving(lambda: start_taskapi(database, **ours, env={}, log=work / "growth.log")) as t:
            # One connection: what a request costs with a full store, not time in a queue.
            submit = run(scenarios.submit_load(t.port, size.growth_seconds, clients=1))
            run(scenarios.settle(t.port))
            status = run(scenarios.status_load(t.port, sample, size.growth_seconds, clients=1))
        growth[total] = (p50(submit.latencies), p50(status.latencies))
    small, large = growth[size.growth_small], growth[size.growth_large]
    rows = [
        Row(f"submit p50, {size.growth_large:,} stored", "ms", large[0], small[0], "ratio<=1.2"),
        Row(f"status p50, {size.growth_large:,} stored", "ms", large[1], small[1], "ratio<=1.2"),
    ]

    say(f"memory: {size.memory_small} then {size.memory_large} tasks handled")
    with serving(
        lambda: start_taskapi(work / "memory.db", **ours, env={}, log=work / "memory.log")
    ) as t:
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


#: The peer table's names of the figures it compares, with how the peers were measured.
PEER_FIGURES = {
    "submit throughput": "submits (req/s)",
    "drain, polls every 10 ms": "drain, polls every 10 ms (tasks/s)",
    "drain": "drain, long-polls; peers poll (tasks/s)",
    "idle: submit to done p50 (wait)": "idle p50; peers poll every 1 ms (ms)",
    "PSS under load": "PSS under load (MiB)",
}


def describe(args: argparse.Namespace) -> str:
    given = {k: v for k, v in taskapi_sizing(args).items() if v is not None}
    ours = (
        ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in given.items())
        if given
        else "its own defaults"
    )
    shape = reference_shape(args)
    return (
        f"taskapi bench: {platform.node()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}; taskapi serve on {ours}; bare app, floor and peers on "
        f"gunicorn gthread {shape['processes']} x {shape['threads']}; burndown with "
        f"{' and '.join(map(str, args.burndown_workers))} taskapi worker process(es)"
        f"{' (smoke sizes)' if args.smoke else ''}"
    )


def table(rows: list[Row], args: argparse.Namespace, notes: list[str]) -> str:
    lines = [
        describe(args),
        "",
        f"| {'figure':42} | {'taskapi':>10} | {'reference':>10} | {'ratio':>6} | "
        f"{'target':>10} | met |",
        f"|{'-' * 44}|{'-' * 12}|{'-' * 12}|{'-' * 8}|{'-' * 12}|-----|",
    ]
    for row in rows:
        ref = "" if row.bare is None else f"{row.bare:10.2f}"
        ratio = "" if row.ratio is None else f"{row.ratio:6.2f}"
        met = {None: "", True: "yes", False: "NO"}[row.met]
        lines.append(
            f"| {row.figure + ' (' + row.unit + ')':42} | {row.taskapi:10.2f} | {ref:>10} | "
            f"{ratio:>6} | {row.target:>10} | {met:3} |"
        )
    lines += peer_table(rows)
    lines += [f"- {note}" for note in notes]
    return "\n".join(lines)


def peer_table(rows: list[Row]) -> list[str]:
    """taskapi beside each peer, and its ratio to the best one (empty without peers)."""
    compared = [r for r in rows if r.figure in PEER_FIGURES and r.peers]
    if not compared:
        return []
    names = [p.name for p in PEERS if any(p.name in r.peers for r in compared)]
    head = f"| {'figure':40} | {'taskapi':>9} | " + " | ".join(f"{n:>9}" for n in names)
    lines = [
        "",
        head + f" | {'best peer':>9} | {'ratio':>6} |",
        f"|{'-' * 42}|{'-' * 11}|" + "|".join("-" * 11 for _ in names) + f"|{'-' * 11}|--------|",
    ]
    for row in compared:
        cells = " | ".join(f"{row.peers[n]:9.2f}" if n in row.peers else f"{'-':>9}" for n in names)
        best = row.best_peer
        ratio = "" if row.peer_ratio is None else f"{row.peer_ratio:6.2f}"
        lines.append(
            f"| {PEER_FIGURES[row.figure]:40} | {row.taskapi:9.2f} | {cells} | "
            f"{best[0] if best else '':>9} | {ratio:>6} |"
        )
    lines.append("(ratio: taskapi over the best peer; for ms and MiB, lower is better)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="small sizes (seconds, not minutes)")
    sizing = "taskapi serve's own default unless given"
    parser.add_argument("--processes", type=int, help=f"API processes ({sizing})")
    parser.add_argument("--threads", type=int, help=f"HTTP threads each ({sizing})")
    parser.add_argument("--workers", type=int, help=f"worker threads per process ({sizing})")
    parser.add_argument("--worker-processes", type=int, help=f"worker processes ({sizing})")
    parser.add_argument(
        "--burndown-workers",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[1, 2],
        help="taskapi worker processes of the burndown, each count in turn (1,2)",
    )
    parser.add_argument(
        "--peers",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="measure Celery, Huey and RQ too (default: in the full run, not with --smoke)",
    )
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("TASKS_TEST_DATABASE_URL", DEFAULT_PG_URL),
        help="PostgreSQL for burndown (TASKS_TEST_DATABASE_URL, else the local test database)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    if args.peers is None:
        args.peers = not args.smoke
    notes: list[str] = []
    rows = measure(args, notes)
    print(table(rows, args, notes))
    if args.json:
        args.json.write_text(
            json.dumps(
                [
                    {**asdict(r), "ratio": r.ratio, "met": r.met, "peer_ratio": r.peer_ratio}
                    for r in rows
                ],
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
