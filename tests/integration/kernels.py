"""Real ipykernel kernels for the shared-signaller tests (jupyter_client): start one with an
environment of the test's own, run code in it and read the JSON it prints, kill it with SIGKILL
or shut it down as closing its notebook does.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import time
from pathlib import Path
from typing import Any

from jupyter_client import KernelManager

#: How long a kernel may take to start and import ipymeet on a loaded 2-core machine.
START_TIMEOUT = 90.0


def kernel_env(runtime_dir: Path, port: int, **more: str) -> dict[str, str]:
    """This process's environment without its ``IPYMEET_*``, with a runtime folder and a port of
    the test's own (the kernels share a signaller there and nowhere else), no ICE servers, and
    ``more``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IPYMEET_")}
    env.update(
        JUPYTER_RUNTIME_DIR=str(runtime_dir), IPYMEET_PORT=str(port), IPYMEET_ICE_SERVERS="[]"
    )
    env.update(more)
    return env


class Kernel:
    """One real kernel (jupyter_client), its widget ``r`` and what it says of its signaller."""

    def __init__(self, name: str, env: dict[str, str], directory: Path) -> None:
        self.name = name
        self.manager = KernelManager(kernel_name="python3")
        self.manager.connection_file = str(directory / f"kernel-{name}.json")
        self.manager.start_kernel(env=env, cwd=str(directory))
        self.client = self.manager.blocking_client()
        self.client.start_channels()
        self.info: dict[str, Any] = {}

    @property
    def pid(self) -> int:
        return int(self.manager.provisioner.pid)  # type: ignore[union-attr]

    def ready(self) -> None:
        self.client.wait_for_ready(timeout=START_TIMEOUT)

    def run(self, code: str, timeout: float = 30.0) -> Any:
        """Run ``code``; the JSON its last printed line holds."""
        printed: list[str] = []
        errors: list[str] = []

        def output(message: dict[str, Any]) -> None:
            kind, content = message["msg_type"], message["content"]
            if kind == "stream":
                printed.append(content["text"])
            elif kind == "error":
                errors.append("\n".join(content["traceback"]))

        reply = self.client.execute_interactive(code, timeout=timeout, output_hook=output)
        assert reply["content"]["status"] == "ok", f"{self.name}: {errors or reply}"
        lines = "".join(printed).strip().splitlines()
        return json.loads(lines[-1]) if lines else None

    def begin(self, code: str) -> str:
        """Start running ``code`` and return at once; :meth:`outcome` says how the cell ended."""
        return str(self.client.execute(code))

    def outcome(self, cell: str, timeout: float) -> str | None:
        """The status of cell ``cell`` ("ok", "error") once it ended; None if it did not end
        within ``timeout`` s or the kernel died meanwhile."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.alive:
            try:
                reply = self.client.get_shell_msg(timeout=0.1)
            except queue.Empty:
                continue
            if reply["parent_header"].get("msg_id") == cell:
                return str(reply["content"]["status"])
        return None

    def peers(self) -> list[str]:
        return sorted(p["name"] for p in self.run("print(json.dumps(r.peers))"))

    @property
    def alive(self) -> bool:
        return bool(self.manager.is_alive())

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)

    def shutdown(self) -> None:
        """A clean shutdown (the kernel's atexit runs), as closing its notebook does."""
        self.client.stop_channels()
        if self.manager.has_kernel:
            self.manager.shutdown_kernel(now=False)

    def close(self) -> None:
        self.client.stop_channels()
        if self.manager.has_kernel:
            self.manager.shutdown_kernel(now=True)
        self.manager.cleanup_resources()


MAKE_ROOM = """
import json, os
from ipymeet import VideoRoom, kernel_signaller
r = VideoRoom('team', name={name!r})
s = kernel_signaller()
print(json.dumps({{"client": r._client, "port": r._port, "hosting": s.hosting,
                  "shared": s.shared, "pid": os.getpid()}}))
"""
