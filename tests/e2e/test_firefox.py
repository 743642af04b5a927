"""Firefox in calls: Debian's firefox-esr (tests/e2e/firefox_driver.py) with a Chromium page, and
with a KernelPeer both ways, in real WebRTC with fake media.

What differs from Chromium here: offline Firefox has no H.264 (OpenH264 is a download), so the
video is VP8; it counts no frames of a MediaStream in getVideoPlaybackQuality (the helpers count
presented frames instead); and with no permission ever recorded (prompts are off), it names its
host addresses by mDNS ``.local`` names, camera or not, which the other side must resolve (aiortc
does) or learn from the checks it receives (Chromium does). docs/architecture.md, "Browsers".
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from ipymeet import KernelPeer
from ipymeet.server import SignallerThread

from .conftest import model, wait_remote_video, wait_state
from .firefox_driver import Firefox
from .test_kernel_peer import grab, tile

pytestmark = [pytest.mark.browser, pytest.mark.firefox]

#: The page's own member id in the room.
SELF_ID_JS = "() => window.ipymeet.call.session.members.selfId"

#: What the page's connection to member ``id`` uses: the codec of each received video, and the
#: ICE candidates on each side as ``[type, candidateType, address]``.
CONNECTION_JS = """async (id) => {
  const pc = window.ipymeet.call.session.members.byId.get(id).peer.pc;
  const stats = await pc.getStats();
  const codecs = [], candidates = [];
  stats.forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video' && s.codecId) {
      codecs.push(stats.get(s.codecId)?.mimeType);
    }
    if (s.type === 'local-candidate' || s.type === 'remote-candidate') {
      candidates.push([s.type, s.candidateType, s.address ?? s.ip ?? '']);
    }
  });
  return { codecs, candidates };
}"""


def connection(page: Any, peer_id: str) -> dict[str, Any]:
    """The codecs and candidates of ``page``'s connection to ``peer_id`` (printed for the log)."""
    found = dict(page.evaluate(CONNECTION_JS, peer_id))
    print(f"connection to {peer_id}: {found}")
    return found


def pair_types(page: Any, bot: KernelPeer, page_id: str) -> tuple[str, str]:
    """The local candidate type of the pair each side uses (page, kernel peer), once both have
    measured it (about once a second); printed for the log."""
    page.wait_for_function(
        "(id) => window.ipymeet.model.get('stats')[id]?.candidate_type", arg=bot.id
    )
    bot.wait_for(lambda p: bool(p.stats.get(page_id, {}).get("candidate_type")))
    types = (model(page, "stats")[bot.id]["candidate_type"], bot.stats[page_id]["candidate_type"])
    print(f"pair in use: the page's side {types[0]}, the kernel peer's {types[1]}")
    return types


def new_room(server: SignallerThread) -> tuple[str, str]:
    """A room of the test's own, and the standalone page's address that joins it."""
    room = f"ff-{secrets.token_hex(3)}"
    return room, f"{server.url}/?room={room}&autojoin=1"


def is_firefox(page: Any) -> bool:
    return "Firefox/" in str(page.evaluate("() => navigator.userAgent"))


def test_a_firefox_page_and_a_chromium_page_see_each_others_video(
    signaller: SignallerThread, new_page: Callable[..., Any], firefox: Callable[..., Firefox]
) -> None:
    """Firefox with a fake camera calls a Chromium tab on the standalone page: each shows the
    other's video advancing, in VP8 (what both have without a download)."""
    _, url = new_room(signaller)
    fox = firefox().new_page(url)
    assert is_firefox(fox)
    wait_state(fox, "waiting")
    chrome = new_page(url)
    wait_remote_video(chrome)
    wait_remote_video(fox)
    wait_state(fox, "in_call")
    wait_state(chrome, "in_call")
    assert model(fox, "error_code") == ""  # its camera and microphone opened
    fox_id, chrome_id = fox.evaluate(SELF_ID_JS), chrome.evaluate(SELF_ID_JS)
    assert connection(fox, chrome_id)["codecs"] == ["video/VP8"]
    assert connection(chrome, fox_id)["codecs"] == ["video/VP8"]


@pytest.mark.parametrize("first", ["kernel peer", "firefox"])
def test_a_receive_only_firefox_page_shows_a_kernel_peers_video(
    signaller: SignallerThread,
    firefox: Callable[..., Firefox],
    make_peer: Callable[..., KernelPeer],
    first: str,
) -> None:
    """Firefox without camera joins receive-only, its host candidates mDNS names, and shows the
    blue frames a kernel peer publishes; whoever joins second offers, so both offer once."""
    room, url = new_room(signaller)
    blue = np.zeros((240, 320, 3), dtype=np.uint8)
    blue[:, :, 2] = 220
    bot = make_peer(room, name="Pattern", signaling_url=signaller.url)
    bot.publish(lambda: blue)
    browser = firefox(camera=False)
    if first == "kernel peer":
        bot.join()
        bot.wait_for(lambda p: p.state == "waiting")
        fox = browser.new_page(url)
    else:
        fox = browser.new_page(url)
        wait_state(fox, "waiting")
        bot.join()
    wait_state(fox, "in_call")
    assert model(fox, "error_code") == "no_camera"
    wait_remote_video(fox)
    shown = grab(fox, tile(bot.id))
    assert shown[:, :, 2].mean() > 150, shown.mean(axis=(0, 1))
    assert shown[:, :, 0].mean() < 60, shown.mean(axis=(0, 1))
    bot.wait_for(lambda p: [q["connection"] for q in p.peers] == ["connected"])
    [page_member] = bot.peers
    assert (page_member["video"], page_member["audio"]) == (False, False)
    local = [c for c in connection(fox, bot.id)["candidates"] if c[0] == "local-candidate"]
    hosts = [address for _, kind, address in local if kind == "host"]
    assert hosts, local
    assert all(address.endswith(".local") for address in hosts), hosts
    pair_types(fox, bot, page_member["id"])


def test_a_kernel_peer_receives_a_firefox_cameras_frames(
    signaller: SignallerThread,
    firefox: Callable[..., Firefox],
    make_peer: Callable[..., KernelPeer],
) -> None:
    """Firefox's fake camera reaches a kernel peer's ``on_frame``: (height, width, 3) uint8
    arrays, from the page's member; the kernel peer joins second, so it offers."""
    room, url = new_room(signaller)
    fox = firefox().new_page(url)
    wait_state(fox, "waiting")
    frames: list[tuple[tuple[int, ...], Any, str]] = []
    bot = make_peer(room, name="Receiver", signaling_url=signaller.url)
    bot.on_frame(lambda frame, sender: frames.append((frame.shape, frame.dtype, sender.id)))
    bot.join()
    bot.wait_for(lambda p: len(frames) >= 10, timeout=30)
    shape, dtype, sender = frames[-1]
    assert sender == fox.evaluate(SELF_ID_JS)
    assert dtype == np.uint8
    height, width, channels = shape
    assert channels == 3
    assert height >= 120, shape
    assert width >= 160, shape
    [page_member] = bot.peers
    assert (page_member["connection"], page_member["video"]) == ("connected", True)
    connection(fox, bot.id)
    pair_types(fox, bot, sender)
    print(f"frames of {shape}")
