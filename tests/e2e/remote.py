"""Servers for the cross-kernel tests: a Voilà dashboard of visitors (each visit a kernel of its
own), and Jupyter servers in a network namespace of the test's own that the browser reaches only
through one forwarded port each.

The namespace is joined to this machine by a veth pair (as in test_network.py). The servers in it
listen on the namespace's veth address; their kernels' signaller listens on the namespace's own
loopback, which nothing outside can reach. Each server's port is forwarded to 127.0.0.1 here by a
small TCP forwarder in the test process, so a page on that forwarded port reaches Jupyter or Voilà
and nothing else of the server: its signalling must go through its widget's comm (the kernel
route).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from ..support import (
    KERNEL_IDLE_JS,
    Served,
    free_port,
    jupyter_lab_command,
    start_server,
    stop_server,
)
from .netns import Namespace, namespace

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
DASHBOARD = NOTEBOOKS / "dashboard.ipynb"
#: The shared signaller's runtime file (server/kernel/sharing.py): ``{"port", "pid", "url", ...}``.
SIGNALLER_FILE = "ipymeet-signaller.json"

#: The page's Voilà kernel id (Voilà puts it in the page's config).
KERNEL_ID_JS = """() => {
  const data = document.getElementById('jupyter-config-data');
  return data ? JSON.parse(data.textContent).kernelId || null : null;
}"""


# -- kernels -------------------------------------------------------------------------------------


def kernel_pid(kernel_id: str, timeout: float = 30) -> int:
    """The pid of the kernel ``kernel_id`` (of any Jupyter or Voilà server here).

    Jupyter starts a kernel as ``python -m ipykernel_launcher -f .../kernel-<id>.json``: the
    connection file on its command line names it. (Standalone Voilà has no ``/api/kernels`` to
    ask, and keeps its connection files in a temporary folder of its own, not the runtime folder.)
    """
    suffix = f"kernel-{kernel_id}.json"
    deadline = time.monotonic() + timeout
    while True:
        for proc in psutil.process_iter(["pid", "cmdline"]):
            with contextlib.suppress(psutil.Error):
                if any(arg.endswith(suffix) for arg in proc.info["cmdline"] or []):
                    return int(proc.info["pid"])
        if time.monotonic() > deadline:
            raise AssertionError(f"no kernel process has {suffix} on its command line")
        time.sleep(0.1)


def signaller_host(runtime: Path, timeout: float = 30) -> dict[str, Any]:
    """The shared signaller's runtime file (its host kernel's ``pid``, its ``port``, ...)."""
    path = runtime / SIGNALLER_FILE
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError, ValueError):
            found: dict[str, Any] = json.loads(path.read_text())
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"no shared signaller wrote {path}")
        time.sleep(0.1)


def stop_with_kernels(served: Served) -> None:
    """Stop a server and kill whatever it started that outlives it (kernels outlive Voilà's pages,
    and a kernel hosting the signaller may outlive its server)."""
    try:
        started = psutil.Process(served.proc.pid).children(recursive=True)
    except psutil.Error:
        started = []
    stop_server(served)
    for proc in started:
        with contextlib.suppress(psutil.Error):
            proc.kill()


# -- a Voilà dashboard and its visitors -----------------------------------------------------------


@dataclass
class Visitor:
    """One visit: its page, and its kernel (Voilà starts one per page load)."""

    name: str
    page: Any
    kernel_id: str
    pid: int


@dataclass
class Dashboard:
    """``voila notebooks/dashboard.ipynb`` serving one room; ``visit(name)`` opens a page, types
    the name and presses Join."""

    served: Served
    room: str
    new_page: Callable[..., Any]
    visitors: list[Visitor] = field(default_factory=list)

    @property
    def runtime(self) -> Path:
        assert self.served.runtime is not None
        return self.served.runtime

    def visit(self, name: str, *, timeout: float = 90) -> Visitor:
        page = self.new_page()
        page.goto(self.served.url, timeout=timeout * 1000)
        return self.join(page, name, timeout=timeout)

    def join(self, page: Any, name: str, *, timeout: float = 90) -> Visitor:
        """Type ``name`` into the dashboard's form on ``page`` and press Join."""
        field_ = page.locator(".widget-text input")
        field_.wait_for(timeout=timeout * 1000)
        field_.fill(name)
        join = page.get_by_role("button", name="Join")
        page.wait_for_function(
            "() => [...document.querySelectorAll('button')].some("
            "(b) => b.textContent.includes('Join') && !b.disabled)",
            timeout=timeout * 1000,
        )
        join.click()
        page.wait_for_selector(".ipymeet-root", timeout=timeout * 1000)
        kernel_id = page.evaluate(KERNEL_ID_JS)
        assert kernel_id, "the Voilà page names no kernel"
        visitor = Visitor(name, page, kernel_id, kernel_pid(kernel_id))
        self.visitors.append(visitor)
        return visitor

    def host(self) -> int:
        """The pid of the kernel that hosts the shared signaller now."""
        return int(signaller_host(self.runtime)["pid"])


def who(page: Any) -> list[str]:
    """The names the dashboard's list shows (from ``room.peers`` in that visitor's kernel)."""
    names: list[str] = page.evaluate(
        "() => [...document.querySelectorAll('.lobby-who li')].map((li) => li.textContent)"
    )
    return names


def wait_who(page: Any, names: list[str], timeout: float = 30) -> None:
    """Wait until the dashboard's list on ``page`` shows exactly ``names`` (any order)."""
    page.wait_for_function(
        """(want) => {
          const got = [...document.querySelectorAll('.lobby-who li')].map((li) => li.textContent);
          return got.length === want.length && want.every((n) => got.includes(n));
        }""",
        arg=names,
        timeout=timeout * 1000,
    )


def voila_argv(notebook: Path, port: int, ip: str = "127.0.0.1") -> list[str]:
    return [
        sys.executable,
        "-m",
        "voila",
        str(notebook),
        "--no-browser",
        f"--port={port}",
        f"--Voila.ip={ip}",
    ]


def start_voila(notebook: Path, state: Path, *, env: dict[str, str] | None = None) -> Served:
    """Start a standalone Voilà on ``notebook`` (127.0.0.1, a free port); ready when it answers.

    Its kernels get a runtime folder and a signaller port of their own (``start_server``).
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    # Standalone Voilà answers /api/status with a redirect to a 403: enough to know it is up,
    # and unlike / it starts no kernel.
    return start_server(
        voila_argv(notebook, port),
        f"{url}api/status",
        {"url": url, "root": notebook.parent, "log": state / "voila.log"},
        60,
        any_status=True,
        env=env,
    )


# -- a network namespace with only the servers' ports forwarded ---------------------------------


class Forwarder:
    """Forwards 127.0.0.1:``port`` here to ``target`` (host, port), on a thread and loop of its
    own (sync Playwright holds the main thread's loop)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._main, name="ipymeet-forwarder", daemon=True)

    def start(self) -> Forwarder:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the forwarder did not start")
        return self

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._pipe_pair, "127.0.0.1", 0)
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        self._ready.set()
        self._loop.run_forever()
        self._loop.close()

    async def _pipe_pair(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            far_reader, far_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, far_writer), _pipe(far_reader, writer))

    def stop(self) -> None:
        """Close the listener and every forwarded connection; idempotent."""
        if not self._thread.is_alive():
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (OSError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


@dataclass
class Remote:
    """Servers in a namespace; the browser reaches each only at its forwarded ``url``.

    Every server here shares one Jupyter runtime folder and one signaller port, as the servers of
    one user on one machine do: their kernels share a signaller.
    """

    namespace: Namespace
    runtime: Path
    signaller_port: int
    state: Path
    forwarders: list[Forwarder] = field(default_factory=list)
    servers: list[Served] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return {"JUPYTER_RUNTIME_DIR": str(self.runtime), "IPYMEET_PORT": str(self.signaller_port)}

    @property
    def address(self) -> str:
        """The namespace's address, where its servers listen."""
        assert self.namespace.address is not None, "the namespace is connected while in use"
        return self.namespace.address

    def forward(self, port: int) -> str:
        """Forward the namespace's ``port``; the URL the browser uses."""
        forwarder = Forwarder((self.address, port)).start()
        self.forwarders.append(forwarder)
        return f"http://127.0.0.1:{forwarder.port}/"

    def voila(self, notebook: Path, env: dict[str, str] | None = None) -> Served:
        """``voila NOTEBOOK`` inside the namespace, reached through a forwarded port."""
        port = free_port()
        served = start_server(
            [*self.namespace.wrap, *voila_argv(notebook, port, self.address)],
            f"http://{self.address}:{port}/api/status",
            {
                "url": self.forward(port),
                "root": notebook.parent,
                "log": self._log("voila"),
            },
            60,
            any_status=True,
            env={**self.env, **(env or {})},
        )
        self.servers.append(served)
        return served

    def lab(self, root: Path, token: str = "ipymeet-remote", *, proxy: bool = False) -> Served:
        """``jupyter lab`` over ``root`` inside the namespace, reached through a forwarded port.

        Without jupyter-server-proxy unless ``proxy`` (as on most JupyterHub and Binder images):
        the page's only way to the signaller is then its widget's comm.
        """
        port = free_port()
        state = self._log("lab").parent
        argv = [
            "--ip=" + self.address if arg == "--ip=127.0.0.1" else arg
            for arg in jupyter_lab_command(root, state, port, token)
        ]
        if not proxy:
            argv.append("--ServerApp.jpserver_extensions=jupyter_server_proxy=False")
        served = start_server(
            [*self.namespace.wrap, *argv],
            f"http://{self.address}:{port}/api/status?token={token}",
            {"url": self.forward(port), "root": root, "log": state / "lab.log", "token": token},
            90,
            env=self.env,
        )
        self.servers.append(served)
        return served

    def _log(self, kind: str) -> Path:
        folder = self.state / f"{kind}-{len(self.servers)}"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{kind}.log"

    def close(self) -> None:
        for served in self.servers:
            stop_with_kernels(served)
        for forwarder in self.forwarders:
            forwarder.stop()


@contextlib.contextmanager
def remote(state: Path) -> Iterator[Remote]:
    """A namespace for servers, removed (with everything running in it) however the test ends."""
    with namespace("remote", 78) as space:
        runtime = state / "runtime"
        runtime.mkdir(parents=True)
        # A port for the shared signaller inside the namespace (its own loopback: any is free).
        made = Remote(space, runtime, free_port(), state)
        try:
            yield made
        finally:
            made.close()


# -- Notebook 7 ----------------------------------------------------------------------------------


def start_notebook7(root: Path, state: Path, token: str = "ipymeet-test-token") -> Served:
    """``jupyter notebook`` (Notebook 7) over ``root`` on a free port, its app exposed as
    ``window.jupyterapp`` as JupyterLab's is, with settings and workspaces in ``state``."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    argv = jupyter_lab_command(root, state, port, token, app="notebook")
    return start_server(
        argv,
        f"{url}api/status?token={token}",
        {"url": url, "root": root, "log": state / "notebook.log", "token": token},
        90,
    )


def open_and_run_notebook7(page: Any, served: Served, notebook: str, timeout: float = 90) -> None:
    """Open ``notebook`` in Notebook 7 and run all its cells (not awaited)."""
    page.goto(f"{served.url}notebooks/{notebook}?token={served.token}")
    page.wait_for_function(KERNEL_IDLE_JS, timeout=timeout * 1000)
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
