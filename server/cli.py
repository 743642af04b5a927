"""``ipymeet serve``: the signaller as a process of its own (a shared lab, a JupyterHub service).

``ipymeet token ROOM --secret SOURCE`` prints an invite link for a signaller that requires tokens.
A secret is never taken from the command line itself (it would show in ``ps`` and the shell's
history): ``--secret env:NAME`` reads an environment variable, ``--secret file:PATH`` a file
(created, mode 0600, with a fresh secret if it does not exist), ``--secret generate`` makes one
that lives only in the server's memory (then ``--invite ROOM`` prints links at start).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

from .core import tokens, turn
from .core.app import AccessLog, create_app
from .core.registry import RoomStore
from .core.settings import TLS, Settings
from .core.sources import read_source
from .core.tls import serve_tls
from .kernel.runner import exposure_warning, public_host

SECRET_HELP = (
    "require join tokens, signed with a secret from SOURCE: env:NAME (an environment variable), "
    "file:PATH (created with a fresh secret, mode 0600, if missing), or generate (in memory "
    "only; use --invite to print links). Never the secret itself: it would show in `ps`."
)


def read_secret(source: str) -> bytes:
    """The secret named by ``--secret SOURCE`` (see :data:`SECRET_HELP`); a file that is not there
    yet is made with a new one."""
    if source == "generate":
        return tokens.new_secret()
    text = read_source(
        source,
        "--secret",
        make=lambda: tokens.new_secret().hex(),
        hint="use env:NAME, file:PATH or generate",
    )
    return tokens.check_secret(text.encode())


def invite(base: str, room: str, secret: bytes | None, ttl_hours: float) -> str:
    """An invite link to ``room`` on the signaller at ``base``."""
    from urllib.parse import urlencode

    query = {"room": room}
    if secret is not None:
        query["token"] = tokens.mint(secret, room, ttl_hours * 3600)
    return f"{base.rstrip('/')}/?{urlencode(query)}"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ipymeet", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the signaller and its standalone call page")
    serve.add_argument(
        "--host",
        help="address to bind (default 127.0.0.1; with --jupyterhub, JUPYTERHUB_SERVICE_URL's)",
    )
    serve.add_argument(
        "--port",
        type=int,
        help="port to listen on (default 8765; with --jupyterhub, JUPYTERHUB_SERVICE_URL's)",
    )
    serve.add_argument(
        "--jupyterhub",
        action="store_true",
        help="run as a JupyterHub managed service: under JUPYTERHUB_SERVICE_PREFIX, behind the "
        "hub's login, for the hub's users and their kernels (docs/deploy.md, JupyterHub)",
    )
    serve.add_argument("--max-peers", type=int, default=6, help="capacity of a room (default 6)")
    serve.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="a browser origin allowed besides loopback pages, e.g. https://lab.example.org",
    )
    serve.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a name this server is reached by besides localhost and its addresses, e.g. "
        "meet.example.org behind a reverse proxy (requests for any other name are refused: "
        "the defence against DNS rebinding)",
    )
    serve.add_argument(
        "--ice-servers",
        metavar="JSON",
        help='RTCIceServer list as JSON, e.g. \'[{"urls": "stun:stun.example.org"}]\'; '
        "default: Google's public STUN server",
    )
    serve.add_argument(
        "--public", type=Path, metavar="DIR", help="serve this folder at /public/ (e.g. a page)"
    )
    defaults = Settings()
    serve.add_argument(
        "--ping-interval",
        type=float,
        default=defaults.ping_interval,
        metavar="S",
        help=f"seconds between heartbeats (default {defaults.ping_interval:g}); with "
        "--ping-timeout, how soon a silently dropped connection is noticed",
    )
    serve.add_argument(
        "--ping-timeout",
        type=float,
        default=defaults.ping_timeout,
        metavar="S",
        help=f"seconds a heartbeat may take (default {defaults.ping_timeout:g})",
    )
    serve.add_argument(
        "--max-backlog",
        type=int,
        default=defaults.max_backlog_bytes,
        metavar="BYTES",
        help=f"what may wait to be sent to one connection before it is dropped (default "
        f"{defaults.max_backlog_bytes}): a client that stops reading cannot grow the server",
    )
    serve.add_argument("--secret", metavar="SOURCE", help=SECRET_HELP)
    serve.add_argument(
        "--turn-url",
        action="append",
        default=[],
        metavar="URL",
        help="a TURN server each member gets short-lived credentials for, e.g. "
        "turn:turn.example.org:3478?transport=udp (repeatable; needs --turn-secret)",
    )
    serve.add_argument(
        "--turn-secret",
        metavar="SOURCE",
        help="the TURN server's static-auth-secret (coturn's use-auth-secret), from env:NAME or "
        "file:PATH; never the secret itself",
    )
    serve.add_argument(
        "--turn-ttl",
        type=int,
        default=turn.DEFAULT_TURN_TTL,
        metavar="SECONDS",
        help=f"how long a member's TURN credentials stay valid (default {turn.DEFAULT_TURN_TTL}); "
        "longer than the longest call",
    )
    serve.add_argument(
        "--redis",
        metavar="URL",
        default=os.environ.get("IPYMEET_REDIS_URL") or None,
        help="share the rooms with the other `ipymeet serve` processes on this Redis, e.g. "
        "redis://127.0.0.1:6379/0 (default: $IPYMEET_REDIS_URL; put a URL with a password "
        "there, not on the command line)",
    )
    serve.add_argument(
        "--invite",
        action="append",
        default=[],
        metavar="ROOM",
        help="print an invite link to ROOM at start (with a token when --secret is given)",
    )
    _ttl(serve)
    serve.add_argument(
        "--tls",
        choices=["self-signed"],
        help="HTTPS with a certificate made at start for this machine (fingerprint printed)",
    )
    serve.add_argument(
        "--log-level",
        choices=["debug", "info", "warning"],
        default="info",
        help="what the server logs (default info: start, refusals, each request's method, path "
        "and status; never a query string, a Referer, a token or a secret, at any level)",
    )
    serve.add_argument("--tls-cert", metavar="FILE", help="HTTPS with this PEM certificate")
    serve.add_argument("--tls-key", metavar="FILE", help="... and this PEM private key")
    token = commands.add_parser("token", help="print an invite link with a join token")
    token.add_argument("room", help="the room the link opens")
    token.add_argument("--secret", metavar="SOURCE", required=True, help=SECRET_HELP)
    token.add_argument(
        "--url",
        default="http://127.0.0.1:8765",
        help="the signaller's base URL, as others reach it (default http://127.0.0.1:8765)",
    )
    _ttl(token)
    return parser


def _ttl(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--token-ttl",
        type=float,
        default=tokens.DEFAULT_TTL / 3600,
        metavar="HOURS",
        help="how long an invite link's token stays valid (default 24)",
    )


def _store(settings: Settings) -> RoomStore | None:
    """Where the rooms are kept beyond this process: in Redis with ``--redis``, else nowhere."""
    if settings.redis_url is None:
        return None
    from .cluster.redis import Cluster  # needs the redis package (ipymeet[redis])

    return Cluster(settings.redis_url, max_sdp=settings.max_sdp_bytes)


def _reach_redis(url: str) -> None:
    """ConnectionError (or ImportError) with a plain message unless Redis answers at ``url``."""
    try:
        from .cluster.redis import reach
    except ImportError:
        raise ImportError("--redis needs the redis package: pip install 'ipymeet[redis]'") from None
    reach(url)


def _tls(args: argparse.Namespace) -> TLS:
    if args.tls is not None:
        if args.tls_cert or args.tls_key:
            raise ValueError("give --tls self-signed or --tls-cert/--tls-key, not both")
        return "self-signed"
    if bool(args.tls_cert) != bool(args.tls_key):
        raise ValueError("--tls-cert and --tls-key go together")
    return (args.tls_cert, args.tls_key) if args.tls_cert else None


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ipymeet`` command."""
    args = _parser().parse_args(argv)
    if args.command == "token":
        try:
            secret = read_secret(args.secret)
            print(invite(args.url, args.room, secret, args.token_ttl))
        except (ValueError, OSError) as exc:
            print(f"ipymeet token: {exc}", file=sys.stderr)
            return 2
        return 0
    level = getattr(logging, args.log_level.upper())
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(message)s")
    try:
        hub_config = None
        if args.jupyterhub:
            from .hub.service import HubConfig

            hub_config = HubConfig.from_env()
            args.host = hub_config.bind_host if args.host is None else args.host
            args.port = (hub_config.bind_port or None) if args.port is None else args.port
        args.host = "127.0.0.1" if args.host is None else args.host
        args.port = 8765 if args.port is None else args.port
        extra: dict[str, Any] = {}
        if args.ice_servers is not None:
            servers = json.loads(args.ice_servers)
            if not isinstance(servers, list):
                raise ValueError("--ice-servers must be a JSON list")
            extra["ice_servers"] = tuple(servers)
        if args.public is not None and not args.public.is_dir():
            raise ValueError(f"--public {args.public} is not a folder")
        if "*" in args.allow_origin:
            raise ValueError("--allow-origin '*' is refused: name the origins to allow")
        settings = Settings(
            host=args.host,
            port=args.port,
            max_peers=args.max_peers,
            allowed_origins=tuple(args.allow_origin),
            allowed_hosts=tuple(args.allow_host),
            public_dir=args.public,
            ping_interval=args.ping_interval,
            ping_timeout=args.ping_timeout,
            max_backlog_bytes=args.max_backlog,
            secret=None if args.secret is None else read_secret(args.secret),
            tls=_tls(args),
            turn_urls=tuple(turn.check_turn_url(url) for url in args.turn_url),
            turn_secret=None
            if args.turn_secret is None
            else turn.read_turn_secret(args.turn_secret),
            turn_ttl=args.turn_ttl,
            redis_url=args.redis,
            **extra,
        )
        if args.token_ttl <= 0:
            raise ValueError("--token-ttl must be positive")
        if settings.redis_url is not None:
            _reach_redis(settings.redis_url)
        store = _store(settings)
        if hub_config is None:
            app, path = create_app(settings, store), "/"
        else:
            from .hub.service import create_hub_app

            app, path = create_hub_app(settings, hub_config, store), hub_config.prefix
        served = serve_tls(settings.tls, settings.host)
    except (ValueError, OSError, ImportError) as exc:
        print(f"ipymeet serve: {exc}", file=sys.stderr)
        return 2
    scheme = "http" if served is None else "https"
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host
    shown = f"[{shown}]" if ":" in shown else shown
    where = "open /?room=NAME" if hub_config is None else "a JupyterHub service, behind its login"
    print(f"ipymeet signaller on {scheme}://{shown}:{args.port}{path}  ({where})", flush=True)
    public = f"{scheme}://{public_host(args.host)}:{args.port}"
    if served is not None:
        print(f"TLS certificate SHA-256 fingerprint: {served.fingerprint}", flush=True)
    if settings.secret is not None:
        print("Join tokens: required (the secret is not shown)", flush=True)
    if settings.turn_urls:
        print(
            f"TURN: {', '.join(settings.turn_urls)}, credentials valid {settings.turn_ttl} s "
            "(the secret is not shown)",
            flush=True,
        )
    if settings.redis_url is not None:
        from .cluster.redis import shown_url

        print(f"Rooms shared through Redis at {shown_url(settings.redis_url)}", flush=True)
    for room in args.invite:
        until = ""
        link = invite(public, room, settings.secret, args.token_ttl)
        if hub_config is not None:
            # Browsers come through the hub's proxy, whose public address the service is not told.
            link = f"{invite(hub_config.prefix, room, None, 0)} on the hub's address"
        if settings.secret is not None:
            ends = datetime.now().astimezone() + timedelta(hours=args.token_ttl)
            until = f" (valid until {ends:%Y-%m-%d %H:%M %Z})"
        print(f"Invite to {room}: {link}{until}", flush=True)
    hub_prefix = None if hub_config is None else hub_config.prefix
    warning = exposure_warning(settings, public, hub_prefix=hub_prefix)
    if warning is not None:
        print(warning, file=sys.stderr, flush=True)
    from .core.loopthread import new_loop
    from .core.tuning import tune_process  # this process is the signaller's own

    tune_process()
    try:
        web.run_app(
            app,
            host=args.host,
            port=args.port,
            print=None,
            backlog=1024,
            # Never aiohttp's default format: its request line and Referer carry invite tokens.
            access_log_class=AccessLog,
            ssl_context=None if served is None else served.context,
            loop=new_loop(fast=True),  # uvloop when installed: this process is ours
        )
    except ConnectionError as exc:  # Redis gone between the check above and start-up
        print(f"ipymeet serve: {exc}", file=sys.stderr)
        return 2
    finally:
        if served is not None:
            served.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
