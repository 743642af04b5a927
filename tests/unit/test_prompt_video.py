"""A kernel peer's received video goes to the decoder at each frame's last packet (not a frame
later), and browsers are told to start their video to it at a usable bit rate."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from aiortc import RTCPeerConnection
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtp import RtpPacket

from ipymeet.server.core import internals
from ipymeet.widget.peersdp import START_KBPS, quick_start_sdp


def packets(timestamp: int, first_seq: int, count: int, marker: bool = True) -> list[RtpPacket]:
    """One video frame's RTP packets, depayloaded as aiortc's receiver leaves them."""
    made = []
    for index in range(count):
        packet = RtpPacket(
            payload_type=97,
            sequence_number=first_seq + index,
            timestamp=timestamp,
            marker=marker and index == count - 1,
        )
        packet._data = f"{timestamp}:{index};".encode()  # type: ignore[attr-defined]
        made.append(packet)
    return made


def prompt() -> JitterBuffer:
    buffer: JitterBuffer = internals._prompt_buffer_class()(capacity=128, is_video=True)
    return buffer


def test_a_frame_is_whole_at_its_last_packet_not_at_the_next_frames_first() -> None:
    ours, aiortcs = prompt(), JitterBuffer(capacity=128, is_video=True)
    first, second = packets(3000, 10, 3), packets(6000, 13, 2)
    for packet in first[:-1]:
        assert ours.add(packet)[1] is None
        assert aiortcs.add(packet)[1] is None
    _, frame = ours.add(first[-1])
    assert frame is not None
    assert (frame.timestamp, frame.data) == (3000, b"3000:0;3000:1;3000:2;")
    assert aiortcs.add(first[-1])[1] is None  # aiortc's: not before the next frame begins
    late = aiortcs.add(second[0])[1]
    assert late is not None
    assert late.data == frame.data
    # And the next frame, as whole.
    assert ours.add(second[0])[1] is None
    _, frame = ours.add(second[1])
    assert frame is not None
    assert (frame.timestamp, frame.data) == (6000, b"6000:0;6000:1;")


def test_a_frame_waits_for_a_missing_packet_then_comes_whole() -> None:
    buffer = prompt()
    frame = packets(3000, 10, 3)
    assert buffer.add(frame[0])[1] is None
    assert buffer.add(frame[2])[1] is None  # the marker, but the middle is missing
    _, whole = buffer.add(frame[1])
    assert whole is not None
    assert whole.data == b"3000:0;3000:1;3000:2;"


def test_a_frame_without_a_marker_is_whole_when_the_next_begins_as_aiortc_has_it() -> None:
    buffer = prompt()
    for packet in packets(3000, 10, 2, marker=False):
        assert buffer.add(packet)[1] is None
    _, frame = buffer.add(packets(6000, 12, 1)[0])
    assert frame is not None
    assert frame.data == b"3000:0;3000:1;"


@pytest.fixture
def jitter_gate() -> Iterator[None]:
    internals.jitter_supported.cache_clear()
    yield
    internals.jitter_supported.cache_clear()


async def test_a_video_receiver_gets_the_prompt_buffer_and_an_audio_one_keeps_its_own(
    jitter_gate: None,
) -> None:
    pc = RTCPeerConnection()
    try:
        video = pc.addTransceiver("video", direction="recvonly").receiver
        audio = pc.addTransceiver("audio", direction="recvonly").receiver
        assert internals.prompt_video(video) is True
        assert type(video._RTCRtpReceiver__jitter_buffer).__name__ == "PromptJitterBuffer"  # type: ignore[attr-defined]
        assert internals.prompt_video(audio) is False
        assert type(audio._RTCRtpReceiver__jitter_buffer) is JitterBuffer  # type: ignore[attr-defined]
    finally:
        await pc.close()


async def test_where_aiortc_is_not_a_release_checked_its_own_buffer_stays(
    jitter_gate: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(internals.JITTER_CHECKED, "aiortc", ("0.1.0", "0.1.0"))
    pc = RTCPeerConnection()
    try:
        video = pc.addTransceiver("video", direction="recvonly").receiver
        assert internals.prompt_video(video) is False
        assert type(video._RTCRtpReceiver__jitter_buffer) is JitterBuffer  # type: ignore[attr-defined]
    finally:
        await pc.close()


def test_the_start_bit_rate_goes_on_every_video_codec_and_not_on_rtx() -> None:
    sdp = (
        "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 97 98 99\r\n"
        "a=rtpmap:97 VP8/90000\r\n"
        "a=rtpmap:98 rtx/90000\r\na=fmtp:98 apt=97\r\n"
        "a=rtpmap:99 H264/90000\r\na=fmtp:99 packetization-mode=1\r\n"
        "m=audio 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 opus/48000/2\r\n"
    )
    start = f"x-google-start-bitrate={START_KBPS}"
    told = quick_start_sdp(sdp)
    assert told.splitlines() == [
        "v=0",
        "m=video 9 UDP/TLS/RTP/SAVPF 97 98 99",
        "a=rtpmap:97 VP8/90000",
        f"a=fmtp:97 {start}",
        "a=rtpmap:98 rtx/90000",
        "a=fmtp:98 apt=97",
        "a=rtpmap:99 H264/90000",
        f"a=fmtp:99 packetization-mode=1;{start}",
        "m=audio 9 UDP/TLS/RTP/SAVPF 96",
        "a=rtpmap:96 opus/48000/2",
    ]
    assert told.endswith("\r\n")
    assert quick_start_sdp(told) == told  # once
