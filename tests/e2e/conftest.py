"""Real browsers (Debian's chromium, and its firefox-esr), fake camera and microphone, and real
Jupyter servers.

The browser tests use Playwright's sync API for Chromium and tests/e2e/firefox_driver.py for
Firefox, whose pages answer the same ``evaluate`` and ``wait_for_function``; so they are plain
functions, and each waits on conditions in the page with time-outs, never on fixed sleeps.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ipymeet import KernelPeer
from ipymeet.server import Settings, SignallerThread

from ..support import Served, free_port, start_lab, start_server, stop_server
from . import firefox_driver
from .firefox_driver import Firefox
from .remote import (
    DASHBOARD,
    Dashboard,
    Remote,
    remote,
    start_notebook7,
    start_voila,
    stop_with_kernels,
    voila_argv,
)

CHROMIUM = os.environ.get("IPYMEET_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


# Module scope, not session: sync Playwright keeps an event loop marked running in this thread,
# and the asyncio tests of other folders cannot run while it lives.
@pytest.fixture(scope="module")
def server() -> Iterator[SignallerThread]:
    """A signaller of the test's own on loopback, no ICE servers (calls connect with host
    candidates): one per test module; a module that needs other settings defines its own."""
    signaller = SignallerThread(Settings(ice_servers=())).start()
    yield signaller
    signaller.stop()


@pytest.fixture(scope="module")
def playwright_instance() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: run `bash .ci/setup --browser`")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="module")
def browser(playwright_instance: Any) -> Iterator[Any]:
    browser = playwright_instance.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture
def new_page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """Open pages, each in its own context with camera and microphone granted.

    ``new_page(permissions=[])`` opens one whose camera request will be denied. On failure a
    screenshot of every page goes to tests/artifacts/.
    """
    contexts: list[Any] = []
    pages: list[Any] = []

    def make(url: str | None = None, *, permissions: list[str] | None = None, **kw: Any) -> Any:
        grants = ["camera", "microphone"] if permissions is None else permissions
        context = browser.new_context(permissions=grants, **kw)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(30_000)
        pages.append(page)
        if url is not None:
            page.goto(url)
        return page

    yield make
    if failed(request):
        screenshots(request, pages)
    for context in contexts:
        context.close()


def failed(request: pytest.FixtureRequest) -> bool:
    """Whether the test (its call, not its set-up) failed."""
    report = getattr(request.node, "rep_call", None)
    return report is not None and bool(report.failed)


def screenshots(request: pytest.FixtureRequest, pages: list[Any], tag: str = "") -> None:
    """A screenshot of each page to tests/artifacts/, while reporting a failure."""
    ARTIFACTS.mkdir(exist_ok=True)
    for index, page in enumerate(pages):
        with contextlib.suppress(Exception):  # best effort while reporting a failure
            page.screenshot(path=str(ARTIFACTS / f"{request.node.name}-{tag}{index}.png"))


@pytest.fixture
def firefox(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Firefox]]:
    """Start Debian's firefox-esr: ``firefox()`` with a fake camera and microphone granted,
    ``firefox(camera=False)`` with neither (this machine has none), so its pages join
    receive-only. ``.new_page(url)`` opens a page. On failure a screenshot of every page goes
    to tests/artifacts/, and the end of each browser's log (page console) to the report."""
    problem = firefox_driver.missing()
    if problem is not None:
        pytest.fail(problem)
    started: list[Firefox] = []

    def start(*, camera: bool = True) -> Firefox:
        browser = Firefox(tmp_path / f"firefox-{len(started)}.log", camera=camera)
        started.append(browser)
        return browser

    yield start
    if failed(request):
        for index, browser in enumerate(started):
            screenshots(request, browser.pages, f"firefox{index}-")
            print(f"--- Firefox {index} ({browser.version}), its log's end:\n{browser.tail()}")
    for browser in started:
        browser.close()


@pytest.fixture
def make_peer() -> Iterator[Callable[..., KernelPeer]]:
    """Make kernel peers (``KernelPeer``'s arguments); each is closed after the test."""
    made: list[KernelPeer] = []

    def make(*args: Any, **kwargs: Any) -> KernelPeer:
        peer = KernelPeer(*args, **kwargs)
        made.append(peer)
        return peer

    yield make
    for peer in made:
        peer.close()


@pytest.fixture
def launch(playwright_instance: Any) -> Iterator[Callable[..., Any]]:
    """Launch a Chromium with some of the usual flags left out or added; returns a page maker
    (further keywords go to the page's context: ``viewport``, ``has_touch``, ...)."""
    browsers: list[Any] = []

    def make(
        *, drop: tuple[str, ...] = (), add: tuple[str, ...] = (), grant: bool = True, **kw: Any
    ) -> Any:
        args = [a for a in CHROMIUM_ARGS if a not in drop] + list(add)
        browser = playwright_instance.chromium.launch(executable_path=CHROMIUM, args=args)
        browsers.append(browser)
        context = browser.new_context(permissions=["camera", "microphone"] if grant else [], **kw)
        page = context.new_page()
        page.set_default_timeout(30_000)
        return page

    yield make
    for browser in browsers:
        browser.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


# -- what a person sees -----------------------------------------------------------------------

# Where the videos are: the document, or the open shadow root of the first element ``shadow``
# names (a host that renders widgets in a shadow root: marimo's <marimo-anywidget>).
ROOT_JS = "(shadow) => (shadow ? document.querySelector(shadow)?.shadowRoot : document)"

REMOTE_PLAYING_JS = f"""
([selector, count, shadow]) => {{
  const root = ({ROOT_JS})(shadow);
  const videos = root ? [...root.querySelectorAll(selector)] : [];
  return videos.length >= count && videos.slice(0, count).every(
    (v) => v.videoWidth > 0 && v.readyState >= 2 && !v.paused);
}}
"""

# The frames a video element has shown. Chromium counts a MediaStream's frames in
# getVideoPlaybackQuality(); Firefox leaves that at 0, so there the first call starts counting the
# frames presented (requestVideoFrameCallback) and later calls read that count.
VIDEO_FRAMES_JS = """(v) => {
  const counted = v.getVideoPlaybackQuality().totalVideoFrames;
  if (counted > 0) return counted;
  if (v.ipymeetFrames === undefined) {
    v.ipymeetFrames = 0;
    const tick = () => { v.ipymeetFrames += 1; v.requestVideoFrameCallback(tick); };
    v.requestVideoFrameCallback(tick);
  }
  return v.ipymeetFrames;
}"""

FRAMES_JS = f"""
([selector, shadow]) => [...(({ROOT_JS})(shadow)?.querySelectorAll(selector) ?? [])].map(
  (v) => ({VIDEO_FRAMES_JS})(v))
"""


def wait_remote_video(
    page: Any, count: int = 1, *, scope: str = "", shadow: str = "", timeout: float = 30
) -> None:
    """Wait until ``count`` remote videos play (videoWidth > 0) and their frames advance; in the
    shadow root of the element ``shadow`` names, if given."""
    selector = f"{scope} [data-testid=remote-video]".strip()
    where = [selector, shadow]
    page.wait_for_function(REMOTE_PLAYING_JS, arg=[selector, count, shadow], timeout=timeout * 1000)
    before = page.evaluate(FRAMES_JS, where)[:count]
    page.wait_for_function(
        f"""(before) => {{
            const now = ({FRAMES_JS})({json.dumps(where)});
            return before.every((n, i) => now[i] > n + 5);
        }}""",
        arg=before,
        timeout=timeout * 1000,
    )


TILE_FRAMES_JS = f"""(name) => {{
  const tile = [...document.querySelectorAll('.ipymeet-tile')].find(
    (t) => t.querySelector('.ipymeet-tile-name-text')?.textContent === name);
  const video = tile && tile.querySelector('video');
  return video ? [tile.dataset.peerId, ({VIDEO_FRAMES_JS})(video)] : null;
}}"""


def tile_frames(page: Any, name: str) -> tuple[str, int] | None:
    """``name``'s tile on ``page``: its member id and the frames its video has shown."""
    found = page.evaluate(TILE_FRAMES_JS, name)
    return None if found is None else (str(found[0]), int(found[1]))


def model(page: Any, name: str) -> Any:
    """A trait of the page's model (standalone pages: ``window.ipymeet.model``)."""
    return page.evaluate("(n) => window.ipymeet.model.get(n)", name)


def wait_model(page: Any, name: str, value: Any, timeout: float = 30) -> None:
    """Wait until the page's model has ``name == value``."""
    page.wait_for_function(
        "([n, v]) => window.ipymeet && window.ipymeet.model.get(n) === v",
        arg=[name, value],
        timeout=timeout * 1000,
    )


def wait_state(page: Any, state: str, timeout: float = 30) -> None:
    """Wait until the page's call is in ``state``."""
    wait_model(page, "state", state, timeout)


def pump_until(page: Any, predicate: Callable[[], bool], timeout: float = 20) -> None:
    """Let Playwright deliver events (dialogs, console) until ``predicate()`` holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        page.wait_for_timeout(50)


# -- servers ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A real JupyterLab server (with jupyter-server-proxy) over a fresh folder, token-protected."""
    served = start_lab(tmp_path_factory.mktemp("lab"), tmp_path_factory.mktemp("lab-state"))
    yield served
    stop_server(served)


@pytest.fixture
def voila_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[Path], Served]]:
    """Start ``voila NOTEBOOK`` (standalone) servers."""
    started: list[Served] = []

    def start(notebook: Path) -> Served:
        port = free_port()
        state = tmp_path_factory.mktemp("voila")
        argv = voila_argv(notebook, port)
        url = f"http://127.0.0.1:{port}/"
        # Standalone Voila answers /api/status with a redirect to a 403: enough to know it is up,
        # and unlike / it starts no kernel.
        served = start_server(
            argv,
            f"{url}api/status",
            {"url": url, "root": notebook.parent, "log": state / "voila.log"},
            60,
            any_status=True,
        )
        started.append(served)
        return served

    yield start
    for served in started:
        stop_server(served)


@pytest.fixture
def voila_dashboard(
    tmp_path_factory: pytest.TempPathFactory, new_page: Callable[..., Any]
) -> Iterator[Dashboard]:
    """``voila notebooks/dashboard.ipynb`` on a room of this test's own, its kernels with a runtime
    folder and a signaller port of their own; ``.visit(name)`` opens a visitor's page and joins."""
    room = f"lobby-{secrets.token_hex(4)}"
    served = start_voila(
        DASHBOARD, tmp_path_factory.mktemp("dashboard"), env={"IPYMEET_DASHBOARD_ROOM": room}
    )
    try:
        yield Dashboard(served, room, new_page)
    finally:
        stop_with_kernels(served)


@pytest.fixture
def remote_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Remote]:
    """A network namespace of this test's own to start Voilà and JupyterLab servers in
    (``.voila(notebook)``, ``.lab(root)``), each reached by the browser only at its forwarded
    127.0.0.1 port; everything in it is killed and the namespace removed afterwards."""
    try:
        with remote(tmp_path_factory.mktemp("remote")) as made:
            yield made
    except RuntimeError as problem:
        if "network namespace" in str(problem):
            pytest.fail(f"{problem}: run as root with iproute2 (`bash .ci/setup --browser`)")
        raise


@pytest.fixture
def notebook7(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A real Notebook 7 (``jupyter notebook``) over a fresh folder, token-protected."""
    served = start_notebook7(tmp_path_factory.mktemp("nb7"), tmp_path_factory.mktemp("nb7-state"))
    yield served
    stop_server(served)
