"""Recording a call through a kernel peer (widget/record.py), with real aiortc and PyAV: two kernel
peers publish known pictures, a Recorder joins, and the file it writes is read back with PyAV
(duration, frames, what is in them)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from ipymeet import KernelPeer
from ipymeet.widget.record import Recorder, compose, grid_shape, label

from ..support import HIDE_AIORTC, MakeSignaller, wait_until
from .test_kernel_peer import PATTERN, peer_threads

#: What B sends: the inverse of A's pattern.
INVERSE = 255 - PATTERN


def read_back(path: Path) -> dict[str, Any]:
    """Duration, streams, decoded video frames (RGB arrays) and audio samples of ``path``."""
    with av.open(str(path)) as container:
        duration = None if container.duration is None else container.duration / 1e6
        kinds = [s.type for s in container.streams]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    with av.open(str(path)) as container:
        audio = sum(f.samples for f in container.decode(audio=0))
    return {"duration": duration, "kinds": kinds, "frames": frames, "audio_samples": audio}


def cell_colour(frame: Any, x: float, y: float) -> Any:
    """The mean colour of a 9x9 patch at (x, y), fractions of the frame's width and height."""
    h, w = frame.shape[:2]
    cx, cy = int(x * w), int(y * h)
    return frame[cy - 4 : cy + 5, cx - 4 : cx + 5].reshape(-1, 3).mean(0)


@pytest.mark.parametrize("suffix", [".webm", ".mp4"])
def test_a_five_second_call_is_recorded_as_a_grid_that_plays(
    make_signaller: MakeSignaller, tmp_path: Path, suffix: str
) -> None:
    """A sends a known pattern, B its inverse; a recording of about 5 s holds about 5 s of video
    (15 frames a second) and of audio, each frame a grid of the two (A's pattern on one side, B's
    inverse on the other, in the order they were met), and the recorder leaves cleanly."""
    server = make_signaller(max_peers=4)
    room = "rec-grid"
    a = KernelPeer(room, name="Ada", signaling_url=server.url)
    b = KernelPeer(room, name="Bob", signaling_url=server.url)
    a.publish(lambda: PATTERN)
    b.publish(lambda: INVERSE)
    path = tmp_path / f"call{suffix}"
    recorder: Recorder | None = None
    try:
        a.join()
        a.wait_for(lambda p: p.state == "waiting")
        b.join()
        b.wait_for(lambda p: p.state == "in_call")
        recorder = Recorder(room, path, signaling_url=server.url)
        peer = recorder.peer
        peer.wait_for(
            lambda p: (
                len(p.peers) == 2
                and all(x["connection"] == "connected" for x in p.peers)
                and p.counters["frames_processed"] > 10
            ),
            timeout=30,
        )
        assert sorted(p["name"] for p in a.peers) == ["Bob", "Recording"]
        assert [p["video"] for p in a.peers if p["name"] == "Recording"] == [False]
        started = recorder.duration
        wait_until(lambda: recorder.duration >= started + 5, 20, "5 s of recording")
        assert recorder.stop() == path
        recorded = recorder.duration
        written, skipped = recorder.frames_written, recorder.frames_skipped
    finally:
        if recorder is not None:
            recorder.stop()
        a.close()
        b.close()
    assert peer_threads() == []
    back = read_back(path)
    assert back["kinds"] == ["video", "audio"]
    assert back["duration"] == pytest.approx(recorded, abs=0.5)
    # 15 frames a second of timestamps; a frame the writer was too late for is skipped and
    # counted (the previous one shows longer), and most are written even on a busy machine.
    assert len(back["frames"]) == written
    assert written + skipped == round(recorded * 15)
    assert written >= 0.5 * recorded * 15
    assert back["audio_samples"] / 48_000 == pytest.approx(recorded, abs=0.5)
    last = back["frames"][-1]
    assert last.shape == (540, 960, 3)
    # Two cells side by side (480x540 each): PATTERN's top-left red in the one, INVERSE's
    # top-left (its inverse, cyan) in the other; which is left is who was met first.
    left, right = cell_colour(last, 0.15, 0.4), cell_colour(last, 0.65, 0.4)
    red, cyan = np.array(PATTERN[60, 80], float), np.array(INVERSE[60, 80], float)
    sides = sorted([left, right], key=lambda c: float(c[0]), reverse=True)
    assert np.abs(sides[0] - red).max() < 40, (left, right)
    assert np.abs(sides[1] - cyan).max() < 40, (left, right)
    # Each cell's name at its bottom left, white on the black bar under the picture.
    for x in (0, 480):
        assert last[485:525, x : x + 120].max() > 150, x
        assert last[485:525, x + 300 : x + 460].max() < 40, x  # nothing beyond the label


def test_only_the_members_named_are_recorded(make_signaller: MakeSignaller, tmp_path: Path) -> None:
    """``members=["Ada"]``: the grid has one cell, Ada's pattern, fitted (4:3 in 16:9, centred);
    Bob's video is read and discarded, never converted."""
    server = make_signaller(max_peers=4)
    room = "rec-only"
    a = KernelPeer(room, name="Ada", signaling_url=server.url)
    b = KernelPeer(room, name="Bob", signaling_url=server.url)
    a.publish(lambda: PATTERN)
    b.publish(lambda: INVERSE)
    path = tmp_path / "ada.mkv"
    recorder: Recorder | None = None
    try:
        a.join()
        b.join()
        b.wait_for(lambda p: p.state == "in_call")
        recorder = Recorder(room, path, members=["Ada"], labels=False, signaling_url=server.url)
        recorder.peer.wait_for(
            lambda p: (
                len(p.peers) == 2
                and all(x["connection"] == "connected" for x in p.peers)
                and p.counters["frames_processed"] > 10
            ),
            timeout=30,
        )
        wait_until(lambda: recorder.duration >= 2, 20, "2 s of recording")
        held = set(recorder._frames)
        recorder.stop()
    finally:
        if recorder is not None:
            recorder.stop()
        a.close()
        b.close()
    # Bob's frames never reached the callbacks: only Ada's were handed over.
    assert held == {a.id}
    last = read_back(path)["frames"][-1]
    # PATTERN's 320x240 fitted into 960x540: 720x540 from x = 120.
    assert cell_colour(last, 0.05, 0.5).max() < 30  # the black bar
    assert last[-60:, :120].max() < 30  # no name (labels=False)
    assert np.abs(cell_colour(last, 0.3, 0.25) - PATTERN[60, 80]).max() < 40
    assert np.abs(cell_colour(last, 0.7, 0.75) - PATTERN[180, 240]).max() < 40


def test_the_grid_and_its_cells() -> None:
    assert [grid_shape(n) for n in (1, 2, 3, 4, 5, 6, 7)] == [
        (1, 1),
        (2, 1),
        (2, 2),
        (2, 2),
        (3, 2),
        (3, 2),
        (3, 3),
    ]
    red = np.zeros((2, 4, 3), np.uint8)
    red[:, :, 0] = 255
    canvas = compose([red], 8, 8)  # 4x2 in 8x8: 8x4, rows 2-5
    assert canvas[:2].max() == 0
    assert canvas[6:].max() == 0
    assert (canvas[2:6, :, 0] == 255).all()
    assert compose([], 8, 4).shape == (4, 8, 3)


def test_each_cell_is_labelled_with_its_members_name_as_the_view_shows_it() -> None:
    grey = np.full((240, 320, 3), 128, np.uint8)
    plain = compose([grey, grey], 960, 540)
    named = compose([grey, grey], 960, 540, ["Ada", ""])
    changed = np.argwhere((plain != named).any(axis=2))
    # Only at each cell's bottom left: below y 475, within its first 120 columns.
    assert changed[:, 0].min() > 475
    assert {int(x) // 480 for x in changed[:, 1]} == {0, 1}
    assert all(int(x) % 480 < 120 for x in changed[:, 1])
    ada = named[485:525, :100]
    assert ada.max() > 230  # white text
    assert ada.min() < 60  # on a dark box
    # No name: "Guest", as the view says; another name, other pixels.
    guest = compose([grey, grey], 960, 540, ["Ada", "Guest"])
    assert np.array_equal(named, guest)
    bob = compose([grey, grey], 960, 540, ["Bob", ""])
    assert not np.array_equal(ada, bob[485:525, :100])
    # A name too long for its cell is cut to fit, with "…"; a cell too small has none.
    long = label("A name far too long for a cell a hundred pixels wide", 14, 100)
    assert long is not None
    assert long[1].shape[1] <= 100
    assert label("Ada", 14, 4) is None


def test_a_suffix_it_cannot_write_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="webm"):
        Recorder("rec-x", tmp_path / "call.avi", signaling_url="http://127.0.0.1:1")


WITHOUT_AIORTC = (
    HIDE_AIORTC
    + """
import json
from ipymeet import VideoRoom
room = VideoRoom("lab-42", name="Ada")
said = {}
for what, call in (("process", lambda: room.process(lambda f: f)),
                   ("record", lambda: room.record("call.webm"))):
    try:
        call()
    except ImportError as error:
        said[what] = [str(error), room.error, room.error_code.value]
        room.error = ""
print(json.dumps(said))
room.close()
"""
)


def test_without_aiortc_process_and_record_say_what_to_install(tmp_path: Path) -> None:
    """The message of the missing extra is raised and is the widget's ``error`` (its banner)."""
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_AIORTC],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    said = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(said) == {"process", "record"}
    for raised, error, code in said.values():
        assert 'pip install "ipymeet[python]"' in raised
        assert error == raised
        assert code == "internal_error"
    assert not (tmp_path / "call.webm").exists()
