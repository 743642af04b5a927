"""A trait over one of the contract's enumerations (``CallState``, ``ErrorCode``).

The value is the enum member, which is also its string (``room.state == "in_call"`` and
``room.state is CallState.IN_CALL`` both hold); it syncs as the plain string. Python may assign a
member or its value and anything else is a ``TraitError``. What the browser sends is not checked by
anyone before it reaches the trait, and a ``TraitError`` there would roll back the whole update it
came in (the other traits too) and log a traceback: so an unknown value from the browser is logged
once and the trait keeps its value.
"""

from __future__ import annotations

import enum
import logging
from typing import Any, Generic, TypeVar

import traitlets

E = TypeVar("E", bound=enum.Enum)
log = logging.getLogger("ipymeet")

#: (trait, value) pairs already warned about; bounded, so a babbling front end cannot grow it.
_warned: set[tuple[str, str]] = set()
_MAX_WARNED = 64


class ContractEnum(traitlets.TraitType[E, E | str], Generic[E]):
    """A synced trait whose values are the members of ``enum_class`` (given by member or value)."""

    def __init__(self, enum_class: type[E], default_value: E, **kwargs: Any) -> None:
        self.enum_class = enum_class
        super().__init__(default_value=default_value, **kwargs)
        self.tag(to_json=self._to_json, from_json=self._from_json)

    def validate(self, obj: Any, value: Any) -> E:
        try:
            return self.enum_class(value)
        except (ValueError, TypeError):
            self.error(obj, value)

    def info(self) -> str:
        return "one of " + ", ".join(repr(member.value) for member in self.enum_class)

    @staticmethod
    def _to_json(value: enum.Enum, _: Any) -> Any:
        return value.value

    def _from_json(self, value: Any, widget: Any) -> E:
        try:
            return self.enum_class(value)
        except (ValueError, TypeError):
            key = (str(self.name), repr(value)[:80])
            if key not in _warned and len(_warned) < _MAX_WARNED:
                _warned.add(key)
                log.warning(
                    "ipymeet: the browser set %s to %s, which is not %s; kept %r",
                    self.name,
                    key[1],
                    self.info(),
                    getattr(widget, str(self.name)).value,
                )
            current: E = getattr(widget, str(self.name))
            return current
