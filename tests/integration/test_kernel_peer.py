"""KernelPeer against real signallers, with real aiortc on both ends (no browser): two kernel
peers call each other over this machine's own interface (aiortc skips 127.0.0.1), through an
explicit signaller and through the signaller a user's kernels share; refusals; the clean end;
and the message when the optional dependencies are missing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ipymeet import KernelPeer
from ipymeet.server.core import tokens

from ..support import HIDE_AIORTC, MakeSignaller, free_port
from .pages import wait_until

#: A frame with four known colours, one per quarter.
PATTERN = np.zeros((240, 320, 3), dtype=np.uint8)
PATTERN[:120, :160] = (200, 40, 40)
PATTERN[:120, 160:] = (20, 220, 90)
PATTERN[120:, :160] = (30, 60, 210)
PATTERN[120:, 160:] = (240, 240, 20)
#: Tolerance per channel for the codec (VP8) on flat areas.
CODEC_TOLERANCE = 24


def quarter_means(frame: Any) -> Any:
    """The mean colour of the middle of each quarter (away from the edges the codec blurs)."""
    h, w = frame.shape[0] // 2, frame.shape[1] // 2
    return np.array(
        [
            frame[y + h // 4 : y + 3 * h // 4, x + w // 4 : x + 3 * w // 4].reshape(-1, 3).mean(0)
            for y in (0, h)
            for x in (0, w)
        ]
    )


def peer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("ipymeet-peer-") and t.is_alive()]


def test_two_kernel_peers_call_each_other_and_a_callback_inverts_the_video(
    make_signaller: MakeSignaller,
) -> None:
    """A publishes a known pattern; B's callback returns its inverse, which is B's own video; A
    receives the inverse of what it sends. Both list each other connected, with the stats a
    widget has; when B leaves, A hears it at once."""
    server = make_signaller(max_peers=4)
    a = KernelPeer("kp-invert", name="Ada", signaling_url=server.url)
    b = KernelPeer("kp-invert", name="Bot", signaling_url=server.url)
    a.publish(lambda: PATTERN)
    received: list[tuple[Any, Any]] = []
    a.on_frame(lambda frame, sender: received.append((frame, sender)))

    @b.on_frame
    def invert(frame: Any, sender: Any) -> Any:
        return 255 - frame

    try:
        a.join()
        a.wait_for(lambda p: p.state == "waiting")
        b.join()
        a.wait_for(lambda p: len(received) >= 10)
        frame, sender = received[-1]
        assert frame.shape == PATTERN.shape
        assert frame.dtype == np.uint8
        assert sender.id == b.id
        assert sender.name == "Bot"
        assert np.abs(quarter_means(frame) - quarter_means(255 - PATTERN)).max() < CODEC_TOLERANCE
        for peer, other, name in ((a, b, "Bot"), (b, a, "Ada")):
            peer.wait_for(lambda p: p.state == "in_call")
            assert peer.peers == [
                {
                    "id": other.id,
                    "name": name,
                    "connection": "connected",
                    "audio": False,  # a kernel peer sends no audio
                    "video": True,
                    "screen": False,
                    "speaking": False,
                }
            ]
        a.wait_for(lambda p: b.id in p.stats)
        figures = a.stats[b.id]
        assert set(figures) >= {
            "rtt_ms",
            "bitrate_in_kbps",
            "bitrate_out_kbps",
            "fps_in",
            "fps_out",
            "width",
            "height",
            "packet_loss",
            "candidate_type",
        }
        assert (figures["width"], figures["height"]) == (320, 240)
        assert figures["candidate_type"] == "host"
        assert b.counters["frames_processed"] > 0
        assert b.counters["callback_errors"] == 0
        b.leave()
        assert b.state == "left"
        a.wait_for(lambda p: p.peers == [] and p.state == "waiting", timeout=5)
        assert [m.name for m in server.members("kp-invert")] == ["Ada"]
    finally:
        a.close()
        b.close()
    assert peer_threads() == []


def test_a_peer_can_start_and_stop_sending_after_it_joined(make_signaller: MakeSignaller) -> None:
    """A joins with nothing to send: B sees it without video. A's publish() after the call
    began reaches B (no renegotiation: a peer that may send always offers its video), and
    B is told when it stops and when it sends again."""
    server = make_signaller(max_peers=4)
    a = KernelPeer("kp-later", name="Ada", signaling_url=server.url)
    b = KernelPeer("kp-later", name="Bot", signaling_url=server.url)
    received: list[Any] = []
    b.on_frame(lambda frame, sender: received.append(frame))

    def a_video(peer: KernelPeer) -> Any:
        return next((p["video"] for p in peer.peers if p["connection"] == "connected"), None)

    try:
        a.join()
        b.join()
        b.wait_for(lambda p: a_video(p) is False)
        assert received == []
        assert a.counters["frames_sent"] == 0
        a.publish(lambda: PATTERN)
        b.wait_for(lambda p: a_video(p) is True and len(received) >= 5)
        assert np.abs(quarter_means(received[-1]) - quarter_means(PATTERN)).max() < CODEC_TOLERANCE
        a.publish(None)
        b.wait_for(lambda p: a_video(p) is False)
        sent = a.counters["frames_sent"]
        a.publish(lambda: 255 - PATTERN)
        b.wait_for(lambda p: a_video(p) is True)
        a.wait_for(lambda p: p.counters["frames_sent"] > sent + 5)
        inverse = quarter_means(255 - PATTERN)
        b.wait_for(lambda p: np.abs(quarter_means(received[-1]) - inverse).max() < CODEC_TOLERANCE)
    finally:
        a.close()
        b.close()
    assert peer_threads() == []


def test_kernel_peers_enter_again_when_their_signaller_comes_back(
    make_signaller: MakeSignaller,
) -> None:
    """The signaller stops mid-call: both peers say reconnecting, and their media goes on
    (it never passed through the signaller). One started again on the same port gets them
    back in the room, and a newcomer meets both."""
    port = free_port()
    first = make_signaller(max_peers=4, port=port)
    a = KernelPeer("kp-back", name="Ada", signaling_url=first.url)
    b = KernelPeer("kp-back", name="Bot", signaling_url=first.url)
    c = KernelPeer("kp-back", name="Cy", signaling_url=first.url)
    a.publish(lambda: PATTERN)
    try:
        a.join()
        b.join()
        b.wait_for(lambda p: p.state == "in_call" and p.counters["frames_received"] > 5)
        first.stop()
        for peer in (a, b):
            peer.wait_for(lambda p: p.state == "reconnecting")
        received = b.counters["frames_received"]
        b.wait_for(lambda p: p.counters["frames_received"] > received + 10)
        second = make_signaller(max_peers=4, port=port)
        for peer in (a, b):
            peer.wait_for(lambda p: p.state == "in_call", timeout=15)
        assert sorted(m.name for m in second.members("kp-back")) == ["Ada", "Bot"]
        c.join()
        c.wait_for(
            lambda p: (
                sorted(m["name"] for m in p.peers if m["connection"] == "connected")
                == ["Ada", "Bot"]
            )
        )
        c.wait_for(lambda p: p.counters["frames_received"] > 5)
    finally:
        for peer in (a, b, c):
            peer.close()
    assert peer_threads() == []


def test_a_raising_callback_is_counted_and_the_call_goes_on(make_signaller: MakeSignaller) -> None:
    server = make_signaller(max_peers=4)
    a = KernelPeer("kp-errors", name="a", signaling_url=server.url)
    b = KernelPeer("kp-errors", name="b", signaling_url=server.url)
    a.publish(lambda: PATTERN)

    @b.on_frame
    def broken(frame: Any, sender: Any) -> None:
        raise ValueError("a bug in the user's filter")

    try:
        a.join()
        b.join()
        b.wait_for(lambda p: p.counters["callback_errors"] >= 20)
        assert b.counters["frames_processed"] >= 20
        assert b.state == "in_call"
    finally:
        a.close()
        b.close()


def test_joining_twice_is_refused_and_leaving_ends_every_thread(
    make_signaller: MakeSignaller,
) -> None:
    server = make_signaller()
    peer = KernelPeer("kp-twice", signaling_url=server.url)
    peer.join()
    try:
        with pytest.raises(RuntimeError, match="leave\\(\\) first"):
            peer.join()
        peer.wait_for(lambda p: p.state == "waiting")
        peer.leave()
        assert peer.state == "left"
        assert peer_threads() == []
        assert server.members("kp-twice") == []
        peer.join()  # again, after leaving
        peer.wait_for(lambda p: p.state == "waiting")
    finally:
        peer.close()
    assert peer_threads() == []


def test_a_full_room_and_a_missing_token_fail_with_their_codes(
    make_signaller: MakeSignaller,
) -> None:
    server = make_signaller(max_peers=2)
    peers = [KernelPeer("kp-full", name=str(n), signaling_url=server.url) for n in range(3)]
    try:
        for peer in peers[:2]:
            peer.join()
            peer.wait_for(lambda p: p.state in ("waiting", "in_call"))
        peers[2].join()
        peers[2].wait_for(lambda p: p.state == "failed")
        assert peers[2].error_code == "room_full"
        assert "full" in peers[2].error
    finally:
        for peer in peers:
            peer.close()
    secret = tokens.new_secret()
    guarded = make_signaller(secret=secret)
    without = KernelPeer("kp-token", signaling_url=guarded.url)
    link = f"{guarded.url}/?room=kp-token&token={tokens.mint(secret, 'kp-token', 60)}"
    with_link = KernelPeer("kp-token", signaling_url=guarded.url, token=link)
    try:
        without.join()
        without.wait_for(lambda p: p.state == "failed")
        assert without.error_code == "forbidden"
        with_link.join()
        with_link.wait_for(lambda p: p.state == "waiting")
    finally:
        without.close()
        with_link.close()


EXITING = """
import sys
from ipymeet import KernelPeer
bot = KernelPeer("kp-exit", name="exiting", signaling_url=sys.argv[1])
bot.publish(lambda: None)
bot.join()
bot.wait_for(lambda p: p.state == "in_call", timeout=30)
print("in call", flush=True)
sys.stdin.readline()
# The end of the script, with the peer still in the call: the process's exit ends it.
"""


def test_the_end_of_the_process_leaves_the_room(make_signaller: MakeSignaller) -> None:
    """A kernel that shuts down (here: a process that ends) with a peer in a call leaves the
    room on its way out: the others hear ``peer_left`` "left" at once, and the process does not
    hang on the peer's threads."""
    server = make_signaller(max_peers=4)
    stay = KernelPeer("kp-exit", name="stays", signaling_url=server.url)
    stay.publish(lambda: PATTERN)
    try:
        stay.join()
        proc = subprocess.Popen(
            [sys.executable, "-c", EXITING, server.url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            assert proc.stdin is not None
            assert proc.stdout.readline().strip() == "in call", proc.stderr
            stay.wait_for(lambda p: [x["name"] for x in p.peers] == ["exiting"])
            proc.stdin.write("\n")
            proc.stdin.flush()
            assert proc.wait(20) == 0
        finally:
            proc.kill()
        # Left, not dropped: a dropped member would linger in the peers for 30 s.
        stay.wait_for(lambda p: p.peers == [], timeout=5)
        assert [m.name for m in server.members("kp-exit")] == ["stays"]
    finally:
        stay.close()


def test_a_kernel_shutting_down_leaves_the_room(make_signaller: MakeSignaller) -> None:
    """A real ipykernel with a KernelPeer in a call, shut down as Jupyter does (a shutdown
    request): the others hear it leave at once."""
    from jupyter_client import KernelManager

    server = make_signaller(max_peers=4)
    stay = KernelPeer("kp-kernel", name="stays", signaling_url=server.url)
    stay.publish(lambda: PATTERN)
    manager = KernelManager(kernel_name="python3")
    manager.start_kernel(env={**os.environ, "IPYMEET_ICE_SERVERS": "[]"})
    try:
        stay.join()
        client = manager.client()
        client.start_channels()
        client.wait_for_ready(60)
        reply = client.execute_interactive(
            "from ipymeet import KernelPeer\n"
            f"bot = KernelPeer('kp-kernel', name='in kernel', signaling_url={server.url!r})\n"
            "bot.join()\n"
            "bot.wait_for(lambda p: p.state == 'in_call', timeout=30)",
            timeout=60,
        )
        assert reply["content"]["status"] == "ok", reply["content"]
        stay.wait_for(lambda p: [x["name"] for x in p.peers] == ["in kernel"])
        client.stop_channels()
        manager.shutdown_kernel(now=False)
        stay.wait_for(lambda p: p.peers == [], timeout=5)  # a dropped member would linger 30 s
    finally:
        if manager.is_alive():
            manager.shutdown_kernel(now=True)
        stay.close()


# -- the signaller a user's kernels share ------------------------------------------------------

KERNEL = """
import json, sys, time
import numpy as np
from ipymeet import KernelPeer, VideoRoom, kernel_signaller

role = sys.argv[1]
def say(**what):
    print(json.dumps(what), flush=True)

bot = KernelPeer("kp-shared", name=role)
server = kernel_signaller()
widget = VideoRoom("kp-shared")
say(event="ready", hosting=server.hosting, port=server.port, widget_port=widget._port)
if role == "host":
    pattern = np.zeros((120, 160, 3), dtype=np.uint8)
    pattern[:, :80] = (200, 40, 40)
    seen = []
    bot.publish(lambda: pattern)
    bot.on_frame(lambda frame, sender: seen.append((frame[60, 40].tolist(), sender.name)))
    bot.join()
    bot.wait_for(lambda p: len(seen) > 5, timeout=60)
    say(event="seen", pixel=seen[-1][0], sender=seen[-1][1],
        members=sorted(m.name for m in server.members("kp-shared")))
    bot.leave()
else:
    bot.on_frame(lambda frame, sender: 255 - frame)
    bot.join()
    bot.wait_for(lambda p: bool(p.peers), timeout=60)
    bot.wait_for(lambda p: not p.peers, timeout=60)
    say(event="alone", processed=bot.counters["frames_processed"])
bot.close()
widget.close()
server.stop()
"""


def _events(proc: subprocess.Popen[str], until: str, timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("{"):
            event = json.loads(line)
            if event["event"] == until:
                return dict(event)
    proc.kill()
    raise AssertionError(
        f"no {until!r} from the kernel: {proc.stderr.read() if proc.stderr else ''}"
    )


def test_kernel_peers_of_two_kernels_meet_on_the_signaller_their_widgets_use(
    tmp_path: Path,
) -> None:
    """Two processes as two kernels of one user (IPYMEET_SHARE=1, one runtime folder): each
    KernelPeer, made without a URL, enters through the shared signaller its kernel's VideoRoom
    uses (one hosts it, the other attaches); the guest's inverse reaches the host."""
    script = tmp_path / "kernel.py"
    script.write_text(textwrap.dedent(KERNEL))
    env = {
        **os.environ,
        "IPYMEET_SHARE": "1",
        "IPYMEET_ICE_SERVERS": "[]",
        "IPYMEET_PORT": str(free_port()),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
    }
    run = {"env": env, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    host = subprocess.Popen([sys.executable, str(script), "host"], **run)  # type: ignore[call-overload]
    try:
        ready = _events(host, "ready")
        assert ready["hosting"] is True
        assert ready["widget_port"] == ready["port"]
        guest = subprocess.Popen([sys.executable, str(script), "guest"], **run)  # type: ignore[call-overload]
        try:
            joined = _events(guest, "ready")
            assert joined["hosting"] is False
            assert joined["port"] == ready["port"]
            seen = _events(host, "seen")
            assert seen["sender"] == "guest"
            assert seen["members"] == ["guest", "host"]
            assert np.abs(np.array(seen["pixel"]) - (55, 215, 215)).max() < CODEC_TOLERANCE
            alone = _events(guest, "alone")
            assert alone["processed"] > 5
            assert guest.wait(30) == 0
        finally:
            guest.kill()
        assert host.wait(30) == 0
    finally:
        host.kill()


# -- without the extra ---------------------------------------------------------------------------

WITHOUT_AIORTC = (
    HIDE_AIORTC
    + """
import ipymeet
assert "aiortc" not in sys.modules and "av" not in sys.modules, "importing ipymeet imported them"
try:
    ipymeet.KernelPeer("lab-42", signaling_url="http://127.0.0.1:9")
except ImportError as error:
    print(error)
else:
    print("no error")
"""
)


def test_without_aiortc_importing_works_and_a_kernel_peer_says_what_to_install() -> None:
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_AIORTC], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    message = done.stdout.strip()
    assert 'pip install "ipymeet[python]"' in message
    assert "aiortc" in message


# -- negotiation without rollback ------------------------------------------------------------------


class _Wire:
    """Two MemberConnections' host: what one signals reaches the other (as the signaller
    relays, in order); tracks and changes are noted."""

    def __init__(self) -> None:
        self.ends: dict[str, Any] = {}
        self.sent: list[tuple[str, str]] = []
        self.tracks: list[str] = []

    def signal(self, to: str, payload: dict[str, Any]) -> None:
        kind = payload["description"]["type"] if "description" in payload else "candidate"
        self.sent.append((to, kind))
        self.ends[to].receive({"from": "", **payload})

    def track(self, connection: Any, track: Any) -> None:
        self.tracks.append(f"{connection.peer_id}:{track.kind}")

    def changed(self) -> None:
        pass

    def flags(self, connection: Any, flags: dict[str, bool]) -> None:
        pass

    def sent_frame(self, connection: Any) -> None:
        pass


async def test_in_a_collision_the_polite_side_replaces_its_connection_and_answers() -> None:
    """Both offer at once (glare). aiortc cannot roll back: the impolite side ignores the other's
    offer, the polite one (the lower id) drops its own connection for a new one that answers,
    and the two connect."""
    from ipymeet.widget.peerconn import MemberConnection

    wire = _Wire()
    # "a" < "b": the connection of "a" to "b" is the polite one.
    polite = MemberConnection(wire, "a", "b", initiator=True, ice=[], outgoing=None)
    impolite = MemberConnection(wire, "b", "a", initiator=True, ice=[], outgoing=None)
    wire.ends = {"b": impolite, "a": polite}
    try:
        await wait_until(
            lambda: polite.state == impolite.state == "connected",
            "both connections connected",
            timeout=20,
        )
        assert polite.replacements == 1
        assert impolite.replacements == 0
        # Each offered; only the polite side answered (the impolite one ignored its offer).
        assert sorted(wire.sent) == [("a", "offer"), ("b", "answer"), ("b", "offer")]
    finally:
        await polite.close()
        await impolite.close()
