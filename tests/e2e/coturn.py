"""Debian's coturn (``turnserver``) for a test: a config of the test's own, the server started on a
free port of a given address, its log kept, and stopped however the test ends.

The config is what the field notes found works for a test: ``use-auth-secret`` with a
``static-auth-secret`` (the TURN REST credentials ipymeet hands out, server/core/turn.py), no TLS,
no DTLS, no CLI (with the CLI on and no password coturn 4.6.1 exits), the log on stdout. Bind it to
a namespace address, not 127.0.0.1: coturn refuses loopback peers, and Chromium gathers no loopback
candidates.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

TURNSERVER = "/usr/bin/turnserver"


def free_udp_port(address: str) -> int:
    """A UDP (and TCP) port of ``address`` that was free a moment ago."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((address, 0))
            port = int(udp.getsockname()[1])
        with socket.socket() as tcp, contextlib.suppress(OSError):
            tcp.bind((address, port))
            return port


def stun_answers(address: str, port: int, timeout: float = 0.2) -> bool:
    """Whether a STUN Binding request (RFC 5389) to ``address:port`` over UDP gets an answer."""
    transaction = os.urandom(12)
    request = struct.pack("!HHI", 0x0001, 0, 0x2112A442) + transaction
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(timeout)
        try:
            udp.sendto(request, (address, port))
            answer = udp.recv(2048)
        except OSError:  # nothing listens yet (refused) or no answer in time
            return False
    return answer[:2] == b"\x01\x01" and answer[8:20] == transaction


@dataclass
class Coturn:
    """A running turnserver: ``url`` for ``--turn-url``, its ``log`` lines so far."""

    address: str
    port: int
    secret: str
    log: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"turn:{self.address}:{self.port}?transport=udp"


def config(address: str, port: int, secret: str, log_dir: Path, extra: Sequence[str] = ()) -> str:
    """The turnserver.conf of a test: one address for listening and relaying, few relay ports;
    ``extra`` lines after (``max-allocate-lifetime=8``, say)."""
    low = 49152 + port % 8000 * 2
    return "\n".join(
        [
            f"listening-ip={address}",
            f"relay-ip={address}",
            f"listening-port={port}",
            f"min-port={low}",
            f"max-port={low + 200}",
            "realm=ipymeet.test",
            "use-auth-secret",
            f"static-auth-secret={secret}",
            "fingerprint",
            "no-tls",
            "no-dtls",
            "no-cli",
            "no-tcp-relay",
            "log-file=stdout",
            "simple-log",
            f"pidfile={log_dir / 'turnserver.pid'}",
            f"userdb={log_dir / 'turndb'}",
            *extra,
            "",
        ]
    )


@contextlib.contextmanager
def coturn(address: str, secret: str, workdir: Path, extra: Sequence[str] = ()) -> Iterator[Coturn]:
    """turnserver on ``address`` (a free port) with ``secret`` (and ``extra`` config lines), ready
    to allocate; stopped after."""
    if shutil.which(TURNSERVER) is None:
        raise RuntimeError("coturn's turnserver is missing: run `bash .ci/setup --browser`")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_udp_port(address)
    conf = workdir / "turnserver.conf"
    conf.write_text(config(address, port, secret, workdir, extra))
    server = Coturn(address, port, secret)
    process = subprocess.Popen(
        [TURNSERVER, "-c", str(conf)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            server.log.append(line.rstrip())

    reader = threading.Thread(target=read, name="coturn-log", daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 15
        while not stun_answers(address, port):
            if process.poll() is not None:
                raise RuntimeError(
                    f"turnserver exited with {process.returncode}: {server.log[-20:]}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"turnserver did not answer: {server.log[-20:]}")
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        reader.join(timeout=5)
