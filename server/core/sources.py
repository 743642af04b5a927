"""Secrets named on a command line or in the environment, never given there themselves:
``env:NAME`` (an environment variable) or ``file:PATH`` (a file, which should be the user's
alone). ``--secret`` (join tokens) and ``--turn-secret`` read theirs here."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("ipymeet.server")


def read_source(
    source: str,
    option: str,
    *,
    make: Callable[[], str] | None = None,
    hint: str = "use env:NAME or file:PATH (never the secret itself: it would show in `ps`)",
) -> str:
    """The stripped text ``source`` names, for the setting ``option`` (named in every error).

    With ``make``, a missing file is created (mode 0600) holding ``make()``; without it, a missing
    file is an error. A file others can read is taken, with a warning. Anything else than
    ``env:``/``file:`` is refused with ``hint``, and not echoed: it may be the secret itself.
    """
    kind, _, where = source.partition(":")
    if kind == "env" and where:
        value = os.environ.get(where)
        if value is None:
            raise ValueError(f"{option} env:{where}: the environment variable {where} is not set")
        return value.strip()
    if kind != "file" or not where:
        raise ValueError(f"{option}: {hint}")
    path = Path(where).expanduser()
    if make is not None and not path.exists():
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as out:
            out.write(make() + "\n")
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        raise ValueError(f"{option} file:{where}: no such file") from None
    except OSError as error:
        raise ValueError(f"{option} file:{where}: cannot read it ({error.strerror})") from None
    # Only POSIX's mode bits say who else may read it (on Windows every writable file shows 0o666;
    # its ACL decides, and is not looked at here).
    if hasattr(os, "getuid") and path.stat().st_mode & 0o077:
        log.warning("ipymeet: warning: %s can be read by other users; chmod 600 it", path)
    return text
