"""The one place that uses python-engineio / python-socketio internals, behind one version check.

The signaller runs on one of two paths, chosen when it is created:

- **fast**, when :func:`active`: python-socketio's Engine.IO server is fastio.py's (a leaner
  WebSocket transport), and a relay is framed once and written to each member's WebSocket
  (:func:`frame_writer`). Both reach into internals that any release may change, so this path is
  taken only on the releases in :data:`CHECKED`, whose sources were read against fastio.py and
  this module; ``IPYMEET_FASTIO=0`` turns it off (the test suite runs on both paths).
- **stock**, on any other release: python-socketio and python-engineio as they come, through their
  public API and the few long-stable names guard.py lists. The same behaviour, limits included
  (tests/integration runs on this path too); slower per message (docs/performance.md).

Nothing else in the signaller touches a library internal: the checks that close malformed
connections and cap a slow reader's backlog (guard.py) hold on both paths.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import socketio

log = logging.getLogger("ipymeet.server")

#: The releases the fast path was checked on: lowest and highest, inclusive. A patch release may
#: still change an internal (python-socketio does not promise otherwise), so the range holds only
#: releases whose sources were compared with the overrides: 4.15.0 -> 4.15.1 and 5.18.0 -> 5.18.1
#: changed none of what fastio.py relies on. A newer release runs the stock path until its sources
#: are read and the range widened (tests/unit/test_fastio.py then pins the internals' shape).
CHECKED: dict[str, tuple[str, str]] = {
    "python-engineio": ("4.15.0", "4.15.1"),
    "python-socketio": ("5.18.0", "5.18.1"),
}

#: Set to "0" to run the stock path on a checked release too.
ENV = "IPYMEET_FASTIO"


def _release(text: str) -> tuple[int, ...] | None:
    """``"5.18.1"`` as ``(5, 18, 1)``; None for anything else (a pre-release, a local build)."""
    try:
        return tuple(int(part) for part in text.split("."))
    except ValueError:
        return None


def checks(installed: dict[str, str | None]) -> bool:
    """Whether every library in :data:`CHECKED` is installed at a release in its range."""
    for name, (lowest, highest) in CHECKED.items():
        release = _release(installed.get(name) or "")
        low, high = _release(lowest), _release(highest)
        if release is None or low is None or high is None or not low <= release <= high:
            return False
    return True


def installed() -> dict[str, str | None]:
    """The installed release of each library in :data:`CHECKED` (None: not installed)."""
    found: dict[str, str | None] = {}
    for name in CHECKED:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


@cache
def supported() -> bool:
    """Whether the installed releases are ones the fast path was checked on (logged once if not)."""
    releases = installed()
    if checks(releases):
        return True
    log.info(
        "ipymeet: python-engineio %s / python-socketio %s are not the releases its fast path was "
        "checked on (%s): using their own transport",
        releases["python-engineio"],
        releases["python-socketio"],
        ", ".join(f"{name} {low} to {high}" for name, (low, high) in CHECKED.items()),
    )
    return False


def active() -> bool:
    """Whether a signaller created now takes the fast path."""
    return os.environ.get(ENV, "1") != "0" and supported()


def server_class(fast: bool) -> type[socketio.AsyncServer]:
    """python-socketio's ``AsyncServer`` as it comes, or, on the fast path, one whose Engine.IO
    server is fastio.py's (through ``_engineio_server_class``, the hook python-socketio builds it
    from; tests/unit/test_fastio.py pins it)."""
    if not fast:
        stock: type[socketio.AsyncServer] = socketio.AsyncServer
        return stock
    return _fast_server_class()


@cache
def _fast_server_class() -> type[socketio.AsyncServer]:
    from . import fastio  # imports engineio internals: only on the releases checked

    class FastServer(socketio.AsyncServer):  # type: ignore[misc]
        def _engineio_server_class(self) -> type:
            return fastio.FastEngineServer

    return FastServer


def attach_guard(sio: socketio.AsyncServer, guard: Any) -> None:
    """Give fastio's Engine.IO server the guard's checks (its WebSocket reader bypasses the
    engineio code the guard wraps): the backlog cap, malformed packets, paced dispatch."""
    from . import fastio

    eio = sio.eio
    if isinstance(eio, fastio.FastEngineServer) and guard.installed:
        eio.guard = guard
        guard.websockets_guarded = True


def frame_writer(sio: socketio.AsyncServer) -> Callable[[str, bytes], bool]:
    """``write(eio_sid, frame)``: write an already framed message (fastio.ws_frame) to that
    Engine.IO socket if it is a fastio WebSocket that can take it now; False: send it the usual
    way. The relay then frames a message once for all of its recipients."""
    from . import fastio

    eio = sio.eio

    def write(eio_sid: str, frame: bytes) -> bool:
        socket = eio.sockets.get(eio_sid)  # engineio's own table (replaced on disconnect-all)
        return type(socket) is fastio.FastSocket and socket.write_frame(frame)

    return write


def message_framer() -> Callable[[str], bytes]:
    """``frame(text)``: the WebSocket frame carrying the Socket.IO packet ``text`` as an Engine.IO
    message, for :func:`frame_writer`."""
    from . import fastio

    ws_frame = fastio.ws_frame

    def frame(text: str) -> bytes:
        return ws_frame("4" + text)

    return frame
