"""The access model (server/core/access.py): its table is docs/security.md's and names real tests,
and its decisions, each a pure function, hold their cases."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from ipymeet.server import Settings
from ipymeet.server.core import access
from ipymeet.server.core.access import Hosts, RefusalLog

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "security.md"


def test_docs_security_md_carries_the_table_as_the_module_has_it() -> None:
    text = DOC.read_text(encoding="utf-8")
    found = re.search(r"<!-- access-table[^>]*-->\n(.*?)\n<!-- /access-table -->", text, re.S)
    assert found, "docs/security.md lost its access table"
    assert found.group(1) == access.table_markdown()


def _cells() -> list[tuple[str, str, access.Cell]]:
    return [(d.value, p.value, c) for d, row in access.TABLE.items() for p, c in row.items()]


def test_every_refusal_names_a_test_and_every_named_test_exists() -> None:
    for door, principal, cell in _cells():
        assert cell.allows, (door, principal)
        if cell.refuses:
            assert cell.test, f"{door} / {principal}: a refusal without the test that shows it"
        if not cell.test:
            continue
        path, _, name = cell.test.partition("::")
        source = ROOT / path
        assert source.is_file(), cell.test
        if name:
            assert re.search(rf"^(async )?def {name}\(", source.read_text(), re.M), cell.test


def test_every_door_and_principal_of_the_model_is_in_the_table() -> None:
    assert set(access.TABLE) == set(access.Door)
    seen = {p for row in access.TABLE.values() for p in row}
    assert seen == set(access.Principal)


@pytest.mark.parametrize(
    ("settings", "host", "allowed"),
    [
        (Settings(), "127.0.0.1:8765", True),
        (Settings(), "localhost:8765", True),
        (Settings(), "meet.localhost", True),
        (Settings(), "[::1]:8765", True),
        (Settings(), None, True),  # no Host: not a browser
        (Settings(), "rebind.test:8765", False),
        (Settings(), "192.0.2.7:8765", False),  # on loopback, only loopback addresses
        (Settings(), "127.0.0.1.rebind.test", False),
        (Settings(allowed_hosts=("meet.example.org",)), "MEET.example.org:443", True),
        (Settings(allowed_hosts=("meet.example.org",)), "evil.example.org", False),
        (Settings(allowed_origins=("https://lab.example.org",)), "lab.example.org", True),
        (Settings(host="0.0.0.0"), "192.0.2.7:8765", True),  # exposed: any address
        (Settings(host="0.0.0.0"), "[2001:db8::1]:8765", True),
        (Settings(host="0.0.0.0"), "rebind.test", False),
    ],
)
def test_hosts_a_signaller_answers_to(settings: Settings, host: str | None, allowed: bool) -> None:
    assert Hosts.of(settings).allows(host) is allowed


def test_a_hub_service_does_not_check_hosts() -> None:
    assert Hosts(check=False).allows("hub.example.org")


@pytest.mark.parametrize("name", ["", "https://x.org", "x.org:443", "x.org/a", "*", "a b"])
def test_allowed_hosts_are_names(name: str) -> None:
    with pytest.raises(ValueError, match="allowed_hosts"):
        Settings(allowed_hosts=(name,))


def test_the_kernels_door_decisions() -> None:
    # On a user's own shared signaller (user "") everything of the user's passes.
    assert access.may_register("", None)
    assert access.may_hear("", ["anyone"])
    assert access.may_claim("", ["someone"], ["else"])
    # On a hub service: only what the user's own widgets hold.
    assert access.may_register("ada", None)
    assert access.may_register("ada", "ada")
    assert not access.may_register("mallory", "ada")
    assert access.may_hear("ada", ["ada", "bob"])
    assert not access.may_hear("mallory", ["ada", "bob"])
    assert not access.may_hear("mallory", [])
    assert access.may_claim("ada", [], [])
    assert access.may_claim("ada", ["ada"], ["ada"])
    assert not access.may_claim("mallory", ["ada"], [])
    assert not access.may_claim("mallory", [], ["ada"])


def test_a_widgets_page_reaches_only_its_widgets_room() -> None:
    assert access.widget_room_allows("lab", "lab")
    assert not access.widget_room_allows("lab", "office")
    assert not access.widget_room_allows("", "")
    assert not access.widget_room_allows("lab", None)


def test_refusals_are_logged_once_per_kind_and_minute(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    refusals = RefusalLog(clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="ipymeet.server"):
        for _ in range(1000):
            refusals.refused(access.Door.CONNECT, "forbidden_host", "'rebind.test'")
        refusals.refused(access.Door.ENTER, "forbidden", "bad_signature")
        now[0] = 61.0
        refusals.refused(access.Door.CONNECT, "forbidden_host", "'rebind.test'")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "ipymeet: refused at 'connect': forbidden_host 'rebind.test'",
        "ipymeet: refused at 'enter a room': forbidden bad_signature",
        "ipymeet: refused at 'connect': forbidden_host 'rebind.test'"
        " (999 more since the last line)",
    ]
