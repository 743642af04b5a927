"""The ipymeet signaller: Socket.IO (python-socketio on aiohttp), both dialects of docs/protocol.md.

- :func:`create_app` builds the aiohttp application;
- :class:`SignallerThread` serves it on a background thread (how a kernel hosts it);
- :func:`kernel_signaller` is this process's lazily started instance: inside Jupyter a
  :class:`KernelSignaller`, the signaller a user's kernels share (hosted by one, attached to by
  the others; sharing.py, kernels.py);
- ``ipymeet serve`` (:mod:`ipymeet.server.cli`) runs it as a process of its own.
"""

from .app import create_app
from .registry import Member, Registry
from .runner import SignallerThread, kernel_signaller
from .settings import Settings
from .sharing import KernelSignaller
from .signaller import Signaller

__all__ = [
    "KernelSignaller",
    "Member",
    "Registry",
    "Settings",
    "Signaller",
    "SignallerThread",
    "create_app",
    "kernel_signaller",
]
