"""``VideoRoom.process(fn)``: the widget's own camera through a Python function, shown back.

A :class:`Processor` is a :class:`~.kernelpeer.KernelPeer` of the widget's own, in its room,
named after the widget's person (``"Ada (processed)"``). It takes the video of one member only,
the widget's own page (found on the kernel's signaller by the widget's key; the tracks of every
other member are read and discarded), calls ``fn(frame)`` on each newest frame (HxWx3 uint8 RGB)
and sends what it returns as its video. Every member's page shows that video as the processor's
tile; the widget's own view labels it "You (processed)" (the ``_processed_by`` trait holds the
processor's member id).

A ``fn`` that raises, or returns something that is not a frame, is reported once in words through
``report(message)`` (the widget's ``error``, which its view shows), logged once, and counted; the
processed tile keeps its last good frame and the call goes on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from .kernelpeer import KernelPeer
from .messages import Sender
from .peermedia import rgb_frame

log = logging.getLogger("ipymeet")

#: The label the widget's own view gives the processed tile.
PROCESSED_LABEL = "You (processed)"


class Processor:
    """The kernel peer behind ``room.process(fn)``.

    ``own_member(sender)`` says whether a member is the widget's own page; ``on_id(member_id)``
    is called (on a thread of its own) with the processor's member id each time it changes, and
    with "" once stopped; ``report(message)`` gets the first failure of ``fn`` in words. The peer
    is made with ``peer_options`` (``signaling_url``, ``token``, ``relay_only``), so it uses the
    widget's signaller, and only relays when the widget does.
    """

    def __init__(
        self,
        room: str,
        name: str,
        fn: Callable[[Any], Any],
        *,
        own_member: Callable[[Sender], bool],
        on_id: Callable[[str], None],
        report: Callable[[str], None],
        **peer_options: Any,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"process() takes a function of a frame, not {type(fn).__name__}")
        self.fn = fn
        self._report = report
        self._on_id = on_id
        self._reported = False
        self._stopped = threading.Event()
        label = f"{name} (processed)" if name else "processed"
        self.peer = KernelPeer(room, name=label, only=own_member, sends_video=True, **peer_options)
        self.peer.on_frame(self._process)
        self.peer.join()
        self._watcher = threading.Thread(
            target=self._watch_id, name=f"ipymeet-process-{room}", daemon=True
        )
        self._watcher.start()

    @property
    def errors(self) -> int:
        """How many frames ``fn`` failed on so far."""
        return self.peer.counters["callback_errors"]

    def _process(self, frame: Any, sender: Sender) -> Any:
        try:
            return rgb_frame(self.fn(frame))
        except Exception as problem:
            if not self._reported:
                self._reported = True
                what = getattr(self.fn, "__name__", repr(self.fn))
                self._report(
                    f"room.process: {what} failed on a frame: {type(problem).__name__}: "
                    f"{problem} (the processed tile keeps its last good frame, if any; fix the "
                    "function and call room.process again, or room.process(None) to stop)"
                )
            raise

    def _watch_id(self) -> None:
        seen = [""]
        while not self._stopped.is_set():
            try:
                self.peer.wait_for(lambda p: p.id != seen[0] or self._stopped.is_set(), timeout=1.0)
            except TimeoutError:
                continue
            if self._stopped.is_set():
                return
            seen[0] = self.peer.id
            self._on_id(seen[0])

    def stop(self) -> None:
        """Leave the room and end the peer's threads; idempotent."""
        self._stopped.set()
        self.peer.close()
        if self._watcher.is_alive() and threading.current_thread() is not self._watcher:
            self._watcher.join(2.0)
        self._on_id("")
