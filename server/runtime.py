"""The runtime file of a user's shared signaller, and the lock beside it (server/sharing.py).

``ipymeet-signaller.json`` in Jupyter's runtime directory says where the hosting kernel listens
and holds the secret the user's kernels check each other with: ``{"version": 1, "port", "pid",
"url", "secret" (hex, 32 bytes), "kernel"}``. It is written atomically (a private temporary file,
then a rename), mode 0600, and read only when it is a regular file of this user's that no one
else may read or write. ``ipymeet-signaller.lock`` beside it (``flock``, released when its
process dies) makes "find or host" one step at a time across the user's processes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
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

log = logging.getLogger("ipymeet.server")

RUNTIME_FILE = "ipymeet-signaller.json"
LOCK_FILE = "ipymeet-signaller.lock"
FILE_VERSION = 1
SECRET_BYTES = 32
#: How long "find or host" waits for another process's turn at the lock.
LOCK_TIMEOUT = 30.0
#: The ports :func:`user_port` draws from: below Linux's ephemeral range (32768-60999).
PORT_BASE, PORT_SPAN = 20000, 12000


def user_port(uid: int | None = None) -> int:
    """The port a user's shared signaller is hosted on unless ``IPYMEET_PORT`` says otherwise:
    drawn from 20000-31999 by a hash of the uid, so that users of one machine differ."""
    uid = os.getuid() if uid is None else uid
    digest = hashlib.sha256(f"ipymeet-signaller:{uid}".encode()).digest()
    return PORT_BASE + int.from_bytes(digest[:4], "big") % PORT_SPAN


def runtime_dir() -> Path:
    """Jupyter's runtime directory (``JUPYTER_RUNTIME_DIR`` honoured), made 0700 if missing."""
    from jupyter_core.paths import jupyter_runtime_dir

    path = Path(jupyter_runtime_dir())
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
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
    """The runtime file at ``path``, or None: missing, unreadable, not a regular file of this
    user's that no one else may read or write, or not one this version wrote."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, encoding="utf-8") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
            log.warning("ipymeet: ignoring %s: it is not this user's private file", path)
            return None
        try:
            return RuntimeInfo.from_json(handle.read(4096))
        except (ValueError, UnicodeDecodeError):
            return None


def write_runtime(path: Path, info: RuntimeInfo) -> None:
    """Write the runtime file atomically (a private temporary file, then a rename), mode 0600."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(info.to_json())
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise


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
    """Hold the lock file beside the runtime file (``flock``, so a process that dies lets go)."""
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if cancelled() or time.monotonic() > deadline:
                    raise TimeoutError(f"another process holds {directory / LOCK_FILE}") from None
                time.sleep(0.005)
        yield
    finally:
        os.close(fd)  # releases the lock


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs (it may be another program that reused the number). A
    zombie, killed but not yet reaped by its parent, does not: it holds no socket any more."""
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
