"""Python without what only POSIX has, as on Windows: the tests' POSIX-less mode.

Python imports this module as ``sitecustomize`` at start-up when this folder is on PYTHONPATH
(``tests.support.posixless_env()``, .ci/test's POSIX-less step), before anything imports ipymeet,
and so do the Pythons the tests start with that environment (``ipymeet serve``, a kernel):

- ``import fcntl``, ``pwd``, ``grp``, ``termios`` or ``resource`` raises ModuleNotFoundError, and so
  does ``import uvloop`` (pyproject.toml installs it everywhere but on Windows);
- ``os.getuid``, ``os.geteuid``, ``os.getgid``, ``os.getegid``, ``os.fchmod`` and ``os.O_NOFOLLOW``
  are gone.

What it cannot change: ``sys.platform`` and ``os.name`` still say Linux, so code that chooses its
branch by the system's name (the standard library; jupyter_core's ``secure_write``, which sets a
Windows ACL only where ``os.name == "nt"``) takes its POSIX one, and the system calls are Linux's.
ipymeet chooses by what is there (``server.runtime.posix()``), so it takes its Windows branch.

Libraries that choose their code by the system's name are imported before the rest is hidden,
and keep all of it (their own ``os``): on Windows they would take their Windows branch, here they
take their POSIX one, which may need what is hidden. filelock: the OS lock it takes on Windows
(``LockFileEx``) cannot run here, so its POSIX ``flock`` stands for it. platformdirs (jupyter_core
finds Jupyter's folders with it): its Linux module takes ``os.geteuid`` at import. psutil (the
tests'): its Linux module imports ``resource``. Their modules imported later than this would see
the stripped ``os``.
"""

from __future__ import annotations

import os
import sys
import types

HIDDEN_MODULES = frozenset({"fcntl", "pwd", "grp", "termios", "resource", "uvloop"})
HIDDEN_OS = ("getuid", "geteuid", "getgid", "getegid", "fchmod", "O_NOFOLLOW")
#: Libraries that choose their branch by ``sys.platform``: they keep POSIX (see above).
KEPT = ("filelock", "platformdirs", "psutil")
#: Set in the processes where this module ran (a test can check that its child did).
ACTIVE = "IPYMEET_POSIXLESS"


class HidePosix:
    """A meta path finder that finds the hidden modules missing."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name.partition(".")[0] in HIDDEN_MODULES:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


def _keep(library: str) -> None:
    """Import ``library`` with everything there, and give its modules an ``os`` of their own."""
    try:
        __import__(library)
    except ImportError:
        return
    whole = types.ModuleType("os", os.__doc__)
    whole.__dict__.update(os.__dict__)
    for name, module in list(sys.modules.items()):
        if name.partition(".")[0] == library and getattr(module, "os", None) is os:
            module.os = whole  # type: ignore[attr-defined]


def hide() -> None:
    for library in KEPT:
        _keep(library)
    for name in list(sys.modules):
        if name.partition(".")[0] in HIDDEN_MODULES:
            del sys.modules[name]  # filelock keeps its reference to fcntl; nobody else gets it
    sys.meta_path.insert(0, HidePosix())
    for name in HIDDEN_OS:
        if hasattr(os, name):
            delattr(os, name)
    os.environ[ACTIVE] = "1"


hide()
