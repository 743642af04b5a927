"""Secure rooms in real Chromium: invite links with join tokens, refusals a person can act on,
and a call over HTTPS with a self-signed certificate."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import socketio

from ipymeet import VideoRoom
from ipymeet.server import Settings, SignallerThread, choose
from ipymeet.server.core.app import STATIC_DIR

from ..support import Served, open_and_run, wait_for_file, write_notebook
from .conftest import ARTIFACTS, model, wait_model, wait_remote_video

pytestmark = pytest.mark.browser


def tampered(token: str) -> str:
    raw = bytearray(base64.urlsafe_b64decode(token + "="))
    raw[-1] ^= 1
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


@pytest.fixture
def secure_room(monkeypatch: pytest.MonkeyPatch) -> Iterator[VideoRoom]:
    """A VideoRoom(secure=True) on a kernel signaller of this test's own."""
    monkeypatch.setattr(choose, "_kernel_signaller", None)
    room = VideoRoom("vault-e2e", secure=True)
    try:
        yield room
    finally:
        if choose._kernel_signaller is not None:
            choose._kernel_signaller.stop()
        # Outside a kernel, comm's dummy manager never registered the widget's comm.
        with contextlib.suppress(KeyError):
            room.close()


def test_an_invite_link_enters_and_a_page_without_a_valid_token_is_told_why(
    secure_room: VideoRoom, new_page: Callable[..., Any]
) -> None:
    """The invite link's page joins (and hides the token from its address bar); a page without a
    token, and one with a forged token, each show a plain 'forbidden' message in the view and in
    the model's `error`; a second invited page then calls the first."""
    invite = secure_room.invite_url
    assert "&token=" in invite
    host = new_page(f"{invite}&autojoin=1")
    wait_model(host, "state", "waiting")
    assert "token=" not in host.url, host.url
    assert "room=vault-e2e" in host.url

    base, token = invite.split("&token=")
    for link, says in (
        (f"{base}&autojoin=1", "none was given"),
        (f"{base}&token={tampered(token)}&autojoin=1", "not made by this server"),
    ):
        page = new_page(link)
        wait_model(page, "error_code", "forbidden")
        assert model(page, "state") == "failed"
        shown = page.get_by_test_id("error").inner_text()
        assert "needs an invite link with a valid token" in shown, shown
        assert says in shown, shown
        assert model(page, "error") == shown
        if says == "none was given":
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "security-forbidden.png"))
    # Nobody was let in: the host is still alone, and then an invited guest gets through.
    assert model(host, "state") == "waiting"
    guest = new_page(f"{secure_room.invite_url}&autojoin=1")
    wait_model(guest, "state", "in_call")
    wait_model(host, "state", "in_call")
    wait_remote_video(host)
    wait_remote_video(guest)


def test_a_call_over_https_with_a_self_signed_certificate(launch: Callable[..., Any]) -> None:
    """`tls="self-signed"`: two Chromiums (told to accept the certificate, as a person would after
    checking its fingerprint) open https invite links and see each other."""
    server = SignallerThread(
        Settings(ice_servers=(), tls="self-signed", secret=b"e2e-tls-secret-0123456789")
    ).start()
    try:
        assert server.url.startswith("https://")
        pages = []
        for _ in range(2):
            page = launch(add=("--ignore-certificate-errors",))
            page.goto(f"{server.url}/?room=tls-room&token={server.mint('tls-room')}&autojoin=1")
            assert page.evaluate("() => window.isSecureContext") is True
            pages.append(page)
        for page in pages:
            wait_model(page, "state", "in_call")
            wait_remote_video(page)
        assert model(pages[0], "connected_via").startswith("https://")
    finally:
        server.stop()


@pytest.mark.jupyter
def test_a_secure_room_in_jupyterlab_gets_its_token_from_the_kernel(
    lab: Served, new_page: Callable[..., Any]
) -> None:
    """In real JupyterLab, `VideoRoom(secure=True)`: a click on Connect makes the browser ask the
    kernel for a token (custom message) and enter; a tab opened from `invite_url` joins the call."""
    invite = lab.root / "secure-invite.txt"
    write_notebook(
        lab.root / "secure.ipynb",
        [
            "import pathlib\nfrom ipymeet import VideoRoom\n"
            "room = VideoRoom('lab-secure', name='Notebook', secure=True)\nroom",
            f"pathlib.Path({str(invite)!r}).write_text(room.invite_url)",
        ],
    )
    page = new_page()
    open_and_run(page, lab, "secure.ipynb")
    assert "&token=" in wait_for_file(invite)
    page.get_by_test_id("connect").click()
    page.wait_for_selector(".ipymeet-root[data-state=waiting]", timeout=60_000)
    tab = new_page(invite.read_text() + "&autojoin=1&name=Visitor")
    wait_remote_video(tab)
    wait_remote_video(page)


# -- DNS rebinding, in a real browser --------------------------------------------------------------

ATTACK = """async () => {
    const result = {};
    result.healthz = (await fetch('/healthz')).status;
    result.page = (await fetch('/?room=lab')).status;
    const attempt = (transports) => new Promise((resolve) => {
        const socket = io({ transports, reconnection: false, forceNew: true, timeout: 4000 });
        socket.on('connect', async () => {
            const answer = await socket.timeout(4000).emitWithAck('enter', { room: 'lab' });
            resolve('entered:' + JSON.stringify(answer));
        });
        socket.on('connect_error', (error) =>
            resolve('refused:' + ((error.data && error.data.code) || error.message)));
    });
    result.polling = await attempt(['polling']);
    result.websocket = await attempt(['websocket']);
    return result;
}"""


#: Chromium with rebind.test pointing at 127.0.0.1, and without its own partial defence
#: (Private/Local Network Access blocks a public page's requests to loopback): Firefox and Safari
#: have none, so the signaller must refuse by itself.
REBINDING_BROWSER = (
    "--host-resolver-rules=MAP rebind.test 127.0.0.1",
    "--disable-features=BlockInsecurePrivateNetworkRequests,PrivateNetworkAccessSendPreflights,"
    "PrivateNetworkAccessRespectPreflightResults,LocalNetworkAccessChecks",
)


def _member(url: str, name: str) -> socketio.SimpleClient:
    client = socketio.SimpleClient()
    client.connect(url, transports=["websocket"])
    assert client.call("enter", {"room": "lab", "name": name}, timeout=5)["ok"] is True
    return client


def test_a_page_on_a_rebound_name_gets_nothing_in_a_real_browser(
    launch: Callable[..., Any],
) -> None:
    """The whole attack in Chromium: the attacker's page is served on ``rebind.test`` (here by
    the browser's request routing, as the attacker's own server would before the rebinding),
    then everything else the page asks of that name goes to 127.0.0.1 (the resolver rule: the
    rebinding), where a kernel's signaller has a member in room "lab". Its fetches get 403, its
    same-origin polling and its WebSocket are refused; the member hears nothing. The same script
    from a page on 127.0.0.1 enters."""
    server = SignallerThread(Settings(ice_servers=())).start()
    try:
        page = launch(add=REBINDING_BROWSER)
        library = (STATIC_DIR / "socket.io.js").read_text()
        html = "<!doctype html><title>cute cats</title><script src='/cats/io.js'></script>"
        origin = f"http://rebind.test:{server.port}"
        page.route(f"{origin}/", lambda route: route.fulfill(body=html, content_type="text/html"))
        page.route(
            f"{origin}/cats/io.js",
            lambda route: route.fulfill(body=library, content_type="text/javascript"),
        )
        member = _member(server.url, "Member")
        try:
            page.goto(f"{origin}/")
            result = page.evaluate(ATTACK)
            assert result == {
                "healthz": 403,
                "page": 403,
                "polling": "refused:forbidden_host",
                "websocket": "refused:forbidden_host",
            }, result
            assert [m.name for m in server.members("lab")] == ["Member"]
            marker = _member(server.url, "Marker")
            try:  # the first the member hears of anyone is the marker
                event, data = member.receive(timeout=5)
                assert (event, data["name"]) == ("peer_joined", "Marker")
            finally:
                marker.disconnect()

            # Beside it, the same script from a page on 127.0.0.1 enters.
            page.goto(f"{server.url}/healthz")
            page.add_script_tag(url=f"{server.url}/socket.io/socket.io.js")
            legit = page.evaluate(ATTACK)
            assert legit["healthz"] == legit["page"] == 200
            assert legit["polling"].startswith('entered:{"ok":true')
            assert legit["websocket"].startswith('entered:{"ok":true')
        finally:
            member.disconnect()
    finally:
        server.stop()
