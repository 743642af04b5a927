"""The users' kernels' side of the hub's ipymeet service (server/hub/service.py is the service; the
two share only the names in server/hub/names.py): how a kernel finds the service, and its
signaller attached to it (docs/deploy.md, "JupyterHub").

Finding it. A kernel started by a JupyterHub single-user server has the hub's API and a token
in its environment (``JUPYTERHUB_API_URL``, ``JUPYTERHUB_API_TOKEN``). It asks the hub's API for
the service named ``ipymeet`` (``IPYMEET_HUB_SERVICE`` names another): ``GET
/hub/api/services/ipymeet``. The hub answers a token that has ``read:services!service=ipymeet``
(docs/deploy.md puts it in the users' role and in ``c.Spawner.server_token_scopes``; the
default server token has only ``users:activity`` and ``access:servers``) with the service's model,
whose ``url`` is where the service listens and ``prefix`` where the proxy serves it. The kernel
dials ``url`` with the prefix's path, not the proxy: the proxy's address is one the hub does not
tell a user's server (the hub's API is at the hub's own port), while ``url`` is the address the
hub's proxy itself forwards to, inside the hub's network, where the users' servers are too. When
the hub also says its public address (``c.JupyterHub.public_url``, ``JUPYTERHUB_PUBLIC_URL``), the
service through the proxy there is tried next, for a service whose ``url`` is the hub machine's
loopback while the servers run elsewhere. Pages always reach the service at the prefix on their
own origin (the hub's, through its proxy).

A hub that has no such service (404), or that does not let the kernel read it (403: a hub
without ipymeet's configuration answers so too), means no hub service for this kernel: it then
uses this user's shared signaller, as outside a hub. ``IPYMEET_SIGNALLER`` set by hand (the
configuration before discovery) still wins, with no question to the hub.

The signaller. :class:`ServiceSignaller` is a ``KernelSignaller`` that never hosts: it attaches to
the service with the kernel's hub token instead of the runtime file's secret, and attaches again
when the connection drops (the service restarted), with its keys and rooms' capacities, as a
failover would. When it cannot reach the service at first (not running yet, refused, the hub's
API down) it does not fail the cell that made a widget: it starts detached, says why in
:attr:`ServiceSignaller.problem` (what it tried and the cause, never a token), which the widgets
show, and keeps trying in the background; once attached, the widgets' keys go along and the
problem clears.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

import socketio

from ..core.settings import Settings
from ..kernel.attach import ATTACH_TIMEOUT, Attachment, HostState, Loop, until_dropped
from ..kernel.runtime import RuntimeInfo
from ..kernel.sharing import KernelSignaller, SignallerUnavailable
from .names import DEFAULT_SERVICE, SERVICE_ENV, SIGNALLER_ENV, TOKEN_AUTH, service_prefix
from .names import slashed as _slashed

log = logging.getLogger("ipymeet.server")

#: Seconds the hub's API may take to say where the service is (a cell waits for the first ask).
LOOKUP_TIMEOUT = 5.0
#: Seconds between the background attempts to reach the service: doubling from the first.
RETRY_FIRST = 1.0
RETRY_MAX = 15.0

# The hub's API is an address inside the hub's network: never through an HTTP proxy of the
# kernel's environment (urllib would take HTTP_PROXY), as the attach connection never is either.
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ServiceUnreachable(SignallerUnavailable):
    """The hub's ipymeet service could not be found or reached. The message says, in plain
    words, what was tried (addresses, the service's name) and why it failed; never a token."""


class NoService(ServiceUnreachable):
    """The hub has no ipymeet service for this kernel (none by that name, or its token may not
    read it): the kernel uses a signaller of its user's instead."""


class ServiceSource(Protocol):
    """Where a :class:`ServiceSignaller` finds the service: a URL given by hand
    (:class:`ServiceTarget`) or the hub's API (:class:`ServiceLookup`)."""

    @property
    def path(self) -> str:
        """The service's path, which pages use on their own origin (the hub's)."""

    @property
    def what(self) -> str:
        """The service, named for a message."""

    def find(self) -> list[ServiceTarget]:
        """The addresses to try, in order; :class:`ServiceUnreachable` when there are none."""


@dataclass(frozen=True)
class ServiceTarget:
    """The hub's ipymeet service at one address the kernel reaches, and the token it proves
    itself with."""

    #: As the kernel reaches it, e.g. ``http://127.0.0.1:8000/services/ipymeet/``.
    url: str
    token: str = field(repr=False)
    #: As browsers reach it (invite links): the hub's public origin with the service's path
    #: when the hub knows it (``JUPYTERHUB_PUBLIC_HUB_URL``, set by ``c.JupyterHub.public_url``),
    #: else ``url``.
    public: str = ""

    def __post_init__(self) -> None:
        if not self.public:
            object.__setattr__(self, "public", self.url)

    @property
    def origin(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def path(self) -> str:
        """Its path, which the pages use on their own origin (the hub's)."""
        return _slashed(urlsplit(self.url).path or "/")

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or (443 if parts.scheme == "https" else 80)

    @property
    def what(self) -> str:
        return f"the hub's ipymeet service at {self.url} ({SIGNALLER_ENV})"

    def find(self) -> list[ServiceTarget]:
        return [self]


@dataclass(frozen=True)
class ServiceLookup:
    """The hub's ipymeet service as the hub's API tells a user's kernel where it is.

    Example::

        lookup = lookup_from_env()       # in a kernel of a single-user server
        lookup.find()                    # [ServiceTarget('http://127.0.0.1:10101/services/ipymeet/')]
    """

    #: The service's name in ``c.JupyterHub.services``.
    name: str
    #: The hub's REST API as the user's server reaches it (``JUPYTERHUB_API_URL``).
    api_url: str
    token: str = field(repr=False)
    #: Where the hub's proxy serves it: ``JUPYTERHUB_BASE_URL`` + ``services/NAME/``.
    prefix: str = "/services/ipymeet/"
    #: The hub's public origin, when the hub was told it (``JUPYTERHUB_PUBLIC_URL``); "" if not.
    public_origin: str = ""

    @property
    def path(self) -> str:
        return self.prefix

    @property
    def what(self) -> str:
        return f"the hub's service {self.name!r}"

    @property
    def public(self) -> str:
        """The service's address for browsers, when the hub knows its public origin ("" if not)."""
        return f"{self.public_origin}{self.prefix}" if self.public_origin else ""

    def find(self) -> list[ServiceTarget]:
        """Ask the hub's API: the service's own address (its ``url``), then the hub's public
        address, if known. :class:`NoService` for a 404 or 403, :class:`ServiceUnreachable`
        when the API does not answer or the service exists but its address is not told."""
        model = self._ask()
        targets: list[ServiceTarget] = []
        direct = model.get("url")
        prefix = model.get("prefix")
        path = _slashed(prefix) if isinstance(prefix, str) and prefix else self.prefix
        parts = urlsplit(direct) if isinstance(direct, str) else None
        if parts is not None and parts.scheme in ("http", "https") and parts.hostname:
            targets.append(
                ServiceTarget(f"{parts.scheme}://{parts.netloc}{path}", self.token, self.public)
            )
        if self.public:
            through_proxy = ServiceTarget(self.public, self.token)
            if through_proxy not in targets:
                targets.append(through_proxy)
        if not targets:
            raise ServiceUnreachable(
                f"the hub has a service {self.name!r} but does not tell this kernel its address: "
                f"give the users read:services!service={self.name} (their role and "
                "c.Spawner.server_token_scopes, docs/deploy.md), or set c.JupyterHub.public_url"
            )
        return targets

    def _ask(self) -> dict[str, Any]:
        url = f"{self.api_url}/services/{quote(self.name, safe='')}"
        request = urllib.request.Request(
            url, headers={"Authorization": f"token {self.token}", "Accept": "application/json"}
        )
        try:
            with _NO_PROXY.open(request, timeout=LOOKUP_TIMEOUT) as reply:
                model = json.loads(reply.read(1 << 20))
        except urllib.error.HTTPError as refused:
            if refused.code == 404:
                raise NoService(f"the hub has no service named {self.name!r}") from None
            if refused.code == 403:
                raise NoService(
                    f"this kernel's hub token may not read the hub's service {self.name!r} "
                    f"(read:services!service={self.name}): a hub without ipymeet's configuration"
                ) from None
            raise ServiceUnreachable(
                f"the hub's API at {self.api_url} answered HTTP {refused.code} when asked for "
                f"its service {self.name!r}"
            ) from None
        except (urllib.error.URLError, OSError, ValueError) as failed:
            reason = getattr(failed, "reason", None) or failed
            raise ServiceUnreachable(
                f"could not ask the hub's API at {self.api_url} where its service {self.name!r} "
                f"is: {reason}"
            ) from None
        if not isinstance(model, dict):
            raise ServiceUnreachable(f"the hub's API gave no model of its service {self.name!r}")
        return model


def service_from_env(environ: Mapping[str, str] | None = None) -> ServiceTarget | None:
    """``IPYMEET_SIGNALLER``, with the kernel's ``JUPYTERHUB_API_TOKEN``; None when unset;
    ValueError when it is no URL, or the token is missing."""
    env = os.environ if environ is None else environ
    url = env.get(SIGNALLER_ENV, "").strip()
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"{SIGNALLER_ENV} must be the service's URL as the kernel reaches it, e.g. "
            f"http://127.0.0.1:8000/services/ipymeet/, not {url!r}"
        )
    token = env.get("JUPYTERHUB_API_TOKEN", "")
    if not token:
        raise ValueError(
            f"{SIGNALLER_ENV} is set but JUPYTERHUB_API_TOKEN is not: a kernel attaches to the "
            "hub's ipymeet service with its single-user server's token"
        )
    # The kernel's way to the service may be an address only the cluster knows (a proxy's
    # service name): browsers come through the hub's public address, when the hub was told it.
    hub = urlsplit(env.get("JUPYTERHUB_PUBLIC_HUB_URL", "").strip())
    public = ""
    if hub.scheme in ("http", "https") and hub.netloc:
        public = f"{hub.scheme}://{hub.netloc}{_slashed(parts.path or '/')}"
    return ServiceTarget(url if url.endswith("/") else f"{url}/", token, public)


def lookup_from_env(environ: Mapping[str, str] | None = None) -> ServiceLookup | None:
    """What a kernel of a hub's single-user server asks the hub about; None outside a hub
    (no ``JUPYTERHUB_API_URL`` or ``JUPYTERHUB_API_TOKEN``); ValueError for a bad value."""
    env = os.environ if environ is None else environ
    api_url = env.get("JUPYTERHUB_API_URL", "").strip().rstrip("/")
    token = env.get("JUPYTERHUB_API_TOKEN", "")
    if not api_url or not token:
        return None
    parts = urlsplit(api_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"JUPYTERHUB_API_URL must be the hub's API URL, not {api_url!r}")
    name = env.get(SERVICE_ENV, "").strip() or DEFAULT_SERVICE
    if not name.isprintable() or "/" in name or len(name) > 255:
        raise ValueError(f"{SERVICE_ENV} must be the name of a service of the hub, not {name!r}")
    public = urlsplit(env.get("JUPYTERHUB_PUBLIC_URL", "").strip())
    origin = f"{public.scheme}://{public.netloc}" if public.scheme in ("http", "https") else ""
    prefix = service_prefix(env.get("JUPYTERHUB_BASE_URL", "/") or "/", name)
    return ServiceLookup(name, api_url, token, prefix, origin if public.netloc else "")


def source_from_env(environ: Mapping[str, str] | None = None) -> ServiceSource | None:
    """How this kernel finds the hub's ipymeet service: ``IPYMEET_SIGNALLER`` if set, else the
    hub's API if the kernel runs under a hub, else None. :class:`ServiceUnreachable` (not a bare
    ValueError) when a value is wrong, so that the widget shows it."""
    try:
        return service_from_env(environ) or lookup_from_env(environ)
    except ValueError as wrong:
        raise ServiceUnreachable(str(wrong)) from None


class ServiceAttachment(Attachment):
    """An attach connection to the hub's service: the hub's token instead of the secret's proof."""

    def __init__(self, target: ServiceTarget, *args: Any, **kwargs: Any) -> None:
        info = RuntimeInfo(target.port, 0, target.url, b"", "")
        super().__init__(info, *args, **kwargs)
        self.target = target

    async def open(self, request: dict[str, Any]) -> HostState:
        target = self.target
        sio = self.client()
        try:
            connect = sio.connect(
                target.origin,
                socketio_path=f"{target.path}socket.io",
                auth={TOKEN_AUTH: target.token},
                transports=["websocket"],
                wait_timeout=ATTACH_TIMEOUT,
            )
            await until_dropped(sio, connect, "connect")
            answer = await self._call("kernel_attach", request, ATTACH_TIMEOUT)
            if not isinstance(answer, dict) or answer.get("ok") is not True:
                reason = answer.get("message") if isinstance(answer, dict) else answer
                raise RuntimeError(f"the service refused this kernel: {reason}")
            return HostState.from_wire(answer)
        except BaseException:
            self.closing = True
            with contextlib.suppress(Exception):  # it failed already: that error is the one
                await sio.disconnect()
            raise


class ServiceSignaller(KernelSignaller):
    """This kernel's way to the hub's ipymeet service: attached to it, never hosting; attaches
    again when the connection drops (the service restarted). The API of ``KernelSignaller``;
    ``page_url`` is where this kernel's widgets' pages reach it (a path on their own origin), and
    :attr:`problem` why it is not attached yet ("" once it is).

    Example::

        server = ServiceSignaller(source_from_env()).start()
        server.problem                    # "" once attached, else what was tried and why
        server.register(widget_key)       # its page may now enter (once attached)
    """

    def __init__(self, source: ServiceSource, settings: Settings | None = None) -> None:
        first = source if isinstance(source, ServiceTarget) else None
        super().__init__(settings, port=first.port if first is not None else 0)
        self.source = source
        #: The address attached to (the last one tried before that).
        self.target: ServiceTarget | None = first
        self._problem = ""
        self._retrying = False
        self._wake = threading.Event()

    @property
    def page_url(self) -> str:
        return self.source.path

    @property
    def problem(self) -> str:
        """Why the service is not reached yet: what was tried and the cause ("" once attached)."""
        return self._problem

    @property
    def running(self) -> bool:
        return not self._stopping and (self._retrying or super().running)

    def start(self) -> ServiceSignaller:
        """Attach to the service, or, if it cannot be reached now, start detached and keep
        trying in the background (:attr:`problem` says why). :class:`NoService` when the hub
        says it has none for this kernel."""
        with self._role_lock:
            if self._role is not None or self._retrying:
                return self
            try:
                self._find_or_host(None)
            except NoService:
                raise
            except ServiceUnreachable as why:
                self._detached(str(why))
        return self

    def _detached(self, problem: str) -> None:
        """Not attached: widgets see ``problem`` and a placeholder of the service's state until
        an attempt in the background gets through."""
        # Info, not a warning: the widgets show it (a warning would print in the cell as well).
        log.info("ipymeet: %s; trying again in the background", problem)
        self._problem = problem
        public = (
            self.target.public if self.target is not None else getattr(self.source, "public", "")
        )
        self._mirror = HostState(
            port=self.target.port if self.target is not None else 0,
            url=self.target.url.rstrip("/") if self.target is not None else "",
            public_url=str(public).rstrip("/"),
            host="",
            scheme="http",
            tls=None,
            fingerprint=None,
            max_peers=self._base.max_peers,
        )
        self._retrying = True
        threading.Thread(target=self._retry, name="ipymeet-hub-retry", daemon=True).start()

    def _retry(self) -> None:
        pause = RETRY_FIRST
        while not self._wake.wait(pause):
            with self._role_lock:
                if self._stopping or self._role is not None:
                    break
                try:
                    self._find_or_host(None)
                except Exception as why:  # down, refused, the hub's API: say it, try again
                    log.info("ipymeet: still not attached: %s", why)
                    if str(why) != self._problem:
                        self._problem = str(why)
                        self._changed()
                else:
                    self._problem = ""
                    self._retrying = False
                    log.info("ipymeet: attached to %s after all", self.source.what)
                    self._changed()
                    return
            pause = min(pause * 2, RETRY_MAX)
        self._retrying = False

    def _find_or_host(self, old: HostState | None) -> None:
        if self._stopping:
            return
        targets = self.source.find()
        if self._loop is None:
            self._loop = Loop()
        tried: list[str] = []
        for target in targets:
            self.target = target
            request, sent, sent_rooms = self._attach_request()
            attachment = self._attachment(ServiceAttachment, target)
            try:
                state = self._loop.run(attachment.open(request), 2 * ATTACH_TIMEOUT + 1)
            except Exception as failed:
                tried.append(f"{target.url} ({_plain(failed, target)})")
                continue
            self._mirror = self._seen_here(state)
            self._switch(attachment, sent, sent_rooms)
            log.info("ipymeet: attached to the hub's ipymeet service at %s", target.url)
            return
        raise ServiceUnreachable(
            f"could not reach {self.source.what}: tried {', '.join(tried)}. Is it running? "
            "The hub's log shows its output"
        )

    def _seen_here(self, state: HostState) -> HostState:
        """The service's state with its addresses as this kernel reaches it (and, for invite
        links, as browsers do)."""
        target = self.target
        if target is None:
            return state
        url = target.url.rstrip("/")
        parts = urlsplit(url)
        return replace(
            state,
            port=target.port,
            url=url,
            public_url=target.public.rstrip("/"),
            host=parts.hostname or state.host,
            scheme=parts.scheme,
            token_secret=None,
        )

    def _host_changed(self, attachment: Attachment, state: HostState) -> None:
        super()._host_changed(attachment, self._seen_here(state))

    def require_tokens(self, secret: bytes | None = None) -> None:
        """Nothing to do: the hub's login already keeps out everyone who is not a hub user
        (and a user's kernel may not change what the service requires of everyone)."""

    def set_max_peers(self, max_peers: int) -> None:
        raise ValueError(
            "the hub's ipymeet service serves every user: its default capacity is its own "
            "(ipymeet serve --max-peers); VideoRoom(room, max_peers=N) sets a room's"
        )

    def stop(self, timeout: float = 5.0) -> None:
        self._wake.set()
        super().stop(timeout)


def _plain(failed: BaseException, target: ServiceTarget) -> str:
    """An attempt's failure in a few words. Socket.IO's own say little ("Connection error"), so
    its address is tried once more with a bare TCP connection, which names the cause."""
    text = str(failed).strip() or f"no answer within {2 * ATTACH_TIMEOUT + 1:g} s"
    if not isinstance(failed, socketio.exceptions.ConnectionError):
        return text
    host = urlsplit(target.url).hostname or ""
    try:
        with socket.create_connection((host, target.port), timeout=ATTACH_TIMEOUT):
            pass
    except ConnectionRefusedError:
        return "connection refused: nothing listens there"
    except OSError as why:
        return str(why) or type(why).__name__
    return f"{text}: something answers there, but not as the hub's ipymeet service"
