"""The attached role of a kernel on its user's shared signaller (server/kernel/sharing.py).

A kernel that does not host holds one Socket.IO connection (python-socketio's ``AsyncClient``)
to the kernel that does, from a daemon thread of its own ("ipymeet-attach") with its own loop,
so that what the host tells it arrives while a cell is busy. :class:`Attachment` opens it: it
checks the host's proof first and only then proves this kernel (docs/protocol.md, "Kernels
attached to a shared signaller"), and then mirrors the members of this kernel's widgets' rooms
(``kernel_members``), follows the host's state (``kernel_state``: tokens, capacity), and takes the
snapshot frames the host forwards (``kernel_frame``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import functools
import logging
import secrets
import ssl
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import socketio

from ..core import validation as v
from ..core.frames import FrameInbox
from ..core.loopthread import LoopThread
from ..core.registry import Member
from ..core.settings import TLS
from .kernels import CHALLENGE_RE, proof, proof_matches
from .runner import SignallerThread
from .runtime import RuntimeInfo

log = logging.getLogger("ipymeet.server")


class HostRefused(RuntimeError):
    """The host (or the hub's service) answered a request with a refusal: ``code``, ``message``."""

    def __init__(self, event: str, answer: Any) -> None:
        fields = answer if isinstance(answer, dict) else {}
        self.code = str(fields.get("code", ""))[:64]
        self.message = str(fields.get("message", ""))[:300]
        super().__init__(f"the shared signaller refused {event}: {self.code}: {self.message}")


#: Each step of attaching (connect, hello, attach) may take this long before the host is
#: taken for dead; loopback answers in milliseconds.
ATTACH_TIMEOUT = 2.0
#: How long a request to the host (``kernel_clients``, ``kernel_settings``) waits for its answer.
REQUEST_TIMEOUT = 2.0


@dataclass(frozen=True)
class HostState:
    """What an attached kernel knows of its host (the answer to ``kernel_attach``)."""

    port: int
    url: str
    public_url: str
    host: str
    scheme: str
    tls: TLS
    fingerprint: str | None
    max_peers: int
    token_secret: bytes | None = dataclasses.field(default=None, repr=False)

    @property
    def requires_tokens(self) -> bool:
        return self.token_secret is not None

    @classmethod
    def of(cls, thread: SignallerThread) -> HostState:
        settings = thread.settings
        return cls(
            port=thread.port,
            url=thread.url,
            public_url=thread.public_url,
            host=settings.host,
            scheme=thread.scheme,
            tls=settings.tls,
            fingerprint=thread.fingerprint,
            max_peers=settings.max_peers,
            token_secret=settings.secret,
        )

    def to_wire(self) -> dict[str, Any]:
        tls: Any = self.tls
        if isinstance(tls, tuple):
            tls = [str(Path(part).resolve()) for part in tls]
        wire: dict[str, Any] = {
            "port": self.port,
            "url": self.url,
            "public_url": self.public_url,
            "host": self.host,
            "scheme": self.scheme,
            "tls": tls,
            "fingerprint": self.fingerprint,
            "requires_tokens": self.requires_tokens,
            "max_peers": self.max_peers,
        }
        if self.token_secret is not None:
            wire["token_secret"] = self.token_secret.hex()
        return wire

    @classmethod
    def from_wire(cls, data: Any) -> HostState:
        """Parse a host's state; ValueError if it is not well formed."""
        if not isinstance(data, dict):
            raise ValueError("the host's state is not an object")
        port, max_peers = data.get("port"), data.get("max_peers")
        texts = {k: data.get(k) for k in ("url", "public_url", "host", "scheme")}
        if not all(isinstance(t, str) and len(t) < 300 for t in texts.values()):
            raise ValueError("the host's state lacks its addresses")
        if not (isinstance(port, int) and 0 < port <= 65535):
            raise ValueError("the host's state has no port")
        if not (isinstance(max_peers, int) and 2 <= max_peers <= 64):
            raise ValueError("the host's state has no capacity")
        tls = data.get("tls")
        if isinstance(tls, list) and len(tls) == 2 and all(isinstance(p, str) for p in tls):
            tls = (tls[0], tls[1])
        elif tls not in (None, "self-signed"):
            raise ValueError("the host's state has a bad tls")
        fingerprint = data.get("fingerprint")
        if fingerprint is not None and not isinstance(fingerprint, str):
            raise ValueError("the host's state has a bad fingerprint")
        raw = data.get("token_secret")
        token_secret = bytes.fromhex(raw) if isinstance(raw, str) else None
        if data.get("requires_tokens") is True and token_secret is None:
            raise ValueError("the host requires tokens but sent no secret")
        return cls(
            port=port,
            url=str(texts["url"]),
            public_url=str(texts["public_url"]),
            host=str(texts["host"]),
            scheme=str(texts["scheme"]),
            tls=tls,
            fingerprint=fingerprint,
            max_peers=max_peers,
            token_secret=token_secret,
        )


T = TypeVar("T")

#: How often :func:`until_dropped` looks at the connection.
DROP_CHECK = 0.01


async def until_dropped(sio: socketio.AsyncClient, work: Awaitable[T], what: str) -> T:
    """Await ``work`` on ``sio`` (its connect, or a call), but end it with ConnectionError as soon
    as its Engine.IO connection drops: python-socketio would wait out the timeout after a drop,
    and a host that died mid-request must be known dead at once (a takeover's two seconds)."""
    task = asyncio.ensure_future(work)
    seen = sio.eio.state == "connected"
    try:
        while True:
            done, _ = await asyncio.wait((task,), timeout=DROP_CHECK)
            if done:
                return task.result()
            up = sio.eio.state == "connected"
            if seen and not up:
                raise ConnectionError(f"the connection dropped before {what} was answered")
            seen = seen or up
    finally:
        task.cancel()


@functools.cache
def _unchecked_tls() -> ssl.SSLContext:
    """TLS that takes any certificate (the proof checks the host), made once: python-engineio's
    ``ssl_verify=False`` would load the system's CA certificates at every connect, 50 ms of CPU
    (several hundred under load) that a takeover must not spend."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class Loop(LoopThread):
    """The attach thread, "ipymeet-attach": a :class:`LoopThread` started at once."""

    def __init__(self, name: str = "ipymeet-attach") -> None:
        super().__init__(name)
        self.start()


class AttachRefused(Exception):
    """The host in the runtime file is not one to attach to (dead, a squatter, or it refused)."""


class Attachment:
    """One attach connection to the host in ``info``, and the members it heard of (its kernel's
    rooms). ``on_members(self, room)`` after a room's members changed, ``on_state(self, state)``
    after the host's state did, ``on_lost(self)`` when the connection dropped; all on the attach
    thread. Frames the host forwards go to ``frames``."""

    def __init__(
        self,
        info: RuntimeInfo,
        loop: Loop,
        frames: FrameInbox,
        *,
        on_members: Callable[[Attachment, str], None],
        on_state: Callable[[Attachment, HostState], None],
        on_lost: Callable[[Attachment], None],
    ) -> None:
        self.info = info
        self.frames = frames
        self._on_members_changed = on_members
        self._on_host_state = on_state
        self._on_lost = on_lost
        self.loop = loop
        self.sio: socketio.AsyncClient | None = None
        self.closing = False
        self._lock = threading.Lock()
        self._rooms: dict[str, list[Member]] = {}
        self._refusals_logged: set[tuple[str, str]] = set()

    # -- any thread --------------------------------------------------------------------------------

    def members(self, room: str) -> list[Member]:
        with self._lock:
            return list(self._rooms.get(room, ()))

    def rooms(self) -> list[str]:
        with self._lock:
            return list(self._rooms)

    def request(self, event: str, payload: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send ``event`` and wait for the host's answer (RuntimeError if there is none)."""
        if self.loop.inside:
            raise RuntimeError("not from the attach thread")
        try:
            answer = self.loop.run(self._call(event, payload, timeout), timeout + 0.5)
        except Exception as failed:
            raise RuntimeError(f"the shared signaller did not answer {event}: {failed}") from None
        if not isinstance(answer, dict) or answer.get("ok") is not True:
            raise HostRefused(event, answer)
        return answer

    def send(self, event: str, payload: dict[str, Any]) -> None:
        """Send ``event`` without waiting (lost if the connection is down: re-sent on attach).
        A refusal in its answer is logged, once per code: nobody waits to hear it."""
        call = self._call(event, payload, REQUEST_TIMEOUT)
        try:
            future = self.loop.submit(call)
        except RuntimeError:
            # The attach loop has ended: the kernel is shutting down, and a widget's finalizer
            # (binding._release) unregisters its key. Lost, as while the connection is down.
            call.close()
            return
        future.add_done_callback(functools.partial(self._refused, event))

    def _refused(self, event: str, future: concurrent.futures.Future[Any]) -> None:
        if future.cancelled() or future.exception() is not None:
            return  # down: it goes along on re-attach
        answer = future.result()
        if isinstance(answer, dict) and answer.get("ok") is False:
            code = str(answer.get("code", ""))[:64]
            if (event, code) not in self._refusals_logged:
                self._refusals_logged.add((event, code))
                log.warning(
                    "ipymeet: the signaller refused %s (%s): %s",
                    event,
                    code,
                    str(answer.get("message", ""))[:300],
                )

    # -- the attach loop ---------------------------------------------------------------------------

    async def _call(self, event: str, payload: dict[str, Any], timeout: float) -> Any:
        sio = self.sio
        if sio is None or not sio.connected:
            raise ConnectionError("not connected")
        return await until_dropped(sio, sio.call(event, payload, timeout=timeout), event)

    def client(self, **options: Any) -> socketio.AsyncClient:
        """This attachment's Socket.IO client (``self.sio``), handling what the host pushes;
        ``options`` go to python-socketio."""
        sio = socketio.AsyncClient(
            reconnection=False, handle_sigint=False, logger=False, engineio_logger=False, **options
        )
        self.sio = sio
        sio.on("kernel_members", self._on_members)
        sio.on("kernel_state", self._on_state)
        sio.on("kernel_frame", self._on_frame)
        sio.on("disconnect", self._on_disconnect)
        return sio

    async def open(self, request: dict[str, Any]) -> HostState:
        """Connect, check the host, prove this kernel, attach; the host's state."""
        info = self.info
        # A self-signed host: the proof, not the certificate, is the check.
        sio = self.client(websocket_extra_options={"ssl": _unchecked_tls()})
        try:
            connect = sio.connect(info.url, transports=["websocket"], wait_timeout=ATTACH_TIMEOUT)
            await until_dropped(sio, connect, "connect")
            log.debug("ipymeet: connected to the signaller on port %d", info.port)
            mine = secrets.token_hex(32)
            hello = await self._call("kernel_hello", {"challenge": mine}, ATTACH_TIMEOUT)
            log.debug("ipymeet: the signaller on port %d answered kernel_hello", info.port)
            theirs = hello.get("challenge") if isinstance(hello, dict) else None
            if not (
                isinstance(hello, dict)
                and proof_matches(info.secret, "host", info.port, mine, hello.get("proof"))
                and isinstance(theirs, str)
                and CHALLENGE_RE.fullmatch(theirs)
            ):
                raise AttachRefused(f"the signaller on port {info.port} does not hold the secret")
            answer = await self._call(
                "kernel_attach",
                {"proof": proof(info.secret, "kernel", info.port, theirs), **request},
                ATTACH_TIMEOUT,
            )
            if not isinstance(answer, dict) or answer.get("ok") is not True:
                raise AttachRefused(f"the shared signaller refused to attach: {answer}")
            return HostState.from_wire(answer)
        except BaseException:
            self.closing = True
            with contextlib.suppress(Exception):
                await sio.disconnect()
            raise

    async def close(self) -> None:
        self.closing = True
        if self.sio is not None:
            with contextlib.suppress(Exception):
                await self.sio.disconnect()

    # Handlers are synchronous: each runs whole in arrival order, so pushes never reorder.

    def _on_members(self, data: Any) -> None:
        try:
            room, members = _members_push(data)
        except ValueError:
            log.debug("ignored a malformed kernel_members push")
            return
        with self._lock:
            # The host names only this kernel's own keys: none left, and it hears no more of
            # the room (this was the last push), so it keeps nothing that would go stale.
            if any(member.client for member in members):
                self._rooms[room] = members
            else:
                self._rooms.pop(room, None)
        self._on_members_changed(self, room)

    def _on_state(self, data: Any) -> None:
        try:
            state = HostState.from_wire(data)
        except ValueError:
            log.debug("ignored a malformed kernel_state push")
            return
        self._on_host_state(self, state)

    def _on_frame(self, client: Any, meta: Any, chunk: Any = None) -> dict[str, Any]:
        if not isinstance(client, str):
            return {"ok": False, "code": "bad_request", "message": "no client"}
        try:
            self.frames.add_chunk(client, meta, chunk)
        except v.Refused as refusal:
            return {"ok": False, **refusal.payload()}
        return {"ok": True}

    def _on_disconnect(self, *_: Any) -> None:
        if not self.closing:
            self.closing = True
            self._on_lost(self)


def _members_push(data: Any) -> tuple[str, list[Member]]:
    if not isinstance(data, dict) or not isinstance(data.get("members"), list):
        raise ValueError("not a members push")
    room = data.get("room")
    if not isinstance(room, str) or not v.ROOM_RE.fullmatch(room):
        raise ValueError("bad room")
    members = []
    for entry in data["members"]:
        if not isinstance(entry, dict):
            raise ValueError("bad member")
        peer, name, client = entry.get("id"), entry.get("name", ""), entry.get("client", "")
        if not all(isinstance(x, str) and len(x) <= 128 for x in (peer, name, client)) or not peer:
            raise ValueError("bad member")
        members.append(Member(sid=str(peer), name=str(name), client=str(client), id=str(peer)))
    return room, members
