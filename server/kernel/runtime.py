"""The runtime file of a user's shared signaller, and the lock beside it (server/kernel/sharing.py).

``ipymeet-signaller.json`` in Jupyter's runtime directory says where the hosting kernel listens
and holds the secret the user's kernels check each other with: ``{"version": 1, "port", "pid",
"url", "secret" (hex, 32 bytes), "kernel"}``. It is written as Jupyter writes its own connection
files (``jupyter_core.paths.secure_write``: mode 0600 on POSIX, an ACL of the user's on Windows),
atomically (a private temporary file, then a rename), and read only when it is a regular file, not
a link, and, on POSIX, this user's, that no one else may read or write. ``ipymeet-signaller.lock``
beside it (``filelock``: ``flock`` on POSIX, ``LockFileEx`` on Windows; the system lets go when
its process dies) makes "find or host" one step at a time across the user's processes.

Nothing here needs a POSIX-only module at import: what only POSIX has (uids, mode bits, signal 0)
is asked for where it is used, and tested by what the system has, not by its name
(:func:`posix`), so tests/posixless checks the other branch on Linux too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import hashlib
import json
import logging
import os
import secrets
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import filelock

log = logging.getLogger("ipymeet.server")

RUNTIME_FILE = "ipymeet-signaller.json"
LOCK_FILE = "ipymeet-signaller.lock"
FILE_VERSION = 1
SECRET_BYTES = 32
#: How long "find or host" waits for another process's turn at the lock.
LOCK_TIMEOUT = 30.0
#: The ports :func:`user_port` draws from: below Linux's ephemeral range (32768-60999).
PORT_BASE, PORT_SPAN = 20000, 12000


def posix() -> bool:
    """Whether this system has POSIX's users and file modes (``os.getuid``): not Windows."""
    return hasattr(os, "getuid")


def user_port(user: str | None = None) -> int:
    """The port a user's shared signaller is hosted on unless ``IPYMEET_PORT`` says otherwise:
    drawn from 20000-31999 by a hash of the user's login name (``getpass.getuser()``: ``LOGNAME``,
    ``USER``, ``LNAME`` or ``USERNAME``, else the password database), so that users of one machine
    differ, on every system alike.

    Where no name can be had (a container's uid with no entry and no ``USER``), the hash of ""
    (such users may then meet on one port: the second one's kernel finds it taken and hosts on a
    free one, as with any squatter). Another local user can compute the port as before; the
    runtime file's secret, not the port, is what the user's kernels trust.
    """
    if user is None:
        try:
            user = getpass.getuser()
        except (ImportError, KeyError, OSError):  # no pwd (Windows), no entry, no name (3.13)
            user = ""
    digest = hashlib.sha256(f"ipymeet-signaller:{user}".encode()).digest()
    return PORT_BASE + int.from_bytes(digest[:4], "big") % PORT_SPAN


def runtime_dir() -> Path:
    """Jupyter's runtime directory (``JUPYTER_RUNTIME_DIR`` honoured), made as Jupyter's own apps
    make it (``ensure_dir_exists``, 0700 on POSIX) if missing. On Windows it is in the user's
    profile (``%APPDATA%\\jupyter\\runtime``), which only the user, SYSTEM and Administrators
    may enter; a ``JUPYTER_RUNTIME_DIR`` elsewhere must be as private."""
    from jupyter_core.paths import jupyter_runtime_dir
    from jupyter_core.utils import ensure_dir_exists

    path = Path(jupyter_runtime_dir())
    ensure_dir_exists(path, mode=0o700)
    return path


@dataclass(frozen=True)
class RuntimeInfo:
    """The runtime file: where the host listens and the secret its kernels share."""

    port: int
    pid: int
    url: str
    secret: bytes = dataclasses.field(repr=False)
    #: The hosting kernel's id: a host removes the file on exit only while it is its own.
    kernel: str = ""

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": FILE_VERSION,
                "port": self.port,
                "pid": self.pid,
                "url": self.url,
                "secret": self.secret.hex(),
                "kernel": self.kernel,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> RuntimeInfo:
        """Parse the file; ValueError if it is not one this version wrote."""
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("version") != FILE_VERSION:
            raise ValueError("not a version-1 ipymeet runtime file")
        port, pid, url = data.get("port"), data.get("pid"), data.get("url")
        secret, kernel = data.get("secret"), data.get("kernel", "")
        if not (isinstance(port, int) and not isinstance(port, bool) and 0 < port <= 65535):
            raise ValueError("bad port")
        if not (isinstance(pid, int) and not isinstance(pid, bool) and pid > 0):
            raise ValueError("bad pid")
        if (
            not isinstance(url, str)
            or not url.startswith(("http://", "https://"))
            or len(url) > 300
        ):
            raise ValueError("bad url")
        if not isinstance(secret, str) or len(secret) != 2 * SECRET_BYTES:
            raise ValueError("bad secret")
        if not isinstance(kernel, str) or len(kernel) > 64:
            raise ValueError("bad kernel")
        return cls(port, pid, url, bytes.fromhex(secret), kernel)


def read_runtime(path: Path) -> RuntimeInfo | None:
    """The runtime file at ``path``, or None: missing, unreadable, a link, not a regular file, on
    POSIX not this user's or readable or writable by others, or not one this version wrote."""
    try:
        # O_NOFOLLOW where there is one (not on Windows); the lstat below refuses a link anywhere.
        # O_BINARY (Windows only): bytes as written, the text layer below decodes them.
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
        fd = os.open(path, flags)
    except OSError:
        return None
    try:
        opened, named = os.fstat(fd), os.lstat(path)
        if not (
            stat.S_ISREG(named.st_mode)
            and os.path.samestat(named, opened)  # what was opened is what the name is
            and _private(opened)
        ):
            log.warning("ipymeet: ignoring %s: it is not this user's private file", path)
            return None
        with os.fdopen(fd, encoding="utf-8", closefd=False) as handle:
            return RuntimeInfo.from_json(handle.read(4096))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    finally:
        os.close(fd)


def _private(info: os.stat_result) -> bool:
    """Whether an opened file is this user's own, that no one else may read or write.

    On POSIX: its owner is this uid and its mode gives nothing to group or others. Windows has
    neither (``st_uid`` is 0 and ``st_mode`` tells only the read-only flag; who may open a file is
    its ACL): there the file is taken as private because of where it is, the user's own runtime
    directory (see :func:`runtime_dir`), and how it got there (:func:`write_runtime`)."""
    if not posix():
        return True
    return info.st_uid == os.getuid() and not info.st_mode & 0o077


def write_runtime(path: Path, info: RuntimeInfo) -> None:
    """Write the runtime file atomically: a private temporary file, then a rename over it.

    The temporary file is written with ``jupyter_core.paths.secure_write``, as Jupyter writes its
    connection and server files. On POSIX it is opened with mode 0600 and refused (RuntimeError)
    unless it has that mode (a umask that takes the owner's bits away fails it). On Windows it
    is created empty, then its ACL is replaced by one that lets in only the user (read, write,
    delete) and Administrators (all), before a byte is written; a rename within the folder keeps
    that ACL. ``JUPYTER_ALLOW_INSECURE_WRITES=1`` skips both, with a warning, as for Jupyter's
    own files. Its random name in the user's own folder is not one anybody else can prepare.
    """
    from jupyter_core.paths import secure_write

    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        with secure_write(str(temporary)) as handle:
            handle.write(info.to_json())
            handle.flush()
            os.fsync(handle.fileno())
        _replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise


def _replace(source: Path, target: Path, attempts: int = 40) -> None:
    """Rename ``source`` over ``target``. Windows refuses (PermissionError) while another process
    has ``target`` open: ipymeet reads it only under the lock its writers hold too, so that is
    someone else (a virus scanner, an indexer) for a moment: try again for up to 2 s there."""
    for attempt in range(attempts):
        try:
            source.replace(target)
            return
        except PermissionError:
            if posix() or attempt == attempts - 1:
                raise
            time.sleep(0.05)


def remove_runtime(path: Path, kernel: str) -> bool:
    """Remove the runtime file if it is still the one ``kernel`` wrote; whether it did."""
    info = read_runtime(path)
    if info is None or info.kernel != kernel:
        return False
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    return True


@contextlib.contextmanager
def runtime_lock(
    directory: Path, timeout: float = LOCK_TIMEOUT, cancelled: Callable[[], bool] = lambda: False
) -> Iterator[None]:
    """Hold the lock file beside the runtime file, waiting up to ``timeout`` s (TimeoutError),
    or less if ``cancelled()`` says so.

    ``filelock.FileLock``: on POSIX ``flock`` on the file, on Windows ``LockFileEx`` (filelock
    3.x: ``msvcrt.locking``) on its first byte. Both belong to the open file, which is this
    call's own, so two calls exclude each other whether they are in two processes, two threads or
    one thread; and both end when the file is closed, which the system does when its process
    dies, so a killed holder never blocks a takeover. The file stays on POSIX and goes on Windows.
    """
    lock = filelock.FileLock(str(directory / LOCK_FILE), mode=0o600)
    deadline = time.monotonic() + timeout
    while True:
        try:
            # One attempt at a time: the loop checks ``cancelled`` (filelock >= 4 could too).
            lock.acquire(blocking=False)
            break
        except filelock.Timeout:
            if cancelled() or time.monotonic() > deadline:
                raise TimeoutError(f"another process holds {directory / LOCK_FILE}") from None
            time.sleep(0.005)
    try:
        yield
    finally:
        lock.release()


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs (it may be another program that reused the number). A
    zombie, killed but not yet reaped by its parent, does not: it holds no socket any more.

    Only POSIX can tell cheaply (signal 0). Elsewhere it says True: on Windows ``os.kill(pid, 0)``
    would send CTRL_C_EVENT to that process group. A kernel then tries the file's host, whose
    closed port refuses at once, and takes the file over as from a dead one."""
    if not posix():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # Linux: the state follows the command's closing parenthesis
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z"
    except (OSError, IndexError):
        return True
