"""A real ipykernel tells its widgets when a cell runs (``_kernel_busy``), and only then: the
comm package fires IPython's ``pre_execute`` / ``post_execute`` around each comm message too, and
a page's messages (each one on the kernel route) must not cost two trait updates back apiece."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_client import KernelManager

CELL = """\
from ipymeet import VideoRoom
room = VideoRoom("busy-comm")
seen = []
room.observe(lambda change: seen.append(change.new), names="_kernel_busy")
print(room.comm.comm_id)
"""


@pytest.fixture
def kernel(tmp_path: Path) -> Iterator[Any]:
    env = dict(os.environ, IPYMEET_SHARE="0", JUPYTER_RUNTIME_DIR=str(tmp_path))
    manager = KernelManager(kernel_name="python3")
    manager.start_kernel(env=env, cwd=str(tmp_path))
    client = manager.blocking_client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        yield client
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def _run(client: Any, code: str) -> str:
    out: list[str] = []

    def output(message: dict[str, Any]) -> None:
        if message["msg_type"] == "stream":
            out.append(message["content"]["text"])
        elif message["msg_type"] == "error":
            out.append("\n".join(message["content"]["traceback"]))

    reply = client.execute_interactive(code, output_hook=output, timeout=60)
    assert reply["content"]["status"] == "ok", "".join(out)
    return "".join(out).strip()


def test_a_comm_message_is_not_taken_for_a_cell(kernel: Any) -> None:
    comm_id = _run(kernel, CELL)
    # A page's message to the widget (a kernel-route close of nothing: handled, answers nothing).
    content = {
        "comm_id": comm_id,
        "data": {"method": "custom", "content": {"type": "sig_close", "n": 1}},
    }
    message = kernel.session.msg("comm_msg", content)
    kernel.shell_channel.send(message)
    # Its handling ends with the kernel idle again (status messages carry its id as parent).
    while True:
        status = kernel.get_iopub_msg(timeout=30)
        parent = status["parent_header"].get("msg_id")
        state = status["content"].get("execution_state")
        if parent == message["header"]["msg_id"] and state == "idle":
            break
    seen = json.loads(_run(kernel, "import json; print(json.dumps(seen))"))
    # The first cell ended (False), the last one started (True): nothing for the comm message.
    assert seen == [False, True]
