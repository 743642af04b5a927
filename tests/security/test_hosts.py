"""DNS rebinding: a signaller answers only to its own names (issue 17, finding 1).

The attack: a web page on a name its owner controls (``rebind.test``) has that name re-pointed at
127.0.0.1. Its script, now "same origin" with the kernel's signaller on the user's predictable
port, loads the signaller's pages and completes the Socket.IO handshake: the browser sends the
foreign ``Host`` and an ``Origin`` that matches it (or, on a same-origin polling GET, no Origin at
all). It then enters a room by name and the members' pages send it their camera.

Each request below is what such a browser sends, made with aiohttp and python-socketio against a
real signaller on loopback; the legitimate pages (``localhost``, ``127.0.0.1``, a widget's page
behind jupyter-server-proxy, which forwards Jupyter's own ``Host`` with ``X-Forwarded-Context``)
are beside them.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio

from ipymeet.server import SignallerThread

from ..integration.helpers import TIMEOUT, engine_url
from ..support import MakeSignaller, free_port, start_server, stop_server


async def _get(url: str, host: str) -> tuple[int, str, dict[str, str]]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(url, headers={"Host": host}, allow_redirects=False) as response,
    ):
        return response.status, await response.text(), dict(response.headers)


async def _websocket_opens(url: str, headers: dict[str, str]) -> bool:
    """Whether the WebSocket handshake is accepted (False: refused with 400, CORS)."""
    async with aiohttp.ClientSession() as http:
        try:
            ws = await http.ws_connect(engine_url(url), headers=headers)
        except aiohttp.WSServerHandshakeError as refused:
            status = refused.status
        else:
            await ws.close()
            return True
    assert status == 400
    return False


async def _websocket_connect(url: str, headers: dict[str, str]) -> Any:
    """Engine.IO's open over a raw WebSocket, then Socket.IO's connect: the refusal's data."""
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(engine_url(url), headers=headers)
        try:
            opened = await ws.receive_str(timeout=TIMEOUT)
            assert opened.startswith("0{"), opened
            await ws.send_str("40")
            answer = await ws.receive_str(timeout=TIMEOUT)
        finally:
            await ws.close()
    assert answer.startswith("44"), answer
    return json.loads(answer[2:])["data"]


async def _polling_connect(url: str, headers: dict[str, str], auth: Any = None) -> str:
    """Engine.IO's open over polling, then Socket.IO's connect: what the server answers it."""
    endpoint = engine_url(url, "polling")
    timeout = aiohttp.ClientTimeout(TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        async with http.get(endpoint, headers=headers) as response:
            opened = await response.text()
        assert opened.startswith("0{"), opened  # Engine.IO alone grants nothing
        sid = json.loads(opened[1:])["sid"]
        packet = "40" if auth is None else "40" + json.dumps(auth)
        async with http.post(f"{endpoint}&sid={sid}", data=packet, headers=headers) as response:
            assert response.status == 200
        async with http.get(f"{endpoint}&sid={sid}", headers=headers) as response:
            return await response.text()


async def _enter(url: str, headers: dict[str, str], auth: Any, room: str) -> dict[str, Any]:
    sio = socketio.AsyncClient(reconnection=False)
    await sio.connect(url, headers=headers, auth=auth, transports=["websocket"], wait_timeout=5)
    try:
        answer: dict[str, Any] = await sio.call("enter", {"room": room}, timeout=5)
        return answer
    finally:
        await sio.disconnect()


async def _refused_connect(url: str, headers: dict[str, str], auth: Any = None) -> Any:
    """Socket.IO's connect_error for a connection that must be refused: ``{message, data}``."""
    sio = socketio.AsyncClient(reconnection=False)
    errors: list[Any] = []
    sio.on("connect_error", errors.append)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await sio.connect(url, headers=headers, auth=auth, transports=["websocket"], wait_timeout=5)
    assert len(errors) == 1
    return errors[0]


async def test_a_rebound_name_is_refused_at_every_door(signaller: SignallerThread) -> None:
    """The rebound page's every request: the page, its assets and /healthz get 403 with the
    reason; its WebSocket and its same-origin polling session (no Origin) open Engine.IO, but
    their Socket.IO connect is refused ``forbidden_host``, also when it forges
    jupyter-server-proxy's header or a widget key nobody registered. The member in the room
    hears nothing and is alone."""
    url, port = signaller.url, signaller.port
    member = socketio.AsyncClient(reconnection=False)
    await member.connect(url, transports=["websocket"])
    try:
        assert (await member.call("enter", {"room": "lab"}, timeout=5))["ok"] is True

        rebound = f"rebind.test:{port}"
        for path in ("/?room=lab", "/healthz", "/static/widget.js", "/socket.io/socket.io.js"):
            status, text, _ = await _get(url + path, rebound)
            assert status == 403, path
            assert "'rebind.test'" in text
            assert "--allow-host" in text

        # Its WebSocket: CORS cannot tell it from a page behind jupyter-server-proxy (both send
        # their Host's origin); Socket.IO's connect refuses it, as it has no widget key.
        origin = f"http://{rebound}"
        assert await _websocket_connect(url, {"Host": rebound, "Origin": origin}) == {
            "code": "forbidden_host"
        }
        # A page of another origin is refused at the handshake (400).
        assert not await _websocket_opens(url, {"Host": f"127.0.0.1:{port}", "Origin": origin})
        for extra, auth in (
            ({}, None),
            ({"X-Forwarded-Context": f"/proxy/{port}"}, None),
            ({"X-Forwarded-Context": f"/proxy/{port}"}, {"client": "guessed-key"}),
        ):
            answer = await _polling_connect(url, {"Host": rebound, **extra}, auth)
            assert answer.startswith("44"), answer
            assert json.loads(answer[2:])["data"] == {"code": "forbidden_host"}
        refused = await _refused_connect(url, {"Host": rebound})
        assert refused["data"] == {"code": "forbidden_host"}
        assert "rebind.test" in refused["message"]

        assert [m.sid for m in signaller.registry.members("lab")] == [member.get_sid()]
        assert list(signaller.signaller.connections) == [member.get_sid()]
    finally:
        await member.disconnect()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "meet.localhost"])
async def test_pages_on_localhost_and_127_0_0_1_connect(
    signaller: SignallerThread, host: str
) -> None:
    """The legitimate pages: on ``127.0.0.1``, ``localhost`` (and ``*.localhost``), the page is
    served (with ``Referrer-Policy: no-referrer``), the WebSocket of its origin opens, and it
    enters a room."""
    url, port = signaller.url, signaller.port
    named = f"{host}:{port}"
    status, text, headers = await _get(url + "/?room=lab", named)
    assert status == 200
    assert "signalingUrl" in text
    assert headers["Referrer-Policy"] == "no-referrer"
    origin = {"Host": named, "Origin": f"http://{named}"}
    assert await _websocket_opens(url, origin)
    assert (await _enter(url, origin, None, "lab"))["ok"] is True


async def test_a_configured_name_is_served(make_signaller: MakeSignaller) -> None:
    """``--allow-host`` / ``Settings.allowed_hosts``: a reverse proxy's public name is served
    as the signaller's own (and only the names given)."""
    server = make_signaller(allowed_hosts=("meet.example.org",))
    named = f"meet.example.org:{server.port}"
    assert (await _get(server.url + "/", named))[0] == 200
    assert (await _get(server.url + "/", f"other.example.org:{server.port}"))[0] == 403
    origin = {"Host": named, "Origin": f"http://{named}"}
    assert (await _enter(server.url, origin, None, "lab"))["ok"] is True


async def test_a_widget_page_behind_a_proxy_connects_with_its_key(
    signaller: SignallerThread,
) -> None:
    """A widget's page on a remote Jupyter reaches the kernel's signaller through
    jupyter-server-proxy, which forwards Jupyter's own Host (``lab.example.org``, which Jupyter
    checked) and adds ``X-Forwarded-Context``: with its widget's key it connects and enters; the
    same request without the key, or with a key nobody registered, is refused."""
    signaller.register("widget-key-1")
    host = "lab.example.org"
    proxied = {
        "Host": host,
        "Origin": f"https://{host}",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Context": f"/user/ada/proxy/{signaller.port}",
    }
    assert await _websocket_opens(signaller.url, proxied)
    ack = await _enter(signaller.url, proxied, {"client": "widget-key-1"}, "lab")
    assert ack["ok"] is True
    assert "forbidden_host" not in await _polling_connect(
        signaller.url, proxied, {"client": "widget-key-1"}
    )
    for auth in (None, {"client": "not-registered"}):
        refused = await _refused_connect(signaller.url, proxied, auth)
        assert refused["data"] == {"code": "forbidden_host"}
        assert "lab.example.org" in refused["message"]


@pytest.mark.jupyter
async def test_a_widget_page_through_a_real_jupyter_server_proxy_on_a_remote_name(
    signaller: SignallerThread, tmp_path: Path
) -> None:
    """The same through a real Jupyter server with jupyter-server-proxy, reached on a name that
    is not loopback (``lab.test``: a Jupyter on another machine, ``allow_remote_access``), whose
    Host the proxy forwards to the kernel's signaller on 127.0.0.1: the page with its widget's
    key connects and enters; without a key it is refused ``forbidden_host``."""
    signaller.register("widget-key-2")
    port, token = free_port(), "security-token"
    argv = [
        sys.executable, "-m", "jupyter", "server", "--allow-root", "--no-browser",
        "--ip=127.0.0.1", f"--port={port}", "--port-retries=0",
        f"--IdentityProvider.token={token}", "--ServerApp.allow_remote_access=True",
        f"--ServerApp.root_dir={tmp_path}",
    ]  # fmt: skip
    served = await asyncio.to_thread(
        start_server,
        argv,
        f"http://127.0.0.1:{port}/api/status?token={token}",
        {"url": f"http://127.0.0.1:{port}/", "root": tmp_path, "log": tmp_path / "server.log"},
        90,
    )
    try:
        named = f"lab.test:{port}"
        headers = {
            "Host": named,
            "Origin": f"http://{named}",
            "Authorization": f"token {token}",
        }
        jupyter = f"http://127.0.0.1:{port}"
        path = f"/proxy/{signaller.port}/socket.io"
        sio = socketio.AsyncClient(reconnection=False)
        await sio.connect(
            jupyter,
            socketio_path=path,
            headers=headers,
            auth={"client": "widget-key-2"},
            transports=["websocket"],
            wait_timeout=10,
        )
        try:
            assert (await sio.call("enter", {"room": "through-proxy"}, timeout=5))["ok"] is True
        finally:
            await sio.disconnect()
        errors: list[Any] = []
        refused = socketio.AsyncClient(reconnection=False)
        refused.on("connect_error", errors.append)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await refused.connect(
                jupyter, socketio_path=path, headers=headers, transports=["websocket"]
            )
        assert [e["data"] for e in errors] == [{"code": "forbidden_host"}]
    finally:
        await asyncio.to_thread(stop_server, served)
