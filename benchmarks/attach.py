"""A kernel attaching to its user's shared signaller: wall time and CPU per attach.

The host is a ``KernelSignaller`` in a process of its own (as a hosting kernel is); this process
attaches a fresh ``KernelSignaller`` to it ``--count`` times (connect, ``kernel_hello``,
``kernel_attach``: what every surviving kernel does in a hand-over, and every kernel that starts
while another hosts), each stopped before the next. Over plain HTTP and over a self-signed TLS host.

Printed, one JSON line per scheme:

- ``p50_ms`` / ``p90_ms`` / ``max_ms``: from ``start()`` to attached;
- ``cpu_ms``: this process's CPU time (user + system, all threads) per attach, the attaching
  kernel's share of a hand-over's work; on a machine busy with a call it is what grows into wall
  time.

Example::

    python benchmarks/attach.py --count 40
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from ipymeet.server import Settings
from ipymeet.server.kernel.sharing import KernelSignaller


def host(directory: str, tls: str | None, ready: Any, done: Any) -> None:
    server = KernelSignaller(Settings(ice_servers=(), tls=tls), runtime_dir=directory, port=0)
    server.start()
    ready.set()
    done.wait()
    server.stop()


def measure(tls: str | None, count: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as directory:
        context = multiprocessing.get_context("spawn")
        ready, done = context.Event(), context.Event()
        process = context.Process(target=host, args=(directory, tls, ready, done))
        process.start()
        try:
            if not ready.wait(30):
                raise RuntimeError("the host did not start")
            walls, cpu = [], 0.0
            for _ in range(count):
                began, began_cpu = time.perf_counter(), time.process_time()
                kernel = KernelSignaller(
                    Settings(ice_servers=()), runtime_dir=Path(directory), port=0
                ).start()
                walls.append((time.perf_counter() - began) * 1000)
                cpu += time.process_time() - began_cpu
                assert not kernel.hosting, "the kernel hosted instead of attaching"
                kernel.stop()
        finally:
            done.set()
            process.join(30)
    walls.sort()
    return {
        "scheme": "https" if tls else "http",
        "attaches": count,
        "p50_ms": round(statistics.median(walls), 1),
        "p90_ms": round(walls[int(0.9 * (len(walls) - 1))], 1),
        "max_ms": round(walls[-1], 1),
        "cpu_ms": round(cpu * 1000 / count, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=40, help="attaches per scheme")
    options = parser.parse_args()
    for tls in (None, "self-signed"):
        print(json.dumps(measure(tls, options.count)), flush=True)


if __name__ == "__main__":
    main()
