"""Small helpers shared by the test layers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ipymeet.server import SignallerThread

#: The ``make_signaller`` fixture (tests/conftest.py): ``make_signaller(**settings)``.
MakeSignaller = Callable[..., "SignallerThread"]


#: The start of a Python script run with ``python -c`` in which aiortc cannot be imported (as
#: without the ``python`` extra), whatever this environment has.
HIDE_AIORTC = """
import sys

class Hide:
    def find_spec(self, name, path=None, target=None):
        if name == "aiortc" or name.startswith("aiortc."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Hide())
"""


#: Whether this Python has POSIX's users and file modes: not on Windows, nor in the POSIX-less
#: mode (tests/posixless); the tests that need them are skipped elsewhere with :func:`posix_only`.
POSIX = hasattr(os, "getuid")
#: The folder whose ``sitecustomize`` hides what only POSIX has (tests/posixless/sitecustomize.py).
POSIXLESS = Path(__file__).parent / "posixless"


def posix_only(reason: str) -> pytest.MarkDecorator:
    """Skip a test (or a ``pytest.param``) where there is no POSIX, saying what it needs."""
    return pytest.mark.skipif(not POSIX, reason=f"needs POSIX: {reason}")


#: For the tests that run benchmarks/signalling.py, a POSIX tool.
BENCHMARK_NEEDS_POSIX = posix_only(
    "benchmarks/signalling.py forks its load processes and raises the open-file limit (resource)"
)


def posixless_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` (else this process's environment) for a Python as on Windows: tests/posixless
    first on its PYTHONPATH."""
    env = dict(os.environ if env is None else env)
    paths = [str(POSIXLESS), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listeners(port: int) -> set[int]:
    """The pids listening on ``port`` (on any address)."""
    import psutil  # not every test environment needs it to import this module

    return {
        c.pid
        for c in psutil.net_connections("tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid
    }


def serve_cli(*args: str) -> subprocess.Popen[str]:
    """``ipymeet serve ARGS`` as a user runs it, its output (both streams) in ``stdout``."""
    return subprocess.Popen(
        [sys.executable, "-m", "ipymeet.server.cli", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_until(
    predicate: Callable[[], Any], timeout: float = 20, what: str = "the condition"
) -> Any:
    """Poll ``predicate`` every 50 ms until it returns something true, and return that; fail
    after ``timeout`` seconds, naming ``what`` (for state that nothing signals)."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"{what} never held within {timeout:g} s"
        time.sleep(0.05)
    return value


def wait_for_file(path: Path, timeout: float = 60, what: str = "the notebook") -> str:
    """Wait until ``path`` exists and is not empty (a notebook cell writes it); its text."""
    deadline = time.monotonic() + timeout
    while not path.exists() or not path.read_text():
        assert time.monotonic() < deadline, f"{what} never wrote {path.name}"
        time.sleep(0.1)
    return path.read_text()


def wait_http(
    url: str, timeout: float, proc: subprocess.Popen[Any] | None = None, *, any_status: bool = False
) -> None:
    """Wait until ``url`` answers 200 (any HTTP answer with ``any_status``); fail early if
    ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except urllib.error.HTTPError:
            if any_status:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def jupyter_lab_command(
    root: Path, state: Path, port: int, token: str, app: str = "lab"
) -> list[str]:
    """argv for a quiet, isolated ``jupyter lab`` (or ``app="notebook"``: Notebook 7) on
    127.0.0.1:``port`` over ``root``.

    Settings and workspaces go to ``state``; the news prompt and update check are off, and the app
    is exposed as ``window.jupyterapp`` for tests to drive.
    """
    settings = state / "settings"
    news = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True, exist_ok=True)
    news.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    config = {"lab": "LabApp", "notebook": "JupyterNotebookApp"}[app]
    only_lab = [
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    return [
        sys.executable,
        "-m",
        "jupyter",
        app,
        "--allow-root",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--port-retries=0",
        f"--IdentityProvider.token={token}",
        f"--{config}.expose_app_in_browser=True",
        f"--{config}.user_settings_dir={settings}",
        f"--{config}.workspaces_dir={state / 'workspaces'}",
        *(only_lab if app == "lab" else []),
        f"--ServerApp.root_dir={root}",
    ]


# -- Jupyter servers ------------------------------------------------------------------------


@dataclass
class Served:
    url: str
    root: Path
    proc: subprocess.Popen[Any]
    log: Path
    token: str = ""
    #: Its own Jupyter runtime folder and kernel signaller port (``start_server`` gives each).
    runtime: Path | None = None
    signaller_port: int = 0


def start_server(
    argv: list[str],
    probe: str,
    served: dict[str, Any],
    timeout: float,
    *,
    any_status: bool = False,
    env: dict[str, str] | None = None,
) -> Served:
    """Start a server process and wait until ``probe`` answers (without starting a kernel).

    Its kernels get a Jupyter runtime folder (beside its log) and a signaller port of its own, so
    the kernels of two servers never share a signaller; ``env`` adds to their environment (two
    servers given the same ``JUPYTER_RUNTIME_DIR`` and ``IPYMEET_PORT`` share one).
    """
    log: Path = served["log"]
    env = {
        **os.environ,
        "IPYMEET_ICE_SERVERS": "[]",
        "PYTHONUNBUFFERED": "1",
        "JUPYTER_RUNTIME_DIR": str(log.parent / "runtime"),
        "IPYMEET_PORT": str(free_port()),
        **(env or {}),
    }
    runtime, port = Path(env["JUPYTER_RUNTIME_DIR"]), int(env["IPYMEET_PORT"])
    runtime.mkdir(parents=True, exist_ok=True)
    with log.open("w") as handle:
        proc = subprocess.Popen(
            argv, cwd=served["root"], env=env, stdout=handle, stderr=subprocess.STDOUT
        )
    try:
        wait_http(probe, timeout, proc, any_status=any_status)
    except BaseException:
        proc.kill()
        raise RuntimeError(f"could not start {argv[:4]}: {log.read_text()[-3000:]}") from None
    return Served(proc=proc, runtime=runtime, signaller_port=port, **served)


def stop_server(served: Served) -> None:
    served.proc.terminate()
    try:
        served.proc.wait(15)
    except subprocess.TimeoutExpired:
        served.proc.kill()


def start_lab(root: Path, state: Path, token: str = "ipymeet-test-token") -> Served:
    """Start ``jupyter lab`` over ``root`` on a free port; ready when it returns."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    return start_server(
        jupyter_lab_command(root, state, port, token),
        f"{url}api/status?token={token}",
        {"url": url, "root": root, "log": state / "lab.log", "token": token},
        90,
    )


#: Resolves when the open notebook's kernel is idle (JupyterLab, exposed as window.jupyterapp).
KERNEL_IDLE_JS = """() => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  return k && k.status === 'idle';
}"""


def open_and_run(page: Any, lab: Served, notebook: str, timeout: float = 90) -> None:
    """Open ``notebook`` in JupyterLab through its UI and run all cells (not awaited)."""
    page.goto(f"{lab.url}lab/tree/{notebook}?reset&token={lab.token}")
    page.wait_for_function(KERNEL_IDLE_JS, timeout=timeout * 1000)
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")


def write_notebook(path: Path, cells: list[str]) -> Path:
    """Write a notebook of code cells (nbformat 4)."""
    import nbformat

    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(notebook, path)
    return path
