"""How long a call takes to come up: from the second person's Connect to the other's video playing.

Measured inside the page (``performance.now()`` at the click, then the first frame of a remote video
with ``videoWidth > 0``), in real Chromium with fake camera devices, for

- ``standalone``: two tabs on the signaller's own page;
- ``jupyterlab``: two ``VideoRoom`` widgets in one notebook in a real JupyterLab;
- ``mesh``: rooms of 2, 3, 4 and 6 standalone tabs that all click Connect at once: the time until
  every member sees every other's video, the browser's CPU per member during the call (all
  Chromium processes, over a few seconds, divided by the number of members), and the median frame
  rate and width each member receives (from its ``stats``).

Prints one JSON line per mode (per room size for ``mesh``). Example::

    python benchmarks/call_setup.py --runs 10
    python benchmarks/call_setup.py --runs 5 --mode standalone
    python benchmarks/call_setup.py --mode mesh --sizes 2,3,4,6
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ipymeet.server import Settings, SignallerThread  # noqa: E402
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from tests.support import open_and_run, start_lab, stop_server, write_notebook  # noqa: E402

# Click Connect in ``scope`` and resolve with the milliseconds until a remote video shows a frame.
TIMED_CONNECT_JS = """
async (scope) => {
  const root = scope ? document.querySelector(scope) : document;
  const start = performance.now();
  root.querySelector('[data-testid=connect]').click();
  return await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no remote video in 30 s')), 30000);
    const poll = () => {
      const video = root.querySelector('[data-testid=remote-video]');
      if (video && video.videoWidth > 0 && video.readyState >= 2) {
        clearTimeout(timer);
        resolve(performance.now() - start);
      } else {
        requestAnimationFrame(poll);
      }
    };
    poll();
  });
}
"""


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def report(mode: str, samples: list[float]) -> dict[str, Any]:
    return {
        "mode": mode,
        "runs": len(samples),
        "median_ms": round(statistics.median(samples), 1),
        "p90_ms": round(percentile(samples, 0.9), 1),
        "min_ms": round(min(samples), 1),
        "max_ms": round(max(samples), 1),
    }


def wait_state(page: Any, state: str, scope: str = "") -> None:
    page.wait_for_function(
        "([scope, state]) => { const root = document.querySelector(scope || '.ipymeet-root');"
        " return root && root.dataset.state === state; }",
        arg=[scope, state],
    )


def standalone(browser: Any, runs: int) -> list[float]:
    server = SignallerThread(Settings(ice_servers=())).start()
    samples = []
    try:
        for run in range(runs):
            contexts = [browser.new_context(permissions=["camera", "microphone"]) for _ in "ab"]
            first, second = (c.new_page() for c in contexts)
            url = f"{server.url}/?room=bench-{run}"
            first.goto(url)
            second.goto(url)
            first.get_by_test_id("connect").click()
            wait_state(first, "waiting")
            samples.append(second.evaluate(TIMED_CONNECT_JS, ""))
            for context in contexts:
                context.close()
    finally:
        server.stop()
    return samples


NOTEBOOK_CELLS = [
    "from ipymeet import VideoRoom\n"
    "a = VideoRoom('bench', name='A')\nb = VideoRoom('bench', name='B')",
    "a",
    "b",
]


def jupyterlab(browser: Any, runs: int) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_notebook(root / "bench.ipynb", NOTEBOOK_CELLS)
        lab = start_lab(root, root / ".state")
        try:
            context = browser.new_context(permissions=["camera", "microphone"])
            page = context.new_page()
            page.set_default_timeout(60_000)
            open_and_run(page, lab, "bench.ipynb")
            page.wait_for_function("() => document.querySelectorAll('.ipymeet-root').length >= 2")
            page.evaluate(
                "() => document.querySelectorAll('.ipymeet-root').forEach("
                "(el, i) => el.setAttribute('data-bench', i ? 'b' : 'a'))"
            )
            samples = []
            for _ in range(runs):
                page.locator("[data-bench=a] [data-testid=connect]").click()
                wait_state(page, "waiting", "[data-bench=a]")
                samples.append(page.evaluate(TIMED_CONNECT_JS, "[data-bench=b]"))
                for who in "ba":
                    page.locator(f"[data-bench={who}] [data-testid=connect]").click()
                    wait_state(page, "left", f"[data-bench={who}]")
            context.close()
            return samples
        finally:
            stop_server(lab)


ALL_SEE_ALL_JS = """
(count) => {
  const videos = [...document.querySelectorAll('[data-testid=remote-video]')];
  return videos.length === count && videos.every((v) => v.videoWidth > 0 && v.readyState >= 2);
}
"""


def chromium_cpu_seconds() -> float:
    """CPU seconds used so far by every Chromium process of this benchmark."""
    import psutil

    total = 0.0
    for proc in psutil.Process().children(recursive=True):
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            continue
    return total


def mesh(browser: Any, size: int, window: float = 8.0) -> dict[str, Any]:
    """One room of ``size`` tabs: seconds until all see all, then CPU per member."""
    server = SignallerThread(Settings(ice_servers=(), max_peers=6)).start()
    contexts = []
    try:
        pages = []
        for index in range(size):
            context = browser.new_context(permissions=["camera", "microphone"])
            contexts.append(context)
            page = context.new_page()
            page.set_default_timeout(120_000)
            page.goto(f"{server.url}/?room=mesh-{size}&name=P{index}")
            pages.append(page)
        started = time.monotonic()
        for page in pages:
            page.evaluate("() => document.querySelector('[data-testid=connect]').click()")
        for page in pages:
            page.wait_for_function(ALL_SEE_ALL_JS, arg=size - 1)
        all_see_all = time.monotonic() - started
        before, clock = chromium_cpu_seconds(), time.monotonic()
        pages[0].wait_for_timeout(window * 1000)  # a measuring window, not a wait for a condition
        cpu = (chromium_cpu_seconds() - before) / (time.monotonic() - clock)
        # What each member receives, from its own `stats` (one figure per remote peer).
        received = [
            (peer["fps_in"], peer["width"])
            for page in pages
            for peer in page.evaluate("() => Object.values(window.ipymeet.model.get('stats'))")
        ]
        return {
            "mode": "mesh",
            "members": size,
            "all_see_all_ms": round(all_see_all * 1000),
            "browser_cpu_per_member_pct": round(100 * cpu / size, 1),
            "fps_in_median": statistics.median(fps for fps, _ in received) if received else None,
            "width_in_median": statistics.median(w for _, w in received) if received else None,
        }
    finally:
        for context in contexts:
            context.close()
        server.stop()


def print_table(rows: list[dict[str, Any]]) -> None:
    """The mesh figures as a plain table, after their JSON lines."""
    header = ("members", "all see all (ms)", "CPU/member (%)", "fps in", "width in")
    keys = (
        "members",
        "all_see_all_ms",
        "browser_cpu_per_member_pct",
        "fps_in_median",
        "width_in_median",
    )
    print(" | ".join(header))
    for row in rows:
        print(
            " | ".join(
                str(row[key]).rjust(len(title)) for key, title in zip(keys, header, strict=True)
            )
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument(
        "--mode", choices=["standalone", "jupyterlab", "mesh", "all"], default="all"
    )
    parser.add_argument("--sizes", default="2,3,4,6", help="room sizes for --mode mesh")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        modes = ["standalone", "jupyterlab", "mesh"] if args.mode == "all" else [args.mode]
        for mode in modes:
            if mode == "mesh":
                rows = []
                for size in (int(n) for n in args.sizes.split(",")):
                    rows.append(mesh(browser, size))
                    print(json.dumps(rows[-1]), flush=True)
                print_table(rows)
                continue
            started = time.monotonic()
            samples = {"standalone": standalone, "jupyterlab": jupyterlab}[mode](browser, args.runs)
            result = report(mode, samples)
            result["wall_s"] = round(time.monotonic() - started, 1)
            print(json.dumps(result), flush=True)
        browser.close()


if __name__ == "__main__":
    main()
