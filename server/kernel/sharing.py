"""One signaller per user and machine, hosted by a kernel, attached to by the others.

Inside a running ipykernel or a marimo notebook or app (or with ``IPYMEET_SHARE=1``;
``IPYMEET_SHARE=0`` turns it off) ``kernel_signaller()`` returns a :class:`KernelSignaller`, with
the API widgets use of ``SignallerThread`` and a few more. A marimo process is one "kernel" here,
however many sessions (browser tabs of ``marimo run``) it serves. The first kernel of a user
that needs a signaller **hosts** it: a ``SignallerThread`` on the user's port (``IPYMEET_PORT``,
else one derived from the user's name) with the hub of attached kernels (server/kernel/kernels.py),
and writes the runtime file (port, pid, url, a secret; server/kernel/runtime.py). Every later kernel
**attaches** instead (server/kernel/attach.py): it checks that the host holds the secret, proves
that it holds it too, registers its widgets' keys (the host admits their pages) and hears the
members of its widgets' rooms first-hand, on a thread of its own. Deciding to host holds the
lock beside the runtime file, so it is one kernel at a time; attaching does not, so kernels
attach side by side.

**Failover.** When the host ends, the attached kernels' connections drop at once. Each takes the
lock and reads the file again: a live host that passes the check is attached to (the lock let go
meanwhile; should that attach fail, the file is read again under the lock, and a kernel hosts
over only a host the file still names); otherwise it hosts itself, on the old port, with the same
secret, join-token secret, tokens-required flag and capacity it mirrored, and its own widgets'
rooms' capacities, and rewrites the file. The pages reconnect to the same URL and enter again
under their session keys (same member ids); a host that took over lets an ``enter`` with a key it
does not know yet wait up to 3 s, while the other kernels register theirs again (and their rooms'
capacities). SIGKILL leaves a stale file: its pid is gone, or its port does not answer the check,
so the next kernel replaces it. On a clean exit the host removes the file if it is still its own.

Whatever instant the host dies at, even while another kernel is taking over (the steps of
server/kernel/faults.py), one kernel ends up hosting on the same port: a kernel taking over the
port of a host that ended waits for it up to :data:`PORT_WAIT` (a killed process's sockets close a
moment after it looks dead), never hosting elsewhere meanwhile, which would split the room; and a
request to a host that dies mid-handshake ends at the drop (``attach.until_dropped``).

A squatter on the user's port (another user's process, anything without the secret) fails the
check and is never sent a proof; the first kernel then hosts on a free port, and the others find
that port in the file.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import errno
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from ..core import capacity, tokens
from ..core.frames import Frame, FrameInbox
from ..core.registry import Member
from ..core.settings import Settings, port_from_env, share_from_env
from . import faults
from .attach import ATTACH_TIMEOUT, REQUEST_TIMEOUT, Attachment, HostRefused, HostState, Loop
from .kernels import KernelHub
from .runner import SignallerThread, in_kernel, in_marimo
from .runtime import (
    LOCK_FILE,
    LOCK_TIMEOUT,
    RUNTIME_FILE,
    SECRET_BYTES,
    RuntimeInfo,
    pid_alive,
    read_runtime,
    remove_runtime,
    runtime_dir,
    runtime_lock,
    user_port,
    write_runtime,
)

log = logging.getLogger("ipymeet.server")

#: How long a kernel taking over waits for the port of the host that ended to be free.
PORT_WAIT = 2.0

#: How long ``register()`` on an attached kernel waits for the host to know the key.
REGISTER_TIMEOUT = REQUEST_TIMEOUT

Listener = Callable[[str], None]
A = TypeVar("A", bound=Attachment)


class SignallerUnavailable(RuntimeError):
    """The kernel's signaller could not be started or reached. The message says in plain words
    what was tried, why it failed and what to do; never a secret. A widget shows it
    (``error_code`` ``signaller_unreachable``) and its cell returns."""


def _wait_for_port(host: str, port: int, timeout: float) -> bool:
    """Wait up to ``timeout`` s until ``port`` on ``host`` can be bound as the signaller binds
    it (asyncio's ``create_server``: SO_REUSEADDR on POSIX); whether it can. A probe socket,
    bound and closed at once, every 20 ms: cheap, where starting a signaller to find out is not."""
    deadline = time.monotonic() + timeout
    try:
        found = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except OSError:
        return False
    addresses = {(info[0], info[4]) for info in found}
    while True:
        try:
            for family, address in addresses:
                with socket.socket(family, socket.SOCK_STREAM) as probe:
                    if os.name == "posix":
                        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    probe.bind(address)
            return True
        except OSError as taken:
            if taken.errno != errno.EADDRINUSE or time.monotonic() >= deadline:
                return False
        time.sleep(0.02)


def enabled() -> bool:
    """Whether ``kernel_signaller()`` shares one signaller among this user's kernels:
    ``IPYMEET_SHARE`` if set, else inside a running ipykernel or a marimo notebook or app (a
    marimo process takes part as a kernel does: it hosts or attaches)."""
    share = share_from_env()
    if share is not None:
        return share
    return in_kernel() or in_marimo()


# -- the host role ---------------------------------------------------------------------------------


class _Hosting:
    """The host role: the signaller's thread and its hub, to which it is the ``HostSide``."""

    def __init__(
        self, facade: KernelSignaller, thread: SignallerThread, secret: bytes, *, took_over: bool
    ) -> None:
        self.facade = facade
        self.thread = thread
        self.hub = KernelHub(
            thread.signaller, secret, self, kernel=facade.kernel_id, took_over=took_over
        )

    def rooms(self) -> list[str]:
        return []

    def state(self) -> dict[str, Any]:
        return HostState.of(self.thread).to_wire()

    def apply(
        self, *, require_tokens: bool, token_secret: bytes | None, max_peers: int | None
    ) -> None:
        if max_peers is not None:
            self.thread.set_max_peers(max_peers)
        if require_tokens:
            self.thread.require_tokens(token_secret)
        self.facade._changed()

    def admits(self, client: str) -> bool:
        known = self.facade._admit
        return known is not None and known(client)


# -- the facade ------------------------------------------------------------------------------------


class KernelSignaller:
    """This kernel's way to the signaller its user's kernels share on this machine: it hosts
    it, or attaches to the kernel that does, and takes over when that one ends.

    The API of ``SignallerThread`` that widgets use (``port``, ``url``, ``public_url``,
    ``settings``, ``requires_tokens``, ``running``, ``fingerprint``, ``set_max_peers``,
    ``set_room_capacity``, ``require_tokens``, ``mint``, ``members``, ``subscribe``, ``admit``,
    ``expect_frame``, ``cancel_frame``, ``stop``) plus ``register`` / ``unregister`` (this
    kernel's widget keys), ``hosting``, ``shared`` and ``on_change``. ``runtime_dir`` and ``port``
    default to Jupyter's runtime directory and the user's port; tests give their own to run
    several "kernels" in one process. The port is ``port``, else ``IPYMEET_PORT``, else
    ``settings.port``, else :func:`user_port`.

    Example::

        server = KernelSignaller(Settings(), runtime_dir=tmp, port=24321).start()
        server.register(widget_key)          # its page may now enter
        server.members("lab-42")             # first-hand, on either role
        server.stop()
    """

    shared = True

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        runtime_dir: Path | str | None = None,
        port: int | None = None,
        kernel_id: str | None = None,
    ) -> None:
        self._base = settings or Settings.from_env()
        self._dir = Path(runtime_dir) if runtime_dir is not None else None
        if port is None:
            port = port_from_env()
        self._want_port = port if port is not None else (self._base.port or user_port())
        #: This kernel process's id among the user's kernels (random).
        self.kernel_id = kernel_id or secrets.token_hex(8)
        self._frames = FrameInbox()
        self._secret: bytes | None = None
        self._role_lock = threading.RLock()  # role changes: start, failover, stop
        self._keys_lock = threading.Lock()  # _clients and _role together
        self._clients: set[str] = set()
        #: This kernel's widgets' claims on their rooms' capacity; with _clients under _keys_lock.
        self._claims = capacity.RoomCapacity()
        self._capacity_lock = threading.Lock()  # one claim at a time to the host, in order
        self._role: _Hosting | Attachment | None = None
        self._mirror: HostState | None = None  # the host's state, when attached
        self._loop: Loop | None = None
        self._listeners: list[Listener] = []
        self._changes: list[Callable[[], None]] = []
        self._callbacks_lock = threading.Lock()
        self._admit: Callable[[str], bool] | None = None
        self._stopping = False

    # -- where it is -------------------------------------------------------------------------------

    @property
    def runtime_dir(self) -> Path:
        if self._dir is None:
            self._dir = runtime_dir()
        return self._dir

    @property
    def runtime_file(self) -> Path:
        return self.runtime_dir / RUNTIME_FILE

    def _state(self) -> HostState:
        role = self._role
        if isinstance(role, _Hosting):
            return HostState.of(role.thread)
        if self._mirror is None:
            raise RuntimeError("the shared signaller is not started")
        return self._mirror

    @property
    def port(self) -> int:
        return self._state().port

    @property
    def url(self) -> str:
        """The host's URL on this machine, e.g. ``http://127.0.0.1:24321``."""
        return self._state().url

    @property
    def public_url(self) -> str:
        return self._state().public_url

    @property
    def scheme(self) -> str:
        return self._state().scheme

    @property
    def fingerprint(self) -> str | None:
        return self._state().fingerprint

    @property
    def requires_tokens(self) -> bool:
        return self._state().requires_tokens

    @property
    def settings(self) -> Settings:
        """The host's settings (as far as an attached kernel knows them: host, port, tls,
        max_peers, the token secret; the rest is this kernel's own)."""
        role = self._role
        if isinstance(role, _Hosting):
            return role.thread.settings
        state = self._state()
        changes: dict[str, Any] = {
            "host": state.host,
            "port": state.port,
            "max_peers": state.max_peers,
            "secret": state.token_secret,
        }
        try:
            return self._base.with_(**changes, tls=state.tls)
        except ValueError:  # the host's certificate files are not readable from here
            return self._base.with_(**changes, tls=None)

    @property
    def hosting(self) -> bool:
        """Whether this kernel hosts the shared signaller (False: attached to the one that does)."""
        return isinstance(self._role, _Hosting)

    @property
    def hub(self) -> KernelHub | None:
        """The attached kernels, while this kernel hosts."""
        role = self._role
        return role.hub if isinstance(role, _Hosting) else None

    @property
    def thread(self) -> SignallerThread | None:
        """The signaller's thread, while this kernel hosts."""
        role = self._role
        return role.thread if isinstance(role, _Hosting) else None

    @property
    def running(self) -> bool:
        """Started and not stopped (also while taking over from a host that ended)."""
        if self._stopping or self._role is None:
            return False
        role = self._role
        if isinstance(role, _Hosting):
            return role.thread.running
        return self._loop is not None and self._loop.thread.is_alive()

    # -- starting: find or host --------------------------------------------------------------------

    def start(self) -> KernelSignaller:
        """Attach to the user's running signaller, or host it; returns once either is done.

        A kernel arriving while another hands the signaller over waits for the lock (about a
        second; tests/e2e/test_failover_stress.py), at most ``LOCK_TIMEOUT`` s: past that, or if
        it can neither attach nor host, :class:`SignallerUnavailable` says why and what to do."""
        with self._role_lock:
            if self._role is None:
                try:
                    self._find_or_host(None)
                except TimeoutError:
                    raise SignallerUnavailable(
                        f"another kernel of yours has held the shared signaller's lock "
                        f"({self.runtime_dir / LOCK_FILE}) for over {LOCK_TIMEOUT:.0f} s, so this "
                        "kernel could neither join it nor start it. If a kernel of yours is stuck, "
                        "restart it; then run this cell again"
                    ) from None
                except (RuntimeError, OSError) as why:
                    raise SignallerUnavailable(
                        f"this kernel could neither join your kernels' shared signaller nor start "
                        f"it ({why}). Set IPYMEET_SHARE=0 for a signaller of this kernel's own, or "
                        "fix the cause and run this cell again"
                    ) from None
        return self

    def _find_or_host(self, old: HostState | None) -> None:
        """Attach to the host in the runtime file if it is alive and passes the check, else host
        (on ``old``'s port and settings when taking over).

        Deciding to host is done under the lock, attaching is not: the survivors of a host
        attach to the one that took over side by side, not one after the other. A host that
        failed this kernel's attach is hosted over only if the file, read again under the lock,
        still names it (else another kernel took over meanwhile, and it is tried in turn)."""
        failed: RuntimeInfo | None = None
        while True:
            with runtime_lock(self.runtime_dir, LOCK_TIMEOUT, cancelled=lambda: self._stopping):
                if self._stopping:
                    return
                info = read_runtime(self.runtime_file)
                log.debug("ipymeet: took the lock; the runtime file names %s", info)
                if info is None or info.kernel == self.kernel_id:
                    self._host(old, None)
                    return
                if info == failed or not pid_alive(info.pid):
                    self._host(old, info)
                    return
            try:
                self._attach(info, old)
                return
            except Exception as why:  # dead, a squatter, refused; socketio's errors too
                log.info("ipymeet: not attaching to port %d: %s", info.port, why)
                failed = info

    def _attach_request(self) -> tuple[dict[str, Any], set[str], dict[str, int]]:
        """What an attachment tells its host of this kernel (its id, its widgets' keys, the rooms
        it follows and the capacities its widgets claim), with the keys and claims it sent."""
        previous = self._role if isinstance(self._role, Attachment) else None
        with self._keys_lock:
            sent, sent_rooms = set(self._clients), self._claims.rooms()
        request: dict[str, Any] = {
            "kernel": self.kernel_id,
            "clients": sorted(sent),
            "rooms": previous.rooms() if previous is not None else [],
        }
        if sent_rooms:
            request["room_capacity"] = sent_rooms
        return request, sent, sent_rooms

    def _attachment(self, kind: type[A], where: Any) -> A:
        """A ``kind`` of attachment to ``where`` on this kernel's attach loop, its pushes and its
        end told to this facade."""
        assert self._loop is not None
        return kind(
            where,
            self._loop,
            self._frames,
            on_members=self._members_changed,
            on_state=self._host_changed,
            on_lost=self._lost,
        )

    def _attach(self, info: RuntimeInfo, old: HostState | None) -> None:
        if self._loop is None:
            self._loop = Loop()
        request, sent, sent_rooms = self._attach_request()
        mirror = old if old is not None else self._mirror
        if mirror is not None:  # taking the shared settings along to the new host
            request["max_peers"] = mirror.max_peers
            if mirror.token_secret is not None:
                request["require_tokens"] = True
                request["token_secret"] = mirror.token_secret.hex()
        attachment = self._attachment(Attachment, info)
        state = self._loop.run(attachment.open(request), 3 * ATTACH_TIMEOUT + 1)
        self._secret = info.secret
        self._mirror = state
        self._switch(attachment, sent, sent_rooms)
        log.info("ipymeet: attached to the shared signaller on port %d", state.port)

    def _host(self, old: HostState | None, stale: RuntimeInfo | None) -> None:
        """Host: on ``old``'s port with its settings when taking over; else on the port of a
        ``stale`` file's dead host (its pages come back there), the user's port, or a free one."""
        if self._secret is None or old is None:
            self._secret = secrets.token_bytes(SECRET_BYTES)
        secret = self._secret
        if old is not None:  # taking over: the same address, scheme, capacity and tokens
            settings = self._base.with_(
                host=old.host, tls=old.tls, max_peers=old.max_peers, secret=old.token_secret
            )
            ports = [old.port, 0]
        else:
            settings = self._base
            wanted = (stale.port if stale else 0, self._want_port)
            ports = [*dict.fromkeys(port for port in wanted if port), 0]
        previous = self._role if isinstance(self._role, Attachment) else None
        with self._keys_lock:
            sent, sent_rooms = set(self._clients), self._claims.rooms()
        # The port of a host that ended, where its pages come back: it may hold it a moment
        # longer (a killed process's threads end one by one, its sockets close with the last).
        ended = old.port if old is not None else 0
        if stale is not None and not pid_alive(stale.pid):
            ended = stale.port
        took_over = old is not None or bool(stale)
        failure: Exception | None = None
        faults.reached("locked")
        for port in ports:
            if port and port == ended:
                began = time.monotonic()
                free = _wait_for_port(settings.host, port, PORT_WAIT)
                log.debug(
                    "ipymeet: port %d %s after %.3f s",
                    port,
                    "free" if free else "still taken",
                    time.monotonic() - began,
                )
            try:
                role = self._listen(settings.with_(port=port), secret, sent, sent_rooms, took_over)
            except RuntimeError as why:  # the port is taken (a squatter, another program)
                failure = why
                continue
            thread = role.thread
            log.debug("ipymeet: listening on port %d", thread.port)
            faults.reached("listening")
            try:
                write_runtime(
                    self.runtime_file,
                    RuntimeInfo(thread.port, os.getpid(), thread.url, secret, self.kernel_id),
                )
            except BaseException:  # secure_write refused the file's permissions, a full disk
                role.hub.close()
                thread.stop()
                raise
            faults.reached("written")
            thread.registry.subscribe(self._notify)
            self._switch(role, sent, sent_rooms)
            self._end_attach_loop(previous)
            log.info(
                "ipymeet: %s the shared signaller on port %d",
                "took over" if old is not None else "hosting",
                thread.port,
            )
            return
        raise RuntimeError(f"could not host the shared signaller: {failure}")

    def _listen(
        self,
        settings: Settings,
        secret: bytes,
        sent: set[str],
        sent_rooms: dict[str, int],
        took_over: bool,
    ) -> _Hosting:
        """A signaller listening with ``settings``, its hub holding ``secret``, admitting this
        kernel's keys ``sent``, its rooms holding ``sent_rooms``; RuntimeError if it cannot
        listen."""
        thread = SignallerThread(settings)
        thread.signaller.frames = self._frames  # one inbox across roles
        for room, max_peers in sent_rooms.items():  # the others bring theirs as they attach
            thread.signaller.room_capacity.set(self.kernel_id, room, max_peers)
        # A host that replaces one that ended waits a moment for keys being registered again.
        role = _Hosting(self, thread, secret, took_over=took_over)
        role.hub.install()
        for key in sent:
            role.hub.add_local(key)
        thread.start()
        role.hub.loop, role.hub.port = thread.loop, thread.port
        return role

    def _switch(
        self, role: _Hosting | Attachment, sent: set[str], sent_rooms: dict[str, int]
    ) -> None:
        """Make ``role`` current, then tell it the keys registered or dropped and the rooms'
        capacities claimed or released meanwhile, and the listeners the rooms whose members may
        have changed with it."""
        previous = self._role
        # The capacity lock first: a claim told to the new role meanwhile comes after these.
        with self._capacity_lock:
            with self._keys_lock:
                self._role = role
                added, removed = self._clients - sent, sent - self._clients
                claimed = self._claims.rooms()
            changed: dict[str, int | None] = {
                room: n for room, n in claimed.items() if sent_rooms.get(room) != n
            }
            changed.update({room: None for room in sent_rooms if room not in claimed})
            if changed:
                self._tell_capacity(role, changed)
        if added:
            self._tell_keys(role, add=added)
        if removed:
            self._tell_keys(role, remove=removed)
        if isinstance(role, _Hosting):
            self._mirror = None
        if previous is not None:
            self._changed()
        rooms = [] if previous is None else previous.rooms()
        for room in dict.fromkeys([*rooms, *role.rooms()]):
            self._notify(room)

    def _end_attach_loop(self, previous: Attachment | None) -> None:
        """Hosting now: close the old attach connection and end its thread."""
        loop, self._loop = self._loop, None
        if loop is None:
            return
        if previous is not None:
            with contextlib.suppress(Exception):
                loop.run(previous.close(), 2.0)
        loop.stop()

    def _tell_keys(
        self,
        role: _Hosting | Attachment,
        add: Iterable[str] = (),
        remove: Iterable[str] = (),
        wait: bool = False,
    ) -> None:
        if isinstance(role, _Hosting):
            for key in add:
                role.hub.add_local(key)
            for key in remove:
                role.hub.remove_local(key)
            return
        payload = {"add": sorted(add), "remove": sorted(remove)}
        if wait and not role.loop.inside:
            with contextlib.suppress(RuntimeError):  # down: the keys go along on re-attach
                role.request("kernel_clients", payload, REGISTER_TIMEOUT)
            return
        role.send("kernel_clients", payload)

    def _tell_capacity(
        self, role: _Hosting | Attachment, changes: dict[str, int | None], wait: bool = False
    ) -> None:
        """What this kernel's rooms hold now (None: what nobody here claims), to the signaller:
        on the host's, under this kernel's id; attached, to the host, which keeps it under that
        id until this kernel's keys are revoked."""
        if isinstance(role, _Hosting):
            table = role.thread.signaller.room_capacity
            for room, max_peers in changes.items():
                table.set(self.kernel_id, room, max_peers)
            return
        payload = {"room_capacity": changes}
        if wait and not role.loop.inside:
            try:
                role.request("kernel_settings", payload, REGISTER_TIMEOUT)
            except HostRefused as refused:
                if refused.code == "forbidden":  # a hub's service: another user's room
                    raise ValueError(f"max_peers: {refused.message}") from None
            except RuntimeError:  # down: the claims go along on re-attach
                pass
            return
        role.send("kernel_settings", payload)

    # -- failover ----------------------------------------------------------------------------------

    def _lost(self, attachment: Attachment) -> None:
        """The attach connection dropped (attach thread): find or host again, on a thread."""
        if self._stopping or attachment is not self._role:
            return
        threading.Thread(target=self._failover, name="ipymeet-failover", daemon=True).start()

    def _failover(self) -> None:
        log.debug("ipymeet: the shared signaller's host went away; finding or hosting another")
        pause, failed = 0.05, 0
        with self._role_lock:
            old = self._mirror
            while not self._stopping:
                try:
                    self._find_or_host(old)
                    if failed:
                        log.warning("ipymeet: the signaller is back after %d failed tries", failed)
                    return
                except Exception as why:  # the lock, a port: try again
                    # Once per outage, not at every try: it lands in the cell's output.
                    level = logging.WARNING if not failed else logging.DEBUG
                    log.log(level, "ipymeet: could not reach or host the signaller: %s", why)
                    failed += 1
                    time.sleep(pause)
                    pause = min(pause * 2, 2.0)

    # -- what widgets use --------------------------------------------------------------------------

    def set_max_peers(self, max_peers: int) -> None:
        """Change the default capacity of the shared signaller: of every room, of any notebook
        or dashboard of the user, that nobody set one for (members stay). A widget sets its own
        room's with :meth:`set_room_capacity`."""
        self._base.with_(max_peers=max_peers)  # validates
        role = self._role
        if isinstance(role, _Hosting):
            role.thread.set_max_peers(max_peers)
            role.hub.broadcast_state_soon()
            self._changed()
            return
        self._set_remote({"max_peers": max_peers})
        if self._mirror is not None and self._mirror.max_peers != max_peers:
            self._mirror = dataclasses.replace(self._mirror, max_peers=max_peers)

    def set_room_capacity(self, room: str, max_peers: int) -> Callable[[], None]:
        """Rooms named ``room`` hold ``max_peers`` (2-64) instead of the signaller's default from
        now on, until the returned release is called (idempotent); the latest claim of a room
        wins, and members already in it stay. ``VideoRoom(room, max_peers=N)`` claims its room.

        On an attached kernel, returns once the host has it (or at once while taking over: the
        claims go along when this kernel attaches or hosts again); the host drops them with this
        kernel's keys when it leaves.
        """
        capacity.check(room, max_peers)
        claim = object()
        self._claim(claim, room, max_peers)
        return lambda: self._claim(claim, room, None)

    def _claim(self, claim: object, room: str, max_peers: int | None) -> None:
        with self._capacity_lock:
            with self._keys_lock:
                before = self._claims.claimed(room)
                self._claims.set(claim, room, max_peers)
                after = self._claims.claimed(room)
                role = self._role
            if role is not None and after != before:
                try:
                    self._tell_capacity(role, {room: after}, wait=True)
                except ValueError:  # refused (another hub user's room): as if never claimed
                    with self._keys_lock:
                        self._claims.set(claim, room, None)
                    raise

    def require_tokens(self, secret: bytes | None = None) -> None:
        """From now on, ``enter`` needs a join token in every room of the shared signaller."""
        role = self._role
        if isinstance(role, _Hosting):
            role.thread.require_tokens(secret)
            role.hub.broadcast_state_soon()
            self._changed()
            return
        mirror = self._state()
        if mirror.token_secret is not None:
            return
        fresh = tokens.check_secret(secret) if secret is not None else tokens.new_secret()
        if not self._set_remote({"require_tokens": True, "token_secret": fresh.hex()}):
            # Down (taking over): kept, and carried to the next host.
            self._mirror = dataclasses.replace(mirror, token_secret=fresh)
            self._changed()

    def _set_remote(self, payload: dict[str, Any]) -> bool:
        role = self._role
        if not isinstance(role, Attachment) or role.loop.inside:
            return False
        try:
            answer = role.request("kernel_settings", payload, REGISTER_TIMEOUT)
        except RuntimeError:
            return False
        self._host_changed(role, HostState.from_wire(answer))
        return True

    def mint(self, room: str, ttl: float = tokens.DEFAULT_TTL) -> str:
        """A join token for ``room``, valid ``ttl`` seconds (the host's secret, minted here)."""
        secret = self._state().token_secret
        if secret is None:
            raise RuntimeError("this signaller takes no join tokens (it has no secret)")
        return tokens.mint(secret, room, ttl)

    def members(self, room: str) -> list[Member]:
        """The members of ``room`` in arrival order (a copy; any thread). Attached, only where one
        of this kernel's widgets is (elsewhere empty): the host tells them as they change."""
        role = self._role
        if isinstance(role, _Hosting):
            return role.thread.members(room)
        return role.members(room) if role is not None else []

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(room)`` after a change of ``room``'s members (on the signaller's or the
        attach thread; quick and thread-safe); returns the unsubscribe."""
        with self._callbacks_lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._callbacks_lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def on_change(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` (any thread) after the port, URL, role or shared settings (tokens
        required, capacity) changed: a takeover, or another kernel's ``secure=True``."""
        with self._callbacks_lock:
            self._changes.append(callback)

        def unsubscribe() -> None:
            with self._callbacks_lock:
                if callback in self._changes:
                    self._changes.remove(callback)

        return unsubscribe

    def admit(self, known_client: Callable[[str], bool] | None) -> None:
        """Also admit the widget keys ``known_client`` accepts (kept for callers of
        ``SignallerThread.admit``; :meth:`register` is the way). Only the hosting kernel can ask
        it, so on an attached kernel it applies once that kernel hosts."""
        self._admit = known_client

    def register(self, client: str) -> None:
        """Admit the pages of this kernel's widget ``client``; on an attached kernel, returns
        once the host knows it (or at once while taking over: it goes along on re-attach)."""
        with self._keys_lock:
            self._clients.add(client)
            role = self._role
        if role is not None:
            self._tell_keys(role, add={client}, wait=True)

    def unregister(self, client: str) -> None:
        """Stop admitting ``client`` (its widget closed); does not wait."""
        with self._keys_lock:
            self._clients.discard(client)
            role = self._role
        if role is not None:
            self._tell_keys(role, remove={client})

    def expect_frame(self, request_id: str, client: str) -> concurrent.futures.Future[Frame]:
        """A frame for snapshot ``request_id`` from a page of ``client``: through this kernel's
        signaller thread, or forwarded by the host to the attach thread."""
        return self._frames.expect(request_id, client)

    def cancel_frame(self, request_id: str) -> None:
        self._frames.cancel(request_id)

    # -- callbacks ---------------------------------------------------------------------------------

    def _notify(self, room: str) -> None:
        with self._callbacks_lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(room)
            except Exception:
                log.exception("room listener failed")

    def _changed(self) -> None:
        with self._callbacks_lock:
            callbacks = list(self._changes)
        for callback in callbacks:
            try:
                callback()
            except Exception:
                log.exception("signaller change callback failed")

    def _members_changed(self, attachment: Attachment, room: str) -> None:
        if attachment is self._role:
            self._notify(room)

    def _host_changed(self, attachment: Attachment, state: HostState) -> None:
        if attachment is not self._role:
            return
        if state != self._mirror:
            self._mirror = state
            self._changed()

    # -- stopping ----------------------------------------------------------------------------------

    def stop(self, timeout: float = 5.0) -> None:
        """Leave: a host removes the runtime file (if still its own) and closes its port, and an
        attached kernel its connection (the host revokes its keys 3 s later). Idempotent."""
        self._stopping = True
        if not self._role_lock.acquire(timeout=timeout + LOCK_TIMEOUT):
            log.warning("ipymeet: the shared signaller is busy taking over; stopping anyway")
        try:
            role = self._role
            if isinstance(role, _Hosting):
                try:
                    with runtime_lock(self.runtime_dir, timeout=timeout):
                        remove_runtime(self.runtime_file, self.kernel_id)
                        role.hub.close()
                        role.thread.stop(timeout)
                except OSError:  # the lock not had in time, or its folder gone meanwhile
                    remove_runtime(self.runtime_file, self.kernel_id)
                    role.thread.stop(timeout)
            elif isinstance(role, Attachment) and self._loop is not None:
                with contextlib.suppress(Exception):
                    self._loop.run(role.close(), timeout)
            if self._loop is not None:
                self._loop.stop(timeout)
                self._loop = None
        finally:
            with contextlib.suppress(RuntimeError):
                self._role_lock.release()
