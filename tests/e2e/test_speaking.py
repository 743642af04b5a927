"""Who is speaking: one page's fake microphone plays a tone, the other's is silent; the tone's tile
is marked on the silent page and in the kernel's ``peers`` / ``speaking``, the silent one never,
and a muted one not.

Each page runs in a Chromium of its own, since the fake microphone's file is a flag of the browser
(``--use-file-for-fake-audio-capture``); Chromium's default fake microphone beeps, so the silent
page plays a silent file.
"""

from __future__ import annotations

import math
import secrets
import struct
import time
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ipymeet import KernelPeer
from ipymeet.server import SignallerThread

from ..support import Served, open_and_run, wait_for_file, write_notebook
from .conftest import ARTIFACTS, wait_remote_video
from .test_jupyter import LOGGER, wait_kernel

pytestmark = [pytest.mark.browser, pytest.mark.jupyter]

RATE = 48_000

# Remember whether any element ``selector`` names was ever marked speaking, from now on.
WATCH_JS = """(selector) => {
  window.__everSpoke = false;
  const check = () => {
    if (document.querySelector(selector + "[data-speaking=true]")) window.__everSpoke = true;
  };
  new MutationObserver(check).observe(document.body, {
    subtree: true, attributes: true, attributeFilter: ["data-speaking"], childList: true,
  });
  check();
}"""


def write_wav(path: Path, amplitude: float, seconds: float = 4.0) -> Path:
    """A mono 16-bit WAV of a 440 Hz tone at ``amplitude`` (0-1 of full scale; 0: silence)."""
    frames = b"".join(
        struct.pack("<h", round(amplitude * 32767 * math.sin(2 * math.pi * 440 * i / RATE)))
        for i in range(int(RATE * seconds))
    )
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(frames)
    return path


def last(entries: list[list[Any]], name: str) -> Any:
    values = [value for who, trait, value in entries if who == "a" and trait == name]
    return values[-1] if values else None


def test_the_speaker_is_marked_on_the_other_page_and_in_the_kernel(
    lab: Served, launch: Callable[..., Any], tmp_path: Path
) -> None:
    """A widget in JupyterLab (silent microphone) and a standalone page (a tone): the tone's tile
    is marked on the widget's page, its own tile on its page, and the kernel's ``peers`` /
    ``speaking`` agree; muted, none of them; unmuted, the tile is marked within a second. The
    silent page is never marked, on either page."""
    tone = write_wav(tmp_path / "tone.wav", 0.5)
    silence = write_wav(tmp_path / "silence.wav", 0.0)
    log, invite = lab.root / "speak.jsonl", lab.root / "speak-invite.txt"
    write_notebook(
        lab.root / "speak.ipynb",
        [
            LOGGER.format(log=str(log)),
            "a = VideoRoom('speak', name='Ada')\nrecord('a', a, names=('peers', 'speaking'))\n"
            f"a.join()\npathlib.Path({str(invite)!r}).write_text(a.invite_url)",
            "a",
        ],
    )
    quiet = launch(add=(f"--use-file-for-fake-audio-capture={silence}",))
    open_and_run(quiet, lab, "speak.ipynb")
    loud = launch(add=(f"--use-file-for-fake-audio-capture={tone}",))
    loud.goto(f"{wait_for_file(invite)}&autojoin=1&name=Tone")
    wait_remote_video(quiet, timeout=60)
    wait_remote_video(loud, timeout=60)
    # The silent page is never marked: neither its own tile nor its tile on the tone's page.
    quiet.evaluate(WATCH_JS, ".ipymeet-self")
    loud.evaluate(WATCH_JS, ".ipymeet-tile")
    speaker = quiet.locator(".ipymeet-tile").get_attribute("data-peer-id")

    # The tone's page: marked on the silent page, on its own tile, and in the kernel.
    quiet.wait_for_selector(f".ipymeet-tile[data-peer-id='{speaker}'][data-speaking=true]")
    loud.wait_for_selector(".ipymeet-self[data-speaking=true]")
    save_screenshot(quiet.locator(f".ipymeet-tile[data-peer-id='{speaker}']"), "speaking-tile")
    save_screenshot(loud.locator(".ipymeet-stage"), "speaking-self")
    wait_kernel(
        log,
        lambda e: (
            last(e, "speaking") == [speaker] and [p["speaking"] for p in last(e, "peers")] == [True]
        ),
    )

    # Muted: not marked anywhere, and the kernel agrees.
    loud.get_by_test_id("mic").click()
    quiet.wait_for_selector(f".ipymeet-tile[data-peer-id='{speaker}'][data-speaking=false]")
    loud.wait_for_selector(".ipymeet-self[data-speaking=false]")
    wait_kernel(
        log,
        lambda e: (
            last(e, "speaking") == []
            and [(p["audio"], p["speaking"]) for p in last(e, "peers")] == [(False, False)]
        ),
    )

    # Unmuted: marked on the other page within a second.
    started = time.monotonic()
    loud.get_by_test_id("mic").click()
    quiet.wait_for_selector(
        f".ipymeet-tile[data-peer-id='{speaker}'][data-speaking=true]", timeout=5000
    )
    took = time.monotonic() - started
    print(f"marked {took:.2f} s after unmuting")
    assert took < 1.0, f"the speaker was marked {took:.2f} s after unmuting"
    wait_kernel(log, lambda e: last(e, "speaking") == [speaker])

    assert quiet.evaluate("() => window.__everSpoke") is False, "the silent page's own tile"
    assert loud.evaluate("() => window.__everSpoke") is False, "the silent page's tile"


def test_a_kernel_peer_that_listens_knows_who_is_speaking(
    server: SignallerThread,
    launch: Callable[..., Any],
    make_peer: Callable[..., KernelPeer],
    tmp_path: Path,
) -> None:
    """A kernel peer reads the sound (an ``on_audio``): its ``peers`` / ``speaking`` mark the
    tone's page, never the silent one, and not the tone's once muted."""
    room = f"speak-{secrets.token_hex(3)}"
    wavs = {"Tone": write_wav(tmp_path / "tone.wav", 0.5), "Hush": write_wav(tmp_path / "s.wav", 0)}
    pages = {}
    for name, path in wavs.items():
        pages[name] = launch(add=(f"--use-file-for-fake-audio-capture={path}",))
        pages[name].goto(f"{server.url}/?room={room}&name={name}&autojoin=1")
    bot = make_peer(room, name="ears", signaling_url=server.url)
    bot.on_audio(lambda samples, sender: None)
    heard: set[str] = set()

    def speaking_is(names: set[str]) -> Callable[[KernelPeer], bool]:
        def check(peer: KernelPeer) -> bool:
            now = {p["name"] for p in peer.peers if p["speaking"]}
            heard.update(now)
            ids = {p["id"] for p in peer.peers if p["name"] in names}
            return len(peer.peers) == 2 and now == names and set(peer.speaking) == ids

        return check

    bot.join()
    bot.wait_for(speaking_is({"Tone"}), timeout=60)
    pages["Tone"].get_by_test_id("mic").click()
    bot.wait_for(speaking_is(set()), timeout=10)
    assert [p["speaking"] for p in bot.peers if not p["audio"]] == [False]
    pages["Tone"].get_by_test_id("mic").click()
    bot.wait_for(speaking_is({"Tone"}), timeout=10)
    assert heard == {"Tone"}, "the silent page was marked speaking"


def save_screenshot(element: Any, name: str) -> None:
    """Keep a picture of ``element`` (a locator) for people to look at (tests/artifacts/)."""
    ARTIFACTS.mkdir(exist_ok=True)
    element.screenshot(path=str(ARTIFACTS / f"{name}.png"))
