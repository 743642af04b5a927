"""No token in any log line (issue 17, finding 6).

The attack: ``ipymeet serve`` logged every request line and Referer with aiohttp's default access
log, so an invite link's token appeared in its output each time the link, or an asset of its page,
was fetched; whoever reads the logs (a log shipper, a shared terminal) could enter the room. Here
the real command runs at its most talkative level, the link and the page's assets are fetched as a
browser does (its Referer carrying the token), a member enters with the token, another is refused
with a forged one, and the whole output is read back.
"""

from __future__ import annotations

import asyncio
import re
import signal

import aiohttp
import socketio

from ..support import free_port, serve_cli, wait_http

INVITE = re.compile(r"^Invite to lab: (http://\S+\?room=lab&token=([A-Za-z0-9_-]{44}))")


async def test_an_invite_links_token_is_in_no_log_line_at_any_level() -> None:
    """Only the ``Invite to`` line that ``--invite`` asks for shows the token; no log line does,
    at ``--log-level debug``, while the access log still records each request's method, path and
    status, and the refusal of a forged token is logged once, by its reason. Every response
    carries ``Referrer-Policy: no-referrer``, so a browser would not even send the Referer."""
    port = free_port()
    process = serve_cli("--port", str(port), "--ice-servers", "[]", "--secret", "generate",
                     "--invite", "lab", "--log-level", "debug")  # fmt: skip
    try:
        assert process.stdout is not None
        lines: list[str] = []
        while not (found := [m for line in lines if (m := INVITE.match(line))]):
            line = process.stdout.readline()
            assert line, f"ipymeet serve ended early: {lines}"
            lines.append(line.rstrip("\n"))
        link, token = found[0].group(1), found[0].group(2)
        wait_http(f"http://127.0.0.1:{port}/healthz", 30, process)

        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:
            async with http.get(link) as page:
                assert page.status == 200
                assert page.headers["Referrer-Policy"] == "no-referrer"
            for asset in ("/static/widget.js", "/static/widget.css", "/socket.io/socket.io.js"):
                async with http.get(base + asset, headers={"Referer": link}) as response:
                    assert response.status == 200, asset
                    assert response.headers["Referrer-Policy"] == "no-referrer"

        for given, ok in ((token, True), (token[:-4] + "AAAA", False)):
            sio = socketio.AsyncClient(reconnection=False)
            await sio.connect(base, headers={"Referer": link}, transports=["websocket"])
            try:
                answer = await sio.call("enter", {"room": "lab", "token": given}, timeout=5)
                assert answer["ok"] is ok, answer
            finally:
                await sio.disconnect()
    finally:
        process.send_signal(signal.SIGINT)
        rest, _ = await asyncio.to_thread(process.communicate, timeout=30)
    output = lines + rest.splitlines()
    assert process.returncode == 0, "\n".join(output)

    with_token = [line for line in output if token[:-4] in line]
    assert with_token == [found[0].string]
    logged = "\n".join(output)
    assert re.search(r"aiohttp\.access GET / 200 ", logged), logged
    assert re.search(r"aiohttp\.access GET /static/widget\.js 200 ", logged), logged
    assert "Referer" not in logged
    assert "refused at 'enter a room': forbidden bad_signature" in logged
    assert logged.count("bad_signature") == 1
