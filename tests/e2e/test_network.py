"""A peer's network goes away and comes back with another address: ICE restarts bring the call's
video back on the same peer connection, with no one clicking.

One Chromium runs in a network namespace of its own, joined to this machine by a veth pair (real
Linux networking, made by the test with iproute2): taking its address away cuts its media and its
signalling alike, as a lost Wi-Fi would; giving it a new address is the network coming back as
another one, so the old ICE candidate pair is dead for good and only an ICE restart can recover.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ipymeet.server import Settings, SignallerThread

from . import netns
from .conftest import CHROMIUM, CHROMIUM_ARGS, wait_remote_video, wait_state
from .netns import Namespace
from .test_faults import RECORD_STATES_JS, REMEMBER_CONNECTIONS_JS, SAME_CONNECTIONS_JS

pytestmark = pytest.mark.browser


DECODED_JS = """
async () => {
  const pc = [...window.ipymeet.call.session.members.byId.values()][0].peer.pc;
  const video = [...(await pc.getStats()).values()].find(
    (s) => s.type === 'inbound-rtp' && s.kind === 'video');
  return video?.framesDecoded ?? 0;
}
"""


def decoded_frames(page: Any) -> int:
    frames: int = page.evaluate(DECODED_JS)
    return frames


@pytest.fixture
def namespace() -> Iterator[Namespace]:
    if shutil.which("ip") is None:
        pytest.fail("iproute2's `ip` is missing: run `bash .ci/setup --browser`")
    try:
        with netns.namespace("network", 77) as space:
            yield space
    except RuntimeError as error:
        pytest.fail(str(error))


@pytest.fixture
def server() -> Iterator[SignallerThread]:
    # Reachable from the namespace: bound to every address (the test's own machine only).
    signaller = SignallerThread(Settings(host="0.0.0.0", ice_servers=())).start()
    yield signaller
    signaller.stop()


def test_ice_restart_brings_the_video_back_after_the_network_changes(
    namespace: Namespace,
    server: SignallerThread,
    playwright_instance: Any,
    new_page: Callable[..., Any],
    tmp_path: Path,
) -> None:
    origin = f"http://{namespace.gateway}:{server.port}"
    wrapper = tmp_path / "chromium-in-namespace"
    wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {namespace.name} {CHROMIUM} "$@"\n')
    wrapper.chmod(0o755)
    # Not localhost: the page is a secure context (camera) only by this test-only flag.
    args = [*CHROMIUM_ARGS, f"--unsafely-treat-insecure-origin-as-secure={origin}"]
    browser = playwright_instance.chromium.launch(executable_path=str(wrapper), args=args)
    try:
        context = browser.new_context(permissions=["camera", "microphone"])
        far = context.new_page()
        logs: list[str] = []

        def keep_log(who: str) -> Callable[[Any], None]:
            return lambda m: logs.append(f"{who}: {m.text}") if "ipymeet" in m.text else None

        far.on("console", keep_log("far"))
        far.goto(f"{origin}/?room=network&autojoin=1")
        near = new_page(f"http://127.0.0.1:{server.port}/?room=network&autojoin=1")
        near.on("console", keep_log("near"))
        for page in (far, near):
            wait_state(page, "in_call")
            wait_remote_video(page)
            page.evaluate(REMEMBER_CONNECTIONS_JS)
            page.evaluate(RECORD_STATES_JS)

        namespace.disconnect()
        near.wait_for_function(
            "() => window.ipymeet.call.remotePeers[0]?.connection !== 'connected'",
            timeout=30_000,
        )
        namespace.connect(3)  # back, as another network

        for page in (far, near):
            page.wait_for_function(
                "() => window.ipymeet.model.get('state') === 'in_call' &&"
                " window.ipymeet.call.remotePeers[0]?.connection === 'connected'",
                timeout=90_000,
            )
            assert page.evaluate(SAME_CONNECTIONS_JS), f"a new peer connection was made: {logs}"
        restarts = sum(
            page.evaluate(
                "() => [...window.ipymeet.call.session.members.byId.values()][0].peer.iceRestarts"
            )
            for page in (far, near)
        )
        assert restarts >= 1
        # The video flows again: frames decoded from the other side keep coming. (Counted by the
        # receiver's statistics: in the namespaced headless browser the <video> element's
        # presentation counter stood still after the network change while frames were decoded.)
        for page in (far, near):
            before = decoded_frames(page)
            page.wait_for_function(
                f"async () => ({DECODED_JS})().then((n) => n > {before} + 20)",
                polling=250,
                timeout=30_000,
            )
        # The far page's new address is what the near page now talks to.
        near.wait_for_function(
            """async (address) => {
              const pc = [...window.ipymeet.call.session.members.byId.values()][0].peer.pc;
              const stats = [...(await pc.getStats()).values()];
              const transport = stats.find((s) => s.type === 'transport');
              const pair = stats.find((s) => s.id === transport?.selectedCandidatePairId);
              return stats.find((s) => s.id === pair?.remoteCandidateId)?.address === address;
            }""",
            arg=f"{namespace.subnet}.3",
            polling=250,
            timeout=10_000,
        )
    finally:
        browser.close()
