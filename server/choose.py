"""Which signaller a kernel's widgets use: the hub's ipymeet service, the one its user's kernels
share, or one of its own.

The chooser sits above the pieces it chooses among (server/hub/client.py, server/kernel/), none of
which knows of it. ``kernel_signaller()`` starts the one it chooses on first use and keeps it for
the process; widgets (widget/binding.py) and ``ipymeet.kernel_signaller`` call it.
"""

from __future__ import annotations

import atexit
import logging
import threading

from .core.settings import Settings
from .hub import client as hubclient
from .kernel import sharing
from .kernel.runner import SignallerThread, kernel_port
from .kernel.sharing import KernelSignaller

log = logging.getLogger("ipymeet.server")

_kernel_lock = threading.Lock()
_kernel_signaller: SignallerThread | None = None
_shared_signaller: KernelSignaller | None = None
#: The hub's answer that it has no ipymeet service for this kernel (not asked again).
_no_service: object = None


def kernel_signaller(settings: Settings | None = None) -> SignallerThread | KernelSignaller:
    """This process's signaller, started on first use.

    In a kernel of a JupyterHub's single-user server whose hub runs ipymeet's service (the hub's
    API tells the kernel where, server/hub/client.py), or with ``IPYMEET_SIGNALLER`` set by hand:
    that service, which this kernel attaches to with its hub token, wherever the kernel runs. If
    it cannot be reached yet, the signaller returned is detached, says why in its ``problem``
    and keeps trying; a value of the environment that is wrong raises
    ``hubclient.ServiceUnreachable`` (the widget shows either).

    Otherwise, inside a kernel or a marimo app (or with ``IPYMEET_SHARE=1``), the signaller this
    user's kernels and marimo apps share on this machine: hosted by the first of them, attached
    to by the others (server/kernel/sharing.py). Otherwise (or with ``IPYMEET_SHARE=0``) one of this
    process's own: 127.0.0.1, in a kernel on the port :func:`kernel_port` gives unless it is
    taken, else a free one.

    Settings come from ``IPYMEET_*`` environment variables (:meth:`Settings.from_env`) unless given;
    they apply only to the first call, which starts it (and, shared, only if this kernel hosts).
    """
    global _kernel_signaller, _shared_signaller, _no_service

    with _kernel_lock:
        if isinstance(_shared_signaller, hubclient.ServiceSignaller) and _shared_signaller.running:
            return _shared_signaller
        source = hubclient.source_from_env()
        if source is not None and source != _no_service:
            server = hubclient.ServiceSignaller(source, settings or Settings.from_env())
            try:
                _shared_signaller = server.start()
            except hubclient.NoService as none:
                # Asked once per process: a hub without ipymeet's service answers the same later.
                log.info("ipymeet: no hub service for this kernel (%s): one of its own", none)
                _no_service = source
            else:
                atexit.register(server.stop)
                return server
        if sharing.enabled():
            if _shared_signaller is None or not _shared_signaller.running:
                _shared_signaller = sharing.KernelSignaller(settings or Settings.from_env())
                _shared_signaller.start()
                atexit.register(_shared_signaller.stop)
            return _shared_signaller
        if _kernel_signaller is None or not _kernel_signaller.running:
            settings = settings or Settings.from_env()
            _kernel_signaller = _start_on_kernel_port(settings)
            atexit.register(_kernel_signaller.stop)
        return _kernel_signaller


def _start_on_kernel_port(settings: Settings) -> SignallerThread:
    port = kernel_port() if settings.port == 0 else 0
    if port:
        try:
            return SignallerThread(settings.with_(port=port)).start()
        except RuntimeError:  # taken (by another program, or a kernel whose file hashed alike)
            pass
    return SignallerThread(settings).start()
