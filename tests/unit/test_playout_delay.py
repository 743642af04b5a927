"""A kernel peer's video carries a zero playout delay (webrtc.org's header extension): offered in
the descriptions it sends, and written on each packet once the browser took it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from aiortc import RTCPeerConnection
from aiortc.rtp import RtpPacket, unpack_header_extensions

from ipymeet.server.core import internals
from ipymeet.widget.peerconn import OutgoingTrack
from ipymeet.widget.peermedia import Outgoing
from ipymeet.widget.peersdp import playout_delay_id, playout_delay_sdp

URI = internals.PLAYOUT_DELAY_URI
OFFER = (
    "v=0\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
    "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n"
    "a=rtpmap:111 opus/48000/2\r\n"
    "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
    "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\n"
    f"a=extmap:5 {URI}\r\n"
    "a=extmap:9 urn:ietf:params:rtp-hdrext:sdes:mid\r\n"
    "a=rtpmap:96 VP8/90000\r\n"
)
#: aiortc's own answer to it (it keeps only the extensions it knows).
ANSWER = OFFER.replace(f"a=extmap:5 {URI}\r\n", "")


def video_lines(sdp: str) -> list[str]:
    return sdp.split("m=video", 1)[1].splitlines()


def test_an_answer_takes_the_id_the_offer_gave_in_its_video_section_only() -> None:
    answered = playout_delay_sdp(ANSWER, OFFER)
    assert f"a=extmap:5 {URI}" in video_lines(answered)
    assert URI not in answered.split("m=video", 1)[0]
    assert answered.replace(f"a=extmap:5 {URI}\r\n", "") == ANSWER
    assert playout_delay_sdp(answered, OFFER) == answered  # once


def test_an_answer_adds_nothing_the_offer_did_not_have() -> None:
    assert playout_delay_sdp(ANSWER, ANSWER) == ANSWER


def test_an_offer_uses_the_lowest_id_no_section_uses() -> None:
    offered = playout_delay_sdp(ANSWER, None)
    assert f"a=extmap:3 {URI}" in video_lines(offered)
    assert playout_delay_id(offered) == 3
    assert playout_delay_id(ANSWER) is None
    assert playout_delay_id(OFFER) == 5


def test_a_video_section_without_rtpmap_or_extmaps_still_gets_it() -> None:
    bare = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\n"
    assert playout_delay_sdp(bare, None).splitlines()[-1] == f"a=extmap:1 {URI}"


@pytest.fixture
def playout_gate() -> Iterator[None]:
    internals.playout_supported.cache_clear()
    yield
    internals.playout_supported.cache_clear()


async def test_each_packet_the_sender_writes_carries_a_zero_delay_once_negotiated(
    playout_gate: None,
) -> None:
    pc = RTCPeerConnection()
    outgoing = Outgoing()
    try:
        sender = pc.addTrack(OutgoingTrack(outgoing, lambda: None))
        assert internals.zero_playout_delay(sender, None) is True
        mapping = sender._RTCRtpSender__rtp_header_extensions_map  # type: ignore[attr-defined]

        def written() -> list[tuple[int, bytes]]:
            packet = RtpPacket(payload_type=96, sequence_number=1, timestamp=3000)
            packet.extensions.abs_send_time = 123
            profile, value = mapping.set(packet.extensions)
            return unpack_header_extensions(profile, value) if value else []

        assert written() == []  # not negotiated (and aiortc's own map not configured): nothing
        assert internals.zero_playout_delay(sender, 5) is True
        assert sender._RTCRtpSender__rtp_header_extensions_map is mapping  # type: ignore[attr-defined]
        assert written() == [(5, b"\x00\x00\x00")]
        internals.zero_playout_delay(sender, None)  # a later answer dropped it
        assert written() == []
    finally:
        outgoing.close()
        await pc.close()


async def test_where_aiortc_is_not_a_release_checked_nothing_is_offered_or_written(
    playout_gate: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(internals.PLAYOUT_CHECKED, "aiortc", ("0.1.0", "0.1.0"))
    pc = RTCPeerConnection()
    outgoing = Outgoing()
    try:
        sender = pc.addTrack(OutgoingTrack(outgoing, lambda: None))
        original = sender._RTCRtpSender__rtp_header_extensions_map  # type: ignore[attr-defined]
        assert internals.playout_allowed() is False
        assert internals.zero_playout_delay(sender, 5) is False
        assert sender._RTCRtpSender__rtp_header_extensions_map is original  # type: ignore[attr-defined]
    finally:
        outgoing.close()
        await pc.close()
