"""A signaller with a secret: `enter` needs a valid join token; dialect 1 is refused. And TLS.

Real Socket.IO clients against a real signaller. Every refusal must change nothing: the room keeps
its members, and nobody in it hears of the attempt.
"""

from __future__ import annotations

import asyncio
import base64
import re
import signal
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ipymeet.server import SignallerThread
from ipymeet.server.core import tokens
from ipymeet.server.core.signaller import DIALECT1_NEEDS_TOKEN

from ..support import MakeSignaller, free_port, serve_cli
from .helpers import OFFER_SDP, Peer, connected

SECRET = b"integration-test-secret-0123456789"


def _tampered(token: str) -> str:
    raw = bytearray(base64.urlsafe_b64decode(token + "="))
    raw[-1] ^= 1
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


async def test_enter_needs_a_valid_token_for_its_room(make_signaller: MakeSignaller) -> None:
    """Missing, malformed, forged, expired and other-room tokens are each refused with
    `forbidden` and their reason; nothing changes; a valid token enters."""
    server = make_signaller(secret=SECRET, max_peers=4)
    good = tokens.mint(SECRET, "vault")
    refusals = {
        "missing": {"room": "vault"},
        "malformed": {"room": "vault", "token": "not-a-token"},
        "bad_signature": {"room": "vault", "token": _tampered(good)},
        "other_room": {"room": "vault", "token": tokens.mint(SECRET, "elsewhere")},
        "expired": {"room": "vault", "token": tokens.mint(SECRET, "vault", ttl=1, now=1e9)},
    }
    async with connected(server.url, "member", "intruder") as (member, intruder):
        assert (await member.call("enter", {"room": "vault", "token": good}))["ok"] is True
        for why, payload in refusals.items():
            answer = await intruder.call("enter", {**payload, "name": "Mallory"})
            assert answer == {
                "ok": False,
                "code": "forbidden",
                "reason": why,
                "message": tokens.REASONS[why],
            }, why
            assert SECRET.decode() not in str(answer)
        # Nothing changed: one member, and the intruder is in no room (it may signal nobody).
        assert [m.sid for m in server.registry.members("vault")] == [member.sid]
        answer = await intruder.call("signal", {"to": member.sid, "description": OFFER_SDP})
        assert answer["code"] == "not_in_room"
        # The member heard of none of it: its next event is the valid newcomer's arrival.
        entered = await intruder.call("enter", {"room": "vault", "token": good, "name": "Grace"})
        assert entered["ok"] is True
        assert entered["peers"] == [{"id": member.sid, "name": ""}]
        assert await member.take() == [("peer_joined", {"id": intruder.sid, "name": "Grace"})]
    await assert_serves_a_call_securely(server)


async def test_a_refused_enter_without_ack_is_an_error_event(make_signaller: MakeSignaller) -> None:
    server = make_signaller(secret=SECRET)
    async with connected(server.url, "a") as (a,):
        await a.emit("enter", {"room": "vault"})
        error = await a.error()
        assert (error["code"], error["reason"], error["event"]) == ("forbidden", "missing", "enter")
        assert "invite link" in error["message"]
    assert server.registry.members("vault") == []


async def test_the_tutorial_dialect_is_refused(make_signaller: MakeSignaller) -> None:
    """The tutorial's page cannot send a token: `join` answers `full_room` (which that page
    shows), then an `error` saying why; the relays find no room."""
    server = make_signaller(secret=SECRET)
    async with connected(server.url, "a", "b") as (a, b):
        await a.emit("join", "old-page")
        assert await a.take() == [("full_room", "old-page")]
        error = await a.error()
        assert (error["code"], error["message"]) == ("forbidden", DIALECT1_NEEDS_TOKEN)
        await b.emit("join", "old-page")
        assert await b.take() == [("full_room", "old-page")]
        assert (await b.error())["code"] == "forbidden"
        await b.emit("start_call", "old-page")
        assert (await b.error())["code"] == "not_in_room"
        assert a.untaken() == []
    assert server.registry.counts()["rooms"] == 0


async def test_a_signaller_without_secret_ignores_tokens(make_signaller: MakeSignaller) -> None:
    server = make_signaller()
    async with connected(server.url, "a") as (a,):
        assert (await a.call("enter", {"room": "open", "token": "anything"}))["ok"] is True


async def test_turning_tokens_on_keeps_the_members_already_in(
    make_signaller: MakeSignaller,
) -> None:
    """require_tokens() on a running signaller (what VideoRoom(secure=True) does): members stay,
    newcomers need a token."""
    server = make_signaller(max_peers=3)
    async with connected(server.url, "early", "late", "invited") as (early, late, invited):
        assert (await early.call("enter", {"room": "r"}))["ok"] is True
        server.require_tokens()
        assert server.requires_tokens
        answer = await late.call("enter", {"room": "r"})
        assert (answer["code"], answer["reason"]) == ("forbidden", "missing")
        assert (await invited.call("enter", {"room": "r", "token": server.mint("r")}))["ok"]
        assert await early.take() == [("peer_joined", {"id": invited.sid, "name": ""})]


async def assert_serves_a_call_securely(server: SignallerThread) -> None:
    async with connected(server.url, "c", "d") as (c, d):
        token = server.mint("after")
        assert (await c.call("enter", {"room": "after", "token": token}))["ok"] is True
        assert (await d.call("enter", {"room": "after", "token": token}))["ok"] is True
        assert await d.call("signal", {"to": c.sid, "description": OFFER_SDP}) == {"ok": True}


# -- TLS ------------------------------------------------------------------------------------------


def _pinned(fingerprint: str) -> aiohttp.Fingerprint:
    return aiohttp.Fingerprint(bytes.fromhex(fingerprint.replace(":", "")))


async def _wait_https(url: str, ssl_option: Any, timeout: float = 30) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(url, ssl=ssl_option) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                if loop.time() > deadline:
                    raise
            await asyncio.sleep(0.1)


async def _tls_peer(url: str, ssl_option: Any) -> Peer:
    peer = Peer("tls")
    peer.sio.eio.websocket_extra_options = {"ssl": ssl_option}
    return await peer.connect(url)


async def test_a_self_signed_signaller_serves_https_and_wss(make_signaller: MakeSignaller) -> None:
    """tls="self-signed": https URLs, a fingerprint, a certificate for localhost and 127.0.0.1
    that a client can trust (as a CA) or pin; plain http is not served; the key is not on disk."""
    server = make_signaller(tls="self-signed", secret=SECRET)
    assert server.url.startswith("https://127.0.0.1:")
    assert server.tls is not None
    assert re.fullmatch(r"([0-9A-F]{2}:){31}[0-9A-F]{2}", server.fingerprint or "")
    folder = server.tls.folder
    assert folder is not None
    assert [p.name for p in folder.iterdir()] == ["cert.pem"]  # the key lives in memory only
    assert folder.stat().st_mode & 0o777 == 0o700
    trusted = ssl.create_default_context(cafile=str(server.tls.certfile))
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/healthz", ssl=trusted) as response:
            assert (await response.json())["ok"] is True
        localhost = server.url.replace("127.0.0.1", "localhost")
        async with http.get(f"{localhost}/healthz", ssl=trusted) as response:
            assert response.status == 200
        with pytest.raises(aiohttp.ClientError):  # not trusted by default
            async with http.get(f"{server.url}/healthz"):
                pass
    for option in (trusted, _pinned(server.fingerprint or "")):
        peer = await _tls_peer(server.url, option)
        try:
            token = server.mint("secure-room")
            answer = await peer.call("enter", {"room": "secure-room", "token": token})
            assert answer["ok"] is True
            assert await peer.call("leave", {}) == {"ok": True}
        finally:
            await peer.close()
    server.stop()
    assert not folder.exists()


async def test_ipymeet_serve_with_self_signed_tls_and_a_generated_secret() -> None:
    """The real CLI: prints an https address, the certificate's fingerprint and an invite link
    with a token (never the secret); a client pinning that fingerprint enters with the token."""
    port = free_port()
    process = serve_cli(
        "--port", str(port), "--ice-servers", "[]", "--tls", "self-signed",
        "--secret", "generate", "--invite", "cli-room", "--token-ttl", "2",
    )  # fmt: skip
    try:
        lines: list[str] = []
        assert process.stdout is not None
        while not any(line.startswith("Invite to cli-room:") for line in lines):
            line = process.stdout.readline()
            assert line, f"ipymeet serve ended early: {lines}"
            lines.append(line.strip())
        output = "\n".join(lines)
        assert f"https://127.0.0.1:{port}/" in output
        fingerprint = re.search(r"fingerprint: ((?:[0-9A-F]{2}:){31}[0-9A-F]{2})", output)
        assert fingerprint, output
        token = re.search(r"\?room=cli-room&token=([A-Za-z0-9_-]{44})", output)
        assert token, output
        await _wait_https(f"https://127.0.0.1:{port}/healthz", _pinned(fingerprint.group(1)))
        peer = await _tls_peer(f"https://127.0.0.1:{port}", _pinned(fingerprint.group(1)))
        try:
            answer = await peer.call("enter", {"room": "cli-room"})
            assert (answer["code"], answer["reason"]) == ("forbidden", "missing")
            answer = await peer.call("enter", {"room": "cli-room", "token": token.group(1)})
            assert answer["ok"] is True
        finally:
            await peer.close()
    finally:
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=30)
    assert process.returncode == 0, rest


def test_ipymeet_token_prints_a_link_from_a_secret_file(tmp_path: Path) -> None:
    """`--secret file:PATH` creates the file (0600) with a fresh secret; `ipymeet token` makes
    links that a signaller with the same file accepts. The secret never reaches the output."""
    secret_file = tmp_path / "secret"
    run = [sys.executable, "-m", "ipymeet.server.cli", "token", "lab", "--secret"]
    result = subprocess.run(
        [*run, f"file:{secret_file}", "--url", "https://example.org:9000"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert secret_file.stat().st_mode & 0o777 == 0o600
    secret = secret_file.read_text().strip().encode()
    link = result.stdout.strip()
    assert link.startswith("https://example.org:9000/?room=lab&token=")
    assert secret.decode() not in result.stdout + result.stderr
    tokens.verify(secret, "lab", link.rsplit("=", 1)[1])
    missing = subprocess.run(
        [*run, "env:IPYMEET_TEST_NO_SUCH_VARIABLE"], capture_output=True, text=True, timeout=30
    )
    assert missing.returncode == 2
    assert "not set" in missing.stderr
