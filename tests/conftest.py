"""Fixtures shared by every layer: a real signaller on a real loopback port."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from ipymeet.server import Settings, SignallerThread, choose
from ipymeet.server.core import internals

from .support import MakeSignaller


@pytest.fixture(params=["fast", "stock"])
def engine_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test on each engine path (server/core/internals.py): signallers started after this
    take it. "fast" is skipped where the installed releases are not the ones it was checked on."""
    path = str(request.param)
    if path == "fast" and not internals.supported():
        pytest.skip("python-engineio / python-socketio are not the releases fastio was checked on")
    monkeypatch.setenv(internals.ENV, "1" if path == "fast" else "0")
    return path


@pytest.fixture
def make_signaller() -> Iterator[MakeSignaller]:
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
def signaller(make_signaller: MakeSignaller) -> SignallerThread:
    """A signaller with default settings (rooms of two), on a free loopback port."""
    return make_signaller()


@pytest.fixture
def own_kernel_signaller(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A kernel signaller of this test's own: secure=True would otherwise stay on for the others."""
    monkeypatch.setattr(choose, "_kernel_signaller", None)
    yield
    if choose._kernel_signaller is not None:
        choose._kernel_signaller.stop()


@pytest.fixture(autouse=True)
def _no_leaked_signaller_threads() -> Iterator[None]:
    """Fail a test that leaves a signaller thread of its own running."""
    before = {t for t in threading.enumerate() if t.name == "ipymeet-signaller"}
    yield
    kernel = choose._kernel_signaller  # the process-wide one lives on by design
    leaked = [
        t
        for t in threading.enumerate()
        if t.name == "ipymeet-signaller"
        and t not in before
        and t.is_alive()
        and (kernel is None or t is not kernel.thread)
    ]
    for thread in leaked:
        thread.join(2.0)
    assert not [t for t in leaked if t.is_alive()], "a test left a signaller thread running"
