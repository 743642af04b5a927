"""Running the signaller on a thread of its own: the way a kernel hosts it.

The signaller must keep answering while a notebook cell is busy, so it owns a named daemon thread
with its own asyncio loop (a :class:`~.loopthread.LoopThread`). Other threads read its room
registry (under the registry's lock) and cross to its loop only through that class; they never
touch its loop's objects directly.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import logging
import sys
import threading
from collections.abc import Callable

from aiohttp import web

from ..core import capacity, tokens
from ..core.app import SIGNALLER, create_app
from ..core.frames import Frame
from ..core.loopthread import LoopThread
from ..core.registry import Member, Registry
from ..core.settings import Settings
from ..core.signaller import Signaller
from ..core.tls import Served, lan_address, serve_tls

log = logging.getLogger("ipymeet.server")


def _url(scheme: str, host: str, port: int) -> str:
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}:{port}"


def public_host(host: str) -> str:
    """The address to put in links for others: the LAN address when bound to all interfaces."""
    if host in ("", "0.0.0.0", "::"):
        return lan_address() or "127.0.0.1"
    return host


def exposure_warning(settings: Settings, url: str, *, hub_prefix: str | None = None) -> str | None:
    """What a signaller bound beyond loopback exposes, in plain words; None on loopback.

    ``hub_prefix``: it is ``ipymeet serve --jupyterhub``, serving under that path behind the hub's
    login (server/hub/service.py), which is then what guards it instead of join tokens.
    """
    if not settings.exposed:
        return None
    where = f"{settings.host or '0.0.0.0'}:{url.rsplit(':', 1)[-1]}"
    if hub_prefix is not None:
        return (
            f"ipymeet: the JupyterHub service listens on {where}, not only on this machine: "
            "the hub's login guards it there as it does through the hub's proxy. "
            f"Its page ({url}{hub_prefix}) needs a hub login with access to this service, and "
            "a Socket.IO connection that login, a user's kernel's hub token, or a widget key "
            "such a kernel registered; join tokens do not apply. Its health check and scripts "
            "need no login. "
            + (
                "TLS: on (https/wss)."
                if settings.tls is not None
                else "TLS: OFF on this address - the hub's proxy may serve https, but what "
                "reaches the service here directly (names, SDPs, the login cookie) travels "
                "unencrypted."
            )
            + " See docs/deploy.md, JupyterHub."
        )
    tokens_line = (
        "Join tokens: required (only invite links with a valid token enter a room)."
        if settings.secret is not None
        else "Join tokens: OFF - anyone who knows or guesses a room name can enter it "
        "(turn them on with a secret / secure=True)."
    )
    tls_line = (
        "TLS: on (https/wss)."
        if settings.tls is not None
        else "TLS: OFF - signalling (names, SDPs, tokens) travels unencrypted, and browsers on "
        "other machines refuse the camera on plain http."
    )
    return (
        f"ipymeet: the signaller listens on {where}, not only on this machine: anyone who can "
        f"reach that address can use the signalling server and open the standalone call page "
        f"at {url}/ . {tokens_line} {tls_line} See docs/security.md."
    )


class SignallerThread:
    """A signaller serving on a background thread.

    Example::

        server = SignallerThread(Settings()).start()
        print(server.url)          # http://127.0.0.1:PORT
        server.stop()              # idempotent
    """

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.app = create_app(self.settings)
        self.port = 0
        #: The TLS being served (certificate file, fingerprint), once started with ``tls``.
        self.tls: Served | None = None
        self._loops: LoopThread | None = None
        self._runner: web.AppRunner | None = None
        self._serving = False
        self._lock = threading.Lock()
        self._clients: set[str] = set()

    #: A signaller of this kernel's own: it hosts, and no other kernel attaches to it
    #: (the shared one is server/kernel/sharing.py's ``KernelSignaller``, which has the same API).
    hosting = True
    shared = False

    @property
    def signaller(self) -> Signaller:
        return self.app[SIGNALLER]

    @property
    def registry(self) -> Registry:
        return self.signaller.registry

    @property
    def scheme(self) -> str:
        return "http" if self.settings.tls is None else "https"

    @property
    def url(self) -> str:
        """The base URL on this machine, e.g. ``http://127.0.0.1:41234`` (https with TLS)."""
        host = self.settings.host
        shown = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
        return _url(self.scheme, shown, self.port)

    @property
    def public_url(self) -> str:
        """The base URL for others: as :attr:`url`, but the LAN address when bound to all."""
        return _url(self.scheme, public_host(self.settings.host), self.port)

    @property
    def fingerprint(self) -> str | None:
        """SHA-256 fingerprint of the TLS certificate (``AB:CD:...``), or None without TLS."""
        return None if self.tls is None else self.tls.fingerprint

    @property
    def requires_tokens(self) -> bool:
        return self.settings.secret is not None

    @property
    def running(self) -> bool:
        loops = self._loops
        return loops is not None and loops.running and self._serving

    @property
    def thread(self) -> threading.Thread | None:
        """The signaller's thread, "ipymeet-signaller", once started."""
        return None if self._loops is None else self._loops.thread

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The signaller's loop once started (cross to it with ``run_coroutine_threadsafe``)."""
        return None if self._loops is None else self._loops.loop

    def start(self, timeout: float = 15.0) -> SignallerThread:
        """Start serving; returns once the port is bound (raises if it cannot be)."""
        with self._lock:
            if self._loops is not None:
                return self
            loops = self._loops = LoopThread("ipymeet-signaller")
        try:
            loops.start(timeout)
            loops.run(self._serve(), timeout)
        except TimeoutError:
            loops.stop(timeout)
            raise TimeoutError(f"the signaller did not start within {timeout} s") from None
        except BaseException as exc:
            loops.stop(timeout)
            raise RuntimeError(
                f"the signaller could not listen on {self.settings.host}:{self.settings.port}: "
                f"{exc}"
            ) from exc
        self._serving = True
        warning = exposure_warning(self.settings, self.public_url)
        if warning is not None:
            log.warning("%s", warning)
        if self.tls is not None:
            log.warning(
                "ipymeet: serving HTTPS at %s, certificate SHA-256 fingerprint %s",
                self.public_url,
                self.tls.fingerprint,
            )
        return self

    async def _serve(self) -> None:
        runner = web.AppRunner(
            self.app, handle_signals=False, access_log=None, shutdown_timeout=2.0
        )
        await runner.setup()
        self.tls = serve_tls(self.settings.tls, self.settings.host)
        site = web.TCPSite(
            runner,
            self.settings.host,
            self.settings.port,
            backlog=1024,
            ssl_context=None if self.tls is None else self.tls.context,
        )
        await site.start()
        self._runner = runner
        sockets = runner.addresses
        self.port = int(sockets[0][1])

    def set_max_peers(self, max_peers: int) -> None:
        """Change the capacity of the dialect-2 rooms nobody set one for (members already in a
        room stay)."""
        settings = self.settings.with_(max_peers=max_peers)  # validates
        self.settings = settings
        self.signaller.settings = settings  # one attribute swap: handlers read it per request

    def set_room_capacity(self, room: str, max_peers: int) -> Callable[[], None]:
        """Rooms named ``room`` hold ``max_peers`` (2-64) instead of ``settings.max_peers`` from
        now on, until the returned release is called (idempotent); the latest claim of a room
        wins, and members already in it stay. ``VideoRoom(room, max_peers=N)`` claims its room."""
        capacity.check(room, max_peers)
        claim, table = object(), self.signaller.room_capacity
        table.set(claim, room, max_peers)
        return lambda: table.set(claim, room, None)

    def require_tokens(self, secret: bytes | None = None) -> None:
        """From now on, ``enter`` needs a join token (members already in rooms stay).

        Keeps the current secret if there is one (tokens already handed out stay valid); otherwise
        uses ``secret`` or a fresh random one. There is no way back short of a new signaller.
        """
        if self.settings.secret is not None:
            return
        settings = self.settings.with_(secret=secret or tokens.new_secret())  # validates
        self.settings = settings
        self.signaller.settings = settings  # one attribute swap, as in set_max_peers

    def mint(self, room: str, ttl: float = tokens.DEFAULT_TTL) -> str:
        """A join token for ``room``, valid ``ttl`` seconds; needs a signaller with a secret."""
        if self.settings.secret is None:
            raise RuntimeError("this signaller takes no join tokens (it has no secret)")
        return tokens.mint(self.settings.secret, room, ttl)

    # -- what a kernel's widgets use (widget/binding.py, widget/snapshots.py) -----------------
    # The widgets go through these few methods, never into the signaller's own objects.

    def members(self, room: str) -> list[Member]:
        """The members of ``room`` in arrival order (a copy; any thread)."""
        return self.registry.members(room)

    def subscribe(self, listener: Callable[[str], None]) -> Callable[[], None]:
        """Call ``listener(room)`` on the signaller's thread after each change of a room's
        members (it must be quick and thread-safe); returns the unsubscribe."""
        return self.registry.subscribe(listener)

    def admit(self, known_client: Callable[[str], bool] | None) -> None:
        """Let only the widget keys ``known_client`` accepts enter a room (None: any key);
        pages that connect without a key are not asked. Replaces what :meth:`register` set."""
        self.signaller.access.keys = known_client

    def register(self, client: str) -> None:
        """Admit the widget key ``client``; from the first key on, only registered keys enter
        (pages that connect without a key are not asked)."""
        with self._lock:
            self._clients.add(client)
        self.signaller.access.keys = self._registered

    def unregister(self, client: str) -> None:
        """Stop admitting ``client`` (its widget closed)."""
        with self._lock:
            self._clients.discard(client)

    def _registered(self, client: str) -> bool:
        with self._lock:
            return client in self._clients

    def on_change(self, callback: Callable[[], None]) -> Callable[[], None]:
        """As ``KernelSignaller.on_change``; a signaller of its own never moves, so this never
        calls ``callback``. Returns the unsubscribe."""
        return lambda: None

    def expect_frame(self, request_id: str, client: str) -> concurrent.futures.Future[Frame]:
        """A frame for snapshot ``request_id``, to come in chunks from a connection of
        ``client`` (event ``frame``, see frames.py); the future completes on the signaller's
        thread, so a running cell can wait for it."""
        return self.signaller.frames.expect(request_id, client)

    def cancel_frame(self, request_id: str) -> None:
        """Stop waiting for ``request_id``'s frame (chunks that still come are refused)."""
        self.signaller.frames.cancel(request_id)

    def stop(self, timeout: float = 5.0) -> None:
        """Close every connection and the listening socket, then end the thread. Idempotent."""
        with self._lock:
            loops, runner = self._loops, self._runner
            self._runner = None
        if loops is None or not loops.running:
            return
        with contextlib.suppress(TimeoutError, RuntimeError):  # what is left is cancelled below
            loops.run(self._shutdown(self.signaller, runner), timeout)
        loops.stop(timeout)
        if self.tls is not None:
            self.tls.cleanup()

    @staticmethod
    async def _shutdown(signaller: Signaller, runner: web.AppRunner | None) -> None:
        # Stop listening first: the pages told below reconnect at once, and must find the port
        # closed (soon another kernel's, when one takes over) rather than come back here.
        for site in list(runner.sites if runner is not None else ()):
            await site.stop()
        # Then the clients: the runner's cleanup waits for open WebSockets. What is still
        # pending after it (a WebSocket to a peer that vanished, whose close handshake waits)
        # is cancelled as the loop stops.
        await signaller.close()
        if runner is not None:
            await runner.cleanup()


def in_kernel() -> bool:
    """Whether this process is a running ipykernel."""
    # Only inside a running ipykernel: importing its kernel app elsewhere would install its comm
    # machinery in this process (other widgets' comms would then need a kernel).
    kernelapp = sys.modules.get("ipykernel.kernelapp")
    app = getattr(kernelapp, "IPKernelApp", None)
    return app is not None and bool(app.initialized())


def in_marimo() -> bool:
    """Whether this thread runs a cell of a marimo notebook or app (``marimo edit``, ``marimo
    run``), by marimo's public ``running_in_notebook()``; not a marimo script (``python app.py``).

    marimo's kernel is not ipykernel, yet its apps are a user's notebooks all the same: under
    ``marimo run`` each browser tab is a session, a thread of the server's process (one
    signaller serves them all: the process has one), and each ``marimo run`` or ``marimo edit``
    notebook is a process of its own, which must find the others' signaller as kernels do.
    Asked on the thread of the cell that makes the widget: marimo's context is per thread.
    """
    # Only where marimo is loaded already: importing it is slow, and nothing else needs it.
    marimo = sys.modules.get("marimo")
    running = getattr(marimo, "running_in_notebook", None)
    try:
        return callable(running) and bool(running())
    except Exception:  # a marimo that changed its mind about its API: not one we know
        return False


def kernel_port() -> int:
    """The port this kernel's signaller tries first, or 0 outside a kernel.

    Derived from the kernel's connection file, which a kernel keeps when it is restarted: the
    restarted kernel's signaller is then found where the old one was, and the pages still in its
    rooms (guests on invite links) reconnect and enter again on their own. Drawn from 20000-31999,
    below Linux's ephemeral ports.
    """
    if not in_kernel():
        return 0
    app = sys.modules["ipykernel.kernelapp"].IPKernelApp
    path = str(getattr(app.instance(), "connection_file", "") or "")
    if not path:
        return 0
    digest = hashlib.sha256(path.encode()).digest()
    return 20000 + int.from_bytes(digest[:4], "big") % 12000
