"""The host's side of a shared signaller: the kernels attached to it (see server/kernel/sharing.py).

One kernel of a user hosts the signaller; the user's other kernels attach to it, each over one
Socket.IO connection, and the two check each other with the secret of the runtime file, both ways
(docs/protocol.md, "Kernels attached to a shared signaller")::

    kernel -> host  kernel_hello {challenge: C}
                    ack {ok, proof: HMAC(secret, "host|PORT|C"), challenge: S}
    kernel -> host  kernel_attach {proof: HMAC(secret, "kernel|PORT|S"), kernel, clients, rooms,
                                   require_tokens?, token_secret?, max_peers?, room_capacity?}
                    ack {ok, port, url, public_url, host, scheme, tls, fingerprint,
                         requires_tokens, token_secret?, max_peers}

The port the kernel dialled is in both proofs, so a process on another port cannot relay a real
host's answers as its own. Nothing but ``kernel_hello`` is accepted from a connection before it
attached, and a wrong proof closes it. Once attached, a kernel registers its widgets' keys
(``kernel_clients``), may change the shared settings and its widgets' rooms' capacities
(``kernel_settings``; server/core/capacity.py), hears the members of
every room where one of its keys is or just was (``kernel_members``) and any change of the
settings (``kernel_state``), and takes the snapshot frames its widgets asked for
(``kernel_frame``, answered). When its connection closes and the same kernel is not back within
:data:`REVOKE_AFTER` seconds, its keys are revoked and its pages' connections closed: they come
back to ``unknown_widget``, as the view of a restarted kernel does, and its rooms' capacities go.

Each kernel belongs to a user (:attr:`_Link.user`): "" for every kernel of a user's own shared
signaller (one principal: all of them are the user's, proven by the runtime file), a hub user's
name on a JupyterHub service (server/hub/service.py). What a kernel may register, hear and claim
is asked of server/core/access.py (:func:`~server.access.may_register`,
:func:`~server.access.may_hear`,
:func:`~server.access.may_claim`), with the users of the rooms' members' connections: on the user's
own signaller everything passes, as it always did; on the service a hub user's kernel reaches only
what its own user's widgets hold. Each refusal is answered ``forbidden`` and logged once.

Everything here runs on the signaller's loop, except the host kernel's own key changes
(:meth:`KernelHub.add_local`), which come from its widgets' threads and take the lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..core import capacity
from ..core import validation as v
from ..core.access import Door, may_claim, may_hear, may_register
from ..core.frames import MAX_CHUNK_BYTES
from ..core.ratelimit import TokenBucket
from ..core.registry import Member
from ..core.signaller import Connection, Handler, Signaller
from . import faults

log = logging.getLogger("ipymeet.server")

#: Seconds an attached kernel's keys outlive its connection, for it to come back (a blip).
REVOKE_AFTER = 3.0
#: Seconds a host that took over lets ``enter`` wait for a key it does not know yet.
KEY_WAIT = 3.0
#: How long after taking over the host defers unknown keys at all (the others re-attach at once).
TAKEOVER_WINDOW = 10.0
#: Seconds the host waits for an attached kernel to take one frame chunk.
FRAME_TIMEOUT = 5.0
#: Widget keys one kernel may register, rooms it may ask to follow when it attaches, and rooms
#: it may set the capacity of.
MAX_KEYS = 1024
MAX_ROOMS = 1024
#: An attached kernel's events: far more than a page's (it registers every widget of a notebook).
KERNEL_RATE = 500.0
KERNEL_BURST = 5000

CHALLENGE_RE = re.compile(r"[0-9a-f]{64}")
KERNEL_ID_RE = re.compile(r"[A-Za-z0-9_-]{8,64}")
SECRET_HEX_RE = re.compile(r"(?:[0-9a-f]{2}){16,64}")
_FRAME_KEYS = ("id", "index", "count", "width", "height", "format", "error")
NOT_ATTACHED = "attach first: kernel_hello, then kernel_attach with the proof"


def proof(secret: bytes, role: str, port: int, challenge: str) -> str:
    """What ``role`` ("host" or "kernel") answers to ``challenge`` on ``port``: hex HMAC-SHA256."""
    message = f"{role}|{port}|{challenge}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def proof_matches(secret: bytes, role: str, port: int, challenge: str, given: object) -> bool:
    """Whether ``given`` is :func:`proof`, compared in constant time (anything else: False)."""
    if not isinstance(given, str):
        return False
    expected = proof(secret, role, port, challenge).encode()
    return hmac.compare_digest(expected, given.encode("utf-8", "surrogatepass"))


class HostSide(Protocol):
    """What the hub needs of the kernel that hosts it (server/kernel/sharing.py)."""

    def state(self) -> dict[str, Any]:
        """The host's state as an attached kernel mirrors it (the ``kernel_attach`` answer)."""

    def apply(
        self, *, require_tokens: bool, token_secret: bytes | None, max_peers: int | None
    ) -> None:
        """Turn tokens on (keeping a secret it has) and/or set the rooms' capacity."""

    def admits(self, client: str) -> bool:
        """Whether the host kernel's own ``admit()`` predicate lets ``client`` in."""


@dataclass(eq=False)
class _Link:
    """One attached kernel: its connection (None within its grace), keys and rooms heard."""

    kernel: str
    #: Whose kernel it is: "" on a user's own shared signaller, the hub user's on the service.
    user: str = ""
    sid: str | None = None
    keys: set[str] = field(default_factory=set)
    rooms: set[str] = field(default_factory=set)
    #: Rooms whose members it is yet to hear (each push is the room's whole membership).
    dirty: dict[str, None] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    sender: asyncio.Task[None] | None = None
    revoke: asyncio.TimerHandle | None = None


class KernelHub:
    """The kernels attached to ``signaller``, whose host kernel is ``kernel`` (its own widgets'
    keys are registered under that id) and holds ``secret``.

    Example (server/kernel/sharing.py does this before the signaller listens)::

        hub = KernelHub(thread.signaller, secret, host_side, kernel="k-1")
        hub.install()
        hub.add_local(widget_key)
    """

    #: A user's shared signaller checks the Host of each request (server/core/access.py).
    check_hosts = True

    def __init__(
        self,
        signaller: Signaller,
        secret: bytes,
        host: HostSide,
        *,
        kernel: str,
        took_over: bool = False,
    ) -> None:
        self.signaller = signaller
        self.kernel = kernel
        self._secret = secret
        self._host = host
        self._took_over = took_over
        self._took_over_at: float | None = None
        #: The signaller's loop and port, once it listens (sharing.py sets them then).
        self.loop: asyncio.AbstractEventLoop | None = None
        self.port = 0
        self._lock = threading.Lock()
        self._owners: dict[str, str] = {}  # widget key -> kernel id
        self._links: dict[str, _Link] = {}  # kernel id -> link, attached or within its grace
        self._by_sid: dict[str, _Link] = {}
        self._challenges: dict[str, str] = {}  # sid -> the host's pending challenge (one each)
        self._keys_changed = asyncio.Event()
        self._unsubscribe: Callable[[], None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._waiting = 0  # enters waiting for their key

    def install(self) -> None:
        """Open the signaller to the kernels (``Signaller.open_to_kernels``: their events, their
        keys, their frames) and follow its rooms for them."""
        self.signaller.open_to_kernels(self)
        self._unsubscribe = self.signaller.registry.subscribe(self._room_changed)
        if self._took_over:
            self._took_over_at = time.monotonic()

    def events(self) -> dict[str, Handler]:
        """The kernels' own events (docs/protocol.md, "Kernels attached to a shared signaller")."""
        return {
            "kernel_hello": self._hello,
            "kernel_attach": self._attach,
            "kernel_clients": self._clients,
            "kernel_settings": self._settings,
        }

    # -- keys ----------------------------------------------------------------------------------

    def knows(self, client: str) -> bool:
        """Whether ``client`` is a key of a widget of the host or of an attached kernel."""
        with self._lock:
            if client in self._owners:
                return True
        return self._host.admits(client)

    def add_local(self, client: str) -> None:
        """Admit a widget key of the host kernel itself; any thread."""
        with self._lock:
            self._owners[client] = self.kernel
        self._keys_changed_soon()

    def remove_local(self, client: str) -> None:
        with self._lock:
            if self._owners.get(client) == self.kernel:
                del self._owners[client]

    def _keys_changed_soon(self) -> None:
        loop = self.loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop stopped meanwhile
                loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        # One event per generation: each waiter waits on the one current when it looked.
        changed, self._keys_changed = self._keys_changed, asyncio.Event()
        changed.set()

    async def identify(self, sid: str, environ: dict[str, Any], auth: Any) -> str | None:
        """Every caller of a user's shared signaller is let in here ("" : there are no users);
        the widget keys and tokens decide at ``enter`` (server/core/access.py)."""
        return ""

    async def wait_for_key(self, client: str) -> bool:
        """Whether ``client`` is known, or becomes known within :data:`KEY_WAIT` seconds when
        this host took over lately (the kernels of the old host are registering again)."""
        if self.knows(client):
            return True
        since = self._took_over_at
        if since is None or time.monotonic() - since > TAKEOVER_WINDOW:
            return False
        deadline = time.monotonic() + KEY_WAIT
        self._waiting += 1
        try:
            while True:
                changed = self._keys_changed
                if self.knows(client):
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(changed.wait(), remaining)
        finally:
            self._waiting -= 1

    def counts(self) -> dict[str, int]:
        """Attached kernels, keys, kernels within their grace, pending challenges, enters
        waiting for their key (for tests and health checks)."""
        with self._lock:
            keys = len(self._owners)
        return {
            "attached": len(self._by_sid),
            "keys": keys,
            "grace": sum(1 for link in self._links.values() if link.sid is None),
            "challenges": len(self._challenges),
            "waiting": self._waiting,
        }

    def attached(self) -> list[str]:
        """The ids of the kernels attached now."""
        return sorted(link.kernel for link in self._by_sid.values())

    def sid_of(self, kernel: str) -> str | None:
        """The connection of an attached kernel (None: not attached now)."""
        link = self._links.get(kernel)
        return None if link is None else link.sid

    # -- the handshake ---------------------------------------------------------------------------

    async def _hello(self, conn: Connection, *args: Any) -> dict[str, Any]:
        faults.reached("hello")
        payload = v.mapping(_one(args, "kernel_hello"), "kernel_hello payload")
        challenge = payload.get("challenge")
        if not isinstance(challenge, str) or not CHALLENGE_RE.fullmatch(challenge):
            raise v.bad("challenge must be 64 lowercase hex digits")
        mine = secrets.token_hex(32)
        self._challenges[conn.sid] = mine  # a new hello replaces the last: one per connection
        return {
            "ok": True,
            "proof": proof(self._secret, "host", self.port, challenge),
            "challenge": mine,
        }

    async def _attach(self, conn: Connection, *args: Any) -> dict[str, Any]:
        payload = v.mapping(_one(args, "kernel_attach"), "kernel_attach payload")
        log.debug("ipymeet: kernel_attach on connection %s", conn.sid)
        self._check_proof(conn, payload)
        faults.reached("attach")
        if conn.sid in self._by_sid:
            raise v.Refused("already_attached", "this connection is attached already")
        kernel = payload.get("kernel")
        if not isinstance(kernel, str) or not KERNEL_ID_RE.fullmatch(kernel):
            raise v.bad("kernel must be 8-64 characters of [A-Za-z0-9_-]")
        clients = _keys(payload.get("clients"), "clients")
        rooms = _rooms(payload.get("rooms"))
        capacities = _capacities(payload.get("room_capacity"))
        user = self._user_of(conn)
        # Checked before anything of the request is applied: a refusal leaves all as it was.
        self._check_keys(kernel, user, clients)
        self._check_claims(kernel, user, capacities)
        rooms = self._hearable(user, rooms)
        self._apply(payload)
        link = self._links.get(kernel)
        if link is None:
            link = self._links[kernel] = _Link(kernel, user)
        if link.revoke is not None:
            link.revoke.cancel()  # back within its grace: its pages stay
            link.revoke = None
        old = self.signaller.connections.get(link.sid) if link.sid is not None else None
        self._detach(link)
        if old is not None:  # the same kernel on a new connection: the old one is done
            self.signaller.drop(old)
        with self._lock:
            for key in link.keys - clients:
                if self._owners.get(key) == kernel:
                    del self._owners[key]
            for key in clients:
                self._owners[key] = kernel
        link.keys = clients
        faults.reached("replay")
        # All of its rooms' capacities, as it has them now (its old ones went meanwhile).
        table = self.signaller.room_capacity
        table.drop(kernel)
        for room, max_peers in capacities.items():
            table.set(kernel, room, max_peers)
        link.sid = conn.sid
        self._by_sid[conn.sid] = link
        conn.bucket = TokenBucket(KERNEL_RATE, KERNEL_BURST)
        link.rooms = set(rooms)
        link.dirty = dict.fromkeys(rooms)
        link.wake = asyncio.Event()
        link.wake.set()
        link.sender = self._spawn(self._push_members(link, conn.sid))
        self._wake()
        log.info("ipymeet: kernel %s attached to the shared signaller", kernel)
        return {"ok": True, **self._host.state()}

    def _check_proof(self, conn: Connection, payload: dict[str, Any]) -> None:
        """Refuse (and drop) ``conn`` unless ``payload`` proves it a kernel of this user: the
        answer to this host's challenge (server/hub/service.py checks a JupyterHub token
        instead)."""
        challenge = self._challenges.pop(conn.sid, None)
        if challenge is None or not proof_matches(
            self._secret, "kernel", self.port, challenge, payload.get("proof")
        ):
            self.signaller.drop(conn)
            raise v.Refused("forbidden", "that is not the proof of a kernel of this user")

    def _user_of(self, conn: Connection) -> str:
        """The user whose kernel ``conn`` is: on a user's own signaller, the user ("")."""
        return ""

    def _kernel_user(self, kernel: Hashable) -> str:
        """The user of ``kernel`` (an attached one, or the host's own: ""). A kernel this hub does
        not know is counted as the host's user, whom no hub user is (server/core/access.py)."""
        link = self._links.get(kernel) if isinstance(kernel, str) else None
        return link.user if link is not None else ""

    def _member_users(self, members: Iterable[Member]) -> list[str]:
        """The users of ``members``' connections; "" for one whose connection is not (or no
        longer) here, which no hub user's kernel may count as its own."""
        connections = self.signaller.connections
        return [conn.user if (conn := connections.get(m.sid)) is not None else "" for m in members]

    def _check_keys(self, kernel: str, user: str, keys: Iterable[str]) -> None:
        """Refuse (``forbidden``) registering a key that another user's kernel holds: its page,
        its frames and its revocation stay that kernel's (door REGISTER)."""
        with self._lock:
            owners = {owner for key in keys if (owner := self._owners.get(key)) is not None}
        for owner in owners - {kernel}:
            if not may_register(user, self._kernel_user(owner)):
                self.signaller.access.refusals.refused(
                    Door.REGISTER, "forbidden", f"a kernel of {user!r}: another user's widget key"
                )
                raise v.Refused(
                    "forbidden",
                    "a widget key of this request is one that another user's kernel registered: "
                    "a kernel registers its own widgets' keys only (nothing of this request was "
                    "registered)",
                )

    def _check_claims(self, kernel: str, user: str, changes: dict[str, int | None]) -> None:
        """Refuse (``forbidden``, naming the room) a capacity for a room that another user's
        kernel claims or that a member of another user is in (door CLAIM). Dropping a claim,
        or keeping one this kernel holds already (it attaches again), is no new claim."""
        table = self.signaller.room_capacity
        held = table.of(kernel)
        for room, max_peers in changes.items():
            if max_peers is None or held.get(room) == max_peers:
                continue
            claimers = [self._kernel_user(o) for o in table.claimers(room) if o != kernel]
            members = self._member_users(self.signaller.registry.members(room))
            if not may_claim(user, claimers, members):
                self.signaller.access.refusals.refused(
                    Door.CLAIM, "forbidden", f"a kernel of {user!r}: room {room!r}"
                )
                raise v.Refused(
                    "forbidden",
                    f"room {room!r} is another user's (their kernel set its capacity, or they are "
                    "in it): a kernel sets the capacity of its own user's rooms only (nothing of "
                    "this request was applied)",
                )

    def _hearable(self, user: str, rooms: list[str]) -> list[str]:
        """Of the rooms a kernel asks to hear when it attaches, those it may: each that one of
        its user's members is in (door HEAR). On a user's own signaller, all of them: a kernel
        that fails over hears its rooms before its pages are back."""
        registry = self.signaller.registry
        heard = [r for r in rooms if may_hear(user, self._member_users(registry.members(r)))]
        if len(heard) < len(rooms):
            self.signaller.access.refusals.refused(
                Door.HEAR,
                "forbidden",
                f"a kernel of {user!r}: {len(rooms) - len(heard)} room(s) none of its user's "
                "members is in",
            )
        return heard

    def _attached_link(self, conn: Connection) -> _Link:
        link = self._by_sid.get(conn.sid)
        if link is None:
            raise v.Refused("not_attached", NOT_ATTACHED)
        return link

    async def _clients(self, conn: Connection, *args: Any) -> dict[str, Any]:
        link = self._attached_link(conn)
        payload = v.mapping(_one(args, "kernel_clients"), "kernel_clients payload")
        add = _keys(payload.get("add", []), "add")
        remove = _keys(payload.get("remove", []), "remove")
        keys = (link.keys - remove) | add
        if len(keys) > MAX_KEYS:
            raise v.Refused("too_many_widgets", f"a kernel may register at most {MAX_KEYS} widgets")
        self._check_keys(link.kernel, link.user, add)
        with self._lock:
            for key in remove - add:
                if self._owners.get(key) == link.kernel:
                    del self._owners[key]
            for key in add:
                self._owners[key] = link.kernel
        link.keys = keys
        self._wake()
        return {"ok": True}

    async def _settings(self, conn: Connection, *args: Any) -> dict[str, Any]:
        link = self._attached_link(conn)
        payload = v.mapping(_one(args, "kernel_settings"), "kernel_settings payload")
        changes = _capacities(payload.get("room_capacity"))
        table = self.signaller.room_capacity
        claimed = set(table.of(link.kernel))
        claimed.difference_update(room for room, n in changes.items() if n is None)
        claimed.update(room for room, n in changes.items() if n is not None)
        if len(claimed) > MAX_ROOMS:
            limit = MAX_ROOMS
            raise v.Refused("too_many_rooms", f"a kernel may set the capacity of {limit} rooms")
        self._check_claims(link.kernel, link.user, changes)
        self._apply(payload)
        for room, max_peers in changes.items():
            table.set(link.kernel, room, max_peers)
        return {"ok": True, **self._host.state()}

    def _apply(self, payload: dict[str, Any]) -> None:
        """The settings an attached kernel brings or changes: tokens on, the rooms' capacity."""
        require = payload.get("require_tokens", False)
        raw_secret = payload.get("token_secret")
        max_peers = payload.get("max_peers")
        if not isinstance(require, bool):
            raise v.bad("require_tokens must be true or false")
        if raw_secret is not None and (
            not isinstance(raw_secret, str) or not SECRET_HEX_RE.fullmatch(raw_secret)
        ):
            raise v.bad("token_secret must be 32-128 lowercase hex digits")
        if max_peers is not None and (type(max_peers) is not int or not 2 <= max_peers <= 64):
            raise v.bad("max_peers must be an integer from 2 to 64")
        if not require and max_peers is None:
            return
        before = self._host.state()
        token_secret = None if raw_secret is None else bytes.fromhex(raw_secret)
        self._host.apply(require_tokens=require, token_secret=token_secret, max_peers=max_peers)
        if self._host.state() != before:
            self.broadcast_state()

    def broadcast_state(self) -> None:
        """Tell every attached kernel the host's state (its settings changed); signaller loop."""
        state = {"ok": True, **self._host.state()}
        for sid in list(self._by_sid):
            self._spawn(self.signaller.sio.emit("kernel_state", state, to=sid))

    def broadcast_state_soon(self) -> None:
        """:meth:`broadcast_state`, from any thread."""
        loop = self.loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self.broadcast_state)

    # -- membership ------------------------------------------------------------------------------

    def _room_changed(self, room: str) -> None:
        """A registry listener (signaller loop): the kernels whose keys are or were in ``room``
        are to hear its members (whether they may is asked as it is sent: :meth:`_push_members`)."""
        clients = {member.client for member in self.signaller.registry.members(room)}
        for link in self._by_sid.values():
            if room in link.rooms or not clients.isdisjoint(link.keys):
                link.dirty[room] = None
                link.wake.set()

    async def _push_members(self, link: _Link, sid: str) -> None:
        # One sender per link, so that its pushes go out in order; each is a room's whole list,
        # so changes that come faster than they are sent coalesce.
        while link.sid == sid:
            await link.wake.wait()
            link.wake.clear()
            while link.dirty and link.sid == sid:
                room = next(iter(link.dirty))
                del link.dirty[room]
                members = self.signaller.registry.members(room)
                listed: list[dict[str, str]] = []
                if not may_hear(link.user, self._member_users(members)):
                    # None of its user's members is in it (another hub user's room): a room it
                    # heard is told empty, once, and then nothing of it; one it did not, nothing.
                    if room not in link.rooms:
                        continue
                    link.rooms.discard(room)
                else:
                    if any(member.client in link.keys for member in members):
                        link.rooms.add(room)
                    else:
                        link.rooms.discard(room)  # it hears this last change, then no more
                    listed = [
                        {
                            "id": member.id,
                            "name": member.name,
                            "client": member.client if member.client in link.keys else "",
                        }
                        for member in members
                    ]
                try:
                    await self.signaller.sio.emit(
                        "kernel_members", {"room": room, "members": listed}, to=sid
                    )
                except Exception:  # its connection went: disconnected() ends this sender
                    log.debug("could not tell kernel %s of room %s", link.kernel, room)

    # -- frames ------------------------------------------------------------------------------------

    async def forward_frame(self, conn: Connection, meta: Any, chunk: Any) -> bool:
        """Hand a frame chunk from ``conn`` to the attached kernel whose widget asked for it;
        False when no attached kernel owns ``conn``'s key (the host's own inbox takes it)."""
        if not conn.client:
            return False
        with self._lock:
            owner = self._owners.get(conn.client)
        if owner is None or owner == self.kernel:
            return False
        link = self._links.get(owner)
        if link is None or link.sid is None:
            raise v.Refused("not_expected", "the kernel that asked for this frame is not here")
        clean = _frame_meta(meta)
        if chunk is not None and (not isinstance(chunk, bytes) or len(chunk) > MAX_CHUNK_BYTES):
            raise v.bad(f"a frame chunk is binary, at most {MAX_CHUNK_BYTES // 1024} KiB")
        data = (conn.client, clean) if chunk is None else (conn.client, clean, chunk)
        answered: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def taken(*reply: Any) -> None:
            if not answered.done():
                answered.set_result(reply[0] if len(reply) == 1 else None)

        # Awaited (sio.call is not allowed with inline handlers; this waits on another
        # connection, the kernel's): the page's next chunk is read only once this one is taken.
        try:
            await self.signaller.sio.emit("kernel_frame", data, to=link.sid, callback=taken)
            reply = await asyncio.wait_for(answered, FRAME_TIMEOUT)
        except Exception:  # timed out, or the kernel's connection went meanwhile
            raise v.Refused("not_expected", "the kernel that asked took no frame") from None
        if not isinstance(reply, dict) or reply.get("ok") is not True:
            reply = reply if isinstance(reply, dict) else {}
            code = str(reply.get("code", "not_expected"))[:64]
            raise v.Refused(code, str(reply.get("message", "the kernel refused the frame"))[:300])
        return True

    # -- connections ending ----------------------------------------------------------------------

    def disconnected(self, conn: Connection) -> None:
        """``conn`` closed (signaller loop): an attached kernel's keys get their grace."""
        self._challenges.pop(conn.sid, None)
        link = self._by_sid.get(conn.sid)
        if link is None or link.sid != conn.sid:
            return
        self._detach(link)
        loop = asyncio.get_running_loop()
        link.revoke = loop.call_later(REVOKE_AFTER, self._revoke, link)

    def _detach(self, link: _Link) -> None:
        if link.sid is not None:
            self._by_sid.pop(link.sid, None)
        link.sid = None
        if link.sender is not None:
            link.sender.cancel()
            link.sender = None
        link.wake.set()

    def _revoke(self, link: _Link) -> None:
        """The kernel did not come back: its widgets are gone, and so are their pages."""
        if self._links.get(link.kernel) is not link or link.sid is not None:
            return
        del self._links[link.kernel]
        self.signaller.room_capacity.drop(link.kernel)
        with self._lock:
            for key in link.keys:
                if self._owners.get(key) == link.kernel:
                    del self._owners[key]
        log.info("ipymeet: kernel %s left the shared signaller; its widgets' pages go", link.kernel)
        for conn in list(self.signaller.connections.values()):
            if conn.client and conn.client in link.keys and not conn.closing:
                self.signaller.drop(conn)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def close(self) -> None:
        """Stop hearing the registry (the signaller is stopping; its loop cancels the rest)."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None


def _one(args: tuple[Any, ...], event: str) -> Any:
    if len(args) != 1:
        raise v.bad(f"'{event}' takes exactly one argument, got {len(args)}")
    return args[0]


def _keys(value: Any, what: str) -> set[str]:
    if not isinstance(value, list) or len(value) > MAX_KEYS:
        raise v.bad(f"{what} must be a list of at most {MAX_KEYS} widget keys")
    if not all(isinstance(key, str) and 0 < len(key) <= 64 for key in value):
        raise v.bad(f"{what}: a widget key is a string of 1-64 characters")
    return set(value)


def _rooms(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_ROOMS:
        raise v.bad(f"rooms must be a list of at most {MAX_ROOMS} room ids")
    return list(dict.fromkeys(v.room_id(room) for room in value))


def _capacities(value: Any) -> dict[str, int | None]:
    """``{room: max_peers}`` of a kernel's widgets' rooms; None drops the room's."""
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > MAX_ROOMS:
        raise v.bad(f"room_capacity must be an object of at most {MAX_ROOMS} rooms")
    clean: dict[str, int | None] = {}
    for room, max_peers in value.items():
        try:
            checked = None if max_peers is None else capacity.check_max_peers(max_peers)
            clean[v.room_id(room)] = checked
        except ValueError as why:
            raise v.bad(f"room_capacity: {why}") from None
    return clean


def _frame_meta(meta: Any) -> dict[str, Any]:
    """A frame chunk's metadata, cut to the fields a frame has (the kernel checks their values)."""
    if not isinstance(meta, dict):
        raise v.bad("frame metadata must be an object")
    clean: dict[str, Any] = {}
    for key in _FRAME_KEYS:
        value = meta.get(key)
        if isinstance(value, str):
            clean[key] = value[:300]
        elif isinstance(value, (bool, int, float)) or (value is None and key in meta):
            clean[key] = value
    return clean
