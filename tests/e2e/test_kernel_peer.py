"""KernelPeer with real Chromium: a tab's camera processed in Python and sent back, the latency a
slow callback adds (none queued), and a kernel peer, a widget and a tab in one room (JupyterLab).

aiortc gathers no 127.0.0.1 candidates, and Chromium none on loopback either: the media goes
over this machine's own interface, as between two tabs.
"""

from __future__ import annotations

import json
import secrets
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from ipymeet import KernelPeer
from ipymeet.server import SignallerThread
from ipymeet.server.core import internals

from ..support import Served, open_and_run, wait_for_file, write_notebook
from .conftest import ARTIFACTS, wait_remote_video, wait_state
from .test_jupyter import run_in_kernel

pytestmark = pytest.mark.browser


def tile(peer_id: str) -> str:
    return f".ipymeet-tile[data-peer-id='{peer_id}'] video"


#: A small copy of a video element's current frame, as RGB numbers.
GRAB_JS = """(selector) => {
  const v = document.querySelector(selector);
  if (!v || !v.videoWidth) return null;
  const c = document.createElement('canvas'); c.width = 64; c.height = 36;
  const g = c.getContext('2d'); g.drawImage(v, 0, 0, 64, 36);
  return Array.from(g.getImageData(0, 0, 64, 36).data);
}"""


def grab(page: Any, selector: str) -> Any:
    pixels = page.evaluate(GRAB_JS, selector)
    assert pixels is not None, f"no frame in {selector}"
    return np.array(pixels, dtype=np.int16).reshape(36, 64, 4)[:, :, :3]


def test_a_tab_receives_the_inverse_of_its_camera_from_a_kernel_peer(
    server: SignallerThread, new_page: Callable[..., Any], make_peer: Callable[..., KernelPeer]
) -> None:
    """The fake camera's known frame (green, with a moving figure), inverted in Python: the tab's
    video from the kernel peer is the inverse of its own local video (pixel by pixel, with the
    codec's tolerance), and the peer got the tab's audio too."""
    room = f"kp-{secrets.token_hex(3)}"
    bot = make_peer(room, name="inverter", signaling_url=server.url)
    audio: list[Any] = []
    bot.on_frame(lambda frame, sender: 255 - frame)
    bot.on_audio(lambda samples, sender: audio.append((samples.dtype, samples.shape[1])))
    bot.join()
    bot.wait_for(lambda p: p.state == "waiting")
    page = new_page(f"{server.url}/?room={room}&autojoin=1")
    wait_remote_video(page)
    wait_state(page, "in_call")
    bot.wait_for(lambda p: p.state == "in_call" and len(audio) > 10)
    [tab] = bot.peers
    assert (tab["connection"], tab["audio"], tab["video"]) == ("connected", True, True)
    assert audio[-1] == (np.int16, 2)
    # What the tab says of the kernel peer: its name, its video on, no microphone.
    page.wait_for_function(
        "(id) => window.ipymeet.model.get('_browser_peers').some("
        "(p) => p.id === id && p.connection === 'connected' && p.video && !p.audio)",
        arg=bot.id,
    )
    local, remote = grab(page, "[data-testid=local-video]"), grab(page, tile(bot.id))
    # Both move (the figure turns), so compare the medians: the green background dominates.
    assert np.median(np.abs(local - (255 - remote))) < 20
    assert np.median(np.abs(local - remote)) > 200  # the check would see a non-inverted frame
    assert local[:, :, 1].mean() > 100  # the fake camera's green
    assert remote[:, :, 0].mean() > 200  # and its inverse, magenta
    assert bot.counters["callback_errors"] == 0
    page.close()
    bot.wait_for(lambda p: p.peers == [] and p.state == "waiting", timeout=10)


def test_a_tab_shows_a_kernel_peers_placeholder_until_it_publishes_after_joining(
    server: SignallerThread, new_page: Callable[..., Any], make_peer: Callable[..., KernelPeer]
) -> None:
    """A kernel peer in the call with nothing to send is a placeholder tile (its name, no
    video); ``publish`` after the call began shows its frames there, ``publish(None)`` the
    placeholder again."""
    room = f"kp-{secrets.token_hex(3)}"
    bot = make_peer(room, name="Pattern", signaling_url=server.url)
    bot.join()
    page = new_page(f"{server.url}/?room={room}&autojoin=1")
    bot.wait_for(lambda p: p.state == "in_call")
    camera_off = "(id) => document.querySelector(`.ipymeet-tile[data-peer-id='${id}']`)"
    off = f"(id) => ({camera_off})(id)?.classList.contains('ipymeet-tile-camera-off') === true"
    page.wait_for_function(off, arg=bot.id)
    frame = np.zeros((240, 320, 3), dtype=np.uint8)
    frame[:, :, 2] = 220  # blue
    bot.publish(lambda: frame)
    page.wait_for_function(f"(id) => !({off})(id)", arg=bot.id)
    wait_remote_video(page)
    blue = grab(page, tile(bot.id))
    assert blue[:, :, 2].mean() > 150, blue.mean(axis=(0, 1))
    assert blue[:, :, 0].mean() < 60, blue.mean(axis=(0, 1))
    page.screenshot(path=str(ARTIFACTS / "kernel-peer-publishing.png"))
    bot.publish(None)
    page.wait_for_function(off, arg=bot.id)
    page.screenshot(path=str(ARTIFACTS / "kernel-peer-placeholder.png"))


#: The tab's connection to member ``id`` (its Peer; ``pc`` is the RTCPeerConnection).
PEER_JS = "window.ipymeet.call.session.members.byId.get(id).peer"


def test_an_ice_restart_from_the_tab_gets_a_new_connection_and_the_video_comes_back(
    server: SignallerThread, new_page: Callable[..., Any], make_peer: Callable[..., KernelPeer]
) -> None:
    """aiortc cannot restart ICE: the tab's restart offer is answered from a new connection of
    the kernel peer (docs/protocol.md, a peer that cannot roll back), which the tab takes, and
    the media flows both ways again."""
    room = f"kp-{secrets.token_hex(3)}"
    bot = make_peer(room, name="restarted", signaling_url=server.url)
    bot.on_frame(lambda frame, sender: 255 - frame)
    bot.join()
    page = new_page(f"{server.url}/?room={room}&autojoin=1")
    wait_remote_video(page)
    bot.wait_for(lambda p: p.state == "in_call")
    fingerprint = f"(id) => /a=fingerprint:(.+)/.exec({PEER_JS}.pc.remoteDescription.sdp)[1]"
    old = page.evaluate(fingerprint, bot.id)
    page.evaluate(f"(id) => {PEER_JS}.pc.restartIce()", bot.id)
    page.wait_for_function(
        f"([id, old]) => {PEER_JS}.pc.connectionState === 'connected'"
        f" && ({fingerprint})(id) !== old",
        arg=[bot.id, old],
    )
    received = bot.counters["frames_received"]
    wait_remote_video(page)
    bot.wait_for(lambda p: p.counters["frames_received"] > received + 10)
    assert [p["connection"] for p in bot.peers] == ["connected"]


#: The tab's camera replaced by a canvas whose frames carry the time they were drawn (16 bits of
#: performance.now() in ms, one black or white cell per bit); the tab reads the stamp back from
#: each frame of the kernel peer's video (inverted: a dark cell is a 1) and keeps, per frame,
#: ``[now, shown, received, presented]``: the time of reading and the latency (ms since the stamp)
#: at reading, when the frame's last packet reached the tab (``receiveTime`` of
#: requestVideoFrameCallback) and when it went to the compositor (``presentationTime``). The
#: reading runs in the next animation frame, which at 5 fps comes up to 30 ms after the
#: presentation, so "received" and "presented" are the figures a bound can hold to.
STAMPED_CAMERA_JS = """
(() => {
  const W = 640, H = 480, CELL = 80, COLS = 8, BITS = 16;
  const original = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  navigator.mediaDevices.getUserMedia = async (constraints) => {
    const canvas = document.createElement('canvas');
    canvas.width = W; canvas.height = H;
    const g = canvas.getContext('2d');
    const draw = () => {
      const t = Math.floor(performance.now()) & 0xffff;
      g.fillStyle = '#808080'; g.fillRect(0, 0, W, H);
      for (let i = 0; i < BITS; i++) {
        g.fillStyle = (t >> i) & 1 ? '#ffffff' : '#000000';
        g.fillRect((i % COLS) * CELL, Math.floor(i / COLS) * CELL, CELL, CELL);
      }
    };
    draw();
    setInterval(draw, 1000 / 30);
    const stream = canvas.captureStream(30);
    if (constraints && constraints.audio) {
      try {
        const mic = await original({ audio: constraints.audio });
        mic.getAudioTracks().forEach((t) => stream.addTrack(t));
      } catch (e) { /* the call goes on without a microphone */ }
    }
    return stream;
  };
  window.__latencies = [];
  window.__readStamps = (selector) => {
    const v = document.querySelector(selector);
    const c = document.createElement('canvas');
    const g = c.getContext('2d', { willReadFrequently: true });
    const read = (_, meta) => {
      const now = Math.floor(performance.now());
      c.width = v.videoWidth; c.height = v.videoHeight;
      g.drawImage(v, 0, 0);
      let t = 0;
      for (let i = 0; i < BITS; i++) {
        const x = Math.floor(((i % COLS) * CELL + CELL / 2) * v.videoWidth / W);
        const y = Math.floor((Math.floor(i / COLS) * CELL + CELL / 2) * v.videoHeight / H);
        if (g.getImageData(x, y, 1, 1).data[1] < 128) t |= 1 << i;
      }
      const since = (when) => ((Math.floor(when) & 0xffff) - t + 0x10000) & 0xffff;
      const { receiveTime, presentationTime } = meta;
      window.__latencies.push([now, since(now), since(receiveTime), since(presentationTime)]);
      v.requestVideoFrameCallback(read);
    };
    v.requestVideoFrameCallback(read);
  };
})();
"""


#: The header extensions the tab's receivers of video from member ``id`` negotiated.
RECEIVED_EXTENSIONS_JS = f"""(id) => {PEER_JS}.pc.getReceivers()
  .filter((r) => r.track.kind === 'video')
  .flatMap((r) => r.getParameters().headerExtensions.map((x) => x.uri))"""


@pytest.mark.parametrize("first", ["kernel peer", "tab"])
def test_the_tab_takes_the_kernel_peers_zero_playout_delay_whoever_offers(
    first: str,
    server: SignallerThread,
    new_page: Callable[..., Any],
    make_peer: Callable[..., KernelPeer],
) -> None:
    """The kernel peer's video carries a zero playout delay (shown as soon as decoded: no
    jitter buffer, no smoothing; benchmarks/kernel_peer.py measures what it saves), negotiated
    when the tab offers (the kernel peer joined first) and when the kernel peer does."""
    room = f"kp-{secrets.token_hex(3)}"
    bot = make_peer(room, name="prompt", signaling_url=server.url)
    bot.on_frame(lambda frame, sender: 255 - frame)
    url = f"{server.url}/?room={room}&autojoin=1"
    if first == "kernel peer":
        bot.join()
        page = new_page(url)
    else:
        page = new_page(url)
        wait_state(page, "waiting")
        bot.join()
    wait_remote_video(page)
    bot.wait_for(lambda p: p.state == "in_call")
    extensions = page.evaluate(RECEIVED_EXTENSIONS_JS, bot.id)
    assert internals.PLAYOUT_DELAY_URI in extensions, extensions
    # The tab holds the frames in no jitter buffer: from a frame's first packet to its decoding,
    # well under a millisecond here (7 to 20 ms a frame without the extension).
    before = page.evaluate(INBOUND_VIDEO_JS, bot.id)
    processed = bot.counters["frames_processed"]
    bot.wait_for(lambda p: p.counters["frames_processed"] > processed + 30)
    after = page.evaluate(INBOUND_VIDEO_JS, bot.id)
    frames = after["jitterBufferEmittedCount"] - before["jitterBufferEmittedCount"]
    held = (after["jitterBufferDelay"] - before["jitterBufferDelay"]) / max(frames, 1)
    assert frames > 20, (before, after)
    assert held < 0.004, f"the tab held each frame {held * 1000:.1f} ms"


#: The tab's inbound video from member ``id``: its ``inbound-rtp`` stats.
INBOUND_VIDEO_JS = f"""async (id) => {{
  let found = null;
  (await {PEER_JS}.pc.getStats()).forEach((s) => {{
    if (s.type === 'inbound-rtp' && s.kind === 'video') found = s;
  }});
  return found;
}}"""


def latencies(page: Any, frames: int) -> list[list[float]]:
    """``[shown, received, presented]`` latencies (ms, see STAMPED_CAMERA_JS) of the next
    ``frames`` frames the tab shows from the kernel peer."""
    page.evaluate("() => { window.__latencies = []; }")
    page.wait_for_function("(n) => window.__latencies.length >= n", arg=frames, timeout=60_000)
    return [[float(x) for x in entry[1:]] for entry in page.evaluate("() => window.__latencies")][
        :frames
    ]


def medians(rows: list[list[float]]) -> list[float]:
    return [statistics.median(column) for column in zip(*rows, strict=True)]


def test_a_slow_callback_adds_its_own_time_and_no_queue(
    server: SignallerThread, new_page: Callable[..., Any], make_peer: Callable[..., KernelPeer]
) -> None:
    """Camera -> Python -> the same tab, with frames stamped in the tab: a callback of 200 ms
    makes the video the tab receives later than with a quick callback by the callback's own time
    (measured in Python) and at most one frame period of the tab's camera, the time the newest
    frame waited for the callback to be free; it does not grow while the tab keeps sending 30
    frames a second (a queue would add about 0.8 s every second); the frames the callback had no
    time for are counted as dropped."""
    room = f"kp-{secrets.token_hex(3)}"
    bot = make_peer(room, name="slow", signaling_url=server.url)
    slow = {"on": False}
    took: list[float] = []  # the slow callback's times, ms

    @bot.on_frame
    def process(frame: Any, sender: Any) -> Any:
        started = time.perf_counter()
        if slow["on"]:
            time.sleep(0.2)
        inverse = 255 - frame
        if slow["on"]:
            took.append((time.perf_counter() - started) * 1000)
        return inverse

    bot.join()
    page = new_page()
    page.add_init_script(STAMPED_CAMERA_JS)
    page.goto(f"{server.url}/?room={room}&autojoin=1")
    bot.wait_for(lambda p: p.state == "in_call")
    page.wait_for_function(
        "(s) => { const v = document.querySelector(s); return v && v.videoWidth > 0; }",
        arg=tile(bot.id),
    )
    page.evaluate("(s) => window.__readStamps(s)", tile(bot.id))
    latencies(page, 30)  # while the bandwidth ramps up
    quick = medians(latencies(page, 60))
    dropped_before = bot.counters["frames_dropped"]
    slow["on"] = True
    latencies(page, 2)  # the frames under way when it changed
    started = time.monotonic()
    first, second = latencies(page, 10), latencies(page, 10)
    rate = 20 / (time.monotonic() - started)
    period = 1000 / 30
    callback = statistics.median(took)
    shown, received, presented = medians(first + second)
    report = {
        "quick": quick,
        "slow": [shown, received, presented],
        "callback_ms": callback,
        "received_first": medians(first)[1],
        "received_second": medians(second)[1],
        "shown_per_s": rate,
    }
    print(json.dumps(report))  # the figures, for the record (pytest -s)
    assert quick[1] < 500, report
    # The newest frame waits for the busy callback, at most one period: about half on average.
    assert received <= quick[1] + callback + period, report
    assert presented <= quick[2] + callback + period, report
    # No growth (two periods: each median is of ten frames); a queue would add about 800 ms.
    assert medians(second)[1] <= medians(first)[1] + 2 * period, report
    assert max(row[1] for row in second) <= quick[1] + 2 * max(took) + 2 * period, report
    assert rate <= 6, report  # about one frame per callback
    assert bot.counters["frames_dropped"] - dropped_before > 30, bot.counters


# -- a kernel peer, a widget and a tab in one room (JupyterLab) ------------------------------------


@pytest.mark.jupyter
def test_a_kernel_peer_a_widget_and_a_tab_all_see_each_other(
    lab: Served, new_page: Callable[..., Any]
) -> None:
    """In a notebook: a KernelPeer (no URL: the kernel's shared signaller) and a VideoRoom in
    one room, and a standalone tab of that signaller: the widget's view and the tab each show
    two moving videos, the kernel peer is connected to both, and the widget lists both."""
    room = f"kp-lab-{secrets.token_hex(3)}"
    out = lab.root / f"{room}.json"
    url_file = lab.root / f"{room}.url"
    write_notebook(
        lab.root / f"{room}.ipynb",
        [
            "import json, pathlib\n"
            "from ipymeet import KernelPeer, VideoRoom, kernel_signaller\n"
            f"bot = KernelPeer({room!r}, name='bot')\n"
            "bot.on_frame(lambda frame, sender: 255 - frame)\n"
            "bot.join()\n"
            f"pathlib.Path({str(url_file)!r}).write_text(kernel_signaller().url)",
            f"room = VideoRoom({room!r}, name='Widget', route='direct')\nroom",
            "room.join()",
        ],
    )
    notebook = new_page()
    open_and_run(notebook, lab, f"{room}.ipynb")
    signaller = wait_for_file(url_file)
    tab = new_page(f"{signaller}/?room={room}&autojoin=1")
    wait_remote_video(tab, count=2, timeout=60)
    wait_remote_video(notebook, count=2, timeout=60)
    run_in_kernel(
        notebook,
        "bot.wait_for(lambda p: len(p.peers) == 2 and all(x['connection'] == 'connected' "
        "for x in p.peers) and p.counters['frames_processed'] > 20, timeout=30)\n"
        f"pathlib.Path({str(out)!r}).write_text(json.dumps({{'bot': bot.peers, "
        "'widget': room.peers, 'counters': bot.counters, 'id': bot.id}))",
    )
    seen = json.loads(wait_for_file(out))
    assert sorted(p["name"] for p in seen["bot"]) == ["", "Widget"], seen
    assert {p["connection"] for p in seen["bot"]} == {"connected"}, seen
    assert sorted(p["name"] for p in seen["widget"]) == ["", "bot"], seen
    assert seen["counters"]["callback_errors"] == 0, seen
    tab_sees = tab.evaluate("() => window.ipymeet.model.get('_browser_peers')")
    assert sorted(p["name"] for p in tab_sees) == ["Widget", "bot"], tab_sees
    assert {p["connection"] for p in tab_sees} == {"connected"}, tab_sees
    run_in_kernel(notebook, "bot.close(); room.leave()")
    tab.wait_for_function(
        "(id) => !window.ipymeet.model.get('_browser_peers').some((p) => p.id === id)",
        arg=seen["id"],
    )


#: The tab's video sender to member ``id``: its first encoding and its track's size.
SENDER_JS = f"""(id) => {{
  const sender = {PEER_JS}.pc.getSenders().find((s) => s.track && s.track.kind === 'video');
  const {{ width, height }} = sender.track.getSettings();
  return {{ ...sender.getParameters().encodings[0], width, height }};
}}"""


def camera_640x480(page: Any, peer_id: str) -> None:
    """Make the tab's camera 640x480 during the call (its ``video_size``, the page's 1280x720 by
    default) and wait until its sender to ``peer_id`` has the 640x480 track."""
    page.evaluate("() => window.ipymeet.model.set('video_size', [640, 480])")
    page.wait_for_function(
        f"(id) => {{ const e = ({SENDER_JS})(id); return e.width === 640 && e.height === 480; }}",
        arg=peer_id,
    )


def sized_peer_with_a_tab(
    server: SignallerThread,
    new_page: Callable[..., Any],
    make_peer: Callable[..., KernelPeer],
    **options: Any,
) -> tuple[KernelPeer, Any, set[tuple[int, ...]]]:
    """A ``KernelPeer(**options)`` in a call with a tab whose camera is made 640x480: the peer,
    the tab, and the shapes of the frames its callback got (filled as they come)."""
    room = f"kp-{secrets.token_hex(3)}"
    bot = make_peer(room, name="sized", signaling_url=server.url, **options)
    shapes: set[tuple[int, ...]] = set()
    bot.on_frame(lambda frame, sender: shapes.add(frame.shape))
    bot.join()
    page = new_page(f"{server.url}/?room={room}&autojoin=1")
    bot.wait_for(lambda p: p.state == "in_call" and p.counters["frames_processed"] > 10)
    camera_640x480(page, bot.id)
    return bot, page, shapes


def received_sizes(bot: KernelPeer, seconds: float) -> set[tuple[int, int, float]]:
    """The (width, height, fps_in) the peer's ``stats`` show for its one member, read each
    0.1 s for ``seconds``."""
    seen: set[tuple[int, int, float]] = set()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for figures in bot.stats.values():
            seen.add((figures["width"], figures["height"], figures["fps_in"]))
        time.sleep(0.1)
    return seen


def test_a_kernel_peer_gets_frames_of_its_size_and_the_tab_sends_it_no_more(
    server: SignallerThread, new_page: Callable[..., Any], make_peer: Callable[..., KernelPeer]
) -> None:
    """``KernelPeer(size=(320, 240), fps=15)`` and a tab whose camera is 640x480: every frame the
    callback gets is (240, 320, 3), and the tab, told by the peer's ``want``, sends its camera
    at half its size (``scaleResolutionDownBy`` 2, refitted when the camera changed size during
    the call) and about 15 frames a second (``maxFramerate``): the peer receives no more."""
    bot, page, shapes = sized_peer_with_a_tab(server, new_page, make_peer, size=(320, 240), fps=15)
    # Past the small start (a quarter of the camera): the scale that fits 320x240, at 15 fps.
    page.wait_for_function(
        f"(id) => {{ const e = ({SENDER_JS})(id); return e.maxFramerate === 15 && "
        "e.scaleResolutionDownBy === 2; }",
        arg=bot.id,
        timeout=20_000,
    )
    bot.wait_for(lambda p: any(s["width"] > 160 for s in p.stats.values()), timeout=20)
    seen = received_sizes(bot, 3.0)
    assert all(w <= 320 and h <= 240 for w, h, _ in seen), seen
    rates = sorted(fps for _, _, fps in seen)
    assert 10 <= rates[len(rates) // 2] <= 17, rates  # about 15 fps received, not the camera's 20
    assert shapes == {(240, 320, 3)}, shapes
    assert bot.counters["callback_errors"] == 0
    # The tab's sound came too, and with no on_audio it was neither converted nor handed over.
    assert bot.counters["audio_received"] > 0
    assert bot.counters["audio_processed"] == 0


def test_a_kernel_peer_larger_than_the_camera_gets_its_frames_enlarged(
    server: SignallerThread, new_page: Callable[..., Any], make_peer: Callable[..., KernelPeer]
) -> None:
    """``KernelPeer(size=(1280, 720))`` and a 640x480 camera: the tab sends its camera as it is
    (never enlarged; scale 1 once the small start ends), and the peer's conversion enlarges each
    frame to its ``size``: the callback's frames are (720, 1280, 3)."""
    bot, page, shapes = sized_peer_with_a_tab(server, new_page, make_peer, size=(1280, 720))
    page.wait_for_function(
        f"(id) => ({SENDER_JS})(id).scaleResolutionDownBy === 1", arg=bot.id, timeout=20_000
    )
    assert page.evaluate(SENDER_JS, bot.id).get("maxFramerate") is None
    bot.wait_for(lambda p: any(s["width"] == 640 for s in p.stats.values()), 20)
    assert shapes == {(720, 1280, 3)}, shapes
