"""What video a member asks for: a size and a frame rate, checked once here for
``VideoRoom.video_size`` / ``VideoRoom.frame_rate`` (what the page asks its camera for) and for
``KernelPeer(size=, fps=)`` (what a kernel peer asks each member to send it, the data channel's
``want`` message, docs/protocol.md).

The bounds are the contract's (``MIN_VIDEO_SIDE``, ``MAX_VIDEO_WIDTH``, ``MAX_VIDEO_HEIGHT``,
``MAX_FRAME_RATE``): the page checks a ``want`` against the same numbers.
"""

from __future__ import annotations

from typing import Any

from .contract import MAX_FRAME_RATE, MAX_VIDEO_HEIGHT, MAX_VIDEO_WIDTH, MIN_VIDEO_SIDE


def whole(value: Any) -> bool:
    """Whether ``value`` is an int (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_size(value: Any, what: str) -> tuple[int, int] | None:
    """``value`` as a ``(width, height)`` of whole pixels within the bounds, or None for None;
    otherwise a ``TypeError`` or ``ValueError`` that says what ``what`` takes."""
    if value is None:
        return None
    if not isinstance(value, (tuple, list)) or len(value) != 2 or not all(map(whole, value)):
        raise TypeError(
            f"{what} must be (width, height) in whole pixels, e.g. (1280, 720), or None; "
            f"not {value!r}"
        )
    width, height = int(value[0]), int(value[1])
    if not (MIN_VIDEO_SIDE <= width <= MAX_VIDEO_WIDTH) or not (
        MIN_VIDEO_SIDE <= height <= MAX_VIDEO_HEIGHT
    ):
        raise ValueError(
            f"{what} {width}x{height} is out of range: the width must be {MIN_VIDEO_SIDE}.."
            f"{MAX_VIDEO_WIDTH} and the height {MIN_VIDEO_SIDE}..{MAX_VIDEO_HEIGHT}"
        )
    return width, height


def check_rate(value: Any, what: str) -> int | None:
    """``value`` as whole frames a second within 1..``MAX_FRAME_RATE``, or None for None."""
    if value is None:
        return None
    if not whole(value):
        raise TypeError(f"{what} must be whole frames a second (e.g. 30) or None, not {value!r}")
    if not (1 <= value <= MAX_FRAME_RATE):
        raise ValueError(f"{what} {value} is out of range: use 1..{MAX_FRAME_RATE} frames a second")
    return int(value)


def want_message(size: tuple[int, int] | None, fps: int | None) -> dict[str, Any] | None:
    """The data channel's ``want`` message for ``size`` and ``fps`` (None: nothing asked)."""
    if size is None and fps is None:
        return None
    width, height = size if size is not None else (None, None)
    return {"t": "want", "width": width, "height": height, "fps": fps}
