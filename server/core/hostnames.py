"""Host names, as a ``Host`` header or a setting gives them: pure helpers the access model and
the settings share (neither imports the other for them)."""

from __future__ import annotations

import ipaddress


def is_loopback_host(host: str | None) -> bool:
    """True for ``localhost``, ``*.localhost`` and loopback IP addresses."""
    if not host:
        return False
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str:
    """The name of a ``Host`` header, without its port: ``"[::1]:80"`` → ``"::1"``."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def is_ip(name: str) -> bool:
    """Whether ``name`` is an IP address (v4 or v6, without brackets)."""
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
