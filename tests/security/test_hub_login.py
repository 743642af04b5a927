"""Anonymous page loads cannot lock hub users out of the service's login (issue 17, finding 5).

The attack: every GET of the service's page without a login started an OAuth login, kept in a
table of the service for 10 minutes and bounded (1,024); 1,024 anonymous GETs filled it, and
every real user was answered 503 until they expired. Now the login under way is kept in the
browser, in a state cookie signed with the service's key (server/hub/service.py, ``Login``): any
number of page loads costs the service nothing, and the callback takes only a state cookie it
signed, not expired, whose state is the one the hub sends back.

Everything is real: the service's app (``create_hub_app``) on a loopback port, and a stand-in for
the hub (tests/unit/test_hub.py) whose authorize answers with a code and whose token endpoint
checks the service's secret and PKCE before it hands out the login's token.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from ipymeet.server.hub import service as hub
from ipymeet.server.hub.service import HubAPI, HubConfig, Login

from ..unit.test_hub import ACCESS, SERVICE_ENV, Service, StandInHub, running_service, stand_in_hub

ANONYMOUS_LOADS = 2000
AT_ONCE = 32
TIMEOUT = aiohttp.ClientTimeout(total=30)


@pytest.fixture
async def hub_and_service() -> AsyncIterator[tuple[StandInHub, Service]]:
    async with stand_in_hub({"ada-login": ("ada", [ACCESS])}) as stand_in:
        stand_in.login = "ada-login"  # who signs in at the hub
        async with running_service(stand_in.api_url) as service:
            yield stand_in, service


async def start_login(http: aiohttp.ClientSession, service: Service, page: str) -> tuple[str, str]:
    """Open ``page`` without a login: the hub's authorize address it sends the browser to, and
    the state cookie it sets."""
    async with http.get(page, allow_redirects=False) as r:
        assert r.status == 302, await r.text()
        assert r.cookies[hub.STATE_COOKIE]["httponly"]
        return r.headers["Location"], r.cookies[hub.STATE_COOKIE].value


async def authorize(http: aiohttp.ClientSession, stand_in: StandInHub, location: str) -> str:
    """The hub's authorize (the user signed in there): the callback address it sends back."""
    async with http.get(f"{stand_in.origin}{location}", allow_redirects=False) as r:
        assert r.status == 302, await r.text()
        return r.headers["Location"]


async def test_anonymous_page_loads_cannot_lock_out_a_login(
    hub_and_service: tuple[StandInHub, Service],
) -> None:
    """2,000 anonymous loads of the page (each sent on to the hub's login, none coming back),
    then ada logs in: authorize, the callback with the code, the code exchanged with the hub,
    the login cookie, and her page."""
    stand_in, service = hub_and_service
    at_once = asyncio.Semaphore(AT_ONCE)
    jar = aiohttp.DummyCookieJar()  # anonymous: each load is a browser of its own

    async with aiohttp.ClientSession(cookie_jar=jar, timeout=TIMEOUT) as anonymous:

        async def load(n: int) -> int:
            async with (
                at_once,
                anonymous.get(f"{service.url}?room=r{n}", allow_redirects=False) as r,
            ):
                return r.status

        statuses = await asyncio.gather(*(load(n) for n in range(ANONYMOUS_LOADS)))
    assert statuses == [302] * ANONYMOUS_LOADS
    # Nothing of them is kept: the service's login holds no table at all.
    login = service.hub.login
    assert not [name for name, v in vars(login).items() if isinstance(v, (dict, list, set))]

    browser = aiohttp.CookieJar(unsafe=True)  # keeps cookies of 127.0.0.1, as a browser does
    async with aiohttp.ClientSession(cookie_jar=browser, timeout=TIMEOUT) as http:
        location, _ = await start_login(http, service, f"{service.url}?room=class")
        callback = await authorize(http, stand_in, location)
        async with http.get(f"{service.origin}{callback}", allow_redirects=False) as r:
            assert r.status == 302, await r.text()
            assert r.headers["Location"] == "/services/ipymeet/?room=class"
            assert r.cookies[hub.COOKIE]["httponly"]
        assert stand_in.exchanges == 1
        async with http.get(f"{service.url}?room=class", allow_redirects=False) as r:
            assert r.status == 200
            assert '<meta name="ipymeet-name" content="ada" />' in await r.text()


async def test_a_forged_or_expired_login_state_is_refused(
    hub_and_service: tuple[StandInHub, Service],
) -> None:
    """A login's callback with the hub's code and state, but no state cookie, a forged one (its
    signature changed, or signed with another service's key), another login's, or one of this
    service's that has expired: 403 with the reason, no login cookie, and the code is never
    exchanged. Beside it, the same callback with the login's own cookie logs in."""
    stand_in, service = hub_and_service
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(), timeout=TIMEOUT) as http:
        location, cookie = await start_login(http, service, service.url)
        _, other_login = await start_login(http, service, service.url)
        callback = await authorize(http, stand_in, location)
        state = parse_qs(urlsplit(callback).query)["state"][0]
        assert parse_qs(urlsplit(location).query)["state"] == [state]
        data, _, mac = cookie.rpartition(".")
        elsewhere = HubConfig.from_env({**SERVICE_ENV, "JUPYTERHUB_API_TOKEN": "another-service"})
        later = time.time() + 600
        forged = {
            "none": None,
            "signature changed": f"{data}.{mac[::-1]}",
            "another service's": Login(HubAPI(elsewhere))._seal_state(state, service.url, later),
            "another login's": other_login,
        }
        expired = Login(HubAPI(service.config))._seal_state(state, service.url, time.time() - 1)

        async def callback_with(value: str | None) -> tuple[int, str, bool]:
            headers = {} if value is None else {"Cookie": f"{hub.STATE_COOKIE}={value}"}
            url = f"{service.origin}{callback}"
            async with http.get(url, headers=headers, allow_redirects=False) as r:
                return r.status, await r.text(), hub.COOKIE in r.cookies

        for what, value in forged.items():
            status, reason, logged_in = await callback_with(value)
            assert (status, logged_in) == (403, False), what
            assert reason == "this login is not one this service started: try again", what
        status, reason, logged_in = await callback_with(expired)
        assert (status, logged_in) == (403, False)
        assert reason == "this login took too long: open the page again to log in"
        assert stand_in.exchanges == 0  # none of them got as far as the hub

        status, _, logged_in = await callback_with(cookie)
        assert (status, logged_in) == (302, True)
        assert stand_in.exchanges == 1
