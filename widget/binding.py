"""A widget's tie to the kernel's signaller.

The kernel's signaller (``server.kernel_signaller``) serves every widget of the kernel that has no
``signaling_url``: in a kernel, the one this user's kernels share (server/kernel/sharing.py: hosted
by one of them, attached to by the others), else one of this process's own. Through
:class:`KernelBinding` a widget: lets its own browser in (it registers its key: the signaller
admits only keys of open widgets of the kernels that share it), hears when its room's members
change (on the signaller's or the attach thread, live while a cell is busy) and reads them, mints
join tokens for its browser and its invite links, keeps its room's capacity while it has one
(``max_peers``: of its room only, since the signaller is shared), and keeps ``_port`` where the
signaller is (it can move when a kernel takes over hosting). It uses only the public methods
``SignallerThread`` and ``KernelSignaller`` share.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeAlias
from urllib.parse import parse_qs, urlsplit

from ..server import SignallerThread, kernel_signaller
from ..server.core import capacity
from ..server.core.registry import Member
from ..server.core.settings import TLS, Settings
from ..server.hub.client import ServiceUnreachable

# Raised by kernel_signaller_for when the kernel's signaller cannot be looked for (a wrong value
# in the kernel's environment: ServiceUnreachable, one kind of it) or neither joined nor started:
# the widget shows it (unavailable_message) and its cell returns.
from ..server.kernel.sharing import KernelSignaller
from ..server.kernel.sharing import SignallerUnavailable as SignallerUnavailable
from .contract import ErrorCode

#: The kernel's signaller: of its own, or the one shared by this user's kernels.
KernelServer: TypeAlias = "SignallerThread | KernelSignaller"

#: Lifetime of the tokens a widget's own browser gets from the kernel: it uses them at once.
WIDGET_TOKEN_TTL = 600.0


# The bindings of this kernel, for admission and for ``secure=True`` reaching every widget.
_bindings: weakref.WeakSet[KernelBinding] = weakref.WeakSet()
_bindings_lock = threading.Lock()


def kernel_signaller_for(host: str | None, tls: TLS) -> KernelServer:
    """The kernel's signaller, started with ``host``/``tls`` if it is not running yet."""
    wanted: dict[str, Any] = {}
    if host is not None:
        wanted["host"] = host
    if tls is not None:
        wanted["tls"] = _tls_key(tls)
    server = kernel_signaller(Settings.from_env(**wanted) if wanted else None)
    have = {"host": server.settings.host, "tls": _tls_key(server.settings.tls)}
    for key, value in wanted.items():
        if have[key] != value:
            if server.shared and not server.hosting:
                raise ValueError(
                    f"this kernel shares the signaller another kernel of yours hosts, with "
                    f"{key}={have[key]!r}, so {key}={value!r} cannot apply: {key} takes effect "
                    "only where it starts. Set IPYMEET_SHARE=0 for a signaller of this kernel's "
                    "own, or pass it in the kernel that starts the shared one."
                )
            raise ValueError(
                f"the kernel's signaller is already running with {key}={have[key]!r}, so "
                f"{key}={value!r} cannot apply: {key} takes effect only when it starts. "
                "Pass it to the first VideoRoom of the kernel (or restart the kernel)."
            )
    return server


def unavailable_message(why: Exception) -> str:
    """The widget's ``error`` when the kernel's signaller cannot be looked for at all (a wrong
    value in the environment), or neither joined nor started (what to do is in ``why``)."""
    if isinstance(why, ServiceUnreachable):
        return f"{_sentence(str(why))} Fix the kernel's environment, then restart the kernel."
    return _sentence(str(why))


def problem_message(problem: str) -> str:
    """The widget's ``error`` while the kernel's signaller is not reached (``server.problem``)."""
    return f"{_sentence(problem)} ipymeet keeps trying: the room connects once it answers."


def _sentence(text: str) -> str:
    text = text.strip()
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else f"{text}."


def _tls_key(tls: TLS) -> Any:
    if tls is None or tls == "self-signed":
        return tls
    return tuple(str(Path(path).resolve()) for path in tls)


def token_of(token: str) -> str:
    """A join token, given as itself or inside an invite link (``...?room=r&token=T``)."""
    if "://" in token or "?" in token:
        found = parse_qs(urlsplit(token).query).get("token")
        if not found:
            raise ValueError("that invite link carries no token")
        token = found[0]
    if not token or len(token) > 4096 or not token.isprintable():
        raise ValueError("token must be a join token or an invite link that carries one")
    return token


def require_tokens(server: KernelServer) -> None:
    """Make the kernel's signaller require join tokens from now on, for every room of the kernel:
    each widget on it learns so (its browser then asks for tokens)."""
    server.require_tokens()
    with _bindings_lock:
        bindings = [b for b in _bindings if b.server is server and b.open]
    for bound in bindings:
        bound._follow_server()


def checked_max_peers(max_peers: int | None) -> int | None:
    """``max_peers`` if None or 2-64, else ValueError (as ``Settings`` says it)."""
    return None if max_peers is None else capacity.check_max_peers(max_peers)


def peer(peer_id: str, name: str, report: Mapping[str, Any]) -> dict[str, Any]:
    """One entry of ``peers``: membership plus what the browser reported of that connection.
    A muted member is never ``speaking``, whatever a report says."""
    audio = bool(report.get("audio", True))
    return {
        "id": peer_id,
        "name": name,
        "connection": str(report.get("connection", "new")),
        "audio": audio,
        "video": bool(report.get("video", True)),
        "screen": bool(report.get("screen", False)),
        "speaking": audio and bool(report.get("speaking", False)),
    }


class KernelBinding:
    """One widget (its key ``client``) on the kernel's signaller ``server``.

    ``on_members(room)`` is called on the signaller's (or the attach) thread after the members of
    a room change; ``on_tokens_required()`` once the signaller requires join tokens (also when
    another kernel sharing it turned them on). ``follow_port``, a widget, has its ``_port`` (and
    ``_invite_base``, where it has one) kept at the signaller's port (and public URL). All three
    are held weakly, so the binding does not keep its widget alive; when the binding goes (its
    widget is gone), its key is no longer admitted.
    """

    def __init__(
        self,
        server: KernelServer,
        client: str,
        *,
        on_members: Callable[[str], None],
        on_tokens_required: Callable[[], None],
        follow_port: Any = None,
    ) -> None:
        self.server = server
        self.client = client
        self._on_members = weakref.WeakMethod(on_members)
        self._on_tokens_required = weakref.WeakMethod(on_tokens_required)
        self._port_holder = None if follow_port is None else weakref.ref(follow_port)
        self._closed = False
        #: The release of this widget's claim on its room's capacity (see :meth:`hold_capacity`).
        self._claim: list[Callable[[], None]] = [_nothing]
        self._claimed: tuple[str, int] | None = None
        with _bindings_lock:
            _bindings.add(self)
        # The server holds these two listeners, which hold the binding only weakly.
        this = weakref.ref(self)

        def members_changed(room: str) -> None:
            bound = this()
            if bound is not None:
                bound._members_changed(room)

        def server_changed() -> None:
            bound = this()
            if bound is not None:
                bound._follow_server()

        unsubscribe = (server.subscribe(members_changed), server.on_change(server_changed))
        server.register(client)
        # The hub's ipymeet service (server/hub/client.py): the page reaches it at a path of its own
        # origin, not at the kernel's port.
        page_url = getattr(server, "page_url", "")
        if page_url and follow_port is not None and hasattr(follow_port, "signaling_url"):
            follow_port.set_trait("signaling_url", page_url)
        self._release = weakref.finalize(self, _release, server, client, unsubscribe, self._claim)
        self._show_problem(follow_port)

    @property
    def open(self) -> bool:
        return not self._closed and self._on_members() is not None

    @property
    def requires_tokens(self) -> bool:
        return bool(self.server.requires_tokens)

    def _members_changed(self, room: str) -> None:
        callback = self._on_members()
        if callback is not None and not self._closed:
            callback(room)

    def peers(self, room: str, reported: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
        """The others in ``room`` (none unless this widget's browser is in it too), with what
        its browser ``reported`` of each connection (by peer id)."""
        members: list[Member] = self.server.members(room) if room else []
        if not any(member.client == self.client for member in members):
            return []
        return [
            peer(member.id, member.name, reported.get(member.id, {}))
            for member in members
            if member.client != self.client
        ]

    def _follow_server(self) -> None:
        """The signaller changed (a takeover, tokens turned on by any kernel): follow it."""
        if not self.open:
            return
        holder = self._port_holder() if self._port_holder is not None else None
        if holder is not None:
            for trait, value in (
                ("_port", self.server.port),
                ("_invite_base", self.server.public_url),
            ):
                if hasattr(holder, trait) and getattr(holder, trait) != value:
                    holder.set_trait(trait, value)
        self._show_problem(holder)
        callback = self._on_tokens_required()
        if callback is not None and self.requires_tokens:
            callback()

    def _show_problem(self, holder: Any) -> None:
        """The widget's ``error`` says why the signaller is not reached yet (the hub's service:
        ``server.problem``), and clears when it is."""
        if holder is None or not hasattr(holder, "error_code"):
            return
        problem = str(getattr(self.server, "problem", ""))
        if problem:
            message = problem_message(problem)
            if holder.error != message:
                with holder.hold_sync():
                    holder.error = message
                    holder.error_code = ErrorCode.SIGNALLER_UNREACHABLE
        elif holder.error_code == ErrorCode.SIGNALLER_UNREACHABLE:
            with holder.hold_sync():
                holder.error = ""
                holder.error_code = ErrorCode.NONE

    def hold_capacity(self, room: str, max_peers: int | None) -> None:
        """Have ``room`` hold ``max_peers`` (the widget's room; "" or None: no claim) instead of
        the signaller's default, for as long as the widget is open and in it: the claim on its
        previous room goes, which then holds what it held before."""
        wanted = (room, max_peers) if room and max_peers is not None and not self._closed else None
        if wanted == self._claimed:
            return
        release, self._claim[0] = self._claim[0], _nothing
        release()
        self._claimed = wanted
        if wanted is not None:
            try:
                self._claim[0] = self.server.set_room_capacity(room, wanted[1])
            except ValueError:  # refused (a hub's service: another user's room); nothing held
                self._claimed = None
                raise

    def browser_token(self, room: str) -> str | None:
        """A short-lived join token for this widget's own browser (None: none needed)."""
        return self.server.mint(room, WIDGET_TOKEN_TTL) if self.requires_tokens else None

    def close(self) -> None:
        """Stop hearing the signaller; the widget's browser is no longer admitted."""
        self._closed = True
        self._release()
        with _bindings_lock:
            _bindings.discard(self)


def _nothing() -> None:
    pass


def _release(
    server: KernelServer,
    client: str,
    unsubscribe: tuple[Callable[[], None], ...],
    claim: list[Callable[[], None]],
) -> None:
    """A binding's end (closed, or collected with its widget): its key is admitted no more, and
    its room holds what it held before."""
    for stop in unsubscribe:
        stop()
    claim[0]()
    server.unregister(client)
