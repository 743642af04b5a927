"""``ipymeet serve --jupyterhub`` behind a real JupyterHub (tests/e2e/hubserver.py): what the hub
vouches for gets in, nothing else does, and two hub users, each in a notebook of their own
server, meet with video both ways, each kernel naming the other.

The tests without a browser come first: sync Playwright, once started in this module, keeps an
event loop marked running in this thread.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import socketio

from ipymeet.server.hub.client import ServiceSignaller, ServiceTarget
from ipymeet.server.hub.service import COOKIE

from ..support import KERNEL_IDLE_JS, free_port, wait_http, wait_until, write_notebook
from .conftest import ARTIFACTS, wait_remote_video
from .hubserver import DOWN_SERVICE, PASSWORD, Hub, start_hub, stop_hub
from .test_jupyter import LOGGER, wait_kernel

pytestmark = [pytest.mark.jupyter]


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    hub = start_hub(tmp_path_factory.mktemp("hub"))
    try:
        yield hub
    finally:
        stop_hub(hub)


def sio_connect(hub: Hub, *, base: str | None = None, **kwargs: Any) -> socketio.Client:
    """A Socket.IO client of the service at ``/services/ipymeet/`` of ``base`` (the hub's)."""
    client = socketio.Client(reconnection=False)
    client.connect(
        (base or hub.url).rstrip("/"),
        socketio_path="/services/ipymeet/socket.io",
        transports=["websocket"],
        wait_timeout=10,
        **kwargs,
    )
    return client


def hub_login(hub: Hub, user: str, start: str) -> tuple[requests.Session, requests.Response]:
    """Log ``user`` in as a browser would, starting at ``start`` (a page behind the login);
    the session and the last answer."""
    http = requests.Session()
    page = http.get(start, timeout=30)
    assert urlsplit(page.url).path == "/hub/login", page.url  # sent to the hub's login
    xsrf = re.search(r'name="_xsrf"[^>]*value="([^"]+)"', page.text)
    form = {"username": user, "password": PASSWORD, "_xsrf": xsrf.group(1) if xsrf else ""}
    return http, http.post(page.url, data=form, timeout=30)


def user_token(hub: Hub, user: str) -> str:
    """A hub API token of ``user`` (as a single-user server inherits one), via the test-only
    service."""
    headers = {"Authorization": f"token {hub.tester_token}"}
    made = requests.post(f"{hub.url}hub/api/users/{user}", headers=headers, timeout=30)
    assert made.status_code in (201, 409), made.text
    reply = requests.post(
        f"{hub.url}hub/api/users/{user}/tokens",
        headers=headers,
        json={"note": "ipymeet test kernel"},
        timeout=30,
    )
    assert reply.status_code == 201, reply.text
    return str(reply.json()["token"])


def test_without_the_hubs_word_nothing_connects(hub: Hub) -> None:
    """Socket.IO to /services/ipymeet/ is refused with no login, a forged cookie, a token the
    hub does not know, or a widget key no kernel registered; and a kernel may not use the
    runtime file's handshake there."""
    refusals: list[dict[str, Any]] = [
        {},
        {"headers": {"Cookie": f"{COOKIE}=Zm9yZ2Vk.0000"}},
        {"auth": {"jupyterhub_token": secrets.token_hex(16)}},
        {"auth": {"client": secrets.token_hex(8)}},
    ]
    for kwargs in refusals:
        with pytest.raises(socketio.exceptions.ConnectionError):
            sio_connect(hub, **kwargs)
    kernel = sio_connect(hub, auth={"jupyterhub_token": user_token(hub, "eve")})
    try:
        answer = kernel.call("kernel_hello", {"challenge": "0" * 64}, timeout=10)
        assert answer["ok"] is False, answer
        assert answer["code"] == "forbidden", answer
    finally:
        kernel.disconnect()


def test_a_hub_login_and_a_kernels_token_get_in_under_the_users_names(hub: Hub) -> None:
    """carol logs in through the hub (OAuth, no confirmation page) and her standalone page is
    served; her Socket.IO connection carries the service's cookie. dave's "kernel" attaches with
    his hub token and registers a widget key, whose page gets in. Neither gives a name: each is
    shown under the hub user's, and dave's kernel hears both first-hand."""
    http, page = hub_login(hub, "carol", f"{hub.service_url}?room=hubroom")
    assert page.status_code == 200, page.text[:500]
    assert urlsplit(page.url).path == "/services/ipymeet/", page.url
    assert 'id="app"' in page.text
    cookie = http.cookies.get(COOKIE, path="/services/ipymeet/")
    assert cookie, http.cookies
    joined: list[dict[str, Any]] = []
    carol = sio_connect(hub, headers={"Cookie": f"{COOKIE}={cookie}"})
    carol.on("peer_joined", joined.append)
    # Invite links are on the hub's public address (here the same port under another name).
    public = hub.service_url.replace("127.0.0.1", "localhost")
    target = ServiceTarget(hub.service_url, user_token(hub, "dave"), public)
    server = ServiceSignaller(target).start()
    widget = None
    try:
        assert server.public_url == public.rstrip("/")
        assert server.url == hub.service_url.rstrip("/")
        entered = carol.call("enter", {"room": "hubroom", "name": ""}, timeout=10)
        assert entered["ok"] is True, entered
        key = secrets.token_hex(8)
        server.register(key)
        widget = sio_connect(hub, auth={"client": key})
        answer = widget.call("enter", {"room": "hubroom", "name": ""}, timeout=10)
        assert answer["ok"] is True, answer
        assert [peer["name"] for peer in answer["peers"]] == ["carol"]
        wait_until(lambda: joined, what="carol hearing dave")
        assert joined[0]["name"] == "dave", joined
        wait_until(
            lambda: [m.name for m in server.members("hubroom")] == ["carol", "dave"],
            what="dave's kernel hearing the room",
        )
    finally:
        for client in (carol, widget):
            if client is not None:
                client.disconnect()
        server.stop()


def start_service(hub: Hub, port: int, log: Path, name: str = "ipymeet") -> subprocess.Popen[Any]:
    """``ipymeet serve --jupyterhub`` as the hub would start service ``name``, on ``port``, with
    the hub's API (the test-only service's token stands for the service's own)."""
    env = {
        **os.environ,
        "JUPYTERHUB_API_URL": hub.api_url,
        "JUPYTERHUB_API_TOKEN": hub.tester_token,
        "JUPYTERHUB_SERVICE_NAME": name,
        "JUPYTERHUB_SERVICE_PREFIX": f"/services/{name}/",
        "JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{port}/",
        "PYTHONUNBUFFERED": "1",
    }
    argv = [sys.executable, "-m", "ipymeet.server.cli", "serve", "--jupyterhub"]
    argv += ["--ice-servers", "[]"]
    with log.open("a") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=out)
    try:
        wait_http(f"http://127.0.0.1:{port}/services/{name}/healthz", 30, proc)
    except BaseException:
        proc.kill()
        proc.wait(5)
        raise
    return proc


def stop_process(proc: subprocess.Popen[Any]) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def test_a_kernel_attaches_again_when_the_service_restarts(hub: Hub, tmp_path: Path) -> None:
    """The service ends and starts again on its port (as the hub restarts a managed service):
    frank's kernel attaches again on its own, with his widget's key, so his page gets back in
    and his kernel hears the room again."""
    port, log = free_port(), tmp_path / "service.log"
    base = f"http://127.0.0.1:{port}"
    proc = start_service(hub, port, log)
    server = ServiceSignaller(
        ServiceTarget(f"{base}/services/ipymeet/", user_token(hub, "frank"))
    ).start()
    page = None
    try:
        key = secrets.token_hex(8)
        server.register(key)
        page = sio_connect(hub, base=base, auth={"client": key})
        assert page.call("enter", {"room": "again"}, timeout=10)["ok"] is True
        wait_until(lambda: [m.name for m in server.members("again")] == ["frank"], what="members")
        page.disconnect()
        stop_process(proc)
        proc = start_service(hub, port, log)
        page = sio_connect(hub, base=base, auth={"client": key})  # waits for the key a moment
        answer = page.call("enter", {"room": "again"}, timeout=10)
        assert answer["ok"] is True, answer
        wait_until(
            lambda: [m.name for m in server.members("again")] == ["frank"],
            what="the kernel attached again and hearing its room",
        )
    finally:
        if page is not None:
            page.disconnect()
        server.stop()
        stop_process(proc)
    assert "a kernel of hub user frank attached" in log.read_text()


def names_only(other: str) -> Callable[[list[list[Any]]], bool]:
    """Whether a kernel's log has its ``peers`` naming ``other``, and only ``other``."""
    return lambda entries: ["peers", [other]] in entries


@pytest.mark.browser
def test_two_hub_users_meet_from_their_own_servers(hub: Hub, new_page: Callable[..., Any]) -> None:
    """alice and bob log in to the hub in two browsers; each opens a notebook in their own
    server with ``VideoRoom("class")`` and joins: video plays both ways through the service at
    /services/ipymeet/ on the hub's origin, and each kernel's ``peers`` names the other. A
    browser without a hub login opening the service's page lands on the hub's login."""
    users = ("alice", "bob")
    logs = {user: hub.home(user) / "kernel.jsonl" for user in users}
    for user in users:
        write_notebook(
            hub.home(user) / "class.ipynb",
            [
                LOGGER.format(log=str(logs[user])),
                "room = VideoRoom('class')\n"
                "record('me', room)\n"
                "room.observe(lambda change: note('peers', sorted(p['name'] for p in change.new)),"
                " names='peers')\n"
                "room",
                "room.join()",
            ],
        )
    pages = {user: new_page() for user in users}
    for user, page in pages.items():
        page.goto(f"{hub.url}hub/login")
        page.fill("#username_input", user)
        page.fill("#password_input", PASSWORD)
        page.click("#login_submit")
    for user, page in pages.items():
        page.wait_for_url(re.compile(rf"/user/{user}/lab"), timeout=150_000)
        page.goto(f"{hub.url}user/{user}/lab/tree/class.ipynb?reset")
        page.wait_for_function(KERNEL_IDLE_JS, timeout=120_000)
    for page in pages.values():
        page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
    for page in pages.values():
        wait_remote_video(page, timeout=90)
    for user, other in (("alice", "bob"), ("bob", "alice")):
        entries = wait_kernel(logs[user], names_only(other), timeout=60)
        via = [e[2] for e in entries if e[:2] == ["me", "connected_via"]]
        assert f"{hub.url}services/ipymeet/" in via, entries
        assert ["me", "state", "in_call"] in entries, entries
    ARTIFACTS.mkdir(exist_ok=True)
    for user, page in pages.items():
        page.locator("[data-testid=remote-video]").first.scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / f"hub-call-{user}.png"), full_page=False)
    stranger = new_page(f"{hub.service_url}?room=class")
    assert urlsplit(stranger.url).path == "/hub/login", stranger.url
    assert stranger.locator("#login_submit").is_visible()


def hub_lab(hub: Hub, page: Any, user: str, notebook: str) -> None:
    """Log ``user`` in at the hub in ``page`` and open ``notebook`` in their own server, its
    kernel idle."""
    page.goto(f"{hub.url}hub/login")
    page.fill("#username_input", user)
    page.fill("#password_input", PASSWORD)
    page.click("#login_submit")
    page.wait_for_url(re.compile(rf"/user/{user}/lab"), timeout=150_000)
    page.goto(f"{hub.url}user/{user}/lab/tree/{notebook}?reset")
    page.wait_for_function(KERNEL_IDLE_JS, timeout=120_000)


@pytest.mark.browser
def test_a_service_that_is_down_is_the_widgets_error_and_the_cell_returns(
    hub: Hub, new_page: Callable[..., Any], tmp_path: Path
) -> None:
    """hope's kernel, in her own server, finds a service the hub has but nobody runs (the hub's
    API names it and its address; ``IPYMEET_HUB_SERVICE`` picks it, as for a service not named
    ipymeet): ``VideoRoom(...)`` returns and the next cell runs; the widget's ``error_code`` is
    ``signaller_unreachable`` and its ``error``, shown in the page, names the address tried and
    the cause, and no token. Once the service runs, the kernel attaches by itself and the error
    clears."""
    log = hub.home("hope") / "kernel.jsonl"
    write_notebook(
        hub.home("hope") / "down.ipynb",
        [
            LOGGER.format(log=str(log))
            + f"import os\nos.environ['IPYMEET_HUB_SERVICE'] = {DOWN_SERVICE!r}\n",
            "room = VideoRoom('downroom')\n"
            "note('made', str(room.error_code), room.error,"
            " os.environ['JUPYTERHUB_API_TOKEN'] in room.error)\n"
            "record('me', room, names=('error_code',))\n"
            "room",
            "note('the next cell ran')",
        ],
    )
    page = new_page()
    hub_lab(hub, page, "hope", "down.ipynb")
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
    entries = wait_kernel(log, lambda e: ["the next cell ran"] in e, timeout=60)
    made = next(e for e in entries if e[0] == "made")
    tried = f"http://127.0.0.1:{hub.down_port}/services/{DOWN_SERVICE}/"
    assert made[1] == "signaller_unreachable", made
    assert tried in made[2], made
    assert "keeps trying" in made[2], made
    assert made[3] is False, "the widget's error shows the server's token"
    banner = page.locator("[data-testid=error]").first
    banner.wait_for(state="visible")
    assert tried in banner.inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    banner.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "hub-service-down.png"), full_page=False)
    proc = start_service(hub, hub.down_port, tmp_path / "down.log", name=DOWN_SERVICE)
    try:
        wait_kernel(log, lambda e: ["me", "error_code", ""] in e, timeout=60)
        banner.wait_for(state="hidden")
    finally:
        stop_process(proc)
    assert "a kernel of hub user hope attached" in (tmp_path / "down.log").read_text()
