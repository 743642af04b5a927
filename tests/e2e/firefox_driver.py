"""Debian's firefox-esr in the tests, through tests/e2e/firefox/driver.mjs (puppeteer-core over
WebDriver BiDi; Playwright and Selenium cannot drive a stock Firefox, and nothing may download one).

A :class:`FirefoxPage` answers ``evaluate(js, arg)`` and ``wait_for_function(js, arg=...,
timeout=ms)`` as a Playwright page does, so the helpers of tests/e2e/conftest.py (``wait_state``,
``wait_remote_video``, ``model``) take either browser's pages.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

FIREFOX = os.environ.get("IPYMEET_FIREFOX", "/usr/bin/firefox-esr")
DRIVER = Path(__file__).with_name("firefox") / "driver.mjs"
PUPPETEER = DRIVER.parent / "node_modules" / "puppeteer-core"

#: Fake camera and microphone, granted without asking (Chromium's --use-fake-* flags).
FAKE_MEDIA = {"media.navigator.streams.fake": True, "media.navigator.permission.disabled": True}
#: No prompt, and no device either: this machine has none, so the page joins receive-only.
NO_MEDIA = {"media.navigator.permission.disabled": True}
#: Every Firefox: videos with sound play without a click (--autoplay-policy=no-user-gesture-
#: required), and nothing phones home.
COMMON = {
    "media.autoplay.default": 0,
    "media.autoplay.blocking_policy": 0,
    "app.update.enabled": False,
    "browser.shell.checkDefaultBrowser": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "toolkit.telemetry.reportingpolicy.firstRun": False,
}

#: Seconds to wait for Firefox to start, and for an answer beyond a wait's own time-out.
START_TIMEOUT = 60
SLACK = 15


def missing() -> str | None:
    """What keeps Firefox from running here, with the fix; None when nothing does."""
    if not Path(FIREFOX).exists():
        return f"Firefox not found at {FIREFOX}: run `bash .ci/setup --browser`"
    if not PUPPETEER.exists():
        return f"puppeteer-core is not installed in {DRIVER.parent}: run `bash .ci/setup --browser`"
    if shutil.which("node") is None:
        return "node is not on PATH: run `bash .ci/setup`"
    return None


class Firefox:
    """One headless firefox-esr; ``camera=False`` leaves it without camera or microphone."""

    def __init__(self, log: Path, *, camera: bool = True) -> None:
        prefs = {**COMMON, **(FAKE_MEDIA if camera else NO_MEDIA)}
        self.log = log
        self._log_file = log.open("w")
        self._process = subprocess.Popen(
            ["node", str(DRIVER), json.dumps({"executable": FIREFOX, "prefs": prefs})],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log_file,
            text=True,
        )
        self.pages: list[FirefoxPage] = []
        self._answers: queue.Queue[dict[str, Any]] = queue.Queue()
        self._last = 0
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, name="firefox-driver", daemon=True)
        self._reader.start()
        ready = self._next(START_TIMEOUT, "Firefox to start")
        self.version = str(ready.get("version"))

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            with contextlib.suppress(ValueError):  # not ours (a library's stray print)
                self._answers.put(json.loads(line))
        self._answers.put({"gone": True})

    def _next(self, timeout: float, what: str) -> dict[str, Any]:
        try:
            answer = self._answers.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no answer in {timeout:.0f} s waiting for {what}") from None
        if answer.get("gone"):
            raise RuntimeError(f"the Firefox driver ended; its log:\n{self.tail()}")
        return answer

    def tail(self, lines: int = 30) -> str:
        self._log_file.flush()
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def request(self, op: str, within: float = 30, **fields: Any) -> Any:
        """Send one request and wait ``within`` seconds for its answer (one at a time)."""
        with self._lock:
            self._last += 1
            ident = self._last
            assert self._process.stdin is not None
            self._process.stdin.write(json.dumps({"id": ident, "op": op, **fields}) + "\n")
            self._process.stdin.flush()
            while True:
                answer = self._next(within, op)
                if answer.get("id") == ident:
                    break
        if "error" in answer:
            raise RuntimeError(f"Firefox {op}: {answer['error']}")
        return answer.get("result")

    def new_page(self, url: str | None = None) -> FirefoxPage:
        """A page in a window of its own (a background tab all but stops rendering)."""
        page = FirefoxPage(self, int(self.request("open", url=url)))
        self.pages.append(page)
        return page

    def close(self) -> None:
        """Close the browser (the driver closes it at the end of its input)."""
        if self._process.stdin is not None:
            with contextlib.suppress(OSError):
                self._process.stdin.close()
        try:
            self._process.wait(20)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(5)
        self._reader.join(5)
        if self._process.stdout is not None:
            self._process.stdout.close()
        self._log_file.close()


class FirefoxPage:
    """A page of a :class:`Firefox`, with the part of Playwright's ``Page`` the helpers use."""

    def __init__(self, browser: Firefox, ident: int) -> None:
        self.browser = browser
        self.ident = ident

    def evaluate(self, js: str, arg: Any = None) -> Any:
        """``js`` is a function's source, called with ``arg`` (JSON) in the page."""
        return self.browser.request("evaluate", page=self.ident, js=js, arg=arg)

    def wait_for_function(self, js: str, arg: Any = None, timeout: float = 30_000) -> Any:
        """Wait until ``js(arg)`` is truthy (``timeout`` in ms, as Playwright's)."""
        return self.browser.request(
            "wait", timeout / 1000 + SLACK, page=self.ident, js=js, arg=arg, timeout=timeout
        )

    def screenshot(self, path: str) -> None:
        self.browser.request("screenshot", page=self.ident, path=path)

    def close(self) -> None:
        self.browser.request("close", page=self.ident)
