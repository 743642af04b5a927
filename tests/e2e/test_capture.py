"""``VideoRoom(video_size=, frame_rate=)`` in JupyterLab with real Chromium: the page's camera is
opened at that size and rate (its track's ``getSettings()``), and a change from Python during
the call is taken by the live track (``applyConstraints``): the same track, the call goes on.

Chromium's fake camera serves the size asked for and any rate up to its 20 fps, so the settings
are exact here; a real camera gives its nearest mode (the constraints are ``ideal``).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

import pytest

from ..support import Served, open_and_run, write_notebook
from .test_jupyter import run_in_kernel

pytestmark = [pytest.mark.browser, pytest.mark.jupyter]

#: The local camera track's [width, height, frameRate, id] (null before the camera is open).
CAMERA_JS = """() => {
  const v = document.querySelector('[data-testid=local-video]');
  const t = v && v.srcObject && v.srcObject.getVideoTracks()[0];
  if (!t) return null;
  const s = t.getSettings();
  return [s.width, s.height, Math.round(s.frameRate), t.id];
}"""

IN_CALL = "document.querySelector('.ipymeet-root')?.dataset.state === 'in_call'"


def wait_camera(page: Any, width: int, height: int, fps: int) -> str:
    """Wait until the local camera is ``width``x``height`` at ``fps`` in a call; its track id."""
    try:
        page.wait_for_function(
            f"([w, h, f]) => {{ const c = ({CAMERA_JS})(); "
            f"return c !== null && c[0] === w && c[1] === h && c[2] === f && {IN_CALL}; }}",
            arg=[width, height, fps],
            timeout=60_000,
        )
    except Exception as timeout:
        seen = page.evaluate(f"() => [({CAMERA_JS})(), {IN_CALL}]")
        raise AssertionError(f"camera, in call: {seen}") from timeout
    return str(page.evaluate(CAMERA_JS)[3])


def test_the_camera_follows_video_size_and_frame_rate_set_from_python_in_a_call(
    lab: Served, new_page: Callable[..., Any]
) -> None:
    room = f"cap-{secrets.token_hex(3)}"
    write_notebook(
        lab.root / f"{room}.ipynb",
        [
            "from ipymeet import KernelPeer, VideoRoom\n"
            f"room = VideoRoom({room!r}, name='Ada', route='direct', video_size=(320, 240), "
            "frame_rate=15)\nroom",
            f"room.join()\nbot = KernelPeer({room!r}, name='other', sends_video=False)\nbot.join()",
        ],
    )
    page = new_page()
    open_and_run(page, lab, f"{room}.ipynb")
    track = wait_camera(page, 320, 240, 15)
    run_in_kernel(page, "room.video_size = (640, 480)\nroom.frame_rate = 10")
    assert wait_camera(page, 640, 480, 10) == track  # the live track took it: no new camera
    page.wait_for_function(IN_CALL)
    run_in_kernel(page, "bot.close()")
