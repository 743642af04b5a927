"""The access model: who may pass each door into a call, decided in one place.

A call has several doors (:class:`Door`) and several kinds of caller (:class:`Principal`).
:data:`TABLE` says, for each door and principal, whether it passes, on what condition, and which
test performs the attempt; docs/security.md ("Doors and principals") is that table in words, and
tests/unit/test_access.py fails when the two differ or when a named test does not exist.

The doors ask the functions and the :class:`Access` object here, never their own rules:

- the HTTP and Socket.IO doors of a signaller (server/core/app.py, server/core/signaller.py) ask
  :meth:`Access.check_request`, :meth:`Access.origin_allowed`, :meth:`Access.connect` and
  :meth:`Access.enter`;
- the kernels' door (server/kernel/kernels.py, and server/hub/service.py for hub users) asks
  :func:`may_register`, :func:`may_hear` and :func:`may_claim`;
- a kernel's widgets (widget/room.py, widget/relay.py) ask :func:`widget_room_allows` before they
  mint a token or relay an ``enter`` for their page.

Every refusal is a :class:`~server.validation.Refused` with a code and a plain message (the
client's answer), logged once per kind and minute (:class:`RefusalLog`), never with a secret.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from . import tokens
from . import validation as v
from .hostnames import host_name, is_ip, is_loopback_host

if TYPE_CHECKING:
    from .settings import Settings

log = logging.getLogger("ipymeet.server")

__all__ = [
    "TABLE",
    "Access",
    "Cell",
    "Door",
    "Principal",
    "RefusalLog",
    "Vouchers",
    "may_claim",
    "may_hear",
    "may_register",
    "widget_room_allows",
]


class Principal(str, Enum):
    """Who is at the door."""

    OWN_KERNEL = "the user's own kernels"
    WIDGET_PAGE = "a widget's page"
    INVITE = "an invite link's holder"
    HUB_USER = "a hub user"
    VOILA_KERNEL = "a Voilà visitor's kernel"
    REDIS_PEER = "a process behind the same Redis"
    LOCAL_USER = "another local user"
    FOREIGN_PAGE = "a foreign web page"


class Door(str, Enum):
    """What they ask to do."""

    CONNECT = "connect"
    ENTER = "enter a room"
    MINT = "mint a token"
    ATTACH = "attach a kernel"
    REGISTER = "register a widget key"
    CLAIM = "claim a room's capacity"
    HEAR = "hear a room's members"
    RELAY = "relay signals (the kernel route, Redis)"


@dataclass(frozen=True)
class Cell:
    """One door for one principal: what passes, what is refused, and the test that performs the
    refused attempt beside the allowed case."""

    allows: str
    refuses: str = ""
    test: str = ""


_SEC = "tests/security/"
_HOSTS = _SEC + "test_hosts.py::"
_ROOMS = _SEC + "test_widget_rooms.py::"
_HUB = _SEC + "test_hub_users.py::"
_SHARED = "tests/integration/test_shared.py::"
_NO_ATTACH = _SHARED + "test_an_unattached_clients_kernel_events_are_refused"
_WRONG_PROOF = _SHARED + "test_a_wrong_proof_closes_the_connection"
_TOKENS = "tests/integration/test_security.py::test_enter_needs_a_valid_token_for_its_room"

#: door -> principal -> cell; a principal missing from a door's row never comes to that door.
TABLE: dict[Door, dict[Principal, Cell]] = {
    Door.CONNECT: {
        Principal.OWN_KERNEL: Cell("on loopback"),
        Principal.REDIS_PEER: Cell(
            "as ipymeet's Redis user (docs/deploy.md: private, password or ACL user)",
            "code in a signaller: a pickled message runs nothing (python-socketio 5.14+, and "
            "ipymeet's own JSON events)",
            _SEC + "test_redis.py::test_a_pickled_message_on_the_events_channel_runs_nothing",
        ),
        Principal.WIDGET_PAGE: Cell(
            "on a name the signaller answers to; through jupyter-server-proxy (Jupyter's Host) "
            "with its widget's key",
            "that Host without a key a kernel registered",
            _HOSTS + "test_a_widget_page_behind_a_proxy_connects_with_its_key",
        ),
        Principal.INVITE: Cell(
            "on localhost, 127.0.0.1, ::1 and the names given (--allow-host)",
            "any other name",
            _HOSTS + "test_a_configured_name_is_served",
        ),
        Principal.HUB_USER: Cell(
            "with the service's login cookie, a kernel's hub token, or a key their kernel "
            "registered",
            "anything else, at connect",
            "tests/unit/test_hub.py::test_socketio_without_the_hubs_word_is_refused",
        ),
        Principal.VOILA_KERNEL: Cell("as the user's own kernels"),
        Principal.LOCAL_USER: Cell("on loopback (a machine's users share it)"),
        Principal.FOREIGN_PAGE: Cell(
            "nothing",
            "a rebound DNS name: 403 with the reason, connect_error forbidden_host; another "
            "origin: 400",
            _HOSTS + "test_a_rebound_name_is_refused_at_every_door",
        ),
    },
    Door.ENTER: {
        Principal.OWN_KERNEL: Cell("as a page (KernelPeer, room.process, room.record)"),
        Principal.WIDGET_PAGE: Cell(
            "its widget's room (with tokens on, with the token its kernel minted for it)",
            "a key no kernel registered (unknown_widget); another room's token",
            _ROOMS + "test_a_page_gets_a_token_for_its_widgets_room_only",
        ),
        Principal.INVITE: Cell(
            "the link's room until the token expires; any room by name with tokens off",
            "a missing, forged, expired or other room's token (forbidden)",
            _TOKENS,
        ),
        Principal.HUB_USER: Cell("any room by name (the hub's role decides who is a user)"),
        Principal.LOCAL_USER: Cell(
            "any room by name with tokens off, as an invite link's page",
            "with tokens on, without a valid token",
            _TOKENS,
        ),
        Principal.REDIS_PEER: Cell(
            "members it writes, validated as a client's",
            "a forged or oversized member entry",
            _SEC + "test_redis.py::test_forged_members_in_a_room_hash_are_skipped",
        ),
        Principal.FOREIGN_PAGE: Cell(
            "nothing", "it never connects", _HOSTS + "test_a_rebound_name_is_refused_at_every_door"
        ),
    },
    Door.MINT: {
        Principal.OWN_KERNEL: Cell("any room (invite links, its widgets' pages)"),
        Principal.WIDGET_PAGE: Cell(
            "its widget's room",
            "another room (answered with no token)",
            _ROOMS + "test_a_page_gets_a_token_for_its_widgets_room_only",
        ),
        Principal.VOILA_KERNEL: Cell(
            "for a visitor's page, its widget's room",
            "another room the page names",
            _ROOMS + "test_a_page_gets_a_token_for_its_widgets_room_only",
        ),
        Principal.LOCAL_USER: Cell(
            "nothing", "it cannot read the runtime file, so never the token secret", _WRONG_PROOF
        ),
    },
    Door.ATTACH: {
        Principal.OWN_KERNEL: Cell(
            "with the runtime file's proof",
            "",
            _SHARED + "test_the_second_kernel_attaches_instead_of_hosting",
        ),
        Principal.WIDGET_PAGE: Cell("nothing", "kernel events before a proof", _NO_ATTACH),
        Principal.INVITE: Cell("nothing", "kernel events before a proof", _NO_ATTACH),
        Principal.HUB_USER: Cell(
            "a kernel, with its single-user server's hub token",
            "without it, or with a token the hub does not know",
            "tests/e2e/test_hub.py::test_without_the_hubs_word_nothing_connects",
        ),
        Principal.VOILA_KERNEL: Cell("as the user's own kernels"),
        Principal.LOCAL_USER: Cell("nothing", "a wrong proof closes the connection", _WRONG_PROOF),
    },
    Door.REGISTER: {
        Principal.OWN_KERNEL: Cell("its widgets' keys"),
        Principal.HUB_USER: Cell(
            "its widgets' keys",
            "a key another user's kernel registered",
            _HUB + "test_a_key_of_another_users_kernel_is_refused",
        ),
        Principal.VOILA_KERNEL: Cell("as the user's own kernels"),
        Principal.LOCAL_USER: Cell("nothing", "it cannot attach", _NO_ATTACH),
    },
    Door.CLAIM: {
        Principal.OWN_KERNEL: Cell("its widgets' rooms"),
        Principal.HUB_USER: Cell(
            "its widgets' rooms",
            "a room another user claimed or is in",
            _HUB + "test_a_room_of_another_user_cannot_be_claimed",
        ),
        Principal.VOILA_KERNEL: Cell("as the user's own kernels"),
        Principal.LOCAL_USER: Cell("nothing", "it cannot attach", _NO_ATTACH),
    },
    Door.HEAR: {
        Principal.OWN_KERNEL: Cell("rooms its widgets are or were in"),
        Principal.WIDGET_PAGE: Cell("its room's members, as a member"),
        Principal.INVITE: Cell("its room's members, as a member"),
        Principal.HUB_USER: Cell(
            "rooms their own widgets are in",
            "any other room",
            _HUB + "test_a_kernel_hears_only_rooms_its_users_widgets_are_in",
        ),
        Principal.VOILA_KERNEL: Cell("as the user's own kernels"),
        Principal.LOCAL_USER: Cell(
            "its room's members, as a member",
            "whether a room exists, through the other dialect's answers",
            _SEC + "test_oracle.py::test_the_tutorial_dialect_does_not_reveal_ipymeet_rooms",
        ),
    },
    Door.RELAY: {
        Principal.WIDGET_PAGE: Cell(
            "enter, leave and signal for its widget's room",
            "an enter for another room (forbidden, other_room)",
            _ROOMS + "test_the_kernel_route_relays_enter_for_the_widgets_room_only",
        ),
        Principal.VOILA_KERNEL: Cell(
            "for its visitor's page, as a widget's page",
            "another room the page names",
            _ROOMS + "test_the_kernel_route_relays_enter_for_the_widgets_room_only",
        ),
        Principal.REDIS_PEER: Cell(
            "events for this process's members, validated as a client's (never unpickled)",
            "a forged signal over the limits",
            _SEC + "test_redis.py::test_a_forged_signal_over_the_limits_never_reaches_a_member",
        ),
    },
}


def table_markdown() -> str:
    """:data:`TABLE` as docs/security.md shows it: one row per door and principal."""
    lines = ["| door | principal | allowed | refused | shown by |", "|---|---|---|---|---|"]
    for door, row in TABLE.items():
        for principal, cell in row.items():
            test = f"`{cell.test}`" if cell.test else ""
            lines.append(
                f"| {door.value} | {principal.value} | {cell.allows} | {cell.refuses} | {test} |"
            )
    return "\n".join(lines)


# -- hosts: the defence against DNS rebinding ---------------------------------------------------


def _machine_names() -> frozenset[str]:
    names = {socket.gethostname().lower()}
    with contextlib.suppress(OSError):  # no resolver at all
        names.add(socket.getfqdn().lower())
    return frozenset(n for n in names if n)


@dataclass(frozen=True)
class Hosts:
    """The names a signaller answers to (the ``Host`` of a request).

    On loopback: loopback names and addresses, and ``allowed``. Bound beyond loopback: also any
    IP address (a page on an address is not a rebound name) and the machine's own names. A name
    an attacker's DNS points at 127.0.0.1 is none of these, so a page of theirs gets nothing.
    ``check`` is False where the callers prove themselves otherwise (a JupyterHub service: the
    hub's proxy forwards the hub's public name, and every connection needs the hub's word).
    """

    allowed: frozenset[str] = frozenset()
    exposed: bool = False
    check: bool = True

    @classmethod
    def of(cls, settings: Settings, *, check: bool = True) -> Hosts:
        names = {n.lower() for n in settings.allowed_hosts}
        names.update(h for h in (urlsplit(o).hostname for o in settings.allowed_origins) if h)
        if settings.exposed:
            names.update(_machine_names())
            names.add(settings.host.lower())
        return cls(frozenset(names), settings.exposed, check)

    def allows(self, header: str | None) -> bool:
        """Whether a request with this ``Host`` header may pass (no header: not a browser)."""
        if not self.check or header is None:
            return True
        name = host_name(header)
        if is_loopback_host(name) or name in self.allowed:
            return True
        return self.exposed and is_ip(name)


FORBIDDEN_HOST = (
    "this signaller does not answer to the name {name!r}: open it as localhost or 127.0.0.1, or "
    "start it with --allow-host {name} (Settings.allowed_hosts) if that name is really its own"
)


def own_origin(request: Any) -> str:
    """The origin of a signaller's own pages as the browser that sent ``request`` sees it:
    https when served with TLS or behind a proxy that says so (``X-Forwarded-Proto``)."""
    forwarded = request.headers.get("X-Forwarded-Proto", "http").split(",")[0].strip()
    return f"{'https' if request.secure else forwarded}://{request.host}"


# -- refusals, logged once -------------------------------------------------------------------------


class RefusalLog:
    """One log line per kind of refusal and minute, with how many were not logged: a flood of
    refused requests cannot flood the log. Lines carry codes and names, never a secret."""

    PERIOD = 60.0
    MAX_KINDS = 256

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last: dict[str, tuple[float, int]] = {}

    def refused(self, door: Door, code: str, detail: str = "") -> None:
        kind = f"{door.value}/{code}"
        now = self._clock()
        last = self._last.get(kind)
        if last is not None and now - last[0] < self.PERIOD:
            self._last[kind] = (last[0], last[1] + 1)
            return
        if len(self._last) >= self.MAX_KINDS and kind not in self._last:
            self._last.clear()
        more = f" ({last[1]} more since the last line)" if last and last[1] else ""
        log.info("ipymeet: refused at '%s': %s %s%s", door.value, code, detail[:120], more)
        self._last[kind] = (now, 0)


# -- what the signaller asks ---------------------------------------------------------------------


class Vouchers(Protocol):
    """Who vouches for widget keys and callers besides the settings: the kernels attached to a
    shared signaller (server/kernel/kernels.py) or the hub's users (server/hub/service.py)."""

    def knows(self, client: str) -> bool:
        """Whether a kernel registered widget key ``client``."""

    async def wait_for_key(self, client: str) -> bool:
        """Whether ``client`` is known, or becomes known soon (a host that just took over)."""

    async def identify(self, sid: str, environ: dict[str, Any], auth: Any) -> str | None:
        """The caller's user ("" where there are no users), or None to refuse it."""


class Access:
    """A signaller's gatekeeper: the connect and enter doors (the kernels' doors are the
    functions below). One per :class:`~server.signaller.Signaller`.

    Example::

        access = Access(settings)
        access.check_request(request)          # raises Refused for a rebound Host
        user = await access.connect(sid, environ, auth)
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.hosts = Hosts.of(settings)
        self.refusals = RefusalLog()
        #: The widget keys a kernel's own signaller admits (None: any key; runner.py sets it).
        self.keys: Callable[[str], bool] | None = None
        #: The kernels (or the hub's users) that vouch for keys and callers, when there are any.
        self.vouchers: Vouchers | None = None

    def trust(self, vouchers: Vouchers, *, check_hosts: bool = True) -> None:
        """Let ``vouchers`` vouch for keys and callers (KernelHub.install, ServiceHub.install);
        ``check_hosts`` False behind a JupyterHub, whose proxy forwards the hub's own name."""
        self.vouchers = vouchers
        if not check_hosts:
            self.hosts = Hosts(check=False)

    # HTTP: every request but Socket.IO's, which Access.connect checks with the caller's key.

    def check_request(self, host: str | None) -> None:
        """Refuse (``forbidden_host``) a request whose Host is not one of this signaller's."""
        if not self.hosts.allows(host):
            raise self._forbidden_host(host)

    def origin_allowed(self, origin: str | None, request: Any) -> bool:
        """CORS: loopback pages, configured origins, and the origin of the request's own Host.

        The last is what a page behind jupyter-server-proxy sends: the proxy forwards Jupyter's
        Host (and, on its WebSocket path, no header that says it proxied). A page of a rebound
        DNS name sends it too: CORS cannot tell the two apart, so the connect door does
        (:meth:`connect`): a Host that is not one of the signaller's passes only with a widget
        key a kernel registered. Every other origin is refused here (HTTP 400)."""
        if origin is None:
            return True  # not a browser; CORS protects browsers only
        if origin in self.settings.allowed_origins:
            return True
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https"):
            return False
        if is_loopback_host(parts.hostname):
            return True
        if request is not None and origin == own_origin(request):
            return True
        self.refusals.refused(Door.CONNECT, "forbidden_origin", repr(origin[:100]))
        return False

    async def connect(self, sid: str, environ: Mapping[str, Any], auth: Any) -> str:
        """Door CONNECT for Socket.IO: the caller's user ("" where there are no users), or
        Refused. A Host the signaller does not answer to passes only with a widget key that a
        kernel registered (a widget's page through a proxy in front of Jupyter, which checked
        that Host itself)."""
        request = environ.get("aiohttp.request")
        host = request.headers.get("Host") if request is not None else None
        client = _client_of(auth)
        if not self.hosts.allows(host) and not (client and await self._knows(client)):
            raise self._forbidden_host(host)
        if self.vouchers is None:
            return ""
        user = await self.vouchers.identify(sid, dict(environ), auth)
        if user is None:
            self.refusals.refused(Door.CONNECT, "forbidden", "no credential the hub vouches for")
            raise v.Refused("forbidden", "sign in to the hub first: this service admits its users")
        return user

    async def enter(
        self, client: str, room: str, token: object, *, still_here: Callable[[], bool]
    ) -> None:
        """Door ENTER: a token for ``room`` when tokens are on; a widget key that a kernel
        registered when the page presents one. Raises Refused."""
        if token is not None and (not isinstance(token, str) or len(token) > 4096):
            raise v.bad("token must be a string")
        secret = self.settings.secret
        if secret is not None:
            try:
                tokens.verify(secret, room, token)
            except tokens.TokenError as refused:
                self.refusals.refused(Door.ENTER, "forbidden", refused.reason)
                raise v.Refused("forbidden", str(refused), reason=refused.reason) from None
        if client and not (await self._admits(client) and still_here()):
            self.refusals.refused(Door.ENTER, "unknown_widget")
            raise v.Refused(
                "unknown_widget",
                "this widget is not one of this kernel's (the kernel restarted, or the widget was "
                "closed): re-run the cell that shows the room",
            )

    def _forbidden_host(self, host: str | None) -> v.Refused:
        name = host_name(host or "")[:100]
        self.refusals.refused(Door.CONNECT, "forbidden_host", repr(name))
        return v.Refused("forbidden_host", FORBIDDEN_HOST.format(name=name))

    async def _knows(self, client: str) -> bool:
        """Whether a kernel registered widget key ``client``. A kernel that has just taken over
        hosting waits a moment for a key it does not know yet (server/kernel/kernels.py)."""
        if self.keys is not None and self.keys(client):
            return True
        return self.vouchers is not None and await self.vouchers.wait_for_key(client)

    async def _admits(self, client: str) -> bool:
        """Whether widget key ``client`` may enter: any key until a kernel restricts them."""
        return self.keys is None or await self._knows(client)


def _client_of(auth: Any) -> str:
    client = auth.get("client") if isinstance(auth, dict) else None
    return client if isinstance(client, str) and 0 < len(client) <= 64 else ""


# -- what the kernels' door asks -----------------------------------------------------------------
#
# On a user's shared signaller every attached kernel is the user's (the runtime file's proof), so
# these let everything through; on a JupyterHub service each kernel is some hub user's, and a
# user's kernel reaches only what that user's widgets hold. A user is a name; "" is the one user
# of a user's own signaller, and on the service stands for whoever no hub user is (a member whose
# connection the service does not hold, a claim of no hub user's kernel): never a hub user's own.


def may_register(user: str, owner_user: str | None) -> bool:
    """Whether a kernel of ``user`` may register a widget key whose current owner is a kernel of
    ``owner_user`` (None: nobody's yet): not another user's, whose page, frames and revocation
    the key carries."""
    return owner_user is None or owner_user == user


def may_hear(user: str, member_users: Iterable[str]) -> bool:
    """Whether a kernel of ``user`` may hear a room whose members belong to ``member_users``:
    only while one of them is the user's own (a room of theirs); always where there are no
    users (``user`` "": the user's own shared signaller)."""
    return user == "" or user in set(member_users)


def may_claim(user: str, claimers: Iterable[str], member_users: Iterable[str]) -> bool:
    """Whether a kernel of ``user`` may set a room's capacity that kernels of ``claimers`` claim
    now and whose members belong to ``member_users``: not a room another user claimed or is in."""
    if user == "":
        return True
    return set(claimers) <= {user} and set(member_users) <= {user}


def widget_room_allows(widget_room: str, asked: object) -> bool:
    """Whether a widget's page may have a token minted, or an ``enter`` relayed, for room
    ``asked``: only its widget's own room, which Python set."""
    return bool(widget_room) and asked == widget_room
