"""The aiohttp application: Socket.IO signalling, the standalone call page, and its assets."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from . import validation as v
from .registry import RoomStore
from .settings import Settings
from .signaller import Signaller

#: The front-end bundle built by ``js/`` (``npm run build``); the wheel carries it.
STATIC_DIR = Path(__file__).resolve().parents[2] / "widget" / "static"
PAGE = Path(__file__).resolve().parent / "page.html"
SIGNALLER: web.AppKey[Signaller] = web.AppKey("ipymeet.signaller", Signaller)

_NO_BUNDLE = (
    "ipymeet's front-end bundle is missing ({path}). Install ipymeet from a wheel, or build it "
    "with `npm --prefix js ci && npm --prefix js run build`."
)


def create_app(settings: Settings | None = None, store: RoomStore | None = None) -> web.Application:
    """Build the signaller's aiohttp application.

    Routes: ``/socket.io/`` (both signalling dialects), ``/`` (the standalone call page, e.g.
    ``/?room=lab-42``), ``/static/`` (the front-end bundle), ``/socket.io/socket.io.js`` (the
    socket.io browser client, as the tutorial's Node server serves it), ``/public/`` (an optional
    folder, ``Settings.public_dir``), ``/healthz``. ``store``: rooms shared with other processes
    (``ipymeet serve --redis`` gives server/cluster/redis.py's ``Cluster``).

    Example::

        app = create_app(Settings(max_peers=4))
        web.run_app(app, host="127.0.0.1", port=8765)
    """
    settings = settings or Settings()
    signaller = Signaller(settings, store)
    app = web.Application(
        client_max_size=settings.max_message_bytes, middlewares=[_named_hosts_only]
    )
    app[SIGNALLER] = signaller
    app.on_response_prepare.append(_no_referrer)
    signaller.attach(app)
    app.router.add_get("/", _page)
    app.router.add_get("/healthz", _health)
    app.router.add_get("/socket.io/socket.io.js", _socketio_client)
    app.router.add_get("/static/{name}", _static)
    if settings.public_dir is not None:
        app.router.add_static("/public/", settings.public_dir, show_index=False)

    async def close_clients(_: web.Application) -> None:
        await signaller.close()

    app.on_shutdown.append(close_clients)
    return app


@web.middleware
async def _named_hosts_only(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Door CONNECT for HTTP (server/core/access.py): a Host that is not one of the signaller's
    names (a page of a rebound DNS name) gets 403 with the reason. Socket.IO's own path is decided
    at its connect, where a widget key can vouch for a page behind a proxy in front of Jupyter."""
    if not request.path.startswith("/socket.io/") or request.path == "/socket.io/socket.io.js":
        try:
            request.app[SIGNALLER].access.check_request(request.headers.get("Host"))
        except v.Refused as refusal:
            raise web.HTTPForbidden(text=refusal.message, headers=_HEADERS) from None
    return await handler(request)


async def _no_referrer(_: web.Request, response: web.StreamResponse) -> None:
    # An invite link's token is in the page's address: no request the page makes may carry it.
    response.headers.setdefault("Referrer-Policy", "no-referrer")


class AccessLog(AbstractAccessLogger):
    """``ipymeet serve``'s access log: method, path, status, size and time, never the query
    string (an invite link's token is there) nor the Referer (which would carry it too).

    Example::

        web.run_app(app, access_log_class=AccessLog)
    """

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        if not self.logger.isEnabledFor(logging.INFO):
            return
        self.logger.info(
            "%s %s %s %s %.3fs",
            request.method,
            request.path,
            response.status,
            response.body_length,
            time,
        )


def _asset(name: str) -> Path:
    path = STATIC_DIR / name
    if not path.is_file():
        raise web.HTTPServiceUnavailable(text=_NO_BUNDLE.format(path=path))
    return path


_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}


async def _page(_: web.Request) -> web.StreamResponse:
    return web.FileResponse(PAGE, headers={**_HEADERS, "Content-Type": "text/html"})


async def _static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name not in ("widget.js", "widget.css"):
        raise web.HTTPNotFound()
    return web.FileResponse(_asset(name), headers=_HEADERS)


async def _socketio_client(_: web.Request) -> web.StreamResponse:
    return web.FileResponse(_asset("socket.io.js"), headers=_HEADERS)


async def _health(request: web.Request) -> web.Response:
    signaller = request.app[SIGNALLER]
    body: dict[str, Any] = {
        "ok": True,
        "connections": len(signaller.connections),
        **signaller.registry.counts(),
    }
    if signaller.cluster is not None:  # counts are this process's; the rooms are in Redis
        body["node"] = signaller.cluster.node
        body["redis"] = "lost" if signaller.cluster.down else "ok"
    return web.json_response(body)
