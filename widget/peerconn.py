"""One aiortc RTCPeerConnection of a kernel peer to one other member (the kernel side of
``js/src/peer.ts``). Imports aiortc: the kernel peer's join (peersession.py) imports this module
only once the optional dependencies are known to be there (``pip install "ipymeet[python]"``).

Everything here lives on the kernel peer's media loop (its own thread); nothing is touched from
another thread except :class:`OutgoingTrack`'s wake-up, which crosses with
``call_soon_threadsafe``.

Negotiation follows docs/protocol.md ("Negotiation"), with the same roles as the pages:

- the newcomer offers; a member met through ``peer_joined`` waits for the newcomer's first
  description (the kernel peer never offers again after its first offer: its tracks are fixed);
- aiortc gathers every candidate before it sets a local description, so each description carries
  them all and none trickle from here; candidates from the other side are added as they come
  (kept until a remote description is set);
- aiortc cannot roll back. In a collision the impolite side ignores the other's offer, as pages
  do; the polite side replaces its connection and answers the other's offer from the new one, as
  docs/protocol.md allows for such a peer. An offer from another connection of the page (its DTLS
  fingerprint differs: the page made a new one), an ICE restart (its ICE username differs: aiortc
  cannot restart ICE) and any offer aiortc refuses get the same treatment.
- the ``ipymeet`` data channel (negotiated, id 0) carries the flags (``state``), what the peer
  wants of the member's video (``want``: the size and frame rate it takes, so the page sends no
  more) and answers the pages' liveness ``ping`` with ``pong``; chat lines are ignored.

The ICE servers it is made with and what relay only allows of it are peerice.py's; what it adds
to the descriptions it sends, for its video, is peersdp.py's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Callable
from typing import Any, Protocol

import av
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
from aiortc.sdp import candidate_from_sdp

from ..server.core import internals
from .peerice import RELAY_POLICY, RelayLeak, relay_only_sdp, require_relay_policy
from .peermedia import VIDEO_CLOCK, Outgoing
from .peersdp import playout_delay_id, playout_delay_sdp, quick_start_sdp

log = logging.getLogger("ipymeet")

#: The longest data channel message read (as the pages' MAX_PEER_MESSAGE).
MAX_CHANNEL_MESSAGE = 16 * 1024


class Host(Protocol):
    """What a connection needs of its kernel peer (all called on the media loop)."""

    def signal(self, to: str, payload: dict[str, Any]) -> None: ...
    def track(self, connection: MemberConnection, track: MediaStreamTrack) -> None: ...
    def changed(self) -> None: ...
    def flags(self, connection: MemberConnection, flags: dict[str, bool]) -> None: ...
    def sent_frame(self, connection: MemberConnection) -> None: ...


def _line(sdp: str | None, key: str) -> str | None:
    match = re.search(rf"^a={key}:(.+)$", sdp or "", re.MULTILINE)
    return None if match is None else match.group(1).strip()


class OutgoingTrack(MediaStreamTrack):
    """One connection's view of the peer's outgoing video: ``recv`` gives the newest frame of
    :class:`Outgoing` once it is newer than the one this track gave last (so a slow encoder
    skips frames, never queues them), as an ``av.VideoFrame`` of this track's own (aiortc's
    encoders convert it on executor threads; one frame shared by two would share its swscale
    context). Once :meth:`sent_by` names its sender, that sender gets the real-time encoder
    (``internals.realtime_video``) between two frames."""

    kind = "video"

    def __init__(self, outgoing: Outgoing, on_sent: Callable[[], None]) -> None:
        super().__init__()
        self._outgoing = outgoing
        self._on_sent = on_sent
        self._last = outgoing.seq if outgoing.newest()[1] is None else outgoing.seq - 1
        self._media_loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._undo = outgoing.listen(self._woken)
        self._sender: Any = None

    def sent_by(self, sender: Any) -> None:
        """The ``RTCRtpSender`` that sends this track (its encoder is swapped at the next
        frame, once aiortc has made it)."""
        self._sender = sender

    def _woken(self) -> None:  # any thread
        with contextlib.suppress(RuntimeError):  # the loop is closed: nothing waits any more
            self._media_loop.call_soon_threadsafe(self._wake.set)

    async def recv(self) -> Any:
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            seq, newest = self._outgoing.newest()
            if seq > self._last and newest is not None:
                self._last = seq
                if self._sender is not None and internals.realtime_video(self._sender):
                    self._sender = None  # settled
                array, pts = newest
                # The array itself, not a copy: PeerState.send_frame made it the peer's own.
                frame = av.VideoFrame.from_numpy_buffer(array, format="rgb24")
                frame.pts, frame.time_base = pts, VIDEO_CLOCK
                self._on_sent()
                return frame
            self._wake.clear()
            await self._wake.wait()

    def stop(self) -> None:
        self._undo()
        super().stop()
        self._wake.set()


class MemberConnection:
    """This kernel peer's connection to member ``peer_id``; replaced in place when needed.

    ``initiator``: offer at once (this peer is the newcomer). ``outgoing``: the video to send
    (None: receive only). ``relay_only``: gather, offer and use relay candidates only
    (peerice.py says how). ``want``: the data channel's ``want`` message, sent each time a
    channel opens (None: the peer takes the member's video as it comes).
    """

    def __init__(
        self,
        host: Host,
        self_id: str,
        peer_id: str,
        *,
        initiator: bool,
        ice: list[RTCIceServer],
        outgoing: Outgoing | None,
        relay_only: bool = False,
        want: dict[str, Any] | None = None,
    ) -> None:
        if relay_only:
            require_relay_policy()
        self.host = host
        self.peer_id = peer_id
        self.polite = self_id < peer_id  # the same rule as js/src/peer.ts
        self._initiator = initiator
        self._ice = ice
        self._outgoing = outgoing
        self._video_sender: Any = None
        self.relay_only = relay_only
        self._want = want
        self._inbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._pending: list[dict[str, Any]] = []
        self._making_offer = False
        self._ignore_offer = False
        self.closed = False
        #: Connections replaced so far (for tests and diagnostics).
        self.replacements = 0
        self._channel: Any = None  # the current connection's data channel, once open
        self.pc = self._new_pc(initiator)
        self._worker = asyncio.get_running_loop().create_task(self._run())

    @property
    def state(self) -> str:
        return "closed" if self.closed else str(self.pc.connectionState)

    def _new_pc(self, initiator: bool) -> RTCPeerConnection:
        configuration = RTCConfiguration(iceServers=list(self._ice))
        if self.relay_only:
            configuration.iceTransportPolicy = RELAY_POLICY
        pc = RTCPeerConnection(configuration)
        # First, as pages do: the first offer already has the channel's section.
        channel = pc.createDataChannel("ipymeet", negotiated=True, id=0, ordered=True)

        @channel.on("open")
        def _open() -> None:
            if pc is self.pc:
                self._channel = channel
                self.announce()
                if self._want is not None:  # once per channel: the page keeps it for its pc
                    with contextlib.suppress(Exception):
                        channel.send(json.dumps(self._want))

        @channel.on("message")
        def _message(data: Any) -> None:
            if pc is self.pc and not self.closed:
                self._channel_message(channel, data)

        @pc.on("track")
        def _track(track: MediaStreamTrack) -> None:
            if pc is self.pc and not self.closed:
                if track.kind == "video":  # each frame decoded at its last packet, not later
                    for receiver in pc.getReceivers():
                        if receiver.track is track:
                            internals.prompt_video(receiver)
                self.host.track(self, track)

        @pc.on("connectionstatechange")
        def _state() -> None:
            if pc is self.pc and not self.closed:
                log.debug("ipymeet: kernel peer -> %s: %s", self.peer_id, pc.connectionState)
                self.host.changed()

        if self._outgoing is not None:
            track = OutgoingTrack(self._outgoing, lambda: self.host.sent_frame(self))
            self._video_sender = pc.addTrack(track)
            track.sent_by(self._video_sender)
        elif initiator:
            pc.addTransceiver("video", direction="recvonly")
        if initiator:
            pc.addTransceiver("audio", direction="recvonly")
        return pc

    def announce(self) -> None:
        """Tell the member, on the data channel, whether this peer sends video now (the page
        shows its placeholder while not); no sound, no screen."""
        if self._channel is None or self.closed:
            return
        video = self._outgoing is not None and self._outgoing.live
        with contextlib.suppress(Exception):  # the channel is closing: the next one says it
            self._channel.send(
                json.dumps({"t": "state", "audio": False, "video": video, "screen": False})
            )

    def _channel_message(self, channel: Any, data: Any) -> None:
        if not isinstance(data, str) or len(data) > MAX_CHANNEL_MESSAGE:
            return
        try:
            message = json.loads(data)
        except ValueError:
            return
        if not isinstance(message, dict):
            return
        kind = message.get("t")
        if kind == "ping" and isinstance(message.get("id"), str):
            with contextlib.suppress(Exception):
                channel.send(json.dumps({"t": "pong", "id": message["id"]}))
        elif kind == "state":
            flags = {k: message.get(k) for k in ("audio", "video", "screen")}
            if isinstance(flags["audio"], bool) and isinstance(flags["video"], bool):
                flags["screen"] = flags["screen"] is True
                self.host.flags(self, flags)  # type: ignore[arg-type]

    # -- signals, one at a time, in the order the signaller relayed them --------------------------

    def receive(self, message: dict[str, Any]) -> None:
        if not self.closed:
            self._inbox.put_nowait(message)

    async def _run(self) -> None:
        try:
            if self._initiator:
                await self._offer()
            while True:
                message = await self._inbox.get()
                if message is None or self.closed:
                    return
                try:
                    description = message.get("description")
                    if isinstance(description, dict):
                        await self._description(description)
                    elif isinstance(message.get("candidate"), dict):
                        await self._candidate(message["candidate"])
                except RelayLeak:
                    raise
                except Exception as error:
                    if not self.closed:
                        log.warning(
                            "ipymeet: kernel peer -> %s: a step failed: %s", self.peer_id, error
                        )
        except RelayLeak as leak:
            # Not sent, and the connection ends: it must not use a pair it should not have.
            log.error(
                "ipymeet: kernel peer -> %s: relay only, connection closed: %s", self.peer_id, leak
            )
            self.closed = True
            await _close_pc(self.pc)
            self.host.changed()

    def _send_local(self) -> None:
        local = self.pc.localDescription
        if local is not None and not self.closed:
            sdp = relay_only_sdp(local.sdp) if self.relay_only else local.sdp
            sdp = quick_start_sdp(sdp)
            if self._outgoing is not None and internals.playout_allowed():
                remote = self.pc.remoteDescription
                offer = remote.sdp if local.type == "answer" and remote is not None else None
                sdp = playout_delay_sdp(sdp, offer)
            self.host.signal(self.peer_id, {"description": {"type": local.type, "sdp": sdp}})

    async def _offer(self) -> None:
        self._making_offer = True
        try:
            await self.pc.setLocalDescription()
        finally:
            self._making_offer = False
        self._send_local()

    def resync(self) -> None:
        """Send again an offer still unanswered (it may have been lost while the signaller was
        out of reach)."""
        if not self._making_offer and self.pc.signalingState == "have-local-offer":
            self._send_local()

    async def _description(self, description: dict[str, Any]) -> None:
        kind, sdp = description.get("type"), description.get("sdp")
        if kind not in ("offer", "answer") or not isinstance(sdp, str):
            return
        remote = RTCSessionDescription(sdp=sdp, type=kind)
        if kind == "answer":
            if self.pc.signalingState == "have-local-offer":
                await self.pc.setRemoteDescription(remote)
                self._playout_delay(sdp)
                await self._flush()
            return
        collision = self._making_offer or self.pc.signalingState != "stable"
        self._ignore_offer = collision and not self.polite
        if self._ignore_offer:
            return
        current = self.pc.remoteDescription
        renewed = current is not None and (
            _line(sdp, "fingerprint") != _line(current.sdp, "fingerprint")
            or _line(sdp, "ice-ufrag") != _line(current.sdp, "ice-ufrag")
        )
        if collision or renewed:
            await self._replace()
        try:
            await self.pc.setRemoteDescription(remote)
        except Exception:
            if current is None and not collision and not renewed:
                raise
            await self._replace()
            await self.pc.setRemoteDescription(remote)
        self._playout_delay(sdp)
        await self._flush()
        await self.pc.setLocalDescription()
        self._send_local()

    def _playout_delay(self, remote_sdp: str) -> None:
        """Write a zero playout delay on this peer's video if the browser takes it (its offer
        has the extension, which the answer then gets; or its answer kept the one offered)."""
        if self._video_sender is not None:
            internals.zero_playout_delay(self._video_sender, playout_delay_id(remote_sdp))

    async def _replace(self) -> None:
        """A new RTCPeerConnection in place of this one (aiortc cannot roll back or restart ICE);
        its tracks end, and the new one's arrive through the host's ``track`` again."""
        old = self.pc
        self.replacements += 1
        self._pending.clear()
        self._channel = None
        self.pc = self._new_pc(False)
        log.info("ipymeet: kernel peer -> %s: new connection (cannot roll back)", self.peer_id)
        await _close_pc(old)
        self.host.changed()

    async def _candidate(self, candidate: dict[str, Any]) -> None:
        text = candidate.get("candidate")
        if not isinstance(text, str) or not text:
            return  # the end of the other's candidates: nothing to add
        if self.pc.remoteDescription is None:
            self._pending.append(candidate)
            return
        await self._add(candidate)

    async def _flush(self) -> None:
        pending, self._pending = self._pending, []
        for candidate in pending:
            await self._add(candidate)

    async def _add(self, candidate: dict[str, Any]) -> None:
        text = str(candidate["candidate"])
        try:
            parsed = candidate_from_sdp(
                text.split(":", 1)[1] if text.startswith("candidate:") else text
            )
            mid, index = candidate.get("sdpMid"), candidate.get("sdpMLineIndex")
            parsed.sdpMid = mid if isinstance(mid, str) else None
            parsed.sdpMLineIndex = index if isinstance(index, int) else None
            if parsed.sdpMid is None and parsed.sdpMLineIndex is None:
                parsed.sdpMLineIndex = 0
            await self.pc.addIceCandidate(parsed)
        except Exception:
            # Candidates of an offer we ignored, or of a kind aiortc does not take (mDNS, TCP).
            if not self._ignore_offer:
                log.debug("ipymeet: kernel peer -> %s: skipped candidate %s", self.peer_id, text)

    async def close(self) -> None:
        """Close the connection; idempotent."""
        if self.closed:
            return
        self.closed = True
        self._inbox.put_nowait(None)
        await _close_pc(self.pc)
        self._worker.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._worker


async def _close_pc(pc: RTCPeerConnection) -> None:
    for sender in pc.getSenders():
        if sender.track is not None:
            sender.track.stop()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(pc.close(), 5)
