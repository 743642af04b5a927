"""What the JupyterHub service (server/hub/service.py) and the kernels' client of it
(server/hub/client.py) both know: the names they meet under. The two halves import this module and
never each other: the service runs where the hub runs it, the client in every user's kernel.
"""

from __future__ import annotations

#: The hub's service name a kernel looks for unless :data:`SERVICE_ENV` names another.
DEFAULT_SERVICE = "ipymeet"
#: The kernel's environment variable naming the hub's ipymeet service, when it is not "ipymeet".
SERVICE_ENV = "IPYMEET_HUB_SERVICE"
#: The kernel's environment variable giving the service's URL by hand (as the kernel reaches it):
#: when set, it wins over asking the hub.
SIGNALLER_ENV = "IPYMEET_SIGNALLER"
#: The Socket.IO ``auth`` field in which a kernel sends its single-user server's token.
TOKEN_AUTH = "jupyterhub_token"


def service_prefix(base_url: str, name: str) -> str:
    """The path at which the hub's proxy serves service ``name`` (JupyterHub's rule: the hub's
    base URL, ``services/``, the name), e.g. ``/services/ipymeet/``."""
    return f"{slashed(base_url)}services/{name}/"


def slashed(path: str) -> str:
    """``path`` with one leading and one trailing slash."""
    path = path if path.startswith("/") else f"/{path}"
    return path if path.endswith("/") else f"{path}/"
