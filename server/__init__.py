"""The ipymeet signaller: Socket.IO (python-socketio on aiohttp), both dialects of docs/protocol.md.

Its folders are its programs, the arrows of their imports pointing one way (core ← kernel,
cluster, hub ← choose, cli; tests/unit/test_layers.py keeps them so):

- ``core/``: the signalling core every deployment shares (:func:`create_app`, the
  :class:`Signaller`, its rooms, checks, access model, settings);
- ``kernel/``: the signaller a kernel hosts or attaches to: :class:`SignallerThread` (a
  signaller on a background thread), the one a user's kernels share
  (:class:`KernelSignaller`: hosted by one, attached to by the others, taken over when it ends);
- ``cluster/``: rooms shared by several ``ipymeet serve`` processes through Redis;
- ``hub/``: ``ipymeet serve --jupyterhub`` (the service) and the kernels' client of it;
- ``choose.py``: :func:`kernel_signaller`, which of these a kernel's widgets use;
- ``cli.py``: ``ipymeet serve`` and ``ipymeet token``.
"""

from .choose import kernel_signaller
from .core.app import create_app
from .core.registry import Member, Registry
from .core.settings import Settings
from .core.signaller import Signaller
from .kernel.runner import SignallerThread
from .kernel.sharing import KernelSignaller

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
