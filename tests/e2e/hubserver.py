"""A real JupyterHub for the tests: DummyAuthenticator, SimpleLocalProcessSpawner (JupyterLab with
ipymeet from this venv), configurable-http-proxy, and ``ipymeet serve --jupyterhub`` as its
managed service at ``/services/ipymeet/``, configured with docs/deploy.md's block ("The
configuration to copy") as it is written there (:func:`documented_config`), test-only settings
after it.

Everything lives in one temporary folder (database, cookie secret, proxy pid file, the users'
homes) and listens on free loopback ports; :func:`stop_hub` stops the hub and everything it
started (users' servers and their kernels, the proxy, the service).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ipymeet.server.kernel.runtime import pid_alive

from ..support import free_port, wait_http

REPO = Path(__file__).resolve().parents[2]
PROXY_BIN = REPO / ".ci" / "cache" / "node" / "node_modules" / ".bin"
PASSWORD = "ipymeet-hub-test"
DEPLOY = REPO / "docs" / "deploy.md"
#: The line of docs/deploy.md above the block a deployer copies.
CONFIG_MARK = "<!-- jupyterhub-config: tests/e2e/hubserver.py reads the block below -->"
#: A service the hub knows but nobody runs (until a test does): as ipymeet's when it is down.
DOWN_SERVICE = "ipymeet-down"

CONFIG = """
import sys
c = get_config()  # noqa
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api}"
c.ConfigurableHTTPProxy.pid_file = {pid_file!r}
c.JupyterHub.db_url = "sqlite:///{db}"
c.JupyterHub.cookie_secret_file = {cookie!r}
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = {password!r}
c.Authenticator.allow_all = True
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = {homes!r} + "/{{username}}"
c.Spawner.cmd = [{singleuser!r}]
c.Spawner.default_url = "/lab"
c.Spawner.args = [
    "--allow-root",
    "--LabApp.news_url=None",
    "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    "--LabApp.expose_app_in_browser=True",
    "--LabApp.user_settings_dir={lab_settings}",
]
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120

"""

#: What only the tests add after docs/deploy.md's block: no STUN (offline), a second service that
#: is not running, and a service that makes users and their tokens.
TEST_ONLY = """
c.JupyterHub.services[0]["command"] += ["--ice-servers", "[]"]
c.JupyterHub.services[0]["environment"] = {{"PYTHONUNBUFFERED": "1"}}
c.JupyterHub.services.append({{"name": {down!r}, "url": "http://127.0.0.1:{down_port}"}})
c.JupyterHub.load_roles[0]["scopes"].append("read:services!service={down}")
c.Spawner.server_token_scopes.append("read:services!service={down}")
c.JupyterHub.services.append({{"name": "tester", "api_token": {tester_token!r}}})
c.JupyterHub.load_roles.append(
    {{"name": "tester", "scopes": ["admin:users", "tokens"], "services": ["tester"]}}
)
c.Spawner.environment = {{"IPYMEET_ICE_SERVERS": "[]", "PYTHONUNBUFFERED": "1"}}
"""


def documented_config() -> str:
    """The ``jupyterhub_config.py`` block of docs/deploy.md ("JupyterHub"), as written there."""
    text = DEPLOY.read_text(encoding="utf-8")
    _, found, after = text.partition(CONFIG_MARK)
    assert found, f"docs/deploy.md lost its mark {CONFIG_MARK!r}"
    return after.split("```python\n", 1)[1].split("\n```", 1)[0]


def documented_service_port(config: str) -> int:
    """The port of the service's ``url`` in the documented block (the test uses it as is)."""
    found = re.search(r'"url": "http://127\.0\.0\.1:(\d+)"', config)
    assert found, "docs/deploy.md's block has no service url on 127.0.0.1"
    return int(found.group(1))


@dataclass
class Hub:
    url: str
    folder: Path
    proc: subprocess.Popen[Any]
    log: Path
    service_port: int
    #: The token of the test-only service ``tester`` (makes users and their tokens).
    tester_token: str
    #: The hub's REST API, as its services reach it.
    api_url: str
    #: Where :data:`DOWN_SERVICE` would listen, if anyone started it.
    down_port: int = 0

    @property
    def service_url(self) -> str:
        return f"{self.url}services/ipymeet/"

    def home(self, user: str) -> Path:
        path = self.folder / "homes" / user
        path.mkdir(parents=True, exist_ok=True)
        return path


def start_hub(folder: Path) -> Hub:
    """Start the hub in ``folder``; returns once it and its ipymeet service answer."""
    folder.mkdir(parents=True, exist_ok=True)
    port, hub_port, down_port = free_port(), free_port(), free_port()
    documented = documented_config()
    service_port = documented_service_port(documented)
    with socket.socket() as probe:  # fail plainly rather than with a service that cannot bind
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", service_port))
        except OSError:
            raise RuntimeError(
                f"port {service_port} (docs/deploy.md's service url) is taken"
            ) from None
    tester_token = secrets.token_hex(32)
    config = CONFIG.format(
        port=port,
        hub_port=hub_port,
        proxy_api=free_port(),
        pid_file=str(folder / "proxy.pid"),
        db=folder / "hub.sqlite",
        cookie=str(folder / "cookie_secret"),
        password=PASSWORD,
        homes=str(folder / "homes"),
        singleuser=str(Path(sys.executable).parent / "jupyterhub-singleuser"),
        lab_settings=str(folder / "lab-settings"),
    )
    config += "\n# --- docs/deploy.md's block, as written ---\n" + documented
    config += "\n# --- for the tests only ---" + TEST_ONLY.format(
        down=DOWN_SERVICE, down_port=down_port, tester_token=tester_token
    )
    news = folder / "lab-settings" / "@jupyterlab" / "apputils-extension"
    news.mkdir(parents=True, exist_ok=True)
    (news / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    (folder / "jupyterhub_config.py").write_text(config)
    env = {
        **os.environ,
        "PATH": f"{PROXY_BIN}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}"
        f"{os.environ.get('PATH', '')}",
        "PYTHONUNBUFFERED": "1",
    }
    for leaked in ("IPYMEET_SIGNALLER", "JUPYTERHUB_API_TOKEN", "JUPYTER_RUNTIME_DIR"):
        env.pop(leaked, None)
    log = folder / "hub.log"
    with log.open("w") as handle:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(folder / "jupyterhub_config.py")],
            cwd=folder,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the teardown stops all of it
        )
    hub = Hub(
        f"http://127.0.0.1:{port}/",
        folder,
        proc,
        log,
        service_port,
        tester_token,
        f"http://127.0.0.1:{hub_port}/hub/api",
        down_port,
    )
    try:
        wait_http(f"{hub.url}hub/health", 90, proc)
        wait_http(f"{hub.service_url}healthz", 60, proc)
    except BaseException:
        stop_hub(hub)
        raise RuntimeError(f"the hub did not start: {log.read_text()[-4000:]}") from None
    return hub


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (the hub's children: proxy, service, users' servers and
    their kernels, which SimpleLocalProcessSpawner starts in sessions of their own)."""
    found: list[int] = []
    children = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        direct = [int(p) for p in children.read_text().split()]
    except OSError:
        return found
    for child in direct:
        found.append(child)
        found.extend(_descendants(child))
    return found


def stop_hub(hub: Hub, timeout: float = 20) -> None:
    """Stop the hub and every process it started, whatever state they are in."""
    pids = [hub.proc.pid, *_descendants(hub.proc.pid)]
    proxy_pid = hub.folder / "proxy.pid"
    if proxy_pid.exists():
        text = proxy_pid.read_text().strip()
        if text.isdigit():
            pids.append(int(text))
    if hub.proc.poll() is None:
        hub.proc.send_signal(signal.SIGTERM)  # the hub stops its servers, service and proxy
        try:
            hub.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            hub.proc.kill()
            hub.proc.wait(5)
    deadline = time.monotonic() + 10
    for pid in pids[1:]:
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
