"""TURN with short-lived credentials (server/core/turn.py): the TURN REST maths, checked against an
independent HMAC (openssl) and against Debian's coturn itself; the settings and ``ipymeet serve``
options that configure it; the ``enter`` acknowledgement that hands the credentials out, directly
and through the kernel route, with nothing of them in a log line or the widget's state; the timers
that renew them (the ``ice_servers`` event itself: tests/integration/test_turn_renewal.py)."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import socketio

from ipymeet import VideoRoom
from ipymeet.server import Settings, SignallerThread, cli
from ipymeet.server.core.turn import (
    DEFAULT_TURN_TTL,
    RENEW_AT,
    Renewals,
    credentials,
    ice_servers_for,
    renewal_delay,
)

from ..e2e.coturn import coturn
from ..support import MakeSignaller, posix_only
from .test_relay import RoutePage

SECRET = "north-wind-secret"
TURN = ("turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:5349")


def openssl_password(secret: str, username: str) -> str:
    """The password as coturn's scheme defines it, computed by another implementation."""
    digest = subprocess.run(
        ["openssl", "dgst", "-sha1", "-hmac", secret, "-binary"],
        input=username.encode(),
        capture_output=True,
        check=True,
    ).stdout
    return base64.b64encode(digest).decode()


def test_the_password_is_the_base64_hmac_sha1_of_the_username() -> None:
    username, password = credentials(SECRET, "Zm9vYmFyYmF6cXV4cXV1eDEy", 1_700_000_000)
    assert username == "1700000000:Zm9vYmFyYmF6cXV4cXV1eDEy"
    assert password == "w9yBYf0PzOWZghoEGhFenBRIDBE="  # openssl dgst -sha1 -hmac ... | base64
    if shutil.which("openssl"):
        assert password == openssl_password(SECRET, username)
        other = credentials("another secret", "x", 5)
        assert other[1] == openssl_password("another secret", "5:x")


def test_ice_servers_are_the_stun_servers_plus_the_members_turn_server() -> None:
    stun = ({"urls": "stun:stun.example.org"},)
    plain = Settings(ice_servers=stun)
    assert ice_servers_for(plain, "ada") == [{"urls": "stun:stun.example.org"}]
    settings = Settings(ice_servers=stun, turn_urls=TURN, turn_secret=SECRET, turn_ttl=600)
    servers = ice_servers_for(settings, "ada", now=1_000_000.7)
    assert servers[0] == {"urls": "stun:stun.example.org"}
    assert servers[1] == {
        "urls": list(TURN),
        "username": "1000600:ada",
        "credential": credentials(SECRET, "ada", 1_000_600)[1],
    }
    # Each member its own, expiring turn_ttl from now by the clock.
    before = int(time.time())
    grace = ice_servers_for(settings, "grace")[1]
    expiry, _, member = grace["username"].partition(":")
    assert member == "grace"
    assert before + 600 <= int(expiry) <= int(time.time()) + 600
    assert Settings().turn_ttl == DEFAULT_TURN_TTL


def test_coturn_accepts_the_credentials_and_refuses_wrong_or_expired_ones(tmp_path: Path) -> None:
    """Real coturn (use-auth-secret): our credentials allocate a relay; a wrong secret or an
    expired username does not. (turnutils_uclient then fails on its loopback peer: coturn
    refuses loopback peers, which shows the allocation itself was granted.)"""
    if shutil.which("turnutils_uclient") is None:
        pytest.fail("coturn is missing: run `bash .ci/setup --browser`")

    def allocates(port: int, username: str, password: str) -> bool:
        run = subprocess.run(
            [
                "turnutils_uclient",
                "-p",
                str(port),
                "-u",
                username,
                "-w",
                password,
                "-y",
                "-n",
                "1",
                "-m",
                "1",
                "-c",
                "127.0.0.1",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        output = run.stdout + run.stderr
        assert "Cannot complete Allocation" in output or "403 (Forbidden IP)" in output, output
        return "Cannot complete Allocation" not in output

    with coturn("127.0.0.1", SECRET, tmp_path / "coturn") as server:
        later = int(time.time()) + 60
        assert allocates(server.port, *credentials(SECRET, "ada", later))
        assert not allocates(server.port, *credentials("not the secret", "ada", later))
        assert not allocates(server.port, *credentials(SECRET, "ada", int(time.time()) - 5))


# -- settings and the command line -------------------------------------------------------------


def test_settings_refuse_a_bad_turn_configuration() -> None:
    for kwargs, expected in (
        ({"turn_urls": ("stun:x.org",), "turn_secret": SECRET}, "must start with turn: or turns:"),
        ({"turn_urls": ("http://x.org",), "turn_secret": SECRET}, "turn: or turns:"),
        ({"turn_secret": SECRET}, "TURN secret without a TURN server"),
        ({"turn_urls": TURN}, "TURN server without its secret"),
        ({"turn_urls": TURN, "turn_secret": SECRET, "turn_ttl": 0}, "turn_ttl"),
    ):
        with pytest.raises(ValueError, match=expected):
            Settings(**kwargs)
    settings = Settings(turn_urls=TURN, turn_secret=SECRET)
    assert SECRET not in repr(settings)


def test_the_kernels_signaller_reads_turn_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("IPYMEET_TURN_URLS", ", ".join(TURN))
    monkeypatch.setenv("MY_TURN_SECRET", f" {SECRET}\n")
    monkeypatch.setenv("IPYMEET_TURN_SECRET", "env:MY_TURN_SECRET")
    monkeypatch.setenv("IPYMEET_TURN_TTL", "120")
    settings = Settings.from_env()
    assert (settings.turn_urls, settings.turn_secret, settings.turn_ttl) == (TURN, SECRET, 120)

    secret_file = tmp_path / "turn-secret"
    secret_file.write_text(SECRET + "\n")
    secret_file.chmod(0o600)
    monkeypatch.setenv("IPYMEET_TURN_SECRET", f"file:{secret_file}")
    assert Settings.from_env().turn_secret == SECRET

    for name, value, expected in (
        ("IPYMEET_TURN_SECRET", "env:NOT_SET_ANYWHERE", "NOT_SET_ANYWHERE is not set"),
        ("IPYMEET_TURN_SECRET", f"file:{tmp_path / 'missing'}", "no such file"),
        ("IPYMEET_TURN_SECRET", SECRET, "use env:NAME or file:PATH"),
        ("IPYMEET_TURN_URLS", "turn:ok.org stun:not-turn.org", "turn: or turns:"),
        ("IPYMEET_TURN_TTL", "an hour", "whole number of seconds"),
    ):
        with monkeypatch.context() as env:
            env.setenv(name, value)
            with pytest.raises(ValueError, match=expected) as refused:
                Settings.from_env()
            assert SECRET not in str(refused.value)
    monkeypatch.delenv("IPYMEET_TURN_URLS")
    with pytest.raises(ValueError, match="TURN secret without a TURN server"):
        Settings.from_env()


@posix_only("file modes")
def test_a_turn_secret_the_others_can_read_is_warned_about(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret_file = tmp_path / "turn-secret"
    secret_file.write_text(SECRET)
    secret_file.chmod(0o644)
    monkeypatch.setenv("IPYMEET_TURN_URLS", TURN[0])
    monkeypatch.setenv("IPYMEET_TURN_SECRET", f"file:{secret_file}")
    with caplog.at_level(logging.WARNING):
        Settings.from_env()
    assert "chmod 600" in caplog.text
    assert SECRET not in caplog.text
    # Without POSIX the mode says nothing of who may read it (Windows: every file is 0o666).
    caplog.clear()
    monkeypatch.delattr(os, "getuid")
    with caplog.at_level(logging.WARNING):
        assert Settings.from_env().turn_secret == SECRET
    assert "chmod 600" not in caplog.text


def test_serve_refuses_bad_turn_options_at_start(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Each is exit code 2 and one plain line, before anything listens."""
    monkeypatch.setenv("MY_TURN_SECRET", SECRET)
    for args, expected in (
        (["--turn-url", "stun:x.org", "--turn-secret", "env:MY_TURN_SECRET"], "turn: or turns:"),
        (["--turn-url", TURN[0], "--turn-secret", "env:NOPE_NOT_SET"], "NOPE_NOT_SET is not set"),
        (["--turn-url", TURN[0], "--turn-secret", f"file:{tmp_path / 'x'}"], "no such file"),
        (["--turn-url", TURN[0], "--turn-secret", SECRET], "use env:NAME or file:PATH"),
        (["--turn-secret", "env:MY_TURN_SECRET"], "without a TURN server"),
        (["--turn-url", TURN[0]], "without its secret"),
        (["--turn-url", TURN[0], "--turn-secret", "env:MY_TURN_SECRET", "--turn-ttl", "0"], "ttl"),
    ):
        assert cli.main(["serve", "--port", "0", *args]) == 2
        err = capsys.readouterr().err
        assert expected in err, err
        assert err.startswith("ipymeet serve: "), err
        assert SECRET not in err


# -- the enter acknowledgement -----------------------------------------------------------------


async def test_enter_hands_each_member_its_own_credentials(
    make_signaller: MakeSignaller, caplog: pytest.LogCaptureFixture
) -> None:
    stun = ({"urls": "stun:stun.example.org"},)
    server = make_signaller(ice_servers=stun, turn_urls=TURN, turn_secret=SECRET, turn_ttl=300)
    clients = [socketio.AsyncClient(reconnection=False) for _ in range(2)]
    caplog.set_level(logging.DEBUG)
    try:
        acks = []
        for index, client in enumerate(clients):
            await client.connect(server.url, transports=["websocket"])
            acks.append(await client.call("enter", {"room": "turn-1", "name": f"p{index}"}))
        now = int(time.time())
        for ack in acks:
            assert ack["ice_servers"][0] == stun[0]
            relay = ack["ice_servers"][1]
            expiry, _, member = relay["username"].partition(":")
            assert member == ack["self"]
            assert now + 300 - 5 <= int(expiry) <= now + 300
            assert relay["urls"] == list(TURN)
            assert relay["credential"] == credentials(SECRET, ack["self"], int(expiry))[1]
        assert acks[0]["ice_servers"][1] != acks[1]["ice_servers"][1]
        await clients[1].call("signal", {"to": acks[0]["self"], "description": OFFER})
    finally:
        for client in clients:
            await client.disconnect()
        await asyncio.sleep(0)
    for ack in acks:
        relay = ack["ice_servers"][1]
        assert relay["credential"] not in caplog.text
        assert relay["username"] not in caplog.text
    assert SECRET not in caplog.text


OFFER = {"type": "offer", "sdp": "v=0\r\n"}


def test_the_kernel_route_passes_the_credentials_to_the_page_only(
    make_signaller: MakeSignaller, caplog: pytest.LogCaptureFixture
) -> None:
    """Through the widget's comm the acknowledgement reaches the page by custom message (never
    saved), and no log line of the kernel holds it."""
    server = make_signaller(turn_urls=TURN, turn_secret=SECRET)
    page = RoutePage(server, client="k-turn", room="t-2")
    caplog.set_level(logging.DEBUG)
    try:
        page.connect(1)
        page.send(
            {"type": "sig_request", "n": 1, "id": 7, "event": "enter", "payload": {"room": "t-2"}}
        )
        reply = page.wait(lambda m: m["type"] == "sig_answer" and m["id"] == 7)["reply"]
    finally:
        page.route.close()
    relay = reply["ice_servers"][-1]
    assert relay["username"].endswith(":" + reply["self"])
    assert relay["credential"] not in caplog.text
    assert relay["username"] not in caplog.text


def test_relay_only_is_a_synced_trait_and_no_credential_is_in_the_widgets_state() -> None:
    room = VideoRoom("turn-3", relay_only=True)
    try:
        state = room.get_state()
        assert state["relay_only"] is True
        other = VideoRoom("turn-4")
        assert other.relay_only is False
        other.close()
        # Every synced value but the front end's own code (the bundle, which handles credentials).
        text = repr({k: v for k, v in state.items() if k not in ("_esm", "_css")})
        assert "credential" not in text
        assert "username" not in text
        assert SECRET not in text
    finally:
        room.close()


async def test_a_kernels_signaller_configured_by_the_environment_hands_out_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``IPYMEET_TURN_*`` reach the acknowledgement of a signaller made as a kernel makes its own
    (``Settings.from_env``, server/kernel/runner.py)."""
    monkeypatch.setenv("IPYMEET_TURN_URLS", TURN[0])
    monkeypatch.setenv("MY_TURN_SECRET", SECRET)
    monkeypatch.setenv("IPYMEET_TURN_SECRET", "env:MY_TURN_SECRET")
    monkeypatch.setenv("IPYMEET_TURN_TTL", "90")
    server = SignallerThread(Settings.from_env(ice_servers=())).start()
    client = socketio.AsyncClient(reconnection=False)
    try:
        await client.connect(server.url, transports=["websocket"])
        ack = await client.call("enter", {"room": "turn-env"})
    finally:
        await client.disconnect()
        server.stop()
    [relay] = ack["ice_servers"]
    expiry = int(relay["username"].split(":")[0])
    assert relay["urls"] == [TURN[0]]
    assert relay["credential"] == credentials(SECRET, ack["self"], expiry)[1]
    assert int(time.time()) + 85 <= expiry <= int(time.time()) + 90


# -- renewals ------------------------------------------------------------------------------------


def test_renewals_come_at_three_quarters_of_the_lifetime() -> None:
    assert RENEW_AT == 0.75
    assert renewal_delay(DEFAULT_TURN_TTL) == 3 * 3600  # an hour before the default 4 h are over
    assert renewal_delay(4) == 3.0
    assert renewal_delay(1) == 0.75


async def test_a_renewal_timer_sends_fresh_credentials_again_and_again_until_stopped() -> None:
    loop = asyncio.get_running_loop()
    settings = Settings(ice_servers=(), turn_urls=TURN, turn_secret=SECRET, turn_ttl=1)
    sent: list[tuple[str, list[dict[str, Any]], float]] = []
    arrived = asyncio.Event()

    async def send(sid: str, servers: list[dict[str, Any]]) -> bool:
        sent.append((sid, servers, loop.time()))
        arrived.set()
        return True

    async def until_sent(count: int) -> None:
        while len(sent) < count:
            arrived.clear()
            await asyncio.wait_for(arrived.wait(), 5)

    renewals = Renewals(settings, send)
    started = loop.time()
    renewals.start("sid-ada", "ada")
    assert len(renewals) == 1
    await until_sent(2)
    assert [sid for sid, _, _ in sent] == ["sid-ada", "sid-ada"]
    # Each 0.75 s after the last (the timer's own sleep: never early).
    assert sent[0][2] - started >= 0.75
    assert sent[1][2] - sent[0][2] >= 0.75
    for _, servers, _ in sent:
        [relay] = servers
        expiry = int(relay["username"].split(":")[0])
        assert relay["credential"] == credentials(SECRET, "ada", expiry)[1]
        assert expiry >= int(time.time())
    # A second start for the same connection replaces its timer; stop and close end them all.
    renewals.start("sid-ada", "ada")
    renewals.start("sid-bo", "bo")
    assert len(renewals) == 2
    renewals.stop("sid-ada")
    renewals.stop("sid-ada")
    assert len(renewals) == 1
    renewals.close()
    assert len(renewals) == 0


async def test_a_renewal_timer_ends_when_its_member_is_gone_and_survives_a_failed_send(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = Settings(ice_servers=(), turn_urls=TURN, turn_secret=SECRET, turn_ttl=1)
    calls: list[str] = []
    passwords: list[str] = []

    async def send(sid: str, servers: list[dict[str, Any]]) -> bool:
        calls.append(sid)
        passwords.append(servers[0]["credential"])
        if len(calls) == 1:
            raise ConnectionError(f"lost while sending {servers}")
        return False  # the second time: no longer in a room

    renewals = Renewals(settings, send)
    renewals.start("sid-ada", "ada")
    deadline = time.monotonic() + 5
    while len(renewals):
        assert time.monotonic() < deadline, calls
        await asyncio.sleep(0.05)
    assert calls == ["sid-ada", "sid-ada"]
    assert "could not renew a member's TURN credentials (ConnectionError)" in caplog.text
    # The error's message quoted the credentials: it is not logged.
    assert passwords[0] not in caplog.text
    # Without TURN nothing ever starts.
    plain = Renewals(Settings(ice_servers=()), send)
    plain.start("sid-bo", "bo")
    assert len(plain) == 0
