"""``VideoRoom.record(path)``: the call's media written to a file on the kernel's disk.

A :class:`Recorder` is a :class:`~.kernelpeer.KernelPeer` that sends nothing and receives every
member's video and audio (or only the members named), named "Recording" so that everyone in the
call sees it is there. A thread of its own writes, with PyAV:

- **one video stream, a grid** of the members' newest frames (each fitted into its cell, the
  cells laid out as the view does: 1, 2 side by side, 2x2, 3x2, ...), each with its member's
  name at the bottom left as the view shows it (``labels=False``: none), ``fps`` times a second
  (15 by default) at ``size`` (960x540). A grid, not a stream per member, because a container's
  streams are fixed once it starts, while members come and go during a call: a grid takes a
  newcomer in its next frame, and every player plays it.
- **one audio stream**, every member's audio mixed (summed, clipped) at 48 kHz stereo.
- timestamps from the wall clock since the recording started, so the file lasts as long as the
  recording did even when a frame is late or a member sent nothing for a while (its cell stays
  black, its audio silent). When the machine is too busy to encode every frame, the frames it
  had no time for are skipped (``frames_skipped``) and the previous one shows that much longer.

Encoding is the cost: VP8 in real-time mode at 960x540 took about 20-40 ms of one core per frame
here (on a loaded 2-core machine), so 15 frames a second is a third to a half of a core.

The container follows the file's suffix: ``.webm`` (VP8 and Opus: plays in every browser, the
default choice), ``.mkv`` (the same in Matroska), ``.mp4`` (H.264 and AAC); and for the sound
alone, ``.wav`` (16-bit PCM) or ``.ogg`` (Opus), whether the members send video or not: no video
is composed or encoded, and the file has one stream, the mix.
"""

from __future__ import annotations

import fractions
import functools
import logging
import math
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .kernelpeer import KernelPeer, require_extra
from .messages import Sender
from .peermedia import AUDIO_RATE

log = logging.getLogger("ipymeet")

#: Codecs (video, or None: sound alone; audio) and the video encoder's options per suffix.
CONTAINERS: dict[str, tuple[str | None, str, dict[str, str]]] = {
    ".webm": ("libvpx", "libopus", {"deadline": "realtime", "cpu-used": "16"}),
    ".mkv": ("libvpx", "libopus", {"deadline": "realtime", "cpu-used": "16"}),
    ".mp4": ("libx264", "aac", {"preset": "veryfast", "tune": "zerolatency"}),
    ".wav": (None, "pcm_s16le", {}),
    ".ogg": (None, "libopus", {}),
}
#: A member's audio held back at most this long (its clock may run ahead of ours).
AUDIO_BACKLOG_S = 0.3
#: A drawn name label: its colours (RGB) and opacity (0-1), the same height and width.
Label = tuple[NDArray[np.uint8], NDArray[np.float32]]
#: A name label's text height: this fraction of its cell's height, at least LABEL_MIN_PX.
LABEL_SCALE = 1 / 20
LABEL_MIN_PX = 12


def grid_shape(count: int) -> tuple[int, int]:
    """(columns, rows) for ``count`` cells: 1x1, 2x1, 2x2, 3x2, 3x3, ..."""
    columns = max(1, math.ceil(math.sqrt(count)))
    return columns, max(1, math.ceil(count / columns))


def fit(frame: NDArray[np.uint8], width: int, height: int) -> NDArray[np.uint8]:
    """``frame`` scaled (nearest pixel, aspect kept) and centred on a black ``width`` x
    ``height`` cell."""
    cell = np.zeros((height, width, 3), dtype=np.uint8)
    h, w = frame.shape[:2]
    scale = min(width / w, height / h)
    out_w, out_h = max(1, int(w * scale)), max(1, int(h * scale))
    rows = np.minimum((np.arange(out_h) / scale).astype(np.intp), h - 1)
    cols = np.minimum((np.arange(out_w) / scale).astype(np.intp), w - 1)
    top, left = (height - out_h) // 2, (width - out_w) // 2
    cell[top : top + out_h, left : left + out_w] = frame[rows[:, None], cols[None, :]]
    return cell


def compose(
    frames: list[NDArray[np.uint8]],
    width: int,
    height: int,
    labels: list[str] | None = None,
) -> NDArray[np.uint8]:
    """The grid of ``frames`` on a ``width`` x ``height`` canvas (black where there are none),
    each cell with its ``labels`` entry (a member's name) at the bottom left when given."""
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    if not frames:
        return canvas
    columns, rows = grid_shape(len(frames))
    cell_w, cell_h = width // columns, height // rows
    for index, frame in enumerate(frames):
        row, column = divmod(index, columns)
        y, x = row * cell_h, column * cell_w
        cell = fit(frame, cell_w, cell_h)
        if labels is not None:
            stamp(cell, labels[index])
        canvas[y : y + cell_h, x : x + cell_w] = cell
    return canvas


def stamp(cell: NDArray[np.uint8], name: str) -> None:
    """Draw ``name``'s label (:func:`label`) at the bottom left of ``cell``, in place."""
    height, width = cell.shape[:2]
    size = max(LABEL_MIN_PX, round(height * LABEL_SCALE))
    margin = max(2, size // 2)
    drawn = label(name, size, width - 2 * margin)
    if drawn is None:
        return
    colours, opacity = drawn
    h, w = opacity.shape
    if h + 2 * margin > height:
        return
    region = cell[height - margin - h : height - margin, margin : margin + w]
    mixed = region * (1 - opacity[:, :, None]) + colours * opacity[:, :, None]
    region[:] = np.rint(mixed).astype(np.uint8)


@functools.lru_cache(maxsize=256)
def label(name: str, size: int, max_width: int) -> Label | None:
    """``name`` as the view's tile shows it (white on a dark translucent box, "Guest" for no
    name) with text ``size`` px high, cut with "…" to ``max_width``: its colours and opacity
    (0-1). None without Pillow (then the grid has no names) or room for one letter."""
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError:
        return None
    font = ImageFont.load_default(size=size)
    pad = max(2, size // 3)
    text = name.strip() or "Guest"
    shown = text
    while font.getlength(shown) + 2 * pad > max_width:
        if len(text) <= 1:
            return None
        text = text[:-1]
        shown = text.rstrip() + "…"
    width = int(font.getlength(shown)) + 2 * pad
    height = size + 2 * pad
    image = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((0, 0, width - 1, height - 1), radius=pad, fill=(17, 24, 39, 170))
    draw.text((pad, height / 2), shown, font=font, fill=(255, 255, 255, 255), anchor="lm")
    pixels = np.asarray(image)
    return pixels[:, :, :3].copy(), (pixels[:, :, 3] / 255).astype(np.float32)


class _Audio:
    """One member's audio waiting to be mixed: int16 stereo chunks in order."""

    def __init__(self) -> None:
        self.chunks: list[NDArray[np.int16]] = []
        self.samples = 0

    def put(self, samples: NDArray[np.int16]) -> None:
        if samples.ndim == 1:
            samples = samples[:, None]
        if samples.shape[1] == 1:
            samples = np.repeat(samples, 2, axis=1)
        self.chunks.append(np.ascontiguousarray(samples[:, :2]))
        self.samples += len(samples)
        limit = int(AUDIO_BACKLOG_S * AUDIO_RATE)
        while self.samples > limit and len(self.chunks) > 1:
            self.samples -= len(self.chunks.pop(0))

    def take(self, n: int) -> NDArray[np.int16]:
        """The next ``n`` samples, silence where there are none."""
        out = np.zeros((n, 2), dtype=np.int16)
        filled = 0
        while filled < n and self.chunks:
            chunk = self.chunks[0]
            used = min(n - filled, len(chunk))
            out[filled : filled + used] = chunk[:used]
            filled += used
            if used == len(chunk):
                self.chunks.pop(0)
            else:
                self.chunks[0] = chunk[used:]
        self.samples -= filled
        return out


class Recorder:
    """Records room ``room`` into ``path`` (see the module's docstring) from when it is made
    until :meth:`stop`. ``members``: names or ids of the members to record (None: everyone).
    ``peer_options`` (``signaling_url``, ``token``, ``relay_only``) are the KernelPeer's."""

    def __init__(
        self,
        room: str,
        path: str | Path,
        *,
        members: Iterable[str] | None = None,
        fps: float = 15.0,
        size: tuple[int, int] = (960, 540),
        labels: bool = True,
        name: str = "Recording",
        **peer_options: Any,
    ) -> None:
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in CONTAINERS:
            raise ValueError(
                f"record() writes {', '.join(CONTAINERS)} files, not {self.path.name!r}"
            )
        if isinstance(members, str):
            members = [members]
        self.members = None if members is None else frozenset(members)
        if not (1 <= fps <= 60):
            raise ValueError("fps must be between 1 and 60")
        width, height = (int(size[0]) & ~1, int(size[1]) & ~1)
        if width < 16 or height < 16:
            raise ValueError("size must be at least 16x16")
        self.fps, self.size = fps, (width, height)
        self.labels = labels
        self._lock = threading.Lock()
        self._frames: dict[str, NDArray[np.uint8]] = {}
        self._audio: dict[str, _Audio] = {}
        self._stop = threading.Event()
        #: Frames written, and frames skipped because the writer was late.
        self.frames_written = 0
        self.frames_skipped = 0
        self._index = -1
        self.error: BaseException | None = None
        require_extra()  # before the file is made
        self._container = self._open(suffix)
        try:
            self.peer = KernelPeer(
                room, name=name, only=self._wanted, sends_video=False, **peer_options
            )
        except BaseException:
            self._container.close()
            raise
        if self._video is not None:
            self.peer.on_frame(self._frame)
        self.peer.on_audio(self._samples)
        self._started = time.monotonic()
        self._thread = threading.Thread(
            target=self._run, name=f"ipymeet-record-{room}", daemon=True
        )
        self._thread.start()
        self.peer.join()

    def _wanted(self, sender: Sender) -> bool:
        return self.members is None or sender.id in self.members or sender.name in self.members

    def _open(self, suffix: str) -> Any:
        import av

        video_codec, audio_codec, options = CONTAINERS[suffix]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        container = av.open(str(self.path), mode="w")
        # Any: PyAV types add_stream's result as a union of every kind of stream.
        video: Any = None
        try:
            if video_codec is not None:
                video = container.add_stream(video_codec, rate=fractions.Fraction(self.fps))
                video.width, video.height = self.size
                video.pix_fmt = "yuv420p"
                video.bit_rate = 2_000_000
                video.options = dict(options)
            audio: Any = container.add_stream(audio_codec, rate=AUDIO_RATE)
            audio.layout = "stereo"
        except Exception:
            container.close()
            raise
        self._video: Any = video
        self._audio_stream: Any = audio
        self._fifo = av.AudioFifo()
        self._audio_written = 0
        return container

    # -- from the peer's callback threads ---------------------------------------------------------

    def _frame(self, frame: NDArray[np.uint8], sender: Sender) -> None:
        with self._lock:
            self._frames[sender.id] = frame

    def _samples(self, samples: NDArray[np.int16], sender: Sender) -> None:
        with self._lock:
            self._audio.setdefault(sender.id, _Audio()).put(samples)

    # -- the writer thread ------------------------------------------------------------------------

    def _run(self) -> None:
        period = 1.0 / self.fps
        index = -1
        try:
            while True:
                stopping = self._stop.wait(
                    max(0.0, self._started + (index + 1) * period - time.monotonic())
                )
                elapsed = time.monotonic() - self._started
                target = int(elapsed * self.fps)
                if target > index:
                    if self._video is not None:
                        self.frames_skipped += target - index - 1
                        self._write_video(target)
                    index = self._index = target
                self._write_audio(int(elapsed * AUDIO_RATE))
                if stopping:
                    break
        except BaseException as problem:
            self.error = problem
            log.exception("ipymeet: the recording to %s failed", self.path)
        finally:
            self._finish()

    def _write_video(self, index: int) -> None:
        import av

        names = {p["id"]: str(p["name"]) for p in self.peer.peers}
        with self._lock:
            for gone in set(self._frames) - set(names):
                del self._frames[gone]
            shown = [i for i in names if i in self._frames]
            frames = [self._frames[i] for i in shown]
        labels = [names[i] for i in shown] if self.labels else None
        grid = compose(frames, *self.size, labels)
        frame = av.VideoFrame.from_ndarray(grid, format="rgb24")
        frame.pts = index
        frame.time_base = fractions.Fraction(1) / fractions.Fraction(self.fps)
        for packet in self._video.encode(frame):
            self._container.mux(packet)
        self.frames_written += 1

    def _write_audio(self, due: int) -> None:
        import av

        n = due - self._audio_written
        if n <= 0:
            return
        with self._lock:
            present = {p["id"] for p in self.peer.peers}
            for gone in set(self._audio) - present:
                del self._audio[gone]
            parts = [a.take(n) for a in self._audio.values()]
        mixed = np.zeros((n, 2), dtype=np.int32)
        for part in parts:
            mixed += part
        samples = np.clip(mixed, -32768, 32767).astype(np.int16)
        chunk = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="stereo")
        chunk.sample_rate = AUDIO_RATE
        chunk.pts = self._audio_written
        chunk.time_base = fractions.Fraction(1, AUDIO_RATE)
        self._audio_written = due
        self._fifo.write(chunk)
        self._drain_audio(final=False)

    def _drain_audio(self, *, final: bool) -> None:
        size = self._audio_stream.codec_context.frame_size or 960
        while self._fifo.samples >= size or (final and self._fifo.samples > 0):
            frame = self._fifo.read(min(size, self._fifo.samples))
            if frame is None:
                break
            for packet in self._audio_stream.encode(frame):
                self._container.mux(packet)

    def _finish(self) -> None:
        try:
            self._drain_audio(final=True)
            for stream in (s for s in (self._video, self._audio_stream) if s is not None):
                for packet in stream.encode(None):
                    self._container.mux(packet)
        except Exception as problem:
            if self.error is None:
                self.error = problem
                log.exception("ipymeet: the recording to %s could not be finished", self.path)
        finally:
            self._container.close()

    # -- the end ----------------------------------------------------------------------------------

    @property
    def duration(self) -> float:
        """Seconds recorded so far: of video, to the end of the last frame written; of sound
        alone, to the last sample written."""
        if self._video is None:
            return self._audio_written / AUDIO_RATE
        return (self._index + 1) / self.fps

    def stop(self, timeout: float = 10.0) -> Path:
        """Leave the room and finish the file; returns its path. Idempotent. Raises what stopped
        the writer, if anything did."""
        self._stop.set()
        # The writer first: its last frame is of the members still in the call.
        if self._thread.is_alive():
            self._thread.join(timeout)
        self.peer.close()
        if self.error is not None:
            raise RuntimeError(f"the recording to {self.path} failed: {self.error}") from self.error
        return self.path
