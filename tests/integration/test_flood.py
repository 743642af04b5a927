"""A flooding client is cut off without slowing anyone else (docs/protocol.md, "Limits").

The flooder is a process of its own (so it cannot slow this test's event loop instead of the
server): for a few seconds it opens raw Socket.IO WebSockets and sends thousands of events on each
as fast as it can. Meanwhile two well-behaved clients in another room relay a signal there and
back, paced under the rate limit. Their round trip must stay bounded, measured against a baseline
taken in the same test, and every flooding connection must be cut off by the server.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from typing import Any

import socketio

from ipymeet.server import SignallerThread

from .helpers import TIMEOUT, ice_candidate

FLOODER = r"""
import asyncio, json, sys, time
import aiohttp

async def main(url, seconds, per_connection):
    ws_url = url.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket"
    stats = {"connections": 0, "cut_off": 0, "sent": 0}
    deadline = time.monotonic() + seconds
    frame = '42["start_call","flood-room"]'
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            async with http.ws_connect(ws_url) as ws:
                await ws.receive_str()  # Engine.IO open
                await ws.send_str("40")
                await ws.receive_str()  # Socket.IO connect
                stats["connections"] += 1
                print("flooding", flush=True)
                try:
                    for _ in range(per_connection):
                        await ws.send_str(frame)
                        stats["sent"] += 1
                except (ConnectionError, RuntimeError):
                    pass  # the server closed it under our feet
                end = time.monotonic() + 10
                while time.monotonic() < end:
                    message = await ws.receive(timeout=10)
                    if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                                        aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.ERROR):
                        stats["cut_off"] += 1
                        break
                    if message.type == aiohttp.WSMsgType.TEXT and message.data == "2":
                        await ws.send_str("3")  # answer pings: only the flood may end it
    print(json.dumps(stats), flush=True)

asyncio.run(main(sys.argv[1], float(sys.argv[2]), int(sys.argv[3])))
"""


class Relay:
    """Two clients in one room; A signals B, B echoes to A; the time there and back is measured."""

    def __init__(self) -> None:
        self.a = socketio.AsyncClient(reconnection=False)
        self.b = socketio.AsyncClient(reconnection=False)
        self.waiting: dict[int, asyncio.Future[float]] = {}
        self.b.on("signal", self._echo)
        self.a.on("signal", self._back)

    async def start(self, url: str) -> None:
        for client in (self.a, self.b):
            await client.connect(url, transports=["websocket"], wait_timeout=TIMEOUT)
            answer = await client.call("enter", {"room": "steady"}, timeout=TIMEOUT)
            assert answer["ok"], answer

    async def _echo(self, message: dict[str, Any]) -> None:
        await self.b.emit("signal", {"to": message["from"], "candidate": message["candidate"]})

    def _back(self, message: dict[str, Any]) -> None:
        port = int(message["candidate"]["candidate"].split()[5])
        future = self.waiting.pop(port, None)
        if future is not None and not future.done():
            future.set_result(time.perf_counter())

    async def round_trip(self, index: int) -> float:
        """Seconds for one signal A -> B -> A."""
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.waiting[index] = future
        start = time.perf_counter()
        await self.a.emit("signal", {"to": self.b.get_sid(), "candidate": ice_candidate(index)})
        return await asyncio.wait_for(future, TIMEOUT) - start

    async def rounds(self, first: int, seconds: float, pace: float = 0.03) -> list[float]:
        """Round trips every ``pace`` seconds (about 33 events/s each: under the 50/s limit)."""
        times: list[float] = []
        end = time.monotonic() + seconds
        index = first
        while time.monotonic() < end:
            times.append(await self.round_trip(index))
            index += 1
            await asyncio.sleep(pace)
        return times

    async def close(self) -> None:
        for client in (self.a, self.b):
            await client.disconnect()


def p95(times: list[float]) -> float:
    return statistics.quantiles(times, n=20)[-1]


async def test_a_flooder_is_cut_off_while_the_others_keep_their_pace(
    signaller: SignallerThread,
) -> None:
    relay = Relay()
    await relay.start(signaller.url)
    flooder = None
    try:
        baseline = await relay.rounds(1000, 1.0)
        flooder = await asyncio.create_subprocess_exec(
            sys.executable, "-c", FLOODER, signaller.url, "3", "5000",
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert flooder.stdout is not None
        assert (await asyncio.wait_for(flooder.stdout.readline(), 30)).strip() == b"flooding"
        during = await relay.rounds(2000, 3.0)
        output, _ = await asyncio.wait_for(flooder.communicate(), 60)
    finally:
        if flooder is not None and flooder.returncode is None:
            flooder.kill()
            await flooder.wait()
        await relay.close()
    stats = json.loads(output.decode().strip().splitlines()[-1])
    bound = max(10 * p95(baseline), 0.2)
    print(
        f"\nbaseline p95 {p95(baseline) * 1000:.1f} ms over {len(baseline)} round trips; "
        f"during the flood p95 {p95(during) * 1000:.1f} ms, max {max(during) * 1000:.1f} ms "
        f"over {len(during)}; flooder {stats}"
    )
    # Every flooding connection was cut off by the server, and there were thousands of events.
    assert stats["connections"] >= 1
    assert stats["cut_off"] == stats["connections"], stats
    assert stats["sent"] >= 2000, stats
    # The others hardly noticed.
    assert p95(during) < bound, (p95(during), bound)
    assert len(during) >= 20
