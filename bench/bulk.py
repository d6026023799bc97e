"""Bulk submit: tasks accepted per second through ``POST /batches`` of 1 000 ``add`` tasks.

    python -m bench.bulk [--seconds 10] [--clients 4] [--workers N] [--processes N]

``taskapi serve`` on a fresh SQLite file, with its own defaults unless told (``--workers 0``
measures the API alone, with no worker taking the tasks as they come); ``--clients``
keep-alive clients send batches back to back. ``python -m bench`` reports the same figure
("bulk submit") with taskapi's defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from bench import scenarios
from bench.servers import start_taskapi


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--clients", type=int, default=scenarios.BULK_CLIENTS)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--processes", type=int, default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="taskapi-bulk-"))
    server = start_taskapi(
        work / "bulk.db",
        workers=args.workers,
        processes=args.processes,
        env=scenarios.BULK_ENV,
        log=work / "bulk.log",
    )
    try:
        rate = asyncio.run(scenarios.bulk_submit(server.port, args.seconds, args.clients))
    finally:
        server.stop()
    workers = "default" if args.workers is None else args.workers
    print(
        f"bulk submit: {rate:,.0f} tasks/s ({args.clients} clients, batches of "
        f"{scenarios.BULK_BATCH:,}; workers {workers})"
    )


if __name__ == "__main__":
    main()
