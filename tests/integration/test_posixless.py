"""The POSIX-less mode (tests/posixless): Pythons started with it are as on Windows, as far as
ipymeet can tell, and ipymeet works there: it imports, a kernel hosts the shared signaller,
another process's kernel attaches, takes over when the host is killed, and ``ipymeet serve``
runs. .ci/test runs tests/unit and tests/integration so too; this checks that the mode is on
in the processes it is given to, on every run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from ..support import free_port, posixless_env

PROBE = """
import json, os, sys
hidden = {}
for name in ("fcntl", "pwd", "grp", "termios", "resource", "uvloop"):
    try:
        __import__(name)
        hidden[name] = False
    except ImportError:
        hidden[name] = True
import importlib, pkgutil
import filelock
import ipymeet
from ipymeet.server.kernel import runtime
failed = {}
for package in ("ipymeet.server", "ipymeet.widget"):
    where = importlib.import_module(package).__path__
    for module in pkgutil.walk_packages(where, package + "."):
        try:
            importlib.import_module(module.name)
        except ModuleNotFoundError as error:  # an extra not installed here (aiortc) is no failure
            if error.name is None or error.name.partition(".")[0] in hidden:
                failed[module.name] = repr(error)
        except Exception as error:
            failed[module.name] = repr(error)
print(json.dumps({
    "failed": failed,
    "active": os.environ.get("IPYMEET_POSIXLESS"),
    "hidden": hidden,
    "os": [n for n in ("getuid", "geteuid", "getgid", "fchmod", "O_NOFOLLOW") if hasattr(os, n)],
    "posix": runtime.posix(),
    "lock": filelock.FileLock.__name__,
    "loaded": sorted(n for n in ("fcntl", "pwd", "grp", "termios", "resource") if n in sys.modules),
}))
"""

#: A "kernel" in a process of its own: it starts, says its role and port, and says so again
#: once it hosts (after taking over).
KERNEL = """
import json, sys, time
from ipymeet.server import Settings
from ipymeet.server.kernel.sharing import KernelSignaller
kernel = KernelSignaller(
    Settings(ice_servers=()), runtime_dir=sys.argv[1], port=int(sys.argv[2])
).start()
print(json.dumps({"hosting": kernel.hosting, "port": kernel.port}), flush=True)
if not kernel.hosting:
    while not kernel.hosting:
        time.sleep(0.02)
    print(json.dumps({"hosting": True, "port": kernel.port}), flush=True)
time.sleep(120)
"""


def _python(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=posixless_env(),
    )


def _said(process: subprocess.Popen[str]) -> dict[str, Any]:
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.wait(10)
        raise AssertionError(process.stderr.read() if process.stderr else "no output")
    said: dict[str, Any] = json.loads(line)
    return said


def test_the_mode_hides_posix_and_every_module_of_ipymeet_imports_without_it() -> None:
    probe = _python(PROBE)
    try:
        said = _said(probe)
    finally:
        probe.kill()
        probe.wait(10)
    assert said["failed"] == {}
    assert said["active"] == "1"
    assert all(said["hidden"].values()), said["hidden"]
    assert said["os"] == []
    assert said["posix"] is False
    # filelock keeps its OS lock (it stands for LockFileEx), no soft lock; nothing else got fcntl.
    assert said["lock"] == "UnixFileLock"
    assert said["loaded"] == []


def test_without_posix_a_kernel_attaches_and_takes_over_from_a_killed_host(
    tmp_path: Path,
) -> None:
    port = free_port()
    host = _python(KERNEL, str(tmp_path), str(port))
    other: subprocess.Popen[str] | None = None
    try:
        assert _said(host) == {"hosting": True, "port": port}
        other = _python(KERNEL, str(tmp_path), str(port))
        assert _said(other) == {"hosting": False, "port": port}
        host.kill()  # no clean exit: the runtime file stays, the lock is the system's to free
        host.wait(10)
        assert _said(other) == {"hosting": True, "port": port}
    finally:
        for process in (host, other):
            if process is not None:
                process.kill()
                process.wait(10)


def test_without_posix_ipymeet_serve_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ipymeet.server.cli", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env=posixless_env(),
    )
    assert result.returncode == 0, result.stderr
    assert "--port" in result.stdout
