"""Widget pages for the shared-signaller tests: real Socket.IO clients that behave as a widget's
view does (js/src/session.ts) when its signaller goes away.

A :class:`Page` connects with its widget's key (``auth.client``) and enters its room under a
session key. When its connection drops while it is in the room, it reconnects with the pauses
session.ts uses (at once, every 0.25 s for 2 s, then doubling to 5 s) and enters again under the
same session key; a refusal that ends a call (``unknown_widget``, ``forbidden``) ends it here
too. Every wait is on a condition with a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Callable
from typing import Any

import socketio

from ipymeet.server.core.signaller import member_id
from ipymeet.server.kernel.attach import until_dropped

#: The pauses before each attempt to enter again, as session.ts's reconnectPause (its ±25 %
#: jitter left out): at once, every 0.25 s for 2 s, then doubling up to 5 s.
PAUSES = (0.0, *(0.25,) * 8, 0.5, 1.0, 2.0, 4.0, 5.0)
#: Refusals after which session.ts gives up (js/src/errors.ts: they end the call).
ENDS_THE_CALL = frozenset({"unknown_widget", "forbidden", "room_full", "wrong_dialect"})
#: Longest wait for anything here; a deferred enter alone may take 3 s.
TIMEOUT = 10.0


class Page:
    """One view of a widget (``client``) in ``room``, on the signaller at ``url``."""

    def __init__(
        self, url: str, client: str, room: str, name: str, *, token: str | None = None
    ) -> None:
        self.url = url
        self.client = client
        self.room = room
        self.name = name
        self.token = token
        self.session = secrets.token_urlsafe(24)
        #: Its member id: a digest of the session key, the same on every signaller.
        self.id = member_id("", self.session)
        self.sio: socketio.AsyncClient | None = None
        #: Times it entered (1 after :meth:`join`; more after each re-entry).
        self.entered = 0
        self.answer: dict[str, Any] = {}
        #: The code of a refusal that ended its call, or "".
        self.ended = ""
        self.events: list[tuple[Any, ...]] = []
        self.dropped_at: float | None = None
        self.back_at: float | None = None
        #: Each attempt to enter again since the last drop: (when it began, how it ended), on the
        #: monotonic clock; printed by tests that time a hand-over.
        self.attempts: list[tuple[float, str]] = []
        self._closed = False
        self._changed = asyncio.Event()
        self._rejoin: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"Page({self.name!r}, entered={self.entered}, ended={self.ended!r})"

    @property
    def connected(self) -> bool:
        return self.sio is not None and self.sio.connected

    async def join(self) -> dict[str, Any]:
        """Connect and enter; the acknowledgement (which must say ok)."""
        answer = await self._connect_and_enter()
        assert answer.get("ok") is True, f"{self.name}: {answer}"
        return answer

    async def try_join(self) -> dict[str, Any]:
        """Connect and enter; the acknowledgement, whatever it says."""
        return await self._connect_and_enter()

    async def _connect_and_enter(self) -> dict[str, Any]:
        sio = socketio.AsyncClient(reconnection=False)
        sio.on("*", self._record)
        sio.on("disconnect", lambda *_: self._lost(sio))
        try:
            connect = sio.connect(
                self.url,
                transports=["websocket"],
                auth={"client": self.client},
                wait_timeout=TIMEOUT,
            )
            await until_dropped(sio, connect, "connect")
        except BaseException:
            await sio.eio.disconnect()  # closes its HTTP session, which a failed connect leaves
            raise
        self.sio = sio
        payload: dict[str, Any] = {"room": self.room, "name": self.name, "session": self.session}
        if self.token is not None:
            payload["token"] = self.token
        # As signaling.ts, fail the request as soon as the connection drops.
        enter = sio.call("enter", payload, timeout=TIMEOUT)
        answer: dict[str, Any] = await until_dropped(sio, enter, "enter")
        if answer.get("ok") is True:
            self.entered += 1
            self.answer = answer
        elif answer.get("code") in ENDS_THE_CALL:
            self.ended = str(answer["code"])  # the call ends: session.ts disconnects
            self._closed = True
            await sio.disconnect()
        self._changed.set()
        return answer

    def _record(self, event: str, *args: Any) -> None:
        self.events.append((event, *args))
        self._changed.set()

    def _lost(self, sio: socketio.AsyncClient) -> None:
        if self._closed or sio is not self.sio:
            return
        self.dropped_at = time.monotonic()
        self.attempts = []
        self._changed.set()
        if self.entered and not self.ended and self._rejoin is None:
            self._rejoin = asyncio.ensure_future(self._enter_again())

    async def _enter_again(self) -> None:
        try:
            for attempt in range(100):
                # The page's own back-off (session.ts), not a wait of the test's.
                await asyncio.sleep(PAUSES[min(attempt, len(PAUSES) - 1)])
                if self._closed:
                    return
                began = time.monotonic()
                try:
                    answer = await self._connect_and_enter()
                except Exception as failed:  # not reachable yet: try again
                    self.attempts.append((began, f"{type(failed).__name__}: {failed}"[:80]))
                    continue
                self.attempts.append((began, str(answer.get("code", "ok"))))
                if answer.get("ok") is True:
                    self.back_at = time.monotonic()
                    return
                if self.ended:
                    return
        finally:
            self._rejoin = None
            self._changed.set()

    async def emit(self, event: str, *args: Any) -> None:
        assert self.sio is not None
        await self.sio.emit(event, args[0] if len(args) == 1 else args)

    async def call(self, event: str, payload: Any) -> Any:
        assert self.sio is not None
        return await self.sio.call(event, payload, timeout=TIMEOUT)

    async def wait_until(self, predicate: Callable[[], bool], what: str) -> None:
        """Wait until ``predicate()`` holds (woken by this page's events), or fail."""
        await wait_until(predicate, what, self._changed)

    async def close(self) -> None:
        self._closed = True
        if self._rejoin is not None:
            self._rejoin.cancel()
        if self.sio is not None:
            with contextlib.suppress(Exception):
                await self.sio.disconnect()


async def wait_until(
    predicate: Callable[[], bool],
    what: str,
    changed: asyncio.Event | None = None,
    timeout: float = TIMEOUT,
) -> None:
    """Wait until ``predicate()`` holds: woken by ``changed`` when given, else checking every
    10 ms (for state on another thread that nothing here signals); fail after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        if changed is None:
            await asyncio.sleep(min(0.01, remaining))
            continue
        changed.clear()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(changed.wait(), min(remaining, 0.05))


@contextlib.asynccontextmanager
async def pages(*made: Page) -> Any:
    """Close every page on the way out."""
    try:
        yield made
    finally:
        for page in made:
            await page.close()
