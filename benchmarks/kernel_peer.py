"""Camera -> Python -> the same page: a KernelPeer's round trip, frame rate and CPU per frame.

One Chromium tab (real, headless) joins a room on a signaller in this process; its camera is a
640x480 canvas at 30 fps whose frames carry the time they were drawn (16 bits of
``performance.now()``, one black or white cell per bit; the instrument of
tests/e2e/test_kernel_peer.py). A KernelPeer in a process of its own (the "kernel": nothing else
runs there, so its CPU is the peer's alone) joins the room with a no-op callback,
``return frame``: every frame it receives it sends back as its own video. The tab reads the stamp
off each frame of the kernel peer's video it shows (``requestVideoFrameCallback``) and keeps
``now - stamp``.

Printed, one JSON line:

- ``p50_ms`` / ``p90_ms``: the round trip, camera canvas drawn -> shown again in the same page
  (the tab's encoder, the network over this machine's own interface, aiortc's decoder, the
  callback, aiortc's encoder, the tab's decoder and compositor);
- ``fps_shown``: the frames a second the tab shows of the kernel peer's video, and
  ``fps_processed``: the frames a second the callback ran;
- ``cpu_ms_per_frame``: the kernel process's CPU time (user + system, all its threads) over the
  window, per frame the callback processed; ``cpu_cores``: the same as a share of one core;
- ``fps_presented``: the frames a second the tab presented of the kernel peer's video
  (``presentedFrames``, which counts those its reading skipped), and
  ``fps_presented_own_camera``: of its own camera's preview, beside it. With ``--browser-call``,
  a line of its own: what a tab presents of another tab's video in a call on this machine (the
  ceiling: a browser's video, received, is presented at about 28.5 a second here);
- ``size_in``: the size the kernel peer received. The tab keeps its 640x480
  (``degradationPreference: "maintain-resolution"``) unless ``--adapt``: Chromium otherwise sends
  480x360 here, as it would in a call whose encoder or bandwidth estimate is short.

Side by side, when ``--streamlit-python`` (default ``/tmp/swrtc-venv/bin/python``) has
``streamlit`` and ``streamlit-webrtc`` (``python -m venv /tmp/swrtc-venv && /tmp/swrtc-venv/bin/pip
install streamlit streamlit-webrtc``, outside the project's environment): a streamlit app whose
``webrtc_streamer`` has the same no-op ``video_frame_callback`` (it gets and returns an
``av.VideoFrame``, never an array), its component's iframe given the same camera and reading the
same stamps off the processed video it shows; its CPU is the streamlit process's. Runs alternate
(``--runs``), and the last line is both medians of p50 and their ratio.

Example::

    python benchmarks/kernel_peer.py --seconds 20
    python benchmarks/kernel_peer.py --seconds 15 --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ipymeet.server import Settings, SignallerThread  # noqa: E402
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from tests.e2e.test_kernel_peer import STAMPED_CAMERA_JS  # noqa: E402

#: The e2e instrument reads an inverted picture (a dark cell is a 1); the no-op callback sends
#: the frame back as it came, so here a light cell is a 1.
READ_INVERTED = ".data[1] < 128) t |= 1 << i;"
CAMERA_JS = STAMPED_CAMERA_JS.replace(READ_INVERTED, ".data[1] >= 128) t |= 1 << i;")
assert CAMERA_JS != STAMPED_CAMERA_JS, "the e2e instrument changed: update READ_INVERTED"
#: Each frame shown, by its stamp, for --stages: [stamp, shown, received, presented] (page ms)
#: and the count of frames presented so far (a page's reading may skip some).
PUSH = "window.__latencies.push("
CAMERA_JS = CAMERA_JS.replace(
    PUSH,
    "window.__stamps.push([t, now, receiveTime, presentationTime, meta.presentedFrames]); " + PUSH,
)
assert "__stamps.push" in CAMERA_JS, "the e2e instrument changed: update PUSH"
CAMERA_JS += "window.__stamps = [];"
#: Every RTCPeerConnection a frame makes, for FULL_SIZE_JS (the same for both pages).
CAMERA_JS += """
(() => {
  const Original = window.RTCPeerConnection;
  window.__pcs = [];
  window.RTCPeerConnection = class extends Original {
    constructor(...args) { super(...args); window.__pcs.push(this); }
  };
})();
"""

#: The kernel: a KernelPeer with a no-op callback; answers each line on stdin with its counters,
#: its stats and its CPU time so far.
KERNEL = """
import json, os, sys, time
from ipymeet import KernelPeer
stages = None
if os.environ.get("BENCH_STAGES") == "1":
    sys.path.insert(0, "benchmarks")
    import kernel_peer_stages as stages
    stages.install()
peer = KernelPeer(sys.argv[1], name="echo", signaling_url=sys.argv[2])
peer.on_frame(stages.callback if stages else (lambda frame, sender: frame))
peer.join()
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    if line.strip() == "quit":
        break
    times = os.times()
    print(json.dumps({"counters": peer.counters, "stats": peer.stats, "id": peer.id,
                      "cpu": times.user + times.system, "t": time.monotonic(),
                      "stages": stages.report() if stages else {}}), flush=True)
peer.close()
"""


#: Keep the tab's camera at its full 640x480 (Chromium otherwise lowers the resolution of what it
#: sends when its encoder or the bandwidth estimate is short, as a call does).
FULL_SIZE_JS = """async () => {
  for (const pc of window.__pcs) {
    if (pc.connectionState === 'closed') continue;
    for (const sender of pc.getSenders()) {
      if (sender.track?.kind !== 'video') continue;
      const parameters = sender.getParameters();
      parameters.degradationPreference = 'maintain-resolution';
      try { await sender.setParameters(parameters); } catch (e) { /* a stopped sender */ }
    }
  }
}"""


#: The page's receivers of video asked for a jitter buffer of ``ms`` (Chromium's
#: ``RTCRtpReceiver.jitterBufferTarget``), for --page-jitter-target.
JITTER_TARGET_JS = """(ms) => {
  for (const pc of window.__pcs) {
    for (const receiver of pc.getReceivers()) {
      if (receiver.track?.kind === 'video') receiver.jitterBufferTarget = ms;
    }
  }
}"""


#: Counts the frames the ``<video>`` of selector ``s`` presents (``presentedFrames``) into
#: ``window.__presented[s]``: for the page's own camera preview, and for --browser-call.
WATCH_PRESENTED_JS = """(s) => {
  const video = document.querySelector(s);
  const seen = (window.__presented = window.__presented || {});
  seen[s] = null;
  const step = (_now, meta) => {
    seen[s] = meta.presentedFrames;
    video.requestVideoFrameCallback(step);
  };
  video.requestVideoFrameCallback(step);
}"""


#: streamlit-webrtc's way: ``video_frame_callback`` with the same no-op (the frame it got, back);
#: the frames it processed go to a file, since its process is streamlit's own.
STREAMLIT_APP = """
import os, pathlib, threading
from streamlit_webrtc import WebRtcMode, webrtc_streamer

COUNT = pathlib.Path(os.environ["BENCH_COUNT_FILE"])
seen = [0]
lock = threading.Lock()


def callback(frame):
    with lock:
        seen[0] += 1
        if seen[0] % 10 == 0:
            COUNT.write_text(str(seen[0]))
    return frame


webrtc_streamer(
    key="bench",
    mode=WebRtcMode.SENDRECV,
    video_frame_callback=callback,
    frontend_rtc_configuration={"iceServers": []},
    server_rtc_configuration={"iceServers": []},
    media_stream_constraints={"video": True, "audio": False},
    desired_playing_state=True,
)
"""


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


#: The instrument's reading of the <video> at selector ``s``, started once per element.
READ_ONCE_JS = """(s) => {
  const video = document.querySelector(s);
  if (video && window.__readOn !== video) { window.__readOn = video; window.__readStamps(s); }
}"""


def streamlit_webrtc(
    seconds: float,
    warmup: float,
    full_size: bool,
    python: str,
    size: tuple[int, int] = (640, 480),
) -> dict[str, Any]:
    """The same measure of a streamlit-webrtc app (``python`` has streamlit and
    streamlit-webrtc): its component's iframe gets the same camera and reads the same stamps
    off the video it shows, the processed one."""
    import socket
    import tempfile

    from playwright.sync_api import sync_playwright

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    scratch = Path(tempfile.mkdtemp(prefix="bench-swrtc-"))
    app, count = scratch / "app.py", scratch / "count"
    app.write_text(STREAMLIT_APP)
    count.write_text("0")
    server = subprocess.Popen(
        [
            python,
            "-m",
            "streamlit",
            "run",
            str(app),
            "--server.headless",
            "true",
            "--server.port",
            str(port),
            "--server.address",
            "127.0.0.1",
            "--browser.gatherUsageStats",
            "false",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "BENCH_COUNT_FILE": str(count)},
        cwd=scratch,
    )
    try:
        with sync_playwright() as playwright:
            browser, page = stamped_page(playwright, size)
            deadline = time.monotonic() + 60
            while True:
                try:
                    page.goto(f"http://127.0.0.1:{port}/")
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
            frame = None
            while frame is None:
                if time.monotonic() > deadline:
                    raise TimeoutError("no streamlit-webrtc component")
                frame = next((f for f in page.frames if "streamlit_webrtc" in f.url), None)
                page.wait_for_timeout(200)
            frame.wait_for_function(
                "() => { const v = document.querySelector('video');"
                " return v && v.videoWidth > 0; }",
                timeout=60_000,
            )
            frame.evaluate(READ_ONCE_JS, "video")
            if full_size:
                frame.evaluate(FULL_SIZE_JS)
            page.wait_for_timeout(warmup * 1000)
            # The component may have made its connection and its <video> again meanwhile.
            frame.evaluate(READ_ONCE_JS, "video")
            if full_size:
                frame.evaluate(FULL_SIZE_JS)
            frame.evaluate("() => { window.__latencies = []; }")
            before = (int(count.read_text() or 0), cpu_seconds(server.pid), time.monotonic())
            page.wait_for_timeout(seconds * 1000)
            after = (int(count.read_text() or 0), cpu_seconds(server.pid), time.monotonic())
            shown = frame.evaluate("() => window.__latencies")
            size = frame.evaluate(
                "() => ((v) => [v.videoWidth, v.videoHeight])(document.querySelector('video'))"
            )
            browser.close()
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
    span = after[2] - before[2]
    processed, cpu = after[0] - before[0], after[1] - before[1]
    if not shown:
        return {"benchmark": "streamlit_webrtc", "error": "its page showed no frame to read"}
    figures = common_figures(
        shown,
        span=span,
        window=span,
        processed=processed,
        cpu=cpu,
        full_size=full_size,
        size=size,
    )
    return {"benchmark": "streamlit_webrtc", **figures, "size_shown": size}


#: The camera canvas's size in the e2e instrument, replaced for --size.
CANVAS = "const W = 640, H = 480, CELL = 80"
assert CANVAS in CAMERA_JS, "the e2e instrument changed: update CANVAS"


def stamped_page(playwright: Any, size: tuple[int, int] = (640, 480)) -> tuple[Any, Any]:
    """A Chromium and a page of it whose camera is the stamped canvas (CAMERA_JS) of ``size``
    (its 16 cells an eighth of its width wide)."""
    width, height = size
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    page = browser.new_context(permissions=["camera", "microphone"]).new_page()
    page.add_init_script(
        CAMERA_JS.replace(CANVAS, f"const W = {width}, H = {height}, CELL = {width // 8}")
    )
    return browser, page


def common_figures(
    shown: list[Any],
    *,
    span: float,
    window: float,
    processed: int,
    cpu: float,
    full_size: bool,
    size: tuple[int, int] = (640, 480),
) -> dict[str, Any]:
    """What both sides print: latency of the frames ``shown`` (the instrument's entries, read
    at the page's reading of each frame) over ``window`` seconds, and frames processed and CPU
    seconds over ``span``."""
    latencies = [float(entry[1]) for entry in shown]
    return {
        "callback": "no-op (return frame)",
        "camera": f"{size[0]}x{size[1]} canvas at 30 fps",
        "degradation": "maintain-resolution" if full_size else "the browser's default",
        "window_s": round(window, 1),
        "frames_shown": len(latencies),
        "p50_ms": round(statistics.median(latencies), 1),
        "p90_ms": round(percentile(latencies, 0.9), 1),
        "fps_shown": round(len(latencies) / window, 1),
        "fps_processed": round(processed / span, 1),
        "cpu_ms_per_frame": round(cpu * 1000 / max(processed, 1), 2),
        "cpu_cores": round(cpu / span, 2),
    }


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))]


class Kernel:
    """The kernel peer's process."""

    def __init__(self, room: str, url: str, stages: bool = False) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", KERNEL, room, url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), "BENCH_STAGES": "1" if stages else "0"},
        )
        assert json.loads(self.read())["ready"]

    def read(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the kernel process ended")
        return line

    def ask(self) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write("report\n")
        self.process.stdin.flush()
        return dict(json.loads(self.read()))

    def close(self) -> None:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write("quit\n")
            self.process.stdin.flush()
            self.process.wait(15)
        except Exception:
            self.process.kill()


def full_size_after(kernel: Kernel, width: int = 640, limit: float = 30.0) -> dict[str, Any]:
    """From the page's joining: when the kernel peer got its first frame of the page's video,
    and when its first frame ``width`` wide (seconds after that first one; None: not within
    ``limit``). Read from the peer's stats, four times a second."""
    began = time.monotonic()
    first = None
    while time.monotonic() - began < limit:
        report = kernel.ask()
        if first is None and report["counters"].get("frames_received", 0) > 0:
            first = time.monotonic()
        if first is not None and any(
            (s.get("width") or 0) >= width for s in report["stats"].values()
        ):
            return {
                "first_frame_s": round(first - began, 2),
                "full_size_after_s": round(time.monotonic() - first, 2),
            }
        time.sleep(0.25)
    return {
        "first_frame_s": None if first is None else round(first - began, 2),
        "full_size_after_s": None,
    }


def run(
    seconds: float,
    warmup: float,
    full_size: bool,
    stages: bool = False,
    jitter_target: float | None = None,
    size: tuple[int, int] = (640, 480),
) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    signaller = SignallerThread(Settings(ice_servers=())).start()
    room = f"bench-kp-{os.getpid()}"
    kernel = Kernel(room, signaller.url, stages)
    try:
        with sync_playwright() as playwright:
            browser, page = stamped_page(playwright, size)
            page.goto(f"{signaller.url}/?room={room}&autojoin=1")
            growth = full_size_after(kernel, size[0])
            peer_id = kernel.ask()["id"]
            tile = f".ipymeet-tile[data-peer-id='{peer_id}'] video"
            page.wait_for_function(
                "(s) => { const v = document.querySelector(s); return v && v.videoWidth > 0; }",
                arg=tile,
                timeout=60_000,
            )
            page.evaluate("(s) => window.__readStamps(s)", tile)
            if full_size:
                page.evaluate(FULL_SIZE_JS)
            if jitter_target is not None:
                page.evaluate(JITTER_TARGET_JS, jitter_target)
            # The page sends a quarter of its size until its bandwidth estimate allows more, at
            # most 10 s (js/src/peer.ts, START_SCALE); then its encoder, its bit rate still low
            # against aiortc, skips frames for about 10 s.
            page.wait_for_timeout(warmup * 1000)
            own = watch_presented(page, ".ipymeet-self video")
            page.evaluate("() => { window.__latencies = []; window.__stamps = []; }")
            own_before = own()
            before = kernel.ask()
            started = time.monotonic()
            page.wait_for_timeout(seconds * 1000)
            after = kernel.ask()
            window = time.monotonic() - started
            own_presented = own() - own_before
            shown = page.evaluate("() => window.__latencies")
            size = page.evaluate(
                "(s) => ((v) => [v.videoWidth, v.videoHeight])(document.querySelector(s))", tile
            )
            page_stamps = page.evaluate("() => [performance.timeOrigin, window.__stamps]")
            decoding = page.evaluate(INBOUND_JS)
            browser.close()
    finally:
        kernel.close()
        signaller.stop()
    breakdown = stage_table(after["stages"], *page_stamps) if stages else None
    counted = ("frames_processed", "frames_sent", "frames_dropped")
    counters = {key: after["counters"][key] - before["counters"][key] for key in counted}
    span = after["t"] - before["t"]
    processed, cpu = counters["frames_processed"], after["cpu"] - before["cpu"]
    figures = common_figures(
        shown,
        span=span,
        window=window,
        processed=processed,
        cpu=cpu,
        full_size=full_size,
        size=size,
    )
    stats = next(iter(after["stats"].values()), {})
    return {
        "benchmark": "kernel_peer",
        **figures,
        "fps_sent": round(counters["frames_sent"] / span, 1),
        "frames_dropped": counters["frames_dropped"],
        "size_in": [stats.get("width"), stats.get("height")],
        **growth,
        "size_shown": size,
        "fps_presented": presented_rate(page_stamps[1], window),
        "fps_presented_own_camera": round(own_presented / window, 1),
        "page_inbound": decoding,
        **({"stages": breakdown} if breakdown else {}),
    }


def watch_presented(page: Any, selector: str) -> Any:
    """Start counting the frames the ``<video>`` at ``selector`` presents; returns a reader of
    the count so far."""
    page.evaluate(WATCH_PRESENTED_JS, selector)
    page.wait_for_function("(s) => window.__presented[s] !== null", arg=selector)
    return lambda: int(page.evaluate("(s) => window.__presented[s]", selector))


def browser_call(seconds: float, warmup: float, size: tuple[int, int]) -> dict[str, Any]:
    """The ceiling for ``fps_presented``: two tabs of one Chromium in a call, each with the
    stamped camera, kept at full size; the frames a second the first presents of the second's
    video (the same page, the same compositor, a browser's video rather than a kernel peer's)."""
    from playwright.sync_api import sync_playwright

    signaller = SignallerThread(Settings(ice_servers=())).start()
    room = f"bench-call-{os.getpid()}"
    width, height = size
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            pages = []
            for _ in range(2):
                page = browser.new_context(permissions=["camera", "microphone"]).new_page()
                canvas = f"const W = {width}, H = {height}, CELL = {width // 8}"
                page.add_init_script(CAMERA_JS.replace(CANVAS, canvas))
                page.goto(f"{signaller.url}/?room={room}&autojoin=1")
                pages.append(page)
            first = pages[0]
            remote = ".ipymeet-tile:not(.ipymeet-self) video"
            first.wait_for_function(
                "(s) => { const v = document.querySelector(s); return v && v.videoWidth > 0; }",
                arg=remote,
                timeout=60_000,
            )
            for page in pages:
                page.evaluate(FULL_SIZE_JS)
            first.wait_for_timeout(warmup * 1000)
            presented = watch_presented(first, remote)
            before, started = presented(), time.monotonic()
            first.wait_for_timeout(seconds * 1000)
            count, window = presented() - before, time.monotonic() - started
            shown = first.evaluate(
                "(s) => ((v) => [v.videoWidth, v.videoHeight])(document.querySelector(s))", remote
            )
            browser.close()
    finally:
        signaller.stop()
    return {
        "benchmark": "browser_call",
        "camera": f"{width}x{height} canvas at 30 fps",
        "window_s": round(window, 1),
        "size_shown": shown,
        "fps_presented": round(count / window, 1),
    }


def library_floor(size: tuple[int, int], frames: int = 300) -> dict[str, Any]:
    """What the libraries alone take of one CPU core per frame for the kernel peer's round trip
    at ``size``, on the camera's own pictures (gray, 16 cells of a changing stamp): VP8 decoding
    (libvpx, as aiortc's decoder), the callback's RGB array (swscale), the outgoing frame from
    the array and its yuv420p (swscale POINT), and VP8 encoding at the kernel peer's settings
    (``internals.REALTIME_VP8`` over aiortc's), at the 2 Mbps the benchmark's page sends. Set
    against ``cpu_ms_per_frame``: the rest is Python, RTP and SRTP, the threads' hand-offs and
    the page's sound."""
    import fractions

    import av
    import numpy as np

    from ipymeet.server.core import internals

    width, height = size
    cell = width // 8
    pictures = []
    for index in range(frames):
        array = np.full((height, width, 3), 128, dtype=np.uint8)
        stamp = (index * 33) & 0xFFFF
        for bit in range(16):
            x, y = (bit % 8) * cell, (bit // 8) * cell
            array[y : y + cell, x : x + cell] = 255 if (stamp >> bit) & 1 else 0
        pictures.append(array)

    def vp8(options: dict[str, str]) -> Any:
        codec = av.CodecContext.create("libvpx", "w")
        codec.width, codec.height, codec.pix_fmt = width, height, "yuv420p"
        codec.bit_rate, codec.time_base = 2_000_000, fractions.Fraction(1, 90_000)
        codec.options = {"deadline": "realtime", "lag-in-frames": "0", **options}
        return codec

    browser = vp8({"cpu-used": "-6"})
    packets = []
    for index, array in enumerate(pictures):
        frame = av.VideoFrame.from_ndarray(array, format="rgb24").reformat(format="yuv420p")
        frame.pts = index * 3000
        packets.extend(browser.encode(frame))
    from av.video.reformatter import VideoReformatter

    decoder = av.CodecContext.create("libvpx", "r")
    to_rgb, to_yuv = VideoReformatter(), VideoReformatter()  # as the kernel peer keeps them
    ours = vp8({"noise-sensitivity": "4", "static-thresh": "1", **internals.REALTIME_VP8})
    steps = dict.fromkeys(("decode", "to_rgb", "from_rgb", "to_yuv", "encode"), 0.0)

    def timed(step: str, work: Any) -> Any:
        began = time.process_time()
        result = work()
        steps[step] += time.process_time() - began
        return result

    wrap = av.VideoFrame.from_numpy_buffer
    count = 0
    for packet in packets:
        for picture in timed("decode", lambda packet=packet: decoder.decode(packet)):
            array = timed(
                "to_rgb",
                lambda picture=picture: to_rgb.reformat(picture, format="rgb24").to_ndarray(),
            )
            out = timed("from_rgb", lambda array=array: wrap(array, format="rgb24"))
            yuv = timed(
                "to_yuv",
                lambda out=out: to_yuv.reformat(out, format="yuv420p", interpolation="POINT"),
            )
            yuv.pts = count * 3000
            timed("encode", lambda yuv=yuv: list(ours.encode(yuv)))
            count += 1
    per_frame = {step: round(total * 1000 / max(count, 1), 2) for step, total in steps.items()}
    return {
        "benchmark": "library_floor",
        "size": list(size),
        "frames": count,
        "cpu_ms_per_frame": per_frame,
        "total_ms": round(sum(per_frame.values()), 2),
    }


def presented_rate(stamps: list[list[float]], window: float) -> float | None:
    """Frames a second the page presented (``presentedFrames``, which counts the frames a
    reading skipped too) over the window."""
    counts = [row[4] for row in stamps if len(row) > 4 and row[4] is not None]
    return round((counts[-1] - counts[0]) / window, 1) if len(counts) > 1 else None


#: The page's figures of the video it receives: frames received, decoded, dropped, and the
#: jitter buffer's mean delay (ms).
INBOUND_JS = """async () => {
  const found = [];
  for (const pc of window.__pcs) {
    (await pc.getStats()).forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video') found.push({
        received: s.framesReceived, decoded: s.framesDecoded, dropped: s.framesDropped,
        jitter_ms: s.jitterBufferEmittedCount
          ? Math.round(1000 * s.jitterBufferDelay / s.jitterBufferEmittedCount) : null,
        decode_ms: s.framesDecoded
          ? Math.round(1000 * s.totalDecodeTime / s.framesDecoded * 10) / 10 : null,
      });
    });
  }
  return found;
}"""


#: The page's stages, after the kernel's (kernel_peer_stages.ORDER): the frame's last packet
#: received, its picture presented to the compositor, and the page's reading of it.
PAGE_STAGES = ("page_received", "page_presented", "page_shown")


def stage_table(
    kernel: dict[str, dict[str, float]], origin: float, shown: list[list[float]]
) -> list[dict[str, Any]]:
    """For each stage in order, over the frames seen at every stage: the median time since the
    frame was drawn (ms) and the median step from the stage before (ms)."""
    from kernel_peer_stages import ORDER

    def since(stamp: int, page_ms: float) -> float:
        return float(((int(page_ms) & 0xFFFF) - stamp) % 0x10000)

    frames: dict[int, dict[str, float]] = {}
    for key, stages in kernel.items():
        stamp = int(key)
        frames[stamp] = {s: since(stamp, at * 1000 - origin) for s, at in stages.items()}
    for stamp, now, received, presented, *_ in shown:
        row = frames.get(int(stamp))
        if row is not None:
            row.update(
                page_received=since(int(stamp), received),
                page_presented=since(int(stamp), presented),
                page_shown=since(int(stamp), now),
            )
    order = [*ORDER, *PAGE_STAGES]
    whole = [row for row in frames.values() if all(s in row for s in order)]
    table = []
    for index, stage in enumerate(order):
        steps = [row[stage] - row[order[index - 1]] for row in whole] if index else []
        table.append(
            {
                "stage": stage,
                "since_drawn_ms": round(statistics.median(row[stage] for row in whole), 1)
                if whole
                else None,
                "step_ms": round(statistics.median(steps), 1) if steps else None,
            }
        )
    return [{"frames": len(whole)}, *table]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="the measured window")
    parser.add_argument(
        "--warmup",
        type=float,
        default=25.0,
        help="seconds before it: the page starts small (10 s at most), and its encoder drops "
        "frames for about 10 s after it grows",
    )
    parser.add_argument(
        "--adapt",
        action="store_true",
        help="let the tab lower its resolution as a call does (default: keep 640x480)",
    )
    parser.add_argument(
        "--streamlit-python",
        default="/tmp/swrtc-venv/bin/python",
        help="a Python with streamlit and streamlit-webrtc, for the side-by-side measure",
    )
    parser.add_argument("--runs", type=int, default=1, help="runs of each, alternating")
    parser.add_argument(
        "--size",
        default="640x480",
        help="the camera canvas's size, WIDTHxHEIGHT (e.g. 1280x720)",
    )
    parser.add_argument(
        "--page-jitter-target",
        type=float,
        default=None,
        help="ask the page's video receivers for this jitter buffer (ms; Chromium's "
        "jitterBufferTarget); default: the browser's own",
    )
    parser.add_argument(
        "--stages",
        action="store_true",
        help="time each stage of the round trip (benchmarks/kernel_peer_stages.py)",
    )
    parser.add_argument(
        "--browser-call",
        action="store_true",
        help="also measure the frames a second a tab presents of another tab's video in a call "
        "(the ceiling of fps_presented here)",
    )
    args = parser.parse_args()
    width, _, height = args.size.partition("x")
    size = (int(width), int(height))
    python = args.streamlit_python
    has_streamlit = Path(python).exists() and (
        subprocess.run([python, "-c", "import streamlit_webrtc"], capture_output=True).returncode
        == 0
    )
    rows: dict[str, list[dict[str, Any]]] = {"kernel_peer": [], "streamlit_webrtc": []}
    for _ in range(args.runs):
        rows["kernel_peer"].append(
            run(
                args.seconds,
                args.warmup,
                not args.adapt,
                args.stages,
                args.page_jitter_target,
                size,
            )
        )
        print(json.dumps(rows["kernel_peer"][-1]), flush=True)
        if has_streamlit:
            rows["streamlit_webrtc"].append(
                streamlit_webrtc(args.seconds, args.warmup, not args.adapt, python, size)
            )
            print(json.dumps(rows["streamlit_webrtc"][-1]), flush=True)
    if args.browser_call:
        print(json.dumps(browser_call(args.seconds, args.warmup, size)), flush=True)
    print(json.dumps(library_floor(size)), flush=True)
    if not has_streamlit:
        print(json.dumps({"benchmark": "streamlit_webrtc", "skipped": f"not in {python}"}))
        return
    read = {k: [r["p50_ms"] for r in rows[k] if "p50_ms" in r] for k in rows}
    if not read["streamlit_webrtc"]:
        return
    ours, theirs = (statistics.median(read[k]) for k in ("kernel_peer", "streamlit_webrtc"))
    print(
        json.dumps(
            {
                "p50_ms": {"kernel_peer": ours, "streamlit_webrtc": theirs},
                "ratio": round(ours / theirs, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
