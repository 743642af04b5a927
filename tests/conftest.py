"""Fixtures shared by every layer: a real signaller on a real loopback port."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ipymeet.server import Settings, SignallerThread, runner


@pytest.fixture
def make_signaller() -> Iterator[Callable[..., SignallerThread]]:
    """Start signallers on free loopback ports (no ICE servers unless given); all stop after."""
    started: list[SignallerThread] = []

    def make(**settings: Any) -> SignallerThread:
        settings.setdefault("ice_servers", ())
        server = SignallerThread(Settings(**settings)).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def signaller(make_signaller: Callable[..., SignallerThread]) -> SignallerThread:
    """A signaller with default settings (rooms of two), on a free loopback port."""
    return make_signaller()


@pytest.fixture(autouse=True)
def _no_leaked_signaller_threads() -> Iterator[None]:
    """Fail a test that leaves a signaller thread of its own running."""
    before = {t for t in threading.enumerate() if t.name == "ipymeet-signaller"}
    yield
    kernel = runner._kernel_signaller  # the process-wide one lives on by design
    leaked = [
        t
        for t in threading.enumerate()
        if t.name == "ipymeet-signaller"
        and t not in before
        and t.is_alive()
        and (kernel is None or t is not kernel._thread)
    ]
    for thread in leaked:
        thread.join(2.0)
    assert not [t for t in leaked if t.is_alive()], "a test left a signaller thread running"
