"""KernelPeer's media plumbing without a network: the newest-frame slot, the audio window, the
callback threads and their error counting, and the checks of its arguments."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import numpy as np
import pytest

from ipymeet import KernelPeer
from ipymeet.widget import peermedia, peertracks
from ipymeet.widget.peermedia import AudioWindow, Closed, LatestSlot, Outgoing, Worker
from ipymeet.widget.peerstate import Member

# -- the slot --------------------------------------------------------------------------------------


def test_the_slot_hands_over_the_newest_item_and_counts_the_ones_replaced() -> None:
    slot: LatestSlot[int] = LatestSlot()
    for n in range(5):
        slot.put(n)
    assert slot.take() == 4
    assert (slot.put_count, slot.dropped) == (5, 4)
    slot.put(5)
    assert slot.take() == 5
    assert slot.dropped == 4
    with pytest.raises(TimeoutError):
        slot.take(timeout=0.01)


def test_closing_the_slot_wakes_its_taker_and_later_puts_are_ignored() -> None:
    slot: LatestSlot[int] = LatestSlot()
    outcome: list[str] = []

    def take() -> None:
        try:
            slot.take()
            outcome.append("item")
        except Closed:
            outcome.append("closed")

    taker = threading.Thread(target=take)
    taker.start()
    slot.close()
    taker.join(2)
    assert outcome == ["closed"]
    slot.put(1)
    with pytest.raises(Closed):
        slot.take(timeout=0.01)


def test_a_slow_taker_always_gets_the_newest_frame_and_no_latency_builds_up() -> None:
    """Frames put at 100 per second, taken by a worker that needs 50 ms each: every frame the
    worker sees is at most one put period older than the newest when it took it, the rest are
    counted as dropped, and nothing is left waiting."""
    slot: LatestSlot[tuple[int, float]] = LatestSlot()
    seen: list[tuple[int, float, float]] = []

    def slow(item: tuple[int, float]) -> None:
        seen.append((item[0], item[1], time.monotonic()))
        time.sleep(0.05)

    worker = Worker("test-slow", slot, lambda item: item, slow)
    worker.start()
    period = 0.01
    for n in range(100):
        slot.put((n, time.monotonic()))
        time.sleep(period)
    worker.stop()
    assert 8 <= len(seen) <= 25, len(seen)
    ages = [taken - stamped for _, stamped, taken in seen]
    # One put period, and some scheduling slack; a queue would reach about a second here.
    assert max(ages) < period + 0.03, ages
    assert slot.dropped + len(seen) >= 99
    numbers = [n for n, _, _ in seen]
    assert numbers == sorted(numbers)


# -- audio -----------------------------------------------------------------------------------------


def chunk(value: int, samples: int = 960) -> Any:
    return np.full((samples, 2), value, dtype=np.int16)


def test_audio_comes_out_in_order_and_at_most_the_newest_window() -> None:
    window = AudioWindow(window=0.1, rate=48_000)  # 4800 samples: five chunks of 20 ms
    window.put(chunk(1))
    window.put(chunk(2))
    out = window.take()
    assert out.shape == (1920, 2)
    assert out[0, 0] == 1
    assert out[-1, 0] == 2
    for n in range(10):
        window.put(chunk(n))
    out = window.take()
    assert out.shape == (4800, 2)
    assert list(out[::960, 0]) == [5, 6, 7, 8, 9]
    assert window.dropped == 5


# -- callbacks -------------------------------------------------------------------------------------


def test_a_raising_callback_is_logged_once_counted_each_time_and_the_others_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Through the peer's own delivery (the one its callback threads run)."""
    peer = KernelPeer("unit-room", name="bot", signaling_url="http://127.0.0.1:9")
    good: list[str] = []

    @peer.on_frame
    def broken(frame: Any, sender: Any) -> None:
        raise RuntimeError("boom")

    @peer.on_frame
    def fine(frame: Any, sender: Any) -> Any:
        good.append(sender.name)
        return 255 - frame

    member = Member("m1", "Ada")
    slot: LatestSlot[Any] = LatestSlot()
    worker = Worker(
        "test-cb", slot, lambda item: item, peertracks.deliver(peer._shared, "video", member)
    )
    worker.start()
    frame = np.zeros((4, 6, 3), dtype=np.uint8)
    with caplog.at_level(logging.ERROR, logger="ipymeet"):
        for n in range(1, 4):
            slot.put(frame)  # one at a time, so none is dropped
            deadline = time.monotonic() + 5
            while peer.counters["frames_processed"] < n and time.monotonic() < deadline:
                time.sleep(0.005)
    worker.stop()
    counters = peer.counters
    assert counters["frames_processed"] == 3
    assert counters["callback_errors"] == 3
    assert good == ["Ada", "Ada", "Ada"]
    logged = [r for r in caplog.records if "raised" in r.getMessage()]
    assert len(logged) == 1
    assert "broken" in logged[0].getMessage()
    # The fine callback's inverse is what the peer sends now.
    _, (sent, _) = peer.outgoing.newest()
    assert sent.min() == 255
    peer.close()


def test_a_callback_that_returns_something_else_than_a_frame_counts_as_an_error() -> None:
    peer = KernelPeer("unit-room", signaling_url="http://127.0.0.1:9")
    peer.on_frame(lambda frame, sender: "not a frame")
    deliver = peertracks.deliver(peer._shared, "video", Member("m", ""))
    deliver(np.zeros((4, 4, 3), dtype=np.uint8))
    assert peer.counters["callback_errors"] == 1
    peer.close()


def test_frames_to_send_are_checked_and_made_fit_for_the_encoders() -> None:
    out = peermedia.rgb_frame(np.zeros((5, 7, 3), dtype=np.uint8))
    assert out.shape == (4, 6, 3)
    assert peermedia.rgb_frame(np.zeros((4, 4), dtype=np.uint8)).shape == (4, 4, 3)
    assert peermedia.rgb_frame(np.zeros((4, 4, 4), dtype=np.uint8)).shape == (4, 4, 3)
    assert peermedia.rgb_frame(np.full((2, 2, 3), 300, dtype=np.int32)).max() == 255
    for bad, words in (
        ([[0]], "numpy array"),
        (np.zeros((4, 4, 2), dtype=np.uint8), "HxWx3"),
        (np.zeros((4, 4, 3), dtype=np.float32), "uint8"),
        (np.zeros((1, 4, 3), dtype=np.uint8), "2x2"),
    ):
        with pytest.raises(ValueError, match=words):
            peermedia.rgb_frame(bad)


def test_publish_reads_an_iterator_until_its_end_at_its_pace() -> None:
    peer = KernelPeer("unit-room", signaling_url="http://127.0.0.1:9")
    frames = [np.full((4, 4, 3), n, dtype=np.uint8) for n in range(5)]
    peer.publish(iter(frames), fps=100)
    assert peer._pacer is not None
    peer._pacer.thread.join(5)
    seq, (last, pts) = peer.outgoing.newest()
    assert seq == 5
    assert last[0, 0, 0] == 4
    assert pts > 0
    assert not peer.outgoing.live  # its end: the others are told it sends no video now
    peer.publish([frames[0]])
    peer._pacer.thread.join(5)
    assert peer.outgoing.seq == 6
    peer.close()


def test_outgoing_is_live_from_a_frame_to_a_pause_and_tells_its_listeners() -> None:
    outgoing = Outgoing()
    heard: list[bool] = []
    outgoing.listen(lambda: heard.append(outgoing.live))
    assert not outgoing.live
    outgoing.pause()  # not live: nothing to tell
    outgoing.set((np.zeros((2, 2, 3), dtype=np.uint8), 0))
    outgoing.set((np.zeros((2, 2, 3), dtype=np.uint8), 1))
    outgoing.pause()
    assert heard == [True, True, False]
    assert not outgoing.live


def test_a_receive_only_peer_refuses_to_publish() -> None:
    peer = KernelPeer("unit-room", signaling_url="http://127.0.0.1:9", sends_video=False)
    with pytest.raises(ValueError, match="receives only"):
        peer.publish(lambda: None)
    peer.publish(None)  # stopping is always fine
    peer.close()


# -- arguments -------------------------------------------------------------------------------------


def test_bad_arguments_say_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="room"):
        KernelPeer("no spaces")
    with pytest.raises(ValueError, match="name"):
        KernelPeer("ok", name="x" * 100)
    with pytest.raises(ValueError, match="signaling_url"):
        KernelPeer("ok", signaling_url="ws://somewhere")
    with pytest.raises(ValueError, match="token"):
        KernelPeer("ok", token="abc")
    peer = KernelPeer("ok", signaling_url="http://127.0.0.1:9")
    with pytest.raises(TypeError, match="callable"):
        peer.on_frame(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="iterator"):
        peer.publish(42)
    with pytest.raises(ValueError, match="fps"):
        peer.publish(lambda: None, fps=0)
    peer.close()
    with pytest.raises(RuntimeError, match="closed"):
        peer.join()


def test_a_signaller_out_of_reach_fails_the_join_with_unreachable() -> None:
    peer = KernelPeer("ok", signaling_url="http://127.0.0.1:9")
    peer.join()
    peer.wait_for(lambda p: p.state == "failed", timeout=15)
    assert peer.error_code == "unreachable"
    assert "127.0.0.1:9" in peer.error
    peer.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("ipymeet-peer-ok")]


# -- relay only (the network side: tests/security/test_relay_only.py) ------------------------------

RELAY = "a=candidate:1 1 udp 16777215 203.0.113.5 50000 typ relay raddr 192.0.2.2 rport 41000"


def test_relay_only_must_be_a_bool_and_is_kept() -> None:
    with pytest.raises(TypeError, match="relay_only"):
        KernelPeer("ok", signaling_url="http://127.0.0.1:9", relay_only="yes")  # type: ignore[arg-type]
    peer = KernelPeer("ok", signaling_url="http://127.0.0.1:9", relay_only=True)
    assert peer.relay_only is True
    peer.close()


def test_a_relay_only_description_keeps_relays_and_blanks_where_the_turn_server_saw_us() -> None:
    from ipymeet.widget.peerice import relay_only_sdp

    sdp = f"v=0\r\nc=IN IP4 203.0.113.5\r\n{RELAY}\r\na=end-of-candidates\r\n"
    assert relay_only_sdp(sdp) == sdp.replace(
        "raddr 192.0.2.2 rport 41000", "raddr 0.0.0.0 rport 9"
    )
    plain = "v=0\r\na=candidate:1 1 udp 16777215 203.0.113.5 50000 typ relay\r\n"
    assert relay_only_sdp(plain) == plain


@pytest.mark.parametrize(
    "line",
    [
        "a=candidate:2 1 udp 2130706431 192.0.2.2 33319 typ host",
        "a=candidate:3 1 udp 1694498815 198.51.100.7 40000 typ srflx raddr 192.0.2.2 rport 33319",
        "a=candidate:4 1 udp 1845501695 198.51.100.7 40001 typ prflx",
        "a=candidate:5 1 udp 2130706431 192.0.2.2 33319",  # no type at all
    ],
)
def test_a_relay_only_description_with_anything_but_relays_is_refused(line: str) -> None:
    from ipymeet.widget.peerice import RelayLeak, relay_only_sdp

    with pytest.raises(RelayLeak, match="non-relay candidate"):
        relay_only_sdp(f"v=0\r\n{RELAY}\r\n{line}\r\n")


def test_only_turn_urls_count_as_a_relay() -> None:
    from aiortc import RTCIceServer

    from ipymeet.widget.peerice import has_turn

    assert not has_turn([])
    assert not has_turn([RTCIceServer(urls="stun:stun.example.org")])
    assert has_turn([RTCIceServer(urls=["stun:s.example.org", "turn:t.example.org:3478"])])
    assert has_turn([RTCIceServer(urls="TURNS:t.example.org:5349?transport=tcp")])
