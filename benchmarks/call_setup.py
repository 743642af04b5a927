"""How long a call takes to come up: from the second person's Connect to the other's video playing.

Measured inside the page, in real Chromium with fake camera devices (1280x720 at 20 fps), for

- ``standalone``: two tabs on the signaller's own page (a signaller in this process), from
  ``performance.now()`` at the click to the first animation frame that finds a remote video with
  ``videoWidth > 0``;
- ``jupyterlab``: the same with two ``VideoRoom`` widgets in one notebook in a real JupyterLab;
- ``kernels``: two notebooks (two kernels, one shared signaller) in one JupyterLab, each in a page
  of its own with one widget per route: the direct route and the kernel route (signalling through
  each widget's comm and its kernel), alternating run by run; prints both and the difference of
  their medians (the kernel route's target: at most 50 ms more than direct);
- ``mesh``: rooms of 2, 3, 4 and 6 standalone tabs that all click Connect at once: the time until
  every member sees every other's video, the browser's CPU per member during the call (all
  Chromium processes, over a few seconds, divided by the number of members), and the median frame
  rate and width each member receives (from its ``stats``);
- ``compare``: in one run, alternating, two standalone tabs on ``ipymeet serve`` and two tabs of the
  tutorial's own page (taken from the article, tests/e2e/tutorial.py) on the tutorial's own Node
  server (``../shared/reference/tutorial-node-server/server.js``, run by path; express and
  socket.io are installed once into ``~/.cache/ipymeet-bench/node``, never into the repository).
  One instrument for both, injected with ``add_init_script`` (call_setup_instrument.js): the time
  from the second person's click (Connect; the tutorial's CONNECT) to the first frame of the
  remote video on that person's page, from ``requestVideoFrameCallback`` on the ``<video>`` given
  the received stream; and the split: getUserMedia, the Socket.IO traffic read off the WebSocket
  frames, the RTCPeerConnection's calls and events, its ICE and DTLS transports. Prints both
  medians, p90s and their ratio, then the steps of each page in order, with medians. Needs
  ``node`` and ``npm`` (and the npm registry once, for the install).

``all`` (the default) runs ``standalone``, ``jupyterlab``, ``kernels``, ``compare`` and ``mesh``.
Prints one JSON line per mode (per room size for ``mesh``, per page and a ratio for ``compare``).
Example::

    python benchmarks/call_setup.py --runs 10
    python benchmarks/call_setup.py --runs 5 --mode standalone
    python benchmarks/call_setup.py --runs 15 --mode kernels
    python benchmarks/call_setup.py --mode compare --runs 15
    python benchmarks/call_setup.py --mode compare --bundle now=/tmp/a.js --bundle cut=/tmp/b.js
    python benchmarks/call_setup.py --mode mesh --sizes 2,3,4,6

``--bundle LABEL=PATH`` serves that ``widget.js`` to the ipymeet pages instead of the built one
(one ipymeet side per bundle, all alternating with the tutorial's page): a change built in a
scratch worktree is measured against the current code in the same run.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ipymeet.server import Settings, SignallerThread  # noqa: E402
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from tests.e2e.tutorial import write_tutorial_page  # noqa: E402
from tests.support import (  # noqa: E402
    free_port,
    open_and_run,
    start_lab,
    stop_server,
    wait_http,
    write_notebook,
)

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


ROUTES = ("direct", "kernel")


def kernel_notebook(who: str) -> list[str]:
    """One person's notebook: a widget on each route, in rooms of their own."""
    return [
        "from ipymeet import VideoRoom\n"
        + "\n".join(
            f"{route} = VideoRoom('bench-{route}', name={who!r}, route={route!r})"
            for route in ROUTES
        ),
        *ROUTES,
    ]


def kernels(browser: Any, runs: int) -> dict[str, Any]:
    """Connect -> remote video between two widgets in two kernels, direct and over the comm."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for who in "ab":
            write_notebook(root / f"{who}.ipynb", kernel_notebook(who.upper()))
        lab = start_lab(root, root / ".state")
        contexts = []
        try:
            pages = {}
            for who in "ab":
                context = browser.new_context(permissions=["camera", "microphone"])
                contexts.append(context)
                page = context.new_page()
                page.set_default_timeout(90_000)
                open_and_run(page, lab, f"{who}.ipynb")
                page.wait_for_function(
                    f"() => document.querySelectorAll('.ipymeet-root').length >= {len(ROUTES)}"
                )
                page.evaluate(
                    "(routes) => document.querySelectorAll('.ipymeet-root').forEach("
                    "(el, i) => el.setAttribute('data-bench', routes[i]))",
                    list(ROUTES),
                )
                pages[who] = page
            samples: dict[str, list[float]] = {route: [] for route in ROUTES}
            for run in range(runs):
                order = ROUTES if run % 2 == 0 else ROUTES[::-1]
                for route in order:
                    scope = f"[data-bench={route}]"
                    pages["a"].locator(f"{scope} [data-testid=connect]").click()
                    wait_state(pages["a"], "waiting", scope)
                    samples[route].append(pages["b"].evaluate(TIMED_CONNECT_JS, scope))
                    via = pages["b"].locator(f"{scope} .ipymeet-status-via").inner_text()
                    if (route == "kernel") != via.endswith("kernel"):
                        raise RuntimeError(f"the {route} widget connected {via!r}")
                    for who in "ba":
                        pages[who].locator(f"{scope} [data-testid=connect]").click()
                        wait_state(pages[who], "left", scope)
        finally:
            for context in contexts:
                context.close()
            stop_server(lab)
    results = {route: report(f"kernels-{route}", samples[route]) for route in ROUTES}
    extra = results["kernel"]["median_ms"] - results["direct"]["median_ms"]
    return {
        "mode": "kernels",
        **{route: results[route] for route in ROUTES},
        "kernel_minus_direct_median_ms": round(extra, 1),
        "target_ms": 50,
    }


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


# -- compare: ipymeet's page and the tutorial's own page, one instrument --------------------------

INSTRUMENT = Path(__file__).with_name("call_setup_instrument.js")
REFERENCE = ROOT.parent / "shared" / "reference" / "tutorial-node-server"
NODE_CACHE = Path.home() / ".cache" / "ipymeet-bench" / "node"
NPM_FLAGS = ("--no-save", "--no-package-lock", "--no-audit", "--no-fund")

MARKED_JS = "(name) => window.__bench !== undefined && name in window.__bench.marks"
# The click is marked in the page, just before it, on the instrument's clock.
CLICK_JS = (
    "(selector) => { window.__bench.mark('click'); document.querySelector(selector).click(); }"
)
# The tutorial's page connects its socket when it loads: wait until it has (over the WebSocket,
# after Engine.IO's upgrade, so that its traffic is read like ipymeet's).
TUTORIAL_SOCKET_JS = (
    "() => typeof socket !== 'undefined' && socket.connected"
    " && socket.io.engine.transport.name === 'websocket'"
)
FRAME_TIMEOUT_MS = 30_000

# The steps shown in the split, in each page's words; a step missing on a page is left out.
# Every time is on the second person's page unless it starts with "a." (the first person's).
STEPS: list[tuple[str, tuple[str, ...]]] = [
    ("socket connected", ("sio_connected", "ws_open")),
    ("camera open (getUserMedia resolved)", ("gum_done",)),
    ("join sent (enter / join)", ("out_enter", "out_join")),
    ("room entered (ack / room_joined)", ("ack_enter", "in_room_joined")),
    ("start_call sent", ("out_start_call",)),
    ("a: told of the newcomer (peer_joined / start_call)", ("a.in_peer_joined", "a.in_start_call")),
    ("peer connection created", ("pc_created",)),
    ("offer sent / received", ("out_signal_offer", "in_webrtc_offer")),
    ("a: offer received / sent", ("a.in_signal_offer", "a.out_webrtc_offer")),
    ("a: answer sent / received", ("a.out_signal_answer", "a.in_webrtc_answer")),
    ("answer received / sent", ("in_signal_answer", "out_webrtc_answer")),
    ("first local candidate", ("local_candidate",)),
    ("first remote candidate", ("remote_candidate",)),
    ("ICE connected", ("ice_connected",)),
    ("DTLS connected", ("dtls_connected",)),
    ("connection connected", ("pc_connected",)),
    ("remote video track", ("track_video",)),
    ("first remote frame: its last packet in", ("remote_frame_received",)),
    ("first remote frame: decoded, to the compositor", ("remote_frame_presented",)),
    ("first remote frame (the callback)", ("remote_frame",)),
]


def node_modules(cache: Path = NODE_CACHE) -> Path:
    """express and socket.io for the tutorial's server, installed once into ``cache``.

    The versions are the reference's own (its package.json); nothing is written under the
    repository or ../shared.
    """
    modules = cache / "node_modules"
    wanted = json.loads((REFERENCE / "package.json").read_text())["dependencies"]
    if not all((modules / name / "package.json").is_file() for name in wanted):
        cache.mkdir(parents=True, exist_ok=True)
        specs = [f"{name}@{version}" for name, version in wanted.items()]
        subprocess.run(
            ["npm", "install", "--prefix", str(cache), *NPM_FLAGS, *specs],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return modules


@dataclass
class Served:
    """A signaller in a process of its own, on a loopback port."""

    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def serve(argv: list[str], cwd: Path, env: dict[str, str], log: Path, port: int) -> Served:
    with log.open("wb") as out:
        # The Node server logs every event: its stdout goes nowhere, only errors are kept.
        stdout = subprocess.DEVNULL if argv[0] == "node" else out
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=stdout, stderr=out)
    served = Served(f"http://127.0.0.1:{port}", proc, log)
    try:
        wait_http(f"{served.url}/socket.io/?EIO=4&transport=polling", 30, proc)
    except BaseException:
        served.stop()
        raise RuntimeError(f"{argv[:3]} did not start: {log.read_text()[-2000:]}") from None
    return served


def serve_ipymeet(tmp: Path, ice_servers: str | None) -> Served:
    port = free_port()
    argv = [sys.executable, "-m", "ipymeet.server.cli", "serve", "--port", str(port)]
    if ice_servers is not None:
        argv += ["--ice-servers", ice_servers]
    return serve(argv, tmp, dict(os.environ), tmp / "ipymeet.log", port)


def serve_tutorial(tmp: Path) -> Served:
    """The tutorial's server.js, read from ../shared by path, serving the article's page."""
    folder = tmp / "tutorial"
    write_tutorial_page(folder / "public")  # server.js serves ./public
    port = free_port()
    env = {**os.environ, "PORT": str(port), "NODE_PATH": str(node_modules())}
    return serve(["node", str(REFERENCE / "server.js")], folder, env, tmp / "node.log", port)


@dataclass
class Side:
    """One page measured in the comparison: ipymeet's (with a bundle of its own, or the built
    one) or the tutorial's."""

    label: str
    kind: str  # "ipymeet" or "tutorial"
    bundle: Path | None = None
    totals: list[float] = field(default_factory=list)
    marks: list[dict[str, float]] = field(default_factory=list)
    # The first remote frame's size: the sender's encoder starts small when its first bandwidth
    # estimate is low (and drops the frames it cannot send meanwhile).
    sizes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def new_context(browser: Any, side: Side) -> Any:
    context = browser.new_context(permissions=["camera", "microphone"])
    context.set_default_timeout(FRAME_TIMEOUT_MS)
    context.add_init_script(path=str(INSTRUMENT))
    if side.bundle is not None:
        bundle = str(side.bundle)
        context.route(
            "**/static/widget.js",
            lambda route: route.fulfill(path=bundle, content_type="text/javascript"),
        )
    return context


def page_marks(page: Any) -> dict[str, float]:
    return dict(page.evaluate("() => window.__bench.marks"))


def ipymeet_call(first: Any, second: Any, url: str, room: str) -> None:
    """The first person waits in the room with the camera on; the second clicks Connect."""
    first.goto(f"{url}/?room={room}")
    second.goto(f"{url}/?room={room}")
    first.get_by_test_id("connect").click()
    wait_state(first, "waiting")
    first.wait_for_function(MARKED_JS, arg="local_frame")
    second.wait_for_function("() => window.ipymeet !== undefined")
    second.evaluate(CLICK_JS, "[data-testid=connect]")


def tutorial_call(first: Any, second: Any, url: str, room: str) -> None:
    """The same on the tutorial's page: the first person has joined and sees their camera."""
    first.goto(f"{url}/")
    second.goto(f"{url}/")
    for page in (first, second):
        page.wait_for_function(TUTORIAL_SOCKET_JS)
        page.fill("#room-input", room)
    first.click("#connect-button")
    first.wait_for_function(MARKED_JS, arg="local_frame")
    second.evaluate(CLICK_JS, "#connect-button")


def measure_call(browser: Any, side: Side, url: str, room: str) -> None:
    """One call on ``side``: its marks, relative to the click, into ``side``."""
    contexts = [new_context(browser, side) for _ in "ab"]
    try:
        first, second = (context.new_page() for context in contexts)
        start = ipymeet_call if side.kind == "ipymeet" else tutorial_call
        start(first, second, url, room)
        second.wait_for_function(MARKED_JS, arg="remote_frame", polling=100)
        b, a = page_marks(second), page_marks(first)
        click = b["click"]
        # Both pages' marks on one clock (performance.timeOrigin + now; tabs are processes of
        # their own, so the first person's are good to a millisecond or so).
        marks = {name: at - click for name, at in b.items()}
        marks.update({f"a.{name}": at - click for name, at in a.items()})
        side.marks.append(marks)
        side.totals.append(marks["remote_frame"])
        frame = second.evaluate("() => window.__bench.frame")
        side.sizes.append(f"{frame['width']}x{frame['height']}")
    except Exception as exc:  # a call that did not come up is counted, not fatal to the run
        side.failures.append(f"{room}: {type(exc).__name__}: {str(exc).splitlines()[0]}")
    finally:
        for context in contexts:
            context.close()


def split(side: Side) -> list[dict[str, Any]]:
    """The steps of ``side`` in the order they happen: each one's median time since the click
    (over the runs that have it) and the time from the step before, so that the steps add up to
    the median total. A step before the click (the tutorial's socket) has no duration."""
    present = []
    for title, names in STEPS:
        times = [next((m[n] for n in names if n in m), None) for m in side.marks]
        seen = [t for t in times if t is not None]
        if len(seen) >= max(1, len(side.marks) // 2):
            present.append((title, statistics.median(seen), len(seen)))
    present.sort(key=lambda step: step[1])
    rows = []
    previous = 0.0
    for title, at, runs in present:
        step = round(at - previous, 1) if at >= 0 else None
        rows.append({"step": title, "at_ms": round(at, 1), "step_ms": step, "runs": runs})
        previous = max(previous, at)
    return rows


def mark_medians(side: Side) -> dict[str, float]:
    """Every mark's median time since the click, over the runs that have it."""
    names = sorted({name for marks in side.marks for name in marks})
    medians = {n: statistics.median(m[n] for m in side.marks if n in m) for n in names}
    return {n: round(t, 1) for n, t in sorted(medians.items(), key=lambda item: item[1])}


def compare(
    browser: Any,
    runs: int,
    bundles: list[tuple[str, Path]],
    ice: str | None,
    save: Path | None = None,
) -> None:
    sides = [Side(label, "ipymeet", path) for label, path in bundles]
    sides = sides or [Side("ipymeet", "ipymeet")]
    sides.append(Side("tutorial", "tutorial"))
    loads = [os.getloadavg()[0]]
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ipymeet-bench-") as tmp:
        ipymeet = serve_ipymeet(Path(tmp), ice)
        tutorial = serve_tutorial(Path(tmp))
        try:
            for run in range(runs):
                # Each run starts with the next side, so none always goes first.
                shift = run % len(sides)
                for side in sides[shift:] + sides[:shift]:
                    url = tutorial.url if side.kind == "tutorial" else ipymeet.url
                    loads.append(os.getloadavg()[0])
                    # The room by index: a label may hold characters a room name may not.
                    measure_call(browser, side, url, f"cmp-{run}-{sides.index(side)}")
        finally:
            ipymeet.stop()
            tutorial.stop()
    loads.append(os.getloadavg()[0])
    reference = sides[-1]
    for side in sides:
        if not side.totals:
            print(json.dumps({"mode": "compare", "page": side.label, "failures": side.failures}))
            continue
        result = report("compare", side.totals)
        result.update(
            page=side.label,
            failures=len(side.failures),
            first_frame_sizes=dict(collections.Counter(side.sizes).most_common()),
            phases=split(side),
            marks=mark_medians(side),
        )
        print(json.dumps(result), flush=True)
        for failure in side.failures:
            print(f"  failed: {failure}", file=sys.stderr)
    summary: dict[str, Any] = {
        "mode": "compare",
        "runs_per_page": runs,
        "instrument": "requestVideoFrameCallback on the remote <video>, from the click",
        # The machine's 1-minute load average before each call: min, median, max.
        "load_1min": [round(f(loads), 2) for f in (min, statistics.median, max)],
        "wall_s": round(time.monotonic() - started, 1),
    }
    if reference.totals:
        for side in sides[:-1]:
            if side.totals:
                summary[f"ratio_median_{side.label}"] = round(
                    statistics.median(side.totals) / statistics.median(reference.totals), 3
                )
                summary[f"ratio_p90_{side.label}"] = round(
                    percentile(side.totals, 0.9) / percentile(reference.totals, 0.9), 3
                )
    print(json.dumps(summary), flush=True)
    print_split(sides)
    if save is not None:
        every_run = {
            side.label: {"marks": side.marks, "sizes": side.sizes, "failures": side.failures}
            for side in sides
        }
        save.write_text(json.dumps({"summary": summary, "pages": every_run}))


def print_split(sides: list[Side]) -> None:
    """Each page's steps as a plain table: median time since the click and median step."""
    for side in sides:
        if not side.totals:
            continue
        median = statistics.median(side.totals)
        print(f"\n{side.label}: median {median:.0f} ms over {len(side.totals)} calls")
        print(f"  {'step':<52} {'at (ms)':>8} {'step (ms)':>9}")
        for row in split(side):
            step = "" if row["step_ms"] is None else f"{row['step_ms']:.0f}"
            print(f"  {row['step']:<52} {row['at_ms']:>8.0f} {step:>9}")


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
    parser.add_argument("--runs", type=int, default=10, help="calls per mode (per page: compare)")
    parser.add_argument(
        "--mode",
        choices=["standalone", "jupyterlab", "kernels", "compare", "mesh", "all"],
        default="all",
    )
    parser.add_argument("--sizes", default="2,3,4,6", help="room sizes for --mode mesh")
    parser.add_argument(
        "--bundle",
        action="append",
        default=[],
        metavar="LABEL=PATH",
        help="compare: an ipymeet page served this widget.js (repeat for more)",
    )
    parser.add_argument(
        "--ice-servers",
        default=None,
        metavar="JSON",
        help="compare: ipymeet serve's --ice-servers (default: its own, Google's STUN server,"
        " as the tutorial's page has)",
    )
    parser.add_argument(
        "--save",
        type=Path,
        default=None,
        metavar="FILE",
        help="compare: also write every run's marks to FILE (JSON)",
    )
    args = parser.parse_args()
    bundles = []
    for spec in args.bundle:
        label, _, path = spec.partition("=")
        if not path or not Path(path).is_file():
            parser.error(f"--bundle {spec!r}: give LABEL=PATH of a built widget.js")
        bundles.append((label, Path(path).resolve()))
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        every = ["standalone", "jupyterlab", "kernels", "compare", "mesh"]
        modes = every if args.mode == "all" else [args.mode]
        for mode in modes:
            if mode == "compare":
                if shutil.which("node") is None or shutil.which("npm") is None:
                    # `all` still runs the other modes on a machine without Node.
                    print(json.dumps({"mode": "compare", "skipped": "node or npm not found"}))
                    continue
                compare(browser, args.runs, bundles, args.ice_servers, args.save)
                continue
            if mode == "kernels":
                print(json.dumps(kernels(browser, args.runs)), flush=True)
                continue
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
