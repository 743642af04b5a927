"""The JupyterHub service's parts that need no hub (server/hub/service.py): its configuration from
the hub's environment, the login cookie, and the service's app refusing what the hub has not
vouched for (a hub that does not answer vouches for nobody). The
paths a real hub vouches for are in tests/e2e/test_hub.py.

:func:`stand_in_hub` (a small aiohttp app answering the few calls of the hub's API the service
makes, for the tokens it is given, and its OAuth login) and :func:`running_service` (the real
service's app on a loopback port) are what tests/security/test_hub_*.py run the service with.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import html
import secrets
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
import pytest
import socketio
from aiohttp import web

from ipymeet.server import Settings
from ipymeet.server.core import app
from ipymeet.server.hub import service as hub
from ipymeet.server.hub.service import HUB, HubAPI, HubConfig, Login, ServiceHub

from ..support import free_port

#: What a hub sets for a managed service named ipymeet (JupyterHub 5-6).
SERVICE_ENV = {
    "JUPYTERHUB_API_URL": "http://127.0.0.1:8081/hub/api",
    "JUPYTERHUB_API_TOKEN": "service-token-0123456789",
    "JUPYTERHUB_BASE_URL": "/",
    "JUPYTERHUB_CLIENT_ID": "service-ipymeet",
    "JUPYTERHUB_SERVICE_NAME": "ipymeet",
    "JUPYTERHUB_SERVICE_PREFIX": "/services/ipymeet/",
    "JUPYTERHUB_SERVICE_URL": "http://127.0.0.1:10101/",
    "JUPYTERHUB_OAUTH_CALLBACK_URL": "/services/ipymeet/oauth_callback",
    "JUPYTERHUB_OAUTH_ACCESS_SCOPES": '["access:services!service=ipymeet", "access:services"]',
}


#: The scope a hub user's login token carries when the hub's role lets them use the service.
ACCESS = "access:services!service=ipymeet"


@dataclass
class StandInHub:
    """A stand-in for the hub's side of the service: its REST API at :attr:`api_url` names the
    owner of each token in ``users`` (token -> name and scopes), and its OAuth login
    (``/hub/api/oauth2/authorize``, then ``/hub/api/oauth2/token``) logs in as :attr:`login`
    (a token of ``users``), checking the service's client id, secret, redirect and PKCE."""

    users: Mapping[str, tuple[str, Sequence[str]]]
    api_url: str = ""
    #: The token the next login hands out, as if that user had signed in at the hub.
    login: str = ""
    #: How many code exchanges the service asked for.
    exchanges: int = 0
    #: The hub's services by name (their models, as ``GET /hub/api/services/NAME`` gives them)...
    services: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: ...to the tokens that may read them (``read:services``); others get a 403, as from a hub.
    service_readers: set[str] = field(default_factory=set)
    _codes: dict[str, tuple[str, str, str]] = field(default_factory=dict)

    @property
    def origin(self) -> str:
        return self.api_url.removesuffix("/hub/api")

    async def _user(self, request: web.Request) -> web.Response:
        given = request.headers.get("Authorization", "").removeprefix("token ")
        if given not in self.users:
            return web.json_response({"message": "no such token"}, status=403)
        name, scopes = self.users[given]
        return web.json_response({"kind": "user", "name": name, "scopes": list(scopes)})

    async def _service(self, request: web.Request) -> web.Response:
        given = request.headers.get("Authorization", "").removeprefix("token ")
        if given not in self.service_readers:
            return web.json_response({"message": "Action is not authorized"}, status=403)
        model = self.services.get(request.match_info["name"])
        if model is None:
            return web.json_response({"message": "No such service"}, status=404)
        return web.json_response(model)

    async def _authorize(self, request: web.Request) -> web.Response:
        query = request.query
        if (
            query.get("client_id") != SERVICE_ENV["JUPYTERHUB_CLIENT_ID"]
            or query.get("redirect_uri") != SERVICE_ENV["JUPYTERHUB_OAUTH_CALLBACK_URL"]
            or query.get("response_type") != "code"
            or query.get("code_challenge_method") != "S256"
        ):
            return web.Response(status=400, text="not this hub's client")
        code = secrets.token_urlsafe(16)
        self._codes[code] = (query["code_challenge"], query["redirect_uri"], self.login)
        back = urlencode({"code": code, "state": query.get("state", "")})
        return web.Response(status=302, headers={"Location": f"{query['redirect_uri']}?{back}"})

    async def _token(self, request: web.Request) -> web.Response:
        self.exchanges += 1
        form = await request.post()
        challenge, redirect, token = self._codes.pop(str(form.get("code")), ("", "", ""))
        verifier = str(form.get("code_verifier", "")).encode()
        expected = base64.urlsafe_b64encode(hashlib.sha256(verifier).digest()).rstrip(b"=")
        if (
            not token
            or form.get("client_secret") != SERVICE_ENV["JUPYTERHUB_API_TOKEN"]
            or form.get("redirect_uri") != redirect
            or expected.decode() != challenge
        ):
            return web.json_response({"error": "invalid_grant"}, status=400)
        return web.json_response({"access_token": token, "token_type": "Bearer"})


@contextlib.asynccontextmanager
async def stand_in_hub(users: Mapping[str, tuple[str, Sequence[str]]]) -> AsyncIterator[StandInHub]:
    """A :class:`StandInHub` on a loopback port for the tokens of ``users``."""
    stand_in = StandInHub(users)
    api = web.Application()
    api.router.add_get("/hub/api/user", stand_in._user)
    api.router.add_get("/hub/api/services/{name}", stand_in._service)
    api.router.add_get("/hub/api/oauth2/authorize", stand_in._authorize)
    api.router.add_post("/hub/api/oauth2/token", stand_in._token)
    runner = web.AppRunner(api, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    stand_in.api_url = f"http://127.0.0.1:{runner.addresses[0][1]}/hub/api"
    try:
        yield stand_in
    finally:
        await runner.cleanup()


@dataclass(frozen=True)
class Service:
    """The service's app running: its origin, configuration and hub of kernels."""

    origin: str
    config: HubConfig
    hub: ServiceHub

    @property
    def url(self) -> str:
        """Its page, as the hub's proxy forwards it."""
        return f"{self.origin}{self.config.prefix}"

    def login_cookie(self, token: str) -> dict[str, str]:
        """The headers of a browser logged in to the service with the hub's ``token``."""
        return {"Cookie": f"{hub.COOKIE}={Login(HubAPI(self.config))._sign(token)}"}


@contextlib.asynccontextmanager
async def running_service(api_url: str, port: int = 0) -> AsyncIterator[Service]:
    """``create_hub_app`` (what ``ipymeet serve --jupyterhub`` runs) on a loopback port (``port``,
    or a free one), its hub's API at ``api_url``."""
    config = HubConfig.from_env({**SERVICE_ENV, "JUPYTERHUB_API_URL": api_url})
    app = hub.create_hub_app(Settings(ice_servers=()), config)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield Service(f"http://127.0.0.1:{runner.addresses[0][1]}", config, app[HUB])
    finally:
        await runner.cleanup()


def test_the_service_reads_the_hubs_environment() -> None:
    config = HubConfig.from_env(SERVICE_ENV)
    assert config.api_url == "http://127.0.0.1:8081/hub/api"
    assert config.prefix == "/services/ipymeet/"
    assert config.client_id == "service-ipymeet"
    assert config.callback_url == "/services/ipymeet/oauth_callback"
    assert config.hub_prefix == "/hub/"
    assert config.access_scopes == {"access:services!service=ipymeet", "access:services"}
    assert (config.bind_host, config.bind_port) == ("127.0.0.1", 10101)
    assert "service-token" not in repr(config)


def test_defaults_follow_the_service_name_and_base_url() -> None:
    config = HubConfig.from_env(
        {
            "JUPYTERHUB_API_URL": "http://hub:8081/jh/hub/api/",
            "JUPYTERHUB_API_TOKEN": "t",
            "JUPYTERHUB_SERVICE_NAME": "meet",
            "JUPYTERHUB_BASE_URL": "/jh/",
        }
    )
    assert config.api_url == "http://hub:8081/jh/hub/api"
    # JupyterHub's rule (Service.prefix): the hub's base URL, services/, the name.
    assert config.prefix == "/jh/services/meet/"
    assert config.client_id == "service-meet"
    assert config.callback_url == "/jh/services/meet/oauth_callback"
    assert config.hub_prefix == "/jh/hub/"
    assert config.access_scopes == {"access:services!service=meet", "access:services"}


def test_outside_a_hub_the_service_says_what_is_missing() -> None:
    with pytest.raises(ValueError, match="JUPYTERHUB_API_URL and JUPYTERHUB_API_TOKEN"):
        HubConfig.from_env({})
    with pytest.raises(ValueError, match="JSON list"):
        HubConfig.from_env({**SERVICE_ENV, "JUPYTERHUB_OAUTH_ACCESS_SCOPES": '"access"'})


def test_the_login_cookie_is_signed_with_a_key_from_the_services_token() -> None:
    login = Login(HubAPI(HubConfig.from_env(SERVICE_ENV)))
    value = login._sign("oauth-token-of-ada")
    assert "oauth-token-of-ada" not in value  # not readable at a glance in a cookie jar either
    assert login._unsign(value) == "oauth-token-of-ada"
    data, _, mac = value.rpartition(".")
    assert login._unsign(f"{data}.{'0' * len(mac)}") is None
    assert login._unsign("junk") is None
    other = Login(HubAPI(HubConfig.from_env({**SERVICE_ENV, "JUPYTERHUB_API_TOKEN": "other"})))
    assert other._unsign(value) is None


def test_join_tokens_do_not_apply_behind_the_hub() -> None:
    config = HubConfig.from_env(SERVICE_ENV)
    with pytest.raises(ValueError, match="join tokens do not apply"):
        hub.create_hub_app(Settings(secret=b"s" * 32), config)


# -- the service's app, with a hub that does not answer -------------------------------------------


@pytest.fixture
async def service() -> AsyncIterator[str]:
    """The service's app on a free port, its hub's API on a closed one."""
    async with running_service(f"http://127.0.0.1:{free_port()}/hub/api") as running:
        yield running.origin


async def test_the_page_without_a_login_goes_to_the_hubs_oauth(service: str) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{service}/services/ipymeet/?room=class", allow_redirects=False) as r:
            assert r.status == 302
            where = urlsplit(r.headers["Location"])
            state_cookie = r.cookies[hub.STATE_COOKIE]
        assert where.path == "/hub/api/oauth2/authorize"
        query = {k: v[0] for k, v in parse_qs(where.query).items()}
        assert query["client_id"] == "service-ipymeet"
        assert query["redirect_uri"] == "/services/ipymeet/oauth_callback"
        assert query["response_type"] == "code"
        assert query["code_challenge_method"] == "S256"
        # The login under way is the browser's to keep: its state, signed, in the cookie.
        login = Login(HubAPI(HubConfig.from_env(SERVICE_ENV)))
        assert login._open_state(state_cookie.value, time.time()) == (
            query["state"],
            "/services/ipymeet/?room=class",
        )
        assert state_cookie["path"] == "/services/ipymeet/"
        assert state_cookie["httponly"]
        assert state_cookie["samesite"] == "Lax"
        # A forged login cookie is not a login either.
        headers = {"Cookie": f"{hub.COOKIE}=bm90LWEtdG9rZW4.deadbeef"}
        async with http.get(
            f"{service}/services/ipymeet/", headers=headers, allow_redirects=False
        ) as r:
            assert r.status == 302
        # Without the slash, to the page (which then asks for the login).
        async with http.get(f"{service}/services/ipymeet?room=a", allow_redirects=False) as r:
            assert (r.status, r.headers["Location"]) == (302, "/services/ipymeet/?room=a")
        # The page's assets and the health check need no login.
        async with http.get(f"{service}/services/ipymeet/healthz") as r:
            assert r.status == 200


async def test_a_callback_the_service_did_not_start_is_refused(service: str) -> None:
    async with aiohttp.ClientSession() as http:
        url = f"{service}/services/ipymeet/oauth_callback?code=c&state=forged"
        async with http.get(url, allow_redirects=False) as r:
            assert r.status == 403
            assert hub.COOKIE not in r.cookies


@pytest.mark.parametrize(
    "auth",
    [None, {"client": "0123456789abcdef"}, {"jupyterhub_token": "not-a-token"}],
    ids=["nothing", "unknown-widget-key", "token-the-hub-does-not-vouch-for"],
)
async def test_socketio_without_the_hubs_word_is_refused(service: str, auth: Any) -> None:
    client = socketio.AsyncClient(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await asyncio.wait_for(
            client.connect(
                service,
                socketio_path="/services/ipymeet/socket.io",
                auth=auth,
                transports=["websocket"],
                wait_timeout=10,
            ),
            20,
        )
    assert not client.connected
    await client.disconnect()


# -- the page of a login, with a hub that answers for one token -----------------------------------


class _Tags(HTMLParser):
    """The start tags of a page, with their attributes as parsed."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


@pytest.mark.parametrize(
    "name",
    ["ada", 'ada "the" <b>bold</b>', "x</script><script>alert(1)</script>", "o'brien & co"],
    ids=["plain", "quotes-and-markup", "script-end", "apostrophe-and-ampersand"],
)
async def test_the_page_of_a_login_starts_with_its_hub_users_name_as_text(name: str) -> None:
    """The hub's API (a small stand-in answering ``GET /user``) names ``name`` the owner of one
    token; the page served for a cookie with that token carries the name as an attribute only."""
    token = "oauth-token-of-the-user"
    async with (
        stand_in_hub({token: (name, [ACCESS])}) as stand_in,
        running_service(stand_in.api_url) as service,
        aiohttp.ClientSession() as http,
    ):
        cookie = service.login_cookie(token)
        async with http.get(service.url, headers=cookie, allow_redirects=False) as r:
            assert r.status == 200
            assert r.headers["Cache-Control"] == "no-store"
            assert r.content_type == "text/html"
            page = await r.text()
        async with http.get(service.url, allow_redirects=False) as r:
            assert r.status == 302  # no cookie, no page (nor a name)
    parsed = _Tags()
    parsed.feed(page)
    metas = [a for tag, a in parsed.tags if tag == "meta" and a.get("name") == "ipymeet-name"]
    assert metas == [{"name": "ipymeet-name", "content": name}]
    # The name added no element: the page's tags are the file's, and its one script its own.
    unnamed = _Tags()
    unnamed.feed(app.PAGE.read_text(encoding="utf-8"))
    expected = [tag for tag, _ in unnamed.tags]
    expected.insert(expected.index("head") + 1, "meta")
    assert [tag for tag, _ in parsed.tags] == expected
    assert page.count("<script") == 1
    assert page.count("</script>") == 1
    # Escaped: the name as it is only where it holds no character markup could take.
    assert (name in page) == (html.escape(name) == name)
