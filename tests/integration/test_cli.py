"""``ipymeet serve``: the signaller as a process of its own."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import socketio

from ..support import free_port, serve_cli, wait_http


async def test_serve_runs_both_dialects_and_stops_on_sigint(tmp_path: Path) -> None:
    """`ipymeet serve --port P --max-peers 3 --public DIR` serves rooms of three, the folder, and
    exits cleanly on Ctrl-C."""
    (tmp_path / "hello.txt").write_text("hi")
    port = free_port()
    server = serve_cli(
        "--port", str(port), "--max-peers", "3", "--ice-servers", "[]", "--public", str(tmp_path)
    )
    clients = [socketio.AsyncClient() for _ in range(4)]
    try:
        wait_http(f"http://127.0.0.1:{port}/public/hello.txt", 30, server)
        acks = []
        for index, client in enumerate(clients):
            await client.connect(f"http://127.0.0.1:{port}", transports=["websocket"])
            acks.append(await client.call("enter", {"room": "cli", "name": f"p{index}"}, timeout=5))
        assert [a["ok"] for a in acks] == [True, True, True, False]
        assert acks[0]["capacity"] == 3
        assert acks[0]["ice_servers"] == []
        assert acks[3]["code"] == "room_full"
    finally:
        for client in clients:
            await client.disconnect()
        server.send_signal(signal.SIGINT)
        output, _ = server.communicate(timeout=30)
    assert server.returncode == 0, output
    assert f"http://127.0.0.1:{port}/" in output


def test_serve_refuses_a_wildcard_origin_and_bad_settings() -> None:
    """CORS is never '*', and impossible settings are refused with a message, exit code 2."""
    for args, expected in (
        (["--allow-origin", "*"], "name the origins"),
        (["--max-peers", "1"], "max_peers"),
        (["--ice-servers", "{}"], "JSON list"),
        (["--public", "/nonexistent/folder"], "not a folder"),
        (["--max-backlog", "1000"], "max_backlog_bytes"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "ipymeet.server.cli", "serve", "--port", "0", *args],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 2, (args, result.stderr)
        assert expected in result.stderr, (args, result.stderr)


async def test_serve_takes_its_heartbeat_from_the_command_line() -> None:
    """`--ping-interval 3 --ping-timeout 2` reach the Engine.IO handshake; a bad one is refused."""
    port = free_port()
    server = serve_cli("--port", str(port), "--ice-servers", "[]", "--ping-interval", "3",
                    "--ping-timeout", "2")  # fmt: skip
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", 30, server)
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(
                f"http://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket"
            ) as ws,
        ):
            opening = await ws.receive_str()
        assert opening.startswith("0")
        handshake = json.loads(opening[1:])
        assert (handshake["pingInterval"], handshake["pingTimeout"]) == (3000, 2000)
    finally:
        server.send_signal(signal.SIGINT)
        server.communicate(timeout=30)
    refused = serve_cli("--ping-interval", "0")
    output, _ = refused.communicate(timeout=30)
    assert refused.returncode == 2
    assert "ping_interval" in output
