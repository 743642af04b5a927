"""The ipymeet signaller: Socket.IO (python-socketio on aiohttp), both dialects of docs/protocol.md.

- :func:`create_app` builds the aiohttp application;
- :class:`SignallerThread` serves it on a background thread (how a kernel hosts it);
- :func:`kernel_signaller` is this process's lazily started instance;
- ``ipymeet serve`` (:mod:`ipymeet.server.cli`) runs it as a process of its own.
"""

from .app import create_app
from .registry import Member, Registry
from .runner import SignallerThread, kernel_signaller
from .settings import Settings
from .signaller import Signaller

__all__ = [
    "Member",
    "Registry",
    "Settings",
    "Signaller",
    "SignallerThread",
    "create_app",
    "kernel_signaller",
]
