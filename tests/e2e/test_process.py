"""``room.process(fn)`` and ``room.record(path)`` in JupyterLab with real Chromium: the widget's own
camera inverted in Python comes back as a tile of its own, labelled "You (processed)", whose
pixels are the inverse of the local preview's; ``process(None)`` removes it; a function that
raises is said in the view's error banner; a recording of the widget's call holds its camera and
microphone (PyAV reads it back).

The media between the page and the kernel's peers goes over this machine's own interface
(aiortc gathers no 127.0.0.1 candidates), as in test_kernel_peer.py.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from typing import Any

import av
import numpy as np
import pytest

from ..support import Served, open_and_run, wait_for_file, write_notebook
from .conftest import ARTIFACTS
from .test_jupyter import run_in_kernel
from .test_kernel_peer import grab

pytestmark = [pytest.mark.browser, pytest.mark.jupyter]

PROCESSED_VIDEO = ".ipymeet-tile[data-processed='true'] video"

PLAYING_JS = """(selector) => {
  const v = document.querySelector(selector);
  return v !== null && v.videoWidth > 0 && v.readyState >= 2 && !v.paused;
}"""


def test_the_widget_shows_its_camera_processed_in_python_and_process_none_removes_it(
    lab: Served, new_page: Callable[..., Any]
) -> None:
    room = f"proc-{secrets.token_hex(3)}"
    out = lab.root / f"{room}.json"
    write_notebook(
        lab.root / f"{room}.ipynb",
        [
            "import json, pathlib\nfrom ipymeet import VideoRoom\n"
            f"room = VideoRoom({room!r}, name='Ada', route='direct')\nroom",
            "room.join()",
            "room.process(lambda frame: 255 - frame)",
        ],
    )
    page = new_page()
    open_and_run(page, lab, f"{room}.ipynb")
    page.wait_for_function(PLAYING_JS, arg=PROCESSED_VIDEO, timeout=60_000)
    tile = page.locator(".ipymeet-tile[data-processed='true']")
    assert tile.locator(".ipymeet-tile-name-text").text_content() == "You (processed)"
    # The processed frames advance (live, not one frame).
    before = page.evaluate(
        "(s) => document.querySelector(s).getVideoPlaybackQuality().totalVideoFrames",
        PROCESSED_VIDEO,
    )
    page.wait_for_function(
        "([s, n]) => document.querySelector(s).getVideoPlaybackQuality().totalVideoFrames > n + 10",
        arg=[PROCESSED_VIDEO, before],
    )
    local, processed = grab(page, "[data-testid=local-video]"), grab(page, PROCESSED_VIDEO)
    # As in test_kernel_peer.py: the green background dominates both, the figure moves.
    assert np.median(np.abs(local - (255 - processed))) < 20
    assert np.median(np.abs(local - processed)) > 200
    assert local[:, :, 1].mean() > 100  # the fake camera's green
    assert processed[:, :, 0].mean() > 200  # its inverse, magenta
    ARTIFACTS.mkdir(exist_ok=True)
    tile.scroll_into_view_if_needed()
    page.locator(".ipymeet-stage-box").screenshot(path=str(ARTIFACTS / "process-jupyterlab.png"))
    run_in_kernel(
        page,
        f"pathlib.Path({str(out)!r}).write_text(json.dumps({{'processed_by': "
        "room._processed_by, 'peers': room.peers, 'errors': room._processor.errors}))",
    )
    seen = json.loads(wait_for_file(out))
    assert seen["errors"] == 0, seen
    assert [p["name"] for p in seen["peers"]] == ["Ada (processed)"], seen
    assert seen["peers"][0]["id"] == seen["processed_by"], seen
    processor = seen["processed_by"]

    run_in_kernel(page, "room.process(None)")
    page.wait_for_function(
        "(id) => document.querySelector(`.ipymeet-tile[data-peer-id='${id}']`) === null",
        arg=processor,
    )
    assert page.locator(".ipymeet-tile").count() == 0

    # A function that raises: the view's error banner says which and what, the call goes on.
    run_in_kernel(
        page,
        "def broken(frame):\n    raise ValueError('no model loaded')\nroom.process(broken)",
    )
    banner = page.get_by_text("room.process: broken failed on a frame")
    banner.wait_for(timeout=60_000)
    assert "ValueError: no model loaded" in banner.text_content()
    page.screenshot(path=str(ARTIFACTS / "process-error-jupyterlab.png"))
    out.unlink()
    run_in_kernel(
        page,
        "room._processor.peer.wait_for(lambda p: p.counters['callback_errors'] > 5)\n"
        f"pathlib.Path({str(out)!r}).write_text(json.dumps({{'state': room.state, "
        "'errors': room._processor.errors}))\nroom.process(None)",
    )
    after = json.loads(wait_for_file(out))
    assert after["state"] == "in_call", after
    assert after["errors"] > 5, after


def test_a_recording_of_the_widgets_call_holds_its_camera_and_microphone(
    lab: Served, new_page: Callable[..., Any]
) -> None:
    """About 5 s of the widget's call (Chromium's fake camera and microphone), recorded from
    the kernel: PyAV reads about 5 s of video and audio, the picture is the fake camera's green
    and the audio is not silence (its beep)."""
    room = f"rec-{secrets.token_hex(3)}"
    done = lab.root / f"{room}.json"
    path = lab.root / f"{room}.webm"
    write_notebook(
        lab.root / f"{room}.ipynb",
        [
            "import json, pathlib, time\nfrom ipymeet import VideoRoom\n"
            f"room = VideoRoom({room!r}, name='Ada', route='direct')\nroom",
            "room.join()",
        ],
    )
    page = new_page()
    open_and_run(page, lab, f"{room}.ipynb")
    page.wait_for_function(
        "() => document.querySelector('[data-testid=local-video]')?.videoWidth > 0"
    )
    run_in_kernel(
        page,
        f"room.record({str(path)!r})\n"
        "peer = room._recorder.peer\n"
        "peer.wait_for(lambda p: p.counters['frames_processed'] > 10 "
        "and p.counters['audio_processed'] > 10, timeout=30)\n"
        "start = room._recorder.duration\n"
        "while room._recorder.duration < start + 5:\n    time.sleep(0.05)\n"
        "recorder = room._recorder\n"
        "room.stop_recording()\n"
        f"pathlib.Path({str(done)!r}).write_text(json.dumps({{'recorded': recorder.duration, "
        "'written': recorder.frames_written, 'skipped': recorder.frames_skipped}))",
    )
    figures = json.loads(wait_for_file(done))
    recorded = figures["recorded"]
    assert recorded >= 5
    with av.open(str(path)) as container:
        duration = container.duration / 1e6
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    with av.open(str(path)) as container:
        audio = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
    assert duration == pytest.approx(recorded, abs=0.5)
    # A frame the writer had no time for is skipped and counted (test_record.py).
    assert len(frames) == figures["written"]
    assert figures["written"] + figures["skipped"] == round(recorded * 15)
    assert figures["written"] >= 0.5 * recorded * 15, figures
    assert len(audio) / 2 / 48_000 == pytest.approx(recorded, abs=0.5)
    last = frames[-1].astype(float)
    middle = last[135:405, 240:720]
    assert middle[:, :, 1].mean() > 100  # the fake camera's green, filling the one cell
    assert middle[:, :, 1].mean() > middle[:, :, 0].mean() + 40
    tail = np.abs(audio[len(audio) // 2 :].astype(float))
    assert tail.max() > 0.05 * (32768 if audio.dtype == np.int16 else 1.0)  # the fake beep
