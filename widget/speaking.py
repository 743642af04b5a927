"""Whether a member is speaking, from the level of its audio: the gate a kernel peer applies to
the sound it receives (the page applies the same one, js/src/speaking.ts, to its levels).

The level is an RMS over full scale (0-1, linear, as WebRTC's ``audioLevel``). The gate turns on
at ``SPEAKING_ON_LEVEL`` and off once the level stayed below ``SPEAKING_OFF_LEVEL`` for
``SPEAKING_HOLD_MS`` (widget/contract.py), so it does not flicker between words; muted, it is off
at once, whatever the level.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .contract import SPEAKING_HOLD_MS, SPEAKING_OFF_LEVEL, SPEAKING_ON_LEVEL


def level_of(samples: Any) -> float:
    """The RMS level (0-1) of int16 ``samples`` (any shape); 0 for none."""
    array = np.asarray(samples, dtype=np.float64)
    if array.size == 0:
        return 0.0
    return float(np.sqrt(np.mean(np.square(array))) / 32768.0)


class SpeakingGate:
    """On from the on level, off after the hold below the off level; never on while muted."""

    def __init__(self) -> None:
        self.speaking = False
        self._quiet_since: float | None = None

    def off(self) -> None:
        """Not speaking from now on (muted, or its sound no longer read)."""
        self.speaking, self._quiet_since = False, None

    def update(self, level: float | None, muted: bool, now_ms: float) -> bool:
        """Take one reading (``level`` None: none to be had); whether it is speaking now."""
        if muted:
            self.off()
            return False
        value = level or 0.0
        if value >= SPEAKING_ON_LEVEL:
            self.speaking, self._quiet_since = True, None
        elif self.speaking and value < SPEAKING_OFF_LEVEL:
            if self._quiet_since is None:
                self._quiet_since = now_ms
            if now_ms - self._quiet_since >= SPEAKING_HOLD_MS:
                self.speaking, self._quiet_since = False, None
        elif self.speaking:
            self._quiet_since = None  # between the two levels: the quiet spell starts over
        return self.speaking
