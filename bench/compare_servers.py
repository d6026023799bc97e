"""Which WSGI server: submit throughput of taskapi and of the bare app on each, one process.

    python -m bench.compare_servers [--seconds 5] [--threads 32]

gunicorn (gthread) is always there; waitress and granian are measured when installed
(``pip install '.[bench]'``). Same load as ``python -m bench``'s submit figure.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import sys
import tempfile
from pathlib import Path

from bench import scenarios
from bench.loadgen import percentile
from bench.servers import Running, start

SERVERS = {
    "gunicorn gthread": (
        "gunicorn",
        [sys.executable, "-m", "gunicorn", "--bind", "127.0.0.1:{port}", "--workers", "1",
         "--worker-class", "gthread", "--threads", "{threads}", "{app}"],
    ),
    "waitress": (
        "waitress",
        [sys.executable, "-m", "waitress", "--listen", "127.0.0.1:{port}",
         "--threads", "{threads}", "{app}"],
    ),
    "granian": (
        "granian",
        [sys.executable, "-m", "granian", "--interface", "wsgi", "--host", "127.0.0.1",
         "--port", "{port}", "--workers", "1", "--blocking-threads", "{threads}", "{app}"],
    ),
}  # fmt: skip
APPS = {"bare": "bench.bare_app:app", "taskapi": "bench.service_app:app"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--threads", type=int, default=32)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="taskapi-servers-"))
    print(f"| {'server':18} | {'bare req/s':>10} | {'taskapi req/s':>13} | {'ratio':>5} | "
          f"{'taskapi p50 ms':>14} |")  # fmt: skip
    print(f"|{'-' * 20}|{'-' * 12}|{'-' * 15}|{'-' * 7}|{'-' * 16}|")
    for name, (module, command) in SERVERS.items():
        if importlib.util.find_spec(module) is None:
            print(f"| {name:18} | not installed: pip install '.[bench]'")
            continue
        rates: dict[str, float] = {}
        p50 = 0.0
        for label, app in APPS.items():
            argv = [part.replace("{app}", app).replace("{threads}", str(args.threads))
                    for part in command]  # fmt: skip
            env = {"TASKS_DATABASE_URL": f"sqlite:///{work / (name + '.db')}"}
            server: Running = start(f"{name} {label}", argv, env, work / f"{label}.log")
            try:
                result = asyncio.run(scenarios.submit_load(server.port, args.seconds))
            finally:
                server.stop()
            rates[label] = result.per_second
            p50 = percentile(result.latencies, 50) * 1000
        print(f"| {name:18} | {rates['bare']:10.0f} | {rates['taskapi']:13.0f} | "
              f"{rates['taskapi'] / rates['bare']:5.2f} | {p50:14.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
