"""Calls that survive faults: real `ipymeet serve` processes killed and restarted, sockets dropped,
tabs closed and crashed, in real Chromium with fake cameras.

A call is "kept" when its RTCPeerConnection is the very same object before and after (no new
connection was made) and the remote video's frame counters advance all along.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from ..support import free_port, wait_http
from .conftest import FRAMES_JS, wait_remote_video, wait_state

pytestmark = pytest.mark.browser

REMOTE = "[data-testid=remote-video]"

# The page's Call keeps its members in private fields (session.members.byId); tests may look
# (TypeScript's `private` is a compile-time notion).
REMEMBER_CONNECTIONS_JS = """
() => {
  window.__pcs = [...window.ipymeet.call.session.members.byId.values()].map((m) => m.peer.pc);
}
"""
SAME_CONNECTIONS_JS = """
() => {
  const now = [...window.ipymeet.call.session.members.byId.values()].map((m) => m.peer.pc);
  return now.length === window.__pcs.length && now.every((pc, i) => pc === window.__pcs[i]);
}
"""
RECORD_STATES_JS = """
() => {
  const model = window.ipymeet.model;
  window.__states = [model.get('state')];
  model.on('change:state', () => window.__states.push(model.get('state')));
}
"""


class Serve:
    """``ipymeet serve`` as a real process on a fixed port, which can be killed and restarted."""

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.root = root
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = (self.root / "serve.log").open("ab")
        argv = [sys.executable, "-m", "ipymeet.server.cli", "serve", "--port", str(self.port)]
        self.proc = subprocess.Popen(
            [*argv, "--ice-servers", "[]"], stdout=log, stderr=subprocess.STDOUT
        )
        wait_http(f"{self.url}/healthz", 30, self.proc)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()  # SIGKILL: no goodbye to anyone
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def health(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/healthz", timeout=5) as response:
            body: dict[str, Any] = json.load(response)
            return body


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    server = Serve(tmp_path)
    server.start()
    yield server
    server.stop()


def frames(page: Any) -> list[int]:
    counts: list[int] = page.evaluate(FRAMES_JS, [REMOTE, ""])
    return counts


def frames_keep_advancing(pages: list[Any], seconds: float, step: float = 0.5) -> None:
    """Every ``step`` seconds for ``seconds``, each page's remote video has new frames."""
    last = [frames(page) for page in pages]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pages[0].wait_for_timeout(step * 1000)  # a sampling interval, not a wait for a condition
        now = [frames(page) for page in pages]
        for index, (before, after) in enumerate(zip(last, now, strict=True)):
            assert after, f"page {index}: no remote video"
            assert all(b > a for a, b in zip(before, after, strict=True)), (
                f"page {index}: the remote video stood still ({before} -> {after})"
            )
        last = now


def in_call(open_page: Callable[..., Any], url: str, count: int = 2) -> list[Any]:
    pages = [open_page(url) for _ in range(count)]
    for page in pages:
        wait_state(page, "in_call")
        wait_remote_video(page, count - 1)
        page.evaluate(REMEMBER_CONNECTIONS_JS)
        page.evaluate(RECORD_STATES_JS)
    return pages


def test_the_call_outlives_a_killed_signaller_and_the_room_forms_again(
    serve: Serve, new_page: Callable[..., Any]
) -> None:
    """SIGKILL the `ipymeet serve` process mid-call: both pages say they are reconnecting while
    their video keeps playing; a new process on the same port gets both back into the room, on
    the same peer connection."""
    a, b = in_call(new_page, f"{serve.url}/?room=fault-kill&autojoin=1")
    serve.kill()
    wait_state(a, "reconnecting", 10)
    wait_state(b, "reconnecting", 10)
    assert "Reconnecting" in a.get_by_test_id("status").inner_text()
    frames_keep_advancing([a, b], seconds=3)

    serve.start()  # the same port
    wait_state(a, "in_call")
    wait_state(b, "in_call")
    health = serve.health()
    assert (health["rooms"], health["members"]) == (1, 2)
    for page in (a, b):
        assert page.evaluate(SAME_CONNECTIONS_JS), "a new peer connection was made"
        assert page.evaluate("() => window.__states") == ["in_call", "reconnecting", "in_call"]
        assert page.get_by_test_id("error").inner_text() == ""
    frames_keep_advancing([a, b], seconds=1)


def test_a_page_whose_socket_drops_enters_again(serve: Serve, new_page: Callable[..., Any]) -> None:
    """The transport under one page's Socket.IO connection closes: it reconnects and re-enters
    under the same id; the other page keeps its connection to it."""
    a, b = in_call(new_page, f"{serve.url}/?room=fault-drop&autojoin=1")
    a.evaluate("() => window.ipymeet.call.session.client.transport.socket.io.engine.close()")
    b.wait_for_function("() => window.ipymeet.call.remotePeers[0]?.away === false", timeout=10_000)
    wait_state(a, "in_call")
    assert a.evaluate("() => window.__states") == ["in_call", "reconnecting", "in_call"]
    assert b.evaluate("() => window.__states") == ["in_call"]
    for page in (a, b):
        assert page.evaluate(SAME_CONNECTIONS_JS), "a new peer connection was made"
    health = serve.health()
    assert (health["rooms"], health["members"], health["connections"]) == (1, 2, 2)
    frames_keep_advancing([a, b], seconds=1)


def kill_browser_with(marker: str) -> None:
    """SIGKILL the Chromium whose command line carries ``marker``, and all its processes."""
    victims = [
        proc for proc in psutil.process_iter(["cmdline"]) if marker in (proc.info["cmdline"] or [])
    ]
    assert victims, "no browser process found"
    for proc in victims:
        for child in [*proc.children(recursive=True), proc]:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()


@pytest.mark.parametrize("how", ["closed", "crashed"])
def test_a_closed_or_crashed_tab_is_gone_from_the_others_within_two_seconds(
    serve: Serve, new_page: Callable[..., Any], launch: Callable[..., Any], how: str
) -> None:
    """A tab closed, or a browser killed outright (no goodbye on any connection), leaves the
    others' view within 2 s, and their call goes on."""
    url = f"{serve.url}/?room=fault-{how}&autojoin=1"
    # The one to go runs in a browser of its own, so that it can be killed alone.
    marker = f"--ipymeet-test-{how}-{free_port()}"
    first = launch(add=(marker,))
    first.goto(url)
    wait_state(first, "waiting")
    a, (b, c) = first, in_call(new_page, url)
    wait_remote_video(a, 2)
    gone = a.evaluate("() => window.ipymeet.call.session.members.selfId")
    started = time.monotonic()
    if how == "closed":
        a.close(run_before_unload=False)
    else:
        kill_browser_with(marker)
    for page in (b, c):
        page.wait_for_function(
            "(id) => !document.querySelector(`.ipymeet-tile[data-peer-id='${id}']`)",
            arg=gone,
            timeout=5_000,
        )
    elapsed = time.monotonic() - started
    assert elapsed < 2.0, f"the {how} tab stayed in view for {elapsed:.2f} s"
    # The two others carry on with each other.
    for page in (b, c):
        peers = page.evaluate("() => window.ipymeet.call.remotePeers.map((p) => p.connection)")
        assert peers == ["connected"]
    frames_keep_advancing([b, c], seconds=1)
