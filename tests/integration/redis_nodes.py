"""A real ``redis-server`` and ``ipymeet serve --redis`` processes, for the tests of rooms shared
by several signaller processes (tests/integration/test_redis.py, tests/e2e/test_redis_tabs.py).

Redis runs from Debian's binary on a free port, in a temporary folder, with persistence off
(nothing is written to disk); each node is ``python -m ipymeet.server.cli serve`` on a port of its
own, its output in a file (shown when a test fails). Everything started here is stopped by its
context manager, killed if it does not stop.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from ..support import free_port, wait_http

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


@dataclass
class RedisServer:
    """One ``redis-server`` on 127.0.0.1:``port``."""

    port: int
    folder: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5, decode_responses=True)

    def start(self) -> RedisServer:
        """Start it (again, on the same port: empty, as a restarted Redis without persistence)."""
        argv = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--save", "", "--appendonly", "no", "--dir", str(self.folder)]
        log = (self.folder / "redis.log").open("ab")
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.client().ping():
                    return self
            except redis.RedisError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start: {self.log()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def log(self) -> str:
        path = self.folder / "redis.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""


@contextlib.contextmanager
def running_redis(folder: Path) -> Iterator[RedisServer]:
    """A fresh Redis for one test, stopped on the way out."""
    folder.mkdir(parents=True, exist_ok=True)
    server = RedisServer(free_port(), folder).start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Node:
    """One ``ipymeet serve --redis`` process."""

    port: int
    proc: subprocess.Popen[bytes]
    output: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.output.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: it says nothing to anyone, and its sockets close."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> int | None:
        """Ctrl-C, as a person stops it; killed after 20 s. Its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


def serve_argv(redis_url: str, port: int, *args: str) -> list[str]:
    """argv of ``ipymeet serve`` on ``port`` with the rooms in ``redis_url`` (no STUN server)."""
    return [sys.executable, "-m", "ipymeet.server.cli", "serve", "--port", str(port),
            "--redis", redis_url, "--ice-servers", "[]", *args]  # fmt: skip


@contextlib.contextmanager
def running_nodes(redis_url: str, folder: Path, count: int = 2, *args: str) -> Iterator[list[Node]]:
    """``count`` nodes on the same Redis, each ready (``/healthz`` answers); all stopped on the
    way out."""
    nodes: list[Node] = []
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    try:
        for index in range(count):
            port = free_port()
            output = folder / f"node-{index}.log"
            with output.open("wb") as sink:
                proc = subprocess.Popen(
                    serve_argv(redis_url, port, *args),
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                    env=env,
                )
            nodes.append(Node(port, proc, output))
        for node in nodes:
            try:
                wait_http(f"{node.url}/healthz", 30, node.proc)
            except (RuntimeError, TimeoutError) as exc:
                raise RuntimeError(f"{exc}\n{node.log()}") from None
        yield nodes
    finally:
        for node in nodes:
            node.stop()


#: The pub/sub channel of the events between the nodes (server/cluster/redis.py).
EVENTS = "ipymeet:events"


def publish(server: RedisServer, payload: bytes | str) -> int:
    """Publish ``payload`` on the nodes' events channel as anyone who can write to this Redis
    could; how many subscribers received it (each node is one)."""
    receivers: Any = server.client().publish(EVENTS, payload)
    return int(receivers)


def node_id(node: Node) -> str:
    """The node's id, as it logs it at start."""
    found = re.search(r"node ([0-9a-f]{16}) shares its rooms", node.log())
    assert found is not None, node.log()
    return found.group(1)


# -- fixtures (import them into a test module to use them) ----------------------------------------


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A ``redis-server`` of the test's own."""
    with running_redis(tmp_path / "redis") as server:
        yield server


@pytest.fixture
def two_nodes(redis_server: RedisServer, tmp_path: Path) -> Iterator[list[Node]]:
    """Two ``ipymeet serve --redis`` processes sharing ``redis_server`` (rooms of 4)."""
    with running_nodes(redis_server.url, tmp_path, 2, "--max-peers", "4") as nodes:
        yield nodes
