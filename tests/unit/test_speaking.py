"""The gate a kernel peer applies to the sound it receives (widget/speaking.py): hysteresis, and
a muted member is never speaking."""

from __future__ import annotations

import numpy as np

from ipymeet.widget.contract import SPEAKING_HOLD_MS, SPEAKING_OFF_LEVEL, SPEAKING_ON_LEVEL
from ipymeet.widget.speaking import SpeakingGate, level_of

LOUD, QUIET = 0.3, 0.001
BETWEEN = (SPEAKING_ON_LEVEL + SPEAKING_OFF_LEVEL) / 2


def test_the_level_is_an_rms_over_full_scale() -> None:
    assert level_of(np.zeros((960, 2), dtype=np.int16)) == 0.0
    assert level_of(np.zeros((0, 1), dtype=np.int16)) == 0.0
    tone = (0.5 * 32767 * np.sin(np.arange(4800) * 2 * np.pi * 440 / 48_000)).astype(np.int16)
    assert abs(level_of(tone) - 0.5 / np.sqrt(2)) < 0.01


def test_on_at_the_on_level_off_only_after_the_hold_below_the_off_level() -> None:
    gate = SpeakingGate()
    assert [
        gate.update(QUIET, False, 0),
        gate.update(BETWEEN, False, 100),  # not loud enough to start
        gate.update(LOUD, False, 200),
        gate.update(QUIET, False, 300),  # a pause between words
        gate.update(BETWEEN, False, 300 + SPEAKING_HOLD_MS),  # the quiet spell starts over
        gate.update(QUIET, False, 400 + SPEAKING_HOLD_MS),
        gate.update(QUIET, False, 400 + 2 * SPEAKING_HOLD_MS - 1),
        gate.update(QUIET, False, 400 + 2 * SPEAKING_HOLD_MS),
    ] == [False, False, True, True, True, True, True, False]


def test_a_muted_member_is_never_speaking() -> None:
    gate = SpeakingGate()
    assert gate.update(1.0, True, 0) is False
    assert gate.update(LOUD, False, 10) is True
    assert gate.update(LOUD, True, 20) is False
    assert gate.speaking is False
    assert gate.update(None, False, 30) is False
