"""The kernels' side of the hub's ipymeet service (server/hub/client.py): how a kernel finds the
service (``IPYMEET_SIGNALLER`` by hand, or the hub's API), what it sees of it, and what it does
when the service cannot be reached: the widget says so, the cell returns, and the kernel attaches
once the service answers. The hub's API is :func:`stand_in_hub`'s (tests/unit/test_hub.py), the
service the real app; a real hub's answers are checked in tests/e2e/test_hub.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from ipymeet.server import Settings, SignallerThread, choose
from ipymeet.server.hub.client import (
    NoService,
    ServiceLookup,
    ServiceSignaller,
    ServiceUnreachable,
    lookup_from_env,
    service_from_env,
    source_from_env,
)
from ipymeet.server.kernel.attach import HostState
from ipymeet.widget import ErrorCode, VideoRoom

from ..integration.helpers import until
from ..support import free_port
from .test_hub import running_service, stand_in_hub

#: A single-user server's token; must never show in a message, a trait or a repr.
TOKEN = "user-server-token-0123456789abcdef"

#: What JupyterHub gives a single-user server (spawner.get_env), the parts discovery reads.
SERVER_ENV = {
    "JUPYTERHUB_API_URL": "http://127.0.0.1:8081/hub/api",
    "JUPYTERHUB_API_TOKEN": TOKEN,
    "JUPYTERHUB_BASE_URL": "/",
    "JUPYTERHUB_USER": "ada",
    "JUPYTERHUB_SERVER_NAME": "",
    "JUPYTERHUB_PUBLIC_URL": "",
    "JUPYTERHUB_PUBLIC_HUB_URL": "",
}


def test_a_kernel_finds_the_service_in_its_environment() -> None:
    assert service_from_env({}) is None
    target = service_from_env(
        {
            "IPYMEET_SIGNALLER": "http://127.0.0.1:8000/services/ipymeet",
            "JUPYTERHUB_API_TOKEN": "user-server-token",
        }
    )
    assert target is not None
    assert target.url == "http://127.0.0.1:8000/services/ipymeet/"
    assert (target.origin, target.path, target.port) == (
        "http://127.0.0.1:8000",
        "/services/ipymeet/",
        8000,
    )
    assert "user-server-token" not in repr(target)
    https = service_from_env(
        {"IPYMEET_SIGNALLER": "https://hub.example.org/", "JUPYTERHUB_API_TOKEN": "t"}
    )
    assert https is not None
    assert (https.port, https.path) == (443, "/")


def test_invite_links_use_the_hubs_public_address_when_the_hub_knows_it() -> None:
    """A kernel reaching the service at a cluster address (the proxy's service name) gives
    invite links on the hub's public origin (``c.JupyterHub.public_url``, handed to every
    server as JUPYTERHUB_PUBLIC_HUB_URL), with the service's path."""
    env = {
        "IPYMEET_SIGNALLER": "http://proxy-public/services/ipymeet/",
        "JUPYTERHUB_API_TOKEN": "t",
        "JUPYTERHUB_PUBLIC_HUB_URL": "https://hub.example.org/hub/",
    }
    target = service_from_env(env)
    assert target is not None
    assert target.url == "http://proxy-public/services/ipymeet/"
    assert target.public == "https://hub.example.org/services/ipymeet/"
    # Without it (the hub has no public_url, or it is empty): the kernel's own address.
    for unset in ("", "not a url"):
        bare = service_from_env({**env, "JUPYTERHUB_PUBLIC_HUB_URL": unset})
        assert bare is not None
        assert bare.public == bare.url


def test_a_kernel_without_its_hub_token_or_with_a_bad_url_says_so() -> None:
    with pytest.raises(ValueError, match="JUPYTERHUB_API_TOKEN is not"):
        service_from_env({"IPYMEET_SIGNALLER": "http://127.0.0.1:8000/services/ipymeet/"})
    with pytest.raises(ValueError, match="as the kernel reaches it"):
        service_from_env({"IPYMEET_SIGNALLER": "/services/ipymeet/", "JUPYTERHUB_API_TOKEN": "t"})


def test_the_kernels_view_of_the_service_is_its_own_address_and_never_a_token_secret() -> None:
    target = service_from_env(
        {"IPYMEET_SIGNALLER": "http://10.0.0.5:8000/services/ipymeet/", "JUPYTERHUB_API_TOKEN": "t"}
    )
    assert target is not None
    server = ServiceSignaller(target, Settings(ice_servers=()))
    assert server.page_url == "/services/ipymeet/"
    told = HostState(
        port=10101,
        url="http://127.0.0.1:10101",
        public_url="http://127.0.0.1:10101",
        host="127.0.0.1",
        scheme="http",
        tls=None,
        fingerprint=None,
        max_peers=6,
        token_secret=b"x" * 32,
    )
    seen = server._seen_here(told)
    assert (seen.url, seen.public_url, seen.port, seen.host) == (
        "http://10.0.0.5:8000/services/ipymeet",
        "http://10.0.0.5:8000/services/ipymeet",
        8000,
        "10.0.0.5",
    )
    assert not seen.requires_tokens
    public = service_from_env(
        {
            "IPYMEET_SIGNALLER": "http://10.0.0.5:8000/services/ipymeet/",
            "JUPYTERHUB_API_TOKEN": "t",
            "JUPYTERHUB_PUBLIC_HUB_URL": "https://hub.example.org/hub/",
        }
    )
    assert public is not None
    seen = ServiceSignaller(public, Settings(ice_servers=()))._seen_here(told)
    assert (seen.url, seen.public_url) == (
        "http://10.0.0.5:8000/services/ipymeet",
        "https://hub.example.org/services/ipymeet",
    )
    server.require_tokens()  # nothing to turn on: the hub's login is the gate
    with pytest.raises(ValueError, match="--max-peers"):
        server.set_max_peers(3)


def test_a_kernel_under_a_hub_asks_the_hubs_api_for_the_service() -> None:
    """With no ``IPYMEET_SIGNALLER``, a single-user server's environment is enough: the hub's
    API, the token, the service's path under the hub's base URL; ``IPYMEET_HUB_SERVICE`` names
    another service; outside a hub there is nothing to ask."""
    assert lookup_from_env({}) is None
    assert lookup_from_env({"JUPYTERHUB_API_URL": "http://127.0.0.1:8081/hub/api"}) is None
    lookup = lookup_from_env(SERVER_ENV)
    assert lookup == ServiceLookup("ipymeet", "http://127.0.0.1:8081/hub/api", TOKEN)
    assert (lookup.path, lookup.public) == ("/services/ipymeet/", "")
    assert TOKEN not in repr(lookup)
    other = lookup_from_env(
        {
            **SERVER_ENV,
            "JUPYTERHUB_API_URL": "http://hub:8081/jh/hub/api/",
            "JUPYTERHUB_BASE_URL": "/jh/",
            "JUPYTERHUB_PUBLIC_URL": "https://hub.example.org/jh/",
            "IPYMEET_HUB_SERVICE": "meet",
        }
    )
    assert other is not None
    assert (other.name, other.api_url, other.path) == (
        "meet",
        "http://hub:8081/jh/hub/api",
        "/jh/services/meet/",
    )
    assert other.public == "https://hub.example.org/jh/services/meet/"
    # By hand still wins, with no question to the hub.
    by_hand = {**SERVER_ENV, "IPYMEET_SIGNALLER": "http://10.0.0.5:8000/services/ipymeet/"}
    assert source_from_env(by_hand) == service_from_env(by_hand)
    assert source_from_env(SERVER_ENV) == lookup
    assert source_from_env({}) is None


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"JUPYTERHUB_API_URL": "/hub/api"}, "JUPYTERHUB_API_URL must be the hub's API URL"),
        ({"IPYMEET_HUB_SERVICE": "a/b"}, "IPYMEET_HUB_SERVICE must be the name"),
        ({"IPYMEET_SIGNALLER": "hub.example.org"}, "IPYMEET_SIGNALLER must be the service's URL"),
    ],
)
def test_a_wrong_value_says_which_and_is_no_bare_value_error(
    change: dict[str, str], says: str
) -> None:
    with pytest.raises(ServiceUnreachable, match=says) as raised:
        source_from_env({**SERVER_ENV, **change})
    assert TOKEN not in str(raised.value)


async def test_the_hubs_answer_gives_the_services_own_address_then_the_public_one() -> None:
    model = {
        "kind": "service",
        "name": "ipymeet",
        "url": "http://127.0.0.1:10101",
        "prefix": "/services/ipymeet/",
    }
    async with stand_in_hub({}) as hub:
        hub.services["ipymeet"] = model
        hub.service_readers.add(TOKEN)
        lookup = ServiceLookup("ipymeet", hub.api_url, TOKEN)
        found = await asyncio.to_thread(lookup.find)
        assert [t.url for t in found] == ["http://127.0.0.1:10101/services/ipymeet/"]
        assert (found[0].path, found[0].token) == ("/services/ipymeet/", TOKEN)
        public = ServiceLookup(
            "ipymeet", hub.api_url, TOKEN, public_origin="https://hub.example.org"
        )
        found = await asyncio.to_thread(public.find)
        assert [t.url for t in found] == [
            "http://127.0.0.1:10101/services/ipymeet/",
            "https://hub.example.org/services/ipymeet/",
        ]
        assert found[0].public == "https://hub.example.org/services/ipymeet/"
        # Only the name told (read:services:name): the public address, or say what is missing.
        hub.services["ipymeet"] = {"kind": "service", "name": "ipymeet", "admin": False}
        found = await asyncio.to_thread(public.find)
        assert [t.url for t in found] == ["https://hub.example.org/services/ipymeet/"]
        with pytest.raises(ServiceUnreachable, match="read:services!service=ipymeet") as raised:
            await asyncio.to_thread(lookup.find)
        assert TOKEN not in str(raised.value)


async def test_a_hub_without_the_service_or_that_will_not_say_means_none() -> None:
    async with stand_in_hub({}) as hub:
        hub.service_readers.add(TOKEN)
        with pytest.raises(NoService, match="no service named 'ipymeet'"):
            await asyncio.to_thread(ServiceLookup("ipymeet", hub.api_url, TOKEN).find)
        hub.services["ipymeet"] = {
            "kind": "service",
            "name": "ipymeet",
            "url": "http://127.0.0.1:1",
        }
        with pytest.raises(NoService, match="may not read"):  # a server token's default scopes
            await asyncio.to_thread(ServiceLookup("ipymeet", hub.api_url, "other-token").find)
    # The hub's API not answering is no answer: the kernel keeps asking (ServiceSignaller).
    gone = f"http://127.0.0.1:{free_port()}/hub/api"
    with pytest.raises(
        ServiceUnreachable, match=f"could not ask the hub's API at {gone}"
    ) as raised:
        ServiceLookup("ipymeet", gone, TOKEN).find()
    assert not isinstance(raised.value, NoService)
    assert TOKEN not in str(raised.value)


@pytest.fixture
def fresh_kernel_signaller(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The kernel's signaller made anew in this test (and stopped after), with no ICE servers."""
    monkeypatch.setattr(choose, "_shared_signaller", None)
    monkeypatch.setattr(choose, "_kernel_signaller", None)
    monkeypatch.setattr(choose, "_no_service", None)
    monkeypatch.setenv("IPYMEET_ICE_SERVERS", "[]")
    monkeypatch.delenv("IPYMEET_SIGNALLER", raising=False)
    yield
    for made in (choose._shared_signaller, choose._kernel_signaller):
        if made is not None:
            made.stop()


async def test_a_widget_shows_a_service_that_is_down_and_connects_once_it_is_up(
    monkeypatch: pytest.MonkeyPatch, fresh_kernel_signaller: None
) -> None:
    """The hub names a service whose address answers nothing: ``VideoRoom(...)`` returns, its
    ``error_code`` is ``signaller_unreachable`` and ``error`` names the address tried and the
    cause (never the token). Once the service runs there, the kernel attaches on its own, with
    the widget's key, and the error clears."""
    port = free_port()
    async with stand_in_hub({TOKEN: ("ada", [])}) as hub:
        hub.services["ipymeet"] = {
            "name": "ipymeet",
            "url": f"http://127.0.0.1:{port}",
            "prefix": "/services/ipymeet/",
        }
        hub.service_readers.add(TOKEN)
        for name, value in {**SERVER_ENV, "JUPYTERHUB_API_URL": hub.api_url}.items():
            monkeypatch.setenv(name, value)
        room = await asyncio.to_thread(VideoRoom, "down")
        try:
            assert room.error_code == ErrorCode.SIGNALLER_UNREACHABLE
            assert f"http://127.0.0.1:{port}/services/ipymeet/" in room.error, room.error
            assert "connection refused: nothing listens there" in room.error
            assert "keeps trying" in room.error
            assert TOKEN not in room.error
            assert room.signaling_url == "/services/ipymeet/"
            server = choose._shared_signaller
            assert isinstance(server, ServiceSignaller)
            assert server.running
            async with running_service(hub.api_url, port) as service:
                await until(lambda: room.error_code == ErrorCode.NONE, "the error to clear", 30)
                assert room.error == ""
                assert server.problem == ""
                assert service.hub.user_of_key(room._client) == "ada"
        finally:
            room.close()


async def test_a_hub_without_the_service_leaves_the_kernel_its_own_signaller(
    monkeypatch: pytest.MonkeyPatch, fresh_kernel_signaller: None
) -> None:
    async with stand_in_hub({}) as hub:  # a hub that lets nobody read its services: 403
        for name, value in {**SERVER_ENV, "JUPYTERHUB_API_URL": hub.api_url}.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("IPYMEET_SHARE", "0")
        server = await asyncio.to_thread(choose.kernel_signaller)
        assert isinstance(server, SignallerThread)
        assert choose._no_service is not None  # asked once, not at every widget


def test_a_wrong_environment_is_the_widgets_error_not_the_cells(
    monkeypatch: pytest.MonkeyPatch, fresh_kernel_signaller: None
) -> None:
    monkeypatch.setenv("IPYMEET_SIGNALLER", "hub.example.org/services/ipymeet/")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", TOKEN)
    room = VideoRoom("wrong")
    try:
        assert room.error_code == ErrorCode.SIGNALLER_UNREACHABLE
        assert "IPYMEET_SIGNALLER must be the service's URL" in room.error
        assert "restart the kernel" in room.error
        assert TOKEN not in room.error
    finally:
        room.close()


def test_a_service_signaller_never_started_is_not_running() -> None:
    lookup = ServiceLookup("ipymeet", "http://127.0.0.1:1/hub/api", TOKEN)
    server = ServiceSignaller(lookup, Settings(ice_servers=()))
    assert (server.running, server.problem, server.page_url) == (False, "", "/services/ipymeet/")
