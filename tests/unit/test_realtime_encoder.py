"""A kernel peer's video goes out through the real-time VP8 encoder (server/core/internals.py):
aiortc's own encoder is swapped for it between two frames, the receiver goes on decoding, and
where aiortc is not a release it was read on, aiortc's encoder stays."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.codecs.vpx import Vp8Encoder

from ipymeet.server.core import internals
from ipymeet.widget.peerconn import OutgoingTrack
from ipymeet.widget.peermedia import VIDEO_CLOCK, Outgoing

TIMEOUT = 20.0


@pytest.fixture
def encoder_gate() -> Iterator[None]:
    internals.encoder_supported.cache_clear()
    yield
    internals.encoder_supported.cache_clear()


def picture(index: int, width: int = 320, height: int = 240) -> Any:
    """A moving pattern: something to encode."""
    x = np.arange(width, dtype=np.uint16)[None, :, None]
    y = np.arange(height, dtype=np.uint16)[:, None, None]
    channels = np.arange(3, dtype=np.uint16)[None, None, :]
    return ((x // 40 * 50 + y // 40 * 30 + channels * 60 + index * 7) % 256).astype(np.uint8)


async def send_and_receive(frames_wanted: int) -> tuple[Any, list[Any]]:
    """An OutgoingTrack sent from one aiortc peer to another on loopback; returns the sender's
    encoder after ``frames_wanted`` frames were decoded on the other side, and those frames."""
    outgoing = Outgoing()
    sender_pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    receiver_pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    received: list[Any] = []
    done = asyncio.Event()
    readers: list[asyncio.Future[None]] = []

    @receiver_pc.on("track")
    def _track(track: Any) -> None:
        async def read() -> None:
            while len(received) < frames_wanted:
                received.append(await track.recv())
            done.set()

        readers.append(asyncio.ensure_future(read()))

    try:
        track = OutgoingTrack(outgoing, lambda: None)
        sender = sender_pc.addTrack(track)
        track.sent_by(sender)
        await sender_pc.setLocalDescription(await sender_pc.createOffer())
        await receiver_pc.setRemoteDescription(sender_pc.localDescription)
        await receiver_pc.setLocalDescription(await receiver_pc.createAnswer())
        await sender_pc.setRemoteDescription(receiver_pc.localDescription)
        index = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TIMEOUT
        while not done.is_set():
            assert loop.time() < deadline, f"{len(received)} of {frames_wanted} frames decoded"
            index += 1
            outgoing.set((picture(index), int(index / 30 / VIDEO_CLOCK)))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(done.wait(), 1 / 30)
        return sender._RTCRtpSender__encoder, received  # type: ignore[attr-defined]
    finally:
        outgoing.close()
        await sender_pc.close()
        await receiver_pc.close()


async def test_the_senders_encoder_becomes_the_real_time_one_and_the_video_goes_on(
    encoder_gate: None,
) -> None:
    encoder, received = await send_and_receive(10)
    assert type(encoder).__name__ == "RealtimeVp8Encoder"
    assert isinstance(encoder, Vp8Encoder)
    # aiortc's settings, with ours laid over them: real time, no lag, no denoiser, faster.
    given = encoder.codec.given
    assert (given["deadline"], given["lag-in-frames"]) == ("realtime", "0")
    assert (given["noise-sensitivity"], given["cpu-used"]) == ("0", "-12")
    assert encoder.codec.is_open
    # FFmpeg leaves in ``options`` those the codec did not know (aiortc's "partitions" is one).
    assert not set(internals.REALTIME_VP8) & set(encoder.codec.options), "libvpx ignored ours"
    # Frames after the swap decode as the pictures sent, at their size.
    assert {(frame.width, frame.height) for frame in received} == {(320, 240)}
    last = received[-1].to_ndarray(format="rgb24").astype(int)
    assert min(np.abs(last - picture(i)).mean() for i in range(1, 200)) < 12


async def test_where_aiortc_is_not_a_release_checked_its_own_encoder_stays(
    encoder_gate: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(internals.ENCODER_CHECKED, "aiortc", ("0.1.0", "0.1.0"))
    encoder, received = await send_and_receive(5)
    assert type(encoder) is Vp8Encoder
    assert len(received) == 5


def test_a_new_encoder_keeps_the_bit_rate_the_receiver_allowed(encoder_gate: None) -> None:
    class Sender:  # aiortc's RTCRtpSender's one slot the swap reads and writes
        _RTCRtpSender__encoder: Any = None

    sender = Sender()
    assert internals.realtime_video(sender) is False  # no encoder yet: not settled
    theirs = Vp8Encoder()
    theirs.target_bitrate = 1_234_000
    sender._RTCRtpSender__encoder = theirs
    assert internals.realtime_video(sender) is True
    ours = sender._RTCRtpSender__encoder
    assert type(ours).__name__ == "RealtimeVp8Encoder"
    assert ours.target_bitrate == 1_234_000
    assert internals.realtime_video(sender) is True  # settled: left as it is
    assert sender._RTCRtpSender__encoder is ours
