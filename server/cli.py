"""``ipymeet serve``: the signaller as a process of its own (a shared lab, a JupyterHub service)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from .app import create_app
from .settings import Settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ipymeet", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the signaller and its standalone call page")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8765, help="port to listen on (default 8765)")
    serve.add_argument("--max-peers", type=int, default=6, help="capacity of a room (default 6)")
    serve.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="a browser origin allowed besides loopback pages, e.g. https://lab.example.org",
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
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ipymeet`` command."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
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
            public_dir=args.public,
            **extra,
        )
    except ValueError as exc:
        print(f"ipymeet serve: {exc}", file=sys.stderr)
        return 2
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "") else args.host
    print(f"ipymeet signaller on http://{shown}:{args.port}/  (open /?room=NAME)", flush=True)
    web.run_app(create_app(settings), host=args.host, port=args.port, print=None, backlog=1024)
    return 0


if __name__ == "__main__":
    sys.exit(main())
