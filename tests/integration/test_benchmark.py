"""The load benchmark (``benchmarks/signalling.py``) runs, and its report says what it should."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from ipymeet.server import SignallerThread

from ..support import BENCHMARK_NEEDS_POSIX

pytestmark = BENCHMARK_NEEDS_POSIX

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "signalling.py"

FIELDS = {
    "connect_p50_ms",
    "connect_p99_ms",
    "join_p50_ms",
    "join_p99_ms",
    "relay_p50_ms",
    "relay_p99_ms",
    "relayed_per_s",
    "server_rss_mb",
    "lost",
    "errors",
}


def _run(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(BENCHMARK), "run", "--url", url, "--pid", str(os.getpid())]
    return subprocess.run(
        [*command, "--procs", "2", *args], capture_output=True, text=True, timeout=60
    )


def test_benchmark_reports_a_clean_run(signaller: SignallerThread) -> None:
    """20 clients, 1 round against a signaller in this process: one JSON line, every field,
    every message relayed (10 pairs x (start_call + offer + answer + 8 candidates))."""
    result = _run(signaller.url, "--clients", "20", "--rounds", "1", "--timeout", "5")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    report = json.loads(lines[0])
    assert report.keys() >= FIELDS, report
    assert report["lost"] == 0, report
    assert report["errors"] == 0, report
    assert report["relayed"] == 10 * (1 + 1 + 1 + 8), report
    assert report["clients"] == 20
    assert report["server_rss_mb"] > 0
    for kind in ("connect", "join", "relay"):
        assert 0 < report[f"{kind}_p50_ms"] <= report[f"{kind}_p99_ms"], report


def test_benchmark_counts_what_the_server_refused(
    make_signaller: Callable[..., SignallerThread],
) -> None:
    """A signaller whose rate limit is far below the benchmark's pace refuses relays: the report
    counts them as lost and as errors, and the exit status says the run was not clean."""
    strict = make_signaller(rate=1.0, burst=3)
    result = _run(strict.url, "--clients", "4", "--rounds", "1", "--timeout", "2")
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["lost"] > 0, report
    assert report["errors"] > 0, report
    assert any("rate_limited" in note for note in report["notes"]), report
