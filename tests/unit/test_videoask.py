"""What video a member asks for (widget/videoask.py): the checks ``VideoRoom``'s capture traits
and ``KernelPeer(size=, fps=)`` share, the ``want`` message, and a kernel peer's frames made its
size in the conversion (peertracks.video_array)."""

from __future__ import annotations

import pytest

from ipymeet.widget.videoask import check_rate, check_size, want_message


def test_sizes_and_rates_within_bounds_pass_and_none_asks_nothing() -> None:
    assert check_size((1280, 720), "size") == (1280, 720)
    assert check_size([16, 2160], "size") == (16, 2160)
    assert check_size(None, "size") is None
    assert check_rate(60, "fps") == 60
    assert check_rate(None, "fps") is None


@pytest.mark.parametrize(
    ("value", "error", "words"),
    [
        ((15, 240), ValueError, "width must be 16..3840"),
        ((3841, 240), ValueError, "out of range"),
        ((320, 2161), ValueError, "height 16..2160"),
        ((320.0, 240), TypeError, "whole pixels"),
        ((True, 240), TypeError, "whole pixels"),
        ("320x240", TypeError, "(width, height)"),
        ((320, 240, 3), TypeError, "(width, height)"),
    ],
)
def test_a_bad_size_is_refused_in_plain_words(value: object, error: type, words: str) -> None:
    with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)")):
        check_size(value, "size")


@pytest.mark.parametrize(("value", "error"), [(0, ValueError), (61, ValueError), (2.5, TypeError)])
def test_a_bad_rate_is_refused(value: object, error: type) -> None:
    with pytest.raises(error, match="fps"):
        check_rate(value, "fps")


def test_the_want_message_says_what_was_asked_and_null_for_the_rest() -> None:
    assert want_message((320, 240), 15) == {"t": "want", "width": 320, "height": 240, "fps": 15}
    assert want_message(None, 15) == {"t": "want", "width": None, "height": None, "fps": 15}
    assert want_message(None, None) is None


def test_a_frame_becomes_an_array_of_the_peers_size_smaller_or_larger() -> None:
    np = pytest.importorskip("numpy")
    av = pytest.importorskip("av")
    from ipymeet.widget.peertracks import video_array

    frame = av.VideoFrame.from_ndarray(np.full((480, 640, 3), 200, np.uint8), format="rgb24")
    frame = frame.reformat(format="yuv420p")  # as a decoder gives it
    assert video_array(None)(frame).shape == (480, 640, 3)
    small = video_array((320, 240))(frame)
    assert (small.shape, small.dtype) == ((240, 320, 3), np.uint8)
    large = video_array((1280, 720))(frame)
    assert large.shape == (720, 1280, 3)
    assert abs(int(large.mean()) - 200) < 4  # the same picture, enlarged
