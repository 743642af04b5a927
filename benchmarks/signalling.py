"""Load benchmark for the signaller: many real Socket.IO clients in rooms of two, over dialect 1.

Each pair of clients does what two tutorial pages do (docs/protocol.md, dialect 1): both connect, A
``join``s (``room_created``), B ``join``s (``room_joined``) and emits ``start_call``; then, for each
round, A sends a ~3 KB ``webrtc_offer`` and 4 ``webrtc_ice_candidate``s, B answers the offer with a
~3 KB ``webrtc_answer`` and its own 4 candidates. Every relayed message is timed from the send to
its receipt at the other client. Any server that speaks dialect 1 can be measured, e.g. the
tutorial's Node server side by side with ``ipymeet serve``.

Modes (one JSON line on stdout per measured server):

- ``run``: measure one server, given by ``--url`` (and ``--pid`` for its RSS and CPU), or started
  here with ``--server ipymeet`` / ``--server node``.
- ``compare``: start ``ipymeet serve`` and the tutorial's Node server, measure both at the same
  ``--clients``, then print a third line with the ratios (ipymeet / node).
- ``capacity``: join ``--clients`` (default 10,000) idle clients in rooms of two, then time the
  connect and join of ``--probes`` extra clients while they are all connected; report the server's
  RSS.
- ``cluster``: start a ``redis-server`` of its own (``--redis-server``, a free port, a temporary
  folder, no persistence) and measure, at the same ``--clients``, one ``ipymeet serve`` alone, then
  two ``ipymeet serve --redis`` processes sharing the rooms with each pair's members on the same
  process (``placement: same``, pairs alternating between the two), then with each pair's
  members on different processes (``across``: every relay crosses Redis); then a line of ratios to
  the one process. CPU and RSS are both processes' sums, and ``redis_cpu_us_per_msg`` Redis's own.

Fields: ``connect_p50_ms``/``connect_p99_ms`` (WebSocket open to the Socket.IO connect answer),
``join_p50_ms``/``join_p99_ms`` (``join`` to ``room_created``/``room_joined``),
``relay_p50_ms``/``relay_p99_ms`` (send to receipt at the other client), ``relayed_per_s``
(relayed messages received over the relay phase's wall time), ``server_rss_mb`` (peak seen),
``server_cpu_us_per_msg`` (server CPU over the relay phase per relayed message: less noisy than
the rate on a shared machine), ``client_cpu_share`` (the busiest load process's CPU over the relay
phase: near 1.0 means the benchmark itself was the bottleneck), ``lost`` (sent but never received
in time, or connects that failed; must be 0), ``errors`` (``error`` events or unexpected answers;
must be 0).

The clients are a small Engine.IO v4 / Socket.IO v5 client on aiohttp WebSockets (python-socketio's
``AsyncClient`` costs more per message than the server under test), spread over ``--procs``
processes; both members of a room live in one process, so latencies use one clock. Each client
keeps under the server's rate limit (50 events/s, burst 200) with a token bucket of its own
(``--pace``, ``--pace-burst``); the server runs with its default limits.

Examples::

    python benchmarks/signalling.py compare                      # N=1,000, ipymeet vs Node
    python benchmarks/signalling.py run --server ipymeet --clients 200 --rounds 5
    python benchmarks/signalling.py run --url http://127.0.0.1:8765 --pid 4242
    python benchmarks/signalling.py capacity                     # 10,000 idle clients
    python benchmarks/signalling.py cluster --clients 400        # 1 process vs 2 behind Redis

The Node server needs its dependencies installed in a copy of the reference folder, outside the
repository (``--node-dir``, default ``/tmp/node-ref``)::

    cp -r ../shared/reference/tutorial-node-server /tmp/node-ref
    (cd /tmp/node-ref && npm install --no-save --no-package-lock)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import random
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp

try:
    import orjson

    def _dumps(value: Any) -> str:
        return orjson.dumps(value).decode()
except ImportError:  # pragma: no cover - orjson is optional

    def _dumps(value: Any) -> str:
        return json.dumps(value, separators=(",", ":"))


try:
    import psutil
except ImportError:  # pragma: no cover
    psutil = None

NODE_DIR = Path(os.environ.get("IPYMEET_NODE_REF", "/tmp/node-ref"))
CANDIDATES = 4  # per client per round, as a host + srflx pair over two components would give
RELAYED = frozenset({"start_call", "webrtc_offer", "webrtc_answer", "webrtc_ice_candidate"})


# -- payloads ----------------------------------------------------------------------------------


def make_sdp(kind: str, ident: int) -> str:
    """A Chrome-like audio+video SDP of about 3 KB whose ``o=`` line carries ``ident``."""
    lines = [
        "v=0",
        f"o=- {ident} 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0 1",
        "a=extmap-allow-mixed",
        "a=msid-semantic: WMS 6f1d3c4e-6a59-4b7e-9d59-0c1f6b3a2e11",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126",
        "c=IN IP4 0.0.0.0",
        "a=rtcp:9 IN IP4 0.0.0.0",
        "a=ice-ufrag:Xq3T",
        "a=ice-pwd:8Lr2v5bN0cQmT1yZkD4hW7sF",
        "a=ice-options:trickle",
        "a=fingerprint:sha-256 4B:1A:9C:77:0E:52:D3:88:6F:21:AB:90:3C:5E:7D:14:"
        "E2:0B:C8:46:91:5A:3F:D0:7E:66:12:AF:C3:58:09:BD",
        f"a=setup:{'actpass' if kind == 'offer' else 'active'}",
        "a=mid:0",
        "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
        "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
        "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
        "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
        "a=sendrecv",
        "a=msid:6f1d3c4e-6a59-4b7e-9d59-0c1f6b3a2e11 0b9d4c1e-3f7a-4d2b-8e6c-5a1f2b3c4d5e",
        "a=rtcp-mux",
        "a=rtpmap:111 opus/48000/2",
        "a=rtcp-fb:111 transport-cc",
        "a=fmtp:111 minptime=10;useinbandfec=1",
        "a=rtpmap:63 red/48000/2",
        "a=fmtp:63 111/111",
        "a=rtpmap:9 G722/8000",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:13 CN/8000",
        "a=rtpmap:110 telephone-event/48000",
        "a=rtpmap:126 telephone-event/8000",
        "a=ssrc:2718281828 cname:kX9pQ2wE7rT5yU1i",
        "a=ssrc:2718281828 msid:6f1d3c4e-6a59-4b7e-9d59-0c1f6b3a2e11 "
        "0b9d4c1e-3f7a-4d2b-8e6c-5a1f2b3c4d5e",
        "m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103 104 105 106 107 108 109 127 125 39 40 45 46",
        "c=IN IP4 0.0.0.0",
        "a=rtcp:9 IN IP4 0.0.0.0",
        "a=ice-ufrag:Xq3T",
        "a=ice-pwd:8Lr2v5bN0cQmT1yZkD4hW7sF",
        "a=ice-options:trickle",
        "a=mid:1",
        "a=extmap:14 urn:ietf:params:rtp-hdrext:toffset",
        "a=extmap:13 urn:3gpp:video-orientation",
        "a=extmap:5 http://www.webrtc.org/experiments/rtp-hdrext/playout-delay",
        "a=extmap:6 http://www.webrtc.org/experiments/rtp-hdrext/video-content-type",
        "a=extmap:7 http://www.webrtc.org/experiments/rtp-hdrext/video-timing",
        "a=extmap:8 http://www.webrtc.org/experiments/rtp-hdrext/color-space",
        "a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
        "a=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
        "a=sendrecv",
        "a=msid:6f1d3c4e-6a59-4b7e-9d59-0c1f6b3a2e11 9a8b7c6d-5e4f-4a3b-2c1d-0e9f8a7b6c5d",
        "a=rtcp-mux",
        "a=rtcp-rsize",
    ]
    for pt, codec in ((96, "VP8"), (102, "H264"), (104, "H264"), (106, "H264"), (108, "H264")):
        lines += [
            f"a=rtpmap:{pt} {codec}/90000",
            f"a=rtcp-fb:{pt} goog-remb",
            f"a=rtcp-fb:{pt} transport-cc",
            f"a=rtcp-fb:{pt} ccm fir",
            f"a=rtcp-fb:{pt} nack",
            f"a=rtcp-fb:{pt} nack pli",
            f"a=rtpmap:{pt + 1} rtx/90000",
            f"a=fmtp:{pt + 1} apt={pt}",
        ]
    lines += [
        "a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f",
        "a=fmtp:104 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42001f",
        "a=ssrc-group:FID 3141592653 1618033988",
        "a=ssrc:3141592653 cname:kX9pQ2wE7rT5yU1i",
        "a=ssrc:1618033988 cname:kX9pQ2wE7rT5yU1i",
    ]
    return "\r\n".join(lines) + "\r\n"


def make_candidate(ident: int, index: int) -> str:
    port = 40000 + (ident * 7 + index) % 20000
    return (
        f"candidate:{ident} {1 + index % 2} udp 2122260223 192.0.2.{1 + index} {port} typ host "
        f"generation 0 ufrag Xq3T network-id 1 network-cost 10"
    )


def event_packet(event: str, *args: Any) -> str:
    return "42" + _dumps([event, *args])


# -- the client --------------------------------------------------------------------------------


@dataclass
class Stats:
    """What one load process measured (lists of milliseconds, and counts)."""

    connect_ms: list[float] = field(default_factory=list)
    join_ms: list[float] = field(default_factory=list)
    relay_ms: list[float] = field(default_factory=list)
    relayed: int = 0
    lost: int = 0
    errors: int = 0
    failed_connects: int = 0
    notes: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        self.errors += 1
        if len(self.notes) < 5:
            self.notes.append(text[:300])


class Client:
    """One Socket.IO connection: Engine.IO v4 over a WebSocket, default namespace only.

    Relayed messages this client expects are queued in ``expect`` as ``(event, marker, sent_at)``;
    one sender's relays arrive in order, so each arrival matches the head of the queue.
    """

    def __init__(self, stats: Stats, pace: float, burst: float) -> None:
        self.stats = stats
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.expect: deque[tuple[str, str, float]] = deque()
        self.received = 0
        self.answers: list[str] = []  # non-relay events by name (room_created, ...)
        self.closed = False
        self._wake: asyncio.Future[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._rate, self._burst = pace, burst
        self._tokens, self._stamp = burst, time.monotonic()

    async def connect(self, session: aiohttp.ClientSession, url: str, timeout: float) -> float:
        """Open the WebSocket and the Socket.IO session; returns the round trip in seconds."""
        ws_url = url.replace("http", "ws", 1).rstrip("/") + "/socket.io/?EIO=4&transport=websocket"
        start = time.monotonic()
        await asyncio.wait_for(self._handshake(session, ws_url), timeout)
        elapsed = time.monotonic() - start
        self._reader = asyncio.ensure_future(self._read())
        return elapsed

    async def _handshake(self, session: aiohttp.ClientSession, ws_url: str) -> None:
        self.ws = await session.ws_connect(ws_url, autoping=True, max_msg_size=0)
        opened = await self.ws.receive()
        if opened.type != aiohttp.WSMsgType.TEXT or not opened.data.startswith("0{"):
            raise ConnectionError(f"no Engine.IO open packet: {opened!r}")
        await self.ws.send_str("40")
        answer = await self.ws.receive()
        if answer.type != aiohttp.WSMsgType.TEXT or not answer.data.startswith("40"):
            raise ConnectionError(f"no Socket.IO connect answer: {answer!r}")

    async def _read(self) -> None:
        assert self.ws is not None
        ws, text = self.ws, aiohttp.WSMsgType.TEXT
        try:
            while True:
                msg = await ws.receive()
                if msg.type != text:
                    break
                data: str = msg.data
                if data.startswith("42"):
                    self._on_event(data)
                elif data == "2":
                    await ws.send_str("3")
                elif data.startswith("41"):
                    break
        except (aiohttp.ClientError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.closed = True
            self._notify()

    def _on_event(self, data: str) -> None:
        end = data.find('"', 4)
        name = data[4:end]
        expect = self.expect
        if expect and expect[0][0] == name:
            _, marker, sent = expect.popleft()
            if marker in data:
                self.stats.relay_ms.append((time.monotonic() - sent) * 1000.0)
                self.stats.relayed += 1
                self.received += 1
            else:
                self.stats.note(f"{name} arrived out of order or altered")
        elif name == "error" or name in RELAYED:
            self.stats.note(f"unexpected {name}: {data[:200]}")
        else:
            self.answers.append(name)
        self._notify()

    def _notify(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def until(self, predicate: Any, deadline: float) -> bool:
        """Wait until ``predicate()`` holds (True) or the deadline passes / the socket closes."""
        loop = asyncio.get_running_loop()
        while not predicate():
            remaining = deadline - loop.time()
            if remaining <= 0 or self.closed:
                return False
            self._wake = loop.create_future()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake, remaining)
        return True

    async def receives(self, count: int, deadline: float) -> bool:
        """Wait until this client has received ``count`` relayed messages in all."""
        return await self.until(lambda: self.received >= count, deadline)

    async def _pace(self) -> None:
        """Keep under the server's rate limit, with a token bucket like the server's."""
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        if self._tokens < 1.0:
            await asyncio.sleep((1.0 - self._tokens) / self._rate)
            self._tokens, self._stamp = 1.0, time.monotonic()
        self._tokens -= 1.0

    async def send(self, packet: str) -> None:
        await self._pace()
        assert self.ws is not None
        await self.ws.send_str(packet)

    async def relay(self, to: Client, event: str, marker: str, packet: str) -> None:
        """Send a message the server should relay to ``to``, and tell ``to`` to expect it."""
        await self._pace()
        # Expect it before sending: the answer may be read while this send awaits.
        to.expect.append((event, marker, time.monotonic()))
        assert self.ws is not None
        await self.ws.send_str(packet)

    async def close(self) -> None:
        if self.ws is not None and not self.ws.closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 2.0)
        if self._reader is not None:
            self._reader.cancel()


# -- one load process ---------------------------------------------------------------------------


@dataclass
class Job:
    """What one load process does: the pairs ``first .. first + pairs - 1``."""

    #: The servers' URLs: pair ``p``'s A connects to ``urls[p % n]``, its B to the next one when
    #: ``across``, else to the same.
    urls: tuple[str, ...]
    across: bool
    run_id: str
    first: int
    pairs: int
    rounds: int
    timeout: float
    pace: float
    pace_burst: float
    connect_concurrency: int


async def _join(client: Client, room: str, expected: str, stats: Stats, timeout: float) -> bool:
    loop = asyncio.get_running_loop()
    start = time.monotonic()
    await client.send(event_packet("join", room))
    if not await client.until(lambda: client.answers, loop.time() + timeout):
        stats.lost += 1
        stats.note(f"no answer to join {room}")
        return False
    got = client.answers.pop(0)
    if got != expected:
        stats.note(f"join {room}: expected {expected}, got {got}")
        return False
    stats.join_ms.append((time.monotonic() - start) * 1000.0)
    return True


async def _exchange(a: Client, b: Client, pair: int, job: Job, stats: Stats) -> None:
    """start_call, then ``job.rounds`` of offer -> answer with candidates both ways."""
    loop = asyncio.get_running_loop()
    room = f"bm-{job.run_id}-{pair}"
    offer_sdp, answer_sdp = make_sdp("offer", 0), make_sdp("answer", 0)
    await b.relay(a, "start_call", "", event_packet("start_call", room))
    if not await a.receives(1, loop.time() + job.timeout):
        stats.lost += len(a.expect)
        return
    for rnd in range(job.rounds):
        ident = (pair * 1000 + rnd) * 2
        a_base, b_base = a.received, b.received
        # A offers and trickles its candidates; B answers as soon as the offer arrives.
        marker = f"o=- {ident} "
        sdp = {"type": "offer", "sdp": offer_sdp.replace("o=- 0 ", marker, 1)}
        packet = event_packet("webrtc_offer", {"type": "webrtc_offer", "sdp": sdp, "roomId": room})
        await a.relay(b, "webrtc_offer", marker, packet)
        for index in range(CANDIDATES):
            cand = make_candidate(ident, index)
            event = {"roomId": room, "label": index % 2, "candidate": cand}
            await a.relay(
                b, "webrtc_ice_candidate", cand, event_packet("webrtc_ice_candidate", event)
            )
        deadline = loop.time() + job.timeout
        if not await b.receives(b_base + 1, deadline):
            break
        marker = f"o=- {ident + 1} "
        sdp = {"type": "answer", "sdp": answer_sdp.replace("o=- 0 ", marker, 1)}
        event = {"type": "webrtc_answer", "sdp": sdp, "roomId": room}
        await b.relay(a, "webrtc_answer", marker, event_packet("webrtc_answer", event))
        for index in range(CANDIDATES):
            cand = make_candidate(ident + 1, index)
            event = {"roomId": room, "label": index % 2, "candidate": cand}
            await b.relay(
                a, "webrtc_ice_candidate", cand, event_packet("webrtc_ice_candidate", event)
            )
        done_a = await a.receives(a_base + 1 + CANDIDATES, deadline)
        done_b = await b.receives(b_base + 1 + CANDIDATES, deadline)
        if not (done_a and done_b):
            break
    stats.lost += len(a.expect) + len(b.expect)
    if a.expect or b.expect:
        stats.notes.append(f"pair {pair}: {len(a.expect) + len(b.expect)} messages never arrived")


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def _load(job: Job, pipe: Connection) -> None:
    """Connect and join, report ready, relay on "go" (or idle for capacity), report, close."""
    loop = asyncio.get_running_loop()
    stats = Stats()
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    session = aiohttp.ClientSession(connector=connector)
    clients = [Client(stats, job.pace, job.pace_burst) for _ in range(2 * job.pairs)]
    gate = asyncio.Semaphore(job.connect_concurrency)

    async def connect(client: Client, url: str) -> bool:
        async with gate:
            try:
                stats.connect_ms.append(1000.0 * await client.connect(session, url, job.timeout))
                return True
            except (OSError, aiohttp.ClientError, ConnectionError, TimeoutError) as exc:
                stats.failed_connects += 1
                stats.note(f"connect failed: {exc!r}")
                return False

    async def join(pair: int) -> bool:
        a, b = clients[2 * (pair - job.first)], clients[2 * (pair - job.first) + 1]
        count = len(job.urls)
        url_a, url_b = job.urls[pair % count], job.urls[(pair + job.across) % count]
        if not (await connect(a, url_a) and await connect(b, url_b)):
            return False
        room = f"bm-{job.run_id}-{pair}"
        return await _join(a, room, "room_created", stats, job.timeout) and await _join(
            b, room, "room_joined", stats, job.timeout
        )

    pairs = range(job.first, job.first + job.pairs)
    joined = await asyncio.gather(*(join(pair) for pair in pairs))
    pipe.send(("ready", stats))
    stats.connect_ms, stats.join_ms = [], []
    command, at = await loop.run_in_executor(None, pipe.recv)
    if command == "go":
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        cpu, start = time.process_time(), time.monotonic()
        await asyncio.gather(
            *(
                _exchange(clients[2 * i], clients[2 * i + 1], pair, job, stats)
                for i, pair in enumerate(pairs)
                if joined[i]
            )
        )
        end = time.monotonic()
        pipe.send(("done", stats, start, end, time.process_time() - cpu))
        command, _ = await loop.run_in_executor(None, pipe.recv)
    await asyncio.gather(*(client.close() for client in clients))
    await session.close()
    pipe.send(("closed", None))


def _worker(job: Job, pipe: Connection) -> None:
    _raise_nofile()
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(_load(job, pipe))


class Load:
    """``procs`` load processes, each with its share of the pairs, driven in lock step."""

    def __init__(
        self, urls: tuple[str, ...], clients: int, args: argparse.Namespace, across: bool = False
    ) -> None:
        pairs = max(1, clients // 2)
        procs = max(1, min(args.procs, pairs))
        run_id = f"{random.randrange(16**6):06x}"
        context = multiprocessing.get_context("fork")
        self.pipes: list[Connection] = []
        self.procs: list[multiprocessing.process.BaseProcess] = []
        first = 0
        for index in range(procs):
            share = pairs // procs + (1 if index < pairs % procs else 0)
            job = Job(
                urls,
                across,
                run_id,
                first,
                share,
                args.rounds,
                args.timeout,
                args.pace,
                args.pace_burst,
                max(1, args.connect_concurrency // procs),
            )
            first += share
            parent, child = context.Pipe()
            proc = context.Process(target=_worker, args=(job, child), daemon=True)
            proc.start()
            self.pipes.append(parent)
            self.procs.append(proc)

    def gather(self, expected: str, timeout: float, tick: Any = None) -> list[tuple[Any, ...]]:
        """One message from each process (``tick()`` runs while waiting)."""
        results: list[tuple[Any, ...] | None] = [None] * len(self.pipes)
        deadline = time.monotonic() + timeout
        while any(r is None for r in results):
            if time.monotonic() > deadline:
                raise TimeoutError(f"load processes did not report {expected!r} in {timeout} s")
            for index, pipe in enumerate(self.pipes):
                if results[index] is None and pipe.poll(0.05):
                    message = pipe.recv()
                    if message[0] != expected:
                        raise RuntimeError(f"load process said {message[0]!r}, not {expected!r}")
                    results[index] = message
                if results[index] is None and not self.procs[index].is_alive():
                    raise RuntimeError(f"load process {index} died")
            if tick is not None:
                tick()
        return [r for r in results if r is not None]

    def tell(self, command: str, value: float = 0.0) -> None:
        for pipe in self.pipes:
            pipe.send((command, value))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.tell("close")
            self.gather("closed", 60)
        for proc in self.procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()


# -- servers ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[Any], timeout: float = 30.0) -> None:
    probe = url.rstrip("/") + "/socket.io/?EIO=4&transport=polling"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode} before answering")
        with contextlib.suppress(OSError), urllib.request.urlopen(probe, timeout=2) as response:
            if response.status == 200:
                return
        time.sleep(0.1)
    raise TimeoutError(f"{probe} did not answer within {timeout} s")


@dataclass
class Server:
    name: str
    url: str
    pid: int | None
    proc: subprocess.Popen[Any] | None = None
    #: Other processes serving the same rooms (``cluster``): they take clients too (see
    #: :class:`Job`), and their CPU and RSS count with this one's.
    others: list[Server] = field(default_factory=list)
    #: Whether each pair's members are on different processes.
    across: bool = False
    #: The Redis between them, whose CPU is reported on its own.
    redis_pid: int | None = None

    @property
    def urls(self) -> tuple[str, ...]:
        return (self.url, *(other.url for other in self.others))

    @property
    def pids(self) -> list[int]:
        return [pid for pid in (self.pid, *(other.pid for other in self.others)) if pid]

    def stop(self) -> None:
        for other in self.others:
            other.stop()
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def start_server(name: str, args: argparse.Namespace, redis_url: str | None = None) -> Server:
    """Start ``ipymeet serve`` (sharing its rooms through ``redis_url`` if given) or the
    tutorial's Node server on a free loopback port."""
    port = free_port()
    log = tempfile.TemporaryFile()  # noqa: SIM115 - the child writes to it until stopped
    if name == "ipymeet":
        command = [sys.executable, "-m", "ipymeet.server.cli", "serve", "--port", str(port)]
        command += ["--ice-servers", "[]"]
        if redis_url is not None:
            command += ["--redis", redis_url]
        proc = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_raise_nofile
        )
    elif name == "node":
        node_dir = Path(args.node_dir)
        if not (node_dir / "node_modules" / "socket.io").is_dir():
            raise SystemExit(
                f"no Node reference server with its dependencies in {node_dir}: copy "
                "shared/reference/tutorial-node-server there and run "
                "`npm install --no-save --no-package-lock` in it (see --help)"
            )
        proc = subprocess.Popen(
            ["node", "server.js"],
            cwd=node_dir,
            env={**os.environ, "PORT": str(port)},
            stdout=subprocess.DEVNULL,  # it logs every event
            stderr=log,
            preexec_fn=_raise_nofile,
        )
    else:
        raise SystemExit(f"unknown server {name!r}: ipymeet or node")
    server = Server(name, f"http://127.0.0.1:{port}", proc.pid, proc)
    try:
        wait_ready(server.url, proc)
    except Exception:
        server.stop()
        log.seek(0)
        sys.stderr.write(log.read().decode(errors="replace")[-3000:])
        raise
    return server


class Probe:
    """RSS (peak of the sum) and CPU time (sum) of the server's processes, when their pids are
    known."""

    def __init__(self, pid: int | list[int] | None) -> None:
        pids = pid if isinstance(pid, list) else [pid] if pid else []
        self.procs = [psutil.Process(p) for p in pids] if psutil is not None else []
        self.proc = self.procs[0] if self.procs else None
        self.peak = 0

    def sample(self) -> None:
        with contextlib.suppress(psutil.Error):
            if self.procs:
                self.peak = max(self.peak, sum(p.memory_info().rss for p in self.procs))

    def cpu(self) -> float:
        if not self.procs:
            return float("nan")
        return float(sum(t.user + t.system for t in (p.cpu_times() for p in self.procs)))


# -- reports ------------------------------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))], 2)


def merge(parts: list[Stats]) -> Stats:
    total = Stats()
    for part in parts:
        total.connect_ms += part.connect_ms
        total.join_ms += part.join_ms
        total.relay_ms += part.relay_ms
        total.relayed += part.relayed
        total.lost += part.lost
        total.errors += part.errors
        total.failed_connects += part.failed_connects
        total.notes += part.notes[: 5 - len(total.notes)]
    return total


def measure(server: Server, clients: int, args: argparse.Namespace) -> dict[str, Any]:
    """Drive ``clients`` clients in rooms of two against ``server``; one report."""
    probe = Probe(server.pids)
    redis = Probe(server.redis_pid)
    load = Load(server.urls, clients, args, server.across)
    try:
        ready = load.gather("ready", args.timeout * 4 + clients / 20, probe.sample)
        setup = merge([message[1] for message in ready])
        cpu_before, redis_before = probe.cpu(), redis.cpu()
        load.tell("go", time.monotonic() + 0.2)
        done = load.gather("done", args.timeout * (args.rounds + 2) + 60, probe.sample)
        cpu_after, redis_after = probe.cpu(), redis.cpu()
        probe.sample()
    finally:
        load.close()
    relay = merge([message[1] for message in done])
    relayed = max(relay.relayed, 1)
    start = min(message[2] for message in done)
    end = max(message[3] for message in done)
    duration = max(end - start, 1e-9)
    return {
        "mode": "relay",
        "server": server.name,
        "clients": clients,
        "rounds": args.rounds,
        "procs": len(load.procs),
        **(
            {"processes": len(server.urls), "placement": "across" if server.across else "same"}
            if server.others
            else {}
        ),
        "connect_p50_ms": percentile(setup.connect_ms, 0.5),
        "connect_p99_ms": percentile(setup.connect_ms, 0.99),
        "join_p50_ms": percentile(setup.join_ms, 0.5),
        "join_p99_ms": percentile(setup.join_ms, 0.99),
        "relay_p50_ms": percentile(relay.relay_ms, 0.5),
        "relay_p99_ms": percentile(relay.relay_ms, 0.99),
        "relayed": relay.relayed,
        "relay_s": round(duration, 3),
        "relayed_per_s": round(relay.relayed / duration),
        "server_rss_mb": round(probe.peak / 2**20, 1) if probe.proc else None,
        "server_cpu_us_per_msg": round((cpu_after - cpu_before) / max(relay.relayed, 1) * 1e6, 1)
        if probe.proc
        else None,
        **(
            {"redis_cpu_us_per_msg": round((redis_after - redis_before) / relayed * 1e6, 1)}
            if redis.proc
            else {}
        ),
        "client_cpu_share": round(max(message[4] for message in done) / duration, 2),
        "lost": setup.lost + relay.lost + setup.failed_connects,
        "errors": setup.errors + relay.errors,
        **({"notes": setup.notes + relay.notes} if setup.notes or relay.notes else {}),
    }


async def _probe_clients(url: str, count: int, timeout: float) -> Stats:
    """Connect and join ``count`` clients one pair at a time, timing each step."""
    stats = Stats()
    run_id = f"probe{random.randrange(16**6):06x}"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        clients: list[Client] = []
        for pair in range(max(1, count // 2)):
            room = f"bm-{run_id}-{pair}"
            for expected in ("room_created", "room_joined"):
                client = Client(stats, 40.0, 150.0)
                clients.append(client)
                try:
                    stats.connect_ms.append(1000.0 * await client.connect(session, url, timeout))
                except (OSError, aiohttp.ClientError, ConnectionError, TimeoutError) as exc:
                    stats.failed_connects += 1
                    stats.note(f"probe connect failed: {exc!r}")
                    continue
                await _join(client, room, expected, stats, timeout)
        await asyncio.gather(*(client.close() for client in clients))
    return stats


def capacity(server: Server, args: argparse.Namespace) -> dict[str, Any]:
    """``--clients`` idle joined clients, then the connect/join round trips of a few more."""
    probe = Probe(server.pid)
    args.rounds = 0
    started = time.monotonic()
    load = Load(server.urls, args.clients, args)
    try:
        ready = load.gather("ready", args.timeout * 4 + args.clients / 10, probe.sample)
        setup_s = time.monotonic() - started
        idle = merge([message[1] for message in ready])
        time.sleep(1.0)
        probe.sample()
        rss_idle = probe.peak
        extra = asyncio.run(_probe_clients(server.url, args.probes, args.timeout))
        probe.sample()
    finally:
        # Our own server goes first: tearing down 10,000 sockets one by one is not the point.
        if server.proc is not None:
            server.proc.kill()
            server.proc.wait(10)
        load.close()
    return {
        "mode": "capacity",
        "server": server.name,
        "idle_clients": len(idle.join_ms),
        "setup_s": round(setup_s, 1),
        "idle_connect_p50_ms": percentile(idle.connect_ms, 0.5),
        "idle_connect_p99_ms": percentile(idle.connect_ms, 0.99),
        "server_rss_mb": round(rss_idle / 2**20, 1) if probe.proc else None,
        "probes": len(extra.join_ms),
        "probe_connect_p50_ms": percentile(extra.connect_ms, 0.5),
        "probe_connect_p99_ms": percentile(extra.connect_ms, 0.99),
        "probe_join_p50_ms": percentile(extra.join_ms, 0.5),
        "probe_join_p99_ms": percentile(extra.join_ms, 0.99),
        "lost": idle.lost + idle.failed_connects + extra.lost + extra.failed_connects,
        "errors": idle.errors + extra.errors,
        **({"notes": idle.notes + extra.notes} if idle.notes or extra.notes else {}),
    }


def ratio(a: Any, b: Any) -> float | None:
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or b == 0:
        return None
    return round(a / b, 2)


def emit(line: dict[str, Any]) -> None:
    print(json.dumps(line), flush=True)


# -- command line -------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    modes = parser.add_subparsers(dest="mode", required=True)
    run = modes.add_parser("run", help="measure one server (--url [--pid], or --server)")
    compare = modes.add_parser("compare", help="ipymeet serve and the Node server, side by side")
    cap = modes.add_parser("capacity", help="10,000 idle joined clients; RSS; extra joins' RTT")
    several = modes.add_parser("cluster", help="one ipymeet serve, then two behind Redis")
    for sub, clients in ((run, 1000), (compare, 1000), (cap, 10000), (several, 1000)):
        sub.add_argument("--clients", type=int, default=clients, help=f"default {clients}")
        sub.add_argument(
            "--procs",
            type=int,
            default=max(2, min(4, os.cpu_count() or 2)),
            help="load processes (default: the cores, 2 to 4)",
        )
        sub.add_argument("--timeout", type=float, default=15.0, help="seconds per wait")
        sub.add_argument(
            "--pace", type=float, default=40.0, help="events/s per client (server: 50)"
        )
        sub.add_argument(
            "--pace-burst", type=float, default=150.0, help="burst per client (server: 200)"
        )
        sub.add_argument(
            "--connect-concurrency",
            type=int,
            default=64,
            help="connections being opened at once, over all processes (default 64)",
        )
        sub.add_argument(
            "--node-dir", default=str(NODE_DIR), help=f"Node reference copy (default {NODE_DIR})"
        )
    for sub in (run, compare, several):
        sub.add_argument("--rounds", type=int, default=20, help="offer/answer rounds per pair")
    run.add_argument("--url", help="a running server, e.g. http://127.0.0.1:8765")
    run.add_argument("--pid", type=int, help="its process id (for RSS and CPU)")
    for sub in (run, cap):
        sub.add_argument(
            "--server",
            choices=("ipymeet", "node"),
            help="start this server instead of --url (capacity: ipymeet unless --url)",
        )
    cap.add_argument("--url", help="a running server instead of starting one")
    cap.add_argument("--pid", type=int, help="its process id (for RSS)")
    cap.add_argument("--probes", type=int, default=40, help="extra clients timed (default 40)")
    for sub in (compare, several):
        sub.add_argument(
            "--repeat", type=int, default=1, help="measure each this many times, alternating order"
        )
    several.add_argument(
        "--redis-server",
        default=shutil.which("redis-server") or "/usr/bin/redis-server",
        help="the redis-server binary (default: on PATH, else /usr/bin/redis-server)",
    )
    return parser


@contextlib.contextmanager
def redis_server(binary: str) -> Iterator[tuple[str, int]]:
    """A ``redis-server`` of the run's own on a free port, persistence off; (URL, pid)."""
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        argv += ["--appendonly", "no", "--dir", folder]
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while True:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                    break
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"{binary} did not start on port {port}")
                time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0", proc.pid
        finally:
            proc.terminate()
            proc.wait(10)


#: The figures whose ratios compare two servers.
RATIO_KEYS = (
    "relayed_per_s",
    "relay_p50_ms",
    "relay_p99_ms",
    "join_p99_ms",
    "connect_p99_ms",
    "server_cpu_us_per_msg",
    "server_rss_mb",
)


def alternate(
    servers: dict[str, Server], names: tuple[str, ...], args: argparse.Namespace
) -> dict[str, list[dict[str, Any]]]:
    """``args.repeat`` measures of each server, in ``names``' order then reversed, and so on (so
    neither always runs first); each report printed as it comes."""
    reports: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for repeat in range(args.repeat):
        for name in names if repeat % 2 == 0 else names[::-1]:
            report = measure(servers[name], args.clients, args)
            reports[name].append(report)
            emit(report)
    return reports


def median_of(reports: list[dict[str, Any]], key: str) -> Any:
    """The median of ``key`` over ``reports`` (those that have it as a number), or None."""
    values = [r[key] for r in reports if isinstance(r.get(key), (int, float))]
    return statistics.median(values) if values else None


def cluster(args: argparse.Namespace) -> int:
    """One ``ipymeet serve``, then two behind Redis (pairs on one process, then across)."""
    names = ("one", "same", "across")
    with redis_server(args.redis_server) as (url, redis_pid):
        servers: dict[str, Server] = {"one": start_server("ipymeet", args)}
        try:
            first = start_server("ipymeet", args, url)
            first.others.append(start_server("ipymeet", args, url))
            first.name, first.redis_pid = "ipymeet x2 (redis)", redis_pid
            servers["same"] = first
            servers["across"] = Server(
                first.name, first.url, first.pid, None, first.others, True, redis_pid
            )
            reports = alternate(servers, names, args)
        finally:
            for server in servers.values():
                server.stop()
    for name in ("same", "across"):
        of, one = reports[name], reports["one"]
        emit(
            {
                "mode": "ratios",
                "of": f"two processes behind Redis, pairs {name} / one process",
                "clients": args.clients,
                **{key: ratio(median_of(of, key), median_of(one, key)) for key in RATIO_KEYS},
                "lost": sum(r["lost"] for r in reports[name] + reports["one"]),
            }
        )
    clean = all(r["lost"] == 0 and r["errors"] == 0 for rs in reports.values() for r in rs)
    return 0 if clean else 1


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _raise_nofile()
    if args.mode == "cluster":
        return cluster(args)
    if args.mode == "compare":
        servers = {name: start_server(name, args) for name in ("ipymeet", "node")}
        try:
            reports = alternate(servers, ("ipymeet", "node"), args)
        finally:
            for server in servers.values():
                server.stop()
        ours, node = reports["ipymeet"], reports["node"]
        emit(
            {
                "mode": "ratios",
                "of": "ipymeet / node",
                "clients": args.clients,
                **{key: ratio(median_of(ours, key), median_of(node, key)) for key in RATIO_KEYS},
                "lost": sum(r["lost"] for rs in reports.values() for r in rs),
            }
        )
        return 0
    if args.mode == "capacity" and not (args.server or args.url):
        args.server = "ipymeet"
    if args.server:
        server = start_server(args.server, args)
    elif args.url:
        server = Server("url", args.url, args.pid)
    else:
        raise SystemExit("give --url (and --pid) or --server")
    try:
        report = (
            capacity(server, args)
            if args.mode == "capacity"
            else measure(server, args.clients, args)
        )
    finally:
        server.stop()
    emit(report)
    return 0 if report["lost"] == 0 and report["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
