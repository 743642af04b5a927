"""A widget's tie to the kernel's own signaller.

The kernel's signaller (``server.kernel_signaller``) serves every widget of the kernel that has no
``signaling_url``. Through :class:`KernelBinding` a widget: lets its own browser in (the signaller
admits only keys of this kernel's open widgets), hears when its room's members change (on the
signaller's thread, live while a cell is busy) and reads them, and mints join tokens for its
browser and its invite links. It uses only ``SignallerThread``'s public methods.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ..server import SignallerThread, kernel_signaller
from ..server.registry import Member
from ..server.settings import TLS, Settings

#: Lifetime of the tokens a widget's own browser gets from the kernel: it uses them at once.
WIDGET_TOKEN_TTL = 600.0

# The bindings of this kernel, for admission and for ``secure=True`` reaching every widget.
_bindings: weakref.WeakSet[KernelBinding] = weakref.WeakSet()
_bindings_lock = threading.Lock()


def kernel_signaller_for(host: str | None, tls: TLS) -> SignallerThread:
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
            raise ValueError(
                f"the kernel's signaller is already running with {key}={have[key]!r}, so "
                f"{key}={value!r} cannot apply: {key} takes effect only when it starts. "
                "Pass it to the first VideoRoom of the kernel (or restart the kernel)."
            )
    return server


def _tls_key(tls: TLS) -> Any:
    return tls if tls is None or tls == "self-signed" else tuple(str(path) for path in tls)


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


def _admitted(client: str) -> bool:
    """Whether ``client`` is the key of an open widget of this kernel. A view left over from
    before a kernel restart reconnects to the new kernel's signaller, on the same port, and must
    not come back as a member that no code of this kernel can see or end."""
    with _bindings_lock:
        bindings = list(_bindings)
    return any(binding.client == client and binding.open for binding in bindings)


def require_tokens(server: SignallerThread) -> None:
    """Make the kernel's signaller require join tokens from now on, for every room of the kernel:
    each widget on it learns so (its browser then asks for tokens)."""
    server.require_tokens()
    with _bindings_lock:
        bindings = [b for b in _bindings if b.server is server and b.open]
    for bound in bindings:
        callback = bound._on_tokens_required()
        if callback is not None:
            callback()


def peer(peer_id: str, name: str, report: Mapping[str, Any]) -> dict[str, Any]:
    """One entry of ``peers``: membership plus what the browser reported of that connection."""
    return {
        "id": peer_id,
        "name": name,
        "connection": str(report.get("connection", "new")),
        "audio": bool(report.get("audio", True)),
        "video": bool(report.get("video", True)),
        "screen": bool(report.get("screen", False)),
    }


class KernelBinding:
    """One widget (its key ``client``) on the kernel's signaller ``server``.

    ``on_members(room)`` is called on the signaller's thread after the members of a room change;
    ``on_tokens_required()`` once the signaller requires join tokens. Both are held weakly (bound
    methods of the widget), so the binding does not keep its widget alive.
    """

    def __init__(
        self,
        server: SignallerThread,
        client: str,
        *,
        on_members: Callable[[str], None],
        on_tokens_required: Callable[[], None],
    ) -> None:
        self.server = server
        self.client = client
        self._on_members = weakref.WeakMethod(on_members)
        self._on_tokens_required = weakref.WeakMethod(on_tokens_required)
        self._closed = False
        with _bindings_lock:
            _bindings.add(self)
        server.admit(_admitted)
        self._unsubscribe = server.subscribe(self._members_changed)

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

    def browser_token(self, room: str) -> str | None:
        """A short-lived join token for this widget's own browser (None: none needed)."""
        return self.server.mint(room, WIDGET_TOKEN_TTL) if self.requires_tokens else None

    def close(self) -> None:
        """Stop hearing the signaller; the widget's browser is no longer admitted."""
        self._closed = True
        self._unsubscribe()
        with _bindings_lock:
            _bindings.discard(self)
