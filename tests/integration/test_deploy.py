"""docs/deploy.md's nginx configuration, run: its ``location`` block in a real nginx (Debian's)
in front of a real ``ipymeet serve``, so the page a deployer copies is the one tested."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from ..support import free_port, posix_only, wait_http
from .helpers import TIMEOUT, assert_serves_a_call, engine_url

DEPLOY = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

pytestmark = [
    pytest.mark.skipif(
        not Path(NGINX).exists(), reason="nginx is not installed (.ci/setup --browser installs it)"
    ),
    posix_only("Debian's nginx, told to run as root when the tests are (os.geteuid)"),
]


def location_block(markdown: str) -> str:
    """The ``location / { ... }`` block of the first nginx example in ``markdown``."""
    example = re.search(r"```nginx\n(.*?)```", markdown, re.S)
    assert example is not None, "docs/deploy.md has no nginx example"
    text = example.group(1)
    start = text.index("location / {")
    depth = 0
    for index in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[index], 0)
        if text[index] == "}" and depth == 0:
            return text[start : index + 1]
    raise AssertionError("the location block is not closed")


class Nginx:
    def __init__(self, root: Path, location: str, upstream: int) -> None:
        self.port = free_port()
        self.root = root
        for temp in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (root / temp).mkdir(parents=True, exist_ok=True)
        location = location.replace("127.0.0.1:8765", f"127.0.0.1:{upstream}")
        user = "user root;" if os.geteuid() == 0 else ""
        (root / "nginx.conf").write_text(
            f"""{user}
worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log;
events {{}}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    server {{
        listen 127.0.0.1:{self.port};
        server_name meet.test;
        {location}
    }}
}}
"""
        )
        self.proc = subprocess.Popen(
            [NGINX, "-p", str(root), "-c", str(root / "nginx.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGQUIT)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture(scope="module")
def upstream() -> Iterator[int]:
    port = free_port()
    # As docs/deploy.md says: the public name nginx forwards in Host is one it answers to.
    argv = ["serve", "--port", str(port), "--ice-servers", "[]", "--allow-host", "meet.test"]
    server = subprocess.Popen(
        [sys.executable, "-m", "ipymeet.server.cli", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/", 30, server)
        yield port
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()


def _nginx(tmp_path: Path, upstream: int, location: str) -> Nginx:
    nginx = Nginx(tmp_path / "nginx", location, upstream)
    try:
        wait_http(f"{nginx.url}/", 30, nginx.proc)
    except BaseException:
        nginx.stop()
        raise
    return nginx


async def _get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return response.status, await response.text()


async def _handshake(url: str, origin: str) -> int | str:
    """What a browser page of ``origin`` (on host meet.test) gets for the signaller's WebSocket
    through nginx: the Engine.IO open packet's first characters, or the HTTP status refusing it."""
    host = url.removeprefix("http://").replace("127.0.0.1", "meet.test")
    headers = {"Origin": origin, "Host": host}
    async with aiohttp.ClientSession() as http:
        try:
            async with http.ws_connect(engine_url(url), headers=headers) as ws:
                return (await ws.receive_str(timeout=TIMEOUT))[:2]
        except aiohttp.WSServerHandshakeError as refused:
            return refused.status


async def test_the_documented_nginx_block_carries_pages_and_calls(
    tmp_path: Path, upstream: int
) -> None:
    """Through the block as docs/deploy.md prints it: the standalone page, a whole call over
    WebSockets, the signaller's own origin as the browser sees it (Host and X-Forwarded-Proto
    passed on) accepted, and another origin refused."""
    nginx = _nginx(tmp_path, upstream, location_block(DEPLOY.read_text()))
    try:
        status, page = await _get(f"{nginx.url}/?room=team")
        assert status == 200
        assert "signalingUrl" in page  # the standalone call page
        await assert_serves_a_call(nginx.url, room="behind-nginx")
        own = f"http://meet.test:{nginx.port}"
        assert await _handshake(nginx.url, own) == "0{"
        assert await _handshake(nginx.url, "https://elsewhere.example") == 400
    finally:
        nginx.stop()


async def test_without_the_upgrade_headers_the_websocket_fails_at_nginx(
    tmp_path: Path, upstream: int
) -> None:
    """What docs/deploy.md says goes wrong without them: the page loads, its WebSocket does not
    (the page then says it cannot reach the signaller)."""
    location = location_block(DEPLOY.read_text())
    broken = "\n".join(
        line for line in location.splitlines() if "Upgrade" not in line and "Connection" not in line
    )
    assert broken != location
    nginx = _nginx(tmp_path, upstream, broken)
    try:
        assert (await _get(f"{nginx.url}/?room=team"))[0] == 200
        assert await _handshake(nginx.url, f"http://meet.test:{nginx.port}") == 400
    finally:
        nginx.stop()
