"""``ipymeet serve --jupyterhub``: the signaller as a JupyterHub managed service (docs/deploy.md,
"JupyterHub"). The users' kernels' side of it is server/hub/client.py; the two share only the
names in server/hub/names.py.

The hub starts ``ipymeet serve --jupyterhub`` with its ``JUPYTERHUB_*`` environment; it serves
under ``JUPYTERHUB_SERVICE_PREFIX`` (``/services/ipymeet/``, which the hub's proxy forwards to it
whole) and lets in only what the hub vouches for:

- **the standalone page** needs the hub's login for this service: without it the page redirects
  to the hub's OAuth (``/hub/api/oauth2/authorize``), the login under way kept in a signed state
  cookie of the browser (nothing on the service: :class:`Login`), and the callback exchanges the
  code for a token (with PKCE) and keeps it in a signed, HttpOnly cookie of the service's path;
- **a Socket.IO connection** needs one of: that cookie, with a token the hub's API still takes
  and which carries the service's access scope (``JUPYTERHUB_OAUTH_ACCESS_SCOPES``); the key of a
  widget that an attached kernel registered; or, for a kernel itself, ``auth.jupyterhub_token``,
  the token it inherits from its single-user server, which the hub's API names the owner of.
  Anything else is refused at connect.

A member who gives no name is shown under its hub user's name, which the standalone page's
Name field starts with. A hub user's kernel registers, hears and claims only what its own user's
widgets hold (:class:`ServiceHub`).

Why not JupyterHub's own helpers. ``jupyterhub.services.auth`` (``HubAuth``, ``HubOAuth``) does
this module's login jobs for a service: the OAuth redirect with its state cookie and PKCE, the
callback's code exchange, the login cookie, asking the hub's API whom a token names (cached),
and the check of the service's access scopes. They are built on tornado: mixins of its
``RequestHandler`` that read and set cookies through it (its ``set_secure_cookie``, with a
cookie secret of their own), tornado's HTTP client, and caches meant for a synchronous caller;
this service is aiohttp, and the same Socket.IO connect that checks a cookie also checks a
kernel's token. So ipymeet mirrors what they do, in aiohttp: a random state checked against a
signed, HttpOnly state cookie of the service's path (theirs keeps the state in a table in the
service; this one keeps nothing there), PKCE S256, the scope check on the token's scopes, a
token cache (theirs 5 minutes, this 60 s). Their one pure helper that would fit, ``check_scopes``,
is not imported either: importing it loads the hub's database layer (SQLAlchemy, its ORM: most
of a second at start), and the scopes the hub hands a service (``JUPYTERHUB_OAUTH_ACCESS_SCOPES``)
list both ``access:services`` and ``access:services!service=NAME``, which a token's scopes are
checked for as they are, to the same answer.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import html
import json
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp
from aiohttp import web

from ..core import validation as v
from ..core.access import own_origin
from ..core.app import PAGE, SIGNALLER, create_app
from ..core.registry import RoomStore
from ..core.settings import Settings
from ..core.signaller import Connection, Signaller
from ..kernel.attach import HostState
from ..kernel.kernels import KERNEL_ID_RE, KernelHub
from .names import TOKEN_AUTH, service_prefix, slashed

log = logging.getLogger("ipymeet.server")

#: Seconds the hub's answer about a token is trusted before it is asked again.
IDENTITY_TTL = 60.0
MAX_CACHED = 4096
#: Requests about tokens the service makes to the hub's API at once.
MAX_ASKING = 8
#: Seconds an OAuth login may take between the redirect to the hub and its callback.
STATE_TTL = 600.0
#: The longest page address a login returns to (longer: the page without its query), so that
#: the state cookie stays well within what browsers keep (4 KB).
MAX_NEXT_URL = 1024
#: Seconds the hub's API may take to answer.
API_TIMEOUT = 10.0
COOKIE = "ipymeet-hub-login"
STATE_COOKIE = "ipymeet-hub-oauth-state"


# -- the service's configuration -------------------------------------------------------------------


@dataclass(frozen=True)
class HubConfig:
    """What a managed service learns from the hub's environment (``JUPYTERHUB_*``).

    Example::

        config = HubConfig.from_env()     # in the process the hub started
        config.prefix                     # "/services/ipymeet/"
    """

    #: The hub's REST API, e.g. ``http://127.0.0.1:8081/hub/api``.
    api_url: str
    #: The service's own token: its OAuth client secret too.
    api_token: str = field(repr=False)
    #: Where the hub's proxy sends this service's requests (their path keeps it).
    prefix: str = "/services/ipymeet/"
    #: The service's OAuth client id (``service-NAME``).
    client_id: str = "service-ipymeet"
    #: The OAuth redirect the hub registered for the service.
    callback_url: str = "/services/ipymeet/oauth_callback"
    #: The hub's own pages, as the browser reaches them (``/hub/``).
    hub_prefix: str = "/hub/"
    #: Scopes that grant access to this service; a login token must carry one of them.
    access_scopes: frozenset[str] = frozenset()
    #: Where to listen (``JUPYTERHUB_SERVICE_URL``: the service's ``url`` in the hub's config).
    bind_host: str = "127.0.0.1"
    bind_port: int = 0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> HubConfig:
        """Read the hub's environment; ValueError naming what is missing."""
        env = os.environ if environ is None else environ
        missing = [n for n in ("JUPYTERHUB_API_URL", "JUPYTERHUB_API_TOKEN") if not env.get(n)]
        if missing:
            raise ValueError(
                f"--jupyterhub: {' and '.join(missing)} not set; run ipymeet serve --jupyterhub "
                "as a service the hub starts (c.JupyterHub.services, docs/deploy.md, JupyterHub)"
            )
        name = env.get("JUPYTERHUB_SERVICE_NAME", "ipymeet")
        base = slashed(env.get("JUPYTERHUB_BASE_URL", "/"))
        prefix = slashed(env.get("JUPYTERHUB_SERVICE_PREFIX") or service_prefix(base, name))
        raw_scopes = env.get("JUPYTERHUB_OAUTH_ACCESS_SCOPES", "")
        scopes: list[Any] = json.loads(raw_scopes) if raw_scopes else []
        if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            raise ValueError("JUPYTERHUB_OAUTH_ACCESS_SCOPES must be a JSON list of scopes")
        if not scopes:
            scopes = [f"access:services!service={name}", "access:services"]
        url = urlsplit(env.get("JUPYTERHUB_SERVICE_URL", ""))
        return cls(
            api_url=env["JUPYTERHUB_API_URL"].rstrip("/"),
            api_token=env["JUPYTERHUB_API_TOKEN"],
            prefix=prefix,
            client_id=env.get("JUPYTERHUB_CLIENT_ID") or f"service-{name}",
            callback_url=env.get("JUPYTERHUB_OAUTH_CALLBACK_URL") or f"{prefix}oauth_callback",
            hub_prefix=f"{base}hub/",
            access_scopes=frozenset(scopes),
            bind_host=url.hostname or "127.0.0.1",
            bind_port=url.port or 0,
        )


# -- the hub's API ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class HubUser:
    """Whom the hub says a token belongs to, and what the token may do."""

    name: str
    scopes: frozenset[str] = frozenset()


class _Unanswered(Exception):
    """The hub's API could not be asked (unreachable, timed out, not JSON)."""


class HubAPI:
    """The few calls of the hub's REST API the service makes, answers about tokens cached for
    :data:`IDENTITY_TTL` seconds (pages reconnect; the hub need not hear each time)."""

    def __init__(self, config: HubConfig) -> None:
        self.config = config
        self._session: aiohttp.ClientSession | None = None
        self._cache: dict[str, tuple[float, HubUser | None]] = {}
        # Tokens nobody has asked about yet each cost a request to the hub: a few at a time.
        self._asking = asyncio.Semaphore(MAX_ASKING)

    async def start(self) -> None:
        timeout = aiohttp.ClientTimeout(total=API_TIMEOUT)
        self._session = aiohttp.ClientSession(timeout=timeout)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def user_for_token(self, token: str) -> HubUser | None:
        """The hub user whose token ``token`` is (None: no such token, or a service's)."""
        if not token or len(token) > 4096:
            return None
        key = hashlib.sha256(token.encode()).hexdigest()  # never kept as itself
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            async with self._asking:
                user = await self._identify(token)
        except _Unanswered as failed:
            # Not cached: a kernel must not stay refused for a minute after the hub's blip.
            log.warning("ipymeet: the hub's API did not answer about a token: %s", failed)
            return None
        if len(self._cache) >= MAX_CACHED:
            self._cache = {k: e for k, e in self._cache.items() if e[0] > now}
            if len(self._cache) >= MAX_CACHED:
                self._cache.clear()
        self._cache[key] = (now + IDENTITY_TTL, user)
        return user

    async def _identify(self, token: str) -> HubUser | None:
        session = self._require_session()
        headers = {"Authorization": f"token {token}"}
        try:
            async with session.get(f"{self.config.api_url}/user", headers=headers) as reply:
                if reply.status in (401, 403, 404):
                    return None
                reply.raise_for_status()
                model = await reply.json()
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as failed:
            raise _Unanswered(str(failed) or type(failed).__name__) from None
        if not isinstance(model, dict) or model.get("kind", "user") != "user":
            return None
        name, scopes = model.get("name"), model.get("scopes", [])
        if not isinstance(name, str) or not name or not isinstance(scopes, list):
            return None
        return HubUser(name, frozenset(s for s in scopes if isinstance(s, str)))

    async def token_for_code(self, code: str, verifier: str) -> str:
        """The OAuth access token for a login's ``code`` (RuntimeError if the hub refuses)."""
        config = self.config
        form = {
            "client_id": config.client_id,
            "client_secret": config.api_token,
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": config.callback_url,
            "code_verifier": verifier,
        }
        session = self._require_session()
        try:
            async with session.post(f"{config.api_url}/oauth2/token", data=form) as reply:
                answer = await reply.json(content_type=None)
                status = reply.status
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as failed:
            raise RuntimeError(f"the hub's API did not answer: {failed}") from None
        token = answer.get("access_token") if isinstance(answer, dict) else None
        if status != 200 or not isinstance(token, str):
            raise RuntimeError(f"the hub refused the login (HTTP {status})")
        return token

    def _require_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("HubAPI.start() first")
        return self._session


# -- the standalone page's login -------------------------------------------------------------------


class Login:
    """The standalone page behind the hub's login for this service (OAuth, as the hub's own
    services do it), and the cookie that login leaves, which Socket.IO connections carry too.

    A login under way is kept in the browser, not here: the redirect to the hub sets the state
    cookie (:data:`STATE_COOKIE`), signed with the service's key, carrying the OAuth ``state``,
    the page to return to and when it expires; the PKCE verifier is derived from the state with
    that key (:meth:`_verifier`), so it never leaves the service. Any number of page loads that
    never log in therefore cost the service nothing and cannot crowd out anyone's login.
    """

    def __init__(self, api: HubAPI) -> None:
        self.api = api
        self.config = api.config
        # Cookies stay valid across a restart of the service: the keys come from its hub token,
        # one per use, so that no cookie of one kind passes for the other.
        token = self.config.api_token.encode()
        self._key = hashlib.sha256(b"ipymeet-hub-cookie|" + token).digest()
        self._state_key = hashlib.sha256(b"ipymeet-hub-oauth-state|" + token).digest()

    # The cookie: the hub's token for this login, and an HMAC of it, so that junk is refused
    # without asking the hub.

    def _sign(self, token: str) -> str:
        mac = hmac.new(self._key, token.encode(), hashlib.sha256).hexdigest()
        return f"{base64.urlsafe_b64encode(token.encode()).decode()}.{mac}"

    def _unsign(self, value: str) -> str | None:
        data, _, mac = value.rpartition(".")
        try:
            token = base64.urlsafe_b64decode(data.encode()).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        expected = hmac.new(self._key, token.encode(), hashlib.sha256).hexdigest()
        return token if hmac.compare_digest(expected, mac) else None

    # The state cookie: a login under way, in the browser that started it.

    def _seal_state(self, state: str, next_url: str, expires: float) -> str:
        """The state cookie's value: ``{state, next, exp}`` (``exp`` in seconds since the epoch:
        it must mean the same after a restart), and its HMAC."""
        data = json.dumps({"state": state, "next": next_url, "exp": int(expires)}).encode()
        mac = hmac.new(self._state_key, data, hashlib.sha256).hexdigest()
        # Without base64's padding: '=' would have the cookie sent quoted.
        return f"{base64.urlsafe_b64encode(data).decode().rstrip('=')}.{mac}"

    def _open_state(self, value: str, now: float) -> tuple[str, str]:
        """The state and page to return to of a state cookie's value; PermissionError with the
        plain reason if it was not made here or has expired."""
        data, _, mac = value.rpartition(".")
        try:
            raw = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
        except ValueError:
            raw = b""
        expected = hmac.new(self._state_key, raw, hashlib.sha256).hexdigest()
        if not raw or not hmac.compare_digest(expected, mac):
            raise PermissionError("this login is not one this service started: try again")
        fields = json.loads(raw)
        state, next_url, expires = fields.get("state"), fields.get("next"), fields.get("exp")
        if not (isinstance(state, str) and isinstance(next_url, str) and isinstance(expires, int)):
            raise PermissionError("this login is not one this service started: try again")
        if expires <= now:
            raise PermissionError("this login took too long: open the page again to log in")
        return state, next_url

    def _verifier(self, state: str) -> str:
        """The login's PKCE verifier: only this service can derive it from the (public) state."""
        mac = hmac.new(self._state_key, b"pkce|" + state.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    async def user_of_cookies(self, header: str | None) -> HubUser | None:
        """The hub user logged in to this service by the ``Cookie`` header (None: nobody)."""
        if not header:
            return None
        try:
            jar = SimpleCookie(header)
        except CookieError:
            return None
        morsel = jar.get(COOKIE)
        token = None if morsel is None else self._unsign(morsel.value)
        if token is None:
            return None
        user = await self.api.user_for_token(token)
        if user is None or user.scopes.isdisjoint(self.config.access_scopes):
            return None
        return user

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """The standalone page (``/``) only for a hub login, and with its user's name in the
        Name field (:func:`page_for`); everything else passes."""
        if request.method not in ("GET", "HEAD") or request.path != self.config.prefix:
            return await handler(request)
        user = await self.user_of_cookies(request.headers.get("Cookie"))
        if user is None:
            return self._to_hub(request)
        return web.Response(
            text=page_for(user.name),
            content_type="text/html",
            # Not for a shared cache: the page carries the name of whoever logged in.
            headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
        )

    def _to_hub(self, request: web.Request) -> web.StreamResponse:
        # Nothing is kept here: the login under way is all in the state cookie (see the class).
        state = secrets.token_urlsafe(24)
        next_url = request.path_qs if len(request.path_qs) <= MAX_NEXT_URL else request.path
        sealed = self._seal_state(state, next_url[:MAX_NEXT_URL], time.time() + STATE_TTL)
        verifier = self._verifier(state)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
        query = {
            "client_id": self.config.client_id,
            "redirect_uri": self.config.callback_url,
            "response_type": "code",
            "state": state,
            "code_challenge": challenge.decode().rstrip("="),
            "code_challenge_method": "S256",
        }
        url = f"{self.config.hub_prefix}api/oauth2/authorize?{urlencode(query)}"
        response = _redirect(url)
        self._set_cookie(response, request, STATE_COOKIE, sealed, max_age=int(STATE_TTL))
        return response

    async def callback(self, request: web.Request) -> web.StreamResponse:
        """The hub sends the browser back here with a code: exchange it, set the cookie."""
        state = request.query.get("state", "")
        try:
            started, next_url = self._open_state(request.cookies.get(STATE_COOKIE, ""), time.time())
        except PermissionError as refused:
            raise web.HTTPForbidden(text=str(refused)) from None
        given = state.encode("utf-8", "surrogatepass")
        if not state or not hmac.compare_digest(started.encode(), given):
            raise web.HTTPForbidden(text="this login is not one this service started: try again")
        code = request.query.get("code")
        if not code:
            raise web.HTTPForbidden(text=f"the hub gave no login: {request.query.get('error')}")
        try:
            token = await self.api.token_for_code(code, self._verifier(state))
        except RuntimeError as refused:
            raise web.HTTPForbidden(text=str(refused)) from None
        if await self.api.user_for_token(token) is None:
            raise web.HTTPForbidden(text="the hub's login token does not name a user")
        next_url = next_url if next_url.startswith(self.config.prefix) else "./"
        response = _redirect(next_url)
        self._set_cookie(response, request, COOKIE, self._sign(token))
        response.del_cookie(STATE_COOKIE, path=self.config.prefix)
        return response

    def _set_cookie(
        self,
        response: web.StreamResponse,
        request: web.Request,
        name: str,
        value: str,
        max_age: int | None = None,
    ) -> None:
        secure = own_origin(request).startswith("https:")
        response.set_cookie(
            name,
            value,
            path=self.config.prefix,
            max_age=max_age,
            httponly=True,
            secure=secure,
            samesite="Lax",
        )


def page_for(name: str) -> str:
    """The standalone page (server/core/page.html) for hub user ``name``: the Name field starts with
    it, as the room shows a member who gives no name (``<meta name="ipymeet-name">``, which
    js/src/page.ts reads; an attribute, escaped, so a name is text and never markup)."""
    meta = f'<meta name="ipymeet-name" content="{html.escape(name, quote=True)}" />'
    return _page_text().replace("<head>", f"<head>\n    {meta}", 1)


@functools.cache
def _page_text() -> str:
    # Read once: every logged-in page load would read the same file again.
    return PAGE.read_text(encoding="utf-8")


def _redirect(url: str) -> web.Response:
    # A response, not aiohttp's HTTPFound raised: it carries cookies.
    return web.Response(status=302, headers={"Location": url, "Cache-Control": "no-store"})


# -- the kernels of the hub's users ----------------------------------------------------------------


class _ServiceHost:
    """The ``HostSide`` of a service: no kernel hosts it, and no user's kernel changes what the
    service allows every user (join tokens, the default capacity)."""

    def __init__(self, signaller: Signaller) -> None:
        self._signaller = signaller

    def state(self) -> dict[str, Any]:
        # A kernel knows the service by the URL it dialled (server/hub/client.py puts its own in
        # place of these addresses, which behind the hub's proxy mean nothing to it).
        settings = self._signaller.settings
        url = f"http://127.0.0.1:{settings.port or 80}"
        return HostState(
            port=settings.port or 80,
            url=url,
            public_url=url,
            host=settings.host,
            scheme="http",
            tls=None,
            fingerprint=None,
            max_peers=settings.max_peers,
        ).to_wire()

    def apply(
        self, *, require_tokens: bool, token_secret: bytes | None, max_peers: int | None
    ) -> None:
        pass

    def admits(self, client: str) -> bool:
        return False


class ServiceHub(KernelHub):
    """The hub users' kernels attached to the service, and who may connect at all.

    A kernel connects with its hub token (``auth.jupyterhub_token``), which the hub's API names
    the owner of, then ``kernel_attach`` without a proof (``kernel_hello`` is refused). Its
    kernel id is kept under its user's, so that no user's kernel can take another's place, and it
    is that user's kernel (:meth:`_user_of`): it registers no key another user's kernel holds,
    hears a room only while one of its user's members is in it, and claims no room another user
    claimed or is in (server/kernel/kernels.py asks server/core/access.py). Every connection here
    has a user: a login cookie's, a kernel's, or that of the kernel that registered a page's widget
    key.
    """

    #: The hub's proxy forwards the hub's own name: the hub's word decides, not the Host.
    check_hosts = False

    def __init__(self, signaller: Signaller, login: Login) -> None:
        super().__init__(
            signaller,
            secrets.token_bytes(32),  # unused: kernels prove themselves with the hub's token
            _ServiceHost(signaller),
            kernel="ipymeet-service",
            # Just started (perhaps restarted): pages may come back before their kernels have
            # attached again, so a key not known yet is waited for a moment, as after a takeover.
            took_over=True,
        )
        self.login = login
        self._kernel_users: dict[str, str] = {}  # sid -> user, kernels proven at connect

    async def identify(self, sid: str, environ: dict[str, Any], auth: Any) -> str | None:
        """Who connects (a hub user's name), or None to refuse the connection."""
        fields = auth if isinstance(auth, dict) else {}
        token = fields.get(TOKEN_AUTH)
        if token is not None:
            kernel_user = await self.login.api.user_for_token(str(token))
            if kernel_user is None:
                log.info("ipymeet: refused a kernel whose token the hub does not know")
                return None
            self._kernel_users[sid] = kernel_user.name
            return kernel_user.name
        page_user = await self.login.user_of_cookies(environ.get("HTTP_COOKIE"))
        if page_user is not None:
            return page_user.name
        client = fields.get("client")
        if isinstance(client, str) and 0 < len(client) <= 64 and await self.wait_for_key(client):
            return self.user_of_key(client)
        return None

    def user_of_key(self, client: str) -> str:
        """The hub user whose kernel registered widget key ``client`` ("" if none did)."""
        with self._lock:
            kernel = self._owners.get(client)
        return "" if kernel is None else self._kernel_user(kernel)

    async def _hello(self, conn: Connection, *args: Any) -> dict[str, Any]:
        raise v.Refused(
            "forbidden", "this is a JupyterHub service: a kernel attaches with its hub token"
        )

    def _user_of(self, conn: Connection) -> str:
        # _check_proof let in only a connection the hub named a user of; never "" (which is the
        # one user of a user's own signaller, to whom everything is open).
        user = self._kernel_users.get(conn.sid, "")
        if not user:
            raise v.Refused("forbidden", "this connection is no hub user's kernel")
        return user

    def _check_proof(self, conn: Connection, payload: dict[str, Any]) -> None:
        if conn.sid not in self._kernel_users:
            self.signaller.drop(conn)
            raise v.Refused(
                "forbidden", "connect with the kernel's JupyterHub token (auth.jupyterhub_token)"
            )

    async def _attach(self, conn: Connection, *args: Any) -> dict[str, Any]:
        if len(args) != 1:
            raise v.bad(f"'kernel_attach' takes exactly one argument, got {len(args)}")
        payload = dict(v.mapping(args[0], "kernel_attach payload"))
        user = self._kernel_users.get(conn.sid)
        kernel = payload.get("kernel")
        if user is not None and isinstance(kernel, str) and KERNEL_ID_RE.fullmatch(kernel):
            scope = hashlib.sha256(user.encode()).hexdigest()[:16]
            payload["kernel"] = f"{scope}-{kernel[:47]}"
        answer = await super()._attach(conn, payload)
        log.info("ipymeet: a kernel of hub user %s attached", user)
        return answer

    def disconnected(self, conn: Connection) -> None:
        self._kernel_users.pop(conn.sid, None)
        super().disconnected(conn)


# -- the service's application ---------------------------------------------------------------------


def create_hub_app(
    settings: Settings, config: HubConfig, store: RoomStore | None = None
) -> web.Application:
    """The signaller's application under ``config.prefix``, behind the hub's login.

    Example (what ``ipymeet serve --jupyterhub`` runs)::

        config = HubConfig.from_env()
        web.run_app(create_hub_app(Settings(), config), host=config.bind_host,
                    port=config.bind_port)
    """
    if settings.secret is not None:
        raise ValueError("--jupyterhub: the hub's login admits users; join tokens do not apply")
    app = create_app(settings, store)
    signaller = app[SIGNALLER]
    api = HubAPI(config)
    login = Login(api)
    hub = ServiceHub(signaller, login)
    hub.install()
    app.middlewares.append(login.middleware)
    callback = urlsplit(config.callback_url).path
    if callback.startswith(config.prefix):
        app.router.add_get(f"/{callback[len(config.prefix) :]}", login.callback)
    root = web.Application(client_max_size=settings.max_message_bytes)
    root[HUB] = hub

    async def without_slash(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(config.prefix + (f"?{request.query_string}" if request.query else ""))

    root.router.add_get(config.prefix.rstrip("/"), without_slash)
    root.add_subapp(config.prefix.rstrip("/"), app)

    async def started(_: web.Application) -> None:
        await api.start()
        hub.loop = asyncio.get_running_loop()

    async def stopped(_: web.Application) -> None:
        hub.close()
        await api.close()

    root.on_startup.append(started)
    root.on_cleanup.append(stopped)
    return root


HUB: web.AppKey[ServiceHub] = web.AppKey("ipymeet.hub", ServiceHub)
