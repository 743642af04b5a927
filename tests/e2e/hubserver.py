"""A real JupyterHub for the tests: DummyAuthenticator, SimpleLocalProcessSpawner (JupyterLab with
ipymeet from this venv), configurable-http-proxy, and ``ipymeet serve --jupyterhub`` as its
managed service at ``/services/ipymeet/``, configured as docs/deploy.md ("JupyterHub") says.

Everything lives in one temporary folder (database, cookie secret, proxy pid file, the users'
homes) and listens on free loopback ports; :func:`stop_hub` stops the hub and everything it
started (users' servers and their kernels, the proxy, the service).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ipymeet.server.runtime import pid_alive

from ..support import free_port, wait_http

REPO = Path(__file__).resolve().parents[2]
PROXY_BIN = REPO / ".ci" / "cache" / "node" / "node_modules" / ".bin"
PASSWORD = "ipymeet-hub-test"

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

# --- what docs/deploy.md (JupyterHub) tells a deployer to add (ports, paths: the test's) ---
c.JupyterHub.services = [
    {{
        "name": "ipymeet",
        "url": "http://127.0.0.1:{service_port}",
        "command": [sys.executable, "-m", "ipymeet.server.cli", "serve", "--jupyterhub",
                    "--ice-servers", "[]"],
        "oauth_no_confirm": True,
        "environment": {{"PYTHONUNBUFFERED": "1"}},
    }}
]
c.JupyterHub.load_roles = [
    {{"name": "user", "scopes": ["self", "access:services!service=ipymeet"]}},
]
# --- for the tests only: a service that makes users and their tokens ---
c.JupyterHub.services.append({{"name": "tester", "api_token": {tester_token!r}}})
c.JupyterHub.load_roles.append(
    {{"name": "tester", "scopes": ["admin:users", "tokens"], "services": ["tester"]}}
)
c.Spawner.environment = {{
    "IPYMEET_SIGNALLER": "http://127.0.0.1:{port}/services/ipymeet/",
    "IPYMEET_ICE_SERVERS": "[]",
    "PYTHONUNBUFFERED": "1",
}}
"""


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
    port, service_port, hub_port = free_port(), free_port(), free_port()
    tester_token = secrets.token_hex(32)
    config = CONFIG.format(
        port=port,
        hub_port=hub_port,
        proxy_api=free_port(),
        service_port=service_port,
        pid_file=str(folder / "proxy.pid"),
        db=folder / "hub.sqlite",
        cookie=str(folder / "cookie_secret"),
        password=PASSWORD,
        homes=str(folder / "homes"),
        singleuser=str(Path(sys.executable).parent / "jupyterhub-singleuser"),
        tester_token=tester_token,
        lab_settings=str(folder / "lab-settings"),
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
