"""One signaller per user and machine, hosted by a kernel, attached to by the others.

Inside a running ipykernel (or with ``IPYMEET_SHARE=1``; ``IPYMEET_SHARE=0`` turns it off)
``kernel_signaller()`` returns a :class:`KernelSignaller`, with the API widgets use of
``SignallerThread`` and a few more. The first kernel of a user that needs a signaller **hosts**
it: a ``SignallerThread`` on the user's port (``IPYMEET_PORT``, else :func:`user_port`) with the
kernels' hub (server/kernels.py), and writes the **runtime file** ``ipymeet-signaller.json`` in
Jupyter's runtime directory, readable by the user alone (0600; port, pid, url and a random secret,
written atomically). Every later kernel **attaches** instead: it reads the file, checks that the
host holds the secret and proves that it holds it too (docs/protocol.md, "Kernels attached to a
shared signaller"), over one Socket.IO connection from a thread of its own ("ipymeet-attach"),
registers its widgets' keys (the host admits their pages) and hears the members of its widgets'
rooms first-hand, live while a cell is busy. A lock file beside the runtime file (``flock``)
makes "find or host" one step at a time across the user's processes.

**Failover.** When the host ends, the attached kernels' connections drop at once. Each takes the
lock and reads the file again: a live host that passes the check is attached to; otherwise it
hosts itself, on the old port, with the same secret, join-token secret, tokens-required flag and
capacity it mirrored, and rewrites the file. The pages reconnect to the same URL and enter again
under their session keys (same member ids); a host that took over lets an ``enter`` with a key it
does not know yet wait up to 3 s, while the other kernels register theirs again. SIGKILL leaves a
stale file: its pid is gone, or its port does not answer the check, so the next kernel replaces
it. On a clean exit the host removes the file if it is still its own.

A squatter on the user's port (another user's process, anything without the secret) fails the
check and is never sent a proof; the first kernel then hosts on a free port, and the others find
that port in the file.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import secrets
import stat
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import socketio

from . import tokens
from . import validation as v
from .frames import Frame, FrameInbox
from .kernels import CHALLENGE_RE, KernelHub, proof, proof_matches
from .registry import Member
from .runner import SignallerThread, in_kernel
from .settings import TLS, Settings, port_from_env, share_from_env

log = logging.getLogger("ipymeet.server")

RUNTIME_FILE = "ipymeet-signaller.json"
LOCK_FILE = "ipymeet-signaller.lock"
FILE_VERSION = 1
SECRET_BYTES = 32
#: Each step of attaching (connect, hello, attach) may take this long before the host is
#: taken for dead; loopback answers in milliseconds.
ATTACH_TIMEOUT = 2.0
#: How long "find or host" waits for another process's turn at the lock.
LOCK_TIMEOUT = 30.0
#: How long ``register()`` on an attached kernel waits for the host to know the key.
REGISTER_TIMEOUT = 2.0
#: The ports :func:`user_port` draws from: below Linux's ephemeral range (32768-60999).
PORT_BASE, PORT_SPAN = 20000, 12000

Listener = Callable[[str], None]
T = TypeVar("T")


def enabled() -> bool:
    """Whether ``kernel_signaller()`` shares one signaller among this user's kernels:
    ``IPYMEET_SHARE`` if set, else inside a running ipykernel."""
    share = share_from_env()
    return in_kernel() if share is None else share


def user_port(uid: int | None = None) -> int:
    """The port a user's shared signaller is hosted on unless ``IPYMEET_PORT`` says otherwise:
    drawn from 20000-31999 by a hash of the uid, so that users of one machine differ."""
    uid = os.getuid() if uid is None else uid
    digest = hashlib.sha256(f"ipymeet-signaller:{uid}".encode()).digest()
    return PORT_BASE + int.from_bytes(digest[:4], "big") % PORT_SPAN


def runtime_dir() -> Path:
    """Jupyter's runtime directory (``JUPYTER_RUNTIME_DIR`` honoured), made 0700 if missing."""
    from jupyter_core.paths import jupyter_runtime_dir

    path = Path(jupyter_runtime_dir())
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


# -- the runtime file ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuntimeInfo:
    """The runtime file: where the host listens and the secret its kernels share."""

    port: int
    pid: int
    url: str
    secret: bytes = dataclasses.field(repr=False)
    #: The hosting kernel's id: a host removes the file on exit only while it is its own.
    kernel: str = ""

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": FILE_VERSION,
                "port": self.port,
                "pid": self.pid,
                "url": self.url,
                "secret": self.secret.hex(),
                "kernel": self.kernel,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> RuntimeInfo:
        """Parse the file; ValueError if it is not one this version wrote."""
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("version") != FILE_VERSION:
            raise ValueError("not a version-1 ipymeet runtime file")
        port, pid, url = data.get("port"), data.get("pid"), data.get("url")
        secret, kernel = data.get("secret"), data.get("kernel", "")
        if not (isinstance(port, int) and not isinstance(port, bool) and 0 < port <= 65535):
            raise ValueError("bad port")
        if not (isinstance(pid, int) and not isinstance(pid, bool) and pid > 0):
            raise ValueError("bad pid")
        if (
            not isinstance(url, str)
            or not url.startswith(("http://", "https://"))
            or len(url) > 300
        ):
            raise ValueError("bad url")
        if not isinstance(secret, str) or len(secret) != 2 * SECRET_BYTES:
            raise ValueError("bad secret")
        if not isinstance(kernel, str) or len(kernel) > 64:
            raise ValueError("bad kernel")
        return cls(port, pid, url, bytes.fromhex(secret), kernel)


def read_runtime(path: Path) -> RuntimeInfo | None:
    """The runtime file at ``path``, or None: missing, unreadable, not a regular file of this
    user's that no one else may read or write, or not one this version wrote."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, encoding="utf-8") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
            log.warning("ipymeet: ignoring %s: it is not this user's private file", path)
            return None
        try:
            return RuntimeInfo.from_json(handle.read(4096))
        except (ValueError, UnicodeDecodeError):
            return None


def write_runtime(path: Path, info: RuntimeInfo) -> None:
    """Write the runtime file atomically (a private temporary file, then a rename), mode 0600."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(info.to_json())
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise


def remove_runtime(path: Path, kernel: str) -> bool:
    """Remove the runtime file if it is still the one ``kernel`` wrote; whether it did."""
    info = read_runtime(path)
    if info is None or info.kernel != kernel:
        return False
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    return True


@contextlib.contextmanager
def runtime_lock(
    directory: Path, timeout: float = LOCK_TIMEOUT, cancelled: Callable[[], bool] = lambda: False
) -> Iterator[None]:
    """Hold the lock file beside the runtime file (``flock``, so a process that dies lets go)."""
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if cancelled() or time.monotonic() > deadline:
                    raise TimeoutError(f"another process holds {directory / LOCK_FILE}") from None
                time.sleep(0.005)
        yield
    finally:
        os.close(fd)  # releases the lock


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (it may be another program that reused the number)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- the host's state, as attached kernels mirror it -----------------------------------------------


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


# -- the attached role -----------------------------------------------------------------------------


class _Loop:
    """A daemon thread running an asyncio loop of its own, for the attached role."""

    def __init__(self, name: str = "ipymeet-attach") -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._main, name=name, daemon=True)
        self.thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            leftover = asyncio.all_tasks(self.loop)
            for task in leftover:
                task.cancel()
            if leftover:
                self.loop.run_until_complete(asyncio.wait(leftover, timeout=1.0))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    @property
    def inside(self) -> bool:
        return threading.current_thread() is self.thread

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        future = self.submit(coro)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise

    def stop(self, timeout: float = 5.0) -> None:
        if self.loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self.loop.stop)
        if not self.inside:
            self.thread.join(timeout)


class AttachRefused(Exception):
    """The host in the runtime file is not one to attach to (dead, a squatter, or it refused)."""


class _Attachment:
    """One attach connection to a host, and the members it heard of (its kernel's rooms)."""

    def __init__(self, facade: KernelSignaller, info: RuntimeInfo, loop: _Loop) -> None:
        self.facade = facade
        self.info = info
        self.loop = loop
        self.sio: socketio.AsyncClient | None = None
        self.closing = False
        self._lock = threading.Lock()
        self._rooms: dict[str, list[Member]] = {}

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
            raise RuntimeError(f"the shared signaller refused {event}: {answer}")
        return answer

    def send(self, event: str, payload: dict[str, Any]) -> None:
        """Send ``event`` without waiting (lost if the connection is down: re-sent on attach)."""
        self.loop.submit(self._call(event, payload, REGISTER_TIMEOUT))

    # -- the attach loop ---------------------------------------------------------------------------

    async def _call(self, event: str, payload: dict[str, Any], timeout: float) -> Any:
        sio = self.sio
        if sio is None or not sio.connected:
            raise ConnectionError("not connected")
        return await sio.call(event, payload, timeout=timeout)

    async def open(self, request: dict[str, Any]) -> HostState:
        """Connect, check the host, prove this kernel, attach; the host's state."""
        info = self.info
        sio = socketio.AsyncClient(
            reconnection=False,
            handle_sigint=False,
            logger=False,
            engineio_logger=False,
            ssl_verify=False,  # a self-signed host; the proof, not the certificate, is the check
        )
        self.sio = sio
        sio.on("kernel_members", self._on_members)
        sio.on("kernel_state", self._on_state)
        sio.on("kernel_frame", self._on_frame)
        sio.on("disconnect", self._on_disconnect)
        try:
            await sio.connect(info.url, transports=["websocket"], wait_timeout=ATTACH_TIMEOUT)
            mine = secrets.token_hex(32)
            hello = await sio.call("kernel_hello", {"challenge": mine}, timeout=ATTACH_TIMEOUT)
            theirs = hello.get("challenge") if isinstance(hello, dict) else None
            if not (
                isinstance(hello, dict)
                and proof_matches(info.secret, "host", info.port, mine, hello.get("proof"))
                and isinstance(theirs, str)
                and CHALLENGE_RE.fullmatch(theirs)
            ):
                raise AttachRefused(f"the signaller on port {info.port} does not hold the secret")
            answer = await sio.call(
                "kernel_attach",
                {"proof": proof(info.secret, "kernel", info.port, theirs), **request},
                timeout=ATTACH_TIMEOUT,
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
        self.facade._members_changed(self, room)

    def _on_state(self, data: Any) -> None:
        try:
            state = HostState.from_wire(data)
        except ValueError:
            log.debug("ignored a malformed kernel_state push")
            return
        self.facade._host_changed(self, state)

    def _on_frame(self, client: Any, meta: Any, chunk: Any = None) -> dict[str, Any]:
        if not isinstance(client, str):
            return {"ok": False, "code": "bad_request", "message": "no client"}
        try:
            self.facade._frames.add_chunk(client, meta, chunk)
        except v.Refused as refusal:
            return {"ok": False, **refusal.payload()}
        return {"ok": True}

    def _on_disconnect(self, *_: Any) -> None:
        if not self.closing:
            self.closing = True
            self.facade._lost(self)


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
    ``require_tokens``, ``mint``, ``members``, ``subscribe``, ``admit``, ``expect_frame``,
    ``cancel_frame``, ``stop``) plus ``register`` / ``unregister`` (this kernel's widget keys),
    ``hosting``, ``shared`` and ``on_change``. ``runtime_dir`` and ``port`` default to Jupyter's
    runtime directory and the user's port; tests give their own to run several "kernels" in one
    process. The port is ``port``, else ``IPYMEET_PORT``, else ``settings.port``, else
    :func:`user_port`.

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
        self._role: _Hosting | _Attachment | None = None
        self._mirror: HostState | None = None  # the host's state, when attached
        self._loop: _Loop | None = None
        self._listeners: list[Listener] = []
        self._changes: list[Callable[[], None]] = []
        self._callbacks_lock = threading.Lock()
        self._admit: Callable[[str], bool] | None = None
        self._stopping = False
        self._failing_over = threading.Event()
        #: How long the last failover took, in seconds: from the drop to attached or hosting.
        self.last_failover: float | None = None

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
    def failing_over(self) -> bool:
        """Whether the host was lost and this kernel is attaching to another or hosting."""
        return self._failing_over.is_set()

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
        """Attach to the user's running signaller, or host it; returns once either is done."""
        with self._role_lock:
            if self._role is None:
                self._find_or_host(None)
        return self

    def _find_or_host(self, old: HostState | None) -> None:
        """One step under the lock: attach to the host in the runtime file if it is alive and
        passes the check, else host (on ``old``'s port and settings when taking over)."""
        with runtime_lock(self.runtime_dir, cancelled=lambda: self._stopping):
            if self._stopping:
                return
            info = read_runtime(self.runtime_file)
            stale = None
            if info is not None and info.kernel != self.kernel_id:
                if pid_alive(info.pid):
                    try:
                        self._attach(info, old)
                        return
                    except Exception as why:  # dead, a squatter, refused; socketio's errors too
                        log.info("ipymeet: not attaching to port %d: %s", info.port, why)
                stale = info
            self._host(old, stale)

    def _attach(self, info: RuntimeInfo, old: HostState | None) -> None:
        if self._loop is None:
            self._loop = _Loop()
        previous = self._role if isinstance(self._role, _Attachment) else None
        with self._keys_lock:
            sent = set(self._clients)
        request: dict[str, Any] = {
            "kernel": self.kernel_id,
            "clients": sorted(sent),
            "rooms": previous.rooms() if previous is not None else [],
        }
        mirror = old if old is not None else self._mirror
        if mirror is not None:  # taking the shared settings along to the new host
            request["max_peers"] = mirror.max_peers
            if mirror.token_secret is not None:
                request["require_tokens"] = True
                request["token_secret"] = mirror.token_secret.hex()
        attachment = _Attachment(self, info, self._loop)
        state = self._loop.run(attachment.open(request), 3 * ATTACH_TIMEOUT + 1)
        self._secret = info.secret
        self._mirror = state
        self._switch(attachment, sent)
        log.info("ipymeet: attached to the shared signaller on port %d", state.port)

    def _host(self, old: HostState | None, stale: RuntimeInfo | None) -> None:
        """Host: on ``old``'s port with its settings when taking over; else on the port of a
        ``stale`` file's dead host (its pages come back there), the user's port, or a free one."""
        if self._secret is None or old is None:
            self._secret = secrets.token_bytes(SECRET_BYTES)
        if old is not None:  # taking over: the same address, scheme, capacity and tokens
            settings = self._base.with_(
                host=old.host, tls=old.tls, max_peers=old.max_peers, secret=old.token_secret
            )
            ports = [old.port, 0]
        else:
            settings = self._base
            wanted = (stale.port if stale else 0, self._want_port)
            ports = [*dict.fromkeys(port for port in wanted if port), 0]
        previous = self._role if isinstance(self._role, _Attachment) else None
        with self._keys_lock:
            sent = set(self._clients)
        failure: Exception | None = None
        for port in ports:
            thread = SignallerThread(settings.with_(port=port))
            thread.signaller.frames = self._frames  # one inbox across roles
            # A host that replaces one that ended waits a moment for keys being registered again.
            role = _Hosting(self, thread, self._secret, took_over=old is not None or bool(stale))
            role.hub.install()
            for key in sent:
                role.hub.add_local(key)
            try:
                thread.start()
            except RuntimeError as why:  # the port is taken (a squatter, another program)
                failure = why
                continue
            role.hub.loop = thread.loop
            write_runtime(
                self.runtime_file,
                RuntimeInfo(thread.port, os.getpid(), thread.url, self._secret, self.kernel_id),
            )
            thread.registry.subscribe(self._notify)
            self._switch(role, sent)
            self._end_attach_loop(previous)
            log.info(
                "ipymeet: %s the shared signaller on port %d",
                "took over" if old is not None else "hosting",
                thread.port,
            )
            return
        raise RuntimeError(f"could not host the shared signaller: {failure}")

    def _switch(self, role: _Hosting | _Attachment, sent: set[str]) -> None:
        """Make ``role`` current, then tell it the keys registered or dropped meanwhile, and the
        listeners the rooms whose members may have changed with it."""
        previous = self._role
        with self._keys_lock:
            self._role = role
            added, removed = self._clients - sent, sent - self._clients
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

    def _end_attach_loop(self, previous: _Attachment | None) -> None:
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
        role: _Hosting | _Attachment,
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

    # -- failover ----------------------------------------------------------------------------------

    def _lost(self, attachment: _Attachment) -> None:
        """The attach connection dropped (attach thread): find or host again, on a thread."""
        if self._stopping or attachment is not self._role:
            return
        self._failing_over.set()
        threading.Thread(target=self._failover, name="ipymeet-failover", daemon=True).start()

    def _failover(self) -> None:
        started = time.monotonic()
        pause = 0.05
        try:
            with self._role_lock:
                old = self._mirror
                while not self._stopping:
                    try:
                        self._find_or_host(old)
                        break
                    except Exception as why:  # the lock, a port: try again
                        log.warning("ipymeet: could not reach or host the signaller: %s", why)
                        time.sleep(pause)
                        pause = min(pause * 2, 2.0)
                if not self._stopping:
                    self.last_failover = time.monotonic() - started
        finally:
            self._failing_over.clear()

    # -- what widgets use --------------------------------------------------------------------------

    def set_max_peers(self, max_peers: int) -> None:
        """Change the capacity of every room of the shared signaller (members stay)."""
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
        if not isinstance(role, _Attachment) or role.loop.inside:
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

    def _members_changed(self, attachment: _Attachment, room: str) -> None:
        if attachment is self._role:
            self._notify(room)

    def _host_changed(self, attachment: _Attachment, state: HostState) -> None:
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
                except TimeoutError:
                    remove_runtime(self.runtime_file, self.kernel_id)
                    role.thread.stop(timeout)
            elif isinstance(role, _Attachment) and self._loop is not None:
                with contextlib.suppress(Exception):
                    self._loop.run(role.close(), timeout)
            if self._loop is not None:
                self._loop.stop(timeout)
                self._loop = None
        finally:
            with contextlib.suppress(RuntimeError):
                self._role_lock.release()
