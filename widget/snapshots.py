"""Snapshots: asking the browser for one frame, by one path, and waiting for it.

The kernel asks by custom message (``SnapshotRequest``) and names the one way back, ``via``: with
the kernel's signaller the frame comes in chunks through it (``expect_frame``), on the
signaller's thread (or, where another kernel hosts the shared signaller, forwarded by it to this
kernel's attach thread), so a cell that waits for it (``await room.snapshot()``, or a blocking
``room.snapshot_png()``) gets it while the kernel is busy running that cell; with a signaller
elsewhere it comes as one binary widget message, read between cells. A frame is up to 33 MB (4K
RGBA), so it crosses once: what arrives by the other path is ignored.
"""

from __future__ import annotations

import concurrent.futures
import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..server.core.frames import Frame
from .binding import KernelServer
from .messages import FrameError, FrameFormat, FrameMessage, FrameRoute, SnapshotRequest

log = logging.getLogger("ipymeet")


@dataclass(frozen=True)
class _Request:
    via: FrameRoute
    format: FrameFormat
    future: concurrent.futures.Future[Frame]


class Snapshots:
    """One widget's snapshot requests, keyed by an unguessable id.

    ``send`` sends a request to the browser; ``server`` is the kernel's signaller when the widget
    uses it (frames then come through it, from connections of ``client`` only), else None;
    ``state`` says the call's state, for the error when no frame comes.
    """

    def __init__(
        self,
        send: Callable[[SnapshotRequest], None],
        server: KernelServer | None,
        client: str,
        state: Callable[[], object],
    ) -> None:
        self._send = send
        self._server = server
        self._client = client
        self._state = state
        self._lock = threading.Lock()
        self._pending: dict[str, _Request] = {}

    @property
    def via(self) -> FrameRoute:
        """The path frames come back by."""
        return "comm" if self._server is None else "signaller"

    def request(
        self, peer: str | None, kind: FrameFormat, timeout: float
    ) -> concurrent.futures.Future[Frame]:
        """Ask for the current frame of ``peer``'s video (None: own camera); any thread.

        The future fails with ``TimeoutError`` after ``timeout`` seconds, with ``RuntimeError``
        when the browser says why it has none.
        """
        request_id = secrets.token_urlsafe(16)
        via = self.via
        future: concurrent.futures.Future[Frame]
        if self._server is not None:
            future = self._server.expect_frame(request_id, self._client)
        else:
            future = concurrent.futures.Future()
        with self._lock:
            self._pending[request_id] = _Request(via, kind, future)
        timer = threading.Timer(timeout, self._expire, (future, timeout))
        timer.daemon = True

        def forget(_: concurrent.futures.Future[Frame]) -> None:
            timer.cancel()
            with self._lock:
                self._pending.pop(request_id, None)
            if self._server is not None:
                self._server.cancel_frame(request_id)

        future.add_done_callback(forget)
        timer.start()
        self._send({"type": "snapshot", "id": request_id, "peer": peer, "format": kind, "via": via})
        return future

    def _expire(self, future: concurrent.futures.Future[Frame], timeout: float) -> None:
        if not future.done():
            _settle(future, error=TimeoutError(self.no_frame(timeout)))

    def no_frame(self, timeout: float) -> str:
        return (
            f"no frame within {timeout:g} s: is the room displayed in a browser that is in the "
            f"call (state '{self._state()}')?"
        )

    def on_frame(self, message: FrameMessage | FrameError, buffers: list[bytes]) -> None:
        """A frame (or why there is none) that came as a widget message."""
        with self._lock:
            pending = self._pending.get(message["id"])
        if pending is None:
            return  # expired, or never asked
        if pending.via != "comm":
            log.debug("ignored a frame by widget message: it was asked for %s", pending.via)
            return
        if "error" in message:
            error = RuntimeError(f"the browser could not take a frame: {message['error']}")
            _settle(pending.future, error=error)
        elif message["format"] != pending.format:
            error = RuntimeError(
                f"the browser sent a {message['format']} frame, not {pending.format}"
            )
            _settle(pending.future, error=error)
        else:
            frame = Frame(message["width"], message["height"], message["format"], bytes(buffers[0]))
            _settle(pending.future, frame)

    def close(self) -> None:
        """Fail what is still awaited: the widget is gone, so no frame can come."""
        with self._lock:
            pending = list(self._pending.values())
        for request in pending:
            _settle(request.future, error=RuntimeError("the room was closed"))


def _settle(
    future: concurrent.futures.Future[Frame],
    frame: Frame | None = None,
    error: BaseException | None = None,
) -> None:
    # The timer, the signaller's thread and the kernel may race to settle one future.
    try:
        if error is not None:
            future.set_exception(error)
        elif frame is not None:
            future.set_result(frame)
    except concurrent.futures.InvalidStateError:
        pass


def rgb(frame: Frame) -> NDArray[Any]:
    """An RGBA frame as an ``(height, width, 3)`` ``uint8`` array (a copy)."""
    if frame.format != "rgba" or len(frame.data) != frame.width * frame.height * 4:
        raise RuntimeError(f"the browser sent a {frame.format} frame, not rgba")
    pixels = np.frombuffer(frame.data, dtype=np.uint8)
    return pixels.reshape(frame.height, frame.width, 4)[:, :, :3].copy()
