"""The contract both sides share is defined once (widget/contract.py); the front end's copy is
rendered from it, so these tests fail when the two sides disagree."""

from __future__ import annotations

import re
from pathlib import Path

from ipymeet.server.core import validation
from ipymeet.widget import contract

ROOT = Path(__file__).resolve().parents[2]
CONTRACT_TS = ROOT / "js" / "src" / "contract.ts"


def test_the_front_end_contract_is_rendered_from_the_python_one() -> None:
    assert CONTRACT_TS.read_text(encoding="utf-8") == contract.typescript(), (
        "js/src/contract.ts is out of date: run "
        "`python -m ipymeet.widget.contract > js/src/contract.ts`"
    )


def test_the_limits_are_the_signallers_own() -> None:
    assert validation.ROOM_RE.pattern == contract.ROOM_PATTERN
    assert contract.MAX_NAME == validation.MAX_NAME


def test_the_rendered_values_are_the_python_values() -> None:
    text = contract.typescript()
    for state in contract.CallState:
        assert f'"{state.value}"' in text
    for code in contract.ErrorCode:
        if code.value:
            assert f'"{code.value}"' in text
    assert f"MAX_CHAT = {contract.MAX_CHAT};" in text


def test_no_front_end_module_defines_its_own_copy() -> None:
    """The front end takes these names from ./contract, never from a literal of its own."""
    own = re.compile(
        r"(?:const|let)\s+(ROOM_RE|ROOM_PATTERN|MAX_CHAT|MAX_HISTORY|MAX_NAME|CALL_STATES|ERROR_CODES"
        r"|SIGNALLER_EVENTS|ROUTE_REQUESTS|ROUTE_SENDS|MAX_ROUTE_NUMBER)\b"
    )
    for path in sorted((ROOT / "js" / "src").rglob("*.ts")):
        if path.name == "contract.ts" or path.name.endswith(".test.ts"):
            continue
        found = own.findall(path.read_text(encoding="utf-8"))
        assert not found, f"{path.name} defines {found}: import them from ./contract"
