"""The kernel peer behind ``room.process(fn)`` (widget/process.py) with real aiortc, no browser: it
processes one member's video only (the one ``own_member`` picks), sends the result, reports the
first failure of ``fn`` once, and says its member id as it changes."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from ipymeet import KernelPeer
from ipymeet.widget.process import Processor

from ..support import MakeSignaller, wait_until
from .test_kernel_peer import CODEC_TOLERANCE, PATTERN, peer_threads, quarter_means


def test_only_the_own_members_video_is_processed_and_sent_back(
    make_signaller: MakeSignaller,
) -> None:
    server = make_signaller(max_peers=4)
    room = "proc-only"
    own = KernelPeer(room, name="Ada", signaling_url=server.url)
    other = KernelPeer(room, name="Bob", signaling_url=server.url)
    own.publish(lambda: PATTERN)
    other.publish(lambda: np.zeros_like(PATTERN))
    back: list[Any] = []
    own.on_frame(
        lambda frame, sender: back.append(frame) if sender.name == "Ada (processed)" else None
    )
    seen: list[str] = []
    reports: list[str] = []
    inputs: list[float] = []
    changed = threading.Event()

    def invert(frame: Any) -> Any:
        inputs.append(float(frame.mean()))
        return 255 - frame

    def on_id(member: str) -> None:
        seen.append(member)
        changed.set()

    processor: Processor | None = None
    try:
        own.join()
        other.join()
        other.wait_for(lambda p: p.state == "in_call")
        processor = Processor(
            room,
            "Ada",
            invert,
            own_member=lambda sender: sender.id == own.id,
            on_id=on_id,
            report=reports.append,
            signaling_url=server.url,
        )
        assert changed.wait(10)
        assert seen == [processor.peer.id]
        own.wait_for(lambda p: len(back) >= 10, timeout=30)
        assert (
            np.abs(quarter_means(back[-1]) - quarter_means(255 - PATTERN)).max() < CODEC_TOLERANCE
        )
        # Bob's video (black) was never handed to fn: every frame it saw was Ada's pattern.
        assert min(inputs) > PATTERN.mean() - CODEC_TOLERANCE
        assert processor.peer.counters["frames_processed"] == len(inputs)
        assert processor.errors == 0
        assert reports == []
        names = sorted(p["name"] for p in other.peers)
        assert names == ["Ada", "Ada (processed)"]
    finally:
        if processor is not None:
            processor.stop()
        own.close()
        other.close()
    assert seen[-1] == ""
    assert peer_threads() == []


def test_a_failing_function_is_reported_once_and_counted(make_signaller: MakeSignaller) -> None:
    server = make_signaller(max_peers=4)
    room = "proc-fail"
    own = KernelPeer(room, name="Ada", signaling_url=server.url)
    own.publish(lambda: PATTERN)
    reports: list[str] = []
    processor: Processor | None = None
    try:
        own.join()
        processor = Processor(
            room,
            "Ada",
            lambda frame: frame.mean(),  # not a frame
            own_member=lambda sender: sender.id == own.id,
            on_id=lambda member: None,
            report=reports.append,
            signaling_url=server.url,
        )
        processor.peer.wait_for(lambda p: p.counters["callback_errors"] >= 5, timeout=30)
        assert len(reports) == 1
        assert (
            "room.process: <lambda> failed on a frame: ValueError: a frame must be a numpy"
            in reports[0]
        )
        assert processor.peer.state == "in_call"
    finally:
        if processor is not None:
            processor.stop()
        own.close()


def test_the_widgets_processor_is_in_the_room_while_the_widget_is() -> None:
    """``room.process(fn)`` before ``join()`` waits for it; joining brings the processor in (its
    id in ``_processed_by``), leaving takes it out, ``process(None)`` forgets ``fn``."""
    from ipymeet import VideoRoom

    room = VideoRoom("proc-follow", name="Ada")
    try:
        room.process(lambda frame: frame)
        assert room._processor is None
        room.join()
        processor = room._processor
        assert processor is not None
        processor.peer.wait_for(lambda p: p.state == "waiting")
        wait_until(lambda: room._processed_by == processor.peer.id, 10, "the processed tile's id")
        assert processor.peer.name == "Ada (processed)"
        room.leave()
        assert room._processor is None
        assert room._processed_by == ""
        assert processor.peer.state == "left"
        room.join()
        assert room._processor is not None
        room.process(None)
        assert room._processor is None
        room.leave()
        room.join()
        assert room._processor is None
    finally:
        room.close()
    assert peer_threads() == []
