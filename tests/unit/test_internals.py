"""server/core/internals.py: every library internal ipymeet uses is named there, used nowhere else,
and behind a gate whose closed side (public API only) works too.

The fast path's own gate and the shapes it relies on are tests/unit/test_fastio.py's.
"""

from __future__ import annotations

import io
import logging
import tokenize
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import engineio
import pytest

from ipymeet.server.core import internals
from ipymeet.server.core.guard import MeteredQueue
from ipymeet.server.core.settings import Settings
from ipymeet.server.core.signaller import Signaller

ROOT = Path(__file__).resolve().parents[2]
NAMES = {name for names in internals.INTERNAL_NAMES.values() for name in names}


def _uses(source: str, names: set[str]) -> Iterator[tuple[int, str]]:
    """Where ``source`` uses one of ``names`` as code: an attribute (``x.name``) or a string
    that is exactly the name (``getattr(x, "name")``); comments and prose are not uses."""
    previous = None
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.NAME and token.string in names:
            if previous is not None and previous.string == ".":
                yield token.start[0], token.string
        elif token.type == tokenize.STRING and token.string.strip("\"'") in names:
            yield token.start[0], token.string.strip("\"'")
        if token.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT):
            previous = token


def _modules() -> Iterator[Path]:
    for folder in ("server", "widget"):
        yield from sorted((ROOT / folder).rglob("*.py"))


def test_internal_names_are_used_only_in_internals() -> None:
    allowed = {ROOT / "server" / "core" / name for name in internals.INTERNAL_MODULES}
    found = [
        f"{path.relative_to(ROOT)}:{line}: {name}"
        for path in _modules()
        if path not in allowed
        for line, name in _uses(path.read_text(encoding="utf-8"), NAMES)
    ]
    assert not found, "library internals used outside server/core/internals.py:\n" + "\n".join(
        found
    )


def test_the_check_finds_a_use() -> None:
    """The search above is not blind: code that reaches into an internal is found, prose not."""
    code = (
        "# eio.handlers in a comment\n"
        'doc = "the handlers"\n'
        "x = eio.handlers\n"
        "y = getattr(c, '_nominated', {})\n"
        "handlers = 1\n"
    )
    assert list(_uses(code, NAMES)) == [(3, "handlers"), (4, "_nominated")]


def test_fastio_is_imported_by_internals_alone() -> None:
    importers = [
        str(path.relative_to(ROOT))
        for path in _modules()
        for token in tokenize.generate_tokens(io.StringIO(path.read_text("utf-8")).readline)
        if token.type == tokenize.NAME and token.string == "fastio"
        if path.name not in internals.INTERNAL_MODULES
    ]
    assert not importers, importers


# -- the guard's gate ----------------------------------------------------------------------------


@pytest.fixture
def guard_gate_closed(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The guard's hooks gated on releases nobody has: what a release not yet read gets."""
    monkeypatch.setitem(internals.GUARD_CHECKED, "python-engineio", ("9.0.0", "9.0.0"))
    monkeypatch.setenv(internals.ENV, "0")  # engineio's own server, as on such a release
    internals.guard_supported.cache_clear()
    yield
    monkeypatch.undo()
    internals.guard_supported.cache_clear()


def test_the_guard_hooks_in_where_checked() -> None:
    if not internals.guard_supported():
        pytest.skip("the installed releases are not the ones the guard was checked on")
    signaller = Signaller(Settings())
    assert signaller.guard.installed
    assert signaller.guard.metered
    queue = signaller.sio.eio.create_queue()
    assert isinstance(queue, MeteredQueue)


def test_on_a_release_not_checked_the_guard_uses_public_api_only(
    guard_gate_closed: None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="ipymeet.server"):
        signaller = Signaller(Settings())
    guard, eio = signaller.guard, signaller.sio.eio
    assert not guard.installed
    assert not guard.metered
    assert type(eio) is engineio.AsyncServer
    assert not isinstance(eio.create_queue(), MeteredQueue)  # engineio's own, untouched
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "are not the releases checked" in said
    assert "backlog is not capped" in said


def test_public_only_closes_every_gate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(internals.ENV_ALL, "0")
    signaller = Signaller(Settings())
    assert not signaller.fast
    assert not signaller.guard.installed
    assert internals.engine_handlers(signaller.sio.eio) is None
    assert not internals.meter_queues(signaller.sio.eio, lambda: MeteredQueue(signaller.guard))


# -- the kernel peer's candidate type ------------------------------------------------------------


def _candidate(kind: str) -> Any:
    return SimpleNamespace(type=kind)


def _pc(local: list[str], nominated: str | None) -> Any:
    """An object shaped as aiortc's RTCPeerConnection is, as far as candidate_type reads it."""
    pair = None if nominated is None else SimpleNamespace(local_candidate=_candidate(nominated))
    connection = SimpleNamespace(_nominated={} if pair is None else {1: pair})
    gatherer = SimpleNamespace(getLocalCandidates=lambda: [_candidate(k) for k in local])
    ice = SimpleNamespace(_connection=connection, iceGatherer=gatherer)
    transceiver = SimpleNamespace(
        receiver=SimpleNamespace(transport=SimpleNamespace(transport=ice))
    )
    return SimpleNamespace(getTransceivers=lambda: [transceiver])


@pytest.fixture
def ice_gate(monkeypatch: pytest.MonkeyPatch) -> Any:
    def set_open(opened: bool) -> None:
        monkeypatch.setattr(internals, "ice_supported", lambda: opened)

    return set_open


def test_candidate_type_where_checked_is_the_nominated_pair_s(ice_gate: Any) -> None:
    ice_gate(True)
    assert internals.candidate_type(_pc(["host", "srflx"], "srflx")) == "srflx"
    assert internals.candidate_type(_pc(["host"], None)) is None  # nothing nominated yet


def test_candidate_type_elsewhere_is_known_only_when_every_candidate_is_of_one_type(
    ice_gate: Any,
) -> None:
    ice_gate(False)
    assert internals.candidate_type(_pc(["relay", "relay"], "relay")) == "relay"  # relay only
    assert internals.candidate_type(_pc(["host", "srflx"], "srflx")) is None  # not guessed
    assert internals.candidate_type(_pc([], None)) is None


def test_candidate_type_of_something_else_is_unknown(ice_gate: Any) -> None:
    for opened in (True, False):
        ice_gate(opened)
        assert internals.candidate_type(object()) is None


def test_the_ice_gate_follows_the_installed_releases() -> None:
    pytest.importorskip("aiortc")
    internals.ice_supported.cache_clear()
    ranges = internals.ICE_CHECKED
    assert internals.ice_supported() is internals.checks(internals.installed(ranges), ranges)
