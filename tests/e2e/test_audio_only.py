"""Sound alone, with real Chromium: a page with a microphone and no camera (Chromium's fake one,
which beeps), a kernel peer that processes its audio only, and recordings of the sound alone
(``.wav``, ``.ogg``) that PyAV reads back."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from ipymeet import KernelPeer
from ipymeet.server import SignallerThread
from ipymeet.widget.record import Recorder

from ..support import wait_until

pytestmark = pytest.mark.browser

#: The page's machine has a microphone and no camera: getUserMedia gives the sound alone.
NO_CAMERA_JS = """(() => {
  const original = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  navigator.mediaDevices.getUserMedia = (c) =>
    original({ audio: (c && c.audio) || true, video: false });
})();"""
#: Loud enough to be the fake microphone's beep, not silence or noise.
BEEP = 2000


def test_a_kernel_peer_processes_the_sound_of_a_page_without_a_camera(
    server: SignallerThread, new_page: Callable[..., Any]
) -> None:
    room = f"ears-{secrets.token_hex(3)}"
    page = new_page()
    page.add_init_script(NO_CAMERA_JS)
    page.goto(f"{server.url}/?room={room}&name=Ann&autojoin=1")
    lock = threading.Lock()
    heard: list[np.ndarray[Any, Any]] = []
    bot = KernelPeer(room, name="ears", signaling_url=server.url)

    @bot.on_audio
    def listen(samples: Any, sender: Any) -> None:
        assert sender.name == "Ann"
        with lock:
            heard.append(samples)

    try:
        bot.join()
        bot.wait_for(lambda p: sum(len(s) for s in heard) >= 48_000 * 3, timeout=30)
        with lock:
            sound = np.concatenate(heard)
        assert sound.dtype == np.int16
        assert sound.ndim == 2
        assert int(np.abs(sound).max()) > BEEP  # the fake microphone's beep, not silence
        assert bot.counters["frames_received"] == 0  # no video came, none was asked for
        assert bot.counters["audio_processed"] > 0
    finally:
        bot.close()


def test_the_sound_alone_is_recorded_as_wav_and_ogg_and_plays_back(
    server: SignallerThread, new_page: Callable[..., Any], tmp_path: Path
) -> None:
    room = f"tape-{secrets.token_hex(3)}"
    page = new_page()
    page.add_init_script(NO_CAMERA_JS)
    page.goto(f"{server.url}/?room={room}&name=Ann&autojoin=1")
    recorders = [
        Recorder(room, tmp_path / name, signaling_url=server.url)
        for name in ("call.wav", "call.ogg")
    ]
    try:
        for recorder in recorders:
            recorder.peer.wait_for(lambda p: p.counters["audio_processed"] > 10, timeout=30)
        started = [r.duration for r in recorders]
        for recorder, since in zip(recorders, started, strict=True):
            wait_until(lambda r=recorder, s=since: r.duration >= s + 4, 30, "4 s of sound")
    finally:
        paths = [recorder.stop() for recorder in recorders]
    for path, recorder in zip(paths, recorders, strict=True):
        assert recorder.frames_written == 0
        with av.open(str(path)) as container:
            assert [s.type for s in container.streams] == ["audio"]
            frames = list(container.decode(audio=0))
        samples = np.concatenate([f.to_ndarray().reshape(-1) for f in frames])
        seconds = sum(f.samples for f in frames) / frames[0].sample_rate
        assert seconds == pytest.approx(recorder.duration, abs=0.5)
        assert seconds >= 4
        peak = float(np.abs(samples).max())
        loud = BEEP / 32768 if samples.dtype.kind == "f" else BEEP  # Opus decodes to floats
        assert peak > loud, f"{path.name}: only silence (peak {peak})"
