"""The signaller's thread: named, daemon, its own loop, a free loopback port, idempotent stop."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from ipymeet.server import Settings, SignallerThread, kernel_signaller


def _accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_start_serves_on_loopback_and_stop_is_idempotent() -> None:
    server = SignallerThread(Settings(ice_servers=())).start()
    threads = [t for t in threading.enumerate() if t.name == "ipymeet-signaller"]
    assert server.running
    assert server.url == f"http://127.0.0.1:{server.port}"
    assert any(t.daemon for t in threads)
    assert _accepts(server.port)
    started = time.monotonic()
    server.stop()
    server.stop()
    assert time.monotonic() - started < 5
    assert not server.running
    assert not _accepts(server.port)


def test_a_taken_port_is_a_clear_error() -> None:
    first = SignallerThread(Settings(ice_servers=())).start()
    try:
        with pytest.raises(RuntimeError, match=r"could not listen on 127\.0\.0\.1"):
            SignallerThread(Settings(ice_servers=(), port=first.port)).start()
    finally:
        first.stop()


def test_the_kernel_signaller_is_one_per_process() -> None:
    assert kernel_signaller() is kernel_signaller()
    assert kernel_signaller().settings.host == "127.0.0.1"
