"""A network namespace of the test's own, joined to this machine by one veth pair (iproute2):
10.N.M.1 here, 10.N.M.``host`` inside. The network test puts a browser in one; the remote tests
put Jupyter and Voilà servers in one."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


class Namespace:
    """``label`` names it (and its links); ``network`` is the second octet of its /24."""

    def __init__(self, label: str, network: int) -> None:
        index = os.getpid() % 200 + 20
        self.name = f"ipymeet-{label}-{os.getpid()}"
        self.host_if, self.ns_if = f"ip{label[0]}h{index}", f"ip{label[0]}n{index}"
        self.subnet = f"10.{network}.{index}"
        self.gateway = f"{self.subnet}.1"
        #: Its address (None while disconnected).
        self.address: str | None = None

    def create(self) -> None:
        ip("netns", "add", self.name)
        ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        ip("link", "set", self.ns_if, "netns", self.name)
        ip("addr", "add", f"{self.gateway}/24", "dev", self.host_if)
        ip("link", "set", self.host_if, "up")
        self.inside("link", "set", "lo", "up")
        self.inside("link", "set", self.ns_if, "up")
        self.connect(2)

    def inside(self, *args: str) -> None:
        ip("netns", "exec", self.name, "ip", *args)

    def connect(self, host: int) -> None:
        """Give the namespace the address .``host`` and a route out."""
        self.address = f"{self.subnet}.{host}"
        self.inside("addr", "add", f"{self.address}/24", "dev", self.ns_if)
        self.inside("route", "add", "default", "via", self.gateway)

    def disconnect(self) -> None:
        """Take its address (and so its route) away."""
        self.inside("addr", "flush", "dev", self.ns_if)
        self.address = None

    @property
    def wrap(self) -> list[str]:
        """A command prefix that runs the command inside the namespace."""
        return ["ip", "netns", "exec", self.name]

    def pids(self) -> list[int]:
        found = subprocess.run(
            ["ip", "netns", "pids", self.name], capture_output=True, text=True, check=False
        )
        return [int(pid) for pid in found.stdout.split()]

    def delete(self) -> None:
        """Kill whatever still runs inside, then remove the namespace and the link."""
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", self.name], check=False, capture_output=True)
        subprocess.run(["ip", "link", "del", self.host_if], check=False, capture_output=True)


@contextlib.contextmanager
def namespace(label: str, network: int) -> Iterator[Namespace]:
    """A fresh namespace (a leftover of an interrupted run removed first), deleted however the
    test ends; RuntimeError when this machine cannot make one."""
    space = Namespace(label, network)
    space.delete()
    try:
        space.create()
    except subprocess.CalledProcessError as error:
        space.delete()
        raise RuntimeError(
            f"cannot make a network namespace here ({error.stderr.strip()})"
        ) from None
    try:
        yield space
    finally:
        space.delete()
