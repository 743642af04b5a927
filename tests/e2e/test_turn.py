"""TURN: two Chromiums that cannot reach each other meet through Debian's coturn.

Each browser runs in a network namespace of the test's own (tests/e2e/netns.py), with no route to
the other's: the only way between them is the TURN server, which listens (and relays) on this
machine's side of the first namespace's link, where the second reaches it by a host route. The
signaller is ``ipymeet serve --turn-url ... --turn-secret env:...``, which hands each page its own
short-lived credentials in its ``enter`` acknowledgement (server/core/turn.py). Then the same with
the wrong secret, and with credentials that expired before they were used: the view says so. Last, a
call that outlives its first credentials: renewed, they move it to new relay allocations.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ..support import wait_http
from . import netns
from .conftest import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, model, wait_remote_video, wait_state
from .coturn import Coturn, coturn, free_udp_port
from .netns import Namespace

pytestmark = pytest.mark.browser

SECRET_ENV = "IPYMEET_TEST_TURN_SECRET"


@dataclass
class Networks:
    """Two namespaces that reach this machine's ``turn_address`` but not each other."""

    near: Namespace
    far: Namespace
    #: This machine's address on the near namespace's link: the TURN server and the signaller.
    turn_address: str


@pytest.fixture
def networks() -> Iterator[Networks]:
    if shutil.which("ip") is None:
        pytest.fail("iproute2's `ip` is missing: run `bash .ci/setup --browser`")
    try:
        with netns.namespace("xturn", 83) as near, netns.namespace("yturn", 84) as far:
            # No default routes: each reaches its own link, and the far one this machine's
            # address on the near link (delivered here, never forwarded), nothing else.
            near.inside("route", "del", "default")
            far.inside("route", "del", "default")
            far.inside("route", "add", f"{near.gateway}/32", "via", far.gateway)
            yield Networks(near, far, near.gateway)
    except RuntimeError as error:
        pytest.fail(str(error))


@pytest.fixture
def turn_server(networks: Networks, tmp_path: Path) -> Iterator[Coturn]:
    with coturn(networks.turn_address, secrets.token_urlsafe(24), tmp_path / "coturn") as server:
        yield server


@dataclass
class Serve:
    """A running ``ipymeet serve`` and what it has printed."""

    origin: str
    process: subprocess.Popen[str]
    output: str = ""


@contextlib.contextmanager
def serve(address: str, turn: Coturn, secret: str, ttl: int) -> Iterator[Serve]:
    """``ipymeet serve`` on ``address`` with ``turn`` and ``secret`` (from the environment)."""
    port = free_udp_port(address)
    env = {**os.environ, SECRET_ENV: secret}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ipymeet.server.cli",
            "serve",
            "--host",
            address,
            "--port",
            str(port),
            "--ice-servers",
            "[]",
            "--turn-url",
            turn.url,
            "--turn-secret",
            f"env:{SECRET_ENV}",
            "--turn-ttl",
            str(ttl),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    served = Serve(f"http://{address}:{port}", process)
    try:
        wait_http(f"{served.origin}/healthz", 30, process)
        yield served
    finally:
        process.send_signal(signal.SIGINT)
        try:
            served.output, _ = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            served.output, _ = process.communicate()


@pytest.fixture
def browsers(
    networks: Networks, playwright_instance: Any, tmp_path: Path
) -> Iterator[Callable[[Namespace, str], Any]]:
    """``open(namespace, url)``: a page of a Chromium of its own inside ``namespace``; its console
    lines go to ``page.lines``."""
    launched: list[Any] = []

    def open_page(space: Namespace, url: str) -> Any:
        wrapper = tmp_path / f"chromium-in-{space.name}"
        wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {space.name} {CHROMIUM} "$@"\n')
        wrapper.chmod(0o755)
        origin = url.split("/?")[0]
        # Not localhost: the page is a secure context (camera) only by this test-only flag.
        args = [*CHROMIUM_ARGS, f"--unsafely-treat-insecure-origin-as-secure={origin}"]
        browser = playwright_instance.chromium.launch(executable_path=str(wrapper), args=args)
        launched.append(browser)
        page = browser.new_context(permissions=["camera", "microphone"]).new_page()
        page.set_default_timeout(30_000)
        page.lines = []
        page.on("console", lambda message: page.lines.append(message.text))
        page.goto(url)
        return page

    yield open_page
    for browser in launched:
        with contextlib.suppress(Exception):
            browser.close()


STATS_TYPES_JS = """
() => Object.values(window.ipymeet.model.get('stats')).map((s) => s.candidate_type)
"""

CREDENTIALS_JS = """
() => window.ipymeet.call.session.members.iceServers.filter((s) => s.credential)
"""


def meet(*pages: Any) -> tuple[Any, ...]:
    """Wait until every page is in the call and the others' video plays."""
    for page in pages:
        wait_state(page, "in_call")
        wait_remote_video(page)
    return pages


def candidate_type(page: Any) -> str:
    """The local candidate type of the page's one connection, once its stats say it."""
    try:
        page.wait_for_function(
            f"() => ({STATS_TYPES_JS})().length === 1 && ({STATS_TYPES_JS})()[0]",
            polling=250,
            timeout=20_000,
        )
    except Exception:
        pytest.fail(f"no candidate type in {model(page, 'stats')}; {page.lines[-30:]}")
    types: list[str] = page.evaluate(STATS_TYPES_JS)
    return types[0]


def routed(space: Namespace, address: str) -> bool:
    """Whether ``space`` has a route to ``address``."""
    route = [*space.wrap, "ip", "route", "get", address]
    return subprocess.run(route, capture_output=True, check=False).returncode == 0


def stun_from(space: Namespace, turn: Coturn) -> bool:
    """Whether the TURN server answers a STUN request sent from inside ``space``."""
    probe = (
        "import sys; from tests.e2e.coturn import stun_answers; "
        f"sys.exit(0 if stun_answers({turn.address!r}, {turn.port}, 2) else 1)"
    )
    run = [*space.wrap, sys.executable, "-c", probe]
    root = Path(__file__).resolve().parents[2]
    return subprocess.run(run, capture_output=True, check=False, cwd=root).returncode == 0


def test_two_browsers_that_cannot_reach_each_other_meet_through_turn(
    networks: Networks, turn_server: Coturn, browsers: Callable[[Namespace, str], Any]
) -> None:
    near, far = networks.near, networks.far
    assert far.address is not None
    assert near.address is not None
    assert stun_from(near, turn_server)
    assert stun_from(far, turn_server)
    assert not routed(near, far.address)
    assert not routed(far, near.address)
    with serve(networks.turn_address, turn_server, turn_server.secret, ttl=600) as served:
        # As they are: host candidates cannot meet, so at least one side's media is relayed.
        url = f"{served.origin}/?room=turn-call&autojoin=1"
        pages = meet(browsers(near, url), browsers(far, url))
        # Each side's stats name the pair it uses; while the pair is being settled a side may
        # first name one that is not the one in use (seen once on a loaded machine: both host).
        deadline = time.monotonic() + 20
        while "relay" not in (types := [candidate_type(page) for page in pages]):
            assert time.monotonic() < deadline, types
            pages[0].wait_for_timeout(500)
        for page in pages:
            page.context.browser.close()
        # ?relay=1: relayed on both sides.
        url = f"{served.origin}/?room=turn-relay&autojoin=1&relay=1"
        pages = meet(browsers(near, url), browsers(far, url))
        assert [candidate_type(page) for page in pages] == ["relay", "relay"]
        for page in pages:
            assert model(page, "error") == ""
        # Each page has its own credentials, and they are in none of the page's model (the
        # widget's traits on a notebook page), its console, nor the signaller's output.
        given = [page.evaluate(CREDENTIALS_JS) for page in pages]
        assert all(len(servers) == 1 for servers in given)
        assert given[0][0]["username"] != given[1][0]["username"]
        for page in pages:
            state = page.evaluate("() => JSON.stringify(window.ipymeet.model.values)")
            for servers in given:
                assert servers[0]["credential"] not in state
                assert servers[0]["credential"] not in "\n".join(page.lines)
        for page in pages:  # so that the signaller's clean stop need not wait for them
            page.context.browser.close()
    assert served.process.returncode == 0, served.output
    assert f"TURN: {turn_server.url}" in served.output
    assert turn_server.secret not in served.output
    for servers in given:
        assert servers[0]["credential"] not in served.output


def test_a_wrong_secret_or_expired_credentials_say_so_in_the_view(
    networks: Networks, turn_server: Coturn, browsers: Callable[[Namespace, str], Any]
) -> None:
    near, far = networks.near, networks.far
    wrong = secrets.token_urlsafe(24)
    with serve(networks.turn_address, turn_server, wrong, ttl=600) as served:
        url = f"{served.origin}/?room=turn-wrong&autojoin=1&relay=1"
        pages = [browsers(near, url), browsers(far, url)]
        for page in pages:
            page.wait_for_function(
                "() => window.ipymeet.model.get('error_code') === 'turn_refused'", timeout=30_000
            )
            banner = page.get_by_test_id("error")
            assert "refused this page's credentials" in banner.inner_text()
            assert turn_server.url in banner.inner_text()
            assert "static-auth-secret" in model(page, "error")
        ARTIFACTS.mkdir(exist_ok=True)
        pages[0].screenshot(path=str(ARTIFACTS / "turn-refused.png"))
        # Relay only and no relay: the connection never comes up.
        assert pages[0].evaluate("() => window.ipymeet.call.remotePeers[0]?.connection") != (
            "connected"
        )
        for page in pages:
            page.context.browser.close()

    # Credentials that expired before they were used: the near page enters alone with a
    # one-second lifetime; its connection (and its allocation) comes when the far page enters.
    with serve(networks.turn_address, turn_server, turn_server.secret, ttl=1) as served:
        url = f"{served.origin}/?room=turn-expired&autojoin=1&relay=1"
        first = browsers(near, url)
        wait_state(first, "waiting")
        # The signaller renews a member's credentials every 0.75 s here (ice_servers): this page
        # ignores them, as one that does not know the event, so its last ones expire.
        first.evaluate("() => { window.ipymeet.call.session.members.renewed = () => {}; }")
        expiry = int(first.evaluate(CREDENTIALS_JS)[0]["username"].split(":")[0])
        while time.time() <= expiry + 1:  # coturn takes them while EXPIRY >= now
            first.wait_for_timeout(100)
        browsers(far, url)
        first.wait_for_function(
            "() => window.ipymeet.model.get('error_code') === 'turn_refused'", timeout=30_000
        )
        assert "wrong or expired" in first.get_by_test_id("error").inner_text()
    assert any("check_stun_auth" in line or "401" in line for line in turn_server.log)


def test_relay_only_on_a_signaller_without_turn_says_what_to_do(
    signaller: Any, new_page: Callable[..., Any]
) -> None:
    page = new_page(f"http://127.0.0.1:{signaller.port}/?room=turn-none&autojoin=1&relay=1")
    wait_state(page, "failed")
    assert model(page, "error_code") == "no_relay"
    banner = page.get_by_test_id("error").inner_text()
    assert "offers no TURN server" in banner
    assert "--turn-url" in banner


# -- credentials renewed during a call ------------------------------------------------------------

#: coturn 4.6.1 grants an Allocate at most 8 s with this (its refreshes still 600 s), so Chromium
#: refreshes each allocation once, 4 s after making it (half a lifetime under two minutes): the
#: test sees the new allocations refreshed with the renewed credentials too. ``verbose``: coturn
#: logs each request with its username.
SHORT_ALLOCATION = ("max-allocate-lifetime=8", "verbose")

#: The credentials' lifetime in these calls: renewed after 15 s.
SHORT_TTL = 20

#: In the page, every 100 ms: the longest time the remote video went without a new frame, and
#: every connection state seen.
WATCH_JS = """
() => {
  const watch = { longest: 0, frames: -1, since: performance.now(), states: [] };
  window.__watch = watch;
  setInterval(() => {
    const video = document.querySelector("[data-testid=remote-video]");
    const frames = video === null ? -1 : video.getVideoPlaybackQuality().totalVideoFrames;
    const now = performance.now();
    if (frames !== watch.frames && frames > 0) {
      watch.frames = frames;
      watch.since = now;
    }
    watch.longest = Math.max(watch.longest, now - watch.since);
    const state = window.ipymeet.call.remotePeers[0]?.connection ?? "none";
    if (watch.states.at(-1) !== state) watch.states.push(state);
  }, 100);
}
"""

#: Each connection's selected local candidate (`relay ADDRESS:PORT`) and its ICE restarts.
SELECTED_JS = """
async () => {
  const out = [];
  for (const member of window.ipymeet.call.session.members.byId.values()) {
    const stats = await member.peer.pc.getStats();
    let local = null;
    stats.forEach((s) => {
      if (s.type === "transport" && s.selectedCandidatePairId) {
        const pair = stats.get(s.selectedCandidatePairId);
        local = pair ? stats.get(pair.localCandidateId) : null;
      }
    });
    out.push({
      local: local ? `${local.candidateType} ${local.address}:${local.port}` : null,
      restarts: member.peer.iceRestarts,
    });
  }
  return out;
}
"""


@pytest.fixture
def short_turn_server(networks: Networks, tmp_path: Path) -> Iterator[Coturn]:
    secret = secrets.token_urlsafe(24)
    with coturn(networks.turn_address, secret, tmp_path / "coturn", SHORT_ALLOCATION) as server:
        yield server


def username_of(page: Any) -> str:
    servers = page.evaluate(CREDENTIALS_JS)
    assert len(servers) == 1, "no TURN server in the page's configuration"
    username: str = servers[0]["username"]
    return username


def expiry(username: str) -> int:
    return int(username.split(":")[0])


def relay_call(
    networks: Networks, served: Serve, browsers: Callable[[Namespace, str], Any], room: str
) -> tuple[Any, ...]:
    """Two pages, relay only, in the call and watched (``WATCH_JS``)."""
    url = f"{served.origin}/?room={room}&autojoin=1&relay=1"
    pages = meet(browsers(networks.near, url), browsers(networks.far, url))
    for page in pages:
        page.evaluate(WATCH_JS)
    return pages


def test_a_relay_only_call_outlives_its_first_credentials(
    networks: Networks, short_turn_server: Coturn, browsers: Callable[[Namespace, str], Any]
) -> None:
    """Credentials of 20 s, renewed at 15 s: the call goes on well past the first ones' expiry,
    each page on a new relay allocation made with renewed credentials, the video never held up."""
    turn = short_turn_server
    with serve(networks.turn_address, turn, turn.secret, ttl=SHORT_TTL) as served:
        pages = relay_call(networks, served, browsers, "turn-renewed")
        first = [username_of(page) for page in pages]
        before = [page.evaluate(SELECTED_JS) for page in pages]
        assert [[c["local"].split()[0] for c in conns] for conns in before] == [["relay"]] * 2
        # Two renewals each (at 15 and 30 s), and 15 s past the first credentials' expiry, so
        # that each page's new allocation (made with renewed ones) is refreshed too; what the
        # renewals spare a call is the next test's.
        until = max(expiry(name) for name in first) + 15
        while time.time() < until:
            pages[0].wait_for_timeout(250)
        for page, name in zip(pages, first, strict=True):
            assert model(page, "state") == "in_call"
            assert model(page, "error") == "", page.lines[-30:]
            watch = page.evaluate("() => window.__watch")
            # The video never stopped for as long as a second, and the connection never dropped.
            assert watch["longest"] < 1000, watch
            assert watch["states"] == ["connected"], watch
            now = username_of(page)
            assert expiry(now) >= expiry(name) + 2 * (SHORT_TTL * 3 // 4) - 1, (name, now)
            assert now.split(":")[1] == name.split(":")[1]  # the same member
        wait_remote_video(pages[0])
        wait_remote_video(pages[1])
        after = [page.evaluate(SELECTED_JS) for page in pages]
        for old, new in zip(before, after, strict=True):
            assert new[0]["local"].startswith("relay "), new
            assert new[0]["local"] != old[0]["local"], (old, new)  # a new allocation
            assert new[0]["restarts"] >= 2, new
        # The new allocations were made, and refreshed, with the renewed credentials, and
        # coturn refused none of the refreshes.
        requests = [line for line in turn.log if "incoming packet" in line]
        for page in pages:
            name = username_of(page)
            for kind in ("ALLOCATE", "REFRESH"):
                done = f"<{name}>: incoming packet {kind} processed, success"
                assert any(done in line for line in requests), (done, requests[-20:])
        assert not [line for line in requests if "REFRESH processed, error" in line]
        for page in pages:
            page.context.browser.close()
    assert served.process.returncode == 0, served.output


#: Restart ICE on each of the page's connections now, as its recovery does after a network change.
RESTART_JS = """
() => {
  for (const member of window.ipymeet.call.session.members.byId.values()) member.peer.restartNow();
}
"""


def test_without_renewals_a_relay_made_after_the_credentials_expired_is_refused(
    networks: Networks, short_turn_server: Coturn, browsers: Callable[[Namespace, str], Any]
) -> None:
    """What the renewals are for, on pages that ignore them (as a client that does not know
    ``ice_servers``). coturn 4.6.1 does not re-check the credentials of a running allocation (it
    was seen granting CreatePermission and ChannelBind with them 4 minutes after they expired),
    so the call goes on; but any new allocation (an ICE restart after a network change, a
    connection to a member who enters later) is refused once they expired."""
    turn = short_turn_server
    with serve(networks.turn_address, turn, turn.secret, ttl=SHORT_TTL) as served:
        pages = relay_call(networks, served, browsers, "turn-unrenewed")
        for page in pages:
            page.evaluate("() => { window.ipymeet.call.session.members.renewed = () => {}; }")
        first = [username_of(page) for page in pages]
        ends = max(expiry(name) for name in first)
        while time.time() <= ends + 1:  # coturn takes them while EXPIRY >= now
            pages[0].wait_for_timeout(250)
        assert [username_of(page) for page in pages] == first  # the renewals went unused
        wait_remote_video(pages[0])
        pages[0].evaluate(RESTART_JS)
        pages[0].wait_for_function(
            "() => window.ipymeet.model.get('error_code') === 'turn_refused'", timeout=30_000
        )
        assert "wrong or expired" in pages[0].get_by_test_id("error").inner_text()
        for page in pages:
            page.context.browser.close()
