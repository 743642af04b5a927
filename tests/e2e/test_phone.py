"""A phone in real Chromium: the standalone page at 390 by 844 with touch, in a call of three
(every control inside the screen, uncovered, unclipped and working by tap, the chat too, both
others' tiles in view), and Switch camera on a phone with two cameras (Chromium's fake devices,
``device-count=2``): one tap moves to the other camera, the ``camera`` trait follows and the
others keep receiving video."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from ipymeet.server import SignallerThread

from .conftest import ARTIFACTS, model, tile_frames, wait_model, wait_remote_video, wait_state
from .test_keyboard import TRACKS_JS

pytestmark = pytest.mark.browser

#: A phone as Playwright emulates one (iPhone 12-14 size); ``is_mobile`` honours the page's
#: ``<meta name=viewport>``, ``has_touch`` gives touch events and a coarse pointer.
PHONE = {"viewport": {"width": 390, "height": 844}, "has_touch": True, "is_mobile": True}

#: Each visible control of the widget (buttons, fields, lists, the status line) that is outside
#: the screen's width, smaller than a fingertip's target, covered by something else at its centre
#: once scrolled into view (the page may scroll down, never sideways), or whose text is cut off;
#: and a page wider than the screen.
LAYOUT_JS = """() => {
  const problems = [];
  const width = window.innerWidth;
  const name = (el) => el.dataset.testid || el.getAttribute('aria-label') || el.className;
  const controls = [...document.querySelectorAll(
    '.ipymeet-root button, .ipymeet-root input, .ipymeet-root select, [data-testid=status]',
  )].filter((el) => el.getClientRects().length > 0);
  for (const el of controls) {
    el.scrollIntoView({ block: 'center', inline: 'nearest' });
    const box = el.getBoundingClientRect();
    if (box.left < -0.5 || box.right > width + 0.5) {
      problems.push(`${name(el)} outside: ${box.left}..${box.right}`);
    }
    const hit = document.elementFromPoint(box.left + box.width / 2, box.top + box.height / 2);
    if (hit === null || !(el === hit || el.contains(hit))) {
      problems.push(`${name(el)} covered by ${hit && (hit.dataset.testid || hit.className)}`);
    }
    // WCAG 2.2's minimum target size (2.5.8): 24 by 24 CSS pixels for what a finger taps.
    if (el.dataset.testid !== 'status' && (box.width < 24 || box.height < 24)) {
      problems.push(`${name(el)} too small to tap: ${box.width}x${box.height}`);
    }
    const text = el.tagName === 'BUTTON' || el.dataset.testid === 'status';
    if (text && el.scrollWidth > el.clientWidth + 1) {
      problems.push(`${name(el)} clipped: ${el.scrollWidth} > ${el.clientWidth}`);
    }
  }
  for (const el of document.querySelectorAll('.ipymeet-tile-name-text')) {
    if (el.scrollWidth > el.clientWidth + 1) problems.push(`tile name ${el.textContent} clipped`);
  }
  const page = document.documentElement.scrollWidth;
  if (page > width) problems.push(`the page scrolls sideways: ${page} > ${width}`);
  window.scrollTo(0, 0);
  return problems;
}"""

#: The tiles' names and whether each is inside the screen's width and has a size.
TILES_JS = """() => [...document.querySelectorAll('.ipymeet-tile')].map((t) => {
  const box = t.getBoundingClientRect();
  return [t.querySelector('.ipymeet-tile-name-text')?.textContent ?? '',
          box.width > 40 && box.height > 40 && box.left >= -0.5 && box.right <= innerWidth + 0.5];
})"""


def layout_problems(page: Any) -> list[str]:
    return list(page.evaluate(LAYOUT_JS))


def test_a_phone_in_a_call_of_three(server: SignallerThread, new_page: Callable[..., Any]) -> None:
    """Ada on a phone, Grace and Alan on desktops: on the phone every control is reachable and
    whole, both others' tiles show, and mute, camera and the chat work by tap."""
    url = f"{server.url}/?room=phone&autojoin=1&name="
    phone = new_page(url + "Ada", **PHONE)
    others = [new_page(url + name) for name in ("Grace", "Alan")]
    for page in [phone, *others]:
        wait_remote_video(page, count=2, timeout=60)
        wait_state(page, "in_call")
    assert phone.evaluate("() => matchMedia('(pointer: coarse)').matches")
    assert phone.evaluate("() => innerWidth") == 390

    ARTIFACTS.mkdir(exist_ok=True)
    phone.screenshot(path=str(ARTIFACTS / "phone-call.png"))
    phone.screenshot(path=str(ARTIFACTS / "phone-call-full.png"), full_page=True)
    assert layout_problems(phone) == []
    tiles = dict(phone.evaluate(TILES_JS))
    assert tiles.get("Grace") is True, tiles
    assert tiles.get("Alan") is True, tiles
    assert tile_frames(phone, "Grace") is not None
    assert tile_frames(phone, "Alan") is not None
    # One camera here, and a desktop: no Switch camera.
    assert phone.get_by_test_id("switch-camera").is_hidden()

    phone.get_by_test_id("mic").tap()
    wait_model(phone, "audio", False)
    assert phone.evaluate(TRACKS_JS, "audio") == [False]
    phone.get_by_test_id("cam").tap()
    wait_model(phone, "video", False)
    assert phone.evaluate(TRACKS_JS, "video") == [False]
    # The others see it (what their pages report of the members: audio / video flags).
    others[0].wait_for_function(
        """() => window.ipymeet.model.get('_browser_peers').some(
             (p) => p.name === 'Ada' && p.audio === false && p.video === false)"""
    )
    assert layout_problems(phone) == []  # "Mic off" / "Camera off" fit as well
    phone.get_by_test_id("mic").tap()
    phone.get_by_test_id("cam").tap()
    wait_model(phone, "audio", True)
    wait_model(phone, "video", True)

    phone.get_by_test_id("chat-input").tap()
    assert phone.evaluate("() => document.activeElement.dataset.testid") == "chat-input"
    phone.keyboard.type("hello from a phone")
    phone.get_by_test_id("chat-send").tap()
    for page in others:
        page.get_by_test_id("chat-message").filter(has_text="hello from a phone").wait_for()
    phone.get_by_test_id("chat-message").filter(has_text="hello from a phone").wait_for()
    others[0].get_by_test_id("chat-input").fill("seen on a desktop")
    others[0].get_by_test_id("chat-send").click()
    phone.get_by_test_id("chat-message").filter(has_text="seen on a desktop").wait_for()
    phone.screenshot(path=str(ARTIFACTS / "phone-chat.png"), full_page=True)
    assert layout_problems(phone) == []


#: The device the page's live camera track comes from.
LIVE_CAMERA_JS = """() => window.ipymeet.call.localStream
  ?.getVideoTracks()[0]?.getSettings().deviceId ?? null"""


def test_switch_camera_on_a_phone_with_two_cameras(
    server: SignallerThread, new_page: Callable[..., Any], launch: Callable[..., Any]
) -> None:
    """A phone with three cameras (Chromium's fake ones say no facingMode: the touch rule shows
    the button): each tap moves to the next camera, round the list, ``camera`` follows, and
    Grace keeps receiving frames; on Grace's desktop there is no button."""
    phone = launch(
        drop=("--use-fake-device-for-media-stream",),
        add=("--use-fake-device-for-media-stream=device-count=3",),
        **PHONE,
    )
    url = f"{server.url}/?room=flip&autojoin=1&name="
    phone.goto(url + "Ada")
    grace = new_page(url + "Grace")
    for page in (phone, grace):
        wait_remote_video(page, timeout=60)
        wait_state(page, "in_call")
    phone.wait_for_function("() => (window.ipymeet.model.get('cameras') ?? []).length === 3")
    cameras = [c["id"] for c in model(phone, "cameras")]
    first = phone.evaluate(LIVE_CAMERA_JS)
    assert first in cameras
    assert model(phone, "camera") == ""
    assert grace.get_by_test_id("switch-camera").is_hidden()
    button = phone.get_by_test_id("switch-camera")
    assert button.is_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    phone.screenshot(path=str(ARTIFACTS / "phone-switch-camera.png"))
    assert layout_problems(phone) == []

    # Round the list and back to the first. Chromium's fake camera 1 delivers Y16 (a depth
    # format, media/capture/video/fake_video_capture_device_factory.cc): the others received no
    # frames from it here, so the call's video is checked on cameras 0 and 2 (I420, MJPEG).
    labels = {c["id"]: c["label"] for c in model(phone, "cameras")}
    start = cameras.index(first)
    for step in (1, 2, 3):
        want = cameras[(start + step) % len(cameras)]
        button.tap()
        wait_model(phone, "camera", want)
        phone.wait_for_function(f"(want) => ({LIVE_CAMERA_JS})() === want", arg=want)
        if labels[want] != "fake_device_1":
            # The call goes on: Grace's video of Ada advances on the new camera's frames (the
            # old track is stopped once replaced, so a sender left on it would freeze).
            wait_remote_video(grace)
        wait_state(phone, "in_call")
